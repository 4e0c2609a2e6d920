//! `percore push` and `percore pull`, and `oci://` references wherever a command takes a
//! component file (`serve`, `invoke`, the configuration file).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;

/// How registries are reached.
#[derive(Debug, Clone, clap::Args)]
pub struct RegistryArgs {
    /// A registry (`host:port`, as in references) to reach over plain HTTP; registries on
    /// loopback always are. Repeatable, or comma-separated in the variable.
    #[arg(
        long = "insecure-registry",
        value_name = "HOST:PORT",
        env = "PERCORE_INSECURE_REGISTRIES",
        value_delimiter = ','
    )]
    pub insecure: Vec<String>,
    /// Give up on a push or pull after this long, seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 120)]
    pub registry_timeout: u64,
}

impl RegistryArgs {
    /// The settings of one push or pull of at most `max_bytes`.
    pub fn settings(&self, max_bytes: u64) -> percore_oci::Settings {
        percore_oci::Settings {
            insecure: self.insecure.clone(),
            max_bytes,
            timeout: Duration::from_secs(self.registry_timeout.max(1)),
        }
    }
}

/// Arguments of `percore push`.
#[derive(Debug, clap::Args)]
pub struct PushArgs {
    /// The component (or core module) to push.
    file: PathBuf,
    /// Where: `[oci://]REGISTRY/REPOSITORY[:TAG]` (tag `latest` when absent).
    reference: String,
    #[command(flatten)]
    registry: RegistryArgs,
}

/// Arguments of `percore pull`.
#[derive(Debug, clap::Args)]
pub struct PullArgs {
    /// What: `[oci://]REGISTRY/REPOSITORY[:TAG][@sha256:DIGEST]`.
    reference: String,
    /// The file to write the component to.
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,
    /// Largest component accepted, MiB.
    #[arg(long, value_name = "MIB", default_value_t = 256)]
    max_mb: u64,
    #[command(flatten)]
    registry: RegistryArgs,
}

pub fn push(args: PushArgs) -> anyhow::Result<ExitCode> {
    let bytes = std::fs::read(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let size = bytes.len();
    let started = Instant::now();
    let settings = args.registry.settings(u64::MAX);
    let pushed = crate::admin::with_progress(&format!("pushing {} KiB", size / 1024), || {
        percore_oci::push(bytes, &args.reference, &settings)
    })?;
    println!(
        "pushed {} ({} KiB) in {:.2} s\n{}",
        args.file.display(),
        size / 1024,
        started.elapsed().as_secs_f64(),
        pushed.pinned
    );
    Ok(ExitCode::SUCCESS)
}

pub fn pull(args: PullArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let settings = args.registry.settings(args.max_mb << 20);
    let pulled = crate::admin::with_progress(&format!("pulling {}", args.reference), || {
        percore_oci::pull(&args.reference, &settings)
    })?;
    percore_engine::write_artifact(&args.output, &pulled.bytes)
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    println!(
        "pulled {} ({} layout, {} KiB) in {:.2} s into {}",
        pulled.pinned,
        pulled.layout,
        pulled.bytes.len() / 1024,
        started.elapsed().as_secs_f64(),
        args.output.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// A component given as a file path or an `oci://` reference, as a local file. A reference
/// pinned by digest that was pulled before is read from the cache without asking the registry;
/// one by tag is pulled each time (the log says which digest it got).
pub fn local_component(text: &str, registry: &RegistryArgs) -> anyhow::Result<PathBuf> {
    if !percore_oci::is_oci(text) {
        return Ok(PathBuf::from(text));
    }
    let reference = percore_oci::reference(text)?;
    let dir = cache_dir();
    let cached = |digest: &str| dir.join(format!("{}.wasm", digest.replace(':', "-")));
    if let Some(digest) = reference.digest()
        && cached(digest).is_file()
    {
        tracing::info!(reference = %text, file = %cached(digest).display(), "pinned component found in the cache");
        return Ok(cached(digest));
    }
    let started = Instant::now();
    let pulled = percore_oci::pull(text, &registry.settings(256 << 20))?;
    let path = cached(&pulled.digest);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    percore_engine::write_artifact(&path, &pulled.bytes)
        .with_context(|| format!("cannot write {}", path.display()))?;
    tracing::info!(reference = %text, pinned = %pulled.pinned, layout = %pulled.layout, bytes = pulled.bytes.len(), ms = started.elapsed().as_millis() as u64, "pulled");
    Ok(path)
}

/// Components pulled for `serve` and `invoke`: `oci-components/` beside the artifact cache.
fn cache_dir() -> PathBuf {
    let artifacts = percore_engine::ArtifactCache::default_dir();
    artifacts
        .parent()
        .unwrap_or(Path::new("."))
        .join("oci-components")
}
