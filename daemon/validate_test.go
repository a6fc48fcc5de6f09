package daemon

import (
	"errors"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestProbeHostNetworkIsRefusedOnlyWhenPodorderIsKnownToBeOutsideTheNodesNetwork(t *testing.T) {
	tests := map[string]struct {
		flag    bool
		inNode  bool
		err     error
		wantErr string
	}{
		"in the node's network":                  {flag: true, inNode: true},
		"in a network of its own":                {flag: true, inNode: false, wantErr: "--probe-host-network needs hostNetwork: true"},
		"cannot tell: taken on trust, Run warns": {flag: true, err: errors.New("podorder is PID 1")},
		"no flag, in a network of its own":       {flag: false, inNode: false},
	}
	hook, err := os.Executable()
	require.NoError(t, err)
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			defer func(f func() (bool, error)) { inNodeNetwork = f }(inNodeNetwork)
			inNodeNetwork = func() (bool, error) { return tt.inNode, tt.err }
			cfg := Config{PluginIndex: "10", HookBinary: hook, ProbeHostNetwork: tt.flag}
			err := cfg.Validate()
			if tt.wantErr == "" {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.wantErr)
			assert.Contains(t, err.Error(), "or drop the flag")
		})
	}
}
