//! From a complete request to its response: route it to a deployment, give the deployment's
//! backend the request as the guest sees it, meter what happened. Also where large bodies are
//! routed early so that they can be received straight into guest memory.

mod wake;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::task::Waker;
use std::time::{Instant, SystemTime};

use percore_engine::{Engine, Request, TimeSlice};

use crate::backend::{Backend, Call, Cx, Ended, Outcome, Ran, StreamPermits, Streamed, Suspended};
use crate::counters::Counters;
use crate::deployments::Deployments;
use crate::intake::{Body, Incoming, Serve, Served};
use crate::link::{InvocationRecord, Ready, Report, ShardLink};
use crate::meter::{Meter, RequestId};
use crate::respond::Reply;
use crate::{Error, ServeConfig};

/// Requests one core receives into guest memory at once (each holds an instance).
const MAX_STREAMS: usize = 64;

/// One core's dispatcher: its engine, its deployments, its meter.
#[derive(Debug)]
pub(crate) struct Dispatch {
    core: usize,
    config: Arc<ServeConfig>,
    /// The engine every component of this core is mapped into.
    engine: Engine,
    deployments: Deployments,
    pub(crate) meter: Meter,
    /// Requests dispatched on this core: request ids and the LRU clock.
    clock: u64,
    streams: StreamPermits,
    /// Calls that yielded or wait, and have not ended, by key.
    calls: HashMap<u64, InFlight>,
    /// Keys of the calls woken (runnable), in the order they were woken.
    run_list: Arc<wake::RunList>,
    /// Scratch for the keys taken from `run_list`.
    runnable: Vec<u64>,
    /// The last call key given.
    last_key: u64,
    /// The waker of the last call that ended in its first slice, held by nothing else: the
    /// next call reuses it.
    spare: Option<(Arc<wake::CallWake>, Waker)>,
    /// Calls in flight that wait on the core's async runtime (wasi:http, commands).
    runtime_calls: usize,
    /// Connections holding a request until there is room for its call.
    queue: VecDeque<u32>,
    /// A call ended since the queue was last woken.
    room: bool,
    /// How long a call runs before it yields.
    slice: TimeSlice,
}

/// A request whose call yielded, until it ends: what its response and its record need.
#[derive(Debug)]
struct InFlight {
    conn: u32,
    deployment: u32,
    generation: u64,
    name: String,
    id: RequestId,
    started: Instant,
    bytes_in: u64,
    keep_alive: bool,
    is_head: bool,
    #[cfg(feature = "misbehave")]
    timeout_as_500: bool,
    call: Suspended,
    wake: Arc<wake::CallWake>,
    waker: Waker,
}

/// A call that ended after yielding, for its connection.
#[derive(Debug)]
pub(crate) struct Finished {
    flight: InFlight,
    ended: Ended,
}

impl Finished {
    /// The connection whose response it is.
    pub(crate) fn conn(&self) -> u32 {
        self.flight.conn
    }
}

impl Dispatch {
    pub(crate) fn new(
        core: usize,
        engine: Engine,
        config: Arc<ServeConfig>,
        initial: &[Ready],
        link: ShardLink,
    ) -> Result<Self, Error> {
        let deployments =
            Deployments::new(&engine, &config, initial, core).map_err(|e| Error::Deployment {
                name: e.deployment,
                source: e.source,
            })?;
        let meter = Meter::new(core, link);
        let run_list = Arc::new(wake::RunList::new(meter.wake_handle()));
        Ok(Self {
            core,
            slice: TimeSlice::new(config.calls.time_slice, config.engine.epoch_tick),
            config,
            engine,
            deployments,
            meter,
            clock: 0,
            streams: StreamPermits::default(),
            calls: HashMap::new(),
            run_list,
            runnable: Vec::new(),
            last_key: 0,
            spare: None,
            runtime_calls: 0,
            queue: VecDeque::new(),
            room: false,
        })
    }

    /// The thread that runs this core's calls is the caller's (wakes from others notify it).
    pub(crate) fn bind_thread(&self) {
        self.run_list.bind_thread();
    }

    /// Whether calls in flight can run now (the event loop then does not sleep).
    pub(crate) fn has_runnable(&self) -> bool {
        !self.run_list.is_empty()
    }

    /// Calls in flight.
    pub(crate) fn calls_in_flight(&self) -> usize {
        self.calls.len()
    }

    /// Whether calls that wait on the core's async runtime are in flight: the loop then turns
    /// it every turn and sleeps at most a millisecond (its timers' resolution).
    pub(crate) fn has_runtime_calls(&self) -> bool {
        self.runtime_calls > 0
    }

