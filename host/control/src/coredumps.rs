//! Core dumps of trapped guests, for the deployments that ask for them: written by a thread of
//! their own into `<state>/coredumps/<deployment>/`, the newest [`KEEP`] per deployment kept,
//! listed and served by the admin API. A dump is the wasm core dump format (tool conventions),
//! which `wasm-tools` and `wasmgdb` read.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde_json::{Value, json};

use crate::meter::{Metrics, lock};

/// Dumps kept per deployment; older ones are deleted as new ones come.
pub const KEEP: usize = 5;
/// Dumps waiting to be written; more are dropped (counted) rather than held in memory.
const QUEUE: usize = 4;
/// What a dump's file name ends with.
const SUFFIX: &str = ".coredump";

/// One dump on its way to disk.
#[derive(Debug)]
pub struct Pending {
    /// The deployment's name.
    pub deployment: String,
    /// The request, `c{core}-{seq}`.
    pub request: String,
    /// The dump.
    pub dump: Vec<u8>,
}

/// Where dumps go: the state directory's `coredumps/`.
#[derive(Debug, Clone)]
pub struct CoreDumps {
    dir: PathBuf,
}

impl CoreDumps {
    /// Dumps under `state/coredumps`.
    pub fn new(state: &Path) -> Self {
        Self {
            dir: state.join("coredumps"),
        }
    }

    /// Start the writer; dumps are handed to it with [`offer`].
    pub fn spawn(
        &self,
        metrics: Arc<Mutex<Metrics>>,
    ) -> std::io::Result<(SyncSender<Pending>, std::thread::JoinHandle<()>)> {
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
        let dumps = self.clone();
        let handle = std::thread::Builder::new()
            .name("percore-coredumps".into())
            .spawn(move || dumps.run(&rx, &metrics))?;
        Ok((tx, handle))
    }

    fn run(&self, rx: &Receiver<Pending>, metrics: &Mutex<Metrics>) {
        while let Ok(pending) = rx.recv() {
            match self.write(&pending) {
                Ok(path) => {
                    lock(metrics).coredumps_written += 1;
                    tracing::warn!(
                        deployment = %pending.deployment,
                        request = %pending.request,
                        "core dump of the trap written to {}",
                        path.display()
                    );
                }
                Err(e) => {
                    lock(metrics).coredumps_dropped += 1;
                    tracing::error!(
                        deployment = %pending.deployment,
                        request = %pending.request,
                        "cannot write a core dump: {e}"
                    );
                }
            }
        }
    }

    fn write(&self, pending: &Pending) -> std::io::Result<PathBuf> {
        if !percore_config::valid_name(&pending.deployment) {
            return Err(std::io::Error::other(format!(
                "{:?} is not a deployment name that can name a directory",
                pending.deployment
            )));
        }
        let unix_ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let dir = self.dir.join(&pending.deployment);
        let path = dir.join(format!("{unix_ms}-{}{SUFFIX}", pending.request));
        percore_engine::write_artifact(&path, &pending.dump)?;
        let mut files = self.files(&pending.deployment);
        while files.len() > KEEP {
            let (name, _) = files.remove(0);
            let _ = std::fs::remove_file(dir.join(name));
        }
        Ok(path)
    }

    /// A deployment's dumps, oldest first: (file name, bytes).
    fn files(&self, deployment: &str) -> Vec<(String, u64)> {
        let Ok(entries) = std::fs::read_dir(self.dir.join(deployment)) else {
            return Vec::new();
        };
        let mut files: Vec<(String, u64)> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let size = e.metadata().ok()?.len();
                (name.ends_with(SUFFIX) && !name.starts_with('.')).then_some((name, size))
            })
            .collect();
        // Names start with the time in milliseconds: sort by that number.
        files.sort_by_key(|(name, _)| {
            let ms: u128 = name
                .split('-')
                .next()
                .and_then(|t| t.parse().ok())
                .unwrap_or(0);
            (ms, name.clone())
        });
        files
    }

    /// `GET /v1/deployments/{name}/coredumps`: newest first.
    pub fn list(&self, deployment: &str) -> Value {
        let dumps: Vec<Value> = self
            .files(deployment)
            .into_iter()
            .rev()
            .map(|(file, bytes)| {
                let stem = file.trim_end_matches(SUFFIX);
                let (ms, request) = stem.split_once('-').unwrap_or((stem, ""));
                json!({
                    "file": file,
                    "bytes": bytes,
                    "unix_ms": ms.parse::<u64>().unwrap_or(0),
                    "request": request,
                })
            })
            .collect();
        json!({ "deployment": deployment, "keep": KEEP, "coredumps": dumps })
    }

    /// One dump's bytes; `None` for a name that is not one of the deployment's dumps.
    pub fn read(&self, deployment: &str, file: &str) -> Option<Vec<u8>> {
        let listed = self.files(deployment).iter().any(|(name, _)| name == file);
        listed
            .then(|| std::fs::read(self.dir.join(deployment).join(file)).ok())
            .flatten()
    }

    /// A removed deployment's dumps go with it.
    pub fn remove(&self, deployment: &str) {
        let _ = std::fs::remove_dir_all(self.dir.join(deployment));
    }
}

/// Hand a dump to the writer without waiting; dropped (counted) when the writer is behind.
pub fn offer(tx: &SyncSender<Pending>, pending: Pending, metrics: &Mutex<Metrics>) {
    match tx.try_send(pending) {
        Ok(()) => {}
        Err(TrySendError::Full(p) | TrySendError::Disconnected(p)) => {
            lock(metrics).coredumps_dropped += 1;
            tracing::warn!(
                deployment = %p.deployment,
                request = %p.request,
                "core dump dropped: the writer is behind"
            );
        }
    }
}
