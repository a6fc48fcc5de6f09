package plugin

import (
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/containerd/nri/pkg/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// kubelet replaces a pod's sandbox when it dies or its creation fails, keeping the pod's UID; and
// containerd 2.4, restarted during a RunPodSandbox, keeps a sandbox whose spec (its namespaces) is
// lost. Found by the churn campaign: such a sandbox, listed at a Synchronize, made podorder probe a
// pod's port from the node's network.

func sandbox(id, netns string) *api.PodSandbox {
	sb := &api.PodSandbox{Id: id, Uid: "uid-1", Namespace: "ns", Name: "web"}
	if netns != "" {
		sb.Linux = &api.LinuxPodSandbox{Namespaces: []*api.LinuxNamespace{{Type: "network", Path: netns}}}
	}
	return sb
}

func TestASandboxWhoseNamespacesAreUnknownIsNeverProbedFromTheNodesNetwork(t *testing.T) {
	f := newFixture(t, map[string]string{"podorder.dev/after.app": "db"}, map[string]string{"podorder.dev/probe.db": "tcp:5432"})
	labels, annotations := f.sb.Labels, f.sb.Annotations
	f.sb = sandbox("lost", "")
	f.sb.Labels, f.sb.Annotations = labels, annotations
	app, _, err := f.create(t, "app")
	require.NoError(t, err)
	f.start(t, app)
	db, _, err := f.create(t, "db")
	require.NoError(t, err)
	f.start(t, db)
	assert.NotContains(t, f.prober.started, 5432, "no probe from the node's network")
	// As for any probe the node cannot run: readiness comes from kubelet, and the refusal says why.
	assert.Contains(t, f.logs.String(), "cannot probe; readiness comes from kubelet")
	assert.Contains(t, f.logs.String(), "names no namespace of pod sandbox lost")
}

func TestAPodFollowsItsNewSandbox(t *testing.T) {
	f := newFixture(t, map[string]string{"podorder.dev/after.app": "db"}, map[string]string{"podorder.dev/probe.db": "tcp:5432"})
	labels, annotations := f.sb.Labels, f.sb.Annotations
	old := f.sb
	_, _, err := f.create(t, "db")
	require.NoError(t, err)

	// The old sandbox died; kubelet made a new one and creates the containers again in it.
	f.sb = sandbox("sb2", "/var/run/netns/cni-2")
	f.sb.Labels, f.sb.Annotations = labels, annotations
	app, _, err := f.create(t, "app")
	require.NoError(t, err)
	f.start(t, app)
	db, _, err := f.create(t, "db")
	require.NoError(t, err)
	f.start(t, db)
	assert.Equal(t, "/var/run/netns/cni-2", f.prober.netns[5432], "probed in the new sandbox's network")

	require.NoError(t, f.p.RemovePodSandbox(f.ctx, old))
	_, err = os.Stat(f.store.PodDir(f.sb.Uid))
	require.NoError(t, err, "the old sandbox's removal leaves the live pod's tombstones")
	f.prober.started[5432]()
	assert.NotNil(t, f.tomb(t, "app").ReleasedAt)

	require.NoError(t, f.p.RemovePodSandbox(f.ctx, f.sb))
	_, err = os.Stat(f.store.PodDir(f.sb.Uid))
	assert.True(t, os.IsNotExist(err), "the current sandbox's removal takes them")
}

func TestSynchronizeFindsAPodInTheSandboxOfItsNewestContainer(t *testing.T) {
	tests := map[string]struct {
		listed []*api.PodSandbox
	}{
		"a lost sandbox listed first": {[]*api.PodSandbox{sandbox("lost", ""), sandbox("sb2", "/var/run/netns/cni-2")}},
		"a lost sandbox listed last":  {[]*api.PodSandbox{sandbox("sb2", "/var/run/netns/cni-2"), sandbox("lost", "")}},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, map[string]string{"podorder.dev/after.app": "db"}, map[string]string{"podorder.dev/probe.db": "tcp:5432"})
			for _, sb := range tt.listed {
				sb.Labels, sb.Annotations = f.sb.Labels, f.sb.Annotations
			}
			app := &api.Container{Id: "app-id", PodSandboxId: "sb2", Name: "app", State: api.ContainerState_CONTAINER_CREATED, CreatedAt: 2}
			db := &api.Container{Id: "db-id", PodSandboxId: "sb2", Name: "db", State: api.ContainerState_CONTAINER_RUNNING, CreatedAt: 3}
			_, err := f.p.Synchronize(f.ctx, tt.listed, []*api.Container{app, db})
			require.NoError(t, err)
			f.sb = tt.listed[0]
			if f.sb.Id != "sb2" {
				f.sb = tt.listed[1]
			}
			_, _, err = f.create(t, "cache")
			require.NoError(t, err)
			assert.Equal(t, "sb2", f.p.pods["uid-1"].sandbox)
			assert.Equal(t, "/var/run/netns/cni-2", f.p.pods["uid-1"].netns)
		})
	}
}

func TestADependencyThatExitedWhilePodorderWasAwayHoldsItsDependents(t *testing.T) {
	f := newFixture(t, map[string]string{"podorder.dev/after.app": "db_started"}, nil)
	db, _, err := f.create(t, "db")
	require.NoError(t, err)
	f.start(t, db)
	require.NotNil(t, f.tomb(t, "db").ReleasedAt)

	// A new daemon (a rollout): db crashed meanwhile, and containerd lists no exited container.
	restarted := New(Config{HookBinary: "/hook", BlockingStartAfter: time.Hour}, f.store, f.prober, slog.New(slog.NewTextHandler(f.logs, nil)))
	_, err = restarted.Synchronize(f.ctx, []*api.PodSandbox{f.sb}, nil)
	require.NoError(t, err)
	assert.True(t, f.tomb(t, "db").ExitCodeUnknown, "db's absence is its exit")

	f.p = restarted
	app, adj, err := f.create(t, "app")
	require.NoError(t, err)
	require.NotNil(t, adj)
	f.start(t, app)
	assert.Nil(t, f.tomb(t, "app").ReleasedAt, "db's process is gone: never release on it")
}
