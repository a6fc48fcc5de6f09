package decl

import (
	"fmt"

	"github.com/podorder/podorder/hooks/dependency"
)

// Role is how kubelet runs a container of a pod, which decides what it can wait for.
type Role int

const (
	// Regular is a container of spec.containers; kubelet starts them after every init container.
	Regular Role = iota
	// Init is an init container that runs to completion; kubelet runs them one at a time, in order.
	Init
	// Sidecar is an init container with restartPolicy Always (a native sidecar): kubelet starts the
	// next container once it has started, which with a startupProbe means once that probe passed.
	Sidecar
)

// Container is one container of the pod spec, as far as ordering is concerned.
type Container struct {
	Name string
	Role Role
	// StartupProbe is set when the container has a startupProbe.
	StartupProbe bool
	// Restarts is set when kubelet starts the container again after it exits 0: a regular container
	// of a pod whose restartPolicy is Always (the default, and a Deployment's), or a native sidecar.
	Restarts bool
	// ReadinessProbe is set when the container has a readinessProbe.
	ReadinessProbe bool
	// ReadinessCheck is that readinessProbe as a check podorder can run itself from inside the pod;
	// nil when there is none or it must stay with kubelet, and KubeletOnly then says why, for people.
	ReadinessCheck *Probe
	KubeletOnly    string
}

// blocksKubelet reports whether kubelet waits for this container before it starts the next one
// while it is held: an init container until it completes, a native sidecar with a startupProbe
// until the probe passes. A native sidecar without one counts as started once its runtime start
// returned, which a hold does not delay.
func (c Container) blocksKubelet() bool {
	return c.Role == Init || c.Role == Sidecar && c.StartupProbe
}

func (c Container) describe() string {
	switch {
	case c.Role == Init:
		return "init container " + c.Name
	case c.Role == Sidecar && c.StartupProbe:
		return "native sidecar " + c.Name + " (with a startupProbe)"
	case c.Role == Sidecar:
		return "native sidecar " + c.Name
	}
	return "container " + c.Name
}

// CheckContainers checks the declarations against the pod's containers, in spec order (init
// containers first): names that are not in the pod, holds that kubelet's own order can never
// satisfy, and, as warnings, waits for the completion of a container kubelet restarts. An init container, or a native sidecar with a startupProbe, that waits for a container
// kubelet starts only after it (a regular container, or a later init container) deadlocks: kubelet
// waits for it, and it waits for what kubelet will not start.
func (p *Pod) CheckContainers(cs []Container) {
	names := make([]string, len(cs))
	index := map[string]int{}
	for i, c := range cs {
		names[i] = c.Name
		index[c.Name] = i
	}
	p.CheckNames(names)
	p.checkRestarts(cs, index)
	for _, name := range sortedKeys(p.Declared) {
		i, ok := index[name]
		if !ok || !cs[i].blocksKubelet() {
			continue
		}
		for _, d := range p.Declared[name].After {
			j, ok := index[d.Container]
			if !ok || j < i {
				continue
			}
			dep := cs[j]
			why := "kubelet starts regular containers only after every init container completed and every native sidecar started"
			if dep.Role != Regular {
				why = "kubelet starts init containers one at a time, in order, each after the previous one completed or started"
			}
			p.fail(name, fmt.Errorf("deadlock %s → %s → %s (→ means \"waits for\"): %s waits for %s, but %s; "+
				"wait for %s from a regular container instead, or drop the dependency",
				cs[i].Name, dep.Name, cs[i].Name, cs[i].describe(), dep.describe(), why, dep.Name))
		}
	}
}

// checkRestarts warns of a wait for the completion of a container that kubelet starts again after it
// exits 0: the dependent is released at its first exit 0, and the container itself runs again and
// again (a migration re-run, a pod that never settles), which is rarely what was meant.
func (p *Pod) checkRestarts(cs []Container, index map[string]int) {
	for _, name := range sortedKeys(p.Declared) {
		for _, d := range p.Declared[name].After {
			i, ok := index[d.Container]
			if !ok || d.Condition != dependency.Completed || !cs[i].Restarts {
				continue
			}
			p.warn(name, fmt.Sprintf("%s waits for %s to complete, but kubelet starts %s again after it exits 0 (%s): "+
				"it runs again and again and the pod never settles. Make %s an init container (kubelet then runs it to completion "+
				"before every regular container, and it may wait for a native sidecar such as a database), or run it as a Job",
				name, d.Container, d.Container, restartsWhy(cs[i]), d.Container))
		}
	}
}

func restartsWhy(c Container) string {
	if c.Role == Sidecar {
		return "it is a native sidecar, restartPolicy Always"
	}
	return "the pod's restartPolicy is Always"
}
