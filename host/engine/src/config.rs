//! Engine and per-deployment settings.

use std::sync::Arc;
use std::time::Duration;

/// Limits applied to every request of one deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest linear memory one instance may grow to, in bytes.
    pub memory_bytes: usize,
    /// CPU time one request may use.
    pub cpu_budget: Duration,
    /// Wall-clock time one request may take.
    pub wall_deadline: Duration,
    /// Largest response body accepted from a guest.
    pub max_response_body: usize,
    /// Most response header fields accepted from a guest.
    pub max_response_headers: usize,
    /// Bytes of header names and values accepted from a guest.
    pub max_response_header_bytes: usize,
    /// Log records kept per request (from the log import and from stdout/stderr lines).
    pub max_log_records: usize,
    /// Bytes of log text (messages, keys, values) kept per request.
    pub max_log_bytes: usize,
    /// A trap writes a wasm core dump when the guest's memories are at most this many bytes;
    /// 0 (the default) writes none.
    pub coredump_max_bytes: usize,
    /// Bytes of stdout and stderr kept per request.
    pub max_output_bytes: usize,
    /// What outbound HTTP requests the guest may make (none by default).
    pub outbound: Arc<crate::OutboundPolicy>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: 64 << 20,
            cpu_budget: Duration::from_millis(100),
            wall_deadline: Duration::from_secs(1),
            max_response_body: 16 << 20,
            max_response_headers: 256,
            max_response_header_bytes: 64 << 10,
            max_log_records: 100,
            max_log_bytes: 256 << 10,
            coredump_max_bytes: 0,
            max_output_bytes: 64 << 10,
            outbound: Arc::default(),
        }
    }
}

/// How the engine itself is set up. Artifacts compiled by one configuration load only into
/// an engine with the same configuration.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Period of the epoch clock: the granularity of CPU budgets and deadlines.
    pub epoch_tick: Duration,
    /// Virtual address space reserved per linear memory. With 4 GiB and the guard below,
    /// compiled code needs no bounds checks for 32-bit memories.
    pub memory_reservation: u64,
    /// Inaccessible bytes after each reservation.
    pub memory_guard: u64,
    /// Wasm stack a guest may use before it traps with a stack overflow.
    pub max_wasm_stack: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            epoch_tick: Duration::from_millis(1),
            memory_reservation: 4 << 30,
            memory_guard: 32 << 20,
            max_wasm_stack: 512 << 10,
        }
    }
}

impl EngineConfig {
    pub(crate) fn wasmtime_config(&self) -> wasmtime::Config {
        let mut config = wasmtime::Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .max_wasm_stack(self.max_wasm_stack)
            .cranelift_opt_level(wasmtime::OptLevel::Speed)
            // Host-owned memories (so the host can write the input region) need the on-demand
            // allocator and no copy-on-write memory images.
            .with_host_memory(Arc::new(percore_rt::host_memory::HostMemoryCreator))
            // Fiber stacks of calls that can yield come from a per-thread (per-core) pool, not
            // a new mapping per call of a fresh instance.
            .with_host_stack(percore_rt::stacks::StackPool::creator())
            .memory_init_cow(false)
            .memory_reservation(self.memory_reservation)
            .memory_guard_size(self.memory_guard)
            .memory_may_move(false)
            // wasmtime's `component-model-async` feature (for WASIp3) turns this on by default;
            // percore's guests run without it, and artifacts stay loadable across that change.
            .concurrency_support(false)
            // A trap carries what a core dump needs (frames, memories); one is serialised only
            // for deployments that ask (`Limits::coredump_max_bytes`).
            .coredump_on_trap(true);
        config
    }

    /// The same for WASIp3 guests, which need the component model's concurrency
    /// (`Store::run_concurrent`, async lifts and lowers, streams and futures).
    pub(crate) fn p3_wasmtime_config(&self) -> wasmtime::Config {
        let mut config = self.wasmtime_config();
        config.concurrency_support(true);
        config
    }
}
