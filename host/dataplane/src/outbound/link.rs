//! A connection and, for `https`, its TLS session: what the HTTP code reads and writes.
//! rustls does no I/O of its own: records go through the connection's operations on the ring.

use std::io::{self, Read, Write};
use std::time::Instant;

use percore_engine::{Origin, OutboundError};
use rustls::ClientConnection;

use super::client::{Failure, READ_SIZE, Stream, is_reset};
use super::reactor::{self, Tls};

/// A connection and, for `https`, its TLS session: what the HTTP code reads and writes.
pub(super) struct Link {
    pub(super) stream: Stream,
    pub(super) tls: Tls,
}

impl Link {
    pub(super) fn keep(mut self, origin: &Origin) {
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
        tls.writer()
            .write_all(&bytes)
            .map_err(|e| OutboundError::Protocol(format!("TLS: {e}")))?;
        // The handshake first (the request waits in rustls meanwhile), then the request.
        flush_tls(&self.stream, tls, deadline).await?;
        while tls.is_handshaking() {
            let mut raw = Vec::new();
            match self.stream.recv(&mut raw, READ_SIZE, deadline).await {
                Ok(0) => {
                    return Err(OutboundError::Connect(
                        "TLS: the origin closed the connection during the handshake".into(),
                    )
                    .into());
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    return Err(OutboundError::Timeout.into());
                }
                Err(e) => return Err(OutboundError::Connect(format!("TLS: {e}")).into()),
            }
            feed_tls(tls, &raw).map_err(|e| OutboundError::Connect(format!("TLS: {e}")))?;
            flush_tls(&self.stream, tls, deadline).await?;
        }
        flush_tls(&self.stream, tls, deadline).await
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
        let Some(tls) = self.tls.as_mut() else {
            return match self.stream.recv(data, want, deadline).await {
                Ok(0) => Ok(false),
                Ok(n) => {
                    *received += n;
                    Ok(true)
                }
                Err(e) => Err(failed(e, *received)),
            };
        };
        loop {
            let start = data.len();
            data.resize(start + want.max(4096), 0);
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
                    return Ok(false);
                }
                Err(e) => {
                    data.truncate(start);
                    return Err(OutboundError::Protocol(format!("TLS: {e}")).into());
                }
            }
            let mut raw = Vec::new();
            match self.stream.recv(&mut raw, READ_SIZE, deadline).await {
                Ok(0) => {
                    // Tell rustls the transport ended; its reader then says how.
                    let _ = tls.read_tls(&mut &[][..]);
                }
                Ok(_) => {
                    feed_tls(tls, &raw)
                        .map_err(|e| OutboundError::Protocol(format!("TLS: {e}")))?;
                    flush_tls(&self.stream, tls, deadline).await?;
                }
                Err(e) => return Err(failed(e, *received)),
            }
        }
    }
}

/// Hand received TLS records to rustls.
fn feed_tls(tls: &mut ClientConnection, mut raw: &[u8]) -> Result<(), String> {
    while !raw.is_empty() {
        tls.read_tls(&mut raw).map_err(|e| e.to_string())?;
        tls.process_new_packets().map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Send what rustls has to send.
async fn flush_tls(
    stream: &Stream,
    tls: &mut ClientConnection,
    deadline: Instant,
) -> Result<(), Failure> {
    while tls.wants_write() {
        let mut out = Vec::new();
        tls.write_tls(&mut out)
            .map_err(|e| OutboundError::Protocol(format!("TLS: {e}")))?;
        stream.send_all(out, deadline).await?;
    }
    Ok(())
}
