use super::*;
use crate::intake::tests::{Recorder, settings};

fn conn() -> (Conn, TcpStream) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    (Conn::new(server, Instant::now()), client)
}

#[test]
fn a_closing_connection_flushes_then_shuts_down_then_waits_for_its_receive() {
    let (mut conn, _client) = conn();
    let mut server = Recorder::default();
    let limits = percore_http::Limits::default();
    conn.on_bytes(
        b"GET /a HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n",
        &mut server,
        &settings(&limits),
    );
    assert!(!conn.is_open(), "connection: close ends reading");
    assert_eq!(
        conn.closing_steps(),
        Closing::default(),
        "output still to send"
    );
    let buf = conn.take_send().expect("a response to send");
    assert!(conn.take_send().is_none(), "one send in flight at a time");
    assert_eq!(
        conn.closing_steps(),
        Closing::default(),
        "the send is in flight"
    );
    let len = buf.len();
    assert_eq!(conn.on_sent(Ok(len), buf, Instant::now()), len);
    let steps = conn.closing_steps();
    assert!(
        steps.shutdown && steps.cancel_recv && !steps.remove,
        "{steps:?}"
    );
    let steps = conn.closing_steps();
    assert!(
        steps.shutdown && !steps.cancel_recv,
        "the receive is cancelled once"
    );
    conn.on_recv_ended();
    assert!(conn.closing_steps().remove);
}

#[test]
fn a_closing_connection_waits_for_its_call_in_flight() {
    let (mut conn, _client) = conn();
    let mut server = Recorder::default();
    let limits = percore_http::Limits::default();
    conn.on_bytes(
        b"GET /wait HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n",
        &mut server,
        &settings(&limits),
    );
    conn.on_peer_closed();
    conn.on_recv_ended();
    assert!(!conn.is_open() && conn.mid_request());
    assert_eq!(
        conn.closing_steps(),
        Closing::default(),
        "the call has not ended"
    );
    assert!(conn.take_send().is_none());
    conn.call_ended(
        |out| out.extend_from_slice(b"HTTP/1.1 200 OK\r\n\r\n"),
        &settings(&limits),
    );
    let buf = conn.take_send().expect("the call's response");
    conn.on_sent(Ok(buf.len()), buf, Instant::now());
    let steps = conn.closing_steps();
    assert!(steps.shutdown && steps.remove, "{steps:?}");
}

#[test]
fn a_broken_connection_is_dropped_once_its_call_ends() {
    let (mut conn, _client) = conn();
    let mut server = Recorder::default();
    let limits = percore_http::Limits::default();
    conn.on_bytes(
        b"GET /wait HTTP/1.1\r\nhost: t\r\n\r\n",
        &mut server,
        &settings(&limits),
    );
    conn.on_failed();
    conn.on_recv_ended();
    assert!(!conn.closing_steps().remove, "its call has not ended");
    conn.call_ended(
        |out| out.extend_from_slice(b"HTTP/1.1 200 OK\r\n\r\n"),
        &settings(&limits),
    );
    assert!(conn.take_send().is_none());
    assert!(conn.closing_steps().remove, "nothing can be sent: it goes");
}

#[test]
fn a_client_that_pipelines_without_reading_holds_bounded_output() {
    use crate::intake::OUT_HIGH_WATER;
    let (mut conn, _client) = conn();
    let mut server = Recorder::default();
    let limits = percore_http::Limits::default();
    let one = b"GET /x HTTP/1.1\r\nhost: t\r\n\r\n";
    let many = one.repeat(30_000);
    conn.on_bytes(&many, &mut server, &settings(&limits));
    let answered = server.requests.len();
    assert!(answered < 30_000, "every request answered at once");
    assert!(conn.out.len() >= OUT_HIGH_WATER && conn.out.len() < OUT_HIGH_WATER + 1024);
    // Nothing more is answered while the output waits, whatever arrives.
    conn.on_bytes(&one.repeat(10), &mut server, &settings(&limits));
    assert_eq!(server.requests.len(), answered);
    // The client reads: the held requests are answered, in order.
    while let Some(buf) = conn.take_send() {
        assert!(buf.len() < OUT_HIGH_WATER + 1024);
        conn.on_sent(Ok(buf.len()), buf, Instant::now());
        conn.resume(&mut server, &settings(&limits));
    }
    assert_eq!(server.requests.len(), 30_010);
    assert!(conn.is_open());
    // Past a head and the high-water mark of held requests, reading stops.
    for _ in 0..3 {
        conn.on_bytes(&many, &mut server, &settings(&limits));
    }
    assert!(!conn.is_open(), "held {} bytes of requests", many.len() * 3);
}

