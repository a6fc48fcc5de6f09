package appready

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func TestLookupStaysInsideTheRootWhateverItsSymlinksSay(t *testing.T) {
	root := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(root, "run/app"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(root, "run/app/ready"), nil, 0o644))
	require.NoError(t, os.Symlink("/etc", filepath.Join(root, "etc-link")))            // absolute: /etc of the root
	require.NoError(t, os.Symlink("../../../../../../etc", filepath.Join(root, "up"))) // relative: clamped at the root
	require.NoError(t, os.Symlink("/proc/self/root/etc", filepath.Join(root, "magic")))
	fd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	require.NoError(t, err)
	defer unix.Close(fd)
	require.FileExists(t, "/etc/passwd", "the host path the symlinks aim at")
	tests := map[string]bool{
		"/run/app/ready":        true,
		"/run/app/other":        false,
		"/etc-link/passwd":      false,
		"/up/passwd":            false,
		"/magic/passwd":         false,
		"/run/app/ready/beyond": false,
	}
	for p, want := range tests {
		found, dir := lookup(fd, p)
		if dir >= 0 {
			unix.Close(dir)
		}
		assert.Equal(t, want, found, p)
	}
}

// watchOwn watches p in this test process's own mount namespace, with a safety net too slow to
// pass the test by itself.
func watchOwn(t *testing.T, p string) chan time.Time {
	f := NewFiles(0, quiet)
	f.Recheck = time.Minute
	seen := make(chan time.Time, 1)
	stop, err := f.Watch("pod", uint32(os.Getpid()), p, func() { seen <- time.Now() })
	require.NoError(t, err)
	t.Cleanup(stop)
	return seen
}

func TestAFileAppearingDeepBelowMissingDirectoriesIsSeenByEvents(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "a/b/ready")
	seen := watchOwn(t, target)
	time.Sleep(50 * time.Millisecond)
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "a/b"), 0o755))
	time.Sleep(50 * time.Millisecond)
	select {
	case <-seen:
		t.Fatal("ready before the file exists")
	default:
	}
	made := time.Now()
	require.NoError(t, os.WriteFile(target, nil, 0o644))
	select {
	case at := <-seen:
		t.Logf("file appeared → seen in %s", at.Sub(made))
	case <-time.After(5 * time.Second):
		t.Fatal("the file's appearance was not seen (the recheck is a minute: events are)")
	}
}

func TestASocketRenamedIntoPlaceIsSeen(t *testing.T) {
	dir := t.TempDir()
	seen := watchOwn(t, filepath.Join(dir, "app.sock"))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "tmp"), nil, 0o644))
	require.NoError(t, os.Rename(filepath.Join(dir, "tmp"), filepath.Join(dir, "app.sock")))
	select {
	case <-seen:
	case <-time.After(5 * time.Second):
		t.Fatal("a rename into place was not seen")
	}
}

func TestAMountAppearingIsSeenThroughTheMountTable(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("mounting needs root")
	}
	dir := t.TempDir()
	mnt := filepath.Join(dir, "data")
	require.NoError(t, os.Mkdir(mnt, 0o755))
	src := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(src, "ready"), nil, 0o644))
	// inotify on data sees nothing of a mount over it: only the mount table's event can.
	seen := watchOwn(t, filepath.Join(mnt, "ready"))
	time.Sleep(50 * time.Millisecond)
	require.NoError(t, unix.Mount(src, mnt, "", unix.MS_BIND, ""))
	t.Cleanup(func() { _ = unix.Unmount(mnt, unix.MNT_DETACH) })
	select {
	case <-seen:
	case <-time.After(5 * time.Second):
		t.Fatal("the mount was not seen")
	}
}

func TestStopEndsTheWatchAndGivesBackItsPlace(t *testing.T) {
	f := NewFiles(1, quiet)
	stop, err := f.Watch("pod", uint32(os.Getpid()), filepath.Join(t.TempDir(), "never"), func() { t.Error("ready") })
	require.NoError(t, err)
	_, err = f.Watch("pod", uint32(os.Getpid()), "/x", func() {})
	require.ErrorContains(t, err, "the node's limit of 1 path watches")
	stop()
	stop()
	assert.Eventually(t, func() bool {
		s, err := f.Watch("pod", uint32(os.Getpid()), filepath.Join(t.TempDir(), "never"), func() {})
		if err == nil {
			s()
		}
		return err == nil
	}, 2*time.Second, 10*time.Millisecond)
}

func TestWatchRefusesAPathThatIsNotAbsoluteAndClean(t *testing.T) {
	f := NewFiles(0, quiet)
	for _, p := range []string{"run/ready", "/run/../etc", "/run/"} {
		_, err := f.Watch("pod", uint32(os.Getpid()), p, func() {})
		assert.Error(t, err, p)
	}
}

// reapedPID is the number of a process that has exited and been reaped.
func reapedPID(t *testing.T) uint32 {
	cmd := exec.Command("true")
	require.NoError(t, cmd.Run())
	return uint32(cmd.Process.Pid)
}

func TestAProcessThatIsGoneBeforeItsWatchIsRefused(t *testing.T) {
	f := NewFiles(0, quiet)
	_, err := f.Watch("pod", reapedPID(t), "/run/ready", func() {})
	require.ErrorContains(t, err, "pin process")
	assert.ErrorIs(t, err, unix.ESRCH)
}

func TestAProcessThatExitsWhileItsRootIsOpenedIsRefusedForItsNumberMayBeReused(t *testing.T) {
	f := NewFiles(1, quiet)
	cmd := exec.Command("sleep", "60")
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	f.opened = func() {
		// Between its /proc entries' opening and the check: reaped, its number is free for another.
		require.NoError(t, cmd.Process.Kill())
		_ = cmd.Wait()
	}
	_, err := f.Watch("pod", uint32(cmd.Process.Pid), "/run/ready", func() { t.Error("ready") })
	require.ErrorContains(t, err, "exited while its root was opened")
	assert.ErrorIs(t, err, unix.ESRCH)

	f.opened = nil
	stop, err := f.Watch("pod", uint32(os.Getpid()), filepath.Join(t.TempDir(), "never"), func() {})
	require.NoError(t, err, "the refused watch gave its place back")
	stop()
}

func TestAProcessStillThereIsOneAPidfdPinned(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	pidfd, err := unix.PidfdOpen(cmd.Process.Pid, 0)
	require.NoError(t, err)
	defer unix.Close(pidfd)
	assert.NoError(t, stillThere(pidfd), "running")
	require.NoError(t, cmd.Process.Kill())
	time.Sleep(50 * time.Millisecond)
	assert.NoError(t, stillThere(pidfd), "exited but not reaped: its number is not free yet")
	_ = cmd.Wait()
	assert.ErrorIs(t, stillThere(pidfd), unix.ESRCH, "reaped")
}
