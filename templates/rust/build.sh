#!/bin/sh
# Build this guest: sh build.sh [OUT.wasm]  (default greeter-rust.wasm)
# Needs Rust with the wasm32-wasip2 target: `rustup target add wasm32-wasip2`.
set -eu
out=$(realpath -m "${1:-greeter-rust.wasm}")
cd "$(dirname "$0")"
cargo build --quiet --release --target wasm32-wasip2
cp target/wasm32-wasip2/release/greeter_rust.wasm "$out"
echo "built $out"
