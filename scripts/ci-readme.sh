#!/usr/bin/env bash
# ci-readme.sh runs the shell commands of the README's "Install" and "Run"
# sections as they are written there, in a copy of the tree, and checks
# what they print: that the build works, the binary says its version, the
# server serves and answers its health check, and stops cleanly. If a
# README edit breaks one of those commands, CI fails here.
#
# The only liberty taken: when port 8080 is busy on this machine, the
# server is started on a free port instead, and the curl line follows it.
set -euo pipefail
cd "$(dirname "$0")/.."

work="$(mktemp -d)"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
say() { printf '[ci-readme] %s\n' "$*"; }
fail() { say "FAIL: $*"; exit 1; }

# block prints the lines of the first ```sh block after the heading "## $1".
block() {
  awk -v want="## $1" '
    $0 == want { in_section = 1; next }
    in_section && /^## / { exit }
    in_section && /^```sh$/ { in_block = 1; next }
    in_block && /^```$/ { exit }
    in_block { print }
  ' README.md
}

# The tracked files as they are in the working tree: what a clone has.
git ls-files -z | tar --null -T - -cf - | tar -xf - -C "$work"
export GOBIN="$work/bin" PATH="$work/bin:$PATH"

install="$(block Install)"
[ -n "$install" ] || fail "README has no Install commands"
while IFS= read -r line; do
  [ -z "$line" ] && continue
  say "\$ $line"
  out="$(cd "$work" && bash -c "$line" 2>&1)" || fail "'$line' failed: $out"
  [ -n "$out" ] && printf '%s\n' "$out"
  case "$line" in
    ./hubbub\ version*) [ "$out" = "dev" ] || fail "version printed '$out'; the README says dev" ;;
  esac
done <<<"$install"
command -v hubbub >/dev/null || fail "go install . put no hubbub on PATH"

hubbub -h >"$work/help.txt" 2>&1 || fail "hubbub -h exited non-zero"
for cmd in gencert hash-password healthcheck version jwt config; do
  grep -q "$cmd" "$work/help.txt" || fail "hubbub -h does not list $cmd"
done

run="$(block Run)"
server_line="$(sed -n 1p <<<"$run")"
curl_line="$(sed -n 2p <<<"$run")"
case "$server_line" in hubbub*) ;; *) fail "Run's first command is '$server_line'; want the server" ;; esac
case "$curl_line" in curl*) ;; *) fail "Run's second command is '$curl_line'; want the health probe" ;; esac
port=8080
if (exec 3<>/dev/tcp/127.0.0.1/8080) 2>/dev/null; then
  port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  say "port 8080 is busy here; using $port"
  curl_line="${curl_line//8080/$port}"
fi
say "\$ $server_line   (HUBBUB_ADDR=127.0.0.1:$port)"
(cd "$work" && HUBBUB_ADDR="127.0.0.1:$port" exec bash -c "exec ${server_line%%#*}" >"$work/server.log" 2>&1) &
server_pid=$!
for _ in $(seq 1 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done
say "\$ $curl_line"
health="$(bash -c "${curl_line%%#*}")" || fail "'$curl_line' failed"
[ "$health" = "ok" ] || fail "health probe printed '$health'; the README says ok"
HUBBUB_ADDR="127.0.0.1:$port" hubbub healthcheck || fail "hubbub healthcheck says unhealthy"
grep -q 'msg="hubbub listening"' "$work/server.log" || fail "the server did not print what the README shows: $(cat "$work/server.log")"

kill -TERM "$server_pid"
wait "$server_pid" || fail "the server exited $? on SIGTERM; want 0"
server_pid=""
grep -q 'msg=stopped' "$work/server.log" || fail "no clean stop in the log"
say "ok: Install and Run work as written"
