//! Content-addressed files under the state directory: components by their SHA-256, artifacts
//! by the SHA-256 of (component hash, engine configuration, percore version). Every file is
//! written to a temporary name, synced and renamed, so a crash leaves a whole file or none.

use std::path::{Path, PathBuf};

use percore_engine::EngineConfig;
use sha2::{Digest, Sha256};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of `bytes`, hex.
pub fn sha256(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Whether `s` looks like a SHA-256 in hex (and so is safe as a file name).
pub fn is_sha256(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// The files of one state directory.
#[derive(Debug, Clone)]
pub struct Content {
    components: PathBuf,
    artifacts: PathBuf,
    engine_key: String,
}

impl Content {
    /// Use (and create) `state/components` and `state/artifacts`.
    pub fn new(state: &Path, engine: &EngineConfig) -> std::io::Result<Self> {
        let components = state.join("components");
        let artifacts = state.join("artifacts");
        std::fs::create_dir_all(&components)?;
        std::fs::create_dir_all(&artifacts)?;
        Ok(Self {
            components,
            artifacts,
            engine_key: format!("{engine:?}/{}", env!("CARGO_PKG_VERSION")),
        })
    }

    /// Where a component with this hash lives.
    pub fn component_path(&self, hash: &str) -> PathBuf {
        self.components.join(format!("{hash}.wasm"))
    }

    /// Where the artifact of a component with this hash lives, for this engine.
    pub fn artifact_path(&self, hash: &str) -> PathBuf {
        let key = sha256(format!("{hash}/{}", self.engine_key).as_bytes());
        self.artifacts.join(format!("{key}.cwasm"))
    }

    /// Store a component (a no-op when the same bytes are already there). Returns its hash.
    pub fn put_component(&self, bytes: &[u8]) -> std::io::Result<String> {
        let hash = sha256(bytes);
        let path = self.component_path(&hash);
        if !path.exists() {
            percore_engine::write_artifact(&path, bytes)?;
        }
        Ok(hash)
    }

    /// The bytes of a stored component.
    pub fn component(&self, hash: &str) -> std::io::Result<Vec<u8>> {
        std::fs::read(self.component_path(hash))
    }
}
