package probe

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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
