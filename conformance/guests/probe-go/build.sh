#!/bin/sh
# Build probe-go: sh build.sh OUT.wasm  (go 1.27 on PATH, as examples-guests/greeter-go)
set -eu
out=$(realpath -m "${1:-probe-go.wasm}")
cd "$(dirname "$0")"
GOOS=wasip1 GOARCH=wasm go build -trimpath -buildvcs=false -o "$out" .
