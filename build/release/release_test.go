package release

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"debug/elf"
	"debug/macho"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"

	"github.com/podorder/podorder/build/image"
	"github.com/podorder/podorder/build/krew"
)

const moduleDir = "../.."

// TestTheReleaseOfThisCommit runs `make release`'s build into a temporary directory and opens every
// artifact: BuildKit (the private buildkitd build/image runs), helm and cross-compiles for four
// platforms. `make test-release` runs it.
func TestTheReleaseOfThisCommit(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a whole release")
	}
	if os.Geteuid() != 0 {
		t.Skip("buildkitd needs root")
	}
	tools := image.CachedTools()
	for _, p := range []string{tools.Buildkitd, tools.Buildctl, tools.Runc} {
		if _, err := os.Stat(p); err != nil {
			t.Skipf("%s: run `make deps` (or `make test-release`)", p)
		}
	}
	helm := helmBinary(t)
	version, err := image.Version(moduleDir)
	require.NoError(t, err)
	dist := t.TempDir()

	start := time.Now()
	artifacts, err := Run(t.Context(), Options{ModuleDir: moduleDir, Dist: dist, Tools: tools, Helm: helm})
	require.NoError(t, err)
	t.Logf("release v%s built in %s", version, time.Since(start).Round(time.Millisecond))
	assert.Equal(t, SumsFileName, artifacts[len(artifacts)-1])

	t.Run("the image index holds linux/amd64 and linux/arm64, each with its own binaries", func(t *testing.T) {
		layout := readTar(t, filepath.Join(dist, ImageFileName(version)))
		manifests := platformManifests(t, layout)
		require.ElementsMatch(t, []string{"linux/amd64", "linux/arm64"}, keys(manifests))
		for platform, manifest := range manifests {
			arch := strings.TrimPrefix(platform, "linux/")
			var config struct{ Architecture, OS string }
			require.NoError(t, json.Unmarshal(blob(t, layout, manifest.Config.Digest), &config))
			assert.Equal(t, "linux", config.OS, platform)
			assert.Equal(t, arch, config.Architecture, platform)
			files := map[string][]byte{}
			for _, l := range manifest.Layers {
				for name, data := range readTarGz(t, blob(t, layout, l.Digest)) {
					files[name] = data
				}
			}
			for _, cmd := range image.Commands {
				bin, ok := files[cmd]
				require.True(t, ok, "%s: /%s in the image; it holds %v", platform, cmd, keys(files))
				assert.Equal(t, elfMachine[arch], elfOf(t, bin), "%s: /%s", platform, cmd)
				shipped, err := os.ReadFile(filepath.Join(dist, Binary{cmd, "linux", arch}.FileName(version)))
				require.NoError(t, err)
				assert.True(t, bytes.Equal(shipped, bin), "%s: /%s is the %s shipped beside the image", platform, cmd, cmd)
			}
			if arch == runtime.GOARCH {
				exe := filepath.Join(t.TempDir(), "podorder")
				require.NoError(t, os.WriteFile(exe, files["podorder"], 0o755))
				out, err := exec.Command(exe, "version").CombinedOutput()
				require.NoError(t, err, "%s", out)
				assert.Contains(t, string(out), version, "podorder version of the %s image", platform)
			}
		}
	})

	t.Run("each binary is built for its platform", func(t *testing.T) {
		for _, b := range Binaries() {
			path := filepath.Join(dist, b.FileName(version))
			if b.OS == "darwin" {
				f, err := macho.Open(path)
				require.NoError(t, err, b.FileName(version))
				assert.Equal(t, map[string]macho.Cpu{"amd64": macho.CpuAmd64, "arm64": macho.CpuArm64}[b.Arch], f.Cpu, b.FileName(version))
				f.Close()
				continue
			}
			data, err := os.ReadFile(path)
			require.NoError(t, err)
			assert.Equal(t, elfMachine[b.Arch], elfOf(t, data), b.FileName(version))
		}
	})

	t.Run("kubectl podorder ships per platform with LICENSE, and its krew manifest names each archive's sum", func(t *testing.T) {
		manifest, err := os.ReadFile(filepath.Join(dist, KrewFileName(version)))
		require.NoError(t, err)
		for _, p := range krew.Platforms {
			name := krew.Archive(version, p)
			data, err := os.ReadFile(filepath.Join(dist, name))
			require.NoError(t, err)
			files := readTarGz(t, data)
			require.ElementsMatch(t, []string{"kubectl-podorder", "LICENSE"}, keys(files), name)
			if p.OS == "darwin" {
				f, err := macho.NewFile(bytes.NewReader(files["kubectl-podorder"]))
				require.NoError(t, err, name)
				assert.Equal(t, map[string]macho.Cpu{"amd64": macho.CpuAmd64, "arm64": macho.CpuArm64}[p.Arch], f.Cpu, name)
			} else {
				assert.Equal(t, elfMachine[p.Arch], elfOf(t, files["kubectl-podorder"]), name)
			}
			sum := sha256.Sum256(data)
			assert.Contains(t, string(manifest), hex.EncodeToString(sum[:]), "the manifest names %s's sum", name)
			assert.Contains(t, string(manifest), name)
		}
	})

	t.Run("SHA256SUMS lists every other artifact with its hash", func(t *testing.T) {
		f, err := os.Open(filepath.Join(dist, SumsFileName))
		require.NoError(t, err)
		defer f.Close()
		listed := map[string]bool{}
		lines := bufio.NewScanner(f)
		for lines.Scan() {
			sum, name, ok := strings.Cut(lines.Text(), "  ")
			require.True(t, ok, "a sha256sum line: %q", lines.Text())
			data, err := os.ReadFile(filepath.Join(dist, name))
			require.NoError(t, err)
			h := sha256.Sum256(data)
			assert.Equal(t, hex.EncodeToString(h[:]), sum, name)
			listed[name] = true
		}
		entries, err := os.ReadDir(dist)
		require.NoError(t, err)
		var files []string
		for _, e := range entries {
			if e.Name() != SumsFileName {
				files = append(files, e.Name())
			}
		}
		assert.ElementsMatch(t, files, keys(listed))
		assert.ElementsMatch(t, artifacts[:len(artifacts)-1], files)
	})

	t.Run("the SBOM lists the modules of go.mod at their versions", func(t *testing.T) {
		var doc struct {
			SPDXVersion string
			Packages    []struct {
				Name, VersionInfo string
				ExternalRefs      []struct{ ReferenceType, ReferenceLocator string }
			}
		}
		data, err := os.ReadFile(filepath.Join(dist, SBOMFileName(version)))
		require.NoError(t, err)
		require.NoError(t, json.Unmarshal(data, &doc))
		assert.Equal(t, "SPDX-2.3", doc.SPDXVersion)
		for _, mod := range []string{"k8s.io/client-go", "github.com/containerd/nri"} {
			want := goModVersion(t, mod)
			found := false
			for _, p := range doc.Packages {
				if p.Name == mod {
					found = true
					assert.Equal(t, want, p.VersionInfo, mod)
					require.Len(t, p.ExternalRefs, 1)
					assert.Equal(t, "pkg:golang/"+mod+"@"+want, p.ExternalRefs[0].ReferenceLocator)
				}
			}
			assert.True(t, found, "%s in the SBOM", mod)
		}
	})

	t.Run("the chart is packaged at the release's version and renders", func(t *testing.T) {
		tgz := filepath.Join(dist, ChartFileName(version))
		data, err := os.ReadFile(tgz)
		require.NoError(t, err)
		files := readTarGz(t, data)
		var chart struct{ Version, AppVersion string }
		require.NoError(t, yaml.Unmarshal(files["podorder/Chart.yaml"], &chart))
		assert.Equal(t, version, chart.Version)
		assert.Equal(t, version, chart.AppVersion)
		out, err := exec.Command(helm, "lint", tgz).CombinedOutput()
		require.NoError(t, err, "helm lint: %s", out)
		// The chart asks for Kubernetes >= 1.30; helm template assumes an older one unless told.
		out, err = exec.Command(helm, "template", "podorder", tgz, "--namespace", "podorder-system", "--kube-version", "1.37.2").CombinedOutput()
		require.NoError(t, err, "helm template: %s", out)
		assert.Contains(t, string(out), "kind: DaemonSet")
		assert.Contains(t, string(out), ":v"+version+`"`, "the DaemonSet runs the release's image tag")
	})
}

