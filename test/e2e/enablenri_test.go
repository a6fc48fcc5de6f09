package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/podorder/podorder/test/harness"
)

// A private containerd v2.4.2 whose config turns NRI off, as some distributions ship it, serves no
// NRI socket; `podorder enable-nri` flips that one switch in the file, and once containerd has
// restarted on the patched file, the podorder daemon connects and holds a container.
func TestEnableNRIPatchesAContainerdThatHadNRIOffAndPodorderThenHolds(t *testing.T) {
	env := harness.Start(t, harness.Options{NRIDisabled: true})
	env.ImportWorkloadImages(t)
	_, err := os.Stat(env.NRISocket)
	require.ErrorIs(t, err, os.ErrNotExist, "containerd serves no NRI socket while its config turns NRI off")

	original, err := os.ReadFile(env.ConfigPath())
	require.NoError(t, err)
	require.Contains(t, string(original), "  disable = true\n")
	enable := func() string {
		out, err := exec.Command(filepath.Join(buildPodorder(t), "podorder"), "enable-nri", "--config", env.ConfigPath()).CombinedOutput()
		require.NoError(t, err, "%s", out)
		return string(out)
	}
	out := enable()
	assert.Contains(t, out, "-  disable = true\n+  disable = false\n")
	assert.Contains(t, out, "systemctl restart containerd")
	patched, err := os.ReadFile(env.ConfigPath())
	require.NoError(t, err)
	assert.Equal(t, strings.Replace(string(original), "  disable = true\n", "  disable = false\n", 1), string(patched), "only the switch changed")
	backup, err := os.ReadFile(env.ConfigPath() + ".podorder-backup")
	require.NoError(t, err)
	assert.Equal(t, string(original), string(backup))
	assert.Contains(t, enable(), "NRI is on: its section sets neither disable nor disable_connections to true; nothing to change", "a second run changes nothing")

	// containerd reads its config only at start.
	env.Restart(t)
	po := startPodorder(t, env) // returns once the daemon has synchronized with containerd over NRI
	pod := env.RunPod(t, harness.PodSpec{
		Name:   "after-enable",
		Labels: map[string]string{"podorder.dev/after.app": "db", "podorder.dev/timeout.app": "5m"},
		Containers: []harness.ContainerSpec{
			{Name: "app", Args: args("app")},
		},
	})
	require.NoError(t, pod.Container("app").StartErr)
	status, err := exec.Command(filepath.Join(buildPodorder(t), "podorder"), "status", "--store-dir="+po.Store.Root).CombinedOutput()
	require.NoError(t, err, "%s", status)
	assert.Regexp(t, `^node: NRI connected, containerd 2\.4\.2, `, string(status))
	assert.Regexp(t, `(?m)^\S+/after-enable\s+app\s+held\s+db \(ready\)`, string(status), "the hook podorder injected through NRI holds app")
}
