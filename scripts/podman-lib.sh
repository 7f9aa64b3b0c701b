# podman-lib.sh holds what scripts/container-test.sh and scripts/ci-deploy.sh
# share to run podman on a machine with no Docker engine and no reachable
# image registry. It is sourced, not run: the caller sets `set -euo
# pipefail`, defines say, fail and skip (print; print and exit 1; print and
# exit 0), and sets WORK to a temporary directory it removes on exit.

# HUBBUB_GOCACHE is the Go build cache that image builds mount at
# /root/.cache/go-build. It survives between runs, so a rebuild after a
# source edit recompiles only what changed; entries are keyed by their
# inputs, so a stale one can never be used. Set it to another directory to
# measure a cold build.
HUBBUB_GOCACHE="${HUBBUB_GOCACHE:-/var/tmp/hubbub-container-test-gocache}"

# podman_install PKG... installs podman, runc, busybox-static and
# ca-certificates, and the packages named, with apt where they are missing.
podman_install() {
  local missing=() pkg sudo=""
  for pkg in podman runc busybox-static ca-certificates "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || sudo=sudo
    say "installing ${missing[*]} with apt"
    export DEBIAN_FRONTEND=noninteractive
    # Colleagues' installs may hold the lock: wait for it rather than fail.
    $sudo apt-get -o DPkg::Lock::Timeout=600 update -qq
    $sudo apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${missing[@]}" >/dev/null
  fi
  say "$(podman --version), $(runc --version | head -1)"
}

# podman_configure writes podman's settings to $WORK/containers.conf and
# exports CONTAINERS_CONF, so podman and everything it runs (podman-compose
# included) use them: runc, cgroupfs and file events, since there is no
# systemd, and explicit ulimits. It skips when podman cannot run here.
podman_configure() {
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
}

# golang_base IMAGE makes the builder image the Dockerfile names
# (docker.io/library/golang:1.26) locally with `podman import`, from this
# machine's Go toolchain, a static busybox for /bin/sh, CA certificates and
# an /etc/passwd. It is kept between runs, labelled hubbub.local-base with
# the Go version, and remade when that changes. A real golang image of that
# name, if one is present, is used as it is.
golang_base() {
  local image="$1" goroot gover label root
  goroot="$(go env GOROOT)"
  gover="$(go env GOVERSION)"
  label="$(podman image inspect -f '{{index .Config.Labels "hubbub.local-base"}}' "$image" 2>/dev/null || echo absent)"
  [ "$label" != "<no value>" ] || label="" # present, but not one of ours
  if [ "$label" = absent ] || { [ -n "$label" ] && [ "$label" != "$gover" ]; }; then
    say "making $image locally from $goroot ($gover)"
    root="$WORK/golang-root"
    mkdir -p "$root/bin" "$root/etc/ssl/certs" "$root/tmp" "$root/go" "$root/root"
    chmod 1777 "$root/tmp"
    cp /bin/busybox "$root/bin/busybox" # from busybox-static: no libc needed
    for applet in sh ls cat env true; do ln -s busybox "$root/bin/$applet"; done
    cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
    # The toolchain goes in as usr/local/go wherever it lives here.
    tar -cf "$WORK/golang-base.tar" -C "$root" . \
      -C "$(dirname "$goroot")" --transform "s,^$(basename "$goroot"),usr/local/go," "$(basename "$goroot")"
    podman rmi -f "$image" >/dev/null 2>&1 || true
    # The same environment as the official image.
    podman import \
      --change 'ENV PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'ENV GOPATH=/go' --change 'ENV GOTOOLCHAIN=local' --change 'WORKDIR /go' \
      --change "LABEL hubbub.local-base=$gover" \
      "$WORK/golang-base.tar" "$image" >"$WORK/import.log" 2>&1 || { cat "$WORK/import.log"; fail "podman import"; }
    rm -rf "$WORK/golang-base.tar" "$root"
  elif [ -z "$label" ]; then
    say "using the existing $image"
  else
    say "reusing the local $image ($gover)"
  fi
}

# podman_can_start IMAGE skips unless podman can start a container from
# IMAGE (one with /bin/true and nothing of ours in it): if it cannot, this
# machine cannot run the test at all.
podman_can_start() {
  if ! podman run --rm --network host "$1" /bin/true >"$WORK/run.log" 2>&1; then
    skip "podman cannot start containers on this machine: $(tail -3 "$WORK/run.log")"
  fi
}
