package explain

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/podorder/podorder/plugin/decl"
	"github.com/podorder/podorder/plugin/podstate"
)

// ErrProblems is returned by Write and WriteJSON when a workload has errors: `podorder explain`
// exits non-zero.
var ErrProblems = errors.New("podorder would reject some of these pods")

// problems reports ErrProblems when a workload has errors.
func problems(ws []Workload) error {
	for _, w := range ws {
		if len(w.Errors) > 0 {
			return ErrProblems
		}
	}
	return nil
}

// WriteJSON prints the workloads as a JSON array, one object per workload (see Workload).
func WriteJSON(out io.Writer, ws []Workload) error {
	if ws == nil {
		ws = []Workload{}
	}
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	if err := enc.Encode(ws); err != nil {
		return err
	}
	return problems(ws)
}

// Write prints the workloads for people.
func Write(out io.Writer, ws []Workload) error {
	for _, w := range ws {
		name := w.Name
		if w.File != "" {
			name += " (" + w.File + ")"
		}
		if !w.UsesPodorder {
			fmt.Fprintf(out, "%s: no podorder keys; kubelet's own order\n\n", name)
			continue
		}
		fmt.Fprintf(out, "%s\n", name)
		writeStart(out, w)
		for _, c := range slices.Sorted(maps.Keys(w.Readiness)) {
			fmt.Fprintf(out, "  %s is ready on %s\n", c, w.Readiness[c])
		}
		writeStopWith(out, w.StopWith)
		writeShutdown(out, w.ShutdownOrder)
		switch w.ReadinessGate {
		case GateInSpec:
			fmt.Fprintf(out, "  pod Ready: only once no container is held, through its readinessGate %s\n", podstate.ConditionType)
		case GateByPolicy:
			fmt.Fprintf(out, "  pod Ready: only once no container is held, through the readinessGate %s that daemonset/readiness.yaml adds at creation (without that policy, write it in the spec)\n",
				podstate.ConditionType)
		}
		for _, e := range w.Errors {
			fmt.Fprintf(out, "  error: %s\n", e)
		}
		for _, wn := range w.Warnings {
			fmt.Fprintf(out, "  warning: %s\n", wn)
		}
		fmt.Fprintln(out)
	}
	return problems(ws)
}

// writeStart prints the start plan: init containers, layers, what is never released, the timeouts.
func writeStart(out io.Writer, w Workload) {
	after := func(c string) string {
		deps := w.Waits[c]
		if len(deps) == 0 {
			return c
		}
		parts := make([]string, len(deps))
		for i, d := range deps {
			parts[i] = d.String()
		}
		return c + " after " + strings.Join(parts, ", ")
	}
	if len(w.Init) > 0 {
		parts := make([]string, len(w.Init))
		for i, c := range w.Init {
			parts[i] = after(c)
		}
		fmt.Fprintf(out, "  init containers, in order: %s\n", strings.Join(parts, "; "))
	}
	if len(w.Waits) == 0 {
		fmt.Fprintln(out, "  start: all at once, as kubelet does: no container waits for another")
	} else if len(w.Layers) > 0 {
		fmt.Fprintln(out, "  start:")
		for i, l := range w.Layers {
			parts := make([]string, len(l))
			for j, c := range l {
				parts[j] = after(c)
			}
			fmt.Fprintf(out, "    %d. %s\n", i+1, strings.Join(parts, "; "))
		}
	}
	if len(w.NeverReleased) > 0 {
		fmt.Fprintf(out, "  never released: %s (each waits for a container podorder refuses, so its hold ends only at its timeout, at every restart)\n",
			strings.Join(w.NeverReleased, ", "))
	}
	if len(w.Timeouts) > 0 {
		var parts []string
		for _, c := range slices.Sorted(maps.Keys(w.Timeouts)) {
			t := w.Timeouts[c]
			if t == decl.DefaultTimeout.String() {
				t += " (the default)"
			}
			parts = append(parts, c+" "+t)
		}
		fmt.Fprintf(out, "  held at most: %s; then the container exits 255 and kubelet restarts it\n", strings.Join(parts, ", "))
	}
}

// String formats the dependency as people read it: "db (ready)", "pod(app=db):ready".
func (d Dependency) String() string {
	if d.Pods != "" {
		return fmt.Sprintf("pod(%s):%s", d.Pods, d.Condition)
	}
	return fmt.Sprintf("%s (%s)", d.Container, d.Condition)
}

// writeStopWith prints whom podorder stops when others exit.
func writeStopWith(out io.Writer, bs []StopBinding) {
	if len(bs) == 0 {
		return
	}
	fmt.Fprintln(out, "  stop-with (not while the pod is being deleted; a container still held has its hold ended instead):")
	for _, b := range bs {
		var when []string
		for _, t := range b.When {
			when = append(when, t.Container+" "+exits(t.On))
		}
		from := "the pod's terminationGracePeriodSeconds"
		if b.GraceFrom == "stop-grace" {
			from = decl.Domain + decl.KindStopGrace + "." + b.Container
		}
		fmt.Fprintf(out, "    %s stops when %s: %s, then SIGKILL after %s (%s)\n", b.Container, strings.Join(when, " or "), b.Signal, b.Grace, from)
	}
}

// exits says which exits an exit condition names.
func exits(on string) string {
	switch decl.ExitCondition(on) {
	case decl.Succeeded:
		return "exits with code 0"
	case decl.Failed:
		return "exits with a non-zero code"
	}
	return "exits, whatever its code"
}

// writeShutdown prints the order in which the containers stop when the pod is deleted.
func writeShutdown(out io.Writer, s Shutdown) {
	if !s.Ordered {
		line := "  shutdown when the pod is deleted: all at once, as kubelet does (podorder orders only the containers others wait for"
		if len(s.OwnPreStop) > 0 {
			line += "; " + strings.Join(s.OwnPreStop, ", ") + " keep a preStop of their own"
		}
		fmt.Fprintln(out, line+")")
		return
	}
	fmt.Fprintln(out, "  shutdown when the pod is deleted, dependents first (podorder's preStop, added by daemonset/lifecycle.yaml):")
	for i, stage := range s.Stages {
		parts := make([]string, len(stage))
		for j, c := range stage {
			switch {
			case len(s.AfterExitOf[c]) > 0:
				parts[j] = c + ", once " + and(s.AfterExitOf[c]) + " exited"
			case slices.Contains(s.OwnPreStop, c):
				parts[j] = c + " (its own preStop: not ordered)"
			default:
				parts[j] = c
			}
		}
		fmt.Fprintf(out, "    %d. %s\n", i+1, strings.Join(parts, "; "))
	}
}

// and joins names as a sentence does: "a", "a and b", "a, b and c".
func and(names []string) string {
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
}
