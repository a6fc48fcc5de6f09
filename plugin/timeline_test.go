package plugin

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/podorder/podorder/plugin/podstate"
)

func TestATimelineOutlivesItsPodAndTheNodeKeepsTheLastOnes(t *testing.T) {
	f := newFixture(t, map[string]string{"podorder.dev/after.app": "db_started"}, nil)
	app, _, err := f.create(t, "app")
	require.NoError(t, err)
	f.start(t, app)
	db, _, err := f.create(t, "db")
	require.NoError(t, err)
	f.start(t, db)

	live, ok := f.p.Timeline("ns/web")
	require.True(t, ok)
	assert.False(t, live.Removed)
	var kinds []string
	for _, e := range live.Entries {
		kinds = append(kinds, e.Container+" "+e.Kind)
	}
	assert.Contains(t, kinds, "app released")
	assert.Contains(t, kinds, " pod-released", "the pod's condition turned released")

	require.NoError(t, f.p.RemovePodSandbox(f.ctx, f.sb))
	gone, ok := f.p.Timeline("ns/web")
	require.True(t, ok, "a removed pod's timeline is kept")
	assert.True(t, gone.Removed)
	assert.Len(t, gone.Entries, len(live.Entries))
	_, ok = f.p.Timeline(f.sb.Uid)
	assert.True(t, ok, "found by UID too")

	for i := range podstate.KeptTimelines {
		f.sb.Uid, f.sb.Name = fmt.Sprint("uid-more-", i), fmt.Sprint("more-", i)
		c, _, err := f.create(t, "db")
		require.NoError(t, err)
		f.start(t, c)
		require.NoError(t, f.p.RemovePodSandbox(f.ctx, f.sb))
	}
	_, ok = f.p.Timeline("ns/web")
	assert.False(t, ok, "only the last %d removed pods are kept", podstate.KeptTimelines)
	var last podstate.TimelineReport
	last, ok = f.p.Timeline("ns/more-0")
	assert.True(t, ok)
	assert.True(t, last.Removed)
}
