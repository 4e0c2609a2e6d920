//! Why an instance could not take its snapshot, or go back to it.

use percore_rt::host_memory::SnapshotError;

use crate::{Fault, NotResettable};

/// Why an instance could not take its snapshot or go back to it.
#[derive(Debug, thiserror::Error)]
pub enum ResetError {
    /// The instance cannot be reset in place (it does not have exactly one linear memory).
    #[error(transparent)]
    NotResettable(#[from] NotResettable),
    /// The guest failed when asked for its input region, before the snapshot.
    #[error("reserving the input region failed: {0}")]
    Region(Fault),
    /// The snapshot could not be taken.
    #[error(transparent)]
    Snapshot(SnapshotError),
    /// The instance faulted since its snapshot.
    #[error("the instance faulted")]
    Faulted,
    /// [`crate::Instance::prepare_reset`] has not succeeded on this instance.
    #[error("the instance has no snapshot")]
    NoSnapshot,
    /// The memory could not be brought back to the snapshot (it grew, typically).
    #[error(transparent)]
    Restore(SnapshotError),
    /// Saving the mutable globals, or putting them back, failed.
    #[error("saving or restoring the mutable globals failed: {0}")]
    Globals(String),
    /// The request left resources (bodies, streams) in the host's table: a reset restores
    /// memory only, so the instance is replaced.
    #[error("the request left resources in the host's table")]
    ResourcesLeft,
    /// A warm-up request faulted (see [`crate::Warmup`]).
    #[error("warm-up request `{request}` failed: {fault}")]
    Warmup {
        /// The request, as `METHOD PATH`.
        request: String,
        /// How it failed.
        fault: Fault,
    },
}
