package podstate

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/podorder/podorder/plugin/decl"
)

// shipped is a node as the DaemonSet ships podorder: probes, the API, stop-with, its own netns.
var shipped = Node{Probes: true, API: true, PodWatches: true, StopWith: true}

func TestAdmitDecidesHoldMountsAndWatchesOrRefusesWithTheFix(t *testing.T) {
	tests := map[string]struct {
		labels, annotations map[string]string
		node                Node
		container           string
		held, mounts        bool
		watch               []string
		refused             string // a part of the refusal's message; empty when admitted
	}{
		"a container that waits is held and mounted": {
			labels: map[string]string{"podorder.dev/after.app": "db"}, node: shipped, container: "app",
			held: true, mounts: true,
		},
		"a container others wait for is mounted for its preStop, not held": {
			labels: map[string]string{"podorder.dev/after.app": "db"}, node: shipped, container: "db",
			mounts: true,
		},
		"a container nobody names is neither": {
			labels: map[string]string{"podorder.dev/after.app": "db"}, node: shipped, container: "sidecar",
		},
		"a held container watches the pods it waits for": {
			annotations: map[string]string{"podorder.dev/after.app": "pod(app=db):ready"}, node: shipped, container: "app",
			held: true, mounts: true, watch: []string{"pod(app=db):ready"},
		},
		"a declaration error is refused with the parser's message": {
			labels: map[string]string{"podorder.dev/after.app": "app"}, node: shipped, container: "app",
			refused: "app waits for itself",
		},
		"a probe of a hostNetwork pod, from podorder's own netns": {
			labels: map[string]string{"podorder.dev/after.app": "db"}, annotations: map[string]string{"podorder.dev/probe.db": "tcp:5432"},
			node: Node{Probes: true, HostNetwork: true}, container: "db",
			refused: "podorder.dev/probe.db cannot be run for a hostNetwork pod",
		},
		"a probe of a hostNetwork pod, from the node's netns": {
			labels: map[string]string{"podorder.dev/after.app": "db"}, annotations: map[string]string{"podorder.dev/probe.db": "tcp:5432"},
			node: Node{Probes: true, HostNetwork: true, ProbeHostNetwork: true}, container: "db",
			mounts: true,
		},
		"stop-with where podorder cannot stop containers": {
			labels: map[string]string{"podorder.dev/stop-with.proxy": "main"}, node: Node{}, container: "proxy",
			refused: "runs with --stop-with=false",
		},
		"a pod dependency without the API": {
			annotations: map[string]string{"podorder.dev/after.app": "pod(app=db):ready"}, node: Node{}, container: "app",
			refused: "needs the Kubernetes API",
		},
		"a pod dependency on another namespace without a rule": {
			annotations: map[string]string{"podorder.dev/after.app": "pod(shared/app=db):ready"}, node: shipped, container: "app",
			refused: "--allow-cross-namespace=ns=shared",
		},
		"a pod dependency on another namespace with a rule": {
			annotations: map[string]string{"podorder.dev/after.app": "pod(shared/app=db):ready"}, container: "app",
			node: Node{PodWatches: true, CrossNamespace: CrossNamespaceRules{"ns": {"shared": true}}},
			held: true, mounts: true, watch: []string{"pod(shared/app=db):ready"},
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			p := New("uid", "ns", "web", decl.Parse(tt.labels, tt.annotations), tt.node, nil, nil)
			adm, err := p.Admit(Created{Name: tt.container, ID: tt.container + "-1", At: t0, Grace: time.Second})
			if tt.refused != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.refused)
				assert.Empty(t, p.Attempts, "a refusal changes nothing")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.held, adm.A.TS.Held(), "held")
			assert.Equal(t, tt.mounts, adm.Mounts, "mounts")
			var watch []string
			for _, d := range adm.Watch {
				watch = append(watch, d.String())
			}
			assert.Equal(t, tt.watch, watch, "watches")
			assert.Empty(t, p.Attempts, "Admit decides; Added records")
		})
	}
}

