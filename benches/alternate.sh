#!/usr/bin/env bash
# Before/after on the request path: two percore builds measured in one sitting, alternated
# round by round so that this VM's drift between runs falls on both alike.
#
#   bash benches/alternate.sh BEFORE_BIN AFTER_BIN [ROUNDS] [SECONDS]
#
# Lines (server pinned to CPU 0, wrk -t1 -c16 pinned to CPU 1, loopback): `native:hello`, the
# `hello` guest with reset instances (the default), and with kept instances. Prints every round
# and each line's mean for both builds. Needs wrk and curl; `cargo build-guests` for hello.wasm.
# GUEST=PATH runs another hello build (one built against the contract both builds know, when
# the contract changed between them).
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
[ $# -ge 2 ] || { echo "usage: $0 BEFORE_BIN AFTER_BIN [ROUNDS] [SECONDS]" >&2; exit 2; }
before=$(realpath "$1")
after=$(realpath "$2")
rounds=${3:-3}
seconds=${4:-8}
guest=$(realpath "${GUEST:-target/guests/hello.wasm}")
server_cpu=0
client_cpu=1
port=18195
server_pid=""
trap 'stop_server' EXIT

start() { # binary line
    local args
    case "$2" in
    native) args=(native:hello) ;;
    reset) args=(--instances reset "$guest") ;;
    keep) args=(--instances keep "$guest") ;;
    esac
    taskset -c "$server_cpu" "$1" serve --cores 1 --listen "127.0.0.1:$port" "${args[@]}" \
        >/dev/null 2>&1 &
    server_pid=$!
    for _ in $(seq 300); do
        curl -sf "http://127.0.0.1:$port/" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "$1 did not start for line $2" >&2
    exit 1
}

echo "machine: Linux $(uname -r), $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "date: $(date -u +%Y-%m-%dT%H:%MZ); before: $before; after: $after; $rounds rounds of ${seconds} s; guest $guest"
declare -A sum
printf '%-8s %-6s %6s %12s\n' line build round "req/s"
for round in $(seq "$rounds"); do
    for line in native reset keep; do
        for build in before after; do
            bin=$before
            [ "$build" = after ] && bin=$after
            start "$bin" "$line"
            rate=$(wrk_peak "http://127.0.0.1:$port/" "$seconds")
            stop_server
            sum[$line.$build]=$(( ${sum[$line.$build]:-0} + rate ))
            printf '%-8s %-6s %6s %12s\n' "$line" "$build" "$round" "$rate"
        done
    done
done
echo
for line in native reset keep; do
    b=$(( sum[$line.before] / rounds ))
    a=$(( sum[$line.after] / rounds ))
    awk -v l="$line" -v b="$b" -v a="$a" \
        'BEGIN { printf "%-8s mean before %d, after %d (%+.1f %%)\n", l, b, a, (a - b) * 100 / b }'
done
