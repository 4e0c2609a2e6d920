//! One core's shard: its ring, its socket, its engine, its connections, its event loop.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant, SystemTime};

use percore_engine::{Engine, Fault, Handler, Instance, Limits, LogLevel, Request, StreamedBody};
use percore_http::{BodyFraming, ChunkedDecoder, ParseError};
use percore_rt::uring::{Event, Uring, UringConfig};

use crate::conn::{BodyLeft, Conn, Conns, PendingRequest, Streamed};
use crate::counters::Counters;
use crate::link::{Command, InvocationRecord, Ready, Report, ShardLink};
use crate::router::{NativeHandler, RouteSpec, Router, native_handler};
use crate::{Error, InstanceMode, Misbehaviour, ServeConfig};

/// How often a shard looks at its clock: timeouts, the stop flag, the counter snapshot.
const TICK: Duration = Duration::from_millis(100);
/// How long a stopping shard waits for in-flight requests.
const DRAIN_DEADLINE: Duration = Duration::from_secs(10);
/// Requests one pooled instance serves before it is replaced. A reset restores linear memory,
/// not the host-side tables of the store (handles a guest took, such as WASI streams), so they
/// are bounded by replacing the instance now and then.
const MAX_REQUESTS_PER_INSTANCE: u64 = 10_000;
/// Bodies from this size on are received straight into guest memory when they do not arrive
/// with their head.
const STREAM_MIN_BODY: usize = 64 << 10;
/// Requests one core receives into guest memory at once (each holds an instance).
const MAX_STREAMS: usize = 64;

/// One deployment as loaded on one core.
struct Deployed {
    /// Id carried by invocation records.
    id: u32,
    name: String,
    /// Where the component came from (the suite's misbehaviour tests compare it).
    component: PathBuf,
    routes: Vec<RouteSpec>,
    /// Pooled instances kept at most.
    max_instances: usize,
    /// The loaded component: `None` for a built-in native handler, or while the artifact is not
    /// mapped on this core (never used yet, or evicted as least recently used).
    handler: Option<Handler>,
    /// The artifact to map on first use.
    artifact: PathBuf,
    /// The shard's request clock when this deployment last served (for LRU eviction).
    last_used: u64,
    /// Which load of this deployment this is (a streamed body only runs on the version that
    /// received it).
    generation: u64,
    native: Option<NativeHandler>,
    limits: Arc<Limits>,
    config: Arc<BTreeMap<String, String>>,
    pool: Vec<Instance>,
    /// Pooled instances are reset to their snapshot after each request.
    reset: bool,
}

/// What running one request on a deployment gave.
struct Outcome {
    request_id: u64,
    status: u16,
    fault: Option<&'static str>,
    cpu_us: u64,
    cold: bool,
}

/// A request ready to run: views into the receive buffer or a pending request's copy.
struct View<'a> {
    method: &'a str,
    target: &'a str,
    headers: &'a [(&'a str, &'a [u8])],
    keep_alive: bool,
}

