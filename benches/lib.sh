# Shared by the benchmark scripts (sourced). Needs $oha and $client_cpu.

# One point of a fixed-rate sweep: oha at `rate` requests/s for `seconds`, 16 connections,
# latency correction on (coordinated omission accounted for).
# Prints "achieved p50 p99 p99.9 errors" (latencies in ms).
oha_point() { # url rate seconds
    taskset -c "$client_cpu" "$oha" -z "${3}s" -q "$2" -c 16 --latency-correction --no-tui \
        --output-format json "$1" 2>/dev/null |
        python3 -c '
import json, sys
d = json.load(sys.stdin)
s = d["summary"]; p = d["latencyPercentiles"]
# Requests still in flight when the run ends are "aborted due to deadline": not server errors.
errors = sum(v for k, v in d.get("errorDistribution", {}).items() if k != "aborted due to deadline") + sum(v for k, v in d.get("statusCodeDistribution", {}).items() if k != "200")
ms = lambda v: (v or 0) * 1e3
print("%d %.3f %.3f %.3f %d" % (s["requestsPerSec"] or 0, ms(p["p50"]), ms(p["p99"]), ms(p["p99.9"]), errors))
'
}

# A one-worker nginx configuration pinned to the first CPU, answering every request with
# `body` and `content_type`, written to `dir/nginx.conf`.
nginx_conf() { # dir port content_type body
    mkdir -p "$1/nginx"
    cat >"$1/nginx.conf" <<CONF
worker_processes 1;
worker_cpu_affinity 1;
daemon off;
pid $1/nginx/nginx.pid;
error_log $1/nginx/error.log;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $1/nginx;
    proxy_temp_path $1/nginx;
    fastcgi_temp_path $1/nginx;
    uwsgi_temp_path $1/nginx;
    scgi_temp_path $1/nginx;
    server {
        listen 127.0.0.1:$2;
        location / { default_type "$3"; return 200 '$4'; }
    }
}
CONF
}

# Closed-loop peak: wrk, one thread, 16 connections, for `seconds`. Prints requests/s.
wrk_peak() { # url seconds
    taskset -c "$client_cpu" wrk -t1 -c16 -d"${2}s" "$1" | awk '/Requests\/sec/ {printf "%d", $2}'
}

# Stop the server started last ($server_pid) and give the port a moment.
stop_server() {
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
    sleep 0.5
}
