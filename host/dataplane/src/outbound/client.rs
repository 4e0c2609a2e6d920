//! One outbound HTTP/1.1 request and its whole response, over a connection of the core's
//! reactor: a kept-alive one to the same origin if there is one, else a new one; TLS for
//! `https` origins.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use percore_engine::{Origin, OutboundError, OutboundRequest, OutboundResponse, Scheme};
use percore_http::ChunkedDecoder;

use super::head::{Framing, parse_head};
use super::link::Link;
use super::reactor::{self, Done, Op};
use super::resolve;

/// Largest response head accepted.
const MAX_HEAD: usize = 64 << 10;
/// Bytes asked of the kernel per receive.
pub(super) const READ_SIZE: usize = 16 << 10;

/// Send `request` and read its response.
pub(crate) async fn fetch(request: OutboundRequest) -> Result<OutboundResponse, OutboundError> {
    let _slot = InFlight::take()?;
    let addrs = resolve::resolve(&request.origin, request.deadline).await?;
    let mut wire = Some(encode(&request));
    let retry_allowed = matches!(
        request.method.as_str(),
        "GET" | "HEAD" | "PUT" | "DELETE" | "OPTIONS" | "TRACE"
    );
    let is_head = request.method == "HEAD";
    loop {
        let idle = reactor::with(|r| r.take_idle(&request.origin, Instant::now())).flatten();
        let reused = idle.is_some();
        let mut link = match idle {
            Some((token, tls)) => Link::new(Stream { token, kept: false }, tls),
            None => connect(&request.origin, &addrs, request.deadline).await?,
        };
        // A request on a kept-alive connection may be sent again on a new one.
        let Some(this) = (if reused { wire.clone() } else { wire.take() }) else {
            return Err(OutboundError::Protocol(
                "the request could not be sent".into(),
            ));
        };
        match exchange(&mut link, this, is_head, &request).await {
            Ok((response, keep_alive)) => {
                if keep_alive {
                    link.keep(&request.origin);
                }
                return Ok(response);
            }
            // A kept-alive connection the origin had closed meanwhile: try a new one.
            Err(Failure::Stale) if reused && retry_allowed => continue,
            Err(Failure::Stale) => {
                return Err(OutboundError::Protocol(
                    "the origin closed the connection without answering".into(),
                ));
            }
            Err(Failure::Error(e)) => return Err(e),
        }
    }
}

/// Why an exchange failed.
pub(super) enum Failure {
    /// The connection was closed before any byte of a response (a stale kept-alive one).
    Stale,
    Error(OutboundError),
}

impl From<OutboundError> for Failure {
    fn from(e: OutboundError) -> Self {
        Failure::Error(e)
    }
}

/// Counts a request in flight on this core while it lives.
struct InFlight;

impl InFlight {
    fn take() -> Result<Self, OutboundError> {
        let taken = reactor::with(|r| {
            if r.in_flight >= r.limits.max_in_flight_per_core {
                r.counters.refused += 1;
                false
            } else {
                r.in_flight += 1;
                true
            }
        });
        match taken {
            Some(true) => Ok(InFlight),
            Some(false) => Err(OutboundError::TooMany),
            None => Err(OutboundError::Unavailable),
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        reactor::with(|r| r.in_flight -= 1);
    }
}

/// A connection this request holds: closed when dropped, unless kept alive for the next.
pub(super) struct Stream {
    pub(super) token: u32,
    pub(super) kept: bool,
}

impl Stream {
    /// Run `op` and wait for its completion (or the deadline).
    async fn run(&self, op: Op, deadline: Instant) -> Result<Done, OutboundError> {
        reactor::with(|r| r.start(self.token, op)).ok_or(OutboundError::Unavailable)?;
        Wait {
            token: self.token,
            deadline,
            timer: false,
        }
        .await
    }

    /// Send all of `buf`. `Err(Stale)`: the peer had closed before anything was sent.
    pub(super) async fn send_all(
        &self,
        mut buf: Vec<u8>,
        deadline: Instant,
    ) -> Result<(), Failure> {
        let mut offset = 0;
        while offset < buf.len() {
            match self.run(Op::Send(buf, offset), deadline).await? {
                Done::Sent(Ok(n), back) if n > 0 => {
                    buf = back;
                    offset += n;
                }
                Done::Sent(Err(e), _) if offset == 0 && is_reset(&e) => return Err(Failure::Stale),
                Done::Sent(Err(e), _) | Done::Connected(Err(e)) | Done::Received(Err(e), _) => {
                    return Err(OutboundError::Protocol(format!(
                        "sending the request failed: {e}"
                    ))
                    .into());
                }
                _ => {
                    return Err(OutboundError::Protocol("sending the request failed".into()).into());
                }
            }
        }
        Ok(())
    }

