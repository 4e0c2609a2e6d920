#!/usr/bin/env bash
# A fleet on one machine, for real: three percore hosts, each in a network namespace of its own,
# behind haproxy; a component pushed to a local OCI registry and deployed to every host with the
# CLI; load through the balancer while one host is killed (SIGKILL) and restarted from its own
# state, then while the app is updated host by host. Prints what each phase saw and fails when:
#
#   - more requests fail around the kill than were in flight (one per load connection);
#   - the restarted host does not serve its deployment from its state (the registry is stopped
#     before the restart, so nothing can be pulled);
#   - a single request fails during the rolling update.
#
#   bash scripts/fleet-test.sh [PERCORE_BINARY]      (root: it makes network namespaces)
#
# Every address is on a bridge this script makes (10.213.0.0/24) or on loopback; every load is
# bounded in time; everything is removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

percore=$(realpath "${1:-target/debug/percore}")
[ -x "$percore" ] || { echo "no percore binary at $percore: cargo build -p percore" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "the fleet test needs root (network namespaces)" >&2; exit 1; }
for tool in haproxy wrk docker-registry curl ip; do
    command -v "$tool" >/dev/null || { echo "$tool is missing: run scripts/install-test-tools.sh" >&2; exit 1; }
done

work=$(mktemp -d /tmp/percore-fleet.XXXXXX)
bridge=pcfleet0
net=10.213.0
registry="$net.1:5000"
balancer=127.0.0.1:18480
token=fleet-token
hosts=(h1 h2 h3)
pids=()

