package probe

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/podorder/podorder/plugin/decl"
)

// fakeNetns lets tests take the namespace path without root: the probe "enters" the daemon's own
// namespace file, and setns is replaced.
const fakeNetns = "/proc/self/ns/net"

// nsFd returns the descriptor r holds for path, to tell entering (setns to it) from leaving.
func nsFd(t *testing.T, r *Runner, path string) int {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.netns[path]
	require.NotNil(t, n)
	return int(n.f.Fd())
}

func TestNamespaceFilesAreShared(t *testing.T) {
	r, rec := newTestRunner()
	var entered atomic.Int32
	r.setns = func(fd, nstype int) error {
		require.Equal(t, unix.CLONE_NEWNET, nstype)
		entered.Add(1)
		return nil
	}
	closed := &decl.Probe{Kind: "tcp", Port: closedPort(t)}
	other := "/proc/thread-self/ns/net"

	stopA, err := r.Start(fakeNetns, closed, func() {})
	require.NoError(t, err)
	stopB, err := r.Start(fakeNetns, closed, func() {})
	require.NoError(t, err)
	stopC, err := r.Start(other, closed, func() {})
	require.NoError(t, err)
	rec.waitFor(t, msgFailed, 6)
	assert.NotZero(t, entered.Load())

	r.mu.Lock()
	require.Len(t, r.netns, 2)
	shared := r.netns[fakeNetns]
	assert.Equal(t, 2, shared.refs, "probes of one path share one open file")
	assert.Equal(t, 1, r.netns[other].refs)
	r.mu.Unlock()

	stopA()
	// The hold is dropped at stop, or when an attempt in flight ends.
	deadline := time.Now().Add(wait)
	for {
		r.mu.Lock()
		refs := shared.refs
		r.mu.Unlock()
		if refs == 1 {
			break
		}
		require.Equal(t, 2, refs)
		require.True(t, time.Now().Before(deadline), "stop never released the namespace")
		time.Sleep(time.Millisecond)
	}
	stopA()
	r.mu.Lock()
	assert.Equal(t, 1, shared.refs, "a repeated stop must release once")
	assert.Same(t, shared, r.netns[fakeNetns])
	r.mu.Unlock()
	stopB()
	stopC()
	waitIdle(t, r)
	r.mu.Lock()
	assert.Empty(t, r.netns)
	r.mu.Unlock()
	assert.ErrorIs(t, shared.f.Close(), os.ErrClosed, "the last stop closes the file")
}

func TestPanicsAreContained(t *testing.T) {
	r, rec := newTestRunner()
	var panics atomic.Int32
	var ns atomic.Int64
	ns.Store(-1)
	r.setns = func(fd, nstype int) error {
		if int64(fd) == ns.Load() && panics.Add(-1) >= 0 {
			panic("boom")
		}
		return nil
	}
	// Hold the namespace open first, so that its descriptor is known before panics start.
	hold, err := r.Start(fakeNetns, &decl.Probe{Kind: "tcp", Port: closedPort(t)}, func() {})
	require.NoError(t, err)
	defer hold()
	ns.Store(int64(nsFd(t, r, fakeNetns)))
	panics.Store(3)

	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	open := &decl.Probe{Kind: "tcp", Port: l.Addr().(*net.TCPAddr).Port}
	ready, readyCh := signal()
	stop, err := r.Start(fakeNetns, open, ready)
	require.NoError(t, err)
	defer stop()
	waitReady(t, readyCh)
	rec.waitFor(t, msgPanic, 3) // each panic fails one attempt, which is retried
	assert.Zero(t, rec.count(msgCannotLeave), "a panic after entering still returns the thread")

	// A panicking ready is contained as well, and the workers keep working.
	stopP, err := r.Start("", open, func() { panic("ready boom") })
	require.NoError(t, err)
	defer stopP()
	rec.waitFor(t, msgReadyPanic, 1)
	ready2, ready2Ch := signal()
	stop2, err := r.Start("", open, ready2)
	require.NoError(t, err)
	defer stop2()
	waitReady(t, ready2Ch)

	// So is a panic while leaving the namespace: the thread is discarded, the probe retried.
	var leavePanics atomic.Int32
	leavePanics.Store(2)
	r.setns = func(fd, nstype int) error { // new probes only: each takes its setns at Start
		if int64(fd) != ns.Load() && leavePanics.Add(-1) >= 0 {
			panic("boom on the way back")
		}
		return nil
	}
	ready3, ready3Ch := signal()
	stop3, err := r.Start(fakeNetns, open, ready3)
	require.NoError(t, err)
	defer stop3()
	waitReady(t, ready3Ch)
	assert.Equal(t, 2, rec.count(msgCannotLeave))

	hold()
	waitIdle(t, r)
}

