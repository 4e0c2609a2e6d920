//! One client connection: its socket, what it has received and not answered yet (its
//! [`Intake`]), what it has to send, and where it is in its life. The event loop only calls
//! methods here; no other module sets a connection's state.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::intake::{Intake, IntakeSettings, Serve};

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Life {
    /// Reading requests and answering them.
    Open,
    /// No more requests are read; the connection closes once its output is flushed.
    Closing,
    /// The socket failed (reset, send error): nothing more can be sent.
    Broken,
}

/// The connection's multishot receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Recv {
    /// Armed: completions may still arrive.
    Armed,
    /// A cancel was submitted; the final completion has not arrived yet.
    Cancelling,
    /// Ended: no completion will arrive.
    Ended,
}

/// What the event loop must do for a connection after handing its output to the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Closing {
    /// Shut down the sending side (everything has been sent).
    pub(crate) shutdown: bool,
    /// Cancel the multishot receive.
    pub(crate) cancel_recv: bool,
    /// Nothing is in flight any more: drop the connection.
    pub(crate) remove: bool,
}

/// A connection.
#[derive(Debug)]
pub(crate) struct Conn {
    stream: TcpStream,
    /// Requests received and not answered yet.
    intake: Intake,
    /// Response bytes not handed to the kernel yet, in request order.
    out: Vec<u8>,
    /// An empty buffer to reuse for the next send.
    spare: Vec<u8>,
    /// A send is in flight (its buffer belongs to the ring).
    sending: bool,
    /// The peer closed its sending side (it may still read).
    peer_closed: bool,
    life: Life,
    recv: Recv,
    /// Last time bytes moved.
    last_active: Instant,
}

impl Conn {
    /// A new connection whose multishot receive is armed.
    pub(crate) fn new(stream: TcpStream, now: Instant) -> Self {
        Self {
            stream,
            intake: Intake::default(),
            out: Vec::new(),
            spare: Vec::new(),
            sending: false,
            peer_closed: false,
            life: Life::Open,
            recv: Recv::Armed,
            last_active: now,
        }
    }

    /// The socket.
    pub(crate) fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Answer without reading anything more, then close (overload, shutdown).
    pub(crate) fn answer_and_close(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        write(&mut self.out);
        self.close();
    }

    /// Read no more requests; close once the output is flushed.
    pub(crate) fn close(&mut self) {
        if self.life == Life::Open {
            self.life = Life::Closing;
        }
    }

    /// Whether requests are still read.
    pub(crate) fn is_open(&self) -> bool {
        self.life == Life::Open
    }

    /// Bytes arrived: answer every complete request in them through `server`.
    pub(crate) fn on_bytes(
        &mut self,
        bytes: &[u8],
        server: &mut impl Serve,
        settings: &IntakeSettings<'_>,
    ) {
        self.last_active = settings.now;
        if self.life != Life::Open {
            return;
        }
        let settings = IntakeSettings {
            peer: Some(&self.stream),
            ..*settings
        };
        if !self.intake.feed(bytes, &mut self.out, server, &settings) {
            self.close();
        }
    }

    /// A send completed and the output may have drained: answer requests held meanwhile.
    pub(crate) fn resume(&mut self, server: &mut impl Serve, settings: &IntakeSettings<'_>) {
        let settings = IntakeSettings {
            peer: Some(&self.stream),
            ..*settings
        };
        // A closing connection still answers what it holds (requests behind a call in flight,
        // or waiting for room, from a client that then shut down its sending side: it may
        // still read); a connection that closed for any other reason holds nothing.
        if self.life != Life::Broken && !self.intake.resume(&mut self.out, server, &settings) {
            self.close();
        }
    }

    /// The call of this connection's request ended: `write` its response. What was held
    /// meanwhile is answered by [`Conn::resume`].
    pub(crate) fn call_ended(
        &mut self,
        write: impl FnOnce(&mut Vec<u8>),
        settings: &IntakeSettings<'_>,
    ) {
        write(&mut self.out);
        if self.life == Life::Broken {
            // Nothing more can be sent: the response is dropped, so the connection can go.
            self.out.clear();
        }
        self.intake
            .call_ended(settings.now, settings.request_timeout);
        if settings.draining {
            // The response said `connection: close`: nothing after it is answered.
            self.intake.clear();
            self.close();
        }
    }

    /// The core has room for the call of the request this connection holds.
    pub(crate) fn wake(&mut self, server: &mut impl Serve, settings: &IntakeSettings<'_>) {
        self.intake.unhold();
        self.resume(server, settings);
    }

    /// The peer closed its sending side.
    pub(crate) fn on_peer_closed(&mut self) {
        self.peer_closed = true;
        self.close();
    }

    /// The multishot receive ended (the kernel says no more completions follow).
    pub(crate) fn on_recv_ended(&mut self) {
        self.recv = Recv::Ended;
    }

    /// Whether the receive ended while the connection still reads (the kernel ran out of
    /// provided buffers, or ended the multishot receive): it must be armed again.
    pub(crate) fn wants_recv(&self) -> bool {
        self.recv == Recv::Ended && self.life == Life::Open && !self.peer_closed
    }

    /// The receive was armed again.
    pub(crate) fn on_recv_armed(&mut self) {
        self.recv = Recv::Armed;
    }

    /// The socket failed: nothing more can be sent.
    pub(crate) fn on_failed(&mut self) {
        self.life = Life::Broken;
        self.out.clear();
    }

