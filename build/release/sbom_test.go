package release

import (
	"encoding/json"
	"regexp"
	"runtime/debug"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestTheSBOMListsEachModuleOnceAndWhatEachBinaryContains(t *testing.T) {
	main := debug.Module{Path: "github.com/podorder/podorder", Version: "(devel)"}
	daemon := &debug.BuildInfo{GoVersion: "go1.26.8", Main: main, Deps: []*debug.Module{
		{Path: "k8s.io/client-go", Version: "v0.37.2"},
		{Path: "github.com/old/thing", Version: "v1.0.0", Replace: &debug.Module{Path: "github.com/new/thing", Version: "v2.0.0+incompatible"}},
	}}
	hook := &debug.BuildInfo{GoVersion: "go1.26.8", Main: main}
	bins := []BuiltBinary{
		{Binary: Binary{"podorder", "linux", "amd64"}, FileName: "podorder_v1.2.3_linux_amd64", SHA256: "aa", Info: daemon},
		{Binary: Binary{"podorder", "darwin", "arm64"}, FileName: "podorder_v1.2.3_darwin_arm64", SHA256: "bb", Info: daemon},
		{Binary: Binary{"podorder-hook", "linux", "amd64"}, FileName: "podorder-hook_v1.2.3_linux_amd64", SHA256: "cc", Info: hook},
	}
	out, err := SPDX("1.2.3", bins, time.Date(2026, 12, 4, 12, 0, 0, 0, time.FixedZone("", 3600)))
	require.NoError(t, err)

	var doc spdxDocument
	require.NoError(t, json.Unmarshal(out, &doc))
	assert.Equal(t, "SPDX-2.3", doc.SPDXVersion)
	assert.Equal(t, "2026-12-04T11:00:00Z", doc.CreationInfo.Created)
	byName := map[string]spdxPackage{}
	ids := map[string]string{}
	for _, p := range doc.Packages {
		_, dup := byName[p.Name]
		assert.False(t, dup, "%s listed twice", p.Name)
		byName[p.Name] = p
		assert.Regexp(t, regexp.MustCompile(`^SPDXRef-[A-Za-z0-9.-]+$`), p.SPDXID)
		_, dup = ids[p.SPDXID]
		assert.False(t, dup, "SPDXID %s given twice", p.SPDXID)
		ids[p.SPDXID] = p.Name
	}
	require.Len(t, doc.Packages, 3+4)

	purls := map[string]string{}
	for name, p := range byName {
		if len(p.ExternalRefs) == 1 {
			purls[name] = p.ExternalRefs[0].ReferenceLocator
		}
	}
	assert.Equal(t, map[string]string{
		"github.com/podorder/podorder": "pkg:golang/github.com/podorder/podorder@v1.2.3",
		"k8s.io/client-go":             "pkg:golang/k8s.io/client-go@v0.37.2",
		"github.com/new/thing":         "pkg:golang/github.com/new/thing@v2.0.0%2Bincompatible",
		"stdlib":                       "pkg:golang/stdlib@1.26.8",
	}, purls, "the replacement is listed, not the module it replaces; the main module has the release's version")
	assert.Equal(t, "aa", byName["podorder_v1.2.3_linux_amd64"].Checksums[0].ChecksumValue)

	contains := map[string][]string{}
	for _, r := range doc.Relationships {
		if r.RelationshipType == "CONTAINS" {
			contains[ids[r.SPDXElementID]] = append(contains[ids[r.SPDXElementID]], ids[r.RelatedSPDXElement])
		} else {
			assert.Equal(t, "SPDXRef-DOCUMENT", r.SPDXElementID)
			assert.Equal(t, "DESCRIBES", r.RelationshipType)
		}
	}
	assert.Equal(t, []string{"github.com/podorder/podorder", "stdlib"}, contains["podorder-hook_v1.2.3_linux_amd64"])
	assert.ElementsMatch(t, []string{"github.com/podorder/podorder", "k8s.io/client-go", "github.com/new/thing", "stdlib"}, contains["podorder_v1.2.3_darwin_arm64"])
}

func TestBinariesArePodorderForLinuxAndDarwinAndTheHookForLinux(t *testing.T) {
	var names []string
	for _, b := range Binaries() {
		names = append(names, b.FileName("1.2.3"))
	}
	assert.ElementsMatch(t, []string{
		"podorder_v1.2.3_linux_amd64", "podorder_v1.2.3_linux_arm64", "podorder_v1.2.3_darwin_amd64", "podorder_v1.2.3_darwin_arm64",
		"podorder-hook_v1.2.3_linux_amd64", "podorder-hook_v1.2.3_linux_arm64",
	}, names)
}
