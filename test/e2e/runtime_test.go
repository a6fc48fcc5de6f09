package e2e

import (
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/podorder/podorder/test/harness"
)

// debianRunc is runc 1.1.5 from Debian 12: it runs startContainer hooks before `runc start` returns.
const debianRunc = "/usr/sbin/runc"

func TestOldRuncThatBlocksStartDuringAHoldIsReported(t *testing.T) {
	if _, err := os.Stat(debianRunc); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is missing: hack/install-deps.sh installs Debian's runc", debianRunc)
		}
		t.Skipf("%s is missing: run hack/install-deps.sh", debianRunc)
	}
	env := harness.Start(t, harness.Options{RuncPath: debianRunc})
	env.ImportWorkloadImages(t)
	po := startPodorder(t, env)
	pod := env.RunPod(t, harness.PodSpec{
		Name:   "oldrunc",
		Labels: map[string]string{"podorder.dev/after.app": "db_started", "podorder.dev/timeout.app": "4s"},
		Containers: []harness.ContainerSpec{
			{Name: "app", Args: args("app")},
			{Name: "db", Args: args("db")},
		},
	})
	recs := po.waitLog(t, "did not return within", 1, 10*time.Second)
	assert.Contains(t, recs[0]["msg"], "Upgrade runc on this node to >= 1.2.8, >= 1.3.3 or 1.4+")
	app := pod.Container("app")
	// The whole hold ran inside StartContainer: kubelet would have stalled the pod, so db was only
	// created after app's hold had ended at its timeout.
	assert.GreaterOrEqual(t, app.StartTook, 2*time.Second)
	code, _, _ := env.WaitExited(t, app.ID, 30*time.Second)
	assert.NotZero(t, code, "the hold ended at its timeout: db could only be created after app's StartContainer returned")
	assertNoStart(t, app)
	require.NoError(t, pod.Container("db").CreateErr)
}

func TestCurrentRuncReturnsFromStartWhileHeldAndIsReported(t *testing.T) {
	env, po := setup(t)
	env.RunPod(t, harness.PodSpec{
		Name:       "newrunc",
		Labels:     map[string]string{"podorder.dev/after.app": "db_started"},
		Containers: []harness.ContainerSpec{{Name: "app", Args: args("app")}},
	})
	po.waitLog(t, "returned from start while a container was held", 1, 10*time.Second)
	assert.Empty(t, po.Logs(t, "did not return within"))
}
