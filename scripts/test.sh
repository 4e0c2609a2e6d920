#!/usr/bin/env bash
# Every test of the project, from a fresh clone: installs what it needs through the project's
# own scripts, builds the guests, checks formatting and lints, runs the host's and the SDK's tests.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "system tools the end-to-end tests use (curl, kill, wrk, PostgreSQL)"
missing=()
[ -x /bin/kill ] || [ -x /usr/bin/kill ] || missing+=(procps)  # the binary, not the shell builtin
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
bash scripts/install-test-tools.sh
echo "curl, kill, wrk and PostgreSQL present"

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

step "host tests (rt, http, engine, data plane, control plane; PostgreSQL on loopback)"
trap 'bash scripts/pg-test-server.sh stop' EXIT
PERCORE_TEST_POSTGRES=$(bash scripts/pg-test-server.sh start)
export PERCORE_TEST_POSTGRES PERCORE_REQUIRE_POSTGRES=1
cargo test --workspace

step "build percore and the conformance runner"
cargo build --workspace

step "the suite catches a host that breaks a rule (percore serve --misbehave, test-only)"
for pair in drop-repeated-header:headers-repeated ignore-memory-cap:fault-out-of-memory \
    reuse-across-deployments:isolation-between-deployments mangle-binary-body:body-binary-region \
    timeout-as500:fault-timeout skip-reset:isolation-between-requests; do
    rule=${pair%%:*} case=${pair##*:}
    if target/debug/percore-conformance --filter "$case" \
        --host "target/debug/percore serve --config {manifest} --misbehave $rule" >target/misbehave.log 2>&1; then
        echo "the suite did not notice --misbehave $rule:"; cat target/misbehave.log; exit 1
    fi
    grep -q "^FAIL  $case" target/misbehave.log || { cat target/misbehave.log; exit 1; }
    echo "--misbehave $rule: $case fails, as it must"
done

step "conformance suite against percore serve"
target/debug/percore-conformance \
    --host 'target/debug/percore serve --config {manifest}' \
    --json target/conformance.json --junit target/conformance.xml