    /// Receive up to `want` more bytes onto `data`: how many (0: the peer closed its side).
    pub(super) async fn recv(
        &self,
        data: &mut Vec<u8>,
        want: usize,
        deadline: Instant,
    ) -> Result<usize, io::Error> {
        let mut buf = std::mem::take(data);
        buf.reserve(want);
        match self.run(Op::Recv(buf), deadline).await {
            Ok(Done::Received(Ok(n), back)) => {
                *data = back;
                Ok(n)
            }
            Ok(Done::Received(Err(e), _) | Done::Sent(Err(e), _) | Done::Connected(Err(e))) => {
                Err(e)
            }
            Ok(_) => Err(io::ErrorKind::InvalidData.into()),
            Err(OutboundError::Timeout) => Err(io::ErrorKind::TimedOut.into()),
            Err(_) => Err(io::ErrorKind::NotConnected.into()),
        }
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        if !self.kept {
            reactor::with(|r| r.close(self.token));
        }
    }
}

/// The completion of a connection's operation, or the deadline.
struct Wait {
    token: u32,
    deadline: Instant,
    timer: bool,
}

impl Future for Wait {
    type Output = Result<Done, OutboundError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let (token, deadline, timer) = (self.token, self.deadline, self.timer);
        let polled = reactor::with(|r| match r.poll_done(token, cx) {
            Poll::Ready(done) => Poll::Ready(Ok(done)),
            Poll::Pending if Instant::now() >= deadline => Poll::Ready(Err(OutboundError::Timeout)),
            Poll::Pending => {
                if !timer {
                    // One timer per connection and deadline, not one per operation.
                    r.wake_conn_at(token, deadline);
                }
                Poll::Pending
            }
        });
        match polled {
            Some(Poll::Pending) => {
                self.timer = true;
                Poll::Pending
            }
            Some(ready) => ready,
            None => Poll::Ready(Err(OutboundError::Unavailable)),
        }
    }
}

/// A new connection to the first of `addrs` that accepts one; a TLS session begun for
/// `https` (its handshake goes out with the request).
async fn connect(
    origin: &Origin,
    addrs: &[SocketAddr],
    deadline: Instant,
) -> Result<Link, OutboundError> {
    let tls = match origin.scheme {
        Scheme::Http => None,
        Scheme::Https => {
            let config = reactor::with(|r| r.tls.clone())
                .ok_or(OutboundError::Unavailable)?
                .map_err(|e| OutboundError::Connect(format!("TLS is not available: {e}")))?;
            Some(super::link::session(config, origin)?)
        }
    };
    let mut last = None;
    for addr in addrs {
        let token = reactor::with(|r| r.open(addr))
            .ok_or(OutboundError::Unavailable)?
            .map_err(|e| OutboundError::Connect(format!("cannot open a socket: {e}")))?;
        let stream = Stream { token, kept: false };
        match stream.run(Op::Connect(*addr), deadline).await? {
            Done::Connected(Ok(())) => return Ok(Link::new(stream, tls)),
            Done::Connected(Err(e)) | Done::Sent(Err(e), _) | Done::Received(Err(e), _) => {
                last = Some(format!("{addr}: {e}"));
            }
            _ => last = Some(format!("{addr}: unexpected completion")),
        }
    }
    Err(OutboundError::Connect(
        last.unwrap_or_else(|| "no address to connect to".into()),
    ))
}

