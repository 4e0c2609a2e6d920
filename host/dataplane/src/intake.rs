//! From a connection's bytes to complete requests: parse heads in place, frame bodies
//! (`Content-Length` or chunked), keep what is incomplete, and hand each complete request to a
//! [`Serve`] in the order it arrived (pipelining). No sockets here: the tests feed bytes.

use std::time::{Duration, Instant};

use percore_http::{BodyFraming, ChunkedDecoder, Head, ParseError};

use crate::backend::Streamed;
use crate::counters::Counters;

/// Bodies from this size on may be received straight into guest memory when they do not arrive
/// with their head.
pub(crate) const STREAM_MIN_BODY: usize = 64 << 10;

/// Response bytes waiting to be sent past which no further pipelined request is answered until
/// the client reads: a client that pipelines without reading makes the connection hold at most
/// this much plus one response (and as much again in the send in flight).
pub(crate) const OUT_HIGH_WATER: usize = 1 << 20;

/// A complete request, borrowing from the receive buffer or from the intake's copy.
#[derive(Debug)]
pub(crate) struct Incoming<'a> {
    pub(crate) method: &'a str,
    pub(crate) target: &'a str,
    /// Header fields as received, framing fields included.
    pub(crate) headers: &'a [(&'a str, &'a [u8])],
    /// Whether the connection stays open after the response.
    pub(crate) keep_alive: bool,
    /// The connection it came on, for the client's address (asked of the kernel only by the
    /// kinds of guest that are told it).
    pub(crate) peer: Option<&'a std::net::TcpStream>,
    /// The connection's token on its core.
    pub(crate) conn: u32,
}

impl Incoming<'_> {
    /// The `Host` header's value.
    pub(crate) fn host(&self) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("host"))
            .map(|(_, v)| *v)
    }

    /// Size of the head as HTTP/1.1 writes it (`METHOD target HTTP/1.1`, one line per field,
    /// blank line): what metering counts as request bytes besides the body.
    pub(crate) fn wire_head_len(&self) -> usize {
        self.method.len()
            + self.target.len()
            + 12
            + self
                .headers
                .iter()
                .map(|(n, v)| n.len() + v.len() + 4)
                .sum::<usize>()
            + 2
    }
}

/// Where a request's body is.
#[derive(Debug)]
// Moved once per request, never stored: boxing the large variant would buy nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Body<'a> {
    /// In host memory.
    Bytes(&'a [u8]),
    /// Received straight into an instance's memory.
    Streamed(Streamed),
}

/// What became of a request handed to a [`Serve`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Served {
    /// Its whole response is in the output.
    Answered,
    /// Its call yielded: the response comes later ([`Intake::call_ended`]), and nothing more
    /// on the connection is answered until then.
    Waiting,
}

/// Where complete requests go: the dispatcher, or a recorder in tests.
pub(crate) trait Serve {
    /// Whether a complete request may start now. `false`: the core is at its limit of calls in
    /// flight and has queued the connection; the request is held, unanswered, until the core
    /// wakes the connection ([`Intake::resume`]).
    fn admit(&mut self, request: &Incoming<'_>) -> bool;

    /// Answer one complete request: append its whole response to `out`, or start its call.
    fn serve(&mut self, request: &Incoming<'_>, body: Body<'_>, out: &mut Vec<u8>) -> Served;

    /// A body of `body_len` bytes has started to arrive (`first` is its beginning): take it
    /// straight into guest memory if the request's route allows, else `None` and the intake
    /// buffers it.
    fn begin_stream(
        &mut self,
        request: &Incoming<'_>,
        body_len: usize,
        first: &[u8],
    ) -> Option<Streamed>;

    /// The core's counters (rejections, copies).
    fn counters(&mut self) -> &mut Counters;
}

/// What the intake needs to know besides the bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IntakeSettings<'a> {
    pub(crate) limits: &'a percore_http::Limits,
    /// The connection (set by `Conn`).
    pub(crate) peer: Option<&'a std::net::TcpStream>,
    /// The connection's token on its core.
    pub(crate) conn: u32,
    /// The server is stopping: answer with `connection: close`.
    pub(crate) draining: bool,
    /// Time a started request has to complete.
    pub(crate) request_timeout: Duration,
    pub(crate) now: Instant,
}

