//! One core's outbound connections and the operations they wait on.
//!
//! Futures (the client's, polled inside guests' calls) queue an operation on a connection and
//! sleep; the shard submits queued operations to its ring ([`submit`]) and hands their
//! completions back ([`complete`]), which wakes the future. Each connection has at most one
//! operation at a time. Deadlines are timers here: [`next_deadline`] bounds how long the shard
//! sleeps and [`expire`] wakes the futures whose deadline passed.
//!
//! Everything here lives in a thread-local of the shard's thread: the futures run on that
//! thread only (a guest's call is polled by its own core).

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use percore_engine::Origin;
use percore_rt::uring::{Event, Uring};

use super::OutboundLimits;

/// Idle kept-alive connections one core keeps, all origins together (each holds a descriptor).
const MAX_IDLE_PER_CORE: usize = 1024;

/// Whether an idle kept-alive connection is still open: not closed by the origin, and with
/// nothing unasked for waiting on it (a non-blocking peek).
fn still_open(socket: &socket2::Socket) -> bool {
    let mut byte = [std::mem::MaybeUninit::<u8>::uninit(); 1];
    match socket.recv_with_flags(&mut byte, libc::MSG_PEEK | libc::MSG_DONTWAIT) {
        Err(e) => e.kind() == io::ErrorKind::WouldBlock,
        Ok(_) => false,
    }
}

thread_local! {
    static REACTOR: RefCell<Option<Reactor>> = const { RefCell::new(None) };
}

pub(super) fn install(limits: OutboundLimits, tls: TlsConfig) {
    REACTOR.with(|r| *r.borrow_mut() = Some(Reactor::new(limits, tls)));
}

/// The TLS client configuration, or why there is none.
pub(crate) type TlsConfig = Result<Arc<rustls::ClientConfig>, String>;

/// The TLS state of a kept-alive `https` connection.
pub(crate) type Tls = Option<Box<rustls::ClientConnection>>;

pub(super) fn uninstall() {
    let _ = REACTOR.try_with(|r| r.borrow_mut().take());
}

/// Run `f` on this thread's reactor; `None` if it has none (or it is being torn down).
pub(crate) fn with<R>(f: impl FnOnce(&mut Reactor) -> R) -> Option<R> {
    REACTOR
        .try_with(|r| r.try_borrow_mut().ok()?.as_mut().map(f))
        .ok()
        .flatten()
}

/// An operation to submit.
#[derive(Debug)]
pub(crate) enum Op {
    Connect(SocketAddr),
    /// Send `buf[offset..]`.
    Send(Vec<u8>, usize),
    /// Receive into the spare capacity of the buffer.
    Recv(Vec<u8>),
}

/// An operation's completion.
#[derive(Debug)]
pub(crate) enum Done {
    Connected(io::Result<()>),
    Sent(io::Result<usize>, Vec<u8>),
    Received(io::Result<usize>, Vec<u8>),
}

#[derive(Debug)]
enum State {
    Idle,
    Queued(Op),
    InFlight,
    Done(Done),
}

#[derive(Debug)]
struct Conn {
    socket: socket2::Socket,
    state: State,
    waker: Option<Waker>,
    /// Dropped by its owner while an operation was in flight: freed at its completion.
    closing: bool,
    /// The deadline a timer is set for (one per connection and deadline).
    timer_at: Option<Instant>,
}

/// A deadline and what to wake then.
#[derive(Debug)]
struct Timer {
    at: Instant,
    seq: u64,
    target: Target,
}

/// What a timer wakes.
#[derive(Debug)]
enum Target {
    /// Whoever waits on this connection's operation then (a connection whose slot was reused
    /// meanwhile gets a spurious wake, which its future checks).
    Conn(u32),
    Waker(Waker),
}

