//! The provided-buffer ring of a [`super::Uring`].

use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;

use super::Lease;

/// The provided-buffer ring: entries shared with the kernel, and the buffers they point at.
pub(super) struct BufRing {
    /// Page-aligned array of `entries` ring entries (mmap'd).
    pub(super) ring: NonNull<BufRingEntry>,
    ring_bytes: usize,
    entries: u16,
    tail: u16,
    buffers: Box<[u8]>,
    buffer_size: u32,
}

impl BufRing {
    pub(super) fn new(entries: u16, buffer_size: u32) -> io::Result<Self> {
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
    pub(super) fn push(&mut self, bid: u16) {
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
    pub(super) fn publish(&self) {
        // SAFETY: `ring` is the first entry of the registered ring, so `tail` points at the
        // ring's tail field, a u16 the kernel reads atomically; it is aligned and lives as long
        // as the mapping.
        let tail = unsafe { &*BufRingEntry::tail(self.ring.as_ptr()).cast::<AtomicU16>() };
        tail.store(self.tail, Ordering::Release);
    }

    pub(super) fn bytes(&self, lease: &Lease) -> &[u8] {
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
