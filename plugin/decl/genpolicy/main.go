// Command genpolicy writes the admission policy that decl renders from its key table to every file
// it is given: `go generate ./plugin/decl` runs it for daemonset/base/validation.yaml and the chart's copy.
package main

import (
	"fmt"
	"os"

	"github.com/podorder/podorder/plugin/decl"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: genpolicy <file>...")
		os.Exit(2)
	}
	policy := decl.ValidationPolicy()
	for _, path := range os.Args[1:] {
		if err := os.WriteFile(path, policy, 0o644); err != nil {
			fmt.Fprintf(os.Stderr, "genpolicy: %v\n", err)
			os.Exit(1)
		}
	}
}
