package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/podorder/podorder/test/harness"
)

// say prints one line of the demo at once: `make demo` shows the lines that start with DEMO, without
// the prefix, while the test runs.
func say(format string, a ...any) { fmt.Printf("DEMO "+format+"\n", a...) }

// demoManifest is the pod the demo runs, as a user would write it for a cluster.
const demoManifest = `apiVersion: v1
kind: Pod
metadata:
  name: shop
  labels:
    podorder.dev/after.web: api        # web starts once api is ready
    podorder.dev/after.api: db         # api starts once db is ready
  annotations:
    podorder.dev/probe.db: "tcp:%d"
    podorder.dev/probe.api: "http:%d/healthz"
spec:
  containers:                          # listed in reverse order on purpose
    - {name: web, image: registry.local/podorder/workload:test, args: [--name, web]}
    - {name: api, image: registry.local/podorder/workload:test, args: [--name, api, --listen-after, 300ms, --port, "%d"]}
    - {name: db,  image: registry.local/podorder/workload:test, args: [--name, db, --listen-after, 800ms, --port, "%d"]}`

// follower prints, as they happen and in time order, the daemon's decisions and the containers'
// first lines.
type follower struct {
	t0      time.Time
	mu      sync.Mutex
	seen    map[string]bool
	files   map[string]string // label → CRI log path
	pending []moment          // seen, not printed yet
}

// moment is one line of the timeline.
type moment struct {
	at        time.Time
	who, what string
}

// settle is how long a moment waits before it is printed: the daemon's log and a container's log
// reach the disk at their own pace, and a moment read late must still print in its place.
const settle = 300 * time.Millisecond

func (f *follower) line(at time.Time, who, what string) {
	key := who + what
	if f.seen[key] {
		return
	}
	f.seen[key] = true
	f.pending = append(f.pending, moment{at, who, what})
}

// flush prints the pending moments older than before, oldest first.
func (f *follower) flush(before time.Time) {
	slices.SortFunc(f.pending, func(a, b moment) int { return a.at.Compare(b.at) })
	n := 0
	for _, m := range f.pending {
		if !m.at.Before(before) {
			break
		}
		say("  +%6.3fs  %-4s %s", m.at.Sub(f.t0).Seconds(), m.who, m.what)
		n++
	}
	f.pending = f.pending[n:]
}

// poll prints what is new in the daemon's log and in the containers' logs.
func (f *follower) poll(daemonLog string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if data, err := os.ReadFile(daemonLog); err == nil {
		for _, raw := range bytes.Split(data, []byte("\n")) {
			var rec map[string]any
			if json.Unmarshal(raw, &rec) != nil {
				continue
			}
			at, _ := time.Parse(time.RFC3339Nano, fmt.Sprint(rec["time"]))
			c := fmt.Sprint(rec["container"])
			switch rec["msg"] {
			case "holding":
				f.line(at, c, fmt.Sprintf("held by podorder: waits for %v", rec["waits_for"]))
			case "probe passed":
				f.line(at, c, fmt.Sprintf("podorder's probe %v passed", rec["probe"]))
			case "released":
				f.line(at, c, fmt.Sprintf("released after %vms: its process starts now", rec["elapsed_ms"]))
			}
		}
	}
	for who, path := range f.files {
		lines, err := harness.ReadLog(path)
		if err != nil {
			continue
		}
		for _, l := range lines {
			ev, err := harness.ParseWorkloadEvent(l)
			if err != nil {
				continue
			}
			switch ev.Kind {
			case "START":
				f.line(ev.At, who, "first line of its own process")
			case "LISTEN":
				f.line(ev.At, who, "listening on its port")
			}
		}
	}
	f.flush(time.Now().Add(-settle))
}

// TestDemo is `make demo`: a three-container pod declared in reverse order (web, api, db) where web
// waits for api to be ready and api for db, on a real containerd driven like kubelet drives it. It
// prints what happens as it happens.
func TestDemo(t *testing.T) {
	say("podorder demo: start a pod's containers in dependency order, without touching their images")
	say("")
	say("1/3 starting a private containerd 2.4.2 + runc 1.3.6 with NRI, and the podorder daemon")
	env, po := setup(t)
	dbPort, apiPort := freePort(t), freePort(t)
	say("")
	say("2/3 the pod (apply the same to a cluster with podorder installed):")
	for _, l := range strings.Split(fmt.Sprintf(demoManifest, dbPort, apiPort, apiPort, dbPort), "\n") {
		say("    %s", l)
	}
	say("")
	say("3/3 creating and starting web, api, db one after the other, as kubelet does; what happens:")
	f := &follower{t0: time.Now(), seen: map[string]bool{}, files: map[string]string{}}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			f.poll(po.LogPath)
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	pod := env.RunPod(t, harness.PodSpec{
		Name:   "shop",
		Labels: map[string]string{"podorder.dev/after.web": "api", "podorder.dev/after.api": "db"},
		Annotations: map[string]string{
			"podorder.dev/probe.db":  fmt.Sprintf("tcp:%d", dbPort),
			"podorder.dev/probe.api": fmt.Sprintf("http:%d/healthz", apiPort),
		},
		Containers: []harness.ContainerSpec{
			{Name: "web", Args: args("web")},
			{Name: "api", Args: args("api", "--listen-after", "300ms", "--port", fmt.Sprint(apiPort))},
			{Name: "db", Args: args("db", "--listen-after", "800ms", "--port", fmt.Sprint(dbPort))},
		},
	})
	f.mu.Lock()
	for _, c := range pod.Containers {
		require.NoError(t, c.StartErr)
		f.files[c.Spec.Name] = c.LogPath
	}
	f.mu.Unlock()
	web := started(t, pod.Container("web"))
	close(stop)
	<-done

	api := started(t, pod.Container("api"))
	dbListen := harness.WaitWorkloadEvent(t, pod.Container("db"), "LISTEN", 10*time.Second).At
	apiListen := harness.WaitWorkloadEvent(t, pod.Container("api"), "LISTEN", 10*time.Second).At
	f.poll(po.LogPath)
	f.mu.Lock()
	f.flush(time.Now().Add(time.Hour)) // everything that is left
	f.mu.Unlock()
	assert.True(t, api.After(dbListen), "api starts after db is ready")
	assert.True(t, web.After(apiListen), "web starts after api is ready")
	say("")
	for _, c := range pod.Containers {
		say("kubelet-like CRI calls returned at once even for held containers: %-3s CreateContainer %3dms, StartContainer %3dms",
			c.Spec.Name, c.CreateTook.Milliseconds(), c.StartTook.Milliseconds())
	}
	say("order kept: db ready → api's first line %dms, api ready → web's first line %dms",
		api.Sub(dbListen).Milliseconds(), web.Sub(apiListen).Milliseconds())
	say("")
	say("podorder timeline default/shop (on a node: kubectl -n podorder-system exec ds/podorder -- /podorder timeline default/shop):")
	for _, l := range strings.Split(strings.TrimRight(checkDemoTimeline(t, po, "default/shop"), "\n"), "\n") {
		say("    %s", l)
	}
}
