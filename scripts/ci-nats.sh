#!/usr/bin/env bash
# Makes sure Debian's nats-server (2.9.x, the oldest line hubbub supports)
# is installed for TestDebianNATSServer. CI exports
# HUBBUB_REQUIRE_NATS_SERVER=1, so a machine where this fails makes the test
# fail instead of silently skipping. The tests start the binary themselves,
# on loopback and a free port; the package's own service is not used.
set -euo pipefail

if command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ]; then
  "$(command -v nats-server || echo /usr/sbin/nats-server)" --version
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
# The package enables a system service that would listen on every
# interface; policy-rc.d answering 101 keeps it from being started.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
  $sudo chmod +x "$policy"
  trap '$sudo rm -f "$policy"' EXIT
fi
# apt takes a lock; wait for another installer rather than fail at once.
for attempt in 1 2 3 4 5 6; do
  if $sudo apt-get update && $sudo apt-get install -y --no-install-recommends nats-server; then
    break
  fi
  if [ "$attempt" -eq 6 ]; then
    echo "ci-nats: could not install nats-server" >&2
    exit 1
  fi
  echo "ci-nats: apt failed (lock busy?), retrying in 10s" >&2
  sleep 10
done
/usr/sbin/nats-server --version
