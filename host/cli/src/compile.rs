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
    percore_engine::write_artifact(&args.output, &artifact)
        .with_context(|| format!("cannot write {}", args.output.display()))?;
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
