package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/podorder/podorder/plugin/decl"
	"github.com/podorder/podorder/test/checker"
	"github.com/podorder/podorder/test/harness"
)

// startBudget bounds a held container's StartContainer. A runtime that blocks its start for the
// hold would take the whole hold: in these tests the dependency is created only after the call
// returns, so that is the 10 min default timeout. 30 s tells the two apart on the slowest machine.
const startBudget = 30 * time.Second

func TestDependentDeclaredBeforeItsDependencyStartsAfterItIsReady(t *testing.T) {
	env, _ := setup(t)
	port := freePort(t)
	pod := env.RunPod(t, harness.PodSpec{
		Name:        "reverse",
		Labels:      map[string]string{"podorder.dev/after.app": "db"},
		Annotations: map[string]string{"podorder.dev/probe.db": fmt.Sprintf("tcp:%d", port)},
		Containers: []harness.ContainerSpec{
			{Name: "app", Args: args("app")},
			{Name: "db", Args: args("db", "--listen-after", "500ms", "--port", fmt.Sprint(port))},
		},
	})
	app, db := pod.Container("app"), pod.Container("db")
	assert.Less(t, app.StartTook, startBudget, "StartContainer of a held container returns at once: kubelet goes on to db")
	appStart := started(t, app)
	dbListen := harness.WaitWorkloadEvent(t, db, "LISTEN", 10*time.Second).At
	assert.True(t, appStart.After(dbListen), "app started %s before db listened", dbListen.Sub(appStart))
	t.Logf("RESULT reverse-order: db listening → app first line %s", appStart.Sub(dbListen))
}

func TestChainOfThreeStartsInDependencyOrder(t *testing.T) {
	env, _ := setup(t)
	runtimeChain(t, env)
}

func TestStartedConditionWaitsOnlyForTheProcess(t *testing.T) {
	env, _ := setup(t)
	pod := env.RunPod(t, harness.PodSpec{
		Name:   "started",
		Labels: map[string]string{"podorder.dev/after.app": "sidecar_started"},
		Containers: []harness.ContainerSpec{
			{Name: "app", Args: args("app")},
			{Name: "sidecar", Args: args("sidecar")},
		},
	})
	// started promises that the dependency's runtime start returned, not that its program printed a
	// line: compare with the runtime's own start time, which containerd sets before telling podorder.
	app, sidecar := started(t, pod.Container("app")), runtimeStarted(t, env, pod.Container("sidecar"))
	assert.True(t, app.After(sidecar), "app started %s before the runtime started sidecar", sidecar.Sub(app))
}

func TestAHeldDependencyCountsAsStartedOnlyOnceItsOwnProcessRuns(t *testing.T) {
	env, _ := setup(t)
	port := freePort(t)
	pod := env.RunPod(t, harness.PodSpec{
		Name:        "held-started",
		Labels:      map[string]string{"podorder.dev/after.app": "proxy_started", "podorder.dev/after.proxy": "db"},
		Annotations: map[string]string{"podorder.dev/probe.db": fmt.Sprintf("tcp:%d", port)},
		Containers: []harness.ContainerSpec{
			{Name: "app", Args: args("app")},
			{Name: "proxy", Args: args("proxy")},
			{Name: "db", Args: args("db", "--listen-after", "1s", "--port", fmt.Sprint(port))},
		},
	})
	// The runtime started proxy at once, but held: only its release is its start. proxy and app
	// are released in one step and their hooks woken together, so app's first line may lead
	// proxy's by that race, never by proxy's second of hold.
	app, proxy := started(t, pod.Container("app")), started(t, pod.Container("proxy"))
	assert.False(t, app.Before(proxy.Add(-checker.DefaultWakeBound)), "app started %s before proxy's own process", proxy.Sub(app))
}

func TestCompletedConditionReleasesOnExitZero(t *testing.T) {
	env, _ := setup(t)
	pod := env.RunPod(t, harness.PodSpec{
		Name:   "completed",
		Labels: map[string]string{"podorder.dev/after.app": "migrate_completed"},
		Containers: []harness.ContainerSpec{
			{Name: "app", Args: args("app")},
			{Name: "migrate", Args: args("migrate", "--exit-after", "300ms", "--exit-code", "0")},
		},
	})
	app := started(t, pod.Container("app"))
	exit := harness.WaitWorkloadEvent(t, pod.Container("migrate"), "EXIT", 10*time.Second)
	assert.True(t, app.After(exit.At), "app started before migrate completed")
}

func TestCompletedDependencyExitingNonZeroFailsTheDependentWithAClearMessage(t *testing.T) {
	env, po := setup(t)
	runtimeFailedDependency(t, env, po)
}

