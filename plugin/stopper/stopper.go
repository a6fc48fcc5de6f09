// Package stopper signals a container's init process through a pidfd: the stop signal first, SIGKILL
// after the grace period, as kubelet's own stops do. NRI cannot stop a container gracefully (its
// eviction is an immediate SIGKILL) and the runtime's CRI socket would give podorder control of every
// container on the node; a pidfd needs only the host's PID namespace and CAP_KILL.
//
// A PID names a process only until it is reused. The PIDs podorder gets come from the runtime —
// at a container's start, or in the snapshot of a resynchronization, which may be old by the time
// it is read — so Open checks that the process it pinned is in the container's cgroup before it
// hands out the handle; from then on the pidfd can never reach another process.
package stopper

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// ErrExited is returned when the process exited before the signal.
var ErrExited = errors.New("the process already exited")

// ErrNotContainer is returned by Open when the PID now names a process outside the container: the
// container's process exited and the PID was reused.
var ErrNotContainer = errors.New("the process is not the container's (its PID was reused)")

// Process is a handle on one process that stays valid after it exits.
type Process struct {
	fd  int
	pid uint32
}

// procRoot is where Open reads processes' cgroups.
const procRoot = "/proc"

// Open takes a handle on pid, the process of the container containerID, and refuses it with
// ErrNotContainer when the process is not in that container's cgroup.
func Open(pid uint32, containerID string) (*Process, error) {
	if pid == 0 {
		return nil, errors.New("open process: no PID")
	}
	if containerID == "" {
		return nil, fmt.Errorf("open process %d: no container ID to check it against", pid)
	}
	fd, err := unix.PidfdOpen(int(pid), unix.PIDFD_NONBLOCK)
	if err != nil {
		if errors.Is(err, unix.ESRCH) {
			return nil, fmt.Errorf("open process %d: %w", pid, ErrExited)
		}
		return nil, fmt.Errorf("open process %d (podorder needs the host's PID namespace: hostPID in the DaemonSet): %w", pid, err)
	}
	unix.CloseOnExec(fd)
	p := &Process{fd: fd, pid: pid}
	if err := p.check(containerID); err != nil {
		_ = p.Close()
		return nil, err
	}
	return p, nil
}

// check verifies that the pinned process is containerID's. /proc/<pid> is read after the pidfd
// was opened and the pidfd is found alive after the read, so what was read is the pinned
// process's: a PID is not reused while its process lives.
func (p *Process) check(containerID string) error {
	cgroups, rerr := os.ReadFile(fmt.Sprintf("%s/%d/cgroup", procRoot, p.pid))
	if err := p.Signal(0); err != nil {
		return fmt.Errorf("open process %d: %w", p.pid, err)
	}
	if rerr != nil {
		return fmt.Errorf("open process %d: read its cgroup (podorder needs the host's /proc: hostPID in the DaemonSet): %w", p.pid, rerr)
	}
	if !inContainer(string(cgroups), containerID) {
		return fmt.Errorf("open process %d of container %s: %w; its cgroups: %q", p.pid, containerID, ErrNotContainer, strings.TrimSpace(string(cgroups)))
	}
	return nil
}

// inContainer reports whether a /proc/<pid>/cgroup file places the process in containerID's cgroup
// or below it. Runtimes name a container's cgroup after its ID ("<id>" with the cgroupfs driver,
// "cri-containerd-<id>.scope" or "crio-<id>.scope" with systemd's), while the path above it
// depends on the driver and on the reader's cgroup namespace ("/../../" when podorder has its own),
// so only the components are compared. A component below the container's own counts because a
// container may move its processes into cgroups of its own (systemd as init does). Only a container
// with a writable cgroupfs can name a cgroup, and only below its own: a process it moves under a
// cgroup named after another container's ID is its own process, so the worst a tenant gets from
// that is a signal to itself.
func inContainer(cgroups, containerID string) bool {
	if containerID == "" {
		return false
	}
	for _, line := range strings.Split(cgroups, "\n") {
		// hierarchy-ID:controllers:path, and a path may contain colons.
		fields := strings.SplitN(line, ":", 3)
		if len(fields) != 3 {
			continue
		}
		for _, component := range strings.Split(fields[2], "/") {
			if strings.Contains(component, containerID) {
				return true
			}
		}
	}
	return false
}

// PID returns the process ID the handle was opened for.
func (p *Process) PID() uint32 { return p.pid }

// Signal sends sig to the process, or returns ErrExited if it is gone. Signal 0 only checks that
// the process is still there.
func (p *Process) Signal(sig syscall.Signal) error {
	err := unix.PidfdSendSignal(p.fd, sig, nil, 0)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.ESRCH):
		return ErrExited
	case errors.Is(err, unix.EPERM):
		return fmt.Errorf("signal process %d: %w (podorder needs CAP_KILL)", p.pid, err)
	}
	return fmt.Errorf("signal process %d: %w", p.pid, err)
}

// Close releases the handle.
func (p *Process) Close() error {
	if p == nil || p.fd < 0 {
		return nil
	}
	err := unix.Close(p.fd)
	p.fd = -1
	return err
}
