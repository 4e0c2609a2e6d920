//! What the host gives a guest: the `edge:handler` imports, the closed WASI sandbox, and the
//! per-instance state behind them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::Limits;
use crate::bindings::{self, clocks, config, log, random};
use crate::wasi::{self, SharedOutput};

/// Severity of a guest log record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Finest detail.
    Trace,
    /// Debugging.
    Debug,
    /// Normal operation.
    Info,
    /// Something odd.
    Warn,
    /// Something failed.
    Error,
}

impl LogLevel {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

impl From<log::Level> for LogLevel {
    fn from(level: log::Level) -> Self {
        match level {
            log::Level::Trace => LogLevel::Trace,
            log::Level::Debug => LogLevel::Debug,
            log::Level::Info => LogLevel::Info,
            log::Level::Warn => LogLevel::Warn,
            log::Level::Error => LogLevel::Error,
        }
    }
}

/// Where a guest log record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogSource {
    /// The `edge:handler/log` import.
    Log,
    /// A line the guest wrote to WASI stdout.
    Stdout,
    /// A line the guest wrote to WASI stderr.
    Stderr,
}

/// A wasm core dump of a guest that trapped ([the tool-conventions format][spec], which
/// `wasm-tools` and `wasmgdb` read), or why none was written.
///
/// [spec]: https://github.com/WebAssembly/tool-conventions/blob/main/Coredump.md
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoreDump {
    /// The dump's bytes.
    Dump(Vec<u8>),
    /// The guest's memories were larger than the deployment's cap.
    TooLarge {
        /// Bytes of memory.
        memory: usize,
        /// The cap.
        limit: usize,
    },
}

/// One record a guest logged during a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// Severity (stdout lines are `info`, stderr lines `warn`).
    pub level: LogLevel,
    /// The message.
    pub message: String,
    /// Key-value fields.
    pub fields: Vec<(String, String)>,
    /// Where it came from.
    pub source: LogSource,
}

impl LogRecord {
    /// Bytes of text it holds (message, keys and values).
    pub fn size(&self) -> usize {
        self.message.len()
            + self
                .fields
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>()
    }
}

/// Bytes of header fields one wasi:http `fields` value may hold (in memory, so about twice what
/// they take on the wire).
const FIELD_SIZE_LIMIT: usize = 256 << 10;
/// Resources (streams, bodies, fields, pollables) one instance may hold at once.
const MAX_RESOURCES: usize = 10_000;

/// Longest message or field kept from one log record; longer ones are cut.
const MAX_LOG_TEXT: usize = 4096;
/// Most random bytes one call may ask for.
const MAX_RANDOM_BYTES: u32 = 65536;

/// Refuses memory growth past the deployment's cap and remembers that it did, so that the trap
/// that usually follows is reported as "out of memory".
#[derive(Debug)]
pub(crate) struct MemoryCap {
    pub(crate) limit: usize,
    pub(crate) denied: bool,
}

impl wasmtime::ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.denied = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1 << 20)
    }
}

/// The clock of the call in progress, read by the epoch callback. A call that can yield runs
/// in slices; its CPU time across them is kept in [`crate::budget::SliceCpu`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct CallClock {
    pub(crate) wall_start: Instant,
    /// The thread's CPU clock at the start of the call, as of the call's first epoch tick (the
    /// thread CPU clock is a system call of about 0.5 µs here, too dear to read on every call):
    /// then estimated as the CPU clock minus the wall time elapsed, which can only overstate
    /// the CPU used. `None` until that tick. Used during the call's first poll only.
    pub(crate) cpu_start: Option<Duration>,
    /// Epoch ticks a slice runs before the call yields; `None`: the call cannot yield (it was
    /// not made as an asynchronous call the caller polls).
    pub(crate) slice: Option<u32>,
    /// Epoch ticks seen in the current slice.
    pub(crate) slice_ticks: u32,
    /// The poll the current slice belongs to (`SliceCpu`'s start of that poll).
    pub(crate) slice_poll: u64,
    /// Times the call yielded.
    pub(crate) yields: u32,
}

impl CallClock {
    /// A clock started now, for a call that cannot yield.
    pub(crate) fn started() -> Self {
        Self {
            wall_start: Instant::now(),
            cpu_start: None,
            slice: None,
            slice_ticks: 0,
            slice_poll: 0,
            yields: 0,
        }
    }
}

