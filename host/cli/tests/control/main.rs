//! End-to-end tests of the control plane: a real host on loopback with a state directory, the
//! `percore` CLI and curl against its admin API, wrk for load.
//!
//! Every loop is bounded in count; nothing asserts on timing. The helpers live here; each area of
//! tests has its own module.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

#[path = "../common/mod.rs"]
mod common;

mod admin_errors;
mod coredumps;
mod data_plane;
mod deploy;
mod faults;
mod floods;
mod invocation_log;
mod invoke;
mod kinds;
mod languages;
mod metrics;
mod oci;
mod outbound;
mod restart;
mod startup;
mod warmup;

/// A running `percore serve` with an admin API, killed when dropped.
pub(crate) struct Host {
    child: Child,
    pub(crate) addr: SocketAddr,
    pub(crate) admin: String,
    stderr: PathBuf,
}

pub(crate) fn percore() -> Command {
    Command::new(env!("CARGO_BIN_EXE_percore"))
}

impl Host {
    /// Start with `--state DIR`, the admin API on a free port, and `extra` arguments.
    pub(crate) fn start(state: &Path, extra: &[&str]) -> Self {
        Self::start_with_env(state, extra, &[])
    }

    /// [`Host::start`] with environment variables set for the host.
    pub(crate) fn start_with_env(state: &Path, extra: &[&str], env: &[(&str, &Path)]) -> Self {
        let stderr = state.with_extension(format!("{}.log", std::process::id()));
        let log = std::fs::File::create(&stderr).unwrap();
        let mut child = percore()
            .arg("serve")
            .args([
                "--listen",
                "127.0.0.1:0",
                "--admin",
                "127.0.0.1:0",
                "--cores",
                "2",
            ])
            .arg("--state")
            .arg(state)
            .args(extra)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("starting percore serve");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut admin = None;
        let mut addr = None;
        for line in lines.by_ref().take(2) {
            let line = line.unwrap();
            let url = line.rsplit("http://").next().unwrap().trim().to_owned();
            if line.contains("admin API") {
                admin = Some(format!("http://{url}"));
            } else if line.contains("listening") {
                addr = url.parse().ok();
            }
        }
        let (Some(admin), Some(addr)) = (admin, addr) else {
            let _ = child.kill();
            panic!(
                "the host did not start: {}",
                std::fs::read_to_string(&stderr).unwrap_or_default()
            );
        };
        Self {
            child,
            addr,
            admin,
            stderr,
        }
    }

    /// The host's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Run `percore <args>` against this host's admin API.
    pub(crate) fn cli(&self, args: &[&str]) -> Output {
        percore()
            .args(args)
            .env("PERCORE_ADMIN", &self.admin)
            .output()
            .unwrap()
    }

    pub(crate) fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "percore {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub(crate) fn ls(&self) -> Vec<(String, u64)> {
        let out: Value = serde_json::from_str(&self.cli_ok(&["ls", "--json"])).unwrap();
        out["deployments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["name"].as_str().unwrap().to_owned(),
                    d["version"].as_u64().unwrap(),
                )
            })
            .collect()
    }

    /// curl one request to the data plane: (status, body).
    pub(crate) fn request(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        curl(&format!("http://{}{path}", self.addr), method, body, &[])
    }

    /// curl the admin API: (status, JSON or text).
    pub(crate) fn admin(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        headers: &[&str],
    ) -> (u16, Value) {
        let (status, text) = curl(&format!("{}{path}", self.admin), method, body, headers);
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub(crate) fn signal(&self, signal: &str) {
        Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
    }

    /// SIGTERM and wait for a clean exit.
    pub(crate) fn stop(mut self) {
        self.signal("-TERM");
        for _ in 0..400 {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "exit status {status}: {}", self.log());
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the host did not stop within 20 s of SIGTERM");
    }

    pub(crate) fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn curl(url: &str, method: &str, body: Option<&str>, headers: &[&str]) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-X", method, "-w", "\n%{http_code}", url]);
    if let Some(body) = body {
        cmd.args(["--data-binary", body]);
    }
    for h in headers {
        cmd.args(["-H", h]);
    }
    let out = cmd.output().expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

/// `clients` curl processes, each sending `each` GETs to `url` on one keep-alive connection, at
/// the same time. Returns how many were answered 200.
pub(crate) fn get_many(url: &str, clients: usize, each: usize) -> usize {
    let running: Vec<_> = (0..clients)
        .map(|_| {
            let mut cmd = Command::new("curl");
            cmd.args(["-s", "-o", "/dev/null", "-w", "%{http_code}\n"]);
            for _ in 0..each {
                cmd.arg(url);
            }
            cmd.output_in_background()
        })
        .collect();
    running
        .into_iter()
        .map(|c| c.wait().lines().filter(|l| *l == "200").count())
        .sum()
}

/// The test PostgreSQL server's URL (`PERCORE_TEST_POSTGRES`), or `None` and a note that the
/// test is skipped; a test run that requires PostgreSQL (`PERCORE_REQUIRE_POSTGRES`) fails.
pub(crate) fn test_postgres() -> Option<String> {
    let url = std::env::var("PERCORE_TEST_POSTGRES").ok();
    if url.is_none() {
        assert!(
            std::env::var_os("PERCORE_REQUIRE_POSTGRES").is_none(),
            "PERCORE_TEST_POSTGRES is not set: start a server with scripts/pg-test-server.sh"
        );
        eprintln!("skipped: set PERCORE_TEST_POSTGRES (scripts/pg-test-server.sh start)");
    }
    url
}

pub(crate) fn wrk() -> &'static str {
    for candidate in ["/usr/bin/wrk", "/usr/local/bin/wrk"] {
        if Path::new(candidate).exists() {
            return candidate;
        }
    }
    panic!("wrk is missing: run scripts/install-test-tools.sh (the README's test command does)");
}

pub(crate) fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .expect("/metrics parses as Prometheus text");
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

/// A child whose output is collected on a thread.
pub(crate) struct Background(std::thread::JoinHandle<String>);

impl Background {
    pub(crate) fn wait(self) -> String {
        self.0.join().unwrap()
    }
}

pub(crate) trait InBackground {
    fn output_in_background(&mut self) -> Background;
}

impl InBackground for Command {
    fn output_in_background(&mut self) -> Background {
        let child = self
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Background(std::thread::spawn(move || {
            let out = child.wait_with_output().unwrap();
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        }))
    }
}
