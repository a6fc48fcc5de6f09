package krew

import (
	"crypto/sha256"
	"encoding/hex"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"
)

// manifest is what krew reads of a plugin manifest.
type manifest struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec struct {
		Version          string `json:"version"`
		Homepage         string `json:"homepage"`
		ShortDescription string `json:"shortDescription"`
		Description      string `json:"description"`
		Caveats          string `json:"caveats"`
		Platforms        []struct {
			Selector struct {
				MatchLabels map[string]string `json:"matchLabels"`
			} `json:"selector"`
			URI    string `json:"uri"`
			SHA256 string `json:"sha256"`
			Files  []struct {
				From string `json:"from"`
				To   string `json:"to"`
			} `json:"files"`
			Bin string `json:"bin"`
		} `json:"platforms"`
	} `json:"spec"`
}

func sums() map[Platform]string {
	s := map[Platform]string{}
	for _, p := range Platforms {
		h := sha256.Sum256([]byte(p.OS + p.Arch))
		s[p] = hex.EncodeToString(h[:])
	}
	return s
}

func TestTheRenderedManifestNamesEveryPlatformsArchiveAndSum(t *testing.T) {
	out, err := Render("1.2.3", sums())
	require.NoError(t, err)
	var m manifest
	require.NoError(t, yaml.UnmarshalStrict([]byte(out), &m))
	assert.Equal(t, "krew.googlecontainertools.github.com/v1alpha2", m.APIVersion)
	assert.Equal(t, "Plugin", m.Kind)
	assert.Equal(t, "podorder", m.Metadata.Name, "`kubectl krew install podorder` installs kubectl-podorder")
	assert.Equal(t, "v1.2.3", m.Spec.Version)
	assert.NotEmpty(t, m.Spec.ShortDescription)

	seen := map[Platform]bool{}
	for _, pl := range m.Spec.Platforms {
		p := Platform{pl.Selector.MatchLabels["os"], pl.Selector.MatchLabels["arch"]}
		require.Len(t, pl.Selector.MatchLabels, 2, "selects on os and arch only")
		assert.False(t, seen[p], "%v named twice", p)
		seen[p] = true
		assert.Equal(t, "https://github.com/podorder/podorder/releases/download/v1.2.3/"+Archive("1.2.3", p), pl.URI)
		assert.Equal(t, sums()[p], pl.SHA256, "%v", p)
		assert.Equal(t, "kubectl-podorder", pl.Bin)
		var from []string
		for _, f := range pl.Files {
			from = append(from, f.From)
			assert.Equal(t, ".", f.To)
		}
		assert.ElementsMatch(t, []string{"kubectl-podorder", "LICENSE"}, from, "the archive's contents")
	}
	for _, p := range Platforms {
		assert.True(t, seen[p], "no platform for %v", p)
	}
	assert.Len(t, m.Spec.Platforms, len(Platforms), "a platform the release does not build")
}

func TestTheTemplateIsYAMLBeforeItIsRendered(t *testing.T) {
	var m manifest
	require.NoError(t, yaml.UnmarshalStrict([]byte(Template), &m))
	assert.Len(t, m.Spec.Platforms, len(Platforms))
}

func TestRenderRefusesAPlatformWithoutASum(t *testing.T) {
	s := sums()
	delete(s, Platform{"darwin", "arm64"})
	_, err := Render("1.2.3", s)
	assert.EqualError(t, err, `krew manifest: the sha256 of kubectl-podorder_v1.2.3_darwin_arm64.tar.gz is "", want 64 lowercase hex digits`)
}
