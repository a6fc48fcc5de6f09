// Package tombstone is podorder's node-local record of container lifecycles: one small JSON file per
// container of a pod that uses podorder, written only by the daemon and read by the hook inside
// dependent containers. A file always holds the newest attempt of its container, so an older
// attempt's state can never satisfy a waiter once a newer attempt exists.
//
// This package uses the standard library only: it is linked into the static in-container hook.
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
	"syscall"
	"time"

	"github.com/podorder/podorder/hooks/condition"
)

// FormatVersion is written into every tombstone so that a newer daemon can read an older store.
const FormatVersion = 1

// Tombstone is the state of the newest attempt of one container.
type Tombstone struct {
	Version int `json:"version"`
	// Container is the container's name in its pod.
	Container string `json:"container"`
	// ID is the runtime's container ID of this attempt.
	ID string `json:"id"`
	// Attempt is the CRI attempt number (kubelet's restart count).
	Attempt uint32 `json:"attempt"`
	// WaitsFor lists what this attempt is held for; empty when it is not held.
	WaitsFor []condition.Dependency `json:"waits_for,omitempty"`
	// Probe is the node-local readiness check the daemon runs for this container, if any.
	Probe string `json:"probe,omitempty"`
	// HoldTimeout is the longest hold of this attempt, when it is held.
	HoldTimeout Duration `json:"hold_timeout,omitempty"`
	// HoldDeadline is the last moment the daemon may release this attempt. It is taken before the
	// runtime starts the container, so it falls before the hook's own deadline: a release the
	// daemon records is always seen by the hook, which reads the tombstones once more at its end.
	HoldDeadline *time.Time `json:"hold_deadline,omitempty"`
	// HoldFailed says why the daemon will never release this attempt (a dependency can no longer
	// be met); the hook exits with it at once.
	HoldFailed string `json:"hold_failed,omitempty"`

	// PodSelector is set on a synthetic tombstone that stands for a dependency on other pods:
	// "pod(app=mysql):ready". The daemon keeps its times in step with the matching pods.
	PodSelector string `json:"pod_selector,omitempty"`

	CreatedAt  *time.Time `json:"created_at,omitempty"`
	StartedAt  *time.Time `json:"started_at,omitempty"`
	ReleasedAt *time.Time `json:"released_at,omitempty"`
	// ProbeReadyAt and KubeletReadyAt record each readiness source; ReadyAt is set once the
	// container is released and its sources say it is ready (package podstate has the rule).
	ProbeReadyAt   *time.Time `json:"probe_ready_at,omitempty"`
	KubeletReadyAt *time.Time `json:"kubelet_ready_at,omitempty"`
	ReadyAt        *time.Time `json:"ready_at,omitempty"`
	ExitedAt       *time.Time `json:"exited_at,omitempty"`
	ExitCode       int32      `json:"exit_code,omitempty"`
}

// Held reports whether this attempt declared dependencies.
func (t *Tombstone) Held() bool { return len(t.WaitsFor) > 0 }

// State is what waiters may know of this attempt; a nil tombstone is a container not created yet.
func (t *Tombstone) State() condition.State {
	if t == nil {
		return condition.State{}
	}
	return condition.State{
		Exists:   true,
		Released: t.StartedAt != nil && t.ReleasedAt != nil,
		Ready:    t.ReadyAt != nil,
		Exited:   t.ExitedAt != nil,
		ExitCode: t.ExitCode,
	}
}

// Duration is a time.Duration that reads and writes as a Go duration string in JSON.
type Duration time.Duration

// MarshalJSON writes the duration as a string such as "5m0s".
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a Go duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string: %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("parse duration %q: %w", s, err)
	}
	*d = Duration(v)
	return nil
}

// Store is a tombstone directory tree: <Root>/pods/<pod UID>/<container>.json, and one wake FIFO per
// held container in a directory of its own, <Root>/wake/<pod UID>/<container>/wake. A held container
// gets its pod's tombstone directory (regular files only, mounted read-only) and its own wake
// directory: a FIFO ignores a read-only mount, so no container may see another's.
type Store struct {
	// Root is the store's top directory on the node, e.g. /run/podorder.
	Root string
}

const (
	podsDir   = "pods"
	wakeDir   = "wake"
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

// RemovePod deletes a pod's tombstones and wake FIFOs. It removes through an os.Root opened on each
// tree, so that even a UID that slipped past validation cannot reach outside the store.
func (s Store) RemovePod(podUID string) error {
	if err := ValidUID(podUID); err != nil {
		return fmt.Errorf("remove tombstones: %w", err)
	}
	for _, tree := range []string{podsDir, wakeDir} {
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
	for _, tree := range []string{podsDir, wakeDir} {
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

// MaxFileBytes bounds a tombstone file; the daemon's are a few hundred bytes.
const MaxFileBytes = 64 << 10

// Decode reads one tombstone file's content.
func Decode(container string, data []byte) (*Tombstone, error) {
	if len(data) > MaxFileBytes {
		return nil, fmt.Errorf("decode tombstone of %s: larger than %d bytes", container, MaxFileBytes)
	}
	var t Tombstone
	if err := json.Unmarshal(data, &t); err != nil {
		return nil, fmt.Errorf("decode tombstone of %s: %w", container, err)
	}
	return &t, nil
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

// LegacyWakePath is where podorder before 0.2 kept a held container's wake FIFO, inside the pod's
// tombstone directory where every container of the pod could see it. Hooks of containers created
// then still look there.
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

// Wake nudges the hook of a held container to re-read the tombstones. It never blocks: with no hook
// waiting (ENXIO) or a wake-up already pending (EAGAIN) there is nothing to do.
func (s Store) Wake(podUID, container string) error {
	if ValidUID(podUID) != nil || !validName(container) {
		return nil
	}
	fd, err := syscall.Open(WakeFile(s.WakeDir(podUID, container)), syscall.O_WRONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if errors.Is(err, syscall.ENXIO) || errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("wake %s: %w", container, err)
	}
	defer syscall.Close(fd)
	if _, err := syscall.Write(fd, []byte{1}); err != nil && !errors.Is(err, syscall.EAGAIN) {
		return fmt.Errorf("wake %s: %w", container, err)
	}
	return nil
}