impl PartialEq for Timer {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Timer {}
impl PartialOrd for Timer {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Timer {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// What the client did, for the core's counters.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct OutCounters {
    /// Connections opened.
    pub(crate) connections: u64,
    /// Requests sent on a kept-alive connection.
    pub(crate) reused: u64,
    /// Requests refused because the core had too many in flight.
    pub(crate) refused: u64,
}

/// One core's outbound connections.
#[derive(Debug)]
pub(crate) struct Reactor {
    pub(crate) limits: OutboundLimits,
    conns: Vec<Option<Conn>>,
    free: Vec<u32>,
    /// Connections with an operation to submit, or to cancel.
    queued: Vec<u32>,
    cancels: Vec<u32>,
    timers: BinaryHeap<Reverse<Timer>>,
    timer_seq: u64,
    /// Idle keep-alive connections per origin, with their TLS state and when they went idle.
    idle: HashMap<Origin, Vec<(u32, Tls, Instant)>>,
    /// For `https` origins.
    pub(crate) tls: TlsConfig,
    /// Idle connections kept, all origins.
    idle_total: usize,
    /// Requests in flight on this core.
    pub(crate) in_flight: usize,
    pub(crate) counters: OutCounters,
}

impl Reactor {
    fn new(limits: OutboundLimits, tls: TlsConfig) -> Self {
        Self {
            tls,
            limits,
            conns: Vec::new(),
            free: Vec::new(),
            queued: Vec::new(),
            cancels: Vec::new(),
            timers: BinaryHeap::new(),
            timer_seq: 0,
            idle: HashMap::new(),
            idle_total: 0,
            in_flight: 0,
            counters: OutCounters::default(),
        }
    }

    /// A new TCP socket for `addr`'s family, as connection token.
    pub(crate) fn open(&mut self, addr: &SocketAddr) -> io::Result<u32> {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(*addr),
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )?;
        socket.set_tcp_nodelay(true)?;
        let conn = Conn {
            socket,
            state: State::Idle,
            waker: None,
            closing: false,
            timer_at: None,
        };
        self.counters.connections += 1;
        Ok(match self.free.pop() {
            Some(token) => {
                self.conns[token as usize] = Some(conn);
                token
            }
            None => {
                self.conns.push(Some(conn));
                (self.conns.len() - 1) as u32
            }
        })
    }

    /// Queue `op` on connection `token` (which has none in flight).
    pub(crate) fn start(&mut self, token: u32, op: Op) {
        if let Some(conn) = self.conns.get_mut(token as usize).and_then(Option::as_mut) {
            conn.state = State::Queued(op);
            self.queued.push(token);
        }
    }

    /// The completion of `token`'s operation, or `Pending` (woken when it comes).
    pub(crate) fn poll_done(&mut self, token: u32, cx: &Context<'_>) -> Poll<Done> {
        let Some(conn) = self.conns.get_mut(token as usize).and_then(Option::as_mut) else {
            return Poll::Ready(Done::Received(
                Err(io::ErrorKind::NotConnected.into()),
                Vec::new(),
            ));
        };
        match std::mem::replace(&mut conn.state, State::Idle) {
            State::Done(done) => Poll::Ready(done),
            other => {
                conn.state = other;
                match &conn.waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => conn.waker = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
        }
    }

    /// Wake `waker` at `at` (and not before).
    pub(crate) fn wake_at(&mut self, at: Instant, waker: Waker) {
        self.timer_seq += 1;
        self.timers.push(Reverse(Timer {
            at,
            seq: self.timer_seq,
            target: Target::Waker(waker),
        }));
    }

    /// Wake whoever waits on connection `token` at `at`: one timer per connection and
    /// deadline, however many operations wait under it.
    pub(crate) fn wake_conn_at(&mut self, token: u32, at: Instant) {
        let Some(conn) = self.conns.get_mut(token as usize).and_then(Option::as_mut) else {
            return;
        };
        if conn.timer_at == Some(at) {
            return;
        }
        conn.timer_at = Some(at);
        self.timer_seq += 1;
        self.timers.push(Reverse(Timer {
            at,
            seq: self.timer_seq,
            target: Target::Conn(token),
        }));
    }

    /// Drop connection `token`: at once if nothing is in flight on it, else once its
    /// operation completes (the socket is shut down and the operation cancelled now).
    pub(crate) fn close(&mut self, token: u32) {
        let Some(slot) = self.conns.get_mut(token as usize) else {
            return;
        };
        match slot {
            Some(conn) if matches!(conn.state, State::InFlight) => {
                conn.closing = true;
                conn.waker = None;
                let _ = conn.socket.shutdown(std::net::Shutdown::Both);
                self.cancels.push(token);
            }
            Some(_) => {
                *slot = None;
                self.free.push(token);
            }
            None => {}
        }
    }

    /// An idle kept-alive connection to `origin`, if one is fresh enough.
    pub(crate) fn take_idle(&mut self, origin: &Origin, now: Instant) -> Option<(u32, Tls)> {
        let timeout = self.limits.idle_timeout;
        let idle = self.idle.get_mut(origin)?;
        let mut stale = Vec::new();
        let mut found = None;
        while let Some((token, tls, since)) = idle.pop() {
            self.idle_total -= 1;
            let alive = self
                .conns
                .get(token as usize)
                .and_then(Option::as_ref)
                .is_some_and(|c| still_open(&c.socket));
            if alive && now.duration_since(since) < timeout {
                found = Some((token, tls));
                break;
            }
            stale.push(token);
        }
        for token in stale {
            self.close(token);
        }
        if found.is_some() {
            self.counters.reused += 1;
        }
        found
    }

    /// Keep connection `token` for the next request to `origin` (or close it if the pool is
    /// full).
    pub(crate) fn put_idle(&mut self, origin: &Origin, token: u32, tls: Tls, now: Instant) {
        let max = self.limits.max_idle_per_origin;
        let idle = self.idle.entry(origin.clone()).or_default();
        if idle.len() >= max || self.idle_total >= MAX_IDLE_PER_CORE {
            self.close(token);
        } else {
            idle.push((token, tls, now));
            self.idle_total += 1;
        }
    }

    /// The earliest deadline a future waits for.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse(t)| t.at)
    }

