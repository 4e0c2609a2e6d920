//! io_uring with buffer ownership: what the kernel may write to or read from is owned by the
//! [`Uring`] until the completion that returns it.
//!
//! - Receives are multishot over one provided-buffer ring: the kernel picks a buffer per
//!   completion and hands it to the caller as a [`Lease`]; the caller reads it through
//!   [`Uring::leased`] and gives it back with [`Uring::recycle`].
//! - Sends take a `Vec<u8>` by value and return it with the completion ([`Event::Sent`]).
//! - Accepts are multishot.
//! - Outbound connections (the data plane's HTTP client) connect, send and receive one
//!   operation at a time: a receive fills the spare capacity of a `Vec<u8>` given by value and
//!   returned with the completion ([`Event::OutReceived`]).
//! - Dropping the ring first cancels every operation and waits for their completions, so no
//!   buffer is freed while the kernel may still touch it.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

mod bufring;
mod sockaddr;

use io_uring::types::{Fd, Timespec};
use io_uring::{IoUring, cqueue, opcode, squeue};

use bufring::BufRing;
use sockaddr::SockAddr;

const KIND_SHIFT: u32 = 56;
const ACCEPT: u64 = 1;
const RECV: u64 = 2;
const SEND: u64 = 3;
const TIMER: u64 = 4;
const CANCEL: u64 = 5;
const WAKE: u64 = 6;
const OUT_CONNECT: u64 = 7;
const OUT_SEND: u64 = 8;
const OUT_RECV: u64 = 9;
/// Buffer group of the one provided-buffer ring.
const BGID: u16 = 0;

fn user_data(kind: u64, slot: u32, token: u32) -> u64 {
    (kind << KIND_SHIFT) | (u64::from(slot & 0x00ff_ffff) << 32) | u64::from(token)
}

/// The slot an operation's user data names.
fn slot_of(data: u64) -> u32 {
    ((data >> 32) & 0x00ff_ffff) as u32
}

/// Settings of one ring.
#[derive(Debug, Clone, Copy)]
pub struct UringConfig {
    /// Submission queue entries.
    pub entries: u32,
    /// Use a kernel submission-polling thread that sleeps after this idle time.
    pub sqpoll_idle: Option<Duration>,
    /// Number of provided receive buffers (a power of two).
    pub buffers: u16,
    /// Size of each receive buffer.
    pub buffer_size: u32,
}

impl Default for UringConfig {
    fn default() -> Self {
        Self {
            entries: 1024,
            sqpoll_idle: None,
            buffers: 1024,
            buffer_size: 16 << 10,
        }
    }
}

/// A receive buffer the kernel filled and the caller now holds. Not `Clone`: reading it
/// ([`Uring::leased`]) borrows it, and [`Uring::recycle`] consumes it.
#[derive(Debug)]
pub struct Lease {
    bid: u16,
    len: u32,
}

