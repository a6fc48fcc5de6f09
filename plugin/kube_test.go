package plugin

import (
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/podorder/podorder/hooks/dependency"
	"github.com/podorder/podorder/plugin/decl"
	"github.com/podorder/podorder/plugin/kubeapi"
	"github.com/podorder/podorder/plugin/podstate"
)

type fakeEvents struct{ reasons []string }

func (f *fakeEvents) Event(_ kubeapi.PodRef, _ bool, reason, message string) {
	f.reasons = append(f.reasons, reason+": "+message)
}

type fakeWatcher struct {
	updates map[string]func(bool)
	refuse  error // when set, every Watch is refused with it
}

func (f *fakeWatcher) Watch(ns, sel string, cond dependency.Condition, update func(bool)) (func(), error) {
	if f.refuse != nil {
		return nil, f.refuse
	}
	f.updates[ns+"/"+sel+":"+string(cond)] = update
	return func() { delete(f.updates, ns+"/"+sel+":"+string(cond)) }, nil
}

// fakeSpecs maps pod UID to container names; every container has a readinessProbe unless its name
// ends in "-noprobe", and podorder can run it itself (tcp:5432) when the name ends in "-fast".
type fakeSpecs map[string][]string

func (f fakeSpecs) Status(string) (podstate.Observation, bool) { return podstate.Observation{}, false }

func (f fakeSpecs) Containers(uid string) ([]decl.Container, bool) {
	names, ok := f[uid]
	var out []decl.Container
	for _, n := range names {
		c := decl.Container{Name: n, ReadinessProbe: !strings.HasSuffix(n, "-noprobe")}
		if strings.HasSuffix(n, "-fast") {
			c.ReadinessCheck = &decl.Probe{Kind: "tcp", Port: 5432, Readiness: true}
		}
		out = append(out, c)
	}
	return out, ok
}

// kubeletReady is the API reporting that kubelet calls the container attempt id ready.
func kubeletReady(p *Plugin, podUID, container, id string) {
	p.PodObserved(podUID, podstate.Observation{Ready: []podstate.ReadyContainer{{Name: container, ID: id}}})
}

func newKubeFixture(t *testing.T, labels, annotations map[string]string) (*fixture, *fakeEvents, *fakeWatcher) {
	f := newFixture(t, labels, annotations)
	ev, w := &fakeEvents{}, &fakeWatcher{updates: map[string]func(bool){}}
	f.p = New(Config{HookBinary: "/hook", BlockingStartAfter: time.Hour, CrossNamespace: podstate.CrossNamespaceRules{"ns": {"shared": true}},
		Kube: &Kubernetes{Events: ev, Pods: w, Specs: fakeSpecs{"uid-1": {"app", "db"}}}},
		f.store, f.prober, slog.New(slog.NewTextHandler(f.logs, nil)))
	return f, ev, w
}

func TestWithTheAPIReadyNeedsKubeletReadinessAndTheRelease(t *testing.T) {
	f, ev, _ := newKubeFixture(t, map[string]string{"podorder.dev/after.app": "db", "podorder.dev/after.db": "x_started"}, nil)
	app, _, err := f.create(t, "app")
	require.NoError(t, err)
	f.start(t, app)
	_, adj, err := f.create(t, "db")
	require.Error(t, err, "x is not in the pod per the API")
	assert.Contains(t, err.Error(), "container db waits for x, which is not in the pod; containers are: app, db")
	assert.Nil(t, adj)
	assert.Contains(t, ev.reasons[len(ev.reasons)-1], "PodorderRejected")

	f2, ev, _ := newKubeFixture(t, map[string]string{"podorder.dev/after.app": "db"}, nil)
	app, _, _ = f2.create(t, "app")
	f2.start(t, app)
	db, _, _ := f2.create(t, "db")
	f2.start(t, db)
	assert.Nil(t, f2.tomb(t, "db").ReadyAt, "running is not ready when kubelet's readiness is known")
	kubeletReady(f2.p, "uid-1", "db", "stale-id")
	assert.Nil(t, f2.tomb(t, "db").ReadyAt, "a status of another attempt is ignored")
	kubeletReady(f2.p, "uid-1", "db", db.Id)
	assert.NotNil(t, f2.tomb(t, "db").ReadyAt)
	assert.NotNil(t, f2.tomb(t, "app").ReleasedAt)
	require.Len(t, ev.reasons, 2)
	assert.Contains(t, ev.reasons[0], "PodorderWaiting: container app waits for db (ready) (timeout 10m0s)")
	assert.Contains(t, ev.reasons[1], "PodorderReleased: container app released ")
}

