// Package probe runs podorder's node-local readiness checks — podorder.dev/probe.<c> annotations
// and containers' own tcp, http and grpc readinessProbes — from inside the pod's network namespace,
// every 10 ms at first and backing off to 100 ms, so readiness is seen within milliseconds instead
// of kubelet's probe period plus its status relist.
//
// An attempt first lists the pod's sockets listening on the probe's port (a sock_diag netlink dump,
// filtered by port in the kernel, over a socket kept open in the pod's namespace) and connects only
// once the port listens: polling a closed port costs two dumps and never touches the application.
// The verdict is still the real check — the connect, the GET or the gRPC health call — so it is
// kubelet's verdict, only sooner.
//
// Tenants decide how many probes exist, so a probe costs no goroutine and no OS thread of its own:
// one scheduler goroutine keeps the probes in a heap ordered by due time and hands due attempts to
// a fixed number of workers. A worker enters a pod's namespace only for the instant it takes to
// create and connect a socket (a socket stays in the namespace it was created in), then returns its
// thread to the daemon's namespace, so threads never have to be thrown away in the normal case.
//
// Tenants are hostile, so the workers are shared fairly: attempts that wait for a worker take turns
// across namespaces and, within a namespace, across pods; one pod (one namespace) never occupies
// every worker; the last free worker is kept for a pod with no attempt running; and the probes
// whose last attempt was slow (a server that answers late or never) share half the workers, in
// whatever namespaces they are. A pod whose server accepts and never answers then delays others by
// at most its first attempts. Each pod and each namespace may also run only so many probes.
package probe

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/podorder/podorder/plugin/decl"
)

// Defaults applied when the corresponding Runner field is zero.
const (
	// DefaultInterval is the period of a fresh probe: a dependency that becomes ready is seen
	// within 10 ms, which is what makes a release take milliseconds.
	DefaultInterval = 10 * time.Millisecond
	// DefaultFastFor is how long a probe keeps DefaultInterval before backing off: most
	// dependencies listen within a second or two of starting; slower ones are polled less often.
	DefaultFastFor = 2 * time.Second
	// DefaultMaxInterval is where the back-off stops, still ten times kubelet's fastest period.
	DefaultMaxInterval = 100 * time.Millisecond
	// DefaultAttemptsPerSecond caps the node's probe attempts: with many probes active each one's
	// period stretches to active/cap, so fast probing never turns into load, whatever tenants do.
	// An attempt on a closed port costs about 0.1 ms of CPU: the cap is about 10% of one core.
	DefaultAttemptsPerSecond = 1000
	// DefaultTimeout keeps one unresponsive pod from holding a worker for long.
	DefaultTimeout = time.Second
	// DefaultWorkers is small because an attempt is a loopback connect: a few workers keep up with
	// hundreds of probes, and the number of threads that ever enter pod namespaces stays tiny.
	DefaultWorkers = 4
	// DefaultMaxProbes bounds the memory and file descriptors a hostile tenant can make the
	// daemon spend: with Workers fixed, attempts beyond this would only be delayed anyway.
	DefaultMaxProbes = 512
	// DefaultMaxProbesPerPod is decl.MaxProbes: a pod may declare that many podorder.dev/probe
	// keys, and the readinessProbes podorder runs for it count against the same budget, so that
	// waiting on many containers with readinessProbes is no way around it.
	DefaultMaxProbesPerPod = decl.MaxProbes
	// DefaultMaxProbesPerNamespace keeps one namespace's pods from using up the node's MaxProbes
	// alone: it is a quarter of it, so at least four namespaces share a full node.
	DefaultMaxProbesPerNamespace = DefaultMaxProbes / 4
)

// selfNetns names the calling thread's own network namespace, which is what a worker must return
// to; /proc/self would name the main thread's, which is not necessarily the same.
const selfNetns = "/proc/thread-self/ns/net"

