//! io_uring with buffer ownership: what the kernel may write to or read from is owned by the
//! [`Uring`] until the completion that returns it.
//!
//! - Receives are multishot over one provided-buffer ring: the kernel picks a buffer per
//!   completion and hands it to the caller as a [`Lease`]; the caller reads it through
//!   [`Uring::leased`] and gives it back with [`Uring::recycle`].
//! - Sends take a `Vec<u8>` by value and return it with the completion ([`Event::Sent`]).
//! - Accepts are multishot.
//! - Dropping the ring first cancels every operation and waits for their completions, so no
//!   buffer is freed while the kernel may still touch it.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use io_uring::types::{BufRingEntry, Fd, Timespec};
use io_uring::{IoUring, cqueue, opcode, squeue};

const KIND_SHIFT: u32 = 56;
const ACCEPT: u64 = 1;
const RECV: u64 = 2;
const SEND: u64 = 3;
const TIMER: u64 = 4;
const CANCEL: u64 = 5;
const WAKE: u64 = 6;
/// Buffer group of the one provided-buffer ring.
const BGID: u16 = 0;

fn user_data(kind: u64, slot: u32, token: u32) -> u64 {
    (kind << KIND_SHIFT) | (u64::from(slot & 0x00ff_ffff) << 32) | u64::from(token)
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
}

/// The provided-buffer ring: entries shared with the kernel, and the buffers they point at.
struct BufRing {
    /// Page-aligned array of `entries` ring entries (mmap'd).
    ring: NonNull<BufRingEntry>,
    ring_bytes: usize,
    entries: u16,
    tail: u16,
    buffers: Box<[u8]>,
    buffer_size: u32,
}

impl BufRing {
    fn new(entries: u16, buffer_size: u32) -> io::Result<Self> {
        if !entries.is_power_of_two() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "buffer count must be a power of two",
            ));
        }
        let ring_bytes = usize::from(entries) * std::mem::size_of::<BufRingEntry>();
        // SAFETY: an anonymous private read-write mapping the kernel places; released in Drop.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                ring_bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ring = NonNull::new(ptr.cast::<BufRingEntry>()).ok_or_else(io::Error::last_os_error)?;
        let mut this = Self {
            ring,
            ring_bytes,
            entries,
            tail: 0,
            buffers: vec![0u8; usize::from(entries) * buffer_size as usize].into_boxed_slice(),
            buffer_size,
        };
        for bid in 0..entries {
            this.push(bid);
        }
        this.publish();
        Ok(this)
    }

    /// Put buffer `bid` at the tail (not yet visible to the kernel: see `publish`).
    fn push(&mut self, bid: u16) {
        let index = usize::from(self.tail & (self.entries - 1));
        // SAFETY: `index < entries`, inside the mapping; the kernel reads entries only between
        // head and the published tail, and this slot is past the published tail.
        let entry = unsafe { &mut *self.ring.as_ptr().add(index) };
        let offset = usize::from(bid) * self.buffer_size as usize;
        entry.set_addr(self.buffers[offset..].as_ptr() as u64);
        entry.set_len(self.buffer_size);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Make every pushed entry visible to the kernel.
    fn publish(&self) {
        // SAFETY: `ring` is the first entry of the registered ring, so `tail` points at the
        // ring's tail field, a u16 the kernel reads atomically; it is aligned and lives as long
        // as the mapping.
        let tail = unsafe { &*BufRingEntry::tail(self.ring.as_ptr()).cast::<AtomicU16>() };
        tail.store(self.tail, Ordering::Release);
    }

    fn bytes(&self, lease: &Lease) -> &[u8] {
        let offset = usize::from(lease.bid) * self.buffer_size as usize;
        &self.buffers[offset..offset + lease.len as usize]
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: exactly the mapping made in `new`; the ring was unregistered (or the io_uring
        // closed and drained) before, so the kernel no longer reads it.
        unsafe {
            libc::munmap(self.ring.as_ptr().cast(), self.ring_bytes);
        }
    }
}

/// One io_uring with its provided buffers and the send buffers in flight.
pub struct Uring {
    // Field order matters: the ring is drained in `Drop::drop`, before any buffer is freed.
    ring: IoUring,
    bufs: BufRing,
    sends: Vec<Option<Vec<u8>>>,
    free_sends: Vec<u32>,
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
        let offset = offset.min(buf.len());
        let len = u32::try_from(buf.len() - offset).unwrap_or(u32::MAX);
        let ptr = buf[offset..].as_ptr();
        let slot = match self.free_sends.pop() {
            Some(slot) => {
                self.sends[slot as usize] = Some(buf);
                slot
            }
            None => {
                self.sends.push(Some(buf));
                (self.sends.len() - 1) as u32
            }
        };
        let entry = opcode::Send::new(Fd(fd.as_raw_fd()), ptr, len)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(user_data(SEND, slot, token));
        // SAFETY: `ptr..ptr+len` is inside the Vec now stored in `self.sends[slot]`; a Vec's heap
        // buffer does not move when the Vec does, and it is neither touched nor freed until the
        // completion returns it (or `Drop` has drained the ring).
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
                let slot = ((data >> 32) & 0x00ff_ffff) as u32;
                let buf = self.sends[slot as usize].take().unwrap_or_default();
                self.free_sends.push(slot);
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
            _ => None,
        }
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
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn accept_receive_and_send_through_the_ring() {
        let listener = crate::net::reuseport_listener("127.0.0.1:0".parse().unwrap(), 16).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut ring = Uring::new(UringConfig {
            buffers: 4,
            buffer_size: 8,
            ..UringConfig::default()
        })
        .unwrap();
        ring.accept_multi(&listener).unwrap();
        let client = std::thread::spawn(move || {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.write_all(b"hello, ring: more than one buffer").unwrap();
            s.shutdown(std::net::Shutdown::Write).unwrap();
            let mut back = Vec::new();
            s.read_to_end(&mut back).unwrap();
            back
        });
        let mut events = Vec::new();
        let mut conn = None;
        let mut received = Vec::new();
        let mut eof = false;
        while !eof {
            ring.submit_and_wait(1).unwrap();
            ring.drain(&mut events);
            for event in events.drain(..) {
                match event {
                    Event::Accepted { result, .. } => {
                        let fd = result.unwrap();
                        ring.recv_multi(7, &fd).unwrap();
                        conn = Some(fd);
                    }
                    Event::Received {
                        token,
                        result,
                        more,
                    } => {
                        assert_eq!(token, 7);
                        match result {
                            Ok(Some(lease)) => {
                                received.extend_from_slice(ring.leased(&lease));
                                ring.recycle(lease);
                                if !more {
                                    ring.recv_multi(7, conn.as_ref().unwrap()).unwrap();
                                }
                            }
                            Ok(None) => eof = true,
                            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                                ring.recv_multi(7, conn.as_ref().unwrap()).unwrap();
                            }
                            Err(e) => panic!("{e}"),
                        }
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
        assert_eq!(received, b"hello, ring: more than one buffer");
        ring.send(7, conn.as_ref().unwrap(), received.clone(), 6)
            .unwrap();
        let mut sent = None;
        while sent.is_none() {
            ring.submit_and_wait(1).unwrap();
            ring.drain(&mut events);
            for event in events.drain(..) {
                if let Event::Sent { result, buf, .. } = event {
                    assert_eq!(buf, received);
                    sent = Some(result.unwrap());
                }
            }
        }
        assert_eq!(sent, Some(received.len() - 6));
        drop(conn);
        assert_eq!(client.join().unwrap(), &received[6..]);
    }
}
