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
	require.NoError(t, Serve(t.Context(), path, func() []podstate.PodReport { return nil }, func() []preflight.Verdict { return node },
		func(string) (podstate.TimelineReport, bool) { return podstate.TimelineReport{}, false }, slog.New(slog.DiscardHandler)))

	vs, ok, err := FetchNode(path)
	require.NoError(t, err)
	require.True(t, ok)
	var out bytes.Buffer
	require.NoError(t, WriteNode(&out, vs))
	assert.Equal(t, "node: NRI connected, containerd 2.4.2, runc 1.1.5\n  PodorderRuntimeTooOld: "+node[2].Message+"\n", out.String())
}

func TestTheReadinessEventsSourceIsALineOfItsOwnAfterTheHeader(t *testing.T) {
	vs := []preflight.Verdict{
		preflight.JudgeSocket(preflight.Reachability{Path: "/var/run/nri/nri.sock"}),
		{Check: "readiness_events", Result: preflight.Pass, Summary: "readiness events: ebpf", Message: "the kernel's LISTEN events"},
		preflight.JudgeContainerd("containerd", "v2.4.2"),
	}
	var out bytes.Buffer
	require.NoError(t, WriteNode(&out, vs))
	assert.Equal(t, "node: NRI connected, containerd 2.4.2\nreadiness events: ebpf (the kernel's LISTEN events)\n", out.String(),
		"the header names the preflight's checks only")
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

func TestATimelineIsServedByPodNameAndAnUnknownPodIsNamed(t *testing.T) {
	path := filepath.Join(t.TempDir(), SocketName)
	want := podstate.TimelineReport{Pod: "ns/shop", UID: "u1", Entries: []podstate.TimelineEntry{{Container: "db", Kind: podstate.TimelineCreated}}}
	require.NoError(t, Serve(t.Context(), path, func() []podstate.PodReport { return nil }, func() []preflight.Verdict { return nil },
		func(pod string) (podstate.TimelineReport, bool) { return want, pod == "ns/shop" }, slog.New(slog.DiscardHandler)))

	got, err := FetchTimeline(path, "ns/shop")
	require.NoError(t, err)
	assert.Equal(t, want, got)
	_, err = FetchTimeline(path, "ns/other")
	assert.ErrorContains(t, err, "pod ns/other: podorder on this node does not know it")
}