/// One core's shard.
pub(crate) struct Shard {
    core: usize,
    listener: TcpListener,
    /// The engine every handler of this core is loaded into.
    engine: Engine,
    config: Arc<ServeConfig>,
    deployments: Vec<Deployed>,
    router: Router,
    stop: Arc<AtomicBool>,
    link: ShardLink,
    /// Records that did not fit in the queue, aggregated by deployment, status and fault.
    overflow: Vec<InvocationRecord>,
    /// Requests dispatched (the LRU clock).
    clock: u64,
    /// Versions loaded so far (each load gets the next number).
    generations: u64,
    counters: Counters,
    conns: Conns,
    draining: bool,
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
        let mut deployments = Vec::new();
        for ready in initial {
            deployments.push(load(&engine, &config, ready).map_err(|source| {
                Error::Deployment {
                    name: ready.spec.name.clone(),
                    source,
                }
            })?);
        }
        let mut shard = Self {
            core,
            listener,
            engine,
            router: Router::new(std::iter::empty()),
            config,
            deployments,
            stop,
            link,
            overflow: Vec::new(),
            clock: 0,
            generations: 0,
            counters: Counters::default(),
            conns: Conns::default(),
            draining: false,
        };
        shard.reroute();
        Ok(shard)
    }

    fn reroute(&mut self) {
        self.router = Router::new(
            self.deployments
                .iter()
                .enumerate()
                .map(|(i, d)| (i, &d.routes[..])),
        );
    }

    /// Apply what the control plane queued. Runs between requests, so a request never sees a
    /// deployment change halfway.
    fn apply_commands(&mut self) {
        while let Ok(command) = self.link.commands.pop() {
            let (seq, result) = match command {
                Command::Deploy { seq, ready } => {
                    let result = match load(&self.engine, &self.config, &ready) {
                        Ok(mut deployed) => {
                            self.generations += 1;
                            deployed.generation = self.generations;
                            let i = match self
                                .deployments
                                .iter()
                                .position(|d| d.name == deployed.name)
                            {
                                Some(i) => {
                                    self.deployments[i] = deployed;
                                    i
                                }
                                None => {
                                    self.deployments.push(deployed);
                                    self.deployments.len() - 1
                                }
                            };
                            self.deployments[i].last_used = self.clock;
                            self.evict_beyond_cap(i);
                            Ok(())
                        }
                        Err(e) => Err(e.to_string()),
                    };
                    (seq, result)
                }
                Command::Remove { seq, name } => {
                    self.deployments.retain(|d| d.name != name);
                    (seq, Ok(()))
                }
            };
            self.reroute();
            self.report(Report::Applied {
                core: self.core,
                seq,
                result,
            });
        }
    }

    /// Connections whose request body is being received into an instance's region (only
    /// counted when a large body starts: a scan of the connection table is fine there).
    fn streams_in_flight(&self) -> usize {
        self.conns
            .iter()
            .filter(|c| c.pending.as_ref().is_some_and(|p| p.stream.is_some()))
            .count()
    }

    /// Try to receive the rest of a large body straight into guest memory: route the request
    /// now, take an instance and reserve its input region. `None`: buffer the body instead (no
    /// route, a native or cold deployment, no region, too many streams in flight).
    fn begin_stream(
        &mut self,
        head: &percore_http::Head<'_>,
        body_len: usize,
        first: &[u8],
    ) -> Option<Streamed> {
        if self.config.misbehave.is_some()
            || self.config.input != percore_engine::InputPreference::Region
            || body_len < STREAM_MIN_BODY
            || self.streams_in_flight() >= MAX_STREAMS
        {
            return None;
        }
        let host = head
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("host"))
            .map(|(_, v)| *v);
        let index = self.router.route(host, head.target)?;
        let length = body_len.to_string();
        let headers = guest_headers(&head.headers, &length, body_len);
        let request = Request {
            method: head.method,
            path_with_query: head.target,
            headers: &headers,
            body: &[],
        };
        let deployment = &mut self.deployments[index];
        let handler = deployment.handler.as_ref()?;
        let (mut instance, cold) = match deployment.pool.pop() {
            Some(instance) => (instance, false),
            None => {
                let mut instance = handler
                    .instantiate(deployment.limits.clone(), deployment.config.clone())
                    .ok()?;
                if deployment.reset && instance.prepare_reset().is_err() {
                    return None;
                }
                self.counters.instances_created += 1;
                (instance, true)
            }
        };
        let mut body = instance.begin_streamed(&request, body_len).ok()??;
        instance.stream_body(&mut body, first);
        self.counters.bodies_streamed += 1;
        Some(Streamed {
            instance,
            body,
            deployment: deployment.id,
            generation: deployment.generation,
            cold,
        })
    }

    /// Unmap least recently used components until at most `max_loaded_per_core` are mapped,
    /// never `keep` (the one just loaded).
    fn evict_beyond_cap(&mut self, keep: usize) {
        let cap = self.config.max_loaded_per_core.max(1);
        let mut loaded = self
            .deployments
            .iter()
            .filter(|d| d.handler.is_some())
            .count();
        while loaded > cap {
            let victim = self
                .deployments
                .iter()
                .enumerate()
                .filter(|(i, d)| *i != keep && d.handler.is_some())
                .min_by_key(|(_, d)| d.last_used)
                .map(|(i, _)| i);
            let Some(victim) = victim else { break };
            let d = &mut self.deployments[victim];
            d.handler = None;
            d.pool.clear();
            self.counters.artifacts_evicted += 1;
            loaded -= 1;
        }
    }

    fn report(&mut self, report: Report) {
        // A full queue means no control plane is reading (a bare `Server`): nothing to tell.
        let _ = self.link.reports.push(report);
    }

    /// Queue one invocation record, or fold it into the overflow when the queue is full.
    fn record(&mut self, record: InvocationRecord) {
        if self.overflow.is_empty() && self.link.records.push(record).is_ok() {
            return;
        }
        self.counters.records_aggregated += 1;
        match self.overflow.iter_mut().find(|r| {
            r.deployment == record.deployment
                && r.status == record.status
                && r.fault == record.fault
        }) {
            Some(sum) => {
                sum.duration_us += record.duration_us;
                sum.cpu_us += record.cpu_us;
                sum.bytes_in += record.bytes_in;
                sum.bytes_out += record.bytes_out;
                sum.requests += record.requests;
                sum.cold_starts += record.cold_starts;
            }
            None => self.overflow.push(record),
        }
    }

    /// Move aggregated records into the queue as room allows.
    fn flush_overflow(&mut self) {
        while let Some(&record) = self.overflow.last() {
            if self.link.records.push(record).is_err() {
                return;
            }
            self.overflow.pop();
        }
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
            ring.watch(&*self.link.wake)?;
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
                return self.counters;
            }
        };
        tracing::debug!(
            core = self.core,
            ring_fd = ring.as_raw_fd(),
            "shard running"
        );
        let mut events = Vec::with_capacity(256);
        let mut dirty = Vec::with_capacity(256);
        let mut drain_started = None;
        loop {
            if self.stop.load(Ordering::Relaxed) && !self.draining {
                self.begin_drain(&mut ring, &mut dirty);
                drain_started = Some(Instant::now());
            }
            if self.draining
                && (self.conns.len() == 0
                    || drain_started.is_some_and(|t: Instant| t.elapsed() > DRAIN_DEADLINE))
            {
                break;
            }
            if let Err(e) = ring.submit_and_wait(1) {
                tracing::error!(core = self.core, "io_uring: {e}");
                break;
            }
            ring.drain(&mut events);
            for event in events.drain(..) {
                self.on_event(&mut ring, event, &mut dirty);
            }
            self.flush(&mut ring, &mut dirty);
            self.apply_commands();
        }
        drop(ring);
        // Every record reaches the control plane before the core says it has exited.
        let deadline = Instant::now() + DRAIN_DEADLINE;
        self.flush_overflow();
        while !self.overflow.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
            self.flush_overflow();
        }
        if !self.overflow.is_empty() {
            tracing::error!(
                core = self.core,
                records = self.overflow.len(),
                "invocation records lost: the control plane stopped reading"
            );
        }
        self.publish();
        self.report(Report::Exited { core: self.core });
        self.counters
    }

    fn on_event(&mut self, ring: &mut Uring, event: Event, dirty: &mut Vec<u32>) {
        match event {
            Event::Accepted { result, more } => {
                if !more
                    && !self.draining
                    && let Err(e) = ring.accept_multi(&self.listener)
                {
                    tracing::error!(core = self.core, "re-arming accept: {e}");
                }
                match result {
                    Ok(fd) => self.accept(ring, fd, dirty),
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
                    conn.recv_armed = false;
                }
                match result {
                    Ok(Some(lease)) => {
                        self.counters.bytes_in += lease.len() as u64;
                        self.on_bytes(token, ring.leased(&lease));
                        ring.recycle(lease);
                    }
                    Ok(None) => {
                        if let Some(conn) = self.conns.get_mut(token) {
                            conn.peer_closed = true;
                            conn.closing = true;
                        }
                    }
                    Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {}
                    Err(_) => {
                        if let Some(conn) = self.conns.get_mut(token) {
                            conn.broken = true;
                            conn.closing = true;
                            conn.out.clear();
                        }
                    }
                }
                dirty.push(token);
            }
            Event::Sent { token, result, buf } => {
                let Some(conn) = self.conns.get_mut(token) else {
                    return;
                };
                conn.sending = false;
                match result {
                    Ok(n) => {
                        self.counters.bytes_out += n as u64;
                        conn.last_active = Instant::now();
                        let mut buf = buf;
                        if n < buf.len() {
                            // Partial send: what is left goes first, then anything queued since.
                            buf.drain(..n);
                            buf.extend_from_slice(&conn.out);
                            conn.out = buf;
                        } else {
                            buf.clear();
                            conn.spare = buf;
                        }
                    }
                    Err(_) => {
                        // The peer is gone: drop what is left and close.
                        conn.out.clear();
                        conn.closing = true;
                        conn.broken = true;
                    }
                }
                dirty.push(token);
            }
            Event::Timer => {
                self.on_tick(dirty);
                if let Err(e) = ring.timer(TICK) {
                    tracing::error!(core = self.core, "arming the timer: {e}");
                }
            }
            // Commands are applied after every turn of the loop; this turn came sooner.
            Event::Woken { more } => {
                self.link.wake.clear();
                if !more
                    && !self.draining
                    && let Err(e) = ring.watch(&*self.link.wake)
                {
                    tracing::error!(core = self.core, "watching the command queue: {e}");
                }
            }
        }
    }

    fn accept(&mut self, ring: &mut Uring, fd: std::os::fd::OwnedFd, dirty: &mut Vec<u32>) {
        let stream = std::net::TcpStream::from(fd);
        if self.draining {
            return;
        }
        self.counters.connections += 1;
        let full = self.conns.len() >= self.config.max_connections_per_core;
        let _ = stream.set_nodelay(true);
        let token = self.conns.insert(Conn::new(stream, Instant::now()));
        let conn = self.conns.get_mut(token).expect("just inserted");
        if let Err(e) = ring.recv_multi(token, &conn.stream) {
            tracing::warn!(core = self.core, "arming receive: {e}");
            self.conns.remove(token);
            return;
        }
        conn.recv_armed = true;
        if full {
            // Back-pressure, not collapse: answer through the normal path (so what the client
            // sent is read, and the close is a clean FIN, not a reset) and close.
            self.counters.overloaded += 1;
            self.counters.status(503);
            percore_http::write_simple(
                &mut conn.out,
                503,
                &[("retry-after", b"1")],
                "this core is at its connection limit; retry shortly\n",
                false,
            );
            conn.closing = true;
            dirty.push(token);
        }
    }

    /// Bytes arrived on connection `token`: parse and answer every complete request in them.
    fn on_bytes(&mut self, token: u32, bytes: &[u8]) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        conn.last_active = Instant::now();
        if conn.closing {
            return;
        }
        if conn.inbuf.is_empty() {
            // The common case (and every piece of a body in progress): work straight from the
            // receive buffer, no copy.
            let used = self.process(token, bytes);
            if let Some(conn) = self.conns.get_mut(token) {
                // An incomplete head: keep its bytes (a pending body has taken its own already).
                if used < bytes.len() && !conn.closing && conn.pending.is_none() {
                    let rest = &bytes[used..];
                    conn.inbuf.extend_from_slice(rest);
                    self.counters.request_copies += 1;
                    self.counters.request_bytes_copied += rest.len() as u64;
                }
            }
        } else {
            let mut data = std::mem::take(&mut conn.inbuf);
            data.extend_from_slice(bytes);
            self.counters.request_copies += 1;
            self.counters.request_bytes_copied += bytes.len() as u64;
            let used = self.process(token, &data);
            if let Some(conn) = self.conns.get_mut(token)
                && !conn.closing
                && used < data.len()
            {
                data.drain(..used);
                conn.inbuf = data;
            }
        }
        if let Some(conn) = self.conns.get_mut(token) {
            conn.request_deadline = match (conn.mid_request(), conn.request_deadline) {
                (false, _) => None,
                (true, Some(deadline)) => Some(deadline),
                (true, None) => Some(Instant::now() + self.config.request_timeout),
            };
        }
    }

    /// Answer every complete request at the start of `data`; returns the bytes used.
    fn process(&mut self, token: u32, data: &[u8]) -> usize {
        let mut pos = 0;
        loop {
            let Some(conn) = self.conns.get_mut(token) else {
                return data.len();
            };
            if conn.closing {
                return data.len();
            }
            if let Some(mut pending) = conn.pending.take() {
                let used = match feed_body(&mut pending, &data[pos..]) {
                    Ok(used) => used,
                    Err(e) => {
                        self.reject(token, &e);
                        return data.len();
                    }
                };
                pos += used;
                if body_complete(&pending) {
                    let streamed = pending.stream.take();
                    if streamed.is_none() {
                        self.counters.request_copies += 1;
                        self.counters.request_bytes_copied += pending.body.len() as u64;
                    }
                    let headers: Vec<(&str, &[u8])> = pending
                        .headers
                        .iter()
                        .map(|(n, v)| (n.as_str(), v.as_slice()))
                        .collect();
                    let view = View {
                        method: &pending.method,
                        target: &pending.target,
                        headers: &headers,
                        keep_alive: pending.keep_alive,
                    };
                    self.dispatch_with(token, &view, &pending.body, streamed);
                    continue;
                }
                if let Some(conn) = self.conns.get_mut(token) {
                    conn.pending = Some(pending);
                }
                return pos;
            }
            if pos == data.len() {
                return pos;
            }
            let head = match percore_http::parse_head(&data[pos..], &self.config.http) {
                Ok(Some(head)) => head,
                Ok(None) => return pos,
                Err(e) => {
                    self.reject(token, &e);
                    return data.len();
                }
            };
            let body_start = pos + head.len;
            let available = &data[body_start..];
            let keep_alive = head.keep_alive && !self.draining;
            match head.framing {
                BodyFraming::None => {
                    let view = View {
                        method: head.method,
                        target: head.target,
                        headers: &head.headers,
                        keep_alive,
                    };
                    self.dispatch(token, &view, b"");
                    pos = body_start;
                }
                BodyFraming::Length(n) if available.len() >= n => {
                    let view = View {
                        method: head.method,
                        target: head.target,
                        headers: &head.headers,
                        keep_alive,
                    };
                    self.dispatch(token, &view, &available[..n]);
                    pos = body_start + n;
                }
                BodyFraming::Chunked => {
                    let mut decoder = ChunkedDecoder::new(self.config.http.max_body);
                    let mut body = Vec::new();
                    let used = match decoder.decode(available, &mut body) {
                        Ok(used) => used,
                        Err(e) => {
                            self.reject(token, &e);
                            return data.len();
                        }
                    };
                    if decoder.is_done() {
                        self.counters.request_copies += 1;
                        self.counters.request_bytes_copied += body.len() as u64;
                        let view = View {
                            method: head.method,
                            target: head.target,
                            headers: &head.headers,
                            keep_alive,
                        };
                        self.dispatch(token, &view, &body);
                        pos = body_start + used;
                    } else {
                        self.start_pending(
                            token,
                            &head,
                            keep_alive,
                            body,
                            BodyLeft::Chunked(decoder),
                        );
                        return data.len();
                    }
                }
                BodyFraming::Length(n) => {
                    let left = n - available.len();
                    let stream = self.begin_stream(&head, n, available);
                    let body = match stream {
                        Some(_) => Vec::new(),
                        None => available.to_vec(),
                    };
                    self.start_pending(token, &head, keep_alive, body, BodyLeft::Length(left));
                    if let Some(conn) = self.conns.get_mut(token)
                        && let Some(pending) = conn.pending.as_mut()
                    {
                        pending.stream = stream;
                    }
                    return data.len();
                }
            }
        }
    }

    fn start_pending(
        &mut self,
        token: u32,
        head: &percore_http::Head<'_>,
        keep_alive: bool,
        mut body: Vec<u8>,
        left: BodyLeft,
    ) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        if head.expect_continue {
            conn.out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        if body.is_empty() && matches!(left, BodyLeft::Length(n) if n >= STREAM_MIN_BODY) {
            // Probably streamed into guest memory: reserve nothing here.
        } else {
            body.reserve(match &left {
                BodyLeft::Length(n) => (*n).min(1 << 20),
                BodyLeft::Chunked(_) => 0,
            });
        }
        conn.pending = Some(PendingRequest {
            method: head.method.to_owned(),
            target: head.target.to_owned(),
            headers: head
                .headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_vec()))
                .collect(),
            keep_alive,
            body,
            body_left: left,
            stream: None,
        });
    }

    /// Answer with the error's status and close.
    fn reject(&mut self, token: u32, error: &ParseError) {
        self.counters.bad_requests += 1;
        let status = error.status();
        self.counters.status(status);
        if let Some(conn) = self.conns.get_mut(token) {
            percore_http::write_simple(&mut conn.out, status, &[], &format!("{error}\n"), false);
            conn.closing = true;
            conn.pending = None;
            conn.inbuf.clear();
        }
    }

    /// Run one complete request and queue its response. The guest sees the decoded body, with no
    /// `transfer-encoding` and a `content-length` that gives the decoded length.
    fn dispatch(&mut self, token: u32, view: &View<'_>, body: &[u8]) {
        self.dispatch_with(token, view, body, None);
    }

    /// [`Self::dispatch`], with the body possibly already in an instance's region.
    fn dispatch_with(
        &mut self,
        token: u32,
        view: &View<'_>,
        body: &[u8],
        streamed: Option<Streamed>,
    ) {
        let started = Instant::now();
        let is_head = view.method == "HEAD";
        let keep_alive = view.keep_alive && !self.draining;
        let host = view
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("host"))
            .map(|(_, v)| *v);
        let misbehave = self.config.misbehave;
        let mangled;
        let body = if misbehave == Some(Misbehaviour::MangleBinaryBody) {
            mangled = String::from_utf8_lossy(body).into_owned().into_bytes();
            &mangled[..]
        } else {
            body
        };
        let body_len = streamed.as_ref().map_or(body.len(), |s| s.body.len());
        let length = body_len.to_string();
        let headers = guest_headers(view.headers, &length, body_len);
        let headers = if misbehave == Some(Misbehaviour::DropRepeatedHeader) {
            let mut seen = std::collections::HashSet::new();
            headers
                .into_iter()
                .filter(|(n, _)| seen.insert(n.to_ascii_lowercase()))
                .collect()
        } else {
            headers
        };
        // Responses are appended to what is already queued, in request order (pipelining).
        let mut out = self
            .conns
            .get_mut(token)
            .map(|c| std::mem::take(&mut c.out))
            .unwrap_or_default();
        let status = match self.router.route(host, view.target) {
            None => {
                let body = "no deployment serves this route\n";
                respond_simple(&mut out, 404, &[], body, keep_alive, is_head);
                404
            }
            Some(index) => {
                let request = Request {
                    method: view.method,
                    path_with_query: view.target,
                    headers: &headers,
                    body,
                };
                let before = out.len();
                // A streamed body is used only if the route still leads to the same version of
                // the deployment that received it; otherwise the body is copied back out.
                let copied_back;
                let (request, streamed) = match streamed {
                    Some(s)
                        if self.deployments[index].id == s.deployment
                            && self.deployments[index].generation == s.generation =>
                    {
                        (request, Some(s))
                    }
                    Some(s) => {
                        copied_back = s.instance.streamed_bytes(&s.body);
                        (
                            Request {
                                body: &copied_back,
                                ..request
                            },
                            None,
                        )
                    }
                    None => (request, None),
                };
                let outcome =
                    self.run_guest(index, &request, streamed, is_head, keep_alive, &mut out);
                let start_unix_us = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| d.as_micros() as u64)
                    .saturating_sub(started.elapsed().as_micros() as u64);
                self.record(InvocationRecord {
                    request_id: outcome.request_id,
                    deployment: self.deployments[index].id,
                    start_unix_us,
                    duration_us: started.elapsed().as_micros() as u64,
                    cpu_us: outcome.cpu_us,
                    status: outcome.status,
                    fault: outcome.fault,
                    bytes_in: (wire_head_len(view) + body.len()) as u64,
                    bytes_out: (out.len() - before) as u64,
                    requests: 1,
                    cold_starts: u32::from(outcome.cold),
                });
                outcome.status
            }
        };
        self.counters.status(status);
        self.counters
            .latency_us(started.elapsed().as_micros() as u64);
        if let Some(conn) = self.conns.get_mut(token) {
            conn.out = out;
            if !keep_alive {
                conn.closing = true;
            }
        }
    }

    fn run_guest(
        &mut self,
        index: usize,
        request: &Request<'_>,
        streamed: Option<Streamed>,
        is_head: bool,
        keep_alive: bool,
        out: &mut Vec<u8>,
    ) -> Outcome {
        // Tests of the suite: take any deployment's kept instance of the same component.
        let pool_index = match self.config.misbehave {
            Some(Misbehaviour::ReuseAcrossDeployments) => {
                let component = &self.deployments[index].component;
                self.deployments
                    .iter()
                    .position(|d| &d.component == component)
                    .unwrap_or(index)
            }
            _ => index,
        };
        self.clock += 1;
        let request_id = RequestId {
            core: self.core,
            seq: self.clock,
        };
        if let Some(native) = self.deployments[index].native {
            return Outcome {
                request_id: request_id.packed(),
                status: run_native(native, request, is_head, keep_alive, out),
                fault: None,
                cpu_us: 0,
                cold: false,
            };
        }
        let mut cold = false;
        self.deployments[index].last_used = self.clock;
        if let Some(streamed) = streamed {
            return self.finish_guest(
                index,
                pool_index,
                request_id,
                request,
                Ok(streamed.instance),
                Some(streamed.body),
                streamed.cold,
                is_head,
                keep_alive,
                out,
            );
        }
        if self.deployments[index].handler.is_none() {
            // A cold deployment on this core: map its artifact (no compilation).
            match self.engine.load_artifact(&self.deployments[index].artifact) {
                Ok(handler) => {
                    self.deployments[index].handler = Some(handler);
                    self.counters.artifacts_loaded += 1;
                    self.evict_beyond_cap(index);
                }
                Err(e) => {
                    let name = &self.deployments[index].name;
                    tracing::error!(deployment = %name, "cannot map the artifact: {e}");
                    respond_simple(
                        out,
                        503,
                        &[("retry-after", b"1")],
                        "deployment unavailable\n",
                        keep_alive,
                        is_head,
                    );
                    return Outcome {
                        request_id: request_id.packed(),
                        status: 503,
                        fault: Some("unavailable"),
                        cpu_us: 0,
                        cold: true,
                    };
                }
            }
        }
        let pooled = self.deployments[pool_index].pool.pop();
        let deployment = &mut self.deployments[index];
        let instance = match (pooled, &deployment.handler) {
            (Some(instance), _) => Ok(instance),
            (None, Some(handler)) => {
                self.counters.instances_created += 1;
                cold = true;
                let instance =
                    handler.instantiate(deployment.limits.clone(), deployment.config.clone());
                match instance {
                    Ok(mut instance) if deployment.reset => match instance.prepare_reset() {
                        Ok(()) => Ok(instance),
                        Err(why) => {
                            // It would fail again: serve this deployment fresh from now on.
                            tracing::warn!(deployment = %deployment.name, "instances cannot be reset, serving fresh ones: {why}");
                            deployment.reset = false;
                            if instance.is_usable() {
                                Ok(instance)
                            } else {
                                handler.instantiate(
                                    deployment.limits.clone(),
                                    deployment.config.clone(),
                                )
                            }
                        }
                    },
                    other => other,
                }
            }
            (None, None) => unreachable!("a deployment has a handler or a native handler"),
        };
        self.finish_guest(
            index, pool_index, request_id, request, instance, None, cold, is_head, keep_alive, out,
        )
    }

    /// Run a request on `instance` (with its body streamed into the region already, or not),
    /// then keep, reset or drop the instance, and write the response.
    #[allow(clippy::too_many_arguments)]
    fn finish_guest(
        &mut self,
        index: usize,
        pool_index: usize,
        request_id: RequestId,
        request: &Request<'_>,
        instance: Result<Instance, Fault>,
        streamed: Option<StreamedBody>,
        cold: bool,
        is_head: bool,
        keep_alive: bool,
        out: &mut Vec<u8>,
    ) -> Outcome {
        let mode = self.config.instances;
        let input = self.config.input;
        let deployment = &mut self.deployments[index];
        let mut cpu_us = 0;
        let (result, keep) = match instance {
            Ok(mut instance) => {
                let invocation = match streamed {
                    Some(body) => instance.handle_streamed(request, body),
                    None => instance.handle(request, input),
                };
                cpu_us = invocation.stats.cpu.as_micros() as u64;
                self.counters.guest_requests += 1;
                self.counters.request_copies += u64::from(invocation.stats.request_copies);
                self.counters.request_bytes_copied += invocation.stats.request_bytes_copied as u64;
                for record in &invocation.logs {
                    log_guest(
                        &deployment.name,
                        request_id,
                        record.level,
                        &record.message,
                        &record.fields,
                    );
                }
                let keep = match mode {
                    _ if !instance.is_usable()
                        || instance.requests() >= MAX_REQUESTS_PER_INSTANCE =>
                    {
                        false
                    }
                    InstanceMode::Keep => true,
                    InstanceMode::Reset
                        if deployment.reset
                            && self.config.misbehave == Some(Misbehaviour::SkipReset) =>
                    {
                        true
                    }
                    InstanceMode::Reset if deployment.reset => match instance.reset() {
                        Ok(stats) => {
                            self.counters.instance_resets += 1;
                            self.counters.reset_pages_copied += stats.pages_copied as u64;
                            true
                        }
                        // Grown memory, typically: the instance is replaced.
                        Err(_) => false,
                    },
                    InstanceMode::Reset | InstanceMode::Fresh => false,
                };
                (invocation.result, keep.then_some(instance))
            }
            Err(fault) => (Err(fault), None),
        };
        let name = deployment.name.clone();
        let max_instances = deployment.max_instances;
        let pool = &mut self.deployments[pool_index].pool;
        if let Some(instance) = keep
            && pool.len() < max_instances
        {
            pool.push(instance);
        }
        match result {
            Ok(response) => {
                let headers = response
                    .headers
                    .iter()
                    .map(|(n, v)| (n.as_str(), v.as_slice()));
                percore_http::write_head(
                    out,
                    response.status,
                    headers,
                    response.body.len(),
                    keep_alive,
                );
                if !is_head {
                    out.extend_from_slice(&response.body);
                }
                Outcome {
                    request_id: request_id.packed(),
                    status: response.status,
                    fault: None,
                    cpu_us,
                    cold,
                }
            }
            Err(fault) => {
                match &fault {
                    Fault::Timeout { .. } => self.counters.fault_timeout += 1,
                    Fault::OutOfMemory { .. } => self.counters.fault_out_of_memory += 1,
                    Fault::Trap { .. } | Fault::Poisoned => self.counters.fault_trap += 1,
                    Fault::BadResponse { .. } | Fault::ResponseTooLarge { .. } => {
                        self.counters.fault_bad_response += 1
                    }
                }
                tracing::warn!(deployment = %name, request = %request_id, kind = fault.kind(), "{fault}");
                let status = match (&fault, self.config.misbehave) {
                    (Fault::Timeout { .. }, Some(Misbehaviour::TimeoutAs500)) => 500,
                    _ => fault.http_status(),
                };
                let kind = fault.kind();
                let body = format!("guest fault: {kind}\n");
                let extra = [("x-percore-fault", kind.as_bytes())];
                respond_simple(out, status, &extra, &body, keep_alive, is_head);
                Outcome {
                    request_id: request_id.packed(),
                    status,
                    fault: Some(kind),
                    cpu_us,
                    cold,
                }
            }
        }
    }

    /// Hand pending output to the kernel and close what is finished.
    fn flush(&mut self, ring: &mut Uring, dirty: &mut Vec<u32>) {
        dirty.sort_unstable();
        dirty.dedup();
        for token in dirty.drain(..) {
            let Some(conn) = self.conns.get_mut(token) else {
                continue;
            };
            if !conn.sending && !conn.out.is_empty() && !conn.broken {
                let spare = std::mem::take(&mut conn.spare);
                let buf = std::mem::replace(&mut conn.out, spare);
                match ring.send(token, &conn.stream, buf, 0) {
                    Ok(()) => conn.sending = true,
                    Err(_) => conn.closing = true,
                }
            }
            if conn.closing && !conn.sending && conn.out.is_empty() {
                let _ = conn.stream.shutdown(std::net::Shutdown::Write);
                if conn.recv_armed && !conn.cancelled {
                    conn.cancelled = true;
                    let _ = ring.cancel_recv(token);
                }
            }
            if conn.finished() {
                self.conns.remove(token);
            }
        }
    }

    fn begin_drain(&mut self, ring: &mut Uring, dirty: &mut Vec<u32>) {
        self.draining = true;
        let _ = ring.cancel_accept();
        for token in self.conns.tokens() {
            if let Some(conn) = self.conns.get_mut(token)
                && !conn.mid_request()
            {
                conn.closing = true;
            }
            dirty.push(token);
        }
        self.flush(ring, dirty);
    }

    fn on_tick(&mut self, dirty: &mut Vec<u32>) {
        let now = Instant::now();
        for token in self.conns.tokens() {
            let Some(conn) = self.conns.get_mut(token) else {
                continue;
            };
            if conn.closing {
                continue;
            }
            if conn.request_deadline.is_some_and(|d| now > d) {
                self.counters.bad_requests += 1;
                self.counters.status(408);
                percore_http::write_simple(&mut conn.out, 408, &[], "request timeout\n", false);
                conn.closing = true;
                conn.pending = None;
                conn.inbuf.clear();
                dirty.push(token);
            } else if !conn.mid_request()
                && !conn.sending
                && conn.out.is_empty()
                && now.duration_since(conn.last_active) > self.config.idle_timeout
            {
                conn.closing = true;
                dirty.push(token);
            }
        }
        self.publish();
    }

    fn publish(&mut self) {
        self.flush_overflow();
        let counters = Box::new(self.counters.clone());
        self.report(Report::Counters {
            core: self.core,
            counters,
        });
    }
}

