package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRefNameIsTheTagOfAReference(t *testing.T) {
	for _, tc := range []struct{ ref, want string }{
		{"registry.local/podorder/pause:test", "test"},
		{"registry.local:5000/podorder/pause", "latest"},
		{"registry.local:5000/podorder/pause:v1", "v1"},
		{"pause", "latest"},
		{"registry.local/pause:v2@sha256:abcd", "v2"},
	} {
		t.Run(tc.ref, func(t *testing.T) {
			assert.Equal(t, tc.want, RefName(tc.ref))
		})
	}
}

func TestBuildWritesALayoutThatNamesTheImageAndHoldsTheBinary(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	require.NoError(t, os.WriteFile(bin, []byte("#!binary"), 0o600))

	path, err := BuildFiles(dir, "registry.local/podorder/workload:test", map[string]string{"/workload": bin}, []string{"/workload", "run"})
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(dir, "workload_test.tar"), path)
	again, err := BuildFiles(t.TempDir(), "registry.local/podorder/workload:test", map[string]string{"/workload": bin}, []string{"/workload", "run"})
	require.NoError(t, err)
	assert.Equal(t, readFile(t, path), readFile(t, again), "same inputs give the same archive")

	files := untar(t, readFile(t, path))
	require.Contains(t, files, "oci-layout")
	var index Index
	require.NoError(t, json.Unmarshal(files["index.json"].data, &index))
	require.Len(t, index.Manifests, 1)
	assert.Equal(t, map[string]string{
		AnnotationImageName: "registry.local/podorder/workload:test",
		AnnotationRefName:   "test",
	}, index.Manifests[0].Annotations)

	var manifest Manifest
	require.NoError(t, json.Unmarshal(blob(t, files, index.Manifests[0]), &manifest))
	var cfg Config
	require.NoError(t, json.Unmarshal(blob(t, files, manifest.Config), &cfg))
	assert.Equal(t, []string{"/workload", "run"}, cfg.Config.Entrypoint)
	require.Len(t, manifest.Layers, 1)

	zr, err := gzip.NewReader(bytes.NewReader(blob(t, files, manifest.Layers[0])))
	require.NoError(t, err)
	layerTar, err := io.ReadAll(zr)
	require.NoError(t, err)
	assert.Equal(t, []string{digest(layerTar)}, cfg.RootFS.DiffIDs)
	layer := untar(t, layerTar)
	assert.Equal(t, []byte("#!binary"), layer["workload"].data)
	assert.Equal(t, int64(0o755), layer["workload"].hdr.Mode)
	assert.Equal(t, byte(tar.TypeDir), layer["tmp/"].hdr.Typeflag)
}

type entry struct {
	hdr  *tar.Header
	data []byte
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	return data
}

func untar(t *testing.T, data []byte) map[string]entry {
	t.Helper()
	files := map[string]entry{}
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files
		}
		require.NoError(t, err)
		body, err := io.ReadAll(tr)
		require.NoError(t, err)
		files[hdr.Name] = entry{hdr: hdr, data: body}
	}
}

// blob returns a blob of the layout after checking its size and digest against the descriptor.
func blob(t *testing.T, files map[string]entry, d Descriptor) []byte {
	t.Helper()
	e, ok := files["blobs/sha256/"+strings.TrimPrefix(d.Digest, "sha256:")]
	require.True(t, ok, "blob %s is in the layout", d.Digest)
	require.Equal(t, d.Size, int64(len(e.data)))
	require.Equal(t, d.Digest, digest(e.data))
	return e.data
}
