#!/usr/bin/env bash
# ci-deploy.sh runs the deployment example in deploy/ for real: it builds
# the images, starts NATS, three hubbub nodes and HAProxy with
# podman-compose, waits until every node is ready, sends a chat message
# through the balancer from a client on node a to a client on node b and
# back (so it crosses nodes through NATS), stops NATS to see the balancer
# take the nodes out on their /readyz and bring them back, and takes
# everything down again.
#
# There is no Docker engine and no reachable image registry here, so
# (scripts/podman-lib.sh, shared with container-test.sh):
#  - podman, podman-compose and debootstrap come from Debian;
#  - deploy/compose.ci.yaml goes on top of deploy/compose.yaml and swaps the
#    official nats and haproxy images for ones built here: nats-server from
#    the Go module proxy at go.mod's version (deploy/nats.Containerfile),
#    Debian 12's haproxy package (deploy/haproxy.Containerfile);
#  - the base images those builds name are made locally with `podman
#    import`: golang:1.26 from this machine's Go toolchain (as in
#    container-test.sh), debian:bookworm-slim from a debootstrap of Debian's
#    mirror. Both stay, labelled hubbub.local-base, as caches;
#  - builds use the host network, which is how they reach the module proxy
#    and the Debian mirror. The containers use compose's own bridge network,
#    as they would anywhere, with every published port on loopback.
#
# The nats and haproxy images compose.yaml names must be the release lines
# CI tests: nats:2.X for go.mod's nats-server v2.X.*, haproxy:2.6 for
# Debian 12's 2.6. The script fails, saying which to change, when they drift.
#
# Afterwards the containers, the compose network and volume and the hubbub
# image are removed; the nats and haproxy images (localhost/hubbub-ci/*),
# the two base images, podman's build layers and the Go build cache stay.
# Warm, it takes about 22 s; cold, about 85 s more than container-test.sh
# (run just before it in CI, it leaves the golang base and the hubbub build
# layers): 26 s of debootstrap, 40 s of nats-server and haproxy builds.
#
# It skips (exit 0, saying why) only when podman cannot run a container on
# this machine at all; any other failure fails.
#
# Usage: bash scripts/ci-deploy.sh   (as root, or with sudo for apt)
# Environment: HUBBUB_DEPLOY_PORT (default 18490), the loopback port of the
# balancer; the nodes are published on the next three.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
source scripts/podman-lib.sh

PORT="${HUBBUB_DEPLOY_PORT:-18490}"
PROJECT="hubbub-deploy-ci-$$" # names its containers, network and volume
MINE="label=io.podman.compose.project=$PROJECT" # podman-compose labels them so
BASE_IMAGE=docker.io/library/golang:1.26        # must match the Dockerfile's FROM
DEBIAN_IMAGE=docker.io/library/debian:bookworm-slim # must match haproxy.Containerfile's FROM
DEBIAN_MIRROR=http://deb.debian.org/debian
VERSION="ci-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
ROOM="deploy-ci-$$"

say() { printf '[ci-deploy %3ds] %s\n' "$SECONDS" "$*"; }
fail() { say "FAIL: $*"; exit 1; }
skip() { say "SKIP: $*"; exit 0; }

grep -q "^FROM $BASE_IMAGE AS build" Dockerfile || fail "Dockerfile's builder is not $BASE_IMAGE; update BASE_IMAGE here"
grep -q "^FROM $DEBIAN_IMAGE\$" deploy/haproxy.Containerfile || fail "haproxy.Containerfile is not FROM $DEBIAN_IMAGE; update DEBIAN_IMAGE here"

# --- versions: go.mod's nats-server, and the tags compose.yaml names ---------
nats_version="$(go list -m -f '{{.Version}}' github.com/nats-io/nats-server/v2)"
nats_line="$(echo "$nats_version" | sed -n 's/^v\([0-9]*\.[0-9]*\)\..*/\1/p')"
[ -n "$nats_line" ] || fail "cannot read nats-server's version from go.mod (got '$nats_version')"
grep -q "image: docker.io/library/nats:$nats_line\$" deploy/compose.yaml ||
  fail "go.mod requires nats-server $nats_version, so deploy/compose.yaml must name docker.io/library/nats:$nats_line"

# --- podman, podman-compose, debootstrap, the base images ----------------------
podman_install podman-compose debootstrap

