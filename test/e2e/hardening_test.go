package e2e

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/podorder/podorder/test/harness"
)

// A sibling that reads every FIFO it can see used to take the held container's wake-up (3 times in
// 10): the held container then timed out while the daemon had counted it released. Now each held
// container sees only its own FIFO, and the daemon's record is what the hook obeys.
func TestASiblingCannotStealTheWakeUpOfAHeldContainer(t *testing.T) {
	env, po := setup(t)
	port := freePort(t)
	pod := env.RunPod(t, harness.PodSpec{
		Name: "thief",
		Labels: map[string]string{
			"podorder.dev/after.thief": "db_started",
			"podorder.dev/after.app":   "db",
			"podorder.dev/timeout.app": "30s",
		},
		Annotations: map[string]string{"podorder.dev/probe.db": fmt.Sprintf("tcp:%d", port)},
		Containers: []harness.ContainerSpec{
			{Name: "thief", Args: args("thief", "--steal-wakes", "3s")},
			{Name: "app", Args: args("app")},
			{Name: "db", Args: args("db", "--listen-after", "1s", "--port", fmt.Sprint(port))},
		},
	})
	thief, app, db := pod.Container("thief"), pod.Container("app"), pod.Container("db")
	steal := harness.WaitLogLine(t, thief.LogPath, "STEAL ", 20*time.Second)
	assert.Contains(t, steal, "fifos=0 bytes=0", "the thief saw no FIFO but its own")

	appStart := started(t, app)
	dbListen := harness.WaitWorkloadEvent(t, db, "LISTEN", 10*time.Second).At
	assert.True(t, appStart.After(dbListen), "app started %s before db listened", dbListen.Sub(appStart))
	recs := po.waitLog(t, "released", 2, 10*time.Second)
	var released []string
	for _, r := range recs {
		released = append(released, fmt.Sprint(r["container"]))
	}
	assert.ElementsMatch(t, []string{"thief", "app"}, released)
	assert.Zero(t, po.countLines(t, "hold ended without release"), "no hold ended without its release")

	// The pod's store directory, mounted into every held container, holds regular files only.
	entries, err := os.ReadDir(po.Store.PodDir("uid-default-thief"))
	require.NoError(t, err)
	for _, e := range entries {
		assert.True(t, e.Type().IsRegular(), "%s in the shared store is not a regular file", e.Name())
	}
	assert.Contains(t, runtimeSpec(t, env, app.ID), po.Store.WakeDir("uid-default-thief", "app"))
	assert.NotContains(t, runtimeSpec(t, env, thief.ID), po.Store.WakeDir("uid-default-thief", "app"), "app's wake directory is mounted into app alone")
}

// A 256 KiB annotation of ~26,000 selectors used to take 55 s under NRI's lock, so that NRI closed
// the plugin and the daemon crash-looped while the pod existed. Now it is refused at once.
func TestAHugeDeclarationIsRefusedAtOnceAndTheDaemonServesOtherPods(t *testing.T) {
	env, po := setup(t)
	var sb strings.Builder
	for i := 0; sb.Len() < 256<<10-32; i++ {
		fmt.Fprintf(&sb, "pod(app=v%d),", i)
	}
	huge := env.RunPod(t, harness.PodSpec{
		Name:        "huge",
		Annotations: map[string]string{"podorder.dev/after.app": strings.TrimSuffix(sb.String(), ",")},
		Containers:  []harness.ContainerSpec{{Name: "app", Args: args("app")}},
	})
	app := huge.Container("app")
	require.Error(t, app.CreateErr)
	assert.Contains(t, app.CreateErr.Error(), "podorder: pod default/huge, container app")
	assert.Contains(t, app.CreateErr.Error(), "more than the 2048 podorder reads: shorten it")
	assert.Less(t, len(app.CreateErr.Error()), 2048, "the message quotes the value cut short")
	t.Logf("RESULT huge-declaration: CreateContainer refused in %s", app.CreateTook)

	po.waitLog(t, "rejected", 1, 10*time.Second)
	assert.Equal(t, 1, po.countLines(t, "synchronized with the runtime"), "the daemon was never closed by NRI nor restarted")
	ok := env.RunPod(t, harness.PodSpec{Name: "after-huge", Labels: map[string]string{"podorder.dev/after.app": "db_started"},
		Containers: []harness.ContainerSpec{{Name: "app", Args: args("app")}, {Name: "db", Args: args("db")}}})
	assert.True(t, started(t, ok.Container("app")).After(runtimeStarted(t, env, ok.Container("db"))), "other pods are served")
}

// A dependency's server that answers its probe with 10 MB of tiny headers used to make each attempt
// allocate about 115 MiB (net/http's client reads up to 10 MiB of headers by default), so that a
// few attempts at once took the daemon past its 128 Mi limit: an OOM kill, a resync, the same probe
// again. Now a probe reads a few KiB of headers at most, whatever the server sends.
func TestAProbeAnsweredWithHugeHeadersLeavesTheDaemonsMemoryAlone(t *testing.T) {
	env, po := setup(t)
	_, before := harness.ProcMemory(t, po.pid())
	port := freePort(t)
	const bombs = 40
	pod := env.RunPod(t, harness.PodSpec{
		Name:        "bomb",
		Labels:      map[string]string{"podorder.dev/after.app": "db", "podorder.dev/timeout.app": "60s"},
		Annotations: map[string]string{"podorder.dev/probe.db": fmt.Sprintf("http:%d/healthz", port)},
		Containers: []harness.ContainerSpec{
			{Name: "app", Args: args("app")},
			{Name: "db", Args: args("db", "--port", fmt.Sprint(port), "--header-bomb", fmt.Sprint(10<<20))},
		},
	})
	db := pod.Container("db")
	harness.WaitLogLine(t, db.LogPath, fmt.Sprintf("BOMB db %d", bombs), 30*time.Second)
	rss, peak := harness.ProcMemory(t, po.pid())
	t.Logf("RESULT header bomb: the daemon's VmHWM %d KiB before, %d KiB after %d probe answers of 10 MiB of headers (VmRSS %d KiB)", before, peak, bombs, rss)
	assert.Less(t, peak, 64<<10, "the daemon's peak resident memory stays under 64 MiB")
	lines, err := harness.ReadLog(pod.Container("app").LogPath)
	if err == nil {
		assert.NotContains(t, strings.Join(lines, "\n"), "START app", "app is still held: the probe never passed")
	}
}
