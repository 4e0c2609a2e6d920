//! Errors: [`Error`] when loading a component, [`Fault`] when a request fails.

use std::path::PathBuf;
use std::time::Duration;

/// Why a component could not be compiled, loaded or linked.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bytes are not WebAssembly at all.
    #[error("not a WebAssembly component: {0}")]
    NotWasm(String),
    /// A core module where a component was expected.
    #[error(
        "this is a core WebAssembly module, not a component; build the guest for \
         wasm32-wasip2, or turn the module into a component (`wasm-tools component new`)"
    )]
    CoreModule,
    /// Wasmtime rejected the component (malformed, or invalid).
    #[error("invalid component: {0}")]
    Invalid(String),
    /// The component does not export the `edge:handler` interface.
    #[error("the component does not implement edge:handler@0.2.0 (or 0.1.0): {0}")]
    WrongWorld(String),
    /// The component imports something the host does not provide.
    #[error(
        "the component imports `{name}`, which percore does not provide to this kind of guest (it provides {provides})"
    )]
    UnsupportedImport {
        /// The import's name, for example `acme:secret/vault@1.0.0`.
        name: String,
        /// What the host does provide to that kind of guest.
        provides: &'static str,
    },
    /// The binary fits none of the kinds of guest percore runs.
    #[error(
        "percore cannot tell what kind of guest this is: it is {0}. percore runs: an edge:handler \
         guest (a component exporting `edge:handler/guest@0.2.0` or `@0.1.0`); a wasi:http guest (a component \
         exporting `wasi:http/incoming-handler@0.2.x` or `wasi:http/handler@0.3.x`); a WASI \
         command, run CGI style (a component exporting `wasi:cli/run@0.2.x`, or a core module \
         exporting `_start` that imports only `wasi_snapshot_preview1`); a bare core module \
         (exported functions, importing nothing or only `platform.now`)"
    )]
    UnknownKind(String),
    /// The binary is of another kind than the one the configuration names.
    #[error("the configuration says this guest is `{stated}`, but the binary is `{found}`")]
    KindMismatch {
        /// What the configuration said.
        stated: crate::GuestKind,
        /// What the binary is.
        found: crate::GuestKind,
    },
    /// A bare module's function cannot be called as asked.
    #[error("{0}")]
    BadCall(String),
    /// An import exists but its type does not match what the host provides.
    #[error("cannot link the component: {0}")]
    Link(String),
    /// An artifact could not be mapped.
    #[error("cannot load artifact {}: {reason}", path.display())]
    Artifact {
        /// The artifact's path.
        path: PathBuf,
        /// What wasmtime said.
        reason: String,
    },
    /// A file could not be read.
    #[error("cannot read {}: {error}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
    /// A compiled artifact could not be written to the cache.
    #[error("cannot write the artifact {}", path.display())]
    WriteArtifact {
        /// Where it was going.
        path: PathBuf,
        /// The OS error.
        #[source]
        error: std::io::Error,
    },
    /// The engine itself failed (configuration, serialisation).
    #[error("engine error: {0}")]
    Engine(String),
}

impl Error {
    pub(crate) fn engine(e: impl std::fmt::Display) -> Self {
        Self::Engine(format!("{e:#}"))
    }
}

/// Which limit a timed-out request hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutKind {
    /// The per-request CPU budget.
    Cpu,
    /// The wall-clock deadline.
    Wall,
}

/// How one request failed: mostly the guest's doing, [`Fault::Host`] the host's. The engine is
/// unharmed; the instance that failed is discarded (see [`crate::Instance::is_usable`]).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum Fault {
    /// The guest ran past its CPU budget or wall-clock deadline.
    #[error("the guest exceeded its {} of {limit:?}", match kind { TimeoutKind::Cpu => "CPU budget", TimeoutKind::Wall => "wall-clock deadline" })]
    Timeout {
        /// Which limit.
        kind: TimeoutKind,
        /// The limit's value.
        limit: Duration,
    },
    /// The guest needed more memory than its cap allows.
    #[error("the guest ran out of memory (cap {limit} bytes)")]
    OutOfMemory {
        /// The memory cap.
        limit: usize,
    },
    /// A command guest exited with a non-zero status.
    #[error("the guest exited with status {code}")]
    Exit {
        /// The exit status.
        code: i32,
    },
    /// The guest trapped (a panic, `unreachable`, a stack overflow, an out-of-bounds access…).
    #[error("the guest trapped: {message}")]
    Trap {
        /// What trapped, with the guest's panic message when it logged one.
        message: String,
    },
    /// The guest's answer breaks the contract (bad status, header, region…).
    #[error("the guest returned a bad response: {reason}")]
    BadResponse {
        /// What is wrong with it.
        reason: String,
    },
    /// The response body is larger than the deployment allows.
    #[error("the guest's response body of {size} bytes exceeds the limit of {limit} bytes")]
    ResponseTooLarge {
        /// Body size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The instance failed earlier and cannot serve again.
    #[error("the instance is unusable after an earlier fault")]
    Poisoned,
    /// The host failed while serving the request (it could not write the request into guest
    /// memory, say). A host failure is never blamed on the guest: it is not a bad response.
    #[error("the host failed: {message}")]
    Host {
        /// What failed.
        message: String,
    },
}

impl Fault {
    /// A short stable name, for counters and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::Timeout { .. } => "timeout",
            Fault::OutOfMemory { .. } => "out_of_memory",
            Fault::Trap { .. } => "trap",
            Fault::Exit { .. } => "exit",
            Fault::BadResponse { .. } => "bad_response",
            Fault::ResponseTooLarge { .. } => "response_too_large",
            Fault::Poisoned => "poisoned",
            Fault::Host { .. } => "host",
        }
    }

    /// The HTTP status a host answers with: 504 for a timeout, 502 for a response that breaks
    /// the contract, 500 for everything else.
    pub fn http_status(&self) -> u16 {
        match self {
            Fault::Timeout { .. } => 504,
            Fault::BadResponse { .. } | Fault::ResponseTooLarge { .. } => 502,
            Fault::OutOfMemory { .. }
            | Fault::Trap { .. }
            | Fault::Exit { .. }
            | Fault::Poisoned
            | Fault::Host { .. } => 500,
        }
    }
}
