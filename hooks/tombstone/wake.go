package tombstone

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// LegacyWakePath is where podorder before 0.2 kept a held container's wake FIFO, inside the pod's
// tombstone directory where every container of the pod could see it. Hooks of containers created
// then still look there. It goes in 0.5: only a hold that spans an upgrade from before 0.2 uses it
// (every restart creates the container again, with today's --wake), and a hold lasts its timeout at
// most; CHANGELOG.md lists it under Deprecated.
func LegacyWakePath(dir, container string) string { return filepath.Join(dir, container+wakeExt) }

// WakeFile is the FIFO's name inside a container's wake directory.
func WakeFile(dir string) string { return filepath.Join(dir, wakeName) }

// EnsureWake creates the wake FIFO of a held container in a directory of its own and returns that
// directory. A FIFO, not inotify: tearing down an inotify instance costs the exiting hook 15-25 ms
// (the kernel waits for an SRCU grace period), on the path from release to the process. It is
// world-writable because the hook runs as the container's uid and opens it read-write (so that it
// never sees end-of-file); only that container sees it, and the hook re-reads the tombstones on its
// own as well, so a lost or stolen wake-up delays a release by at most the hook's re-check period.
func (s Store) EnsureWake(podUID, container string) (string, error) {
	if err := ValidUID(podUID); err != nil {
		return "", err
	}
	if !validName(container) {
		return "", fmt.Errorf("invalid container name %q", truncate(container))
	}
	dir := s.WakeDir(podUID, container)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("create wake directory of %s: %w", container, err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", fmt.Errorf("create wake directory of %s: %w", container, err)
	}
	path := WakeFile(dir)
	if err := syscall.Mkfifo(path, 0o666); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("create wake FIFO of %s: %w", container, err)
	}
	if err := os.Chmod(path, 0o666); err != nil {
		return "", fmt.Errorf("create wake FIFO of %s: %w", container, err)
	}
	return dir, nil
}

// Wake nudges the hook of a held container to re-read the tombstones. It never blocks, and with no
// hook to wake, or a wake-up already pending, there is nothing to do (see nothingToWake).
func (s Store) Wake(podUID, container string) error {
	if ValidUID(podUID) != nil || !validName(container) {
		return nil
	}
	fd, err := syscall.Open(WakeFile(s.WakeDir(podUID, container)), syscall.O_WRONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if nothingToWake(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("wake %s: %w", container, err)
	}
	defer syscall.Close(fd)
	if _, err := syscall.Write(fd, []byte{1}); err != nil && !nothingToWake(err) {
		return fmt.Errorf("wake %s: %w", container, err)
	}
	return nil
}

// nothingToWake reports whether a wake-up's error means there is nothing to do: no FIFO (the
// container is gone), no hook reading it (ENXIO at the open), the hook gone between the open and
// the write (EPIPE: it had re-read the tombstones on an earlier wake-up and left), or a wake-up
// already pending (EAGAIN: the FIFO is full).
func nothingToWake(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENXIO) || errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.EAGAIN)
}
