package harness

import (
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The test's own process: its status has the sizes in KiB and the counts as they are.
func TestProcStatusReadsTheNumericFields(t *testing.T) {
	status, err := ProcStatus(os.Getpid())
	require.NoError(t, err)
	assert.Positive(t, status["VmRSS"])
	assert.GreaterOrEqual(t, status["VmHWM"], status["VmRSS"])
	assert.Positive(t, status["Threads"])
	assert.Equal(t, os.Getpid(), status["Pid"])
	_, err = ProcStatus(-1)
	assert.Error(t, err)
}