// elfMachine is the ELF machine of each Go architecture a release builds.
var elfMachine = map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}

func elfOf(t *testing.T, data []byte) elf.Machine {
	t.Helper()
	f, err := elf.NewFile(bytes.NewReader(data))
	require.NoError(t, err)
	return f.Machine
}

// helmBinary is $PODORDER_HELM (the Makefile sets it), or the one `make` built into the cache.
func helmBinary(t *testing.T) string {
	t.Helper()
	if h := os.Getenv("PODORDER_HELM"); h != "" {
		return h
	}
	cache := os.Getenv("PODORDER_CACHE")
	if cache == "" {
		cache = "/var/cache/podorder"
	}
	found, _ := filepath.Glob(filepath.Join(cache, "tools", "helm-*", "helm"))
	if len(found) == 0 {
		t.Skip("no helm in the cache: run `make test-release`")
	}
	return found[len(found)-1]
}

// goModVersion is the version of mod that go.mod selects.
func goModVersion(t *testing.T, mod string) string {
	t.Helper()
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Version}}", mod)
	cmd.Dir = moduleDir
	out, err := cmd.Output()
	require.NoError(t, err)
	return strings.TrimSpace(string(out))
}

type descriptor struct {
	MediaType string
	Digest    string
	Platform  *struct{ OS, Architecture string }
}

