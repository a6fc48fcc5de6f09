package plugin

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/containerd/nri/pkg/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/podorder/podorder/spec"
)

// panickingEvents fails the first Event with a panic, as a bug in any effect would.
type panickingEvents struct{ calls int }

func (p *panickingEvents) Event(PodRef, bool, string, string) {
	p.calls++
	if p.calls == 1 {
		panic("boom")
	}
}

func TestAPanicInAHandlerFailsOnlyThatRequest(t *testing.T) {
	f := newFixture(t, map[string]string{"podorder.dev/after.app": "db_started"}, nil)
	f.p.cfg.Kube = &Kubernetes{Events: &panickingEvents{}}
	_, adj, err := f.create(t, "app")
	require.Error(t, err, "the request that panicked fails")
	assert.Nil(t, adj)
	assert.Contains(t, err.Error(), "podorder: internal error in CreateContainer for pod ns/web, container app: boom")
	assert.Contains(t, f.logs.String(), "handler panicked")

	// The daemon goes on, and its lock was released.
	app2 := &api.Container{Id: "app-2", PodSandboxId: f.sb.Id, Name: "app"}
	adj, _, err = f.p.CreateContainer(f.ctx, f.sb, app2)
	require.NoError(t, err)
	require.NotNil(t, adj)
	f.start(t, app2)
	db, _, err := f.create(t, "db")
	require.NoError(t, err)
	f.start(t, db)
	assert.NotNil(t, f.tomb(t, "app").ReleasedAt)
}

func TestAHostNetworkPodCannotDeclareAProbeThePodorderNetnsCannotReach(t *testing.T) {
	f := newFixture(t, map[string]string{"podorder.dev/after.app": "db"}, map[string]string{"podorder.dev/probe.db": "tcp:5432"})
	f.sb.Linux = nil // hostNetwork: no network namespace of its own
	_, _, err := f.create(t, "db")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "podorder.dev/probe.db cannot be run for a hostNetwork pod")
	assert.Contains(t, err.Error(), "give db a readinessProbe")

	f.p.cfg.ProbeHostNetwork = true
	_, _, err = f.create(t, "db")
	assert.NoError(t, err, "allowed when podorder runs in the node's network namespace")
}

func TestOnlyContainersWaitedOnForReadinessAreProbed(t *testing.T) {
	f := newFixture(t, map[string]string{"podorder.dev/after.app": "db_started"},
		map[string]string{"podorder.dev/probe.db": "tcp:5432", "podorder.dev/probe.lonely": "tcp:6000"})
	db, _, err := f.create(t, "db")
	require.NoError(t, err)
	f.start(t, db)
	lonely, _, err := f.create(t, "lonely")
	require.NoError(t, err)
	f.start(t, lonely)
	assert.Empty(t, f.prober.started, "nobody waits for db or lonely to be ready: no probe runs")
	assert.NotNil(t, f.tomb(t, "lonely").ReadyAt, "ready as kubelet would say without a probe")
}

// refusingProber is a node whose probe capacity is used up.
type refusingProber struct{}

func (refusingProber) Start(string, *spec.Probe, func()) (func(), error) {
	return nil, errors.New("node probe limit of 512 reached")
}

func TestAProbeTheNodeCannotRunFallsBackToTheOtherReadinessSources(t *testing.T) {
	f := newFixture(t, map[string]string{"podorder.dev/after.app": "db"}, map[string]string{"podorder.dev/probe.db": "tcp:5432"})
	f.p.prober = refusingProber{}
	app, _, err := f.create(t, "app")
	require.NoError(t, err)
	f.start(t, app)
	db, _, err := f.create(t, "db")
	require.NoError(t, err)
	f.start(t, db)
	assert.Contains(t, f.logs.String(), "cannot probe")
	assert.NotNil(t, f.tomb(t, "app").ReleasedAt, "held until a readiness source passes, never forever")
}

func TestTheDaemonNeverReleasesAfterItsDeadline(t *testing.T) {
	f := newFixture(t, map[string]string{"podorder.dev/after.app": "db_started", "podorder.dev/timeout.app": "10s"}, nil)
	clock := time.Now()
	f.p.now = func() time.Time { return clock }
	app, _, err := f.create(t, "app")
	require.NoError(t, err)
	f.start(t, app)
	deadline := f.tomb(t, "app").HoldDeadline
	require.NotNil(t, deadline)
	assert.True(t, clock.Add(10*time.Second-deadlineMargin).Equal(*deadline), "taken at StartContainer, before the hook's clock starts")

	clock = clock.Add(10*time.Second - deadlineMargin)
	db, _, err := f.create(t, "db")
	require.NoError(t, err)
	f.start(t, db)
	assert.Nil(t, f.tomb(t, "app").ReleasedAt, "the hook may already have given up: a release now could be counted without its process")
}

