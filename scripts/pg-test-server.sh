#!/usr/bin/env bash
# A throwaway PostgreSQL server on loopback for the tests of the invocation log.
#
#   url=$(bash scripts/pg-test-server.sh start)   # prints a postgres:// URL
#   bash scripts/pg-test-server.sh halt            # the server goes away, its data stays
#   bash scripts/pg-test-server.sh resume          # and comes back
#   bash scripts/pg-test-server.sh stop
#
# The cluster lives in a temporary directory (trust authentication, fsync off, loopback only)
# recorded in target/pg-test-server; `stop` shuts it down and deletes it. PERCORE_PG_PORT and
# PERCORE_PG_STATE run a second cluster beside the first (the fault tests do).
set -euo pipefail
cd "$(dirname "$0")/.."
state=${PERCORE_PG_STATE:-target/pg-test-server}
port=${PERCORE_PG_PORT:-55432}
bin=$(compgen -G "/usr/lib/postgresql/*/bin" | sort -V | tail -1 || true)
[ -n "$bin" ] || { echo "PostgreSQL is missing: run scripts/install-test-tools.sh" >&2; exit 1; }

as_owner() { # run as the cluster's owner: postgres refuses to run as root
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

stop() {
    [ -f "$state" ] || return 0
    dir=$(cat "$state")
    as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$dir" "$state"
}

case "${1:-}" in
start)
    stop
    mkdir -p target
    dir=$(mktemp -d /tmp/percore-pg.XXXXXX)
    [ "$(id -u)" = 0 ] && chown postgres "$dir"
    echo "$dir" >"$state"
    as_owner "$bin/initdb" -D "$dir/data" -A trust -U percore >"$dir/initdb.log" 2>&1 ||
        { cat "$dir/initdb.log" >&2; exit 1; }
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
        -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null ||
        { cat "$dir/server.log" >&2; exit 1; }
    echo "postgres://percore@127.0.0.1:$port/postgres"
    ;;
halt)
    dir=$(cat "$state")
    as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
    ;;
resume)
    dir=$(cat "$state")
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
        -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null ||
        { cat "$dir/server.log" >&2; exit 1; }
    ;;
stop) stop ;;
*) echo "usage: $0 start|halt|resume|stop" >&2; exit 2 ;;
esac
