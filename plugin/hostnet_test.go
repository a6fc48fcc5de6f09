package plugin

import (
	"testing"

	"github.com/containerd/nri/pkg/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/podorder/podorder/plugin/hostnet"
)

func TestAPodWhoseNetworkNamespaceIsTheNodesIsAHostNetworkPod(t *testing.T) {
	node, err := hostnet.Of("/proc/self/ns/net")
	require.NoError(t, err)
	tests := map[string]struct {
		node        hostnet.Identity
		netns       string
		wantRefused bool
	}{
		"a path to the node's namespace":           {node, "/proc/self/ns/net", true},
		"another path to the node's namespace":     {node, "/proc/thread-self/ns/net", true},
		"a namespace of the pod's own":             {node, "/var/run/netns/cni-1", false},
		"the node's namespace unknown to podorder": {hostnet.Identity{}, "/proc/self/ns/net", false},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, map[string]string{"podorder.dev/after.app": "db"}, map[string]string{"podorder.dev/probe.db": "tcp:5432"})
			f.p.cfg.NodeNetwork = tt.node
			f.sb.Linux = &api.LinuxPodSandbox{Namespaces: []*api.LinuxNamespace{{Type: "network", Path: tt.netns}}}
			_, _, err := f.create(t, "db")
			if !tt.wantRefused {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), "podorder.dev/probe.db cannot be run for a hostNetwork pod")

			// What podorder can do is taken when it first sees a pod: ask with a pod it has not seen.
			f.p.cfg.ProbeHostNetwork = true
			f.sb.Uid = "uid-2"
			_, _, err = f.create(t, "db")
			assert.NoError(t, err, "allowed when podorder runs in the node's network namespace")
		})
	}
}
