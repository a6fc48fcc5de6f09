// Package timeline is `podorder timeline`: a pod's start and stop as a picture. It turns the facts
// podstate records for a pod (podstate.TimelineReport) into one bar per container attempt — created,
// held and on what, released and by which event, running, ready, stopping, exited with its code —
// with the critical path marked, and draws it as a text Gantt chart, an SVG, JSON or a Chrome /
// Perfetto trace. It is pure: no I/O but the writer it is given, no clock.
package timeline

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"github.com/podorder/podorder/plugin/podstate"
)

// Phases of a bar, in the order they follow one another.
const (
	// PhaseCreated: created, its runtime start not returned yet, not held.
	PhaseCreated = "created"
	// PhaseHeld: its hook holds it until its dependencies are met.
	PhaseHeld = "held"
	// PhaseRunning: its own process runs, not ready yet.
	PhaseRunning = "running"
	// PhaseReady: ready for the containers that wait for it.
	PhaseReady = "ready"
	// PhaseStopping: podorder stops it (stop-with), or the pod is being deleted.
	PhaseStopping = "stopping"
	// PhaseMet: a dependency on other pods is met.
	PhaseMet = "met"
)

// Chart is a pod's timeline as bars. Its JSON form is `podorder timeline -o json`.
type Chart struct {
	Pod string `json:"pod"`
	UID string `json:"uid"`
	// Start is the first fact, End the last one (for a pod that runs on, a little later, up to when
	// the report was taken): the span the picture shows. A bar still open at End goes on past it.
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	// Removed is set when the pod is gone: the timeline is complete.
	Removed bool `json:"removed,omitempty"`
	// Dropped counts the facts the daemon dropped to bound the timeline (oldest attempts first).
	Dropped int   `json:"dropped,omitempty"`
	Bars    []Bar `json:"bars"`
	// Marks are what happened to the whole pod: no container held any more, its deletion.
	Marks []Mark `json:"marks"`
	// Critical is the chain of waits that decided when the last container was ready (or released):
	// bar indexes, first to last.
	Critical []int `json:"critical"`
	// Entries are the facts the chart was drawn from, in event order.
	Entries []podstate.TimelineEntry `json:"entries"`
}

// Bar is one container attempt, or one dependency on other pods (Pods set).
type Bar struct {
	Container string `json:"container"`
	ID        string `json:"id"`
	Attempt   uint32 `json:"attempt"`
	// Pods is the selector of a dependency on other pods; its bar shows when it was met.
	Pods    string     `json:"pods,omitempty"`
	Created time.Time  `json:"created"`
	Running *time.Time `json:"running,omitempty"`
	// HeldOn says what the attempt waited for; empty when it was not held.
	HeldOn   string     `json:"heldOn,omitempty"`
	Released *time.Time `json:"released,omitempty"`
	// ReleasedBy is the dependency met last, the one that decided the release; ReleasedHow how it
	// was met: a probe pass, kubelet's verdict, an exit, a pod dependency.
	ReleasedBy  string     `json:"releasedBy,omitempty"`
	ReleasedHow string     `json:"releasedHow,omitempty"`
	HoldFailed  string     `json:"holdFailed,omitempty"`
	Ready       *time.Time `json:"ready,omitempty"`
	ReadyBy     string     `json:"readyBy,omitempty"`
	Stopping    *time.Time `json:"stopping,omitempty"`
	StoppingWhy string     `json:"stoppingWhy,omitempty"`
	Exited      *time.Time `json:"exited,omitempty"`
	ExitCode    *int32     `json:"exitCode,omitempty"`
	// ExitHow says how a hold ended: timed out, a dependency failed, stopped.
	ExitHow string `json:"exitHow,omitempty"`
	Undone  bool   `json:"undone,omitempty"`
	// Critical is set on the bars of the critical path.
	Critical bool      `json:"critical,omitempty"`
	Segments []Segment `json:"segments"`
}

// Segment is one phase of a bar.
type Segment struct {
	Phase string    `json:"phase"`
	From  time.Time `json:"from"`
	To    time.Time `json:"to"`
	// Open is set when the phase goes on past the chart's end.
	Open bool `json:"open,omitempty"`
}

// Mark is a moment of the whole pod.
type Mark struct {
	At     time.Time `json:"at"`
	Kind   string    `json:"kind"`
	Detail string    `json:"detail,omitempty"`
}

