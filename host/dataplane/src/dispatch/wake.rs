//! Wakers of the calls in flight: waking a call puts it on its core's run list, and, from
//! another thread (the resolver), wakes the core's ring too.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::Wake;
use std::thread::ThreadId;

use percore_rt::notify::Notifier;

/// Calls woken since the core last looked, by key.
#[derive(Debug)]
pub(crate) struct RunList {
    keys: Mutex<Vec<u64>>,
    /// `keys` is not empty (read without the lock, every turn of the loop).
    any: AtomicBool,
    /// The core's thread (wakes from it need no notification).
    owner: OnceLock<ThreadId>,
    /// Wakes the core's ring.
    notify: Arc<Notifier>,
}

impl RunList {
    pub(crate) fn new(notify: Arc<Notifier>) -> Self {
        Self {
            keys: Mutex::new(Vec::new()),
            any: AtomicBool::new(false),
            owner: OnceLock::new(),
            notify,
        }
    }

    /// The thread that runs the calls is the caller's.
    pub(crate) fn bind_thread(&self) {
        let _ = self.owner.set(std::thread::current().id());
    }

    fn push(&self, key: u64) {
        {
            let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
            keys.push(key);
            self.any.store(true, Ordering::Release);
        }
        if self.owner.get() != Some(&std::thread::current().id()) {
            self.notify.notify();
        }
    }

    /// Move the woken keys into `into` (in the order they were woken).
    pub(crate) fn take(&self, into: &mut Vec<u64>) {
        if !self.any.load(Ordering::Acquire) {
            return;
        }
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        into.append(&mut keys);
        self.any.store(false, Ordering::Release);
    }

    /// Whether a call was woken.
    pub(crate) fn is_empty(&self) -> bool {
        !self.any.load(Ordering::Acquire)
    }
}

/// The waker of one call.
#[derive(Debug)]
pub(crate) struct CallWake {
    /// The call's key (a waker is reused by the next call when the last ended at once).
    key: AtomicU64,
    /// On the run list already (not polled since).
    queued: AtomicBool,
    list: Arc<RunList>,
}

impl CallWake {
    pub(crate) fn new(key: u64, list: Arc<RunList>) -> Self {
        Self {
            key: AtomicU64::new(key),
            queued: AtomicBool::new(false),
            list,
        }
    }

    /// Give the waker to another call (nothing else holds it).
    pub(crate) fn rekey(&self, key: u64) {
        self.key.store(key, Ordering::Release);
    }

    /// The call is about to be polled: a wake from now on queues it again.
    pub(crate) fn polling(&self) {
        self.queued.store(false, Ordering::Release);
    }
}

impl Wake for CallWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            self.list.push(self.key.load(Ordering::Acquire));
        }
    }
}
