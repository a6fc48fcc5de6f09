//go:build linux

package kernlisten

import (
	"context"
	"net"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/cilium/ebpf/btf"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/podorder/podorder/plugin/probe"
)

// open returns the attached source, or skips the test saying why the kernel or the test's
// privileges do not allow it.
func open(t *testing.T) *Source {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("loading an eBPF program needs root (CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN)")
	}
	s, err := Open()
	if err != nil {
		t.Skipf("this kernel does not allow the eBPF source: %v", err)
	}
	return s
}

// watch runs s until the test ends and returns its events.
func watch(t *testing.T, s *Source) <-chan probe.Listen {
	t.Helper()
	events := make(chan probe.Listen, 1024)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- s.Watch(ctx, func(batch []probe.Listen) {
			for _, ev := range batch {
				select {
				case events <- ev:
				default:
				}
			}
		})
	}()
	t.Cleanup(func() {
		cancel()
		assert.NoError(t, <-done, "Watch returns nil when its context ends")
	})
	return events
}

// await returns the first event for port, failing after a bounded wait.
func await(t *testing.T, events <-chan probe.Listen, port uint16) probe.Listen {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case ev := <-events:
			if ev.Port == port {
				return ev
			}
		case <-deadline:
			require.FailNow(t, "no LISTEN event", "port %d", port)
		}
	}
}

// ownNetns is the inode of the test's network namespace. It asks for the thread's, not
// /proc/self's: an earlier test may have left the main thread in a namespace of its own.
func ownNetns(t *testing.T) uint64 {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var st unix.Stat_t
	require.NoError(t, unix.Stat("/proc/thread-self/ns/net", &st))
	return st.Ino
}

func TestAListenerOnLoopbackIsReportedWithItsPortFamilyAndNamespace(t *testing.T) {
	events := watch(t, open(t))
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	port := uint16(l.Addr().(*net.TCPAddr).Port)

	ev := await(t, events, port)
	assert.Equal(t, uint16(unix.AF_INET), ev.Family)
	assert.Equal(t, ownNetns(t), ev.Netns)
}

func TestAnIPv6ListenerIsReportedAsSuch(t *testing.T) {
	events := watch(t, open(t))
	l, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback here: %v", err)
	}
	defer l.Close()
	ev := await(t, events, uint16(l.Addr().(*net.TCPAddr).Port))
	assert.Equal(t, uint16(unix.AF_INET6), ev.Family)
}

func TestAListenerInAnotherNetworkNamespaceIsReportedWithThatNamespace(t *testing.T) {
	events := watch(t, open(t))
	type listener struct {
		port  uint16
		netns uint64
		err   error
	}
	got := make(chan listener, 1)
	closeIt := make(chan struct{})
	defer close(closeIt)
	go func() {
		// This goroutine's thread moves to a new network namespace and is never unlocked, so the
		// runtime discards it when the goroutine ends.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			got <- listener{err: err}
			return
		}
		var st unix.Stat_t
		if err := unix.Stat("/proc/thread-self/ns/net", &st); err != nil {
			got <- listener{err: err}
			return
		}
		l, err := net.Listen("tcp4", "0.0.0.0:0")
		if err != nil {
			got <- listener{err: err}
			return
		}
		defer l.Close()
		got <- listener{port: uint16(l.Addr().(*net.TCPAddr).Port), netns: st.Ino}
		<-closeIt
	}()
	l := <-got
	if l.err != nil {
		t.Skipf("cannot make a network namespace here: %v", l.err)
	}
	require.NotEqual(t, ownNetns(t), l.netns)
	ev := await(t, events, l.port)
	assert.Equal(t, l.netns, ev.Netns, "the event names the listener's namespace, not the daemon's")
	assert.Equal(t, uint16(unix.AF_INET), ev.Family)
}

// Events the program could not write to a full ring are counted, and the next batch read says so.
func TestEventsDroppedByAFullRingAreReportedAsLost(t *testing.T) {
	s := open(t)
	// Nothing reads yet: more listeners than the ring holds (ringBytes / 16) fill it.
	for range ringBytes/16 + 100 {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		require.NoError(t, err)
		require.NoError(t, ln.Close())
	}
	lost, err := s.lostCount()
	require.NoError(t, err)
	require.Positive(t, lost, "the program counts what it could not write")

	events := watch(t, s)
	deadline := time.After(5 * time.Second)
	for {
		select {
		case ev := <-events:
			if ev.Lost {
				assert.Zero(t, ev.Port, "a Lost event names no port")
				return
			}
		case <-deadline:
			require.FailNow(t, "the loss was not reported")
		}
	}
}

func TestAConnectedSocketIsNoListenEvent(t *testing.T) {
	events := watch(t, open(t))
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	port := uint16(l.Addr().(*net.TCPAddr).Port)
	await(t, events, port)
	// A connection changes the state of two more sockets on that port (SYN_RECV, ESTABLISHED on
	// the server side); none is TCP_LISTEN.
	c, err := net.Dial("tcp4", l.Addr().String())
	require.NoError(t, err)
	c.Close()
	// A second listener on a new port proves the ring is read past the connection's state changes.
	l2, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	defer l2.Close()
	port2 := uint16(l2.Addr().(*net.TCPAddr).Port)
	deadline := time.After(5 * time.Second)
	for {
		select {
		case ev := <-events:
			require.NotEqual(t, port, ev.Port, "no second event for the first port: only listen(2) is reported")
			if ev.Port == port2 {
				return
			}
		case <-deadline:
			require.FailNow(t, "no LISTEN event", "port %d", port2)
		}
	}
}

func TestTheSocketsFieldsAreFoundInTheKernelsBTF(t *testing.T) {
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		t.Skipf("no kernel BTF here: %v", err)
	}
	off, err := findOffsets(spec)
	require.NoError(t, err)
	// struct sock_common's layout has been the same on 64-bit kernels for years: the port pair at
	// 12 (dport, then num), the family right after.
	assert.Equal(t, uint32(14), off.num)
	assert.Equal(t, uint32(16), off.family)
	assert.True(t, off.hasNetns, "a kernel with network namespaces names the socket's")
}

func TestAMemberOfTheWrongSizeIsRefused(t *testing.T) {
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		t.Skipf("no kernel BTF here: %v", err)
	}
	var sock *btf.Struct
	require.NoError(t, spec.TypeByName("sock", &sock))
	_, err = memberOffset(sock, 4, "__sk_common", "skc_num")
	assert.ErrorContains(t, err, "skc_num in the kernel's BTF is 2 bytes, not 4")
	_, err = memberOffset(sock, 2, "__sk_common", "no_such_member")
	assert.ErrorContains(t, err, "no member no_such_member")
}