func TestAnAdmittedHeldAttemptSaysSoWhenAddedAndAnAdoptedOneDoesNot(t *testing.T) {
	p := New("uid", "ns", "web", decl.Parse(map[string]string{"podorder.dev/after.app": "db"}, nil), shipped, nil, nil)
	adm, err := p.Admit(Created{Name: "app", ID: "app-1", At: t0})
	require.NoError(t, err)
	assert.Subset(t, summary(p.Added(adm.A)), []string{"event PodorderWaiting"})

	q := New("uid", "ns", "web", decl.Parse(map[string]string{"podorder.dev/after.app": "db"}, nil), shipped, nil, nil)
	a, effects := q.Adopt(Created{Name: "app", ID: "app-1", At: t0}, true, false)
	assert.Empty(t, effects, "hooked and not yet started: nothing to say")
	assert.NotContains(t, summary(q.Added(a)), "event PodorderWaiting")
}

func TestAContainerCreatedWhilePodorderWasAwayIsReportedUnheldOrBlind(t *testing.T) {
	labels := map[string]string{"podorder.dev/after.app": "db"}
	tests := map[string]struct {
		hooked, ran bool
		effects     []string
		held, blind bool
	}{
		"without podorder's hook: it runs unheld":                    {hooked: false, effects: []string{"event PodorderUnheld"}},
		"with the hook, not started: held as usual":                  {hooked: true, held: true},
		"with the hook, started since: its hook sees an old store":   {hooked: true, ran: true, held: true, blind: true, effects: []string{"write app", "blind app"}},
		"without the hook, started since: unheld, and nothing blind": {hooked: false, ran: true, effects: []string{"event PodorderUnheld"}},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			p := New("uid", "ns", "web", decl.Parse(labels, nil), shipped, nil, nil)
			a, effects := p.Adopt(Created{Name: "app", ID: "app-1", At: t0}, tt.hooked, tt.ran)
			assert.Equal(t, tt.effects, summary(effects))
			assert.Equal(t, tt.held, a.TS.Held(), "held")
			assert.Equal(t, tt.blind, a.TS.Blind, "blind")
		})
	}
}

func TestTheRuntimesTreatmentOfAHeldStartIsFoundFromEvents(t *testing.T) {
	f := newPod(t, map[string]string{"podorder.dev/after.app": "db"}, Node{})
	app := f.create("app", 0)
	assert.Contains(t, f.pod.Starting(app, 0, at(0)), Effect(ArmRuntimeCheck{app}), "a held start arms the check")
	assert.Equal(t, []Effect{RuntimeFinding{Container: "app", Blocking: true}}, f.pod.RuntimeCheckDue(app),
		"still not started when the check is due: the runtime blocks its start")
	assert.Contains(t, f.pod.Started(app, at(1)), Effect(RuntimeFinding{Container: "app"}), "started while held: it does not")
	assert.Empty(t, f.pod.RuntimeCheckDue(app), "a check due after the start finds nothing")

	db := f.create("db", 2)
	assert.NotContains(t, summary(f.pod.Starting(db, 0, at(2))), "runtime check db", "a start that is not held is not checked")
}

func TestStopWithTracksTheProcessOnlyWherePodorderCanStopIt(t *testing.T) {
	labels := map[string]string{"podorder.dev/stop-with.proxy": "main"}
	for _, node := range []Node{{StopWith: true}, {}} {
		f := newPod(t, labels, node)
		proxy := f.create("proxy", 0)
		main := f.create("main", 0)
		effects := f.pod.Starting(proxy, 42, at(0))
		assert.Equal(t, node.StopWith, len(effects) == 1 && effects[0] == Effect(Track{A: proxy, PID: 42}), "track proxy on %+v", node)
		assert.Empty(t, f.pod.Starting(main, 43, at(0)), "main is bound to nothing")
	}
}

func TestADeclarationWarningIsSaidAtTheContainersFirstAttemptOnly(t *testing.T) {
	spec := []decl.Container{{Name: "migrate", Restarts: true}, {Name: "api", Restarts: true}}
	p := New("uid", "ns", "web", decl.Parse(map[string]string{"podorder.dev/after.api": "migrate_completed"}, nil), shipped, spec, nil)
	first, err := p.Admit(Created{Name: "api", ID: "api-1", At: t0})
	require.NoError(t, err, "podorder obeys it")
	assert.Contains(t, summary(p.Added(first.A)), "event PodorderDeclarationWarning")
	again, err := p.Admit(Created{Name: "api", ID: "api-2", At: t0})
	require.NoError(t, err)
	assert.NotContains(t, summary(p.Added(again.A)), "event PodorderDeclarationWarning", "once per container, not per restart")
}
