#!/usr/bin/env bash
# Run every fuzz target (cargo fuzz, libFuzzer; fuzz/) for SECONDS each, default 60, and print
# each target's executions and whether it found anything. Stable Rust: the targets are safe code,
# so they run without a sanitizer (`-s none`); panics, arithmetic overflow (debug assertions are
# on), out-of-memory and timeouts are what they catch. A crash leaves its input in
# fuzz/artifacts/TARGET/ and fails the run: make it a regression test, then fix it.
#
#   bash scripts/fuzz.sh [SECONDS]                               # every target
#   PERCORE_FUZZ_TARGETS="http_head chunked" bash scripts/fuzz.sh 30
#   PERCORE_FUZZ_TARGETS="$(bash scripts/fuzz.sh --quick)" ...   # the six that build quickly
#
# deploy_path links wasmtime: its instrumented build takes several minutes, and it runs about
# 20 executions a second on mutated guests (thousands on wasm-smith's modules).
#
# The corpus grows in target/fuzz-corpus/TARGET (from the seeds in fuzz/seeds/TARGET).
set -euo pipefail
cd "$(dirname "$0")/.."
quick="http_head http_differential chunked admin_request region_codec config_file"
if [ "${1:-}" = --quick ]; then
    echo "$quick"
    exit 0
fi
seconds=${1:-60}
targets=${PERCORE_FUZZ_TARGETS:-"$quick deploy_path"}

cargo_fuzz=target/tools/bin/cargo-fuzz
if [ ! -x "$cargo_fuzz" ]; then
    echo "installing cargo-fuzz from crates.io into target/tools (a minute or two, once)"
    cargo install --quiet --locked --root target/tools cargo-fuzz --version 0.13.2
fi
export PATH="$PWD/target/tools/bin:$PATH"

failed=0
passed=0
for t in $targets; do
    mkdir -p "target/fuzz-corpus/$t"
    log="target/fuzz-$t.log"
    dir=fuzz seeds=fuzz/seeds/$t
    if [ "$t" = deploy_path ]; then
        # Links wasmtime: a package of its own. Its seeds are the project's guests, as built.
        dir=fuzz/deploy seeds=target/guests
        [ -d "$seeds" ] || cargo build-guests
    fi
    if cargo fuzz run --fuzz-dir "$dir" -s none "$t" "target/fuzz-corpus/$t" "$seeds" -- \
        -max_total_time="$seconds" -print_final_stats=1 -rss_limit_mb=1024 >"$log" 2>&1; then
        runs=$(awk '/stat::number_of_executed_units/ {print $2}' "$log")
        echo "ok    $t: ${runs:-?} executions in $seconds s, no crash"
        passed=$((passed + 1))
    else
        echo "FAIL  $t (log: $log)"
        grep -E 'panicked|ERROR|SUMMARY|Test unit written' "$log" | head -10 || tail -20 "$log"
        failed=$((failed + 1))
    fi
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" = 0 ]
