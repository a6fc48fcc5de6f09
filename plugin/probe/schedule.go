package probe

import (
	"container/heap"
	"time"
)

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
		r.dispatchDueLocked(now)
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

// dispatchDueLocked hands every probe due by now to the workers.
func (r *Runner) dispatchDueLocked(now time.Time) {
	for len(r.due) > 0 && !r.due[0].at.After(now) {
		r.dispatchLocked(heap.Pop(&r.due).(*task))
	}
}

// scheduleLocked queues t's next attempt one period after start: the fast period at first, doubled
// after each failure once FastFor has passed, and never shorter than the node-wide budget allows.
// After an event the burst's gap comes first; while events are followed and the port is closed,
// the safety net's longer period replaces the fast one.
func (r *Runner) scheduleLocked(t *task, start time.Time, failed bool) {
	t.last = start
	backOff := failed && start.Sub(t.begun) >= positive(r.FastFor, DefaultFastFor)
	var period time.Duration
	switch {
	case failed && t.burst > 0:
		t.burst--
		period = ListenBurstGap
	case failed && r.live && t.closed:
		if backOff {
			t.slowPeriod = min(2*t.slowPeriod, positive(r.EventMaxInterval, DefaultEventMaxInterval))
		}
		period = max(t.slowPeriod, t.interval)
	default:
		if backOff {
			t.period = min(2*t.period, max(positive(r.MaxInterval, DefaultMaxInterval), t.interval))
		}
		period = t.period
	}
	period = max(period, r.budgetLocked())
	t.at = start.Add(period)
	if now := time.Now(); t.at.Before(now) {
		t.at = now
	}
	r.pushLocked(t)
}