// Runner runs probes; it implements plugin.Prober. Its fields are read when probes start: set
// them before the first Start. The zero value is usable.
type Runner struct {
	// Interval is the time between the starts of two attempts of a fresh probe (DefaultInterval
	// when zero). Attempts are delayed, never stacked, when the workers cannot keep up.
	Interval time.Duration
	// FastFor is how long a probe keeps Interval before its period doubles at each failed attempt
	// (DefaultFastFor when zero).
	FastFor time.Duration
	// MaxInterval caps the back-off (DefaultMaxInterval when zero).
	MaxInterval time.Duration
	// AttemptsPerSecond caps the attempts of all probes together (DefaultAttemptsPerSecond when
	// zero): each probe's period is at least active probes / AttemptsPerSecond.
	AttemptsPerSecond int
	// Timeout bounds one attempt (DefaultTimeout when zero), so a pod that accepts but never
	// answers delays other probes by at most this much.
	Timeout time.Duration
	// Workers is how many attempts run at once, node-wide (DefaultWorkers when zero). The attempts
	// of one pod occupy at most half of them, those of one namespace all but one, those of slow
	// probes half of them, and the last free one goes to a pod with nothing running: pods whose
	// attempts all hang until Timeout leave workers to the other pods of their namespace and to
	// other namespaces.
	Workers int
	// MaxProbes is how many probes may be active at once, node-wide (DefaultMaxProbes when zero);
	// Start fails beyond it rather than let tenants grow the daemon without bound.
	MaxProbes int
	// MaxProbesPerPod is how many probes one pod may have active at once, whatever caused them
	// (DefaultMaxProbesPerPod when zero).
	MaxProbesPerPod int
	// MaxProbesPerNamespace is how many probes the pods of one namespace may have active at once
	// (DefaultMaxProbesPerNamespace when zero).
	MaxProbesPerNamespace int
	// Log receives failures; slog.Default() when nil.
	Log *slog.Logger
	// Attempted, when set, is told of every attempt's outcome (nil error: passed), for metrics. It
	// runs on a worker and must not block.
	Attempted func(err error)

	mu         sync.Mutex
	active     int                 // probes started, not yet stopped nor passed
	due        taskHeap            // probes waiting for their next attempt
	pods       map[owner]*podShare // the pods with probes or attempts running
	namespaces map[string]*nsShare // the namespaces of those pods
	turns      []*nsShare          // namespaces with attempts waiting for a worker, next turn first
	busy       int                 // running worker goroutines
	running    int                 // attempts running
	slowBusy   int                 // running attempts of probes whose last attempt was slow
	scheduling bool                // whether the scheduler goroutine runs
	wake       chan struct{}       // tells the scheduler the earliest due time changed
	netns      map[string]*nsFile  // open namespaces by path, shared by the probes of a pod
	ownDiag    diagSocket          // lists the daemon's own namespace's listeners, for hostNetwork pods

	// setns is unix.Setns when nil; tests replace it to make entering or leaving a namespace
	// fail or panic without root.
	setns func(fd, nstype int) error
}

// NewRunner returns a Runner with the default settings, logging to log.
func NewRunner(log *slog.Logger) *Runner {
	return &Runner{
		Interval:          DefaultInterval,
		FastFor:           DefaultFastFor,
		MaxInterval:       DefaultMaxInterval,
		AttemptsPerSecond: DefaultAttemptsPerSecond,
		Timeout:           DefaultTimeout,
		Workers:           DefaultWorkers,
		MaxProbes:         DefaultMaxProbes,
		Log:               log,
	}
}

// nsFile is an open network namespace, kept open while any probe uses it so that a pod's probes
// do not each hold a descriptor, and so the namespace cannot be replaced under a path mid-probe.
type nsFile struct {
	path string
	f    *os.File
	refs int
	// diag lists the namespace's listening sockets; created in the namespace by the first attempt.
	diag diagSocket
}

// owner names the pod a probe is for. The zero owner stands for probes no pod caused (Start).
type owner struct{ namespace, podUID string }