func TestHoldTimesOutNamingWhatIsMissing(t *testing.T) {
	env, po := setup(t)
	pod := env.RunPod(t, harness.PodSpec{
		Name:   "timeout",
		Labels: map[string]string{"podorder.dev/after.app": "dbx", "podorder.dev/timeout.app": "1s"},
		Containers: []harness.ContainerSpec{
			{Name: "app", Args: args("app")},
			{Name: "db", Args: args("db")},
		},
	})
	app := pod.Container("app")
	code, _, _ := env.WaitExited(t, app.ID, 30*time.Second)
	assert.EqualValues(t, 255, code)
	assertLogContains(t, app, "podorder: app in pod default/timeout timed out after 1s waiting for dbx (ready): dbx has not been created yet; containers seen in the pod: app, db")
	assertNoStart(t, app)
	po.waitLog(t, "hold ended without release", 1, 10*time.Second)
}

func TestInvalidDeclarationsAreRejectedAtCreateContainer(t *testing.T) {
	env, po := setup(t)
	tests := []struct {
		name        string
		labels      map[string]string
		annotations map[string]string
		want        string
	}{
		{"cycle", map[string]string{"podorder.dev/after.app": "db", "podorder.dev/after.db": "app"}, nil,
			"podorder: pod default/cycle, container app: dependency cycle app → db → app"},
		{"unknown-name", map[string]string{"podorder.dev/after.app": "dbx"},
			map[string]string{decl.LastAppliedAnnotation: `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"unknown-name"},"spec":{"containers":[{"name":"app"},{"name":"db"}]}}`},
			"podorder: pod default/unknown-name, container app: container app waits for dbx, which is not in the pod; containers are: app, db"},
		{"malformed", map[string]string{"podorder.dev/after.app": "db_soon"}, nil,
			`podorder: pod default/malformed, container app: label podorder.dev/after.app="db_soon": db: unknown condition "soon"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := env.RunPod(t, harness.PodSpec{Name: tt.name, Labels: tt.labels, Annotations: tt.annotations,
				Containers: []harness.ContainerSpec{{Name: "app", Args: args("app")}, {Name: "db", Args: args("db")}}})
			app := pod.Container("app")
			require.Error(t, app.CreateErr)
			assert.Contains(t, app.CreateErr.Error(), tt.want)
			assert.Empty(t, app.ID)
		})
	}
	assert.Len(t, po.Logs(t, "rejected"), 4, "cycle rejects app and db; one line per decision")
}

func TestRestartedDependencyHoldsDependentsCreatedAfterItsExitUntilTheNewAttemptRuns(t *testing.T) {
	env, _ := setup(t)
	pod := env.RunPod(t, harness.PodSpec{
		Name:       "restart",
		Labels:     map[string]string{"podorder.dev/after.app": "db_started"},
		Containers: []harness.ContainerSpec{{Name: "db", Args: args("db", "--exit-after", "100ms", "--exit-code", "1")}},
	})
	code, _, _ := env.WaitExited(t, pod.Container("db").ID, 10*time.Second)
	require.EqualValues(t, 1, code)
	app := env.CreateStartContainer(t, pod, harness.ContainerSpec{Name: "app", Args: args("app")})
	require.NoError(t, app.StartErr)
	// The crashed attempt's tombstone says it started; it must release nobody. app's first line can
	// only come after the next attempt of db, which is created now.
	db1 := env.CreateStartContainer(t, pod, harness.ContainerSpec{Name: "db", Attempt: 1, Args: args("db1")})
	appStart, dbStart := started(t, app), runtimeStarted(t, env, db1)
	assert.True(t, appStart.After(dbStart), "app started %s before the runtime started the new attempt of db", dbStart.Sub(appStart))
}

func TestHeldWorkloadRunsAsNonRootWithReadOnlyRootfs(t *testing.T) {
	env, _ := setup(t)
	nobody := int64(65534)
	pod := env.RunPod(t, harness.PodSpec{
		Name:   "nonroot",
		Labels: map[string]string{"podorder.dev/after.app": "db_started"},
		Containers: []harness.ContainerSpec{
			{Name: "app", Args: args("app", "--print-id"), RunAsUser: &nobody, ReadOnlyRootfs: true},
			{Name: "db", Args: args("db")},
		},
	})
	app := pod.Container("app")
	assert.True(t, started(t, app).After(runtimeStarted(t, env, pod.Container("db"))))
	// The ID line follows START in the workload; the runtime's log copier may not have written it yet.
	id := harness.WaitLogLine(t, app.LogPath, "ID ", 10*time.Second)
	assert.Contains(t, id, "ID app uid=65534")
	assert.Contains(t, id, "rootfs=ro")
}

func TestPodWithoutPodorderKeysIsUntouched(t *testing.T) {
	env, po := setup(t)
	pod := env.RunPod(t, harness.PodSpec{
		Name:       "plain",
		Labels:     map[string]string{"app": "plain"},
		Containers: []harness.ContainerSpec{{Name: "app", Args: args("app")}},
	})
	started(t, pod.Container("app"))
	ociSpec := runtimeSpec(t, env, pod.Container("app").ID)
	assert.NotContains(t, ociSpec, "/.podorder", "no podorder mount")
	assert.NotContains(t, ociSpec, "startContainer", "no hook")
	uids, err := po.Store.Pods()
	require.NoError(t, err)
	assert.Empty(t, uids, "no tombstones for a pod without podorder keys")

	held := env.RunPod(t, harness.PodSpec{Name: "held", Labels: map[string]string{"podorder.dev/after.app": "db_started"},
		Containers: []harness.ContainerSpec{{Name: "app", Args: args("app")}, {Name: "db", Args: args("db")}}})
	started(t, held.Container("app"))
	assert.Contains(t, runtimeSpec(t, env, held.Container("app").ID), "/.podorder/hook", "the check above can see a hook")
}

func TestPodorderKilledWhileAContainerIsHeldReleasesItAfterRestartNeverEarly(t *testing.T) {
	env, po := setup(t)
	pod := env.RunPod(t, harness.PodSpec{
		Name:       "crash",
		Labels:     map[string]string{"podorder.dev/after.app": "db_started"},
		Containers: []harness.ContainerSpec{{Name: "app", Args: args("app")}},
	})
	app := pod.Container("app")
	require.NoError(t, app.StartErr)
	po.waitLog(t, "holding", 1, 10*time.Second)
	po.Kill(t)
	// db starts while podorder is away: nothing records it, so app stays held.
	db := env.CreateStartContainer(t, pod, harness.ContainerSpec{Name: "db", Args: args("db")})
	started(t, db)
	// Longer than two of the hook's own re-reads (every 1 s): a hook that would let app go by
	// itself gets the chance to, here.
	time.Sleep(2500 * time.Millisecond)
	assertNoStart(t, app)
	restarted := time.Now()
	po.Restart(t)
	appStart := started(t, app)
	assert.True(t, appStart.After(restarted), "app was released %s before podorder came back", restarted.Sub(appStart))
	recs := po.Logs(t, "synchronized with the runtime")
	assert.EqualValues(t, 1, recs[len(recs)-1]["held_containers"], "the restarted daemon found app held")
}

func TestContainerdRestartReconnectsPodorder(t *testing.T) {
	env, po := setup(t)
	env.Restart(t)
	po.waitLog(t, "synchronized with the runtime", 2, 30*time.Second)
	pod := env.RunPod(t, harness.PodSpec{Name: "after-restart", Labels: map[string]string{"podorder.dev/after.app": "db_started"},
		Containers: []harness.ContainerSpec{{Name: "app", Args: args("app")}, {Name: "db", Args: args("db")}}})
	// db_started promises db's runtime start, not its first line, which may come after app's.
	assert.True(t, started(t, pod.Container("app")).After(runtimeStarted(t, env, pod.Container("db"))), "holds work after the reconnect")
}

// runtimeStarted is when the runtime says a container started (CRI status StartedAt): containerd sets
// it when the task's start returned, before it calls NRI's PostStartContainer.
func runtimeStarted(t *testing.T, env *harness.Env, c *harness.Container) time.Time {
	t.Helper()
	var at int64
	require.Eventually(t, func() bool {
		at = env.ContainerStatus(t, c.ID).StartedAt
		return at != 0
	}, 10*time.Second, 10*time.Millisecond, "container %s never started", c.Spec.Name)
	return time.Unix(0, at)
}

// runtimeSpec returns the OCI spec containerd generated for a container, from verbose CRI status.
func runtimeSpec(t *testing.T, env *harness.Env, id string) string {
	t.Helper()
	res, err := env.Runtime.ContainerStatus(t.Context(), &runtimeapi.ContainerStatusRequest{ContainerId: id, Verbose: true})
	require.NoError(t, err)
	var info struct {
		RuntimeSpec json.RawMessage `json:"runtimeSpec"`
	}
	require.NoError(t, json.Unmarshal([]byte(res.Info["info"]), &info))
	require.NotEmpty(t, info.RuntimeSpec)
	return string(info.RuntimeSpec)
}

// assertLogContains waits a little for want in a container's log: the runtime copies a container's
// output to the log asynchronously, so a line may land after the event the test awaited.
func assertLogContains(t *testing.T, c *harness.Container, want string) {
	t.Helper()
	var log string
	if !assert.Eventually(t, func() bool {
		lines, err := harness.ReadLog(c.LogPath)
		log = strings.Join(lines, "\n")
		return err == nil && strings.Contains(log, want)
	}, 5*time.Second, 10*time.Millisecond) {
		assert.Contains(t, log, want)
	}
}

// assertNoStart checks, after the container exited, that its own process never ran.
func assertNoStart(t *testing.T, c *harness.Container) {
	t.Helper()
	lines, err := harness.ReadLog(c.LogPath)
	require.NoError(t, err)
	for _, l := range lines {
		assert.False(t, strings.HasPrefix(l, "START "), "the held process ran: %s", l)
	}
}
