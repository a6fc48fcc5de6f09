package timeline

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/podorder/podorder/plugin/decl"
	"github.com/podorder/podorder/plugin/podstate"
)

var update = flag.Bool("update", false, "rewrite testdata/ from the current output")

var t0 = time.Date(2026, 12, 4, 9, 0, 0, 0, time.UTC)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

// scenario drives podstate, the daemon's own state machine, through a fixed sequence of events.
type scenario struct {
	t   *testing.T
	pod *podstate.Pod
	a   map[string]*podstate.Attempt
}

func newScenario(t *testing.T, labels, annotations map[string]string) *scenario {
	d := decl.Parse(labels, annotations)
	return &scenario{t: t, pod: podstate.New("uid-shop", "default", "shop", d, podstate.Node{Probes: true, StopWith: true}, nil, nil), a: map[string]*podstate.Attempt{}}
}

func (s *scenario) step(ms int, event func(now time.Time)) {
	event(at(ms))
	s.pod.ConditionUpdate(at(ms))
}

// run creates a container's attempt at ms, and starts it 5 ms later, as kubelet does.
func (s *scenario) run(name string, attempt uint32, ms int) {
	s.step(ms, func(now time.Time) {
		adm, err := s.pod.Admit(podstate.Created{Name: name, ID: name + "-" + string(rune('a'+attempt)), Attempt: attempt, At: now, Grace: 30 * time.Second})
		require.NoError(s.t, err)
		s.a[name] = adm.A
		s.pod.Added(adm.A)
	})
	s.step(ms+2, func(now time.Time) { s.pod.Starting(s.a[name], 0, now) })
	s.step(ms+5, func(now time.Time) { s.pod.Started(s.a[name], now) })
}

func (s *scenario) report(ms int, removed bool) podstate.TimelineReport {
	r := s.pod.TimelineAt(at(ms))
	r.Removed = removed
	return r
}

// demo is the README's pod, declared in reverse order: web after api, api after db, each ready on
// podorder's probe; it starts, then is deleted.
func demo(t *testing.T) podstate.TimelineReport {
	s := newScenario(t, map[string]string{"podorder.dev/after.web": "api", "podorder.dev/after.api": "db"},
		map[string]string{"podorder.dev/probe.db": "tcp:5432", "podorder.dev/probe.api": "http:8080/healthz"})
	s.run("web", 0, 0)
	s.run("api", 0, 20)
	s.run("db", 0, 40)
	s.step(852, func(now time.Time) { s.pod.ProbePassed(s.a["db"], now) })
	s.step(1213, func(now time.Time) { s.pod.ProbePassed(s.a["api"], now) })
	s.step(4000, func(now time.Time) { s.pod.Observed(podstate.Observation{Terminating: true}, now) })
	s.step(4120, func(now time.Time) { s.pod.Exited(s.a["web"], 0, false, now) })
	s.step(4350, func(now time.Time) { s.pod.Exited(s.a["api"], 0, false, now) })
	s.step(4500, func(now time.Time) { s.pod.Exited(s.a["db"], 143, false, now) })
	return s.report(4600, true)
}

// timeout is a container whose dependency is late: its first hold times out, its second attempt
// is released; a stop-with sidecar stops when it exits.
func timeout(t *testing.T) podstate.TimelineReport {
	s := newScenario(t, map[string]string{"podorder.dev/after.app": "db_started", "podorder.dev/timeout.app": "2s",
		"podorder.dev/stop-with.proxy": "app"}, nil)
	s.run("proxy", 0, 0)
	s.run("app", 0, 10)
	s.step(2510, func(now time.Time) { s.pod.Exited(s.a["app"], podstate.HookFailedExitCode, false, now) })
	s.step(2540, func(now time.Time) { s.pod.Exited(s.a["proxy"], 0, false, now) })
	s.run("app", 1, 2600)
	s.run("db", 0, 3000)
	s.step(3900, func(now time.Time) { s.pod.Exited(s.a["app"], 1, false, now) })
	return s.report(4000, false)
}

func TestEachOutputOfATimelineIsAsRecorded(t *testing.T) {
	writers := map[string]func(io.Writer, Chart) error{
		".txt": WriteText, ".svg": WriteSVG, ".json": WriteJSON, ".perfetto.json": WritePerfetto,
	}
	for name, report := range map[string]func(*testing.T) podstate.TimelineReport{"demo": demo, "timeout": timeout} {
		c := Build(report(t))
		for ext, write := range writers {
			t.Run(name+ext, func(t *testing.T) {
				var out bytes.Buffer
				require.NoError(t, write(&out, c))
				path := filepath.Join("testdata", name+ext)
				if *update {
					require.NoError(t, os.WriteFile(path, out.Bytes(), 0o644))
				}
				want, err := os.ReadFile(path)
				require.NoError(t, err)
				assert.Equal(t, string(want), out.String(), "go test ./plugin/timeline -update rewrites %s", path)
			})
		}
	}
}

