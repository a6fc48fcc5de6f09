package explain

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite testdata/*.txt and testdata/*.json from the current output")

// TestTheOutputOfEachManifestIsAsRecorded compares the text and the JSON output for each
// testdata/*.yaml with testdata/<name>.txt and testdata/<name>.json; `go test -run Recorded -update`
// rewrites them.
func TestTheOutputOfEachManifestIsAsRecorded(t *testing.T) {
	tests := map[string]struct {
		opt      Options
		problems bool
	}{
		"everything":              {problems: true},
		"stop-with-only":          {},
		"list":                    {},
		"own-prestop":             {},
		"cross-namespace":         {},
		"cross-namespace-allowed": {opt: Options{CrossNamespace: map[string]map[string]bool{"team-a": {"shared": true}}}},
	}
	files, err := filepath.Glob("testdata/*.yaml")
	require.NoError(t, err)
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".yaml")
		if _, ok := tests[name]; !ok {
			t.Errorf("%s has no entry in this test's table", f)
		}
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			input := name
			if strings.HasPrefix(name, "cross-namespace-") {
				input = "cross-namespace"
			}
			data, err := os.ReadFile(filepath.Join("testdata", input+".yaml"))
			require.NoError(t, err)
			ws, err := Read(bytes.NewReader(data), tt.opt)
			require.NoError(t, err)
			var text, js bytes.Buffer
			errText, errJSON := Write(&text, ws), WriteJSON(&js, ws)
			if tt.problems {
				assert.ErrorIs(t, errText, ErrProblems)
				assert.ErrorIs(t, errJSON, ErrProblems)
			} else {
				assert.NoError(t, errText)
				assert.NoError(t, errJSON)
			}
			golden(t, filepath.Join("testdata", name+".txt"), text.Bytes())
			golden(t, filepath.Join("testdata", name+".json"), js.Bytes())
		})
	}
}

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		require.NoError(t, os.WriteFile(path, got, 0o644))
		return
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run go test ./plugin/explain -run Recorded -update to record it")
	assert.Equal(t, string(want), string(got), "%s differs; if the change is meant, rerun with -update and review the diff", path)
}
