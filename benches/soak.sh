#!/usr/bin/env bash
# Soak: a percore host (release build) under mixed traffic for MINUTES (default 30): normal
# guests and hostile ones (loops, memory bombs, traps, stack overflows, log, stdout and header
# floods, large responses) from 4 keep-alive clients; a deploy, a hot swap and a removal every
# 3 s; a SIGTERM and a restart from the state directory halfway. Prints the host's RSS, open fds
# and threads every 10 s (flat is the goal), the responses by status, and the invocation log's
# request count against the responses the load generator received (equal is the goal; the
# script exits 1 when they differ). Loopback only, bounded in time.
#
#   bash benches/soak.sh [MINUTES]
#   PERCORE_BIN=/path/to/percore bash benches/soak.sh 5    # another build
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${1:-30}

bash scripts/setup-guest-toolchain.sh >/dev/null
cargo build-guests >/dev/null
if [ -n "${PERCORE_BIN:-}" ]; then
    percore=$(realpath "$PERCORE_BIN")
else
    cargo build --quiet --release -p percore
    percore=$PWD/target/release/percore
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "machine: $(uname -r), $(nproc) CPUs, $(awk '/MemTotal/ {print int($2/1048576)}' /proc/meminfo) GiB; date: $(date -u +%Y-%m-%d)"
echo "soak: $minutes minutes, host $percore"
python3 benches/soak.py "$percore" "$PWD/target/guests" "$tmp/state" "$minutes" || {
    status=$?
    echo "host log (last lines):"; tail -20 "$tmp/host.log"
    exit $status
}
