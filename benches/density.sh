#!/usr/bin/env bash
# Density: many deployments on one host. Deploys N copies of the `hello` guest (same bytes, so
# compiled once; distinct names and routes) through the admin API, then requests each once.
# Prints, for each N: deploy rate, host RSS and its growth per deployment (after deploying and
# after every deployment served once), and the latency of first requests to deployments whose
# artifact was unmapped (LRU) or never mapped on that core: a cold start from disk.
#
#   bash benches/density.sh              # N = 1000 and 10000
#   bash benches/density.sh 200 2000     # other sizes
#   PERCORE_BIN=/path/to/percore bash benches/density.sh 1000   # another build
#
# Memory figures are the host process's RSS (/proc/PID/status) and PSS (smaps_rollup, which
# splits shared artifact pages fairly); nothing is asserted.
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(1000 10000)

bash scripts/setup-guest-toolchain.sh >/dev/null
cargo build-guests >/dev/null
if [ -n "${PERCORE_BIN:-}" ]; then
    percore=$(realpath "$PERCORE_BIN")   # another build (before/after comparisons)
else
    cargo build --quiet --release -p percore
    percore=$PWD/target/release/percore
fi
guest=$PWD/target/guests/hello.wasm

tmp=$(mktemp -d)
cleanup() { [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT

mem() { # RSS and PSS of the host, MiB
    local rss pss
    rss=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
    pss=$(awk '/^Pss:/ {print $2}' "/proc/$pid/smaps_rollup")
    echo "$((rss / 1024)) $((pss / 1024))"
}

echo "machine: $(uname -r), $(nproc) CPUs, $(awk '/MemTotal/ {print int($2/1048576)}' /proc/meminfo) GiB"
echo "date: $(date -u +%Y-%m-%d)"
for n in "${sizes[@]}"; do
    state=$tmp/state-$n
    "$percore" serve --state "$state" --admin 127.0.0.1:19180 --listen 127.0.0.1:18091 \
        --invocation-log off >"$tmp/out" 2>"$tmp/err" &
    pid=$!
    for _ in $(seq 100); do grep -q listening "$tmp/out" 2>/dev/null && break; sleep 0.1; done
    read -r rss0 pss0 < <(mem)
    python3 - "$n" "$guest" <<'EOF'
import json, sys, time, urllib.request
n, guest = int(sys.argv[1]), sys.argv[2]
start = time.time()
for i in range(n):
    body = json.dumps({"component": {"path": guest}, "routes": [{"path": f"/d{i}"}]}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:19180/v1/deployments/d{i}", data=body, method="PUT")
    with urllib.request.urlopen(req) as r:
        assert r.status == 201, r.status
took = time.time() - start
print(f"N={n}: deployed in {took:.1f} s ({n / took:.0f} deploys/s)")
EOF
    read -r rss1 pss1 < <(mem)
    # First request to every deployment, one keep-alive connection per 500 URLs.
    : >"$tmp/ttfb"
    for ((i = 0; i < n; i += 500)); do
        urls=()
        for ((j = i; j < i + 500 && j < n; j++)); do urls+=("http://127.0.0.1:18091/d$j"); done
        curl -s -o /dev/null -w '%{http_code} %{time_starttransfer} %{time_pretransfer}\n' "${urls[@]}" >>"$tmp/ttfb"
    done
    read -r rss2 pss2 < <(mem)
    ok=$(awk '$1 == 200' "$tmp/ttfb" | wc -l)
    metrics=$(curl -s 127.0.0.1:19180/metrics)
    loaded=$(echo "$metrics" | awk '/^percore_core_artifacts_loaded_total/ {s += $2} END {print s + 0}')
    evicted=$(echo "$metrics" | awk '/^percore_core_artifacts_evicted_total/ {s += $2} END {print s + 0}')
    echo "  host RSS: ${rss0} MiB empty, ${rss1} MiB with $n deployed, ${rss2} MiB after each served once ($ok/$n answered 200)"
    echo "  host PSS: ${pss0} MiB empty, ${pss1} MiB deployed, ${pss2} MiB served"
    awk -v n="$n" -v a="$rss0" -v b="$rss1" -v c="$rss2" 'BEGIN {
        printf "  per deployment: %.0f KiB deployed (mapped on deploy, LRU-bounded), %.0f KiB once served (with its pooled instance)\n", (b - a) * 1024 / n, (c - a) * 1024 / n }'
    echo "  artifacts mapped on first request: $loaded, unmapped by the LRU: $evicted"
    # Time to first byte of those first requests (from the request being sent).
    awk '$1 == 200 {print ($2 - $3) * 1e6}' "$tmp/ttfb" | sort -n | awk '{ v[NR] = $1 } END {
        printf "  first request, server time to first byte: p50 %.0f µs, p99 %.0f µs, max %.0f µs (n=%d)\n",
            v[int(NR * 0.5)], v[int(NR * 0.99)], v[NR], NR }'
    kill -TERM "$pid"; wait "$pid" 2>/dev/null || true; pid=
done
