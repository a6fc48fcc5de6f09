package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/podorder/podorder/test/harness"
)

// Runtimes other than the harness's default runc v1.3.6 that must return from start while a
// container is held. hack/install-deps.sh builds them into the cache. Debian 12's crun 1.8.1
// cannot run containerd 2.4.2's specs at all ("unknown version specified": they say 1.3.0), and a
// newer crun is C, not on the Go module proxy: crun is not tested here.
var otherRuntimes = []struct {
	name    string // binary in harness.BinDir()
	version string // prefix of the first line of `<binary> --version`
}{
	{name: "runc-1.4", version: "runc version 1.4."},
}

func TestRuntimesRunTheCoreScenarios(t *testing.T) {
	for _, rt := range otherRuntimes {
		t.Run(rt.name, func(t *testing.T) {
			bin := filepath.Join(harness.BinDir(), rt.name)
			if _, err := os.Stat(bin); err != nil {
				if os.Getenv("CI") == "true" {
					t.Fatalf("%s is missing: hack/install-deps.sh builds it", bin)
				}
				t.Skipf("%s is missing: run hack/install-deps.sh", bin)
			}
			out, err := exec.Command(bin, "--version").Output()
			require.NoError(t, err, "%s --version", bin)
			version, _, _ := strings.Cut(string(out), "\n")
			require.True(t, strings.HasPrefix(version, rt.version), "%s is %q, want %s*", bin, version, rt.version)
			t.Logf("runtime: %s", version)

			env := harness.Start(t, harness.Options{RuncPath: bin})
			env.ImportWorkloadImages(t)
			po := startPodorder(t, env)

			t.Run("chain", func(t *testing.T) { runtimeChain(t, env) })
			t.Run("completed-dependency-fails", func(t *testing.T) { runtimeFailedDependency(t, env, po) })
			po.waitLog(t, "returned from start while a container was held", 1, 10*time.Second)
			assert.Empty(t, po.Logs(t, "did not return within"))
		})
	}
}

// runtimeChain, run on every runtime: a waits for b, b for c (both ready by podorder's probes), declared a, b, c and so
// created and started in that order; each starts only once its dependency listens.
func runtimeChain(t *testing.T, env *harness.Env) {
	pc, pb := freePort(t), freePort(t)
	pod := env.RunPod(t, harness.PodSpec{
		Name:   "chain",
		Labels: map[string]string{"podorder.dev/after.a": "b", "podorder.dev/after.b": "c"},
		Annotations: map[string]string{
			"podorder.dev/probe.c": fmt.Sprintf("tcp:%d", pc),
			"podorder.dev/probe.b": fmt.Sprintf("http:%d/healthz", pb),
		},
		Containers: []harness.ContainerSpec{
			{Name: "a", Args: args("a")},
			{Name: "b", Args: args("b", "--listen-after", "300ms", "--port", fmt.Sprint(pb))},
			{Name: "c", Args: args("c", "--listen-after", "300ms", "--port", fmt.Sprint(pc))},
		},
	})
	// a and b were held when their StartContainer returned: c did not exist yet.
	for _, name := range []string{"a", "b", "c"} {
		assert.Less(t, pod.Container(name).StartTook, startBudget, "StartContainer of %s", name)
	}
	a, b, c := started(t, pod.Container("a")), started(t, pod.Container("b")), started(t, pod.Container("c"))
	cListen := harness.WaitWorkloadEvent(t, pod.Container("c"), "LISTEN", 30*time.Second).At
	bListen := harness.WaitWorkloadEvent(t, pod.Container("b"), "LISTEN", 30*time.Second).At
	assert.True(t, b.After(cListen), "b started %s before c listened", cListen.Sub(b))
	assert.True(t, a.After(bListen), "a started %s before b listened", bListen.Sub(a))
	assert.True(t, c.Before(b) && b.Before(a), "order c, b, a")
	t.Logf("c listening → b first line %s; b listening → a first line %s", b.Sub(cListen), a.Sub(bListen))
}

// runtimeFailedDependency, run on every runtime: app waits for migrate to complete; migrate exits 1, so app's hook fails
// (exit 255, reason Error) with podorder's message, and app's own process never runs.
func runtimeFailedDependency(t *testing.T, env *harness.Env, po *Podorder) {
	before := len(po.Logs(t, "hold ended without release"))
	pod := env.RunPod(t, harness.PodSpec{
		Name:   "failed",
		Labels: map[string]string{"podorder.dev/after.app": "migrate_completed"},
		Containers: []harness.ContainerSpec{
			{Name: "app", Args: args("app")},
			{Name: "migrate", Args: args("migrate", "--exit-after", "200ms", "--exit-code", "1")},
		},
	})
	app := pod.Container("app")
	require.NoError(t, app.CreateErr)
	require.NoError(t, app.StartErr)
	assert.Less(t, app.StartTook, startBudget, "StartContainer of a held container returns at once")
	code, reason, _ := env.WaitExited(t, app.ID, 60*time.Second)
	assert.EqualValues(t, 255, code, "a failed startContainer hook fails the container")
	assert.Equal(t, "Error", reason)
	assertLogContains(t, app, "podorder: app in pod default/failed will not start: migrate exited with code 1")
	assertNoStart(t, app)
	recs := po.waitLog(t, "hold ended without release", before+1, 10*time.Second)
	assert.Equal(t, "app", recs[len(recs)-1]["container"])
}
