#!/usr/bin/env bash
# container-test.sh builds the Dockerfile with podman and tries the image
# for real: the stamped version, the non-root user, the HEALTHCHECK, then a
# running container that must answer /healthz and /readyz, carry a chat
# message between a JSON and a text WebSocket client, deliver a message
# posted through the API, and stop cleanly on SIGTERM.
#
# There is no Docker engine and no reachable image registry here, so:
#  - podman comes from Debian (installed below if missing);
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
# (/var/tmp/hubbub-container-test-gocache) stay, so a rerun after a source
# edit rebuilds in seconds instead of minutes.
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

# --- podman, from Debian ----------------------------------------------------
missing=()
for pkg in podman runc busybox-static ca-certificates; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  say "installing ${missing[*]} with apt"
  export DEBIAN_FRONTEND=noninteractive
  # Colleagues' installs may hold the lock: wait for it rather than fail.
  $sudo apt-get -o DPkg::Lock::Timeout=600 update -qq
  $sudo apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${missing[@]}" >/dev/null
fi
say "$(podman --version), $(runc --version | head -1)"

WORK="$(mktemp -d)"
cleanup() {
  podman rm -f "$NAME" >/dev/null 2>&1 || true
  podman rmi -f "$IMAGE" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

cat >"$WORK/containers.conf" <<'EOF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
export CONTAINERS_CONF="$WORK/containers.conf"

if ! podman info >"$WORK/info.log" 2>&1; then
  skip "podman cannot run on this machine: 'podman info' fails: $(tail -3 "$WORK/info.log")"
fi

# --- the builder base image ---------------------------------------------------
goroot="$(go env GOROOT)"
gover="$(go env GOVERSION)"
label="$(podman image inspect -f '{{index .Config.Labels "hubbub.local-base"}}' "$BASE_IMAGE" 2>/dev/null || echo absent)"
[ "$label" != "<no value>" ] || label="" # present, but not one of ours
if [ "$label" = absent ] || { [ -n "$label" ] && [ "$label" != "$gover" ]; }; then
  say "making $BASE_IMAGE locally from $goroot ($gover)"
  root="$WORK/root"
  mkdir -p "$root/bin" "$root/etc/ssl/certs" "$root/tmp" "$root/go" "$root/root"
  chmod 1777 "$root/tmp"
  cp /bin/busybox "$root/bin/busybox" # from busybox-static: no libc needed
  for applet in sh ls cat env true; do ln -s busybox "$root/bin/$applet"; done
  cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
  # The toolchain goes in as usr/local/go wherever it lives here.
  tar -cf "$WORK/base.tar" -C "$root" . \
    -C "$(dirname "$goroot")" --transform "s,^$(basename "$goroot"),usr/local/go," "$(basename "$goroot")"
  podman rmi -f "$BASE_IMAGE" >/dev/null 2>&1 || true
  # The same environment as the official image.
  podman import \
    --change 'ENV PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV GOPATH=/go' --change 'ENV GOTOOLCHAIN=local' --change 'WORKDIR /go' \
    --change "LABEL hubbub.local-base=$gover" \
    "$WORK/base.tar" "$BASE_IMAGE" >"$WORK/import.log" 2>&1 || { cat "$WORK/import.log"; fail "podman import"; }
  rm -f "$WORK/base.tar"
elif [ -z "$label" ]; then
  say "using the existing $BASE_IMAGE"
else
  say "reusing the local $BASE_IMAGE ($gover)"
fi

# Whether podman can start a container here at all, with nothing of ours in
# it: if not, this machine cannot run the test.
if ! podman run --rm --network host "$BASE_IMAGE" /bin/true >"$WORK/run.log" 2>&1; then
  skip "podman cannot start containers on this machine: $(tail -3 "$WORK/run.log")"
fi

# --- build and inspect --------------------------------------------------------
say "building $IMAGE (version $VERSION)"
# The Go build cache survives between runs in a directory of its own, so a
# rerun after a source edit recompiles only what changed. Entries are keyed
# by their inputs, so a stale one can never be used.
gocache=/var/tmp/hubbub-container-test-gocache
mkdir -p "$gocache"
# docker format: the OCI image format has no HEALTHCHECK.
if ! podman build --format docker --network host --volume "$gocache:/root/.cache/go-build" \
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
