package decl

// Shutdown is the order in which a deleted pod's regular containers stop with podorder. kubelet runs
// every container's preStop hook at once and signals each container once its own preStop returned.
// daemonset/lifecycle.yaml gives each regular container that others wait for, and that has no
// preStop of its own, podorder's preStop, which returns once the containers that wait for it exited
// (hooks.WaitDependents): dependents stop before their dependencies. A container with a preStop of
// its own keeps it and is not ordered.
type Shutdown struct {
	// Stages lists the regular containers by when kubelet signals them, in spec order within a
	// stage: those of the first stage at once, those of a later stage once every container that
	// waits for them exited, which all belong to earlier stages. Containers whose creation podorder
	// refuses never run and are left out.
	Stages [][]string
	// AfterExitOf maps each container that gets podorder's preStop to the containers whose exit it
	// waits for.
	AfterExitOf map[string][]string
	// Stalled maps a container that gets podorder's preStop to the native sidecars among those:
	// kubelet stops native sidecars only after every regular container exited, so that preStop
	// returns only when kubelet kills it at the end of the grace period.
	Stalled map[string][]string
	// OwnPreStop lists, in spec order, the containers others wait for that keep a preStop of their
	// own: kubelet signals them once it returned, whatever waits for them.
	OwnPreStop []string
}

// Ordered reports whether podorder orders anything: else kubelet stops every container at once.
func (s Shutdown) Ordered() bool { return len(s.AfterExitOf) > 0 }

// ShutdownOrder computes how the pod's regular containers stop when it is deleted. cs are the pod's
// containers in spec order; ownPreStop names those whose spec has a preStop hook of their own. Only
// regular containers are ordered: init containers have completed by then, and kubelet stops native
// sidecars itself, after the regular containers (see Stalled).
func (p *Pod) ShutdownOrder(cs []Container, ownPreStop map[string]bool) Shutdown {
	s := Shutdown{AfterExitOf: map[string][]string{}, Stalled: map[string][]string{}}
	var regular, running []Container
	isRegular := map[string]bool{}
	for _, c := range cs {
		if _, err := p.For(c.Name); err != nil || c.Role == Init {
			continue // never runs, or completed before the regular containers started
		}
		running = append(running, c)
		if c.Role == Regular {
			regular = append(regular, c)
			isRegular[c.Name] = true
		}
	}
	for _, c := range regular {
		var dependents, sidecars []string
		for _, d := range running {
			if h := p.Declared[d.Name]; h != nil && waitsFor(h, c.Name) {
				dependents = append(dependents, d.Name)
				if d.Role == Sidecar {
					sidecars = append(sidecars, d.Name)
				}
			}
		}
		switch {
		case len(dependents) == 0:
		case ownPreStop[c.Name]:
			s.OwnPreStop = append(s.OwnPreStop, c.Name)
		default:
			s.AfterExitOf[c.Name] = dependents
			if len(sidecars) > 0 {
				s.Stalled[c.Name] = sidecars
			}
		}
	}
	// A container's stage is one past the latest stage of what it waits to exit. The containers that
	// run form no cycle (a cycle fails every container on it), so this ends; seen guards it anyway.
	stage := map[string]int{}
	seen := map[string]bool{}
	var stageOf func(c string) int
	stageOf = func(c string) int {
		if n, ok := stage[c]; ok || seen[c] {
			return n
		}
		seen[c] = true
		n := 0
		for _, d := range s.AfterExitOf[c] {
			if isRegular[d] {
				n = max(n, stageOf(d)+1)
			}
		}
		stage[c] = n
		return n
	}
	for _, c := range regular {
		n := stageOf(c.Name)
		for len(s.Stages) <= n {
			s.Stages = append(s.Stages, nil)
		}
		s.Stages[n] = append(s.Stages[n], c.Name)
	}
	return s
}

// waitsFor reports whether h waits for container, whatever the condition.
func waitsFor(h *Declared, container string) bool {
	for _, d := range h.After {
		if d.Container == container {
			return true
		}
	}
	return false
}
