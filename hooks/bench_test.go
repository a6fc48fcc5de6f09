package hooks

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/podorder/podorder/hooks/dependency"
	"github.com/podorder/podorder/hooks/tombstone"
)

// BenchmarkRelease measures the time from a tombstone write that meets the hold to the waiter's
// return: podorder's inotify waiter side by side with the polling loop it replaces.
func BenchmarkRelease(b *testing.B) {
	deps := []dependency.Dependency{{Container: "db", Condition: dependency.Started}}
	waiters := []struct {
		name   string
		wake   bool
		period time.Duration // of a polling waiter
		wait   func(Request) error
	}{
		{"wake-fifo", true, 0, func(r Request) error { return Wait(context.Background(), r) }},
		{"inotify", false, 0, func(r Request) error { return Wait(context.Background(), r) }},
		{"poll-10ms", false, 10 * time.Millisecond, func(r Request) error { return pollWait(r, 10*time.Millisecond) }},
		{"poll-100ms", false, 100 * time.Millisecond, func(r Request) error { return pollWait(r, 100*time.Millisecond) }},
	}
	for _, w := range waiters {
		b.Run(w.name, func(b *testing.B) {
			var total time.Duration
			for b.Loop() {
				p := newPod(b, w.wake, "app")
				done := make(chan time.Time, 1)
				go func() {
					// The daemon gives the hook its wake FIFO; without one the waiter falls back to inotify.
					if err := w.wait(Request{Dir: p.dir, Container: "app", Wake: p.wakePath, Waits: deps, Timeout: time.Minute}); err != nil {
						b.Error(err)
					}
					done <- time.Now()
				}()
				// Let the waiter block; the release is what is timed. A poller's tries start when it
				// does, so a fixed delay would put the write at the same phase of its period every
				// time (just after a try, the worst case): a random part of the period makes the phase
				// random, as a dependency's readiness is to a real poller.
				delay := 5 * time.Millisecond
				if w.period > 0 {
					delay += rand.N(w.period)
				}
				time.Sleep(delay)
				now := time.Now()
				p.write(b, &tombstone.Tombstone{Container: "db", StartedAt: &now, ReleasedAt: &now})
				total += (<-done).Sub(now)
			}
			b.ReportMetric(float64(total.Microseconds())/float64(b.N), "µs-release")
		})
	}
}

// pollWait is the baseline: re-read the tombstones on a fixed period.
func pollWait(r Request, period time.Duration) error {
	for {
		if _, v, _ := evaluate(r); v == dependency.Met {
			return nil
		}
		time.Sleep(period)
	}
}
