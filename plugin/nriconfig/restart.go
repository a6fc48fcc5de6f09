package nriconfig

import (
	"context"
	"fmt"
	"time"

	"github.com/coreos/go-systemd/v22/dbus"
)

// SystemdSocket is systemd's private D-Bus socket, which Unit talks to: it needs no D-Bus daemon,
// only the node's /run/systemd mounted at the same path, and root.
const SystemdSocket = "/run/systemd/private"

// Service is containerd's service as a service manager sees it; Unit is systemd's.
type Service interface {
	// ActiveSince is when the running containerd started.
	ActiveSince(ctx context.Context) (time.Time, error)
	// Restart restarts containerd and returns once it has started.
	Restart(ctx context.Context) error
}

var _ Service = Unit{}

// Unit is the systemd unit that runs containerd: containerd reads its config only when it starts,
// so a changed config takes effect when the unit restarts.
type Unit struct {
	// Name is the unit's name: containerd.service.
	Name string
}

// ActiveSince is when the unit last became active: when the running containerd started.
func (u Unit) ActiveSince(ctx context.Context) (time.Time, error) {
	conn, err := dbus.NewSystemdConnectionContext(ctx)
	if err != nil {
		return time.Time{}, fmt.Errorf("connect to systemd at %s: %w", SystemdSocket, err)
	}
	defer conn.Close()
	p, err := conn.GetUnitPropertyContext(ctx, u.Name, "ActiveEnterTimestamp")
	if err != nil {
		return time.Time{}, fmt.Errorf("ask systemd when %s started: %w", u.Name, err)
	}
	usec, ok := p.Value.Value().(uint64)
	if !ok || usec == 0 {
		return time.Time{}, fmt.Errorf("systemd says %s has not started (ActiveEnterTimestamp %v): is containerd's unit called otherwise? (--unit)", u.Name, p.Value)
	}
	return time.UnixMicro(int64(usec)), nil
}

// Restart asks systemd to restart the unit and waits until the restart job is done.
func (u Unit) Restart(ctx context.Context) error {
	conn, err := dbus.NewSystemdConnectionContext(ctx)
	if err != nil {
		return fmt.Errorf("connect to systemd at %s: %w", SystemdSocket, err)
	}
	defer conn.Close()
	done := make(chan string, 1)
	if _, err := conn.RestartUnitContext(ctx, u.Name, "replace", done); err != nil {
		return fmt.Errorf("ask systemd to restart %s: %w", u.Name, err)
	}
	select {
	case result := <-done:
		if result != "done" {
			return fmt.Errorf("systemd's restart of %s ended %q: see `journalctl -u %s` on the node", u.Name, result, u.Name)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("systemd's restart of %s: %w", u.Name, ctx.Err())
	}
}

// NeedsRestart says whether containerd must restart to read its config: when this run changed the
// file, or when the file changed after the running containerd started (an earlier run, or the
// operator, changed it and containerd has not restarted since).
func NeedsRestart(changed bool, modified, activeSince time.Time) bool {
	return changed || modified.After(activeSince)
}
