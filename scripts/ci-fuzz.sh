#!/usr/bin/env bash
# ci-fuzz.sh runs every fuzzer of every package for a bounded time
# (FUZZTIME, default 20s each). Fuzzers are found with `go test -list`, so a
# new Fuzz* function is picked up without editing this script.
#
# A failing input is written by go test to testdata/fuzz/<Fuzzer>/<hash>.
# Commit that file: from then on the ordinary `go test` replays it as a
# regression test.
set -euo pipefail
cd "$(dirname "$0")/.."

fuzztime="${FUZZTIME:-20s}"
status=0
for pkg in $(go list ./...); do
  for fz in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
    # Fuzzers that drive a live server see coverage vary with goroutine
    # timing, so nearly every input looks new; minimising each would eat
    # the whole budget (see FuzzFrames).
    minimize=10s
    case "$fz" in FuzzFrames) minimize=0x ;; esac
    echo "-- $pkg $fz ($fuzztime)"
    if ! go test -run '^$' -fuzz "^${fz}\$" -fuzztime "$fuzztime" -fuzzminimizetime "$minimize" "$pkg"; then
      echo "!! $fz failed; new crashers (commit them as regression tests):"
      git status --short --untracked-files=all -- '*testdata/fuzz/*' || true
      status=1
    fi
  done
done
exit "$status"