impl Lease {
    /// Bytes received into this buffer.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether nothing was received (never the case for a lease from [`Event::Received`]).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// A completion.
#[derive(Debug)]
pub enum Event {
    /// A connection was accepted (or accepting failed). `more` is false when the multishot
    /// accept ended and must be armed again.
    Accepted {
        /// The new socket.
        result: io::Result<OwnedFd>,
        /// Whether the multishot accept is still armed.
        more: bool,
    },
    /// Bytes arrived for connection `token` (`Ok(None)`: the peer closed its side).
    Received {
        /// The caller's connection token.
        token: u32,
        /// The data, end of stream, or the error (`ENOBUFS`: no free buffer: re-arm later).
        result: io::Result<Option<Lease>>,
        /// Whether the multishot receive is still armed.
        more: bool,
    },
    /// A send finished; the buffer comes back.
    Sent {
        /// The caller's connection token.
        token: u32,
        /// Bytes sent, or the error.
        result: io::Result<usize>,
        /// The buffer given to [`Uring::send`].
        buf: Vec<u8>,
    },
    /// The timer fired.
    Timer,
    /// A watched descriptor became readable (see [`Uring::watch`]). `more` is false when the
    /// watch ended and must be armed again.
    Woken {
        /// Whether the watch is still armed.
        more: bool,
    },
    /// An outbound connect finished ([`Uring::connect`]).
    OutConnected {
        /// The caller's token for the outbound connection.
        token: u32,
        /// Connected, or why not.
        result: io::Result<()>,
    },
    /// An outbound send finished ([`Uring::send_out`]); the buffer comes back.
    OutSent {
        /// The caller's token for the outbound connection.
        token: u32,
        /// Bytes sent, or the error.
        result: io::Result<usize>,
        /// The buffer given.
        buf: Vec<u8>,
    },
    /// An outbound receive finished ([`Uring::recv_into`]): the buffer comes back with the
    /// bytes received appended (`Ok(0)`: the peer closed its side).
    OutReceived {
        /// The caller's token for the outbound connection.
        token: u32,
        /// Bytes received, or the error.
        result: io::Result<usize>,
        /// The buffer given, longer by the bytes received.
        buf: Vec<u8>,
    },
}

/// One io_uring with its provided buffers and the send buffers in flight.
pub struct Uring {
    // Field order matters: the ring is drained in `Drop::drop`, before any buffer is freed.
    ring: IoUring,
    bufs: BufRing,
    /// Buffers of sends and outbound receives in flight, by slot.
    sends: Vec<Option<Vec<u8>>>,
    free_sends: Vec<u32>,
    /// Socket addresses of connects in flight, by slot.
    addrs: Vec<Option<Box<SockAddr>>>,
    free_addrs: Vec<u32>,
    timer: Box<Timespec>,
    timer_armed: bool,
    in_flight: usize,
    completions: Vec<cqueue::Entry>,
}

impl std::fmt::Debug for Uring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uring")
            .field("in_flight", &self.in_flight)
            .finish_non_exhaustive()
    }
}

impl Uring {
    /// A ring with a provided-buffer ring registered.
    pub fn new(config: UringConfig) -> io::Result<Self> {
        let mut builder = IoUring::builder();
        if let Some(idle) = config.sqpoll_idle {
            builder.setup_sqpoll(idle.as_millis().min(u128::from(u32::MAX)) as u32);
        } else {
            builder.setup_coop_taskrun().setup_single_issuer();
        }
        let ring = builder.build(config.entries)?;
        let bufs = BufRing::new(config.buffers, config.buffer_size)?;
        // SAFETY: the ring memory is page aligned, holds `buffers` entries, and is owned by
        // `bufs`, which outlives the registration: `Drop` drains the ring before `bufs` goes.
        unsafe {
            ring.submitter().register_buf_ring_with_flags(
                bufs.ring.as_ptr() as u64,
                config.buffers,
                BGID,
                0,
            )?;
        }
        Ok(Self {
            ring,
            bufs,
            sends: Vec::new(),
            free_sends: Vec::new(),
            addrs: Vec::new(),
            free_addrs: Vec::new(),
            timer: Box::new(Timespec::new()),
            timer_armed: false,
            in_flight: 0,
            completions: Vec::with_capacity(256),
        })
    }

    /// The ring's file descriptor (to show one ring per core from outside).
    pub fn as_raw_fd(&self) -> RawFd {
        self.ring.as_raw_fd()
    }

    /// Operations submitted whose last completion has not arrived.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Queue an entry.
    ///
    /// # Safety
    ///
    /// Every buffer the entry points at must stay valid (and, for reads, unaliased) until its
    /// final completion is drained.
    unsafe fn push(&mut self, entry: squeue::Entry) -> io::Result<()> {
        // SAFETY: forwarded to the caller.
        while unsafe { self.ring.submission().push(&entry) }.is_err() {
            self.ring.submit()?;
        }
        self.in_flight += 1;
        Ok(())
    }

    /// Arm a multishot accept on `listener`.
    pub fn accept_multi(&mut self, listener: &impl AsRawFd) -> io::Result<()> {
        let entry = opcode::AcceptMulti::new(Fd(listener.as_raw_fd()))
            .build()
            .user_data(user_data(ACCEPT, 0, 0));
        // SAFETY: accept points at no buffer.
        unsafe { self.push(entry) }
    }

