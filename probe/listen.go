package probe

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"

	"github.com/podorder/podorder/decl"
)

// The calling thread's view of its network namespace's TCP sockets: read while the thread is in the
// pod's namespace, they list the pod's sockets.
const (
	procTCP  = "/proc/thread-self/net/tcp"
	procTCP6 = "/proc/thread-self/net/tcp6"
)

// errNotListening fails an attempt without connecting: nothing listens on the port yet.
var errNotListening = errors.New("nothing listens on the port yet")

// listeningAddr returns the address to connect to once a socket listens on the probe's port in the
// calling thread's network namespace, or errNotListening. A readinessProbe is kubelet's, sent to the
// pod's IP, so a listener on loopback only does not count; for it, a wildcard listener is reached
// on loopback, which within the pod is the same socket. When the socket tables cannot be read the
// probe connects to loopback unchecked, as it did before this check existed.
func listeningAddr(p *decl.Probe) (string, error) {
	v4, err4 := os.ReadFile(procTCP)
	v6, err6 := os.ReadFile(procTCP6)
	if err4 != nil && err6 != nil {
		return hostPort("127.0.0.1", p.Port), nil
	}
	if a, ok := pickListener(append(listeners(v4), listeners(v6)...), p.Port, p.Readiness); ok {
		return hostPort(a.String(), p.Port), nil
	}
	return "", fmt.Errorf("port %d: %w", p.Port, errNotListening)
}

// pickListener chooses the address to dial among the listening sockets: the first that kubelet's
// view allows, IPv4 first.
func pickListener(ls []netip.AddrPort, port int, readiness bool) (netip.Addr, bool) {
	var best netip.Addr
	for _, l := range ls {
		if int(l.Port()) != port {
			continue
		}
		a := l.Addr()
		switch {
		case a.IsUnspecified() && a.Is4():
			a = netip.AddrFrom4([4]byte{127, 0, 0, 1})
		case a.IsUnspecified():
			a = netip.IPv6Loopback()
		case a.Is4In6():
			a = a.Unmap()
			if a.IsUnspecified() {
				a = netip.AddrFrom4([4]byte{127, 0, 0, 1})
			} else if a.IsLoopback() && readiness {
				continue
			}
		case a.IsLoopback() && readiness:
			continue
		}
		if !best.IsValid() || (a.Is4() && !best.Is4()) {
			best = a
		}
	}
	return best, best.IsValid()
}

// listeners parses /proc/net/tcp or tcp6 and returns the local addresses of sockets in state
// LISTEN (0A). Addresses are hex words in host byte order, ports big-endian hex.
func listeners(table []byte) []netip.AddrPort {
	var out []netip.AddrPort
	sc := bufio.NewScanner(bytes.NewReader(table))
	sc.Scan() // the header line
	for sc.Scan() {
		f := bytes.Fields(sc.Bytes())
		if len(f) < 4 || string(f[3]) != "0A" {
			continue
		}
		ip, port, ok := bytes.Cut(f[1], []byte{':'})
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(string(port), 16, 16)
		if err != nil {
			continue
		}
		if len(ip) != 8 && len(ip) != 32 {
			continue
		}
		// Each 32-bit word is the address's bytes read as a number in the host's byte order.
		raw := make([]byte, len(ip)/2)
		bad := false
		for i := 0; i < len(ip); i += 8 {
			w, err := strconv.ParseUint(string(ip[i:i+8]), 16, 32)
			if err != nil {
				bad = true
				break
			}
			binary.NativeEndian.PutUint32(raw[i/2:], uint32(w))
		}
		if bad {
			continue
		}
		a, _ := netip.AddrFromSlice(raw)
		out = append(out, netip.AddrPortFrom(a, uint16(n)))
	}
	return out
}
