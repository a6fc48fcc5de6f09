package podstate

import (
	"log/slog"
	"time"

	"github.com/podorder/podorder/hooks/dependency"
	"github.com/podorder/podorder/plugin/decl"
)

// Probed reports whether a's readiness comes from a podorder probe.
func (p *Pod) Probed(a *Attempt) bool { return a.Probe != nil && !a.ProbeRefused }

// chooseProbe decides, once, which check podorder runs for a (see probeFor). Once chosen it stays:
// the API's pod arriving later cannot change a choice already acted on, which would leave readiness
// waiting for a probe that never started.
func (p *Pod) chooseProbe(a *Attempt) {
	if a.probeChosen {
		return
	}
	a.probeChosen = true
	a.Probe = p.probeFor(a.Name(), a.Declared)
}

// probeFor is the check podorder runs for the readiness of the container called name, whose
// declarations are h: none unless a container of the pod waits for it to be ready, so that probes
// nobody needs never cost the node; then the podorder.dev/probe annotation if any; else its own
// readinessProbe, when podorder can run it from inside the pod, unless the pod opts out with
// podorder.dev/readiness.<c>: kubelet.
func (p *Pod) probeFor(name string, h *decl.Declared) *decl.Probe {
	switch {
	case !p.Node.Probes || !p.Decl.WaitedReady(name):
		return nil
	case h != nil && h.Probe != nil:
		return h.Probe
	case h != nil && (h.KubeletReadiness || h.Signal != nil), !p.Node.API, !p.Node.reachable():
		return nil
	}
	return p.Spec[name].ReadinessCheck
}

// kubeletJudges reports whether kubelet's readiness of the container called name is one of its
// sources: with the API, when it has a readinessProbe, or when the API has not shown it yet (to be
// safe). For a container without a readinessProbe kubelet's "ready" only means "running", which
// podorder knows first and better (it knows the hold): waiting for kubelet would only add latency.
func (p *Pod) kubeletJudges(name string) bool {
	if !p.Node.API {
		return false
	}
	c, known := p.Spec[name]
	return !known || c.ReadinessProbe
}

// Readiness is what decides a container's readiness for the containers that wait for it.
type Readiness struct {
	// Probe is the check podorder runs; nil when none. When it is the container's own
	// readinessProbe (Probe.Readiness), kubelet's verdict on the same check is enough too.
	Probe *decl.Probe
	// Kubelet is set when kubelet's verdict is a source.
	Kubelet bool
	// Signal is the container's own readiness signal (notify or file), the only source when set.
	Signal *decl.Signal
}

// ReadinessOf says what decides the readiness of the container called name, as the daemon decides it
// (for `podorder explain`).
func (p *Pod) ReadinessOf(name string) Readiness {
	h, _ := p.Decl.For(name)
	if h != nil && h.Signal != nil && p.Decl.WaitedReady(name) {
		return Readiness{Signal: h.Signal}
	}
	return Readiness{Probe: p.probeFor(name, h), Kubelet: p.kubeletJudges(name)}
}

// syncProbes starts the probe of each attempt that needs one now and ends the others: a probe runs
// only while its attempt's process runs, it has not passed, and a container of the pod is held
// waiting for it to be ready — the moment nobody waits any more, it costs the node nothing.
func (p *Pod) syncProbes() []Effect {
	var o out
	for _, name := range p.names() {
		a := p.Attempts[name]
		ts := a.TS
		want := ts.ReleasedAt != nil && ts.ExitedAt == nil && ts.ProbeReadyAt == nil && ts.ReadyAt == nil && p.Probed(a) && p.heldFor(name)
		switch {
		case want && !a.Probing:
			a.Probing = true
			o.add(StartProbe{a})
		case !want && a.Probing:
			o.endProbe(a)
		}
	}
	return o
}

// heldFor reports whether a container of the pod is held right now waiting for the named one to be
// ready.
func (p *Pod) heldFor(name string) bool {
	for _, b := range p.Attempts {
		if !b.Holding() || b.TS.HoldFailed != "" || b.Declared == nil {
			continue
		}
		for _, d := range b.Declared.After {
			if d.Container == name && d.Condition == dependency.Ready {
				return true
			}
		}
	}
	return false
}

