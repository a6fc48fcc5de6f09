// Package version says which podorder a binary is: the release written in the VERSION file at the
// module's root, and the commit and Go toolchain it was built with when the build recorded them.
package version

import (
	"fmt"
	"regexp"
	"runtime/debug"
	"strings"
)

// stamped is the release a build injects: -ldflags "-X github.com/podorder/podorder/plugin/version.stamped=$(cat VERSION)"
// (`make build` and build/image do). Empty in `go run`, `go test` and a plain `go build`.
var stamped string

// source is the VERSION file's release at this commit, for builds that inject nothing;
// TestTheDefaultReleaseIsTheVersionFile keeps the two equal.
const source = "0.3.0"

// release matches a release version as a module proxy or a tagged checkout reports it, and nothing
// else: not "(devel)", a pseudo-version or a "+dirty" build.
var release = regexp.MustCompile(`^v\d+\.\d+\.\d+$`)

// Info describes one binary.
type Info struct {
	// Release is podorder's version without the leading v, such as 0.3.0.
	Release string
	// Commit is the VCS revision the binary was built from; empty when the build did not record one
	// (`go run`, `go test`, -buildvcs=false).
	Commit string
	// Modified says the work tree had uncommitted changes at build time.
	Modified bool
	// Go is the toolchain's version, such as go1.26.8.
	Go string
}

// Get returns this binary's Info.
func Get() Info {
	bi, _ := debug.ReadBuildInfo()
	return fromBuild(stamped, bi)
}

// fromBuild is Get with the injected release and the build info as inputs: the injected release
// wins, then a release version of the main module (`go install ...@v0.3.0`), then source.
func fromBuild(stamped string, bi *debug.BuildInfo) Info {
	info := Info{Release: stamped}
	if bi == nil {
		if info.Release == "" {
			info.Release = source
		}
		return info
	}
	info.Go = bi.GoVersion
	if info.Release == "" && release.MatchString(bi.Main.Version) {
		info.Release = strings.TrimPrefix(bi.Main.Version, "v")
	}
	if info.Release == "" {
		info.Release = source
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			info.Commit = s.Value
		case "vcs.modified":
			info.Modified = s.Value == "true"
		}
	}
	return info
}

// String is the one line `podorder version` prints: "podorder 0.3.0 (commit 02ef120a9c1d, modified, go1.26.8)",
// with what the build did not record left out.
func (i Info) String() string {
	var details []string
	if i.Commit != "" {
		details = append(details, "commit "+i.Commit[:min(12, len(i.Commit))])
	}
	if i.Modified {
		details = append(details, "modified")
	}
	if i.Go != "" {
		details = append(details, i.Go)
	}
	if len(details) == 0 {
		return "podorder " + i.Release
	}
	return fmt.Sprintf("podorder %s (%s)", i.Release, strings.Join(details, ", "))
}
