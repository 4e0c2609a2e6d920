#!/bin/sh
# Build this guest: sh build.sh [OUT.wasm]  (default greeter-python.wasm)
# Needs componentize-py 0.25.1 on PATH: `pip install componentize-py==0.25.1`, or from a percore
# checkout `bash scripts/setup-language-toolchains.sh python` and its target/toolchain/lang/bin.
set -eu
out=$(realpath -m "${1:-greeter-python.wasm}")
cd "$(dirname "$0")"
command -v componentize-py >/dev/null 2>&1 || {
    echo "componentize-py is not on PATH: pip install componentize-py==0.25.1" >&2
    exit 1
}
componentize-py -d wit -w handler componentize app -o "$out"
echo "built $out"
