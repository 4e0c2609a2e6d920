//! `percore compile`: validate a component and write its ahead-of-time artifact.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use percore_engine::{Engine, EngineConfig};

/// Arguments of `percore compile`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The component (.wasm, or component text format).
    component: PathBuf,
    /// Where to write the artifact.
    #[arg(short, long, value_name = "ARTIFACT")]
    output: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let bytes = std::fs::read(&args.component)
        .with_context(|| format!("cannot read {}", args.component.display()))?;
    let engine = Engine::without_ticker(EngineConfig::default())?;
    let started = Instant::now();
    let artifact = engine
        .compile(&bytes)
        .with_context(|| format!("{} was not compiled", args.component.display()))?;
    let took = started.elapsed();
    write_atomically(&args.output, &artifact)?;
    eprintln!(
        "compiled {} ({} KiB) to {} ({} KiB) in {:.1} ms",
        args.component.display(),
        bytes.len() / 1024,
        args.output.display(),
        artifact.len() / 1024,
        took.as_secs_f64() * 1e3
    );
    Ok(ExitCode::SUCCESS)
}

/// Write through a temporary file in the same directory and rename it into place, so that a
/// failure or a crash never leaves a partial artifact at `path`.
pub fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot create a file in {}", dir.display()))?;
    std::io::Write::write_all(&mut tmp, bytes)
        .with_context(|| format!("cannot write {}", path.display()))?;
    tmp.as_file().sync_all()?;
    tmp.persist(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