// podShare is one pod's share of the runner: how many probes it has, how many of its attempts
// run, and its attempts waiting for a worker.
type podShare struct {
	owner
	ns     *nsShare
	probes int     // started, not yet stopped nor passed
	busy   int     // attempts running
	due    []*task // attempts due while no worker could take them, oldest first
}

// nsShare is one namespace's share of the runner.
type nsShare struct {
	name   string
	probes int
	busy   int
	pods   []*podShare // pods with attempts waiting for a worker, next turn first
}

// task is one probe. It is always in exactly one place — the due heap, its pod's waiting
// attempts, or a worker — so it can never be queued twice and the queues are bounded by the
// number of probes.
type task struct {
	pod      *podShare
	probe    *decl.Probe
	netns    string
	ns       *nsFile // nil for the daemon's own namespace; guarded by Runner.mu unless a worker owns the task
	ready    func()
	interval time.Duration
	timeout  time.Duration
	setns    func(fd, nstype int) error
	ctx      context.Context // cancelled by stop, to free a worker from an attempt that no longer matters
	cancel   context.CancelFunc

	// Guarded by Runner.mu.
	begun      time.Time     // when the first attempt was due, which the back-off counts from
	period     time.Duration // the current period, Interval until the back-off starts
	passes     int           // consecutive passed attempts, towards the probe's SuccessThreshold
	at         time.Time     // when the next attempt is due
	index      int           // position in the due heap, -1 when not in it
	busy       bool          // waiting for a worker or running: a worker owns it and will release it
	queued     bool          // waiting for a worker, in its pod's due attempts
	stopped    bool
	passed     bool
	warned     bool // whether entering the namespace failing was already logged
	diagWarned bool // whether listing the listeners failing was already logged
	// slow says the probe's last attempt took slowAttempt or more: a server that answers late or
	// never. Its next attempts share a few workers with every other slow probe of the node, so that
	// slow servers in any number of namespaces leave workers to everyone else.
	slow bool
	// runningSlow is set while a worker runs a slow attempt: it counts in Runner.slowBusy.
	runningSlow bool
}

// Start is StartPod for a probe no pod caused: it shares the workers fairly with the pods' probes,
// and counts only against MaxProbes.
func (r *Runner) Start(netns string, p *decl.Probe, ready func()) (stop func(), err error) {
	return r.StartPod("", "", netns, p, ready)
}

// StartPod probes p, for the pod podUID of namespace, in the network namespace at netns ("" for
// the daemon's own) until it passes, then calls ready once, from a worker goroutine. It fails when
// p is invalid, when netns cannot be opened, or when MaxProbes probes are already active on the
// node, MaxProbesPerNamespace in namespace or MaxProbesPerPod for the pod; the probe is then not
// started.
//
// stop ends the probe. It may be called any number of times, from any goroutine, including with a
// lock that ready takes: it never waits for an attempt or for ready. The pass is decided under the
// Runner's lock, so once stop has returned no attempt can decide to call ready; only a pass that
// was decided before stop can still be completing its ready call.
func (r *Runner) StartPod(namespace, podUID, netns string, p *decl.Probe, ready func()) (stop func(), err error) {
	if err := validate(p); err != nil {
		return nil, err
	}
	if ready == nil {
		return nil, errors.New("probe: ready callback is nil")
	}
	o := owner{namespace: namespace, podUID: podUID}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.admitLocked(o, netns, p); err != nil {
		return nil, err
	}
	timeout := positive(r.Timeout, DefaultTimeout)
	if p.Timeout > 0 && p.Timeout < timeout {
		timeout = p.Timeout
	}
	// kubelet runs no readiness attempt before initialDelaySeconds; neither does podorder.
	first := time.Now().Add(p.InitialDelay)
	t := &task{
		probe:    p,
		netns:    netns,
		ready:    ready,
		interval: positive(r.Interval, DefaultInterval),
		timeout:  timeout,
		index:    -1,
		begun:    first,
		at:       first,
		setns:    r.setns,
	}
	t.period = t.interval
	if t.setns == nil {
		t.setns = unix.Setns
	}
	if netns != "" {
		if t.ns, err = r.openLocked(netns); err != nil {
			return nil, err
		}
	}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	t.pod = r.shareLocked(o)
	r.active++
	t.pod.probes++
	t.pod.ns.probes++
	r.pushLocked(t)
	return func() { r.stop(t) }, nil
}