// markReleased records that a's own process runs, starts its probe, and refreshes its readiness.
func (p *Pod) markReleased(a *Attempt, now time.Time) []Effect {
	var o out
	a.TS.ReleasedAt = &now
	p.chooseProbe(a)
	o.add(p.syncProbes()...)
	o.add(p.refreshReady(a, now)...)
	return o
}

// refreshReady sets ReadyAt once a is released and its readiness sources say so. Kubelet calls a
// held container ready, so no source counts before the release. Then:
//   - when podorder evaluates a's own readinessProbe, either verdict on that check is enough,
//     podorder's or kubelet's: podorder's is usually first, and kubelet's covers a probe that has
//     not decided yet, so podorder's probe can only make readiness sooner, never later;
//   - else its podorder.dev/probe must pass, and kubelet's readiness too when that is a source;
//   - a container whose own process signals its readiness (notify, file) is ready on that signal
//     alone, unless it could not be watched.
func (p *Pod) refreshReady(a *Attempt, now time.Time) []Effect {
	ts := a.TS
	if ts.ReadyAt != nil || ts.ReleasedAt == nil || ts.ExitedAt != nil {
		return nil
	}
	p.chooseProbe(a)
	switch {
	case a.Signal != nil && !a.SignalRefused:
		if a.SignalledAt == nil {
			return nil
		}
	case p.Probed(a) && a.Probe.Readiness:
		if ts.ProbeReadyAt == nil && ts.KubeletReadyAt == nil {
			return nil
		}
	case p.Probed(a) && ts.ProbeReadyAt == nil:
		return nil
	case p.kubeletJudges(a.Name()) && ts.KubeletReadyAt == nil:
		return nil
	}
	ts.ReadyAt = &now
	p.note(a, now, TimelineReady, readySource(a))
	return []Effect{Log{Level: slog.LevelInfo, Container: a.Name(), Msg: "ready", Args: []any{"after_release_ms", now.Sub(*ts.ReleasedAt).Milliseconds()}}}
}

// ProbePassed is podorder's probe of a passing.
func (p *Pod) ProbePassed(a *Attempt, now time.Time) []Effect {
	if p.Attempts[a.Name()] != a || a.TS.ExitedAt != nil || a.TS.ProbeReadyAt != nil {
		return nil
	}
	var o out
	a.TS.ProbeReadyAt = &now
	a.Probing = false
	o.log(slog.LevelInfo, a.Name(), "probe passed", "probe", a.Probe.String())
	o.add(p.refreshReady(a, now)...)
	o.write(p, a)
	o.add(p.release(now)...)
	return o
}

// SignalSeen is a's readiness signal seen by the shell: a READY=1 datagram that the shell checked
// came from a process of a, or a's path existing in a's mount namespace. It counts only for a's
// current attempt, and (through refreshReady) only once a is released.
func (p *Pod) SignalSeen(a *Attempt, now time.Time) []Effect {
	if p.Attempts[a.Name()] != a || a.Signal == nil || a.TS.ExitedAt != nil || a.SignalledAt != nil {
		return nil
	}
	var o out
	a.SignalledAt = &now
	o.endSignal(a)
	o.log(slog.LevelInfo, a.Name(), "readiness signalled", "readiness", a.Signal.String())
	o.add(p.refreshReady(a, now)...)
	o.write(p, a)
	o.add(p.release(now)...)
	return o
}

// SignalRefused is the shell unable to watch for a's readiness signal (the node's or the pod's
// capacity is used up, or the kernel refuses what it needs): readiness comes from the other
// sources, as for a refused probe.
func (p *Pod) SignalRefused(a *Attempt, err error, now time.Time) []Effect {
	if p.Attempts[a.Name()] != a || a.Signal == nil || a.SignalRefused {
		return nil
	}
	var o out
	a.Signalling = false
	a.SignalRefused = true
	sig := a.Signal.String()
	o.log(slog.LevelError, a.Name(), "cannot watch the readiness signal; readiness comes from kubelet, or from the release without the API", "readiness", sig, "error", err)
	o.record(true, ReasonSignalRefused, "the readiness %s of container %s cannot be watched: %v; its readiness comes from kubelet instead", sig, a.Name(), err)
	o.endSignal(a)
	o.add(p.refreshReady(a, now)...)
	if a.TS.ReadyAt != nil {
		o.write(p, a)
		o.add(p.release(now)...)
	}
	return o
}

