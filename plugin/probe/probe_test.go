package probe

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/podorder/podorder/plugin/decl"
)

// wait bounds every wait in these tests; nothing should take close to it.
const wait = 10 * time.Second

// recorder is a slog handler that counts records by message, so tests can wait for attempts to
// happen instead of sleeping.
type recorder struct {
	mu      sync.Mutex
	counts  map[string]int
	changed chan struct{} // closed and replaced at every record
}

func newRecorder() *recorder {
	return &recorder{counts: map[string]int{}, changed: make(chan struct{})}
}

func (h *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (h *recorder) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *recorder) WithGroup(string) slog.Handler            { return h }
func (h *recorder) Handle(_ context.Context, rec slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.counts[rec.Message]++
	close(h.changed)
	h.changed = make(chan struct{})
	return nil
}

func (h *recorder) count(msg string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.counts[msg]
}

// waitFor blocks until msg was logged at least n times.
func (h *recorder) waitFor(t *testing.T, msg string, n int) {
	t.Helper()
	deadline := time.After(wait)
	for {
		h.mu.Lock()
		got, changed := h.counts[msg], h.changed
		h.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("%q logged %d times, want %d", msg, got, n)
		}
	}
}

const (
	msgFailed      = "probe attempt failed"
	msgAfterStop   = "probe attempt ended after stop"
	msgPanic       = "probe attempt panicked"
	msgReadyPanic  = "probe ready callback panicked"
	msgCannotLeave = "cannot return a probe worker to the daemon's network namespace; discarding its thread"
)

func newTestRunner() (*Runner, *recorder) {
	rec := newRecorder()
	r := NewRunner(slog.New(rec))
	r.Interval = 5 * time.Millisecond
	return r, rec
}

// closedPort returns a loopback port that refuses connections for the whole test: it is bound
// but not listening, so no other test or process can start listening on it meanwhile.
func closedPort(t *testing.T) int {
	t.Helper()
	return reservePort(t).port
}

// reserved is a loopback TCP socket bound to port, not yet listening.
type reserved struct {
	fd   int
	port int
}

func reservePort(t *testing.T) *reserved {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	require.NoError(t, unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}))
	sa, err := unix.Getsockname(fd)
	require.NoError(t, err)
	res := &reserved{fd: fd, port: sa.(*unix.SockaddrInet4).Port}
	t.Cleanup(func() {
		if res.fd >= 0 {
			unix.Close(res.fd)
		}
	})
	return res
}

// listen makes the port accept connections: the moment a pod's server comes up.
func (res *reserved) listen(t *testing.T) net.Listener {
	t.Helper()
	require.NoError(t, unix.Listen(res.fd, 16))
	f := os.NewFile(uintptr(res.fd), "reserved")
	res.fd = -1
	defer f.Close()
	l, err := net.FileListener(f)
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	return l
}

// signal returns a ready callback and the channel it reports on.
func signal() (func(), chan struct{}) {
	ch := make(chan struct{}, 1)
	return func() { ch <- struct{}{} }, ch
}

func waitReady(t *testing.T, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(wait):
		t.Fatal("probe never passed")
	}
}

func notReady(t *testing.T, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
		t.Fatal("ready was called")
	default:
	}
}

// waitIdle waits until the runner has no goroutine left, which is also when every namespace a
// stopped probe held has been released.
func waitIdle(t *testing.T, r *Runner) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		r.mu.Lock()
		idle := r.busy == 0 && !r.scheduling
		r.mu.Unlock()
		if idle {
			return
		}
		require.True(t, time.Now().Before(deadline), "runner still has goroutines")
		time.Sleep(time.Millisecond)
	}
}

func waitGoroutines(t *testing.T, max int) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for runtime.NumGoroutine() > max {
		require.True(t, time.Now().Before(deadline), "goroutines: %d, want at most %d", runtime.NumGoroutine(), max)
		time.Sleep(time.Millisecond)
	}
}

func osThreads(t *testing.T) int {
	t.Helper()
	return procStatus(t, "Threads")
}

// procStatus reads the number in /proc/self/status's line for key (a count, or kB).
func procStatus(t *testing.T, key string) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	require.NoError(t, err)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, key+":"); ok {
			n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			require.NoError(t, err)
			return n
		}
	}
	t.Fatalf("no %s line in /proc/self/status", key)
	return 0
}

