//! `percore`: serve, run, compile, measure and ship WebAssembly guests.
#![forbid(unsafe_code)]

mod admin;
mod argo_plugin;
mod bench;
mod compile;
mod coredumps;
mod invoke;
mod limits;
mod logging;
mod new;
mod oci;
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
    /// Deploy (or update, with a hot swap) a component on a running host.
    Deploy(admin::DeployArgs),
    /// List the deployments of a running host.
    Ls(admin::LsArgs),
    /// Remove deployments from a running host.
    Rm(admin::RmArgs),
    /// Show what a running host has served: requests, errors, time, bytes, cold starts.
    Stats(admin::StatsArgs),
    /// List a deployment's core dumps, or save one to a file.
    Coredumps(coredumps::Args),
    /// Push a component to an OCI registry (the CNCF Wasm artifact layout).
    Push(oci::PushArgs),
    /// Pull a component from an OCI registry into a file.
    Pull(oci::PullArgs),
    /// Be Argo Workflows' executor plugin: a sidecar passing template.execute to a host.
    ArgoPlugin(argo_plugin::Args),
    /// Make a guest project in Rust, Python, JavaScript, C or Go (`--list` shows the templates).
    New(new::Args),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // A command whose output goes to `head` ends quietly when the pipe closes, as Unix tools
    // do. Never the servers: a client that goes away must not stop them.
    if !matches!(cli.command, Command::Serve(_) | Command::ArgoPlugin(_)) {
        sigpipe::reset();
    }
    logging::init(cli.log_format);
    let result = match cli.command {
        Command::Invoke(args) => invoke::run(args),
        Command::New(args) => new::run(args).map(|()| std::process::ExitCode::SUCCESS),
        Command::Compile(args) => compile::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Deploy(args) => admin::deploy(args),
        Command::Ls(args) => admin::ls(args),
        Command::Rm(args) => admin::rm(args),
        Command::Stats(args) => admin::stats(args),
        Command::Coredumps(args) => coredumps::run(args),
        Command::Push(args) => oci::push(args),
        Command::Pull(args) => oci::pull(args),
        Command::ArgoPlugin(args) => argo_plugin::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}
