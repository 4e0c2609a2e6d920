#!/usr/bin/env bash
# percore against the alternatives, on one core, with the same handler everywhere: a small JSON
# document computed from the request ({"method":"GET","path":"/","body_bytes":0}).
#
#   bash benches/compare.sh           # short mode: about 2-3 minutes once everything is built
#   bash benches/compare.sh --full    # full mode: about 10-12 minutes
#
# Lines (each server pinned to CPU 0, the load generator to CPU 1, loopback, 16 connections):
#   nginx           Debian's nginx-light, one worker, `return 200` with the same document
#   tokio-hyper     tokio's multi-thread (work-stealing) runtime + hyper, native handler
#   percore-native  percore's data plane (thread per core, io_uring) with a native handler
#   percore-wasm    percore running the handler compiled to Wasm with the SDK (default: reset instances)
#   wasmtime-serve  `wasmtime serve` 48.0.8 with the handler as a wasi:http/proxy component
#   percore-wasi-http  percore serving that same wasi:http/proxy component file
#
#   --lines a,b,...   run only these lines (for example --lines wasmtime-serve,percore-wasi-http)
#
# 1. Peak: wrk, one thread, closed loop.
# 2. Sweep: oha at fixed offered rates, the same for every line, with --latency-correction
#    (coordinated omission accounted for): achieved rate, p50, p99, p99.9, errors.
# Writes target/compare/results.csv, a summary, and the chart target/compare/compare.{svg,png}
# (p99.9 against offered load). Installs what it needs: wrk, nginx-light and DejaVu fonts
# (Debian), oha and wasmtime-cli (crates.io, into target/tools; wasmtime-cli compiles for about
# 17 minutes the first time; --no-wasmtime skips that line).
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
mode=short
with_wasmtime=1
only=""
while [ $# -gt 0 ]; do
    case "$1" in
    --full) mode=full ;;
    --no-wasmtime) with_wasmtime=0 ;;
    --lines) only=$2; shift ;;
    *) echo "usage: $0 [--full] [--no-wasmtime] [--lines a,b,...]" >&2; exit 2 ;;
    esac
    shift
done
args_text="$mode${only:+ --lines $only}"
if [ "$mode" = full ]; then
    peak_s=10; point_s=8
    rates=(2000 5000 10000 20000 30000 40000 50000 60000 70000 80000 90000 100000)
else
    peak_s=3; point_s=3
    rates=(5000 20000 40000 60000 80000)
fi
server_cpu=0
client_cpu=1
port=18190
out=target/compare
mkdir -p "$out"

# --- tools and builds ---------------------------------------------------------------------------
need_apt=()
command -v wrk >/dev/null || need_apt+=(wrk)
[ -x /usr/sbin/nginx ] || need_apt+=(nginx-light)
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need_apt+=(fonts-dejavu-core)
command -v curl >/dev/null || need_apt+=(curl)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "installing ${need_apt[*]} (Debian)"
    sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
oha=target/tools/bin/oha
if [ ! -x "$oha" ]; then
    echo "installing oha from crates.io into target/tools (a few minutes, once)"
    cargo install --quiet --locked --root target/tools oha
fi
wasmtime=target/tools/bin/wasmtime
if [ "$with_wasmtime" = 1 ] && [ ! -x "$wasmtime" ]; then
    echo "installing wasmtime-cli 48.0.8 from crates.io into target/tools (about 17 minutes on 2 cores, once)"
    cargo install --quiet --locked --root target/tools --target-dir target/tools-build wasmtime-cli --version 48.0.8
fi
echo "building percore, the guests, the tokio/hyper server and the chart tool"
bash scripts/setup-guest-toolchain.sh >/dev/null
cargo build-guests >/dev/null
cargo build --quiet --release -p percore
cargo build --quiet --release --manifest-path benches/servers/hyper-json/Cargo.toml --target-dir target/bench-servers
cargo build --quiet --release --manifest-path benches/chart/Cargo.toml --target-dir target/bench-servers
percore=target/release/percore

tmp=$(mktemp -d)
cleanup() { [ -n "${server_pid:-}" ] && kill "$server_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT

start_server() { # line
    local s="taskset -c $server_cpu"
    case "$1" in
    nginx)
        nginx_conf "$tmp" "$port" "application/json" '{"method":"$request_method","path":"$uri","body_bytes":0}\n'
        $s /usr/sbin/nginx -c "$tmp/nginx.conf" >"$tmp/server.log" 2>&1 &
        ;;
    tokio-hyper)
        # One CPU: tokio's default runtime then has one worker; the work-stealing scheduler,
        # the blocking pool and the I/O driver share that CPU.
        $s target/bench-servers/release/hyper-json "127.0.0.1:$port" >"$tmp/server.log" 2>&1 &
        ;;
    percore-native)
        $s $percore serve --cores 1 --listen "127.0.0.1:$port" native:json >"$tmp/server.log" 2>&1 &
        ;;
    percore-wasm)
        $s $percore serve --cores 1 --listen "127.0.0.1:$port" target/guests/bench-json.wasm >"$tmp/server.log" 2>&1 &
        ;;
    percore-wasi-http)
        $s $percore serve --cores 1 --listen "127.0.0.1:$port" target/guests/wasi-http-json.wasm >"$tmp/server.log" 2>&1 &
        ;;
    wasmtime-serve)
        # -Scli: Rust's std for wasm32-wasip2 imports wasi:cli (environment, exit) even in a
        # wasi:http/proxy component.
        $s $wasmtime serve -Scli --addr "127.0.0.1:$port" target/guests/wasi-http-json.wasm >"$tmp/server.log" 2>&1 &
        ;;
    esac
    server_pid=$!
    for _ in $(seq 300); do
        curl -sf "http://127.0.0.1:$port/" >/dev/null 2>&1 && break
        sleep 0.1
    done
    local body
    body=$(curl -sf "http://127.0.0.1:$port/") || { echo "$1 did not start:"; cat "$tmp/server.log"; exit 1; }
    if [ "$body" != '{"method":"GET","path":"/","body_bytes":0}' ]; then
        echo "$1 answered $body instead of the benchmark document"; exit 1
    fi
}

