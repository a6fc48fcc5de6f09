package podstate

import (
	"log/slog"
	"time"

	"github.com/podorder/podorder/hooks/dependency"
)

// Added is a's tombstone written by the shell: a is the newest attempt of its container from now on.
// A held attempt that Admit decided says so, in the log and in an Event.
func (p *Pod) Added(a *Attempt) []Effect {
	var o out
	old := p.Attempts[a.Name()]
	p.Attempts[a.Name()] = a
	if old != nil {
		o.add(EndProbe{old})
		old.Probing = false
		o.endSignal(old)
		old.Prev = nil // one step back is all an undone creation needs
	}
	a.Prev = old
	p.noteAdded(a)
	o.wakeFor(p, a)
	o.add(p.syncProbes()...) // a held attempt waits for its dependencies from now on
	if a.admitted && old == nil {
		// Said once per container, at its first attempt: the declarations never change.
		for _, w := range p.Decl.Warnings(a.Name()) {
			o.log(slog.LevelWarn, a.Name(), "declaration warning", "warning", w)
			o.record(true, ReasonDeclarationWarning, "%s", w)
		}
	}
	if a.admitted && a.TS.Held() {
		h := a.Declared
		o.log(slog.LevelInfo, a.Name(), "holding", "waits_for", WaitsFor(h.After), "timeout", h.Timeout.String(), "attempt", a.TS.Attempt)
		o.record(false, ReasonWaiting, "container %s waits for %s (timeout %s)", a.Name(), Describe(h), h.Timeout)
	}
	return o
}

// Starting is NRI StartContainer of a, whose process is pid: the runtime is about to start it. A
// hold's deadline counts from here, before the hook's own clock starts.
func (p *Pod) Starting(a *Attempt, pid uint32, now time.Time) []Effect {
	var o out
	p.note(a, now, TimelineStarting, "")
	o.add(p.track(a, pid)...)
	a.pid = pid
	if a.Signal != nil && !a.SignalRefused && !a.Signalling && !a.signalEnded && pid != 0 {
		a.Signalling = true
		o.add(WatchSignal{A: a, PID: pid})
	}
	ts := a.TS
	if !ts.Held() || ts.ReleasedAt != nil {
		return o
	}
	if ts.HoldDeadline == nil {
		deadline := HoldDeadline(now, time.Duration(ts.HoldTimeout))
		ts.HoldDeadline = &deadline
		o.write(p, a)
	}
	o.add(p.release(now)...)
	if ts.ReleasedAt == nil {
		// With runc < 1.2.8 / 1.3.3 the runtime's start does not return until the hook exits.
		o.add(ArmRuntimeCheck{a})
	}
	return o
}

// Started is NRI PostStartContainer of a: the runtime's start returned. An attempt that is not held
// runs its own process from now on; one still held shows that the runtime does not block its start.
func (p *Pod) Started(a *Attempt, now time.Time) []Effect {
	var o out
	if a.Holding() {
		o.add(RuntimeFinding{Container: a.Name()})
	}
	a.TS.StartedAt = &now
	p.note(a, now, TimelineRunning, "")
	if !a.TS.Held() {
		o.add(p.markReleased(a, now)...)
	}
	o.write(p, a)
	if a.Stop != nil && a.Stop.pending {
		a.Stop.pending = false
		o.add(p.signalStop(a)...)
	}
	o.add(p.release(now)...)
	return o
}

// RuntimeCheckDue is the moment by which the runtime's start of a should have returned: if a is
// still its container's newest attempt, not started and not exited, the runtime blocks its start
// while a is held.
func (p *Pod) RuntimeCheckDue(a *Attempt) []Effect {
	if p.Attempts[a.Name()] != a || a.TS.StartedAt != nil || a.TS.ExitedAt != nil {
		return nil
	}
	return []Effect{RuntimeFinding{Container: a.Name(), Blocking: true}}
}

// track asks for a handle on a's process when a stop-with may have to stop it.
func (p *Pod) track(a *Attempt, pid uint32) []Effect {
	if a.Declared == nil || len(a.Declared.StopWith) == 0 || !p.Node.StopWith || pid == 0 {
		return nil
	}
	return []Effect{Track{A: a, PID: pid}}
}

