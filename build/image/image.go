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
	"runtime"
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

// Build compiles podorder for this machine's architecture from the module at moduleDir, builds
// moduleDir's Dockerfile with BuildKit and writes the image, tagged ref, as an OCI image-layout
// tarball in dir; it returns the tarball's path. It needs root, as buildkitd does.
func Build(ctx context.Context, moduleDir, dir, ref string, tools Tools) (string, error) {
	release, err := Version(moduleDir)
	if err != nil {
		return "", fmt.Errorf("build image: %w", err)
	}
	buildContext := filepath.Join(dir, "context")
	for _, name := range Commands {
		if err := GoBuild(ctx, moduleDir, release, "linux", runtime.GOARCH, name, filepath.Join(ContextBinaries(buildContext, runtime.GOARCH), name)); err != nil {
			return "", fmt.Errorf("build image: %w", err)
		}
	}
	tar := filepath.Join(dir, "podorder-image.tar")
	err = BuildDockerfile(ctx, Spec{
		ModuleDir: moduleDir, Context: buildContext, State: filepath.Join(dir, "buildkit"),
		Ref: ref, Archs: []string{runtime.GOARCH}, Dest: tar,
	}, tools)
	return tar, err
}

// Commands are the programs the image holds, each built from ./cmd/<name>.
var Commands = []string{"podorder", "podorder-hook"}

// GoBuild compiles ./cmd/<name> of the module at moduleDir for goos/goarch into out: static, with
// the release stamped (LDFlags), as `make build` does.
func GoBuild(ctx context.Context, moduleDir, release, goos, goarch, name, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", LDFlags(release), "-o", out, "./cmd/"+name)
	cmd.Dir = moduleDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+goos, "GOARCH="+goarch)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s for %s/%s: %w\n%s", name, goos, goarch, err, out)
	}
	return nil
}

// ContextBinaries is where, in a build context, the Dockerfile takes the binaries of one
// architecture: bin/linux_<arch>/, as its COPY bin/${TARGETOS}_${TARGETARCH}/ says.
func ContextBinaries(buildContext, arch string) string {
	return filepath.Join(buildContext, "bin", "linux_"+arch)
}

// Spec is one build of the Dockerfile.
type Spec struct {
	// ModuleDir holds the Dockerfile.
	ModuleDir string
	// Context is the build context: the Commands of each of Archs in ContextBinaries.
	Context string
	// State is buildkitd's state directory, its own: each build runs a private buildkitd.
	State string
	// Ref names the image in the archive (registry/repository:tag).
	Ref string
	// Archs are the Linux architectures to build, such as amd64 and arm64: one image each, under one
	// index when there are several. No RUN step runs, so none needs emulation.
	Archs []string
	// Dest is the OCI image-layout tarball to write.
	Dest string
}

// BuildDockerfile runs a private buildkitd and has buildctl build s: the Dockerfile at s.ModuleDir
// from s.Context for each of s.Archs, written as an OCI archive to s.Dest. It needs root.
func BuildDockerfile(ctx context.Context, s Spec, tools Tools) error {
	for _, t := range []string{tools.Buildkitd, tools.Buildctl, tools.Runc} {
		if _, err := os.Stat(t); err != nil {
			return fmt.Errorf("build image: %w; run `make deps` (hack/install-deps.sh builds BuildKit and runc)", err)
		}
	}
	// A unix socket's path must fit in 108 bytes, which a test's temporary directory may not.
	sockDir, err := os.MkdirTemp("", "podorder-buildkit-")
	if err != nil {
		return fmt.Errorf("build image: %w", err)
	}
	defer os.RemoveAll(sockDir)
	addr := "unix://" + filepath.Join(sockDir, "buildkitd.sock")
	stop, err := startBuildkitd(ctx, tools, s.State, addr)
	if err != nil {
		return err
	}
	defer stop()

	platforms := make([]string, len(s.Archs))
	for i, arch := range s.Archs {
		platforms[i] = "linux/" + arch
	}
	cmd := exec.CommandContext(ctx, tools.Buildctl, "--addr", addr, "build",
		"--frontend", "dockerfile.v0",
		"--opt", "platform="+strings.Join(platforms, ","),
		"--local", "context="+s.Context,
		"--local", "dockerfile="+s.ModuleDir,
		"--output", "type=oci,dest="+s.Dest+",name="+s.Ref)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build image: buildctl build: %w\n%s", err, out)
	}
	return nil
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
