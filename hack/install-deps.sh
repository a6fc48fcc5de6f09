#!/usr/bin/env bash
# Installs what podorder's real-runtime tests and demo need, into a cache that survives runs:
# Debian packages (libseccomp for runc, CNI plugins), containerd, its shim, ctr, runc and BuildKit
# built from the Go module proxy, and the static busybox that the cluster tests' busybox:1.37 image
# is built from. Each binary is built once per version; a warm run takes seconds.
set -euo pipefail

CACHE="${PODORDER_CACHE:-/var/cache/podorder}"
CONTAINERD_VERSION="${CONTAINERD_VERSION:-v2.4.2}"
RUNC_VERSION="${RUNC_VERSION:-v1.3.6}"
# A second runc line for test/e2e/runtimes_test.go, linked as $BIN/runc-1.4 (runc stays $RUNC_VERSION).
RUNC_1_4_VERSION="${RUNC_1_4_VERSION:-v1.4.3}"
BUILDKIT_VERSION="${BUILDKIT_VERSION:-v0.34.2}"
BIN="$CACHE/bin"
mkdir -p "$BIN"

need_apt=()
dpkg -s libseccomp-dev >/dev/null 2>&1 || need_apt+=(libseccomp-dev)
dpkg -s pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
dpkg -s iproute2 >/dev/null 2>&1 || need_apt+=(iproute2)
# Debian's runc 1.1.5 blocks `runc start` during a hold: kept only to test that podorder detects it.
dpkg -s runc >/dev/null 2>&1 || need_apt+=(runc)
# ptp and host-local give the e2e churn's pods network namespaces of their own (harness.Options.PodNetwork).
dpkg -s containernetworking-plugins >/dev/null 2>&1 || need_apt+=(containernetworking-plugins)
if [ "${#need_apt[@]}" -gt 0 ]; then
  echo "install-deps: apt-get install ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# build_into NAME VERSION PACKAGE [go install flags...]: go install into a versioned directory, once.
build_into() {
  local name=$1 version=$2 pkg=$3
  shift 3
  local dir="$CACHE/build/$name-$version"
  if [ ! -x "$dir/$name" ]; then
    echo "install-deps: building $name $version (cold: a few minutes)"
    mkdir -p "$dir"
    GOBIN="$dir" GOFLAGS=-mod=mod "$@" "$pkg@$version"
  fi
}

# build_once NAME VERSION PACKAGE [go install flags...]: build_into, then link $BIN/NAME to it.
build_once() {
  build_into "$@"
  ln -sf "$CACHE/build/$1-$2/$1" "$BIN/$1"
}

build_once containerd "$CONTAINERD_VERSION" github.com/containerd/containerd/v2/cmd/containerd env CGO_ENABLED=0 go install
build_once containerd-shim-runc-v2 "$CONTAINERD_VERSION" github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2 env CGO_ENABLED=0 go install
build_once ctr "$CONTAINERD_VERSION" github.com/containerd/containerd/v2/cmd/ctr env CGO_ENABLED=0 go install
build_once runc "$RUNC_VERSION" github.com/opencontainers/runc env CGO_ENABLED=1 go install -tags seccomp
build_into runc "$RUNC_1_4_VERSION" github.com/opencontainers/runc env CGO_ENABLED=1 go install -tags seccomp
ln -sf "$CACHE/build/runc-$RUNC_1_4_VERSION/runc" "$BIN/runc-1.4"

# BuildKit builds podorder's image from the Dockerfile (build/image). Its go.mod has exclude
# directives, which `go install pkg@version` refuses: build inside its module instead.
if [ ! -x "$CACHE/build/buildkit-$BUILDKIT_VERSION/buildkitd" ] || [ ! -x "$CACHE/build/buildkit-$BUILDKIT_VERSION/buildctl" ]; then
  echo "install-deps: building buildkitd and buildctl $BUILDKIT_VERSION (cold: a few minutes)"
  GOFLAGS=-mod=mod go mod download github.com/moby/buildkit@"$BUILDKIT_VERSION"
  src="$(go env GOMODCACHE)/github.com/moby/buildkit@$BUILDKIT_VERSION"
  mkdir -p "$CACHE/build/buildkit-$BUILDKIT_VERSION"
  (cd "$src" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -o "$CACHE/build/buildkit-$BUILDKIT_VERSION/" ./cmd/buildkitd ./cmd/buildctl)
fi
ln -sf "$CACHE/build/buildkit-$BUILDKIT_VERSION/buildkitd" "$BIN/buildkitd"
ln -sf "$CACHE/build/buildkit-$BUILDKIT_VERSION/buildctl" "$BIN/buildctl"

# examples/ run busybox:1.37; the tests reach no registry, so test/image builds that image from the
# static busybox of Debian's busybox-static, extracted into the cache (the machine's own busybox, if
# any, is left alone).
if [ ! -x "$BIN/busybox" ]; then
  echo "install-deps: extracting busybox from Debian's busybox-static"
  tmp="$(mktemp -d)"
  download() { (cd "$tmp" && apt-get download -qq -o APT::Sandbox::User=root busybox-static); }
  download 2>/dev/null || { apt-get update -qq && download; }
  deb=("$tmp"/busybox-static_*.deb)
  version="$(dpkg-deb -f "${deb[0]}" Version)"
  dir="$CACHE/build/busybox-static-${version//:/_}"
  dpkg-deb -x "${deb[0]}" "$tmp/root"
  mkdir -p "$dir"
  install -m 0755 "$tmp/root/bin/busybox" "$dir/busybox"
  rm -rf "$tmp"
  ln -sf "$dir/busybox" "$BIN/busybox"
fi

echo "install-deps: ready in $BIN: $(ls "$BIN" | tr '\n' ' ')"
