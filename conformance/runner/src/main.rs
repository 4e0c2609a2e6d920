//! `percore-conformance`: runs the conformance cases against a host, each case once per kind of
//! guest it lists (`edge:handler`, `wasi:http`, CGI).
//!
//! The host contract (how the host is given components, configuration and a port, and how it
//! says it is ready) and the kinds of guest are in conformance/README.md.
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

use crate::case::{Case, Kind, Target};
use crate::report::{Outcome, Status};

/// Run the conformance suite against a host.
#[derive(Debug, Parser)]
#[command(name = "percore-conformance", version, about)]
struct Args {
    /// The host to start for each run: a shell command line in which `{manifest}` is replaced by
    /// the path of the run's deployment manifest, `{addr}` by the address to listen on, `{port}`
    /// by its port. Example: `percore serve --config {manifest}`.
    #[arg(long, required_unless_present_any = ["url", "list", "print_manifest"])]
    host: Option<String>,
    /// Test a host that is already running at this address (`127.0.0.1:8080`) instead; it must
    /// serve the manifest of the selected run (see --print-manifest).
    #[arg(long, conflicts_with = "host")]
    url: Option<String>,
    /// Only runs whose name contains this text (repeatable). A run is a case against one kind
    /// of guest, named `CASE` for `edge` and `CASE [KIND]` for the others: `fault-timeout`
    /// selects all of that case's runs, `[cgi]` every CGI run.
    #[arg(long)]
    filter: Vec<String>,
    /// Only runs against this kind of guest (repeatable). With --print-manifest: the kind whose
    /// manifest to print.
    #[arg(long = "kind", value_enum, value_name = "KIND")]
    kinds: Vec<Kind>,
    /// Serve this guest in place of every guest of the runs against KIND (repeatable, one per
    /// kind): `--probe edge=probe-python` runs the cases that any `edge:handler` guest can pass
    /// (those that also list another kind) against a guest written in another language, which
    /// answers as the guest it stands in for (its role, in `PROBE_ROLE`). Runs are then named
    /// `CASE [edge:probe-python]`.
    #[arg(long = "probe", value_name = "KIND=GUEST", value_parser = parse_probe)]
    probes: Vec<(Kind, String)>,
    /// The cases folder.
    #[arg(long, default_value = "conformance/cases")]
    cases: PathBuf,
    /// Where the test guests are (`<name>.wasm`).
    #[arg(long, default_value = "target/guests")]
    guests: PathBuf,
    /// Runs known to fail (`CASE` or `CASE [KIND]`); a listed run that passes fails the suite.
    #[arg(long, default_value = "conformance/expected-failures.txt")]
    expected_failures: PathBuf,
    /// Write a JSON report here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write a JUnit XML report here.
    #[arg(long)]
    junit: Option<PathBuf>,
    /// List the cases (with the kinds selected and their rules) and exit.
    #[arg(long)]
    list: bool,
    /// Print the manifest of one run (for --url) and exit: `CASE` (its first kind, or the one
    /// --kind gives) or `CASE [KIND]`.
    #[arg(long, value_name = "CASE")]
    print_manifest: Option<String>,
}

