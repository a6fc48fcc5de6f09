//go:build linux

package daemon

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/podorder/podorder/plugin/preflight"
	"github.com/podorder/podorder/plugin/status"
)

// attempt is what one fake connection does: connect (then end), or fail to dial with a problem.
type attempt struct {
	up      bool
	problem preflight.Problem
}

// runLoop runs the reconnect loop over attempts on a fake clock that each attempt and each sleep
// advance, and returns the log at info level and the Node's Events.
func runLoop(t *testing.T, attempts []attempt) (logs string, events []string) {
	t.Helper()
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	rec := &nodeEvents{}
	now := time.Unix(0, 0)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	i := 0
	l := nriLoop{
		socket: "/var/run/nri/nri.sock",
		serve: func(ctx context.Context, up func()) (preflight.Reachability, error) {
			if i == len(attempts) {
				cancel()
				return preflight.Reachability{}, ctx.Err()
			}
			a := attempts[i]
			i++
			now = now.Add(time.Second)
			if a.up {
				up()
				return preflight.Reachability{Path: "/var/run/nri/nri.sock"}, errors.New("connection closed")
			}
			return preflight.Reachability{Path: "/var/run/nri/nri.sock", Problem: a.problem, Err: errors.New("dial unix: " + string(a.problem))},
				errors.New("failed to connect to NRI service: dial unix: " + string(a.problem))
		},
		node:        preflight.NewNode(log, nil, rec),
		log:         log,
		now:         func() time.Time { return now },
		sleep:       func(_ context.Context, d time.Duration) bool { now = now.Add(d); return true },
		reconnected: func() {},
		grace:       30 * time.Second,
	}
	l.run(ctx)
	return buf.String(), rec.events
}

type nodeEvents struct{ events []string }

func (n *nodeEvents) NodeEvent(_ bool, reason, _ string) { n.events = append(n.events, reason) }

func repeat(a attempt, n int) []attempt {
	out := make([]attempt, n)
	for i := range out {
		out[i] = a
	}
	return out
}

func TestWithNRIOffTheActionableMessageIsLoggedOnceNotAtEveryRetry(t *testing.T) {
	logs, events := runLoop(t, repeat(attempt{problem: preflight.Missing}, 50))
	assert.Equal(t, 1, strings.Count(logs, "does not exist: NRI is off"), logs)
	assert.Equal(t, 1, strings.Count(logs, "cannot connect to the runtime's NRI socket; retrying"), "the loop's own line repeats at debug only")
	assert.Equal(t, []string{preflight.ReasonNRIUnreachable}, events)
}

func TestWhenTheSocketsProblemChangesItIsLoggedAgain(t *testing.T) {
	attempts := append(repeat(attempt{problem: preflight.Missing}, 5), repeat(attempt{problem: preflight.Refused}, 5)...)
	attempts = append(attempts, attempt{up: true})
	logs, events := runLoop(t, attempts)
	assert.Equal(t, 1, strings.Count(logs, "does not exist: NRI is off"))
	assert.Equal(t, 1, strings.Count(logs, "nothing listens on"))
	assert.Equal(t, 1, strings.Count(logs, "connected to containerd's NRI socket"))
	assert.Equal(t, []string{preflight.ReasonNRIUnreachable, preflight.ReasonNRIUnreachable, preflight.ReasonReady}, events)
}

func TestAContainerdRestartIsNotReportedAsNRIOff(t *testing.T) {
	attempts := []attempt{{up: true}}
	attempts = append(attempts, repeat(attempt{problem: preflight.Missing}, 3)...) // a few seconds
	attempts = append(attempts, attempt{up: true})
	logs, events := runLoop(t, attempts)
	assert.NotContains(t, logs, "NRI is off")
	assert.Equal(t, 2, strings.Count(logs, "disconnected from the runtime's NRI socket; reconnecting"), "each disconnect is a warning")
	assert.Equal(t, []string{preflight.ReasonReady}, events)
}

func TestAnOutageLongerThanTheGraceIsReported(t *testing.T) {
	attempts := []attempt{{up: true}}
	attempts = append(attempts, repeat(attempt{problem: preflight.Missing}, 20)...) // ~80 s at 5 s retries
	logs, events := runLoop(t, attempts)
	assert.Equal(t, 1, strings.Count(logs, "does not exist: NRI is off"))
	assert.Equal(t, []string{preflight.ReasonReady, preflight.ReasonNRIUnreachable}, events)
}

func TestADaemonWithoutNRISaysSoOnceAndStatusShowsIt(t *testing.T) {
	var logs syncBuffer
	dir := t.TempDir()
	cfg := Config{StoreDir: filepath.Join(dir, "store"), NRISocket: filepath.Join(dir, "nri.sock"), PluginIndex: "10"}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- Run(ctx, cfg, slog.New(slog.NewTextHandler(&logs, nil))) }()
	defer func() { cancel(); require.NoError(t, <-done) }()

	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.GreaterOrEqual(c, strings.Count(logs.String(), "cannot connect to the runtime's NRI socket"), 1)
		vs, ok, err := status.FetchNode(status.Socket(cfg.StoreDir))
		require.NoError(c, err)
		require.True(c, ok)
		assert.Equal(c, "node: NRI unreachable (missing), containerd unknown, runtime unknown", preflight.Header(vs), logs.String())
	}, 3*time.Second, 20*time.Millisecond)
	time.Sleep(800 * time.Millisecond) // several retries
	assert.Equal(t, 1, strings.Count(logs.String(), "does not exist: NRI is off"), logs.String())
}

// syncBuffer is a log destination the daemon's goroutines and the test share.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
