package podstate

import (
	"fmt"
	"strings"
	"time"

	"github.com/podorder/podorder/hooks/dependency"
)

// Kinds of timeline entries: what happened to one attempt, as the events said it.
const (
	// TimelineCreated: the runtime created the attempt (NRI CreateContainer).
	TimelineCreated = "created"
	// TimelineHeld: the attempt is held; Detail names what it waits for.
	TimelineHeld = "held"
	// TimelineStarting: the runtime is about to start it (NRI StartContainer); a hold's deadline counts from here.
	TimelineStarting = "starting"
	// TimelineRunning: the runtime's start returned (NRI PostStartContainer). An attempt that is not
	// held runs its own process from here; a held one waits in its hook.
	TimelineRunning = "running"
	// TimelineReleased: a held attempt may start its own process. Cause names the dependency met
	// last, Detail how it was met (probe pass, kubelet's verdict, an exit, a pod dependency).
	TimelineReleased = "released"
	// TimelineReady: the attempt is ready for those that wait for it; Detail says by which source.
	TimelineReady = "ready"
	// TimelineHoldFailed: a dependency can no longer be met; the hook exits at once.
	TimelineHoldFailed = "hold-failed"
	// TimelineStopping: podorder stops the attempt (stop-with); Detail says why and how.
	TimelineStopping = "stopping"
	// TimelineKilled: still running at the end of its stop's grace period, it got SIGKILL.
	TimelineKilled = "killed"
	// TimelineExited: its process exited with Code; Detail says how a hold ended (timeout,
	// dependency failed, stopped).
	TimelineExited = "exited"
	// TimelineUndone: the runtime undid its creation, or removed it unstarted.
	TimelineUndone = "undone"
	// TimelinePodsMet and TimelinePodsUnmet: a dependency on other pods became met, or unmet
	// again (Container is its synthetic name, Detail its selector).
	TimelinePodsMet   = "pods-met"
	TimelinePodsUnmet = "pods-unmet"
	// TimelineTerminating: the pod is being deleted; its containers stop in the shutdown order
	// (pod-wide: no Container).
	TimelineTerminating = "terminating"
	// TimelinePodReleased: no container of the pod is held any more (the condition
	// podorder.dev/released turns true; pod-wide).
	TimelinePodReleased = "pod-released"
)

// MaxTimeline bounds a pod's timeline, whatever the pod declares: past it, the entries of its
// oldest attempt that is no longer its container's newest go first (else the oldest entry), and
// Dropped counts them.
const MaxTimeline = 256

// KeptTimelines is how many removed pods' timelines the shell keeps per node, whatever they declare.
const KeptTimelines = 32

// TimelineEntry is one fact of a pod's timeline.
type TimelineEntry struct {
	At time.Time `json:"at"`
	// Container is the container's name, or a dependency on pods' synthetic name; empty for the pod.
	Container string `json:"container,omitempty"`
	// ID is the runtime's ID of the attempt; Attempt kubelet's restart count.
	ID      string `json:"id,omitempty"`
	Attempt uint32 `json:"attempt"`
	Kind    string `json:"kind"`
	Detail  string `json:"detail,omitempty"`
	// Cause, on a release, is the dependency whose condition was met last: the one that decided it.
	Cause string `json:"cause,omitempty"`
	// Code is the exit code of an exit.
	Code int32 `json:"code,omitempty"`
}

// Timeline is a pod's bounded log of facts, appended by the events, for `podorder timeline`.
type Timeline struct {
	Entries []TimelineEntry
	// Dropped counts entries dropped to stay within MaxTimeline.
	Dropped int
}

// TimelineReport is a pod's timeline as the status socket serves it.
type TimelineReport struct {
	Pod string `json:"pod"`
	UID string `json:"uid"`
	// At is when it was taken; for a pod already removed, when it was removed.
	At time.Time `json:"at"`
	// Removed is set for a pod the runtime removed: the timeline is complete.
	Removed bool            `json:"removed,omitempty"`
	Entries []TimelineEntry `json:"entries"`
	Dropped int             `json:"dropped,omitempty"`
}

// TimelineAt reports the pod's timeline at now.
func (p *Pod) TimelineAt(now time.Time) TimelineReport {
	return TimelineReport{Pod: p.Ref, UID: p.UID, At: now, Entries: append([]TimelineEntry{}, p.Timeline.Entries...), Dropped: p.Timeline.Dropped}
}

