package probe

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/podorder/podorder/plugin/decl"
)

// fakeSource is a ListenSource the test drives: Watch blocks until the test fails it or the
// context ends.
type fakeSource struct {
	watching chan struct{}
	fail     chan error
}

func newFakeSource() *fakeSource {
	return &fakeSource{watching: make(chan struct{}), fail: make(chan error, 1)}
}

func (f *fakeSource) Watch(ctx context.Context, _ func([]Listen)) error {
	close(f.watching)
	select {
	case <-ctx.Done():
		return nil
	case err := <-f.fail:
		return err
	}
}

// follow makes r follow a fake source until the test ends, and returns it and Follow's result.
func follow(t *testing.T, r *Runner) (*fakeSource, <-chan error) {
	t.Helper()
	src := newFakeSource()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Follow(ctx, src) }()
	t.Cleanup(cancel)
	<-src.watching
	return src, done
}

// attemptsByPort counts each port's failed attempts, from their errors, and lets a test wait for
// a count.
type attemptsByPort struct {
	mu      sync.Mutex
	n       map[int]int
	changed chan struct{}
}

func countAttempts(r *Runner) *attemptsByPort {
	a := &attemptsByPort{n: map[int]int{}, changed: make(chan struct{})}
	r.Attempted = func(err error) {
		port := 0
		if err != nil {
			if s, ok := strings.CutPrefix(err.Error(), "port "); ok {
				port, _ = strconv.Atoi(s[:strings.Index(s, ":")])
			}
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		a.n[port]++
		close(a.changed)
		a.changed = make(chan struct{})
	}
	return a
}

func (a *attemptsByPort) count(port int) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.n[port]
}

func (a *attemptsByPort) waitFor(t *testing.T, port, n int) {
	t.Helper()
	deadline := time.After(wait)
	for {
		a.mu.Lock()
		got, changed := a.n[port], a.changed
		a.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("port %d: %d failed attempts, want %d", port, got, n)
		}
	}
}

// eventRunner is a runner whose safety net never fires within a test: only events make its
// probes of closed ports due.
func eventRunner() (*Runner, *recorder) {
	r, rec := newTestRunner()
	r.EventInterval = time.Hour
	r.AfterEventInterval = time.Hour
	r.EventMaxInterval = time.Hour
	return r, rec
}

// waitingOnClosedPort starts a probe of a closed port on r, which follows a fake source, and
// returns once its first attempt failed: its port, its task and the count of its attempts.
func waitingOnClosedPort(t *testing.T, r *Runner) (int, *task, *attemptsByPort) {
	t.Helper()
	attempts := countAttempts(r)
	follow(t, r)
	port := closedPort(t)
	stop, err := r.Start("", &decl.Probe{Kind: "tcp", Port: port}, func() {})
	require.NoError(t, err)
	t.Cleanup(stop)
	attempts.waitFor(t, port, 1)
	return port, taskOf(t, r, port), attempts
}

// taskOf returns the one active probe of port.
func taskOf(t *testing.T, r *Runner, port int) *task {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	ts := r.byPort[uint16(port)]
	require.Len(t, ts, 1, "probes of port %d", port)
	return ts[0]
}

// nextAttemptIn is how long until t's next attempt, once it waits for one.
func nextAttemptIn(r *Runner, t *task) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return time.Until(t.at)
}

// waitingIn waits until t is back in the due heap, its last attempt finished, and returns how
// long until its next attempt.
func waitingIn(t *testing.T, r *Runner, tk *task) time.Duration {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		r.mu.Lock()
		in, at := tk.index >= 0, tk.at
		r.mu.Unlock()
		if in {
			return time.Until(at)
		}
		require.True(t, time.Now().Before(deadline), "the probe never waited for its next attempt")
		time.Sleep(time.Millisecond)
	}
}

func TestAnEventMakesTheWaitingProbeOfItsPortDueAtOnce(t *testing.T) {
	r, _ := eventRunner()
	attempts := countAttempts(r)
	follow(t, r)
	res := reservePort(t)
	ready, ch := signal()
	stop, err := r.Start("", &decl.Probe{Kind: "tcp", Port: res.port}, ready)
	require.NoError(t, err)
	defer stop()
	attempts.waitFor(t, res.port, 1)
	tk := taskOf(t, r, res.port)
	assert.Greater(t, waitingIn(t, r, tk), 50*time.Minute, "a closed port waits for its event, not for polling")

	res.listen(t)
	r.Listened([]Listen{{Port: uint16(res.port)}})
	waitReady(t, ch)
	assert.Empty(t, r.byPort, "a passed probe leaves the index")
}

