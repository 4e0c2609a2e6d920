//! A call's clock and its budgets: the epoch check that stops a guest past its CPU budget or
//! wall deadline, and the turning of a guest's error (such a stop included) into a [`Fault`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use percore_rt::cpu::thread_cpu_time;
use wasmtime::{Store, UpdateDeadline};

use crate::host::{CallClock, CoreDump, HostState, LogLevel, LogRecord, LogSource};
use crate::{Fault, TimeoutKind};

/// Why the epoch callback stopped a guest.
#[derive(Debug)]
struct Interrupted(TimeoutKind);

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "interrupted: {:?} limit reached", self.0)
    }
}

impl std::error::Error for Interrupted {}

/// CPU time of a call that can yield, shared between its store (read by the epoch callback)
/// and the [`crate::Running`] that polls it (which writes it). The first poll is not measured
/// (reading the thread's CPU clock costs about 0.5 µs here, as much as a whole short call): its
/// slice is estimated as before from the call's wall time; a call still running after it is
/// measured exactly, poll by poll, whether it stopped at the end of a slice or to wait.
#[derive(Debug, Default)]
pub(crate) struct SliceCpu {
    /// CPU time of the polls that ended (the first one estimated by its wall time), ns.
    spent_ns: AtomicU64,
    /// The thread's CPU clock when the poll in progress started, ns; 0 during the first poll.
    poll_start_ns: AtomicU64,
}

impl SliceCpu {
    pub(crate) fn reset(&self) {
        self.spent_ns.store(0, Ordering::Relaxed);
        self.poll_start_ns.store(0, Ordering::Relaxed);
    }

    /// The first poll ended after `wall` without the call ending.
    pub(crate) fn first_poll_ended(&self, wall: Duration) {
        self.spent_ns
            .store(wall.as_nanos() as u64, Ordering::Relaxed);
    }

    /// A later poll starts now.
    pub(crate) fn poll_started(&self) {
        let now = thread_cpu_time().as_nanos() as u64;
        self.poll_start_ns.store(now.max(1), Ordering::Relaxed);
    }

    /// A later poll ended without the call ending.
    pub(crate) fn poll_ended(&self) {
        let now = thread_cpu_time().as_nanos() as u64;
        let start = self.poll_start_ns.load(Ordering::Relaxed);
        self.spent_ns
            .fetch_add(now.saturating_sub(start), Ordering::Relaxed);
    }

    /// The call's CPU time when the thread's CPU clock reads `now`, or `None` during the first
    /// poll.
    fn used(&self, now: Duration) -> Option<Duration> {
        let start = self.poll_start_ns.load(Ordering::Relaxed);
        (start != 0).then(|| {
            Duration::from_nanos(self.spent_ns.load(Ordering::Relaxed))
                + now.saturating_sub(Duration::from_nanos(start))
        })
    }
}

/// The CPU time of a call during its first poll: from the thread's CPU clock at the call's
/// first tick, estimated then as the clock minus the wall time elapsed (which can only
/// overstate it).
fn first_poll_cpu(clock: &mut CallClock, now: Duration) -> Duration {
    let start = *clock
        .cpu_start
        .get_or_insert(now.saturating_sub(clock.wall_start.elapsed()));
    now.saturating_sub(start)
}

/// Runs at every epoch tick while a guest runs: stop it once it is over budget, and make a
/// call that can yield do so at the end of its slice.
pub(crate) fn epoch_check(
    mut ctx: wasmtime::StoreContextMut<'_, HostState>,
) -> wasmtime::Result<UpdateDeadline> {
    let now = thread_cpu_time();
    let state = ctx.data_mut();
    let clock = &mut state.clock;
    let used = match state.slices.used(now) {
        Some(used) => used,
        None => first_poll_cpu(clock, now),
    };
    if used > state.limits.cpu_budget {
        return Err(wasmtime::Error::new(Interrupted(TimeoutKind::Cpu)));
    }
    if clock.wall_start.elapsed() > state.limits.wall_deadline {
        return Err(wasmtime::Error::new(Interrupted(TimeoutKind::Wall)));
    }
    let poll = state.slices.poll_start_ns.load(Ordering::Relaxed);
    if poll != clock.slice_poll {
        // A new poll: a new slice.
        clock.slice_poll = poll;
        clock.slice_ticks = 0;
    }
    clock.slice_ticks += 1;
    if clock.slice.is_some_and(|ticks| clock.slice_ticks >= ticks) {
        clock.slice_ticks = 0;
        clock.yields += 1;
        return Ok(UpdateDeadline::Yield(1));
    }
    Ok(UpdateDeadline::Continue(1))
}

