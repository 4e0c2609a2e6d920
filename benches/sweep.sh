#!/usr/bin/env bash
# One data-plane core under load: percore running the `hello` guest (pooled instances reset to
# their snapshot after each request: the default; a fresh instance per request; pooled instances
# that keep their memory; the default with SQPOLL), the same data plane with a native handler
# (the reference line), and
# nginx returning the same body (the practical limit). The server is pinned to CPU 0 and the load
# generator to CPU 1, on loopback.
#
#   bash benches/sweep.sh            # short: about 3 minutes
#   bash benches/sweep.sh --full     # longer runs per point
#   PERCORE_BIN=/path/to/percore bash benches/sweep.sh   # measure another build (before/after)
#
# 1. Peak: wrk, 1 thread, 16 connections, closed loop.
# 2. Sweep: oha at fixed offered rates (fractions of each line's peak) with latency correction
#    (coordinated omission accounted for): achieved rate, p50, p99, p99.9, errors.
# Installs wrk and nginx-light (Debian) and oha (crates.io, into target/tools) when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
duration=5
if [ "${1:-}" = "--full" ]; then duration=20; fi
server_cpu=0
client_cpu=1
port=18090

need_apt=()
command -v wrk >/dev/null || need_apt+=(wrk)
[ -x /usr/sbin/nginx ] || need_apt+=(nginx-light)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "installing ${need_apt[*]} (Debian)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
oha=target/tools/bin/oha
if [ ! -x "$oha" ]; then
    echo "installing oha from crates.io into target/tools (a few minutes, once)"
    cargo install --quiet --locked --root target/tools oha
fi
bash scripts/setup-guest-toolchain.sh >/dev/null
cargo build-guests >/dev/null
if [ -n "${PERCORE_BIN:-}" ]; then
    percore=$PERCORE_BIN
else
    cargo build --quiet --release -p percore
    percore=target/release/percore
fi
echo "percore binary: $percore"


tmp=$(mktemp -d)
cleanup() { [ -n "${server_pid:-}" ] && kill "$server_pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT

start_server() { # name
    case "$1" in
    percore-wasm)
        taskset -c $server_cpu $percore serve --cores 1 --listen 127.0.0.1:$port target/guests/hello.wasm >"$tmp/server.log" 2>&1 &
        ;;
    percore-wasm-sqpoll)
        # The kernel's submission thread may run on either CPU: it is not pinned with the shard.
        taskset -c $server_cpu $percore serve --cores 1 --sqpoll --listen 127.0.0.1:$port target/guests/hello.wasm >"$tmp/server.log" 2>&1 &
        ;;
    percore-wasm-fresh)
        taskset -c $server_cpu $percore serve --cores 1 --instances fresh --listen 127.0.0.1:$port target/guests/hello.wasm >"$tmp/server.log" 2>&1 &
        ;;
    percore-wasm-keep)
        taskset -c $server_cpu $percore serve --cores 1 --instances keep --listen 127.0.0.1:$port target/guests/hello.wasm >"$tmp/server.log" 2>&1 &
        ;;
    percore-native)
        taskset -c $server_cpu $percore serve --cores 1 --listen 127.0.0.1:$port native:hello >"$tmp/server.log" 2>&1 &
        ;;
    nginx)
        nginx_conf "$tmp" "$port" "text/plain; charset=utf-8" 'Hello from percore!\n'
        taskset -c $server_cpu /usr/sbin/nginx -c "$tmp/nginx.conf" >"$tmp/server.log" 2>&1 &
        ;;
    esac
    server_pid=$!
    for _ in $(seq 100); do
        curl -sf "http://127.0.0.1:$port/" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "$1 did not start:"; cat "$tmp/server.log"; exit 1
}

peak() { wrk_peak "http://127.0.0.1:$port/" ${duration}; }              # prints requests/s
point() { oha_point "http://127.0.0.1:$port/" "$1" ${duration}; }         # "achieved p50 p99 p99.9 errors"

echo "machine: $(uname -r), $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "pinning: server on CPU $server_cpu (one core), load generator on CPU $client_cpu; loopback; 16 connections; ${duration} s per point"
echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
echo
printf '%-20s %10s\n' line "peak req/s (wrk)"
declare -A peaks
lines=(nginx percore-native percore-wasm percore-wasm-keep percore-wasm-fresh percore-wasm-sqpoll)
for line in "${lines[@]}"; do
    start_server "$line"
    peaks[$line]=$(peak)
    stop_server
    printf '%-20s %10s\n' "$line" "${peaks[$line]}"
done
echo
printf '%-20s %9s %9s %9s %9s %9s %7s\n' line offered achieved "p50 ms" "p99 ms" "p99.9 ms" errors
for line in "${lines[@]}"; do
    start_server "$line"
    for pct in 10 30 50 70 90; do
        rate=$(( peaks[$line] * pct / 100 ))
        [ "$rate" -lt 1 ] && rate=1
        read -r achieved p50 p99 p999 errors < <(point "$rate")
        printf '%-20s %9s %9s %9s %9s %9s %7s\n' "$line" "$rate" "$achieved" "$p50" "$p99" "$p999" "$errors"
    done
    stop_server
done
echo
awk -v w="${peaks[percore-wasm]}" -v k="${peaks[percore-wasm-keep]}" -v f="${peaks[percore-wasm-fresh]}" -v n="${peaks[percore-native]}" -v g="${peaks[nginx]}" 'BEGIN {
    printf "wasm tax (peak wasm / native): reset %.2f, keep %.2f, fresh %.2f\n", w / n, k / n, f / n
    printf "percore / nginx (peak): reset %.2f, keep %.2f, fresh %.2f\n", w / g, k / g, f / g
}'