WORK="$(mktemp -d)"
up=""
cleanup() {
  set +e
  if [ -n "$up" ]; then compose down -v >>"$WORK/compose.log" 2>&1; fi
  # Whatever compose left behind, found by its project label: podman-compose
  # 1.0.3's down leaves the network, and a failed run may leave more.
  podman ps -aq --filter "$MINE" | xargs -r podman rm -f >/dev/null 2>&1
  podman network ls -q --filter "$MINE" | xargs -r podman network rm >/dev/null 2>&1
  podman volume ls -q --filter "$MINE" | xargs -r podman volume rm -f >/dev/null 2>&1
  # Not -f, which would also remove any container still using it.
  podman rmi "localhost/hubbub:$VERSION" >/dev/null 2>&1
  rm -rf "$WORK"
}
trap cleanup EXIT

podman_configure
golang_base "$BASE_IMAGE"
podman_can_start "$BASE_IMAGE"

# debian_base makes $DEBIAN_IMAGE locally: a minimal Debian 12 root
# filesystem from Debian's mirror (debootstrap, about 30 s), with the
# mirror's security and updates suites and the policy-rc.d of Docker's
# Debian images (packages must not start services in a build), imported
# with `podman import`. It is kept between runs; remove the image to get a
# fresh one. A real debian image of that name, if present, is used as it is.
debian_base() {
  local label root="$WORK/debian-root"
  label="$(podman image inspect -f '{{index .Config.Labels "hubbub.local-base"}}' "$DEBIAN_IMAGE" 2>/dev/null || echo absent)"
  if [ "$label" != absent ]; then
    say "reusing $DEBIAN_IMAGE (${label/<no value>/not made here})"
    return
  fi
  say "making $DEBIAN_IMAGE locally with debootstrap from $DEBIAN_MIRROR"
  if ! timeout 600 debootstrap --variant=minbase bookworm "$root" "$DEBIAN_MIRROR" >"$WORK/debootstrap.log" 2>&1; then
    tail -20 "$WORK/debootstrap.log"
    fail "debootstrap"
  fi
  cat >"$root/etc/apt/sources.list" <<EOF
deb $DEBIAN_MIRROR bookworm main
deb $DEBIAN_MIRROR bookworm-updates main
deb ${DEBIAN_MIRROR%/debian}/debian-security bookworm-security main
EOF
  printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
  chmod 755 "$root/usr/sbin/policy-rc.d"
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/dev/* "$root"/proc/* "$root"/sys/*
  tar --numeric-owner -C "$root" -cf - . |
    podman import --change 'CMD ["bash"]' --change 'LABEL hubbub.local-base=debootstrap-bookworm-minbase' \
      - "$DEBIAN_IMAGE" >"$WORK/import.log" 2>&1 || { cat "$WORK/import.log"; fail "podman import of the Debian root"; }
  rm -rf "$root"
}
debian_base

# compose runs podman-compose on the example and its CI override, with the
# variables they use; nothing else sees them.
compose() {
  env HUBBUB_VERSION="$VERSION" HUBBUB_PUBLISH="127.0.0.1:$PORT" HUBBUB_CI_NATS_VERSION="$nats_version" \
    HUBBUB_CI_PORT_A=$((PORT + 1)) HUBBUB_CI_PORT_B=$((PORT + 2)) HUBBUB_CI_PORT_C=$((PORT + 3)) \
    podman-compose -p "$PROJECT" -f deploy/compose.yaml -f deploy/compose.ci.yaml "$@"
}

# --- build ---------------------------------------------------------------------
# compose.yaml's own build section makes the hubbub image, so its paths are
# tested too; one node's is enough, the three share the image. docker
# format keeps the Dockerfile's HEALTHCHECK.
say "building hubbub ($VERSION), nats-server $nats_version and haproxy"
mkdir -p "$HUBBUB_GOCACHE"
if ! compose --podman-build-args "--format docker --network host --volume $HUBBUB_GOCACHE:/root/.cache/go-build" \
  build hub-a nats lb >"$WORK/build.log" 2>&1 || grep -q '^exit code: [1-9]' "$WORK/build.log"; then
  tail -40 "$WORK/build.log"
  fail "podman-compose build"
fi
haproxy_line="$(podman run --rm localhost/hubbub-ci/haproxy:debian12 haproxy -v 2>/dev/null |
  sed -n 's/^HAProxy version \([0-9]*\.[0-9]*\)\..*/\1/p')"
grep -q "image: docker.io/library/haproxy:$haproxy_line\$" deploy/compose.yaml ||
  fail "CI's haproxy is ${haproxy_line:-unknown}, so deploy/compose.yaml must name docker.io/library/haproxy:${haproxy_line:-?}"
got="$(podman run --rm "localhost/hubbub-ci/nats:$nats_version" --version 2>/dev/null || true)"
[ "$got" = "nats-server: $nats_version" ] || fail "the nats image says '$got'; want nats-server: $nats_version"
say "built: hubbub:$VERSION, nats-server $nats_version, haproxy $haproxy_line"

# --- up --------------------------------------------------------------------------
for p in "$PORT" $((PORT + 1)) $((PORT + 2)) $((PORT + 3)); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    fail "port $p is already in use; set HUBBUB_DEPLOY_PORT"
  fi
done
up=1
compose up -d >"$WORK/compose.log" 2>&1 || { cat "$WORK/compose.log"; fail "podman-compose up"; }
# podman-compose 1.0.3 exits 0 even when a container failed to start.
running="$(podman ps -q --filter "$MINE" --filter status=running | wc -l)"
[ "$running" = 5 ] || { cat "$WORK/compose.log"; podman ps -a --filter "$MINE"; fail "$running of 5 containers running"; }
say "up: nats, hub-a, hub-b, hub-c, lb (project $PROJECT, balancer on 127.0.0.1:$PORT)"

logs() {
  local c
  for c in $(podman ps -a --format '{{.Names}}' --filter "$MINE"); do
    say "logs of $c:"
    podman logs "$c" 2>&1 | tail -15 | sed 's/^/    /'
  done
}

# via NODE prints the status of GET /readyz through the balancer pinned to
# NODE, and the node that answered ("-" for none: HAProxy itself).
via() {
  curl -sS -m 2 -o /dev/null -D - -H "X-Hubbub-Node: $1" "http://127.0.0.1:$PORT/readyz" 2>/dev/null | tr -d '\r' |
    awk 'NR == 1 { code = $2 } tolower($1) == "x-hubbub-node:" { node = $2 } END { print code, (node ? node : "-") }'
}
# direct N prints the status of node N's (1-3) own /readyz.
direct() { curl -sS -m 2 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$((PORT + $1))/readyz" 2>/dev/null || true; }

# ready: each node's own /readyz says 200 (its NATS link and JetStream are
# up), and a request pinned to it through the balancer is served by it,
# which use-server only does for a node HAProxy considers up. (HAProxy
# starts with every server up: that it checks /readyz at all is tested
# below, with NATS stopped.)
ready() {
  local node i=0
  for node in a b c; do
    i=$((i + 1))
    [ "$(direct $i)" = 200 ] && [ "$(via $node)" = "200 $node" ] || return 1
  done
}
# out: every node's /readyz says 503, and the balancer, having seen that in
# its health checks, answers by itself that no node is available.
out() {
  local node i=0
  for node in a b c; do
    i=$((i + 1))
    [ "$(direct $i)" = 503 ] && [ "$(via $node)" = "503 -" ] || return 1
  done
}
# wait_until CHECK SECONDS WHAT: retry CHECK every 0.5 s, failing after
# SECONDS with the containers' logs.
wait_until() {
  local deadline=$((SECONDS + $2))
  until $1; do
    [ "$SECONDS" -lt "$deadline" ] || { logs; fail "$3 within $2 s"; }
    sleep 0.5
  done
}
wait_until ready 90 "not every node ready, directly and through the balancer,"
say "ready: a, b and c answer /readyz 200, directly and through the balancer"

code="$(curl -sS -m 2 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/metrics")"
[ "$code" = 404 ] || fail "/metrics through the balancer answered $code; want 404 (HUBBUB_METRICS_ADDR moves it off the public port)"

# --- a message across nodes, through the balancer ------------------------------
# A small client, built here from a temporary module (nothing is added to
# the repository), with the gorilla/websocket version go.mod pins.
mkdir -p "$WORK/client"
cp go.sum "$WORK/client/"
cat >"$WORK/client/go.mod" <<EOF
module deploycheck

go 1.26

require github.com/gorilla/websocket $(go list -m -f '{{.Version}}' github.com/gorilla/websocket)
EOF
cat >"$WORK/client/main.go" <<'EOF'
// deploycheck connects alice through the balancer pinned to node a and bob
// pinned to node b, checks that each landed where it asked, and has each
// say something the other must read: a message that crosses nodes.
package main

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/gorilla/websocket"
)

