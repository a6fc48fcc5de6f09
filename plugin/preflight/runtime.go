package preflight

import (
	"bytes"
	"context"
	"debug/buildinfo"
	"fmt"
	"os/exec"
	"runtime/debug"
	"strings"
	"time"
)

// Bounds of running the runtime binary for its version.
const (
	versionTimeout = 2 * time.Second
	versionOutput  = 4 << 10
)

// FindRuntime reads the version of the runtime binary at path, as the daemon sees it (a host path
// mounted into its container; empty: not given). It reads the Go build information first, which runs
// nothing: a runc built with `go install ...@vX` records its version there, and a Makefile build its
// `-X main.version=` flag. Only when neither is there does it run `<binary> --version`, for at most
// 2 s and 4 KiB of output.
func FindRuntime(ctx context.Context, path string) RuntimeFact {
	f := RuntimeFact{Binary: path}
	if path == "" {
		f.Err = ErrNoBinary
		return f
	}
	if bi, err := buildinfo.ReadFile(path); err == nil {
		if name, version := fromBuildInfo(bi.Main.Path, bi.Main.Version, ldflags(bi.Settings)); version != "" {
			f.Name, f.Version = name, version
			return f
		}
	}
	out, err := runVersion(ctx, path)
	if err != nil {
		f.Err = err
		return f
	}
	f.Name, f.Version = ParseVersionOutput(out)
	if f.Name == "" {
		f.Err = fmt.Errorf("`%s --version` printed no version: %q", path, firstLine(out))
	}
	return f
}

func ldflags(settings []debug.BuildSetting) string {
	for _, s := range settings {
		if s.Key == "-ldflags" {
			return s.Value
		}
	}
	return ""
}

// fromBuildInfo names the runtime of a Go binary's main module and finds its version: the module
// version of a `go install ...@vX` build, or a `-X main.version=` link flag.
func fromBuildInfo(module, moduleVersion, ldflags string) (name, version string) {
	name = module[strings.LastIndex(module, "/")+1:]
	if _, ok := ParseVersion(moduleVersion); ok {
		return name, strings.TrimPrefix(moduleVersion, "v")
	}
	for _, f := range strings.Fields(ldflags) {
		if v, ok := strings.CutPrefix(f, "main.version="); ok {
			if _, ok := ParseVersion(v); ok {
				return name, v
			}
		}
	}
	return name, ""
}

// runVersion runs `<path> --version` within versionTimeout and returns at most versionOutput bytes
// of its standard output.
func runVersion(ctx context.Context, path string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, versionTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, "--version")
	out := &capped{max: versionOutput}
	cmd.Stdout = out
	cmd.WaitDelay = 100 * time.Millisecond
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return "", fmt.Errorf("`%s --version` did not answer within %s", path, versionTimeout)
		}
		return "", fmt.Errorf("run `%s --version`: %w", path, err)
	}
	return out.String(), nil
}

// ParseVersionOutput reads the first line of `runc --version` ("runc version 1.3.6") or
// `crun --version` ("crun version 1.8.1").
func ParseVersionOutput(out string) (name, version string) {
	fields := strings.Fields(firstLine(out))
	if len(fields) >= 3 && fields[1] == "version" {
		return fields[0], fields[2]
	}
	return "", ""
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// capped keeps the first max bytes written to it and drops the rest. The buffer is a field, not
// embedded, so that its ReadFrom cannot bypass the cap.
type capped struct {
	buf bytes.Buffer
	max int
}

func (c *capped) Write(p []byte) (int, error) {
	if room := c.max - c.buf.Len(); room > 0 {
		c.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (c *capped) String() string { return c.buf.String() }
