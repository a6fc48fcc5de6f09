// Package hooks is everything podorder runs inside containers: the OCI startContainer hook that
// holds a container until the daemon has recorded this container attempt as released in the pod's
// tombstone directory (mounted read-only), and the preStop drain that waits for the containers that
// depend on this one to stop. Its subpackages, tombstone and condition, are the wire format the
// daemon writes and the hook reads.
//
// The daemon alone decides: a container is never counted released unless its hook saw the release,
// because the daemon releases only before its own deadline, which falls before the hook's, and the
// hook reads the tombstones once more when its deadline passes. The daemon wakes it through a FIFO
// only this container can see; it also re-reads the tombstones every RecheckEvery on its own, so a
// lost wake-up only delays a release.
//
// This package uses the standard library only, kept so by a test: the hook
// is a tiny static binary run under the container's uid, capabilities and seccomp filter.
package hooks

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"github.com/podorder/podorder/hooks/dependency"
	"github.com/podorder/podorder/hooks/tombstone"
)

// Request is what one hook invocation waits for.
type Request struct {
	// Dir is the pod's tombstone directory as seen inside the container.
	Dir string
	// Waits lists the dependencies that must all be met.
	Waits []dependency.Dependency
	// Timeout bounds the hold.
	Timeout time.Duration
	// Pod ("namespace/name") and Container name the holder in messages.
	Pod, Container string
	// ID is the runtime's ID of this container attempt: only a release recorded for it counts.
	// Empty for a hook injected by podorder before 0.2, which evaluates Waits itself.
	ID string
	// Wake is the container's own wake FIFO; empty for the layout before 0.2.
	Wake string
	// RecheckEvery is how often the tombstones are re-read without a wake-up; zero means 1 s.
	RecheckEvery time.Duration
}

// ErrTimeout marks a hold that ran out of time.
var ErrTimeout = errors.New("timed out")

// ErrDependencyFailed marks a hold that can never be met by the dependency's current attempt.
var ErrDependencyFailed = errors.New("dependency failed")

// Wait returns nil once every dependency is met, or an error that says what was still missing.
func Wait(ctx context.Context, r Request) error {
	deadline := time.Now().Add(r.Timeout)
	if r.RecheckEvery <= 0 {
		r.RecheckEvery = time.Second
	}
	watch, err := newWaker(r.Dir, r.Container, r.Wake)
	if err != nil {
		return fmt.Errorf("podorder: cannot watch %s for %s: %w", r.Dir, r.Container, err)
	}
	defer watch.Close()

	for {
		// Evaluate after the watch exists, so that no write between the two is missed.
		if done, err := check(r); done {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := watch.next(deadline, r.RecheckEvery); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				// The daemon's deadline is earlier than ours: a release it recorded is on disk now.
				if done, err := check(r); done {
					return err
				}
				states, _, _ := evaluate(r)
				return timeoutError(r, states)
			}
			return fmt.Errorf("podorder: waiting for changes in %s: %w", r.Dir, err)
		}
	}
}

// check reports whether the hold is over: with a nil error when the container may start.
func check(r Request) (bool, error) {
	if r.ID == "" {
		states, verdict, failed := evaluate(r)
		switch verdict {
		case dependency.Met:
			return true, nil
		case dependency.Failed:
			return true, willNotStart(r, dependency.Describe(failed, states[failed.Container]))
		}
		return false, nil
	}
	own, err := tombstone.ReadFile(r.Dir, r.Container)
	if err != nil || own == nil || own.ID != r.ID {
		return false, nil
	}
	switch {
	case own.ReleasedAt != nil:
		return true, nil
	case own.HoldFailed != "":
		return true, willNotStart(r, own.HoldFailed)
	}
	return false, nil
}

// willNotStart is the hook's message for a hold that can never be met.
func willNotStart(r Request, why string) error {
	return fmt.Errorf("podorder: %s in pod %s will not start: %s: %w", r.Container, r.Pod, why, ErrDependencyFailed)
}

// evaluate reads the tombstones r waits for and returns the combined verdict; for Failed, the
// dependency that failed.
func evaluate(r Request) (map[string]dependency.State, dependency.Verdict, dependency.Dependency) {
	states := make(map[string]dependency.State, len(r.Waits))
	all := dependency.Met
	for _, d := range r.Waits {
		t, err := tombstone.ReadFile(r.Dir, d.Container)
		if err != nil {
			// A tombstone is replaced by rename, so a read error is not a torn write: treat the
			// dependency as unknown and wait for its next write.
			all = dependency.Waiting
			continue
		}
		s := t.State()
		states[d.Container] = s
		switch dependency.Evaluate(d.Condition, s) {
		case dependency.Failed:
			return states, dependency.Failed, d
		case dependency.Waiting:
			all = dependency.Waiting
		}
	}
	return states, all, dependency.Dependency{}
}

