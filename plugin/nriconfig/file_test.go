package nriconfig

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestWriteReplacesTheFileKeepingItsModeAndTheFirstOriginalAsBackup(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.toml")
	require.NoError(t, os.WriteFile(path, []byte("original\n"), 0o600))

	f, err := Read(path)
	require.NoError(t, err)
	assert.Equal(t, "original\n", string(f.Content))
	require.NoError(t, f.Write([]byte("patched once\n")))

	f, err = Read(path)
	require.NoError(t, err)
	require.NoError(t, f.Write([]byte("patched twice\n")))

	got, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, "patched twice\n", string(got))
	backup, err := os.ReadFile(path + ".podorder-backup")
	require.NoError(t, err)
	assert.Equal(t, "original\n", string(backup), "the backup is the file before podorder first changed it")
	for _, p := range []string{path, path + ".podorder-backup"} {
		st, err := os.Stat(p)
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o600), st.Mode().Perm(), p)
	}
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Len(t, entries, 2, "no temporary file is left behind")
}

func TestReadRefusesASymlinkAndReportsAMissingFile(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "real.toml")
	require.NoError(t, os.WriteFile(target, []byte("version = 3\n"), 0o644))
	link := filepath.Join(dir, "config.toml")
	require.NoError(t, os.Symlink(target, link))

	_, err := Read(link)
	require.ErrorIs(t, err, ErrRefused)
	assert.Contains(t, err.Error(), "is a symbolic link: give --config the file it points to")

	_, err = Read(filepath.Join(dir, "absent.toml"))
	require.ErrorIs(t, err, os.ErrNotExist)
}

func TestContainerdRestartsWhenItsConfigChangedSinceItStarted(t *testing.T) {
	started := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	for name, tc := range map[string]struct {
		changed  bool
		modified time.Time
		want     bool
	}{
		"this run changed the file":                       {true, started.Add(-time.Hour), true},
		"the file changed after containerd started":       {false, started.Add(time.Minute), true},
		"containerd started after the file's last change": {false, started.Add(-time.Minute), false},
	} {
		assert.Equal(t, tc.want, NeedsRestart(tc.changed, tc.modified, started), name)
	}
}
