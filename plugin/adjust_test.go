package plugin

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/podorder/podorder/hooks/dependency"
	"github.com/podorder/podorder/plugin/decl"
)

func TestAdjustmentMountsHookAndStoreReadOnlyAndWaitsForEachDependency(t *testing.T) {
	hold := &decl.Declared{Timeout: 90 * time.Second, After: []dependency.Dependency{
		{Container: "db", Condition: dependency.Ready}, {Container: "migrate", Condition: dependency.Completed}}}
	adj := Adjustment("/opt/podorder/bin/podorder-hook", HoldTarget{Pod: "ns/web", Container: "app", ID: "c1",
		PodDir: "/run/podorder/pods/u1", WakeDir: "/run/podorder/wake/u1/app"}, hold)

	require.Len(t, adj.Mounts, 3)
	assert.Equal(t, HookPath, adj.Mounts[0].Destination)
	assert.Equal(t, "/opt/podorder/bin/podorder-hook", adj.Mounts[0].Source)
	assert.Contains(t, adj.Mounts[0].Options, "ro")
	assert.Equal(t, StorePath, adj.Mounts[1].Destination)
	assert.Equal(t, "/run/podorder/pods/u1", adj.Mounts[1].Source)
	assert.Contains(t, adj.Mounts[1].Options, "ro")
	assert.Equal(t, WakePath, adj.Mounts[2].Destination)
	assert.Equal(t, "/run/podorder/wake/u1/app", adj.Mounts[2].Source, "the container's own wake directory, no other's")

	require.Len(t, adj.Hooks.StartContainer, 1)
	h := adj.Hooks.StartContainer[0]
	assert.Equal(t, HookPath, h.Path)
	assert.Equal(t, []string{"podorder-hook", "--dir=" + StorePath, "--wake=/.podorder/wake/wake", "--pod=ns/web", "--container=app", "--id=c1", "--timeout=1m30s", "db=ready", "migrate=completed"}, h.Args)
	assert.EqualValues(t, 100, h.Timeout.Value, "runtime timeout is the hold plus grace, so the hook reports its own timeout")
	assert.Empty(t, adj.Hooks.Prestart, "only startContainer: it runs inside the container after start returns")
}

func TestHookTimeoutSaturatesInsteadOfOverflowing(t *testing.T) {
	tests := []struct {
		hold time.Duration
		want int64
	}{
		{90 * time.Second, 100},
		{90*time.Second + time.Millisecond, 101},
		{decl.MaxTimeout, 24*3600 + 10},
		{time.Duration(1<<63 - 1), 1<<31 - 1},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, hookTimeoutSeconds(tt.hold), tt.hold.String())
	}
}
