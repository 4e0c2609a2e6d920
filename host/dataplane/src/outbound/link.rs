//! A connection and, for `https`, its TLS session: what the HTTP code reads and writes.
//! rustls does no I/O of its own: records go through the connection's operations on the ring,
//! and are handed to rustls a piece at a time, the decrypted bytes read out in between (so
//! its buffer of received plaintext never fills).

use std::io::{self, Read, Write};
use std::time::Instant;

use percore_engine::{Origin, OutboundError};
use rustls::ClientConnection;

use super::client::{Failure, READ_SIZE, Stream, is_reset};
use super::reactor::{self, Tls};

/// Most decrypted bytes read out of rustls at once (it holds at most a record, 16 KiB).
const TLS_READ: usize = 32 << 10;

/// A connection and, for `https`, its TLS session: what the HTTP code reads and writes.
pub(super) struct Link {
    stream: Stream,
    tls: Tls,
    /// TLS records received and not yet taken by rustls (from `raw_at` on).
    raw: Vec<u8>,
    raw_at: usize,
    /// The TLS session ended without `close_notify` (a body read until the end may be cut).
    pub(super) truncated: bool,
}

/// Why feeding rustls failed.
enum Feed {
    Io(io::Error),
    Tls(String),
}

impl Link {
    pub(super) fn new(stream: Stream, tls: Tls) -> Self {
        Self {
            stream,
            tls,
            raw: Vec::new(),
            raw_at: 0,
            truncated: false,
        }
    }

    /// Keep the connection for the next request to `origin` (closed instead if records are
    /// left over, which a clean end never leaves).
    pub(super) fn keep(mut self, origin: &Origin) {
        if self.raw_at < self.raw.len() {
            return;
        }
        self.stream.kept = true;
        let tls = self.tls.take();
        reactor::with(|r| r.put_idle(origin, self.stream.token, tls, Instant::now()));
    }

    /// Send all of `bytes` (through TLS for `https`).
    pub(super) async fn send_all(
        &mut self,
        bytes: Vec<u8>,
        deadline: Instant,
    ) -> Result<(), Failure> {
        let Some(tls) = self.tls.as_mut() else {
            return self.stream.send_all(bytes, deadline).await;
        };
        // The session's buffer is unbounded (see `connect`): the whole request is taken.
        tls.writer()
            .write_all(&bytes)
            .map_err(|e| OutboundError::Protocol(format!("TLS: {e}")))?;
        // The handshake first (the request waits in rustls meanwhile), then the request.
        self.flush(deadline).await?;
        while self.tls.as_ref().is_some_and(|t| t.is_handshaking()) {
            match self.feed(deadline).await {
                Ok(true) => {}
                Ok(false) => {
                    return Err(OutboundError::Connect(
                        "TLS: the origin closed the connection during the handshake".into(),
                    )
                    .into());
                }
                Err(Feed::Io(e)) if e.kind() == io::ErrorKind::TimedOut => {
                    return Err(OutboundError::Timeout.into());
                }
                Err(Feed::Io(e)) => return Err(OutboundError::Connect(format!("TLS: {e}")).into()),
                Err(Feed::Tls(e)) => return Err(OutboundError::Connect(format!("TLS: {e}")).into()),
            }
        }
        self.flush(deadline).await
    }