/// Per-instance host state: the store's data.
pub struct HostState {
    wasi: WasiCtx,
    /// The WASI preview 1 context of a command run as a core module (none for components).
    p1: Option<WasiP1Ctx>,
    pub(crate) table: ResourceTable,
    http: WasiHttpCtx,
    /// wasi:http's outgoing requests, through the same client and policy as `fetch`.
    pub(crate) outbound: crate::outbound::WasiHooks,
    pub(crate) output: SharedOutput,
    pub(crate) memory: MemoryCap,
    pub(crate) limits: Arc<Limits>,
    config: Arc<BTreeMap<String, String>>,
    pub(crate) logs: Vec<LogRecord>,
    pub(crate) logs_dropped: usize,
    /// The core dump of this call's trap, if the deployment asked for one.
    pub(crate) coredump: Option<CoreDump>,
    pub(crate) clock: CallClock,
    /// CPU time of a call that yields, shared with the [`crate::Running`] that polls it.
    pub(crate) slices: Arc<crate::budget::SliceCpu>,
    /// What this call's outbound requests did.
    pub(crate) outbound_stats: crate::OutboundStats,
    monotonic_origin: Instant,
}

impl HostState {
    pub(crate) fn new(limits: Arc<Limits>, config: Arc<BTreeMap<String, String>>) -> Self {
        let output = wasi::new_output(limits.max_output_bytes);
        Self::with_wasi(limits, config, output.clone(), wasi::closed_ctx(&output))
    }

    /// State whose WASI context was built by the caller (which captured `output` in it): the
    /// wasi:http and command kinds of guest see an environment, and commands a stdin.
    pub(crate) fn with_wasi(
        limits: Arc<Limits>,
        config: Arc<BTreeMap<String, String>>,
        output: SharedOutput,
        wasi: WasiCtx,
    ) -> Self {
        let mut http = WasiHttpCtx::new();
        http.set_field_size_limit(FIELD_SIZE_LIMIT);
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_RESOURCES);
        Self {
            wasi,
            p1: None,
            table,
            http,
            outbound: crate::outbound::WasiHooks::new(limits.outbound.clone()),
            output,
            memory: MemoryCap {
                limit: limits.memory_bytes,
                denied: false,
            },
            limits,
            config,
            logs: Vec::new(),
            logs_dropped: 0,
            coredump: None,
            clock: CallClock::started(),
            slices: Arc::default(),
            outbound_stats: crate::OutboundStats::default(),
            monotonic_origin: Instant::now(),
        }
    }

    /// State for a preview 1 command module: its WASI context is `p1`; the component WASI
    /// context stays closed and unused.
    pub(crate) fn with_p1(
        limits: Arc<Limits>,
        config: Arc<BTreeMap<String, String>>,
        output: SharedOutput,
        p1: WasiP1Ctx,
    ) -> Self {
        let closed = wasi::closed_ctx(&output);
        let mut state = Self::with_wasi(limits, config, output, closed);
        state.p1 = Some(p1);
        state
    }

    /// The preview 1 context, for the preview 1 linker. Only stores made by [`Self::with_p1`]
    /// instantiate modules linked against it, so it is always there.
    pub(crate) fn p1(&mut self) -> &mut WasiP1Ctx {
        self.p1
            .as_mut()
            .expect("a preview 1 command's store is made with its WASI context")
    }

    /// Keep a record while the request is under its count and byte caps; count it dropped
    /// otherwise.
    pub(crate) fn push_log(&mut self, record: LogRecord) {
        let used: usize = self.logs.iter().map(LogRecord::size).sum();
        if self.logs.len() < self.limits.max_log_records
            && used + record.size() <= self.limits.max_log_bytes
        {
            self.logs.push(record);
        } else {
            self.logs_dropped += 1;
        }
    }

    /// Turn what the guest printed during this call into log records, one per line.
    pub(crate) fn drain_output(&mut self) {
        let (stdout, stderr, dropped) = {
            let mut out = self.output.lock().unwrap_or_else(|p| p.into_inner());
            if out.stdout.is_empty() && out.stderr.is_empty() && out.dropped == 0 {
                return;
            }
            let dropped = std::mem::take(&mut out.dropped);
            (
                std::mem::take(&mut out.stdout),
                std::mem::take(&mut out.stderr),
                dropped,
            )
        };
        for (bytes, level, source) in [
            (stdout, LogLevel::Info, LogSource::Stdout),
            (stderr, LogLevel::Warn, LogSource::Stderr),
        ] {
            for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                self.push_log(LogRecord {
                    level,
                    message: truncate(String::from_utf8_lossy(line).into_owned()),
                    fields: Vec::new(),
                    source,
                });
            }
        }
        if dropped > 0 {
            self.push_log(LogRecord {
                level: LogLevel::Warn,
                message: format!("{dropped} bytes of guest output dropped (cap reached)"),
                fields: Vec::new(),
                source: LogSource::Stderr,
            });
        }
    }
}

