package probe

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func TestAnAnswerForgedByAnotherNetlinkSocketIsNoListener(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("sending to another netlink socket needs CAP_NET_ADMIN")
	}
	closed := reservePort(t)
	var ds diagSocket
	defer ds.close()
	require.Empty(t, listenersOn(t, &ds, uint16(closed.port)))

	// A tenant with CAP_NET_ADMIN in the pod sends the diag socket the answer it is about to expect.
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	require.NoError(t, err)
	defer unix.Close(fd)
	for _, seq := range []uint32{ds.seq + 1, ds.seq + 2, 1} {
		forged := nlMessage(unix.SOCK_DIAG_BY_FAMILY, seq, ds.portID,
			inetDiagMsg(tcpListen, netip.AddrPortFrom(netip.IPv4Unspecified(), uint16(closed.port))))
		err := unix.Sendto(fd, forged, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Pid: ds.portID})
		assert.ErrorIs(t, err, unix.ECONNREFUSED, "a diag socket connected to the kernel takes nothing from others")
	}
	assert.Empty(t, listenersOn(t, &ds, uint16(closed.port)))
}

func TestADumpGivesUpAtTheDeadline(t *testing.T) {
	var ds diagSocket
	defer ds.close()
	listenersOn(t, &ds, 1)
	_, err := ds.listeners(func(create func() error) error { return create() }, 1, time.Now())
	require.ErrorIs(t, err, os.ErrDeadlineExceeded)
	assert.False(t, ds.open, "what is left of a failed dump must not meet the next one")
	listenersOn(t, &ds, 1)

	// A socket that never answers: the wait ends at the deadline, not at some receive timeout.
	idle, err := newDiagSocket()
	require.NoError(t, err)
	defer unix.Close(idle)
	start := time.Now()
	require.ErrorIs(t, waitReadable(idle, start.Add(20*time.Millisecond)), os.ErrDeadlineExceeded)
	assert.GreaterOrEqual(t, time.Since(start), 20*time.Millisecond)
}

// listenersPerNamespace is how many listeners the namespaces of TestADumpReadsOnlyThePortsListeners
// hold: issue 14 measured 19 ms and 4.7 MiB per attempt with 18,000.
const listenersPerNamespace = 18000

// TestADumpReadsOnlyThePortsListeners checks, with real namespaces, that a dump reads the probed
// port's sockets alone however many listen in the probed namespace and next to it, and logs what a
// dump costs then.
func TestADumpReadsOnlyThePortsListeners(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("creating network namespaces needs root")
	}
	var limit unix.Rlimit
	require.NoError(t, unix.Getrlimit(unix.RLIMIT_NOFILE, &limit))
	if limit.Cur < listenersPerNamespace+1000 {
		t.Skipf("needs %d open files, the limit is %d", listenersPerNamespace+1000, limit.Cur)
	}
	const port = 8080
	probed := func(ds *diagSocket) func() {
		return func() {
			listenOn(t, unix.AF_INET, port)
			listenOn(t, unix.AF_INET6, port)
			listenersOn(t, ds, port) // opens the diag socket in the namespace
		}
	}
	want := []netip.AddrPort{netip.AddrPortFrom(netip.IPv4Unspecified(), port), netip.AddrPortFrom(netip.IPv6Unspecified(), port)}

	var next diagSocket
	defer next.close()
	inNewNetns(t, probed(&next))
	holdListenersInNewNetns(t, listenersPerNamespace) // another process: the limit of open files is per process
	var in diagSocket
	defer in.close()
	inNewNetns(t, func() {
		listenMany(t, listenersPerNamespace)
		probed(&in)()
	})

	for _, tt := range []struct {
		name string
		ds   *diagSocket
	}{
		{fmt.Sprintf("%d listeners next to the probed namespace", listenersPerNamespace), &next},
		{fmt.Sprintf("%d listeners in the probed namespace, %d next to it", listenersPerNamespace, listenersPerNamespace), &in},
	} {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, want, listenersOn(t, tt.ds, port))
			messages, bytes := 0, 0
			times := make([]time.Duration, 50)
			for i := range times {
				start := time.Now()
				for _, family := range []uint8{unix.AF_INET, unix.AF_INET6} {
					d, err := tt.ds.dump(family, port, make([]byte, 16<<10), time.Now().Add(time.Second))
					require.NoError(t, err)
					messages, bytes = messages+d.messages, bytes+d.bytes
				}
				times[i] = time.Since(start)
			}
			messages, bytes = messages/len(times), bytes/len(times)
			assert.Equal(t, 4, messages, "per family, the port's listener and NLMSG_DONE")
			assert.Less(t, bytes, 1024)
			slices.Sort(times)
			t.Logf("RESULT sock_diag dump of port %d, IPv4 and IPv6, %s: median %v over %d, %d messages, %d bytes",
				port, tt.name, times[len(times)/2], len(times), messages, bytes)
		})
	}
}

// holdListenersEnv asks the test binary to be the helper that holds listeners for
// holdListenersInNewNetns.
const holdListenersEnv = "PODORDER_TEST_HOLD_LISTENERS"

// holdListenersInNewNetns starts a process in a new network namespace that holds n listeners there
// until the test ends.
func holdListenersInNewNetns(t *testing.T, n int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperHoldsListeners$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d", holdListenersEnv, n))
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		stdin.Close()
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "listening\n", line)
}

// TestHelperHoldsListeners is the process holdListenersInNewNetns starts, not a test of its own.
func TestHelperHoldsListeners(t *testing.T) {
	n, err := strconv.Atoi(os.Getenv(holdListenersEnv))
	if err != nil {
		t.Skip("the helper process of holdListenersInNewNetns")
	}
	listenMany(t, n)
	fmt.Println("listening")
	_, _ = io.Copy(io.Discard, os.Stdin) // until the test closes it, or ends
}

// inNewNetns runs fn on a thread in a new network namespace, which lives on while the sockets
// created in it are open.
func inNewNetns(t *testing.T, fn func()) {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	self, err := os.Open("/proc/thread-self/ns/net")
	require.NoError(t, err)
	defer self.Close()
	require.NoError(t, unix.Unshare(unix.CLONE_NEWNET))
	defer func() {
		if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
			panic(fmt.Sprintf("cannot leave the test namespace: %v", err)) // never run more on this thread
		}
	}()
	fn()
}

// listenOn listens on the wildcard address of family at port, closing the socket when the test
// ends; an IPv6 socket is IPv6-only so that it does not take the port from the IPv4 one.
func listenOn(t *testing.T, family, port int) {
	t.Helper()
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	t.Cleanup(func() { unix.Close(fd) })
	var sa unix.Sockaddr = &unix.SockaddrInet4{Port: port}
	if family == unix.AF_INET6 {
		require.NoError(t, unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1))
		sa = &unix.SockaddrInet6{Port: port}
	}
	require.NoError(t, unix.Bind(fd, sa))
	require.NoError(t, unix.Listen(fd, 1))
}

// listenMany listens on n IPv4 ports from 20000, none of them the probed one.
func listenMany(t *testing.T, n int) {
	t.Helper()
	for p := 20000; p < 20000+n; p++ {
		listenOn(t, unix.AF_INET, p)
	}
}
