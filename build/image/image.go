// Package image builds podorder's OCI image from the Dockerfile at the module's root with BuildKit:
// it compiles the daemon and the hook (static) into a build context, runs a private buildkitd for the
// one build, and has buildctl write the image as an OCI archive. `make image` (cmd in
// build/image/cmd) and the cluster tests both call it, so the image the tests run is the
// Dockerfile's: no Docker engine, no registry, no second definition to drift.
package image

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Ref is the image reference the shipped manifests use (daemonset/base/kustomization.yaml and the chart's
// values), with the release's tag.
const Ref = "registry.local/podorder/podorder"

// Version returns the release's version, written once in the VERSION file at moduleDir.
func Version(moduleDir string) (string, error) {
	v, err := os.ReadFile(filepath.Join(moduleDir, "VERSION"))
	if err != nil {
		return "", fmt.Errorf("read the release's version: %w", err)
	}
	return strings.TrimSpace(string(v)), nil
}

// LDFlags are the linker flags of a release build: no symbol table or debug information, and the
// release stamped into plugin/version, which `podorder version` and the daemon's first log line say.
// The Makefile's build target passes the same.
func LDFlags(release string) string {
	return "-s -w -X github.com/podorder/podorder/plugin/version.stamped=" + release
}

// Tools are the programs a build runs.
type Tools struct {
	// Buildkitd and Buildctl are BuildKit's daemon and client.
	Buildkitd, Buildctl string
	// Runc is the OCI runtime buildkitd's worker is given. A Dockerfile without RUN never runs it,
	// but the worker will not start without one.
	Runc string
}

// CachedTools are the tools hack/install-deps.sh installs into $PODORDER_CACHE/bin
// (/var/cache/podorder by default).
func CachedTools() Tools {
	cache := os.Getenv("PODORDER_CACHE")
	if cache == "" {
		cache = "/var/cache/podorder"
	}
	bin := filepath.Join(cache, "bin")
	return Tools{Buildkitd: filepath.Join(bin, "buildkitd"), Buildctl: filepath.Join(bin, "buildctl"), Runc: filepath.Join(bin, "runc")}
}

// Build compiles podorder from the module at moduleDir, builds moduleDir's Dockerfile with
// BuildKit and writes the image, tagged ref, as an OCI image-layout tarball in dir; it returns the
// tarball's path. It needs root, as buildkitd does.
func Build(ctx context.Context, moduleDir, dir, ref string, tools Tools) (string, error) {
	for _, t := range []string{tools.Buildkitd, tools.Buildctl, tools.Runc} {
		if _, err := os.Stat(t); err != nil {
			return "", fmt.Errorf("build image: %w; run `make deps` (hack/install-deps.sh builds BuildKit and runc)", err)
		}
	}
	buildContext := filepath.Join(dir, "context")
	bin := filepath.Join(buildContext, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return "", fmt.Errorf("build image: %w", err)
	}
	release, err := Version(moduleDir)
	if err != nil {
		return "", fmt.Errorf("build image: %w", err)
	}
	for _, name := range []string{"podorder", "podorder-hook"} {
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", LDFlags(release), "-o", filepath.Join(bin, name), "./cmd/"+name)
		cmd.Dir = moduleDir
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("build image: go build %s: %w\n%s", name, err, out)
		}
	}
	// A unix socket's path must fit in 108 bytes, which a test's temporary directory may not.
	sockDir, err := os.MkdirTemp("", "podorder-buildkit-")
	if err != nil {
		return "", fmt.Errorf("build image: %w", err)
	}
	defer os.RemoveAll(sockDir)
	addr := "unix://" + filepath.Join(sockDir, "buildkitd.sock")
	stop, err := startBuildkitd(ctx, tools, filepath.Join(dir, "buildkit"), addr)
	if err != nil {
		return "", err
	}
	defer stop()

	tar := filepath.Join(dir, "podorder-image.tar")
	cmd := exec.CommandContext(ctx, tools.Buildctl, "--addr", addr, "build",
		"--frontend", "dockerfile.v0",
		"--local", "context="+buildContext,
		"--local", "dockerfile="+moduleDir,
		"--output", "type=oci,dest="+tar+",name="+ref)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build image: buildctl build: %w\n%s", err, out)
	}
	return tar, nil
}

// startBuildkitd runs a buildkitd of its own (state under root, serving addr) with the OCI worker on
// tools.Runc, waits until it answers, and returns what stops it.
func startBuildkitd(ctx context.Context, tools Tools, root, addr string) (stop func(), err error) {
	logPath := root + ".log"
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("build image: %w", err)
	}
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("build image: %w", err)
	}
	cmd := exec.Command(tools.Buildkitd,
		"--root", root,
		"--addr", addr,
		"--oci-worker=true", "--containerd-worker=false",
		"--oci-worker-binary", tools.Runc,
		// A FROM scratch image needs neither overlay mounts nor a network.
		"--oci-worker-snapshotter", "native",
		"--oci-worker-net", "host")
	// No Pdeathsig: it follows the OS thread that started the process, not this one, and Go may
	// end that thread mid-build; stop ends buildkitd instead.
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("build image: start buildkitd: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait(); logFile.Close() }()
	stop = func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}
	// buildkitd says nothing on stdout when it is ready; ask it until it answers.
	deadline := time.Now().Add(60 * time.Second)
	for {
		probe := exec.CommandContext(ctx, tools.Buildctl, "--addr", addr, "debug", "workers")
		out, err := probe.CombinedOutput()
		if err == nil && strings.Contains(string(out), "linux/") {
			return stop, nil
		}
		select {
		case werr := <-exited:
			log, _ := os.ReadFile(logPath)
			return nil, fmt.Errorf("build image: buildkitd exited: %v\n%s", werr, tail(log))
		case <-ctx.Done():
			stop()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			stop()
			log, _ := os.ReadFile(logPath)
			return nil, errors.Join(fmt.Errorf("build image: buildkitd did not answer within 60 s: %s", out), errors.New(tail(log)))
		}
	}
}

// tail returns the last lines of a log, for an error message.
func tail(log []byte) string {
	lines := strings.Split(strings.TrimSpace(string(log)), "\n")
	return strings.Join(lines[max(0, len(lines)-20):], "\n")
}
