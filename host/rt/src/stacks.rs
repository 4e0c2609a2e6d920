//! Fiber stacks for guest calls that can yield, kept per thread and reused: a call on a store
//! that has no stack of its own (a fresh instance) takes one from its thread's pool instead of
//! mapping 2 MiB and unmapping it again. Each shard is one thread, so the pool is per core with
//! no lock; a stack dropped on another thread joins that thread's pool.
//!
//! A stack is an anonymous mapping: one inaccessible guard page at the bottom, then the stack
//! (which grows down from the top). Stacks are not zeroed on reuse (wasmtime's default,
//! `async_stack_zeroing(false)`): what a call leaves there is host stack that guest code cannot
//! address.

use std::cell::RefCell;
use std::ops::Range;
use std::ptr::NonNull;
use std::sync::Arc;

use wasmtime::{StackCreator, StackMemory};

use crate::host_memory::page_size;

/// Stacks a thread keeps for reuse at most; past that a returned stack is unmapped.
const MAX_IDLE_PER_THREAD: usize = 64;

thread_local! {
    static IDLE: RefCell<Vec<Mapping>> = const { RefCell::new(Vec::new()) };
}

/// The [`StackCreator`] to give `wasmtime::Config::with_host_stack`.
#[derive(Debug, Default, Clone, Copy)]
pub struct StackPool;

impl StackPool {
    /// A creator for an engine's configuration.
    pub fn creator() -> Arc<dyn StackCreator> {
        Arc::new(StackPool)
    }

    /// Stacks this thread keeps for reuse right now.
    pub fn idle_on_this_thread() -> usize {
        IDLE.with(|idle| idle.borrow().len())
    }
}

// SAFETY: every stack handed out is a page-aligned mapping of its own, with a guard page at the
// bottom, owned by the returned value until it is dropped; reused stacks are not handed out
// twice (a mapping is in one place: the idle list or one `PooledStack`).
unsafe impl StackCreator for StackPool {
    fn new_stack(&self, size: usize, zeroed: bool) -> wasmtime::Result<Box<dyn StackMemory>> {
        let page = page_size();
        let size = size.div_ceil(page) * page;
        let reused = IDLE.with(|idle| {
            let mut idle = idle.borrow_mut();
            let at = idle.iter().rposition(|m| m.size == size)?;
            Some(idle.swap_remove(at))
        });
        let mapping = match reused {
            Some(mapping) => {
                if zeroed {
                    mapping.zero();
                }
                mapping
            }
            None => Mapping::new(size, page).map_err(wasmtime::Error::msg)?,
        };
        Ok(Box::new(PooledStack(Some(mapping))))
    }
}

/// One stack's mapping: `guard` bytes of guard page, then `size` bytes of stack.
#[derive(Debug)]
struct Mapping {
    base: NonNull<u8>,
    guard: usize,
    size: usize,
}

// SAFETY: the mapping is owned by this value alone; moving it to another thread moves that
// ownership (wasmtime runs a fiber's stack on whichever thread polls it).
unsafe impl Send for Mapping {}
// SAFETY: a shared `&Mapping` exposes only addresses, never the memory.
unsafe impl Sync for Mapping {}