// admitLocked refuses a probe beyond the node's, the namespace's or the pod's limit. The pod's
// limit counts every probe it causes, annotations and readinessProbes alike: the refused probe's
// readiness then comes from kubelet, so a pod asking for more only loses speed.
func (r *Runner) admitLocked(o owner, netns string, p *decl.Probe) error {
	if max := positive(r.MaxProbes, DefaultMaxProbes); r.active >= max {
		return fmt.Errorf("node probe limit of %d reached: not probing %s in %s; raise MaxProbes or reduce podorder.dev/probe annotations on this node",
			max, p, nsName(netns))
	}
	if o == (owner{}) {
		return nil
	}
	if ns, max := r.namespaces[o.namespace], positive(r.MaxProbesPerNamespace, DefaultMaxProbesPerNamespace); ns != nil && ns.probes >= max {
		return fmt.Errorf("namespace %s already has %d podorder probes on this node, its limit of %d: not probing %s; "+
			"spread the namespace's pods over more nodes, or let kubelet judge readiness with %s%s.<container>: kubelet",
			o.namespace, ns.probes, max, p, decl.Domain, decl.KindReadiness)
	}
	if pod, max := r.pods[o], positive(r.MaxProbesPerPod, DefaultMaxProbesPerPod); pod != nil && pod.probes >= max {
		return fmt.Errorf("pod %s in namespace %s already has %d podorder probes (podorder.dev/probe keys and the readinessProbes of containers others wait for), its limit of %d: not probing %s; "+
			"wait for fewer containers' readiness, or let kubelet judge it with %s%s.<container>: kubelet",
			o.podUID, o.namespace, pod.probes, max, p, decl.Domain, decl.KindReadiness)
	}
	return nil
}

// shareLocked returns o's share of the runner, making it for o's first probe.
func (r *Runner) shareLocked(o owner) *podShare {
	if pod := r.pods[o]; pod != nil {
		return pod
	}
	ns := r.namespaces[o.namespace]
	if ns == nil {
		ns = &nsShare{name: o.namespace}
		if r.namespaces == nil {
			r.namespaces = map[string]*nsShare{}
		}
		r.namespaces[o.namespace] = ns
	}
	pod := &podShare{owner: o, ns: ns}
	if r.pods == nil {
		r.pods = map[owner]*podShare{}
	}
	r.pods[o] = pod
	return pod
}

// endLocked counts t out of the active probes: it was stopped or it passed.
func (r *Runner) endLocked(t *task) {
	r.active--
	t.pod.probes--
	t.pod.ns.probes--
	r.dropLocked(t.pod)
}

// dropLocked forgets pod's share, and its namespace's, once nothing of theirs remains.
func (r *Runner) dropLocked(pod *podShare) {
	if pod.probes > 0 || pod.busy > 0 || r.pods[pod.owner] != pod {
		return
	}
	delete(r.pods, pod.owner)
	if ns := pod.ns; ns.probes == 0 && ns.busy == 0 && r.namespaces[ns.name] == ns {
		delete(r.namespaces, ns.name)
	}
}

func validate(p *decl.Probe) error {
	if p == nil {
		return errors.New("probe: nil probe")
	}
	switch p.Kind {
	case "tcp", "http", "https", "grpc":
	default:
		return fmt.Errorf("probe %s: kind %q is none of tcp, http, https and grpc", p, p.Kind)
	}
	if p.Port < 1 || p.Port > 65535 {
		return fmt.Errorf("probe %s: port %d is outside 1-65535", p, p.Port)
	}
	return nil
}

func positive[T int | time.Duration](v, def T) T {
	if v > 0 {
		return v
	}
	return def
}

func nsName(netns string) string {
	if netns == "" {
		return "the daemon's network namespace"
	}
	return "network namespace " + netns
}

