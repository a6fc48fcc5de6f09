package e2e

import (
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/podorder/podorder/test/harness"
)

// TestDemo is `make demo`: a three-container pod declared in reverse order (web, api, db) where web
// waits for api to be ready and api for db. It prints the timeline of what happened.
func TestDemo(t *testing.T) {
	env, po := setup(t)
	dbPort, apiPort := freePort(t), freePort(t)
	t0 := time.Now()
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
	type event struct {
		at   time.Time
		what string
	}
	var timeline []event
	add := func(at time.Time, format string, a ...any) {
		timeline = append(timeline, event{at, fmt.Sprintf(format, a...)})
	}
	web := started(t, pod.Container("web"))
	api := started(t, pod.Container("api"))
	db := started(t, pod.Container("db"))
	dbListen := harness.WaitWorkloadEvent(t, pod.Container("db"), "LISTEN", 10*time.Second).At
	apiListen := harness.WaitWorkloadEvent(t, pod.Container("api"), "LISTEN", 10*time.Second).At
	add(db, "db  process starts")
	add(dbListen, "db  listens (podorder's tcp probe will pass)")
	add(api, "api process starts (released: db is ready)")
	add(apiListen, "api listens (podorder's http probe will pass)")
	add(web, "web process starts (released: api is ready)")
	for _, rec := range po.Logs(t, "released") {
		at, _ := time.Parse(time.RFC3339Nano, fmt.Sprint(rec["time"]))
		add(at, "podorder: released %v after %vms held", rec["container"], rec["elapsed_ms"])
	}
	sort.SliceStable(timeline, func(i, j int) bool { return timeline[i].at.Before(timeline[j].at) })
	t.Logf("DEMO pod default/shop, containers in spec order web, api, db; web after api (ready), api after db (ready)")
	for _, c := range pod.Containers {
		require.NoError(t, c.StartErr)
		t.Logf("DEMO CRI, one after the other like kubelet: %-3s CreateContainer %3dms, StartContainer %3dms",
			c.Spec.Name, c.CreateTook.Milliseconds(), c.StartTook.Milliseconds())
	}
	for _, e := range timeline {
		t.Logf("DEMO +%6.3fs  %s", e.at.Sub(t0).Seconds(), e.what)
	}
	assert.True(t, api.After(dbListen), "api starts after db is ready")
	assert.True(t, web.After(apiListen), "web starts after api is ready")
	t.Logf("DEMO order held: db ready → api (+%dms), api ready → web (+%dms)", api.Sub(dbListen).Milliseconds(), web.Sub(apiListen).Milliseconds())
}
