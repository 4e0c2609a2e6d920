#!/usr/bin/env bash
# Installs what builds wasm guests, and records how in target/toolchain/guest.env.
#
# Ordinary path: `rustup target add` for wasm32-wasip2, wasm32-wasip1 and wasm32-unknown-unknown
# (bounded by a timeout: where rustup cannot download, it hangs). Fallback: Debian's rustc-web
# with the standard library's source (-Zbuild-std), lld-19, wasi-libc, and wasm-component-ld from
# crates.io. PERCORE_GUEST_TOOLCHAIN=rustup|debian forces one path. Running it again does nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
env_file=target/toolchain/guest.env
mode=${PERCORE_GUEST_TOOLCHAIN:-auto}
targets=(wasm32-wasip2 wasm32-wasip1 wasm32-unknown-unknown)
component_ld_version=0.5.31
mkdir -p target/toolchain

say() { echo "guest toolchain: $*"; }

rustup_ready() {
    command -v rustup >/dev/null 2>&1 || return 1
    local installed
    installed=$(rustup target list --installed 2>/dev/null) || return 1
    for t in "${targets[@]}"; do
        grep -qx "$t" <<<"$installed" || return 1
    done
}

write_rustup_env() {
    cat >"$env_file" <<ENV
MODE=rustup
ENV
}

debian_ready() {
    for p in rustc-web cargo-web rust-web-src lld-19 wasi-libc; do
        dpkg -s "$p" >/dev/null 2>&1 || return 1
    done
    [ -x target/toolchain/bin/wasm-component-ld ] || return 1
}

write_debian_env() {
    cat >"$env_file" <<ENV
MODE=debian
RUSTC=/usr/bin/rustc
WASI_LIBC=/usr/lib/wasm32-wasi
WASM_LD=/usr/bin/wasm-ld-19
WASM_COMPONENT_LD=$root/target/toolchain/bin/wasm-component-ld
ENV
}

if [ "$mode" != debian ]; then
    if rustup_ready; then
        [ -f "$env_file" ] && grep -qx MODE=rustup "$env_file" && { say "ready (rustup targets ${targets[*]}); nothing to do"; exit 0; }
        write_rustup_env
        say "using the rustup targets already installed"
        exit 0
    fi
    if command -v rustup >/dev/null 2>&1; then
        say "rustup target add ${targets[*]} (at most 120 s)"
        if timeout 120 rustup target add "${targets[@]}" && rustup_ready; then
            write_rustup_env
            say "installed the rustup targets"
            exit 0
        fi
        say "rustup could not install the targets; falling back to Debian's toolchain"
    fi
    if [ "$mode" = rustup ]; then
        echo "guest toolchain: PERCORE_GUEST_TOOLCHAIN=rustup, but rustup could not provide ${targets[*]}" >&2
        exit 1
    fi
fi

if debian_ready; then
    [ -f "$env_file" ] && grep -qx MODE=debian "$env_file" && { say "ready (Debian rustc-web + build-std); nothing to do"; exit 0; }
    write_debian_env
    say "using Debian's toolchain"
    exit 0
fi

missing=()
for p in rustc-web cargo-web rust-web-src lld-19 wasi-libc; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    say "installing Debian packages: ${missing[*]}"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if [ ! -x target/toolchain/bin/wasm-component-ld ]; then
    say "installing wasm-component-ld $component_ld_version from crates.io (about 2 minutes)"
    cargo install --quiet --locked --root target/toolchain "wasm-component-ld@$component_ld_version"
fi
write_debian_env
say "ready (Debian rustc-web + build-std)"
