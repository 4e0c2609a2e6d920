//! Loaded components, their instances, and one request through an instance.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use percore_rt::host_memory::{HostMemoryStore, ResetStats};
use wasmtime::component::Component;

use crate::globals::{self, BoundResets, GlobalResets, Step};
mod exports;
mod outcome;
mod reset_error;
use crate::budget::{call_cpu, classify, new_store, start_clock};
use crate::host::HostState;
use crate::response_check::check_response;
use crate::running::{Running, TimeSlice, block_on};
use crate::{Engine, Error, Fault, Limits, NotResettable, Request, Response};
use exports::{Exports, Pre};
pub use outcome::{CallStats, Invocation};
pub use reset_error::ResetError;

/// Region capacity asked for at first use: small requests fit, and a fresh instance touches
/// one page for it.
const INITIAL_REGION: u32 = 4 << 10;

/// Bytes of written pages a reset copies back; past that it drops the rest, which then faults
/// back in from the snapshot when touched.
pub(crate) const RESET_RESIDENT_BUDGET: usize = 2 << 20;

/// Which way a request reached the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputPath {
    /// Written by the host into the guest's input region.
    Region,
    /// Lowered through the canonical ABI (`handle`).
    Portable,
}

/// Which way the host should send a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InputPreference {
    /// The input region when the host can reach the guest's memory (it can for any component
    /// with one linear memory), else the portable path.
    #[default]
    Region,
    /// Always the portable path.
    Portable,
}

/// A component that passed every check and is linked, ready to instantiate cheaply.
#[derive(Clone)]
pub struct Handler {
    pre: Pre,
    globals: GlobalResets,
}

impl std::fmt::Debug for Handler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handler").finish_non_exhaustive()
    }
}

impl Handler {
    pub(crate) fn new(engine: &Engine, component: Component) -> Result<Self, Error> {
        let pre = engine
            .linker()
            .instantiate_pre(&component)
            .map_err(|e| Error::Link(format!("{e:#}")))?;
        let ty = component.component_type();
        let v2 = ty
            .exports(component.engine())
            .any(|(name, _)| name == crate::validate::GUEST_EXPORTS[0]);
        let pre = Pre::new(pre, v2).map_err(|e| Error::WrongWorld(format!("{e:#}")))?;
        Ok(Self {
            pre,
            globals: GlobalResets::of(&component),
        })
    }

    /// A fresh instance for one deployment, with its limits and configuration values.
    pub fn instantiate(
        &self,
        limits: Arc<Limits>,
        config: Arc<BTreeMap<String, String>>,
    ) -> Result<Instance, Fault> {
        let store = new_store(self.pre.engine(), HostState::new(limits, config));
        // With an asynchronous import linked, instantiation is asynchronous too; nothing in
        // it waits, so it completes in one poll.
        let (mut memories, made) = HostMemoryStore::instantiate(store, |store| {
            let (instance, bindings) = block_on(self.pre.instantiate(store))?;
            let globals = self.globals.bind(store, &instance)?;
            Ok((bindings, globals))
        });
        match made {
            Ok((bindings, globals)) => Ok(Instance {
                memories,
                bindings,
                globals,
                region: None,
                no_region: false,
                usable: true,
                clean_region: None,
                requests: 0,
            }),
            Err(e) => Err(classify(memories.store(), e)),
        }
    }
}

impl Handler {
    /// Run one request on a fresh instance that is dropped afterwards.
    pub fn handle_fresh(
        &self,
        limits: Arc<Limits>,
        config: Arc<BTreeMap<String, String>>,
        request: &Request<'_>,
        preference: InputPreference,
    ) -> Invocation {
        match self.instantiate(limits, config) {
            Ok(mut instance) => instance.handle(request, preference),
            Err(fault) => Invocation {
                result: Err(fault),
                logs: Vec::new(),
                logs_dropped: 0,
                coredump: None,
                stats: CallStats {
                    input: InputPath::Portable,
                    cpu: Duration::ZERO,
                    wall: Duration::ZERO,
                    request_copies: 0,
                    request_bytes_copied: 0,
                    yields: 0,
                    outbound: crate::OutboundStats::default(),
                },
            },
        }
    }
}

/// Where the input region is, as the guest last said.
#[derive(Debug, Clone, Copy)]
struct Region {
    offset: usize,
    capacity: usize,
}

/// A request body being received straight into an instance's input region, after the room for
/// its head (see [`Instance::begin_streamed`]).
#[derive(Debug)]
pub struct StreamedBody {
    region: Region,
    head_len: usize,
    body_len: usize,
    written: usize,
}

