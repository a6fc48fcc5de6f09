package probe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// connect opens a TCP connection to addr with a socket created in t's network namespace. The
// thread is in the pod's namespace only to create the socket. A connection that completes within
// connect(2) — loopback and the pod's own addresses, which every probe dials, complete their
// handshake in the kernel before the call returns — is taken at once: the runtime's dialer would
// park the goroutine in the poller first, which costs a wake-up (a few hundred µs on a loaded node)
// on the path from a port opening to the release. Any other connection waits in the poller until
// its handshake completes or fails, or ctx ends.
func (r *Runner) connect(ctx context.Context, t *task, tainted *bool, addr string) (net.Conn, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	family, sa := unix.AF_INET6, unix.Sockaddr(&unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()})
	if ap.Addr().Is4() || ap.Addr().Is4In6() {
		family, sa = unix.AF_INET, &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().Unmap().As4()}
	}
	fd := -1
	err = r.inNetns(t, tainted, func() error {
		var err error
		fd, err = unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
		return err
	})
	if err != nil {
		if fd >= 0 {
			unix.Close(fd)
		}
		return nil, fmt.Errorf("dial %s: socket: %w", addr, err)
	}
	f := os.NewFile(uintptr(fd), "probe "+addr)
	defer f.Close() // the connection holds a duplicate
	if err := connectFD(ctx, f, sa); err != nil {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Addr: net.TCPAddrFromAddrPort(ap), Err: err}
	}
	return net.FileConn(f)
}

// connectFD connects f's socket to sa, waiting in the poller only when the handshake did not
// complete within connect(2).
func connectFD(ctx context.Context, f *os.File, sa unix.Sockaddr) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var cerr error
	if err := rc.Control(func(fd uintptr) { cerr = unix.Connect(int(fd), sa) }); err != nil {
		return err
	}
	if cerr == nil {
		return nil
	}
	// As the standard library's dialer: an interrupted connect goes on in the kernel.
	if !errors.Is(cerr, unix.EINPROGRESS) && !errors.Is(cerr, unix.EALREADY) && !errors.Is(cerr, unix.EINTR) {
		return os.NewSyscallError("connect", cerr)
	}
	if deadline, ok := ctx.Deadline(); ok {
		if err := f.SetWriteDeadline(deadline); err != nil {
			return err
		}
	}
	stop := context.AfterFunc(ctx, func() { _ = f.SetWriteDeadline(time.Unix(1, 0)) })
	defer stop()
	werr := rc.Write(func(fd uintptr) bool {
		// The first call comes before any wait: a socket already writable has connected (or
		// failed), and SO_ERROR says which.
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
		if n, err := unix.Poll(pfd, 0); err == nil && n == 0 {
			return false
		}
		v, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR)
		switch {
		case err != nil:
			cerr = os.NewSyscallError("getsockopt", err)
		case v != 0:
			cerr = os.NewSyscallError("connect", unix.Errno(v))
		default:
			cerr = nil
		}
		return true
	})
	if werr != nil {
		if ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return ctx.Err()
		}
		return werr
	}
	return cerr
}