    /// Arm a multishot receive on `fd` for connection `token`, into the provided buffers.
    pub fn recv_multi(&mut self, token: u32, fd: &impl AsRawFd) -> io::Result<()> {
        let entry = opcode::RecvMulti::new(Fd(fd.as_raw_fd()), BGID)
            .build()
            .user_data(user_data(RECV, 0, token));
        // SAFETY: the kernel writes only into provided buffers, owned by `self.bufs` and handed
        // out only after their completion.
        unsafe { self.push(entry) }
    }

    /// Report [`Event::Woken`] each time `fd` becomes readable (a multishot poll), for a
    /// [`crate::notify::Notifier`] that other threads use to wake this ring.
    pub fn watch(&mut self, fd: &impl AsRawFd) -> io::Result<()> {
        let entry = opcode::PollAdd::new(Fd(fd.as_raw_fd()), libc::POLLIN as u32)
            .multi(true)
            .build()
            .user_data(user_data(WAKE, 0, 0));
        // SAFETY: a poll points at no buffer.
        unsafe { self.push(entry) }
    }

    /// Cancel the multishot accept (its final completion still comes).
    pub fn cancel_accept(&mut self) -> io::Result<()> {
        let entry = opcode::AsyncCancel::new(user_data(ACCEPT, 0, 0))
            .build()
            .user_data(user_data(CANCEL, 0, 0));
        // SAFETY: cancel points at no buffer.
        unsafe { self.push(entry) }
    }

    /// Cancel the multishot receive of connection `token` (its final completion still comes).
    pub fn cancel_recv(&mut self, token: u32) -> io::Result<()> {
        let entry = opcode::AsyncCancel::new(user_data(RECV, 0, token))
            .build()
            .user_data(user_data(CANCEL, 0, token));
        // SAFETY: cancel points at no buffer.
        unsafe { self.push(entry) }
    }

    /// Send `buf[offset..]` on `fd`; `buf` comes back in [`Event::Sent`].
    pub fn send(
        &mut self,
        token: u32,
        fd: &impl AsRawFd,
        buf: Vec<u8>,
        offset: usize,
    ) -> io::Result<()> {
        self.send_kind(SEND, token, fd, buf, offset)
    }

    /// Send `buf[offset..]` on outbound connection `token`; `buf` comes back in
    /// [`Event::OutSent`].
    pub fn send_out(
        &mut self,
        token: u32,
        fd: &impl AsRawFd,
        buf: Vec<u8>,
        offset: usize,
    ) -> io::Result<()> {
        self.send_kind(OUT_SEND, token, fd, buf, offset)
    }

    fn keep_buffer(&mut self, buf: Vec<u8>) -> u32 {
        match self.free_sends.pop() {
            Some(slot) => {
                self.sends[slot as usize] = Some(buf);
                slot
            }
            None => {
                self.sends.push(Some(buf));
                (self.sends.len() - 1) as u32
            }
        }
    }

    fn send_kind(
        &mut self,
        kind: u64,
        token: u32,
        fd: &impl AsRawFd,
        buf: Vec<u8>,
        offset: usize,
    ) -> io::Result<()> {
        let offset = offset.min(buf.len());
        let len = u32::try_from(buf.len() - offset).unwrap_or(u32::MAX);
        let ptr = buf[offset..].as_ptr();
        let slot = self.keep_buffer(buf);
        let entry = opcode::Send::new(Fd(fd.as_raw_fd()), ptr, len)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(user_data(kind, slot, token));
        // SAFETY: `ptr..ptr+len` is inside the Vec now stored in `self.sends[slot]`; a Vec's heap
        // buffer does not move when the Vec does, and it is neither touched nor freed until the
        // completion returns it (or `Drop` has drained the ring).
        unsafe { self.push(entry) }
    }

