//go:build !mutant_previousattempt

package podstate

import "github.com/podorder/podorder/hooks/dependency"

// state is what a dependency's waiters may know of it: its newest attempt's, never an older one's.
func (p *Pod) state(container string) dependency.State {
	if a := p.Attempts[container]; a != nil {
		return a.TS.State()
	}
	return dependency.State{}
}