impl StreamedBody {
    /// Bytes the body will have.
    pub fn len(&self) -> usize {
        self.body_len
    }

    /// Whether the body is empty.
    pub fn is_empty(&self) -> bool {
        self.body_len == 0
    }

    /// Bytes written so far.
    pub fn written(&self) -> usize {
        self.written
    }
}

/// One live instance of a [`Handler`], serving requests one at a time.
pub struct Instance {
    memories: HostMemoryStore<HostState>,
    bindings: Exports,
    /// The functions that save and put back the mutable globals, for a rewritten component.
    globals: Option<BoundResets>,
    region: Option<Region>,
    /// The guest said it offers no input region.
    no_region: bool,
    usable: bool,
    /// The region as it was at the snapshot (`Some` once [`Instance::prepare_reset`] worked).
    clean_region: Option<Option<Region>>,
    /// Requests run on this instance.
    requests: u64,
}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance")
            .field("region", &self.region)
            .field("usable", &self.usable)
            .finish_non_exhaustive()
    }
}

impl Instance {
    /// False once the instance has faulted: it must then be dropped, never reused.
    pub fn is_usable(&self) -> bool {
        self.usable
    }

    /// Whether a reset puts back mutable globals too (the component was rewritten for it).
    pub fn resets_globals(&self) -> bool {
        self.globals.is_some()
    }

    /// Requests this instance has run.
    pub fn requests(&self) -> u64 {
        self.requests
    }

    /// The store's host state, between calls.
    pub(crate) fn state_mut(&mut self) -> &mut HostState {
        self.memories.store().data_mut()
    }

    /// Take the snapshot that [`Instance::reset`] returns to: the state right after
    /// instantiation (and the deployment's warm-up, [`Instance::warm_up`]), with the input
    /// region already reserved (so it is part of the clean state).
    ///
    /// Only for components that pass [`crate::check_resettable`]: a reset restores linear memory
    /// and nothing else. On error the instance may still be usable once (as a fresh instance if
    /// no warm-up ran on it).
    pub fn prepare_reset(&mut self) -> Result<(), ResetError> {
        if !self.usable {
            return Err(ResetError::Faulted);
        }
        let memories = self.memories.memory_count();
        if memories != 1 {
            return Err(NotResettable::MemoryCount(memories).into());
        }
        start_clock(self.memories.store());
        if let Err(fault) = self.ensure_region(0) {
            self.usable = false;
            return Err(ResetError::Region(fault));
        }
        if let Err(e) = globals::run(self.globals.as_ref(), self.memories.store(), Step::Save) {
            self.usable = false;
            return Err(e);
        }
        if let Err(e) = self.memories.snapshot(0) {
            self.usable = false;
            return Err(ResetError::Snapshot(e));
        }
        self.clean_region = Some(self.region);
        Ok(())
    }

    /// Bring the instance back to its snapshot after a request: copy back the pages written
    /// since. Fails (and the instance must be dropped) if the instance faulted, has no
    /// snapshot, or its memory grew.
    pub fn reset(&mut self) -> Result<ResetStats, ResetError> {
        if !self.usable {
            return Err(ResetError::Faulted);
        }
        let Some(region) = self.clean_region else {
            return Err(ResetError::NoSnapshot);
        };
        match self.memories.restore(RESET_RESIDENT_BUDGET) {
            Ok(stats) => {
                if let Err(e) =
                    globals::run(self.globals.as_ref(), self.memories.store(), Step::Reset)
                {
                    self.usable = false;
                    return Err(e);
                }
                self.region = region;
                Ok(stats)
            }
            Err(e) => {
                self.usable = false;
                Err(ResetError::Restore(e))
            }
        }
    }

    /// Get ready to receive a body of `body_len` bytes straight into guest memory: reserve an
    /// input region for `head` (its `body` is ignored; its headers must be the ones the request
    /// will run with) and the body. `Ok(None)`: this instance has no region (portable path).
    pub fn begin_streamed(
        &mut self,
        head: &Request<'_>,
        body_len: usize,
    ) -> Result<Option<StreamedBody>, Fault> {
        if !self.usable || !self.has_region_access() {
            return Ok(None);
        }
        start_clock(self.memories.store());
        let head_len = head.head_len();
        let region = match self.ensure_region(head_len + body_len) {
            Ok(Some(region)) => region,
            Ok(None) => return Ok(None),
            Err(fault) => {
                self.usable = false;
                return Err(fault);
            }
        };
        Ok(Some(StreamedBody {
            region,
            head_len,
            body_len,
            written: 0,
        }))
    }