func (r *Runner) logger() *slog.Logger {
	if r.Log != nil {
		return r.Log
	}
	return slog.Default()
}

// openLocked returns the shared handle on the namespace at path, opening it for its first probe.
func (r *Runner) openLocked(path string) (*nsFile, error) {
	if n := r.netns[path]; n != nil {
		n.refs++
		return n, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("cannot probe in pod network namespace: %w (is the sandbox gone?)", err)
	}
	if r.netns == nil {
		r.netns = map[string]*nsFile{}
	}
	n := &nsFile{path: path, f: f, refs: 1}
	r.netns[path] = n
	return n, nil
}

// releaseLocked drops t's hold on its namespace. It runs only when no worker owns t, so the
// descriptor is never closed, and its number reused, under a worker about to setns with it.
func (r *Runner) releaseLocked(t *task) {
	n := t.ns
	if n == nil {
		return
	}
	t.ns = nil
	if n.refs--; n.refs == 0 {
		delete(r.netns, n.path)
		n.diag.close()
		if err := n.f.Close(); err != nil {
			r.logger().Warn("closing pod network namespace", "netns", n.path, "error", err)
		}
	}
}

func (r *Runner) stop(t *task) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if t.stopped || t.passed {
		return
	}
	t.stopped = true
	t.cancel()
	if t.queued {
		r.unqueueLocked(t)
	}
	r.endLocked(t)
	if t.index >= 0 {
		head := t.index == 0
		heap.Remove(&r.due, t.index)
		if head {
			r.wakeLocked() // the scheduler may now exit, or sleep longer
		}
	}
	if !t.busy {
		r.releaseLocked(t)
	}
}

// pushLocked schedules t's next attempt, starting the scheduler if it exited for lack of work:
// it exits so that a node without probes runs no probe goroutine at all.
func (r *Runner) pushLocked(t *task) {
	heap.Push(&r.due, t)
	if !r.scheduling {
		r.scheduling = true
		if r.wake == nil {
			r.wake = make(chan struct{}, 1)
		}
		go r.schedule()
		return
	}
	if t.index == 0 {
		r.wakeLocked()
	}
}

func (r *Runner) wakeLocked() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// schedule hands due probes to workers until no probe is waiting.
func (r *Runner) schedule() {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		r.mu.Lock()
		now := time.Now()
		for len(r.due) > 0 && !r.due[0].at.After(now) {
			r.dispatchLocked(heap.Pop(&r.due).(*task))
		}
		if len(r.due) == 0 {
			r.scheduling = false
			r.mu.Unlock()
			return
		}
		timer.Reset(r.due[0].at.Sub(now))
		r.mu.Unlock()
		select {
		case <-timer.C:
		case <-r.wake:
			timer.Stop()
		}
	}
}

// dispatchLocked queues t's due attempt in its pod's turn and starts workers while an idle worker
// slot and an attempt that may run both exist.
func (r *Runner) dispatchLocked(t *task) {
	t.busy, t.queued = true, true
	pod := t.pod
	if len(pod.due) == 0 {
		if len(pod.ns.pods) == 0 {
			r.turns = append(r.turns, pod.ns)
		}
		pod.ns.pods = append(pod.ns.pods, pod)
	}
	pod.due = append(pod.due, t)
	for r.busy < positive(r.Workers, DefaultWorkers) {
		next := r.takeLocked()
		if next == nil {
			return
		}
		r.busy++
		go r.work(next)
	}
}

