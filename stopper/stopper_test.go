package stopper

import (
	"os/exec"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSignalReachesTheProcessAndReportsItsExit(t *testing.T) {
	tests := map[string]struct {
		sig  syscall.Signal
		want syscall.Signal
	}{
		"stop signal": {syscall.SIGTERM, syscall.SIGTERM},
		"kill":        {syscall.SIGKILL, syscall.SIGKILL},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			cmd := exec.Command("sleep", "60")
			require.NoError(t, cmd.Start())
			p, err := Open(uint32(cmd.Process.Pid))
			require.NoError(t, err)
			defer p.Close()

			require.NoError(t, p.Signal(tt.sig))
			err = cmd.Wait()
			var exit *exec.ExitError
			require.ErrorAs(t, err, &exit)
			ws := exit.Sys().(syscall.WaitStatus)
			assert.Equal(t, tt.want, ws.Signal())
			// Reaped: the PID may be reused now, and the handle still refers to the old process.
			assert.ErrorIs(t, p.Signal(syscall.SIGTERM), ErrExited)
		})
	}
}

func TestOpenRefusesNoPID(t *testing.T) {
	_, err := Open(0)
	assert.Error(t, err)
}