    /// Turn the core's async runtime if calls wait on it: due timers fire and ready tasks
    /// run, waking the calls that wait on them.
    pub(crate) fn turn_runtime(&self) {
        if self.runtime_calls > 0 {
            self.engine.turn_runtime();
        }
    }

    /// Run every runnable call for one time slice, in the order they were woken; those that
    /// end go to `finished`, for their connections ([`Dispatch::finish`]). A call that waits
    /// (for an outbound response) is not polled until what it waits for wakes it.
    pub(crate) fn run_slices(&mut self, finished: &mut Vec<Finished>) {
        let mut runnable = std::mem::take(&mut self.runnable);
        self.run_list.take(&mut runnable);
        for key in runnable.drain(..) {
            let Some(flight) = self.calls.get_mut(&key) else {
                // Woken after it ended.
                continue;
            };
            flight.wake.polling();
            match flight.call.poll(&flight.waker) {
                std::task::Poll::Pending => {}
                std::task::Poll::Ready(ended) => {
                    if let Some(flight) = self.calls.remove(&key) {
                        if flight.call.uses_runtime() {
                            self.runtime_calls -= 1;
                        }
                        finished.push(Finished { flight, ended });
                    }
                }
            }
        }
        self.runnable = runnable;
    }

    /// A waker for the next call, and its key.
    fn next_waker(&mut self) -> (u64, Arc<wake::CallWake>, Waker) {
        self.last_key += 1;
        let key = self.last_key;
        let (wake, waker) = match self.spare.take() {
            Some((wake, waker)) => {
                wake.rekey(key);
                (wake, waker)
            }
            None => {
                let wake = Arc::new(wake::CallWake::new(key, self.run_list.clone()));
                let waker = Waker::from(wake.clone());
                (wake, waker)
            }
        };
        wake.polling();
        (key, wake, waker)
    }

    /// Write the response of a call that ended into its connection's output `out` (a scratch
    /// buffer if the connection is gone), give its instance back, and meter it.
    /// While the server is `draining`, the response says `connection: close`.
    pub(crate) fn finish(&mut self, finished: Finished, out: &mut Vec<u8>, draining: bool) {
        let Finished { flight, ended } = finished;
        let keep_alive = flight.keep_alive && !draining;
        #[allow(unused_mut)]
        let mut reply = Reply::new(out, keep_alive, flight.is_head);
        #[cfg(feature = "misbehave")]
        {
            reply.timeout_as_500 = flight.timeout_as_500;
        }
        let index = self.deployments.find(flight.deployment, flight.generation);
        let backend = index.map(|i| {
            let deployed = self.deployments.get_mut(i);
            deployed.in_flight -= 1;
            &mut deployed.backend
        });
        let mut cx = Cx {
            engine: &self.engine,
            counters: &mut self.meter.counters,
            reply,
            coredump: None,
            slice: self.slice,
            waker: Waker::noop(),
        };
        let outcome = Backend::finish(backend, ended, &flight.name, flight.id, &mut cx);
        let bytes_out = cx.reply.written() as u64;
        let coredump = cx.coredump.take();
        self.room = true;
        let done = Done {
            deployment: flight.deployment,
            id: flight.id,
            started: flight.started,
            bytes_in: flight.bytes_in,
            bytes_out,
            coredump,
        };
        self.record(done, outcome);
        let counters = &mut self.meter.counters;
        counters.status(outcome.status);
        counters.latency_us(flight.started.elapsed().as_micros() as u64);
    }

    /// Connections to wake because calls ended and their held requests may start now. All
    /// of them: each asks again, and one that still finds no room queues again.
    pub(crate) fn take_woken(&mut self, woken: &mut Vec<u32>) {
        if std::mem::take(&mut self.room) {
            woken.extend(self.queue.drain(..));
        }
    }

    /// Whether deployment `index` may not start a call now: the core or the deployment is at
    /// its limit of calls in flight.
    fn at_limit(&self, index: usize) -> bool {
        let limits = &self.config.calls;
        !self.calls.is_empty()
            && (self.calls.len() >= limits.max_in_flight_per_core
                || self.deployments.get(index).in_flight >= limits.max_in_flight_per_deployment)
    }

    /// Apply what the control plane queued. Runs between requests, so a request never sees a
    /// deployment change halfway.
    pub(crate) fn apply_commands(&mut self) {
        while let Some(command) = self.meter.next_command() {
            let (seq, result) = self.deployments.apply(
                &self.engine,
                &self.config,
                command,
                self.core,
                self.clock,
                &mut self.meter.counters,
            );
            self.meter.report(Report::Applied {
                core: self.core,
                seq,
                result,
            });
        }
    }

