# podorder's image: the daemon and the hook, static Go binaries, on an empty base. This is its one
# definition: `make image` (this machine's architecture), `make release` (linux/amd64 and
# linux/arm64 under one index) and the cluster tests build it with BuildKit (buildkitd + buildctl,
# no Docker engine, no registry) from the binaries build/image cross-compiles into the build
# context's bin/<os>_<arch>/. No RUN step: a platform other than the builder's needs no emulation.
#
#   for arch in amd64 arm64; do
#     CGO_ENABLED=0 GOARCH=$arch go build -trimpath -o bin/linux_$arch/ ./cmd/podorder ./cmd/podorder-hook \
#       -ldflags "-s -w -X github.com/podorder/podorder/plugin/version.stamped=$(cat VERSION)"
#   done
#   buildctl build --frontend dockerfile.v0 --local context=. --local dockerfile=. \
#     --opt platform=linux/amd64,linux/arm64 \
#     --output type=oci,dest=podorder.tar,name=registry.local/podorder/podorder:<tag>
FROM scratch
ARG TARGETOS
ARG TARGETARCH
COPY bin/${TARGETOS}_${TARGETARCH}/podorder /podorder
COPY bin/${TARGETOS}_${TARGETARCH}/podorder-hook /podorder-hook
# Non-root by default. The DaemonSet runs the daemon and its install-hook init container as root,
# with every capability dropped but the ones it needs: the store and the hook it writes on the host
# are read by containers of every uid.
USER 65534:65534
ENTRYPOINT ["/podorder"]