// note appends a fact about attempt a (nil: the pod) to the timeline.
func (p *Pod) note(a *Attempt, at time.Time, kind, detail string) *TimelineEntry {
	e := TimelineEntry{At: at, Kind: kind, Detail: detail}
	if a != nil {
		e.Container, e.ID, e.Attempt = a.Name(), a.TS.ID, a.TS.Attempt
	}
	t := &p.Timeline
	if len(t.Entries) >= MaxTimeline {
		t.drop(p)
	}
	t.Entries = append(t.Entries, e)
	return &t.Entries[len(t.Entries)-1]
}

// drop removes the entries of the oldest attempt that is no longer its container's newest, or else
// the oldest entry.
func (t *Timeline) drop(p *Pod) {
	old := ""
	for _, e := range t.Entries {
		if e.ID != "" && p.Current(e.Container, e.ID) == nil {
			old = e.ID
			break
		}
	}
	if old == "" {
		t.Entries = append(t.Entries[:0], t.Entries[1:]...)
		t.Dropped++
		return
	}
	kept := t.Entries[:0]
	for _, e := range t.Entries {
		if e.ID == old {
			t.Dropped++
			continue
		}
		kept = append(kept, e)
	}
	clear(t.Entries[len(kept):])
	t.Entries = kept
}

// noteReleased records a's release with the dependency that decided it: the one met last.
func (p *Pod) noteReleased(a *Attempt, now time.Time) {
	var last time.Time
	cause, how := "", ""
	for _, d := range a.TS.WaitsFor {
		da := p.Attempts[d.Container]
		if da == nil {
			continue
		}
		at, h := metAt(da, d.Condition)
		if cause == "" || at.After(last) {
			last, cause, how = at, d.Container, h
		}
	}
	p.note(a, now, TimelineReleased, how).Cause = cause
}

// metAt is when a met cond, and how, for people: "db ready (probe passed: tcp:5432)".
func metAt(a *Attempt, cond dependency.Condition) (time.Time, string) {
	ts := a.TS
	at := func(t *time.Time) time.Time {
		if t == nil {
			return time.Time{}
		}
		return *t
	}
	if ts.PodSelector != "" {
		return at(ts.ReleasedAt), ts.PodSelector + " met (pods)"
	}
	switch cond {
	case dependency.Ready:
		return at(ts.ReadyAt), a.Name() + " ready (" + readySource(a) + ")"
	case dependency.Completed:
		return at(ts.ExitedAt), fmt.Sprintf("%s exited with code %d", a.Name(), ts.ExitCode)
	}
	started := at(ts.StartedAt)
	if r := at(ts.ReleasedAt); r.After(started) {
		started = r
	}
	return started, a.Name() + " started"
}

// readySource says which of a's readiness sources came last, so decided its readiness.
func readySource(a *Attempt) string {
	ts := a.TS
	var last time.Time
	how := "no readiness check"
	if ts.ReleasedAt != nil {
		last = *ts.ReleasedAt
	}
	if t := ts.KubeletReadyAt; t != nil && !t.Before(last) {
		last, how = *t, "kubelet's verdict"
	}
	if t := ts.ProbeReadyAt; t != nil && !t.Before(last) && a.Probe != nil {
		how = "probe passed: " + strings.TrimPrefix(a.Probe.String(), "readinessProbe ")
	}
	if a.SignalledAt != nil && !a.SignalRefused {
		how = "its own signal: " + a.Signal.String()
	}
	return how
}

// holdOutcome names how the hold of a, ended by its exit, ended, for the timeline.
func holdOutcome(outcome string) string {
	switch outcome {
	case OutcomeTimeout:
		return "hold timed out"
	case OutcomeDependencyFailed:
		return "hold ended: a dependency failed"
	case OutcomeStopped:
		return "hold ended: stopped"
	}
	return ""
}

// noteAdded records a new attempt's creation, and what it is held on.
func (p *Pod) noteAdded(a *Attempt) {
	ts := a.TS
	if ts.PodSelector != "" || ts.CreatedAt == nil {
		return // a dependency on pods: its changes are its entries
	}
	p.note(a, *ts.CreatedAt, TimelineCreated, "")
	if ts.Held() {
		on := Describe(a.Declared)
		if a.Declared == nil {
			on = strings.Join(WaitsFor(ts.WaitsFor), ", ")
		}
		p.note(a, *ts.CreatedAt, TimelineHeld, on)
	}
}

// notePodDependency records a dependency on other pods becoming met or unmet.
func (p *Pod) notePodDependency(a *Attempt, met bool, now time.Time) {
	kind := TimelinePodsUnmet
	if met {
		kind = TimelinePodsMet
	}
	p.note(a, now, kind, a.TS.PodSelector)
}
