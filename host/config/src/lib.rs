//! percore's configuration file (`percore serve --config FILE`) and the per-deployment limit
//! values that the file, the command line and the admin API share, read and checked without I/O.
//! Every value that reaches the host from here is in range: a limit of zero, or one whose bytes
//! do not fit a `usize`, is refused by name instead of wrapping or failing at the first request.
#![forbid(unsafe_code)]

mod file;
mod limit;

pub use file::{Calls, Config, Deployment, Http, Outbound, Route, parse};
pub use limit::{
    LimitError, MAX_MEMORY_MB, MAX_RESPONSE_MB, MAX_TIME_MS, coredump_bytes, memory_bytes, millis,
    response_bytes,
};

/// Why a configuration file was refused.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Not TOML, or not the configuration's shape (the message points at the line).
    #[error("{0}")]
    Syntax(String),
    /// TOML of the right shape with a value that cannot work.
    #[error("{0}")]
    Invalid(String),
}

/// A deployment name: 1 to 63 of a-z, 0-9, `-` and `_`, starting with a letter or digit (the
/// same rule for the configuration file and the admin API).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && name.as_bytes()[0].is_ascii_alphanumeric()
}
