#!/usr/bin/env bash
# Builds the Kubernetes and etcd binaries that podorder's one-node cluster tests (test/cluster) run:
# kube-apiserver, kube-controller-manager, kube-scheduler, kubelet and kubectl from k8s.io/kubernetes,
# and etcd from go.etcd.io/etcd/server/v3, all through the wrapper modules next to this script
# (their go.mod/go.sum pin every dependency). Binaries land in a cache keyed by version:
#   ${PODORDER_CACHE:-/var/cache/podorder}/k8s-<version>/   and   .../etcd-<version>/
# A binary already present is not rebuilt, so a warm run takes a second.
#
# Cold on 2 cores: about 7 minutes measured with empty module and build caches (13 in KUBELET.md), up to 2.3 GB of memory (kube-apiserver), ~3.6 GB of build cache.
# Binaries are built one at a time to stay within memory.
#
# To move to another Kubernetes release: set the version in kubernetes/go.mod, regenerate its replace
# block from the `k8s.io/X v0.0.0` requirements of k8s.io/kubernetes's own go.mod (and copy its godebug
# line), then run `go mod tidy` in kubernetes/; change K8S_VERSION/STAGING_VERSION below to match.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${PODORDER_CACHE:-/var/cache/podorder}"
K8S_VERSION=v1.37.2
STAGING_VERSION=v0.37.2
ETCD_VERSION=v3.7.3
K8S_DIR="$CACHE/k8s-$K8S_VERSION"
ETCD_DIR="$CACHE/etcd-$ETCD_VERSION"

# Guard against the script and the wrapper modules drifting apart.
grep -q "k8s.io/kubernetes $K8S_VERSION" "$HERE/kubernetes/go.mod" ||
  { echo "k8s/build.sh: kubernetes/go.mod does not require k8s.io/kubernetes $K8S_VERSION" >&2; exit 1; }
grep -q "k8s.io/client-go => k8s.io/client-go $STAGING_VERSION" "$HERE/kubernetes/go.mod" ||
  { echo "k8s/build.sh: kubernetes/go.mod does not replace staging modules with $STAGING_VERSION" >&2; exit 1; }
grep -q "go.etcd.io/etcd/server/v3 $ETCD_VERSION" "$HERE/etcd/go.mod" ||
  { echo "k8s/build.sh: etcd/go.mod does not require go.etcd.io/etcd/server/v3 $ETCD_VERSION" >&2; exit 1; }

# The cluster's pod network is a bridge + host-local CNI config over Debian's plugins (/usr/lib/cni).
if ! dpkg -s containernetworking-plugins >/dev/null 2>&1; then
  echo "k8s/build.sh: apt-get install containernetworking-plugins"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq containernetworking-plugins >/dev/null
fi

build_date="$(date -u +'%Y-%m-%dT%H:%M:%SZ')"
k8s_ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  k8s_ldflags+=" -X $pkg.gitVersion=$K8S_VERSION"
  k8s_ldflags+=" -X $pkg.gitMajor=$(echo "$K8S_VERSION" | sed -E 's/^v([0-9]+)\..*/\1/')"
  k8s_ldflags+=" -X $pkg.gitMinor=$(echo "$K8S_VERSION" | sed -E 's/^v[0-9]+\.([0-9]+)\..*/\1/')"
  k8s_ldflags+=" -X $pkg.gitTreeState=clean"
  k8s_ldflags+=" -X $pkg.buildDate=$build_date"
done
etcd_ldflags="-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=$ETCD_VERSION"

# build_one MODULE_DIR OUT_DIR NAME PACKAGE LDFLAGS: go build one binary unless it is already cached.
build_one() {
  local moddir=$1 outdir=$2 name=$3 pkg=$4 ldflags=$5
  if [ -x "$outdir/$name" ]; then
    echo "k8s/build.sh: $name cached in $outdir"
    return
  fi
  mkdir -p "$outdir"
  echo "k8s/build.sh: building $name ($pkg)"
  local start=$SECONDS
  # Build to a temporary name and rename, so an interrupted build never looks cached.
  (cd "$moddir" && CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false" go build -trimpath \
    -tags selinux,notest,grpcnotrace -ldflags "$ldflags" -o "$outdir/.$name.tmp" "$pkg")
  mv "$outdir/.$name.tmp" "$outdir/$name"
  echo "k8s/build.sh: built $name in $((SECONDS - start)) s"
}

total=$SECONDS
(cd "$HERE/kubernetes" && GOFLAGS=-mod=readonly go mod download)
(cd "$HERE/etcd" && GOFLAGS=-mod=readonly go mod download)
echo "k8s/build.sh: modules ready in $((SECONDS - total)) s"

build_one "$HERE/etcd" "$ETCD_DIR" etcd go.etcd.io/etcd/server/v3 "$etcd_ldflags"
for cmd in kube-apiserver kubelet kube-controller-manager kube-scheduler kubectl; do
  build_one "$HERE/kubernetes" "$K8S_DIR" "$cmd" "k8s.io/kubernetes/cmd/$cmd" "$k8s_ldflags"
done

echo "k8s/build.sh: ready in $((SECONDS - total)) s: $K8S_DIR ($(ls "$K8S_DIR" | tr '\n' ' ')), $ETCD_DIR/etcd"
