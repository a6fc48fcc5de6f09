package probe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/podorder/podorder/plugin/decl"
)

// hangingServer accepts connections and never answers: every http attempt at it hangs until its
// timeout. It counts the connections it holds and those the prober gave up on.
type hangingServer struct {
	port     int
	accepted atomic.Int32
	ended    atomic.Int32
	changed  chan struct{} // receives after every accept
}

func newHangingServer(t *testing.T) *hangingServer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := &hangingServer{port: l.Addr().(*net.TCPAddr).Port, changed: make(chan struct{}, 1)}
	var conns sync.WaitGroup
	t.Cleanup(func() {
		l.Close()
		conns.Wait()
	})
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s.accepted.Add(1)
			select {
			case s.changed <- struct{}{}:
			default:
			}
			conns.Add(1)
			go func() {
				defer conns.Done()
				defer c.Close()
				buf := make([]byte, 4096)
				for {
					if _, err := c.Read(buf); err != nil {
						s.ended.Add(1) // the prober closed it: its attempt ended
						return
					}
				}
			}()
		}
	}()
	return s
}

// waitAccepted blocks until n connections were accepted.
func (s *hangingServer) waitAccepted(t *testing.T, n int32) {
	t.Helper()
	deadline := time.After(wait)
	for s.accepted.Load() < n {
		select {
		case <-s.changed:
		case <-deadline:
			t.Fatalf("%d attempts reached the hanging server, want %d", s.accepted.Load(), n)
		}
	}
}

func TestAPodsHangingProbesDoNotDelayAnotherPodsProbe(t *testing.T) {
	for _, tt := range []struct {
		name      string
		namespace string
	}{
		{name: "in another namespace", namespace: "calm"},
		{name: "in the same namespace", namespace: "hostile"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			hang := newHangingServer(t)
			good := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
			defer good.Close()

			r, _ := newTestRunner()
			// Longer than the wait below: a hanging attempt ending before the good probe
			// passes would mean the good probe waited for it.
			r.Timeout = 2 * wait
			// The 40 probes the finding's pod ran before readinessProbes counted towards its limit.
			r.MaxProbesPerPod = 40
			for range 40 {
				stop, err := r.StartPod("hostile", "pod-hanging", "", &decl.Probe{Kind: "http", Port: hang.port, Path: "/"},
					func() { t.Error("a server that never answers passed") })
				require.NoError(t, err)
				defer stop()
			}
			hang.waitAccepted(t, 2) // as many workers as the pod may occupy

			ready, readyCh := signal()
			start := time.Now()
			stop, err := r.StartPod(tt.namespace, "pod-calm", "", &decl.Probe{Kind: "http", Port: portOf(t, good.URL), Path: "/"}, ready)
			require.NoError(t, err)
			defer stop()
			waitReady(t, readyCh)
			t.Logf("the other pod's probe passed %v after its start, with %d hanging attempts in flight", time.Since(start), hang.accepted.Load())
			assert.Zero(t, hang.ended.Load(), "the other pod's probe waited for a hanging attempt to time out")

			r.mu.Lock()
			hostileBusy := r.pods[owner{"hostile", "pod-hanging"}].busy
			r.mu.Unlock()
			assert.Less(t, hostileBusy, DefaultWorkers, "one pod occupies every worker")
		})
	}
}

func TestTheProbesAPodCausesAreCappedTogether(t *testing.T) {
	r, _ := newTestRunner()
	r.MaxProbesPerPod = 4
	r.MaxProbesPerNamespace = 6
	port := closedPort(t)
	annotation := &decl.Probe{Kind: "tcp", Port: port}
	readiness := &decl.Probe{Kind: "tcp", Port: port, Readiness: true}
	start := func(namespace, pod string, p *decl.Probe) (func(), error) {
		stop, err := r.StartPod(namespace, pod, "", p, func() {})
		if err == nil {
			t.Cleanup(stop)
		}
		return stop, err
	}

	for _, p := range []*decl.Probe{annotation, annotation, readiness, readiness} {
		_, err := start("team", "a", p)
		require.NoError(t, err)
	}
	_, err := start("team", "a", readiness)
	require.Error(t, err, "a readinessProbe beyond the pod's limit runs")
	assert.Contains(t, err.Error(), "already has 4 podorder probes")
	assert.Contains(t, err.Error(), "its limit of 4")
	assert.Contains(t, err.Error(), "podorder.dev/readiness.<container>: kubelet", "the error names the fix")
	_, err = start("team", "a", annotation)
	require.Error(t, err)

	_, err = start("team", "b", readiness)
	require.NoError(t, err, "another pod has its own limit")
	stopB, err := start("team", "b", annotation)
	require.NoError(t, err)
	_, err = start("team", "c", annotation)
	require.Error(t, err, "the namespace's limit holds across its pods")
	assert.True(t, strings.HasPrefix(err.Error(), "namespace team already has 6 podorder probes"), err.Error())
	_, err = start("elsewhere", "d", annotation)
	require.NoError(t, err, "other namespaces have their own limit")

	stopB()
	_, err = start("team", "c", annotation)
	require.NoError(t, err, "a stopped probe frees its place")
}