func TestAReleaseBeforeTheRuntimesStartReturnsCountsOnlyOnceItHas(t *testing.T) {
	// runc < 1.2.8 runs the hook inside `runc start`: PostStartContainer comes only after the release.
	f := newFixture(t, map[string]string{"podorder.dev/after.app": "db_started", "podorder.dev/after.web": "app_started"}, nil)
	db, _, err := f.create(t, "db")
	require.NoError(t, err)
	f.start(t, db)
	app, _, err := f.create(t, "app")
	require.NoError(t, err)
	web, _, err := f.create(t, "web")
	require.NoError(t, err)
	require.NoError(t, f.p.StartContainer(f.ctx, f.sb, web))
	require.NoError(t, f.p.StartContainer(f.ctx, f.sb, app))
	assert.NotNil(t, f.tomb(t, "app").ReleasedAt, "released without waiting for the blocked start")
	assert.False(t, f.tomb(t, "app").State().Released, "but not counted as started before the runtime's start returned")
	assert.Nil(t, f.tomb(t, "web").ReleasedAt)
	require.NoError(t, f.p.PostStartContainer(f.ctx, f.sb, app))
	assert.NotNil(t, f.tomb(t, "web").ReleasedAt)
}

func TestHostileDeclarationsCostBoundedWorkUnderTheLock(t *testing.T) {
	// 26,000 selectors used to cost 55 s under NRI's lock, 26,000 tombstones and as many informers.
	var sb strings.Builder
	for i := range 26000 {
		fmt.Fprintf(&sb, "pod(app=v%d),", i)
	}
	f, _, w := newKubeFixture(t, nil, map[string]string{"podorder.dev/after.app": sb.String()})
	_, adj, err := f.create(t, "app")
	require.Error(t, err)
	assert.Nil(t, adj)
	assert.Contains(t, err.Error(), "more than the 2048 podorder reads")
	assert.Less(t, len(err.Error()), 1024, "the message quotes the value cut short")
	assert.Empty(t, w.updates, "no watch started")
	names, err := f.store.Pods()
	require.NoError(t, err)
	for _, uid := range names {
		entries, _ := f.store.Read(uid, "app")
		assert.Nil(t, entries)
	}

	// At the limits, the work is bounded by the caps.
	deps := make([]string, spec.MaxDependencies)
	for i := range deps {
		if i < spec.MaxPodDependencies {
			deps[i] = fmt.Sprintf("pod(app=v%d)", i)
		} else {
			deps[i] = fmt.Sprintf("c%d", i)
		}
	}
	f, _, w = newKubeFixture(t, nil, map[string]string{"podorder.dev/after.app": strings.Join(deps, ",")})
	f.p.cfg.Kube.Specs = nil
	_, adj, err = f.create(t, "app")
	require.NoError(t, err)
	require.NotNil(t, adj)
	assert.Len(t, w.updates, spec.MaxPodDependencies)
}

func TestCrossNamespaceRulesNameTheSourceAndTheTarget(t *testing.T) {
	rules, err := ParseCrossNamespaceRules("team-a=shared, *=public")
	require.NoError(t, err)
	assert.True(t, rules.Allows("team-a", "shared"))
	assert.False(t, rules.Allows("team-b", "shared"), "a rule for team-a does not let every namespace watch shared")
	assert.True(t, rules.Allows("team-b", "public"))
	assert.True(t, rules.Allows("x", "x"))
	for _, bad := range []string{"shared", "a=", "=b", "a=*"} {
		_, err := ParseCrossNamespaceRules(bad)
		assert.ErrorContains(t, err, "write <source namespace>=<target namespace>", bad)
	}
}

func TestAStoreRemovedUnderTheDaemonIsRewrittenAtTheNextChange(t *testing.T) {
	f := newFixture(t, map[string]string{"podorder.dev/after.app": "db_started"}, nil)
	app, _, err := f.create(t, "app")
	require.NoError(t, err)
	f.start(t, app)
	require.NoError(t, os.RemoveAll(f.store.Root))

	db, _, err := f.create(t, "db")
	require.NoError(t, err, "the pod's directory is made again for the new container")
	f.start(t, db)
	assert.NotNil(t, f.tomb(t, "app").ReleasedAt, "every tombstone of the pod is written again")
	assert.Contains(t, f.logs.String(), "the tombstone store was removed under podorder")
}
