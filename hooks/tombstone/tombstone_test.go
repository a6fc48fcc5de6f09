package tombstone

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/podorder/podorder/hooks/dependency"
)

func TestWriteIsAtomicWorldReadableAndRoundTrips(t *testing.T) {
	s := Store{Root: t.TempDir()}
	dir, err := s.EnsurePod("uid-1")
	require.NoError(t, err)
	now := time.Now().UTC()
	in := &Tombstone{Container: "db", ID: "c1", Attempt: 2, CreatedAt: &now, HoldTimeout: Duration(time.Minute),
		WaitsFor: []dependency.Dependency{{Container: "x", Condition: dependency.Ready}}}
	require.NoError(t, s.Write("uid-1", in))

	out, err := s.Read("uid-1", "db")
	require.NoError(t, err)
	assert.Equal(t, FormatVersion, out.Version)
	assert.Equal(t, in.WaitsFor, out.WaitsFor)
	assert.Equal(t, in.HoldTimeout, out.HoldTimeout)
	assert.True(t, now.Equal(*out.CreatedAt))

	st, err := os.Stat(dir + "/db.json")
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o644), st.Mode().Perm(), "hooks run as any uid")
	names, err := ContainerNames(dir)
	require.NoError(t, err)
	assert.Equal(t, []string{"db"}, names, "no temporary files left behind")
}

func TestReadOfAMissingTombstoneIsNil(t *testing.T) {
	s := Store{Root: t.TempDir()}
	_, err := s.EnsurePod("u")
	require.NoError(t, err)
	ts, err := s.Read("u", "nope")
	require.NoError(t, err)
	assert.Nil(t, ts)
	assert.Equal(t, dependency.State{}, ts.State(), "a nil tombstone is a container not created yet")
}

func TestNamesThatCouldEscapeTheDirectoryAreRefused(t *testing.T) {
	s := Store{Root: t.TempDir()}
	for _, uid := range []string{"", "..", ".", "a/b", "../../x", "a\\b", "a\x00b", strings.Repeat("a", 129)} {
		_, err := s.EnsurePod(uid)
		assert.Error(t, err, uid)
		assert.Error(t, s.RemovePod(uid), uid)
		assert.Error(t, s.Write(uid, &Tombstone{Container: "x"}), uid)
		_, err = s.EnsureWake(uid, "x")
		assert.Error(t, err, uid)
	}
	_, err := s.EnsurePod("u")
	require.NoError(t, err)
	assert.Error(t, s.Write("u", &Tombstone{Container: "../x"}))
	_, err = s.EnsureWake("u", "../x")
	assert.Error(t, err)
}

func TestRemovePodNeverReachesOutsideThePod(t *testing.T) {
	parent := t.TempDir()
	outside := filepath.Join(parent, "x")
	require.NoError(t, os.WriteFile(outside, []byte("keep"), 0o644))
	s := Store{Root: filepath.Join(parent, "store")}
	for _, uid := range []string{"a", "b"} {
		_, err := s.EnsurePod(uid)
		require.NoError(t, err)
		require.NoError(t, s.Write(uid, &Tombstone{Container: "c"}))
		_, err = s.EnsureWake(uid, "c")
		require.NoError(t, err)
	}
	// A pod UID sent through CRI as "../../x" deleted x; an empty UID deleted every pod's tombstones.
	for _, uid := range []string{"../../x", "", "..", "."} {
		assert.Error(t, s.RemovePod(uid), uid)
	}
	assert.FileExists(t, outside)
	uids, err := s.Pods()
	require.NoError(t, err)
	assert.Equal(t, []string{"a", "b"}, uids)

	require.NoError(t, s.RemovePod("a"))
	uids, err = s.Pods()
	require.NoError(t, err)
	assert.Equal(t, []string{"b"}, uids, "both the tombstones and the wake directory of a are gone")
	require.NoError(t, s.RemovePod("never-existed"))
}

func TestDecodeRefusesOversizedAndMalformedFiles(t *testing.T) {
	_, err := Decode("c", make([]byte, MaxFileBytes+1))
	assert.ErrorContains(t, err, "larger than")
	_, err = Decode("c", []byte(`{"hold_timeout": 5}`))
	assert.ErrorContains(t, err, "duration must be a string")
	ts, err := Decode("c", []byte(`{"container":"c","released_at":"2026-01-01T00:00:00Z"}`))
	require.NoError(t, err)
	assert.NotNil(t, ts.ReleasedAt)
}

// FuzzDecode feeds arbitrary bytes to the tombstone reader the hook runs inside every held container:
// it must never panic, and whatever it accepts must give a consistent State.
func FuzzDecode(f *testing.F) {
	now := time.Now()
	seed, _ := json.Marshal(&Tombstone{Container: "db", ID: "c1", CreatedAt: &now, StartedAt: &now, ReleasedAt: &now,
		HoldTimeout: Duration(time.Minute), WaitsFor: []dependency.Dependency{{Container: "x", Condition: dependency.Ready}}})
	for _, s := range []string{string(seed), `{}`, `null`, `{"hold_timeout":"1h"}`, `{"exit_code":-1,"exited_at":"2026-01-01T00:00:00Z"}`, `[`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ts, err := Decode("c", data)
		if err != nil {
			return
		}
		st := ts.State()
		require.True(t, st.Exists)
		if st.Released {
			require.NotNil(t, ts.StartedAt)
		}
		for _, c := range dependency.Conditions {
			v := dependency.Evaluate(c, st)
			require.Contains(t, []dependency.Verdict{dependency.Waiting, dependency.Met, dependency.Failed}, v)
		}
	})
}

func TestWakeReachesAReaderAndNeverBlocksWithoutOne(t *testing.T) {
	s := Store{Root: t.TempDir()}
	podDir, err := s.EnsurePod("u")
	require.NoError(t, err)
	dir, err := s.EnsureWake("u", "app")
	require.NoError(t, err)
	_, err = s.EnsureWake("u", "app")
	require.NoError(t, err, "idempotent")
	require.NoError(t, s.Wake("u", "app"), "no reader: nothing to do")
	require.NoError(t, s.Wake("u", "ghost"), "no FIFO: nothing to do")

	entries, err := os.ReadDir(podDir)
	require.NoError(t, err)
	assert.Empty(t, entries, "the pod directory, mounted into every held container, holds no FIFO")
	fd, err := syscall.Open(WakeFile(dir), syscall.O_RDWR|syscall.O_NONBLOCK, 0)
	require.NoError(t, err)
	defer syscall.Close(fd)
	for range 70000 { // more than a pipe holds: a full pipe must not block the daemon
		require.NoError(t, s.Wake("u", "app"))
	}
	buf := make([]byte, 1)
	n, err := syscall.Read(fd, buf)
	require.NoError(t, err)
	assert.Equal(t, 1, n)
}

// A wake-up's error is nothing to do when there is no hook to wake or one is already pending; the
// hook may leave between Wake's open and its write (EPIPE), which once failed a hooks test.
func TestNothingToWake(t *testing.T) {
	for err, want := range map[error]bool{
		syscall.ENOENT: true,
		syscall.ENXIO:  true,
		syscall.EPIPE:  true,
		syscall.EAGAIN: true,
		syscall.EACCES: false,
		syscall.EIO:    false,
	} {
		assert.Equal(t, want, nothingToWake(&os.PathError{Op: "write", Path: "wake", Err: err}), "%v", err)
	}
}
