package release

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"runtime/debug"
	"slices"
	"strings"
	"time"
)

// BuiltBinary is a release binary as the SBOM describes it: its file, its hash and the build info
// the Go linker recorded in it (debug/buildinfo), which lists every module compiled in.
type BuiltBinary struct {
	Binary
	FileName string
	SHA256   string
	Info     *debug.BuildInfo
}

// The SPDX 2.3 document, as much of it as an SBOM of Go binaries fills
// (https://spdx.github.io/spdx-spec/v2.3/).
type spdxDocument struct {
	SPDXVersion       string             `json:"spdxVersion"`
	DataLicense       string             `json:"dataLicense"`
	SPDXID            string             `json:"SPDXID"`
	Name              string             `json:"name"`
	DocumentNamespace string             `json:"documentNamespace"`
	CreationInfo      spdxCreationInfo   `json:"creationInfo"`
	Packages          []spdxPackage      `json:"packages"`
	Relationships     []spdxRelationship `json:"relationships"`
}

type spdxCreationInfo struct {
	Created  string   `json:"created"`
	Creators []string `json:"creators"`
}

type spdxPackage struct {
	Name                  string            `json:"name"`
	SPDXID                string            `json:"SPDXID"`
	VersionInfo           string            `json:"versionInfo,omitempty"`
	PackageFileName       string            `json:"packageFileName,omitempty"`
	Supplier              string            `json:"supplier,omitempty"`
	DownloadLocation      string            `json:"downloadLocation"`
	FilesAnalyzed         bool              `json:"filesAnalyzed"`
	Checksums             []spdxChecksum    `json:"checksums,omitempty"`
	LicenseConcluded      string            `json:"licenseConcluded"`
	LicenseDeclared       string            `json:"licenseDeclared"`
	CopyrightText         string            `json:"copyrightText"`
	PrimaryPackagePurpose string            `json:"primaryPackagePurpose,omitempty"`
	ExternalRefs          []spdxExternalRef `json:"externalRefs,omitempty"`
}

type spdxChecksum struct {
	Algorithm     string `json:"algorithm"`
	ChecksumValue string `json:"checksumValue"`
}

type spdxExternalRef struct {
	ReferenceCategory string `json:"referenceCategory"`
	ReferenceType     string `json:"referenceType"`
	ReferenceLocator  string `json:"referenceLocator"`
}

type spdxRelationship struct {
	SPDXElementID      string `json:"spdxElementId"`
	RelationshipType   string `json:"relationshipType"`
	RelatedSPDXElement string `json:"relatedSpdxElement"`
}

const noAssertion = "NOASSERTION"

// module is one Go module compiled into a binary: the main module, a dependency (after any
// replace directive) or the standard library.
type module struct{ Path, Version string }

