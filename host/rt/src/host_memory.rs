//! Guest linear memories allocated by the host.
//!
//! Wasmtime gives an embedder no handle on a component's linear memory. With
//! [`wasmtime::Config::with_host_memory`] the host allocates every linear memory itself
//! ([`HostMemoryCreator`]), so it knows each memory's base address. [`HostMemoryStore`] pairs
//! a [`wasmtime::Store`] with the memories created while instantiating into it; because both
//! live in one value and every access takes `&mut self`, the host can never touch a memory
//! while guest code runs on it.
//!
//! Layout of one memory: one anonymous private mapping of `capacity + guard` bytes, all
//! `PROT_NONE` but the first `byte_size` bytes, which are read-write. Growth `mprotect`s more of
//! the reservation and never moves the base, so compiled code can rely on the guard region
//! instead of bounds checks.

use std::cell::RefCell;
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use wasmtime::{LinearMemory, MemoryCreator, MemoryType, Store};

/// Errors of host-side access to a guest memory.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MemoryAccessError {
    /// The instance has no memory with that index.
    #[error("the guest has no linear memory #{0}")]
    NoSuchMemory(usize),
    /// The range lies (partly) outside the memory's accessible bytes.
    #[error("range {offset}..{offset}+{len} is outside the guest memory of {size} bytes")]
    OutOfBounds {
        /// First byte of the range.
        offset: usize,
        /// Length of the range.
        len: usize,
        /// Accessible size of the memory.
        size: usize,
    },
}

/// Why a memory cannot be snapshotted or reset.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The instance has no memory with that index.
    #[error(transparent)]
    Access(#[from] MemoryAccessError),
    /// The kernel cannot list a range's private pages (`PAGEMAP_SCAN` needs Linux 6.7).
    #[error("this kernel has no PAGEMAP_SCAN: instances cannot be reset in place")]
    Unsupported,
    /// No snapshot was taken.
    #[error("the memory has no snapshot")]
    NoSnapshot,
    /// The memory grew after the snapshot; a memory cannot shrink back.
    #[error("the memory grew from {snapshot} to {now} bytes since the snapshot")]
    Grew {
        /// Size at the snapshot.
        snapshot: usize,
        /// Size now.
        now: usize,
    },
    /// A system call failed.
    #[error("{what}: {error}")]
    Os {
        /// What was being done.
        what: &'static str,
        /// The error.
        error: std::io::Error,
    },
}

/// What one reset did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResetStats {
    /// Pages copied back from the snapshot (the guest or the host wrote them).
    pub pages_copied: usize,
    /// Bytes dropped with `MADV_DONTNEED` past the resident budget (they fault back in from the
    /// snapshot when next touched).
    pub bytes_decommitted: usize,
}

/// The contents of memory 0 at one moment: a memfd holding them (mapped `MAP_PRIVATE` over the
/// memory itself, so untouched pages stay pages of the file) and a read-only view of the same
/// file to copy written pages back from.
#[derive(Debug)]
struct Snapshot {
    index: usize,
    len: usize,
    image: NonNull<u8>,
}

// SAFETY: `image` is a read-only shared mapping owned by this value; nothing writes it.
unsafe impl Send for Snapshot {}

impl Drop for Snapshot {
    fn drop(&mut self) {
        // SAFETY: `image..image+len` is the read-only view mapped in `HostMemoryStore::snapshot`,
        // used by nothing else.
        unsafe {
            libc::munmap(self.image.as_ptr().cast(), self.len);
        }
    }
}

/// One reservation: the mapping behind a guest memory. Shared between the
/// [`LinearMemory`] wasmtime owns and the [`HostMemoryStore`] that reads and writes it, so it is
/// unmapped only when both are gone.
#[derive(Debug)]
struct Mapping {
    base: NonNull<u8>,
    /// Bytes of the whole mapping, guard included.
    mapped: usize,
    /// Bytes the guest may grow to without moving.
    capacity: usize,
    /// Bytes currently accessible (read-write).
    size: AtomicUsize,
}

