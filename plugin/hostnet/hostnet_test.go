package hostnet

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// sleeper starts a child, in a network namespace of its own when own is set (which needs root),
// and returns its /proc directory.
func sleeper(t *testing.T, own bool) string {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	if own {
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	}
	if err := cmd.Start(); err != nil {
		if own {
			t.Skipf("cannot create a network namespace (the test needs root): %v", err)
		}
		require.NoError(t, err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return fmt.Sprintf("/proc/%d", cmd.Process.Pid)
}

func TestEveryIdentityTellsANetworkNamespaceOfItsOwnFromTheParents(t *testing.T) {
	tests := map[string]struct {
		own  bool
		want bool
	}{
		"a child in its parent's namespace": {own: false, want: true},
		"a child in a namespace of its own": {own: true, want: false},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			child := sleeper(t, tt.own)
			for _, entry := range []string{"ns/net", "net/dev"} {
				same, err := sameEntry("/proc/self", child, entry)
				require.NoError(t, err, entry)
				assert.Equal(t, tt.want, same, entry)
			}
			same, err := sameNetwork("/proc/self", child)
			require.NoError(t, err)
			assert.Equal(t, tt.want, same)
		})
	}
}

func TestSameNetworkSaysWhenItCannotTell(t *testing.T) {
	_, err := sameNetwork("/proc/self", "/proc/0")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "cannot compare the network namespaces")
}

func TestNamedByComparesTheNamespaceNotThePath(t *testing.T) {
	self, err := Of("/proc/self/ns/net")
	require.NoError(t, err)
	tests := map[string]struct {
		id   Identity
		path string
		want bool
	}{
		"another path to the same namespace":  {self, sleeper(t, false) + "/ns/net", true},
		"the same path":                       {self, "/proc/self/ns/net", true},
		"a namespace of its own":              {self, sleeper(t, true) + "/ns/net", false},
		"a path that names nothing":           {self, "/var/run/netns/no-such-namespace", false},
		"no path":                             {self, "", false},
		"an unknown namespace is never named": {Identity{}, "/proc/self/ns/net", false},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			assert.Equal(t, tt.want, tt.id.NamedBy(tt.path))
		})
	}
}

func TestNodeIsTheNamespaceOfPID1WhenPodorderIsInIt(t *testing.T) {
	in, err := InNode()
	if err != nil {
		t.Skipf("this test process cannot tell: %v", err)
	}
	node, err := Node()
	if !in {
		if err == nil {
			self, _ := Of("/proc/self/ns/net")
			assert.NotEqual(t, self, node)
		}
		return
	}
	require.NoError(t, err)
	assert.True(t, node.NamedBy("/proc/self/ns/net"))
	assert.NotEqual(t, os.Getpid(), 1)
}
