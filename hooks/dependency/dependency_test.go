package dependency

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestEvaluateDecidesEachConditionFromTheNewestAttempt(t *testing.T) {
	running := State{Exists: true, Released: true}
	ready := State{Exists: true, Released: true, Ready: true}
	heldButKubeletReady := State{Exists: true, Ready: true}
	exited0 := State{Exists: true, Released: true, Exited: true}
	crashed := State{Exists: true, Released: true, Ready: true, Exited: true, ExitCode: 1}
	tests := []struct {
		name  string
		cond  Condition
		state State
		want  Verdict
	}{
		{"missing dependency waits", Ready, State{}, Waiting},
		{"created but held dependency is not started", Started, State{Exists: true}, Waiting},
		{"released dependency is started", Started, running, Met},
		{"dependency that finished successfully did start", Started, exited0, Met},
		{"crashed dependency is not started until its next attempt", Started, crashed, Waiting},
		{"running dependency without readiness is not ready", Ready, running, Waiting},
		{"ready dependency is ready", Ready, ready, Met},
		{"ready but still held is not ready", Ready, heldButKubeletReady, Waiting},
		{"exited dependency is not ready", Ready, crashed, Waiting},
		{"running dependency has not completed", Completed, ready, Waiting},
		{"exit 0 completes", Completed, exited0, Met},
		{"exit 1 fails a completed wait", Completed, crashed, Failed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, Evaluate(tt.cond, tt.state))
		})
	}
}

func TestParseDependencyRoundTripsTheHookArgument(t *testing.T) {
	for _, d := range []Dependency{{"db", Ready}, {"migrate", Completed}, {"cache", Started}} {
		got, err := ParseDependency(d.String())
		require.NoError(t, err)
		assert.Equal(t, d, got)
	}
	for _, bad := range []string{"", "db", "=ready", "db=up"} {
		_, err := ParseDependency(bad)
		assert.Error(t, err, bad)
	}
}

func TestDescribeNamesWhatIsMissing(t *testing.T) {
	assert.Contains(t, Describe(Dependency{"db", Ready}, State{}), "db has not been created yet")
	assert.Contains(t, Describe(Dependency{"m", Completed}, State{Exists: true, Released: true, Exited: true, ExitCode: 3}), "exited with code 3")
	assert.Contains(t, Describe(Dependency{"db", Ready}, State{Exists: true, Released: true}), "not ready")
}

func TestAnExitWithAnUnknownCodeMeetsNothingAndFailsNothing(t *testing.T) {
	unknown := State{Exists: true, Released: true, Exited: true, ExitUnknown: true}
	for _, c := range []Condition{Started, Ready, Completed} {
		assert.Equal(t, Waiting, Evaluate(c, unknown), "%s", c)
	}
	assert.Contains(t, Describe(Dependency{"m", Completed}, unknown), "exit code podorder does not know")
}
