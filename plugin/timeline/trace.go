package timeline

import (
	"cmp"
	"encoding/json"
	"io"
	"slices"
	"time"
)

// TraceEvent is one event of the Chrome trace-event format, which ui.perfetto.dev and
// chrome://tracing open: a complete event (ph "X", with dur), an instant (ph "i", scope s) or
// metadata naming a process or thread (ph "M"). Times are microseconds from the chart's start.
type TraceEvent struct {
	Name string         `json:"name"`
	Cat  string         `json:"cat,omitempty"`
	Ph   string         `json:"ph"`
	TS   int64          `json:"ts"`
	Dur  *int64         `json:"dur,omitempty"`
	PID  int            `json:"pid"`
	TID  int            `json:"tid"`
	S    string         `json:"s,omitempty"`
	Args map[string]any `json:"args,omitempty"`
}

// Trace is a trace-event file.
type Trace struct {
	TraceEvents     []TraceEvent `json:"traceEvents"`
	DisplayTimeUnit string       `json:"displayTimeUnit"`
}

// BuildTrace turns the chart into a trace: the pod is a process, each bar a thread (track) whose
// phases are complete events and whose facts (running, released, ready, exited) are instants; the
// pod's own moments are instants on track 0. Events of the critical path have category "critical".
func BuildTrace(c Chart) Trace {
	us := func(t time.Time) int64 { return t.Sub(c.Start).Microseconds() }
	t := Trace{DisplayTimeUnit: "ms", TraceEvents: []TraceEvent{
		{Name: "process_name", Ph: "M", PID: 1, Args: map[string]any{"name": "pod " + c.Pod}},
		{Name: "thread_name", Ph: "M", PID: 1, TID: 0, Args: map[string]any{"name": "pod"}},
	}}
	for _, m := range c.Marks {
		t.TraceEvents = append(t.TraceEvents, TraceEvent{Name: m.Kind, Cat: "pod", Ph: "i", S: "p", TS: us(m.At), PID: 1, TID: 0,
			Args: map[string]any{"detail": m.Detail}})
	}
	for i, bar := range c.Bars {
		tid := i + 1
		cat := "podorder"
		name := bar.Label()
		if bar.Critical {
			cat, name = "critical", "* "+name
		}
		t.TraceEvents = append(t.TraceEvents,
			TraceEvent{Name: "thread_name", Ph: "M", PID: 1, TID: tid, Args: map[string]any{"name": name}},
			TraceEvent{Name: "thread_sort_index", Ph: "M", PID: 1, TID: tid, Args: map[string]any{"sort_index": tid}})
		args := map[string]any{"container": bar.Container, "attempt": bar.Attempt, "id": bar.ID, "summary": describe(c, bar)}
		// One track's events in time order: each phase, then the instants at its start.
		for _, s := range bar.Segments {
			to := s.To
			if s.Open {
				to = c.End
			}
			dur := us(to) - us(s.From)
			t.TraceEvents = append(t.TraceEvents, TraceEvent{Name: s.Phase, Cat: cat, Ph: "X", TS: us(s.From), Dur: &dur, PID: 1, TID: tid, Args: args})
		}
		instant := func(name string, at *time.Time, detail string) {
			if at != nil {
				t.TraceEvents = append(t.TraceEvents, TraceEvent{Name: name, Cat: cat, Ph: "i", S: "t", TS: us(*at), PID: 1, TID: tid,
					Args: map[string]any{"detail": detail}})
			}
		}
		instant("runtime start returned", bar.Running, "")
		instant("released", bar.Released, bar.ReleasedHow)
		instant("ready", bar.Ready, bar.ReadyBy)
		instant("stopping", bar.Stopping, bar.StoppingWhy)
		if bar.ExitCode != nil {
			instant("exited", bar.Exited, bar.ExitHow)
			t.TraceEvents[len(t.TraceEvents)-1].Args["code"] = *bar.ExitCode
		}
	}
	sortByTrack(t.TraceEvents)
	return t
}

// sortByTrack orders each track's events by time (metadata first), keeping tracks in order, so
// that timestamps never go back on a track.
func sortByTrack(evs []TraceEvent) {
	key := func(e TraceEvent) int64 {
		if e.Ph == "M" {
			return -1
		}
		return e.TS
	}
	slices.SortStableFunc(evs, func(a, b TraceEvent) int { return cmp.Or(cmp.Compare(a.TID, b.TID), cmp.Compare(key(a), key(b))) })
}

// WritePerfetto writes the chart as a Chrome / Perfetto trace-event JSON file.
func WritePerfetto(w io.Writer, c Chart) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", " ")
	return enc.Encode(BuildTrace(c))
}
