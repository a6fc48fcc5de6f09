package e2e

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/podorder/podorder/plugin/appready"
	"github.com/podorder/podorder/test/harness"
)

// notifyPod is app waiting for db to be ready, db ready on its own READY=1; dbArgs are db's
// workload flags.
func notifyPod(name string, dbArgs ...string) harness.PodSpec {
	return harness.PodSpec{
		Name:   name,
		Labels: map[string]string{"podorder.dev/after.app": "db", "podorder.dev/readiness.db": "notify"},
		Containers: []harness.ContainerSpec{
			{Name: "app", Args: args("app")},
			{Name: "db", Args: args("db", dbArgs...)},
		},
	}
}

// filePod is app waiting for db to be ready, db ready once path exists in it.
func filePod(name, path string, dbArgs ...string) harness.PodSpec {
	return harness.PodSpec{
		Name:        name,
		Labels:      map[string]string{"podorder.dev/after.app": "db"},
		Annotations: map[string]string{"podorder.dev/readiness.db": "file:" + path},
		Containers: []harness.ContainerSpec{
			{Name: "app", Args: args("app")},
			{Name: "db", Args: args("db", dbArgs...)},
		},
	}
}

func TestNotifyReadinessReleasesTheDependentOnlyAfterItsREADY1(t *testing.T) {
	env, _ := setup(t)
	pod := env.RunPod(t, notifyPod("notify", "--notify-after", "700ms"))
	app, db := pod.Container("app"), pod.Container("db")
	appStart := started(t, app)
	dbStart := started(t, db)
	ready := harness.WaitWorkloadEvent(t, db, "READY", 10*time.Second).At
	assert.True(t, appStart.After(ready), "app started %s before db's READY=1", ready.Sub(appStart))
	assert.Greater(t, appStart.Sub(dbStart), 500*time.Millisecond, "app waited for READY=1, not for db's start")
	assert.Less(t, appStart.Sub(ready), time.Second, "released by the datagram, not by a poll or a timeout")
	t.Logf("RESULT notify: db READY=1 → app first line %s", appStart.Sub(ready))
}

func TestNotifyFromAnotherContainerOrTheNodeDoesNotCount(t *testing.T) {
	env, po := setup(t)
	// db says READY=1 only when the test signals it, after both forgeries had every chance.
	pod := env.RunPod(t, notifyPod("forged", "--notify-on", "USR2"))
	app, db := pod.Container("app"), pod.Container("db")
	require.NoError(t, db.CreateErr)
	started(t, db)
	socket := filepath.Join(po.Store.NotifyDir(pod.Spec.UID, db.ID), appready.SocketName)
	require.FileExists(t, socket)

	// A process of the node, root, that can reach the socket's host path.
	dir, err := os.Open(filepath.Dir(socket))
	require.NoError(t, err)
	defer dir.Close()
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: appready.ShortPath(int(dir.Fd())), Net: "unixgram"})
	require.NoError(t, err)
	_, err = c.Write([]byte("READY=1"))
	require.NoError(t, err)
	c.Close()
	assertStillHeld(t, app, "a READY=1 from a process of the node")
	po.waitLog(t, "notify datagram refused", 1, 10*time.Second)

	// A sibling container of the same pod given db's socket directory, as a careless hostPath of
	// the node's /run would: a socket ignores the read-only mount, so only the check stops it.
	evil := env.CreateStartContainer(t, pod, harness.ContainerSpec{
		Name: "evil",
		Args: args("evil", "--notify-after", "0s", "--notify-socket", "/evil/"+appready.SocketName),
		Mounts: []*runtimeapi.Mount{{
			ContainerPath: "/evil", HostPath: filepath.Dir(socket), Readonly: true,
		}},
	})
	harness.WaitWorkloadEvent(t, evil, "READY", 30*time.Second)
	assertStillHeld(t, app, "a READY=1 from a sibling container")

	env.Signal(t, db.ID, syscall.SIGUSR2)
	appStart := started(t, app)
	ready := harness.WaitWorkloadEvent(t, db, "READY", 10*time.Second).At
	assert.True(t, appStart.After(ready), "app started %s before db's own READY=1", ready.Sub(appStart))
	recs := po.Logs(t, "notify datagram refused")
	require.NotEmpty(t, recs)
	assert.Contains(t, fmt.Sprint(recs[0]["reason"]), "which is not a process of this container attempt")
}

