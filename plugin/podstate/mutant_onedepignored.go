//go:build mutant_onedepignored

package podstate

import "github.com/podorder/podorder/hooks/dependency"

// A planted bug for `make mutants` (test/e2e TestCheckerCatchesPlantedBugs): the last of several
// dependencies of a container is ignored.
func (p *Pod) allMet(deps []dependency.Dependency) bool {
	if len(deps) > 1 {
		deps = deps[:len(deps)-1]
	}
	for _, d := range deps {
		if dependency.Evaluate(d.Condition, p.state(d.Container)) != dependency.Met {
			return false
		}
	}
	return true
}
