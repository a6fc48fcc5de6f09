package decl

import (
	"fmt"
	"strings"
)

// CheckNames reports dependencies and keys that name no container of the pod. containers is the pod's
// full list of container names, known only from the pod spec (the Kubernetes API, or the kubectl
// last-applied annotation); without it a missing name can only surface as a hold that times out.
func (p *Pod) CheckNames(containers []string) {
	known := map[string]bool{}
	for _, c := range containers {
		known[c] = true
	}
	list := strings.Join(containers, ", ")
	for _, c := range sortedKeys(p.Declared) {
		if !known[c] {
			p.failKey(fmt.Errorf("%s keys name container %s, which is not in the pod; containers are: %s", Domain, c, list))
			continue
		}
		onPods := map[string]bool{}
		for _, pd := range p.Declared[c].Pods {
			onPods[pd.Name] = true
		}
		for _, d := range p.Declared[c].After {
			if !known[d.Container] && !onPods[d.Container] {
				p.fail(c, fmt.Errorf("container %s waits for %s, which is not in the pod; containers are: %s", c, d.Container, list))
			}
		}
		for _, t := range p.Declared[c].StopWith {
			if !known[t.Container] {
				p.fail(c, fmt.Errorf("container %s stops with %s, which is not in the pod; containers are: %s", c, t.Container, list))
			}
		}
	}
}

// checkGraph rejects self-dependencies and every container on a dependency cycle, naming the cycle.
func (p *Pod) checkGraph() {
	for _, c := range sortedKeys(p.Declared) {
		for _, d := range p.Declared[c].After {
			if d.Container == c {
				p.fail(c, fmt.Errorf("container %s waits for itself: remove %s from %s%s.%s", c, c, Domain, KindAfter, c))
			}
		}
	}
	const (
		unvisited = iota
		onPath
		done
	)
	state := map[string]int{}
	var path []string
	var visit func(c string)
	visit = func(c string) {
		state[c] = onPath
		path = append(path, c)
		if h := p.Declared[c]; h != nil {
			for _, d := range h.After {
				if d.Container == c {
					continue
				}
				switch state[d.Container] {
				case unvisited:
					visit(d.Container)
				case onPath:
					p.failCycle(path, d.Container)
				}
			}
		}
		path = path[:len(path)-1]
		state[c] = done
	}
	for _, c := range sortedKeys(p.Declared) {
		if state[c] == unvisited {
			visit(c)
		}
	}
}

func (p *Pod) failCycle(path []string, back string) {
	start := 0
	for i, c := range path {
		if c == back {
			start = i
		}
	}
	cycle := append(append([]string{}, path[start:]...), back)
	msg := strings.Join(cycle, " → ")
	for _, c := range cycle[:len(cycle)-1] {
		p.fail(c, fmt.Errorf("dependency cycle %s (→ means \"waits for\"): no container on it could ever start; remove one of these dependencies", msg))
	}
}
