package podstate

import (
	"fmt"
	"log/slog"
	"slices"
	"time"
)

// Listed is the runtime's list of the pod's container IDs at a resynchronization. An attempt
// podorder knew running (or held) that it lacks vanished: it exited while podorder was away
// (containerd 2.4 lists no exited container to NRI), or was removed. Its process does not run, so
// it counts as neither started nor ready; its exit code is the one the Kubernetes API showed, else
// unknown, and an unknown exit neither completes nor fails a dependency until the API tells the
// code (exitLearned).
func (p *Pod) Listed(ids []string, now time.Time) []Effect {
	var o out
	for _, name := range p.names() {
		a := p.Attempts[name]
		if a.TS.ID == "" || a.TS.PodSelector != "" || slices.Contains(ids, a.TS.ID) {
			continue
		}
		o.add(p.vanished(a, now)...)
	}
	return o
}

func (p *Pod) vanished(a *Attempt, now time.Time) []Effect {
	ts := a.TS
	if ts.ExitedAt != nil {
		return nil
	}
	if ts.StartedAt == nil && ts.HoldDeadline == nil {
		return p.undo(a, now) // never started: removed unstarted
	}
	if code, ok := p.exitCodes[ts.ID]; ok {
		return p.Exited(a, code, false, now)
	}
	o := out{Forget{a}}
	ts.ExitedAt, ts.ExitCode, ts.ExitCodeUnknown = &now, 0, true
	o.endProbe(a)
	p.note(a, now, TimelineExited, "gone at a resynchronization: it exited while podorder was away, exit code unknown")
	o.log(slog.LevelInfo, a.Name(), "exited while podorder was away: the runtime no longer lists it; its exit code is unknown until the Kubernetes API shows it",
		"container_id", ts.ID)
	o.write(p, a)
	// A stop-with on any exit of a fires now; one on its success or failure waits for the code.
	o.add(p.stopOnAnyExit(a, now)...)
	o.add(p.release(now)...)
	return o
}

// exitLearned is the Kubernetes API telling the exit code of an attempt that vanished.
func (p *Pod) exitLearned(a *Attempt, code int32, now time.Time) []Effect {
	var o out
	a.TS.ExitCode, a.TS.ExitCodeUnknown = code, false
	o.log(slog.LevelInfo, a.Name(), "exit code learned from the Kubernetes API", "container_id", a.TS.ID, "exit_code", code)
	o.write(p, a)
	o.add(p.stopBound(a, code, now)...)
	o.add(p.release(now)...)
	return o
}

// stopOnAnyExit stops the containers bound to a's exit whatever its code: a trigger that fires on
// code 0 and on code 1 alike is such a one.
func (p *Pod) stopOnAnyExit(a *Attempt, now time.Time) []Effect {
	if p.Terminating {
		return nil
	}
	var o out
	for _, name := range p.names() {
		b := p.Attempts[name]
		if b == a || b.Declared == nil {
			continue
		}
		t, onZero := b.Declared.StoppedBy(a.Name(), 0)
		if _, onOne := b.Declared.StoppedBy(a.Name(), 1); onZero && onOne {
			o.add(p.stop(b, fmt.Sprintf("%s exited while podorder was away (stop-with %s)", a.Name(), t), now)...)
		}
	}
	return o
}
