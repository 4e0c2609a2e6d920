#!/usr/bin/env bash
# Every test of the project, from a fresh clone: installs what it needs through the project's
# own scripts, builds the guests, checks formatting and lints, runs the host's and the SDK's tests.
set -euo pipefail
cd "$(dirname "$0")/.."

# Each step says when it began (seconds since the start): where a slow run spent its time.
step() {
    printf '\n== %s (at %d s, %s free on the disk)\n' "$*" "$SECONDS" \
        "$(df -h --output=avail . | tail -1 | tr -d ' ')"
}

# Incremental state is for editing, not for a run from scratch: it doubled the build's disk use.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

step "system tools the end-to-end tests use (curl, kill, wrk, PostgreSQL, docker-registry, haproxy)"
missing=()
[ -x /bin/kill ] || [ -x /usr/bin/kill ] || missing+=(procps)  # the binary, not the shell builtin
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
bash scripts/install-test-tools.sh
echo "curl, kill, wrk, PostgreSQL, docker-registry, htpasswd, haproxy, ip and openssl present"

step "guest toolchain"
bash scripts/setup-guest-toolchain.sh

step "toolchains of the other languages (Python, JavaScript, C, Go)"
bash scripts/setup-language-toolchains.sh

step "guests (target/guests), every language"
cargo build-guests --require-languages
export PERCORE_REQUIRE_LANGUAGES=1

step "format and lints"
cargo fmt --all --check
(cd examples-guests && cargo fmt --all --check)
# The test-only `--misbehave` switches exist only with this feature; the tests and the suite's
# misbehaviour checks below use a build that has them.
features=(--features percore/misbehave)
cargo clippy --workspace --all-targets "${features[@]}" --quiet -- -D warnings
cargo clippy -p percore-dataplane -p percore --all-targets --quiet -- -D warnings  # and without

step "SDK tests (native: region decoding, compile-fail messages)"
(cd examples-guests && cargo test -p percore-guest -p percore-guest-macros)

step "host tests (rt, http, engine, data plane, control plane; PostgreSQL on loopback)"
trap 'bash scripts/pg-test-server.sh stop' EXIT
PERCORE_TEST_POSTGRES=$(bash scripts/pg-test-server.sh start)
export PERCORE_TEST_POSTGRES PERCORE_REQUIRE_POSTGRES=1
# The disk-full test mounts a tmpfs: CI runs as root, and a skip there would hide a failure.
export PERCORE_REQUIRE_FAULT_TESTS=1
cargo test --workspace "${features[@]}"

step "the quick fuzz targets, briefly (libFuzzer; scripts/fuzz.sh runs every target, longer)"
PERCORE_FUZZ_TARGETS="$(bash scripts/fuzz.sh --quick)" bash scripts/fuzz.sh "${PERCORE_CI_FUZZ_SECONDS:-10}"

step "Kubernetes manifests and the CRD, offline against the Kubernetes OpenAPI schemas"
bash scripts/validate-manifests.sh

step "build percore and the conformance runner"
cargo build --workspace "${features[@]}"

step "the suite catches a host that breaks a rule (percore serve --misbehave, test-only)"
for pair in drop-repeated-header:headers-repeated ignore-memory-cap:fault-out-of-memory \
    reuse-across-deployments:isolation-between-deployments mangle-binary-body:body-binary-region \
    timeout-as500:fault-timeout skip-reset:isolation-between-requests; do
    rule=${pair%%:*} case=${pair##*:}
    # Edge runs only: a run against another kind failing for its own reasons must not count.
    if target/debug/percore-conformance --filter "$case" --kind edge \
        --host "target/debug/percore serve --config {manifest} --misbehave $rule" >target/misbehave.log 2>&1; then
        echo "the suite did not notice --misbehave $rule:"; cat target/misbehave.log; exit 1
    fi
    grep -q "^FAIL  $case" target/misbehave.log || { cat target/misbehave.log; exit 1; }
    echo "--misbehave $rule: $case fails, as it must"
done

step "a build without the test feature carries none of the test-only switches"
# The whole workspace, so that only the crates the feature touches build again.
cargo build --quiet --workspace
# The switch's type and its values (plain "misbehave" is in rustls's messages too).
count=$(grep -ac -e Misbehaviour -e drop-repeated-header -e ignore-memory-cap target/debug/percore || true)
echo "lines of target/debug/percore that mention the test-only switch: $count"
[ "$count" = 0 ] || { echo "the product binary contains test-only code"; exit 1; }
target/debug/percore serve --misbehave skip-reset target/guests/hello.wasm >target/misbehave-flag.log 2>&1 &&
    { echo "percore serve accepted --misbehave without the test feature"; exit 1; }
grep -q "unexpected argument '--misbehave'" target/misbehave-flag.log || { cat target/misbehave-flag.log; exit 1; }
echo "no --misbehave in the product build"

step "a fleet of three hosts in network namespaces behind haproxy: a kill, a restart, a rolling update"
bash scripts/fleet-test.sh target/debug/percore

step "conformance suite against percore serve (the product build)"
target/debug/percore-conformance \
    --host 'target/debug/percore serve --config {manifest}' \
    --json target/conformance.json --junit target/conformance.xml

step "the suite's cases for any guest, against guests in Python, JavaScript, C (edge) and Go (CGI)"
for probe in edge=probe-python edge=probe-js edge=probe-c cgi=probe-go; do
    kind=${probe%%=*} name=${probe#*=}
    if target/debug/percore-conformance --probe "$probe" --kind "$kind" \
        --host 'target/debug/percore serve --config {manifest}' \
        --json "target/conformance-$name.json" >"target/conformance-$name.log" 2>&1; then
        echo "$name: $(tail -1 "target/conformance-$name.log")"
    else
        grep -A12 '^FAIL' "target/conformance-$name.log" || tail -20 "target/conformance-$name.log"
        echo "the suite failed against $name"
        exit 1
    fi
done

step "done"
du -sh target 2>/dev/null || true
