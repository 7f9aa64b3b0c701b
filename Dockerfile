# hubbub container image: a static binary on scratch, run as a non-root user.
#
#   docker build -t hubbub . && docker run -p 8080:8080 hubbub
#   docker build --build-arg VERSION=v1.2.3 -t hubbub:v1.2.3 .
#
# scripts/container-test.sh builds and runs this file with podman in CI.

FROM docker.io/library/golang:1.26 AS build
WORKDIR /src
# Modules first, so that a source edit reuses the downloaded-modules layer.
COPY go.mod go.sum ./
RUN go mod download && go mod verify
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/hubbub . \
 && /out/hubbub version

FROM scratch
# CA roots for outgoing TLS (a broker, say); hubbub itself needs nothing else.
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/hubbub /hubbub
# 65532 is the conventional "nonroot" id; scratch has no /etc/passwd, so
# the numeric form is what works.
USER 65532:65532
# All interfaces: inside a container, loopback is unreachable from outside.
ENV HUBBUB_ADDR=0.0.0.0:8080
EXPOSE 8080
# scratch has no shell or curl: the binary checks itself, reading the same
# HUBBUB_ADDR to find its port.
HEALTHCHECK --interval=15s --timeout=5s --start-period=5s --retries=3 CMD ["/hubbub", "healthcheck"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/hubbub"]