/// What a connection has received and not answered yet.
#[derive(Debug, Default)]
pub(crate) struct Intake {
    /// Bytes of a request head not complete yet (copied out of the receive buffers).
    inbuf: Vec<u8>,
    /// A request whose head is complete and whose body is not.
    pending: Option<Pending>,
    /// When a request has started, the instant by which it must be complete.
    deadline: Option<Instant>,
    /// A request's call is in flight: its response is not written yet.
    waiting: bool,
    /// The next complete request is held until the core has room for its call.
    held: bool,
}

/// A request whose head has arrived and whose body is still coming: the head is copied out of
/// the receive buffer so that the buffer can go back to the kernel.
#[derive(Debug)]
struct Pending {
    method: String,
    target: String,
    headers: Vec<(String, Vec<u8>)>,
    keep_alive: bool,
    body: Vec<u8>,
    left: BodyLeft,
    /// The body is going straight into an instance's input region instead of `body`.
    stream: Option<Streamed>,
}

/// What is left of a pending body.
#[derive(Debug)]
enum BodyLeft {
    /// This many bytes (`Content-Length`).
    Length(usize),
    /// Until the chunked decoder says done.
    Chunked(ChunkedDecoder),
}

impl Pending {
    /// Take body bytes from `data`; returns how many were used.
    fn feed(&mut self, data: &[u8]) -> Result<usize, ParseError> {
        match &mut self.left {
            BodyLeft::Length(left) => {
                let take = (*left).min(data.len());
                match &mut self.stream {
                    Some(s) => s.push(&data[..take]),
                    None => self.body.extend_from_slice(&data[..take]),
                }
                *left -= take;
                Ok(take)
            }
            BodyLeft::Chunked(decoder) => decoder.decode(data, &mut self.body),
        }
    }

    fn complete(&self) -> bool {
        match &self.left {
            BodyLeft::Length(left) => *left == 0,
            BodyLeft::Chunked(decoder) => decoder.is_done(),
        }
    }
}

impl Intake {
    /// Whether part of a request has been received and not answered.
    pub(crate) fn mid_request(&self) -> bool {
        self.holds_bytes() || self.waiting
    }

    /// Whether bytes of requests not started are kept.
    fn holds_bytes(&self) -> bool {
        !self.inbuf.is_empty() || self.pending.is_some()
    }

    /// Whether a request's call is in flight.
    pub(crate) fn waiting(&self) -> bool {
        self.waiting
    }

    /// Whether a complete request waits for room for its call.
    pub(crate) fn held(&self) -> bool {
        self.held
    }

    /// Whether a started request missed its deadline (a request whose call is in flight is
    /// bounded by its deployment's wall deadline instead, and requests held meanwhile wait).
    pub(crate) fn expired(&self, now: Instant) -> bool {
        !self.waiting && !self.held && self.deadline.is_some_and(|d| now > d)
    }

    /// Forget everything received (the connection is closing). A call in flight still ends.
    pub(crate) fn clear(&mut self) {
        self.inbuf.clear();
        self.pending = None;
        self.deadline = None;
        self.held = false;
    }

    /// The core has room for the call of the request held: try it again ([`Intake::resume`]).
    pub(crate) fn unhold(&mut self) {
        self.held = false;
    }

    /// The call in flight ended and its response is in the output: what was held meanwhile
    /// can be answered ([`Intake::resume`]).
    pub(crate) fn call_ended(&mut self, now: Instant, timeout: Duration) {
        self.waiting = false;
        self.deadline = self.holds_bytes().then_some(now + timeout);
    }

