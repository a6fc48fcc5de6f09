package preflight

import (
	"bytes"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestTheSocketProbeTellsAListenerFromAMissingPathAStaleSocketAndAFile(t *testing.T) {
	dir := t.TempDir()
	listening := filepath.Join(dir, "nri.sock")
	l, err := net.Listen("unix", listening)
	require.NoError(t, err)
	defer l.Close()

	stale := filepath.Join(dir, "stale.sock")
	sl, err := net.Listen("unix", stale)
	require.NoError(t, err)
	sl.(*net.UnixListener).SetUnlinkOnClose(false)
	require.NoError(t, sl.Close())

	file := filepath.Join(dir, "file")
	require.NoError(t, os.WriteFile(file, []byte("x"), 0o644))

	for path, want := range map[string]Problem{
		listening:                       Reachable,
		filepath.Join(dir, "none.sock"): Missing,
		stale:                           Refused,
		file:                            NotSocket,
		dir:                             NotSocket,
	} {
		conn, r := Dial(path, time.Second)
		if conn != nil {
			conn.Close()
		}
		assert.Equal(t, want, r.Problem, path)
		assert.Equal(t, path, r.Path)
		assert.Equal(t, want == Reachable, conn != nil, path)
	}
}

func TestTheRuntimeVersionIsReadFromItsOutputWithinBounds(t *testing.T) {
	dir := t.TempDir()
	script := func(name, body string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755))
		return p
	}
	f := FindRuntime(t.Context(), script("runc", `echo "runc version 1.1.5+ds1"; echo "commit: x"`))
	assert.NoError(t, f.Err)
	assert.Equal(t, "runc", f.Name)
	assert.Equal(t, "1.1.5+ds1", f.Version)

	start := time.Now()
	f = FindRuntime(t.Context(), script("slow", "sleep 30"))
	assert.ErrorContains(t, f.Err, "did not answer within 2s")
	assert.Less(t, time.Since(start), 10*time.Second)

	f = FindRuntime(t.Context(), script("chatty", `head -c 100000 /dev/zero | tr '\0' 'a'`))
	assert.ErrorContains(t, f.Err, "printed no version")
	assert.Less(t, len(f.Err.Error()), versionOutput+200, "the output is capped")

	f = FindRuntime(t.Context(), filepath.Join(dir, "absent"))
	assert.Error(t, f.Err)
	assert.Equal(t, Unknown, JudgeRuntime(f).Result)

	f = FindRuntime(t.Context(), "")
	assert.ErrorIs(t, f.Err, ErrNoBinary)
}

type recorded struct{ events, metrics []string }

func (r *recorded) NodeEvent(warning bool, reason, message string) {
	typ := "Normal"
	if warning {
		typ = "Warning"
	}
	r.events = append(r.events, typ+" "+reason+": "+message)
}

func (r *recorded) PreflightChecked(check string, result Result) {
	r.metrics = append(r.metrics, check+"="+string(result))
}

func TestTheNodeReportsEachChangeOnceAndReadinessWhenNothingFails(t *testing.T) {
	var logs bytes.Buffer
	rec := &recorded{}
	n := NewNode(slog.New(slog.NewTextHandler(&logs, nil)), rec, rec)

	missing := JudgeSocket(Reachability{Path: "/var/run/nri/nri.sock", Problem: Missing})
	for range 5 {
		n.Observe(missing)
	}
	n.Observe(JudgeRuntime(RuntimeFact{Name: "runc", Version: "1.3.6"}))
	assert.Equal(t, 1, strings.Count(logs.String(), "does not exist: NRI is off"), logs.String())
	assert.Contains(t, logs.String(), "level=WARN")
	require.Len(t, rec.events, 1)
	assert.True(t, strings.HasPrefix(rec.events[0], "Warning PodorderNRIUnreachable: containerd's NRI socket /var/run/nri/nri.sock does not exist"))

	n.Observe(JudgeContainerd("containerd", "v2.4.2"))
	n.Observe(JudgeSocket(Reachability{Path: "/var/run/nri/nri.sock"}))
	n.Observe(JudgeSocket(Reachability{Path: "/var/run/nri/nri.sock"}))
	require.Len(t, rec.events, 2)
	assert.Equal(t, "Normal PodorderReady: podorder is ready on this node: NRI connected, containerd 2.4.2, runc 1.3.6", rec.events[1])
	assert.Equal(t, []string{"nri_socket=fail", "runtime_version=pass", "containerd_version=pass", "nri_socket=pass"}, rec.metrics)
	assert.Equal(t, "node: NRI connected, containerd 2.4.2, runc 1.3.6", Header(n.Verdicts()))

	n.Observe(JudgeRuntimeFinding(n.Verdict(RuntimeVersion), true, 2*time.Second, "pod default/web, container app"))
	require.Len(t, rec.events, 3)
	assert.True(t, strings.HasPrefix(rec.events[2], "Warning PodorderRuntimeBlocksStart: "))
}

func TestWithoutTheAPIOrMetricsTheNodeStillLogs(t *testing.T) {
	var logs bytes.Buffer
	n := NewNode(slog.New(slog.NewTextHandler(&logs, nil)), nil, nil)
	n.Observe(JudgeSocket(Reachability{Path: "/s"}))
	assert.Contains(t, logs.String(), "connected to containerd's NRI socket /s")
	assert.Contains(t, logs.String(), "podorder is ready on this node")
}

func TestDialErrorsAreClassified(t *testing.T) {
	dial := func(errno syscall.Errno) error {
		return &net.OpError{Op: "dial", Net: "unix", Err: os.NewSyscallError("connect", errno)}
	}
	for errno, want := range map[syscall.Errno]Problem{
		syscall.ENOENT:       Missing,
		syscall.EACCES:       Denied,
		syscall.EPERM:        Denied,
		syscall.ECONNREFUSED: Refused,
		syscall.ENOTSOCK:     NotSocket,
		syscall.ETIMEDOUT:    Other,
	} {
		assert.Equal(t, want, Classify("/nonexistent/nri.sock", dial(errno)).Problem, errno.Error())
	}
}
