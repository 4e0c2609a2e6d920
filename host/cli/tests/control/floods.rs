//! A guest and a client that flood everything they can: log records, stdout and stderr, response
//! headers, pipelined requests whose responses are never read. Each flood gets its typed outcome,
//! and the host's memory (RSS) and its log stay bounded however often the floods repeat.

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use crate::common::guest;
use crate::{Host, curl, metric};

/// The host's resident memory, MiB.
fn rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status");
    kib >> 10
}

fn get(host: &Host, path: &str) -> (u16, String) {
    let url = format!("http://{}{path}", host.addr);
    let out = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-D", "-", &url])
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&out.stdout).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head)
}

/// Every flood once; returns nothing, asserts each outcome.
fn floods(host: &Host) {
    assert_eq!(get(host, "/log-flood?n=300").0, 200);
    assert_eq!(get(host, "/print-flood?mb=8").0, 200);
    for path in ["/header-flood?n=1000", "/header-flood?n=100&kib=8"] {
        let (status, head) = get(host, path);
        assert_eq!(status, 502, "{path}: {head}");
        assert!(
            head.contains("x-percore-fault: bad_response"),
            "{path}: {head}"
        );
    }
}

/// A client that pipelines `count` requests for 4 MiB each and reads nothing.
fn pipeline_without_reading(host: &Host, count: usize) -> TcpStream {
    let mut stream = TcpStream::connect(host.addr).unwrap();
    let one = "GET /big?mb=4 HTTP/1.1\r\nhost: flood\r\n\r\n";
    stream.write_all(one.repeat(count).as_bytes()).unwrap();
    stream
}

#[test]
fn floods_get_typed_outcomes_and_the_host_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(&dir.path().join("state"), &["--idle-timeout-ms", "1000"]);
    host.cli_ok(&[
        "deploy",
        &guest("hostile"),
        "--name",
        "hostile",
        "--route",
        "/",
        "--cpu-ms",
        "5000",
        "--timeout-ms",
        "10000",
    ]);
    assert_eq!(host.request("GET", "/ok", None), (200, "ok".into()));
    // Warm up: every flood once, so that pools and allocator arenas are at their working size.
    floods(&host);
    drop(pipeline_without_reading(&host, 4));
    std::thread::sleep(Duration::from_millis(500));
    let warm = rss_mib(host.pid());
    let log_warm = host.log().len();

    let mut stalled = Vec::new();
    for _ in 0..5 {
        floods(&host);
        // 64 responses of 4 MiB asked for and never read: 256 MiB if the host buffered them.
        stalled.push(pipeline_without_reading(&host, 64));
    }
    std::thread::sleep(Duration::from_millis(500));
    let peak = rss_mib(host.pid());
    let logged = host.log().len() - log_warm;
    println!(
        "host RSS: {warm} MiB warm, {peak} MiB with 5 rounds of floods and 5 stalled clients; log grew {logged} bytes"
    );

    // The stalled clients are disconnected after the idle timeout, and counted.
    let mut text = String::new();
    for _ in 0..50 {
        text = curl(&format!("{}/metrics", host.admin), "GET", None, &[]).1;
        if metric(&text, "percore_core_clients_stalled_total", &[]) >= 5.0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        metric(&text, "percore_core_clients_stalled_total", &[]) >= 5.0,
        "{text}"
    );
    assert!(metric(&text, "percore_core_guest_logs_dropped_total", &[]) > 0.0);
    assert_eq!(host.request("GET", "/ok", None), (200, "ok".into()));

    // Bounds with room for the allocator, far below what unbounded buffers would take (each
    // round would add 256 MiB of responses and 26 MiB of log text).
    assert!(peak < warm + 96, "RSS grew from {warm} to {peak} MiB");
    assert!(logged < 8 << 20, "the host's log grew by {logged} bytes");
    drop(stalled);
    host.stop();
}
