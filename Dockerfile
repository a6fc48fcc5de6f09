# podorder's image: the daemon and the hook, both static, on scratch.
# The tests build the same image without a Docker engine (test/harness builds an OCI layout).
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/podorder ./cmd/podorder \
 && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/podorder-hook ./cmd/podorder-hook

FROM scratch
COPY --from=build /out/podorder /out/podorder-hook /
ENTRYPOINT ["/podorder"]