fn parse_probe(text: &str) -> Result<(Kind, String), String> {
    let (kind, guest) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}`: expected KIND=GUEST, as in edge=probe-python"))?;
    let kind = Kind::from_name(kind)
        .ok_or_else(|| format!("no kind of guest `{kind}` (edge, wasi-http, cgi)"))?;
    if guest.is_empty() || guest.contains(['/', '.']) {
        return Err(format!(
            "`{guest}`: name a guest of the guests folder, without `.wasm`"
        ));
    }
    Ok((kind, guest.to_owned()))
}

impl Args {
    /// What runs against `kind` serve.
    fn target(&self, kind: Kind) -> Target<'_> {
        Target {
            kind,
            probe: self
                .probes
                .iter()
                .find(|(k, _)| *k == kind)
                .map(|(_, guest)| guest.as_str()),
        }
    }
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

/// Whether the command line selects `case`'s run against `target`.
fn selected(args: &Args, case: &Case, target: Target) -> bool {
    let name = case.run_name(target);
    (args.kinds.is_empty() || args.kinds.contains(&target.kind))
        && (args.filter.is_empty() || args.filter.iter().any(|f| name.contains(f.as_str())))
}

/// The run `--print-manifest` names: `CASE [KIND]`, or `CASE` with the kind from `--kind` or
/// else the case's first.
fn named_run<'a>(
    cases: &'a [Case],
    name: &str,
    kinds: &[Kind],
) -> anyhow::Result<(&'a Case, Kind)> {
    let (case_name, kind) = match name.strip_suffix(']').and_then(|n| n.rsplit_once(" [")) {
        Some((case_name, kind)) => {
            // `CASE [KIND:PROBE]`: the probe comes from --probe.
            let kind = kind.split_once(':').map_or(kind, |(kind, _)| kind);
            let kind = Kind::from_name(kind)
                .with_context(|| format!("no kind of guest `{kind}` (edge, wasi-http, cgi)"))?;
            (case_name, Some(kind))
        }
        None => (name, None),
    };
    let case = cases
        .iter()
        .find(|c| c.name == case_name)
        .with_context(|| format!("no case {case_name}"))?;
    let kind = match (kind, kinds) {
        (Some(kind), _) => kind,
        (None, [kind]) => *kind,
        (None, []) => Kind::ALL
            .into_iter()
            .find(|k| case.kinds.contains(k))
            .with_context(|| format!("case {case_name} lists no kind"))?,
        (None, _) => bail!("give one --kind with --print-manifest"),
    };
    if !case.kinds.contains(&kind) {
        bail!("case {case_name} does not run against {kind} guests");
    }
    Ok((case, kind))
}

fn run() -> anyhow::Result<bool> {
    let args = Args::parse();
    let cases = case::load_all(&args.cases)?;
    if let Some(name) = &args.print_manifest {
        let (case, kind) = named_run(&cases, name, &args.kinds)?;
        print!(
            "{}",
            host::manifest(
                case,
                args.target(kind),
                &args.guests,
                "127.0.0.1:8080".parse()?
            )?
        );
        return Ok(true);
    }
    // Every run: each case against each kind it lists, in the order of `Kind::ALL`.
    let all: Vec<(&Case, Target)> = cases
        .iter()
        .flat_map(|c| {
            Kind::ALL
                .into_iter()
                .map(|k| args.target(k))
                .filter(|&t| c.runs_against(t))
                .map(move |t| (c, t))
        })
        .collect();
    let runs: Vec<(&Case, Target)> = all
        .iter()
        .copied()
        .filter(|&(c, k)| selected(&args, c, k))
        .collect();
    if args.list {
        for case in &cases {
            let kinds: Vec<String> = Kind::ALL
                .into_iter()
                .map(|k| args.target(k))
                .filter(|&t| runs.iter().any(|&(c, rt)| c.name == case.name && rt == t))
                .map(|t| t.to_string())
                .collect();
            if !kinds.is_empty() {
                println!(
                    "{:<40} {:<20} [{}] {}",
                    case.name,
                    kinds.join(","),
                    case.rule,
                    case.description
                );
            }
        }
        return Ok(true);
    }
    if runs.is_empty() {
        bail!("no case selected");
    }
    if args.url.is_some() && runs.iter().any(|&(_, t)| t != runs[0].1) {
        bail!("a running host (--url) serves one kind of guest: select one with --kind");
    }
    let xfail = expected_failures(&args.expected_failures)?;
    for name in &xfail {
        // `CASE [KIND:PROBE]` names a run only when --probe gives that probe.
        let probe = name
            .strip_suffix(']')
            .and_then(|n| n.rsplit_once(" ["))
            .and_then(|(_, target)| target.split_once(':'))
            .map(|(_, probe)| probe);
        if probe.is_some_and(|p| !args.probes.iter().any(|(_, given)| given == p)) {
            continue;
        }
        if !all.iter().any(|&(c, k)| &c.run_name(k) == name) {
            bail!(
                "{} lists `{name}`, which is no case's run (`CASE` or `CASE [KIND]`)",
                args.expected_failures.display()
            );
        }
    }
    let work = std::env::temp_dir().join(format!("percore-conformance-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let mut outcomes = Vec::new();
    for &(case, target) in &runs {
        let name = case.run_name(target);
        let started = Instant::now();
        let result = run_case(case, target, &args, &work);
        let expected_to_fail = xfail.contains(&name);
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
            name,
            case: case.name.clone(),
            kind: target.kind,
            probe: target.probe.map(str::to_owned),
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

fn run_case(
    case: &Case,
    target: Target,
    args: &Args,
    work: &std::path::Path,
) -> anyhow::Result<()> {
    let kind = target.kind;
    match (&args.host, &args.url) {
        (Some(command), _) => {
            let addr = host::free_addr()?;
            let manifest_path = work.join(format!("{}.{kind}.toml", case.name));
            std::fs::write(
                &manifest_path,
                host::manifest(case, target, &args.guests, addr)?,
            )?;
            let log = work.join(format!("{}.{kind}.log", case.name));
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