func TestStartRejects(t *testing.T) {
	ok := func() {}
	tests := []struct {
		name  string
		netns string
		probe *decl.Probe
		ready func()
		want  string
	}{
		{"nil probe", "", nil, ok, "nil probe"},
		{"unknown kind", "", &decl.Probe{Kind: "udp", Port: 53}, ok, `kind "udp"`},
		{"port zero", "", &decl.Probe{Kind: "tcp"}, ok, "port 0"},
		{"port too high", "", &decl.Probe{Kind: "tcp", Port: 70000}, ok, "port 70000"},
		{"nil ready", "", &decl.Probe{Kind: "tcp", Port: 80}, nil, "ready callback is nil"},
		{"missing netns", "/nonexistent/netns", &decl.Probe{Kind: "tcp", Port: 80}, ok, "/nonexistent/netns"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := newTestRunner()
			stop, err := r.Start(tt.netns, tt.probe, tt.ready)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
			assert.Nil(t, stop)
			r.mu.Lock()
			defer r.mu.Unlock()
			assert.Zero(t, r.active, "a rejected probe must not take a slot")
			assert.Empty(t, r.netns)
		})
	}
}

func TestMaxProbes(t *testing.T) {
	r, _ := newTestRunner()
	r.MaxProbes = 10
	closed := &decl.Probe{Kind: "tcp", Port: closedPort(t)}
	var stops []func()
	for range 10 {
		stop, err := r.Start("", closed, func() {})
		require.NoError(t, err)
		stops = append(stops, stop)
	}
	_, err := r.Start("", closed, func() {})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "node probe limit of 10 reached")

	stops[0]()
	stops[0]() // a second stop must not free a second slot
	stop, err := r.Start("", closed, func() {})
	require.NoError(t, err, "a stopped probe frees its slot")
	stops[0] = stop
	_, err = r.Start("", closed, func() {})
	require.Error(t, err, "a repeated stop freed a slot twice")

	// A probe that passed frees its slot too, without stop.
	stops[1]()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	ready, readyCh := signal()
	_, err = r.Start("", &decl.Probe{Kind: "tcp", Port: l.Addr().(*net.TCPAddr).Port}, ready)
	require.NoError(t, err)
	waitReady(t, readyCh)
	stop, err = r.Start("", closed, func() {})
	require.NoError(t, err, "a passed probe frees its slot")
	stops[1] = stop

	for _, stop := range stops {
		stop()
	}
	waitIdle(t, r)
}

func TestTCPPassesOnceListenerAppears(t *testing.T) {
	r, rec := newTestRunner()
	port := reservePort(t)
	ready, readyCh := signal()
	stop, err := r.Start("", &decl.Probe{Kind: "tcp", Port: port.port}, ready)
	require.NoError(t, err)
	defer stop()

	rec.waitFor(t, msgFailed, 2)
	notReady(t, readyCh)
	port.listen(t)
	waitReady(t, readyCh)

	stop() // after a pass: a no-op
	waitIdle(t, r)
	select {
	case <-readyCh:
		t.Fatal("ready called twice")
	default:
	}
}