    /// Wake the futures whose deadline has come; close idle connections past their timeout.
    pub(crate) fn expire(&mut self, now: Instant) {
        while self.timers.peek().is_some_and(|Reverse(t)| t.at <= now) {
            if let Some(Reverse(timer)) = self.timers.pop() {
                match timer.target {
                    Target::Waker(waker) => waker.wake(),
                    Target::Conn(token) => {
                        if let Some(conn) =
                            self.conns.get_mut(token as usize).and_then(Option::as_mut)
                        {
                            if conn.timer_at == Some(timer.at) {
                                conn.timer_at = None;
                            }
                            if let Some(waker) = &conn.waker {
                                waker.wake_by_ref();
                            }
                        }
                    }
                }
            }
        }
    }

    /// Close idle connections kept longer than the idle timeout (from the shard's tick).
    pub(crate) fn sweep_idle(&mut self, now: Instant) {
        let timeout = self.limits.idle_timeout;
        let mut stale = Vec::new();
        for idle in self.idle.values_mut() {
            idle.retain(|(token, _, since)| {
                let keep = now.duration_since(*since) < timeout;
                if !keep {
                    stale.push(*token);
                }
                keep
            });
        }
        self.idle_total -= stale.len();
        self.idle.retain(|_, v| !v.is_empty());
        for token in stale {
            self.close(token);
        }
    }
}

/// Submit every queued operation and cancellation to `ring`.
pub(crate) fn submit(ring: &mut Uring) {
    with(|r| {
        for token in std::mem::take(&mut r.queued) {
            let Some(conn) = r.conns.get_mut(token as usize).and_then(Option::as_mut) else {
                continue;
            };
            let State::Queued(op) = std::mem::replace(&mut conn.state, State::InFlight) else {
                continue;
            };
            let fd = conn.socket.as_raw_fd();
            let fd = &Fd(fd);
            let submitted = match op {
                Op::Connect(addr) => ring.connect(token, fd, addr),
                Op::Send(buf, offset) => ring.send_out(token, fd, buf, offset),
                Op::Recv(buf) => ring.recv_into(token, fd, buf),
            };
            if let Err(e) = submitted {
                conn.state = State::Done(Done::Connected(Err(e)));
                if let Some(w) = conn.waker.take() {
                    w.wake();
                }
            }
        }
        for token in std::mem::take(&mut r.cancels) {
            // Only the connection that was closed: a slot freed and reused since is another.
            if let Some(conn) = r.conns.get(token as usize).and_then(Option::as_ref)
                && conn.closing
            {
                let _ = ring.cancel_fd(&Fd(conn.socket.as_raw_fd()));
            }
        }
    });
}

/// Hand an outbound completion to its connection. Returns the event back if it is not one.
pub(crate) fn complete(event: Event) -> Option<Event> {
    let (token, done) = match event {
        Event::OutConnected { token, result } => (token, Done::Connected(result)),
        Event::OutSent { token, result, buf } => (token, Done::Sent(result, buf)),
        Event::OutReceived { token, result, buf } => (token, Done::Received(result, buf)),
        other => return Some(other),
    };
    with(|r| {
        let Some(slot) = r.conns.get_mut(token as usize) else {
            return;
        };
        let Some(conn) = slot else {
            return;
        };
        if conn.closing {
            *slot = None;
            r.free.push(token);
            return;
        }
        conn.state = State::Done(done);
        if let Some(w) = conn.waker.take() {
            w.wake();
        }
    });
    None
}

/// A raw descriptor as `AsRawFd`, for the ring's calls.
struct Fd(std::os::fd::RawFd);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.0
    }
}