type manifest struct {
	Config descriptor
	Layers []descriptor
}

// platformManifests follows the layout's index.json, through nested indexes, to the image manifests,
// keyed os/arch. Attestation manifests (platform unknown/unknown) are left out.
func platformManifests(t *testing.T, layout map[string][]byte) map[string]manifest {
	t.Helper()
	found := map[string]manifest{}
	var walk func(index []byte)
	walk = func(index []byte) {
		var ix struct{ Manifests []descriptor }
		require.NoError(t, json.Unmarshal(index, &ix))
		for _, d := range ix.Manifests {
			switch d.MediaType {
			case "application/vnd.oci.image.index.v1+json":
				walk(blob(t, layout, d.Digest))
			case "application/vnd.oci.image.manifest.v1+json":
				require.NotNil(t, d.Platform, "manifest %s names its platform", d.Digest)
				if d.Platform.OS == "unknown" {
					continue
				}
				var m manifest
				require.NoError(t, json.Unmarshal(blob(t, layout, d.Digest), &m))
				platform := d.Platform.OS + "/" + d.Platform.Architecture
				_, dup := found[platform]
				require.False(t, dup, "two manifests for %s", platform)
				found[platform] = m
			default:
				t.Fatalf("unexpected media type %s in an index", d.MediaType)
			}
		}
	}
	walk(layout["index.json"])
	return found
}

func blob(t *testing.T, layout map[string][]byte, digest string) []byte {
	t.Helper()
	data, ok := layout["blobs/"+strings.Replace(digest, ":", "/", 1)]
	require.True(t, ok, "blob %s in the layout", digest)
	return data
}

// readTar returns the regular files of the tarball at path by name.
func readTar(t *testing.T, path string) map[string][]byte {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	return tarFiles(t, f)
}

func readTarGz(t *testing.T, data []byte) map[string][]byte {
	t.Helper()
	z, err := gzip.NewReader(bytes.NewReader(data))
	require.NoError(t, err)
	return tarFiles(t, z)
}

func tarFiles(t *testing.T, r io.Reader) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		require.NoError(t, err)
		if h.Typeflag != tar.TypeReg {
			continue
		}
		data, err := io.ReadAll(tr)
		require.NoError(t, err)
		files[strings.TrimPrefix(filepath.Clean(h.Name), "/")] = data
	}
}

func keys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}