var deadline = time.Now().Add(20 * time.Second)

func main() {
	base, room := os.Args[1], os.Args[2]
	alice := dial(base, room, "alice", "a")
	bob := dial(base, room, "bob", "b")
	say(alice, "alice", "hello from node a")
	await(bob, "bob", fmt.Sprintf("[%s] alice: hello from node a", room))
	say(bob, "bob", "hello from node b")
	await(alice, "alice", fmt.Sprintf("[%s] bob: hello from node b", room))
	for _, c := range []*websocket.Conn{alice, bob} {
		c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))
		c.Close()
	}
}

// dial connects name to room in text format through the balancer, pinned to
// node, and waits until the room is joined.
func dial(base, room, name, node string) *websocket.Conn {
	u := base + "/ws?format=text&room=" + url.QueryEscape(room) + "&name=" + url.QueryEscape(name)
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	c, resp, err := d.Dial(u, http.Header{"X-Hubbub-Node": {node}})
	if err != nil {
		die("%s: dial %s: %v", name, u, err)
	}
	if got := resp.Header.Get("X-Hubbub-Node"); got != node {
		die("%s: served by node %q; want %q", name, got, node)
	}
	fmt.Printf("%s: connected through the balancer to node %s\n", name, node)
	await(c, name, "* you are "+name+" in "+room)
	return c
}

