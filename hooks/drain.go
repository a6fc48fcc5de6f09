package hooks

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"time"

	"github.com/podorder/podorder/hooks/tombstone"
)

// Drain is what one preStop invocation waits for: that every container of the pod that depends on
// Container, and whose process ran, has exited. kubelet stops a pod's containers all at once, each
// after its own preStop hook, so a dependency whose preStop waits for its dependents is signalled
// only after they exited: shutdown runs in reverse start order, within the grace period.
type Drain struct {
	// Dir is the pod's tombstone directory as seen inside the container.
	Dir string
	// Container is the container whose preStop this is.
	Container string
	// Wake is the container's own wake FIFO.
	Wake string
	// Settle is how long to wait for the daemon to mark the pod as terminating. kubelet also runs
	// preStop when it stops one container (a failed livenessProbe), and then the dependents keep
	// running: waiting for them would only delay the restart.
	Settle time.Duration
	// RecheckEvery is how often the tombstones are re-read without a wake-up; zero means 1 s.
	RecheckEvery time.Duration
	// blocking, for tests, is called before each wait with whether the pod was seen terminating.
	blocking func(terminating bool)
}

// WaitDependents returns once no dependent of d.Container runs, or at once when the pod is not
// being deleted (no terminating mark within d.Settle). It returns the dependents it waited for.
// kubelet bounds it: it kills a preStop hook at the end of the grace period.
func WaitDependents(ctx context.Context, d Drain) ([]string, error) {
	if d.RecheckEvery <= 0 {
		d.RecheckEvery = time.Second
	}
	settled := time.Now().Add(d.Settle)
	watch, err := newWaker(d.Dir, d.Container, d.Wake)
	if err != nil {
		return nil, fmt.Errorf("podorder: cannot watch %s for %s: %w", d.Dir, d.Container, err)
	}
	defer watch.Close()
	var waited []string
	for {
		running, err := runningDependents(d.Dir, d.Container)
		if err != nil {
			return waited, err
		}
		if len(running) == 0 {
			return waited, nil
		}
		terminating := tombstone.Terminating(d.Dir)
		if !terminating && !time.Now().Before(settled) {
			return nil, nil
		}
		if terminating {
			waited = mergeNames(waited, running)
		}
		if err := ctx.Err(); err != nil {
			return waited, err
		}
		deadline := time.Now().Add(d.RecheckEvery)
		if !terminating {
			deadline = settled
		}
		if d.blocking != nil {
			d.blocking(terminating)
		}
		if err := watch.next(deadline, d.RecheckEvery); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			return waited, fmt.Errorf("podorder: waiting for changes in %s: %w", d.Dir, err)
		}
	}
}

// runningDependents lists the containers whose current attempt waits for container and whose own
// process runs: released, not exited. A dependent still held never ran, so nothing of it drains.
func runningDependents(dir, container string) ([]string, error) {
	all, err := tombstone.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for name, t := range all {
		if t.ReleasedAt == nil || t.ExitedAt != nil {
			continue
		}
		for _, w := range t.WaitsFor {
			if w.Container == container {
				out = append(out, name)
				break
			}
		}
	}
	sort.Strings(out)
	return out, nil
}

func mergeNames(a, b []string) []string {
	seen := map[string]bool{}
	for _, n := range a {
		seen[n] = true
	}
	for _, n := range b {
		if !seen[n] {
			a = append(a, n)
		}
	}
	sort.Strings(a)
	return a
}
