//! Shared by the CLI's test binaries.

use std::path::PathBuf;

pub mod origin;

/// A guest component built by `cargo build-guests`.
pub fn guest(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/guests")
        .join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run `cargo build-guests`",
        path.display()
    );
    path.to_string_lossy().into_owned()
}
