package probe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// selfNetns names the calling thread's own network namespace, which is what a worker must return
// to; /proc/self would name the main thread's, which is not necessarily the same.
const selfNetns = "/proc/thread-self/ns/net"

// nsFile is an open network namespace, kept open while any probe uses it so that a pod's probes
// do not each hold a descriptor, and so the namespace cannot be replaced under a path mid-probe.
type nsFile struct {
	path string
	f    *os.File
	ino  uint64 // the namespace's inode, which events name it by; 0 when unknown
	refs int
	// diag lists the namespace's listening sockets; created in the namespace by the first attempt.
	diag diagSocket
}

// openLocked returns the shared handle on the namespace at path, opening it for its first probe.
func (r *Runner) openLocked(path string) (*nsFile, error) {
	if n := r.netns[path]; n != nil {
		n.refs++
		return n, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("cannot probe in pod network namespace: %w (is the sandbox gone?)", err)
	}
	if r.netns == nil {
		r.netns = map[string]*nsFile{}
	}
	n := &nsFile{path: path, f: f, refs: 1}
	if fi, err := f.Stat(); err == nil {
		n.ino = inode(fi)
	}
	r.netns[path] = n
	return n, nil
}

// releaseLocked drops t's hold on its namespace. It runs only when no worker owns t, so the
// descriptor is never closed, and its number reused, under a worker about to setns with it.
func (r *Runner) releaseLocked(t *task) {
	n := t.ns
	if n == nil {
		return
	}
	t.ns = nil
	if n.refs--; n.refs == 0 {
		delete(r.netns, n.path)
		n.diag.close()
		if err := n.f.Close(); err != nil {
			r.logger().Warn("closing pod network namespace", "netns", n.path, "error", err)
		}
	}
}

// dial connects to the probe's port from the pod's namespace, once something listens on it. Listing
// the listeners needs no namespace switch (the namespace's diag socket was created in it), so an
// attempt on a closed port costs two netlink dumps and no connection; the thread enters the
// namespace only to create the socket it connects with (see connect).
func (r *Runner) dial(ctx context.Context, t *task, tainted *bool) (conn net.Conn, addr string, err error) {
	addrs, err := r.listening(ctx, t, tainted)
	if err != nil {
		return nil, "", err
	}
	for _, addr = range addrs {
		// A namespace that cannot be entered fails every address alike.
		if conn, err = r.connect(ctx, t, tainted, addr); err == nil || *tainted || errors.Is(err, errEnter) {
			break
		}
	}
	return conn, addr, err
}

// listening returns the addresses to connect to once the probe's port listens (see
// listeningAddrs), or errNotListening. When the kernel cannot list listeners, it returns loopback
// unchecked: the connect then decides, as it did before the check existed.
func (r *Runner) listening(ctx context.Context, t *task, tainted *bool) ([]string, error) {
	ds := &r.ownDiag
	if t.ns != nil {
		ds = &t.ns.diag
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(t.timeout)
	}
	inNetns := func(create func() error) error { return r.inNetns(t, tainted, create) }
	ls, err := ds.listeners(inNetns, uint16(t.probe.Port), deadline)
	if *tainted || errors.Is(err, errEnter) {
		return nil, err
	}
	if err != nil {
		r.warnDiag(t, err)
		return []string{hostPort("127.0.0.1", t.probe.Port)}, nil
	}
	return listeningAddrs(t.probe, ls)
}

// inNetns runs fn on this thread inside t's network namespace (directly for the daemon's own). fn
// must only create sockets and files: a socket stays in the namespace it was created in, so the
// thread is in the pod's namespace for an instant, not for the attempt.
func (r *Runner) inNetns(t *task, tainted *bool, fn func() error) (err error) {
	if t.ns == nil {
		return fn()
	}
	setns := t.setns
	runtime.LockOSThread()
	self, err := os.Open(selfNetns)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("remember the daemon's network namespace: %w", err)
	}
	defer self.Close()
	entering := true
	defer func() {
		if !entering {
			return
		}
		// Also on panic: whatever happened, the thread must go back before it runs anything else.
		if berr := leave(setns, int(self.Fd())); berr != nil {
			*tainted = true
			err = fmt.Errorf("leave %s: %w", t.netns, berr)
			return
		}
		runtime.UnlockOSThread()
	}()
	if err := setns(int(t.ns.f.Fd()), unix.CLONE_NEWNET); err != nil {
		// A failed setns leaves the thread where it was.
		entering = false
		runtime.UnlockOSThread()
		r.warnEnter(t, err)
		return fmt.Errorf("%w %s: %w", errEnter, t.netns, err)
	}
	return fn()
}

// errEnter marks the failure to enter a pod's network namespace, which fails the attempt whatever
// it was trying to do there.
var errEnter = errors.New("enter")

// leave returns the thread to the namespace open at fd. A panic counts as a failure: the thread's
// namespace is then unknown, and it must be discarded rather than run other goroutines.
func leave(setns func(fd, nstype int) error, fd int) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("setns panicked: %v", v)
		}
	}()
	return setns(fd, unix.CLONE_NEWNET)
}

// warnDiag logs, once per probe, that the kernel would not list the namespace's listeners.
func (r *Runner) warnDiag(t *task, err error) {
	r.mu.Lock()
	first := !t.diagWarned
	t.diagWarned = true
	r.mu.Unlock()
	if first {
		r.logger().Warn("cannot list the listening sockets of the pod's network namespace; connecting at every attempt instead",
			"netns", t.netns, "probe", t.probe.String(), "error", err)
	}
}

// warnEnter logs, once per probe, that its namespace cannot be entered: retrying every interval
// would otherwise flood the log with the same line.
func (r *Runner) warnEnter(t *task, err error) {
	r.mu.Lock()
	first := !t.warned
	t.warned = true
	r.mu.Unlock()
	if first {
		r.logger().Warn("cannot enter pod network namespace to probe; retrying", "netns", t.netns, "probe", t.probe.String(), "error", err)
	}
}
