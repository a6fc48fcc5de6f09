// Package tombstone is podorder's node-local record of container lifecycles: one small JSON file per
// container of a pod that uses podorder, written only by the daemon and read by the hook inside
// dependent containers. A file always holds the newest attempt of its container, so an older
// attempt's state can never satisfy a waiter once a newer attempt exists.
//
// This package uses the standard library only: it is linked into the static in-container hook.
package tombstone

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/podorder/podorder/hooks/dependency"
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
	WaitsFor []dependency.Dependency `json:"waits_for,omitempty"`
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
	// ExitCodeUnknown marks an exit podorder learned only as an absence: the attempt exited while
	// podorder was away, and the runtime lists no exited container at a resynchronization. Its
	// ExitCode then means nothing until the Kubernetes API says it.
	ExitCodeUnknown bool `json:"exit_code_unknown,omitempty"`
	// Blind marks a hold whose hook reads a store directory that was removed under the daemon: it
	// can never see a release, so podorder never records one, across its own restarts too.
	Blind bool `json:"blind,omitempty"`
}

// Held reports whether this attempt declared dependencies.
func (t *Tombstone) Held() bool { return len(t.WaitsFor) > 0 }

// State is what waiters may know of this attempt; a nil tombstone is a container not created yet.
func (t *Tombstone) State() dependency.State {
	if t == nil {
		return dependency.State{}
	}
	return dependency.State{
		Exists:      true,
		Released:    t.released(),
		Ready:       t.ReadyAt != nil,
		Exited:      t.ExitedAt != nil,
		ExitCode:    t.ExitCode,
		ExitUnknown: t.ExitCodeUnknown,
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
