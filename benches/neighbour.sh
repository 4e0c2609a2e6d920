#!/usr/bin/env bash
# Noisy neighbour on one core: how much a deployment's slow requests delay another
# deployment's fast ones on the same core.
#
#   bash benches/neighbour.sh [BIN ...] [-- SECONDS RATE SPIN_MS]
#
# For each percore binary (default target/release/percore; give two to compare a build before
# and after a change, measured in one sitting): one core (server pinned to CPU 0) serving the
# victim `hello` at `/` and the neighbour `hostile` at `/busy` (CPU budget 1 s).
#   1. victim alone: oha at RATE requests/s (default 200), 2 connections, latency correction on,
#      for SECONDS (default 10): p50, p99, p99.9;
#   2. the same while the neighbour runs `/busy/spin?ms=SPIN_MS` (default 20) back to back on
#      one connection (oha, closed loop): the victim's p50, p99, p99.9 and the neighbour's
#      requests per second.
# Load generators run on CPU 1. Needs oha (target/tools, see benches/sweep.sh) and the guests
# (`cargo build-guests`).
set -euo pipefail
cd "$(dirname "$0")/.."
bins=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do bins+=("$(realpath "$1")"); shift; done
[ "${1:-}" = "--" ] && shift
seconds=${1:-10}
rate=${2:-200}
spin_ms=${3:-20}
[ ${#bins[@]} -gt 0 ] || bins=("$(realpath target/release/percore)")
oha=target/tools/bin/oha
[ -x "$oha" ] || { echo "oha is missing: cargo install --locked --root target/tools oha" >&2; exit 1; }
for g in hello hostile; do
    [ -f "target/guests/$g.wasm" ] || { echo "target/guests/$g.wasm is missing: cargo build-guests" >&2; exit 1; }
done
server_cpu=0
client_cpu=1
port=18196
dir=$(mktemp -d)
server_pid=""
neighbour_pid=""
cleanup() {
    [ -n "$neighbour_pid" ] && kill "$neighbour_pid" 2>/dev/null
    [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null
    wait 2>/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT
cat >"$dir/percore.toml" <<CONF
listen = "127.0.0.1:$port"
cores = 1
[[deployment]]
name = "victim"
component = "$PWD/target/guests/hello.wasm"
routes = [{ path = "/" }]
[[deployment]]
name = "neighbour"
component = "$PWD/target/guests/hostile.wasm"
cpu_ms = 1000
timeout_ms = 5000
routes = [{ path = "/busy" }]
CONF

# oha at `rate` for `seconds` on 2 connections: "p50 p99 p99.9 errors" in ms.
victim() {
    taskset -c "$client_cpu" "$oha" -z "${seconds}s" -q "$rate" -c 2 --latency-correction --no-tui \
        --output-format json "http://127.0.0.1:$port/" 2>/dev/null |
        python3 -c '
import json, sys
d = json.load(sys.stdin)
p = d["latencyPercentiles"]
errors = sum(v for k, v in d.get("errorDistribution", {}).items() if k != "aborted due to deadline") + sum(v for k, v in d.get("statusCodeDistribution", {}).items() if k != "200")
ms = lambda v: (v or 0) * 1e3
print("%.3f %.3f %.3f %d" % (ms(p["p50"]), ms(p["p99"]), ms(p["p99.9"]), errors))
'
}

echo "machine: Linux $(uname -r), $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "date: $(date -u +%Y-%m-%dT%H:%MZ); victim hello at $rate req/s on 2 connections for $seconds s; neighbour spin ${spin_ms} ms back to back"
printf '%-50s %-16s %9s %9s %9s %7s %12s\n' binary case p50_ms p99_ms p99.9_ms errors neighbour/s
for bin in "${bins[@]}"; do
    taskset -c "$server_cpu" "$bin" serve --config "$dir/percore.toml" >"$dir/serve.log" 2>&1 &
    server_pid=$!
    for _ in $(seq 300); do
        curl -sf "http://127.0.0.1:$port/" >/dev/null 2>&1 && break
        sleep 0.1
    done
    read -r p50 p99 p999 errors < <(victim)
    printf '%-50s %-16s %9s %9s %9s %7s %12s\n' "$bin" alone "$p50" "$p99" "$p999" "$errors" -
    # The neighbour: back-to-back slow requests on one connection, a little longer than the
    # victim's run.
    taskset -c "$client_cpu" "$oha" -z "$((seconds + 2))s" -c 1 --no-tui --output-format json \
        "http://127.0.0.1:$port/busy/spin?ms=$spin_ms" >"$dir/neighbour.json" 2>/dev/null &
    neighbour_pid=$!
    sleep 1
    read -r p50 p99 p999 errors < <(victim)
    wait "$neighbour_pid" || true
    neighbour_pid=""
    per_s=$(python3 -c 'import json,sys; print("%.1f" % json.load(open(sys.argv[1]))["summary"]["requestsPerSec"])' "$dir/neighbour.json")
    printf '%-50s %-16s %9s %9s %9s %7s %12s\n' "$bin" "with neighbour" "$p50" "$p99" "$p999" "$errors" "$per_s"
    kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=""
    sleep 0.5
done
