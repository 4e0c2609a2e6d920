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

/// A complete request, borrowing from the receive buffer or from the intake's copy.
#[derive(Debug)]
pub(crate) struct Incoming<'a> {
    pub(crate) method: &'a str,
    pub(crate) target: &'a str,
    /// Header fields as received, framing fields included.
    pub(crate) headers: &'a [(&'a str, &'a [u8])],
    /// Whether the connection stays open after the response.
    pub(crate) keep_alive: bool,
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

/// Where complete requests go: the dispatcher, or a recorder in tests.
pub(crate) trait Serve {
    /// Answer one complete request: append its whole response to `out`.
    fn serve(&mut self, request: &Incoming<'_>, body: Body<'_>, out: &mut Vec<u8>);

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
        !self.inbuf.is_empty() || self.pending.is_some()
    }

    /// Whether a started request missed its deadline.
    pub(crate) fn expired(&self, now: Instant) -> bool {
        self.deadline.is_some_and(|d| now > d)
    }

    /// Forget everything received (the connection is closing).
    pub(crate) fn clear(&mut self) {
        self.inbuf.clear();
        self.pending = None;
        self.deadline = None;
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
            // An incomplete head: keep its bytes (a pending body has taken its own already).
            if open && used < bytes.len() && self.pending.is_none() {
                let rest = &bytes[used..];
                self.inbuf.extend_from_slice(rest);
                let counters = server.counters();
                counters.request_copies += 1;
                counters.request_bytes_copied += rest.len() as u64;
            }
            open
        } else {
            let mut data = std::mem::take(&mut self.inbuf);
            data.extend_from_slice(bytes);
            let counters = server.counters();
            counters.request_copies += 1;
            counters.request_bytes_copied += bytes.len() as u64;
            let (used, open) = self.process(&data, out, server, settings);
            if open && used < data.len() {
                data.drain(..used);
                self.inbuf = data;
            }
            open
        };
        if !open {
            self.clear();
            return false;
        }
        self.deadline = match (self.mid_request(), self.deadline) {
            (false, _) => None,
            (true, Some(deadline)) => Some(deadline),
            (true, None) => Some(settings.now + settings.request_timeout),
        };
        true
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
                if !pending.complete() {
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
                };
                let body = match pending.stream.take() {
                    Some(streamed) => Body::Streamed(streamed),
                    None => {
                        let counters = server.counters();
                        counters.request_copies += 1;
                        counters.request_bytes_copied += pending.body.len() as u64;
                        Body::Bytes(&pending.body)
                    }
                };
                server.serve(&request, body, out);
                if !request.keep_alive {
                    return (data.len(), false);
                }
                continue;
            }
            if pos == data.len() {
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
            };
            match head.framing {
                BodyFraming::None => {
                    server.serve(&request, Body::Bytes(b""), out);
                    pos = body_start;
                }
                BodyFraming::Length(n) if available.len() >= n => {
                    server.serve(&request, Body::Bytes(&available[..n]), out);
                    pos = body_start + n;
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
                    let counters = server.counters();
                    counters.request_copies += 1;
                    counters.request_bytes_copied += body.len() as u64;
                    server.serve(&request, Body::Bytes(&body), out);
                    pos = body_start + used;
                }
            }
            if !request.keep_alive {
                return (data.len(), false);
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
pub(crate) mod tests {
    use super::*;

    /// Records every request and answers `200` with `METHOD target body-length` as the body.
    #[derive(Debug, Default)]
    pub(crate) struct Recorder {
        pub(crate) requests: Vec<(String, String, Vec<u8>)>,
        pub(crate) counters: Counters,
    }

    impl Serve for Recorder {
        fn serve(&mut self, request: &Incoming<'_>, body: Body<'_>, out: &mut Vec<u8>) {
            let Body::Bytes(body) = body else {
                panic!("the recorder streams nothing")
            };
            self.requests
                .push((request.method.into(), request.target.into(), body.to_vec()));
            let text = format!("{} {} {}", request.method, request.target, body.len());
            percore_http::write_simple(out, 200, &[], &text, request.keep_alive);
        }

        fn begin_stream(&mut self, _: &Incoming<'_>, _: usize, _: &[u8]) -> Option<Streamed> {
            None
        }

        fn counters(&mut self) -> &mut Counters {
            &mut self.counters
        }
    }

    pub(crate) fn settings(limits: &percore_http::Limits) -> IntakeSettings<'_> {
        IntakeSettings {
            limits,
            draining: false,
            request_timeout: Duration::from_secs(10),
            now: Instant::now(),
        }
    }

    /// Feed `pieces` one after the other; returns the output and whether the connection is
    /// still open.
    fn feed_all(server: &mut Recorder, pieces: &[&[u8]]) -> (String, bool) {
        let limits = percore_http::Limits {
            max_body: 1 << 20,
            ..Default::default()
        };
        let mut intake = Intake::default();
        let mut out = Vec::new();
        let mut open = true;
        for piece in pieces {
            open = intake.feed(piece, &mut out, server, &settings(&limits));
            if !open {
                break;
            }
        }
        (String::from_utf8_lossy(&out).into_owned(), open)
    }

    fn statuses(out: &str) -> Vec<&str> {
        out.match_indices("HTTP/1.1 ")
            .map(|(i, _)| &out[i + 9..i + 12])
            .collect()
    }

    #[test]
    fn pipelined_requests_are_answered_in_order() {
        let mut server = Recorder::default();
        let wire = b"GET /1 HTTP/1.1\r\nhost: t\r\n\r\nPOST /2 HTTP/1.1\r\nhost: t\r\ncontent-length: 3\r\n\r\nabcGET /3 HTTP/1.1\r\nhost: t\r\n\r\n";
        let (out, open) = feed_all(&mut server, &[wire]);
        assert!(open);
        let order: Vec<&str> = server.requests.iter().map(|r| r.1.as_str()).collect();
        assert_eq!(order, ["/1", "/2", "/3"]);
        let first = out.find("GET /1 0").unwrap();
        let second = out.find("POST /2 3").unwrap();
        let third = out.find("GET /3 0").unwrap();
        assert!(first < second && second < third, "{out}");
        assert_eq!(
            server.counters.request_copies, 0,
            "straight from the receive buffer"
        );
    }

    #[test]
    fn a_request_split_anywhere_arrives_whole() {
        let wire: &[u8] = b"PUT /split?q=1 HTTP/1.1\r\nhost: a\r\ncontent-length: 10\r\n\r\n0123456789GET /next HTTP/1.1\r\nhost: t\r\n\r\n";
        for cut in 1..wire.len() {
            for cut2 in cut..wire.len() {
                let mut server = Recorder::default();
                let (_, open) = feed_all(
                    &mut server,
                    &[&wire[..cut], &wire[cut..cut2], &wire[cut2..]],
                );
                assert!(open);
                assert_eq!(server.requests.len(), 2, "cuts at {cut}, {cut2}");
                assert_eq!(server.requests[0].1, "/split?q=1");
                assert_eq!(server.requests[0].2, b"0123456789");
                assert_eq!(server.requests[1].1, "/next");
            }
        }
    }

    #[test]
    fn a_chunked_body_in_pieces_is_decoded() {
        let mut server = Recorder::default();
        let (_, open) = feed_all(
            &mut server,
            &[
                b"POST /c HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n4\r\nab",
                b"cd\r\n3\r\nefg\r",
                b"\n0\r\n\r\nGET /after HTTP/1.1\r\nhost: t\r\n\r\n",
            ],
        );
        assert!(open);
        assert_eq!(server.requests[0].2, b"abcdefg");
        assert_eq!(server.requests[1].1, "/after");
    }

    #[test]
    fn a_large_body_in_pieces_is_buffered_once_complete() {
        let mut server = Recorder::default();
        let body = vec![7u8; 200_000];
        let head = format!(
            "POST /big HTTP/1.1\r\nhost: t\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        let mut wire = head.into_bytes();
        wire.extend_from_slice(&body);
        let pieces: Vec<&[u8]> = wire.chunks(16 << 10).collect();
        let (out, open) = feed_all(&mut server, &pieces);
        assert!(open);
        assert_eq!(server.requests.len(), 1);
        assert_eq!(server.requests[0].2, body);
        assert!(out.contains("POST /big 200000"));
    }

    #[test]
    fn a_malformed_request_is_rejected_and_ends_the_connection() {
        let mut server = Recorder::default();
        let (out, open) = feed_all(
            &mut server,
            &[b"GET /ok HTTP/1.1\r\nhost: t\r\n\r\nGET /bad HTTP/1.1\r\nhost: t\r\nno colon here\r\n\r\nGET /never HTTP/1.1\r\nhost: t\r\n\r\n"],
        );
        assert!(!open);
        assert_eq!(statuses(&out), ["200", "400"]);
        assert_eq!(server.requests.len(), 1);
        assert_eq!(server.counters.bad_requests, 1);
    }

    #[test]
    fn a_body_over_the_limit_is_413() {
        let mut server = Recorder::default();
        let (out, open) = feed_all(
            &mut server,
            &[b"POST / HTTP/1.1\r\nhost: t\r\ncontent-length: 99999999\r\n\r\n"],
        );
        assert!(!open);
        assert_eq!(statuses(&out), ["413"]);
        assert!(server.requests.is_empty());
    }

    #[test]
    fn connection_close_stops_reading() {
        let mut server = Recorder::default();
        let (out, open) = feed_all(
            &mut server,
            &[b"GET /1 HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\nGET /2 HTTP/1.1\r\nhost: t\r\n\r\n"],
        );
        assert!(!open);
        assert_eq!(server.requests.len(), 1);
        assert!(out.contains("connection: close"));
    }

    #[test]
    fn expect_continue_is_answered_before_the_body() {
        let mut server = Recorder::default();
        let (out, _) = feed_all(
            &mut server,
            &[
                b"POST / HTTP/1.1\r\nhost: t\r\nexpect: 100-continue\r\ncontent-length: 2\r\n\r\n",
                b"hi",
            ],
        );
        assert_eq!(statuses(&out), ["100", "200"]);
    }

    #[test]
    fn a_started_request_has_a_deadline_and_a_finished_one_has_none() {
        let limits = percore_http::Limits::default();
        let s = settings(&limits);
        let mut server = Recorder::default();
        let mut intake = Intake::default();
        let mut out = Vec::new();
        intake.feed(b"GET / HTTP/1.1\r\nhost: t\r\n", &mut out, &mut server, &s);
        assert!(intake.mid_request());
        assert!(!intake.expired(s.now));
        assert!(intake.expired(s.now + s.request_timeout + Duration::from_millis(1)));
        intake.feed(b"\r\n", &mut out, &mut server, &s);
        assert!(!intake.mid_request());
        assert!(!intake.expired(s.now + Duration::from_secs(3600)));
    }
}