    /// Bytes arrived: answer every complete request in them, appending responses to `out`.
    /// Returns false when the connection must close (a rejected request, `connection: close`).
    pub(crate) fn feed(
        &mut self,
        bytes: &[u8],
        out: &mut Vec<u8>,
        server: &mut impl Serve,
        settings: &IntakeSettings<'_>,
    ) -> bool {
        let open = if self.inbuf.is_empty() {
            // The common case (and every piece of a body in progress): work straight from the
            // receive buffer, no copy.
            let (used, open) = self.process(bytes, out, server, settings);
            // An incomplete head, or requests held behind a call or a request waiting for
            // room: keep their bytes (a pending body has taken its own already).
            let body_taking = self.pending.as_ref().is_some_and(|p| !p.complete());
            if open && used < bytes.len() && !body_taking {
                let rest = &bytes[used..];
                self.inbuf.extend_from_slice(rest);
                let counters = server.counters();
                counters.request_copies += 1;
                counters.request_bytes_copied += rest.len() as u64;
            }
            open
        } else {
            let mut data = std::mem::take(&mut self.inbuf);
            if !bytes.is_empty() {
                data.extend_from_slice(bytes);
                let counters = server.counters();
                counters.request_copies += 1;
                counters.request_bytes_copied += bytes.len() as u64;
            }
            let (used, open) = self.process(&data, out, server, settings);
            if open && used < data.len() {
                data.drain(..used);
                self.inbuf = data;
            }
            open
        };
        // Requests held while the output is backed up are bounded too: past one head and the
        // high-water mark of them, the client is pipelining without reading; stop reading.
        if !open || self.inbuf.len() > settings.limits.max_head + OUT_HIGH_WATER {
            self.clear();
            return false;
        }
        self.deadline = match (self.holds_bytes(), self.deadline) {
            (false, _) => None,
            (true, Some(deadline)) => Some(deadline),
            (true, None) => Some(settings.now + settings.request_timeout),
        };
        true
    }

    /// The output drained: answer the requests held while it was backed up. Returns false when
    /// the connection must close.
    pub(crate) fn resume(
        &mut self,
        out: &mut Vec<u8>,
        server: &mut impl Serve,
        settings: &IntakeSettings<'_>,
    ) -> bool {
        let complete = self.pending.as_ref().is_some_and(Pending::complete);
        if self.waiting
            || self.held
            || (self.inbuf.is_empty() && !complete)
            || (self.pending.is_some() && !complete)
            || out.len() >= OUT_HIGH_WATER
        {
            return true;
        }
        self.feed(&[], out, server, settings)
    }

