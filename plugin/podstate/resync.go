package podstate

import (
	"errors"
	"time"

	"github.com/podorder/podorder/plugin/decl"
)

// Found is an attempt as the runtime reports it at a resynchronization.
type Found struct {
	// Started is set when the runtime started it (running or stopped).
	Started bool
	// Running is set while its process runs, whose PID is then PID.
	Running bool
	PID     uint32
	// Stopped is set when it has exited.
	Stopped                          bool
	CreatedAt, StartedAt, FinishedAt time.Time
	ExitCode                         int32
	// Grace is the pod's terminationGracePeriodSeconds, as kubelet passed it to the container.
	Grace time.Duration
	// NotifyMounted is set when the container has its notify directory mounted, as podorder gives
	// it at CreateContainer when it could open the socket.
	NotifyMounted bool
}

// Resynced brings a up to date with what happened while podorder was away: a start (a held
// attempt's deadline counts from its creation, surely before its hook's start), the start of an
// attempt that is not held, an exit.
func (p *Pod) Resynced(a *Attempt, f Found, now time.Time) []Effect {
	var o out
	a.Grace = f.Grace
	a.Wakes = a.TS.Held() || p.Decl.DependedOn(a.Name())
	if f.Running {
		o.add(p.track(a, f.PID)...)
	}
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
		p.note(a, started, TimelineRunning, "found at a resynchronization")
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
		p.note(a, exited, TimelineExited, "found at a resynchronization").Code = f.ExitCode
		o.add(Forget{a})
		o.endProbe(a)
		changed = true
	}
	if changed {
		o.write(p, a)
	}
	o.add(p.resumeSignal(a, f, now)...)
	return o
}

// resumeSignal watches again for the readiness signal of an attempt that podorder learned from its
// tombstone after a restart: the watch went with the daemon that started it. A notify socket is
// bound again at the path the container has mounted, so a READY=1 sent from now on counts; one
// sent while podorder was away found no reader and is lost. An attempt not started yet is watched
// from its start, as any other.
func (p *Pod) resumeSignal(a *Attempt, f Found, now time.Time) []Effect {
	ts := a.TS
	if a.Signal == nil || a.SignalRefused || a.Signalling || a.signalEnded || ts.ReadyAt != nil || ts.ExitedAt != nil {
		return nil
	}
	var why error
	switch {
	case a.Signal.Kind == decl.ReadinessNotify && !f.NotifyMounted:
		why = errors.New("it was created without its notify socket (podorder could not open one then)")
	case !f.Running:
		return nil
	case f.PID == 0:
		why = errors.New("the runtime names no process of it to check senders against")
	default:
		a.pid = f.PID
		a.Signalling = true
		return []Effect{WatchSignal{A: a, PID: f.PID}}
	}
	return p.SignalRefused(a, why, now)
}

// Resumed ends a resynchronization: the probes of released attempts that still need them start
// again, and holds are re-evaluated, so a held container is released when — and not before — its
// dependencies are met.
func (p *Pod) Resumed(now time.Time) []Effect {
	var o out
	for _, name := range p.names() {
		a := p.Attempts[name]
		if a.TS.ReleasedAt != nil && a.TS.ProbeReadyAt == nil && a.TS.ExitedAt == nil {
			p.chooseProbe(a)
		}
		if a.TS.Blind && a.Holding() {
			// Its end's timer went with a daemon that restarted; arming it twice is harmless.
			o.add(ArmBlindEnd{A: a, At: blindEnd(a)})
		}
	}
	o.add(p.syncProbes()...)
	o.add(p.release(now)...)
	return o
}
