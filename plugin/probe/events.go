package probe

import (
	"container/heap"
	"context"
	"os"
	"slices"
	"syscall"
	"time"
)

// Listen is the kernel's word that a TCP socket started listening: listen(2) on Port, in the
// network namespace whose inode is Netns (0 when the source cannot tell).
type Listen struct {
	Port uint16
	// Family is the socket's address family, unix.AF_INET or unix.AF_INET6.
	Family uint16
	// Netns is the inode number of the socket's network namespace, as stat(2) shows it for
	// /proc/<pid>/ns/net; 0 when unknown, which matches every namespace.
	Netns uint64
	// Lost says that the source dropped events before this one (its buffer was full): any port
	// may have started listening unseen, so every probe of a closed port is attempted again. Its
	// other fields are zero.
	Lost bool
}

// ListenSource reports the node's sockets as they start listening (kernlisten is one).
type ListenSource interface {
	// Watch calls listened with each batch of events, from one goroutine, until ctx ends (it then
	// returns nil) or the source fails (it returns why).
	Watch(ctx context.Context, listened func([]Listen)) error
}

// Settings of probes while a ListenSource is live.
const (
	// DefaultEventInterval is the period of a probe whose port was closed at its last attempt
	// while events are live: the kernel says when the port listens, and a source says when it lost
	// events (a Lost event), so this is only a safety net, against what no event says.
	DefaultEventInterval = time.Second
	// DefaultEventMaxInterval is where that period's back-off stops: 500 probes waiting on closed
	// ports then cost 50 attempts a second, about 0.3% of a core.
	DefaultEventMaxInterval = 10 * time.Second
	// ListenBurst is how many attempts follow, ListenBurstGap apart, the one an event makes due:
	// the kernel announces TCP_LISTEN a moment before the socket accepts connections, and HTTP or
	// gRPC servers often answer ready a moment after they listen.
	ListenBurst = 5
	// ListenBurstGap separates the attempts of a burst.
	ListenBurstGap = 2 * time.Millisecond
	// DefaultAfterEventInterval is the safety net's first period after an event or a loss, should
	// the burst end with the port still closed (a listener preempted between announcing TCP_LISTEN
	// and taking its port): it backs off from there as from DefaultEventInterval.
	DefaultAfterEventInterval = 100 * time.Millisecond
	// LostEvery is how often at most a loss of events makes the closed ports' probes due: a pod
	// that keeps the ring full costs the other pods' probes this polling period, not more.
	LostEvery = 100 * time.Millisecond
)

// Follow makes r's probes follow src until ctx ends or src fails, and returns src's error. While
// it runs, a probe whose port is closed is attempted only every EventInterval (backing off to
// EventMaxInterval), and an event for its port makes it due at once, followed by a short burst;
// once its port listens it is probed as without events. When Follow returns, probes poll again.
func (r *Runner) Follow(ctx context.Context, src ListenSource) error {
	r.setLive(true)
	defer r.setLive(false)
	return src.Watch(ctx, r.Listened)
}

// setLive switches between following events and polling. Back to polling, a probe waiting the
// safety net's longer period is brought forward to its polling period.
func (r *Runner) setLive(live bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.live = live
	if live {
		return
	}
	now := time.Now()
	for _, t := range r.due {
		if at := t.last.Add(t.period); at.Before(t.at) {
			t.at = latest(at, now, t.notBefore)
		}
	}
	heap.Init(&r.due)
	r.wakeLocked()
}

// Listened makes due at once every probe of an event's port in the event's namespace (in every
// namespace when the event does not say), and arms its burst; after a Lost event, every probe of a
// closed port (lostLocked). It costs a map lookup per event: a probe that is already due, waiting
// for a worker or running is not queued again, and no probe is attempted sooner after its last
// attempt than the node's attempt budget allows.
func (r *Runner) Listened(events []Listen) {
	now := time.Now()
	var warn int
	defer func() {
		if warn > 0 {
			r.logger().Warn("readiness events were lost (the kernel's buffer was full); the probes of closed ports were attempted again",
				"losses_since_last_line", warn)
		}
	}()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ev := range events {
		if ev.Lost {
			warn = r.lostLocked(now)
			continue
		}
		for _, t := range r.byPort[ev.Port] {
			if ev.Netns != 0 && t.netnsIno != 0 && ev.Netns != t.netnsIno {
				continue
			}
			r.heardLocked(t, now)
		}
	}
	// Start the attempts made due here, rather than through the scheduler's goroutine: a hand-off
	// between goroutines costs a wake-up, on the path from the event to the release.
	r.dispatchDueLocked(now)
}

// lostLocked makes every probe of a closed port due, as if each had heard its port: events were
// lost, and any of them may have been its port's. A probe whose port listens is polled anyway. It
// acts at most every LostEvery, and the node's attempt budget spreads the attempts; it returns
// the losses to log (outside the lock) once a minute at most, 0 otherwise.
func (r *Runner) lostLocked(now time.Time) int {
	r.losses++
	if now.Sub(r.lostAt) >= LostEvery {
		r.lostAt = now
		for _, ts := range r.byPort {
			for _, t := range ts {
				if t.closed {
					r.heardLocked(t, now)
				}
			}
		}
	}
	if now.Sub(r.lostLoggedAt) < time.Minute {
		return 0
	}
	n := r.losses
	r.losses, r.lostLoggedAt = 0, now
	return n
}

// heardLocked restarts t's probing as if it had just begun, with a burst, and makes it due now.
func (r *Runner) heardLocked(t *task, now time.Time) {
	if now.Before(t.notBefore) {
		return // its first attempt is set for the end of initialDelaySeconds, which stands
	}
	t.begun, t.period, t.slowPeriod, t.burst = now, t.interval, positive(r.AfterEventInterval, DefaultAfterEventInterval), ListenBurst
	if t.index < 0 {
		return // waiting for a worker or running: the attempts that follow it are the burst
	}
	at := latest(now, t.last.Add(r.budgetLocked()))
	if !at.Before(t.at) {
		return
	}
	t.at = at
	heap.Fix(&r.due, t.index)
	if t.index == 0 {
		r.wakeLocked()
	}
}

// latest is the latest of ts.
func latest(ts ...time.Time) time.Time {
	l := ts[0]
	for _, t := range ts[1:] {
		if t.After(l) {
			l = t
		}
	}
	return l
}

// budgetLocked is the shortest period the node's AttemptsPerSecond allows each active probe.
func (r *Runner) budgetLocked() time.Duration {
	return time.Duration(r.active) * time.Second / time.Duration(positive(r.AttemptsPerSecond, DefaultAttemptsPerSecond))
}

// indexLocked files t under its port, for events.
func (r *Runner) indexLocked(t *task) {
	if r.byPort == nil {
		r.byPort = map[uint16][]*task{}
	}
	r.byPort[t.port] = append(r.byPort[t.port], t)
}

// unindexLocked removes t from its port's probes.
func (r *Runner) unindexLocked(t *task) {
	ts := slices.DeleteFunc(r.byPort[t.port], func(o *task) bool { return o == t })
	if len(ts) == 0 {
		delete(r.byPort, t.port)
		return
	}
	r.byPort[t.port] = ts
}

// ownNetnsLocked is the inode of the daemon's network namespace, 0 when unknown.
func (r *Runner) ownNetnsLocked() uint64 {
	if r.ownIno == 0 {
		if fi, err := os.Stat(selfNetns); err == nil {
			r.ownIno = inode(fi)
		}
	}
	return r.ownIno
}

// inode is a file's inode number, 0 when the platform does not say.
func inode(fi os.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ino
	}
	return 0
}
