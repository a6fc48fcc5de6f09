//go:build !mutant_nohold

package hooks

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"
)

// Wait returns nil once every dependency is met, or an error that says what was still missing.
func Wait(ctx context.Context, r Request) error {
	deadline := time.Now().Add(r.Timeout)
	if r.RecheckEvery <= 0 {
		r.RecheckEvery = time.Second
	}
	watch, err := newWaker(r.Dir, r.Container, r.Wake)
	if err != nil {
		return fmt.Errorf("podorder: cannot watch %s for %s: %w", r.Dir, r.Container, err)
	}
	defer watch.Close()

	for {
		// Evaluate after the watch exists, so that no write between the two is missed.
		if done, err := check(r); done {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := watch.next(deadline, r.RecheckEvery); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				// The daemon's deadline is earlier than ours: a release it recorded is on disk now.
				if done, err := check(r); done {
					return err
				}
				states, _, _ := evaluate(r)
				return timeoutError(r, states)
			}
			return fmt.Errorf("podorder: waiting for changes in %s: %w", r.Dir, err)
		}
	}
}
