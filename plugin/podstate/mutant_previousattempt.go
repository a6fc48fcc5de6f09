//go:build mutant_previousattempt

package podstate

import "github.com/podorder/podorder/hooks/dependency"

// A planted bug for `make mutants` (test/e2e TestCheckerCatchesPlantedBugs): until a restarted
// dependency's new attempt is released, its previous attempt is judged instead, as it stood while
// it ran.
func (p *Pod) state(container string) dependency.State {
	a := p.Attempts[container]
	if a == nil {
		return dependency.State{}
	}
	if a.Prev != nil && a.TS.ReleasedAt == nil {
		s := a.Prev.TS.State()
		s.Exited, s.ExitCode = false, 0
		return s
	}
	return a.TS.State()
}
