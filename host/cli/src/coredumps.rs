//! `percore coredumps NAME`: the core dumps a running host kept for a deployment (one written
//! when a guest traps, for deployments made with `--coredump-mb`), and `--get FILE` to save one.
//! A dump is a wasm file in the core dump format of the tool conventions: `wasm-tools print`
//! shows it, `wasmgdb` debugs it against the component.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::admin::{Client, Target};

/// Arguments of `percore coredumps`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The deployment.
    name: String,
    /// Save this dump (a file name from the list) instead of listing.
    #[arg(long, value_name = "FILE")]
    get: Option<String>,
    /// Where `--get` saves it (default: the dump's file name, in the current directory).
    #[arg(short, long, value_name = "PATH", requires = "get")]
    output: Option<PathBuf>,
    #[command(flatten)]
    target: Target,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.target);
    let base = format!("/v1/deployments/{}/coredumps", args.name);
    if let Some(file) = &args.get {
        let bytes = client
            .get_bytes(&format!("{base}/{file}"))
            .with_context(|| format!("core dump `{file}` of `{}`", args.name))?;
        let out = args.output.clone().unwrap_or_else(|| PathBuf::from(file));
        std::fs::write(&out, &bytes).with_context(|| format!("cannot write {}", out.display()))?;
        eprintln!("saved {} ({} bytes)", out.display(), bytes.len());
        return Ok(ExitCode::SUCCESS);
    }
    let value = client.ok("GET", &base, None, "")?;
    if args.target.json() {
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(ExitCode::SUCCESS);
    }
    let dumps = value["coredumps"].as_array().cloned().unwrap_or_default();
    if dumps.is_empty() {
        println!("no core dumps of `{}`", args.name);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{:<40} {:>12}  REQUEST", "FILE", "BYTES");
    for d in &dumps {
        println!(
            "{:<40} {:>12}  {}",
            d["file"].as_str().unwrap_or(""),
            d["bytes"].as_u64().unwrap_or(0),
            d["request"].as_str().unwrap_or("")
        );
    }
    Ok(ExitCode::SUCCESS)
}
