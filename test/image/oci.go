// Package image writes the real-runtime tests' images as OCI image-layout tarballs that containerd
// imports with `ctr images import`: no registry, one layer holding static executables. They are the
// workload images and, for examples/, busybox:1.37 built from Debian's static busybox. podorder's
// own image is the Dockerfile's, built with BuildKit (build/image).
package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"
)

// Media types and annotations of the image layout. containerd's importer names an image after
// AnnotationImageName when present (a full reference) and falls back to AnnotationRefName (for
// OCI, only the tag) joined to the import's base name (core/transfer/image/imagestore.go and
// client/import.go, containerd v2.4.2). We set both, like `ctr images export` does.
const (
	MediaTypeIndex    = "application/vnd.oci.image.index.v1+json"
	MediaTypeManifest = "application/vnd.oci.image.manifest.v1+json"
	MediaTypeConfig   = "application/vnd.oci.image.config.v1+json"
	MediaTypeLayer    = "application/vnd.oci.image.layer.v1.tar+gzip"

	AnnotationImageName = "io.containerd.image.name"
	AnnotationRefName   = "org.opencontainers.image.ref.name"
)

// Descriptor is an OCI content descriptor.
type Descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Platform    *Platform         `json:"platform,omitempty"`
}

// Platform is the OS and architecture an image runs on.
type Platform struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
}

// Index is an OCI image index (index.json).
type Index struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Manifests     []Descriptor `json:"manifests"`
}

// Manifest is an OCI image manifest.
type Manifest struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Config        Descriptor   `json:"config"`
	Layers        []Descriptor `json:"layers"`
}

// Config is the part of an OCI image config that Build fills in.
type Config struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
	Config       struct {
		Entrypoint []string `json:"Entrypoint"`
		Cmd        []string `json:"Cmd,omitempty"`
		Env        []string `json:"Env"`
	} `json:"config"`
	RootFS struct {
		Type    string   `json:"type"`
		DiffIDs []string `json:"diff_ids"`
	} `json:"rootfs"`
}

// RefName returns the OCI ref name (the tag) of a full image reference: "test" for
// "registry.local/podorder/pause:test", "latest" when the reference has no tag.
func RefName(ref string) string {
	name := ref
	if i := strings.LastIndex(name, "@"); i >= 0 {
		name = name[:i]
	}
	if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
		return name[i+1:]
	}
	return "latest"
}

// Spec is what an image's one layer holds and how the image runs.
type Spec struct {
	// Files maps each path in the image to the host file copied there (mode 0755).
	Files map[string]string
	// Symlinks maps each path in the image to the target of the symbolic link there.
	Symlinks map[string]string
	// Entrypoint, Cmd and Env are the image config's.
	Entrypoint, Cmd, Env []string
}

// BuildFiles writes dir/<name>.tar, an OCI image layout whose only layer holds files and an empty
// /tmp, whose entrypoint is entrypoint, and which `ctr images import` names ref: files maps each
// path in the image to the host file copied there (mode 0755). The same inputs always give the
// same digests.
func BuildFiles(dir, ref string, files map[string]string, entrypoint []string) (tarPath string, err error) {
	return Build(dir, ref, Spec{Files: files, Entrypoint: entrypoint, Env: []string{"PATH=/"}})
}

