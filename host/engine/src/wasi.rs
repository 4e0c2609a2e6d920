//! The closed WASI sandbox for guests built against WASI (wasm32-wasip1/-wasip2 std guests,
//! componentize-py, componentize-js): no files, no environment, no arguments, no sockets,
//! empty stdin. What the guest writes to stdout and stderr becomes log records.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

/// Which stream a guest wrote to.
#[derive(Debug, Clone, Copy)]
enum Stream {
    Stdout,
    Stderr,
}

/// Bytes a guest wrote to stdout and stderr during one request, capped.
#[derive(Debug, Default)]
pub(crate) struct CapturedOutput {
    pub(crate) stdout: Vec<u8>,
    pub(crate) stderr: Vec<u8>,
    /// Bytes dropped because the cap was reached.
    pub(crate) dropped: usize,
    cap: usize,
}

/// Shared between the store data and the WASI stream objects, which wasmtime-wasi requires to be
/// `Send` and `'static`. Locked once per guest write, never on a request that prints nothing.
pub(crate) type SharedOutput = Arc<Mutex<CapturedOutput>>;

pub(crate) fn new_output(cap: usize) -> SharedOutput {
    Arc::new(Mutex::new(CapturedOutput {
        cap,
        ..CapturedOutput::default()
    }))
}

#[derive(Clone)]
struct GuestStream {
    stream: Stream,
    output: SharedOutput,
}

impl GuestStream {
    fn push(&self, bytes: &[u8]) {
        let mut out = self.output.lock().unwrap_or_else(|p| p.into_inner());
        let room = out.cap.saturating_sub(out.stdout.len() + out.stderr.len());
        let take = bytes.len().min(room);
        out.dropped += bytes.len() - take;
        match self.stream {
            Stream::Stdout => out.stdout.extend_from_slice(&bytes[..take]),
            Stream::Stderr => out.stderr.extend_from_slice(&bytes[..take]),
        }
    }
}

impl IsTerminal for GuestStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestStream {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl OutputStream for GuestStream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        // Always writable: past the cap, bytes are counted and dropped rather than blocking or
        // failing the guest.
        Ok(64 << 10)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestStream {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for GuestStream {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.push(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// A WASI context with nothing in it but clocks, randomness and the captured stdout/stderr.
pub(crate) fn closed_ctx(output: &SharedOutput) -> WasiCtx {
    closed_builder(output).build()
}

/// The builder of [`closed_ctx`], for kinds of guest that get more (an environment, stdin).
pub(crate) fn closed_builder(output: &SharedOutput) -> WasiCtxBuilder {
    let mut builder = WasiCtx::builder();
    builder
        .stdout(GuestStream {
            stream: Stream::Stdout,
            output: output.clone(),
        })
        .stderr(GuestStream {
            stream: Stream::Stderr,
            output: output.clone(),
        })
        .allow_ip_name_lookup(false)
        .allow_tcp(false)
        .allow_udp(false)
        .socket_addr_check(|_, _| Box::pin(async { false }));
    builder
}

/// A command guest's stdout: the response, kept whole up to a cap. Past the cap the stream is
/// closed (the guest's next write fails) and the overflow remembered, so the request ends as
/// "response too large", never with unbounded host memory.
#[derive(Debug, Clone, Default)]
pub(crate) struct ResponseStdout {
    inner: Arc<Mutex<StdoutBuffer>>,
}

#[derive(Debug, Default)]
struct StdoutBuffer {
    bytes: Vec<u8>,
    cap: usize,
    /// Bytes the guest tried to write past the cap.
    overflow: usize,
}

impl ResponseStdout {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(StdoutBuffer {
                bytes: Vec::new(),
                cap,
                overflow: 0,
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StdoutBuffer> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Take what was written: the bytes, and how many bytes were refused past the cap.
    pub(crate) fn take(&self) -> (Vec<u8>, usize) {
        let mut buffer = self.lock();
        let overflow = std::mem::take(&mut buffer.overflow);
        (std::mem::take(&mut buffer.bytes), overflow)
    }

    /// Append, or refuse everything once the cap would be passed.
    fn push(&self, bytes: &[u8]) -> bool {
        let mut buffer = self.lock();
        if buffer.overflow > 0 || buffer.bytes.len() + bytes.len() > buffer.cap {
            buffer.overflow += bytes.len().max(1);
            return false;
        }
        buffer.bytes.extend_from_slice(bytes);
        true
    }
}

impl IsTerminal for ResponseStdout {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for ResponseStdout {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl OutputStream for ResponseStdout {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        if self.push(&bytes) {
            Ok(())
        } else {
            Err(StreamError::Closed)
        }
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        let buffer = self.lock();
        if buffer.overflow > 0 {
            return Err(StreamError::Closed);
        }
        // Never 0: a guest told "0 bytes writable" would wait for readiness for ever. A write
        // past the cap is refused instead.
        Ok(64 << 10)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for ResponseStdout {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for ResponseStdout {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::task::Poll::Ready(if self.push(buf) {
            Ok(buf.len())
        } else {
            Err(std::io::ErrorKind::StorageFull.into())
        })
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}
