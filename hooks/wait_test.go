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

func at() *time.Time { t := time.Now(); return &t }

// pod is a tombstone directory as the daemon keeps it: wake is false to test the hook's inotify
// fallback for stores without wake FIFOs.
type pod struct {
	store tombstone.Store
	dir   string
	wake  bool
	// wakePath is the waiter's own wake FIFO, empty without one.
	wakePath string
}

func newPod(t testing.TB, wake bool, waiter string) *pod {
	t.Helper()
	s := tombstone.Store{Root: t.TempDir()}
	dir, err := s.EnsurePod("uid")
	require.NoError(t, err)
	p := &pod{store: s, dir: dir, wake: wake}
	if wake {
		wd, err := s.EnsureWake("uid", waiter)
		require.NoError(t, err)
		p.wakePath = tombstone.WakeFile(wd)
	}
	return p
}

// write publishes a tombstone and, like the daemon, wakes the waiter.
func (p *pod) write(t testing.TB, ts *tombstone.Tombstone) {
	t.Helper()
	require.NoError(t, p.store.Write("uid", ts))
	if p.wake {
		require.NoError(t, p.store.Wake("uid", "app"))
	}
}

var modes = []struct {
	name string
	wake bool
}{{"wake FIFO", true}, {"inotify fallback", false}}

// assertHeld checks that the tombstones as they are now keep r held. It asks the decision Wait takes
// at every wake-up directly, instead of watching Wait for a while: a negative needs no time window.
func assertHeld(t *testing.T, r Request, msg string) {
	t.Helper()
	done, err := check(r)
	require.False(t, done, "%s: %v", msg, err)
}

// waitAsync runs Wait in the background and returns a channel with its result.
func waitAsync(r Request) <-chan error {
	done := make(chan error, 1)
	go func() { done <- Wait(context.Background(), r) }()
	return done
}

func TestWaitReturnsWhenEveryDependencyIsMet(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) { testWaitReturnsWhenEveryDependencyIsMet(t, newPod(t, mode.wake, "app")) })
	}
}

func testWaitReturnsWhenEveryDependencyIsMet(t *testing.T, p *pod) {
	dir := p.dir
	r := Request{Dir: dir, Timeout: time.Minute, Pod: "ns/p", Container: "app", Wake: p.wakePath,
		Waits: []dependency.Dependency{{Container: "db", Condition: dependency.Ready}, {Container: "migrate", Condition: dependency.Completed}}}
	done := waitAsync(r)

	p.write(t, &tombstone.Tombstone{Container: "db", StartedAt: at(), ReleasedAt: at(), ReadyAt: at()})
	p.write(t, &tombstone.Tombstone{Container: "migrate", StartedAt: at(), ReleasedAt: at()})
	assertHeld(t, r, "released before migrate completed")
	p.write(t, &tombstone.Tombstone{Container: "migrate", StartedAt: at(), ReleasedAt: at(), ExitedAt: at()})
	require.NoError(t, <-done)
}

func TestWaitFailsAtOnceWhenACompletedDependencyExitsNonZero(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) { testWaitFailsAtOnce(t, newPod(t, mode.wake, "app")) })
	}
}

func testWaitFailsAtOnce(t *testing.T, p *pod) {
	dir := p.dir
	done := waitAsync(Request{Dir: dir, Timeout: time.Minute, Pod: "ns/p", Container: "app", Wake: p.wakePath,
		Waits: []dependency.Dependency{{Container: "migrate", Condition: dependency.Completed}}})
	p.write(t, &tombstone.Tombstone{Container: "migrate", StartedAt: at(), ReleasedAt: at(), ExitedAt: at(), ExitCode: 3})
	err := <-done
	require.ErrorIs(t, err, ErrDependencyFailed)
	assert.Contains(t, err.Error(), "app in pod ns/p will not start: migrate exited with code 3")
}

func TestWaitTimesOutNamingWhatIsMissingAndWhatWasSeen(t *testing.T) {
	p := newPod(t, true, "app")
	dir := p.dir
	p.write(t, &tombstone.Tombstone{Container: "db", StartedAt: at(), ReleasedAt: at()})
	err := Wait(context.Background(), Request{Dir: dir, Timeout: 30 * time.Millisecond, Pod: "ns/p", Container: "app", Wake: p.wakePath, ID: "a1",
		Waits: []dependency.Dependency{{Container: "dbx", Condition: dependency.Ready}, {Container: "db", Condition: dependency.Ready}}})
	require.ErrorIs(t, err, ErrTimeout)
	for _, want := range []string{"dbx (ready): dbx has not been created yet", "db (ready): db is running but not ready",
		"containers seen in the pod: db", "podorder.dev/timeout.app"} {
		assert.Contains(t, err.Error(), want)
	}
}

