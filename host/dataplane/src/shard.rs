//! One core's shard and its event loop: the ring's completions (accepts, receives, sends, the
//! clock tick, a wake-up from the control plane) turned into calls on connections, whose
//! complete requests go to the core's [`Dispatch`].

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use percore_engine::Engine;
use percore_rt::uring::{Event, Uring, UringConfig};

use crate::conn::{Conn, Conns, Tick};
use crate::counters::Counters;
use crate::dispatch::{Dispatch, Finished};
use crate::intake::IntakeSettings;
use crate::link::{Ready, ShardLink};
use crate::outbound;
use crate::{Error, ServeConfig};

/// How often a shard looks at its clock: timeouts, the stop flag, the counter snapshot.
const TICK: Duration = Duration::from_millis(100);
/// Longest sleep of a shard while calls wait on its async runtime (the resolution of the
/// runtime's timers).
const RUNTIME_TURN: Duration = Duration::from_millis(1);
/// How long a stopping shard waits for in-flight requests.
const DRAIN_DEADLINE: Duration = Duration::from_secs(10);

/// One core's shard.
pub(crate) struct Shard {
    core: usize,
    listener: TcpListener,
    config: Arc<ServeConfig>,
    stop: Arc<AtomicBool>,
    conns: Conns,
    dispatch: Dispatch,
    draining: bool,
    /// Connections with something to send or to close after this turn of the loop.
    dirty: Vec<u32>,
    /// Calls that ended in this turn of the loop.
    finished: Vec<Finished>,
    /// Connections whose held requests may start now.
    woken: Vec<u32>,
    /// Connections whose multishot receive ended while they still read (out of provided
    /// buffers in a burst): armed again once this turn's buffers are given back.
    rearm: Vec<u32>,
}

impl Shard {
    pub(crate) fn new(
        core: usize,
        listener: TcpListener,
        engine: Engine,
        config: Arc<ServeConfig>,
        initial: &[Ready],
        stop: Arc<AtomicBool>,
        link: ShardLink,
    ) -> Result<Self, Error> {
        let dispatch = Dispatch::new(core, engine, config.clone(), initial, link)?;
        Ok(Self {
            core,
            listener,
            config,
            stop,
            conns: Conns::default(),
            dispatch,
            draining: false,
            dirty: Vec::with_capacity(256),
            finished: Vec::new(),
            woken: Vec::new(),
            rearm: Vec::new(),
        })
    }

    /// The event loop. Reports readiness (or why it could not start) through `ready`.
    pub(crate) fn run(mut self, ready: Sender<Result<(), (usize, std::io::Error)>>) -> Counters {
        if let Err(e) = percore_rt::cpu::pin_current_thread(self.core) {
            tracing::warn!(core = self.core, "cannot pin the shard thread: {e}");
        }
        let ring = Uring::new(UringConfig {
            sqpoll_idle: self.config.sqpoll.then_some(Duration::from_millis(50)),
            ..UringConfig::default()
        })
        .and_then(|mut ring| {
            ring.accept_multi(&self.listener)?;
            ring.watch(self.dispatch.meter.wake())?;
            ring.timer(TICK)?;
            Ok(ring)
        });
        let mut ring = match ring {
            Ok(ring) => {
                let _ = ready.send(Ok(()));
                ring
            }
            Err(e) => {
                let _ = ready.send(Err((self.core, e)));
                return self.dispatch.meter.counters;
            }
        };
        tracing::debug!(
            core = self.core,
            ring_fd = ring.as_raw_fd(),
            "shard running"
        );
        self.dispatch.bind_thread();
        outbound::install(&self.config.outbound);
        let mut events = Vec::with_capacity(256);
        let mut drain_started = None;
        loop {
            if self.stop.load(Ordering::Relaxed) && !self.draining {
                self.begin_drain(&mut ring);
                drain_started = Some(Instant::now());
            }
            if self.draining
                && (self.conns.len() == 0
                    || drain_started.is_some_and(|t: Instant| t.elapsed() > DRAIN_DEADLINE))
            {
                break;
            }
            // With calls runnable, look at the ring without sleeping: new requests get their
            // first slice, then every runnable call runs one more. Otherwise sleep until a
            // completion, a wake-up, or the earliest deadline an outbound request waits for.
            let waited = if self.dispatch.has_runnable() {
                ring.submit_and_wait(0)
            } else {
                // Calls waiting on the core's async runtime: wake within its timers'
                // resolution to turn it.
                let runtime = self
                    .dispatch
                    .has_runtime_calls()
                    .then(|| Instant::now() + RUNTIME_TURN);
                let deadline = outbound::reactor::with(|r| r.next_deadline()).flatten();
                match runtime.into_iter().chain(deadline).min() {
                    Some(at) => {
                        ring.submit_and_wait_for(1, at.saturating_duration_since(Instant::now()))
                    }
                    None => ring.submit_and_wait(1),
                }
            };
            if let Err(e) = waited {
                tracing::error!(core = self.core, "io_uring: {e}");
                break;
            }
            ring.drain(&mut events);
            for event in events.drain(..) {
                if let Some(event) = outbound::reactor::complete(event) {
                    self.on_event(&mut ring, event);
                }
            }
            self.rearm_receives(&mut ring);
            outbound::reactor::with(|r| r.expire(Instant::now()));
            self.dispatch.turn_runtime();
            if self.dispatch.has_runnable() {
                // Send what this turn answered before the calls in flight run their slices.
                self.flush(&mut ring);
                if let Err(e) = ring.submit_and_wait(0) {
                    tracing::error!(core = self.core, "io_uring: {e}");
                    break;
                }
                self.run_calls();
            }
            outbound::reactor::submit(&mut ring);
            self.flush(&mut ring);
            self.dispatch.apply_commands();
        }
        drop(ring);
        outbound::uninstall();
        // Every record reaches the control plane before the core says it has exited.
        self.dispatch.meter.finish(DRAIN_DEADLINE);
        self.dispatch.meter.counters
    }

