//! End-to-end tests of `percore serve`: a real server on loopback, real sockets and curl.
//!
//! Guests come from `target/guests` (`cargo build-guests`). Every loop is bounded in count, and
//! nothing asserts on timing.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

#[path = "../common/mod.rs"]
mod common;
mod outbound;
mod slices;
use common::guest;

/// A running `percore serve`, killed when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn start(args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_percore"))
            .arg("serve")
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting percore serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .rsplit("http://")
            .next()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no readiness line, got {line:?}"));
        Self { child, addr }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn terminate(mut self) -> std::process::ExitStatus {
        Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap();
        for _ in 0..200 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("percore serve did not stop within 10 s of SIGTERM");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One request on a fresh connection; returns (status, body).
fn get(addr: SocketAddr, path: &str) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head")
        + 4;
    let status = std::str::from_utf8(&raw[9..12]).unwrap().parse().unwrap();
    (status, raw[end..].to_vec())
}

#[test]
fn curl_gets_hello() {
    let server = Server::start(&[&guest("hello")]);
    let out = Command::new("curl")
        .args(["-s", "-i", &format!("http://{}/", server.addr)])
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    assert!(text.ends_with("Hello from percore!\n"), "{text}");
    assert!(server.terminate().success());
}

#[test]
fn one_pinned_thread_ring_and_listening_socket_per_core() {
    let cores = std::thread::available_parallelism().unwrap().get().min(2);
    let server = Server::start(&["--cores", &cores.to_string(), &guest("hello")]);
    let pid = server.pid();
    let mut shards = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let task = task.unwrap().path();
        let comm = std::fs::read_to_string(task.join("comm")).unwrap();
        if let Some(core) = comm.trim().strip_prefix("percore-core-") {
            let status = std::fs::read_to_string(task.join("status")).unwrap();
            let allowed = status
                .lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                .unwrap()
                .trim()
                .to_owned();
            shards.push((core.to_owned(), allowed));
        }
    }
    shards.sort();
    assert_eq!(shards.len(), cores, "{shards:?}");
    for (core, allowed) in &shards {
        assert_eq!(
            core, allowed,
            "shard {core} must be pinned to CPU {core} alone"
        );
    }
    let rings = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|fd| std::fs::read_link(fd.unwrap().path()).ok())
        .filter(|target| target.to_string_lossy().contains("io_uring"))
        .count();
    assert_eq!(rings, cores, "one io_uring per core");
    let port = format!(":{:04X}", server.addr.port());
    let listening = std::fs::read_to_string(format!("/proc/{pid}/net/tcp"))
        .unwrap()
        .lines()
        .filter(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            cols.len() > 3 && cols[1].ends_with(&port) && cols[3] == "0A"
        })
        .count();
    assert_eq!(
        listening, cores,
        "one SO_REUSEPORT listening socket per core"
    );
    assert_eq!(get(server.addr, "/").0, 200);
}

#[test]
fn thousands_of_idle_connections_do_not_stop_service() {
    let server = Server::start(&[&guest("hello")]);
    let idle: Vec<TcpStream> = (0..2000)
        .map(|_| TcpStream::connect(server.addr).unwrap())
        .collect();
    for _ in 0..20 {
        assert_eq!(
            get(server.addr, "/"),
            (200, b"Hello from percore!\n".to_vec())
        );
    }
    drop(idle);
    assert_eq!(get(server.addr, "/").0, 200);
}

#[test]
fn a_burst_of_clients_larger_than_the_receive_buffers_is_answered_whole() {
    // A core has 1024 provided receive buffers: 3000 requests arriving at once run it out,
    // and the kernel ends those connections' receives until the core arms them again.
    let server = Server::start(&["--cores", "1", &guest("hello")]);
    let mut clients: Vec<TcpStream> = (0..3000)
        .map(|_| TcpStream::connect(server.addr).unwrap())
        .collect();
    for c in &mut clients {
        c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
    }
    for c in &mut clients {
        c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut raw = Vec::new();
        c.read_to_end(&mut raw).unwrap();
        assert!(
            raw.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&raw)
        );
    }
    assert!(server.terminate().success());
}