func TestWaitIgnoresAnOlderAttemptReplacedByANewOne(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) { testWaitIgnoresAnOlderAttempt(t, newPod(t, mode.wake, "app")) })
	}
}

func testWaitIgnoresAnOlderAttempt(t *testing.T, p *pod) {
	dir := p.dir
	// The dependency crashed: its tombstone still says ready, but exited.
	p.write(t, &tombstone.Tombstone{Container: "db", ID: "old", StartedAt: at(), ReleasedAt: at(), ReadyAt: at(), ExitedAt: at(), ExitCode: 137})
	r := Request{Dir: dir, Timeout: time.Minute, Pod: "ns/p", Container: "app", Wake: p.wakePath,
		Waits: []dependency.Dependency{{Container: "db", Condition: dependency.Started}}}
	done := waitAsync(r)
	p.write(t, &tombstone.Tombstone{Container: "db", ID: "new", Attempt: 1, CreatedAt: at()})
	assertHeld(t, r, "released by a created-but-not-started attempt")
	p.write(t, &tombstone.Tombstone{Container: "db", ID: "new", Attempt: 1, CreatedAt: at(), StartedAt: at(), ReleasedAt: at()})
	require.NoError(t, <-done)
}

// The hooks podorder injects now name their container attempt: the daemon decides the release and
// the hook obeys, so that the daemon never counts released a container whose hook gave up.
func TestWaitReleasesOnlyWhenTheDaemonRecordedThisAttemptReleased(t *testing.T) {
	p := newPod(t, true, "app")
	r := Request{Dir: p.dir, Timeout: time.Minute, Pod: "ns/p", Container: "app", ID: "a2", Wake: p.wakePath,
		Waits: []dependency.Dependency{{Container: "db", Condition: dependency.Started}}}
	done := waitAsync(r)
	p.write(t, &tombstone.Tombstone{Container: "db", StartedAt: at(), ReleasedAt: at()})
	p.write(t, &tombstone.Tombstone{Container: "app", ID: "a1", StartedAt: at(), ReleasedAt: at()})
	assertHeld(t, r, "released by its dependency or by another attempt's release, not by the daemon's decision for it")
	p.write(t, &tombstone.Tombstone{Container: "app", ID: "a2", ReleasedAt: at()})
	require.NoError(t, <-done)
}

func TestWaitFailsAtOnceWhenTheDaemonRecordsThatTheHoldFailed(t *testing.T) {
	p := newPod(t, true, "app")
	done := waitAsync(Request{Dir: p.dir, Timeout: time.Minute, Pod: "ns/p", Container: "app", ID: "a1", Wake: p.wakePath,
		Waits: []dependency.Dependency{{Container: "migrate", Condition: dependency.Completed}}})
	p.write(t, &tombstone.Tombstone{Container: "app", ID: "a1", HoldFailed: "migrate exited with code 3"})
	err := <-done
	require.ErrorIs(t, err, ErrDependencyFailed)
	assert.Contains(t, err.Error(), "app in pod ns/p will not start: migrate exited with code 3")
}

func TestWaitReleasesWithoutAWakeUpByRecheckingOnItsOwn(t *testing.T) {
	// A wake-up that never arrives (lost, or read by someone else) only delays the release.
	p := newPod(t, true, "app")
	done := waitAsync(Request{Dir: p.dir, Timeout: time.Minute, Pod: "ns/p", Container: "app", ID: "a1", Wake: p.wakePath,
		RecheckEvery: 20 * time.Millisecond, Waits: []dependency.Dependency{{Container: "db", Condition: dependency.Started}}})
	require.NoError(t, p.store.Write("uid", &tombstone.Tombstone{Container: "app", ID: "a1", ReleasedAt: at()}))
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("the hook did not re-read the tombstones without a wake-up")
	}
}

func TestWaitReadsTheTombstonesOnceMoreAtItsDeadline(t *testing.T) {
	// The daemon releases only before its own deadline, which is earlier than the hook's: a release
	// written without a wake-up just before must still be obeyed rather than end in a timeout.
	p := newPod(t, true, "app")
	require.NoError(t, p.store.Write("uid", &tombstone.Tombstone{Container: "app", ID: "a1"}))
	done := waitAsync(Request{Dir: p.dir, Timeout: 300 * time.Millisecond, Pod: "ns/p", Container: "app", ID: "a1", Wake: p.wakePath,
		RecheckEvery: time.Hour, Waits: []dependency.Dependency{{Container: "db", Condition: dependency.Started}}})
	// Drain the FIFO first, as a thief would, then record the release without waking.
	require.NoError(t, p.store.Write("uid", &tombstone.Tombstone{Container: "app", ID: "a1", ReleasedAt: at()}))
	require.NoError(t, <-done, "released at the deadline by the final read")
}