// Build writes dir/<name>.tar, an OCI image layout named ref (for `ctr images import`) whose only
// layer holds spec's files and symbolic links, the directories above them (mode 0755) and an
// empty /tmp. The same inputs always give the same digests.
func Build(dir, ref string, spec Spec) (tarPath string, err error) {
	entries := []tarFile{{name: "tmp/", dir: true, mode: 0o1777}}
	paths := make([]string, 0, len(spec.Files)+len(spec.Symlinks))
	for p := range spec.Files {
		paths = append(paths, p)
	}
	for p := range spec.Symlinks {
		if _, ok := spec.Files[p]; ok {
			return "", fmt.Errorf("build image %s: %s is both a file and a symbolic link", ref, p)
		}
		paths = append(paths, p)
	}
	sort.Strings(paths)
	dirs := map[string]bool{"tmp/": true}
	for _, p := range paths {
		name := strings.TrimPrefix(p, "/")
		// Parents before children: a layer that names a file before its directory applies, but
		// the directory's mode is then the extractor's choice.
		for i, c := range name {
			if c == '/' && !dirs[name[:i+1]] {
				dirs[name[:i+1]] = true
				entries = append(entries, tarFile{name: name[:i+1], dir: true, mode: 0o755})
			}
		}
		if target, ok := spec.Symlinks[p]; ok {
			entries = append(entries, tarFile{name: name, link: target, mode: 0o777})
			continue
		}
		data, err := os.ReadFile(spec.Files[p])
		if err != nil {
			return "", fmt.Errorf("build image %s: read %s: %w", ref, spec.Files[p], err)
		}
		entries = append(entries, tarFile{name: name, data: data, mode: 0o755})
	}
	layerTar, err := writeTar(entries)
	if err != nil {
		return "", fmt.Errorf("build image %s: %w", ref, err)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	if _, err := zw.Write(layerTar); err != nil {
		return "", fmt.Errorf("build image %s: compress layer: %w", ref, err)
	}
	if err := zw.Close(); err != nil {
		return "", fmt.Errorf("build image %s: compress layer: %w", ref, err)
	}

	var cfg Config
	cfg.Architecture, cfg.OS = runtime.GOARCH, "linux"
	cfg.Config.Entrypoint, cfg.Config.Cmd, cfg.Config.Env = spec.Entrypoint, spec.Cmd, spec.Env
	cfg.RootFS.Type = "layers"
	cfg.RootFS.DiffIDs = []string{digest(layerTar)}

	blobs := map[string][]byte{}
	add := func(mediaType string, data []byte) Descriptor {
		d := digest(data)
		blobs[d] = data
		return Descriptor{MediaType: mediaType, Digest: d, Size: int64(len(data))}
	}
	cfgJSON, err := json.Marshal(cfg)
	if err != nil {
		return "", fmt.Errorf("build image %s: encode config: %w", ref, err)
	}
	manifest := Manifest{
		SchemaVersion: 2,
		MediaType:     MediaTypeManifest,
		Config:        add(MediaTypeConfig, cfgJSON),
		Layers:        []Descriptor{add(MediaTypeLayer, gz.Bytes())},
	}
	manifestJSON, err := json.Marshal(manifest)
	if err != nil {
		return "", fmt.Errorf("build image %s: encode manifest: %w", ref, err)
	}
	manifestDesc := add(MediaTypeManifest, manifestJSON)
	manifestDesc.Annotations = map[string]string{AnnotationImageName: ref, AnnotationRefName: RefName(ref)}
	manifestDesc.Platform = &Platform{Architecture: cfg.Architecture, OS: cfg.OS}
	indexJSON, err := json.Marshal(Index{SchemaVersion: 2, MediaType: MediaTypeIndex, Manifests: []Descriptor{manifestDesc}})
	if err != nil {
		return "", fmt.Errorf("build image %s: encode index: %w", ref, err)
	}

	archiveFiles := []tarFile{
		{name: "oci-layout", data: []byte(`{"imageLayoutVersion":"1.0.0"}`), mode: 0o644},
		{name: "index.json", data: indexJSON, mode: 0o644},
		{name: "blobs/", dir: true, mode: 0o755},
		{name: "blobs/sha256/", dir: true, mode: 0o755},
	}
	for _, d := range []string{manifestDesc.Digest, manifest.Config.Digest, manifest.Layers[0].Digest} {
		archiveFiles = append(archiveFiles, tarFile{name: "blobs/sha256/" + strings.TrimPrefix(d, "sha256:"), data: blobs[d], mode: 0o644})
	}
	archive, err := writeTar(archiveFiles)
	if err != nil {
		return "", fmt.Errorf("build image %s: %w", ref, err)
	}
	tarPath = filepath.Join(dir, fileName(ref)+".tar")
	if err := os.WriteFile(tarPath, archive, 0o644); err != nil {
		return "", fmt.Errorf("build image %s: %w", ref, err)
	}
	return tarPath, nil
}

type tarFile struct {
	name string
	data []byte
	mode int64
	dir  bool
	link string // the target of a symbolic link
}

func writeTar(files []tarFile) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		hdr := &tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.data)), ModTime: time.Unix(0, 0), Typeflag: tar.TypeReg, Format: tar.FormatPAX}
		switch {
		case f.dir:
			hdr.Typeflag, hdr.Size = tar.TypeDir, 0
		case f.link != "":
			hdr.Typeflag, hdr.Size, hdr.Linkname = tar.TypeSymlink, 0, f.link
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("write tar header %s: %w", f.name, err)
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, fmt.Errorf("write tar entry %s: %w", f.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("close tar: %w", err)
	}
	return buf.Bytes(), nil
}

func digest(data []byte) string {
	sum := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// fileName turns a reference into a file name: registry.local/podorder/pause:test → pause_test.
func fileName(ref string) string {
	base := ref[strings.LastIndex(ref, "/")+1:]
	return strings.NewReplacer(":", "_", "@", "_").Replace(base)
}