// Build turns a pod's facts into bars, ordered by creation, and finds the critical path.
func Build(r podstate.TimelineReport) Chart {
	c := Chart{Pod: r.Pod, UID: r.UID, Removed: r.Removed, Dropped: r.Dropped, Bars: []Bar{}, Marks: []Mark{}, Critical: []int{},
		Entries: r.Entries}
	if c.Entries == nil {
		c.Entries = []podstate.TimelineEntry{}
	}
	entries := slices.Clone(r.Entries)
	slices.SortStableFunc(entries, func(a, b podstate.TimelineEntry) int { return a.At.Compare(b.At) })
	if len(entries) > 0 {
		c.Start, c.End = entries[0].At, entries[len(entries)-1].At
		// A pod that runs on: show a quarter more, up to when the report was taken, so that what
		// goes on can be seen going on.
		if !r.Removed && r.At.After(c.End) {
			c.End = c.End.Add(min(r.At.Sub(c.End), c.End.Sub(c.Start)/4))
		}
	}
	index := map[string]int{} // by attempt ID
	bar := func(e podstate.TimelineEntry) *Bar {
		i, ok := index[e.ID]
		if !ok {
			i = len(c.Bars)
			index[e.ID] = i
			c.Bars = append(c.Bars, Bar{Container: e.Container, ID: e.ID, Attempt: e.Attempt, Created: e.At})
		}
		return &c.Bars[i]
	}
	for _, e := range entries {
		if e.Container == "" {
			c.Marks = append(c.Marks, Mark{At: e.At, Kind: e.Kind, Detail: e.Detail})
			continue
		}
		b, at := bar(e), e.At
		switch e.Kind {
		case podstate.TimelineCreated:
			b.Created = at
		case podstate.TimelineHeld:
			b.HeldOn = e.Detail
		case podstate.TimelineRunning:
			b.Running = first(b.Running, at)
		case podstate.TimelineReleased:
			b.Released, b.ReleasedBy, b.ReleasedHow = &at, e.Cause, e.Detail
		case podstate.TimelineHoldFailed:
			b.HoldFailed = e.Detail
		case podstate.TimelineReady:
			b.Ready, b.ReadyBy = first(b.Ready, at), e.Detail
		case podstate.TimelineStopping:
			b.Stopping, b.StoppingWhy = first(b.Stopping, at), e.Detail
		case podstate.TimelineExited:
			code := e.Code
			b.Exited, b.ExitCode, b.ExitHow = &at, &code, e.Detail
		case podstate.TimelineUndone:
			b.Undone, b.Exited = true, &at
		case podstate.TimelinePodsMet:
			// Met and unmet may alternate; the bar shows the first time met, to the last time unmet.
			b.Pods, b.Ready = e.Detail, first(b.Ready, at)
		case podstate.TimelinePodsUnmet:
			b.Pods = e.Detail
			if b.Ready != nil {
				b.Exited = &at
			}
		}
	}
	for i := range c.Bars {
		c.Bars[i].Segments = segments(&c.Bars[i], c.End)
	}
	slices.SortStableFunc(c.Bars, func(a, b Bar) int { return a.Created.Compare(b.Created) })
	for _, m := range c.Marks {
		if m.Kind == podstate.TimelineTerminating {
			for i := range c.Bars {
				b := &c.Bars[i]
				if b.Stopping == nil && b.Pods == "" && b.Created.Before(m.At) && (b.Exited == nil || b.Exited.After(m.At)) {
					b.Stopping, b.StoppingWhy = &m.At, "the pod is being deleted"
					b.Segments = segments(b, c.End)
				}
			}
		}
	}
	c.Critical = critical(c.Bars)
	for _, i := range c.Critical {
		c.Bars[i].Critical = true
	}
	return c
}

// segments cuts a bar into its phases, up to its exit or the chart's end.
func segments(b *Bar, end time.Time) []Segment {
	stop, open := end, true
	if b.Exited != nil {
		stop, open = *b.Exited, false
	}
	if b.Pods != "" {
		if b.Ready == nil {
			return []Segment{}
		}
		return []Segment{{Phase: PhaseMet, From: *b.Ready, To: stop, Open: open}}
	}
	type cut struct {
		phase string
		at    *time.Time
	}
	first := PhaseCreated
	if b.HeldOn != "" {
		first = PhaseHeld
	}
	running := b.Running
	if b.HeldOn != "" {
		running = b.Released
	}
	cuts := []cut{{first, &b.Created}, {PhaseRunning, running}, {PhaseReady, b.Ready}, {PhaseStopping, b.Stopping}}
	out := []Segment{}
	for i, ct := range cuts {
		if ct.at == nil || ct.at.After(stop) {
			continue
		}
		to := stop
		for _, next := range cuts[i+1:] {
			if next.at != nil && next.at.Before(to) {
				to = *next.at
				break
			}
		}
		out = append(out, Segment{Phase: ct.phase, From: *ct.at, To: to, Open: open && to.Equal(stop)})
	}
	return out
}

// critical walks back from the bar that was done last — ready, or else released or running — along
// the dependencies that released each: the chain of waits that decided when the pod was up.
func critical(bars []Bar) []int {
	done := func(b Bar) *time.Time {
		if b.HeldOn != "" {
			return cmp.Or(b.Ready, b.Released)
		}
		return cmp.Or(b.Ready, b.Running)
	}
	last := -1
	for i, b := range bars {
		if b.Pods != "" || b.Undone || done(b) == nil {
			continue
		}
		// On a tie, the dependent: a container ready at its release is done when what released it is.
		if last < 0 || done(b).After(*done(bars[last])) || done(b).Equal(*done(bars[last])) && b.ReleasedBy == bars[last].Container {
			last = i
		}
	}
	if last < 0 {
		return []int{}
	}
	chain := []int{last}
	seen := map[int]bool{last: true}
	for b := bars[last]; b.ReleasedBy != "" && b.Released != nil; {
		// The attempt of the dependency that met the release: the newest created before it.
		dep := -1
		for i, d := range bars {
			if d.Container == b.ReleasedBy && !d.Created.After(*b.Released) {
				dep = i
			}
		}
		if dep < 0 || seen[dep] {
			break
		}
		seen[dep] = true
		chain = append(chain, dep)
		b = bars[dep]
	}
	slices.Reverse(chain)
	return chain
}

// first keeps the earliest of a time already known and a new one.
func first(known *time.Time, at time.Time) *time.Time {
	if known != nil && known.Before(at) {
		return known
	}
	return &at
}

// Label names a bar as people read it: "db #0", "pods app=db".
func (b Bar) Label() string {
	if b.Pods != "" {
		return b.Container
	}
	return fmt.Sprintf("%s #%d", b.Container, b.Attempt)
}

// since formats the time from the chart's start: "0ms", "840ms", "1.21s", "2m3.5s".
func (c Chart) since(t time.Time) string { return short(t.Sub(c.Start)) }

// short formats a duration to the millisecond, compactly.
func short(d time.Duration) string {
	switch {
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < time.Minute:
		return fmt.Sprintf("%.2fs", d.Seconds())
	}
	return d.Round(100 * time.Millisecond).String()
}
