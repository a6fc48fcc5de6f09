package daemon

import (
	"io"
	"log/slog"
	"runtime/debug"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSetMemoryLimit(t *testing.T) {
	before := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(before) })
	tests := map[string]struct {
		env     map[string]string
		want    int64
		wantErr string
	}{
		"no limit given":         {env: nil, want: 0},
		"the container's 128 Mi": {env: map[string]string{MemoryLimitEnv: "134217728"}, want: 120795955},
		"GOMEMLIMIT wins":        {env: map[string]string{MemoryLimitEnv: "134217728", "GOMEMLIMIT": "50MiB"}, want: 0},
		"a quantity, not bytes":  {env: map[string]string{MemoryLimitEnv: "128Mi"}, wantErr: "want the container's memory limit in bytes"},
		"zero":                   {env: map[string]string{MemoryLimitEnv: "0"}, wantErr: "want the container's memory limit in bytes"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			debug.SetMemoryLimit(before)
			got, err := SetMemoryLimit(func(k string) string { return tt.env[k] }, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
			if tt.want > 0 {
				assert.Equal(t, tt.want, debug.SetMemoryLimit(-1), "the runtime's soft limit")
			}
		})
	}
}
