#!/bin/sh
# Build probe-js: sh build.sh OUT.wasm  (componentize-js on PATH, as examples-guests/greeter-js)
set -eu
out=$(realpath -m "${1:-probe-js.wasm}")
cd "$(dirname "$0")"
componentize-js probe.js --wit wit --world-name handler --disable http fetch-event --out "$out" >/dev/null