/// The native reference line: the same response as the `hello` guest, with no sandbox.
/// Size of the request head as HTTP/1.1 writes it (`METHOD target HTTP/1.1`, one line per
/// field, blank line): what the metering counts as request bytes besides the body.
fn wire_head_len(view: &View<'_>) -> usize {
    view.method.len()
        + view.target.len()
        + 12
        + view
            .headers
            .iter()
            .map(|(n, v)| n.len() + v.len() + 4)
            .sum::<usize>()
        + 2
}

/// Map a deployment's artifact into this core's engine (no compilation happens here).
fn load(
    engine: &Engine,
    config: &ServeConfig,
    ready: &Ready,
) -> Result<Deployed, percore_engine::Error> {
    let native = native_handler(&ready.artifact);
    let handler = match native {
        Some(_) => None,
        None => Some(engine.load_artifact(&ready.artifact)?),
    };
    let spec = &ready.spec;
    Ok(Deployed {
        id: ready.id,
        name: spec.name.clone(),
        component: spec.component.clone(),
        routes: spec.routes.clone(),
        max_instances: spec.max_instances_per_core,
        handler,
        artifact: ready.artifact.clone(),
        last_used: 0,
        generation: 0,
        native,
        limits: Arc::new(spec.limits.clone()),
        config: Arc::new(spec.config.clone()),
        pool: Vec::new(),
        reset: config.instances == InstanceMode::Reset
            && ready.resettable.is_ok()
            && percore_rt::pagemap::supported(),
    })
}