cleanup() {
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    for h in "${hosts[@]}"; do ip netns del "pcfleet-$h" 2>/dev/null || true; done
    ip link del "$bridge" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

say() { printf '\n-- %s\n' "$*"; }
fail() { echo "FAIL: $*"; for f in "$work"/*.log; do echo "== $f"; tail -20 "$f"; done; exit 1; }

say "network: bridge $bridge ($net.1), namespaces pcfleet-h1..h3 ($net.11-13)"
ip link add "$bridge" type bridge
ip addr add "$net.1/24" dev "$bridge"
ip link set "$bridge" up
i=11
for h in "${hosts[@]}"; do
    ns=pcfleet-$h
    ip netns add "$ns"
    ip link add "pcf-$h" type veth peer name eth0 netns "$ns"
    ip link set "pcf-$h" master "$bridge" up
    ip -n "$ns" addr add "$net.$i/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
    i=$((i + 1))
done
addr_of() { case $1 in h1) echo "$net.11";; h2) echo "$net.12";; h3) echo "$net.13";; esac; }

say "registry on $registry"
mkdir -p "$work/registry"
cat >"$work/registry.yml" <<EOF
version: 0.1
log: {level: warn}
storage: {filesystem: {rootdirectory: $work/registry}}
http: {addr: "$registry", secret: fleet}
EOF
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
registry_pid=$!
pids+=("$registry_pid")
disown
for _ in $(seq 100); do curl -sf "http://$registry/v2/" >/dev/null && break; sleep 0.1; done
export PERCORE_INSECURE_REGISTRIES=$registry
"$percore" push target/guests/hello.wasm "oci://$registry/apps/site:v1" | tail -1
"$percore" push target/guests/greeter.wasm "oci://$registry/apps/site:v2" | tail -1

declare -A host_pid
start_host() {
    local h=$1 a
    a=$(addr_of "$h")
    ip netns exec "pcfleet-$h" "$percore" serve --state "$work/state-$h" --cores 1 \
        --listen "$a:8080" --admin "$a:9180" --admin-token "$token" \
        >>"$work/$h.log" 2>&1 &
    host_pid[$h]=$!
    pids+=("$!")
    disown
    for _ in $(seq 200); do
        curl -sf "http://$a:9180/healthz" >/dev/null && return 0
        sleep 0.05
    done
    fail "host $h did not start"
}
admin() { PERCORE_ADMIN="http://$(addr_of "$1"):9180" PERCORE_ADMIN_TOKEN=$token "$percore" "${@:2}"; }

say "three hosts"
for h in "${hosts[@]}"; do start_host "$h"; done

say "deploy oci://$registry/apps/site:v1 to every host (the CLI pointed at each)"
for h in "${hosts[@]}"; do admin "$h" deploy "oci://$registry/apps/site:v1" --route /site | sed -n 1p; done

cat >"$work/haproxy.cfg" <<EOF
global
    maxconn 4096
defaults
    mode http
    timeout connect 1s
    timeout client 10s
    timeout server 10s
    retries 2
    option redispatch
    retry-on conn-failure empty-response
frontend fleet
    bind $balancer
    default_backend hosts
backend hosts
    balance roundrobin
    option httpchk GET /healthz
    default-server check port 9180 inter 100ms fall 2 rise 2
    server h1 $net.11:8080
    server h2 $net.12:8080
    server h3 $net.13:8080
EOF
haproxy -f "$work/haproxy.cfg" -db >"$work/haproxy.log" 2>&1 &
pids+=("$!")
disown
for _ in $(seq 100); do curl -sf "http://$balancer/site" >/dev/null && break; sleep 0.1; done
# The whole output first, then grep: `cmd | grep -q` under pipefail fails when grep exits at its
# match while cmd is still writing (SIGPIPE or EPIPE for cmd).
grep -q Hello <<<"$(curl -sf "http://$balancer/site")" || fail "the balancer does not serve the app"

# wrk's totals: requests, non-2xx answers and socket errors.
connections=12
load() { # SECONDS LOG
    wrk -t 2 -c "$connections" -d "$1s" --timeout 5s "http://$balancer/site" >"$2" 2>&1
}
count() { # LOG -> "requests failed"
    local requests non2xx errors
    requests=$(awk '/requests in/ {print $1}' "$1")
    non2xx=$(awk '/Non-2xx/ {print $NF}' "$1")
    errors=$(awk '/Socket errors/ {gsub(",", ""); print $4 + $6 + $8 + $10}' "$1")
    echo "${requests:-0} $(( ${non2xx:-0} + ${errors:-0} ))"
}

say "load for 6 s; host h2 killed (SIGKILL) after 2 s"
load 6 "$work/kill.wrk" &
wrk_pid=$!
sleep 2
kill -9 "${host_pid[h2]}"
wait "$wrk_pid"
read -r requests failed < <(count "$work/kill.wrk")
echo "requests $requests, failed $failed (at most $connections were in flight)"
[ "$requests" -gt 0 ] || fail "no load went through"
[ "$failed" -le "$connections" ] || fail "$failed requests failed around the kill; at most $connections were in flight"

say "registry stopped; h2 restarted from its state"
kill "$registry_pid"
start_host h2
admin h2 ls
grep -q '"pinned"' <<<"$(admin h2 ls --json)" || fail "h2 lost the deployment's pinned digest"
grep -q Hello <<<"$(curl -sf "http://$(addr_of h2):8080/site")" ||
    fail "the restarted host does not serve its deployment"

say "registry back; load for 10 s while the app is updated to v2 host by host"
docker-registry serve "$work/registry.yml" >>"$work/registry.log" 2>&1 &
pids+=("$!")
disown
for _ in $(seq 100); do curl -sf "http://$registry/v2/" >/dev/null && break; sleep 0.1; done
for _ in $(seq 50); do curl -sf "http://$balancer/site" >/dev/null && break; sleep 0.1; done
load 10 "$work/rolling.wrk" &
wrk_pid=$!
sleep 1
for h in "${hosts[@]}"; do
    # `sed -n 1p`, not `head -1`: the CLI prints a second line (the pinned digest), and a pipe
    # closed before it would end the CLI with SIGPIPE (status 141 under pipefail).
    admin "$h" deploy "oci://$registry/apps/site:v2" --route /site --set greeting=v2 | sed -n 1p
    sleep 1
done
wait "$wrk_pid"
read -r requests failed < <(count "$work/rolling.wrk")
echo "requests $requests, failed $failed"
[ "$requests" -gt 0 ] || fail "no load went through"
[ "$failed" = 0 ] || { cat "$work/rolling.wrk"; fail "$failed requests failed during the rolling update"; }
for h in "${hosts[@]}"; do
    body=$(curl -sf "http://$(addr_of "$h"):8080/site")
    echo "$h: $body"
    grep -q v2 <<<"$body" || fail "host $h does not serve v2"
done
say "fleet test passed"