func TestTheDemoPodsCriticalPathIsDbThenApiThenWeb(t *testing.T) {
	c := Build(demo(t))
	var names []string
	for _, b := range c.Bars {
		names = append(names, b.Label())
	}
	assert.Equal(t, []string{"web #0", "api #0", "db #0"}, names, "bars in creation order")
	var path []string
	for _, i := range c.Critical {
		path = append(path, c.Bars[i].Container)
	}
	assert.Equal(t, []string{"db", "api", "web"}, path)
	web := c.Bars[0]
	assert.Equal(t, "api", web.ReleasedBy)
	assert.Equal(t, "api ready (probe passed: http:8080/healthz)", web.ReleasedHow)
	var phases []string
	for _, s := range web.Segments {
		phases = append(phases, s.Phase)
	}
	assert.Equal(t, []string{PhaseHeld, PhaseRunning, PhaseReady, PhaseStopping}, phases)
}

func TestATimedOutHoldIsNotOnTheCriticalPathButTheAttemptAfterItIs(t *testing.T) {
	c := Build(timeout(t))
	var path []string
	for _, i := range c.Critical {
		path = append(path, c.Bars[i].Label())
	}
	assert.Equal(t, []string{"db #0", "app #1"}, path)
	assert.Equal(t, "hold timed out", c.Bars[1].ExitHow)
	assert.Equal(t, int32(255), *c.Bars[1].ExitCode)
}

func TestTheTextChartFitsOneHundredColumns(t *testing.T) {
	for _, r := range []podstate.TimelineReport{demo(t), timeout(t)} {
		var out bytes.Buffer
		require.NoError(t, WriteText(&out, Build(r)))
		for _, line := range strings.Split(out.String(), "\n") {
			assert.LessOrEqual(t, utf8.RuneCountInString(line), Width, "%q", line)
		}
	}
}

func TestTheSVGIsWellFormedXML(t *testing.T) {
	for _, r := range []podstate.TimelineReport{demo(t), timeout(t), {Pod: "ns/empty"}} {
		var out bytes.Buffer
		require.NoError(t, WriteSVG(&out, Build(r)))
		CheckSVG(t, out.Bytes())
	}
}

func TestThePerfettoTraceFollowsTheTraceEventFormat(t *testing.T) {
	for _, r := range []podstate.TimelineReport{demo(t), timeout(t), {Pod: "ns/empty"}} {
		var out bytes.Buffer
		require.NoError(t, WritePerfetto(&out, Build(r)))
		CheckTrace(t, out.Bytes())
	}
}

// CheckSVG fails t unless svg is well-formed XML whose root is an svg element.
func CheckSVG(t testing.TB, svg []byte) {
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

// CheckTrace fails t unless trace is trace-event JSON: every event has name, ph, ts, pid and tid,
// ph is X (with a dur ≥ 0), i (with a scope) or M, and timestamps never go back on a track.
func CheckTrace(t testing.TB, trace []byte) {
	t.Helper()
	var doc struct {
		TraceEvents     []map[string]any `json:"traceEvents"`
		DisplayTimeUnit string           `json:"displayTimeUnit"`
	}
	require.NoError(t, json.Unmarshal(trace, &doc))
	assert.Equal(t, "ms", doc.DisplayTimeUnit)
	require.NotEmpty(t, doc.TraceEvents)
	last := map[float64]float64{}
	for _, e := range doc.TraceEvents {
		for _, field := range []string{"name", "ph", "ts", "pid", "tid"} {
			require.Contains(t, e, field, "%v", e)
		}
		tid, ts := e["tid"].(float64), e["ts"].(float64)
		switch e["ph"] {
		case "X":
			require.Contains(t, e, "dur", "%v", e)
			assert.GreaterOrEqual(t, e["dur"].(float64), 0.0)
		case "i":
			assert.Contains(t, []any{"t", "p", "g"}, e["s"], "%v", e)
		case "M":
			continue
		default:
			t.Errorf("ph %v: want X, i or M", e["ph"])
		}
		assert.GreaterOrEqual(t, ts, last[tid], "timestamps go back on track %v: %v", tid, e)
		last[tid] = ts
	}
}