// SAFETY: `Mapping` is an address range owned by this value; the pointer is never dereferenced
// through a shared reference except by callers that hold exclusive access (see
// `HostMemoryStore`). The accessible size is an atomic. Moving or sharing the descriptor
// between threads is therefore sound.
unsafe impl Send for Mapping {}
// SAFETY: as above; `&Mapping` only exposes the base address and an atomic.
unsafe impl Sync for Mapping {}

pub(crate) fn page_size() -> usize {
    // SAFETY: sysconf with a valid name has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096)
}

fn round_up(n: usize, to: usize) -> Option<usize> {
    n.checked_add(to - 1).map(|n| n / to * to)
}

impl Mapping {
    fn new(minimum: usize, capacity: usize, guard: usize) -> Result<Self, String> {
        let page = page_size();
        let capacity = round_up(capacity.max(minimum), page).ok_or("memory capacity overflows")?;
        let mapped = capacity
            .checked_add(round_up(guard, page).ok_or("guard size overflows")?)
            .ok_or("memory reservation overflows")?;
        if mapped == 0 {
            // A zero-sized memory with no guard: keep one inaccessible page so the base is real.
            return Self::new(minimum, page, 0);
        }
        // SAFETY: an anonymous private mapping at an address the kernel chooses, with no access;
        // it overlaps nothing and is released in `Drop`.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                mapped,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(format!(
                "cannot reserve {mapped} bytes for a guest memory: {}",
                std::io::Error::last_os_error()
            ));
        }
        let base = NonNull::new(ptr.cast::<u8>()).ok_or("mmap returned null")?;
        let mapping = Mapping {
            base,
            mapped,
            capacity,
            size: AtomicUsize::new(0),
        };
        mapping.grow_to(minimum)?;
        Ok(mapping)
    }

    /// Make the first `new_size` bytes accessible. Growing is the only direction.
    fn grow_to(&self, new_size: usize) -> Result<(), String> {
        let old = self.size.load(Ordering::Acquire);
        if new_size <= old {
            return Ok(());
        }
        if new_size > self.capacity {
            return Err(format!(
                "guest memory cannot grow to {new_size} bytes: its reservation is {} bytes",
                self.capacity
            ));
        }
        let page = page_size();
        let start = round_up(old, page).ok_or("size overflows")?;
        let end = round_up(new_size, page).ok_or("size overflows")?;
        if end > start {
            // SAFETY: `start..end` lies inside this mapping (end <= capacity <= mapped, both page
            // aligned) and holds no Rust objects; making it read-write exposes zeroed pages.
            let rc = unsafe {
                libc::mprotect(
                    self.base.as_ptr().add(start).cast(),
                    end - start,
                    libc::PROT_READ | libc::PROT_WRITE,
                )
            };
            if rc != 0 {
                return Err(format!(
                    "cannot grow guest memory: {}",
                    std::io::Error::last_os_error()
                ));
            }
        }
        self.size.store(new_size, Ordering::Release);
        Ok(())
    }

    fn size(&self) -> usize {
        self.size.load(Ordering::Acquire)
    }

    fn check(&self, offset: usize, len: usize) -> Result<(), MemoryAccessError> {
        let size = self.size();
        match offset.checked_add(len) {
            Some(end) if end <= size => Ok(()),
            _ => Err(MemoryAccessError::OutOfBounds { offset, len, size }),
        }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `base..base+mapped` is exactly the mapping made in `new`, and no one can use it
        // any more: both the `LinearMemory` and every `HostMemoryStore` holding this `Arc` are gone.
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.mapped);
        }
    }
}

/// The [`LinearMemory`] handed to wasmtime.
struct HostLinearMemory(Arc<Mapping>);