func TestPodorderEvaluatesAReadinessProbeItselfAndKubeletsVerdictIsNotAwaited(t *testing.T) {
	f, ev, _ := newKubeFixture(t, map[string]string{"podorder.dev/after.app": "db-fast"}, nil)
	f.p.cfg.Kube.Specs = fakeSpecs{"uid-1": {"app", "db-fast"}}
	app, _, _ := f.create(t, "app")
	f.start(t, app)
	db, _, _ := f.create(t, "db-fast")
	f.start(t, db)
	require.NotNil(t, f.prober.started[5432], "db's readinessProbe runs on the node")
	assert.True(t, f.prober.probes[5432].Readiness)
	assert.Equal(t, "ns/uid-1", f.prober.owners[5432], "the probe counts towards its pod's share")
	assert.Nil(t, f.tomb(t, "app").ReleasedAt, "running is not ready")
	f.prober.started[5432]()
	assert.NotNil(t, f.tomb(t, "db-fast").ReadyAt, "ready on podorder's evaluation, before kubelet's")
	assert.NotNil(t, f.tomb(t, "app").ReleasedAt)
	assert.Contains(t, ev.reasons[len(ev.reasons)-1], "PodorderReleased")
}

func TestKubeletsVerdictReleasesWhilePodordersProbeOfTheSameCheckHasNotDecided(t *testing.T) {
	f, _, _ := newKubeFixture(t, map[string]string{"podorder.dev/after.app": "db-fast"}, nil)
	f.p.cfg.Kube.Specs = fakeSpecs{"uid-1": {"app", "db-fast"}}
	app, _, _ := f.create(t, "app")
	f.start(t, app)
	db, _, _ := f.create(t, "db-fast")
	f.start(t, db)
	require.NotNil(t, f.prober.started[5432], "db's readinessProbe runs on the node")
	kubeletReady(f.p, "uid-1", "db-fast", db.Id)
	assert.NotNil(t, f.tomb(t, "db-fast").ReadyAt)
	assert.NotNil(t, f.tomb(t, "app").ReleasedAt, "kubelet's verdict on the same check releases")
	assert.Empty(t, f.prober.started, "the probe ended: nobody needs its verdict any more")
}

func TestReadinessFromKubeletOptsOutOfPodordersEvaluation(t *testing.T) {
	f, _, _ := newKubeFixture(t, map[string]string{"podorder.dev/after.app": "db-fast", "podorder.dev/readiness.db-fast": "kubelet"}, nil)
	f.p.cfg.Kube.Specs = fakeSpecs{"uid-1": {"app", "db-fast"}}
	app, _, _ := f.create(t, "app")
	f.start(t, app)
	db, _, _ := f.create(t, "db-fast")
	f.start(t, db)
	assert.Empty(t, f.prober.started, "no node-local probe")
	assert.Nil(t, f.tomb(t, "app").ReleasedAt)
	kubeletReady(f.p, "uid-1", "db-fast", db.Id)
	assert.NotNil(t, f.tomb(t, "app").ReleasedAt, "kubelet's verdict releases")
}

func TestARefusedReadinessProbeFallsBackToKubelet(t *testing.T) {
	f, ev, _ := newKubeFixture(t, map[string]string{"podorder.dev/after.app": "db-fast"}, nil)
	f.p.cfg.Kube.Specs = fakeSpecs{"uid-1": {"app", "db-fast"}}
	f.prober.refuse = errors.New("node probe limit of 512 reached")
	app, _, _ := f.create(t, "app")
	f.start(t, app)
	db, _, _ := f.create(t, "db-fast")
	f.start(t, db)
	assert.Contains(t, strings.Join(ev.reasons, "\n"), "PodorderProbeRefused: the probe readinessProbe tcp:5432 of container db-fast cannot run: node probe limit of 512 reached; its readiness comes from kubelet instead")
	assert.Nil(t, f.tomb(t, "app").ReleasedAt)
	kubeletReady(f.p, "uid-1", "db-fast", db.Id)
	assert.NotNil(t, f.tomb(t, "app").ReleasedAt)
}

func TestKubeletReadinessOfAHeldContainerCountsOnlyOnceReleased(t *testing.T) {
	f, _, _ := newKubeFixture(t, map[string]string{"podorder.dev/after.app": "db_started"}, nil)
	app, _, _ := f.create(t, "app")
	f.start(t, app)
	kubeletReady(f.p, "uid-1", "app", app.Id) // kubelet calls a held container without a probe ready
	assert.Nil(t, f.tomb(t, "app").ReadyAt)
	db, _, _ := f.create(t, "db")
	f.start(t, db)
	assert.NotNil(t, f.tomb(t, "app").ReleasedAt)
	assert.NotNil(t, f.tomb(t, "app").ReadyAt, "released and kubelet-ready")
}

