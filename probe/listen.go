package probe

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/podorder/podorder/decl"
)

// tcpListen is the kernel's TCP_LISTEN state; the diag request asks for sockets in it alone, so the
// kernel walks only its listening hash, never the table of every connection on the node (which is
// what makes /proc/net/tcp take milliseconds on a busy node).
const tcpListen = 10

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
	mu   sync.Mutex // one dump at a time: answers of two would interleave
	fd   int        // valid when open
	open bool
}

// diagBuffers holds the receive buffers of dumps: a node may have hundreds of namespaces with a
// diag socket open, but only as many dumps at once as probe workers.
var diagBuffers = sync.Pool{New: func() any { b := make([]byte, 16<<10); return &b }}

// listeners lists the namespace's listening TCP sockets, creating the socket on first use through
// inNetns, which runs its argument inside the namespace.
func (d *diagSocket) listeners(inNetns func(func() error) error) ([]netip.AddrPort, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.open {
		var fd int
		if err := inNetns(func() (err error) { fd, err = newDiagSocket(); return err }); err != nil {
			return nil, err
		}
		d.fd, d.open = fd, true
	}
	buf := diagBuffers.Get().(*[]byte)
	defer diagBuffers.Put(buf)
	ls, err := dumpListeners(d.fd, *buf)
	if err != nil {
		// What is left of a failed dump would be read as the answer to the next: start afresh.
		unix.Close(d.fd)
		d.open = false
	}
	return ls, err
}

func (d *diagSocket) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.open {
		unix.Close(d.fd)
		d.open = false
	}
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

// newDiagSocket opens a sock_diag netlink socket in the calling thread's network namespace.
func newDiagSocket() (int, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return -1, fmt.Errorf("sock_diag socket: %w", err)
	}
	// A dump of a namespace's listeners is small and quick; the timeout only guards a kernel that
	// never answers.
	tv := unix.Timeval{Sec: 1}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("sock_diag timeout: %w", err)
	}
	return fd, nil
}

// dumpListeners asks the kernel over fd for the local addresses of the TCP sockets listening in
// fd's namespace, IPv4 and IPv6.
func dumpListeners(fd int, buf []byte) ([]netip.AddrPort, error) {
	var out []netip.AddrPort
	for _, family := range []uint8{unix.AF_INET, unix.AF_INET6} {
		if err := unix.Sendto(fd, diagRequest(family), 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
			return nil, fmt.Errorf("sock_diag request: %w", err)
		}
		ls, err := readDiag(fd, buf)
		if err != nil {
			return nil, err
		}
		out = append(out, ls...)
	}
	return out, nil
}

// diagRequest is a netlink SOCK_DIAG_BY_FAMILY dump request for the TCP sockets of family in state
// LISTEN: a struct nlmsghdr followed by a struct inet_diag_req_v2 whose socket id is left zero.
func diagRequest(family uint8) []byte {
	const size = unix.SizeofNlMsghdr + 56 // sizeof(struct inet_diag_req_v2)
	req := make([]byte, size)
	binary.NativeEndian.PutUint32(req[0:], size)
	binary.NativeEndian.PutUint16(req[4:], unix.SOCK_DIAG_BY_FAMILY)
	binary.NativeEndian.PutUint16(req[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	binary.NativeEndian.PutUint32(req[8:], 1) // sequence number
	req[16], req[17] = family, unix.IPPROTO_TCP
	binary.NativeEndian.PutUint32(req[20:], 1<<tcpListen)
	return req
}

// readDiag reads a dump's answers until NLMSG_DONE and returns the local address of each socket.
func readDiag(fd int, buf []byte) ([]netip.AddrPort, error) {
	var out []netip.AddrPort
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return nil, fmt.Errorf("sock_diag answer: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return nil, fmt.Errorf("sock_diag answer: %w", err)
		}
		for _, m := range msgs {
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				return out, nil
			case unix.NLMSG_ERROR:
				if len(m.Data) >= 4 {
					if errno := -int32(binary.NativeEndian.Uint32(m.Data)); errno != 0 {
						return nil, fmt.Errorf("sock_diag: %w", syscall.Errno(errno))
					}
				}
				return out, nil
			case unix.SOCK_DIAG_BY_FAMILY:
				if a, ok := diagAddr(m.Data); ok {
					out = append(out, a)
				}
			}
		}
	}
}

// diagAddr reads the local address of one struct inet_diag_msg: family at 0, then the socket id at
// 4 with the source port (big-endian) at 4 and the source address at 8.
func diagAddr(msg []byte) (netip.AddrPort, bool) {
	if len(msg) < 24 {
		return netip.AddrPort{}, false
	}
	port := binary.BigEndian.Uint16(msg[4:6])
	var a netip.Addr
	switch msg[0] {
	case unix.AF_INET:
		a = netip.AddrFrom4([4]byte(msg[8:12]))
	case unix.AF_INET6:
		a = netip.AddrFrom16([16]byte(msg[8:24]))
	default:
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(a, port), true
}
