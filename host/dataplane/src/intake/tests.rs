use super::*;

/// Records every request and answers `200` with `METHOD target body-length` as the body.
#[derive(Debug, Default)]
pub(crate) struct Recorder {
    pub(crate) requests: Vec<(String, String, Vec<u8>)>,
    pub(crate) counters: Counters,
    /// Admit no request (the core is at its limit of calls in flight).
    pub(crate) full: bool,
    /// Requests not admitted.
    pub(crate) refused: usize,
}

impl Serve for Recorder {
    fn admit(&mut self, _: &Incoming<'_>) -> bool {
        if self.full {
            self.refused += 1;
        }
        !self.full
    }

    /// Answers at once, except a target starting with `/wait`, whose call "yields".
    fn serve(&mut self, request: &Incoming<'_>, body: Body<'_>, out: &mut Vec<u8>) -> Served {
        let Body::Bytes(body) = body else {
            panic!("the recorder streams nothing")
        };
        self.requests
            .push((request.method.into(), request.target.into(), body.to_vec()));
        if request.target.starts_with("/wait") {
            return Served::Waiting;
        }
        let text = format!("{} {} {}", request.method, request.target, body.len());
        percore_http::write_simple(out, 200, &[], &text, request.keep_alive);
        Served::Answered
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
        peer: None,
        conn: 0,
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

fn targets(server: &Recorder) -> Vec<&str> {
    server.requests.iter().map(|r| r.1.as_str()).collect()
}

#[test]
fn a_call_in_flight_holds_the_requests_behind_it_until_it_ends() {
    let limits = percore_http::Limits::default();
    let mut server = Recorder::default();
    let mut intake = Intake::default();
    let mut out = Vec::new();
    let wire = b"GET /wait HTTP/1.1\r\nhost: t\r\n\r\nGET /2 HTTP/1.1\r\nhost: t\r\n\r\nPOST /3 HTTP/1.1\r\nhost: t\r\ncontent-length: 4\r\n\r\nab";
    assert!(intake.feed(wire, &mut out, &mut server, &settings(&limits)));
    assert_eq!(targets(&server), ["/wait"], "nothing behind the call runs");
    assert!(out.is_empty() && intake.waiting() && intake.mid_request());
    // More arrives while the call runs: kept, not answered, and no request times out.
    assert!(intake.feed(b"cd", &mut out, &mut server, &settings(&limits)));
    assert_eq!(server.requests.len(), 1);
    assert!(!intake.expired(Instant::now() + Duration::from_secs(3600)));
    // A send completing meanwhile answers nothing either.
    assert!(intake.resume(&mut out, &mut server, &settings(&limits)));
    assert_eq!(server.requests.len(), 1);
    // The call ends (its response is written first), then the rest is answered in order.
    out.extend_from_slice(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
    intake.call_ended(Instant::now(), Duration::from_secs(10));
    assert!(intake.resume(&mut out, &mut server, &settings(&limits)));
    assert_eq!(targets(&server), ["/wait", "/2", "/3"]);
    assert_eq!(server.requests[2].2, b"abcd");
    let out = String::from_utf8_lossy(&out);
    assert_eq!(statuses(&out), ["200", "200", "200"], "{out}");
    assert!(out.find("GET /2 0").unwrap() < out.find("POST /3 4").unwrap());
    assert!(!intake.mid_request());
}

#[test]
fn a_request_the_core_has_no_room_for_is_held_until_woken() {
    let limits = percore_http::Limits::default();
    let mut server = Recorder {
        full: true,
        ..Recorder::default()
    };
    let mut intake = Intake::default();
    let mut out = Vec::new();
    let wire = b"POST /1 HTTP/1.1\r\nhost: t\r\ncontent-length: 6\r\n\r\nabc";
    assert!(intake.feed(wire, &mut out, &mut server, &settings(&limits)));
    assert!(intake.feed(b"def", &mut out, &mut server, &settings(&limits)));
    assert_eq!(server.refused, 1, "asked once, then held");
    assert!(intake.feed(
        b"GET /2 HTTP/1.1\r\nhost: t\r\n\r\n",
        &mut out,
        &mut server,
        &settings(&limits)
    ));
    assert!(intake.resume(&mut out, &mut server, &settings(&limits)));
    assert_eq!(server.refused, 1, "a send completing does not ask again");
    assert!(server.requests.is_empty() && out.is_empty());
    assert!(!intake.expired(Instant::now() + Duration::from_secs(3600)));
    // Woken with room: both answered, the held body whole.
    server.full = false;
    intake.unhold();
    assert!(intake.resume(&mut out, &mut server, &settings(&limits)));
    assert_eq!(targets(&server), ["/1", "/2"]);
    assert_eq!(server.requests[0].2, b"abcdef");
    assert_eq!(statuses(&String::from_utf8_lossy(&out)), ["200", "200"]);
}

#[test]
fn a_waiting_request_that_closes_its_connection_reads_nothing_more() {
    let limits = percore_http::Limits::default();
    let mut server = Recorder::default();
    let mut intake = Intake::default();
    let mut out = Vec::new();
    let wire = b"GET /wait HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\nGET /2 HTTP/1.1\r\nhost: t\r\n\r\n";
    assert!(!intake.feed(wire, &mut out, &mut server, &settings(&limits)));
    assert!(
        intake.waiting(),
        "the call still ends and its response is written"
    );
    assert_eq!(targets(&server), ["/wait"]);
}
