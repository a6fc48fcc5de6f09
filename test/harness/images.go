package harness

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/podorder/podorder/test/image"
)

// The two local images every test imports; both hold test/workload.
const (
	// PauseImage is the sandbox image (pinned_images.sandbox): `/workload pause`.
	PauseImage = "registry.local/podorder/pause:test"
	// WorkloadImage is every container's image: `/workload run <args>`.
	WorkloadImage = "registry.local/podorder/workload:test"
)

// BusyboxImage is the public image examples/ run, `busybox:1.37`, built here under its own name
// (test/image.BuildBusybox) from the static busybox hack/install-deps.sh puts in the cache.
const BusyboxImage = image.BusyboxRef

// workloadPath is where both images hold test/workload.
const workloadPath = "/workload"

// imageTars caches the image archives for the test binary: built once, imported per Env.
var imageTars = struct {
	once sync.Once
	tars map[string][]byte // ref → OCI layout tar
	err  error
}{}

// ImportWorkloadImages imports PauseImage and WorkloadImage into containerd and waits until the
// CRI image service lists them. The workload is built (static) once per test binary.
func (e *Env) ImportWorkloadImages(t testing.TB) {
	t.Helper()
	imageTars.once.Do(func() { imageTars.tars, imageTars.err = buildImages() })
	if imageTars.err != nil {
		t.Fatalf("build test images: %v", imageTars.err)
	}
	for _, ref := range []string{PauseImage, WorkloadImage} {
		e.importImage(t, ref, imageTars.tars[ref])
	}
}

// busyboxTar caches the BusyboxImage archive for the test binary.
var busyboxTar = struct {
	once sync.Once
	tar  []byte
	err  error
}{}

// ImportBusybox imports BusyboxImage into containerd, so that a manifest naming `busybox:1.37`
// runs as written without a registry, and waits until the CRI image service lists it. It fails
// the test when hack/install-deps.sh has not put busybox in the cache.
func (e *Env) ImportBusybox(t testing.TB) {
	t.Helper()
	busyboxTar.once.Do(func() { busyboxTar.tar, busyboxTar.err = buildBusybox(filepath.Join(BinDir(), "busybox")) })
	if busyboxTar.err != nil {
		t.Fatalf("build %s: %v", BusyboxImage, busyboxTar.err)
	}
	e.importImage(t, BusyboxImage, busyboxTar.tar)
}

func buildBusybox(busybox string) ([]byte, error) {
	if _, err := os.Stat(busybox); err != nil {
		return nil, fmt.Errorf("%w: run hack/install-deps.sh, which extracts the static busybox of Debian's busybox-static there", err)
	}
	tmp, err := os.MkdirTemp("", "podorder-busybox")
	if err != nil {
		return nil, fmt.Errorf("create build dir: %w", err)
	}
	defer os.RemoveAll(tmp)
	path, err := image.BuildBusybox(tmp, busybox)
	if err != nil {
		return nil, err
	}
	return os.ReadFile(path)
}

// importImage imports an OCI layout tarball into the CRI plugin's namespace and waits until the CRI
// image service lists ref.
func (e *Env) importImage(t testing.TB, ref string, tar []byte) {
	t.Helper()
	cmd := exec.Command(filepath.Join(e.bin, "ctr"), "--address", e.Address, "-n", Namespace, "images", "import", "-")
	cmd.Stdin = bytes.NewReader(tar)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ctr images import %s: %v: %s", ref, err, out)
	}
	e.waitImage(t, ref)
}

// waitImage waits for the CRI plugin to learn of an imported image: it learns from containerd's
// image events asynchronously and offers no way to await that, so ask until it answers.
func (e *Env) waitImage(t testing.TB, ref string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		res, err := e.Images.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
		cancel()
		if err != nil {
			t.Fatalf("CRI ImageStatus %s: %v", ref, err)
		}
		if res.GetImage() != nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("CRI does not list imported image %s after 10s", ref)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// buildImages compiles test/workload and returns the two image archives.
func buildImages() (map[string][]byte, error) {
	_, self, _, ok := runtime.Caller(0)
	if !ok {
		return nil, fmt.Errorf("locate test/workload: no caller information")
	}
	tmp, err := os.MkdirTemp("", "podorder-images")
	if err != nil {
		return nil, fmt.Errorf("create build dir: %w", err)
	}
	defer os.RemoveAll(tmp)

	bin := filepath.Join(tmp, "workload")
	build := exec.Command("go", "build", "-trimpath", "-o", bin, ".")
	build.Dir = filepath.Join(filepath.Dir(self), "..", "workload")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build test/workload: %w: %s", err, out)
	}
	tars := map[string][]byte{}
	for ref, entrypoint := range map[string][]string{
		PauseImage:    {workloadPath, "pause"},
		WorkloadImage: {workloadPath, "run"},
	} {
		path, err := image.BuildFiles(tmp, ref, map[string]string{workloadPath: bin}, entrypoint)
		if err != nil {
			return nil, err
		}
		if tars[ref], err = os.ReadFile(path); err != nil {
			return nil, fmt.Errorf("read image %s: %w", ref, err)
		}
	}
	return tars, nil
}