    /// Bodies being received into guest memory right now.
    #[cfg(test)]
    pub(crate) fn streams_in_flight(&self) -> usize {
        self.streams.in_flight()
    }
}

impl Serve for Dispatch {
    fn admit(&mut self, incoming: &Incoming<'_>) -> bool {
        if self.calls.is_empty() {
            return true;
        }
        let Some(index) = self.deployments.route(incoming.host(), incoming.target) else {
            return true;
        };
        if !self.at_limit(index) || self.queue.len() >= self.config.calls.max_queued_per_core {
            // Room, or no room to wait either: `serve` answers 503.
            return true;
        }
        self.queue.push_back(incoming.conn);
        self.meter.counters.calls_queued += 1;
        false
    }

    /// Route, run and meter one request. The guest sees the decoded body, with no
    /// `transfer-encoding` and a `content-length` that gives the decoded length.
    fn serve(&mut self, incoming: &Incoming<'_>, body: Body<'_>, out: &mut Vec<u8>) -> Served {
        let started = Instant::now();
        let mut reply = Reply::new(out, incoming.keep_alive, incoming.method == "HEAD");
        let status = match self.deployments.resolve(incoming.host(), incoming.target) {
            None => {
                reply.simple(404, &[], "no deployment serves this route\n");
                404
            }
            Some((index, _)) if self.at_limit(index) => {
                self.meter.counters.calls_refused += 1;
                reply.simple(
                    503,
                    &[("retry-after", b"1")],
                    "this deployment has too many requests in flight on this core; retry shortly\n",
                );
                503
            }
            Some((index, prefix_len)) => {
                let route_prefix = incoming.target.get(..prefix_len).unwrap_or("");
                match self.run(index, route_prefix, incoming, body, reply, started) {
                    Some(status) => status,
                    None => return Served::Waiting,
                }
            }
        };
        let counters = &mut self.meter.counters;
        counters.status(status);
        counters.latency_us(started.elapsed().as_micros() as u64);
        Served::Answered
    }

    fn begin_stream(
        &mut self,
        incoming: &Incoming<'_>,
        body_len: usize,
        first: &[u8],
    ) -> Option<Streamed> {
        #[cfg(feature = "misbehave")]
        if self.config.misbehave.is_some() {
            return None;
        }
        let index = self.deployments.route(incoming.host(), incoming.target)?;
        let permit = self.streams.try_take(MAX_STREAMS)?;
        let length = body_len.to_string();
        let headers = guest_headers(incoming.headers, &length, body_len);
        let request = Request {
            method: incoming.method,
            path_with_query: incoming.target,
            headers: &headers,
            body: &[],
        };
        let deployment = self.deployments.get_mut(index);
        let counters = &mut self.meter.counters;
        let into =
            deployment
                .backend
                .begin_stream(&request, body_len, &deployment.name, counters)?;
        counters.bodies_streamed += 1;
        let mut streamed = Streamed::new(deployment.id, deployment.generation, into, permit);
        streamed.push(first);
        Some(streamed)
    }

    fn counters(&mut self) -> &mut Counters {
        &mut self.meter.counters
    }
}