// takeLocked takes the next waiting attempt: that of the first namespace in turn below its worker
// limit, of its first pod in turn below its limit, oldest first. The namespace and the pod then
// wait for their next turn behind the others. A namespace or pod at its limit keeps its place:
// its attempts wait for one of its own to end, which frees a worker that takes them first.
// It costs O(namespaces + pods waiting), with no allocation once the slices have grown.
func (r *Runner) takeLocked() *task {
	workers := positive(r.Workers, DefaultWorkers)
	podLimit, nsLimit, slowLimit := max(1, workers/2), max(1, workers-1), max(1, workers/2)
	for i, ns := range r.turns {
		if ns.busy >= nsLimit {
			continue
		}
		for j, pod := range ns.pods {
			if pod.busy >= podLimit || (pod.due[0].slow && r.slowBusy >= slowLimit) ||
				// The last free worker is for a pod with nothing running: no set of pods
				// can keep a newcomer waiting for one of their attempts to end.
				(pod.busy > 0 && r.running >= workers-1) {
				continue
			}
			t := pod.due[0]
			pod.due = slices.Delete(pod.due, 0, 1)
			ns.pods = slices.Delete(ns.pods, j, j+1)
			if len(pod.due) > 0 {
				ns.pods = append(ns.pods, pod)
			}
			r.turns = slices.Delete(r.turns, i, i+1)
			if len(ns.pods) > 0 {
				r.turns = append(r.turns, ns)
			}
			t.queued = false
			pod.busy++
			ns.busy++
			r.running++
			if t.runningSlow = t.slow; t.slow {
				r.slowBusy++
			}
			return t
		}
	}
	return nil
}

// unqueueLocked takes a stopped t out of its pod's waiting attempts.
func (r *Runner) unqueueLocked(t *task) {
	t.queued, t.busy = false, false
	pod := t.pod
	pod.due = slices.DeleteFunc(pod.due, func(d *task) bool { return d == t })
	if len(pod.due) > 0 {
		return
	}
	ns := pod.ns
	ns.pods = slices.DeleteFunc(ns.pods, func(p *podShare) bool { return p == pod })
	if len(ns.pods) == 0 {
		r.turns = slices.DeleteFunc(r.turns, func(n *nsShare) bool { return n == ns })
	}
}

// nextLocked takes the next waiting attempt, or gives up the worker slot when none may run.
func (r *Runner) nextLocked() *task {
	if t := r.takeLocked(); t != nil {
		return t
	}
	r.busy--
	return nil
}

// work runs attempts until no probe is due. Workers exit when idle rather than wait, so the
// pool costs nothing on a node without probes and never exceeds Workers goroutines.
func (r *Runner) work(t *task) {
	for t != nil {
		var tainted bool
		start := time.Now()
		err := r.attempt(t, &tainted)
		if tainted {
			// Run nothing more here, not even a log handler that might open a socket: the thread
			// may still be in the pod's namespace. This goroutine exits still locked to it, so the
			// runtime discards the thread, and a new goroutine takes over its worker slot.
			go r.takeOver(t, start, err)
			return
		}
		r.finish(t, start, err)
		r.mu.Lock()
		t = r.nextLocked()
		r.mu.Unlock()
	}
}

// takeOver finishes the attempt of a worker whose thread was discarded and works in its place,
// so the pool keeps its size.
func (r *Runner) takeOver(t *task, start time.Time, err error) {
	r.logger().Error("cannot return a probe worker to the daemon's network namespace; discarding its thread",
		"netns", t.netns, "probe", t.probe.String(), "error", err)
	r.finish(t, start, err)
	r.mu.Lock()
	t = r.nextLocked()
	r.mu.Unlock()
	r.work(t)
}

