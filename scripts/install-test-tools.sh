#!/usr/bin/env bash
# Tools the end-to-end tests use, from Debian's packages: curl (requests), wrk (load during a
# hot swap) and PostgreSQL (the invocation log's server). Installs only what is missing.
set -euo pipefail
need=()
command -v curl >/dev/null || need+=(curl)
command -v wrk >/dev/null || need+=(wrk)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need+=(postgresql)
if [ ${#need[@]} -eq 0 ]; then
    exit 0
fi
sudo=""
[ "$(id -u)" = 0 ] || sudo=sudo
echo "installing ${need[*]} (Debian)"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