    /// Append body bytes where the body goes in the region: the request's only host copy.
    /// Returns how many bytes were taken (never past the declared length).
    pub fn stream_body(&mut self, body: &mut StreamedBody, bytes: &[u8]) -> usize {
        let take = bytes.len().min(body.body_len - body.written);
        let at = body.region.offset + body.head_len + body.written;
        if self.memories.write(0, at, &bytes[..take]).is_err() {
            // Cannot happen: the region was checked against the memory, which only grows.
            self.usable = false;
            return take;
        }
        body.written += take;
        take
    }

    /// The body received so far, copied out (for a request that cannot run here after all).
    pub fn streamed_bytes(&self, body: &StreamedBody) -> Vec<u8> {
        self.memories
            .read(0, body.region.offset + body.head_len, body.written)
            .unwrap_or_default()
    }

    /// Run a request whose body was streamed into the region. `head` must have the headers
    /// given to [`Instance::begin_streamed`]; its `body` is ignored.
    pub fn handle_streamed(&mut self, head: &Request<'_>, body: StreamedBody) -> Invocation {
        let prepared = self.prepare_streamed(head, body);
        block_on(self.run(prepared))
    }

    /// [`Instance::handle_streamed`] as a call that yields every `slice` (see [`Running`]).
    pub fn start_streamed(
        mut self,
        head: &Request<'_>,
        body: StreamedBody,
        slice: TimeSlice,
    ) -> Running<Instance> {
        let prepared = self.prepare_streamed(head, body);
        self.into_running(prepared, slice)
    }

    fn prepare_streamed(&mut self, head: &Request<'_>, body: StreamedBody) -> Prepared {
        let total = body.head_len + body.body_len;
        let stats = CallStats {
            input: InputPath::Region,
            cpu: Duration::ZERO,
            wall: Duration::ZERO,
            request_copies: 1,
            request_bytes_copied: total,
            yields: 0,
            outbound: crate::OutboundStats::default(),
        };
        self.begin_call();
        let entry = if !self.usable {
            Entry::Failed(Fault::Poisoned)
        } else if head.head_len() != body.head_len || body.written != body.body_len {
            Entry::Failed(Fault::Host {
                message: "the streamed request does not match its reservation".into(),
            })
        } else {
            start_clock(self.memories.store());
            let filled = self
                .memories
                .fill(0, body.region.offset, body.head_len, |bytes| {
                    head.encode_head(bytes);
                });
            match filled {
                Err(e) => Entry::Failed(Fault::Host {
                    message: format!("the input region is not writable: {e}"),
                }),
                Ok(()) => Entry::Region {
                    head: body.head_len as u32,
                    body: body.body_len as u32,
                },
            }
        };
        Prepared(entry, stats)
    }

    /// Count the request and forget the previous call's log records.
    fn begin_call(&mut self) {
        self.requests += 1;
        let state = self.memories.store().data_mut();
        state.logs.clear();
        state.logs_dropped = 0;
        state.coredump = None;
    }

    /// Collect what the guest printed and logged, and package the call's outcome.
    fn finish_call(&mut self, result: Result<Response, Fault>, stats: CallStats) -> Invocation {
        let state = self.memories.store().data_mut();
        state.drain_output();
        Invocation {
            result,
            logs: std::mem::take(&mut state.logs),
            logs_dropped: state.logs_dropped,
            coredump: state.coredump.take(),
            stats,
        }
    }

    /// Whether the host can write requests into this instance's memory.
    pub fn has_region_access(&self) -> bool {
        self.memories.memory_count() == 1 && !self.no_region
    }

    /// Run one request.
    pub fn handle(&mut self, request: &Request<'_>, preference: InputPreference) -> Invocation {
        let prepared = self.prepare(request, preference);
        block_on(self.run(prepared))
    }

    /// Start one request as a call that yields every `slice` of running (see [`Running`]).
    /// The request goes into guest memory now; the call owns the instance until it ends.
    pub fn start(
        mut self,
        request: &Request<'_>,
        preference: InputPreference,
        slice: TimeSlice,
    ) -> Running<Instance> {
        let prepared = self.prepare(request, preference);
        self.into_running(prepared, slice)
    }

    /// Put the request where the guest will read it: in the input region, or into the record
    /// of the portable path.
    fn prepare(&mut self, request: &Request<'_>, preference: InputPreference) -> Prepared {
        let input = match preference {
            InputPreference::Region if self.has_region_access() => InputPath::Region,
            _ => InputPath::Portable,
        };
        let total = request.head_len() + request.body.len();
        let mut stats = CallStats {
            input,
            cpu: Duration::ZERO,
            wall: Duration::ZERO,
            request_copies: 1,
            request_bytes_copied: total,
            yields: 0,
            outbound: crate::OutboundStats::default(),
        };
        self.begin_call();
        if !self.usable {
            return Prepared(Entry::Failed(Fault::Poisoned), stats);
        }
        start_clock(self.memories.store());
        let entry = match input {
            InputPath::Region => self.region_entry(request, total),
            InputPath::Portable => Entry::Portable(crate::message::to_record(request)),
        };
        if matches!(entry, Entry::Portable(_)) {
            stats.input = InputPath::Portable;
            stats.request_copies = 2;
            stats.request_bytes_copied = 2 * total;
        }
        Prepared(entry, stats)
    }

