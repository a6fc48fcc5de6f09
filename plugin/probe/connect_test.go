package probe

import (
	"context"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// connect takes a loopback connection without the poller, reports a refusal as the kernel's
// error, and gives up on a handshake that does not complete when its context ends.
func TestConnect(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("hi"))
			c.Close()
		}
	}()
	open := ln.Addr().String()
	closed := freePort(t)
	full := fullBacklog(t)
	r := &Runner{}
	task := &task{} // the daemon's own namespace: no setns
	tests := map[string]struct {
		addr    string
		timeout time.Duration
		check   func(t *testing.T, c net.Conn, err error)
	}{
		"listening": {open, time.Second, func(t *testing.T, c net.Conn, err error) {
			require.NoError(t, err)
			defer c.Close()
			b, err := io.ReadAll(c)
			require.NoError(t, err)
			assert.Equal(t, "hi", string(b), "the connection is the server's")
			assert.Equal(t, open, c.RemoteAddr().String())
		}},
		"refused": {"127.0.0.1:" + strconv.Itoa(closed), time.Second, func(t *testing.T, c net.Conn, err error) {
			assert.Nil(t, c)
			assert.ErrorIs(t, err, unix.ECONNREFUSED)
		}},
		"ipv4-mapped ipv6 address": {"[::ffff:" + open[:strings.LastIndex(open, ":")] + "]" + open[strings.LastIndex(open, ":"):], time.Second, func(t *testing.T, c net.Conn, err error) {
			require.NoError(t, err, "dialled as IPv4")
			c.Close()
		}},
		"ipv6 loopback refused": {"[::1]:" + strconv.Itoa(closed), time.Second, func(t *testing.T, c net.Conn, err error) {
			assert.Nil(t, c)
			assert.Error(t, err, "nothing listens there, or the node has no IPv6")
		}},
		"no handshake before the deadline": {full, 50 * time.Millisecond, func(t *testing.T, c net.Conn, err error) {
			assert.Nil(t, c)
			assert.ErrorIs(t, err, os.ErrDeadlineExceeded)
			assert.True(t, timedOut(err), "a handshake that never completes counts as a timeout")
		}},
		"not an address": {"localhost:80", time.Second, func(t *testing.T, c net.Conn, err error) {
			assert.Nil(t, c)
			assert.ErrorContains(t, err, "localhost:80")
		}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), tc.timeout)
			defer cancel()
			var tainted bool
			c, err := r.connect(ctx, task, &tainted, tc.addr)
			assert.False(t, tainted)
			tc.check(t, c, err)
		})
	}
}

// A probe stopped mid-handshake ends its attempt at once, not at its timeout.
func TestConnectEndsWithItsContext(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	time.AfterFunc(20*time.Millisecond, cancel)
	var tainted bool
	start := time.Now()
	c, err := (&Runner{}).connect(ctx, &task{}, &tainted, fullBacklog(t))
	assert.Nil(t, c)
	assert.ErrorIs(t, err, context.Canceled)
	assert.Less(t, time.Since(start), 5*time.Second, "ended by the cancel, long before the minute")
}

// fullBacklog returns the address of a listener whose accept queue is full, so that the kernel
// drops the SYN of the next connection and its handshake never completes.
func fullBacklog(t *testing.T) string {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	t.Cleanup(func() { unix.Close(fd) })
	require.NoError(t, unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}))
	require.NoError(t, unix.Listen(fd, 0))
	sa, err := unix.Getsockname(fd)
	require.NoError(t, err)
	addr := "127.0.0.1:" + strconv.Itoa(sa.(*unix.SockaddrInet4).Port)
	for range 2 { // a backlog of 0 still queues one; the second fills what the kernel allows
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err != nil {
			break
		}
		t.Cleanup(func() { c.Close() })
	}
	return addr
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return port
}