    /// Receive more response bytes onto `data` (decrypted for `https`). `Ok(false)`: the
    /// origin closed its side.
    pub(super) async fn recv(
        &mut self,
        data: &mut Vec<u8>,
        want: usize,
        deadline: Instant,
        received: &mut usize,
    ) -> Result<bool, Failure> {
        let failed = |e: io::Error, received: usize| {
            if e.kind() == io::ErrorKind::TimedOut {
                Failure::Error(OutboundError::Timeout)
            } else if received == 0 && is_reset(&e) {
                Failure::Stale
            } else {
                Failure::Error(OutboundError::Protocol(format!(
                    "receiving the response failed: {e}"
                )))
            }
        };
        if self.tls.is_none() {
            return match self.stream.recv(data, want, deadline).await {
                Ok(0) => Ok(false),
                Ok(n) => {
                    *received += n;
                    Ok(true)
                }
                Err(e) => Err(failed(e, *received)),
            };
        }
        let mut ended = false;
        loop {
            let Some(tls) = self.tls.as_mut() else {
                return Ok(false);
            };
            let start = data.len();
            data.resize(start + want.clamp(4096, TLS_READ), 0);
            let read = tls.reader().read(&mut data[start..]);
            match read {
                Ok(n) => {
                    data.truncate(start + n);
                    *received += n;
                    return Ok(n > 0);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => data.truncate(start),
                // Closed without close_notify: the framing decides whether that is an end.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    data.truncate(start);
                    self.truncated = true;
                    return Ok(false);
                }
                Err(e) => {
                    data.truncate(start);
                    return Err(OutboundError::Protocol(format!("TLS: {e}")).into());
                }
            }
            if ended {
                // The session or the transport ended and rustls has nothing more to give.
                self.truncated = true;
                return Ok(false);
            }
            match self.feed(deadline).await {
                Ok(true) => {}
                Ok(false) => ended = true,
                Err(Feed::Io(e)) => return Err(failed(e, *received)),
                Err(Feed::Tls(e)) => {
                    return Err(OutboundError::Protocol(format!("TLS: {e}")).into());
                }
            }
        }
    }

    /// Give rustls the next piece of the records received, receiving more first when none is
    /// left, and send what it answers. `Ok(false)`: the session or the transport ended.
    async fn feed(&mut self, deadline: Instant) -> Result<bool, Feed> {
        if self.raw_at >= self.raw.len() {
            self.raw.clear();
            self.raw_at = 0;
            let n = self
                .stream
                .recv(&mut self.raw, READ_SIZE, deadline)
                .await
                .map_err(Feed::Io)?;
            if n == 0 {
                if let Some(tls) = self.tls.as_mut() {
                    // The transport ended: rustls's reader then says whether cleanly.
                    let _ = tls.read_tls(&mut &[][..]);
                }
                return Ok(false);
            }
        }
        let Some(tls) = self.tls.as_mut() else {
            return Ok(false);
        };
        let taken = tls
            .read_tls(&mut &self.raw[self.raw_at..])
            .map_err(|e| Feed::Tls(e.to_string()))?;
        if taken == 0 {
            // rustls takes nothing more once the peer closed the session.
            return Ok(false);
        }
        self.raw_at += taken;
        tls.process_new_packets()
            .map_err(|e| Feed::Tls(e.to_string()))?;
        match self.flush(deadline).await {
            Ok(()) => Ok(true),
            Err(Failure::Error(OutboundError::Timeout)) => {
                Err(Feed::Io(io::ErrorKind::TimedOut.into()))
            }
            Err(_) => Err(Feed::Tls("sending TLS records failed".into())),
        }
    }

    /// Send what rustls has to send.
    async fn flush(&mut self, deadline: Instant) -> Result<(), Failure> {
        let Some(tls) = self.tls.as_mut() else {
            return Ok(());
        };
        while tls.wants_write() {
            let mut out = Vec::new();
            tls.write_tls(&mut out)
                .map_err(|e| OutboundError::Protocol(format!("TLS: {e}")))?;
            self.stream.send_all(out, deadline).await?;
        }
        Ok(())
    }
}

/// A new TLS session for `origin`, whose buffer of plaintext to send is unbounded: a request
/// is written whole before the handshake ends (rustls's default cap, 64 KiB, would refuse a
/// larger one).
pub(super) fn session(
    config: std::sync::Arc<rustls::ClientConfig>,
    origin: &Origin,
) -> Result<Box<ClientConnection>, OutboundError> {
    let name = rustls::pki_types::ServerName::try_from(origin.host.clone())
        .map_err(|e| OutboundError::InvalidRequest(format!("TLS server name: {e}")))?;
    let mut session = ClientConnection::new(config, name)
        .map_err(|e| OutboundError::Connect(format!("TLS: {e}")))?;
    session.set_buffer_limit(None);
    Ok(Box::new(session))
}
