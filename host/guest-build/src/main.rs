//! `cargo build-guests`: builds every example and test guest into `target/guests/<name>.wasm`.
//!
//! - the guest workspace (`examples-guests/`, which also holds the SDK and the Rust test guests)
//!   for `wasm32-wasip2`: components straight from the linker. Libraries (`edge:handler` and
//!   `wasi:http` guests) are linked as reactors; the commands ([`COMMANDS`], `fn main` programs
//!   run CGI style) as commands exporting `wasi:cli/run`, in a build of their own (below);
//! - `hello` again for `wasm32-unknown-unknown` and `wasm32-wasip1`, turned into components with
//!   `wit-component` (the latter with the WASI preview1 reactor adapter), to show the SDK works
//!   on every target: `hello-unknown.wasm`, `hello-wasip1.wasm`;
//! - `probe-cgi` again for `wasm32-wasip1`, left a core module (`_start` importing
//!   `wasi_snapshot_preview1`): hosts adapt such commands themselves, so the suite needs one
//!   unadapted: `probe-cgi-wasip1.wasm`;
//! - every `conformance/guests/wat/*.wat` into binary, a component or a core module as the text
//!   says (`(component ...)` or `(module ...)`);
//! - the guests in Python, JavaScript, C and Go ([`languages`]), with the tools
//!   `scripts/setup-language-toolchains.sh` installs (skipped where they are missing, unless
//!   `--require-languages`).
//!
//! How to invoke cargo for wasm comes from `target/toolchain/guest.env`, written by
//! `scripts/setup-guest-toolchain.sh` (rustup targets, or Debian's toolchain with build-std).
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Parser;

mod languages;

/// The guest workspace's commands (`fn main` binaries): linked with the command entry point
/// (`_start`, `wasi:cli/run`) rather than as reactors, so built apart from the libraries.
const COMMANDS: &[&str] = &["probe-cgi", "upper-cgi"];

/// Build every example and test guest into target/guests.
#[derive(Debug, Parser)]
#[command(name = "percore-guest-build")]
struct Args {
    /// Skip the extra builds for wasm32-unknown-unknown and wasm32-wasip1 (`hello`, `probe-cgi`).
    #[arg(long)]
    wasip2_only: bool,
    /// Fail when a language's toolchain is missing, rather than skip its guests (the README's
    /// test command builds every language).
    #[arg(long)]
    require_languages: bool,
    /// Build no guest in another language than Rust.
    #[arg(long, conflicts_with = "require_languages")]
    no_languages: bool,
    /// Show cargo's output even when it succeeds.
    #[arg(long, short)]
    verbose: bool,
}

/// What one cargo invocation builds.
#[derive(Debug, Clone, Copy)]
enum Packages<'a> {
    /// The whole guest workspace but its [`COMMANDS`]: libraries, linked as reactors.
    Libraries,
    /// One library package.
    Library(&'a str),
    /// Command packages, linked with the command entry point.
    Commands(&'a [&'a str]),
}

impl Packages<'_> {
    /// Where cargo builds them. Commands have a target directory of their own: on the Debian
    /// toolchain their link flags differ, and sharing a directory would rebuild `std` each time
    /// the flags change.
    fn target_dir(self, root: &Path) -> PathBuf {
        match self {
            Packages::Libraries | Packages::Library(_) => root.join("target/guests-build"),
            Packages::Commands(_) => root.join("target/guests-build-commands"),
        }
    }
}

/// How to run cargo for wasm targets.
#[derive(Debug)]
struct Toolchain {
    vars: HashMap<String, String>,
}

