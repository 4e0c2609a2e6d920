//! Command-line flags for per-request limits and configuration values.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use percore_engine::Limits;

/// Limits and configuration shared by the commands that run guests.
#[derive(Debug, Clone, clap::Args)]
pub struct GuestArgs {
    /// Memory cap per instance, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 64)]
    pub memory_mb: usize,
    /// CPU budget per request, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 100)]
    pub cpu_ms: u64,
    /// Wall-clock deadline per request, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    pub timeout_ms: u64,
    /// Largest response body accepted from the guest, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 16)]
    pub max_response_mb: usize,
    /// A configuration value for the guest (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub config: Vec<String>,
}

impl GuestArgs {
    /// The limits these flags describe, each checked against its range.
    pub fn limits(&self) -> anyhow::Result<Limits> {
        let flag = as_flag;
        Ok(Limits {
            memory_bytes: percore_config::memory_bytes(self.memory_mb).map_err(flag)?,
            cpu_budget: percore_config::millis("cpu_ms", self.cpu_ms).map_err(flag)?,
            wall_deadline: percore_config::millis("timeout_ms", self.timeout_ms).map_err(flag)?,
            max_response_body: percore_config::response_bytes(self.max_response_mb)
                .map_err(flag)?,
            ..Limits::default()
        })
    }

    /// The configuration values, checked.
    pub fn config(&self) -> anyhow::Result<BTreeMap<String, String>> {
        let mut map = BTreeMap::new();
        for item in &self.config {
            let (key, value) = item
                .split_once('=')
                .with_context(|| format!("--set {item:?}: expected KEY=VALUE"))?;
            if key.is_empty() {
                bail!("--set {item:?}: the key is empty");
            }
            map.insert(key.to_owned(), value.to_owned());
        }
        Ok(map)
    }
}

/// A limit out of range, named as the command-line flag that gave it.
pub fn as_flag(e: percore_config::LimitError) -> anyhow::Error {
    anyhow::anyhow!(
        "--{} {}: must be between {} and {}",
        e.field.replace('_', "-"),
        e.value,
        e.min,
        e.max
    )
}
