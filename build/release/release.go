// Package release is `make release`: from the module at one commit it writes every artifact of a
// podorder release into one directory. The image for linux/amd64 and linux/arm64 under one index
// (the Dockerfile, built by BuildKit through build/image, as an OCI archive), the packaged Helm
// chart, the podorder binaries for Linux and macOS on both architectures and the hook for Linux,
// kubectl podorder's archives and krew manifest, an SPDX SBOM of the Go modules compiled into them,
// and SHA256SUMS over all of it.
package release

import (
	"archive/tar"
	"cmp"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"debug/buildinfo"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/podorder/podorder/build/image"
	"github.com/podorder/podorder/build/krew"
)

// Archs are the architectures a release builds, for every OS it builds.
var Archs = []string{"amd64", "arm64"}

// Image is where a release's image is meant to be published; the archive names it so, with the
// release's tag. Nothing is pushed: a mirror renames it anyway (docs/install.md#releases).
const Image = "ghcr.io/podorder/podorder"

// Options say where a release comes from, where it goes and with what.
type Options struct {
	// ModuleDir is the module's root: VERSION, the Dockerfile, cmd/ and charts/podorder.
	ModuleDir string
	// Dist receives the artifacts; it is created if missing. Files of the same names are replaced.
	Dist string
	// Image names the image in the archive, without a tag (Image by default).
	Image string
	// Tools build the image; Helm packages the chart.
	Tools image.Tools
	Helm  string
	// Created dates the SBOM (now when zero).
	Created time.Time
}

// Binary is one of a release's executables: which command, for which platform.
type Binary struct {
	Command, OS, Arch string
}

// Binaries are a release's executables: podorder for Linux and macOS, the hook (which runs only
// inside containers on a node) for Linux.
func Binaries() []Binary {
	var bins []Binary
	for _, goos := range []string{"linux", "darwin"} {
		for _, arch := range Archs {
			for _, cmd := range image.Commands {
				if cmd == "podorder-hook" && goos != "linux" {
					continue
				}
				bins = append(bins, Binary{Command: cmd, OS: goos, Arch: arch})
			}
		}
	}
	return bins
}

// FileName is the binary's name in a release: podorder_v0.3.0_linux_amd64.
func (b Binary) FileName(release string) string {
	return fmt.Sprintf("%s_v%s_%s_%s", b.Command, release, b.OS, b.Arch)
}

// ImageFileName, ChartFileName and SBOMFileName name the other artifacts of a release; SumsFileName
// lists the SHA-256 of all of them, in `sha256sum -c` format.
func ImageFileName(release string) string { return "podorder-image-v" + release + ".oci.tar" }
func ChartFileName(release string) string { return "podorder-" + release + ".tgz" }
func SBOMFileName(release string) string  { return "podorder_v" + release + ".spdx.json" }

// KrewFileName names kubectl podorder's krew manifest, rendered for the release.
func KrewFileName(release string) string { return "kubectl-podorder_v" + release + ".krew.yaml" }

const SumsFileName = "SHA256SUMS"

// Run writes the release of the module at o.ModuleDir into o.Dist and returns the artifacts' names,
// SHA256SUMS last. It needs root, as BuildKit does.
func Run(ctx context.Context, o Options) ([]string, error) {
	release, err := image.Version(o.ModuleDir)
	if err != nil {
		return nil, fmt.Errorf("release: %w", err)
	}
	if err := os.MkdirAll(o.Dist, 0o755); err != nil {
		return nil, fmt.Errorf("release: %w", err)
	}
	if _, err := os.Stat(o.Helm); err != nil {
		return nil, fmt.Errorf("release: helm: %w; `make release` builds it", err)
	}
	work, err := os.MkdirTemp("", "podorder-release-")
	if err != nil {
		return nil, fmt.Errorf("release: %w", err)
	}
	defer os.RemoveAll(work)

	var artifacts []string
	buildContext := filepath.Join(work, "context")
	for _, b := range Binaries() {
		name := b.FileName(release)
		if err := image.GoBuild(ctx, o.ModuleDir, release, b.OS, b.Arch, b.Command, filepath.Join(o.Dist, name)); err != nil {
			return nil, fmt.Errorf("release: %w", err)
		}
		artifacts = append(artifacts, name)
		if b.OS == "linux" {
			// The image holds the very files shipped beside it.
			if err := copyFile(filepath.Join(o.Dist, name), filepath.Join(image.ContextBinaries(buildContext, b.Arch), b.Command)); err != nil {
				return nil, fmt.Errorf("release: %w", err)
			}
		}
	}

	tar := ImageFileName(release)
	err = image.BuildDockerfile(ctx, image.Spec{
		ModuleDir: o.ModuleDir, Context: buildContext, State: filepath.Join(work, "buildkit"),
		Ref: cmp.Or(o.Image, Image) + ":v" + release, Archs: Archs, Dest: filepath.Join(o.Dist, tar),
	}, o.Tools)
	if err != nil {
		return nil, fmt.Errorf("release: %w", err)
	}
	// buildctl creates the archive writable by everyone.
	if err := os.Chmod(filepath.Join(o.Dist, tar), 0o644); err != nil {
		return nil, fmt.Errorf("release: %w", err)
	}
	artifacts = append(artifacts, tar)

	chart := ChartFileName(release)
	pkg := exec.CommandContext(ctx, o.Helm, "package", filepath.Join(o.ModuleDir, "charts", "podorder"), "--destination", o.Dist)
	if out, err := pkg.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("release: helm package: %w\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(o.Dist, chart)); err != nil {
		return nil, fmt.Errorf("release: helm package wrote no %s: does charts/podorder/Chart.yaml say version %s? %w", chart, release, err)
	}
	artifacts = append(artifacts, chart)

	plugins, err := writeKubectlPlugin(ctx, o, release, work)
	if err != nil {
		return nil, err
	}
	artifacts = append(artifacts, plugins...)

	sbom, err := writeSBOM(o, release)
	if err != nil {
		return nil, err
	}
	artifacts = append(artifacts, sbom)

	if err := writeSums(o.Dist, artifacts); err != nil {
		return nil, err
	}
	return append(artifacts, SumsFileName), nil
}

