package serve

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// start serves an "ok" handler with lim on a loopback port until the test ends.
func start(t *testing.T, lim Limits) *Listener { return startPerPeer(t, lim, 0) }

// startPerPeer is start with a listener that lets one peer hold perPeer connections.
func startPerPeer(t *testing.T, lim Limits, perPeer int) *Listener {
	t.Helper()
	l, err := Listen("127.0.0.1:0", lim.MaxConns)
	require.NoError(t, err)
	l.PerPeer = perPeer
	srv := Server(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") }), lim, slog.New(slog.DiscardHandler))
	stop := make(chan struct{})
	Run(srv, l, stop, "test", slog.New(slog.DiscardHandler))
	t.Cleanup(func() { close(stop) })
	return l
}

func dial(t *testing.T, l *Listener) net.Conn { return dialFrom(t, l, "127.0.0.1") }

// dialFrom connects to l from the loopback address from, a peer of its own.
func dialFrom(t *testing.T, l *Listener, from string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	c, err := d.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(l.Addr().(*net.TCPAddr).Port)))
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

// get sends one keep-alive request on c and returns the response's status.
func get(t *testing.T, c net.Conn, header string) int {
	t.Helper()
	_, err := fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n%s\r\n", header)
	require.NoError(t, err)
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode
}

// closedByServer reads c until the server closes it; the deadline only keeps a broken test from
// hanging.
func closedByServer(t *testing.T, c net.Conn, within time.Duration) time.Duration {
	t.Helper()
	began := time.Now()
	require.NoError(t, c.SetReadDeadline(began.Add(within)))
	_, err := io.Copy(io.Discard, c)
	require.NoError(t, err, "the server should have closed the connection within %s", within)
	return time.Since(began)
}

func TestHeadersOverTheCapAreRefusedWith431(t *testing.T) {
	l := start(t, Limits{Timeout: time.Minute, IdleTimeout: time.Minute, MaxHeaderBytes: 8 << 10, MaxConns: 4})
	for _, tc := range []struct {
		name   string
		header int
		want   int
	}{
		{"a usual header", 100, http.StatusOK},
		{"a header of 64 KiB", 64 << 10, http.StatusRequestHeaderFieldsTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, l)
			assert.Equal(t, tc.want, get(t, c, "X-Pad: "+strings.Repeat("a", tc.header)+"\r\n"))
		})
	}
}

func TestAnIdleConnectionIsClosedAfterItsTimeout(t *testing.T) {
	l := start(t, Limits{Timeout: 200 * time.Millisecond, IdleTimeout: 200 * time.Millisecond, MaxHeaderBytes: 8 << 10, MaxConns: 4})
	for _, tc := range []struct {
		name  string
		first func(net.Conn)
	}{
		{"a connection that never sends a request", func(net.Conn) {}},
		{"a connection that sends half a request", func(c net.Conn) { fmt.Fprint(c, "GET / HTTP/1.1\r\nHost: x\r\n") }},
		{"a kept-alive connection after its request", func(c net.Conn) { require.Equal(t, http.StatusOK, get(t, c, "")) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, l)
			tc.first(c)
			took := closedByServer(t, c, 10*time.Second)
			assert.Less(t, took, 5*time.Second)
		})
	}
	assert.Eventually(t, func() bool { return l.Open() == 0 }, 5*time.Second, 10*time.Millisecond, "every slot is given back")
}

func TestTheConnectionBeyondTheCapIsClosedUntilOneIsGivenBack(t *testing.T) {
	l := start(t, Limits{Timeout: time.Minute, IdleTimeout: time.Minute, MaxHeaderBytes: 8 << 10, MaxConns: 2})
	first, second := dial(t, l), dial(t, l)
	require.Equal(t, http.StatusOK, get(t, first, ""))
	require.Equal(t, http.StatusOK, get(t, second, ""))

	third := dial(t, l)
	closedByServer(t, third, 10*time.Second)
	accepted, refused := l.Seen()
	assert.Equal(t, [2]int64{2, 1}, [2]int64{accepted, refused})

	first.Close()
	require.Eventually(t, func() bool { return l.Open() == 1 }, 5*time.Second, 10*time.Millisecond)
	assert.Equal(t, http.StatusOK, get(t, dial(t, l), ""), "served once a slot is free")
}

