//! Guest calls share their core in time slices: a long call yields at the end of each slice,
//! so the core serves its other connections meanwhile; calls in flight are bounded, then
//! queued, then refused with 503.

use std::net::SocketAddr;
use std::time::Duration;

use super::{Server, common::guest, get};

/// `percore serve` on one core with the configuration file `body` (after `cores = 1`).
fn serve_one_core(name: &str, body: &str) -> (Server, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("percore-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("percore.toml");
    std::fs::write(&config, format!("cores = 1\n{body}")).unwrap();
    let server = Server::start(&["--config", config.to_str().unwrap()]);
    (server, dir)
}

fn deployment(name: &str, guest_name: &str, path: &str) -> String {
    format!(
        "[[deployment]]\nname = \"{name}\"\ncomponent = \"{}\"\ncpu_ms = 10000\ntimeout_ms = 10000\nroutes = [{{ path = \"{path}\" }}]\n",
        guest(guest_name)
    )
}

/// A request that keeps its guest busy for `ms`, on its own thread.
fn spin(addr: SocketAddr, path: &str) -> std::thread::JoinHandle<(u16, Vec<u8>)> {
    let path = path.to_owned();
    std::thread::spawn(move || get(addr, &path))
}

#[test]
fn a_long_call_yields_and_the_core_serves_other_requests_meanwhile() {
    let body = deployment("busy", "hostile", "/busy") + &deployment("hello", "hello", "/");
    let (server, dir) = serve_one_core("slices", &body);
    let busy = spin(server.addr, "/busy/spin?ms=3000");
    // Let the busy request reach its guest first (the assertions below hold either way when
    // the core runs calls in slices; they fail when a call holds its core to the end).
    std::thread::sleep(Duration::from_millis(200));
    for _ in 0..10 {
        assert_eq!(
            get(server.addr, "/"),
            (200, b"Hello from percore!\n".to_vec())
        );
    }
    assert!(
        !busy.is_finished(),
        "ten requests to another deployment were answered only after the busy call ended"
    );
    assert_eq!(busy.join().unwrap(), (200, b"spun 3000 ms".to_vec()));
    assert!(server.terminate().success());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn calls_in_flight_are_bounded_then_queued_then_refused_with_retry_after() {
    let body = "[calls]\nmax_in_flight_per_deployment = 1\nmax_queued_per_core = 1\n".to_owned()
        + &deployment("busy", "hostile", "/busy")
        + &deployment("hello", "hello", "/");
    let (server, dir) = serve_one_core("bounded", &body);
    let first = spin(server.addr, "/busy/spin?ms=2000");
    std::thread::sleep(Duration::from_millis(200));
    // The deployment has its one call in flight: the next request waits in the queue...
    let queued = spin(server.addr, "/busy/spin?ms=10");
    std::thread::sleep(Duration::from_millis(200));
    // ...and with the queue full, the one after is refused.
    let mut s = std::net::TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    use std::io::{Read, Write};
    write!(
        s,
        "GET /busy/spin?ms=10 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    assert!(raw.starts_with("HTTP/1.1 503"), "{raw}");
    assert!(raw.to_ascii_lowercase().contains("retry-after: 1"), "{raw}");
    // The limit is the deployment's: another deployment is served meanwhile.
    assert_eq!(get(server.addr, "/").0, 200);
    assert!(!first.is_finished() && !queued.is_finished());
    assert_eq!(first.join().unwrap(), (200, b"spun 2000 ms".to_vec()));
    assert_eq!(queued.join().unwrap(), (200, b"spun 10 ms".to_vec()));
    assert!(server.terminate().success());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn wasi_http_and_command_calls_yield_too() {
    let probe = |name: &str, guest_name: &str, path: &str| {
        deployment(name, guest_name, path).replace("cpu_ms = 10000", "cpu_ms = 2000")
            + "[deployment.config]\nPROBE_ROLE = \"hostile\"\n"
    };
    let body = probe("http-busy", "probe-http", "/http")
        + &probe("cgi-busy", "probe-cgi", "/cgi")
        + &probe("p3-busy", "probe-http3", "/p3")
        + &deployment("hello", "hello", "/");
    let (server, dir) = serve_one_core("slices-kinds", &body);
    // Each loops until its CPU budget (2 s) ends it.
    let http = spin(server.addr, "/http/loop");
    let cgi = spin(server.addr, "/cgi/loop");
    let p3 = spin(server.addr, "/p3/loop");
    std::thread::sleep(Duration::from_millis(200));
    for _ in 0..10 {
        assert_eq!(
            get(server.addr, "/"),
            (200, b"Hello from percore!\n".to_vec())
        );
    }
    assert!(
        !http.is_finished() && !cgi.is_finished() && !p3.is_finished(),
        "requests to another deployment waited for the looping calls"
    );
    assert_eq!(http.join().unwrap().0, 504);
    assert_eq!(cgi.join().unwrap().0, 504);
    assert_eq!(p3.join().unwrap().0, 504);
    assert!(server.terminate().success());
    let _ = std::fs::remove_dir_all(&dir);
}

/// The host's resident memory, MiB.
fn rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmRSS in /proc/PID/status")
        >> 10
}

#[test]
fn a_crowd_of_looping_calls_gets_typed_answers_and_the_host_stays_bounded() {
    let body = "[calls]\nmax_in_flight_per_core = 32\nmax_in_flight_per_deployment = 24\nmax_queued_per_core = 48\n"
        .to_owned()
        + &deployment("busy", "hostile", "/busy").replace("cpu_ms = 10000", "cpu_ms = 20")
        + &deployment("hello", "hello", "/");
    let (server, dir) = serve_one_core("crowd", &body);
    let mut peak = 0;
    for round in 0..3 {
        let crowd: Vec<_> = (0..120).map(|_| spin(server.addr, "/busy/loop")).collect();
        // Another deployment is served while the crowd runs (the core has room beyond the
        // busy deployment's 24).
        assert_eq!(get(server.addr, "/").0, 200, "round {round}");
        let mut statuses = std::collections::BTreeMap::new();
        for call in crowd {
            *statuses.entry(call.join().unwrap().0).or_insert(0) += 1;
        }
        assert!(
            statuses.keys().all(|s| *s == 504 || *s == 503),
            "each loop ends at its CPU budget (504) or finds no room (503): {statuses:?}"
        );
        assert!(
            statuses.get(&504).copied().unwrap_or(0) >= 24,
            "{statuses:?}"
        );
        let rss = rss_mib(server.pid());
        if round == 0 {
            peak = rss;
        }
        // Bounded: the third crowd takes no more than the first (24 instances in flight at
        // most, whatever the crowd's size).
        assert!(
            rss <= peak + peak / 4 + 8,
            "RSS {rss} MiB after round {round}, {peak} MiB after the first"
        );
    }
    assert_eq!(get(server.addr, "/").0, 200);
    assert!(server.terminate().success());
    let _ = std::fs::remove_dir_all(&dir);
}
