//! `percore-conformance`: runs the edge:handler conformance cases against a host.
//!
//! The host contract (how the host is given components, configuration and a port, and how it
//! says it is ready) is in conformance/README.md.
#![forbid(unsafe_code)]

mod case;
mod check;
mod client;
mod host;
mod report;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Parser;

use crate::report::{Outcome, Status};

/// Run the conformance suite against a host.
#[derive(Debug, Parser)]
#[command(name = "percore-conformance", version, about)]
struct Args {
    /// The host to start for each case: a shell command line in which `{manifest}` is replaced by
    /// the path of the case's deployment manifest, `{addr}` by the address to listen on, `{port}`
    /// by its port. Example: `percore serve --config {manifest}`.
    #[arg(long, required_unless_present_any = ["url", "list", "print_manifest"])]
    host: Option<String>,
    /// Test a host that is already running at this address (`127.0.0.1:8080`) instead; it must
    /// serve the manifest of the selected case (see --print-manifest).
    #[arg(long, conflicts_with = "host")]
    url: Option<String>,
    /// Only cases whose name contains this text (repeatable).
    #[arg(long)]
    filter: Vec<String>,
    /// The cases folder.
    #[arg(long, default_value = "conformance/cases")]
    cases: PathBuf,
    /// Where the test guests are (`<name>.wasm`).
    #[arg(long, default_value = "target/guests")]
    guests: PathBuf,
    /// Cases known to fail; a listed case that passes fails the run.
    #[arg(long, default_value = "conformance/expected-failures.txt")]
    expected_failures: PathBuf,
    /// Write a JSON report here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write a JUnit XML report here.
    #[arg(long)]
    junit: Option<PathBuf>,
    /// List the cases and exit.
    #[arg(long)]
    list: bool,
    /// Print the manifest of one case (for --url) and exit.
    #[arg(long, value_name = "CASE")]
    print_manifest: Option<String>,
}

fn expected_failures(path: &PathBuf) -> anyhow::Result<BTreeSet<String>> {
    if !path.exists() {
        return Ok(BTreeSet::new());
    }
    Ok(std::fs::read_to_string(path)?
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect())
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("percore-conformance: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run() -> anyhow::Result<bool> {
    let args = Args::parse();
    let mut cases = case::load_all(&args.cases)?;
    if !args.filter.is_empty() {
        cases.retain(|c| args.filter.iter().any(|f| c.name.contains(f.as_str())));
    }
    if args.list {
        for case in &cases {
            println!("{:<40} [{}] {}", case.name, case.rule, case.description);
        }
        return Ok(true);
    }
    if let Some(name) = &args.print_manifest {
        let case = cases
            .iter()
            .find(|c| &c.name == name)
            .with_context(|| format!("no case {name}"))?;
        print!(
            "{}",
            host::manifest(case, &args.guests, "127.0.0.1:8080".parse()?)?
        );
        return Ok(true);
    }
    if cases.is_empty() {
        bail!("no case selected");
    }
    let xfail = expected_failures(&args.expected_failures)?;
    for name in &xfail {
        if !cases.iter().any(|c| &c.name == name) && args.filter.is_empty() {
            bail!(
                "{} lists `{name}`, which is not a case",
                args.expected_failures.display()
            );
        }
    }
    let work = std::env::temp_dir().join(format!("percore-conformance-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let mut outcomes = Vec::new();
    for case in &cases {
        let started = Instant::now();
        let result = run_case(case, &args, &work);
        let expected_to_fail = xfail.contains(&case.name);
        let (status, message) = match (result, expected_to_fail) {
            (Ok(()), false) => (Status::Pass, String::new()),
            (Ok(()), true) => (
                Status::Fail,
                "listed as an expected failure but passed: remove it from the list".to_owned(),
            ),
            (Err(e), false) => (Status::Fail, format!("{e:#}")),
            (Err(e), true) => (Status::ExpectedFailure, format!("{e:#}")),
        };
        let outcome = Outcome {
            name: case.name.clone(),
            description: case.description.clone(),
            status,
            message,
            duration: started.elapsed(),
        };
        println!("{}", outcome.line());
        outcomes.push(outcome);
    }
    let _ = std::fs::remove_dir_all(&work);
    let passed = outcomes.iter().filter(|o| o.status == Status::Pass).count();
    let failed = outcomes.iter().filter(|o| o.status == Status::Fail).count();
    let skipped = outcomes.len() - passed - failed;
    if let Some(path) = &args.json {
        report::write_json(path, &outcomes)?;
    }
    if let Some(path) = &args.junit {
        report::write_junit(path, &outcomes)?;
    }
    if skipped > 0 {
        println!("{passed} passed, {failed} failed, {skipped} skipped");
    } else {
        println!("{passed} passed, {failed} failed");
    }
    Ok(failed == 0)
}

fn run_case(case: &case::Case, args: &Args, work: &std::path::Path) -> anyhow::Result<()> {
    match (&args.host, &args.url) {
        (Some(command), _) => {
            let addr = host::free_addr()?;
            let manifest_path = work.join(format!("{}.toml", case.name));
            std::fs::write(&manifest_path, host::manifest(case, &args.guests, addr)?)?;
            let log = work.join(format!("{}.log", case.name));
            let mut host = host::Host::start(command, &manifest_path, addr, &log)?;
            let result = check::run(case, host.addr);
            let alive = host.alive();
            let tail = host.log_tail();
            let clean = host.stop();
            match result {
                Err(e) => Err(e.context(format!("host output:\n{tail}"))),
                Ok(()) if !alive => bail!("the host died during the case:\n{tail}"),
                Ok(()) if !clean => {
                    bail!("the host did not exit cleanly (status 0) on SIGTERM:\n{tail}")
                }
                Ok(()) => Ok(()),
            }
        }
        (None, Some(url)) => {
            let addr = url
                .trim_start_matches("http://")
                .trim_end_matches('/')
                .parse()
                .with_context(|| format!("--url {url}: expected host:port"))?;
            check::run(case, addr)
        }
        (None, None) => bail!("give --host or --url"),
    }
}