    fn on_event(&mut self, ring: &mut Uring, event: Event) {
        match event {
            Event::Accepted { result, more } => {
                if !more
                    && !self.draining
                    && let Err(e) = ring.accept_multi(&self.listener)
                {
                    tracing::error!(core = self.core, "re-arming accept: {e}");
                }
                match result {
                    Ok(fd) => self.accept(ring, fd),
                    Err(e) if e.raw_os_error() == Some(libc::ECANCELED) => {}
                    Err(e) => tracing::warn!(core = self.core, "accept: {e}"),
                }
            }
            Event::Received {
                token,
                result,
                more,
            } => {
                let Some(conn) = self.conns.get_mut(token) else {
                    if let Ok(Some(lease)) = result {
                        ring.recycle(lease);
                    }
                    return;
                };
                if !more {
                    conn.on_recv_ended();
                    if matches!(result, Ok(Some(_))) {
                        self.rearm.push(token);
                    }
                }
                match result {
                    Ok(Some(lease)) => {
                        self.dispatch.meter.counters.bytes_in += lease.len() as u64;
                        let settings =
                            intake_settings(&self.config, self.draining, token, Instant::now());
                        conn.on_bytes(ring.leased(&lease), &mut self.dispatch, &settings);
                        ring.recycle(lease);
                    }
                    Ok(None) => conn.on_peer_closed(),
                    // Out of provided buffers: the kernel re-arms nothing, `more` is false; the
                    // loop arms it again once this turn's buffers are back.
                    Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => self.rearm.push(token),
                    Err(_) => conn.on_failed(),
                }
                self.dirty.push(token);
            }
            Event::Sent { token, result, buf } => {
                let Some(conn) = self.conns.get_mut(token) else {
                    return;
                };
                let now = Instant::now();
                let sent = conn.on_sent(result, buf, now);
                self.dispatch.meter.counters.bytes_out += sent as u64;
                let settings = intake_settings(&self.config, self.draining, token, now);
                conn.resume(&mut self.dispatch, &settings);
                self.dirty.push(token);
            }
            Event::Timer => {
                self.on_tick();
                if let Err(e) = ring.timer(TICK) {
                    tracing::error!(core = self.core, "arming the timer: {e}");
                }
            }
            // Outbound completions go to the reactor before this is called.
            Event::OutConnected { .. } | Event::OutSent { .. } | Event::OutReceived { .. } => {}
            // Commands are applied after every turn of the loop; this turn came sooner.
            Event::Woken { more } => {
                self.dispatch.meter.wake().clear();
                if !more
                    && !self.draining
                    && let Err(e) = ring.watch(self.dispatch.meter.wake())
                {
                    tracing::error!(core = self.core, "watching the command queue: {e}");
                }
            }
        }
    }

    fn accept(&mut self, ring: &mut Uring, fd: std::os::fd::OwnedFd) {
        let stream = std::net::TcpStream::from(fd);
        if self.draining {
            return;
        }
        self.dispatch.meter.counters.connections += 1;
        let full = self.conns.len() >= self.config.max_connections_per_core;
        let _ = stream.set_nodelay(true);
        let token = self.conns.insert(Conn::new(stream, Instant::now()));
        let conn = self.conns.get_mut(token).expect("just inserted");
        if let Err(e) = ring.recv_multi(token, conn.stream()) {
            tracing::warn!(core = self.core, "arming receive: {e}");
            self.conns.remove(token);
            return;
        }
        if full {
            // Back-pressure, not collapse: answer through the normal path (so what the client
            // sent is read, and the close is a clean FIN, not a reset) and close.
            let counters = &mut self.dispatch.meter.counters;
            counters.overloaded += 1;
            counters.status(503);
            conn.answer_and_close(|out| {
                percore_http::write_simple(
                    out,
                    503,
                    &[("retry-after", b"1")],
                    "this core is at its connection limit; retry shortly\n",
                    false,
                )
            });
            self.dirty.push(token);
        }
    }

