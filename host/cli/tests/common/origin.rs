//! An HTTP origin on loopback for outbound tests: keep-alive, a thread per connection, and
//! behaviours by path, good and bad.
// Each test binary uses what it needs of this.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// An origin server on loopback: a thread per connection, keep-alive, behaviours by path.
pub struct Origin {
    pub addr: SocketAddr,
    /// Connections accepted.
    pub connections: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Origin {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, stopping) = (connections.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                count.fetch_add(1, Ordering::Relaxed);
                let stopping = stopping.clone();
                std::thread::spawn(move || serve(stream, &stopping));
            }
        });
        Self {
            addr,
            connections,
            stop,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(self.addr);
    }
}

/// Answer requests on one connection until the client closes it or a behaviour ends it.
fn serve(stream: TcpStream, stop: &AtomicBool) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut out = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split(' ').nth(1).unwrap_or("/").to_owned();
        let mut length = 0;
        loop {
            let mut field = String::new();
            if reader.read_line(&mut field).unwrap_or(0) == 0 {
                return;
            }
            if field == "\r\n" {
                break;
            }
            if let Some((name, value)) = field.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let answer = |out: &mut TcpStream, text: &str| out.write_all(text.as_bytes()).is_ok();
        let hello = "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 12\r\n\r\nfrom origin\n";
        let (route, query) = path.split_once('?').unwrap_or((&path, ""));
        let ok = match route {
            "/hello" => answer(&mut out, hello),
            "/echo" => {
                let head = format!("HTTP/1.1 201 Created\r\ncontent-length: {length}\r\n\r\n");
                answer(&mut out, &head) && out.write_all(&body).is_ok()
            }
            "/chunked" => answer(
                &mut out,
                "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
            ),
            "/slow" => {
                let ms = query.trim_start_matches("ms=").parse().unwrap_or(1000);
                std::thread::sleep(Duration::from_millis(ms));
                answer(&mut out, hello)
            }
            "/never" => {
                for _ in 0..300 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                false
            }
            "/cut" => {
                answer(
                    &mut out,
                    "HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789",
                );
                false
            }
            "/malformed" => {
                answer(&mut out, "this is not HTTP\r\n\r\n");
                false
            }
            "/endless" => {
                let chunk = vec![b'x'; 64 << 10];
                let mut ok = answer(&mut out, "HTTP/1.1 200 OK\r\n\r\n");
                // At most 64 MiB: the client gives up long before.
                for _ in 0..1024 {
                    ok = ok && out.write_all(&chunk).is_ok();
                }
                false
            }
            _ => answer(
                &mut out,
                "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
            ),
        };
        if !ok {
            return;
        }
    }
}
