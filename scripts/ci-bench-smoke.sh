#!/usr/bin/env bash
# Smoke run of the load generator against a hubbub this script starts: five
# seconds of fan-out with 50 clients on loopback. It fails unless every
# expected delivery arrived (delivery ratio exactly 1) with no failed
# connection, so a change that breaks the server, the tool or the wire format
# they share shows up in CI. It measures nothing: see docs/BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."

printf "\n== load generator smoke run\n"
tmp=$(mktemp -d)
pid=
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

go build -o "$tmp/hubbub" .
go build -o "$tmp/hubbub-bench" ./cmd/hubbub-bench

# Port 0: the kernel picks a free port and hubbub logs the one it got.
"$tmp/hubbub" -addr 127.0.0.1:0 -log-format json 2>"$tmp/server.log" &
pid=$!
addr=
for _ in $(seq 100); do
  addr=$(sed -n 's/.*"msg":"hubbub listening","addr":"\([^"]*\)".*/\1/p' "$tmp/server.log")
  [ -n "$addr" ] && break
  kill -0 "$pid" 2>/dev/null || { cat "$tmp/server.log"; echo "hubbub exited early"; exit 1; }
  sleep 0.1
done
[ -n "$addr" ] || { cat "$tmp/server.log"; echo "hubbub did not report its address"; exit 1; }

"$tmp/hubbub-bench" -url "ws://$addr/ws" -scenario fanout -clients 50 -senders 5 -rate 10 \
  -warmup 1s -duration 5s -server-pid "$pid" -json >"$tmp/report.json"

# One line of facts, then the verdict.
python3 - "$tmp/report.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print("smoke: conn_ok=%d conn_failed=%d expected=%d received=%d ratio=%s p99=%.1fms coalescing=%.2f" % (
    r["conn_ok"], r["conn_failed"], r["expected"], r["received"], r["delivery_ratio"],
    r["latency"]["p99_ms"], r["coalescing"]))
ok = (r["conn_ok"] == 50 and r["conn_failed"] == 0 and r["expected"] > 0
      and r["received"] == r["expected"] and r["delivery_ratio"] == 1 and r["duplicates"] == 0)
sys.exit(0 if ok else "smoke: not every message was delivered exactly once")
PY
