#!/usr/bin/env bash
# ci-fuzz.sh runs every fuzzer of every package for a bounded number of
# executions. Fuzzers are found with `go test -list`, so a new Fuzz* function
# is picked up without editing this script.
#
# The budget is a count (-fuzztime Nx), not a duration: with a duration, Go
# 1.26's fuzz coordinator can report "context deadline exceeded" at the
# deadline and fail a target that found nothing (golang/go#75804, fixed in Go
# 1.27). It failed CI once that way. A count never arms that deadline. Set
# FUZZTIME (e.g. 5m) for a long local run by duration anyway.
#
# A failing input is written by go test to testdata/fuzz/<Fuzzer>/<hash>.
# Commit that file: from then on the ordinary `go test` replays it as a
# regression test.
set -euo pipefail
cd "$(dirname "$0")/.."

# budget prints the default count for one fuzzer, sized to roughly 10-20 s
# on a 2-core machine: the live-server fuzzer runs ~100 inputs/s, the pure
# decoders a few thousand.
budget() {
  if [ -n "${FUZZTIME:-}" ]; then echo "$FUZZTIME"; return; fi
  case "$1" in
    FuzzFrames) echo 2000x ;;
    FuzzSplitFrame) echo 40000x ;;
    *) echo 20000x ;;
  esac
}
status=0
for pkg in $(go list ./...); do
  for fz in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
    # Fuzzers that drive a live server see coverage vary with goroutine
    # timing, so nearly every input looks new; minimising each would eat
    # the whole budget (see FuzzFrames).
    minimize=2000x
    case "$fz" in FuzzFrames) minimize=0x ;; esac
    fuzztime=$(budget "$fz")
    echo "-- $pkg $fz ($fuzztime)"
    if ! go test -run '^$' -fuzz "^${fz}\$" -fuzztime "$fuzztime" -fuzzminimizetime "$minimize" -timeout 5m "$pkg"; then
      echo "!! $fz failed; new crashers (commit them as regression tests):"
      git status --short --untracked-files=all -- '*testdata/fuzz/*' || true
      status=1
    fi
  done
done
exit "$status"
