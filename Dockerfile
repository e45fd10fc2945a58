# syntax=docker/dockerfile:1
# The claimguard image: a static binary (no cgo) on distroless, running as the non-root user
# 65532. Build it with `make docker-build IMG=<registry>/claimguard:<tag>`; for several
# platforms, `docker buildx build --platform linux/amd64,linux/arm64 ...`.

# The build stage runs on the builder's own platform and cross-compiles, which is faster than
# emulating the target platform.
FROM --platform=$BUILDPLATFORM golang:1.26.8 AS build
WORKDIR /src
# Modules first, so a source edit does not download them again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
# Only the packages the binary is built from (.dockerignore keeps the rest out of the context).
COPY main.go ./
COPY api/ api/
COPY controllers/ controllers/
COPY webhook/ webhook/
COPY internal/ internal/
# Set by BuildKit for the platform being built; empty with the legacy builder, which then
# builds for the machine it runs on.
ARG TARGETOS
ARG TARGETARCH
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -trimpath -ldflags "-s -w" -o /out/claimguard .

# distroless/static: no shell, no package manager, CA certificates (for JWKS fetches over
# https) and /etc/passwd with the nonroot user. The chart and config/manager run it with a
# read-only root filesystem; the binary writes nothing to disk.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/claimguard /claimguard
USER 65532:65532
ENTRYPOINT ["/claimguard"]
CMD ["manager"]