func TestWaitingAttemptsTakeTurnsAcrossNamespacesThenPods(t *testing.T) {
	r := &Runner{Workers: 4}
	// Fill the queues by hand, as the scheduler does when no worker is free: namespace a has two
	// pods with three due attempts each and two with one, namespace b one pod with one.
	queue := func(o owner) {
		t := &task{pod: r.shareLocked(o), index: -1}
		t.pod.probes++
		t.pod.ns.probes++
		r.busy = positive(r.Workers, DefaultWorkers) // every worker busy: dispatch only queues
		r.dispatchLocked(t)
	}
	a1, a2, a3, a4, b1 := owner{"a", "1"}, owner{"a", "2"}, owner{"a", "3"}, owner{"a", "4"}, owner{"b", "1"}
	for range 3 {
		queue(a1)
	}
	for range 3 {
		queue(a2)
	}
	queue(a3)
	queue(a4)
	queue(b1)

	var order []owner
	for {
		t := r.takeLocked()
		if t == nil {
			break
		}
		order = append(order, t.pod.owner)
	}
	// The namespaces take turns (a, b, then a once b has nothing left) and so do a's pods (1, 2,
	// 3). The fourth worker is the last free one: it goes to a pod with nothing running, a4, but
	// namespace a already runs three attempts, its limit with four workers, so the rest waits.
	assert.Equal(t, []owner{a1, b1, a2, a3}, order)
	for _, o := range []owner{a1, a2, a3} {
		assert.Equal(t, 1, r.pods[o].busy, "%v", o)
	}
	assert.Equal(t, 3, r.namespaces["a"].busy)
	assert.Len(t, r.turns, 1, "namespace a still has attempts waiting")
}

// Hanging servers in many namespaces used to be able to take every worker between them, each
// namespace below its own limit: another pod then waited up to an attempt's timeout for its turn.
// Now the probes whose last attempt ran out its time share half the workers, whatever namespaces
// they are in, and the rest stay free for everyone else.
func TestSlowProbesOfManyNamespacesShareHalfTheWorkers(t *testing.T) {
	// scheduling: the scheduler counts as running, so that a finished attempt is only queued.
	r := &Runner{Workers: 4, scheduling: true}
	queue := func(o owner, slow bool) *task {
		t := &task{pod: r.shareLocked(o), index: -1, slow: slow, probe: &decl.Probe{Kind: "tcp", Port: 1}}
		t.pod.probes++
		t.pod.ns.probes++
		r.busy = positive(r.Workers, DefaultWorkers) // every worker busy: dispatch only queues
		r.dispatchLocked(t)
		return t
	}
	for ns := range 4 {
		for range 3 {
			queue(owner{fmt.Sprintf("hostile-%d", ns), "pod"}, true)
		}
	}
	calm := queue(owner{"calm", "pod"}, false)

	var taken []*task
	for {
		t := r.takeLocked()
		if t == nil {
			break
		}
		taken = append(taken, t)
	}
	require.Len(t, taken, 3, "two slow attempts and the calm one")
	assert.True(t, taken[0].slow && taken[1].slow, "slow attempts take their turns while there is room")
	assert.Same(t, calm, taken[2], "the calm pod's attempt is not kept waiting behind slow ones")
	assert.Equal(t, 2, r.slowBusy)

	// A slow attempt that ends frees its room for the next slow one.
	r.busy = 3
	r.finish(taken[0], time.Now(), context.DeadlineExceeded)
	next := r.takeLocked()
	require.NotNil(t, next)
	assert.True(t, next.slow)
	assert.Equal(t, 2, r.slowBusy)
}