impl Toolchain {
    fn load(root: &Path) -> anyhow::Result<Self> {
        let path = root.join("target/toolchain/guest.env");
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "{} is missing: run `bash scripts/setup-guest-toolchain.sh` first",
                path.display()
            )
        })?;
        let vars = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        Ok(Self { vars })
    }

    fn debian(&self) -> bool {
        self.vars.get("MODE").map(String::as_str) == Some("debian")
    }

    fn var(&self, key: &str) -> anyhow::Result<&str> {
        self.vars
            .get(key)
            .map(String::as_str)
            .with_context(|| format!("guest.env has no {key}"))
    }

    /// `cargo build --release --target <target>` in the guest workspace, set up for this toolchain.
    fn cargo(&self, root: &Path, target: &str, packages: Packages<'_>) -> anyhow::Result<Command> {
        let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cmd.current_dir(root.join("examples-guests"))
            .env("CARGO_TARGET_DIR", packages.target_dir(root))
            .args(["build", "--release", "--target", target]);
        match packages {
            Packages::Libraries => {
                cmd.arg("--workspace");
                for &command in COMMANDS {
                    cmd.args(["--exclude", command]);
                }
            }
            Packages::Library(p) => {
                cmd.args(["-p", p]);
            }
            Packages::Commands(commands) => {
                for &command in commands {
                    cmd.args(["-p", command]);
                }
            }
        }
        // The outer `cargo run` must not leak its own compiler settings into the guest build.
        for var in [
            "RUSTC",
            "RUSTC_WRAPPER",
            "RUSTFLAGS",
            "CARGO_ENCODED_RUSTFLAGS",
        ] {
            cmd.env_remove(var);
        }
        if self.debian() {
            let libc = self.var("WASI_LIBC")?;
            let wasm_ld = self.var("WASM_LD")?;
            let triple = target.to_uppercase().replace('-', "_");
            cmd.env("RUSTC", self.var("RUSTC")?)
                .env("RUSTC_BOOTSTRAP", "1")
                .arg("-Zbuild-std=std,panic_abort");
            // Not self-contained, rustc adds no C start file: a library gets the reactor's
            // (`_initialize`), a command the command's (`_start`, which calls `main`).
            let crt1 = match packages {
                Packages::Libraries | Packages::Library(_) => "crt1-reactor.o",
                Packages::Commands(_) => "crt1-command.o",
            };
            let (linker, flags) = match target {
                "wasm32-wasip2" => (
                    self.var("WASM_COMPONENT_LD")?.to_owned(),
                    format!(
                        "-C link-self-contained=no -L {libc} -C link-arg=--wasm-ld-path={wasm_ld} -C link-arg={libc}/{crt1}"
                    ),
                ),
                "wasm32-wasip1" => (
                    wasm_ld.to_owned(),
                    format!("-C link-self-contained=no -L {libc} -C link-arg={libc}/{crt1}"),
                ),
                _ => (wasm_ld.to_owned(), String::new()),
            };
            cmd.env(format!("CARGO_TARGET_{triple}_LINKER"), linker)
                .env(format!("CARGO_TARGET_{triple}_RUSTFLAGS"), flags);
        }
        Ok(cmd)
    }
}

fn run(mut cmd: Command, verbose: bool, what: &str) -> anyhow::Result<()> {
    let output = cmd
        .output()
        .with_context(|| format!("cannot run cargo for {what}"))?;
    if verbose || !output.status.success() {
        eprint!("{}", String::from_utf8_lossy(&output.stderr));
    }
    if !output.status.success() {
        bail!("building {what} failed ({})", output.status);
    }
    Ok(())
}

/// Check that `bytes` is valid WebAssembly (component or core module).
fn validate(bytes: &[u8]) -> anyhow::Result<()> {
    wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all())
        .validate_all(bytes)
        .map(|_| ())
        .map_err(|e| anyhow::anyhow!("{e}"))
}

struct Output {
    name: String,
    bytes: Vec<u8>,
}

