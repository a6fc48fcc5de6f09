package plugin

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/podorder/podorder/condition"
	"github.com/podorder/podorder/spec"
)

func TestAdjustmentMountsHookAndStoreReadOnlyAndWaitsForEachDependency(t *testing.T) {
	hold := &spec.Hold{Timeout: 90 * time.Second, After: []condition.Dependency{
		{Container: "db", Condition: condition.Ready}, {Container: "migrate", Condition: condition.Completed}}}
	adj := Adjustment("/opt/podorder/bin/podorder-hook", HoldTarget{Pod: "ns/web", Container: "app", PodDir: "/run/podorder/pods/u1"}, hold)

	require.Len(t, adj.Mounts, 2)
	assert.Equal(t, HookPath, adj.Mounts[0].Destination)
	assert.Equal(t, "/opt/podorder/bin/podorder-hook", adj.Mounts[0].Source)
	assert.Contains(t, adj.Mounts[0].Options, "ro")
	assert.Equal(t, StorePath, adj.Mounts[1].Destination)
	assert.Equal(t, "/run/podorder/pods/u1", adj.Mounts[1].Source)
	assert.Contains(t, adj.Mounts[1].Options, "ro")

	require.Len(t, adj.Hooks.StartContainer, 1)
	h := adj.Hooks.StartContainer[0]
	assert.Equal(t, HookPath, h.Path)
	assert.Equal(t, []string{"podorder-hook", "--dir=" + StorePath, "--pod=ns/web", "--container=app", "--timeout=1m30s", "db=ready", "migrate=completed"}, h.Args)
	assert.EqualValues(t, 100, h.Timeout.Value, "runtime timeout is the hold plus grace, so the hook reports its own timeout")
	assert.Empty(t, adj.Hooks.Prestart, "only startContainer: it runs inside the container after start returns")
}
