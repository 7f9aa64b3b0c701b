#!/usr/bin/env bash
# container-test.sh builds the Dockerfile with podman and tries the image
# for real: the stamped version, the non-root user, the HEALTHCHECK, then a
# running container that must answer /healthz and /readyz, carry a chat
# message between a JSON and a text WebSocket client, deliver a message
# posted through the API, and stop cleanly on SIGTERM.
#
# There is no Docker engine and no reachable image registry here, so
# (scripts/podman-lib.sh, shared with ci-deploy.sh):
#  - podman comes from Debian (installed if missing);
#  - its settings come from a containers.conf of our own (CONTAINERS_CONF):
#    runc, cgroupfs, file events, explicit ulimits;
#  - the builder image the Dockerfile names (golang:1.26) is made locally
#    with `podman import` from this machine's Go toolchain, a static busybox
#    for /bin/sh, CA certificates and an /etc/passwd. It is kept between runs
#    (labelled, and remade when the Go version changes). A real golang image
#    of that name, if one is present, is used as it is.
#  - builds and the container use the host network (--network host), which
#    is how `go mod download` reaches the Go module proxy.
#
# Afterwards the container and the test image are removed; the builder base
# image, podman's build layers and the Go build cache
# (/var/tmp/hubbub-container-test-gocache, HUBBUB_GOCACHE) stay, so a rerun
# after a source edit rebuilds in seconds instead of minutes.
#
# It skips (exit 0, saying why) only when podman cannot run a container on
# this machine at all; any other failure fails.
#
# Usage: bash scripts/container-test.sh   (as root, or with sudo for apt)
# Environment: HUBBUB_CONTAINER_PORT (default 18480), the loopback port the
# test container listens on.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
source scripts/podman-lib.sh

PORT="${HUBBUB_CONTAINER_PORT:-18480}"
BASE_IMAGE=docker.io/library/golang:1.26 # must match the Dockerfile's FROM
IMAGE=localhost/hubbub:container-test
NAME="hubbub-container-test-$$"
API_KEY="container-test-key-$$"
VERSION="ci-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"

say() { printf '[container-test %3ds] %s\n' "$SECONDS" "$*"; }
fail() { say "FAIL: $*"; exit 1; }
skip() { say "SKIP: $*"; exit 0; }

grep -q "^FROM $BASE_IMAGE AS build" Dockerfile || fail "Dockerfile's builder is not $BASE_IMAGE; update BASE_IMAGE here"

# --- podman, from Debian, and the builder base image --------------------------
podman_install

WORK="$(mktemp -d)"
cleanup() {
  podman rm -f "$NAME" >/dev/null 2>&1 || true
  podman rmi -f "$IMAGE" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

podman_configure
golang_base "$BASE_IMAGE"
podman_can_start "$BASE_IMAGE"

# --- build and inspect --------------------------------------------------------
say "building $IMAGE (version $VERSION)"
mkdir -p "$HUBBUB_GOCACHE"
# docker format: the OCI image format has no HEALTHCHECK.
if ! podman build --format docker --network host --volume "$HUBBUB_GOCACHE:/root/.cache/go-build" \
  --build-arg "VERSION=$VERSION" -t "$IMAGE" . >"$WORK/build.log" 2>&1; then
  tail -40 "$WORK/build.log"
  fail "podman build"
fi
say "built: $(podman image inspect -f '{{.Size}}' "$IMAGE") bytes"

# podman's stderr goes to podman.log (shown on failure): without systemd it
# complains, for every container of an image with a HEALTHCHECK, that it
# cannot schedule the check. The check is run by hand below instead.
got="$(podman run --rm "$IMAGE" version 2>>"$WORK/podman.log")"
[ "$got" = "$VERSION" ] || fail "'hubbub version' in the image printed '$got'; want '$VERSION'"
user="$(podman image inspect -f '{{.Config.User}}' "$IMAGE")"
case "$user" in "" | 0 | 0:* | root*) fail "image runs as '$user'; want a non-root user" ;; esac
podman image inspect -f '{{json .Config.ExposedPorts}}' "$IMAGE" | grep -q '"8080/tcp"' || fail "image does not EXPOSE 8080"
podman image inspect -f '{{json .Config.Env}}' "$IMAGE" | grep -q 'HUBBUB_ADDR=0.0.0.0:8080' ||
  fail "image does not listen on 0.0.0.0:8080 by default"
podman image inspect "$IMAGE" | tr -d ' \n' | grep -q '"Healthcheck":{"Test":\["CMD","/hubbub","healthcheck"\]' ||
  fail "image has no HEALTHCHECK running 'hubbub healthcheck'"
say "image ok: version $got, user $user, port 8080, healthcheck"

# --- run it -----------------------------------------------------------------
if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
  fail "port $PORT is already in use; set HUBBUB_CONTAINER_PORT"
fi
podman run -d --name "$NAME" --network host \
  -e "HUBBUB_ADDR=127.0.0.1:$PORT" -e "HUBBUB_API_KEY=$API_KEY" "$IMAGE" >/dev/null 2>>"$WORK/podman.log" ||
  { cat "$WORK/podman.log"; fail "podman run"; }
say "container $NAME listening on 127.0.0.1:$PORT"
logs() {
  say "podman said:"; grep -v 'systemd connection' "$WORK/podman.log" | tail -10 || true
  say "container logs:"; podman logs "$NAME" 2>&1 | tail -30
}

if ! HUBBUB_SMOKE_URL="http://127.0.0.1:$PORT" HUBBUB_SMOKE_API_KEY="$API_KEY" \
  go test -count=1 -run '^TestSmoke$' -v . >"$WORK/smoke.log" 2>&1; then
  cat "$WORK/smoke.log"
  logs
  fail "smoke test against the container"
fi
grep -E -- '--- (PASS|SKIP)' "$WORK/smoke.log" | sed 's/^/    /'
grep -q -- '--- PASS: TestSmoke' "$WORK/smoke.log" || fail "smoke test did not run"

# The image's HEALTHCHECK command, run inside the container as podman would.
if ! podman healthcheck run "$NAME" >"$WORK/hc.log" 2>&1; then
  cat "$WORK/hc.log"
  logs
  fail "'podman healthcheck run' reports the container unhealthy"
fi
say "HEALTHCHECK inside the container: healthy"

# SIGTERM must drain and exit 0.
podman stop -t 20 "$NAME" >/dev/null 2>>"$WORK/podman.log"
code="$(podman inspect -f '{{.State.ExitCode}}' "$NAME")"
if [ "$code" != 0 ] || ! podman logs "$NAME" 2>&1 | grep -q 'msg=stopped'; then
  logs
  fail "container exited with $code after SIGTERM; want 0 and a 'stopped' log line"
fi
say "stopped cleanly on SIGTERM"
say "PASS"