// The metrics endpoint is reachable from every pod: one pod used to be able to hold all of its
// connection slots, and Prometheus' scrapes then found none.
func TestOnePeerHoldsAtMostItsShareOfTheSlots(t *testing.T) {
	l := startPerPeer(t, Limits{Timeout: time.Minute, IdleTimeout: time.Minute, MaxHeaderBytes: 8 << 10, MaxConns: 8}, 2)
	first, second := dialFrom(t, l, "127.0.0.2"), dialFrom(t, l, "127.0.0.2")
	require.Equal(t, http.StatusOK, get(t, first, ""))
	require.Equal(t, http.StatusOK, get(t, second, ""))
	closedByServer(t, dialFrom(t, l, "127.0.0.2"), 10*time.Second)
	assert.Equal(t, http.StatusOK, get(t, dialFrom(t, l, "127.0.0.3"), ""), "another peer is served")

	first.Close()
	require.Eventually(t, func() bool { return l.Open() == 2 }, 5*time.Second, 10*time.Millisecond)
	assert.Equal(t, http.StatusOK, get(t, dialFrom(t, l, "127.0.0.2"), ""), "served again once it gave one back")
}

// This guards issue 14's finding 2: the health endpoint of before (an http.Server with only a
// ReadHeaderTimeout, on a plain listener) kept every idle connection with a goroutine and its
// buffers, ~3,000 goroutines and tens of MiB here, until the peer gave up. With the cap the daemon
// holds at most MaxConns of them, whatever the timeouts.
func TestThousandsOfIdleConnectionsHoldNoMoreThanTheCap(t *testing.T) {
	const conns, maxConns = 3000, 32
	lim := DefaultLimits
	// Long timeouts: the cap alone must bound the cost, not the timeouts expiring during the test.
	lim.Timeout, lim.IdleTimeout, lim.MaxConns = time.Minute, time.Minute, maxConns
	l := start(t, lim)
	runtime.GC()
	goroutines, mem, rss := runtime.NumGoroutine(), goMemKiB(), residentKiB(t)

	for range conns {
		dial(t, l)
	}
	require.Eventually(t, func() bool { a, r := l.Seen(); return a+r == conns }, time.Minute, 10*time.Millisecond,
		"the listener sees every connection")
	runtime.GC()
	grew, memGrew, rssGrew := runtime.NumGoroutine()-goroutines, goMemKiB()-mem, residentKiB(t)-rss
	t.Logf("%d idle connections: %d held open; %d goroutines, %d KiB of Go heap and stacks, %d KiB of RSS more (client side included)",
		conns, l.Open(), grew, memGrew, rssGrew)
	assert.LessOrEqual(t, l.Open(), maxConns)
	assert.LessOrEqual(t, grew, maxConns+4, "one goroutine per held connection, and none for the others")
	// The bound is on RSS, but under -race RSS also counts the detector's shadow memory:
	// the assertion is on what the connections cost Go, the RSS is logged.
	assert.Less(t, memGrew, 16<<10, "the issue's bound: under 16 MiB for 3,000 idle connections")
}

// goMemKiB is what the Go runtime has in use for the heap and goroutine stacks.
func goMemKiB() int {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int(m.HeapInuse+m.StackInuse) >> 10
}

// residentKiB is this process's resident memory: VmRSS in /proc/self/status.
func residentKiB(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	require.NoError(t, err)
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			require.NoError(t, err)
			return n
		}
	}
	t.Fatal("no VmRSS in /proc/self/status")
	return 0
}

func TestTLSConfigServesASelfSignedCertificateWithoutACertDir(t *testing.T) {
	cfg, err := TLSConfig("", "node-1")
	require.NoError(t, err)
	l, err := Listen("127.0.0.1:0", 4)
	require.NoError(t, err)
	srv := Server(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") }), DefaultLimits, slog.New(slog.DiscardHandler))
	srv.TLSConfig = cfg
	stop := make(chan struct{})
	defer close(stop)
	Run(srv, l, stop, "test", slog.New(slog.DiscardHandler))

	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	res, err := client.Get("https://" + l.Addr().String() + "/")
	require.NoError(t, err)
	defer res.Body.Close()
	assert.Equal(t, http.StatusOK, res.StatusCode)
	assert.Equal(t, "node-1", res.TLS.PeerCertificates[0].Subject.CommonName)
	assert.Equal(t, "HTTP/1.1", res.Proto, "no HTTP/2")

	_, err = TLSConfig(t.TempDir(), "node-1")
	assert.ErrorContains(t, err, "want tls.crt and tls.key")
}
