package hooks

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
