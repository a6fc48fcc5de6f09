package podstate

import (
	"fmt"
	"log/slog"
	"syscall"
	"time"

	"github.com/podorder/podorder/plugin/decl"
)

// stopBound stops the containers bound with stop-with to exited's container, whose current attempt
// exited with code. While the pod is being deleted kubelet stops every container itself.
func (p *Pod) stopBound(exited *Attempt, code int32, now time.Time) []Effect {
	if p.Terminating {
		return nil
	}
	var o out
	for _, name := range p.names() {
		a := p.Attempts[name]
		if a == exited || a.Declared == nil {
			continue
		}
		if t, ok := a.Declared.StoppedBy(exited.Name(), code); ok {
			o.add(p.stop(a, fmt.Sprintf("%s exited with code %d (stop-with %s)", exited.Name(), code, t), now)...)
		}
	}
	return o
}

// stop stops a gracefully: its stop signal now, SIGKILL after its grace period. A held attempt
// never ran its own process: its hold ends instead, which exits it at once. One released whose
// runtime start has not returned yet may not run its own process yet either: its signal waits for
// Started.
func (p *Pod) stop(a *Attempt, why string, now time.Time) []Effect {
	ts, name := a.TS, a.Name()
	if ts.ExitedAt != nil || a.Stop != nil || ts.StartedAt == nil && ts.HoldDeadline == nil {
		return nil // gone, already stopping, or not started: nothing runs
	}
	var o out
	if ts.Held() && ts.ReleasedAt == nil {
		if ts.HoldFailed != "" {
			return nil
		}
		ts.HoldFailed = "stopped by podorder: " + why
		a.Stop = &Stop{Why: why, At: now}
		p.note(a, now, TimelineStopping, why+": its hold ends")
		o.log(slog.LevelInfo, name, "stopping: ending the hold", "reason", why)
		o.record(false, ReasonStopping, "stopping container %s: %s; it was still held, so its hold ends now", name, why)
		o.write(p, a)
		return o
	}
	sig, grace := a.Declared.StopSignalAndGrace(a.Grace)
	a.Stop = &Stop{Why: why, Signal: sig, At: now, Grace: grace, pending: ts.StartedAt == nil}
	p.note(a, now, TimelineStopping, fmt.Sprintf("%s: %s, SIGKILL after %s", why, decl.SignalName(sig), grace))
	if a.Stop.pending {
		o.log(slog.LevelInfo, name, "stopping once the runtime's start returns", "reason", why)
		return o
	}
	return append(o, p.signalStop(a)...)
}

// signalStop sends a's stop signal and arms its SIGKILL.
func (p *Pod) signalStop(a *Attempt) []Effect {
	var o out
	st, name := a.Stop, a.Name()
	o.log(slog.LevelInfo, name, "stopping", "reason", st.Why, "signal", decl.SignalName(st.Signal), "grace", st.Grace.String())
	o.record(false, ReasonStopping, "stopping container %s: %s; %s now, SIGKILL after %s", name, st.Why, decl.SignalName(st.Signal), st.Grace)
	o.add(Signal{A: a, Signal: st.Signal}, ArmKill{A: a, Stop: st, After: st.Grace})
	return o
}

// SignalFailed is the shell failing to signal a; exited says the process was already gone (its exit
// is on its way).
func (p *Pod) SignalFailed(a *Attempt, err error, exited bool) []Effect {
	if a.Stop == nil || a.Stop.Killed {
		return nil
	}
	why := a.Stop.Why
	a.Stop = nil
	if exited {
		return nil
	}
	var o out
	o.log(slog.LevelError, a.Name(), "cannot stop", "reason", why, "error", err)
	o.record(true, ReasonStopping, "podorder cannot stop container %s (%s): %v", a.Name(), why, err)
	return o
}

// GraceEnded is the end of st's grace period: a still running is killed.
func (p *Pod) GraceEnded(a *Attempt, st *Stop) []Effect {
	if p.Attempts[a.Name()] != a || a.Stop != st || st.Killed || st.Signal == 0 || st.pending || a.TS.ExitedAt != nil {
		return nil // not the stop armed, or one that ended a hold: no process of its own to kill
	}
	st.Killed = true
	p.note(a, st.At.Add(st.Grace), TimelineKilled, "SIGKILL at the end of its grace period")
	return []Effect{
		Signal{A: a, Signal: syscall.SIGKILL},
		Log{Level: slog.LevelWarn, Container: a.Name(), Msg: "killed: still running at the end of its grace period", Args: []any{"grace", st.Grace.String()}},
	}
}

// stopped reports the end of podorder's stop of a, which exited with code.
func (p *Pod) stopped(a *Attempt, code int32, now time.Time) []Effect {
	st := a.Stop
	if st == nil {
		return nil
	}
	name := a.Name()
	took := now.Sub(st.At).Round(time.Millisecond)
	var how string
	switch {
	case st.Signal == 0:
		how = "its hold ended"
	case st.Killed:
		how = fmt.Sprintf("killed with SIGKILL %s after %s, at the end of its %s grace period", took, decl.SignalName(st.Signal), st.Grace)
	default:
		how = fmt.Sprintf("exited %s after %s", took, decl.SignalName(st.Signal))
	}
	var o out
	o.log(slog.LevelInfo, name, "stopped", "reason", st.Why, "took_ms", took.Milliseconds(), "exit_code", code, "killed", st.Killed)
	if code != 0 && st.Signal != 0 {
		o.record(true, ReasonStopped, "container %s stopped: %s with code %d; cause: %s. A non-zero exit fails a pod with restartPolicy Never "+
			"and restarts it under OnFailure: make %s exit 0 on %s (see podorder's docs/lifecycle.md, Jobs)", name, how, code, st.Why, name, decl.SignalName(st.Signal))
		return o
	}
	o.record(false, ReasonStopped, "container %s stopped: %s with code %d; cause: %s", name, how, code, st.Why)
	return o
}
