// Package krew is kubectl podorder's krew manifest: podorder.yaml is a template that the release
// fills with the version and the sha256 of each platform's archive (Render), for krew-index.
package krew

import (
	_ "embed"
	"fmt"
	"regexp"
	"strings"
)

// Template is podorder.yaml.
//
//go:embed podorder.yaml
var Template string

// Platform is an os/arch pair, as Go and krew name them.
type Platform struct{ OS, Arch string }

// Platforms are those the release builds kubectl-podorder for and the manifest names.
var Platforms = []Platform{{"linux", "amd64"}, {"linux", "arm64"}, {"darwin", "amd64"}, {"darwin", "arm64"}}

// Archive is the name of the release archive of kubectl-podorder for p: the binary and LICENSE at
// its root, tar and gzip.
func Archive(version string, p Platform) string {
	return fmt.Sprintf("kubectl-podorder_v%s_%s_%s.tar.gz", version, p.OS, p.Arch)
}

var sha256Hex = regexp.MustCompile(`^[0-9a-f]{64}$`)

// Render fills Template for release version (no leading v) with the sha256 of each platform's
// archive; it refuses a platform without one.
func Render(version string, sha256 map[Platform]string) (string, error) {
	pairs := []string{"{{VERSION}}", version}
	for _, p := range Platforms {
		sum := sha256[p]
		if !sha256Hex.MatchString(sum) {
			return "", fmt.Errorf("krew manifest: the sha256 of %s is %q, want 64 lowercase hex digits", Archive(version, p), sum)
		}
		pairs = append(pairs, "{{SHA256_"+strings.ToUpper(p.OS+"_"+p.Arch)+"}}", sum)
	}
	out := strings.NewReplacer(pairs...).Replace(Template)
	if i := strings.Index(out, "{{"); i >= 0 {
		return "", fmt.Errorf("krew manifest: a placeholder is left: %.40s", out[i:])
	}
	return out, nil
}
