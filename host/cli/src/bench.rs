//! `percore bench`: what one component costs: compile, artifact load, and per request with a
//! fresh instance, a reused one (state kept) and one reset to its snapshot after each request
//! (and, with `--warmup`, to a snapshot taken after the warm-up requests), through both input
//! paths. Prints figures; asserts nothing.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use percore_engine::{
    CgiSite, Engine, EngineConfig, Guest, Handler, InputPath, InputPreference, Limits, Request,
    Warmup, check_resettable,
};

/// Arguments of `percore bench`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The component to measure (.wasm).
    component: PathBuf,
    /// Requests measured per scenario.
    #[arg(long, default_value_t = 5000)]
    iterations: usize,
    /// Compilations measured.
    #[arg(long, default_value_t = 5)]
    compilations: usize,
    /// Warm-up requests (`PATH` or `METHOD PATH`, as `percore serve --warmup`): adds a
    /// `reset-wu` line, instances reset to a snapshot taken after them.
    #[arg(long, value_name = "REQUEST")]
    warmup: Vec<String>,
    #[command(flatten)]
    guest: crate::limits::GuestArgs,
}

struct Summary {
    p50: Duration,
    p99: Duration,
    mean: Duration,
}

fn summarize(mut samples: Vec<Duration>) -> Summary {
    samples.sort_unstable();
    let n = samples.len().max(1);
    let at = |q: f64| samples[((n as f64 * q) as usize).min(n - 1)];
    Summary {
        p50: at(0.50),
        p99: at(0.99),
        mean: samples.iter().sum::<Duration>() / n as u32,
    }
}

fn us(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e6)
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}