#[test]
fn a_client_that_stops_reading_is_disconnected_after_the_idle_timeout() {
    let (mut conn, _client) = conn();
    let mut server = Recorder::default();
    let limits = percore_http::Limits::default();
    conn.on_bytes(
        b"GET /a HTTP/1.1\r\nhost: t\r\n\r\n",
        &mut server,
        &settings(&limits),
    );
    let buf = conn.take_send().unwrap();
    let idle = Duration::from_secs(60);
    assert_eq!(conn.on_tick(Instant::now() + idle / 2, idle), Tick::Quiet);
    assert!(conn.is_open(), "not yet idle");
    assert_eq!(conn.on_tick(Instant::now() + idle * 2, idle), Tick::Stalled);
    assert!(!conn.is_open());
    // The send in flight fails; nothing more is sent and the connection can go.
    conn.on_sent(
        Err(std::io::ErrorKind::BrokenPipe.into()),
        buf,
        Instant::now(),
    );
    assert!(conn.take_send().is_none());
    conn.on_recv_ended();
    assert!(conn.closing_steps().remove);
}

#[test]
fn a_partial_send_keeps_the_rest_in_order() {
    let (mut conn, _client) = conn();
    let mut server = Recorder::default();
    let limits = percore_http::Limits::default();
    conn.on_bytes(
        b"GET /1 HTTP/1.1\r\nhost: t\r\n\r\n",
        &mut server,
        &settings(&limits),
    );
    let buf = conn.take_send().unwrap();
    let first = buf.clone();
    conn.on_bytes(
        b"GET /2 HTTP/1.1\r\nhost: t\r\n\r\n",
        &mut server,
        &settings(&limits),
    );
    conn.on_sent(Ok(5), buf, Instant::now());
    let rest = conn.take_send().unwrap();
    assert!(rest.starts_with(&first[5..]));
    assert!(String::from_utf8_lossy(&rest).contains("/2"));
}

#[test]
fn a_broken_connection_sends_nothing_more() {
    let (mut conn, _client) = conn();
    let mut server = Recorder::default();
    let limits = percore_http::Limits::default();
    conn.on_bytes(
        b"GET / HTTP/1.1\r\nhost: t\r\n\r\n",
        &mut server,
        &settings(&limits),
    );
    conn.on_failed();
    assert!(conn.take_send().is_none());
    conn.on_bytes(
        b"GET / HTTP/1.1\r\nhost: t\r\n\r\n",
        &mut server,
        &settings(&limits),
    );
    assert_eq!(
        server.requests.len(),
        1,
        "a broken connection reads no more"
    );
}

#[test]
fn a_request_past_its_deadline_gets_408() {
    let (mut conn, _client) = conn();
    let mut server = Recorder::default();
    let limits = percore_http::Limits::default();
    let s = settings(&limits);
    conn.on_bytes(b"GET / HTTP/1.1\r\nhost: x\r\n", &mut server, &s);
    assert!(conn.mid_request());
    assert_eq!(
        conn.on_tick(s.now + Duration::from_millis(1), Duration::from_secs(60)),
        Tick::Quiet
    );
    let late = s.now + s.request_timeout + Duration::from_millis(1);
    assert_eq!(conn.on_tick(late, Duration::from_secs(60)), Tick::TimedOut);
    assert!(!conn.is_open() && !conn.mid_request());
    let out = conn.take_send().unwrap();
    assert!(
        out.starts_with(b"HTTP/1.1 408 "),
        "{}",
        String::from_utf8_lossy(&out)
    );
}

