package decl

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
	"time"

	"github.com/podorder/podorder/hooks/dependency"
)

// ExitCondition is which exits of a container stop the containers bound to it with stop-with.
type ExitCondition string

const (
	// Exited: any exit, whatever its code.
	Exited ExitCondition = "exited"
	// Succeeded: an exit with code 0.
	Succeeded ExitCondition = "succeeded"
	// Failed: an exit with a non-zero code.
	Failed ExitCondition = "failed"
)

// Trigger is one entry of stop-with: the bound container stops when Container's current attempt
// exits as On says.
type Trigger struct {
	Container string
	On        ExitCondition
}

// String formats the trigger as the annotation form writes it.
func (t Trigger) String() string { return t.Container + ":" + string(t.On) }

// Matches reports whether an exit with code fires the trigger.
func (t Trigger) Matches(code int32) bool {
	switch t.On {
	case Succeeded:
		return code == 0
	case Failed:
		return code != 0
	}
	return true
}

// stopSignals are the signals a stop may start with, in the order messages list them: the ones
// programs handle as "shut down".
var stopSignals = []struct {
	name string
	sig  syscall.Signal
}{
	{"SIGTERM", syscall.SIGTERM}, {"SIGINT", syscall.SIGINT}, {"SIGQUIT", syscall.SIGQUIT},
	{"SIGHUP", syscall.SIGHUP}, {"SIGUSR1", syscall.SIGUSR1}, {"SIGUSR2", syscall.SIGUSR2},
}

// stopSignalNames lists the stop signals' names: SIGTERM, SIGINT, ...
func stopSignalNames() []string {
	names := make([]string, len(stopSignals))
	for i, s := range stopSignals {
		names[i] = s.name
	}
	return names
}

// SignalName names a stop signal, or SIGKILL, as people write it.
func SignalName(sig syscall.Signal) string {
	if sig == syscall.SIGKILL {
		return "SIGKILL"
	}
	for _, s := range stopSignals {
		if s.sig == sig {
			return s.name
		}
	}
	return sig.String()
}

// parseStopSignal reads "SIGTERM" or "TERM", in any case.
func parseStopSignal(v string) (syscall.Signal, error) {
	name := strings.ToUpper(strings.TrimSpace(v))
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	for _, s := range stopSignals {
		if s.name == name {
			return s.sig, nil
		}
	}
	return 0, errors.New(stopSignalGrammar)
}

// parseStopGrace reads the time between a stop's signal and its SIGKILL.
func parseStopGrace(v string) (time.Duration, error) {
	d, err := time.ParseDuration(strings.TrimSpace(v))
	if err != nil || d < time.Second || d > MaxTimeout {
		return 0, errors.New(stopGraceGrammar)
	}
	return d, nil
}

// parseStopWith reads the label form "main.worker_failed" or the annotation form
// "main, worker:failed".
func parseStopWith(v string, label bool) ([]Trigger, error) {
	if strings.TrimSpace(v) == "" {
		return nil, errors.New("empty stop-with list: name at least one container")
	}
	sep, condSep := ",", ":"
	if label {
		sep, condSep = ".", "_"
	}
	var out []Trigger
	for _, item := range strings.Split(v, sep) {
		name, cond, hasCond := strings.Cut(strings.TrimSpace(item), condSep)
		name = strings.TrimSpace(name)
		if !validContainerName(name) {
			return nil, fmt.Errorf("%s is not a container name (lowercase letters, digits and '-', at most 63)", Quote(name))
		}
		t := Trigger{Container: name, On: Exited}
		if hasCond {
			switch c := ExitCondition(strings.TrimSpace(cond)); c {
			case Exited, Succeeded, Failed:
				t.On = c
			default:
				return nil, fmt.Errorf("%s: unknown exit condition %s: use exited, succeeded or failed", name, Quote(string(c)))
			}
		}
		out = append(out, t)
	}
	return out, nil
}