fn machine() -> String {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_default();
    let allowed = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("Cpus_allowed_list:")
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_default();
    format!(
        "Linux {} | {} | {} CPUs available | this process may run on CPUs {}",
        kernel.trim(),
        cpu,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        allowed
    )
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.iterations == 0 || args.compilations == 0 {
        bail!("--iterations and --compilations must be at least 1");
    }
    let bytes = std::fs::read(&args.component)
        .with_context(|| format!("cannot read {}", args.component.display()))?;
    let engine = Engine::new(EngineConfig::default())?;
    println!("machine: {}", machine());
    println!(
        "component: {} ({} KiB)",
        args.component.display(),
        bytes.len() / 1024
    );

    let mut compile_times = Vec::new();
    let mut artifact = Vec::new();
    for _ in 0..args.compilations {
        let started = Instant::now();
        artifact = engine.compile(&bytes)?;
        compile_times.push(started.elapsed());
    }
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("component.cwasm");
    std::fs::write(&path, &artifact)?;
    let mut load_times = Vec::new();
    let mut guest = None;
    for _ in 0..20 {
        let started = Instant::now();
        guest = Some(engine.load_guest_artifact(&path)?);
        load_times.push(started.elapsed());
    }
    let guest = guest.context("no artifact loaded")?;
    println!("kind: {}", guest.kind());
    let compile = summarize(compile_times);
    let load = summarize(load_times);
    println!(
        "compile (precompile_component): p50 {} ms, mean {} ms over {} runs; artifact {} KiB",
        ms(compile.p50),
        ms(compile.mean),
        args.compilations,
        artifact.len() / 1024
    );
    println!(
        "artifact load (deserialize_file + link): p50 {} ms, mean {} ms over 20 runs",
        ms(load.p50),
        ms(load.mean)
    );

    let limits = Arc::new(args.guest.limits()?);
    let config = Arc::new(args.guest.config()?);
    let warmup = Warmup::parse(&args.warmup)?;
    if !warmup.is_empty() {
        println!("warm-up: {}", warmup.to_strings().join(", "));
    }
    let headers: &[(&str, &[u8])] = &[("host", b"bench.local"), ("user-agent", b"percore-bench")];
    let request = Request {
        method: "GET",
        path_with_query: "/",
        headers,
        body: b"",
    };
    println!();
    let handler = match guest {
        Guest::Edge(handler) => handler,
        other => return fresh_only(&other, &args, limits, config, &warmup),
    };
    println!(
        "{:<10} {:<9} {:>10} {:>10} {:>10}   (per request, µs, {} requests each)",
        "input", "instance", "p50", "mean", "p99", args.iterations
    );
    for (label, preference) in [
        ("region", InputPreference::Region),
        ("portable", InputPreference::Portable),
    ] {
        let mut fresh = Vec::with_capacity(args.iterations);
        for _ in 0..args.iterations {
            let started = Instant::now();
            let invocation =
                handler.handle_fresh(limits.clone(), config.clone(), &request, preference);
            fresh.push(started.elapsed());
            invocation.result.context("the guest failed a request")?;
        }
        let mut instance = handler
            .instantiate(limits.clone(), config.clone())
            .map_err(|f| anyhow::anyhow!("{f}"))?;
        let mut reused = Vec::with_capacity(args.iterations);
        let mut path = None;
        for _ in 0..args.iterations {
            let started = Instant::now();
            let invocation = instance.handle(&request, preference);
            reused.push(started.elapsed());
            path = Some(invocation.stats.input);
            invocation.result.context("the guest failed a request")?;
        }
        // Reset to the post-instantiation snapshot after each request (the data plane's default
        // for components that pass the state check), and to the post-warm-up one if asked: the
        // time includes the reset.
        let resettable = check_resettable(&bytes).map_err(|why| println!("(no reset line: {why})"));
        let mut scenarios = Vec::new();
        if resettable.is_ok() {
            scenarios.push(("reset", None));
            if !warmup.is_empty() {
                scenarios.push(("reset-wu", Some(&warmup)));
            }
        }
        let mut resets = Vec::new();
        for (kind, warmup) in scenarios {
            let measured = measure_reset(
                &handler,
                &limits,
                &config,
                &request,
                preference,
                warmup,
                args.iterations,
            )?;
            resets.push((kind, measured));
        }
        if preference == InputPreference::Region && path != Some(InputPath::Region) {
            println!(
                "(the region path was not taken: the guest offers no input region, or the \
                 instance has more than one memory; these figures are the portable path's)"
            );
        }
        let mut lines = vec![("fresh", fresh), ("reused", reused)];
        let mut pages = Vec::new();
        for (kind, measured) in resets {
            let Some(measured) = measured else { continue };
            lines.push((kind, measured.total));
            lines.push((
                if kind == "reset" {
                    "(reset)"
                } else {
                    "(rst-wu)"
                },
                measured.reset_only,
            ));
            pages.push((kind, measured.pages));
        }
        for (kind, samples) in lines {
            let s = summarize(samples);
            println!(
                "{:<10} {:<9} {:>10} {:>10} {:>10}",
                label,
                kind,
                us(s.p50),
                us(s.mean),
                us(s.p99)
            );
        }
        for (kind, pages) in pages {
            println!(
                "{:<10} {:<9} {:.1} pages copied back per reset",
                label,
                kind,
                pages as f64 / args.iterations as f64
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Per-request times on one instance reset after each request, and the reset's share.
struct Resets {
    total: Vec<Duration>,
    reset_only: Vec<Duration>,
    pages: usize,
}

/// `iterations` requests on one instance reset to its snapshot after each, the snapshot taken
/// right after instantiation or after `warmup`. `None` (and why, printed) if the snapshot
/// cannot be taken.
fn measure_reset(
    handler: &Handler,
    limits: &Arc<Limits>,
    config: &Arc<std::collections::BTreeMap<String, String>>,
    request: &Request<'_>,
    preference: InputPreference,
    warmup: Option<&Warmup>,
    iterations: usize,
) -> anyhow::Result<Option<Resets>> {
    let mut instance = handler
        .instantiate(limits.clone(), config.clone())
        .map_err(|f| anyhow::anyhow!("{f}"))?;
    let prepared = match warmup {
        Some(warmup) => instance.warm_up(warmup, preference).map(drop),
        None => Ok(()),
    };
    if let Err(why) = prepared.and_then(|()| instance.prepare_reset()) {
        let kind = if warmup.is_some() {
            "reset-wu"
        } else {
            "reset"
        };
        println!("(no {kind} line: {why})");
        return Ok(None);
    }
    let mut measured = Resets {
        total: Vec::with_capacity(iterations),
        reset_only: Vec::with_capacity(iterations),
        pages: 0,
    };
    for _ in 0..iterations {
        let started = Instant::now();
        let invocation = instance.handle(request, preference);
        let handled = started.elapsed();
        let stats = instance
            .reset()
            .map_err(|why| anyhow::anyhow!("reset failed: {why}"))?;
        let total = started.elapsed();
        measured.total.push(total);
        measured.reset_only.push(total - handled);
        measured.pages += stats.pages_copied;
        invocation.result.context("the guest failed a request")?;
    }
    Ok(Some(measured))
}

/// Kinds of guest that run a fresh instance per request (wasi:http, commands, bare modules):
/// one line, a POST of a small body (what a command echoes), or a bare module's function called
/// with no arguments.
fn fresh_only(
    guest: &Guest,
    args: &Args,
    limits: Arc<Limits>,
    config: Arc<std::collections::BTreeMap<String, String>>,
    warmup: &Warmup,
) -> anyhow::Result<ExitCode> {
    let headers: &[(&str, &[u8])] = &[
        ("host", b"bench.local"),
        ("content-type", b"text/plain"),
        ("content-length", b"25"),
    ];
    let request = Request {
        method: "POST",
        path_with_query: "/",
        headers,
        body: b"percore bench: small body",
    };
    let function = match guest {
        Guest::Bare(bare) => Some(bare.pick(None)?.to_owned()),
        _ => None,
    };
    println!(
        "{:<10} {:<9} {:>10} {:>10} {:>10}   (per request, µs, {} requests each)",
        "input", "instance", "p50", "mean", "p99", args.iterations
    );
    let mut samples = Vec::with_capacity(args.iterations);
    for _ in 0..args.iterations {
        let started = Instant::now();
        let invocation = match guest {
            Guest::Http(h) => h.handle(limits.clone(), config.clone(), &request),
            Guest::HttpP3(h) => h.handle(limits.clone(), config.clone(), &request),
            Guest::Cgi(h) => h.handle(
                limits.clone(),
                config.clone(),
                &request,
                &CgiSite::default(),
            ),
            Guest::Bare(h) => h.call(limits.clone(), function.as_deref().unwrap_or(""), &[])?,
            Guest::Edge(_) => unreachable!("edge guests have their own table"),
        };
        samples.push(started.elapsed());
        invocation.result.context("the guest failed a request")?;
    }
    let input = match guest {
        Guest::Cgi(_) => "stdin",
        Guest::Bare(_) => "args",
        _ => "wasi:http",
    };
    let line = |kind: &str, samples: Vec<Duration>| {
        let s = summarize(samples);
        println!(
            "{:<10} {:<9} {:>10} {:>10} {:>10}",
            input,
            kind,
            us(s.p50),
            us(s.mean),
            us(s.p99)
        );
    };
    line("fresh", samples);
    // wasi:http instances are pooled and reset like edge:handler ones when they qualify.
    if let Guest::Http(handler) = guest {
        let mut scenarios = vec![("reset", "(reset)", None)];
        if !warmup.is_empty() {
            scenarios.push(("reset-wu", "(rst-wu)", Some(warmup)));
        }
        for (kind, reset_kind, warmup) in scenarios {
            let mut instance = handler
                .instantiate(limits.clone(), config.clone())
                .map_err(|f| anyhow::anyhow!("{f}"))?;
            let prepared = match warmup {
                Some(warmup) => instance.warm_up(warmup).map(drop),
                None => Ok(()),
            };
            if let Err(why) = prepared.and_then(|()| instance.prepare_reset()) {
                println!("(no {kind} line: {why})");
                continue;
            }
            let mut reset = Vec::with_capacity(args.iterations);
            let mut reset_only = Vec::with_capacity(args.iterations);
            for _ in 0..args.iterations {
                let started = Instant::now();
                let invocation = instance.handle(&request);
                let handled = started.elapsed();
                invocation.result.context("the guest failed a request")?;
                instance
                    .reset()
                    .map_err(|why| anyhow::anyhow!("reset failed: {why}"))?;
                let total = started.elapsed();
                reset.push(total);
                reset_only.push(total - handled);
            }
            line(kind, reset);
            line(reset_kind, reset_only);
        }
    }
    Ok(ExitCode::SUCCESS)
}
