package podstate

import "time"

// Found is an attempt as the runtime reports it at a resynchronization.
type Found struct {
	// Started is set when the runtime started it (running or stopped).
	Started bool
	// Stopped is set when it has exited.
	Stopped                          bool
	CreatedAt, StartedAt, FinishedAt time.Time
	ExitCode                         int32
}

// Resync brings a's tombstone up to date with what happened while podorder was away: a start (a
// held attempt's deadline counts from its creation, surely before its hook's start), the start of
// an attempt that is not held, an exit.
func (p *Pod) Resync(a *Attempt, f Found, now time.Time) []Effect {
	var o out
	ts := a.TS
	changed := false
	if ts.Held() && ts.HoldDeadline == nil && ts.ReleasedAt == nil && f.Started {
		deadline := HoldDeadline(f.CreatedAt, time.Duration(ts.HoldTimeout))
		ts.HoldDeadline = &deadline
		changed = true
	}
	if f.Started && ts.StartedAt == nil && !f.StartedAt.IsZero() {
		started := f.StartedAt
		ts.StartedAt = &started
		if !ts.Held() {
			o.add(p.markReleased(a, started)...)
		}
		changed = true
	}
	if f.Stopped && ts.ExitedAt == nil {
		exited := f.FinishedAt
		if exited.IsZero() {
			exited = now
		}
		ts.ExitedAt = &exited
		ts.ExitCode = f.ExitCode
		o.add(Forget{a})
		o.endProbe(a)
		changed = true
	}
	if changed {
		o.write(p, a)
	}
	return o
}

// Resumed restarts, after a resynchronization, the probes of released attempts that still need
// them.
func (p *Pod) Resumed() []Effect {
	for _, a := range p.Attempts {
		if a.TS.ReleasedAt != nil && a.TS.ProbeReadyAt == nil && a.TS.ExitedAt == nil {
			p.chooseProbe(a)
		}
	}
	return p.syncProbes()
}
