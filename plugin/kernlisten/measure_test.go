//go:build linux

package kernlisten

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/podorder/podorder/plugin/decl"
	"github.com/podorder/podorder/plugin/probe"
)

// TestMeasureEventsAgainstPolling measures probe.Runner with and without this source, in blocks of
// A B B A: the time from a port's listen(2) to the probe's ready callback, for ports that listen
// 2.5-3.5 s after their probe starts (when polling has backed off to 100 ms), and the process's
// CPU while N probes wait on closed ports. PODORDER_BENCH=1 runs it, as root.
func TestMeasureEventsAgainstPolling(t *testing.T) {
	if os.Getenv("PODORDER_BENCH") != "1" {
		t.Skip("set PODORDER_BENCH=1 to measure")
	}
	open(t).Close()
	blocks := envInt("PODORDER_BENCH_BLOCKS", 3)
	perBlock := envInt("PODORDER_BENCH_PODS", 10)
	waiting := envInt("PODORDER_BENCH_WAITING", 50)
	const window = 10 * time.Second

	runner := func(t *testing.T, events bool) *probe.Runner {
		r := probe.NewRunner(slog.New(slog.DiscardHandler))
		if events {
			src, err := Open()
			require.NoError(t, err)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { _ = r.Follow(ctx, src); close(done) }()
			t.Cleanup(func() { cancel(); <-done })
			time.Sleep(10 * time.Millisecond) // Follow has switched the runner to events
		}
		return r
	}
	latency := map[bool][]time.Duration{}
	cpu := map[bool][]time.Duration{}
	for range blocks {
		for _, events := range []bool{true, false, false, true} {
			t.Run("", func(t *testing.T) {
				r := runner(t, events)
				// Release latency: each port listens 2.5-3.5 s after its probe starts.
				var mu sync.Mutex
				var wg sync.WaitGroup
				for range perBlock {
					fd, port := reserve(t)
					readyAt := make(chan time.Time, 1)
					stop, err := r.Start("", &decl.Probe{Kind: "tcp", Port: port}, func() { readyAt <- time.Now() })
					require.NoError(t, err)
					wg.Add(1)
					go func() {
						defer wg.Done()
						defer stop()
						time.Sleep(2500*time.Millisecond + rand.N(time.Second))
						at := time.Now()
						if err := unix.Listen(fd, 16); err != nil {
							panic(err)
						}
						d := (<-readyAt).Sub(at)
						mu.Lock()
						latency[events] = append(latency[events], d)
						mu.Unlock()
					}()
				}
				wg.Wait()
				// CPU: N probes on closed ports, measured past their fast first 2 s.
				for range waiting {
					_, port := reserve(t)
					stop, err := r.Start("", &decl.Probe{Kind: "tcp", Port: port}, func() {})
					require.NoError(t, err)
					t.Cleanup(stop)
				}
				time.Sleep(3 * time.Second)
				before := rusage(t)
				time.Sleep(window)
				cpu[events] = append(cpu[events], rusage(t)-before)
			})
		}
	}
	for _, events := range []bool{false, true} {
		name := map[bool]string{false: "polling", true: "events"}[events]
		d := latency[events]
		slices.Sort(d)
		t.Logf("RESULT listen(2) → ready, port listening 2.5-3.5 s after the probe started, %s: n=%d median %s max %s",
			name, len(d), d[len(d)/2].Round(10*time.Microsecond), d[len(d)-1].Round(10*time.Microsecond))
		c := cpu[events]
		slices.Sort(c)
		t.Logf("RESULT CPU over %s with %d probes on closed ports, %s: windows %v, median %s (%.2f%% of a core)",
			window, waiting, name, c, c[len(c)/2], 100*c[len(c)/2].Seconds()/window.Seconds())
	}
}

// reserve binds a loopback port without listening on it yet.
func reserve(t *testing.T) (int, int) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	require.NoError(t, unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}))
	t.Cleanup(func() { unix.Close(fd) })
	sa, err := unix.Getsockname(fd)
	require.NoError(t, err)
	return fd, sa.(*unix.SockaddrInet4).Port
}

// rusage is the process's user plus system CPU time.
func rusage(t *testing.T) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	require.NoError(t, syscall.Getrusage(syscall.RUSAGE_SELF, &ru))
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}
