#!/usr/bin/env bash
# Makes sure Debian's Chromium is installed for the browser tests
# (browser_test.go). CI exports HUBBUB_REQUIRE_BROWSER=1, so a machine
# where this fails makes the tests fail instead of silently skipping.
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
  /usr/bin/chromium --version 2>/dev/null || true
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
# apt takes a lock; wait for another installer rather than fail at once.
for attempt in 1 2 3 4 5 6; do
  if $sudo apt-get update && $sudo apt-get install -y --no-install-recommends chromium; then
    break
  fi
  if [ "$attempt" -eq 6 ]; then
    echo "ci-browser: could not install chromium" >&2
    exit 1
  fi
  echo "ci-browser: apt failed (lock busy?), retrying in 10s" >&2
  sleep 10
done
/usr/bin/chromium --version 2>/dev/null || true