// finish records the outcome of one attempt of t and calls ready when it passed.
func (r *Runner) finish(t *task, start time.Time, err error) {
	if r.Attempted != nil && !errors.Is(err, context.Canceled) {
		r.Attempted(err)
	}
	r.mu.Lock()
	t.busy = false
	t.pod.busy--
	t.pod.ns.busy--
	r.running--
	if t.runningSlow {
		r.slowBusy--
		t.runningSlow = false
	}
	slowAfter := slowAttempt
	if t.timeout > 0 {
		slowAfter = min(slowAfter, t.timeout/2)
	}
	t.slow = timedOut(err) || time.Since(start) >= slowAfter
	r.dropLocked(t.pod)
	switch {
	case t.stopped:
		r.releaseLocked(t)
		r.mu.Unlock()
		r.logger().Debug("probe attempt ended after stop", "probe", t.probe.String(), "error", err)
		return
	case err != nil:
		t.passes = 0
		r.scheduleLocked(t, start, true)
		r.mu.Unlock()
		if pe := (*panicError)(nil); errors.As(err, &pe) {
			r.logger().Error("probe attempt panicked", "probe", t.probe.String(), "netns", t.netns, "panic", pe.value, "stack", pe.stack)
		}
		r.logger().Debug("probe attempt failed", "probe", t.probe.String(), "netns", t.netns, "error", err)
		return
	case t.passes+1 < t.probe.SuccessThreshold:
		t.passes++
		r.scheduleLocked(t, start, false)
		r.mu.Unlock()
		return
	}
	t.passed = true
	t.cancel()
	r.endLocked(t)
	r.releaseLocked(t)
	r.mu.Unlock()
	defer func() {
		if v := recover(); v != nil {
			r.logger().Error("probe ready callback panicked", "probe", t.probe.String(), "panic", v, "stack", string(debug.Stack()))
		}
	}()
	t.ready()
}

// slowAttempt is how long an attempt may take before its probe counts as slow: a probe of the pod's
// own network answers in a few milliseconds, even on a loaded node.
const slowAttempt = 250 * time.Millisecond

// timedOut reports whether an attempt ended because its time ran out, rather than with an answer:
// the mark of a server that accepts and never answers.
func timedOut(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// scheduleLocked queues t's next attempt one period after start: the fast period at first, doubled
// after each failure once FastFor has passed, and never shorter than the node-wide budget allows.
func (r *Runner) scheduleLocked(t *task, start time.Time, failed bool) {
	if failed && start.Sub(t.begun) >= positive(r.FastFor, DefaultFastFor) {
		t.period = min(2*t.period, max(positive(r.MaxInterval, DefaultMaxInterval), t.interval))
	}
	period := t.period
	if budget := time.Duration(r.active) * time.Second / time.Duration(positive(r.AttemptsPerSecond, DefaultAttemptsPerSecond)); period < budget {
		period = budget
	}
	t.at = start.Add(period)
	if now := time.Now(); t.at.Before(now) {
		t.at = now
	}
	r.pushLocked(t)
}

// panicError is a panic during an attempt, kept to be logged by finish, on a thread known to be
// in the daemon's namespace.
type panicError struct {
	value any
	stack string
}

func (e *panicError) Error() string { return fmt.Sprintf("panic: %v", e.value) }

// attempt runs one check of t. A panic fails the attempt instead of the daemon. *tainted is set
// when the thread could not be returned to the daemon's namespace and is still locked: the caller
// must then exit without unlocking it. attempt logs nothing, as it may end on such a thread.
func (r *Runner) attempt(t *task, tainted *bool) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &panicError{value: v, stack: string(debug.Stack())}
		}
	}()
	ctx, cancel := context.WithTimeout(t.ctx, t.timeout)
	defer cancel()
	// t.ns is stable while the worker owns t: it is released only when no worker does.
	conn, addr, err := r.dial(ctx, t, tainted)
	if err != nil {
		return err
	}
	defer conn.Close()
	return check(ctx, conn, addr, t)
}

// dial connects to the probe's port from the pod's namespace, once something listens on it. Listing
// the listeners needs no namespace switch (the namespace's diag socket was created in it), so an
// attempt on a closed port costs two netlink dumps and no connection; the thread enters the
// namespace only to create the socket it connects with.
func (r *Runner) dial(ctx context.Context, t *task, tainted *bool) (conn net.Conn, addr string, err error) {
	addrs, err := r.listening(ctx, t, tainted)
	if err != nil {
		return nil, "", err
	}
	var d net.Dialer
	err = r.inNetns(t, tainted, func() error {
		var err error
		for _, addr = range addrs {
			if conn, err = d.DialContext(ctx, "tcp", addr); err == nil {
				return nil
			}
		}
		return err
	})
	if err != nil && conn != nil {
		conn.Close()
		conn = nil
	}
	return conn, addr, err
}

