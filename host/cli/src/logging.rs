//! Logs on stderr: the host's own and its guests' records.

use percore_engine::{LogLevel, LogRecord, LogSource};
use tracing_subscriber::EnvFilter;

/// How log lines look.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    /// One readable line per record.
    Human,
    /// One JSON object per record.
    Json,
}

/// Install the subscriber; `RUST_LOG` overrides the default level (`info`).
pub fn init(format: Format) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        Format::Human => builder.without_time().with_target(false).init(),
        Format::Json => builder.json().init(),
    }
}

/// Forward a guest's log records to the host log, tagged as the guest's.
pub fn emit_guest_logs(component: &str, records: &[LogRecord], dropped: usize) {
    for record in records {
        let mut message = record.message.clone();
        for (k, v) in &record.fields {
            message.push_str(&format!(" {k}={v}"));
        }
        let source = match record.source {
            LogSource::Log => "log",
            LogSource::Stdout => "stdout",
            LogSource::Stderr => "stderr",
        };
        match record.level {
            LogLevel::Trace => {
                tracing::trace!(guest = component, source, "{message}")
            }
            LogLevel::Debug => {
                tracing::debug!(guest = component, source, "{message}")
            }
            LogLevel::Info => tracing::info!(guest = component, source, "{message}"),
            LogLevel::Warn => tracing::warn!(guest = component, source, "{message}"),
            LogLevel::Error => {
                tracing::error!(guest = component, source, "{message}")
            }
        }
    }
    if dropped > 0 {
        tracing::warn!(
            guest = component,
            "{dropped} guest log records dropped (cap reached)"
        );
    }
}