    /// Receive once on outbound connection `token` into the spare capacity of `buf` (reserve
    /// it first: with none, the receive reads nothing); `buf` comes back in
    /// [`Event::OutReceived`], its length grown by the bytes received.
    pub fn recv_into(&mut self, token: u32, fd: &impl AsRawFd, mut buf: Vec<u8>) -> io::Result<()> {
        let spare = buf.spare_capacity_mut();
        let len = u32::try_from(spare.len()).unwrap_or(u32::MAX);
        let ptr = spare.as_mut_ptr().cast::<u8>();
        let slot = self.keep_buffer(buf);
        let entry = opcode::Recv::new(Fd(fd.as_raw_fd()), ptr, len)
            .build()
            .user_data(user_data(OUT_RECV, slot, token));
        // SAFETY: `ptr..ptr+len` is the spare capacity of the Vec now stored in
        // `self.sends[slot]`: its heap buffer does not move, nothing reads or writes it until the
        // completion returns it (its length is only set then, to what the kernel wrote), and it is
        // not freed before that completion (or `Drop` has drained the ring).
        unsafe { self.push(entry) }
    }

    /// Connect outbound connection `token`'s socket `fd` to `addr`; completes with
    /// [`Event::OutConnected`].
    pub fn connect(
        &mut self,
        token: u32,
        fd: &impl AsRawFd,
        addr: std::net::SocketAddr,
    ) -> io::Result<()> {
        let addr = Box::new(SockAddr::from(addr));
        let (ptr, len) = (addr.as_ptr(), addr.len);
        let slot = match self.free_addrs.pop() {
            Some(slot) => {
                self.addrs[slot as usize] = Some(addr);
                slot
            }
            None => {
                self.addrs.push(Some(addr));
                (self.addrs.len() - 1) as u32
            }
        };
        let entry = opcode::Connect::new(Fd(fd.as_raw_fd()), ptr, len)
            .build()
            .user_data(user_data(OUT_CONNECT, slot, token));
        // SAFETY: the address is boxed in `self.addrs[slot]`, so it does not move, and it is
        // kept until the completion (or `Drop` has drained the ring).
        unsafe { self.push(entry) }
    }

    /// Cancel every operation in flight on `fd` (their completions still come, with
    /// `ECANCELED`).
    pub fn cancel_fd(&mut self, fd: &impl AsRawFd) -> io::Result<()> {
        let entry =
            opcode::AsyncCancel2::new(io_uring::types::CancelBuilder::fd(Fd(fd.as_raw_fd())).all())
                .build()
                .user_data(user_data(CANCEL, 0, 0));
        // SAFETY: cancel points at no buffer.
        unsafe { self.push(entry) }
    }

    /// Fire [`Event::Timer`] once after `after`, unless a timer is already armed.
    pub fn timer(&mut self, after: Duration) -> io::Result<()> {
        if self.timer_armed {
            return Ok(());
        }
        *self.timer = Timespec::new()
            .sec(after.as_secs())
            .nsec(after.subsec_nanos());
        let entry = opcode::Timeout::new(&*self.timer)
            .build()
            .user_data(user_data(TIMER, 0, 0));
        // SAFETY: the timespec is boxed in `self` and not rewritten while `timer_armed`.
        unsafe { self.push(entry)? };
        self.timer_armed = true;
        Ok(())
    }

