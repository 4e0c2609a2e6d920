//! Outbound HTTP: guests fetch from a real origin on loopback, started here, that behaves well
//! or badly on request. Every failure is a typed error to the guest (the `fetch` example
//! answers it with a status and `x-fetch-error`), and the host keeps serving.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::common::{guest, origin::Origin};
use super::{Server, get};

/// `percore serve` on one core with the configuration file `body` (after `cores = 1`).
fn serve_one_core(name: &str, body: &str) -> (Server, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("percore-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("percore.toml");
    std::fs::write(&config, format!("cores = 1\n{body}")).unwrap();
    let server = Server::start(&["--config", config.to_str().unwrap()]);
    (server, dir)
}

fn deployment(name: &str, guest_name: &str, path: &str, extra: &str) -> String {
    format!(
        "[[deployment]]\nname = \"{name}\"\ncomponent = \"{}\"\nroutes = [{{ path = \"{path}\" }}]\n{extra}\n",
        guest(guest_name)
    )
}

/// One request on a fresh connection: status, the named response field, body.
fn request(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("a head");
    let status = head[9..12].parse().unwrap();
    let error = head
        .lines()
        .find_map(|l| l.strip_prefix("x-fetch-error: "))
        .unwrap_or("")
        .to_owned();
    (status, error, body.to_owned())
}

#[test]
fn a_guest_proxies_an_allowed_origin_over_kept_alive_connections() {
    let origin = Origin::start();
    let other = Origin::start();
    let allowed = format!("allowed_outbound_hosts = [\"http://{}\"]", origin.addr);
    let (server, dir) = serve_one_core("fetch", &deployment("fetch", "fetch", "/", &allowed));
    for _ in 0..10 {
        let url = format!("/?url={}", origin.url("/hello"));
        assert_eq!(
            request(server.addr, "GET", &url, ""),
            (200, String::new(), "from origin\n".into())
        );
    }
    // One connection carried them all (a second only if the origin was slow to read).
    assert!(
        origin.connections.load(Ordering::Relaxed) <= 2,
        "{} connections for 10 requests",
        origin.connections.load(Ordering::Relaxed)
    );
    let url = format!("/?url={}", origin.url("/chunked"));
    assert_eq!(get(server.addr, &url), (200, b"hello world".to_vec()));
    // The method and body go through; the origin's status comes back.
    let url = format!("/?url={}", origin.url("/echo"));
    assert_eq!(
        request(server.addr, "POST", &url, "posted body"),
        (201, String::new(), "posted body".into())
    );
    // Off the allow-list: refused without a connection.
    for url in [
        other.url("/hello"),
        format!("http://localhost:{}/hello", origin.addr.port()),
        format!("https://{}/hello", origin.addr),
    ] {
        let (status, error, _) = request(server.addr, "GET", &format!("/?url={url}"), "");
        assert_eq!((status, error.as_str()), (403, "denied"), "{url}");
    }
    assert_eq!(other.connections.load(Ordering::Relaxed), 0);
    let (status, error, _) = request(server.addr, "GET", "/?url=not-a-url", "");
    assert_eq!((status, error.as_str()), (400, "invalid_request"));
    assert!(server.terminate().success());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_origins_give_typed_errors_and_the_host_keeps_serving() {
    let origin = Origin::start();
    // A port nothing listens on.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let extra = "allowed_outbound_hosts = [\"http://127.0.0.1:*\", \"http://*.invalid\"]\n\
                 outbound_timeout_ms = 1000\nmax_outbound_response_mb = 1\ntimeout_ms = 5000";
    let body =
        deployment("fetch", "fetch", "/", extra) + &deployment("hello", "hello", "/hello", "");
    let (server, dir) = serve_one_core("fetch-bad", &body);
    let cases = [
        (origin.url("/never"), 504, "timeout"),
        (origin.url("/cut"), 502, "protocol"),
        (origin.url("/malformed"), 502, "protocol"),
        (origin.url("/endless"), 502, "too_large"),
        (format!("http://{closed}/"), 502, "connect"),
        ("http://no-such-host.invalid/".to_owned(), 502, "dns"),
    ];
    // Eight rounds: the host's memory after the last is within 2 MiB of what it was after
    // the fourth (the allocator warms up over the first ones; an endless response alone reads
    // 1 MiB a time, so keeping what it read would show).
    let mut rss = Vec::new();
    for _ in 0..8 {
        for (url, status, kind) in &cases {
            let (got, error, body) = request(server.addr, "GET", &format!("/?url={url}"), "");
            assert_eq!((got, error.as_str()), (*status, *kind), "{url}: {body}");
            assert_eq!(
                get(server.addr, "/hello"),
                (200, b"Hello from percore!\n".to_vec())
            );
        }
        rss.push(rss_kib(server.pid()));
    }
    assert!(
        rss[7] <= rss[3] + 2048,
        "RSS grew from {} KiB to {} KiB over four rounds of bad origins: {rss:?}",
        rss[3],
        rss[7]
    );
    // A slow origin within the timeout is fine.
    let url = format!("/?url={}", origin.url("/slow?ms=300"));
    assert_eq!(get(server.addr, &url), (200, b"from origin\n".to_vec()));
    assert!(server.terminate().success());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn guests_that_fetch_too_much_or_never_end_are_stopped() {
    let origin = Origin::start();
    let extra = format!(
        "allowed_outbound_hosts = [\"http://{}\"]\nmax_outbound_per_request = 10\ntimeout_ms = 3000\ncpu_ms = 200",
        origin.addr
    );
    let (server, dir) = serve_one_core("fetch-many", &deployment("h", "hostile", "/h", &extra));
    let url = format!("/h/fetch-many?n=50&url={}", origin.url("/hello"));
    assert_eq!(get(server.addr, &url), (200, b"ok=10 too_many=40".to_vec()));
    // Fetches, then loops: its CPU budget ends it, as any guest.
    let url = format!("/h/fetch-spin?url={}", origin.url("/hello"));
    assert_eq!(get(server.addr, &url).0, 504);
    assert!(server.terminate().success());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A process's resident memory, KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Thread CPU time of a process, from /proc (user + system, in clock ticks of 10 ms).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[test]
fn calls_waiting_for_an_origin_sleep_and_leave_their_core_to_others() {
    let origin = Origin::start();
    let body = "[calls]\nmax_in_flight_per_deployment = 200\n".to_owned()
        + &deployment(
            "fetch",
            "fetch",
            "/",
            &format!(
                "allowed_outbound_hosts = [\"http://{}\"]\ntimeout_ms = 10000",
                origin.addr
            ),
        )
        + &deployment("hello", "hello", "/hello", "");
    let (server, dir) = serve_one_core("fetch-wait", &body);
    let waiting: Vec<_> = (0..100)
        .map(|_| {
            let (addr, url) = (
                server.addr,
                format!("/?url={}", origin.url("/slow?ms=3000")),
            );
            std::thread::spawn(move || get(addr, &url))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let before = cpu_ticks(server.pid());
    std::thread::sleep(Duration::from_millis(1000));
    let spent = cpu_ticks(server.pid()) - before;
    // A hundred calls wait; a core that polled them would burn the whole second (100 ticks).
    assert!(
        spent < 30,
        "the server used {spent} ticks of CPU in 1 s while its calls waited"
    );
    for _ in 0..10 {
        assert_eq!(
            get(server.addr, "/hello"),
            (200, b"Hello from percore!\n".to_vec())
        );
    }
    assert!(
        waiting.iter().all(|w| !w.is_finished()),
        "proxied requests ended before the origin answered"
    );
    for w in waiting {
        assert_eq!(w.join().unwrap(), (200, b"from origin\n".to_vec()));
    }
    assert!(server.terminate().success());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn wasi_http_guests_send_through_the_same_client_and_policy() {
    let origin = Origin::start();
    let extra = format!(
        "allowed_outbound_hosts = [\"http://{}\"]\nconfig = {{ PROBE_ROLE = \"wasi-http\" }}",
        origin.addr
    );
    let (server, dir) = serve_one_core("fetch-wasi", &deployment("p", "probe-http", "/p", &extra));
    let url = format!("/p/fetch?url={}", origin.url("/hello"));
    assert_eq!(get(server.addr, &url), (200, b"from origin\n".to_vec()));
    let url = format!("/p/fetch?url={}", origin.url("/chunked"));
    assert_eq!(get(server.addr, &url), (200, b"hello world".to_vec()));
    let (status, body) = get(server.addr, "/p/fetch?url=http://127.0.0.1:1/");
    assert_eq!(status, 502);
    assert!(
        String::from_utf8_lossy(&body).contains("HttpRequestDenied"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    assert!(server.terminate().success());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Run openssl with `args` in `dir`.
fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA (`NAME-ca.pem`) and a certificate for 127.0.0.1 signed by it (`NAME.pem`,
/// `NAME.key`), in `dir`.
fn certificate(dir: &std::path::Path, name: &str) {
    let ca = format!("{name}-ca");
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={name} test CA"),
            "-keyout",
            &format!("{ca}.key"),
            "-out",
            &format!("{ca}.pem"),
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
        ],
    );
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            &format!("{name}.pem"),
        ],
    );
}

/// `openssl s_server` serving the files of `dir` over TLS with certificate `name`.
struct TlsOrigin {
    child: std::process::Child,
    addr: SocketAddr,
}

impl TlsOrigin {
    fn start(dir: &std::path::Path, name: &str) -> Self {
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let child = std::process::Command::new("openssl")
            .args([
                "s_server",
                "-quiet",
                "-WWW",
                "-accept",
                &addr.to_string(),
                "-cert",
                &format!("{name}.pem"),
                "-key",
                &format!("{name}.key"),
            ])
            .current_dir(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("openssl s_server");
        for _ in 0..100 {
            if TcpStream::connect(addr).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, addr }
    }
}

impl Drop for TlsOrigin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn https_origins_are_reached_through_tls_and_untrusted_ones_refused() {
    let dir = tempfile::tempdir().unwrap();
    certificate(dir.path(), "trusted");
    certificate(dir.path(), "stranger");
    std::fs::write(dir.path().join("hello.txt"), "hello over tls\n").unwrap();
    let trusted = TlsOrigin::start(dir.path(), "trusted");
    let stranger = TlsOrigin::start(dir.path(), "stranger");
    let ca = dir.path().join("trusted-ca.pem");
    let body = format!("[outbound]\nca_file = \"{}\"\n", ca.display())
        + &deployment(
            "fetch",
            "fetch",
            "/",
            "allowed_outbound_hosts = [\"https://127.0.0.1:*\"]",
        );
    let (server, conf) = serve_one_core("fetch-tls", &body);
    let url = format!("/?url=https://{}/hello.txt", trusted.addr);
    assert_eq!(get(server.addr, &url), (200, b"hello over tls\n".to_vec()));
    // Twice: the origin closes after each answer, so each is a new handshake.
    assert_eq!(get(server.addr, &url), (200, b"hello over tls\n".to_vec()));
    let url = format!("/?url=https://{}/hello.txt", stranger.addr);
    let (status, error, body) = request(server.addr, "GET", &url, "");
    assert_eq!((status, error.as_str()), (502, "connect"), "{body}");
    assert!(body.contains("certificate"), "{body}");
    assert!(server.terminate().success());
    let _ = std::fs::remove_dir_all(&conf);
}

/// A TLS origin written with rustls: reads a request (its body by `content-length`), answers
/// with a chunked body made of one 16 KiB chunk, then many small ones (TLS records of mixed
/// sizes), then the number of request body bytes it read.
fn rustls_origin(dir: &std::path::Path, name: &str) -> SocketAddr {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(dir.join(format!("{name}.pem")))
            .unwrap()
            .map(Result::unwrap)
            .collect();
    let key = PrivateKeyDer::from_pem_file(dir.join(format!("{name}.key"))).unwrap();
    let config = Arc::new(
        rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for tcp in listener.incoming().take(16) {
            let Ok(tcp) = tcp else { continue };
            let session = rustls::ServerConnection::new(config.clone()).unwrap();
            let mut tls = rustls::StreamOwned::new(session, tcp);
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && tls.read_exact(&mut byte).is_ok() {
                head.push(byte[0]);
            }
            let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
            let length: usize = text
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            let mut body = vec![0u8; length];
            if tls.read_exact(&mut body).is_err() {
                continue;
            }
            let mut out =
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
                    .to_vec();
            let chunk = |data: &[u8], out: &mut Vec<u8>| {
                out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
                out.extend_from_slice(data);
                out.extend_from_slice(b"\r\n");
            };
            let _ = tls.write_all(&out);
            out.clear();
            chunk(&[b'a'; 16 << 10], &mut out);
            let _ = tls.write_all(&out);
            for _ in 0..200 {
                out.clear();
                chunk(b"bb", &mut out);
                let _ = tls.write_all(&out);
            }
            out.clear();
            chunk(format!("|{length}").as_bytes(), &mut out);
            out.extend_from_slice(b"0\r\n\r\n");
            let _ = tls.write_all(&out);
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
    });
    addr
}

#[test]
fn large_requests_and_responses_cross_tls() {
    let dir = tempfile::tempdir().unwrap();
    certificate(dir.path(), "origin");
    let addr = rustls_origin(dir.path(), "origin");
    let ca = dir.path().join("origin-ca.pem");
    let body = format!("[outbound]\nca_file = \"{}\"\n", ca.display())
        + &deployment(
            "fetch",
            "fetch",
            "/",
            "allowed_outbound_hosts = [\"https://127.0.0.1:*\"]",
        );
    let (server, conf) = serve_one_core("fetch-tls-big", &body);
    // A 200 KiB request body: more than rustls buffers by default before the handshake ends.
    let posted = "p".repeat(200 << 10);
    let url = format!("/?url=https://{addr}/");
    let (status, error, answer) = request(server.addr, "POST", &url, &posted);
    assert_eq!((status, error.as_str()), (200, ""), "{answer}");
    let expected = "a".repeat(16 << 10) + &"bb".repeat(200) + &format!("|{}", 200 << 10);
    assert_eq!(answer.len(), expected.len());
    assert!(answer == expected, "the body differs");
    assert!(server.terminate().success());
    let _ = std::fs::remove_dir_all(&conf);
}

#[test]
fn wasi_http_calls_waiting_for_an_origin_leave_their_core_idle_too() {
    let origin = Origin::start();
    let extra = format!(
        "allowed_outbound_hosts = [\"http://{}\"]\ntimeout_ms = 10000\nconfig = {{ PROBE_ROLE = \"wasi-http\" }}",
        origin.addr
    );
    let (server, dir) = serve_one_core(
        "fetch-wasi-wait",
        &deployment("p", "probe-http", "/p", &extra),
    );
    let waiting: Vec<_> = (0..20)
        .map(|_| {
            let (addr, url) = (
                server.addr,
                format!("/p/fetch?url={}", origin.url("/slow?ms=3000")),
            );
            std::thread::spawn(move || get(addr, &url))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let before = cpu_ticks(server.pid());
    std::thread::sleep(Duration::from_millis(1000));
    let spent = cpu_ticks(server.pid()) - before;
    // The core turns its runtime every millisecond while they wait, and no more.
    assert!(
        spent < 30,
        "the server used {spent} ticks of CPU in 1 s while its calls waited"
    );
    for w in waiting {
        assert_eq!(w.join().unwrap(), (200, b"from origin\n".to_vec()));
    }
    assert!(server.terminate().success());
    let _ = std::fs::remove_dir_all(&dir);
}
