#!/usr/bin/env bash
# Build what percore needs on a fresh machine and run the example guests through it.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup-guest-toolchain.sh
cargo build-guests
cargo build -p percore
percore=target/debug/percore

show() { printf '\n$ percore %s\n' "$*"; "$percore" "$@"; }
show invoke target/guests/hello.wasm
show invoke target/guests/echo.wasm -X POST --path '/echo?x=1' -H 'X-Demo: yes' --body 'ping'
show invoke target/guests/json-api.wasm -X POST --path /sum --body '{"numbers":[1,2,3]}' --body-only
echo
show invoke target/guests/greeter.wasm --path '/?name=operator' --set greeting=Hi
show invoke target/guests/hello.wasm --portable --json
show compile target/guests/hello.wasm -o target/hello.cwasm
show invoke target/hello.cwasm --body-only
# The guests users already have (docs/GUESTS.md): a wasi:http component, a WASI command run CGI
# style, a bare core module. percore tells each kind from the binary.
show invoke target/guests/wasi-http-json.wasm --path /hello --body-only
show invoke target/guests/upper-cgi.wasm -X POST --body 'make me loud' --body-only
echo
show invoke target/guests/sum.wasm --args 5 2
