package hooks

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/podorder/podorder/hooks/dependency"
	"github.com/podorder/podorder/hooks/tombstone"
)

// drainPod is db with a dependent api whose process runs.
func drainPod(t *testing.T) (*pod, Drain) {
	p := newPod(t, true, "db")
	require.NoError(t, p.store.Write("uid", &tombstone.Tombstone{Container: "db", ID: "1", StartedAt: at(), ReleasedAt: at()}))
	require.NoError(t, p.store.Write("uid", &tombstone.Tombstone{Container: "api", ID: "2", StartedAt: at(), ReleasedAt: at(),
		WaitsFor: []dependency.Dependency{{Container: "db", Condition: dependency.Ready}}}))
	return p, Drain{Dir: p.dir, Container: "db", Wake: p.wakePath, Settle: time.Hour, RecheckEvery: time.Hour}
}

func TestDrainReturnsAtOnceWithoutRunningDependents(t *testing.T) {
	tests := map[string]*tombstone.Tombstone{
		"dependent exited":     {Container: "api", ID: "2", StartedAt: at(), ReleasedAt: at(), ExitedAt: at(), WaitsFor: []dependency.Dependency{{Container: "db", Condition: dependency.Ready}}},
		"dependent still held": {Container: "api", ID: "2", StartedAt: at(), WaitsFor: []dependency.Dependency{{Container: "db", Condition: dependency.Ready}}},
		"not a dependent":      {Container: "api", ID: "2", StartedAt: at(), ReleasedAt: at()},
	}
	for name, api := range tests {
		t.Run(name, func(t *testing.T) {
			p, d := drainPod(t)
			require.NoError(t, p.store.MarkTerminating("uid"))
			require.NoError(t, p.store.Write("uid", api))
			waited, err := WaitDependents(context.Background(), d)
			require.NoError(t, err)
			assert.Empty(t, waited)
		})
	}
}

func TestDrainWaitsForRunningDependentsOnlyWhileThePodIsDeleted(t *testing.T) {
	p, d := drainPod(t)
	d.Settle = 50 * time.Millisecond
	// Not deleted: a single container's stop (livenessProbe) returns after the settle time.
	waited, err := WaitDependents(context.Background(), d)
	require.NoError(t, err)
	assert.Empty(t, waited)

	d.Settle = time.Hour
	waiting := make(chan bool, 16)
	d.blocking = func(terminating bool) { waiting <- terminating }
	done := make(chan []string, 1)
	go func() {
		waited, err := WaitDependents(context.Background(), d)
		assert.NoError(t, err)
		done <- waited
	}()
	require.False(t, <-waiting, "waits for the terminating mark")
	// The daemon marks the pod and wakes the waiter; api runs, so it keeps waiting.
	require.NoError(t, p.store.MarkTerminating("uid"))
	require.NoError(t, p.store.Wake("uid", "db"))
	for !<-waiting {
	}
	running, err := runningDependents(d.Dir, "db")
	require.NoError(t, err)
	require.Equal(t, []string{"api"}, running, "what the waiter waits for")
	require.NoError(t, p.store.Write("uid", &tombstone.Tombstone{Container: "api", ID: "2", StartedAt: at(), ReleasedAt: at(), ExitedAt: at(),
		WaitsFor: []dependency.Dependency{{Container: "db", Condition: dependency.Ready}}}))
	require.NoError(t, p.store.Wake("uid", "db"))
	select {
	case w := <-done:
		// Only a waiter that saw api running in a terminating pod names it.
		assert.Equal(t, []string{"api"}, w)
	case <-time.After(10 * time.Second):
		t.Fatal("did not return after api exited and the waiter was woken")
	}
}
