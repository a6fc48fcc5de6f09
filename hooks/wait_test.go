package hooks

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/podorder/podorder/condition"
	"github.com/podorder/podorder/tombstone"
)

func at() *time.Time { t := time.Now(); return &t }

func write(t *testing.T, dir string, ts *tombstone.Tombstone) {
	t.Helper()
	require.NoError(t, tombstone.WriteFile(dir, ts))
}

// waitAsync runs Wait in the background and returns a channel with its result.
func waitAsync(r Request) <-chan error {
	done := make(chan error, 1)
	go func() { done <- Wait(context.Background(), r) }()
	return done
}

func TestWaitReturnsWhenEveryDependencyIsMet(t *testing.T) {
	dir := t.TempDir()
	r := Request{Dir: dir, Timeout: time.Minute, Pod: "ns/p", Container: "app",
		Waits: []condition.Dependency{{Container: "db", Condition: condition.Ready}, {Container: "migrate", Condition: condition.Completed}}}
	done := waitAsync(r)

	write(t, dir, &tombstone.Tombstone{Container: "db", StartedAt: at(), ReleasedAt: at(), ReadyAt: at()})
	write(t, dir, &tombstone.Tombstone{Container: "migrate", StartedAt: at(), ReleasedAt: at()})
	select {
	case err := <-done:
		t.Fatalf("released before migrate completed: %v", err)
	case <-time.After(50 * time.Millisecond): // proving a negative: nothing to await
	}
	write(t, dir, &tombstone.Tombstone{Container: "migrate", StartedAt: at(), ReleasedAt: at(), ExitedAt: at()})
	require.NoError(t, <-done)
}

func TestWaitFailsAtOnceWhenACompletedDependencyExitsNonZero(t *testing.T) {
	dir := t.TempDir()
	done := waitAsync(Request{Dir: dir, Timeout: time.Minute, Pod: "ns/p", Container: "app",
		Waits: []condition.Dependency{{Container: "migrate", Condition: condition.Completed}}})
	write(t, dir, &tombstone.Tombstone{Container: "migrate", StartedAt: at(), ReleasedAt: at(), ExitedAt: at(), ExitCode: 3})
	err := <-done
	require.ErrorIs(t, err, ErrDependencyFailed)
	assert.Contains(t, err.Error(), "app in pod ns/p will not start: migrate exited with code 3")
}

func TestWaitTimesOutNamingWhatIsMissingAndWhatWasSeen(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, &tombstone.Tombstone{Container: "db", StartedAt: at(), ReleasedAt: at()})
	err := Wait(context.Background(), Request{Dir: dir, Timeout: 30 * time.Millisecond, Pod: "ns/p", Container: "app",
		Waits: []condition.Dependency{{Container: "dbx", Condition: condition.Ready}, {Container: "db", Condition: condition.Ready}}})
	require.ErrorIs(t, err, ErrTimeout)
	for _, want := range []string{"dbx (ready): dbx has not been created yet", "db (ready): db is running but not ready",
		"containers seen in the pod: db", "podorder.dev/timeout.app"} {
		assert.Contains(t, err.Error(), want)
	}
}

func TestWaitIgnoresAnOlderAttemptReplacedByANewOne(t *testing.T) {
	dir := t.TempDir()
	// The dependency crashed: its tombstone still says ready, but exited.
	write(t, dir, &tombstone.Tombstone{Container: "db", ID: "old", StartedAt: at(), ReleasedAt: at(), ReadyAt: at(), ExitedAt: at(), ExitCode: 137})
	done := waitAsync(Request{Dir: dir, Timeout: time.Minute, Pod: "ns/p", Container: "app",
		Waits: []condition.Dependency{{Container: "db", Condition: condition.Started}}})
	write(t, dir, &tombstone.Tombstone{Container: "db", ID: "new", Attempt: 1, CreatedAt: at()})
	select {
	case err := <-done:
		t.Fatalf("released by a created-but-not-started attempt: %v", err)
	case <-time.After(50 * time.Millisecond): // proving a negative: nothing to await
	}
	write(t, dir, &tombstone.Tombstone{Container: "db", ID: "new", Attempt: 1, CreatedAt: at(), StartedAt: at(), ReleasedAt: at()})
	require.NoError(t, <-done)
}
