package image

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"
)

// The version is written once, in VERSION; what ships says the same.
func TestTheVersionIsWrittenOnce(t *testing.T) {
	v, err := Version("../..")
	require.NoError(t, err)
	require.Regexp(t, `^\d+\.\d+\.\d+$`, v)
	read := func(path string, into any) {
		data, err := os.ReadFile(filepath.Join("../..", path))
		require.NoError(t, err)
		require.NoError(t, yaml.Unmarshal(data, into))
	}
	var chart struct{ Version, AppVersion string }
	read("charts/podorder/Chart.yaml", &chart)
	var values struct {
		Image struct{ Repository, Tag string }
	}
	read("charts/podorder/values.yaml", &values)
	var kustomization struct {
		Images []struct{ Name, NewName, NewTag string } `json:"images"`
	}
	read("daemonset/base/kustomization.yaml", &kustomization)

	assert.Equal(t, v, chart.Version, "charts/podorder/Chart.yaml version")
	assert.Equal(t, v, chart.AppVersion, "charts/podorder/Chart.yaml appVersion")
	assert.Equal(t, "v"+v, values.Image.Tag, "charts/podorder/values.yaml image.tag")
	assert.Equal(t, Ref, values.Image.Repository, "charts/podorder/values.yaml image.repository")
	require.Len(t, kustomization.Images, 1)
	assert.Equal(t, "v"+v, kustomization.Images[0].NewTag, "daemonset/base/kustomization.yaml images[0].newTag")
	assert.Equal(t, Ref, kustomization.Images[0].NewName, "daemonset/base/kustomization.yaml images[0].newName")

	makefile, err := os.ReadFile("../../Makefile")
	require.NoError(t, err)
	assert.Contains(t, string(makefile), `-ldflags "`+LDFlags("$(VERSION)")+`"`, "the Makefile's build stamps the release as the image's does")
}
