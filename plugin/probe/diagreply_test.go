package probe

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// testDump is the dump the parser tests answer: the kernel addresses its answer to port id 4242
// with sequence number 7.
var testDump = dumpID{seq: 7, portID: 4242, family: unix.AF_INET, port: 8080}

// nlMessage encodes one netlink message as the kernel sends it, padded to 4 bytes.
func nlMessage(typ uint16, seq, portID uint32, body []byte) []byte {
	n := unix.SizeofNlMsghdr + len(body)
	m := make([]byte, nlmsgAlign(uint32(n)))
	binary.NativeEndian.PutUint32(m[0:], uint32(n))
	binary.NativeEndian.PutUint16(m[4:], typ)
	binary.NativeEndian.PutUint16(m[6:], unix.NLM_F_MULTI)
	binary.NativeEndian.PutUint32(m[8:], seq)
	binary.NativeEndian.PutUint32(m[12:], portID)
	copy(m[unix.SizeofNlMsghdr:], body)
	return m
}

// inetDiagMsg encodes a struct inet_diag_msg for a socket in state bound to a.
func inetDiagMsg(state uint8, a netip.AddrPort) []byte {
	m := make([]byte, sizeofInetDiagMsg)
	m[0], m[1] = unix.AF_INET6, state
	if a.Addr().Is4() {
		m[0] = unix.AF_INET
	}
	binary.BigEndian.PutUint16(m[4:], a.Port())
	copy(m[8:], a.Addr().AsSlice())
	return m
}

// listenerMsg is the kernel's answer, for testDump, that a listens.
func listenerMsg(a string) []byte {
	return nlMessage(unix.SOCK_DIAG_BY_FAMILY, testDump.seq, testDump.portID, inetDiagMsg(tcpListen, netip.MustParseAddrPort(a)))
}

// errorMsg is the kernel's answer, for testDump, that the dump failed with errno.
func errorMsg(errno syscall.Errno) []byte {
	body := make([]byte, 4+unix.SizeofNlMsghdr)
	binary.NativeEndian.PutUint32(body, uint32(-int32(errno)))
	return nlMessage(unix.NLMSG_ERROR, testDump.seq, testDump.portID, body)
}

var doneMsg = nlMessage(unix.NLMSG_DONE, testDump.seq, testDump.portID, make([]byte, 4))

type datagram struct {
	sender uint32 // the netlink port id it came from, 0 for the kernel
	b      []byte
}

func kernel(msgs ...[]byte) datagram { return datagram{0, bytes.Join(msgs, nil)} }

func TestDiagReplyCountsOnlyTheKernelsAnswerToThisDump(t *testing.T) {
	ap := netip.MustParseAddrPort
	forged := listenerMsg("0.0.0.0:8080")
	withSeq := func(m []byte, seq uint32) []byte {
		m = bytes.Clone(m)
		binary.NativeEndian.PutUint32(m[8:], seq)
		return m
	}
	withPortID := func(m []byte, id uint32) []byte {
		m = bytes.Clone(m)
		binary.NativeEndian.PutUint32(m[12:], id)
		return m
	}
	tests := []struct {
		name      string
		datagrams []datagram
		want      []netip.AddrPort
		done      bool
	}{
		{"the kernel's answer counts", []datagram{kernel(forged, doneMsg)}, []netip.AddrPort{ap("0.0.0.0:8080")}, true},
		{"answers over several datagrams", []datagram{kernel(forged), kernel(listenerMsg("10.0.0.7:8080")), kernel(doneMsg)},
			[]netip.AddrPort{ap("0.0.0.0:8080"), ap("10.0.0.7:8080")}, true},
		{"a datagram from another netlink socket is no listener", []datagram{{1234, forged}, kernel(doneMsg)}, nil, true},
		{"nor is its NLMSG_DONE", []datagram{{1234, doneMsg}}, nil, false},
		{"an answer to an earlier dump is no listener", []datagram{kernel(withSeq(forged, 6), doneMsg)}, nil, true},
		{"nor is its NLMSG_DONE", []datagram{kernel(withSeq(doneMsg, 6))}, nil, false},
		{"an answer to another socket is no listener", []datagram{kernel(withPortID(forged, 4243), doneMsg)}, nil, true},
		{"a listener on another port is no listener", []datagram{kernel(listenerMsg("0.0.0.0:8081"), doneMsg)}, nil, true},
		{"a listener of the other family is no listener", []datagram{kernel(listenerMsg("[::]:8080"), doneMsg)}, nil, true},
		{"a socket not listening is no listener",
			[]datagram{kernel(nlMessage(unix.SOCK_DIAG_BY_FAMILY, 7, 4242, inetDiagMsg(1, ap("10.0.0.7:8080"))), doneMsg)}, nil, true},
		{"a short inet_diag_msg is no listener", []datagram{kernel(nlMessage(unix.SOCK_DIAG_BY_FAMILY, 7, 4242,
			inetDiagMsg(tcpListen, ap("10.0.0.7:8080"))[:24]), doneMsg)}, nil, true},
		{"what follows NLMSG_DONE is ignored", []datagram{kernel(doneMsg, forged)}, nil, true},
		{"an error of another dump is skipped", []datagram{kernel(withSeq(errorMsg(syscall.EPERM), 6), doneMsg)}, nil, true},
		{"an acknowledgement ends the dump", []datagram{kernel(forged, errorMsg(0))}, []netip.AddrPort{ap("0.0.0.0:8080")}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := diagDump{id: testDump}
			for _, dg := range tt.datagrams {
				require.NoError(t, d.read(dg.b, dg.sender))
			}
			assert.Equal(t, tt.want, d.listeners)
			assert.Equal(t, tt.done, d.done)
		})
	}
}

