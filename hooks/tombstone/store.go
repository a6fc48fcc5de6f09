package tombstone

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Store is a tombstone directory tree: <Root>/pods/<pod UID>/<container>.json, one wake FIFO per
// held container in a directory of its own, <Root>/wake/<pod UID>/<container>/wake, and the notify
// socket of each container attempt whose readiness is its READY=1, <Root>/notify/<pod UID>/<container ID>/. A held container
// gets its pod's tombstone directory (regular files only, mounted read-only) and its own wake
// directory: a FIFO ignores a read-only mount, so no container may see another's.
type Store struct {
	// Root is the store's top directory on the node, e.g. /run/podorder.
	Root string
}

const (
	podsDir   = "pods"
	wakeDir   = "wake"
	notifyDir = "notify"
	wakeName  = "wake"
	fileExt   = ".json"
	wakeExt   = ".wake"
	tmpPrefix = ".tmp-"
)

// PodDir is the directory holding the tombstones of one pod. The UID must have passed ValidUID.
func (s Store) PodDir(podUID string) string { return filepath.Join(s.Root, podsDir, podUID) }

// WakeDir is the directory holding the wake FIFO of one held container, mounted into it alone.
func (s Store) WakeDir(podUID, container string) string {
	return filepath.Join(s.Root, wakeDir, podUID, container)
}

// ValidUID reports whether a pod UID, which the runtime passes on from whoever created the pod, is safe
// as one path element: Kubernetes UIDs are UUIDs; anything that could name a parent or another
// directory is refused.
func ValidUID(uid string) error {
	if uid == "" || len(uid) > 128 || uid == "." || uid == ".." {
		return fmt.Errorf("invalid pod UID %q: want 1-128 letters, digits, '-', '_' or '.'", truncate(uid))
	}
	for i := 0; i < len(uid); i++ {
		c := uid[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("invalid pod UID %q: want 1-128 letters, digits, '-', '_' or '.'", truncate(uid))
		}
	}
	return nil
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// EnsurePod creates a pod's directories, readable by every uid so that non-root containers can wait.
func (s Store) EnsurePod(podUID string) (string, error) {
	if err := ValidUID(podUID); err != nil {
		return "", err
	}
	dir := s.PodDir(podUID)
	for _, d := range []string{dir, filepath.Join(s.Root, wakeDir, podUID)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return "", fmt.Errorf("create tombstone directory for pod %s: %w", podUID, err)
		}
		// MkdirAll honours the umask; the hook may run as any uid.
		if err := os.Chmod(d, 0o755); err != nil {
			return "", fmt.Errorf("make tombstone directory of pod %s readable: %w", podUID, err)
		}
	}
	return dir, nil
}

// NotifyDir is the directory of one container attempt's notify socket, mounted into it alone.
func (s Store) NotifyDir(podUID, containerID string) string {
	return filepath.Join(s.Root, notifyDir, podUID, containerID)
}

// EnsureNotify creates the directory of a container attempt's notify socket: one per attempt, so
// that a new attempt never shares a socket with the previous one.
func (s Store) EnsureNotify(podUID, containerID string) (string, error) {
	if err := ValidUID(podUID); err != nil {
		return "", err
	}
	if !validName(containerID) {
		return "", fmt.Errorf("invalid container ID %q", truncate(containerID))
	}
	dir := s.NotifyDir(podUID, containerID)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("create notify directory: %w", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", fmt.Errorf("create notify directory: %w", err)
	}
	return dir, nil
}

// RemoveNotify deletes one attempt's notify directory, socket included.
func (s Store) RemoveNotify(podUID, containerID string) error {
	if ValidUID(podUID) != nil || !validName(containerID) {
		return nil
	}
	root, err := os.OpenRoot(filepath.Join(s.Root, notifyDir, podUID))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("remove notify directory: %w", err)
	}
	defer root.Close()
	return root.RemoveAll(containerID)
}

// RemovePod deletes a pod's tombstones, wake FIFOs and notify sockets. It removes through an os.Root opened on each
// tree, so that even a UID that slipped past validation cannot reach outside the store.
func (s Store) RemovePod(podUID string) error {
	if err := ValidUID(podUID); err != nil {
		return fmt.Errorf("remove tombstones: %w", err)
	}
	for _, tree := range []string{podsDir, wakeDir, notifyDir} {
		root, err := os.OpenRoot(filepath.Join(s.Root, tree))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("remove tombstones of pod %s: %w", podUID, err)
		}
		err = root.RemoveAll(podUID)
		root.Close()
		if err != nil {
			return fmt.Errorf("remove tombstones of pod %s: %w", podUID, err)
		}
	}
	return nil
}

// Pods lists the pod UIDs that have a tombstone or wake directory; names that are not valid UIDs
// (nothing podorder wrote) are left alone.
func (s Store) Pods() ([]string, error) {
	seen := map[string]bool{}
	var uids []string
	for _, tree := range []string{podsDir, wakeDir, notifyDir} {
		entries, err := os.ReadDir(filepath.Join(s.Root, tree))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("list tombstone pods: %w", err)
		}
		for _, e := range entries {
			if e.IsDir() && !seen[e.Name()] && ValidUID(e.Name()) == nil {
				seen[e.Name()] = true
				uids = append(uids, e.Name())
			}
		}
	}
	sort.Strings(uids)
	return uids, nil
}

