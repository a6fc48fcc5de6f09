package e2e

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/podorder/podorder/plugin/podstate"
	"github.com/podorder/podorder/test/harness"
)

// `podorder status` asks the running daemon, through its socket, who is held and for what.
func TestStatusShowsEachHeldContainerAndWhatItWaitsFor(t *testing.T) {
	env, po := setup(t)
	pod := env.RunPod(t, harness.PodSpec{
		Name:   "waiting",
		Labels: map[string]string{"podorder.dev/after.app": "db", "podorder.dev/timeout.app": "5m"},
		Containers: []harness.ContainerSpec{
			{Name: "app", Args: args("app")},
		},
	})
	require.NoError(t, pod.Container("app").StartErr)
	cli := func(args ...string) string {
		out, err := exec.Command(filepath.Join(buildPodorder(t), "podorder"), append([]string{"status", "--store-dir=" + po.Store.Root}, args...)...).CombinedOutput()
		require.NoError(t, err, "%s", out)
		return string(out)
	}
	table := cli()
	assert.Regexp(t, `^node: NRI connected, containerd 2\.4\.2, .+\n`, table, "the node's preflight heads the table")
	assert.Regexp(t, `(?m)^\S+/waiting\s+app\s+held\s+db \(ready\): db has not been created yet\s+\d+s ago\s+4m5\ds$`, table)
	assert.Contains(t, table, "pods using podorder on this node: 1, held containers: 1")

	var pods []podstate.PodReport
	require.NoError(t, json.Unmarshal([]byte(cli("-o", "json")), &pods))
	require.Len(t, pods, 1)
	assert.False(t, pods[0].Released)
	require.Len(t, pods[0].Containers, 1)
	app := pods[0].Containers[0]
	assert.Equal(t, "held", app.State)
	assert.Equal(t, []podstate.DependencyReport{{Dependency: "db (ready)", State: "db has not been created yet"}}, app.WaitsFor)
	assert.Greater(t, app.TimeoutLeft, 4*time.Minute)
}
