//! Starting and stopping the host under test.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::case::{Case, Deployment, Target};

/// A free loopback port (bound, read, released).
pub fn free_addr() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?)
}

/// The manifest for a case's run against `target`: percore's configuration format (see
/// conformance/README.md).
pub fn manifest(
    case: &Case,
    target: Target,
    guests: &Path,
    addr: SocketAddr,
) -> anyhow::Result<String> {
    let mut out = String::new();
    out.push_str(&format!("listen = \"{addr}\"\n"));
    if case.host.portable {
        out.push_str("portable = true\n");
    }
    if let Some(mode) = &case.host.instances {
        out.push_str(&format!("instances = \"{mode}\"\n"));
    }
    out.push_str("\n[http]\n");
    if let Some(v) = case.host.max_body_mib {
        out.push_str(&format!("max_body_mib = {v}\n"));
    }
    if let Some(v) = case.host.max_head_kib {
        out.push_str(&format!("max_head_kib = {v}\n"));
    }
    if let Some(v) = case.host.request_timeout_ms {
        out.push_str(&format!("request_timeout_ms = {v}\n"));
    }
    for d in &case.deployments_for(target) {
        out.push_str(&deployment(d, guests)?);
    }
    Ok(out)
}

fn deployment(d: &Deployment, guests: &Path) -> anyhow::Result<String> {
    let component = guests.join(format!("{}.wasm", d.guest));
    if !component.exists() {
        bail!(
            "guest {} is missing (build the guests first)",
            component.display()
        );
    }
    let component = component.canonicalize()?;
    let mut out = format!(
        "\n[[deployment]]\nname = {}\ncomponent = {}\n",
        toml_str(&d.name),
        toml_str(&component.to_string_lossy())
    );
    for (key, value) in [
        ("memory_mb", d.memory_mb.map(|v| v as u64)),
        ("cpu_ms", d.cpu_ms),
        ("timeout_ms", d.timeout_ms),
        ("max_response_mb", d.max_response_mb.map(|v| v as u64)),
    ] {
        if let Some(value) = value {
            out.push_str(&format!("{key} = {value}\n"));
        }
    }
    let routes = if d.routes.is_empty() {
        "[{ path = \"/\" }]".to_owned()
    } else {
        let items: Vec<String> = d
            .routes
            .iter()
            .map(|r| match &r.host {
                Some(h) => format!("{{ host = {}, path = {} }}", toml_str(h), toml_str(&r.path)),
                None => format!("{{ path = {} }}", toml_str(&r.path)),
            })
            .collect();
        format!("[{}]", items.join(", "))
    };
    out.push_str(&format!("routes = {routes}\n"));
    if !d.config.is_empty() {
        out.push_str("[deployment.config]\n");
        for (k, v) in &d.config {
            out.push_str(&format!("{} = {}\n", toml_str(k), toml_str(v)));
        }
    }
    Ok(out)
}

fn toml_str(s: &str) -> String {
    serde_json::to_string(s).expect("strings serialise")
}

/// A running host process.
pub struct Host {
    child: Child,
    pub addr: SocketAddr,
    log: std::path::PathBuf,
}

impl Host {
    /// Start `command` (a shell command line with `{manifest}`, `{addr}` and `{port}` replaced)
    /// and wait until it accepts connections on `addr`.
    pub fn start(
        command: &str,
        manifest: &Path,
        addr: SocketAddr,
        log: &Path,
    ) -> anyhow::Result<Self> {
        let line = command
            .replace("{manifest}", &manifest.to_string_lossy())
            .replace("{addr}", &addr.to_string())
            .replace("{port}", &addr.port().to_string());
        let stderr = std::fs::File::create(log)?;
        let child = Command::new("sh")
            .arg("-c")
            .arg(format!("exec {line}"))
            .stdin(Stdio::null())
            .stdout(stderr.try_clone()?)
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("cannot start the host: {line}"))?;
        let mut host = Self {
            child,
            addr,
            log: log.to_owned(),
        };
        let started = Instant::now();
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(host);
            }
            if let Some(status) = host.child.try_wait()? {
                bail!(
                    "the host exited ({status}) before accepting connections:\n{}",
                    host.log_tail()
                );
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!(
                    "the host did not accept connections within 60 s:\n{}",
                    host.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The end of the host's output, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// Whether the host process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM, then SIGKILL after 10 s. Returns whether it exited cleanly (status 0) by itself.
    pub fn stop(mut self) -> bool {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        false
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