// SAFETY: the memory is page aligned, zero filled when created, followed by the guard region
// wasmtime asked for (left `PROT_NONE`), and never moves: `grow_to` only changes protections
// within the reservation made up front.
unsafe impl LinearMemory for HostLinearMemory {
    fn byte_size(&self) -> usize {
        self.0.size()
    }

    fn byte_capacity(&self) -> usize {
        self.0.capacity
    }

    fn grow_to(&mut self, new_size: usize) -> wasmtime::Result<()> {
        self.0.grow_to(new_size).map_err(wasmtime::Error::msg)
    }

    fn as_ptr(&self) -> *mut u8 {
        self.0.base.as_ptr()
    }
}

thread_local! {
    /// Memories created on this thread while a [`HostMemoryStore::instantiate`] is running.
    static CAPTURE: RefCell<Option<Vec<Arc<Mapping>>>> = const { RefCell::new(None) };
}

/// The [`MemoryCreator`] to give [`wasmtime::Config::with_host_memory`].
///
/// It needs `memory_init_cow(false)` and the on-demand allocator (wasmtime's requirements for
/// host memory), and a `memory_reservation` large enough for the memories' maximum so that they
/// never move.
#[derive(Debug, Default, Clone, Copy)]
pub struct HostMemoryCreator;

// SAFETY: every memory returned is a fresh, zero-filled, page-aligned reservation of
// `reserved_size_in_bytes` (or the memory's maximum) plus `guard_size_in_bytes` unmapped bytes,
// owned by the returned `LinearMemory` (and by the `HostMemoryStore` that captured it, which
// accesses it only while no guest code runs).
unsafe impl MemoryCreator for HostMemoryCreator {
    fn new_memory(
        &self,
        _ty: MemoryType,
        minimum: usize,
        maximum: Option<usize>,
        reserved_size_in_bytes: Option<usize>,
        guard_size_in_bytes: usize,
    ) -> Result<Box<dyn LinearMemory>, String> {
        let capacity = reserved_size_in_bytes
            .or(maximum)
            .unwrap_or(minimum)
            .max(minimum);
        let mapping = Arc::new(Mapping::new(minimum, capacity, guard_size_in_bytes)?);
        CAPTURE.with(|c| {
            if let Some(list) = c.borrow_mut().as_mut() {
                list.push(mapping.clone());
            }
        });
        Ok(Box::new(HostLinearMemory(mapping)))
    }
}

/// A [`Store`] together with the host-owned linear memories its instances use.
///
/// Every method that touches guest memory takes `&mut self`, and guest code can only run
/// through the store inside, so host writes and guest execution never overlap.
pub struct HostMemoryStore<T: 'static> {
    store: Store<T>,
    memories: Vec<Arc<Mapping>>,
    snapshot: Option<Snapshot>,
}

impl<T: 'static> std::fmt::Debug for HostMemoryStore<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostMemoryStore")
            .field("memories", &self.memories.len())
            .field("snapshot", &self.snapshot.as_ref().map(|s| s.len))
            .finish_non_exhaustive()
    }
}