func TestTimedOut(t *testing.T) {
	tests := map[string]struct {
		err  error
		want bool
	}{
		"context deadline":      {context.DeadlineExceeded, true},
		"connection deadline":   {fmt.Errorf("read: %w", os.ErrDeadlineExceeded), true},
		"net timeout":           {&net.OpError{Op: "read", Err: os.ErrDeadlineExceeded}, true},
		"an answer":             {errors.New("http status 503"), false},
		"refused":               {syscall.ECONNREFUSED, false},
		"cancelled by its stop": {context.Canceled, false},
		"passed":                {nil, false},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) { assert.Equal(t, tt.want, timedOut(tt.err)) })
	}
}

// Two pods in two namespaces, each below its own limits, used to be able to take every worker
// between them with attempts that answer just before their timeout (never "slow" by timing out):
// a newcomer then waited for one of them to end. Now the last free worker is kept for a pod with
// nothing running.
func TestTheLastFreeWorkerIsForAPodWithNothingRunning(t *testing.T) {
	r := &Runner{Workers: 4}
	queue := func(o owner) *task {
		t := &task{pod: r.shareLocked(o), index: -1, probe: &decl.Probe{Kind: "tcp", Port: 1}}
		t.pod.probes++
		t.pod.ns.probes++
		r.busy = positive(r.Workers, DefaultWorkers) // every worker busy: dispatch only queues
		r.dispatchLocked(t)
		return t
	}
	a, b := owner{"evil-a", "pod"}, owner{"evil-b", "pod"}
	for range 3 {
		queue(a)
		queue(b)
	}
	var taken []owner
	for t := r.takeLocked(); t != nil; t = r.takeLocked() {
		taken = append(taken, t.pod.owner)
	}
	assert.Equal(t, []owner{a, b, a}, taken, "the fourth worker is not taken by a pod already running")
	calm := queue(owner{"calm", "pod"})
	assert.Same(t, calm, r.takeLocked(), "a newcomer gets the last free worker at once")
}

func TestAnAttemptIsSlowWhenItTakesLongWhateverItsOutcome(t *testing.T) {
	tests := map[string]struct {
		took time.Duration
		err  error
		want bool
	}{
		"quick pass":                {time.Millisecond, nil, false},
		"quick failure":             {time.Millisecond, errors.New("http status 503"), false},
		"late answer":               {slowAttempt, errors.New("http status 503"), true},
		"late pass":                 {slowAttempt, nil, true},
		"ran out its time, quickly": {time.Millisecond, context.DeadlineExceeded, true},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			r := &Runner{Workers: 4, scheduling: true}
			tk := &task{pod: r.shareLocked(owner{"ns", "pod"}), index: -1, probe: &decl.Probe{Kind: "tcp", Port: 1, SuccessThreshold: 2},
				timeout: time.Second, ready: func() {}}
			tk.pod.probes++
			tk.pod.ns.probes++
			r.busy = positive(r.Workers, DefaultWorkers)
			r.dispatchLocked(tk)
			require.Same(t, tk, r.takeLocked())
			r.finish(tk, time.Now().Add(-tt.took), tt.err)
			assert.Equal(t, tt.want, tk.slow)
		})
	}
}

// The finding's attack from two namespaces at once: each pod below its own limits, together they
// used to hold every worker, and a newcomer waited for one of their attempts to end.
func TestHangingProbesInTwoNamespacesDoNotDelayAnotherPodsProbe(t *testing.T) {
	hang := newHangingServer(t)
	good := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer good.Close()
	r, _ := newTestRunner()
	r.Timeout = 2 * wait // longer than the wait below: no hanging attempt ends during the test
	for _, ns := range []string{"evil-a", "evil-b"} {
		for range 16 {
			stop, err := r.StartPod(ns, "pod", "", &decl.Probe{Kind: "http", Port: hang.port, Path: "/"},
				func() { t.Error("a server that never answers passed") })
			require.NoError(t, err)
			defer stop()
		}
	}
	hang.waitAccepted(t, 3) // every worker but the last free one

	ready, readyCh := signal()
	start := time.Now()
	stop, err := r.StartPod("calm", "pod", "", &decl.Probe{Kind: "http", Port: portOf(t, good.URL), Path: "/"}, ready)
	require.NoError(t, err)
	defer stop()
	waitReady(t, readyCh)
	t.Logf("the other pod's probe passed %v after its start, with %d hanging attempts in flight", time.Since(start), hang.accepted.Load())
	assert.Zero(t, hang.ended.Load(), "the other pod's probe waited for a hanging attempt to end")
}
