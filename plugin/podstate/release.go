package podstate

import (
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/podorder/podorder/hooks/dependency"
	"github.com/podorder/podorder/plugin/decl"
)

// release records, for every held attempt whose dependencies are all met, that it may start,
// repeating until nothing changes so that a chain a → b → c resolves in one call. The daemon alone
// decides; the hook only obeys what is recorded for its own attempt, so the two cannot disagree. A
// hold whose dependency can no longer be met is recorded as failed, which ends it at once.
func (p *Pod) release(now time.Time) []Effect {
	var o out
	for changed := true; changed; {
		changed = false
		for _, name := range p.names() {
			a := p.Attempts[name]
			ts := a.TS
			if !ts.Held() || ts.HoldDeadline == nil || ts.ReleasedAt != nil || ts.ExitedAt != nil || ts.HoldFailed != "" || ts.Blind {
				continue
			}
			if !releasable(ts, now) {
				continue // the hook gives up at its own deadline; its exit is recorded by Exited
			}
			if p.anyFailed(a) {
				ts.HoldFailed = p.missing(a)
				p.note(a, now, TimelineHoldFailed, ts.HoldFailed)
				o.log(slog.LevelWarn, name, "hold failed: a dependency can no longer be met", "missing", ts.HoldFailed)
				o.write(p, a)
				continue
			}
			if !p.allMet(ts.WaitsFor) {
				continue
			}
			p.noteReleased(a, now)
			o.add(p.markReleased(a, now)...)
			elapsed := now.Sub(*ts.CreatedAt).Milliseconds()
			o.log(slog.LevelInfo, name, "released", "container_id", ts.ID, "waits_for", WaitsFor(ts.WaitsFor), "elapsed_ms", elapsed)
			o.record(false, ReasonReleased, "container %s released %dms after its creation: %s met", name, elapsed, Describe(a.Declared))
			o.write(p, a)
			o.add(HoldEnded{A: a, Outcome: OutcomeReleased, Held: now.Sub(*ts.CreatedAt)})
			changed = true
		}
	}
	// A release, an exit or a new held attempt may change who waits for whom.
	o.add(p.syncProbes()...)
	return o
}

// StoreRecreated is the shell having made the pod's store directory again, after someone removed it
// under the daemon: every attempt held since before can no longer see a release.
func (p *Pod) StoreRecreated() []Effect {
	var o out
	for _, name := range p.names() {
		if a := p.Attempts[name]; a.Holding() {
			o.add(p.markBlind(a)...)
		}
	}
	return o
}

// markBlind stops releasing a, whose hook reads a store directory that no longer exists. The hook
// then ends the hold at its timeout, the container exits and kubelet starts a new attempt, which
// sees the new directory. A container still running well past its hold's end must have been let go
// by its hook (else the runtime would have ended it): HoldOutlived then counts it released.
// The mark is in a's tombstone, so that a daemon restarted meanwhile does not release a instead
// (found by the churn: a blind hold released after a restart let a dependent waiting for it
// `started` run while its own process never did).
func (p *Pod) markBlind(a *Attempt) []Effect {
	if a.TS.Blind {
		return nil
	}
	a.TS.Blind = true
	end := blindEnd(a)
	var o out
	o.log(slog.LevelWarn, a.Name(), "held since before the store was removed: its hook cannot see a release; it ends at its timeout",
		"container_id", a.TS.ID, "counted_running_after", end.Format(time.RFC3339))
	o.write(p, a)
	o.add(ArmBlindEnd{A: a, At: end})
	return o
}

// blindEnd is when a blind hold's hook has given up for sure.
func blindEnd(a *Attempt) time.Time {
	return a.TS.CreatedAt.Add(time.Duration(a.TS.HoldTimeout) + HookGrace + time.Second)
}

// HoldOutlived is a blind attempt still running past its hold's end: its hook let it go.
func (p *Pod) HoldOutlived(a *Attempt, now time.Time) []Effect {
	if p.Attempts[a.Name()] != a || a.TS.ExitedAt != nil || a.TS.ReleasedAt != nil {
		return nil
	}
	var o out
	p.note(a, now, TimelineReleased, "still running past its hold's end: its hook let it go")
	o.add(p.markReleased(a, now)...)
	o.log(slog.LevelInfo, a.Name(), "released", "container_id", a.TS.ID, "reason", "still running past its hold's end, so its hook let it go")
	o.write(p, a)
	o.add(p.release(now)...)
	return o
}

// endProbe ends a's probe, if one runs.
func (o *out) endProbe(a *Attempt) {
	if a.Probing {
		a.Probing = false
		o.add(EndProbe{a})
	}
	o.endSignal(a)
}

// endSignal ends the watch of a's readiness signal, and its notify socket, once nothing can use it;
// once per attempt.
func (o *out) endSignal(a *Attempt) {
	if a.Signal != nil && !a.signalEnded {
		a.Signalling, a.signalEnded = false, true
		o.add(EndSignal{a})
	}
}

// write adds the write of a's tombstone and the wake-ups it calls for.
func (o *out) write(p *Pod, a *Attempt) {
	o.add(Write{a})
	o.wakeFor(p, a)
}

// anyFailed reports whether a dependency of a can no longer be met by its current attempt.
func (p *Pod) anyFailed(a *Attempt) bool {
	for _, d := range a.TS.WaitsFor {
		if dependency.Evaluate(d.Condition, p.state(d.Container)) == dependency.Failed {
			return true
		}
	}
	return false
}

// missing describes the unmet dependencies of a, for logs and Events.
func (p *Pod) missing(a *Attempt) string {
	var out []string
	for _, d := range a.TS.WaitsFor {
		s := p.state(d.Container)
		if dependency.Evaluate(d.Condition, s) == dependency.Met {
			continue
		}
		if da := p.Attempts[d.Container]; da != nil && da.TS.PodSelector != "" {
			out = append(out, fmt.Sprintf("no pod matching %s is %s", da.TS.PodSelector, d.Condition))
			continue
		}
		if da := p.Attempts[d.Container]; da != nil && s.Released && !s.Ready && !s.Exited && da.Signal != nil && !da.SignalRefused {
			out = append(out, fmt.Sprintf("%s is running but has not signalled ready (readiness %s)", d.Container, signalWaitedFor(da.Signal)))
			continue
		}
		out = append(out, dependency.Describe(d, s))
	}
	return strings.Join(out, "; ")
}

func (p *Pod) names() []string {
	names := make([]string, 0, len(p.Attempts))
	for n := range p.Attempts {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// signalWaitedFor says what a container's own readiness signal still waits for.
func signalWaitedFor(s *decl.Signal) string {
	if s.Kind == decl.ReadinessNotify {
		return "notify, no READY=1 from its own processes on its NOTIFY_SOCKET yet"
	}
	return s.String() + ", the path does not exist in the container yet"
}