func TestAnEventIsFollowedByABurstThenTheProbeWaitsForTheNext(t *testing.T) {
	r, _ := eventRunner()
	port, tk, attempts := waitingOnClosedPort(t, r)
	waitingIn(t, r, tk)

	// A hundred events of one port in one batch are one attempt and one burst.
	burst := make([]Listen, 100)
	for i := range burst {
		burst[i] = Listen{Port: uint16(port)}
	}
	r.Listened(burst)
	attempts.waitFor(t, port, 1+1+ListenBurst)
	assert.Greater(t, waitingIn(t, r, tk), 50*time.Minute, "after the burst, the closed port waits for the next event or the safety net")
	assert.Equal(t, 1+1+ListenBurst, attempts.count(port))
}

// A port still closed after an event's burst (its listener was preempted before taking the port)
// is attempted again soon, not at the safety net's longer period.
func TestAfterAnEventsBurstAClosedPortIsAttemptedAgainSoon(t *testing.T) {
	r, _ := eventRunner()
	r.AfterEventInterval = 30 * time.Millisecond
	port, tk, attempts := waitingOnClosedPort(t, r)
	assert.Greater(t, waitingIn(t, r, tk), 50*time.Minute, "before the event, the safety net's period")

	r.Listened([]Listen{{Port: uint16(port)}})
	attempts.waitFor(t, port, 1+1+ListenBurst)
	assert.LessOrEqual(t, waitingIn(t, r, tk), 30*time.Millisecond, "after the burst, the period after an event")
}

func TestAnEventLeavesProbesOfOtherPortsAndNamespacesAlone(t *testing.T) {
	r, _ := eventRunner()
	attempts := countAttempts(r)
	follow(t, r)
	a, b := closedPort(t), closedPort(t)
	for _, port := range []int{a, b} {
		stop, err := r.Start("", &decl.Probe{Kind: "tcp", Port: port}, func() {})
		require.NoError(t, err)
		defer stop()
		attempts.waitFor(t, port, 1)
	}
	ta, tb := taskOf(t, r, a), taskOf(t, r, b)
	waitingIn(t, r, ta)
	waitingIn(t, r, tb)
	r.mu.Lock()
	atA, atB, own := ta.at, tb.at, r.ownIno
	r.mu.Unlock()
	require.NotZero(t, own, "the daemon's namespace is known")

	r.Listened([]Listen{{Port: uint16(b), Netns: own + 1}, {Port: uint16(closedPort(t))}})
	r.mu.Lock()
	assert.Equal(t, atA, ta.at, "another port's event leaves the probe alone")
	assert.Equal(t, atB, tb.at, "an event of the same port in another namespace leaves the probe alone")
	assert.Zero(t, ta.burst+tb.burst)
	r.mu.Unlock()

	r.Listened([]Listen{{Port: uint16(a), Netns: own}})
	attempts.waitFor(t, a, 2)
	assert.Equal(t, 1, attempts.count(b))
}

func TestAnEventDoesNotCutAnInitialDelayShort(t *testing.T) {
	r, _ := eventRunner()
	follow(t, r)
	port := closedPort(t)
	stop, err := r.Start("", &decl.Probe{Kind: "tcp", Port: port, InitialDelay: time.Hour}, func() {})
	require.NoError(t, err)
	defer stop()
	tk := taskOf(t, r, port)
	r.Listened([]Listen{{Port: uint16(port)}})
	assert.Greater(t, nextAttemptIn(r, tk), 50*time.Minute)
}

func TestEventsAttemptAProbeNoSoonerThanTheNodesBudgetAllows(t *testing.T) {
	r, _ := eventRunner()
	r.AttemptsPerSecond = 1 // one probe: one attempt a second
	port, tk, _ := waitingOnClosedPort(t, r)
	waitingIn(t, r, tk)
	r.Listened([]Listen{{Port: uint16(port)}})
	assert.Greater(t, nextAttemptIn(r, tk), 500*time.Millisecond, "a flood of events cannot exceed AttemptsPerSecond")
}

func TestWhileEventsAreLiveAClosedPortIsProbedAtTheSafetyNetsPeriod(t *testing.T) {
	r, _ := newTestRunner()
	r.EventInterval = 30 * time.Millisecond
	attempts := countAttempts(r)
	follow(t, r)
	res := reservePort(t)
	ready, ch := signal()
	stop, err := r.Start("", &decl.Probe{Kind: "tcp", Port: res.port}, ready)
	require.NoError(t, err)
	defer stop()
	attempts.waitFor(t, res.port, 1)
	tk := taskOf(t, r, res.port)
	in := waitingIn(t, r, tk)
	assert.Greater(t, in, 15*time.Millisecond, "the safety net's period, not the polling interval of 5 ms")
	assert.LessOrEqual(t, in, 30*time.Millisecond)

	// An event lost: the safety net still sees the port listen.
	res.listen(t)
	waitReady(t, ch)
}

