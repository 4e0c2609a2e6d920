//! Durable state in SQLite: deployments (the switch point of every deploy: a row is committed
//! only after its component and artifact are on disk) and the invocation log.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::Error;

/// A route as the API and the database spell it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteDoc {
    /// Host header to match (any host when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Path prefix, matched on whole segments.
    pub path: String,
}

/// Per-deployment limits; absent values take the host's defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsDoc {
    /// Memory cap per instance, MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<usize>,
    /// CPU budget per request, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_ms: Option<u64>,
    /// Wall-clock deadline per request, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Largest response body, MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_response_mb: Option<usize>,
    /// Instances one core keeps at most.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_instances_per_core: Option<usize>,
    /// A trap writes a core dump when the guest's memories take at most this many MiB (absent:
    /// no core dumps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coredump_mb: Option<usize>,
    /// Longest wait for one outbound HTTP response, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbound_timeout_ms: Option<u64>,
    /// Outbound HTTP requests one incoming request may make.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_outbound_per_request: Option<u32>,
    /// Largest outbound HTTP response body, MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_outbound_response_mb: Option<usize>,
}

/// What a deployment is, apart from its component.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentDoc {
    /// Where it is reached.
    pub routes: Vec<RouteDoc>,
    /// Configuration values the guest reads.
    #[serde(default)]
    pub config: std::collections::BTreeMap<String, String>,
    /// Limits.
    #[serde(default)]
    pub limits: LimitsDoc,
    /// Origins the guest may send HTTP requests to (Spin's syntax; none when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_outbound_hosts: Vec<String>,
    /// Requests each new instance runs before its snapshot, as `METHOD PATH` (none when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warmup: Vec<String>,
    /// The kind of guest found at deploy (`edge`, `wasi-http@0.2`, `cgi`, `bare`); absent in
    /// rows written before kinds existed, which are all `edge`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Where the component came from when it was pulled from a registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oci: Option<OciSource>,
}

/// The registry artifact a deployment's component was pulled from. The component itself is kept
/// in the state directory, so a restart serves these bytes and pulls nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OciSource {
    /// The reference as the deploy gave it.
    pub reference: String,
    /// The manifest digest it resolved to.
    pub digest: String,
    /// The reference pinned to that digest.
    pub pinned: String,
}

/// One deployment row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// Unique name.
    pub name: String,
    /// Id carried by invocation records.
    pub id: u32,
    /// SHA-256 of the component, hex.
    pub component: String,
    /// The compiled artifact.
    pub artifact: PathBuf,
    /// Why instances cannot be reset in place (`None`: they can).
    pub not_resettable: Option<String>,
    /// Routes, config, limits.
    pub doc: DeploymentDoc,
    /// 1 for the first deploy, +1 per update.
    pub version: u64,
    /// Unix seconds.
    pub created: u64,
    /// Unix seconds.
    pub updated: u64,
}

