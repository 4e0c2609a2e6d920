#!/bin/sh
# Build probe-c: sh build.sh OUT.wasm  (clang and wit-bindgen on PATH, as examples-guests/greeter-c)
set -eu
out=$(realpath -m "${1:-probe-c.wasm}")
cd "$(dirname "$0")"
said=$(wit-bindgen c wit --world handler --out-dir gen 2>&1) || { echo "$said" >&2; exit 1; }
clang --target=wasm32-wasi --sysroot=/usr -mexec-model=reactor -O2 -Wall -Werror -Wl,--stack-first \
    -Igen probe.c gen/handler.c gen/handler_component_type.o -o "$out"
