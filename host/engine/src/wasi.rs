//! The closed WASI sandbox for guests built against WASI (wasm32-wasip1/-wasip2 std guests,
//! componentize-py, componentize-js): no files, no environment, no arguments, no sockets,
//! empty stdin. What the guest writes to stdout and stderr becomes log records.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder};

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

/// Where a guest's output stream goes: the log capture, or a command's response.
pub(crate) trait Sink: Clone + Send + Sync + 'static {
    /// Take bytes; `false` refuses them, and the guest's write fails.
    fn push(&self, bytes: &[u8]) -> bool;
    /// The stream refuses everything from now on.
    fn closed(&self) -> bool {
        false
    }
    /// What a refused write gets.
    fn refusal(&self) -> StreamError {
        StreamError::Closed
    }
}

impl Sink for GuestStream {
    fn push(&self, bytes: &[u8]) -> bool {
        GuestStream::push(self, bytes);
        // Past the cap, bytes are counted and dropped rather than blocking or failing the guest.
        true
    }
}

/// A [`Sink`] as every kind of WASI output stream (p2 streams, p3's async writer).
#[derive(Clone)]
pub(crate) struct Output<S>(pub(crate) S);

impl<S: Sink> IsTerminal for Output<S> {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl<S: Sink> StdoutStream for Output<S> {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl<S: Sink> OutputStream for Output<S> {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        if self.0.push(&bytes) {
            Ok(())
        } else {
            Err(self.0.refusal())
        }
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        if self.0.closed() {
            return Err(self.0.refusal());
        }
        // Never 0: a guest told "0 bytes writable" would wait for readiness for ever; a write
        // the sink cannot take is refused instead.
        Ok(64 << 10)
    }
}

#[wasmtime_wasi::async_trait]
impl<S: Sink> Pollable for Output<S> {
    async fn ready(&mut self) {}
}

impl<S: Sink> tokio::io::AsyncWrite for Output<S> {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::task::Poll::Ready(if self.0.push(buf) {
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

/// A WASI context with nothing in it but clocks, randomness and the captured stdout/stderr.
pub(crate) fn closed_ctx(output: &SharedOutput) -> WasiCtx {
    closed_builder(output).build()
}

/// The builder of [`closed_ctx`], for kinds of guest that get more (an environment, stdin).
pub(crate) fn closed_builder(output: &SharedOutput) -> WasiCtxBuilder {
    let mut builder = WasiCtx::builder();
    builder
        .stdout(Output(GuestStream {
            stream: Stream::Stdout,
            output: output.clone(),
        }))
        .stderr(Output(GuestStream {
            stream: Stream::Stderr,
            output: output.clone(),
        }))
        .allow_ip_name_lookup(false)
        .allow_tcp(false)
        .allow_udp(false)
        .socket_addr_check(|_, _| Box::pin(async { false }));
    builder
}

/// A command guest's stdout: the response, kept whole up to a cap. A write past the cap stops
/// the guest and the overflow is remembered, so the request ends as "response too large",
/// never with unbounded host memory.
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

impl Sink for ResponseStdout {
    fn push(&self, bytes: &[u8]) -> bool {
        ResponseStdout::push(self, bytes)
    }

    fn closed(&self) -> bool {
        self.lock().overflow > 0
    }

    /// The guest is stopped at once: its output can no longer be a response, and a guest that
    /// ignored write errors would only burn its CPU budget.
    fn refusal(&self) -> StreamError {
        StreamError::trap("stdout went past the response size limit")
    }
}