impl Dispatch {
    /// Run a routed request on deployment `index` and write its invocation record. `None`:
    /// its call yielded and is in flight.
    fn run(
        &mut self,
        index: usize,
        route_prefix: &str,
        incoming: &Incoming<'_>,
        body: Body<'_>,
        reply: Reply<'_>,
        started: Instant,
    ) -> Option<u16> {
        let deployed = self.deployments.get(index);
        // A streamed body runs only on the version of the deployment that received it; if the
        // deployment changed meanwhile, the body is copied back out.
        let copied_back;
        let (body, streamed) = match body {
            Body::Bytes(bytes) => (bytes, None),
            Body::Streamed(s)
                if s.deployment == deployed.id && s.generation == deployed.generation =>
            {
                (&[][..], Some(s))
            }
            Body::Streamed(s) => {
                copied_back = s.copy_out();
                (&copied_back[..], None)
            }
        };
        #[cfg(feature = "misbehave")]
        let mangled;
        #[cfg(feature = "misbehave")]
        let body = {
            mangled = crate::misbehave::request_body(self.config.misbehave, body);
            mangled.as_deref().unwrap_or(body)
        };
        let body_len = streamed.as_ref().map_or(body.len(), Streamed::len);
        let length = body_len.to_string();
        let headers = guest_headers(incoming.headers, &length, body_len);
        #[cfg(feature = "misbehave")]
        let headers = crate::misbehave::request_headers(self.config.misbehave, headers);
        let request = Request {
            method: incoming.method,
            path_with_query: incoming.target,
            headers: &headers,
            body,
        };
        #[cfg(feature = "misbehave")]
        let reply = {
            crate::misbehave::before_run(self.config.misbehave, &mut self.deployments, index);
            let mut reply = reply;
            reply.timeout_as_500 = self.config.misbehave == Some(crate::Misbehaviour::TimeoutAs500);
            reply
        };
        self.clock += 1;
        let id = RequestId {
            core: self.core,
            seq: self.clock,
        };
        let (key, wake, waker) = self.next_waker();
        let deployed = self.deployments.get_mut(index);
        let was_mapped = deployed.backend.is_mapped();
        #[cfg(feature = "misbehave")]
        let timeout_as_500 = reply.timeout_as_500;
        let mut cx = Cx {
            engine: &self.engine,
            counters: &mut self.meter.counters,
            reply,
            coredump: None,
            slice: self.slice,
            waker: &waker,
        };
        let call = Call {
            request: &request,
            streamed,
            id,
            deployment: &deployed.name,
            route_prefix,
            peer: incoming.peer,
        };
        let ran = deployed.backend.run(call, &mut cx);
        let bytes_out = cx.reply.written() as u64;
        let coredump = cx.coredump.take();
        let (deployment, generation) = (deployed.id, deployed.generation);
        self.deployments
            .used(index, self.clock, was_mapped, &mut self.meter.counters);
        let bytes_in = (incoming.wire_head_len() + body_len) as u64;
        match ran {
            Ran::Done(outcome) => {
                // Held by nothing else (no clone outlived the call): the next call reuses it.
                if Arc::strong_count(&wake) == 2 {
                    self.spare = Some((wake, waker));
                }
                let done = Done {
                    deployment,
                    id,
                    started,
                    bytes_in,
                    bytes_out,
                    coredump,
                };
                self.record(done, outcome);
                Some(outcome.status)
            }
            Ran::Yielded(call) => {
                let deployed = self.deployments.get_mut(index);
                deployed.in_flight += 1;
                self.meter.counters.calls_yielded += 1;
                if call.uses_runtime() {
                    self.runtime_calls += 1;
                }
                self.calls.insert(
                    key,
                    InFlight {
                        conn: incoming.conn,
                        deployment,
                        generation,
                        name: deployed.name.clone(),
                        id,
                        started,
                        bytes_in,
                        keep_alive: incoming.keep_alive,
                        is_head: incoming.method == "HEAD",
                        #[cfg(feature = "misbehave")]
                        timeout_as_500,
                        call,
                        wake,
                        waker,
                    },
                );
                None
            }
        }
    }

    /// Write a request's invocation record, and its core dump if it left one.
    fn record(&mut self, done: Done, outcome: Outcome) {
        let duration_us = done.started.elapsed().as_micros() as u64;
        let start_unix_us = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64)
            .saturating_sub(duration_us);
        self.meter.record(InvocationRecord {
            request_id: done.id.packed(),
            deployment: done.deployment,
            start_unix_us,
            duration_us,
            cpu_us: outcome.cpu_us,
            status: outcome.status,
            fault: outcome.fault,
            bytes_in: done.bytes_in,
            bytes_out: done.bytes_out,
            requests: 1,
            cold_starts: u32::from(outcome.cold),
            outbound: outcome.outbound,
        });
        if let Some(dump) = done.coredump {
            self.meter.report(Report::CoreDump {
                deployment: done.deployment,
                request_id: done.id.packed(),
                dump,
            });
        }
    }
}

/// What a request's invocation record needs besides its outcome.
struct Done {
    deployment: u32,
    id: RequestId,
    started: Instant,
    bytes_in: u64,
    bytes_out: u64,
    coredump: Option<Vec<u8>>,
}

/// The header fields a guest sees: framing fields replaced by one `content-length` giving the
/// decoded body's length (none for an empty body).
fn guest_headers<'a>(
    headers: &[(&'a str, &'a [u8])],
    length: &'a str,
    body_len: usize,
) -> Vec<(&'a str, &'a [u8])> {
    headers
        .iter()
        .filter(|(n, _)| {
            !n.eq_ignore_ascii_case("transfer-encoding")
                && !n.eq_ignore_ascii_case("content-length")
        })
        .copied()
        .chain((body_len > 0).then_some(("content-length", length.as_bytes())))
        .collect()
}

#[cfg(test)]
mod tests;
