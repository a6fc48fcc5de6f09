package probe

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"
)

// The wire format of a sock_diag dump of listening TCP sockets (linux/netlink.h,
// linux/inet_diag.h), written and read here without a socket so that reading can be fuzzed.

const (
	// tcpListen is the kernel's TCP_LISTEN state; the diag request asks for sockets in it alone, so
	// the kernel walks only its listening hash, never the table of every connection on the node
	// (which is what makes /proc/net/tcp take milliseconds on a busy node).
	tcpListen = 10

	sizeofInetDiagReqV2 = 56 // struct inet_diag_req_v2
	sizeofInetDiagMsg   = 72 // struct inet_diag_msg
	inetDiagReqBytecode = 1  // INET_DIAG_REQ_BYTECODE, the request's filter attribute
	inetDiagBCSourceGE  = 2  // INET_DIAG_BC_S_GE
	inetDiagBCSourceLE  = 3  // INET_DIAG_BC_S_LE
)

// A dump's answer is bounded whatever the namespace holds. With the port filter a correct answer
// is the port's listeners and NLMSG_DONE: one socket per address, or one per worker of an
// SO_REUSEPORT server (nginx opens one per core), so the caps leave room for a large node.
const (
	maxDiagMessages = 256
	maxDiagBytes    = 64 << 10
)

// errDiagTooLarge fails a dump whose answer exceeds the caps: the namespace holds more listeners
// on the port than any server needs, or something floods the socket.
var errDiagTooLarge = errors.New("sock_diag answer too large")

// dumpID names one dump and what it asks for: the kernel answers with the request's sequence
// number, addressed to the asking socket's netlink port id.
type dumpID struct {
	seq    uint32 // new for each dump, so that a late answer to an earlier one is not taken
	portID uint32 // the asking socket's netlink port id
	family uint8  // AF_INET or AF_INET6
	port   uint16 // the probe's port, the only one asked for
}

// diagRequest is a SOCK_DIAG_BY_FAMILY dump request for id's TCP sockets in state LISTEN on
// id.port: a struct nlmsghdr, a struct inet_diag_req_v2 whose socket id is left zero, and a filter
// the kernel runs on each listener (source port >= port, then <= port). S_GE and S_LE are known to
// every kernel with inet_diag_req_v2 (S_EQ came in 4.16); the filter keeps the answer to the
// port's sockets however many the namespace has.
func diagRequest(id dumpID) []byte {
	const (
		bytecodeLen = 16 // two comparisons, each an op and an op holding the port
		attrLen     = unix.SizeofNlAttr + bytecodeLen
		size        = unix.SizeofNlMsghdr + sizeofInetDiagReqV2 + attrLen
	)
	req := make([]byte, size)
	ne := binary.NativeEndian
	ne.PutUint32(req[0:], size)
	ne.PutUint16(req[4:], unix.SOCK_DIAG_BY_FAMILY)
	ne.PutUint16(req[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	ne.PutUint32(req[8:], id.seq)
	ne.PutUint32(req[12:], id.portID)
	r := req[unix.SizeofNlMsghdr:]
	r[0], r[1] = id.family, unix.IPPROTO_TCP
	ne.PutUint32(r[4:], 1<<tcpListen)
	a := r[sizeofInetDiagReqV2:]
	ne.PutUint16(a[0:], attrLen)
	ne.PutUint16(a[2:], inetDiagReqBytecode)
	// struct inet_diag_bc_op {code, yes, no}: yes and no are byte offsets to jump by; jumping to
	// exactly the end accepts the socket, 4 bytes past it rejects it.
	bc := a[unix.SizeofNlAttr:]
	bc[0], bc[1] = inetDiagBCSourceGE, 8
	ne.PutUint16(bc[2:], bytecodeLen+4)
	ne.PutUint16(bc[6:], id.port)
	bc[8], bc[9] = inetDiagBCSourceLE, 8
	ne.PutUint16(bc[10:], 8+4)
	ne.PutUint16(bc[14:], id.port)
	return req
}

// diagDump is one dump's answer as its datagrams arrive.
type diagDump struct {
	id        dumpID
	listeners []netip.AddrPort // the local addresses of the listeners the kernel reported
	messages  int              // netlink messages read, whoever sent them
	bytes     int              // bytes read, whoever sent them
	done      bool             // the kernel's NLMSG_DONE (or its error) arrived
}

// read takes one datagram received from the netlink port sender. Only the kernel (port 0) answers a
// dump, and only messages carrying the dump's sequence number and port id belong to it: anything
// else, a stale answer or a message forged by a tenant with CAP_NET_ADMIN in the pod, is skipped,
// never counted as a listener. It fails on a kernel error, a malformed datagram, or past the caps.
func (d *diagDump) read(b []byte, sender uint32) error {
	d.bytes += len(b)
	if d.bytes > maxDiagBytes {
		return fmt.Errorf("%w: more than %d bytes", errDiagTooLarge, maxDiagBytes)
	}
	if sender != 0 {
		d.messages++
		return d.checkMessages()
	}
	ne := binary.NativeEndian
	for len(b) > 0 && !d.done {
		if len(b) < unix.SizeofNlMsghdr {
			return fmt.Errorf("sock_diag answer: %d bytes left, short of a message header", len(b))
		}
		n := ne.Uint32(b[0:])
		if n < unix.SizeofNlMsghdr || n > uint32(len(b)) {
			return fmt.Errorf("sock_diag answer: message length %d in a datagram of %d bytes", n, len(b))
		}
		d.messages++
		if err := d.checkMessages(); err != nil {
			return err
		}
		typ, seq, pid := ne.Uint16(b[4:]), ne.Uint32(b[8:]), ne.Uint32(b[12:])
		body := b[unix.SizeofNlMsghdr:n]
		b = b[min(nlmsgAlign(n), uint32(len(b))):]
		if seq != d.id.seq || pid != d.id.portID {
			continue
		}
		switch typ {
		case unix.NLMSG_DONE:
			d.done = true
		case unix.NLMSG_ERROR:
			if len(body) < 4 {
				return fmt.Errorf("sock_diag answer: an error message of %d bytes", len(body))
			}
			if code := -int32(ne.Uint32(body)); code != 0 {
				return fmt.Errorf("sock_diag: %w", syscall.Errno(uint32(code)))
			}
			d.done = true
		case unix.SOCK_DIAG_BY_FAMILY:
			if a, ok := diagListener(body, d.id); ok {
				d.listeners = append(d.listeners, a)
			}
		}
	}
	return nil
}

func (d *diagDump) checkMessages() error {
	if d.messages > maxDiagMessages {
		return fmt.Errorf("%w: more than %d messages", errDiagTooLarge, maxDiagMessages)
	}
	return nil
}

// nlmsgAlign rounds a message length up to the 4 bytes messages are aligned on (NLMSG_ALIGN).
func nlmsgAlign(n uint32) uint32 { return (n + 3) &^ 3 }

// diagListener reads the local address of one struct inet_diag_msg: family at 0, state at 1, then
// the socket id at 4 with the source port (big-endian) at 4 and the source address at 8. Only a
// listener of the family and port asked for counts, whatever the kernel's filter did.
func diagListener(msg []byte, id dumpID) (netip.AddrPort, bool) {
	if len(msg) < sizeofInetDiagMsg || msg[0] != id.family || msg[1] != tcpListen {
		return netip.AddrPort{}, false
	}
	port := binary.BigEndian.Uint16(msg[4:6])
	if port != id.port {
		return netip.AddrPort{}, false
	}
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
