//! Limit values as people write them (MiB, milliseconds) turned into what the host uses, with
//! their ranges checked.

use std::time::Duration;

/// A memory cap above this is refused: a 32-bit guest cannot address more.
pub const MAX_MEMORY_MB: usize = 4096;
/// A response cap above this is refused.
pub const MAX_RESPONSE_MB: usize = 4096;
/// A CPU budget or deadline above one day is refused.
pub const MAX_TIME_MS: u64 = 24 * 3600 * 1000;

/// A limit value out of its range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} = {value}: must be between {min} and {max}")]
pub struct LimitError {
    /// The field as the user wrote it (`memory_mb`).
    pub field: &'static str,
    /// The value given.
    pub value: u64,
    /// Smallest accepted.
    pub min: u64,
    /// Largest accepted.
    pub max: u64,
}

fn check(field: &'static str, value: u64, max: u64) -> Result<u64, LimitError> {
    if (1..=max).contains(&value) {
        Ok(value)
    } else {
        Err(LimitError {
            field,
            value,
            min: 1,
            max,
        })
    }
}

fn mib(field: &'static str, value: usize, max: usize) -> Result<usize, LimitError> {
    let value = check(field, value as u64, max as u64)?;
    // In range, so the product fits a 64-bit usize.
    Ok((value as usize) << 20)
}

/// `memory_mb` in bytes.
pub fn memory_bytes(mb: usize) -> Result<usize, LimitError> {
    mib("memory_mb", mb, MAX_MEMORY_MB)
}

/// `max_response_mb` in bytes.
pub fn response_bytes(mb: usize) -> Result<usize, LimitError> {
    mib("max_response_mb", mb, MAX_RESPONSE_MB)
}

/// `coredump_mb` in bytes: the largest guest memory a core dump is written for.
pub fn coredump_bytes(mb: usize) -> Result<usize, LimitError> {
    mib("coredump_mb", mb, MAX_MEMORY_MB)
}

/// A time limit (`cpu_ms`, `timeout_ms`) as a duration.
pub fn millis(field: &'static str, ms: u64) -> Result<Duration, LimitError> {
    check(field, ms, MAX_TIME_MS).map(Duration::from_millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_in_range_convert_and_others_are_named() {
        assert_eq!(memory_bytes(64), Ok(64 << 20));
        assert_eq!(response_bytes(MAX_RESPONSE_MB), Ok(MAX_RESPONSE_MB << 20));
        assert_eq!(millis("cpu_ms", 100), Ok(Duration::from_millis(100)));
        let wrapped = usize::MAX / 1024;
        let err = memory_bytes(wrapped).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("memory_mb = {wrapped}: must be between 1 and 4096")
        );
        assert_eq!(memory_bytes(0).unwrap_err().field, "memory_mb");
        assert_eq!(
            millis("timeout_ms", u64::MAX).unwrap_err().field,
            "timeout_ms"
        );
    }
}
