// Package probe runs podorder's node-local readiness checks — podorder.dev/probe.<c> annotations
// and containers' own tcp, http and grpc readinessProbes — from inside the pod's network namespace,
// every 10 ms at first and backing off to 100 ms, so readiness is seen within milliseconds instead
// of kubelet's probe period plus its status relist.
//
// When the daemon follows a ListenSource (the kernel's LISTEN events, events.go), a probe whose
// port is closed is not polled every 10 ms: an event for its port makes it due at once, followed
// by a short burst, and the periodic attempts become a safety net of 1 s backing off to 10 s (a
// source that loses events says so, and every probe is attempted then). Once its port listens, a
// probe is polled as without events, since no event says when an HTTP or gRPC server turns ready.
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
	// EventInterval is the period of a probe whose port was closed at its last attempt while a
	// ListenSource is followed (DefaultEventInterval when zero): a safety net.
	EventInterval time.Duration
	// AfterEventInterval is that period's first value after an event for the probe's port, once
	// its burst found the port still closed (DefaultAfterEventInterval when zero).
	AfterEventInterval time.Duration
	// EventMaxInterval caps that period's back-off (DefaultEventMaxInterval when zero).
	EventMaxInterval time.Duration
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
	live       bool                // a ListenSource is followed (Follow)
	byPort     map[uint16][]*task  // active probes by port, for events
	ownIno     uint64              // the inode of the daemon's network namespace, once known
	// lostAt is when a loss of events last made the closed ports' probes due; losses counts the
	// losses reported since lostLoggedAt, when the last line about them was logged.
	lostAt, lostLoggedAt time.Time
	losses               int

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
		EventInterval:     DefaultEventInterval,
		EventMaxInterval:  DefaultEventMaxInterval,
		AttemptsPerSecond: DefaultAttemptsPerSecond,
		Timeout:           DefaultTimeout,
		Workers:           DefaultWorkers,
		MaxProbes:         DefaultMaxProbes,
		Log:               log,
	}
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
		probe:     p,
		port:      uint16(p.Port),
		netns:     netns,
		ready:     ready,
		interval:  positive(r.Interval, DefaultInterval),
		timeout:   timeout,
		index:     -1,
		notBefore: first,
		begun:     first,
		at:        first,
		setns:     r.setns,
	}
	t.period = t.interval
	t.slowPeriod = positive(r.EventInterval, DefaultEventInterval)
	if t.setns == nil {
		t.setns = unix.Setns
	}
	if netns != "" {
		if t.ns, err = r.openLocked(netns); err != nil {
			return nil, err
		}
		t.netnsIno = t.ns.ino
	} else {
		t.netnsIno = r.ownNetnsLocked()
	}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	t.pod = r.shareLocked(o)
	r.active++
	t.pod.probes++
	t.pod.ns.probes++
	r.indexLocked(t)
	r.pushLocked(t)
	return func() { r.stop(t) }, nil
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