/// A store for one instance, with the deployment's memory cap, the epoch check and the call
/// clock started.
pub(crate) fn new_store(engine: &wasmtime::Engine, state: HostState) -> Store<HostState> {
    let mut store = Store::new(engine, state);
    store.limiter(|state| &mut state.memory);
    store.epoch_deadline_callback(epoch_check);
    start_clock(&mut store);
    store
}

/// A call's outcome with what the guest logged and printed meanwhile; `copies` of the
/// request's `bytes` each (see [`crate::CallStats`]).
pub(crate) fn finish(
    store: &mut Store<HostState>,
    result: Result<crate::Response, Fault>,
    input: crate::InputPath,
    copies: u32,
    bytes: usize,
) -> crate::Invocation {
    let state = store.data_mut();
    let stats = crate::CallStats {
        input,
        cpu: call_cpu(&state.clock, &state.slices),
        wall: state.clock.wall_start.elapsed(),
        request_copies: copies,
        request_bytes_copied: copies as usize * bytes,
        yields: state.clock.yields,
        outbound: state.outbound.stats().unwrap_or(state.outbound_stats),
    };
    state.drain_output();
    crate::Invocation {
        result,
        logs: std::mem::take(&mut state.logs),
        logs_dropped: state.logs_dropped,
        coredump: state.coredump.take(),
        stats,
    }
}

pub(crate) fn start_clock(store: &mut Store<HostState>) {
    let state = store.data_mut();
    state.memory.denied = false;
    state.clock = CallClock::started();
    state.slices.reset();
    state.outbound_stats = crate::OutboundStats::default();
    state
        .outbound
        .start_call(state.clock.wall_start + state.limits.wall_deadline);
    store.set_epoch_deadline(1);
}

/// CPU time of the call so far (see [`crate::CallStats::cpu`]).
pub(crate) fn call_cpu(clock: &CallClock, slices: &SliceCpu) -> Duration {
    if slices.poll_start_ns.load(Ordering::Relaxed) != 0 {
        return slices.used(thread_cpu_time()).unwrap_or_default();
    }
    match clock.cpu_start {
        Some(start) => thread_cpu_time().saturating_sub(start),
        None => clock.wall_start.elapsed(),
    }
}

/// Turn an error from guest code into a [`Fault`].
pub(crate) fn classify(store: &mut Store<HostState>, error: wasmtime::Error) -> Fault {
    store.data_mut().drain_output();
    take_coredump(store, &error);
    let state = store.data();
    if let Some(Interrupted(kind)) = error.downcast_ref::<Interrupted>() {
        let limit = match kind {
            TimeoutKind::Cpu => state.limits.cpu_budget,
            TimeoutKind::Wall => state.limits.wall_deadline,
        };
        return Fault::Timeout { kind: *kind, limit };
    }
    if state.memory.denied {
        return Fault::OutOfMemory {
            limit: state.memory.limit,
        };
    }
    let what = match error.downcast_ref::<wasmtime::Trap>() {
        Some(trap) => trap.to_string(),
        None => error.root_cause().to_string(),
    };
    let message = match panic_message(&state.logs) {
        Some(panic) => format!("{what} ({panic})"),
        None => what,
    };
    Fault::Trap { message }
}

/// Serialise the trap's core dump while the guest's memories are as the trap left them, if the
/// deployment asked for dumps and its memories fit the cap.
fn take_coredump(store: &mut Store<HostState>, error: &wasmtime::Error) {
    let limit = store.data().limits.coredump_max_bytes;
    if limit == 0 {
        return;
    }
    let Some(dump) = error.downcast_ref::<wasmtime::WasmCoreDump>() else {
        return;
    };
    let memory: usize = dump.memories().iter().map(|m| m.data_size(&*store)).sum();
    let coredump = if memory > limit {
        CoreDump::TooLarge { memory, limit }
    } else {
        CoreDump::Dump(dump.serialize(&mut *store, "percore-guest"))
    };
    store.data_mut().coredump = Some(coredump);
}

/// The guest's panic message, if it left one: the SDK's panic hook logs it through the log import
/// just before the trap; Rust's default hook prints it to stderr, over two lines.
fn panic_message(logs: &[LogRecord]) -> Option<String> {
    if let Some(record) = logs.iter().rev().find(|r| {
        r.source == LogSource::Log && r.level == LogLevel::Error && r.message.contains("panicked")
    }) {
        return Some(record.message.clone());
    }
    let at = logs
        .iter()
        .rposition(|r| r.source == LogSource::Stderr && r.message.contains("panicked"))?;
    let mut message = logs[at].message.trim_end_matches(':').to_owned();
    if let Some(next) = logs
        .get(at + 1)
        .filter(|r| r.source == LogSource::Stderr && !r.message.starts_with("note:"))
    {
        message.push_str(": ");
        message.push_str(&next.message);
    }
    Some(message)
}