func say(c *websocket.Conn, name, msg string) {
	c.SetWriteDeadline(deadline)
	if err := c.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
		die("%s: send: %v", name, err)
	}
	fmt.Printf("%s: sent %q\n", name, msg)
}

// await reads lines until one starts with want.
func await(c *websocket.Conn, name, want string) {
	c.SetReadDeadline(deadline)
	for {
		_, p, err := c.ReadMessage()
		if err != nil {
			die("%s: waiting for %q: %v", name, want, err)
		}
		for _, line := range strings.Split(string(p), "\n") {
			if strings.HasPrefix(line, want) {
				fmt.Printf("%s: got %q\n", name, line)
				return
			}
		}
	}
}

func die(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "deploycheck: "+format+"\n", args...)
	os.Exit(1)
}
EOF
(cd "$WORK/client" && GOWORK=off GOFLAGS=-mod=mod go build -o "$WORK/deploycheck" .) ||
  fail "building the WebSocket client"
if ! timeout 30 "$WORK/deploycheck" "ws://127.0.0.1:$PORT" "$ROOM" >"$WORK/chat.log" 2>&1; then
  cat "$WORK/chat.log"
  logs
  fail "chat across nodes through the balancer"
fi
sed 's/^/    /' "$WORK/chat.log"
say "a message crossed from node a to node b, and one back, through the balancer"

# --- readiness takes nodes out of the balancer ---------------------------------
# With NATS gone every node turns not ready, and HAProxy must stop sending
# it clients (2 failed checks, 2 s apart); with NATS back they return (2
# good checks).
podman stop -t 10 "${PROJECT}_nats_1" >/dev/null 2>&1 || fail "podman stop nats"
wait_until out 30 "the nodes did not leave the balancer with NATS stopped"
say "NATS stopped: every node answers /readyz 503 and the balancer has taken them all out"
podman start "${PROJECT}_nats_1" >/dev/null 2>&1 || fail "podman start nats"
wait_until ready 60 "the nodes did not return to the balancer with NATS back"
say "NATS started again: every node ready and back in the balancer"

# --- down ------------------------------------------------------------------------
compose down -v >>"$WORK/compose.log" 2>&1 || { cat "$WORK/compose.log"; fail "podman-compose down"; }
up=""
[ -z "$(podman ps -aq --filter "$MINE")" ] || fail "containers left after podman-compose down"
[ -z "$(podman volume ls -q --filter "$MINE")" ] || fail "volume left after podman-compose down -v"
# podman-compose 1.0.3's down does not remove the network it made.
podman network ls -q --filter "$MINE" | xargs -r podman network rm >/dev/null
say "down: containers and volume removed by podman-compose, its network by this script"
say "PASS"
