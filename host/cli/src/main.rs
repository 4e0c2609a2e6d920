//! `percore`: serve, run, compile and measure edge:handler components.
#![forbid(unsafe_code)]

mod bench;
mod compile;
mod invoke;
mod limits;
mod logging;
mod serve;

use clap::{Parser, Subcommand};

/// percore: a WebAssembly component platform for request-scoped edge compute.
#[derive(Debug, Parser)]
#[command(name = "percore", version, about)]
struct Cli {
    /// Log format for the host's own logs and guest log records (on stderr).
    #[arg(long, global = true, value_enum, default_value_t = logging::Format::Human)]
    log_format: logging::Format,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one request through a component in-process and print the response.
    Invoke(invoke::Args),
    /// Validate a component and compile it ahead of time into an artifact.
    Compile(compile::Args),
    /// Serve components over HTTP on every core.
    Serve(serve::Args),
    /// Measure compile time, artifact load time and per-request cost of a component.
    Bench(bench::Args),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format);
    let result = match cli.command {
        Command::Invoke(args) => invoke::run(args),
        Command::Compile(args) => compile::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Serve(args) => serve::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}