impl<T: 'static> HostMemoryStore<T> {
    /// Run `instantiate` on `store` and keep every memory the engine's [`HostMemoryCreator`]
    /// creates meanwhile on this thread: the memories of the instance being created.
    pub fn instantiate<R>(
        mut store: Store<T>,
        instantiate: impl FnOnce(&mut Store<T>) -> R,
    ) -> (Self, R) {
        let outer = CAPTURE.with(|c| c.borrow_mut().replace(Vec::new()));
        let result = instantiate(&mut store);
        let memories = CAPTURE
            .with(|c| std::mem::replace(&mut *c.borrow_mut(), outer))
            .unwrap_or_default();
        (
            Self {
                store,
                memories,
                snapshot: None,
            },
            result,
        )
    }

    /// The store, to call guest code.
    pub fn store(&mut self) -> &mut Store<T> {
        &mut self.store
    }

    /// The store, read only.
    pub fn store_ref(&self) -> &Store<T> {
        &self.store
    }

    /// How many host-owned memories the instance has.
    pub fn memory_count(&self) -> usize {
        self.memories.len()
    }

    /// Accessible size in bytes of memory `index`.
    pub fn memory_size(&self, index: usize) -> Result<usize, MemoryAccessError> {
        Ok(self.mapping(index)?.size())
    }

    fn mapping(&self, index: usize) -> Result<&Mapping, MemoryAccessError> {
        self.memories
            .get(index)
            .map(|m| &**m)
            .ok_or(MemoryAccessError::NoSuchMemory(index))
    }

    /// Give `fill` the bytes `offset..offset + len` of memory `index` to write.
    pub fn fill<R>(
        &mut self,
        index: usize,
        offset: usize,
        len: usize,
        fill: impl FnOnce(&mut [u8]) -> R,
    ) -> Result<R, MemoryAccessError> {
        let mapping = self.mapping(index)?;
        mapping.check(offset, len)?;
        if len == 0 {
            return Ok(fill(&mut []));
        }
        // SAFETY: `offset..offset+len` is inside the accessible (read-write) part of the mapping
        // (checked above; memories only grow, and only while guest code runs, which needs
        // `self.store` and so cannot happen while `&mut self` is held here). Nothing else
        // references these bytes: wasm code is not running, and this is the only slice made.
        let bytes =
            unsafe { std::slice::from_raw_parts_mut(mapping.base.as_ptr().add(offset), len) };
        Ok(fill(bytes))
    }

    /// Copy `bytes` into memory `index` at `offset`.
    pub fn write(
        &mut self,
        index: usize,
        offset: usize,
        bytes: &[u8],
    ) -> Result<(), MemoryAccessError> {
        self.fill(index, offset, bytes.len(), |dst| dst.copy_from_slice(bytes))
    }

    /// Remember the current contents of memory `index` so that [`Self::restore`] can bring them
    /// back. Replaces any earlier snapshot.
    ///
    /// The contents go to a memfd (zero pages left as holes), which is then mapped copy-on-write
    /// over the memory: from here on a page the guest has not written is a page of that file,
    /// and a written page is a private copy that `PAGEMAP_SCAN` can find.
    pub fn snapshot(&mut self, index: usize) -> Result<(), SnapshotError> {
        use std::os::fd::FromRawFd;
        use std::os::unix::fs::FileExt;
        if !crate::pagemap::supported() {
            return Err(SnapshotError::Unsupported);
        }
        self.snapshot = None;
        let mapping = self.mapping(index)?;
        let len = mapping.size();
        let page = page_size();
        if len == 0 || !len.is_multiple_of(page) {
            return Err(SnapshotError::Os {
                what: "snapshot",
                error: std::io::Error::other(format!("memory size {len} is not whole pages")),
            });
        }
        let base = mapping.base;
        let os = |what| move |error| SnapshotError::Os { what, error };
        // SAFETY: memfd_create with a NUL-terminated name and valid flags.
        let fd = unsafe { libc::memfd_create(c"percore-snapshot".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(os("memfd_create")(std::io::Error::last_os_error()));
        }
        // SAFETY: `fd` is a new descriptor that nothing else owns.
        let file = unsafe { std::fs::File::from_raw_fd(fd) };
        file.set_len(len as u64)
            .map_err(os("size the snapshot file"))?;
        // SAFETY: `0..len` is the accessible part of the mapping; `&mut self` excludes guest
        // code and other host access while this shared view exists.
        let contents = unsafe { std::slice::from_raw_parts(base.as_ptr(), len) };
        for (i, chunk) in contents.chunks(page).enumerate() {
            if chunk.iter().any(|&b| b != 0) {
                file.write_all_at(chunk, (i * page) as u64)
                    .map_err(os("write the snapshot file"))?;
            }
        }
        // SAFETY: maps the file copy-on-write exactly over `0..len` of our own reservation,
        // replacing pages whose contents the file now holds; no Rust reference to them is live
        // (`contents` is not used past this point).
        let over = unsafe {
            libc::mmap(
                base.as_ptr().cast(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_FIXED,
                fd,
                0,
            )
        };
        if over == libc::MAP_FAILED {
            // The old pages are gone or intact, but the memory is no longer trustworthy either
            // way: the caller must drop the instance.
            return Err(os("map the snapshot over the memory")(
                std::io::Error::last_os_error(),
            ));
        }
        // SAFETY: a new read-only shared mapping of the file, at an address the kernel picks.
        let image = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if image == libc::MAP_FAILED {
            return Err(os("map the snapshot image")(std::io::Error::last_os_error()));
        }
        let image = NonNull::new(image.cast::<u8>()).ok_or(SnapshotError::NoSnapshot)?;
        self.snapshot = Some(Snapshot { index, len, image });
        Ok(())
    }

    /// Bring the memory back to its snapshot: copy back every page written since (up to
    /// `resident_budget` bytes of them; past that, drop the rest so it faults back in from the
    /// snapshot). Fails, changing nothing, if the memory grew since the snapshot.
    pub fn restore(&mut self, resident_budget: usize) -> Result<ResetStats, SnapshotError> {
        let snapshot = self.snapshot.as_ref().ok_or(SnapshotError::NoSnapshot)?;
        let mapping = self.mapping(snapshot.index)?;
        let now = mapping.size();
        if now != snapshot.len {
            return Err(SnapshotError::Grew {
                snapshot: snapshot.len,
                now,
            });
        }
        let page = page_size();
        let base = mapping.base;
        let scan = crate::pagemap::private_pages(base.as_ptr(), now, resident_budget / page)
            .map_err(|error| SnapshotError::Os {
                what: "PAGEMAP_SCAN",
                error,
            })?;
        let mut stats = ResetStats::default();
        for range in &scan.private {
            // SAFETY: `range` lies inside `0..len` of both the memory (accessible, read-write)
            // and the image (the same length); the two mappings never overlap, and `&mut self`
            // excludes guest code and any other access to the memory.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    snapshot.image.as_ptr().add(range.start),
                    base.as_ptr().add(range.start),
                    range.len(),
                );
            }
            stats.pages_copied += range.len() / page;
        }
        if scan.scanned < now {
            let rest = now - scan.scanned;
            // SAFETY: `scanned..len` is page aligned and inside the file mapping made by
            // `snapshot`; dropping private pages there makes them read the file again, which
            // is the snapshot. No Rust reference points into the memory.
            let rc = unsafe {
                libc::madvise(
                    base.as_ptr().add(scan.scanned).cast(),
                    rest,
                    libc::MADV_DONTNEED,
                )
            };
            if rc != 0 {
                return Err(SnapshotError::Os {
                    what: "madvise(MADV_DONTNEED)",
                    error: std::io::Error::last_os_error(),
                });
            }
            stats.bytes_decommitted = rest;
        }
        Ok(stats)
    }

    /// Copy `len` bytes at `offset` out of memory `index`.
    pub fn read(
        &self,
        index: usize,
        offset: usize,
        len: usize,
    ) -> Result<Vec<u8>, MemoryAccessError> {
        let mapping = self.mapping(index)?;
        mapping.check(offset, len)?;
        if len == 0 {
            return Ok(Vec::new());
        }
        // SAFETY: in bounds and accessible (checked above); `&self` excludes guest execution
        // (which needs `&mut self.store`) and host writes (which need `&mut self`).
        let bytes = unsafe { std::slice::from_raw_parts(mapping.base.as_ptr().add(offset), len) };
        Ok(bytes.to_vec())
    }
}

#[cfg(test)]
mod tests;