// Write stores t atomically in the pod's directory: readers see the old or the new file, never a
// partial one. The directory must exist (EnsurePod).
func (s Store) Write(podUID string, t *Tombstone) error {
	if err := ValidUID(podUID); err != nil {
		return fmt.Errorf("write tombstone: %w", err)
	}
	t.Version = FormatVersion
	return WriteFile(s.PodDir(podUID), t)
}

// WriteFile stores t atomically as <dir>/<container>.json.
func WriteFile(dir string, t *Tombstone) error {
	if !validName(t.Container) {
		return fmt.Errorf("invalid container name %q for a tombstone", t.Container)
	}
	data, err := json.Marshal(t)
	if err != nil {
		return fmt.Errorf("encode tombstone of %s: %w", t.Container, err)
	}
	tmp, err := os.CreateTemp(dir, tmpPrefix+t.Container+"-*")
	if err != nil {
		return fmt.Errorf("write tombstone of %s: %w", t.Container, err)
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write tombstone of %s: %w", t.Container, err)
	}
	// CreateTemp makes 0600 files; the hook runs as the container's uid.
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("write tombstone of %s: %w", t.Container, err)
	}
	// /run is a tmpfs: there is nothing to fsync for, and a node reboot rightly empties the store.
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write tombstone of %s: %w", t.Container, err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, t.Container+fileExt)); err != nil {
		return fmt.Errorf("publish tombstone of %s: %w", t.Container, err)
	}
	return nil
}

// Remove deletes the tombstone of one container: its only attempt was never created after all.
func (s Store) Remove(podUID, container string) error {
	if err := ValidUID(podUID); err != nil {
		return fmt.Errorf("remove tombstone: %w", err)
	}
	if !validName(container) {
		return fmt.Errorf("remove tombstone: invalid container name %q", truncate(container))
	}
	if err := os.Remove(filepath.Join(s.PodDir(podUID), container+fileExt)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove tombstone of %s: %w", container, err)
	}
	return nil
}

// Read returns the pod's tombstone of one container, or nil if it has none yet.
func (s Store) Read(podUID, container string) (*Tombstone, error) {
	return ReadFile(s.PodDir(podUID), container)
}

// ReadFile returns <dir>/<container>.json, or nil if it does not exist.
func ReadFile(dir, container string) (*Tombstone, error) {
	if !validName(container) {
		return nil, fmt.Errorf("invalid container name %q", container)
	}
	f, err := os.Open(filepath.Join(dir, container+fileExt))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read tombstone of %s: %w", container, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read tombstone of %s: %w", container, err)
	}
	return Decode(container, data)
}

// ReadDir returns every tombstone in dir keyed by container name.
func ReadDir(dir string) (map[string]*Tombstone, error) {
	names, err := ContainerNames(dir)
	if err != nil {
		return nil, err
	}
	all := make(map[string]*Tombstone, len(names))
	for _, n := range names {
		t, err := ReadFile(dir, n)
		if err != nil {
			return nil, err
		}
		if t != nil {
			all[n] = t
		}
	}
	return all, nil
}

// ContainerNames lists, sorted, the containers that have a tombstone in dir.
func ContainerNames(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list tombstones in %s: %w", dir, err)
	}
	var names []string
	for _, e := range entries {
		n := e.Name()
		if strings.HasPrefix(n, tmpPrefix) || !strings.HasSuffix(n, fileExt) {
			continue
		}
		names = append(names, strings.TrimSuffix(n, fileExt))
	}
	sort.Strings(names)
	return names, nil
}

// IsTombstoneFile reports whether a file name in a pod directory is a published tombstone (not a
// temporary file being written), and returns its container name.
func IsTombstoneFile(name string) (string, bool) {
	if strings.HasPrefix(name, tmpPrefix) || !strings.HasSuffix(name, fileExt) {
		return "", false
	}
	return strings.TrimSuffix(name, fileExt), true
}

// validName accepts Kubernetes container names (DNS labels) and nothing that could escape the
// directory.
func validName(n string) bool {
	if n == "" || len(n) > 253 {
		return false
	}
	for _, r := range n {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r >= 'A' && r <= 'Z' || r == '_' || r == '.') {
			return false
		}
	}
	return n != "." && n != ".."
}

// terminatingFile marks a pod that the Kubernetes API says is being deleted. Its name has no
// tombstone extension, so it never reads as a container.
const terminatingFile = "terminating"

// MarkTerminating records that the pod is being deleted: the preStop hooks of its containers then
// wait for their dependents to exit.
func (s Store) MarkTerminating(podUID string) error {
	if err := ValidUID(podUID); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(s.PodDir(podUID), terminatingFile), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("mark pod terminating: %w", err)
	}
	return f.Close()
}

// Terminating reports whether the pod whose tombstone directory is dir is being deleted.
func Terminating(dir string) bool {
	_, err := os.Lstat(filepath.Join(dir, terminatingFile))
	return err == nil
}
