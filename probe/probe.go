// Package probe runs podorder's node-local readiness checks (podorder.dev/probe.<c>): a TCP connect
// or an HTTP GET against the pod's own loopback, made from inside the pod's network namespace every
// 100 ms, so readiness is seen within one period instead of kubelet's probe period plus relist.
package probe

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/podorder/podorder/spec"
)

// Runner runs probes; it implements plugin.Prober.
type Runner struct {
	// Interval is the time between attempts.
	Interval time.Duration
	// Timeout bounds one attempt.
	Timeout time.Duration
	Log     *slog.Logger
}

// NewRunner returns a Runner probing every 100 ms.
func NewRunner(log *slog.Logger) *Runner {
	return &Runner{Interval: 100 * time.Millisecond, Timeout: time.Second, Log: log}
}

// Start probes p in the network namespace at netns ("" for the host's) until it passes, then calls
// ready once. The returned stop ends the probe; it does not wait for an attempt in flight.
func (r *Runner) Start(netns string, p *spec.Probe, ready func()) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		t := time.NewTicker(r.Interval)
		defer t.Stop()
		for {
			err := r.check(ctx, netns, p)
			if err == nil {
				if ctx.Err() == nil {
					ready()
				}
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return cancel
}

func (r *Runner) check(ctx context.Context, netns string, p *spec.Probe) error {
	ctx, cancel := context.WithTimeout(ctx, r.Timeout)
	defer cancel()
	conn, err := dialIn(ctx, netns, net.JoinHostPort("127.0.0.1", strconv.Itoa(p.Port)))
	if err != nil {
		return err
	}
	defer conn.Close()
	if p.Kind != "http" {
		return nil
	}
	_ = conn.SetDeadline(time.Now().Add(r.Timeout))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1:"+strconv.Itoa(p.Port)+p.Path, nil)
	if err != nil {
		return err
	}
	tr := &http.Transport{DialContext: func(context.Context, string, string) (net.Conn, error) { return conn, nil }, DisableKeepAlives: true}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		return fmt.Errorf("http status %d", resp.StatusCode)
	}
	return nil
}

// dialIn connects to addr from inside the network namespace at netns. The socket is created on an
// OS thread switched into that namespace; a socket keeps its namespace for life, so the connection
// itself can then be used from any goroutine.
func dialIn(ctx context.Context, netns, addr string) (net.Conn, error) {
	var d net.Dialer
	if netns == "" {
		return d.DialContext(ctx, "tcp", addr)
	}
	type result struct {
		c   net.Conn
		err error
	}
	done := make(chan result, 1)
	go func() {
		// Never unlocked: a thread whose namespace was changed must not run other goroutines, so
		// it exits with this one.
		runtime.LockOSThread()
		f, err := os.Open(netns)
		if err != nil {
			done <- result{err: fmt.Errorf("open netns %s: %w", netns, err)}
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			done <- result{err: fmt.Errorf("enter netns %s: %w", netns, err)}
			return
		}
		c, err := d.DialContext(ctx, "tcp", addr)
		done <- result{c, err}
	}()
	r := <-done
	return r.c, r.err
}
