// Package hooks is the waiter that runs inside a held container as its OCI startContainer hook: it
// blocks until every dependency of the container is met in the pod's tombstone directory (mounted
// read-only), using inotify so that a release costs one wake-up and no polling.
//
// This package uses the standard library only: the hook is a tiny static binary run under the
// container's uid, capabilities and seccomp filter.
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

	"github.com/podorder/podorder/condition"
	"github.com/podorder/podorder/tombstone"
)

// Request is what one hook invocation waits for.
type Request struct {
	// Dir is the pod's tombstone directory as seen inside the container.
	Dir string
	// Waits lists the dependencies that must all be met.
	Waits []condition.Dependency
	// Timeout bounds the hold.
	Timeout time.Duration
	// Pod ("namespace/name") and Container name the holder in messages.
	Pod, Container string
}

// ErrTimeout marks a hold that ran out of time.
var ErrTimeout = errors.New("timed out")

// ErrDependencyFailed marks a hold that can never be met by the dependency's current attempt.
var ErrDependencyFailed = errors.New("dependency failed")

// Wait returns nil once every dependency is met, or an error that says what was still missing.
func Wait(ctx context.Context, r Request) error {
	deadline := time.Now().Add(r.Timeout)
	watch, err := watchDir(r.Dir)
	if err != nil {
		return fmt.Errorf("podorder: cannot watch %s for %s: %w", r.Dir, r.Container, err)
	}
	defer watch.Close()

	for {
		// Evaluate after the watch exists, so that no write between the two is missed.
		states, verdict, failed := evaluate(r)
		switch verdict {
		case condition.Met:
			return nil
		case condition.Failed:
			return fmt.Errorf("podorder: %s in pod %s will not start: %s: %w", r.Container, r.Pod,
				condition.Describe(failed, states[failed.Container]), ErrDependencyFailed)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := watch.next(deadline); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return timeoutError(r, states)
			}
			return fmt.Errorf("podorder: waiting for changes in %s: %w", r.Dir, err)
		}
	}
}

// evaluate reads the tombstones r waits for and returns the combined verdict; for Failed, the
// dependency that failed.
func evaluate(r Request) (map[string]condition.State, condition.Verdict, condition.Dependency) {
	states := make(map[string]condition.State, len(r.Waits))
	all := condition.Met
	for _, d := range r.Waits {
		t, err := tombstone.ReadFile(r.Dir, d.Container)
		if err != nil {
			// A tombstone is replaced by rename, so a read error is not a torn write: treat the
			// dependency as unknown and wait for its next write.
			all = condition.Waiting
			continue
		}
		s := t.State()
		states[d.Container] = s
		switch condition.Evaluate(d.Condition, s) {
		case condition.Failed:
			return states, condition.Failed, d
		case condition.Waiting:
			all = condition.Waiting
		}
	}
	return states, all, condition.Dependency{}
}

func timeoutError(r Request, states map[string]condition.State) error {
	var missing []string
	for _, d := range r.Waits {
		if condition.Evaluate(d.Condition, states[d.Container]) != condition.Met {
			missing = append(missing, fmt.Sprintf("%s (%s): %s", d.Container, d.Condition, condition.Describe(d, states[d.Container])))
		}
	}
	seen, _ := tombstone.ContainerNames(r.Dir)
	return fmt.Errorf("podorder: %s in pod %s %w after %s waiting for %s; containers seen in the pod: %s. "+
		"Check the dependency's name, logs and readiness, or raise podorder.dev/timeout.%s: %w",
		r.Container, r.Pod, ErrTimeout, r.Timeout, strings.Join(missing, "; "), strings.Join(seen, ", "), r.Container, ErrTimeout)
}

// dirWatch is an inotify watch on one directory, read through the Go poller so that a deadline can
// end the wait.
type dirWatch struct {
	f   *os.File
	buf [4096]byte
}

func watchDir(dir string) (*dirWatch, error) {
	fd, err := syscall.InotifyInit1(syscall.IN_CLOEXEC | syscall.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("inotify_init1: %w", err)
	}
	// A tombstone is published by rename (IN_MOVED_TO); IN_CLOSE_WRITE covers writers that do not.
	if _, err := syscall.InotifyAddWatch(fd, dir, syscall.IN_MOVED_TO|syscall.IN_CLOSE_WRITE); err != nil {
		syscall.Close(fd)
		return nil, fmt.Errorf("inotify_add_watch: %w", err)
	}
	return &dirWatch{f: os.NewFile(uintptr(fd), "inotify")}, nil
}

// next blocks until a tombstone in the directory is published, or the deadline passes.
func (w *dirWatch) next(deadline time.Time) error {
	if err := w.f.SetReadDeadline(deadline); err != nil {
		return err
	}
	for {
		n, err := w.f.Read(w.buf[:])
		if err != nil {
			return err
		}
		for off := 0; off+syscall.SizeofInotifyEvent <= n; {
			ev := (*syscall.InotifyEvent)(unsafe.Pointer(&w.buf[off]))
			name := strings.TrimRight(string(w.buf[off+syscall.SizeofInotifyEvent:off+syscall.SizeofInotifyEvent+int(ev.Len)]), "\x00")
			off += syscall.SizeofInotifyEvent + int(ev.Len)
			if _, ok := tombstone.IsTombstoneFile(name); ok || ev.Mask&syscall.IN_Q_OVERFLOW != 0 {
				return nil
			}
		}
	}
}

// Close releases the inotify descriptor.
func (w *dirWatch) Close() error { return w.f.Close() }
