#!/bin/sh
# Build this guest: sh build.sh [OUT.wasm]  (default greeter-c.wasm)
# Needs clang (19; Debian: clang-19 lld-19 libclang-rt-19-dev-wasm32 wasi-libc) and wit-bindgen
# 0.61 (`cargo install wit-bindgen-cli@0.61.0`) on PATH; from a percore checkout,
# `bash scripts/setup-language-toolchains.sh c` puts both in target/toolchain/lang/bin.
# The result is a core module carrying its WIT world; percore makes it a component at deploy
# (`wasm-tools component new` with the preview 1 reactor adapter does the same elsewhere).
set -eu
out=$(realpath -m "${1:-greeter-c.wasm}")
cd "$(dirname "$0")"
for tool in clang wit-bindgen; do
    command -v "$tool" >/dev/null 2>&1 || { echo "$tool is not on PATH (see build.sh)" >&2; exit 1; }
done
said=$(wit-bindgen c wit --world handler --out-dir gen 2>&1) || { echo "$said" >&2; exit 1; }
clang --target=wasm32-wasi --sysroot=/usr -mexec-model=reactor -O2 -Wall -Werror -Wl,--stack-first \
    -Igen app.c gen/handler.c gen/handler_component_type.o -o "$out"
echo "built $out"
