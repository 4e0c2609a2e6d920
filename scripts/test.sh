#!/usr/bin/env bash
# Every test of the project, from a fresh clone: installs what it needs through the project's
# own scripts, builds the guests, checks formatting and lints, runs the host's and the SDK's tests.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "guest toolchain"
bash scripts/setup-guest-toolchain.sh

step "guests (target/guests)"
cargo build-guests

step "format and lints"
cargo fmt --all --check
(cd examples-guests && cargo fmt --all --check)
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "SDK tests (native: region decoding, compile-fail messages)"
(cd examples-guests && cargo test -p percore-guest -p percore-guest-macros)

step "host tests (rt, http, engine, data plane)"
cargo test --workspace

step "conformance suite against percore serve"
cargo build -p percore -p percore-conformance
target/debug/percore-conformance \
    --host 'target/debug/percore serve --config {manifest}' \
    --json target/conformance.json --junit target/conformance.xml
