package podstate

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// kinds renders a timeline as "container kind [cause] detail" lines.
func kinds(tl Timeline) []string {
	var out []string
	for _, e := range tl.Entries {
		line := e.Container + " " + e.Kind
		if e.Cause != "" {
			line += " by " + e.Cause
		}
		if e.Detail != "" {
			line += ": " + e.Detail
		}
		out = append(out, line)
	}
	return out
}

func TestTheTimelineSaysWhatHeldEachContainerAndWhatReleasedIt(t *testing.T) {
	f := newPod(t, map[string]string{"podorder.dev/after.web": "api", "podorder.dev/after.api": "db_started"}, Node{})
	web, _ := f.run("web", 0)
	f.run("api", 1)
	f.run("db", 2)
	f.pod.Exited(web, 3, false, at(4))
	assert.Equal(t, []string{
		"web created",
		"web held: api (ready)",
		"web starting",
		"web running",
		"api created",
		"api held: db (started)",
		"api starting",
		"api running",
		"db created",
		"db starting",
		"db running",
		"db ready: no readiness check",
		"api released by db: db started",
		"api ready: no readiness check",
		"web released by api: api ready (no readiness check)",
		"web ready: no readiness check",
		"web exited",
	}, kinds(f.pod.Timeline))
	last := f.pod.Timeline.Entries[len(f.pod.Timeline.Entries)-1]
	assert.Equal(t, int32(3), last.Code)
	assert.Equal(t, at(4), last.At)
}

func TestATimelineStaysBoundedDroppingOldAttemptsFirst(t *testing.T) {
	f := newPod(t, map[string]string{"podorder.dev/after.app": "db_started"}, Node{})
	f.run("db", 0)
	for i := range MaxTimeline {
		a, _ := f.run("app", float64(1+i))
		f.pod.Exited(a, 1, false, at(float64(1+i)+0.5))
	}
	tl := f.pod.Timeline
	require.Len(t, tl.Entries, MaxTimeline)
	assert.Positive(t, tl.Dropped)
	assert.Equal(t, "db", tl.Entries[0].Container, "db's attempt is still current: it stays")
	assert.Equal(t, fmt.Sprint("app-", MaxTimeline), tl.Entries[len(tl.Entries)-1].ID)
}