fn truncate(mut s: String) -> String {
    if s.len() > MAX_LOG_TEXT {
        let mut end = MAX_LOG_TEXT;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outbound,
        }
    }
}

impl bindings::edge::handler::types::Host for HostState {}

impl log::Host for HostState {
    fn log(&mut self, level: log::Level, message: String, fields: Vec<(String, String)>) {
        self.push_log(LogRecord {
            level: level.into(),
            message: truncate(message),
            fields: fields
                .into_iter()
                .take(32)
                .map(|(k, v)| (truncate(k), truncate(v)))
                .collect(),
            source: LogSource::Log,
        });
    }

    fn enabled(&mut self, _level: log::Level) -> bool {
        self.logs.len() < self.limits.max_log_records
            && self.logs.iter().map(LogRecord::size).sum::<usize>() < self.limits.max_log_bytes
    }
}

impl clocks::Host for HostState {
    fn wall_now(&mut self) -> clocks::Datetime {
        let since = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        clocks::Datetime {
            seconds: since.as_secs(),
            nanoseconds: since.subsec_nanos(),
        }
    }

    fn monotonic_now(&mut self) -> u64 {
        u64::try_from(self.monotonic_origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

impl random::Host for HostState {
    fn get_random_bytes(&mut self, len: u32) -> wasmtime::Result<Vec<u8>> {
        if len > MAX_RANDOM_BYTES {
            wasmtime::bail!(
                "get-random-bytes asked for {len} bytes; the limit is {MAX_RANDOM_BYTES}"
            );
        }
        let mut bytes = vec![0u8; len as usize];
        getrandom::fill(&mut bytes).map_err(|e| wasmtime::format_err!("getrandom: {e}"))?;
        Ok(bytes)
    }

    fn get_random_u64(&mut self) -> u64 {
        getrandom::u64().unwrap_or_else(|_| rand_fallback())
    }
}

fn rand_fallback() -> u64 {
    // getrandom cannot fail on Linux once the pool is initialised; keep the guest running anyway.
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    (nanos as u64).rotate_left(17) ^ 0x9e37_79b9_7f4a_7c15
}

impl config::Host for HostState {
    fn get(&mut self, key: String) -> Option<String> {
        self.config.get(&key).cloned()
    }

    fn get_all(&mut self) -> Vec<(String, String)> {
        self.config
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// Link WASI 0.2 (async) and wasi:http 0.2 into `linker`: what wasi:http and command guests
/// import (Rust std guests import `wasi:filesystem` too, which stays empty).
pub(crate) fn add_wasi_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(linker)?;
    Ok(())
}

/// Link WASI 0.2 and 0.3 with wasi:http of both into `linker`, for WASIp3 guests (as `wasmtime
/// serve` does: Rust's standard library on wasm32-wasip2 still imports WASI 0.2). No files or
/// sockets of 0.3 (refused at deploy by `validate::check_imports`).
pub(crate) fn add_p3_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    add_wasi_to_linker(linker)?;
    wasmtime_wasi_http::p3::add_to_linker(linker)?;
    wasmtime_wasi::p3::clocks::add_to_linker(linker)?;
    wasmtime_wasi::p3::random::add_to_linker(linker)?;
    wasmtime_wasi::p3::cli::add_to_linker(linker)?;
    Ok(())
}

/// Link the `edge:handler` imports (0.2.0 and 0.1.0) and WASI 0.2 into `linker`.
pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    bindings::Handler::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
    crate::contract_v1::add_to_linker(linker)?;
    wasmtime_wasi::p2::add_to_linker_sync(linker)?;
    Ok(())
}
