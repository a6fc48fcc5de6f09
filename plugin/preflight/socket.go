package preflight

import (
	"errors"
	"io/fs"
	"net"
	"os"
	"syscall"
	"time"
)

// Dial connects to the NRI socket at path as the NRI stub does, within timeout, and says what it
// found. The daemon gives it to the stub as its dialer, so that the connection podorder makes anyway
// is the probe: containerd never sees a connection that does not register.
func Dial(path string, timeout time.Duration) (net.Conn, Reachability) {
	conn, err := net.DialTimeout("unix", path, timeout)
	return conn, Classify(path, err)
}

// Classify names the problem of a failed connection to the socket at path (err nil: Reachable). A
// path with something other than a socket at it is told apart by its mode.
func Classify(path string, err error) Reachability {
	r := Reachability{Path: path, Err: err}
	switch {
	case err == nil:
		r.Problem = Reachable
	case errors.Is(err, syscall.ENOENT):
		r.Problem = Missing
	case errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM):
		r.Problem = Denied
	case errors.Is(err, syscall.ECONNREFUSED):
		r.Problem = Refused
		if st, serr := os.Stat(path); serr == nil && st.Mode().Type() != fs.ModeSocket {
			r.Problem = NotSocket
		}
	case errors.Is(err, syscall.ENOTSOCK):
		r.Problem = NotSocket
	default:
		r.Problem = Other
	}
	return r
}
