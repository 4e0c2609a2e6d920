//! Running a case's exchanges against a host and checking the responses.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail, ensure};

use crate::case::{Case, Exchange, Expect, RawExchange};
use crate::client::{Conn, Response};

pub fn run(case: &Case, addr: SocketAddr) -> anyhow::Result<()> {
    for (i, exchange) in case.requests.iter().enumerate() {
        request(exchange, addr).with_context(|| {
            format!("request #{} ({} {})", i + 1, exchange.method, exchange.path)
        })?;
    }
    for (i, raw) in case.raws.iter().enumerate() {
        raw_exchange(raw, addr).with_context(|| format!("raw exchange #{}", i + 1))?;
    }
    Ok(())
}

fn request(exchange: &Exchange, addr: SocketAddr) -> anyhow::Result<()> {
    let body = exchange.body.bytes()?.unwrap_or_default();
    let mut bytes = format!("{} {} HTTP/1.1\r\n", exchange.method, exchange.path).into_bytes();
    if !exchange
        .headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("host"))
    {
        bytes.extend_from_slice(b"Host: localhost\r\n");
    }
    for (name, value) in &exchange.headers {
        bytes.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    match exchange.chunked {
        Some(size) => {
            bytes.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
            for chunk in body.chunks(size.max(1)) {
                bytes.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                bytes.extend_from_slice(chunk);
                bytes.extend_from_slice(b"\r\n");
            }
            bytes.extend_from_slice(b"0\r\n\r\n");
        }
        None => {
            if !body.is_empty() || exchange.method == "POST" || exchange.method == "PUT" {
                bytes.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
            }
            bytes.extend_from_slice(b"\r\n");
            bytes.extend_from_slice(&body);
        }
    }
    let mut conn = Conn::connect(addr)?;
    let mut bodies = Vec::new();
    for n in 0..exchange.repeat {
        conn.send(&bytes)?;
        let response = conn.read_response(exchange.method == "HEAD")?;
        check(&response, &exchange.expect)
            .with_context(|| format!("response {} of {}", n + 1, exchange.repeat))?;
        bodies.push(response.body);
    }
    if exchange.expect.bodies_differ {
        let distinct: std::collections::BTreeSet<_> = bodies.iter().collect();
        ensure!(
            distinct.len() == bodies.len(),
            "expected a different body each time, got {} distinct of {}",
            distinct.len(),
            bodies.len()
        );
    }
    if exchange.expect.bodies_equal {
        ensure!(
            bodies.windows(2).all(|w| w[0] == w[1]),
            "expected the same body each time, got {:?}",
            bodies
                .iter()
                .map(|b| String::from_utf8_lossy(b))
                .collect::<Vec<_>>()
        );
    }
    Ok(())
}

fn raw_exchange(raw: &RawExchange, addr: SocketAddr) -> anyhow::Result<()> {
    let mut conn = Conn::connect(addr)?;
    match raw.trickle_ms {
        Some(ms) => conn.send_slowly(raw.send.as_bytes(), Duration::from_millis(ms))?,
        None => conn.send(raw.send.as_bytes())?,
    }
    if raw.half_close {
        conn.half_close()?;
    }
    for (i, expect) in raw.expect.iter().enumerate() {
        let response = conn
            .read_response(raw.head_responses.contains(&(i + 1)))
            .with_context(|| format!("reading response {}", i + 1))?;
        check(&response, expect).with_context(|| format!("response {}", i + 1))?;
    }
    if raw.expect_close {
        ensure!(
            conn.closed_by_peer(),
            "the host did not close the connection"
        );
    }
    Ok(())
}

fn show(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned();
    if bytes.len() > 200 {
        format!("{text:?}… ({} bytes)", bytes.len())
    } else {
        format!("{text:?}")
    }
}

pub fn check(response: &Response, expect: &Expect) -> anyhow::Result<()> {
    if let Some(status) = expect.status {
        ensure!(
            response.status == status,
            "status {} (expected {status}); body {}",
            response.status,
            show(&response.body)
        );
    }
    // Per name, the expected values must appear among the actual ones in the same order.
    let mut names: Vec<&str> = expect.headers.iter().map(|(n, _)| n.as_str()).collect();
    names.dedup();
    for name in names {
        let wanted: Vec<&[u8]> = expect
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_bytes())
            .collect();
        let actual: Vec<&[u8]> = response.header_values(name).collect();
        let mut it = actual.iter();
        for want in &wanted {
            if !it.any(|a| a == want) {
                bail!(
                    "header `{name}`: expected {:?} in order, got {:?}",
                    wanted.iter().map(|w| show(w)).collect::<Vec<_>>(),
                    actual.iter().map(|a| show(a)).collect::<Vec<_>>()
                );
            }
        }
    }
    for name in &expect.headers_present {
        ensure!(
            response.header_values(name).next().is_some(),
            "header `{name}` is missing"
        );
    }
    for name in &expect.headers_absent {
        ensure!(
            response.header_values(name).next().is_none(),
            "header `{name}` must not be present"
        );
    }
    if let Some(body) = expect.body.bytes()? {
        ensure!(
            response.body == body,
            "body {} (expected {})",
            show(&response.body),
            show(&body)
        );
    }
    if let Some(part) = &expect.body_contains {
        ensure!(
            String::from_utf8_lossy(&response.body).contains(part.as_str()),
            "body {} does not contain {part:?}",
            show(&response.body)
        );
    }
    if let Some(len) = expect.body_len {
        ensure!(
            response.body.len() == len,
            "body of {} bytes (expected {len})",
            response.body.len()
        );
    }
    if expect.body_empty {
        ensure!(
            response.body.is_empty(),
            "body {} (expected none)",
            show(&response.body)
        );
    }
    Ok(())
}