peak() { wrk_peak "http://127.0.0.1:$port/" ${peak_s}; }              # prints requests/s
point() { oha_point "http://127.0.0.1:$port/" "$1" ${point_s}; }         # "achieved p50 p99 p99.9 errors"

lines=(nginx tokio-hyper percore-native percore-wasm percore-wasi-http)
[ "$with_wasmtime" = 1 ] && lines+=(wasmtime-serve)
if [ -n "$only" ]; then
    IFS=, read -r -a lines <<<"$only"
fi
echo
echo "machine: Linux $(uname -r), $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "pinning: every server on CPU $server_cpu (taskset -c $server_cpu), the load generator on CPU $client_cpu (taskset -c $client_cpu)"
echo "load: wrk -t1 -c16 -d${peak_s}s for the peak; oha -c16 --latency-correction, ${point_s} s per offered rate; loopback"
echo "mode: $args_text; date: $(date -u +%Y-%m-%dT%H:%MZ); command: bash benches/compare.sh${only:+ --lines $only}$([ "$mode" = full ] && echo ' --full')"
echo
declare -A peaks sustained sustained99
printf '%-16s %10s\n' line "peak req/s"
for line in "${lines[@]}"; do
    start_server "$line"
    peaks[$line]=$(peak)
    stop_server
    printf '%-16s %10s\n' "$line" "${peaks[$line]}"
done
echo
echo "line,offered,achieved,p50_ms,p99_ms,p999_ms,errors" >"$out/results.csv"
printf '%-16s %9s %9s %9s %9s %10s %7s\n' line offered achieved "p50 ms" "p99 ms" "p99.9 ms" errors
for line in "${lines[@]}"; do
    start_server "$line"
    sustained[$line]=0
    sustained99[$line]=0
    for rate in "${rates[@]}"; do
        read -r achieved p50 p99 p999 errors < <(point "$rate")
        printf '%-16s %9s %9s %9s %9s %10s %7s\n' "$line" "$rate" "$achieved" "$p50" "$p99" "$p999" "$errors"
        echo "$line,$rate,$achieved,$p50,$p99,$p999,$errors" >>"$out/results.csv"
        # Sustained: the offered rate was met (97 %), without errors, with p99.9 under 1 ms.
        if awk -v a="$achieved" -v r="$rate" -v t="$p999" -v e="$errors" 'BEGIN { exit !(a >= 0.97 * r && t < 1.0 && e == 0) }'; then
            sustained[$line]=$rate
        fi
        if awk -v a="$achieved" -v r="$rate" -v t="$p99" -v e="$errors" 'BEGIN { exit !(a >= 0.97 * r && t < 1.0 && e == 0) }'; then
            sustained99[$line]=$rate
        fi
    done
    stop_server
done
echo
echo "sustained: the highest offered rate met (97 %) without errors and with the tail under 1 ms"
printf '%-16s %10s %18s %18s\n' line "peak req/s" "p99.9 < 1 ms" "p99 < 1 ms"
for line in "${lines[@]}"; do
    printf '%-16s %10s %18s %18s\n' "$line" "${peaks[$line]}" "${sustained[$line]}" "${sustained99[$line]}"
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "n/a" }'; }
echo
ratios() { # label, name of the associative array
    local -n table=$2
    local text="" pair a b
    for pair in percore-wasm:percore-native percore-wasm:nginx percore-wasm:tokio-hyper \
        percore-wasm:wasmtime-serve percore-wasi-http:wasmtime-serve percore-wasi-http:percore-wasm; do
        a=${pair%%:*} b=${pair##*:}
        [ -n "${table[$a]+x}" ] && [ -n "${table[$b]+x}" ] || continue
        text+="${text:+, }$a/$b $(ratio "${table[$a]}" "${table[$b]}")"
    done
    [ -n "$text" ] && printf '%-22s%s\n' "ratios at $1:" "$text"
    return 0
}
ratios peak peaks
ratios "p99.9<1ms" sustained
ratios "p99<1ms" sustained99
echo
target/bench-servers/release/percore-chart "$out/results.csv" "$out/compare"
