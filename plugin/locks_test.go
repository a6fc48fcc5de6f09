package plugin

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestTheShellTakesItsLockInThreePlaces keeps every handler and callback on the shell's entry points
// (request, async, read) instead of locking on its own: a lock taken elsewhere is state edited
// beside podstate's events, which is what the entry points exist to prevent.
func TestTheShellTakesItsLockInThreePlaces(t *testing.T) {
	files, err := filepath.Glob("*.go")
	require.NoError(t, err)
	fset := token.NewFileSet()
	var sites []string
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		require.NoError(t, err)
		ast.Inspect(f, func(n ast.Node) bool {
			fn, ok := n.(*ast.FuncDecl)
			if !ok {
				return true
			}
			ast.Inspect(fn, func(n ast.Node) bool {
				if sel, ok := n.(*ast.SelectorExpr); ok && (sel.Sel.Name == "Lock" || sel.Sel.Name == "RLock") {
					sites = append(sites, fn.Name.Name)
				}
				return true
			})
			return false
		})
	}
	assert.ElementsMatch(t, []string{"request", "async", "read"}, sites, "lock sites in plugin/")
}