    /// Arm the receives that ended while their connections still read.
    fn rearm_receives(&mut self, ring: &mut Uring) {
        for token in std::mem::take(&mut self.rearm) {
            let Some(conn) = self.conns.get_mut(token) else {
                continue;
            };
            if !conn.wants_recv() {
                continue;
            }
            match ring.recv_multi(token, conn.stream()) {
                Ok(()) => conn.on_recv_armed(),
                Err(e) => {
                    tracing::warn!(core = self.core, "re-arming a receive: {e}");
                    conn.on_failed();
                    self.dirty.push(token);
                }
            }
        }
    }

    /// Run every call in flight for a slice; write the responses of those that ended and
    /// answer what their connections held meanwhile; wake connections whose requests waited
    /// for room.
    fn run_calls(&mut self) {
        self.dispatch.run_slices(&mut self.finished);
        let now = Instant::now();
        for finished in std::mem::take(&mut self.finished) {
            let token = finished.conn();
            let settings = intake_settings(&self.config, self.draining, token, now);
            match self.conns.get_mut(token) {
                Some(conn) => {
                    let dispatch = &mut self.dispatch;
                    let draining = self.draining;
                    conn.call_ended(|out| dispatch.finish(finished, out, draining), &settings);
                    conn.resume(dispatch, &settings);
                    self.dirty.push(token);
                }
                // Cannot happen (a connection waits for its call), but the call is metered.
                None => self
                    .dispatch
                    .finish(finished, &mut Vec::new(), self.draining),
            }
        }
        self.dispatch.take_woken(&mut self.woken);
        for token in std::mem::take(&mut self.woken) {
            let settings = intake_settings(&self.config, self.draining, token, now);
            if let Some(conn) = self.conns.get_mut(token) {
                conn.wake(&mut self.dispatch, &settings);
                self.dirty.push(token);
            }
        }
    }

    /// Hand pending output to the kernel and close what is finished.
    fn flush(&mut self, ring: &mut Uring) {
        self.dirty.sort_unstable();
        self.dirty.dedup();
        for token in self.dirty.drain(..) {
            let Some(conn) = self.conns.get_mut(token) else {
                continue;
            };
            if let Some(buf) = conn.take_send()
                && ring.send(token, conn.stream(), buf, 0).is_err()
            {
                conn.send_refused();
            }
            let steps = conn.closing_steps();
            if steps.shutdown {
                let _ = conn.stream().shutdown(std::net::Shutdown::Write);
            }
            if steps.cancel_recv {
                let _ = ring.cancel_recv(token);
            }
            if steps.remove {
                self.conns.remove(token);
            }
        }
    }

    fn begin_drain(&mut self, ring: &mut Uring) {
        self.draining = true;
        let _ = ring.cancel_accept();
        for token in self.conns.tokens() {
            if let Some(conn) = self.conns.get_mut(token) {
                conn.on_drain();
            }
            self.dirty.push(token);
        }
        self.flush(ring);
    }

    fn on_tick(&mut self) {
        let now = Instant::now();
        for token in self.conns.tokens() {
            let Some(conn) = self.conns.get_mut(token) else {
                continue;
            };
            let was_open = conn.is_open();
            let counters = &mut self.dispatch.meter.counters;
            match conn.on_tick(now, self.config.idle_timeout) {
                Tick::Quiet => {}
                Tick::TimedOut => {
                    counters.bad_requests += 1;
                    counters.status(408);
                }
                Tick::Stalled => {
                    counters.clients_stalled += 1;
                    self.dirty.push(token);
                }
            }
            if was_open && !conn.is_open() {
                self.dirty.push(token);
            }
        }
        let calls = self.dispatch.calls_in_flight();
        outbound::reactor::with(|r| {
            r.sweep_idle(now);
            let counters = &mut self.dispatch.meter.counters;
            counters.outbound_connections = r.counters.connections;
            counters.outbound_reused = r.counters.reused;
            counters.outbound_refused = r.counters.refused;
            counters.outbound_in_flight = r.in_flight as u64;
        });
        self.dispatch.meter.counters.calls_in_flight = calls as u64;
        self.dispatch.meter.publish();
    }
}

/// What a connection's intake needs for connection `token` at `now`.
fn intake_settings(
    config: &ServeConfig,
    draining: bool,
    token: u32,
    now: Instant,
) -> IntakeSettings<'_> {
    IntakeSettings {
        limits: &config.http,
        peer: None,
        conn: token,
        draining,
        request_timeout: config.request_timeout,
        now,
    }
}
