//go:build !mutant_onedepignored

package podstate

import "github.com/podorder/podorder/hooks/dependency"

// allMet reports whether every one of deps is met.
func (p *Pod) allMet(deps []dependency.Dependency) bool {
	for _, d := range deps {
		if dependency.Evaluate(d.Condition, p.state(d.Container)) != dependency.Met {
			return false
		}
	}
	return true
}
