package tombstone

import (
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/podorder/podorder/condition"
)

func TestWriteIsAtomicWorldReadableAndRoundTrips(t *testing.T) {
	s := Store{Root: t.TempDir()}
	dir, err := s.EnsurePod("uid-1")
	require.NoError(t, err)
	now := time.Now().UTC()
	in := &Tombstone{Container: "db", ID: "c1", Attempt: 2, CreatedAt: &now, HoldTimeout: Duration(time.Minute),
		WaitsFor: []condition.Dependency{{Container: "x", Condition: condition.Ready}}}
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
	assert.Equal(t, condition.State{}, ts.State(), "a nil tombstone is a container not created yet")
}

func TestNamesThatCouldEscapeTheDirectoryAreRefused(t *testing.T) {
	s := Store{Root: t.TempDir()}
	for _, uid := range []string{"", "..", "a/b"} {
		_, err := s.EnsurePod(uid)
		assert.Error(t, err, uid)
	}
	_, err := s.EnsurePod("u")
	require.NoError(t, err)
	assert.Error(t, s.Write("u", &Tombstone{Container: "../x"}))
}

func TestWakeReachesAReaderAndNeverBlocksWithoutOne(t *testing.T) {
	s := Store{Root: t.TempDir()}
	dir, err := s.EnsurePod("u")
	require.NoError(t, err)
	require.NoError(t, s.EnsureWake("u", "app"))
	require.NoError(t, s.EnsureWake("u", "app"), "idempotent")
	require.NoError(t, s.Wake("u", "app"), "no reader: nothing to do")
	require.NoError(t, s.Wake("u", "ghost"), "no FIFO: nothing to do")

	fd, err := syscall.Open(WakePath(dir, "app"), syscall.O_RDWR|syscall.O_NONBLOCK, 0)
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
