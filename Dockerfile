# The container image of Tether: one static binary for both the hub and the
# agent (the Helm charts in deploy/helm run `tether hub` and `tether agent`).
#
#   docker build -t ghcr.io/tether-dev/tether:v1.2.3 --build-arg VERSION=v1.2.3 .
#   docker buildx build --platform linux/amd64,linux/arm64 --build-arg VERSION=v1.2.3 .
#
# The build stage compiles with the same tool and flags as `make release`
# (hack/release): CGO off, -trimpath, the version stamped. The final image
# is scratch plus CA certificates: no shell, no package manager, nothing to
# patch but tether itself. It runs as UID/GID 65532 (non-root); the hub's
# data directory /var/lib/tether is that user's, mode 0700.
ARG GO_VERSION=1.26

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
ARG TARGETOS=linux
ARG TARGETARCH=amd64
ARG VERSION
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN go run ./hack/release -bin-only -platforms "${TARGETOS}/${TARGETARCH}" -out /out ${VERSION:+-version "$VERSION"} \
 && mv "/out/${TARGETOS}_${TARGETARCH}/tether" /out/tether \
 && mkdir -p /rootfs/var/lib/tether /rootfs/tmp \
 && chmod 0700 /rootfs/var/lib/tether && chmod 1777 /rootfs/tmp \
 && chown 65532:65532 /rootfs/var/lib/tether

FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /rootfs/ /
COPY --from=build /out/tether /usr/local/bin/tether
USER 65532:65532
ENV HOME=/var/lib/tether
WORKDIR /var/lib/tether
EXPOSE 8443
ENTRYPOINT ["/usr/local/bin/tether"]
CMD ["--help"]