func TestWorkerLeftInNamespaceIsReplaced(t *testing.T) {
	base := runtime.NumGoroutine()
	r, rec := newTestRunner()
	r.Workers = 1
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	open := &decl.Probe{Kind: "tcp", Port: l.Addr().(*net.TCPAddr).Port}

	var failLeaves atomic.Int32
	var ns atomic.Int64
	ns.Store(-1)
	r.setns = func(fd, _ int) error {
		if int64(fd) != ns.Load() && failLeaves.Add(-1) >= 0 {
			return syscall.EPERM
		}
		return nil
	}
	// Hold the namespace open before the probe starts so its descriptor is known.
	hold, err := r.Start(fakeNetns, &decl.Probe{Kind: "tcp", Port: closedPort(t)}, func() {})
	require.NoError(t, err)
	defer hold()
	ns.Store(int64(nsFd(t, r, fakeNetns)))
	failLeaves.Store(3)

	ready, readyCh := signal()
	stop, err := r.Start(fakeNetns, open, ready)
	require.NoError(t, err)
	defer stop()
	waitReady(t, readyCh)
	assert.GreaterOrEqual(t, rec.count(msgCannotLeave), 1)
	r.mu.Lock()
	assert.LessOrEqual(t, r.busy, 1, "replacement workers must not grow the pool")
	r.mu.Unlock()

	hold()
	waitIdle(t, r)
	waitGoroutines(t, base)
}

// TestProbeEntersNetns checks, with a real namespace, that the probe connects to the pod's
// loopback and not the node's: the same port serves 500 on the node and 200 in the namespace.
func TestProbeEntersNetns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("creating a network namespace needs root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs ip(8)")
	}
	b := make([]byte, 4)
	_, err := rand.Read(b)
	require.NoError(t, err)
	name := "podorder-probe-test-" + hex.EncodeToString(b)
	run := func(args ...string) {
		t.Helper()
		out, err := exec.Command("ip", args...).CombinedOutput()
		require.NoError(t, err, "ip %s: %s", strings.Join(args, " "), out)
	}
	run("netns", "add", name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	run("netns", "exec", name, "ip", "link", "set", "lo", "up")
	path := "/var/run/netns/" + name

	var nodeHits, podHits atomic.Int32
	node := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		nodeHits.Add(1)
		w.WriteHeader(http.StatusInternalServerError)
	}))
	defer node.Close()
	port := node.Listener.Addr().(*net.TCPAddr).Port

	l := listenIn(t, path, port)
	pod := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		podHits.Add(1)
	})}
	go func() { _ = pod.Serve(l) }()
	defer pod.Close()

	r, rec := newTestRunner()
	probe := &decl.Probe{Kind: "http", Port: port, Path: "/"}
	ready, readyCh := signal()
	stop, err := r.Start(path, probe, ready)
	require.NoError(t, err)
	defer stop()
	waitReady(t, readyCh)
	assert.EqualValues(t, 1, podHits.Load())
	assert.Zero(t, nodeHits.Load(), "the probe reached the node's loopback")

	// A TCP probe of a port only the namespace listens on passes there and not on the node.
	l2 := listenIn(t, path, closedPort(t)) // on the node the port stays closed
	defer l2.Close()
	onlyPod := &decl.Probe{Kind: "tcp", Port: l2.Addr().(*net.TCPAddr).Port}
	ready2, ready2Ch := signal()
	stop2, err := r.Start(path, onlyPod, ready2)
	require.NoError(t, err)
	defer stop2()
	waitReady(t, ready2Ch)

	// The original bug: probes in a namespace must not cost a thread each.
	baseThreads := osThreads(t)
	before := rec.count(msgFailed)
	closedInPod := &decl.Probe{Kind: "tcp", Port: closedPort(t)}
	var stops []func()
	for range 300 {
		s, err := r.Start(path, closedInPod, func() { t.Error("a closed port passed") })
		require.NoError(t, err)
		stops = append(stops, s)
	}
	rec.waitFor(t, msgFailed, before+3*len(stops))
	threads := osThreads(t)
	t.Logf("300 probes in a namespace: threads %d → %d", baseThreads, threads)
	assert.LessOrEqual(t, threads, baseThreads+r.Workers+5)
	for _, s := range stops {
		s()
	}

	// No worker thread stayed in the namespace: the same runner, probing that port from the
	// node's namespace, keeps failing.
	stop()
	stop2()
	before = rec.count(msgFailed)
	readyNode, readyNodeCh := signal()
	stopNode, err := r.Start("", onlyPod, readyNode)
	require.NoError(t, err)
	rec.waitFor(t, msgFailed, before+4*r.Workers)
	stopNode()
	notReady(t, readyNodeCh)
	waitIdle(t, r)
}

// listenIn listens on 127.0.0.1:port inside the network namespace at path.
func listenIn(t *testing.T, path string, port int) net.Listener {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	self, err := os.Open("/proc/thread-self/ns/net")
	require.NoError(t, err)
	defer self.Close()
	ns, err := os.Open(path)
	require.NoError(t, err)
	defer ns.Close()
	require.NoError(t, unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET))
	l, lerr := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
		panic(fmt.Sprintf("cannot leave the test namespace: %v", err)) // never run more on this thread
	}
	require.NoError(t, lerr)
	return l
}
