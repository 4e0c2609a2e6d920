//! percore's OS layer: the few places where percore must talk to the kernel or to memory
//! that the compiler cannot see.
//!
//! Every `unsafe` block of the host lives in this crate, each with a `// SAFETY:` comment.
//! The rest of the host is `#![forbid(unsafe_code)]` and reaches these things through the
//! safe types below:
//!
//! - [`host_memory`]: guest linear memories that the host allocates itself, so it knows their
//!   base address and can write requests straight into a guest's input region;
//! - [`artifact`]: mapping an ahead-of-time compiled component back from disk;
//! - [`cpu`]: thread CPU time (for CPU budgets) and pinning threads to CPUs;
//! - [`net`]: `SO_REUSEPORT` listeners and the CBPF program that steers a flow to its CPU's socket;
//! - [`uring`]: io_uring with buffer ownership (provided-buffer ring, multishot accept/recv).

pub mod artifact;
pub mod cpu;
pub mod host_memory;
pub mod net;
pub mod notify;
pub mod pagemap;
pub mod stacks;
pub mod uring;