/// One row of the invocation log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRow {
    /// `c{core}-{seq}`, as in the logs.
    pub request_id: String,
    /// Deployment name.
    pub deployment: String,
    /// µs since the Unix epoch.
    pub start_unix_us: u64,
    /// µs.
    pub duration_us: u64,
    /// HTTP status.
    pub status: u16,
    /// Guest fault kind.
    pub fault: Option<&'static str>,
    /// µs.
    pub cpu_us: u64,
    /// Request bytes.
    pub bytes_in: u64,
    /// Response bytes.
    pub bytes_out: u64,
    /// Requests the row stands for (more than 1 when a core aggregated under load).
    pub requests: u32,
    /// Of those, new instances.
    pub cold_starts: u32,
    /// The guest's outbound HTTP requests.
    pub outbound: percore_dataplane::OutboundUse,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS deployments (
    name TEXT PRIMARY KEY,
    id INTEGER NOT NULL UNIQUE,
    component TEXT NOT NULL,
    artifact TEXT NOT NULL,
    not_resettable TEXT,
    doc TEXT NOT NULL,
    version INTEGER NOT NULL,
    created INTEGER NOT NULL,
    updated INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS invocations (
    request_id TEXT NOT NULL,
    deployment TEXT NOT NULL,
    start_unix_us INTEGER NOT NULL,
    duration_us INTEGER NOT NULL,
    status INTEGER NOT NULL,
    fault TEXT,
    cpu_us INTEGER NOT NULL,
    bytes_in INTEGER NOT NULL,
    bytes_out INTEGER NOT NULL,
    requests INTEGER NOT NULL,
    cold_starts INTEGER NOT NULL,
    outbound_requests INTEGER NOT NULL DEFAULT 0,
    outbound_bytes_out INTEGER NOT NULL DEFAULT 0,
    outbound_bytes_in INTEGER NOT NULL DEFAULT 0,
    outbound_wait_us INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS invocations_by_deployment ON invocations (deployment, start_unix_us);
";

/// Columns added to `invocations` after its first release: added to an older database when
/// it is opened.
pub(crate) const ADDED_COLUMNS: [&str; 4] = [
    "outbound_requests",
    "outbound_bytes_out",
    "outbound_bytes_in",
    "outbound_wait_us",
];

/// Ids of API deployments start here; deployments from the configuration file use 0, 1, ...
pub const FIRST_ID: u32 = 1 << 20;

/// A connection to the state database.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    path: PathBuf,
    /// The file's device and inode when it was opened: a file removed or replaced under the
    /// running host is noticed (SQLite in WAL mode would go on writing to the unlinked one).
    identity: Option<(u64, u64)>,
}

/// The device and inode of a file, if it exists.
fn identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

fn db_error(path: &Path, source: rusqlite::Error) -> Error {
    Error::Database {
        context: path.display().to_string(),
        source,
    }
}

impl Store {
    /// Open (creating if needed) the database, check it is readable and writable.
    pub fn open(path: &Path) -> Result<Self, Error> {
        let conn = Connection::open(path).map_err(|e| db_error(path, e))?;
        let store = Self {
            conn,
            path: path.to_owned(),
            identity: identity(path),
        };
        let check = || -> rusqlite::Result<()> {
            store.conn.busy_timeout(std::time::Duration::from_secs(5))?;
            store
                .conn
                .pragma_update(None, "journal_mode", "WAL")
                .or_else(|e| match e {
                    // A read-only file reports itself below, with a clearer message.
                    rusqlite::Error::SqliteFailure(f, _)
                        if f.code == rusqlite::ErrorCode::ReadOnly =>
                    {
                        Ok(())
                    }
                    e => Err(e),
                })?;
            store.conn.pragma_update(None, "synchronous", "NORMAL")?;
            store.conn.execute_batch(SCHEMA)?;
            store.add_missing_columns()?;
            // Prove that the file takes writes now rather than at the first deploy.
            store
                .conn
                .execute_batch("BEGIN IMMEDIATE; PRAGMA user_version = 1; COMMIT;")?;
            Ok(())
        };
        check().map_err(|source| {
            let hint = match &source {
                rusqlite::Error::SqliteFailure(f, _)
                    if f.code == rusqlite::ErrorCode::NotADatabase =>
                {
                    " (the file is corrupt or not SQLite: move it away or restore a backup)"
                }
                rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ReadOnly => {
                    " (the file or its directory is read-only)"
                }
                _ => "",
            };
            Error::Database {
                context: format!("the state database {} cannot be used{hint}", path.display()),
                source,
            }
        })?;
        Ok(store)
    }

    /// If the database file was removed or replaced since it was opened, open the one now at
    /// its path (creating it if there is none) and say so with `true`.
    pub fn reopen_if_replaced(&mut self) -> Result<bool, Error> {
        if self.identity.is_some() && identity(&self.path) == self.identity {
            return Ok(false);
        }
        *self = Self::open(&self.path)?;
        Ok(true)
    }

    /// Where the database is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Write a deployment row as it is (id, version and times kept): what a database that was
    /// replaced under the running host gets back.
    pub fn restore_row(&mut self, row: &Stored) -> Result<(), Error> {
        let doc = serde_json::to_string(&row.doc).map_err(|e| Error::Internal(e.to_string()))?;
        self.conn
            .execute(
                "INSERT OR REPLACE INTO deployments \
                 (name, id, component, artifact, not_resettable, doc, version, created, updated) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    row.name,
                    row.id,
                    row.component,
                    row.artifact.to_string_lossy(),
                    row.not_resettable,
                    doc,
                    row.version,
                    row.created,
                    row.updated
                ],
            )
            .map_err(|e| db_error(&self.path, e))?;
        Ok(())
    }

    /// Every deployment, by name.
    pub fn deployments(&self) -> Result<Vec<Stored>, Error> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT name, id, component, artifact, not_resettable, doc, version, created, \
                 updated FROM deployments ORDER BY name",
            )
            .map_err(|e| db_error(&self.path, e))?;
        let rows = stmt
            .query_map([], |row| {
                let doc: String = row.get(5)?;
                Ok((
                    Stored {
                        name: row.get(0)?,
                        id: row.get(1)?,
                        component: row.get(2)?,
                        artifact: PathBuf::from(row.get::<_, String>(3)?),
                        not_resettable: row.get(4)?,
                        doc: DeploymentDoc {
                            routes: Vec::new(),
                            config: Default::default(),
                            limits: Default::default(),
                            allowed_outbound_hosts: Vec::new(),
                            warmup: Vec::new(),
                            kind: None,
                            oci: None,
                        },
                        version: row.get(6)?,
                        created: row.get(7)?,
                        updated: row.get(8)?,
                    },
                    doc,
                ))
            })
            .map_err(|e| db_error(&self.path, e))?;
        let mut out = Vec::new();
        for row in rows {
            let (mut stored, doc) = row.map_err(|e| db_error(&self.path, e))?;
            stored.doc = serde_json::from_str(&doc).map_err(|source| Error::Record {
                context: format!(
                    "{}: deployment `{}` has an unreadable record",
                    self.path.display(),
                    stored.name
                ),
                source,
            })?;
            out.push(stored);
        }
        Ok(out)
    }

    /// Insert or replace a deployment in one transaction: the moment a deploy becomes durable.
    /// Returns the row as stored (id and version assigned).
    pub fn put(
        &mut self,
        name: &str,
        component: &str,
        artifact: &Path,
        not_resettable: Option<&str>,
        doc: &DeploymentDoc,
        now: u64,
    ) -> Result<Stored, Error> {
        let path = self.path.clone();
        // IMMEDIATE: take the write lock up front (waiting up to the busy timeout for the other
        // writer, the invocation log), instead of failing when a read upgrades to a write.
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| db_error(&path, e))?;
        let existing: Option<(u32, u64, u64)> = tx
            .query_row(
                "SELECT id, version, created FROM deployments WHERE name = ?1",
                [name],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(|e| db_error(&path, e))?;
        let (id, version, created) = match existing {
            Some((id, version, created)) => (id, version + 1, created),
            None => {
                let max: Option<u32> = tx
                    .query_row("SELECT MAX(id) FROM deployments", [], |r| r.get(0))
                    .map_err(|e| db_error(&path, e))?;
                (max.map_or(FIRST_ID, |m| m + 1), 1, now)
            }
        };
        let doc_json = serde_json::to_string(doc).map_err(|e| Error::Internal(e.to_string()))?;
        tx.execute(
            "INSERT OR REPLACE INTO deployments \
             (name, id, component, artifact, not_resettable, doc, version, created, updated) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                name,
                id,
                component,
                artifact.to_string_lossy(),
                not_resettable,
                doc_json,
                version,
                created,
                now
            ],
        )
        .map_err(|e| db_error(&path, e))?;
        tx.commit().map_err(|e| db_error(&path, e))?;
        Ok(Stored {
            name: name.to_owned(),
            id,
            component: component.to_owned(),
            artifact: artifact.to_owned(),
            not_resettable: not_resettable.map(str::to_owned),
            doc: doc.clone(),
            version,
            created,
            updated: now,
        })
    }

    /// Delete a deployment; false if there was none.
    pub fn remove(&mut self, name: &str) -> Result<bool, Error> {
        let n = self
            .conn
            .execute("DELETE FROM deployments WHERE name = ?1", [name])
            .map_err(|e| db_error(&self.path, e))?;
        Ok(n > 0)
    }

    /// Append rows to the invocation log in one transaction.
    /// Add the columns an older database's `invocations` lacks (see [`ADDED_COLUMNS`]).
    fn add_missing_columns(&self) -> rusqlite::Result<()> {
        let mut stmt = self
            .conn
            .prepare("SELECT name FROM pragma_table_info('invocations')")?;
        let have: Vec<String> = stmt
            .query_map([], |row| row.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        for column in ADDED_COLUMNS {
            if !have.iter().any(|c| c == column) {
                self.conn.execute_batch(&format!(
                    "ALTER TABLE invocations ADD COLUMN {column} INTEGER NOT NULL DEFAULT 0"
                ))?;
            }
        }
        Ok(())
    }

    pub fn append_log(&mut self, rows: &[LogRow]) -> Result<(), Error> {
        if rows.is_empty() {
            return Ok(());
        }
        let path = self.path.clone();
        // IMMEDIATE: take the write lock up front (waiting up to the busy timeout for the other
        // writer, the invocation log), instead of failing when a read upgrades to a write.
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| db_error(&path, e))?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO invocations (request_id, deployment, start_unix_us, duration_us, \
                     status, fault, cpu_us, bytes_in, bytes_out, requests, cold_starts, \
                     outbound_requests, outbound_bytes_out, outbound_bytes_in, outbound_wait_us) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
                )
                .map_err(|e| db_error(&path, e))?;
            for r in rows {
                stmt.execute(params![
                    r.request_id,
                    r.deployment,
                    r.start_unix_us as i64,
                    r.duration_us as i64,
                    r.status,
                    r.fault,
                    r.cpu_us as i64,
                    r.bytes_in as i64,
                    r.bytes_out as i64,
                    r.requests,
                    r.cold_starts,
                    r.outbound.requests,
                    r.outbound.bytes_out as i64,
                    r.outbound.bytes_in as i64,
                    r.outbound.wait_us as i64
                ])
                .map_err(|e| db_error(&path, e))?;
            }
        }
        tx.commit().map_err(|e| db_error(&path, e))
    }
}

#[cfg(test)]
mod tests;
