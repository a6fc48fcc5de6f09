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

func TestUnauthenticatedMetricsAreRefusedBeyondLoopback(t *testing.T) {
	tests := map[string]struct {
		addr    string
		secure  bool
		wantErr bool
	}{
		"HTTPS on every address":  {addr: ":8443", secure: true},
		"plain on IPv4 loopback":  {addr: "127.0.0.1:9090"},
		"plain on IPv6 loopback":  {addr: "[::1]:9090"},
		"plain on every address":  {addr: ":9090", wantErr: true},
		"plain on a node address": {addr: "10.0.0.7:9090", wantErr: true},
		"plain on a name":         {addr: "localhost:9090", wantErr: true},
		"plain, metrics off":      {addr: ""},
	}
	hook, err := os.Executable()
	require.NoError(t, err)
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			cfg := Config{PluginIndex: "10", HookBinary: hook, MetricsAddr: tt.addr, MetricsSecure: tt.secure}
			err := cfg.Validate()
			if !tt.wantErr {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), "--metrics-secure=false serves metrics without authentication, so only on loopback")
		})
	}
}