    /// The next buffer to send, if there is output and no send in flight. The connection
    /// counts the send as in flight until [`Conn::on_sent`] or [`Conn::send_refused`].
    pub(crate) fn take_send(&mut self) -> Option<Vec<u8>> {
        if self.sending || self.out.is_empty() || self.life == Life::Broken {
            return None;
        }
        self.sending = true;
        let spare = std::mem::take(&mut self.spare);
        Some(std::mem::replace(&mut self.out, spare))
    }

    /// The ring would not take the send: give up on the connection.
    pub(crate) fn send_refused(&mut self) {
        self.sending = false;
        self.close();
    }

    /// A send completed with `result`; `buf` is its buffer back. Returns the bytes sent.
    pub(crate) fn on_sent(
        &mut self,
        result: std::io::Result<usize>,
        mut buf: Vec<u8>,
        now: Instant,
    ) -> usize {
        self.sending = false;
        match result {
            Ok(n) => {
                self.last_active = now;
                if n < buf.len() {
                    // Partial send: what is left goes first, then anything queued since.
                    buf.drain(..n);
                    buf.extend_from_slice(&self.out);
                    self.out = buf;
                } else {
                    buf.clear();
                    self.spare = buf;
                }
                n
            }
            Err(_) => {
                self.on_failed();
                0
            }
        }
    }

    /// After output was handed to the kernel: what to do about closing. A closing connection
    /// with everything sent shuts down its sending side and cancels its receive once; once
    /// no operation is in flight it can be dropped.
    pub(crate) fn closing_steps(&mut self) -> Closing {
        let mut steps = Closing::default();
        // A call in flight still has a response to write; a request held for room still has
        // to run.
        let flushed =
            !self.sending && self.out.is_empty() && !self.intake.waiting() && !self.intake.held();
        if self.life != Life::Open && flushed {
            steps.shutdown = true;
            if self.recv == Recv::Armed {
                self.recv = Recv::Cancelling;
                steps.cancel_recv = true;
            }
        }
        steps.remove =
            (self.life != Life::Open || self.peer_closed) && flushed && self.recv == Recv::Ended;
        steps
    }

    /// Whether part of a request has been received and not answered.
    pub(crate) fn mid_request(&self) -> bool {
        self.intake.mid_request()
    }

    /// At a clock tick: answer 408 to a request not complete by its deadline, close a
    /// connection idle for longer than `idle`, or end one whose client stopped reading.
    pub(crate) fn on_tick(&mut self, now: Instant, idle: Duration) -> Tick {
        let stalled =
            (self.sending || !self.out.is_empty()) && now.duration_since(self.last_active) > idle;
        if stalled && self.life != Life::Broken {
            // The client has read nothing for the idle timeout while output waits: end the
            // connection. The send in flight fails and gives its buffer back.
            let _ = self.stream.shutdown(std::net::Shutdown::Both);
            self.on_failed();
            return Tick::Stalled;
        }
        if self.life != Life::Open {
            return Tick::Quiet;
        }
        if self.intake.expired(now) {
            self.intake.clear();
            percore_http::write_simple(&mut self.out, 408, &[], "request timeout\n", false);
            self.close();
            return Tick::TimedOut;
        }
        if !self.mid_request()
            && !self.sending
            && self.out.is_empty()
            && now.duration_since(self.last_active) > idle
        {
            self.close();
        }
        Tick::Quiet
    }

    /// The server is stopping: an idle connection closes now; one with a request in progress
    /// finishes it (its response says `connection: close`).
    pub(crate) fn on_drain(&mut self) {
        if !self.mid_request() {
            self.close();
        }
    }
}

/// What a clock tick did to a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tick {
    /// Nothing the core counts.
    Quiet,
    /// A request missed its deadline and was answered 408.
    TimedOut,
    /// The client read nothing for the idle timeout while output waited: ended.
    Stalled,
}

/// A slab of connections addressed by tokens that carry a generation, so that a late completion
/// for a closed connection never reaches the connection that reuses its slot.
#[derive(Debug, Default)]
pub(crate) struct Conns {
    slots: Vec<(u32, Option<Conn>)>,
    free: Vec<u32>,
    live: usize,
}

const INDEX_BITS: u32 = 20;
const INDEX_MASK: u32 = (1 << INDEX_BITS) - 1;

impl Conns {
    pub(crate) fn len(&self) -> usize {
        self.live
    }

    pub(crate) fn insert(&mut self, conn: Conn) -> u32 {
        self.live += 1;
        match self.free.pop() {
            Some(index) => {
                let slot = &mut self.slots[index as usize];
                slot.0 = (slot.0 + 1) & (u32::MAX >> INDEX_BITS);
                slot.1 = Some(conn);
                slot.0 << INDEX_BITS | index
            }
            None => {
                let index = self.slots.len() as u32;
                self.slots.push((0, Some(conn)));
                index
            }
        }
    }

    pub(crate) fn get_mut(&mut self, token: u32) -> Option<&mut Conn> {
        let (generation, conn) = self.slots.get_mut((token & INDEX_MASK) as usize)?;
        if *generation != token >> INDEX_BITS {
            return None;
        }
        conn.as_mut()
    }

    pub(crate) fn remove(&mut self, token: u32) -> Option<Conn> {
        let index = token & INDEX_MASK;
        let (generation, conn) = self.slots.get_mut(index as usize)?;
        if *generation != token >> INDEX_BITS {
            return None;
        }
        let conn = conn.take()?;
        self.free.push(index);
        self.live -= 1;
        Some(conn)
    }

    /// Tokens of every live connection.
    pub(crate) fn tokens(&self) -> Vec<u32> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, (_, c))| c.is_some())
            .map(|(i, (g, _))| g << INDEX_BITS | i as u32)
            .collect()
    }
}

#[cfg(test)]
mod tests;
