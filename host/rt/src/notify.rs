//! Waking another thread's io_uring: an `eventfd` the ring watches ([`crate::uring::Uring::watch`]).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// An eventfd: [`Notifier::notify`] from any thread makes it readable until
/// [`Notifier::clear`].
#[derive(Debug)]
pub struct Notifier(OwnedFd);

impl Notifier {
    /// A new, non-blocking eventfd.
    pub fn new() -> std::io::Result<Self> {
        // SAFETY: eventfd with valid flags; it returns a new descriptor or -1.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` is a new descriptor that nothing else owns.
        Ok(Self(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Make the descriptor readable (wakes a ring watching it).
    pub fn notify(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our eventfd. A full counter (EAGAIN) means
        // it is readable already, which is all a notification needs.
        unsafe {
            libc::write(self.0.as_raw_fd(), (&raw const one).cast(), 8);
        }
    }

    /// Reset the counter (after a wake-up).
    pub fn clear(&self) {
        let mut value: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64 from our non-blocking eventfd (EAGAIN when
        // nothing was pending).
        unsafe {
            libc::read(self.0.as_raw_fd(), (&raw mut value).cast(), 8);
        }
    }
}

impl AsRawFd for Notifier {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}
