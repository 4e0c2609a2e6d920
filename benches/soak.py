"""The soak's driver (benches/soak.sh starts it): runs a percore host for a bounded time under mixed
traffic, normal and hostile, with deploys, hot swaps and removals every few seconds and a SIGTERM
and restart halfway; samples the host's RSS, open fds and threads; and at the end compares the
invocation log's request count with the responses the load generator received.

    python3 benches/soak.py PERCORE GUESTS_DIR STATE_DIR MINUTES
"""

import collections
import http.client
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time

PERCORE, GUESTS, STATE, MINUTES = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
ADMIN = ("127.0.0.1", 19280)
DATA = ("127.0.0.1", 18280)
WORKERS = 4
CHURN_EVERY = 3.0
SAMPLE_EVERY = 10.0

# (weight, method, path, body): normal guests most of the time, hostile behaviours beside them.
MIX = [
    (55, "GET", "/hello", None),
    (12, "POST", "/echo", b"x" * 1024),
    (5, "GET", "/swap", None),
    (4, "GET", "/h/ok", None),
    (2, "GET", "/h/loop", None),
    (2, "GET", "/h/grow", None),
    (3, "GET", "/h/panic", None),
    (1, "GET", "/h/recurse", None),
    (3, "GET", "/h/log-flood?n=50", None),
    (2, "GET", "/h/print-flood?mb=1", None),
    (2, "GET", "/h/header-flood?n=300", None),
    (3, "GET", "/h/big?mb=1", None),
]
PICKS = [m for m in MIX for _ in range(m[0])]


class Host:
    """The percore process, started and restarted on one state directory."""

    def __init__(self):
        self.proc = None
        self.log = open(os.path.join(STATE, "..", "host.log"), "ab")

    def start(self):
        self.proc = subprocess.Popen(
            [PERCORE, "serve", "--state", STATE, "--admin", "%s:%d" % ADMIN,
             "--listen", "%s:%d" % DATA, "--idle-timeout-ms", "5000"],
            stdout=subprocess.PIPE, stderr=self.log)
        for line in self.proc.stdout:
            if b"listening" in line:
                return
        raise SystemExit("the host did not start; see host.log")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=60)
        if code != 0:
            raise SystemExit(f"the host exited with {code} after SIGTERM")

    def sample(self):
        pid = self.proc.pid
        try:
            status = open(f"/proc/{pid}/status").read()
            rss = int(next(l for l in status.splitlines() if l.startswith("VmRSS")).split()[1]) // 1024
            threads = int(next(l for l in status.splitlines() if l.startswith("Threads")).split()[1])
            fds = len(os.listdir(f"/proc/{pid}/fd"))
            return rss, fds, threads
        except (FileNotFoundError, StopIteration, ProcessLookupError):
            return None


def admin(method, path, body=None):
    conn = http.client.HTTPConnection(*ADMIN, timeout=120)
    conn.request(method, path, body=json.dumps(body) if body is not None else None,
                 headers={"content-type": "application/json"})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, data


def deploy(name, guest, route, **limits):
    status, data = admin("PUT", f"/v1/deployments/{name}", {
        "component": {"path": os.path.join(GUESTS, guest + ".wasm")},
        "routes": [{"path": route}], "limits": limits})
    if status not in (200, 201):
        raise SystemExit(f"deploying {name}: {status} {data[:200]!r}")


stats = collections.Counter()
lock = threading.Lock()
stop = threading.Event()
paused = threading.Event()  # set while the host restarts


def worker(seed):
    rng = random.Random(seed)
    conn = None
    while not stop.is_set():
        if paused.is_set():
            time.sleep(0.05)
            continue
        _, method, path, body = rng.choice(PICKS)
        try:
            if conn is None:
                conn = http.client.HTTPConnection(*DATA, timeout=30)
            conn.request(method, path, body=body)
            response = conn.getresponse()
            response.read()
            with lock:
                stats["sent"] += 1
                stats[response.status] += 1
            if response.getheader("connection", "").lower() == "close":
                conn.close()
                conn = None
        except (OSError, http.client.HTTPException):
            with lock:
                stats["connection errors"] += 1
            if conn is not None:
                conn.close()
            conn = None
            time.sleep(0.05)


def churn():
    n = 0
    while not stop.is_set():
        if not paused.is_set():
            try:
                deploy(f"churn-{n}", "hello", f"/churn-{n}")
                if n > 0:
                    admin("DELETE", f"/v1/deployments/churn-{n - 1}")
                deploy("swap", "echo" if n % 2 else "hello", "/swap")
                with lock:
                    stats["deploys, swaps and removals"] += 3 if n else 2
            except (OSError, http.client.HTTPException):
                with lock:
                    stats["admin errors"] += 1
            n += 1
        stop.wait(CHURN_EVERY)


def main():
    os.makedirs(STATE, exist_ok=True)
    host = Host()
    host.start()
    deploy("hello", "hello", "/hello")
    deploy("echo", "echo", "/echo")
    deploy("swap", "hello", "/swap")
    deploy("h", "hostile", "/h", cpu_ms=50, timeout_ms=200, memory_mb=32)
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(WORKERS)]
    threads.append(threading.Thread(target=churn))
    for t in threads:
        t.start()
    started = time.time()
    end = started + MINUTES * 60
    restarted = False
    restart_at = None  # samples taken before the restart
    samples = []
    print(f"{'minute':>7} {'requests':>10} {'RSS MiB':>8} {'fds':>5} {'threads':>8}", flush=True)
    while time.time() < end:
        time.sleep(min(SAMPLE_EVERY, max(0.0, end - time.time())))
        sample = host.sample()
        if sample:
            samples.append(sample)
            minute = (time.time() - started) / 60
            print(f"{minute:7.1f} {stats['sent']:10d} {sample[0]:8d} {sample[1]:5d} {sample[2]:8d}", flush=True)
        if not restarted and time.time() - started > MINUTES * 30:
            restarted = True
            restart_at = len(samples)
            paused.set()
            time.sleep(0.5)  # let requests in flight finish
            host.stop()
            host.start()
            paused.clear()
            print("        SIGTERM, clean stop, restart from the state directory", flush=True)
    stop.set()
    for t in threads:
        t.join()
    host.stop()

    db = sqlite3.connect(os.path.join(STATE, "percore.db"))
    logged = db.execute("SELECT COALESCE(SUM(requests), 0) FROM invocations").fetchone()[0]
    answered = stats["sent"]
    print()
    print(f"requests answered: {answered}; by status: "
          + ", ".join(f"{k}: {v}" for k, v in sorted((k, v) for k, v in stats.items() if isinstance(k, int))))
    for key in ("connection errors", "admin errors", "deploys, swaps and removals"):
        print(f"{key}: {stats[key]}")
    rss = [s[0] for s in samples]
    fds = [s[1] for s in samples]
    threads_n = [s[2] for s in samples]
    half = restart_at if restart_at is not None else len(samples)
    for name, series in (("RSS MiB", rss), ("open fds", fds), ("threads", threads_n)):
        if series:
            print(f"{name}: first {series[0]}, last {series[-1]}, max {max(series)}, "
                  f"max before the restart {max(series[:half] or series)}, max after {max(series[half:] or series)}")
    print(f"invocation log: {logged} requests; load generator: {answered} answered "
          f"({'equal' if logged == answered else 'DIFFERENT'})")
    return 0 if logged == answered else 1


if __name__ == "__main__":
    sys.exit(main())
