package e2e

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/podorder/podorder/plugin/timeline"
)

// podorderTimeline runs `podorder timeline pod -o format` against the running daemon's socket.
func podorderTimeline(t *testing.T, po *Podorder, pod, format string) []byte {
	t.Helper()
	cmd := exec.Command(filepath.Join(buildPodorder(t), "podorder"), "timeline", pod, "-o", format, "--store-dir="+po.Store.Root)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "podorder timeline %s -o %s: %s", pod, format, stderr.String())
	return out
}

// checkDemoTimeline asks the daemon for the demo pod's timeline in every form: web, api and db were
// created in that order; db ran unheld and its probe made it ready, which released api, whose
// probe released web — the critical path db → api → web. It returns the text chart.
func checkDemoTimeline(t *testing.T, po *Podorder, pod string) string {
	t.Helper()
	var c timeline.Chart
	require.NoError(t, json.Unmarshal(podorderTimeline(t, po, pod, "json"), &c))
	var bars []string
	byName := map[string]timeline.Bar{}
	for _, b := range c.Bars {
		bars = append(bars, b.Label())
		byName[b.Container] = b
	}
	require.Equal(t, []string{"web #0", "api #0", "db #0"}, bars, "one bar per attempt, in creation order")
	web, api, db := byName["web"], byName["api"], byName["db"]
	assert.Empty(t, db.HeldOn, "db waits for nothing")
	assert.Equal(t, "db (ready)", api.HeldOn)
	assert.Equal(t, "api (ready)", web.HeldOn)
	require.NotNil(t, db.Ready)
	require.NotNil(t, api.Released)
	require.NotNil(t, api.Ready)
	require.NotNil(t, web.Released)
	assert.Equal(t, "db", api.ReleasedBy)
	assert.Contains(t, api.ReleasedHow, "db ready (probe passed: tcp:")
	assert.Equal(t, "api", web.ReleasedBy)
	assert.Contains(t, web.ReleasedHow, "api ready (probe passed: http:")
	assert.False(t, api.Released.Before(*db.Ready), "api released once db is ready")
	assert.False(t, web.Released.Before(*api.Ready), "web released once api is ready")
	var critical []string
	for _, i := range c.Critical {
		critical = append(critical, c.Bars[i].Container)
	}
	assert.Equal(t, []string{"db", "api", "web"}, critical)

	svg := podorderTimeline(t, po, pod, "svg")
	checkSVG(t, svg)
	if path := os.Getenv("PODORDER_DEMO_SVG"); path != "" {
		// How docs/shop-timeline.svg is made: from this real run.
		require.NoError(t, os.WriteFile(path, svg, 0o644))
	}
	checkTrace(t, podorderTimeline(t, po, pod, "perfetto"), 3)

	text := string(podorderTimeline(t, po, pod, "text"))
	assert.Contains(t, text, "* db #0")
	assert.Contains(t, text, "legend:")
	assert.Contains(t, text, "critical path: db #0")
	return text
}

// checkSVG fails t unless svg is well-formed XML whose root is an svg element.
func checkSVG(t *testing.T, svg []byte) {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(svg))
	root := ""
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		if se, ok := tok.(xml.StartElement); ok && root == "" {
			root = se.Name.Local
		}
	}
	assert.Equal(t, "svg", root)
}

// checkTrace fails t unless trace is Chrome / Perfetto trace-event JSON with bars tracks: every event
// has name, ph (X with a dur, i, or M), ts, pid and tid, and timestamps never go back on a track.
func checkTrace(t *testing.T, trace []byte, bars int) {
	t.Helper()
	var doc struct {
		TraceEvents []struct {
			Name, Ph string
			TS       *int64
			Dur      *int64
			PID, TID *int
		} `json:"traceEvents"`
		DisplayTimeUnit string `json:"displayTimeUnit"`
	}
	require.NoError(t, json.Unmarshal(trace, &doc))
	assert.Equal(t, "ms", doc.DisplayTimeUnit)
	last := map[int]int64{}
	tracks := map[int]bool{}
	for _, e := range doc.TraceEvents {
		require.NotEmpty(t, e.Name)
		require.NotNil(t, e.TS, "ts of %s", e.Name)
		require.NotNil(t, e.PID)
		require.NotNil(t, e.TID)
		switch e.Ph {
		case "M":
			continue
		case "X":
			require.NotNil(t, e.Dur, "dur of %s", e.Name)
			assert.GreaterOrEqual(t, *e.Dur, int64(0))
		case "i":
		default:
			t.Errorf("ph %q of %s", e.Ph, e.Name)
		}
		assert.GreaterOrEqual(t, *e.TS, last[*e.TID], "ts goes back on track %d at %s", *e.TID, e.Name)
		last[*e.TID] = *e.TS
		if *e.TID > 0 {
			tracks[*e.TID] = true
		}
	}
	assert.Len(t, tracks, bars, "a track per bar")
}
