#!/bin/sh
# Build probe-python: sh build.sh OUT.wasm  (componentize-py on PATH, as examples-guests/greeter-python)
set -eu
out=$(realpath -m "${1:-probe-python.wasm}")
cd "$(dirname "$0")"
componentize-py -d wit -w handler componentize probe -o "$out" >/dev/null
