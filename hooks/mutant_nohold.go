//go:build mutant_nohold

package hooks

import "context"

// A planted bug for `make mutants` (test/e2e TestCheckerCatchesPlantedBugs): the hook exits at
// once and holds nothing.
func Wait(context.Context, Request) error { return nil }