    /// Answer every complete request at the start of `data`. Returns the bytes used and
    /// whether the connection stays open.
    fn process(
        &mut self,
        data: &[u8],
        out: &mut Vec<u8>,
        server: &mut impl Serve,
        settings: &IntakeSettings<'_>,
    ) -> (usize, bool) {
        let mut pos = 0;
        loop {
            if let Some(mut pending) = self.pending.take() {
                match pending.feed(&data[pos..]) {
                    Ok(used) => pos += used,
                    Err(e) => {
                        reject(out, server, &e);
                        return (data.len(), false);
                    }
                }
                if !pending.complete() || self.waiting || self.held {
                    self.pending = Some(pending);
                    return (pos, true);
                }
                let headers: Vec<(&str, &[u8])> = pending
                    .headers
                    .iter()
                    .map(|(n, v)| (n.as_str(), v.as_slice()))
                    .collect();
                let request = Incoming {
                    method: &pending.method,
                    target: &pending.target,
                    headers: &headers,
                    keep_alive: pending.keep_alive && !settings.draining,
                    peer: settings.peer,
                    conn: settings.conn,
                };
                if !server.admit(&request) {
                    self.held = true;
                    self.pending = Some(pending);
                    return (pos, true);
                }
                let body = match pending.stream.take() {
                    Some(streamed) => Body::Streamed(streamed),
                    None => {
                        let counters = server.counters();
                        counters.request_copies += 1;
                        counters.request_bytes_copied += pending.body.len() as u64;
                        Body::Bytes(&pending.body)
                    }
                };
                let served = server.serve(&request, body, out);
                if !request.keep_alive {
                    self.waiting = served == Served::Waiting;
                    return (data.len(), false);
                }
                if served == Served::Waiting {
                    self.waiting = true;
                    return (pos, true);
                }
                continue;
            }
            // Nothing more, the client is not reading what it asked for, or a call is in
            // flight: hold the rest until the output drains or the call ends (`resume`).
            if pos == data.len() || out.len() >= OUT_HIGH_WATER || self.waiting || self.held {
                return (pos, true);
            }
            let head = match percore_http::parse_head(&data[pos..], settings.limits) {
                Ok(Some(head)) => head,
                Ok(None) => return (pos, true),
                Err(e) => {
                    reject(out, server, &e);
                    return (data.len(), false);
                }
            };
            let body_start = pos + head.len;
            let available = &data[body_start..];
            let request = Incoming {
                method: head.method,
                target: head.target,
                headers: &head.headers,
                keep_alive: head.keep_alive && !settings.draining,
                peer: settings.peer,
                conn: settings.conn,
            };
            let complete = match head.framing {
                BodyFraming::None => true,
                BodyFraming::Length(n) => available.len() >= n,
                // Decoded below; held only once it is complete.
                BodyFraming::Chunked => false,
            };
            if complete && !server.admit(&request) {
                self.held = true;
                return (pos, true);
            }
            let served = match head.framing {
                BodyFraming::None => {
                    pos = body_start;
                    server.serve(&request, Body::Bytes(b""), out)
                }
                BodyFraming::Length(n) if available.len() >= n => {
                    pos = body_start + n;
                    server.serve(&request, Body::Bytes(&available[..n]), out)
                }
                BodyFraming::Length(n) => {
                    let stream = if n >= STREAM_MIN_BODY {
                        server.begin_stream(&request, n, available)
                    } else {
                        None
                    };
                    let body = match stream {
                        Some(_) => Vec::new(),
                        None => {
                            let mut body = Vec::with_capacity(n.min(1 << 20));
                            body.extend_from_slice(available);
                            body
                        }
                    };
                    let left = BodyLeft::Length(n - available.len());
                    self.start_pending(out, &head, request.keep_alive, body, left, stream);
                    return (data.len(), true);
                }
                BodyFraming::Chunked => {
                    let mut decoder = ChunkedDecoder::new(settings.limits.max_body);
                    let mut body = Vec::new();
                    let used = match decoder.decode(available, &mut body) {
                        Ok(used) => used,
                        Err(e) => {
                            reject(out, server, &e);
                            return (data.len(), false);
                        }
                    };
                    if !decoder.is_done() {
                        let left = BodyLeft::Chunked(decoder);
                        self.start_pending(out, &head, request.keep_alive, body, left, None);
                        return (data.len(), true);
                    }
                    if !server.admit(&request) {
                        self.held = true;
                        return (pos, true);
                    }
                    let counters = server.counters();
                    counters.request_copies += 1;
                    counters.request_bytes_copied += body.len() as u64;
                    pos = body_start + used;
                    server.serve(&request, Body::Bytes(&body), out)
                }
            };
            self.waiting = served == Served::Waiting;
            if !request.keep_alive {
                return (data.len(), false);
            }
            if self.waiting {
                return (pos, true);
            }
        }
    }

    fn start_pending(
        &mut self,
        out: &mut Vec<u8>,
        head: &Head<'_>,
        keep_alive: bool,
        body: Vec<u8>,
        left: BodyLeft,
        stream: Option<Streamed>,
    ) {
        if head.expect_continue {
            out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        self.pending = Some(Pending {
            method: head.method.to_owned(),
            target: head.target.to_owned(),
            headers: head
                .headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_vec()))
                .collect(),
            keep_alive,
            body,
            left,
            stream,
        });
    }
}

/// Answer with the error's status (the connection then closes).
fn reject(out: &mut Vec<u8>, server: &mut impl Serve, error: &ParseError) {
    let counters = server.counters();
    counters.bad_requests += 1;
    let status = error.status();
    counters.status(status);
    percore_http::write_simple(out, status, &[], &format!("{error}\n"), false);
}

#[cfg(test)]
pub(crate) mod tests;
