//! A small HTTP/1.1 client over a raw socket, so that cases control every byte they send.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{Context, bail};

/// A response as received.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }
}

/// One connection.
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    pub fn connect(addr: SocketAddr) -> anyhow::Result<Self> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .with_context(|| format!("cannot connect to {addr}"))?;
        stream.set_read_timeout(Some(Duration::from_secs(15)))?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            buf: Vec::new(),
        })
    }

    pub fn send(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.stream.write_all(bytes).context("sending the request")
    }

    pub fn send_slowly(&mut self, bytes: &[u8], pause: Duration) -> anyhow::Result<()> {
        for b in bytes {
            if self.stream.write_all(std::slice::from_ref(b)).is_err() {
                // The host may answer (408) and close before the client is done.
                break;
            }
            std::thread::sleep(pause);
        }
        Ok(())
    }

    pub fn half_close(&mut self) -> anyhow::Result<()> {
        self.stream.shutdown(std::net::Shutdown::Write)?;
        Ok(())
    }

    fn fill(&mut self) -> anyhow::Result<usize> {
        let mut chunk = [0u8; 16 << 10];
        let n = self
            .stream
            .read(&mut chunk)
            .context("reading the response")?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// Whether the host closes the connection (reads end of stream) within the read timeout.
    pub fn closed_by_peer(&mut self) -> bool {
        matches!(self.fill(), Ok(0) | Err(_))
    }

    /// Read one final response (skipping `100 Continue`). `no_body`: the request was `HEAD`.
    pub fn read_response(&mut self, no_body: bool) -> anyhow::Result<Response> {
        loop {
            let (status, headers, head_len) = loop {
                let mut storage = [httparse::EMPTY_HEADER; 256];
                let mut response = httparse::Response::new(&mut storage);
                match response
                    .parse(&self.buf)
                    .context("malformed response head")?
                {
                    httparse::Status::Complete(len) => {
                        let headers = response
                            .headers
                            .iter()
                            .map(|h| (h.name.to_owned(), h.value.to_vec()))
                            .collect::<Vec<_>>();
                        break (response.code.unwrap_or(0), headers, len);
                    }
                    httparse::Status::Partial => {
                        if self.fill()? == 0 {
                            bail!("the connection closed before a complete response head");
                        }
                    }
                }
            };
            self.buf.drain(..head_len);
            if status == 100 {
                continue;
            }
            let header = |name: &str| {
                headers
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(name))
                    .map(|(_, v)| String::from_utf8_lossy(v).trim().to_ascii_lowercase())
            };
            let body = if no_body || status == 204 || status == 304 {
                Vec::new()
            } else if header("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
                self.read_chunked()?
            } else if let Some(len) = header("content-length") {
                let len: usize = len.parse().context("bad content-length in response")?;
                while self.buf.len() < len {
                    if self.fill()? == 0 {
                        bail!(
                            "the connection closed after {} of {len} body bytes",
                            self.buf.len()
                        );
                    }
                }
                self.buf.drain(..len).collect()
            } else {
                while self.fill()? > 0 {}
                std::mem::take(&mut self.buf)
            };
            return Ok(Response {
                status,
                headers,
                body,
            });
        }
    }

    fn read_chunked(&mut self) -> anyhow::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                    break i;
                }
                if self.fill()? == 0 {
                    bail!("the connection closed inside a chunked body");
                }
            };
            let line = String::from_utf8_lossy(&self.buf[..line_end]).into_owned();
            let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
                .context("bad chunk size")?;
            self.buf.drain(..line_end + 2);
            if size == 0 {
                // Trailer: lines until an empty one.
                loop {
                    let i = loop {
                        if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                            break i;
                        }
                        if self.fill()? == 0 {
                            bail!("the connection closed inside a trailer");
                        }
                    };
                    self.buf.drain(..i + 2);
                    if i == 0 {
                        return Ok(body);
                    }
                }
            }
            while self.buf.len() < size + 2 {
                if self.fill()? == 0 {
                    bail!("the connection closed inside a chunk");
                }
            }
            body.extend_from_slice(&self.buf[..size]);
            self.buf.drain(..size + 2);
        }
    }
}