    /// Submit what is queued and wait for at least `want` completions.
    pub fn submit_and_wait(&mut self, want: usize) -> io::Result<()> {
        match self.ring.submit_and_wait(want) {
            Ok(_) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Submit what is queued and wait for at least `want` completions or until `timeout` has
    /// passed, whichever comes first.
    pub fn submit_and_wait_for(&mut self, want: usize, timeout: Duration) -> io::Result<()> {
        let ts = Timespec::new()
            .sec(timeout.as_secs())
            .nsec(timeout.subsec_nanos());
        let args = io_uring::types::SubmitArgs::new().timespec(&ts);
        match self.ring.submitter().submit_with_args(want, &args) {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EINTR | libc::EBUSY | libc::ETIME)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Move every available completion into `events`.
    pub fn drain(&mut self, events: &mut Vec<Event>) {
        // Reuse one buffer for the entries: no allocation per event-loop turn.
        let mut completions = std::mem::take(&mut self.completions);
        completions.extend(self.ring.completion());
        for cqe in completions.drain(..) {
            if let Some(event) = self.complete(&cqe) {
                events.push(event);
            }
        }
        self.completions = completions;
    }

    fn complete(&mut self, cqe: &cqueue::Entry) -> Option<Event> {
        let data = cqe.user_data();
        let kind = data >> KIND_SHIFT;
        let token = data as u32;
        let res = cqe.result();
        let more = cqueue::more(cqe.flags());
        if !more {
            self.in_flight -= 1;
        }
        let result = |res: i32| {
            if res < 0 {
                Err(io::Error::from_raw_os_error(-res))
            } else {
                Ok(res)
            }
        };
        match kind {
            ACCEPT => Some(Event::Accepted {
                // SAFETY: a successful accept returns a new descriptor this process owns.
                result: result(res).map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                more,
            }),
            RECV => {
                let result = result(res).map(|n| {
                    cqueue::buffer_select(cqe.flags()).map(|bid| Lease { bid, len: n as u32 })
                });
                // A zero-length completion that still carries a buffer is end of stream too:
                // give the buffer back at once.
                let result = match result {
                    Ok(Some(lease)) if lease.len == 0 => {
                        self.recycle(lease);
                        Ok(None)
                    }
                    other => other,
                };
                Some(Event::Received {
                    token,
                    result,
                    more,
                })
            }
            SEND => {
                let buf = self.take_buffer(data);
                Some(Event::Sent {
                    token,
                    result: result(res).map(|n| n as usize),
                    buf,
                })
            }
            TIMER => {
                self.timer_armed = false;
                Some(Event::Timer)
            }
            WAKE => Some(Event::Woken { more }),
            OUT_CONNECT => {
                let slot = slot_of(data);
                self.addrs[slot as usize] = None;
                self.free_addrs.push(slot);
                Some(Event::OutConnected {
                    token,
                    result: result(res).map(drop),
                })
            }
            OUT_SEND => {
                let buf = self.take_buffer(data);
                Some(Event::OutSent {
                    token,
                    result: result(res).map(|n| n as usize),
                    buf,
                })
            }
            OUT_RECV => {
                let mut buf = self.take_buffer(data);
                let result = result(res).map(|n| n as usize);
                if let Ok(n) = result {
                    let n = n.min(buf.capacity() - buf.len());
                    // SAFETY: the kernel wrote `n` bytes into the spare capacity given to
                    // `recv_into` (never more than that capacity), right after the old length.
                    unsafe { buf.set_len(buf.len() + n) };
                }
                Some(Event::OutReceived { token, result, buf })
            }
            _ => None,
        }
    }

    /// The buffer a completed send or receive held (`data`: its user data), its slot freed.
    fn take_buffer(&mut self, data: u64) -> Vec<u8> {
        let slot = slot_of(data);
        let buf = self.sends[slot as usize].take().unwrap_or_default();
        self.free_sends.push(slot);
        buf
    }

    /// The bytes of a leased receive buffer.
    pub fn leased(&self, lease: &Lease) -> &[u8] {
        self.bufs.bytes(lease)
    }

    /// Give a receive buffer back to the kernel.
    pub fn recycle(&mut self, lease: Lease) {
        self.bufs.push(lease.bid);
        self.bufs.publish();
    }
}

impl Drop for Uring {
    fn drop(&mut self) {
        // Cancel everything, then wait until the kernel has finished with every buffer.
        let cancel = opcode::AsyncCancel2::new(io_uring::types::CancelBuilder::any())
            .build()
            .user_data(user_data(CANCEL, 0, 0));
        // SAFETY: cancel points at no buffer.
        let _ = unsafe { self.push(cancel) };
        let mut events = Vec::new();
        for _ in 0..1000 {
            if self.in_flight == 0 {
                break;
            }
            if self.ring.submit_and_wait(1).is_err() {
                break;
            }
            self.drain(&mut events);
            for event in events.drain(..) {
                if let Event::Received {
                    result: Ok(Some(lease)),
                    ..
                } = event
                {
                    self.recycle(lease);
                }
            }
        }
        let _ = self.ring.submitter().unregister_buf_ring(BGID);
    }
}

#[cfg(test)]
mod tests;
