// Package stopper signals a container's init process through a pidfd: the stop signal first, SIGKILL
// after the grace period, as kubelet's own stops do. NRI cannot stop a container gracefully (its
// eviction is an immediate SIGKILL) and the runtime's CRI socket would give podorder control of every
// container on the node; a pidfd needs only the host's PID namespace and CAP_KILL.
//
// The pidfd is opened while the container is known to run (at its start), so a signal can never
// reach another process that reused the PID after the container exited.
package stopper

import (
	"errors"
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// ErrExited is returned when the process exited before the signal.
var ErrExited = errors.New("the process already exited")

// Process is a handle on one process that stays valid after it exits.
type Process struct {
	fd  int
	pid uint32
}

// Open takes a handle on pid; the caller must know that pid is the process it means right now.
func Open(pid uint32) (*Process, error) {
	if pid == 0 {
		return nil, errors.New("open process: no PID")
	}
	fd, err := unix.PidfdOpen(int(pid), unix.PIDFD_NONBLOCK)
	if err != nil {
		if errors.Is(err, unix.ESRCH) {
			return nil, fmt.Errorf("open process %d: %w", pid, ErrExited)
		}
		return nil, fmt.Errorf("open process %d (podorder needs the host's PID namespace: hostPID in the DaemonSet): %w", pid, err)
	}
	unix.CloseOnExec(fd)
	return &Process{fd: fd, pid: pid}, nil
}

// PID returns the process ID the handle was opened for.
func (p *Process) PID() uint32 { return p.pid }

// Signal sends sig to the process, or returns ErrExited if it is gone.
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
