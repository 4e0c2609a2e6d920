//! One client connection's state.

use std::net::TcpStream;
use std::time::Instant;

use percore_http::ChunkedDecoder;

/// A request whose head has arrived but whose body is still coming: the head is copied out of
/// the receive buffer so that the buffer can go back to the kernel.
#[derive(Debug)]
pub(crate) struct PendingRequest {
    pub(crate) method: String,
    pub(crate) target: String,
    pub(crate) headers: Vec<(String, Vec<u8>)>,
    pub(crate) keep_alive: bool,
    pub(crate) body: Vec<u8>,
    pub(crate) body_left: BodyLeft,
    /// The body is going straight into this instance's input region instead of `body`.
    pub(crate) stream: Option<Streamed>,
}

/// A body being received into guest memory, and the instance it is in.
#[derive(Debug)]
pub(crate) struct Streamed {
    pub(crate) instance: percore_engine::Instance,
    pub(crate) body: percore_engine::StreamedBody,
    /// The deployment (id and load generation) that must run it.
    pub(crate) deployment: u32,
    pub(crate) generation: u64,
    /// The instance was created for this request.
    pub(crate) cold: bool,
}

/// What is left of a pending body.
#[derive(Debug)]
pub(crate) enum BodyLeft {
    /// This many bytes (`Content-Length`).
    Length(usize),
    /// Until the chunked decoder says done.
    Chunked(ChunkedDecoder),
}

/// A connection.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) stream: TcpStream,
    /// Bytes of a request head not complete yet (copied out of the receive buffers).
    pub(crate) inbuf: Vec<u8>,
    /// A request whose body is not complete yet.
    pub(crate) pending: Option<PendingRequest>,
    /// Response bytes not handed to the kernel yet.
    pub(crate) out: Vec<u8>,
    /// An empty buffer to reuse for the next send.
    pub(crate) spare: Vec<u8>,
    /// A send is in flight (its buffer belongs to the ring).
    pub(crate) sending: bool,
    /// The multishot receive is armed.
    pub(crate) recv_armed: bool,
    /// No more requests are read; close once the output is flushed.
    pub(crate) closing: bool,
    /// The peer closed its sending side (it may still read).
    pub(crate) peer_closed: bool,
    /// The connection failed (reset, send error): nothing more can be sent.
    pub(crate) broken: bool,
    /// A cancel of the receive was submitted.
    pub(crate) cancelled: bool,
    /// When a request has started, the instant by which it must be complete.
    pub(crate) request_deadline: Option<Instant>,
    /// Last time bytes moved.
    pub(crate) last_active: Instant,
}

impl Conn {
    pub(crate) fn new(stream: TcpStream, now: Instant) -> Self {
        Self {
            stream,
            inbuf: Vec::new(),
            pending: None,
            out: Vec::new(),
            spare: Vec::new(),
            sending: false,
            recv_armed: false,
            closing: false,
            peer_closed: false,
            broken: false,
            cancelled: false,
            request_deadline: None,
            last_active: now,
        }
    }

    /// Whether part of a request has been received and not answered.
    pub(crate) fn mid_request(&self) -> bool {
        !self.inbuf.is_empty() || self.pending.is_some()
    }

    /// Whether the connection can be dropped: nothing in flight and nothing left to say.
    pub(crate) fn finished(&self) -> bool {
        (self.closing || self.peer_closed)
            && !self.sending
            && self.out.is_empty()
            && !self.recv_armed
    }
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

    /// Every live connection.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Conn> {
        self.slots.iter().filter_map(|(_, c)| c.as_ref())
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
