//! Components stored by content under the state directory, as `components/{sha256}.wasm`. Each
//! file is written to a temporary name, synced and renamed, so a crash leaves a whole file or
//! none. Their artifacts are next to them in `artifacts/`, a [`percore_engine::ArtifactCache`].

use std::path::{Path, PathBuf};

use percore_engine::{sha256_hex, write_artifact};

/// Whether `s` looks like a SHA-256 in hex (and so is safe as a file name).
pub fn is_sha256(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// The components of one state directory.
#[derive(Debug, Clone)]
pub struct Content {
    components: PathBuf,
}

impl Content {
    /// Use (and create) `state/components`.
    pub fn new(state: &Path) -> std::io::Result<Self> {
        let components = state.join("components");
        std::fs::create_dir_all(&components)?;
        Ok(Self { components })
    }

    /// Where a component with this hash lives.
    pub fn component_path(&self, hash: &str) -> PathBuf {
        self.components.join(format!("{hash}.wasm"))
    }

    /// Store a component (a no-op when the same bytes are already there). Returns its hash.
    pub fn put_component(&self, bytes: &[u8]) -> std::io::Result<String> {
        let hash = sha256_hex(bytes);
        let path = self.component_path(&hash);
        if !path.exists() {
            write_artifact(&path, bytes)?;
        }
        Ok(hash)
    }

    /// The bytes of a stored component.
    pub fn component(&self, hash: &str) -> std::io::Result<Vec<u8>> {
        std::fs::read(self.component_path(hash))
    }
}