func TestDiagReplyFailsOnErrorsMalformedAnswersAndPastTheCaps(t *testing.T) {
	many := func(n int, m []byte) []byte { return bytes.Repeat(m, n) }
	tests := []struct {
		name      string
		datagrams []datagram
		want      error // nil: any error
	}{
		{"the kernel's error", []datagram{kernel(errorMsg(syscall.EINVAL))}, syscall.EINVAL},
		{"an error message without its code", []datagram{kernel(nlMessage(unix.NLMSG_ERROR, 7, 4242, nil))}, nil},
		{"a message longer than its datagram", []datagram{kernel(listenerMsg("0.0.0.0:8080")[:40])}, nil},
		{"a message shorter than its header", []datagram{kernel(nlMessage(unix.SOCK_DIAG_BY_FAMILY, 7, 4242, nil)[:12])}, nil},
		{"a length below the header's", []datagram{kernel([]byte{8, 0, 0, 0, 3, 0, 0, 0, 7, 0, 0, 0, 0x92, 0x10, 0, 0})}, nil},
		{"more messages than the cap", []datagram{kernel(many(maxDiagMessages+1, listenerMsg("0.0.0.0:8080")))}, errDiagTooLarge},
		{"more messages than the cap, over datagrams", []datagram{kernel(many(maxDiagMessages/2, listenerMsg("0.0.0.0:8080"))),
			kernel(many(maxDiagMessages/2+1, listenerMsg("0.0.0.0:8080")))}, errDiagTooLarge},
		{"more foreign datagrams than the cap", func() []datagram {
			ds := make([]datagram, maxDiagMessages+1)
			for i := range ds {
				ds[i] = datagram{1234, doneMsg}
			}
			return ds
		}(), errDiagTooLarge},
		{"more bytes than the cap, whoever sends them", []datagram{{1234, make([]byte, maxDiagBytes+1)}}, errDiagTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := diagDump{id: testDump}
			var err error
			for _, dg := range tt.datagrams {
				if err = d.read(dg.b, dg.sender); err != nil {
					break
				}
			}
			require.Error(t, err)
			if tt.want != nil {
				assert.ErrorIs(t, err, tt.want)
			}
			assert.LessOrEqual(t, d.messages, maxDiagMessages+1, "reading stops at the cap")
		})
	}
}

func TestDiagRequestFiltersOnThePortInTheKernel(t *testing.T) {
	req := diagRequest(dumpID{seq: 9, portID: 77, family: unix.AF_INET6, port: 0x1f90})
	ne := binary.NativeEndian
	require.Len(t, req, int(ne.Uint32(req)))
	assert.Equal(t, uint32(9), ne.Uint32(req[8:]), "sequence number")
	assert.Equal(t, uint32(77), ne.Uint32(req[12:]), "port id")
	r := req[unix.SizeofNlMsghdr:]
	assert.Equal(t, []byte{unix.AF_INET6, unix.IPPROTO_TCP}, r[:2])
	assert.Equal(t, uint32(1<<tcpListen), ne.Uint32(r[4:]), "states")
	attr := r[sizeofInetDiagReqV2:]
	assert.Equal(t, uint16(inetDiagReqBytecode), ne.Uint16(attr[2:]))
	bc := attr[unix.SizeofNlAttr:]
	assert.Equal(t, []uint16{0x1f90, 0x1f90}, []uint16{ne.Uint16(bc[6:]), ne.Uint16(bc[14:])}, "the port, in host order")
}

// FuzzDiagReply reads arbitrary datagrams as the answer to testDump. The committed corpus holds
// answers captured from the kernel (a listener, nothing on the port, the kernel's error, an
// unfiltered dump), rewritten to testDump's sequence number and port id. Whatever the bytes, the
// parser must not panic, must stop at the caps, and must count only listeners of the dump's family
// and port that the kernel sent.
func FuzzDiagReply(f *testing.F) {
	f.Add(kernel(listenerMsg("0.0.0.0:8080"), doneMsg).b, uint32(0))
	f.Add(kernel(listenerMsg("0.0.0.0:8080"), doneMsg).b, uint32(1234))
	f.Add(errorMsg(syscall.EINVAL), uint32(0))
	f.Fuzz(func(t *testing.T, b []byte, sender uint32) {
		d := diagDump{id: testDump}
		// Twice, as an answer over two datagrams.
		err := d.read(b, sender)
		if err == nil && !d.done {
			err = d.read(b, sender)
		}
		if sender != 0 {
			assert.Empty(t, d.listeners, "a listener from another netlink socket than the kernel")
			assert.False(t, d.done)
		}
		for _, l := range d.listeners {
			assert.Equal(t, testDump.port, l.Port())
			assert.True(t, l.Addr().Is4(), "a listener of the other family")
		}
		assert.LessOrEqual(t, len(d.listeners), d.messages)
		if err == nil {
			assert.LessOrEqual(t, d.messages, maxDiagMessages)
			assert.LessOrEqual(t, d.bytes, maxDiagBytes)
		}
	})
}