func TestCrossPodDependencyReleasesWhenAMatchingPodMeetsTheCondition(t *testing.T) {
	f, ev, w := newKubeFixture(t, nil, map[string]string{"podorder.dev/after.app": "pod(app=first):ready"})
	app, adj, err := f.create(t, "app")
	require.NoError(t, err)
	require.NotNil(t, adj)
	f.start(t, app)
	update := w.updates["ns/app=first:ready"]
	require.NotNil(t, update, "watching the selector in the pod's own namespace")
	update(false)
	assert.Nil(t, f.tomb(t, "app").ReleasedAt)
	update(true)
	assert.NotNil(t, f.tomb(t, "app").ReleasedAt)
	assert.Contains(t, ev.reasons[len(ev.reasons)-1], "pod(app=first):ready met")

	require.NoError(t, f.p.RemovePodSandbox(f.ctx, f.sb))
	assert.Empty(t, w.updates, "watches end with the pod")
}

func TestCrossNamespaceAndAPIlessPodDependenciesAreRefused(t *testing.T) {
	f, ev, _ := newKubeFixture(t, nil, map[string]string{"podorder.dev/after.app": "pod(other/app=x)"})
	_, _, err := f.create(t, "app")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "pods of namespace ns may not depend on pods of namespace other; an operator allows it with podorder's --allow-cross-namespace=ns=other")
	assert.Contains(t, ev.reasons[0], "PodorderRejected")

	f, _, w := newKubeFixture(t, nil, map[string]string{"podorder.dev/after.app": "pod(shared/app=x)"})
	_, _, err = f.create(t, "app")
	require.NoError(t, err, "allowed namespace")
	assert.Contains(t, w.updates, "shared/app=x:ready")

	plain := newFixture(t, nil, map[string]string{"podorder.dev/after.app": "pod(app=x)"})
	_, _, err = plain.create(t, "app")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "needs the Kubernetes API")
}

func TestAPodDependencyTheWatcherCannotServeIsRefusedAtCreation(t *testing.T) {
	f, _, w := newKubeFixture(t, nil, map[string]string{"podorder.dev/after.app": "pod(k65=v)"})
	w.refuse = errors.New("the selectors on pods of namespace ns would use 65 label keys, more than the 64 podorder keeps per namespace")
	_, _, err := f.create(t, "app")
	require.Error(t, err, "refused, rather than held until its timeout")
	assert.Contains(t, err.Error(), "podorder: pod ns/web, container app")
	assert.Contains(t, err.Error(), "dependency pod(k65=v):ready: the selectors on pods of namespace ns would use 65 label keys")
}

func TestHoldEndingWithoutReleaseIsExplainedByAnEvent(t *testing.T) {
	tests := []struct {
		name     string
		after    string
		migrate  int32 // exit code of the dependency; -1: it never runs
		exitCode int32 // of the held container
		want     string
	}{
		{"hook timed out", "migrate_completed", -1, 255,
			"PodorderTimeout: container app was not released within 10m0s: migrate has not been created yet"},
		{"completed dependency failed", "migrate_completed", 3, 255,
			"PodorderDependencyFailed: container app will not start: migrate exited with code 3"},
		{"stopped while held by a pod deletion", "migrate_completed", -1, 2, "PodorderWaiting"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, ev, _ := newKubeFixture(t, map[string]string{"podorder.dev/after.app": tt.after}, nil)
			f.p.cfg.Kube.Specs = fakeSpecs{"uid-1": {"app", "migrate"}}
			app, _, _ := f.create(t, "app")
			f.start(t, app)
			if tt.migrate >= 0 {
				m, _, _ := f.create(t, "migrate")
				f.start(t, m)
				m.ExitCode = tt.migrate
				_, err := f.p.StopContainer(f.ctx, f.sb, m)
				require.NoError(t, err)
			}
			app.ExitCode = tt.exitCode
			_, err := f.p.StopContainer(f.ctx, f.sb, app)
			require.NoError(t, err)
			assert.Contains(t, ev.reasons[len(ev.reasons)-1], tt.want)
		})
	}
}

func TestWithoutAReadinessProbeKubeletIsNotWaitedFor(t *testing.T) {
	f, _, _ := newKubeFixture(t, map[string]string{"podorder.dev/after.app": "db-noprobe"},
		map[string]string{"podorder.dev/probe.db-noprobe": "tcp:5432"})
	f.p.cfg.Kube.Specs = fakeSpecs{"uid-1": {"app", "db-noprobe"}}
	app, _, _ := f.create(t, "app")
	f.start(t, app)
	db, _, _ := f.create(t, "db-noprobe")
	f.start(t, db)
	assert.Nil(t, f.tomb(t, "app").ReleasedAt, "podorder's probe has not passed")
	f.prober.started[5432]()
	assert.NotNil(t, f.tomb(t, "db-noprobe").ReadyAt, "kubelet's ready would only say running: not waited for")
	assert.NotNil(t, f.tomb(t, "app").ReleasedAt)
}
