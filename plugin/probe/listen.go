package probe

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"os"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/podorder/podorder/plugin/decl"
)

// errNotListening fails an attempt without connecting: nothing listens on the port yet.
var errNotListening = errors.New("nothing listens on the port yet")

// listeningAddrs returns the addresses to connect to, in order, for the probe's port given the
// namespace's listeners, or errNotListening. A readinessProbe is kubelet's, sent to the pod's IP, so
// a listener on loopback only does not count; a wildcard listener is reached on loopback, which
// within the pod is the same socket.
func listeningAddrs(p *decl.Probe, ls []netip.AddrPort) ([]string, error) {
	addrs := pickListeners(ls, p.Port, p.Readiness)
	if len(addrs) == 0 {
		return nil, fmt.Errorf("port %d: %w", p.Port, errNotListening)
	}
	out := make([]string, len(addrs))
	for i, a := range addrs {
		out[i] = hostPort(a.String(), p.Port)
	}
	return out, nil
}

// diagSocket is a sock_diag netlink socket kept open for one network namespace: it was created in
// it, so it lists that namespace's sockets from any thread, without entering it again.
type diagSocket struct {
	mu     sync.Mutex // one dump at a time: answers of two would interleave
	fd     int        // valid when open
	open   bool
	portID uint32 // the socket's netlink port id, to which the kernel addresses its answers
	seq    uint32 // the last dump's sequence number
}

// diagBuffers holds the receive buffers of dumps: a node may have hundreds of namespaces with a
// diag socket open, but only as many dumps at once as probe workers.
var diagBuffers = sync.Pool{New: func() any { b := make([]byte, 16<<10); return &b }}

// listeners lists the namespace's TCP sockets listening on port, creating the socket on first use
// through inNetns, which runs its argument inside the namespace. It gives up at deadline.
func (d *diagSocket) listeners(inNetns func(func() error) error, port uint16, deadline time.Time) ([]netip.AddrPort, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.open {
		var fd int
		if err := inNetns(func() (err error) { fd, err = newDiagSocket(); return err }); err != nil {
			return nil, err
		}
		portID, err := netlinkPortID(fd)
		if err != nil {
			unix.Close(fd)
			return nil, err
		}
		d.fd, d.portID, d.open = fd, portID, true
	}
	buf := diagBuffers.Get().(*[]byte)
	defer diagBuffers.Put(buf)
	var ls []netip.AddrPort
	for _, family := range []uint8{unix.AF_INET, unix.AF_INET6} {
		dump, err := d.dump(family, port, *buf, deadline)
		if err != nil {
			// What is left of a failed dump would count against the caps of the next: start afresh.
			d.closeLocked()
			return nil, err
		}
		ls = append(ls, dump.listeners...)
	}
	return ls, nil
}

func (d *diagSocket) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closeLocked()
}

func (d *diagSocket) closeLocked() {
	if d.open {
		unix.Close(d.fd)
		d.open = false
	}
}

// dump asks for family's sockets listening on port and reads the answer until the kernel's
// NLMSG_DONE, the caps of diagDump.read or deadline, whichever comes first. The caller holds d.mu.
func (d *diagSocket) dump(family uint8, port uint16, buf []byte, deadline time.Time) (*diagDump, error) {
	d.seq++
	dump := &diagDump{id: dumpID{seq: d.seq, portID: d.portID, family: family, port: port}}
	if err := unix.Send(d.fd, diagRequest(dump.id), 0); err != nil {
		return nil, fmt.Errorf("sock_diag request: %w", err)
	}
	for !dump.done {
		if err := waitReadable(d.fd, deadline); err != nil {
			return nil, err
		}
		// MSG_TRUNC makes n the datagram's real length, so a datagram cut short is seen as such.
		n, from, err := unix.Recvfrom(d.fd, buf, unix.MSG_DONTWAIT|unix.MSG_TRUNC)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("sock_diag answer: %w", err)
		}
		if n > len(buf) {
			return nil, fmt.Errorf("sock_diag answer: a datagram of %d bytes exceeds the %d-byte buffer", n, len(buf))
		}
		if err := dump.read(buf[:n], senderPortID(from)); err != nil {
			return nil, err
		}
	}
	return dump, nil
}

// waitReadable waits until fd has a datagram to read or deadline passes: a receive timeout would
// bound each read, not the dump.
func waitReadable(fd int, deadline time.Time) error {
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("sock_diag answer: %w", os.ErrDeadlineExceeded)
		}
		ts := unix.NsecToTimespec(left.Nanoseconds())
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Ppoll(fds, &ts, nil)
		switch {
		case errors.Is(err, unix.EINTR): // the Go runtime's preemption signal; ppoll is never restarted
		case err != nil:
			return fmt.Errorf("sock_diag answer: %w", err)
		case n > 0:
			return nil
		}
	}
}

// senderPortID is the netlink port id a datagram came from, 0 for the kernel.
func senderPortID(from unix.Sockaddr) uint32 {
	if sa, ok := from.(*unix.SockaddrNetlink); ok {
		return sa.Pid
	}
	return math.MaxUint32 // not netlink: never the kernel
}

var (
	loopback4 = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	loopback6 = netip.IPv6Loopback()
)

// pickListeners chooses the addresses to dial among the listening sockets, IPv4 first: those that
// kubelet's view allows. An IPv6 wildcard socket (what Go's ":8080" makes) is tried on 127.0.0.1
// first, which it accepts unless it is IPv6-only, then on ::1, which a pod with IPv6 disabled lacks.
func pickListeners(ls []netip.AddrPort, port int, readiness bool) []netip.Addr {
	var v4, v6 []netip.Addr
	add := func(a netip.Addr) {
		list := &v6
		if a.Is4() {
			list = &v4
		}
		if !slices.Contains(*list, a) {
			*list = append(*list, a)
		}
	}
	for _, l := range ls {
		if int(l.Port()) != port {
			continue
		}
		a := l.Addr().Unmap()
		switch {
		case a.IsUnspecified() && a.Is4():
			add(loopback4)
		case a.IsUnspecified():
			add(loopback4)
			add(loopback6)
		case a.IsLoopback() && readiness:
		default:
			add(a)
		}
	}
	return append(v4, v6...)
}

// newDiagSocket opens a sock_diag netlink socket in the calling thread's network namespace,
// connected to the kernel: the kernel then refuses what any other netlink socket sends it, such as
// answers forged by a tenant with CAP_NET_ADMIN in the pod.
func newDiagSocket() (int, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return -1, fmt.Errorf("sock_diag socket: %w", err)
	}
	if err := unix.Connect(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("sock_diag connect to the kernel: %w", err)
	}
	return fd, nil
}

// netlinkPortID is the port id the kernel gave fd when it connected, the address of its answers.
func netlinkPortID(fd int) (uint32, error) {
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return 0, fmt.Errorf("sock_diag socket name: %w", err)
	}
	nl, ok := sa.(*unix.SockaddrNetlink)
	if !ok {
		return 0, fmt.Errorf("sock_diag socket name: %T, not netlink", sa)
	}
	return nl.Pid, nil
}
