// Package image is the definition of podorder's OCI image: the daemon and the hook, built static
// from this module, on an empty base, with the daemon as entrypoint. `make image` (cmd in
// build/image/cmd) writes it as an OCI archive, and the cluster tests build and import the very same
// image: no Docker engine, no second definition to drift.
package image

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/podorder/podorder/build/image/oci"
)

// Ref is the image reference the shipped manifests use (daemonset/kustomization.yaml and the chart's
// values), with the release's tag.
const Ref = "registry.local/podorder/podorder"

// Build compiles podorder from the module at moduleDir and writes its image, tagged ref, as an OCI
// image-layout tarball in dir; it returns the tarball's path.
func Build(moduleDir, dir, ref string) (string, error) {
	bin := filepath.Join(dir, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return "", fmt.Errorf("build image: %w", err)
	}
	for _, name := range []string{"podorder", "podorder-hook"} {
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", filepath.Join(bin, name), "./cmd/"+name)
		cmd.Dir = moduleDir
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("build image: go build %s: %w\n%s", name, err, out)
		}
	}
	return oci.BuildFiles(dir, ref, map[string]string{
		"/podorder":      filepath.Join(bin, "podorder"),
		"/podorder-hook": filepath.Join(bin, "podorder-hook"),
	}, []string{"/podorder"})
}