impl Mapping {
    fn new(size: usize, guard: usize) -> Result<Self, String> {
        let total = size
            .checked_add(guard)
            .ok_or("fiber stack size overflows")?;
        // SAFETY: an anonymous private read-write mapping at an address the kernel chooses; it
        // overlaps nothing and is released in `Drop`.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                total,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(format!(
                "cannot map a fiber stack of {total} bytes: {}",
                std::io::Error::last_os_error()
            ));
        }
        let base = NonNull::new(ptr.cast::<u8>()).ok_or("mmap returned null")?;
        let mapping = Mapping { base, guard, size };
        // SAFETY: the first `guard` bytes are inside the mapping just made, which holds nothing
        // yet; making them inaccessible turns a stack overflow into a fault.
        let rc = unsafe { libc::mprotect(ptr, guard, libc::PROT_NONE) };
        if rc != 0 {
            return Err(format!(
                "cannot protect a fiber stack's guard page: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(mapping)
    }

    /// Give the stack's pages back to the kernel: they read as zeros when next touched.
    fn zero(&self) {
        // SAFETY: the range is this mapping's stack part, which no fiber uses (the stack is in
        // the idle list or being handed out); a private anonymous range reads as zeros after
        // `MADV_DONTNEED`.
        unsafe {
            libc::madvise(
                self.base.as_ptr().add(self.guard).cast(),
                self.size,
                libc::MADV_DONTNEED,
            );
        }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `base..base+guard+size` is exactly the mapping made in `new`, owned by this
        // value, and no fiber runs on it any more.
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.guard + self.size);
        }
    }
}

/// A stack handed to wasmtime; back to its thread's pool when wasmtime drops it.
struct PooledStack(Option<Mapping>);

impl PooledStack {
    fn mapping(&self) -> &Mapping {
        self.0.as_ref().expect("a stack in use has its mapping")
    }
}

// SAFETY: `top` is the page-aligned end of the mapping, `range` the accessible stack below it
// and `guard_range` the inaccessible page under that; the mapping lives as long as this value.
unsafe impl StackMemory for PooledStack {
    fn top(&self) -> *mut u8 {
        let m = self.mapping();
        // SAFETY: `guard + size` is the mapping's length: one past its end, in bounds to form.
        unsafe { m.base.as_ptr().add(m.guard + m.size) }
    }

    fn range(&self) -> Range<usize> {
        let m = self.mapping();
        let start = m.base.as_ptr() as usize + m.guard;
        start..start + m.size
    }

    fn guard_range(&self) -> Range<*mut u8> {
        let m = self.mapping();
        // SAFETY: `guard` bytes from the base are inside the mapping.
        m.base.as_ptr()..unsafe { m.base.as_ptr().add(m.guard) }
    }
}

impl Drop for PooledStack {
    fn drop(&mut self) {
        let Some(mapping) = self.0.take() else {
            return;
        };
        // During thread exit the pool may be gone: the mapping is then simply unmapped.
        let _ = IDLE.try_with(|idle| {
            let mut idle = idle.borrow_mut();
            if idle.len() < MAX_IDLE_PER_THREAD {
                idle.push(mapping);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_stack_is_reused_by_the_next_call_on_its_thread() {
        let pool = StackPool;
        let size = 256 << 10;
        let first = pool.new_stack(size, false).unwrap();
        let top = first.top();
        let range = first.range();
        assert_eq!(range.end, top as usize);
        assert_eq!(range.len(), size);
        assert_eq!(first.guard_range().end as usize, range.start);
        let before = StackPool::idle_on_this_thread();
        drop(first);
        assert_eq!(StackPool::idle_on_this_thread(), before + 1);
        let second = pool.new_stack(size, false).unwrap();
        assert_eq!(second.top(), top, "the same mapping again");
        // SAFETY: the test owns the stack and no fiber runs on it; the byte below the top is
        // inside its range.
        unsafe { *second.top().sub(1) = 7 };
        drop(second);
        let third = pool.new_stack(size, false).unwrap();
        // SAFETY: as above.
        assert_eq!(unsafe { *third.top().sub(1) }, 7, "reused as it was left");
        drop(third);
        let zeroed = pool.new_stack(size, true).unwrap();
        assert_eq!(zeroed.top(), top);
        // SAFETY: as above.
        let byte = unsafe { *zeroed.top().sub(1) };
        assert_eq!(byte, 0, "a zeroed stack reads as zeros");
        let other = pool.new_stack(size * 2, false).unwrap();
        assert_ne!(
            other.top(),
            top,
            "a stack of another size is another mapping"
        );
    }
}