/// The request as it goes on the wire.
fn encode(request: &OutboundRequest) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + request.body.len());
    out.extend_from_slice(request.method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(request.path_and_query.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    let origin = &request.origin;
    if origin.host.contains(':') {
        out.push(b'[');
        out.extend_from_slice(origin.host.as_bytes());
        out.push(b']');
    } else {
        out.extend_from_slice(origin.host.as_bytes());
    }
    if origin.port != origin.scheme.default_port() {
        out.extend_from_slice(format!(":{}", origin.port).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    for (name, value) in &request.headers {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    if !request.body.is_empty() || matches!(request.method.as_str(), "POST" | "PUT" | "PATCH") {
        out.extend_from_slice(format!("content-length: {}\r\n", request.body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&request.body);
    out
}

/// Send the request on `link` and read the response. `Ok(keep_alive)`: the connection may
/// carry the next request.
async fn exchange(
    link: &mut Link,
    wire: Vec<u8>,
    is_head: bool,
    request: &OutboundRequest,
) -> Result<(OutboundResponse, bool), Failure> {
    let deadline = request.deadline;
    link.send_all(wire, deadline).await?;
    let mut reader = Reader {
        link,
        deadline,
        data: Vec::with_capacity(READ_SIZE),
        received: 0,
        eof: false,
    };
    // The head, skipping interim (1xx) responses.
    let (status, headers, head_len) = loop {
        if let Some(parsed) = parse_head(&reader.data)? {
            let (status, _, head_len) = &parsed;
            if (100..200).contains(status) && *status != 101 {
                reader.data.drain(..*head_len);
                continue;
            }
            break parsed;
        }
        if reader.data.len() > MAX_HEAD {
            return Err(OutboundError::Protocol(format!(
                "the response head is over {MAX_HEAD} bytes"
            ))
            .into());
        }
        if !reader.more(READ_SIZE).await? {
            if reader.received == 0 {
                return Err(Failure::Stale);
            }
            return Err(OutboundError::Protocol(
                "the connection closed before the response head was complete".into(),
            )
            .into());
        }
    };
    if status == 101 {
        return Err(OutboundError::Protocol("the origin switched protocols".into()).into());
    }
    let (headers, framing, close) = headers;
    let max = request.max_response_bytes;
    reader.data.drain(..head_len);
    let no_body = is_head || status == 204 || status == 304;
    let (body, clean_end) = match framing {
        _ if no_body => (Vec::new(), reader.data.is_empty()),
        Framing::Length(length) => {
            if length > max as u64 {
                return Err(OutboundError::TooLarge.into());
            }
            let length = length as usize;
            while reader.data.len() < length {
                let want = (length - reader.data.len()).clamp(READ_SIZE, 1 << 20);
                if !reader.more(want).await? {
                    return Err(cut_short());
                }
            }
            let clean = reader.data.len() == length;
            reader.data.truncate(length);
            (std::mem::take(&mut reader.data), clean)
        }
        Framing::Chunked => {
            let mut decoder = ChunkedDecoder::new(max);
            let mut body = Vec::new();
            loop {
                let used = decoder
                    .decode(&reader.data, &mut body)
                    .map_err(|e| match e {
                        percore_http::ParseError::BodyTooLarge => {
                            Failure::Error(OutboundError::TooLarge)
                        }
                        e => Failure::Error(OutboundError::Protocol(format!("chunked body: {e}"))),
                    })?;
                reader.data.drain(..used);
                if decoder.is_done() {
                    break;
                }
                if !reader.more(READ_SIZE).await? {
                    return Err(cut_short());
                }
            }
            (body, reader.data.is_empty())
        }
        Framing::Close => {
            while !reader.eof {
                if reader.data.len() > max {
                    return Err(OutboundError::TooLarge.into());
                }
                reader.more(READ_SIZE.max(reader.data.len() / 4)).await?;
            }
            if reader.data.len() > max {
                return Err(OutboundError::TooLarge.into());
            }
            if reader.link.truncated {
                return Err(OutboundError::Protocol(
                    "the TLS session ended without close_notify: the body may be cut short".into(),
                )
                .into());
            }
            (std::mem::take(&mut reader.data), false)
        }
    };
    let keep_alive = !close && clean_end && (no_body || framing != Framing::Close);
    Ok((
        OutboundResponse {
            status,
            headers,
            body,
            wire_bytes: reader.received as u64,
        },
        keep_alive && !reader.eof,
    ))
}

fn cut_short() -> Failure {
    Failure::Error(OutboundError::Protocol(
        "the connection closed before the response body was complete".into(),
    ))
}

pub(super) fn is_reset(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EPIPE | libc::ECONNRESET | libc::ECONNABORTED)
    )
}

/// Bytes of the response as they arrive.
struct Reader<'l> {
    link: &'l mut Link,
    deadline: Instant,
    data: Vec<u8>,
    received: usize,
    eof: bool,
}

impl Reader<'_> {
    /// Receive up to `want` more bytes onto `data`. `Ok(false)`: the origin closed its side.
    async fn more(&mut self, want: usize) -> Result<bool, Failure> {
        if self.eof {
            return Ok(false);
        }
        let more = self
            .link
            .recv(&mut self.data, want, self.deadline, &mut self.received)
            .await?;
        self.eof = !more;
        Ok(more)
    }
}
