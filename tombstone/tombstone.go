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
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/podorder/podorder/condition"
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

	// PodSelector is set on a synthetic tombstone that stands for a dependency on other pods:
	// "pod(app=mysql):ready". The daemon keeps its times in step with the matching pods.
	PodSelector string `json:"pod_selector,omitempty"`

	CreatedAt  *time.Time `json:"created_at,omitempty"`
	StartedAt  *time.Time `json:"started_at,omitempty"`
	ReleasedAt *time.Time `json:"released_at,omitempty"`
	// ProbeReadyAt and KubeletReadyAt record each readiness source; ReadyAt is set once every source
	// that applies has passed and the container is released.
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

// Store is a tombstone directory tree: <Root>/pods/<pod UID>/<container>.json. The hook sees a
// single pod's directory, mounted read-only, as a Store of its own via PodDir.
type Store struct {
	// Root is the store's top directory on the node, e.g. /run/podorder.
	Root string
}

const (
	podsDir   = "pods"
	fileExt   = ".json"
	wakeExt   = ".wake"
	tmpPrefix = ".tmp-"
)

// PodDir is the directory holding the tombstones of one pod.
func (s Store) PodDir(podUID string) string { return filepath.Join(s.Root, podsDir, podUID) }

// EnsurePod creates a pod's directory, readable by every uid so that non-root containers can wait.
func (s Store) EnsurePod(podUID string) (string, error) {
	if podUID == "" || strings.ContainsAny(podUID, `/\`) || podUID == "." || podUID == ".." {
		return "", fmt.Errorf("invalid pod UID %q", podUID)
	}
	dir := s.PodDir(podUID)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("create tombstone directory for pod %s: %w", podUID, err)
	}
	// MkdirAll honours the umask; the hook may run as any uid.
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", fmt.Errorf("make tombstone directory of pod %s readable: %w", podUID, err)
	}
	return dir, nil
}

// RemovePod deletes a pod's tombstones.
func (s Store) RemovePod(podUID string) error {
	if err := os.RemoveAll(s.PodDir(podUID)); err != nil {
		return fmt.Errorf("remove tombstones of pod %s: %w", podUID, err)
	}
	return nil
}

// Pods lists the pod UIDs that have a tombstone directory.
func (s Store) Pods() ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(s.Root, podsDir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list tombstone pods: %w", err)
	}
	var uids []string
	for _, e := range entries {
		if e.IsDir() {
			uids = append(uids, e.Name())
		}
	}
	return uids, nil
}

// Write stores t atomically in the pod's directory: readers see the old or the new file, never a
// partial one. The directory must exist (EnsurePod).
func (s Store) Write(podUID string, t *Tombstone) error {
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

// Read returns the pod's tombstone of one container, or nil if it has none yet.
func (s Store) Read(podUID, container string) (*Tombstone, error) {
	return ReadFile(s.PodDir(podUID), container)
}

// ReadFile returns <dir>/<container>.json, or nil if it does not exist.
func ReadFile(dir, container string) (*Tombstone, error) {
	if !validName(container) {
		return nil, fmt.Errorf("invalid container name %q", container)
	}
	data, err := os.ReadFile(filepath.Join(dir, container+fileExt))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read tombstone of %s: %w", container, err)
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

// WakePath is the FIFO through which the daemon wakes a held container's hook whenever a tombstone of
// its pod changes. A FIFO, not inotify: tearing down an inotify instance costs the exiting hook
// 15-25 ms (the kernel waits for an SRCU grace period), on the path from release to the process.
func WakePath(dir, container string) string { return filepath.Join(dir, container+wakeExt) }

// EnsureWake creates the wake FIFO of a held container. It is world-writable because the hook runs as
// the container's uid and opens it read-write (so that it never sees end-of-file); a stray write can
// only make a hook re-read the tombstones.
func (s Store) EnsureWake(podUID, container string) error {
	if !validName(container) {
		return fmt.Errorf("invalid container name %q", container)
	}
	path := WakePath(s.PodDir(podUID), container)
	if err := syscall.Mkfifo(path, 0o666); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("create wake FIFO of %s: %w", container, err)
	}
	if err := os.Chmod(path, 0o666); err != nil {
		return fmt.Errorf("create wake FIFO of %s: %w", container, err)
	}
	return nil
}

// Wake nudges the hook of a held container to re-read the tombstones. It never blocks: with no hook
// waiting (ENXIO) or a wake-up already pending (EAGAIN) there is nothing to do.
func (s Store) Wake(podUID, container string) error {
	fd, err := syscall.Open(WakePath(s.PodDir(podUID), container), syscall.O_WRONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
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