// writeSBOM reads the module list every binary of the release recorded and writes the SPDX document.
func writeSBOM(o Options, release string) (string, error) {
	var bins []BuiltBinary
	for _, b := range Binaries() {
		path := filepath.Join(o.Dist, b.FileName(release))
		info, err := buildinfo.ReadFile(path)
		if err != nil {
			return "", fmt.Errorf("release: SBOM: read the build info of %s: %w", path, err)
		}
		sum, err := sha256File(path)
		if err != nil {
			return "", fmt.Errorf("release: SBOM: %w", err)
		}
		bins = append(bins, BuiltBinary{Binary: b, FileName: b.FileName(release), SHA256: sum, Info: info})
	}
	doc, err := SPDX(release, bins, cmp.Or(o.Created, time.Now()))
	if err != nil {
		return "", fmt.Errorf("release: SBOM: %w", err)
	}
	name := SBOMFileName(release)
	if err := os.WriteFile(filepath.Join(o.Dist, name), doc, 0o644); err != nil {
		return "", fmt.Errorf("release: SBOM: %w", err)
	}
	return name, nil
}

// writeSums writes SHA256SUMS over the artifacts named, sorted, as sha256sum prints them.
func writeSums(dist string, artifacts []string) error {
	var b strings.Builder
	for _, name := range slices.Sorted(slices.Values(artifacts)) {
		sum, err := sha256File(filepath.Join(dist, name))
		if err != nil {
			return fmt.Errorf("release: %s: %w", SumsFileName, err)
		}
		fmt.Fprintf(&b, "%s  %s\n", sum, name)
	}
	if err := os.WriteFile(filepath.Join(dist, SumsFileName), []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("release: %w", err)
	}
	return nil
}

// sha256File returns the hex SHA-256 of the file at path.
func sha256File(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// copyFile copies src to dst (creating dst's directory), executable.
func copyFile(src, dst string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	return os.WriteFile(dst, data, 0o755)
}

// writeKubectlPlugin builds kubectl-podorder for every platform krew lists, packs each with LICENSE
// into the archive the krew manifest names, and renders that manifest with their sums.
func writeKubectlPlugin(ctx context.Context, o Options, release, work string) ([]string, error) {
	var names []string
	sums := map[krew.Platform]string{}
	for _, p := range krew.Platforms {
		bin := filepath.Join(work, "kubectl-podorder_"+p.OS+"_"+p.Arch)
		if err := image.GoBuild(ctx, o.ModuleDir, release, p.OS, p.Arch, "kubectl-podorder", bin); err != nil {
			return nil, fmt.Errorf("release: %w", err)
		}
		name := krew.Archive(release, p)
		if err := writeArchive(filepath.Join(o.Dist, name), map[string]string{
			"kubectl-podorder": bin, "LICENSE": filepath.Join(o.ModuleDir, "LICENSE"),
		}); err != nil {
			return nil, fmt.Errorf("release: %s: %w", name, err)
		}
		sum, err := sha256File(filepath.Join(o.Dist, name))
		if err != nil {
			return nil, fmt.Errorf("release: %w", err)
		}
		sums[p] = sum
		names = append(names, name)
	}
	manifest, err := krew.Render(release, sums)
	if err != nil {
		return nil, fmt.Errorf("release: %w", err)
	}
	if err := os.WriteFile(filepath.Join(o.Dist, KrewFileName(release)), []byte(manifest), 0o644); err != nil {
		return nil, fmt.Errorf("release: %w", err)
	}
	return append(names, KrewFileName(release)), nil
}

// writeArchive writes a tar.gz of files (name in the archive → path), sorted by name, each at the
// archive's root with its mode and no owner.
func writeArchive(dest string, files map[string]string) error {
	f, err := os.Create(dest)
	if err != nil {
		return err
	}
	zw := gzip.NewWriter(f)
	tw := tar.NewWriter(zw)
	for _, name := range slices.Sorted(maps.Keys(files)) {
		if err := addFile(tw, name, files[name]); err != nil {
			f.Close()
			return err
		}
	}
	for _, c := range []io.Closer{tw, zw, f} {
		if err := c.Close(); err != nil {
			return err
		}
	}
	return nil
}

func addFile(tw *tar.Writer, name, path string) error {
	src, err := os.Open(path)
	if err != nil {
		return err
	}
	defer src.Close()
	info, err := src.Stat()
	if err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: int64(info.Mode().Perm()), Size: info.Size(), ModTime: info.ModTime(), Format: tar.FormatPAX}); err != nil {
		return err
	}
	_, err = io.Copy(tw, src)
	return err
}
