package status

import (
	"bytes"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/podorder/podorder/plugin/podstate"
	"github.com/podorder/podorder/plugin/preflight"
)

func TestStatusHeadsItsTableWithTheNodesVerdicts(t *testing.T) {
	path := filepath.Join(t.TempDir(), SocketName)
	node := []preflight.Verdict{
		preflight.JudgeSocket(preflight.Reachability{Path: "/var/run/nri/nri.sock"}),
		preflight.JudgeContainerd("containerd", "v2.4.2"),
		preflight.JudgeRuntime(preflight.RuntimeFact{Binary: "/host/runc", Name: "runc", Version: "1.1.5"}),
	}
	require.NoError(t, Serve(t.Context(), path, func() []podstate.PodReport { return nil }, func() []preflight.Verdict { return node }, slog.New(slog.DiscardHandler)))

	vs, ok, err := FetchNode(path)
	require.NoError(t, err)
	require.True(t, ok)
	var out bytes.Buffer
	require.NoError(t, WriteNode(&out, vs))
	assert.Equal(t, "node: NRI connected, containerd 2.4.2, runc 1.1.5\n  PodorderRuntimeTooOld: "+node[2].Message+"\n", out.String())
}

func TestAnOlderDaemonWithoutTheNodesVerdictsIsNoError(t *testing.T) {
	path := filepath.Join(t.TempDir(), SocketName)
	l, err := net.Listen("unix", path)
	require.NoError(t, err)
	mux := http.NewServeMux()
	mux.HandleFunc("/status", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("[]")) })
	srv := &http.Server{Handler: mux}
	go func() { _ = srv.Serve(l) }()
	defer srv.Close()

	_, ok, err := FetchNode(path)
	require.NoError(t, err)
	assert.False(t, ok)
}
