package plugin

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The dependency rules of the module's tree: the hook's, the daemon's, and those of the tools that
// run off the node (explain, kubectl podorder).

const module = "github.com/podorder/podorder"

// TestTheHookLinksOnlyTheStandardLibraryXSysAndHooks keeps the hook a tiny static binary that runs
// under the container's uid, capabilities and seccomp filter: whatever it links runs in every held
// container.
func TestTheHookLinksOnlyTheStandardLibraryXSysAndHooks(t *testing.T) {
	pkgs := goList(t, "-deps", module+"/cmd/podorder-hook", module+"/hooks/...")
	require.NotEmpty(t, pkgs)
	for _, p := range pkgs {
		if p.Standard || p.ImportPath == module+"/cmd/podorder-hook" || within(p.ImportPath, module+"/hooks") ||
			within(p.ImportPath, "golang.org/x/sys") {
			continue
		}
		assert.Failf(t, "rule broken: the hook and hooks/ link only the standard library, golang.org/x/sys and hooks/",
			"%s imports %s", strings.Join(importers(pkgs, p.ImportPath), ", "), p.ImportPath)
	}
}

// TestKubeDoesNotImportTheNRIShell keeps the shared types in plugin/kubeapi: kube implements what
// the shell consumes without importing the shell.
func TestKubeDoesNotImportTheNRIShell(t *testing.T) {
	pkgs := goList(t, "-deps", module+"/plugin/kube")
	require.NotEmpty(t, pkgs)
	for _, p := range pkgs {
		if p.ImportPath == module+"/plugin" {
			assert.Failf(t, "rule broken: plugin/kube does not import the NRI shell "+module+"/plugin",
				"%s imports %s", strings.Join(importers(pkgs, p.ImportPath), ", "), p.ImportPath)
		}
	}
}

// TestExplainLinksNothingOfContainerd keeps `podorder explain` an offline tool: it reads manifests
// and needs neither the runtime nor the NRI stub.
func TestExplainLinksNothingOfContainerd(t *testing.T) {
	assertLinksNothingOfContainerd(t, module+"/plugin/explain")
}

// TestTheKubectlPluginLinksNothingOfContainerd keeps `kubectl podorder` a client of the Kubernetes
// API, installed on workstations: it asks the node's daemon through pods/exec and never links the
// runtime's client or the NRI stub (so it reuses plugin/explain and plugin/podstate, not plugin/cli).
func TestTheKubectlPluginLinksNothingOfContainerd(t *testing.T) {
	assertLinksNothingOfContainerd(t, module+"/cmd/kubectl-podorder")
}

// assertLinksNothingOfContainerd fails t for each place where pkg's dependencies import a package of
// github.com/containerd.
func assertLinksNothingOfContainerd(t *testing.T, pkg string) {
	t.Helper()
	pkgs := goList(t, "-deps", pkg)
	require.NotEmpty(t, pkgs)
	for _, p := range pkgs {
		if !within(p.ImportPath, "github.com/containerd") {
			continue
		}
		// Name where containerd comes in, not what it brings along.
		var from []string
		for _, imp := range importers(pkgs, p.ImportPath) {
			if !within(imp, "github.com/containerd") {
				from = append(from, imp)
			}
		}
		if len(from) > 0 {
			assert.Failf(t, "rule broken: "+strings.TrimPrefix(pkg, module+"/")+" links nothing of github.com/containerd",
				"%s imports %s", strings.Join(from, ", "), p.ImportPath)
		}
	}
}

// TestNoReleasePackageImportsATestPackage keeps test/ out of what ships: only packages under test/
// may import packages under test/.
func TestNoReleasePackageImportsATestPackage(t *testing.T) {
	pkgs := goList(t, module+"/...")
	require.NotEmpty(t, pkgs)
	for _, p := range pkgs {
		if within(p.ImportPath, module+"/test") {
			continue
		}
		for _, imp := range p.Imports {
			if within(imp, module+"/test") {
				assert.Failf(t, "rule broken: no package outside test/ imports a package under test/",
					"%s imports %s", p.ImportPath, imp)
			}
		}
	}
}

// listed is a package as `go list` reports it.
type listed struct {
	ImportPath string
	Standard   bool
	Imports    []string
}

// goList runs `go list` with args and returns the packages it reports.
func goList(t *testing.T, args ...string) []listed {
	t.Helper()
	out, err := exec.Command("go", append([]string{"list", "-json=ImportPath,Standard,Imports"}, args...)...).Output()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		require.NoError(t, err, "go list %s: %s", strings.Join(args, " "), exit.Stderr)
	}
	require.NoError(t, err, "go list %s", strings.Join(args, " "))
	var pkgs []listed
	for dec := json.NewDecoder(bytes.NewReader(out)); ; {
		var p listed
		err := dec.Decode(&p)
		if errors.Is(err, io.EOF) {
			return pkgs
		}
		require.NoError(t, err, "decode go list output")
		pkgs = append(pkgs, p)
	}
}

// importers returns the packages among pkgs that import path directly.
func importers(pkgs []listed, path string) []string {
	var names []string
	for _, p := range pkgs {
		for _, imp := range p.Imports {
			if imp == path {
				names = append(names, p.ImportPath)
			}
		}
	}
	return names
}

// within reports whether path is the package root or one below it.
func within(path, root string) bool {
	return path == root || strings.HasPrefix(path, root+"/")
}