fn main() -> std::process::ExitCode {
    match build() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("build-guests: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn build() -> anyhow::Result<()> {
    let args = Args::parse();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()?;
    let toolchain = Toolchain::load(&root)?;
    let started = Instant::now();
    let build_dir = root.join("target/guests-build");
    let mut outputs = Vec::new();

    run(
        toolchain.cargo(&root, "wasm32-wasip2", Packages::Libraries)?,
        args.verbose,
        "the guest workspace for wasm32-wasip2",
    )?;
    let release = build_dir.join("wasm32-wasip2/release");
    let mut entries: Vec<_> = std::fs::read_dir(&release)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "wasm"))
        .collect();
    entries.sort();
    for path in entries {
        let name = path
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .replace('_', "-");
        // A command left there by an older build that linked it with the libraries.
        if COMMANDS.contains(&name.as_str()) {
            continue;
        }
        outputs.push(Output {
            bytes: std::fs::read(&path)?,
            name,
        });
    }

    let commands = Packages::Commands(COMMANDS);
    run(
        toolchain.cargo(&root, "wasm32-wasip2", commands)?,
        args.verbose,
        "the guest workspace's commands for wasm32-wasip2",
    )?;
    for &command in COMMANDS {
        let path = commands
            .target_dir(&root)
            .join(format!("wasm32-wasip2/release/{command}.wasm"));
        outputs.push(Output {
            name: command.to_owned(),
            bytes: std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
        });
    }

    if !args.wasip2_only {
        run(
            toolchain.cargo(&root, "wasm32-unknown-unknown", Packages::Library("hello"))?,
            args.verbose,
            "hello for wasm32-unknown-unknown",
        )?;
        let module = std::fs::read(build_dir.join("wasm32-unknown-unknown/release/hello.wasm"))?;
        let component = wit_component::ComponentEncoder::default()
            .module(&module)?
            .validate(true)
            .encode()
            .context("componentising hello (wasm32-unknown-unknown)")?;
        outputs.push(Output {
            name: "hello-unknown".into(),
            bytes: component,
        });

        run(
            toolchain.cargo(&root, "wasm32-wasip1", Packages::Library("hello"))?,
            args.verbose,
            "hello for wasm32-wasip1",
        )?;
        let module = std::fs::read(build_dir.join("wasm32-wasip1/release/hello.wasm"))?;
        let component = wit_component::ComponentEncoder::default()
            .module(&module)?
            .adapter(
                "wasi_snapshot_preview1",
                wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
            )?
            .validate(true)
            .encode()
            .context("componentising hello (wasm32-wasip1)")?;
        outputs.push(Output {
            name: "hello-wasip1".into(),
            bytes: component,
        });

        let probe_cgi = Packages::Commands(&["probe-cgi"]);
        run(
            toolchain.cargo(&root, "wasm32-wasip1", probe_cgi)?,
            args.verbose,
            "probe-cgi for wasm32-wasip1",
        )?;
        // Left a core module: the host adapts `_start` modules itself.
        outputs.push(Output {
            name: "probe-cgi-wasip1".into(),
            bytes: std::fs::read(
                probe_cgi
                    .target_dir(&root)
                    .join("wasm32-wasip1/release/probe-cgi.wasm"),
            )?,
        });
    }

    if !args.no_languages {
        outputs.extend(languages::build(
            &root,
            args.require_languages,
            args.verbose,
        )?);
    }

    let wat_dir = root.join("conformance/guests/wat");
    let mut wats: Vec<_> = std::fs::read_dir(&wat_dir)
        .with_context(|| format!("cannot read {}", wat_dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "wat"))
        .collect();
    wats.sort();
    for path in wats {
        let bytes =
            wat::parse_file(&path).with_context(|| format!("parsing {}", path.display()))?;
        outputs.push(Output {
            name: path
                .file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned(),
            bytes,
        });
    }

    let out_dir = root.join("target/guests");
    std::fs::create_dir_all(&out_dir)?;
    for output in &outputs {
        validate(&output.bytes)
            .with_context(|| format!("{} is not valid WebAssembly", output.name))?;
        let path = out_dir.join(format!("{}.wasm", output.name));
        if std::fs::read(&path).ok().as_deref() != Some(&output.bytes[..]) {
            std::fs::write(&path, &output.bytes)?;
        }
        println!(
            "  {:<20} {:>8} KiB  {}",
            output.name,
            output.bytes.len().div_ceil(1024),
            path.display()
        );
    }
    println!(
        "built {} guests into {} in {:.1} s ({} toolchain)",
        outputs.len(),
        out_dir.display(),
        started.elapsed().as_secs_f64(),
        if toolchain.debian() {
            "Debian build-std"
        } else {
            "rustup"
        }
    );
    Ok(())
}