    fn region_entry(&mut self, request: &Request<'_>, total: usize) -> Entry {
        let region = match self.ensure_region(total) {
            Ok(Some(region)) => region,
            Ok(None) => return Entry::Portable(crate::message::to_record(request)),
            Err(fault) => return Entry::Failed(fault),
        };
        let filled = self
            .memories
            .fill(0, region.offset, total, |bytes| request.encode(bytes));
        match filled {
            Err(e) => Entry::Failed(Fault::Host {
                message: format!("the input region is not writable: {e}"),
            }),
            // Lengths fit in u32: `ensure_region` checked `total` against a u32 capacity.
            Ok(()) => Entry::Region {
                head: request.head_len() as u32,
                body: request.body.len() as u32,
            },
        }
    }

    /// The call of a prepared request, owning this instance until it ends.
    fn into_running(mut self, prepared: Prepared, slice: TimeSlice) -> Running<Instance> {
        let (slices, wall_start) = slice.apply(self.memories.store().data_mut());
        Running::new(
            async move {
                let invocation = self.run(prepared).await;
                (self, invocation)
            },
            None,
            slices,
            wall_start,
        )
    }

    /// Call the guest with a prepared request; the instance is unusable after a fault.
    async fn run(&mut self, prepared: Prepared) -> Invocation {
        let Prepared(entry, mut stats) = prepared;
        let guest = &self.bindings;
        let store = self.memories.store();
        let called = match entry {
            Entry::Failed(fault) => Err(fault),
            Entry::Region { head, body } => Ok(guest.handle_region(&mut *store, head, body).await),
            Entry::Portable(record) => Ok(guest.handle(&mut *store, &record).await),
        };
        let result = match called {
            Err(fault) => Err(fault),
            Ok(Ok(response)) => check_response(response, &store.data().limits),
            Ok(Err(e)) => Err(classify(store, e)),
        };
        let state = store.data();
        stats.cpu = call_cpu(&state.clock, &state.slices);
        stats.wall = state.clock.wall_start.elapsed();
        stats.yields = state.clock.yields;
        stats.outbound = state.outbound_stats;
        if result.is_err() {
            self.usable = false;
        }
        self.finish_call(result, stats)
    }

    /// The current region if `needed` bytes fit, else ask the guest for a bigger one. `None`:
    /// the guest offers no region (capacity 0), so it gets the portable path.
    fn ensure_region(&mut self, needed: usize) -> Result<Option<Region>, Fault> {
        if self.no_region {
            return Ok(None);
        }
        if let Some(region) = self.region.filter(|r| r.capacity >= needed) {
            return Ok(Some(region));
        }
        let Ok(ask) = u32::try_from(needed.max(INITIAL_REGION as usize)) else {
            return Err(Fault::Host {
                message: format!(
                    "a request of {needed} bytes cannot be addressed in a 32-bit memory"
                ),
            });
        };
        let given = block_on(self.bindings.input_region(self.memories.store(), ask))
            .map_err(|e| classify(self.memories.store(), e))?;
        let region = Region {
            offset: given.offset as usize,
            capacity: given.capacity as usize,
        };
        if given.capacity == 0 {
            self.no_region = true;
            return Ok(None);
        }
        let size = self.memories.memory_size(0).unwrap_or(0);
        if region.capacity < needed || region.offset.saturating_add(region.capacity) > size {
            return Err(Fault::BadResponse {
                reason: format!(
                    "input-region({ask}) returned offset {} capacity {}, which does not hold \
                     {needed} bytes inside a memory of {size} bytes",
                    given.offset, given.capacity
                ),
            });
        }
        self.region = Some(region);
        Ok(Some(region))
    }
}

/// A request made ready for its call: how the guest is entered, and the call's statistics.
struct Prepared(Entry, CallStats);

enum Entry {
    /// The request is in the input region: `handle-region(head, body)`.
    Region { head: u32, body: u32 },
    /// Through the canonical ABI: `handle(record)`.
    Portable(crate::bindings::guest::Request),
    /// The call cannot be made.
    Failed(Fault),
}
