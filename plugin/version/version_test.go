package version

import (
	"os"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A binary built without -ldflags (go run, go test, a plain go build) still says the release the
// VERSION file names.
func TestTheDefaultReleaseIsTheVersionFile(t *testing.T) {
	data, err := os.ReadFile("../../VERSION")
	require.NoError(t, err)
	assert.Equal(t, strings.TrimSpace(string(data)), source, "plugin/version's source must equal the VERSION file: change both")
}

func TestTheReleaseComesFromTheBuild(t *testing.T) {
	vcs := []debug.BuildSetting{{Key: "vcs.revision", Value: "02ef120a9c1d4b5e6f708192a3b4c5d6e7f80912"}, {Key: "vcs.modified", Value: "true"}}
	tests := map[string]struct {
		stamped string
		build   *debug.BuildInfo
		want    Info
		line    string
	}{
		"the injected release wins over the module's": {
			stamped: "0.4.0-rc.1", build: &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v0.3.0"}},
			want: Info{Release: "0.4.0-rc.1", Go: "go1.26.8"}, line: "podorder 0.4.0-rc.1 (go1.26.8)",
		},
		"go install of a tagged release reports the tag": {
			build: &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v0.3.1"}},
			want:  Info{Release: "0.3.1", Go: "go1.26.8"}, line: "podorder 0.3.1 (go1.26.8)",
		},
		"a checkout between tags falls back to the VERSION file and names the commit": {
			build: &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v0.3.1-0.20261204101112-02ef120a9c1d+dirty"}, Settings: vcs},
			want:  Info{Release: source, Commit: vcs[0].Value, Modified: true, Go: "go1.26.8"},
			line:  "podorder " + source + " (commit 02ef120a9c1d, modified, go1.26.8)",
		},
		"go run reports (devel) and falls back to the VERSION file": {
			build: &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}},
			want:  Info{Release: source, Go: "go1.26.8"}, line: "podorder " + source + " (go1.26.8)",
		},
		"without build info, the VERSION file alone": {
			want: Info{Release: source}, line: "podorder " + source,
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			got := fromBuild(tt.stamped, tt.build)
			assert.Equal(t, tt.want, got)
			assert.Equal(t, tt.line, got.String())
		})
	}
}

func TestThisTestBinaryReportsTheVersionFile(t *testing.T) {
	assert.Equal(t, source, Get().Release)
}