#[test]
fn clients_that_vanish_mid_request_or_mid_response_harm_nothing() {
    let server = Server::start(&[&guest("hostile")]);
    for _ in 0..50 {
        // Mid-request: half a head, then gone.
        let mut s = TcpStream::connect(server.addr).unwrap();
        s.write_all(b"POST /ok HTTP/1.1\r\nHost: x\r\nContent-Le")
            .unwrap();
        drop(s);
        // Mid-body.
        let mut s = TcpStream::connect(server.addr).unwrap();
        s.write_all(b"POST /ok HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
            .unwrap();
        drop(s);
    }
    for _ in 0..10 {
        // Mid-response: ask for 8 MiB, read a little, go.
        let mut s = TcpStream::connect(server.addr).unwrap();
        s.write_all(b"GET /big?mb=8 HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut some = [0u8; 1024];
        let _ = s.read(&mut some);
        drop(s);
    }
    assert_eq!(get(server.addr, "/ok"), (200, b"ok".to_vec()));
    assert!(server.terminate().success());
}

#[test]
fn a_hostile_deployment_does_not_stop_the_others() {
    let server = Server::start(&[
        "--cpu-ms",
        "20",
        &format!("bad={}", guest("hostile")),
        &format!("good={}", guest("echo")),
    ]);
    let addr = server.addr;
    let attacker = std::thread::spawn(move || {
        let mut statuses = Vec::new();
        for path in ["/bad/loop", "/bad/panic", "/bad/grow", "/bad/recurse"]
            .iter()
            .cycle()
            .take(40)
        {
            statuses.push(get(addr, path).0);
        }
        statuses
    });
    for i in 0..200 {
        let (status, _) = get(addr, &format!("/good/{i}"));
        assert_eq!(status, 200);
    }
    let statuses = attacker.join().unwrap();
    assert!(
        statuses.iter().all(|s| *s == 500 || *s == 504),
        "{statuses:?}"
    );
    assert!(server.terminate().success());
}

#[test]
fn sigterm_finishes_the_request_in_flight_then_exits_zero() {
    let server = Server::start(&[
        "--cpu-ms",
        "5000",
        "--timeout-ms",
        "5000",
        &guest("hostile"),
    ]);
    let addr = server.addr;
    let in_flight = std::thread::spawn(move || get(addr, "/spin?ms=400"));
    // Let the request reach the guest before asking the server to stop.
    std::thread::sleep(Duration::from_millis(150));
    let status = server.terminate();
    assert_eq!(in_flight.join().unwrap(), (200, b"spun 400 ms".to_vec()));
    assert!(status.success(), "{status:?}");
}

#[test]
fn sqpoll_rings_serve_too() {
    let server = Server::start(&["--sqpoll", "--cores", "1", &guest("hello")]);
    let pid = server.pid();
    let count_pollers = || {
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .filter(|t| {
                std::fs::read_to_string(t.as_ref().unwrap().path().join("comm"))
                    .is_ok_and(|c| c.starts_with("iou-sqp"))
            })
            .count()
    };
    // The kernel names its polling thread shortly after the ring exists: look for a while.
    let mut pollers = count_pollers();
    for _ in 0..100 {
        if pollers > 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
        pollers = count_pollers();
    }
    assert_eq!(
        pollers, 1,
        "one kernel submission-polling thread for the one ring"
    );
    for _ in 0..20 {
        assert_eq!(
            get(server.addr, "/"),
            (200, b"Hello from percore!\n".to_vec())
        );
    }
    assert!(server.terminate().success());
}

#[test]
fn a_full_core_answers_503_with_retry_after() {
    let dir = std::env::temp_dir().join(format!("percore-overload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("percore.toml");
    std::fs::write(
        &config,
        format!(
            "cores = 1\n[http]\nmax_connections_per_core = 3\n[[deployment]]\nname = \"hello\"\ncomponent = \"{}\"\n",
            guest("hello")
        ),
    )
    .unwrap();
    let server = Server::start(&["--config", config.to_str().unwrap()]);
    let held: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(server.addr).unwrap())
        .collect();
    // Let the server accept the three before the fourth arrives.
    for s in &held {
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let _ = (&*s).read(&mut [0u8; 1]);
    }
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut raw = String::new();
    let _ = s.read_to_string(&mut raw);
    assert!(raw.starts_with("HTTP/1.1 503"), "{raw}");
    assert!(raw.to_ascii_lowercase().contains("retry-after: 1"), "{raw}");
    drop(held);
    // Room again: served.
    let mut status = 0;
    for _ in 0..50 {
        status = get(server.addr, "/").0;
        if status == 200 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(status, 200);
    let _ = std::fs::remove_dir_all(&dir);
}