// SPDX returns the SPDX 2.3 JSON document of a release's binaries: each binary a package (its file
// name and SHA-256) that CONTAINS the Go modules its build info lists, each module once in the
// document with its version and purl. The main module is given the release's version: a build from
// a work tree records none.
func SPDX(release string, bins []BuiltBinary, created time.Time) ([]byte, error) {
	ids := spdxIDs{}
	doc := spdxDocument{
		SPDXVersion: "SPDX-2.3",
		DataLicense: "CC0-1.0",
		SPDXID:      "SPDXRef-DOCUMENT",
		Name:        "podorder-v" + release,
		CreationInfo: spdxCreationInfo{
			Created:  created.UTC().Format(time.RFC3339),
			Creators: []string{"Organization: podorder", "Tool: podorder-build-release"},
		},
	}
	modules := map[module]string{} // module → SPDXID
	var moduleOrder []module
	namespace := sha256.New()
	for _, b := range bins {
		if b.Info == nil {
			return nil, fmt.Errorf("%s: no build info", b.FileName)
		}
		fmt.Fprintln(namespace, b.FileName, b.SHA256)
		id := ids.take("SPDXRef-Binary-" + b.FileName)
		doc.Packages = append(doc.Packages, spdxPackage{
			Name:                  b.FileName,
			SPDXID:                id,
			VersionInfo:           "v" + release,
			PackageFileName:       b.FileName,
			Supplier:              "Organization: podorder",
			DownloadLocation:      noAssertion,
			Checksums:             []spdxChecksum{{Algorithm: "SHA256", ChecksumValue: b.SHA256}},
			LicenseConcluded:      noAssertion,
			LicenseDeclared:       "Apache-2.0",
			CopyrightText:         noAssertion,
			PrimaryPackagePurpose: "APPLICATION",
		})
		doc.Relationships = append(doc.Relationships, spdxRelationship{"SPDXRef-DOCUMENT", "DESCRIBES", id})
		var contains []module
		for _, m := range modulesOf(b.Info, release) {
			if _, ok := modules[m]; !ok {
				modules[m] = ids.take("SPDXRef-Package-go-" + m.Path + "-" + m.Version)
				moduleOrder = append(moduleOrder, m)
			}
			contains = append(contains, m)
		}
		for _, m := range contains {
			doc.Relationships = append(doc.Relationships, spdxRelationship{id, "CONTAINS", modules[m]})
		}
	}
	slices.SortFunc(moduleOrder, func(a, b module) int { return cmp.Or(cmp.Compare(a.Path, b.Path), cmp.Compare(a.Version, b.Version)) })
	for _, m := range moduleOrder {
		p := spdxPackage{
			Name:                  m.Path,
			SPDXID:                modules[m],
			VersionInfo:           m.Version,
			DownloadLocation:      noAssertion,
			LicenseConcluded:      noAssertion,
			LicenseDeclared:       noAssertion,
			CopyrightText:         noAssertion,
			PrimaryPackagePurpose: "LIBRARY",
			ExternalRefs: []spdxExternalRef{{
				ReferenceCategory: "PACKAGE-MANAGER", ReferenceType: "purl", ReferenceLocator: purl(m),
			}},
		}
		if m.Path == "stdlib" {
			p.Supplier = "Organization: Go"
		}
		doc.Packages = append(doc.Packages, p)
	}
	doc.DocumentNamespace = "https://github.com/podorder/podorder/releases/v" + release + "/spdx/" + hex.EncodeToString(namespace.Sum(nil))[:16]
	out, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}

// modulesOf lists the modules a binary's build info records: the main module at the release's
// version, each dependency as replaced, and the standard library at the toolchain's version.
func modulesOf(info *debug.BuildInfo, release string) []module {
	mods := []module{{info.Main.Path, "v" + release}}
	for _, d := range info.Deps {
		if d.Replace != nil {
			d = d.Replace
		}
		mods = append(mods, module{d.Path, d.Version})
	}
	return append(mods, module{"stdlib", info.GoVersion})
}

// purl is a module's package URL, pkg:golang/<module path>@<version>
// (https://github.com/package-url/purl-spec); the standard library's version drops the "go".
func purl(m module) string {
	version := m.Version
	if m.Path == "stdlib" {
		version = strings.TrimPrefix(version, "go")
	}
	segments := strings.Split(m.Path, "/")
	for i, s := range segments {
		segments[i] = purlEscape(s)
	}
	return "pkg:golang/" + strings.Join(segments, "/") + "@" + purlEscape(version)
}

// purlEscape percent-encodes all but the characters a purl segment keeps as they are.
func purlEscape(s string) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte(".-_~", c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// spdxIDs hands out SPDX identifiers, which allow only letters, digits, '.' and '-': every other
// character becomes '-', and a clash gets a numbered suffix.
type spdxIDs map[string]bool

var spdxIDInvalid = regexp.MustCompile(`[^A-Za-z0-9.-]`)

func (ids spdxIDs) take(want string) string {
	id := spdxIDInvalid.ReplaceAllString(want, "-")
	for n := 2; ids[id]; n++ {
		id = fmt.Sprintf("%s-%d", spdxIDInvalid.ReplaceAllString(want, "-"), n)
	}
	ids[id] = true
	return id
}