// readStopWith reads podorder.dev/stop-with.<c>, in its label or its annotation form; both merge.
func (r *reader) readStopWith(k key) error {
	list, err := parseStopWith(k.value, k.source == "label")
	if err != nil {
		return err
	}
	c := k.container
	if r.stops[c] == nil {
		r.stops[c] = map[string]ExitCondition{}
	}
	for _, t := range list {
		if prev, dup := r.stops[c][t.Container]; dup && prev != t.On {
			r.pod.fail(c, fmt.Errorf("%s: container %s stops with %s twice with different conditions (%s and %s): keep one", k.where, c, t.Container, prev, t.On))
			continue
		}
		r.stops[c][t.Container] = t.On
	}
	r.pod.hold(c)
	return nil
}

// settleStopWith writes each container's merged triggers into its Declared, sorted.
func (r *reader) settleStopWith() {
	for c, m := range r.stops {
		h := r.pod.hold(c)
		for _, name := range sortedKeys(m) {
			if name == c {
				r.pod.fail(c, fmt.Errorf("container %s stops with itself: remove %s from %s%s.%s", c, c, Domain, KindStopWith, c))
				continue
			}
			h.StopWith = append(h.StopWith, Trigger{Container: name, On: m[name]})
		}
		if len(h.StopWith) > MaxDependencies {
			r.pod.fail(c, fmt.Errorf("container %s stops with %d containers, more than the %d podorder allows", c, len(h.StopWith), MaxDependencies))
		}
	}
}

// readStopGrace reads podorder.dev/stop-grace.<c>.
func (r *reader) readStopGrace(k key) error {
	d, err := parseStopGrace(k.value)
	if err != nil {
		return err
	}
	r.pod.hold(k.container).StopGrace = d
	return nil
}

// readStopSignal reads podorder.dev/stop-signal.<c>.
func (r *reader) readStopSignal(k key) error {
	sig, err := parseStopSignal(k.value)
	if err != nil {
		return err
	}
	r.pod.hold(k.container).StopSignal = sig
	return nil
}

// StoppedBy returns the trigger of h that an exit of container with code fires, if any.
func (h *Declared) StoppedBy(container string, code int32) (Trigger, bool) {
	for _, t := range h.StopWith {
		if t.Container == container && t.Matches(code) {
			return t, true
		}
	}
	return Trigger{}, false
}

// DependedOn reports whether some container of the pod waits for container: its preStop hook then
// waits for them to exit when the pod is deleted.
func (p *Pod) DependedOn(container string) bool {
	return p.dependedOn(container, func(dependency.Condition) bool { return true })
}

// WaitedReady reports whether some container of the pod waits for container to be ready: only
// then is its readiness worth a probe.
func (p *Pod) WaitedReady(container string) bool {
	return p.dependedOn(container, func(c dependency.Condition) bool { return c == dependency.Ready })
}

// dependedOn reports whether some container waits for container with a condition that counts.
func (p *Pod) dependedOn(container string, counts func(dependency.Condition) bool) bool {
	for _, h := range p.Declared {
		for _, d := range h.After {
			if d.Container == container && counts(d.Condition) {
				return true
			}
		}
	}
	return false
}

// DefaultStopSignal is the first signal of podorder's stop when a container declares none, as of
// kubelet's.
const DefaultStopSignal = syscall.SIGTERM

// StopSignalAndGrace returns the signal podorder's stop of the container starts with, and how long
// it waits after it before SIGKILL, in a pod whose terminationGracePeriodSeconds is podGrace.
func (h *Declared) StopSignalAndGrace(podGrace time.Duration) (syscall.Signal, time.Duration) {
	sig, grace := h.StopSignal, h.StopGrace
	if sig == 0 {
		sig = DefaultStopSignal
	}
	if grace == 0 {
		grace = podGrace
	}
	return sig, grace
}
