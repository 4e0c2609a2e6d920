#!/usr/bin/env bash
# What a guest costs in each language: the greeter examples (examples-guests/greeter*, the same
# handler in Rust, Python, JavaScript, C and Go) through `percore bench`: component size,
# compile time at deploy, artifact load, and per request with a fresh instance and, where the
# component qualifies, one reset to its snapshot, and one reset to a snapshot taken after a
# warm-up request (`reset-wu`: `GET /?name=warm`, as `percore deploy --warmup` does). Needs `cargo build-guests` with the language
# toolchains (scripts/setup-language-toolchains.sh). Run it alone on the machine.
#
#   bash benches/languages.sh [ITERATIONS]     (default 300 requests per scenario)
set -euo pipefail
cd "$(dirname "$0")/.."
iterations=${1:-300}
cargo build --release --quiet -p percore
percore=target/release/percore
core=$(( $(nproc) > 1 ? 1 : 0 ))
for guest in greeter greeter-c greeter-go greeter-js greeter-python; do
    wasm=target/guests/$guest.wasm
    [ -f "$wasm" ] || { echo "$wasm is missing: cargo build-guests --require-languages" >&2; exit 1; }
    echo "== $guest"
    # A generous CPU budget: a fresh Python instance takes tens of milliseconds.
    taskset -c "$core" "$percore" bench "$wasm" --iterations "$iterations" --compilations 3 \
        --cpu-ms 2000 --timeout-ms 5000 --set greeting=Hi --warmup '/?name=warm' 2>/dev/null |
        grep -v '^machine:' || { echo "percore bench failed on $guest" >&2; exit 1; }
    echo
done
"$percore" bench target/guests/greeter.wasm --iterations 1 --compilations 1 2>/dev/null | grep '^machine:'
