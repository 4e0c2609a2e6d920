#!/usr/bin/env bash
# Tools the end-to-end tests use, from Debian's packages: curl (requests), wrk (load during a
# hot swap), PostgreSQL (the invocation log's server), docker-registry (a real OCI registry on
# loopback), htpasswd from apache2-utils (its users), haproxy and iproute2 (the fleet test's
# balancer and network namespaces), openssl (test certificates and a TLS origin for outbound
# https). Installs only what is missing.
set -euo pipefail
need=()
command -v curl >/dev/null || need+=(curl)
command -v wrk >/dev/null || need+=(wrk)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need+=(postgresql)
[ -x /usr/bin/docker-registry ] || need+=(docker-registry)
command -v htpasswd >/dev/null || need+=(apache2-utils)
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || need+=(haproxy)
command -v ip >/dev/null || [ -x /usr/sbin/ip ] || need+=(iproute2)
command -v openssl >/dev/null || need+=(openssl)
if [ ${#need[@]} -eq 0 ]; then
    exit 0
fi
sudo=""
[ "$(id -u)" = 0 ] || sudo=sudo
echo "installing ${need[*]} (Debian)"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