func TestNotifyAfterADaemonRestartStillReleasesTheDependent(t *testing.T) {
	env, po := setup(t)
	// db says READY=1 only when the test signals it: after podorder was killed and started again.
	pod := env.RunPod(t, notifyPod("notify-restart", "--notify-on", "USR2"))
	app, db := pod.Container("app"), pod.Container("db")
	started(t, db)
	require.FileExists(t, filepath.Join(po.Store.NotifyDir(pod.Spec.UID, db.ID), appready.SocketName))

	po.Kill(t)
	po.Restart(t)
	assertStillHeld(t, app, "podorder's restart")

	env.Signal(t, db.ID, syscall.SIGUSR2)
	appStart := started(t, app)
	ready := harness.WaitWorkloadEvent(t, db, "READY", 10*time.Second).At
	assert.True(t, appStart.After(ready), "app started %s before db's READY=1", ready.Sub(appStart))
	assert.Less(t, appStart.Sub(ready), time.Second, "released by the READY=1 on the socket bound again, not by a timeout")
	assert.Empty(t, po.Logs(t, "cannot watch the readiness signal"))
	t.Logf("RESULT notify after a restart: db READY=1 → app first line %s", appStart.Sub(ready))
}

// assertStillHeld checks that c's own process has not started half a second after what came
// (room for a wrongly counted READY=1 to release it).
func assertStillHeld(t *testing.T, c *harness.Container, after string) {
	t.Helper()
	time.Sleep(500 * time.Millisecond)
	lines, err := harness.ReadLog(c.LogPath)
	require.NoError(t, err)
	for _, l := range lines {
		require.False(t, strings.HasPrefix(l, "START "), "%s was released after %s: %s", c.Spec.Name, after, l)
	}
}

func TestFileReadinessReleasesTheDependentWhenTheFileAppears(t *testing.T) {
	env, _ := setup(t)
	pod := env.RunPod(t, filePod("file", "/run/db/ready", "--touch-after", "700ms", "--touch", "/run/db/ready"))
	app, db := pod.Container("app"), pod.Container("db")
	appStart := started(t, app)
	touched := harness.WaitWorkloadEvent(t, db, "TOUCH", 10*time.Second).At
	assert.True(t, appStart.After(touched), "app started %s before db's file appeared", touched.Sub(appStart))
	assert.Less(t, appStart.Sub(touched), 500*time.Millisecond, "seen by an event, not the 1 s safety net")
	t.Logf("RESULT file: db's file appeared → app first line %s", appStart.Sub(touched))
}

func TestFileReadinessThatNeverAppearsTimesOutSayingWhatIsMissing(t *testing.T) {
	env, po := setup(t)
	never := fmt.Sprintf("/run/podorder-e2e-never-%d", os.Getpid())
	spec := filePod("never", never)
	spec.Labels["podorder.dev/timeout.app"] = "2s"
	// The node's twin of the path exists: only db's own mount namespace counts.
	require.NoError(t, os.MkdirAll(never, 0o755))
	defer os.Remove(never)
	pod := env.RunPod(t, spec)
	app := pod.Container("app")
	code, _, _ := env.WaitExited(t, app.ID, 30*time.Second)
	assert.EqualValues(t, 255, code)
	assertLogContains(t, app, "podorder: app in pod default/never timed out after 2s waiting for db (ready): db is running but not ready")
	assertNoStart(t, app)
	recs := po.waitLog(t, "hold ended without release", 1, 10*time.Second)
	assert.Contains(t, fmt.Sprint(recs[0]["missing"]), "db is running but has not signalled ready (readiness file:"+never+", the path does not exist in the container yet)")
}

// TestNotifyMeasureSignalToDependentStart measures, without asserting, how long after the
// dependency's own signal (the workload's READY or TOUCH line) the dependent's first line comes.
func TestNotifyMeasureSignalToDependentStart(t *testing.T) {
	env, _ := setup(t)
	const samples = 20
	for _, source := range []string{"notify", "file"} {
		var lat []time.Duration
		for i := range samples {
			// A different delay each time: the signal falls at a random phase to everything else.
			after := fmt.Sprintf("%dms", 200+i*17%150)
			var spec harness.PodSpec
			var line string
			if source == "notify" {
				spec, line = notifyPod(fmt.Sprintf("m-notify-%d", i), "--notify-after", after), "READY"
			} else {
				spec, line = filePod(fmt.Sprintf("m-file-%d", i), "/run/ready", "--touch-after", after, "--touch", "/run/ready"), "TOUCH"
			}
			pod := env.RunPod(t, spec)
			appStart := started(t, pod.Container("app"))
			signal := harness.WaitWorkloadEvent(t, pod.Container("db"), line, 10*time.Second).At
			lat = append(lat, appStart.Sub(signal))
			env.StopPod(t, pod)
		}
		slices.Sort(lat)
		t.Logf("RESULT %s → dependent's START over %d pods: median %s, min %s, max %s", source, samples,
			lat[len(lat)/2], lat[0], lat[len(lat)-1])
	}
}
