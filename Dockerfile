# podorder's image: the daemon and the hook, static Go binaries, on an empty base. This is its one
# definition: `make image` and the cluster tests build it with BuildKit (buildkitd + buildctl, no
# Docker engine, no registry) from the binaries build/image compiles into the build context's bin/:
#
#   CGO_ENABLED=0 go build -trimpath -o bin/ ./cmd/podorder ./cmd/podorder-hook \
#     -ldflags "-s -w -X github.com/podorder/podorder/plugin/version.stamped=$(cat VERSION)"
#   buildctl build --frontend dockerfile.v0 --local context=. --local dockerfile=. \
#     --output type=oci,dest=podorder.tar,name=registry.local/podorder/podorder:<tag>
FROM scratch
COPY bin/podorder /podorder
COPY bin/podorder-hook /podorder-hook
# Non-root by default. The DaemonSet runs the daemon and its install-hook init container as root,
# with every capability dropped but the ones it needs: the store and the hook it writes on the host
# are read by containers of every uid.
USER 65534:65534
ENTRYPOINT ["/podorder"]