fn run_native(
    native: NativeHandler,
    request: &Request<'_>,
    is_head: bool,
    keep_alive: bool,
    out: &mut Vec<u8>,
) -> u16 {
    match native {
        NativeHandler::Json => {
            let path = request
                .path_with_query
                .split('?')
                .next()
                .unwrap_or(request.path_with_query);
            let mut body = String::with_capacity(64);
            body.push_str("{\"method\":");
            json_quote(&mut body, request.method);
            body.push_str(",\"path\":");
            json_quote(&mut body, path);
            body.push_str(&format!(",\"body_bytes\":{}}}\n", request.body.len()));
            let headers = [("content-type", &b"application/json"[..])];
            percore_http::write_head(out, 200, headers, body.len(), keep_alive);
            if !is_head {
                out.extend_from_slice(body.as_bytes());
            }
            200
        }
        NativeHandler::Hello => {
            let body = b"Hello from percore!\n";
            let headers = [("content-type", &b"text/plain; charset=utf-8"[..])];
            percore_http::write_head(out, 200, headers, body.len(), keep_alive);
            if !is_head {
                out.extend_from_slice(body);
            }
            200
        }
    }
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

/// Append `s` as a JSON string.
fn json_quote(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A host-made response; no body in answer to `HEAD`.
fn respond_simple(
    out: &mut Vec<u8>,
    status: u16,
    extra: &[(&str, &[u8])],
    body: &str,
    keep_alive: bool,
    is_head: bool,
) {
    let start = out.len();
    percore_http::write_simple(out, status, extra, body, keep_alive);
    if is_head {
        out.truncate(out.len() - body.len());
    }
    debug_assert!(out[start..].starts_with(b"HTTP/1.1 "));
}

fn feed_body(pending: &mut PendingRequest, data: &[u8]) -> Result<usize, ParseError> {
    match &mut pending.body_left {
        BodyLeft::Length(left) => {
            let take = (*left).min(data.len());
            match &mut pending.stream {
                Some(s) => {
                    s.instance.stream_body(&mut s.body, &data[..take]);
                }
                None => pending.body.extend_from_slice(&data[..take]),
            }
            *left -= take;
            Ok(take)
        }
        BodyLeft::Chunked(decoder) => decoder.decode(data, &mut pending.body),
    }
}

fn body_complete(pending: &PendingRequest) -> bool {
    match &pending.body_left {
        BodyLeft::Length(left) => *left == 0,
        BodyLeft::Chunked(decoder) => decoder.is_done(),
    }
}

/// Which request, on which core: `c1-2041`. Tags the host's log lines about a request and the
/// guest's own, and the request's invocation record.
#[derive(Debug, Clone, Copy)]
struct RequestId {
    core: usize,
    seq: u64,
}

impl RequestId {
    /// Packed for the invocation record: core in the top 16 bits.
    fn packed(self) -> u64 {
        ((self.core as u64) << 48) | (self.seq & ((1 << 48) - 1))
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "c{}-{}", self.core, self.seq)
    }
}

fn log_guest(
    deployment: &str,
    request: RequestId,
    level: LogLevel,
    message: &str,
    fields: &[(String, String)],
) {
    let mut line = message.to_owned();
    for (k, v) in fields {
        line.push_str(&format!(" {k}={v}"));
    }
    let request = tracing::field::display(request);
    let deployment = tracing::field::display(deployment);
    match level {
        LogLevel::Trace => tracing::trace!(deployment, request, "{line}"),
        LogLevel::Debug => tracing::debug!(deployment, request, "{line}"),
        LogLevel::Info => tracing::info!(deployment, request, "{line}"),
        LogLevel::Warn => tracing::warn!(deployment, request, "{line}"),
        LogLevel::Error => tracing::error!(deployment, request, "{line}"),
    }
}