// Exited is NRI StopContainer of a with the process's exit code. neverStarted says the runtime never
// started it: its creation was undone (another plugin or a validator refused it) or it is removed
// unstarted, and its exit code 0 means nothing.
func (p *Pod) Exited(a *Attempt, code int32, neverStarted bool, now time.Time) []Effect {
	ts := a.TS
	if ts.ExitedAt != nil {
		return nil
	}
	if neverStarted && ts.StartedAt == nil && ts.HoldDeadline == nil {
		return p.undo(a, now)
	}
	o := out{Forget{a}}
	ts.ExitedAt = &now
	ts.ExitCode = code
	o.endProbe(a)
	if ts.Held() && ts.ReleasedAt == nil && ts.HoldDeadline != nil {
		missing := p.missing(a)
		o.log(slog.LevelWarn, a.Name(), "hold ended without release: the hook timed out, a dependency failed, or the container was stopped; "+
			"the hook's reason is in the container's log",
			"waits_for", WaitsFor(ts.WaitsFor), "exit_code", code, "missing", missing)
		outcome := OutcomeStopped // by kubelet, or by podorder's stop-with
		switch {
		case a.Stop != nil:
		case ts.HoldFailed != "" || p.anyFailed(a):
			outcome = OutcomeDependencyFailed
			o.record(true, ReasonDependencyFailed, "container %s will not start: %s (reason: kubectl logs --previous -c %s)", a.Name(), missing, a.Name())
		case code == HookFailedExitCode || !now.Before(*ts.HoldDeadline):
			outcome = OutcomeTimeout
			o.record(true, ReasonTimeout, "container %s was not released within %s: %s; it exits and restarts per its restartPolicy (reason: kubectl logs --previous -c %s)",
				a.Name(), time.Duration(ts.HoldTimeout), missing, a.Name())
		}
		o.add(HoldEnded{A: a, Outcome: outcome, Held: now.Sub(*ts.CreatedAt)})
		p.note(a, now, TimelineExited, holdOutcome(outcome)).Code = code
	} else {
		p.note(a, now, TimelineExited, "").Code = code
		o.log(slog.LevelDebug, a.Name(), "exited", "container_id", ts.ID, "exit_code", code)
	}
	o.add(p.stopped(a, code, now)...)
	o.write(p, a)
	o.add(p.stopBound(a, code, now)...)
	o.add(p.release(now)...)
	return o
}

// undo forgets an attempt that never started; the previous attempt, if any, is the newest again.
func (p *Pod) undo(a *Attempt, now time.Time) []Effect {
	var o out
	name := a.Name()
	p.note(a, now, TimelineUndone, "")
	o.endProbe(a)
	if a.TS.Held() && a.TS.HoldDeadline == nil {
		// The runtime refused the adjustment podorder returned; containerd's error (in the CRI
		// error, kubelet's CreateContainerError) names who. The usual one is worth saying here.
		o.log(slog.LevelWarn, name, "creation undone or never started; forgetting this attempt. If containerd's NRI validator has "+
			"reject_oci_hook_adjustment = true, podorder cannot hold containers: holds are OCI hooks", "container_id", a.TS.ID)
	} else {
		o.log(slog.LevelInfo, name, "creation undone or never started; forgetting this attempt", "container_id", a.TS.ID)
	}
	if a.Prev != nil {
		p.Attempts[name] = a.Prev
		o.write(p, a.Prev)
	} else {
		delete(p.Attempts, name)
		o.add(Remove{name})
	}
	o.add(p.release(now)...)
	return o
}

// PodDependencyChanged is the answer for a dependency on other pods changing: the synthetic
// stand-in called name evaluates to Met for cond exactly when met.
func (p *Pod) PodDependencyChanged(name string, cond dependency.Condition, met bool, now time.Time) []Effect {
	a := p.Attempts[name]
	if a == nil {
		return nil
	}
	ts := a.TS
	if (dependency.Evaluate(cond, ts.State()) == dependency.Met) == met {
		return nil
	}
	ts.StartedAt, ts.ReleasedAt, ts.ReadyAt, ts.ExitedAt, ts.ExitCode = nil, nil, nil, nil, 0
	if met {
		ts.StartedAt, ts.ReleasedAt = &now, &now
		switch cond {
		case dependency.Ready:
			ts.ReadyAt = &now
		case dependency.Completed:
			ts.ExitedAt = &now
		}
	}
	var o out
	p.notePodDependency(a, met, now)
	o.log(slog.LevelInfo, name, "pod dependency changed", "pod_selector", ts.PodSelector, "met", met)
	o.write(p, a)
	o.add(p.release(now)...)
	return o
}

// terminating is the Kubernetes API saying the pod is being deleted: kubelet now stops its
// containers, each after its preStop hook, and podorder's preStop hooks wait for dependents to exit.
func (p *Pod) terminating() []Effect {
	if p.Terminating {
		return nil
	}
	p.Terminating = true
	o := out{MarkTerminating{}, Log{Level: slog.LevelInfo, Msg: "pod is being deleted: dependencies stop after their dependents"}}
	for _, name := range p.names() {
		if a := p.Attempts[name]; a.Wakes && a.TS.ExitedAt == nil {
			o.add(Wake{name})
		}
	}
	return o
}
