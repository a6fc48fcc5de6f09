// Package status is `podorder status`: the daemon serves a snapshot of the node's held containers on
// a unix socket in its store directory (root-only, never on the pod network), and the command reads
// it, for `kubectl -n podorder-system exec ds/podorder -- /podorder status`.
package status

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/podorder/podorder/plugin/podstate"
	"github.com/podorder/podorder/plugin/preflight"
)

// SocketName is the socket's name in the store directory.
const SocketName = "status.sock"

// Socket returns the socket path for a store directory.
func Socket(storeDir string) string { return filepath.Join(storeDir, SocketName) }

// Serve answers GET /status with the snapshot, GET /node with the preflight's verdicts on the
// node, and GET /timeline?pod=namespace/name with a pod's timeline, until ctx ends.
func Serve(ctx context.Context, path string, snapshot func() []podstate.PodReport, node func() []preflight.Verdict,
	timeline func(pod string) (podstate.TimelineReport, bool), log *slog.Logger) error {
	_ = os.Remove(path) // a socket left by a previous daemon
	l, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("status socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return fmt.Errorf("status socket %s: %w", path, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/status", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(snapshot())
	})
	mux.HandleFunc("/node", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(node())
	})
	mux.HandleFunc("/timeline", func(w http.ResponseWriter, r *http.Request) {
		tl, ok := timeline(r.URL.Query().Get("pod"))
		if !ok {
			http.Error(w, "no such pod on this node", http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(tl)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { <-ctx.Done(); srv.Close() }()
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("status socket stopped", "error", err)
		}
	}()
	return nil
}

// client asks the daemon on the socket at path.
func client(path string) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", path)
		},
	}}
}

// FetchNode reads the daemon's verdicts on the node; ok is false for a daemon from before the
// preflight, which does not serve them.
func FetchNode(path string) (_ []preflight.Verdict, ok bool, _ error) {
	res, err := client(path).Get("http://podorder/node")
	if err != nil {
		return nil, false, fmt.Errorf("ask the daemon at %s (is podorder running, with this --store-dir?): %w", path, err)
	}
	defer res.Body.Close()
	if res.StatusCode == http.StatusNotFound {
		return nil, false, nil
	}
	if res.StatusCode != http.StatusOK {
		return nil, false, fmt.Errorf("ask the daemon at %s: %s", path, res.Status)
	}
	var vs []preflight.Verdict
	if err := json.NewDecoder(io.LimitReader(res.Body, 1<<20)).Decode(&vs); err != nil {
		return nil, false, fmt.Errorf("decode the daemon's answer: %w", err)
	}
	return vs, true, nil
}

// WriteNode prints the node's header line, then one line per check that fails, with its message,
// then one line for each fact that is no preflight check (the source of readiness events), with
// its message.
func WriteNode(out io.Writer, vs []preflight.Verdict) error {
	var checks, facts []preflight.Verdict
	for _, v := range vs {
		if slices.Contains(preflight.Checks, v.Check) {
			checks = append(checks, v)
		} else {
			facts = append(facts, v)
		}
	}
	if _, err := fmt.Fprintln(out, preflight.Header(vs)); err != nil {
		return err
	}
	for _, v := range checks {
		if v.Result == preflight.Fail {
			if _, err := fmt.Fprintf(out, "  %s: %s\n", v.Reason, v.Message); err != nil {
				return err
			}
		}
	}
	for _, v := range facts {
		if _, err := fmt.Fprintf(out, "%s (%s)\n", v.Summary, v.Message); err != nil {
			return err
		}
	}
	return nil
}

// Fetch reads the daemon's snapshot.
func Fetch(path string) ([]podstate.PodReport, error) {
	res, err := client(path).Get("http://podorder/status")
	if err != nil {
		return nil, fmt.Errorf("ask the daemon at %s (is podorder running, with this --store-dir?): %w", path, err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("ask the daemon at %s: %s", path, res.Status)
	}
	var pods []podstate.PodReport
	if err := json.NewDecoder(io.LimitReader(res.Body, 64<<20)).Decode(&pods); err != nil {
		return nil, fmt.Errorf("decode the daemon's answer: %w", err)
	}
	return pods, nil
}

// WriteTable prints one line per container that is held (or every container with all), with what it
// waits for, since when and the timeout left.
func WriteTable(out io.Writer, pods []podstate.PodReport, all bool, now time.Time) error {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "POD\tCONTAINER\tSTATE\tWAITS FOR\tSINCE\tTIMEOUT LEFT")
	held := 0
	for _, p := range pods {
		for _, c := range p.Containers {
			waiting := c.State == "held" || c.State == "failing"
			if waiting {
				held++
			}
			if !waiting && !all {
				continue
			}
			var waits []string
			for _, d := range c.WaitsFor {
				if d.Met {
					waits = append(waits, d.Dependency+": met")
				} else {
					waits = append(waits, d.Dependency+": "+d.State)
				}
			}
			left := ""
			if waiting {
				left = c.TimeoutLeft.String()
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s ago\t%s\n", p.Pod, c.Name, c.State, strings.Join(waits, "; "),
				now.Sub(c.Since).Round(time.Second), left)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(out, "pods using podorder on this node: %d, held containers: %d\n", len(pods), held)
	return err
}

// FetchTimeline reads the timeline of the pod named pod ("namespace/name" or its UID) from the
// daemon: the pod that runs now, or one of the last ones removed.
func FetchTimeline(path, pod string) (podstate.TimelineReport, error) {
	var tl podstate.TimelineReport
	res, err := client(path).Get("http://podorder/timeline?pod=" + url.QueryEscape(pod))
	if err != nil {
		return tl, fmt.Errorf("ask the daemon at %s (is podorder running, with this --store-dir?): %w", path, err)
	}
	defer res.Body.Close()
	switch res.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return tl, fmt.Errorf("pod %s: podorder on this node does not know it (it never used podorder here, or it was removed before the last %d pods the daemon keeps; `podorder status -a` lists the pods it knows)", pod, podstate.KeptTimelines)
	default:
		return tl, fmt.Errorf("ask the daemon at %s: %s (a daemon older than this command has no timelines)", path, res.Status)
	}
	if err := json.NewDecoder(io.LimitReader(res.Body, 16<<20)).Decode(&tl); err != nil {
		return tl, fmt.Errorf("decode the daemon's answer: %w", err)
	}
	return tl, nil
}
