package podstate

import (
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/podorder/podorder/hooks/tombstone"
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

// ranWhileAway takes kubelet's newest attempt of a container, terminated, when podorder never saw
// it: created and exited while podorder was away, it is in no NRI event and in no runtime list, and
// only the Kubernetes API says it ran (kubelet's status of the node's own pods, which tenants
// cannot write). It is taken only when podorder's own newest attempt of that container has exited
// (or there is none), so it can only be newer; a hold on it ended long ago, and it counts for
// dependents as what it was: started, then exited with its code.
func (p *Pod) ranWhileAway(e ExitedContainer, now time.Time) []Effect {
	prev := p.Attempts[e.Name]
	if !e.Current || e.ID == "" || e.StartedAt.IsZero() || e.FinishedAt.IsZero() ||
		prev != nil && (prev.TS.ExitedAt == nil || prev.TS.PodSelector != "") || p.knows(e.Name, e.ID) {
		return nil
	}
	if prev != nil {
		prev.Prev = nil // one step back, as for any new attempt
	}
	started, finished := e.StartedAt, e.FinishedAt
	ts := &tombstone.Tombstone{Container: e.Name, ID: e.ID, CreatedAt: &started, StartedAt: &started, ReleasedAt: &started,
		ExitedAt: &finished, ExitCode: e.Code}
	a := &Attempt{TS: ts, Prev: prev}
	p.Attempts[e.Name] = a
	var o out
	p.note(a, finished, TimelineExited, "ran while podorder was away (from the Kubernetes API)").Code = e.Code
	o.log(slog.LevelInfo, e.Name, "an attempt ran and exited while podorder was away (from the Kubernetes API)",
		"container_id", e.ID, "exit_code", e.Code)
	o.write(p, a)
	o.add(p.release(now)...)
	return o
}

// knows says whether an attempt of container with that ID is among the attempts podorder keeps.
func (p *Pod) knows(container, id string) bool {
	for a := p.Attempts[container]; a != nil; a = a.Prev {
		if a.TS.ID == id {
			return true
		}
	}
	return false
}
