//go:build mutant_nowake

package podstate

// A planted bug for `make mutants` (test/e2e TestCheckerCatchesPlantedBugs): no wake-up is ever
// sent; a hook sees its release only when it re-reads the tombstones on its own.
func (o *out) wakeFor(*Pod, *Attempt) {}