// listening returns the addresses to connect to once the probe's port listens (see
// listeningAddrs), or errNotListening. When the kernel cannot list listeners, it returns loopback
// unchecked: the connect then decides, as it did before the check existed.
func (r *Runner) listening(ctx context.Context, t *task, tainted *bool) ([]string, error) {
	ds := &r.ownDiag
	if t.ns != nil {
		ds = &t.ns.diag
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(t.timeout)
	}
	inNetns := func(create func() error) error { return r.inNetns(t, tainted, create) }
	ls, err := ds.listeners(inNetns, uint16(t.probe.Port), deadline)
	if *tainted || errors.Is(err, errEnter) {
		return nil, err
	}
	if err != nil {
		r.warnDiag(t, err)
		return []string{hostPort("127.0.0.1", t.probe.Port)}, nil
	}
	return listeningAddrs(t.probe, ls)
}

// inNetns runs fn on this thread inside t's network namespace (directly for the daemon's own). fn
// must only create sockets and files: a socket stays in the namespace it was created in, so the
// thread is in the pod's namespace for an instant, not for the attempt.
func (r *Runner) inNetns(t *task, tainted *bool, fn func() error) (err error) {
	if t.ns == nil {
		return fn()
	}
	setns := t.setns
	runtime.LockOSThread()
	self, err := os.Open(selfNetns)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("remember the daemon's network namespace: %w", err)
	}
	defer self.Close()
	entering := true
	defer func() {
		if !entering {
			return
		}
		// Also on panic: whatever happened, the thread must go back before it runs anything else.
		if berr := leave(setns, int(self.Fd())); berr != nil {
			*tainted = true
			err = fmt.Errorf("leave %s: %w", t.netns, berr)
			return
		}
		runtime.UnlockOSThread()
	}()
	if err := setns(int(t.ns.f.Fd()), unix.CLONE_NEWNET); err != nil {
		// A failed setns leaves the thread where it was.
		entering = false
		runtime.UnlockOSThread()
		r.warnEnter(t, err)
		return fmt.Errorf("%w %s: %w", errEnter, t.netns, err)
	}
	return fn()
}

// errEnter marks the failure to enter a pod's network namespace, which fails the attempt whatever
// it was trying to do there.
var errEnter = errors.New("enter")

// leave returns the thread to the namespace open at fd. A panic counts as a failure: the thread's
// namespace is then unknown, and it must be discarded rather than run other goroutines.
func leave(setns func(fd, nstype int) error, fd int) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("setns panicked: %v", v)
		}
	}()
	return setns(fd, unix.CLONE_NEWNET)
}

// warnDiag logs, once per probe, that the kernel would not list the namespace's listeners.
func (r *Runner) warnDiag(t *task, err error) {
	r.mu.Lock()
	first := !t.diagWarned
	t.diagWarned = true
	r.mu.Unlock()
	if first {
		r.logger().Warn("cannot list the listening sockets of the pod's network namespace; connecting at every attempt instead",
			"netns", t.netns, "probe", t.probe.String(), "error", err)
	}
}

// warnEnter logs, once per probe, that its namespace cannot be entered: retrying every interval
// would otherwise flood the log with the same line.
func (r *Runner) warnEnter(t *task, err error) {
	r.mu.Lock()
	first := !t.warned
	t.warned = true
	r.mu.Unlock()
	if first {
		r.logger().Warn("cannot enter pod network namespace to probe; retrying", "netns", t.netns, "probe", t.probe.String(), "error", err)
	}
}

// taskHeap orders probes by when their next attempt is due.
type taskHeap []*task

func (h taskHeap) Len() int           { return len(h) }
func (h taskHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h taskHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}
func (h *taskHeap) Push(x any) {
	t := x.(*task)
	t.index = len(*h)
	*h = append(*h, t)
}
func (h *taskHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	old[len(old)-1] = nil
	t.index = -1
	*h = old[:len(old)-1]
	return t
}
