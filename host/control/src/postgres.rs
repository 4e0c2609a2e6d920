//! The invocation log in PostgreSQL: one round trip per batch, the rows passed as arrays and
//! expanded with `UNNEST` by the server.

use postgres::{Client, NoTls, Statement};

use crate::Error;
use crate::meter::LogSink;
use crate::store::LogRow;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS invocations (
    request_id TEXT NOT NULL,
    deployment TEXT NOT NULL,
    start_unix_us BIGINT NOT NULL,
    duration_us BIGINT NOT NULL,
    status INTEGER NOT NULL,
    fault TEXT,
    cpu_us BIGINT NOT NULL,
    bytes_in BIGINT NOT NULL,
    bytes_out BIGINT NOT NULL,
    requests INTEGER NOT NULL,
    cold_starts INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS invocations_by_deployment ON invocations (deployment, start_unix_us);
ALTER TABLE invocations ADD COLUMN IF NOT EXISTS outbound_requests INTEGER NOT NULL DEFAULT 0;
ALTER TABLE invocations ADD COLUMN IF NOT EXISTS outbound_bytes_out BIGINT NOT NULL DEFAULT 0;
ALTER TABLE invocations ADD COLUMN IF NOT EXISTS outbound_bytes_in BIGINT NOT NULL DEFAULT 0;
ALTER TABLE invocations ADD COLUMN IF NOT EXISTS outbound_wait_us BIGINT NOT NULL DEFAULT 0;
";

const INSERT: &str = "INSERT INTO invocations (request_id, deployment, start_unix_us, \
    duration_us, status, fault, cpu_us, bytes_in, bytes_out, requests, cold_starts, \
    outbound_requests, outbound_bytes_out, outbound_bytes_in, outbound_wait_us) \
    SELECT * FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::int8[], $5::int4[], \
    $6::text[], $7::int8[], $8::int8[], $9::int8[], $10::int4[], $11::int4[], $12::int4[], \
    $13::int8[], $14::int8[], $15::int8[])";

/// A connection to the invocation log's PostgreSQL database.
pub struct Postgres {
    url: String,
    conn: Option<(Client, Statement)>,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Postgres")
            .field("server", &redact(&self.url))
            .finish()
    }
}

/// The connection string without its password.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let user = &url[scheme + 3..at];
            let user = user.split(':').next().unwrap_or("");
            format!("{}{user}@{}", &url[..scheme + 3], &url[at + 1..])
        }
        _ => url
            .split_whitespace()
            .filter(|kv| !kv.starts_with("password="))
            .collect::<Vec<_>>()
            .join(" "),
    }
}

/// Longest wait for a connection when the URL names none (`connect_timeout`).
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

fn open(url: &str) -> Result<(Client, Statement), Error> {
    let fail = |source| Error::Postgres {
        context: format!("PostgreSQL {}", redact(url)),
        source,
    };
    let mut config: postgres::Config = url.parse().map_err(fail)?;
    if config.get_connect_timeout().is_none() {
        // A server that does not answer must not hold the meter (and the deploys behind it).
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    let mut client = config.connect(NoTls).map_err(fail)?;
    client.batch_execute(SCHEMA).map_err(fail)?;
    let insert = client.prepare(INSERT).map_err(fail)?;
    Ok((client, insert))
}

impl Postgres {
    /// Connect, create the table if needed, prepare the insert. Fails at start, clearly, when
    /// the server cannot be reached.
    pub fn connect(url: &str) -> Result<Self, Error> {
        Ok(Self {
            url: url.to_owned(),
            conn: Some(open(url)?),
        })
    }
}

impl LogSink for Postgres {
    fn write(&mut self, rows: &[LogRow]) -> Result<(), Error> {
        if rows.is_empty() {
            return Ok(());
        }
        if self.conn.as_ref().is_none_or(|(c, _)| c.is_closed()) {
            self.conn = Some(open(&self.url)?);
        }
        let (client, insert) = self.conn.as_mut().expect("connected above");
        let request_id: Vec<&str> = rows.iter().map(|r| r.request_id.as_str()).collect();
        let deployment: Vec<&str> = rows.iter().map(|r| r.deployment.as_str()).collect();
        let start: Vec<i64> = rows.iter().map(|r| r.start_unix_us as i64).collect();
        let duration: Vec<i64> = rows.iter().map(|r| r.duration_us as i64).collect();
        let status: Vec<i32> = rows.iter().map(|r| i32::from(r.status)).collect();
        let fault: Vec<Option<&str>> = rows.iter().map(|r| r.fault).collect();
        let cpu: Vec<i64> = rows.iter().map(|r| r.cpu_us as i64).collect();
        let bytes_in: Vec<i64> = rows.iter().map(|r| r.bytes_in as i64).collect();
        let bytes_out: Vec<i64> = rows.iter().map(|r| r.bytes_out as i64).collect();
        let requests: Vec<i32> = rows.iter().map(|r| r.requests as i32).collect();
        let cold: Vec<i32> = rows.iter().map(|r| r.cold_starts as i32).collect();
        let out_requests: Vec<i32> = rows.iter().map(|r| r.outbound.requests as i32).collect();
        let out_bytes_out: Vec<i64> = rows.iter().map(|r| r.outbound.bytes_out as i64).collect();
        let out_bytes_in: Vec<i64> = rows.iter().map(|r| r.outbound.bytes_in as i64).collect();
        let out_wait: Vec<i64> = rows.iter().map(|r| r.outbound.wait_us as i64).collect();
        let result = client.execute(
            &*insert,
            &[
                &request_id,
                &deployment,
                &start,
                &duration,
                &status,
                &fault,
                &cpu,
                &bytes_in,
                &bytes_out,
                &requests,
                &cold,
                &out_requests,
                &out_bytes_out,
                &out_bytes_in,
                &out_wait,
            ],
        );
        match result {
            Ok(_) => Ok(()),
            Err(e) => {
                if client.is_closed() {
                    self.conn = None;
                }
                Err(Error::Postgres {
                    context: format!("PostgreSQL {}", redact(&self.url)),
                    source: e,
                })
            }
        }
    }

    fn describe(&self) -> String {
        format!("PostgreSQL {}", redact(&self.url))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_never_reach_logs() {
        assert_eq!(
            super::redact("postgres://u:secret@127.0.0.1:5432/db"),
            "postgres://u@127.0.0.1:5432/db"
        );
        assert_eq!(
            super::redact("host=127.0.0.1 user=u password=secret"),
            "host=127.0.0.1 user=u"
        );
    }
}