func timeoutError(r Request, states map[string]dependency.State) error {
	var missing []string
	for _, d := range r.Waits {
		if dependency.Evaluate(d.Condition, states[d.Container]) == dependency.Met {
			continue
		}
		if t, _ := tombstone.ReadFile(r.Dir, d.Container); t != nil && t.PodSelector != "" {
			missing = append(missing, fmt.Sprintf("%s: no matching pod is %s", t.PodSelector, d.Condition))
			continue
		}
		missing = append(missing, fmt.Sprintf("%s (%s): %s", d.Container, d.Condition, dependency.Describe(d, states[d.Container])))
	}
	seen, _ := tombstone.ContainerNames(r.Dir)
	return fmt.Errorf("podorder: %s in pod %s %w after %s waiting for %s; containers seen in the pod: %s. "+
		"Check the dependency's name, logs and readiness, or raise podorder.dev/timeout.%s: %w",
		r.Container, r.Pod, ErrTimeout, r.Timeout, strings.Join(missing, "; "), strings.Join(seen, ", "), r.Container, ErrTimeout)
}

// waker blocks until the tombstones may have changed. It reads the container's wake FIFO, which the
// daemon writes after every tombstone change in the pod; with no FIFO (a store written by another
// podorder version) it watches the directory with inotify instead, whose teardown at the hook's exit
// costs 15-25 ms. Either way the hook blocks in epoll_wait(2) and never polls.
type waker struct {
	fd, epoll int
	// changed reports whether the bytes read from fd announce a tombstone change.
	changed func([]byte) bool
	buf     [4096]byte
}

func newWaker(dir, container, wake string) (*waker, error) {
	if wake == "" {
		wake = tombstone.LegacyWakePath(dir, container)
	}
	fd, err := syscall.Open(wake, syscall.O_RDWR|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	changed := func([]byte) bool { return true }
	if errors.Is(err, syscall.ENOENT) {
		fd, changed, err = watchDir(dir)
	}
	if err != nil {
		return nil, fmt.Errorf("open wake FIFO: %w", err)
	}
	ep, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err == nil {
		err = syscall.EpollCtl(ep, syscall.EPOLL_CTL_ADD, fd, &syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(fd)})
	}
	if err != nil {
		syscall.Close(fd)
		syscall.Close(ep)
		return nil, fmt.Errorf("epoll: %w", err)
	}
	return &waker{fd: fd, epoll: ep, changed: changed}, nil
}

// watchDir is the inotify fallback: a published tombstone is a rename (IN_MOVED_TO) into dir.
func watchDir(dir string) (int, func([]byte) bool, error) {
	fd, err := syscall.InotifyInit1(syscall.IN_CLOEXEC | syscall.IN_NONBLOCK)
	if err != nil {
		return -1, nil, fmt.Errorf("inotify_init1: %w", err)
	}
	if _, err := syscall.InotifyAddWatch(fd, dir, syscall.IN_MOVED_TO|syscall.IN_CLOSE_WRITE); err != nil {
		syscall.Close(fd)
		return -1, nil, fmt.Errorf("inotify_add_watch: %w", err)
	}
	return fd, tombstoneEvent, nil
}

// tombstoneEvent reports whether a batch of inotify events names a published tombstone.
func tombstoneEvent(b []byte) bool {
	for off := 0; off+syscall.SizeofInotifyEvent <= len(b); {
		ev := (*syscall.InotifyEvent)(unsafe.Pointer(&b[off]))
		name := strings.TrimRight(string(b[off+syscall.SizeofInotifyEvent:off+syscall.SizeofInotifyEvent+int(ev.Len)]), "\x00")
		off += syscall.SizeofInotifyEvent + int(ev.Len)
		if _, ok := tombstone.IsTombstoneFile(name); ok || ev.Mask&syscall.IN_Q_OVERFLOW != 0 {
			return true
		}
	}
	return false
}

// next blocks until the tombstones may have changed, recheck has passed, or the deadline passes
// (os.ErrDeadlineExceeded).
func (w *waker) next(deadline time.Time, recheck time.Duration) error {
	events := make([]syscall.EpollEvent, 1)
	until := time.Now().Add(recheck)
	for {
		if ok, err := w.drain(); ok || err != nil {
			return err
		}
		wait := time.Until(deadline)
		if wait <= 0 {
			return os.ErrDeadlineExceeded
		}
		if again := time.Until(until); again <= 0 {
			return nil
		} else if again < wait {
			wait = again
		}
		// Round up: epoll_wait takes milliseconds, and 0 would not block.
		if _, err := syscall.EpollWait(w.epoll, events, int((wait+time.Millisecond-1)/time.Millisecond)); err != nil && err != syscall.EINTR {
			return fmt.Errorf("epoll_wait: %w", err)
		}
	}
}

// drain consumes everything pending and reports whether it announced a change.
func (w *waker) drain() (bool, error) {
	found := false
	for {
		n, err := syscall.Read(w.fd, w.buf[:])
		if err == syscall.EAGAIN || err == syscall.EINTR {
			return found, nil
		}
		if err != nil {
			return false, fmt.Errorf("read wake-ups: %w", err)
		}
		found = found || w.changed(w.buf[:n])
	}
}

// Close releases the descriptors.
func (w *waker) Close() error {
	syscall.Close(w.epoll)
	return syscall.Close(w.fd)
}
