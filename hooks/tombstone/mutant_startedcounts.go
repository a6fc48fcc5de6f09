//go:build mutant_startedcounts

package tombstone

// A planted bug for `make mutants` (test/e2e TestCheckerCatchesPlantedBugs): a held dependency
// counts as started once the runtime's start returned, while its hook still holds it.
func (t *Tombstone) released() bool { return t.StartedAt != nil }
