#!/bin/sh
# Build this guest: sh build.sh [OUT.wasm]  (default greeter-js.wasm)
# Needs componentize-js 0.23.0 on PATH: `npm install @bytecodealliance/componentize-js@0.23.0`
# (with @bytecodealliance/preview2-shim@0.25.0 and commander, which it imports without
# declaring), or from a percore checkout `bash scripts/setup-language-toolchains.sh js` and its
# target/toolchain/lang/bin. `--disable http fetch-event` leaves out wasi:http, which an
# edge:handler guest does not get.
set -eu
out=$(realpath -m "${1:-greeter-js.wasm}")
cd "$(dirname "$0")"
command -v componentize-js >/dev/null 2>&1 || {
    echo "componentize-js is not on PATH (see build.sh)" >&2
    exit 1
}
componentize-js app.js --wit wit --world-name handler --disable http fetch-event --out "$out"
echo "built $out"
