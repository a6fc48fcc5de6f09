package cli

import (
	"flag"
	"io"
	"os"
	"regexp"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/yaml"

	"github.com/podorder/podorder/plugin/daemon"
)

// The image runs one binary whose every mode is a command: what ships names the command of each
// container, and the daemon's flags are the daemon command's.
func TestTheShippedDaemonSetNamesACommandForEachContainer(t *testing.T) {
	data, err := os.ReadFile("../../daemonset/base/daemonset.yaml")
	require.NoError(t, err)
	var ds appsv1.DaemonSet
	require.NoError(t, yaml.Unmarshal(data, &ds))
	spec := ds.Spec.Template.Spec
	require.Len(t, spec.InitContainers, 1)
	require.Len(t, spec.Containers, 1)

	hook := spec.InitContainers[0].Args
	require.NotEmpty(t, hook)
	assert.Equal(t, "install-hook", hook[0])
	assert.Len(t, hook, 3, "install-hook SRC DEST")

	args := spec.Containers[0].Args
	require.NotEmpty(t, args)
	assert.Equal(t, "daemon", args[0])
	var cfg daemon.Config
	fs := flag.NewFlagSet("daemon", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfg.RegisterFlags(fs)
	require.NoError(t, fs.Parse(args[1:]), "the DaemonSet's daemon flags")
	assert.Zero(t, fs.NArg(), "the DaemonSet passes the daemon flags only")
}

// The chart's template is Go text (test/chart renders it with helm); its args start the same way.
func TestTheChartNamesTheSameCommands(t *testing.T) {
	data, err := os.ReadFile("../../charts/podorder/templates/daemonset.yaml")
	require.NoError(t, err)
	assert.Regexp(t, regexp.MustCompile(`\n {10}args: \["install-hook", `), string(data))
	assert.Regexp(t, regexp.MustCompile(`\n {10}args:\n {12}- daemon\n`), string(data))
}
