#!/usr/bin/env bash
# ci-clients.sh talks to a real hubbub binary with clients that are not
# ours: wscat and the `ws` package from npm (text format: join, chat, /who,
# /join, /quit) and k6 with its k6/websockets module (JSON format, checks
# must all pass). It installs them (npm into .ci-node/, k6 with go install),
# starts hubbub on a free loopback port, runs each client with a time
# bound, and stops the server by its PID.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin:$(go env GOPATH)/bin"
export K6_NO_USAGE_REPORT=true

WSCAT_VERSION=6.1.0
WS_VERSION=8.23.0
K6_VERSION=v1.8.1

work=$(mktemp -d)
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# wait_for FILE TEXT: wait up to 20s for TEXT to appear in FILE.
wait_for() {
  for _ in $(seq 200); do
    if grep -qF -- "$2" "$1"; then return 0; fi
    sleep 0.1
  done
  echo "timed out waiting for '$2' in $1:"; cat "$1"; return 1
}

echo "-- installing wscat@$WSCAT_VERSION and ws@$WS_VERSION into .ci-node"
npm install --prefix .ci-node --no-audit --no-fund --loglevel=error "wscat@$WSCAT_VERSION" "ws@$WS_VERSION"
k6="$(go env GOPATH)/bin/k6"
if ! "$k6" version 2>/dev/null | grep -qF "k6 $K6_VERSION "; then
  echo "-- installing k6 $K6_VERSION (go install; a few minutes)"
  go install "go.k6.io/k6@$K6_VERSION"
fi

echo "-- starting hubbub"
go build -o "$work/hubbub" .
"$work/hubbub" -addr 127.0.0.1:0 2> "$work/server.log" &
pid=$!
wait_for "$work/server.log" 'msg="hubbub listening"'
addr=$(sed -n 's/.*msg="hubbub listening" addr=\([^ ]*\).*/\1/p' "$work/server.log")
url="ws://$addr"
echo "hubbub pid $pid at $url"

echo "-- wscat"
# wscat exits as soon as its stdin closes, and drops lines typed before it
# is connected: feed it through a FIFO held open, one line per answer.
mkfifo "$work/wscat.in"
timeout 60 .ci-node/node_modules/.bin/wscat -c "$url/ws?format=text&room=ci-wscat&name=wscat" \
  < "$work/wscat.in" > "$work/wscat.out" 2>&1 &
wscat_pid=$!
exec 3> "$work/wscat.in"
wait_for "$work/wscat.out" "* you are wscat in ci-wscat (1 member: wscat)"
echo "hello from wscat" >&3
wait_for "$work/wscat.out" "[ci-wscat] wscat: hello from wscat"
echo "/who" >&3
wait_for "$work/wscat.out" "* members of ci-wscat (1): wscat"
echo "/quit" >&3
wait "$wscat_pid" # the server's close ends wscat; timeout's 124 would fail here
exec 3>&-
echo "wscat: ok (join, chat, /who, /quit)"

echo "-- ws (node)"
NODE_PATH="$PWD/.ci-node/node_modules" timeout 60 node scripts/clients/ws-chat.cjs "$url"

echo "-- k6 $K6_VERSION"
timeout 180 "$k6" run --no-usage-report --quiet -e HUBBUB_URL="$url" scripts/clients/k6-chat.js

echo "-- stopping hubbub"
kill -TERM "$pid"
wait "$pid"
pid=""
# The guest-mode line at startup is a deliberate warning; anything else is not.
if grep -E 'level=(ERROR|WARN)' "$work/server.log" | grep -v 'msg="auth: guest mode'; then
  echo "server logged warnings or errors"; exit 1
fi
grep -qF 'msg=stopped' "$work/server.log"
echo "clients: ok"