func TestHTTPStatus(t *testing.T) {
	tests := []struct {
		status int
		pass   bool
	}{
		{http.StatusOK, true},
		{http.StatusNoContent, true},
		{http.StatusFound, true}, // with a Location to a path that fails: the 302 itself is judged
		{http.StatusMovedPermanently, true},
		{http.StatusNotFound, false},
		{http.StatusInternalServerError, false},
		{http.StatusServiceUnavailable, false},
	}
	const attempts = 5
	for _, tt := range tests {
		t.Run(strconv.Itoa(tt.status), func(t *testing.T) {
			var hits, followed atomic.Int32
			enough := make(chan struct{})
			mux := http.NewServeMux()
			mux.HandleFunc("/healthz", func(w http.ResponseWriter, req *http.Request) {
				if hits.Add(1) == attempts {
					close(enough)
				}
				if tt.status >= 300 && tt.status < 400 {
					w.Header().Set("Location", "/broken")
				}
				w.WriteHeader(tt.status)
			})
			mux.HandleFunc("/broken", func(w http.ResponseWriter, req *http.Request) {
				followed.Add(1)
				w.WriteHeader(http.StatusInternalServerError)
			})
			srv := httptest.NewServer(mux)
			defer srv.Close()
			u, err := url.Parse(srv.URL)
			require.NoError(t, err)
			port, err := strconv.Atoi(u.Port())
			require.NoError(t, err)

			r, _ := newTestRunner()
			ready, readyCh := signal()
			stop, err := r.Start("", &decl.Probe{Kind: "http", Port: port, Path: "/healthz"}, ready)
			require.NoError(t, err)
			defer stop()
			if tt.pass {
				waitReady(t, readyCh)
				assert.EqualValues(t, 1, hits.Load(), "a passing probe must stop after its pass")
				assert.Zero(t, followed.Load(), "a redirect must not be followed")
				return
			}
			select {
			case <-enough:
			case <-time.After(wait):
				t.Fatalf("only %d attempts", hits.Load())
			}
			// A pass would have ended the probe, so reaching this many attempts already proves
			// the earlier ones failed; check the last one did too.
			stop()
			notReady(t, readyCh)
		})
	}
}

func TestBoundedGoroutinesAndThreads(t *testing.T) {
	const probes = 600
	baseGoroutines := runtime.NumGoroutine()
	baseThreads := osThreads(t)
	r, rec := newTestRunner()
	r.MaxProbes = 1000
	r.Interval = time.Millisecond
	limit := baseGoroutines + r.Workers + 10

	ports := []int{closedPort(t), closedPort(t), closedPort(t)}
	stops := make([]func(), 0, probes)
	for i := range probes {
		stop, err := r.Start("", &decl.Probe{Kind: "tcp", Port: ports[i%len(ports)]}, func() { t.Error("a closed port passed") })
		require.NoError(t, err)
		stops = append(stops, stop)
	}

	maxGoroutines, maxThreads := 0, 0
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	deadline := time.After(wait)
	for rec.count(msgFailed) < 3*probes { // every probe tried about three times
		maxGoroutines = max(maxGoroutines, runtime.NumGoroutine())
		maxThreads = max(maxThreads, osThreads(t))
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("only %d attempts", rec.count(msgFailed))
		}
	}
	t.Logf("%d probes: goroutines %d → max %d; threads %d → max %d", probes, baseGoroutines, maxGoroutines, baseThreads, maxThreads)
	assert.LessOrEqual(t, maxGoroutines, limit)
	assert.LessOrEqual(t, maxThreads, baseThreads+r.Workers+5)

	for _, stop := range stops {
		stop()
	}
	waitIdle(t, r)
	waitGoroutines(t, baseGoroutines)
}

func TestStopBeforePass(t *testing.T) {
	r, rec := newTestRunner()
	port := reservePort(t)
	probe := &decl.Probe{Kind: "tcp", Port: port.port}
	ready, readyCh := signal()
	stop, err := r.Start("", probe, ready)
	require.NoError(t, err)
	rec.waitFor(t, msgFailed, 1)
	stop()
	stop()

	port.listen(t)
	// A second probe of the same port passing shows the stopped one had every chance to.
	ready2, ready2Ch := signal()
	stop2, err := r.Start("", probe, ready2)
	require.NoError(t, err)
	defer stop2()
	waitReady(t, ready2Ch)
	waitIdle(t, r)
	notReady(t, readyCh)
}

func TestStopDuringAttempt(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		once.Do(func() { close(entered) })
		<-release
	}))
	defer srv.Close()
	defer close(release)
	u, err := url.Parse(srv.URL)
	require.NoError(t, err)
	port, err := strconv.Atoi(u.Port())
	require.NoError(t, err)

	r, rec := newTestRunner()
	r.Timeout = wait // only stop can end the attempt
	ready, readyCh := signal()
	stop, err := r.Start("", &decl.Probe{Kind: "http", Port: port, Path: "/"}, ready)
	require.NoError(t, err)
	<-entered

	stopped := make(chan struct{})
	go func() {
		stop()
		stop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(wait):
		t.Fatal("stop blocked on the attempt in flight")
	}
	rec.waitFor(t, msgAfterStop, 1)
	waitIdle(t, r)
	notReady(t, readyCh)
}

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
