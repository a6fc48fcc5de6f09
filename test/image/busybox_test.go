package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// examplesApplets are the commands examples/ run in busybox:1.37.
var examplesApplets = []string{"sh", "echo", "sleep", "mkdir", "httpd", "nc", "true"}

func TestTheBusyboxImageIsNamedLikeDockerHubsAndRunsShWithoutAnEntrypoint(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "busybox")
	require.NoError(t, os.WriteFile(bin, []byte("#!busybox"), 0o600))

	path, err := Build(dir, BusyboxRef, BusyboxSpec(bin, []string{"[", "busybox", "httpd", "nc", "sh"}))
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(dir, "busybox_1.37.tar"), path)
	index, cfg, layer := readImage(t, path)
	assert.Equal(t, map[string]string{AnnotationImageName: "docker.io/library/busybox:1.37", AnnotationRefName: "1.37"}, index.Manifests[0].Annotations)
	assert.Nil(t, cfg.Config.Entrypoint)
	assert.Equal(t, []string{"sh"}, cfg.Config.Cmd)
	assert.Equal(t, []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}, cfg.Config.Env)

	assert.Equal(t, byte(tar.TypeDir), layer["bin/"].hdr.Typeflag)
	assert.Equal(t, int64(0o755), layer["bin/"].hdr.Mode)
	assert.Equal(t, []byte("#!busybox"), layer["bin/busybox"].data)
	assert.Equal(t, byte(tar.TypeReg), layer["bin/busybox"].hdr.Typeflag)
	for _, applet := range []string{"[", "httpd", "nc", "sh"} {
		assert.Equal(t, byte(tar.TypeSymlink), layer["bin/"+applet].hdr.Typeflag, applet)
		assert.Equal(t, "busybox", layer["bin/"+applet].hdr.Linkname, applet)
	}
	assert.Len(t, layer, 7, "tmp/, bin/, the binary and one link per applet but busybox itself")
}

func TestAPathThatIsBothAFileAndALinkIsRefused(t *testing.T) {
	_, err := Build(t.TempDir(), "x:1", Spec{Files: map[string]string{"/bin/sh": "/bin/sh"}, Symlinks: map[string]string{"/bin/sh": "busybox"}})
	assert.ErrorContains(t, err, "/bin/sh is both a file and a symbolic link")
}

// TestTheCachedBusyboxRunsTheExamplesAppletsFromItsImage builds the image from the busybox that
// hack/install-deps.sh put in the cache, unpacks its layer and runs the applets examples/ use
// through the image's own links. It starts no container.
func TestTheCachedBusyboxRunsTheExamplesAppletsFromItsImage(t *testing.T) {
	cache := os.Getenv("PODORDER_CACHE")
	if cache == "" {
		cache = "/var/cache/podorder"
	}
	busybox := filepath.Join(cache, "bin", "busybox")
	if _, err := os.Stat(busybox); err != nil {
		msg := busybox + " is missing: run hack/install-deps.sh (it extracts Debian's busybox-static)"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	path, err := BuildBusybox(t.TempDir(), busybox)
	require.NoError(t, err)
	_, _, layer := readImage(t, path)
	root := t.TempDir()
	for name, e := range layer {
		target := filepath.Join(root, name)
		switch e.hdr.Typeflag {
		case tar.TypeDir:
			require.NoError(t, os.MkdirAll(target, 0o755))
		case tar.TypeSymlink:
			require.NoError(t, os.MkdirAll(filepath.Dir(target), 0o755))
			require.NoError(t, os.Symlink(e.hdr.Linkname, target))
		default:
			require.NoError(t, os.MkdirAll(filepath.Dir(target), 0o755))
			require.NoError(t, os.WriteFile(target, e.data, os.FileMode(e.hdr.Mode)))
		}
	}
	for _, applet := range examplesApplets {
		assert.Contains(t, layer, "bin/"+applet)
	}
	// busybox runs the applet it is called by: each link of the image runs its applet.
	for _, applet := range []string{"sh", "sleep", "mkdir", "httpd", "nc"} {
		out, _ := exec.Command(filepath.Join(root, "bin", applet), "--help").CombinedOutput()
		assert.Contains(t, string(out), "Usage: "+applet+" ", applet)
	}
	sh := exec.Command(filepath.Join(root, "bin/sh"), "-c", `echo "web: serving on 8080"; true`)
	sh.Env = []string{"PATH=/bin"}
	out, err := sh.CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Equal(t, "web: serving on 8080\n", string(out))
}

// readImage returns the index, the config and the only layer's entries of an image layout tarball.
func readImage(t *testing.T, path string) (Index, Config, map[string]entry) {
	t.Helper()
	files := untar(t, readFile(t, path))
	var index Index
	require.NoError(t, json.Unmarshal(files["index.json"].data, &index))
	require.Len(t, index.Manifests, 1)
	var manifest Manifest
	require.NoError(t, json.Unmarshal(blob(t, files, index.Manifests[0]), &manifest))
	var cfg Config
	require.NoError(t, json.Unmarshal(blob(t, files, manifest.Config), &cfg))
	require.Len(t, manifest.Layers, 1)
	zr, err := gzip.NewReader(bytes.NewReader(blob(t, files, manifest.Layers[0])))
	require.NoError(t, err)
	layerTar, err := io.ReadAll(zr)
	require.NoError(t, err)
	require.Equal(t, []string{digest(layerTar)}, cfg.RootFS.DiffIDs)
	return index, cfg, untar(t, layerTar)
}