// A source that lost events says so, and every waiting probe is attempted again: the lost event
// may have been its port's.
func TestLostEventsMakeEveryWaitingProbeDue(t *testing.T) {
	r, _ := eventRunner()
	attempts := countAttempts(r)
	follow(t, r)
	a := reservePort(t)
	b := closedPort(t)
	ready, ch := signal()
	stop, err := r.Start("", &decl.Probe{Kind: "tcp", Port: a.port}, ready)
	require.NoError(t, err)
	defer stop()
	stop, err = r.Start("", &decl.Probe{Kind: "tcp", Port: b}, func() {})
	require.NoError(t, err)
	defer stop()
	attempts.waitFor(t, a.port, 1)
	attempts.waitFor(t, b, 1)
	assert.Greater(t, waitingIn(t, r, taskOf(t, r, a.port)), 50*time.Minute, "a closed port waits for its event")

	a.listen(t) // its event is lost
	r.Listened([]Listen{{Lost: true}})
	waitReady(t, ch)
	attempts.waitFor(t, b, 2)
}

// A pod that keeps the kernel's buffer full makes the closed ports' probes due at most every
// LostEvery: a loss reported sooner after the last one changes nothing.
func TestLossesMakeProbesDueAtMostEveryLostEvery(t *testing.T) {
	r, _ := eventRunner()
	port, tk, attempts := waitingOnClosedPort(t, r)
	waitingIn(t, r, tk)

	r.mu.Lock()
	r.lostAt = time.Now() // a loss was just handled
	r.mu.Unlock()
	r.Listened([]Listen{{Lost: true}})
	assert.Greater(t, waitingIn(t, r, tk), 50*time.Minute, "a second loss within LostEvery makes nothing due")
	assert.Equal(t, 1, attempts.count(port))
}

func TestAPortThatListensButIsNotReadyIsPolledAsWithoutEvents(t *testing.T) {
	r, _ := eventRunner()
	attempts := countAttempts(r)
	follow(t, r)
	var requests atomic.Int32
	res := reservePort(t)
	ready, ch := signal()
	stop, err := r.Start("", &decl.Probe{Kind: "http", Port: res.port, Path: "/"}, ready)
	require.NoError(t, err)
	defer stop()
	attempts.waitFor(t, res.port, 1)
	l := res.listen(t)
	// Ready at the tenth request: past the burst, so only polling at the fast interval passes it.
	go http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if requests.Add(1) < 10 {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	r.Listened([]Listen{{Port: uint16(res.port)}})
	waitReady(t, ch)
}

func TestWhenTheSourceFailsProbesPollAgain(t *testing.T) {
	r, _ := eventRunner()
	attempts := countAttempts(r)
	src, done := follow(t, r)
	res := reservePort(t)
	ready, ch := signal()
	stop, err := r.Start("", &decl.Probe{Kind: "tcp", Port: res.port}, ready)
	require.NoError(t, err)
	defer stop()
	attempts.waitFor(t, res.port, 1)
	tk := taskOf(t, r, res.port)
	require.Greater(t, waitingIn(t, r, tk), 50*time.Minute)

	failure := errors.New("ring buffer gone")
	src.fail <- failure
	require.ErrorIs(t, <-done, failure)
	assert.LessOrEqual(t, nextAttemptIn(r, tk), r.Interval, "the probe waiting for an event is brought back to polling")
	res.listen(t)
	waitReady(t, ch) // without an event
}

func TestWithoutEventsAClosedPortIsPolledAtTheInterval(t *testing.T) {
	r, _ := newTestRunner()
	r.EventInterval = time.Hour
	attempts := countAttempts(r)
	port := closedPort(t)
	stop, err := r.Start("", &decl.Probe{Kind: "tcp", Port: port}, func() {})
	require.NoError(t, err)
	defer stop()
	attempts.waitFor(t, port, 3)
	assert.LessOrEqual(t, waitingIn(t, r, taskOf(t, r, port)), r.Interval)
}

func TestAStoppedProbeLeavesTheIndex(t *testing.T) {
	r, _ := eventRunner()
	port := closedPort(t)
	stop, err := r.Start("", &decl.Probe{Kind: "tcp", Port: port}, func() {})
	require.NoError(t, err)
	stop2, err := r.Start("", &decl.Probe{Kind: "tcp", Port: port}, func() {})
	require.NoError(t, err)
	r.mu.Lock()
	assert.Len(t, r.byPort[uint16(port)], 2)
	r.mu.Unlock()
	stop()
	stop2()
	r.mu.Lock()
	assert.Empty(t, r.byPort)
	r.mu.Unlock()
	r.Listened([]Listen{{Port: uint16(port)}}) // nothing to wake, nothing to break
	waitIdle(t, r)
}