#[test]
fn an_idle_connection_closes_and_a_busy_one_drains() {
    let (mut conn, _client) = conn();
    let now = Instant::now();
    assert_eq!(
        conn.on_tick(now + Duration::from_secs(2), Duration::from_secs(1)),
        Tick::Quiet
    );
    assert!(!conn.is_open());
    let (mut busy, _client) = self::conn();
    let mut server = Recorder::default();
    let limits = percore_http::Limits::default();
    busy.on_bytes(
        b"POST / HTTP/1.1\r\nhost: t\r\ncontent-length: 5\r\n\r\nab",
        &mut server,
        &settings(&limits),
    );
    busy.on_drain();
    assert!(busy.is_open(), "a request in progress finishes");
}

#[test]
fn tokens_of_a_reused_slot_do_not_reach_the_new_connection() {
    let (a, _ca) = conn();
    let (b, _cb) = conn();
    let mut conns = Conns::default();
    let ta = conns.insert(a);
    assert!(conns.remove(ta).is_some());
    let tb = conns.insert(b);
    assert_ne!(ta, tb);
    assert!(conns.get_mut(ta).is_none());
    assert!(conns.get_mut(tb).is_some());
    assert_eq!(conns.len(), 1);
    assert_eq!(conns.tokens(), vec![tb]);
}

#[test]
fn a_client_that_half_closes_gets_the_answers_held_behind_a_call() {
    let (mut conn, _client) = conn();
    let mut server = Recorder::default();
    let limits = percore_http::Limits::default();
    conn.on_bytes(
        b"GET /wait HTTP/1.1\r\nhost: t\r\n\r\nGET /2 HTTP/1.1\r\nhost: t\r\n\r\n",
        &mut server,
        &settings(&limits),
    );
    // The client shuts down its sending side; it still reads.
    conn.on_peer_closed();
    conn.on_recv_ended();
    assert_eq!(server.requests.len(), 1);
    conn.call_ended(
        |out| out.extend_from_slice(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"),
        &settings(&limits),
    );
    conn.resume(&mut server, &settings(&limits));
    assert_eq!(server.requests.len(), 2, "the request behind the call ran");
    let out = conn.take_send().unwrap();
    assert!(String::from_utf8_lossy(&out).contains("GET /2 0"));
    conn.on_sent(Ok(out.len()), out, Instant::now());
    assert!(conn.closing_steps().remove);
}

#[test]
fn a_held_request_of_a_client_that_half_closes_still_runs() {
    let (mut conn, _client) = conn();
    let mut server = Recorder {
        full: true,
        ..Recorder::default()
    };
    let limits = percore_http::Limits::default();
    conn.on_bytes(
        b"GET /1 HTTP/1.1\r\nhost: t\r\n\r\n",
        &mut server,
        &settings(&limits),
    );
    conn.on_peer_closed();
    conn.on_recv_ended();
    assert_eq!(
        conn.closing_steps(),
        Closing::default(),
        "held, not dropped"
    );
    server.full = false;
    conn.wake(&mut server, &settings(&limits));
    assert_eq!(server.requests.len(), 1);
    let out = conn.take_send().expect("its answer");
    conn.on_sent(Ok(out.len()), out, Instant::now());
    assert!(conn.closing_steps().remove);
}

#[test]
fn a_call_that_ends_while_the_server_drains_closes_its_connection() {
    let (mut conn, _client) = conn();
    let mut server = Recorder::default();
    let limits = percore_http::Limits::default();
    conn.on_bytes(
        b"GET /wait HTTP/1.1\r\nhost: t\r\n\r\nGET /2 HTTP/1.1\r\nhost: t\r\n\r\n",
        &mut server,
        &settings(&limits),
    );
    conn.on_drain();
    assert!(conn.is_open(), "its call is in flight");
    let draining = IntakeSettings {
        draining: true,
        ..settings(&limits)
    };
    conn.call_ended(
        |out| out.extend_from_slice(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n"),
        &draining,
    );
    conn.resume(&mut server, &draining);
    assert!(!conn.is_open());
    assert_eq!(
        server.requests.len(),
        1,
        "nothing after a `connection: close` answer"
    );
}
