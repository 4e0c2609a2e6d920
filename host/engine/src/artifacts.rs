//! The artifact cache: ahead-of-time compiled components on disk, addressed by their content.
//!
//! An artifact's name is the SHA-256 of (the component's SHA-256, the engine configuration, the
//! percore version), so one directory can hold artifacts of several components and engines, a
//! changed configuration or an upgrade never maps a stale artifact, and the same component is
//! compiled once however often it is deployed. `percore serve` uses one cache for the
//! deployments of its command line or configuration file and for those of its control plane:
//! `<state>/artifacts` when it has a state directory, else [`ArtifactCache::default_dir`].

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

use crate::{Engine, EngineConfig, Error};

/// SHA-256 of `bytes`, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Write an artifact (or any file a mapping may read) without ever changing the bytes of an
/// existing file: a temporary file in the same directory, synced, then renamed over `path`. A
/// crash leaves the old file or the new one, never a torn one, and a process that has the old
/// file mapped keeps its pages (rewriting a mapped file in place would make it fault).
pub fn write_artifact(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    // Two writers of one path in one process (two threads compiling the same component) must
    // not share a temporary file.
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        WRITES.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// What identifies an engine in artifact names: its configuration and the percore version.
/// Existing state directories find their artifacts by this formula: do not change it.
fn engine_key(engine: &EngineConfig) -> String {
    // The rewrite a component gets before it is compiled is part of what an artifact is.
    format!(
        "{engine:?}/{}/{}",
        env!("CARGO_PKG_VERSION"),
        crate::globals::REWRITE
    )
}

/// Content-addressed cache of ahead-of-time compiled components.
#[derive(Debug, Clone)]
pub struct ArtifactCache {
    dir: PathBuf,
    engine_key: String,
}

/// An artifact in an [`ArtifactCache`].
#[derive(Debug, Clone)]
pub struct Cached {
    /// Where the artifact is.
    pub path: PathBuf,
    /// SHA-256 (hex) of the component it was compiled from.
    pub component_sha256: String,
    /// What kind of guest it is.
    pub kind: crate::GuestKind,
    /// Whether it was compiled by this call (`false`: it was in the cache).
    pub compiled: bool,
}

impl ArtifactCache {
    /// A cache in `dir` for artifacts of engines configured like `engine`. Creates nothing yet.
    pub fn new(dir: impl Into<PathBuf>, engine: &EngineConfig) -> Self {
        Self {
            dir: dir.into(),
            engine_key: engine_key(engine),
        }
    }

    /// The cache for deployments outside a state directory: `$PERCORE_ARTIFACTS`, else
    /// `$XDG_CACHE_HOME/percore/artifacts`, else `~/.cache/percore/artifacts`, else
    /// `percore/artifacts` in the temporary directory.
    pub fn default_dir() -> PathBuf {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        if let Some(dir) = var("PERCORE_ARTIFACTS") {
            return PathBuf::from(dir);
        }
        let cache = var("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .unwrap_or_else(std::env::temp_dir);
        cache.join("percore").join("artifacts")
    }

    /// The directory the artifacts are in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the artifact of the component whose SHA-256 (hex) is `component_sha256` lives.
    pub fn path_for(&self, component_sha256: &str) -> PathBuf {
        let key = sha256_hex(format!("{component_sha256}/{}", self.engine_key).as_bytes());
        self.dir.join(format!("{key}.cwasm"))
    }

    /// Compile `bytes` with `engine` unless its artifact exists. Returns where the artifact is
    /// and whether it was compiled now. `engine` must be configured like the cache's engine.
    pub fn get_or_compile(&self, engine: &Engine, bytes: &[u8]) -> Result<Cached, Error> {
        if engine_key(engine.config()) != self.engine_key {
            // Its artifacts would be filed under another configuration and fail to load.
            return Err(Error::Engine(
                "the artifact cache belongs to an engine with another configuration".into(),
            ));
        }
        let component_sha256 = sha256_hex(bytes);
        let path = self.path_for(&component_sha256);
        if path.exists() {
            return Ok(Cached {
                path,
                component_sha256,
                kind: crate::kind::kind_of(bytes)?,
                compiled: false,
            });
        }
        let compiled = engine.compile_guest(bytes)?;
        if let Err(error) = write_artifact(&path, &compiled.artifact) {
            return Err(Error::WriteArtifact { path, error });
        }
        Ok(Cached {
            path,
            component_sha256,
            kind: compiled.kind,
            compiled: true,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const COMPONENT: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn sha256_is_lowercase_hex() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn an_artifact_path_depends_on_the_component_and_the_engine() {
        let config = EngineConfig::default();
        let cache = ArtifactCache::new("/cache", &config);
        let path = cache.path_for(COMPONENT);
        assert_eq!(path, cache.path_for(COMPONENT));
        assert_eq!(
            path,
            ArtifactCache::new("/cache", &config).path_for(COMPONENT)
        );
        assert_eq!(path.parent(), Some(Path::new("/cache")));
        assert_eq!(path.extension().and_then(|e| e.to_str()), Some("cwasm"));
        // The formula: component, engine, version, and the rewrite made before compiling.
        let version = env!("CARGO_PKG_VERSION");
        let rewrite = crate::globals::REWRITE;
        let key = sha256_hex(format!("{COMPONENT}/{config:?}/{version}/{rewrite}").as_bytes());
        assert_eq!(path, Path::new("/cache").join(format!("{key}.cwasm")));

        assert_ne!(path, cache.path_for(&sha256_hex(b"another component")));
        let other = EngineConfig {
            epoch_tick: Duration::from_millis(2),
            ..config
        };
        assert_ne!(
            path,
            ArtifactCache::new("/cache", &other).path_for(COMPONENT)
        );
    }

    #[test]
    fn an_artifact_is_written_whole_with_no_temporary_file_left() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested").join("a.cwasm");
        write_artifact(&path, b"first").unwrap();
        write_artifact(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        let names: Vec<String> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["a.cwasm"]);
    }

    #[test]
    fn a_cached_artifact_is_not_compiled_again_and_a_refused_one_is_not_written() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::without_ticker(EngineConfig::default()).unwrap();
        let cache = ArtifactCache::new(dir.path(), engine.config());
        // Found in the cache, a guest is not compiled again (only its kind is read).
        let bytes = br#"(module (func (export "f")))"#;
        let path = cache.path_for(&sha256_hex(bytes));
        write_artifact(&path, b"artifact").unwrap();
        let cached = cache.get_or_compile(&engine, bytes).unwrap();
        assert_eq!(cached.path, path);
        assert_eq!(cached.component_sha256, sha256_hex(bytes));
        assert_eq!(cached.kind, crate::GuestKind::Bare);
        assert!(!cached.compiled);
        assert_eq!(std::fs::read(&path).unwrap(), b"artifact");

        let refused = b"not a component either";
        assert!(cache.get_or_compile(&engine, refused).is_err());
        assert!(!cache.path_for(&sha256_hex(refused)).exists());

        let other = ArtifactCache::new(
            dir.path(),
            &EngineConfig {
                max_wasm_stack: 1 << 20,
                ..EngineConfig::default()
            },
        );
        assert!(other.get_or_compile(&engine, bytes).is_err());
    }
}
