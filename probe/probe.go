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
		if netns != "" {
			// Enter the pod's network namespace once for the probe's whole life, not per attempt.
			// The thread is never unlocked: a thread whose namespace was changed must not run other
			// goroutines, so it exits with this one.
			runtime.LockOSThread()
			if err := enterNetns(netns); err != nil {
				r.Log.Error("cannot probe: pod network namespace", "netns", netns, "probe", p.String(), "error", err)
				return
			}
		}
		t := time.NewTicker(r.Interval)
		defer t.Stop()
		for {
			err := r.check(ctx, p)
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

// check runs one attempt. It must run on the goroutine of Start: the socket is created on the
// calling thread, which is in the pod's network namespace, and keeps that namespace for life.
func (r *Runner) check(ctx context.Context, p *spec.Probe) error {
	ctx, cancel := context.WithTimeout(ctx, r.Timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p.Port)))
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

// enterNetns moves the calling thread into the network namespace at path.
func enterNetns(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", path, err)
	}
	defer f.Close()
	if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("enter netns %s: %w", path, err)
	}
	return nil
}
