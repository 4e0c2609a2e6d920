#!/usr/bin/env bash
# Outbound HTTP on one core: a guest proxying to a local origin, against the origin served
# directly; and how many proxied requests one core holds waiting for a slow origin.
#
#   bash benches/outbound.sh proxy   [BIN] [-- SECONDS RATE]
#   bash benches/outbound.sh waiting [BIN] [-- REQUESTS DELAY_S]
#
# proxy: Debian's nginx answers `GET /` with a 13-byte body.
#   - direct:  nginx pinned to CPU 0; the load on CPU 1.
#   - proxied: percore (one core, pinned to CPU 0) runs examples-guests/fetch, which fetches
#     `http://127.0.0.1:ORIGIN/` for every request; nginx and the load share CPU 1.
#   For each: closed-loop peak (wrk -t1 -c16, SECONDS, default 10) and latency at RATE
#   requests/s (oha, 16 connections, latency correction on; default 2000): p50, p99, p99.9.
# waiting: an origin (Python asyncio) that answers each request after DELAY_S seconds
#   (default 10); REQUESTS (default 10000, fewer if the descriptor limit cannot hold two per
#   request) clients, one connection each, all at once, through
#   the `fetch` guest on one core. While they wait: outbound connections established, the
#   server's RSS and threads, and the CPU it uses in 2 s; then how many were answered 200.
# Needs wrk, oha (target/tools), nginx, python3 and the guests (`cargo build-guests`). KEEP=1
# keeps the scratch directory (configuration, server log, oha output).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-}
shift || true
bin=target/release/percore
if [ $# -gt 0 ] && [ "$1" != "--" ]; then bin=$1; shift; fi
[ "${1:-}" = "--" ] && shift
bin=$(realpath "$bin")
oha=target/tools/bin/oha
[ -x "$oha" ] || { echo "oha is missing: cargo install --locked --root target/tools oha" >&2; exit 1; }
[ -f target/guests/fetch.wasm ] || { echo "target/guests/fetch.wasm is missing: cargo build-guests" >&2; exit 1; }
server_cpu=0
client_cpu=1
port=18197
origin_port=18198
dir=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [ -n "${KEEP:-}" ]; then echo "kept $dir (KEEP)"; else rm -rf "$dir"; fi
}
trap cleanup EXIT
. benches/lib.sh

config() { # extra [calls] lines
    cat >"$dir/percore.toml" <<CONF
listen = "127.0.0.1:$port"
cores = 1
$1
[[deployment]]
name = "proxy"
component = "$PWD/target/guests/fetch.wasm"
routes = [{ path = "/" }]
allowed_outbound_hosts = ["http://127.0.0.1:$origin_port"]
timeout_ms = 60000
outbound_timeout_ms = 60000
CONF
}

wait_for() { # url
    for _ in $(seq 300); do
        curl -sf -o /dev/null "$1" && return 0
        sleep 0.1
    done
    echo "nothing answers $1" >&2
    exit 1
}

echo "machine: Linux $(uname -r), $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "date: $(date -u +%Y-%m-%dT%H:%MZ); binary: $bin"

case "$mode" in
proxy)
    seconds=${1:-10}
    rate=${2:-2000}
    nginx_conf "$dir" "$origin_port" "text/plain" 'hello, origin\n'
    direct_conf="$dir/nginx.conf"
    sed 's/worker_cpu_affinity 1;/worker_cpu_affinity 10;/' "$direct_conf" >"$dir/nginx-cpu1.conf"
    url="http://127.0.0.1:$port/?url=http://127.0.0.1:$origin_port/"
    printf '%-10s %12s %10s %10s %10s %8s\n' line peak_req/s p50_ms p99_ms p99.9_ms errors
    # Direct: nginx on CPU 0.
    /usr/sbin/nginx -c "$direct_conf" >/dev/null 2>&1 &
    pids+=($!)
    wait_for "http://127.0.0.1:$origin_port/"
    peak=$(wrk_peak "http://127.0.0.1:$origin_port/" "$seconds")
    read -r _ p50 p99 p999 errors < <(oha_point "http://127.0.0.1:$origin_port/" "$rate" "$seconds")
    printf '%-10s %12s %10s %10s %10s %8s\n' direct "$peak" "$p50" "$p99" "$p999" "$errors"
    kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true; unset 'pids[-1]'
    sleep 0.5
    # Proxied: nginx on CPU 1 (with the load), percore on CPU 0.
    /usr/sbin/nginx -c "$dir/nginx-cpu1.conf" >/dev/null 2>&1 &
    pids+=($!)
    wait_for "http://127.0.0.1:$origin_port/"
    config ""
    taskset -c "$server_cpu" "$bin" serve --config "$dir/percore.toml" >"$dir/serve.log" 2>&1 &
    pids+=($!)
    wait_for "$url"
    [ "$(curl -s "$url")" = "hello, origin" ] || { echo "the proxy does not answer the origin's body" >&2; exit 1; }
    peak=$(wrk_peak "$url" "$seconds")
    read -r _ p50 p99 p999 errors < <(oha_point "$url" "$rate" "$seconds")
    printf '%-10s %12s %10s %10s %10s %8s\n' proxied "$peak" "$p50" "$p99" "$p999" "$errors"
    ;;