// ProbeRefused is the node refusing to run a's probe: readiness comes from the other sources.
func (p *Pod) ProbeRefused(a *Attempt, err error, now time.Time) []Effect {
	var o out
	a.Probing = false
	a.ProbeRefused = true
	probe := a.Probe.String()
	o.log(slog.LevelError, a.Name(), "cannot probe; readiness comes from kubelet, or from the release without the API", "probe", probe, "error", err)
	o.record(true, ReasonProbeRefused, "the probe %s of container %s cannot run: %v; its readiness comes from kubelet instead", probe, a.Name(), err)
	o.add(p.refreshReady(a, now)...)
	if a.TS.ReadyAt != nil {
		o.write(p, a)
		o.add(p.release(now)...)
	}
	return o
}

// kubeletReady is kubelet reporting a ready through the API.
func (p *Pod) kubeletReady(a *Attempt, now time.Time) []Effect {
	if a.TS.KubeletReadyAt != nil || a.TS.ExitedAt != nil {
		return nil
	}
	var o out
	a.TS.KubeletReadyAt = &now
	o.add(p.refreshReady(a, now)...)
	o.write(p, a)
	o.add(p.release(now)...)
	return o
}

// Observation is the pod as the Kubernetes API shows it at one update, captured by the shell.
type Observation struct {
	// Containers is the pod's spec: its init and regular containers, in spec order.
	Containers []decl.Container
	// Ready lists the containers kubelet reports ready, each with its runtime ID (without the
	// "containerd://" prefix), so that readiness is matched to one attempt, never by name alone.
	Ready []ReadyContainer
	// Terminating is set once the pod is being deleted.
	Terminating bool
	// Exited lists the containers kubelet reports terminated (now or as their last state), with
	// their runtime IDs and exit codes.
	Exited []ExitedContainer
}

// ExitedContainer is a container attempt kubelet reports terminated.
type ExitedContainer struct {
	Name, ID string
	Code     int32
	// Current says it is the container's newest attempt (its state, not its last state), which
	// started and finished at StartedAt and FinishedAt.
	Current               bool
	StartedAt, FinishedAt time.Time
}

// ReadyContainer is a container kubelet reports ready, with its runtime ID.
type ReadyContainer struct{ Name, ID string }

// Observed is an update of the pod from the Kubernetes API: its spec, the first time; kubelet's
// readiness of its containers' current attempts; its deletion.
func (p *Pod) Observed(obs Observation, now time.Time) []Effect {
	var o out
	if p.Spec == nil && obs.Containers != nil {
		p.Spec = specOf(obs.Containers)
	}
	// Every status update of the pod repeats its ready containers: most change nothing.
	for _, rc := range obs.Ready {
		if a := p.Current(rc.Name, rc.ID); a != nil {
			o.add(p.kubeletReady(a, now)...)
		}
	}
	if obs.Exited != nil || p.exitCodes != nil {
		// Each update carries the whole status: the map is replaced, so it stays the pod's size.
		p.exitCodes = make(map[string]int32, len(obs.Exited))
		for _, e := range obs.Exited {
			p.exitCodes[e.ID] = e.Code
		}
		for _, name := range p.names() {
			if a := p.Attempts[name]; a.TS.ExitCodeUnknown {
				if code, ok := p.exitCodes[a.TS.ID]; ok {
					o.add(p.exitLearned(a, code, now)...)
				}
			}
		}
		for _, e := range obs.Exited {
			o.add(p.ranWhileAway(e, now)...)
		}
	}
	if obs.Terminating {
		if !p.Terminating {
			p.note(nil, now, TimelineTerminating, "the pod is being deleted: its containers stop, dependents first")
		}
		o.add(p.terminating()...)
	}
	return o
}

func specOf(cs []decl.Container) map[string]decl.Container {
	spec := make(map[string]decl.Container, len(cs))
	for _, c := range cs {
		spec[c.Name] = c
	}
	return spec
}