waiting)
    requests=${1:-10000}
    delay=${2:-10}
    # Each waiting request holds two descriptors in the server (its client's connection and
    # its connection to the origin): raise the soft limit as far as the hard one allows.
    ulimit -n "$(ulimit -Hn)"
    fit=$(( ($(ulimit -n) - 200) / 2 ))
    if [ "$requests" -gt "$fit" ]; then
        echo "the descriptor limit ($(ulimit -n)) fits $fit waiting requests, not $requests: running $fit"
        requests=$fit
    fi
    cat >"$dir/slow.py" <<'PY'
import asyncio, sys
port, delay = int(sys.argv[1]), float(sys.argv[2])
async def handle(reader, writer):
    try:
        while True:
            await reader.readuntil(b"\r\n\r\n")
            await asyncio.sleep(delay)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nslow\n")
            await writer.drain()
    except Exception:
        pass
    finally:
        writer.close()
async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=16384)
    async with server:
        await server.serve_forever()
asyncio.run(main())
PY
    taskset -c "$client_cpu" python3 "$dir/slow.py" "$origin_port" "$delay" &
    pids+=($!)
    config "[calls]
max_in_flight_per_core = $((requests + 1000))
max_in_flight_per_deployment = $((requests + 1000))
[outbound]
max_in_flight_per_core = $((requests + 1000))"
    taskset -c "$server_cpu" "$bin" serve --config "$dir/percore.toml" --instances fresh >"$dir/serve.log" 2>&1 &
    server=$!
    pids+=($server)
    wait_for "http://127.0.0.1:$port/?url=http://127.0.0.1:$origin_port/warm"
    rss_idle=$(awk '/VmRSS/ {print $2}' "/proc/$server/status")
    taskset -c "$client_cpu" "$oha" -n "$requests" -c "$requests" --no-tui --output-format json \
        -t "$((delay * 6))s" "http://127.0.0.1:$port/?url=http://127.0.0.1:$origin_port/x" \
        >"$dir/oha.json" 2>"$dir/oha.err" &
    load=$!
    pids+=($load)
    # Sample while they wait: the most outbound connections seen, RSS, threads.
    most=0
    end=$((SECONDS + delay - 2))
    while [ $SECONDS -lt $end ]; do
        now=$(ss -Htn state established "( dport = :$origin_port )" | wc -l)
        [ "$now" -gt "$most" ] && most=$now
        sleep 0.5
    done
    rss=$(awk '/VmRSS/ {print $2}' "/proc/$server/status")
    threads=$(awk '/Threads/ {print $2}' "/proc/$server/status")
    read -r u0 s0 < <(awk '{print $14, $15}' "/proc/$server/stat")
    sleep 1
    read -r u1 s1 < <(awk '{print $14, $15}' "/proc/$server/stat")
    wait "$load" || true
    answered=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["statusCodeDistribution"].get("200", 0))' "$dir/oha.json")
    echo "requests: $requests at once, origin delay ${delay} s, one core"
    echo "outbound connections established at once (most seen): $most"
    echo "server RSS: idle $((rss_idle / 1024)) MiB, with them waiting $((rss / 1024)) MiB ($(( (rss - rss_idle) / (most > 0 ? most : 1) )) KiB each)"
    echo "server threads: $threads"
    echo "server CPU while they wait: $(( (u1 + s1 - u0 - s0) * 10 )) ms in 1 s"
    echo "answered 200: $answered of $requests"
    ;;
*)
    echo "usage: $0 proxy|waiting [BIN] [-- ...]" >&2
    exit 2
    ;;
esac
