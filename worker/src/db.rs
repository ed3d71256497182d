//! PostgreSQL plumbing: the connection pool, the bookkeeping schema, and the one place where a
//! PostgreSQL error becomes a [`WorkerError`] (SQLSTATE -> transient or permanent, or a database
//! outage: see [`crate::error::Outage`]).
//!
//! Every connection runs with `TimeZone=UTC` (DMS timestamps carry no zone and are UTC, so
//! `timestamptz` values never shift with the server's default) and `application_name`.
//!
//! Every wait on PostgreSQL is bounded ([`Waits`]): each session starts with `lock_timeout`,
//! `statement_timeout` and `idle_in_transaction_session_timeout` set, and TCP keepalives on
//! both sides (`sluice_common::postgres`); the table's merge lock has its own, longer limit
//! (`load/prepare.rs`). A lock wait that ends this way is [`WorkerError::LockTimeout`] (transient: the
//! load is retried); a statement cut by `statement_timeout` is SQLSTATE 57014 (transient); a
//! session ended for idling in a transaction is a lost connection (transient).
//!
//! Invariant of the worker's pool ([`worker_pool`]): once an outage has been seen
//! ([`Staleness::mark`]), no connection opened before it is lent again: a connection to a
//! writer demoted by a failover stays read-only forever, so it is dropped, and the next one is
//! opened afresh (with a fresh DNS answer).

use crate::error::{sqlstate_is_transient, sqlstate_outage, Outage, WorkerError};
use deadpool_postgres::Pool;
use sluice_common::config::redact_url;
use sluice_common::postgres::SessionLimits;
use sluice_common::warehouse::state;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a worker waits on PostgreSQL; `Duration::ZERO` means no limit.
///
/// The defaults leave room for a legitimate 1 GB file: its `COPY` is one statement that streams
/// the whole object (minutes at S3 and disk speeds, so an hour for `statement`), and a merge
/// waits for the merges of other files of the same table (up to ten minutes for
/// `merge_lock`). Waits that hold up others stay short: a pending `ALTER TABLE` queues every
/// reader of its table behind it, so `lock` gives up after 30 s and the load retries later;
/// a worker's own transaction is never idle longer than a network round trip or an S3
/// read, so one idle for a minute is stuck (a paused process, a lost client) and is ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Waits {
    /// The table's merge lock (transaction-scoped advisory lock): `--merge-lock-timeout`.
    pub merge_lock: Duration,
    /// Every other lock (`lock_timeout`): DDL, the ledger row of a file another session is
    /// loading, rows: `--lock-timeout`.
    pub lock: Duration,
    /// One statement (`statement_timeout`): `--statement-timeout`.
    pub statement: Duration,
    /// A session idle inside a transaction (`idle_in_transaction_session_timeout`):
    /// `--idle-in-transaction-timeout`.
    pub idle_in_transaction: Duration,
}

impl Default for Waits {
    fn default() -> Self {
        Waits {
            merge_lock: Duration::from_secs(600),
            lock: Duration::from_secs(30),
            statement: Duration::from_secs(3600),
            idle_in_transaction: Duration::from_secs(60),
        }
    }
}

impl Waits {
    /// The server settings every session starts with.
    pub fn session(&self) -> SessionLimits {
        SessionLimits {
            lock_timeout: Some(self.lock),
            statement_timeout: Some(self.statement),
            idle_in_transaction: Some(self.idle_in_transaction),
        }
    }
}

/// Builds the pool with the default [`Waits`]; connects lazily, with TLS as the URL's
/// `sslmode` says (see `sluice_common::postgres`).
pub fn pool(url: &str, size: usize, application_name: &str) -> Result<Pool, WorkerError> {
    pool_with(url, size, application_name, &Waits::default())
}

/// [`pool`] with the worker's configured waits on every session.
pub fn pool_with(
    url: &str,
    size: usize,
    application_name: &str,
    waits: &Waits,
) -> Result<Pool, WorkerError> {
    sluice_common::postgres::pool_with(url, size, application_name, &waits.session()).map_err(|e| {
        WorkerError::DatabaseUrl {
            url: redact_url(url),
            message: e.to_string(),
        }
    })
}

/// When the last database outage was seen: connections opened before it are stale.
#[derive(Debug)]
pub struct Staleness {
    base: Instant,
    /// Nanoseconds from `base` to the last mark, plus one; 0: never marked.
    mark: AtomicU64,
}

impl Default for Staleness {
    fn default() -> Self {
        Staleness {
            base: Instant::now(),
            mark: AtomicU64::new(0),
        }
    }
}

impl Staleness {
    /// An outage is seen now: every connection opened until now is stale.
    pub fn mark(&self) {
        let nanos = self.base.elapsed().as_nanos().min(u128::from(u64::MAX - 1)) as u64;
        self.mark.fetch_max(nanos + 1, Ordering::SeqCst);
    }

    /// Whether a connection opened at `created` was opened before the last outage.
    pub fn is_stale(&self, created: Instant) -> bool {
        match self.mark.load(Ordering::SeqCst) {
            0 => false,
            m => created <= self.base + std::time::Duration::from_nanos(m - 1),
        }
    }
}

/// The worker's pool: as [`pool`], and a connection opened before the last outage `stale`
/// marks is dropped instead of lent again (a `pre_recycle` hook; deadpool then opens another).
pub fn worker_pool(
    url: &str,
    size: usize,
    application_name: &str,
    waits: &Waits,
    stale: Arc<Staleness>,
) -> Result<Pool, WorkerError> {
    let bad = |message: String| WorkerError::DatabaseUrl {
        url: redact_url(url),
        message,
    };
    sluice_common::postgres::pool_builder(url, size, application_name, &waits.session())
        .map_err(|e| bad(e.to_string()))?
        .pre_recycle(deadpool_postgres::Hook::sync_fn(move |_, metrics| {
            if stale.is_stale(metrics.created) {
                Err(deadpool_postgres::HookError::message(
                    "connection opened before a database outage",
                ))
            } else {
                Ok(())
            }
        }))
        .build()
        .map_err(|e| bad(e.to_string()))
}

/// Creates the bookkeeping schema and ledger if missing. Safe when many workers start at once:
/// an advisory lock (one per state schema) serialises the DDL; when the schema is complete no
/// DDL runs at all, so a starting worker never waits behind the loads of running ones.
pub async fn bootstrap(pool: &Pool, state_schema: &str) -> Result<(), WorkerError> {
    let err = |message: String| WorkerError::Bootstrap {
        schema: state_schema.to_owned(),
        message,
    };
    let mut client = pool.get().await.map_err(|e| err(pool_error_text(&e)))?;
    let done: bool = client
        .query_one(state::BOOTSTRAP_DONE, &[&state_schema])
        .await
        .map_err(|e| err(error_text(&e)))?
        .get(0);
    if done {
        return Ok(());
    }
    let txn = client
        .transaction()
        .await
        .map_err(|e| err(error_text(&e)))?;
    txn.execute(
        "SELECT pg_advisory_xact_lock(hashtext('sluice.bootstrap.' || $1::text))",
        &[&state_schema],
    )
    .await
    .map_err(|e| err(error_text(&e)))?;
    txn.batch_execute(&state::bootstrap_sql(state_schema))
        .await
        .map_err(|e| err(error_text(&e)))?;
    txn.commit().await.map_err(|e| err(error_text(&e)))?;
    Ok(())
}

pub use sluice_common::postgres::error_text;

/// A pool error's text; connection errors never include the URL (deadpool does not add it).
pub fn pool_error_text(e: &deadpool_postgres::PoolError) -> String {
    match e {
        deadpool_postgres::PoolError::Backend(pg) => error_text(pg),
        other => other.to_string(),
    }
}

/// Whether PostgreSQL ended a lock wait: `lock_timeout` (55P03 `lock_not_available`).
fn is_lock_timeout(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE)
}

/// A PostgreSQL error from a statement that waits for `lock` (what the lock is, for the
/// message), started `waited` ago: a lock wait ended by `lock_timeout`, or by
/// `statement_timeout` (57014) while waiting, is [`WorkerError::LockTimeout`]; anything else is
/// [`db_error`]'s.
pub fn lock_error(
    e: tokio_postgres::Error,
    key: &str,
    table: &str,
    lock: &str,
    waited: Duration,
) -> WorkerError {
    let canceled = e.code() == Some(&tokio_postgres::error::SqlState::QUERY_CANCELED);
    if !is_lock_timeout(&e) && !canceled {
        return db_error(e, key, table, None);
    }
    WorkerError::LockTimeout {
        key: key.to_owned(),
        table: table.to_owned(),
        lock: lock.to_owned(),
        waited: Some(waited),
        sqlstate: e.code().map(|c| c.code().to_owned()).unwrap_or_default(),
        message: error_text(&e),
    }
}

/// The outage a PostgreSQL error shows, if any: by SQLSTATE for a server error; without one,
/// a connection that could not be opened, broke, timed out or was closed is an outage too,
/// while the client's own errors (a parameter or column it could not convert) are not.
pub fn outage_of(e: &tokio_postgres::Error) -> Option<Outage> {
    if let Some(db) = e.as_db_error() {
        return sqlstate_outage(db.code().code());
    }
    let text = e.to_string();
    if text.starts_with("authentication error") {
        return Some(Outage::Authentication);
    }
    let lost = e.is_closed()
        || [
            "error connecting to server",
            "error communicating with the server",
            "error performing TLS handshake",
            "timeout waiting for server",
        ]
        .iter()
        .any(|p| text.starts_with(p));
    lost.then_some(Outage::Unavailable)
}

/// A database outage as a [`WorkerError`], its message naming the SQLSTATE where there is one.
fn outage_error(
    outage: Outage,
    e: &tokio_postgres::Error,
    key: &str,
    table: &str,
    prefix: &str,
) -> WorkerError {
    WorkerError::DatabaseOutage {
        key: key.to_owned(),
        table: table.to_owned(),
        outage,
        sqlstate: e.as_db_error().map(|db| db.code().code().to_owned()),
        message: format!("{prefix}{}", error_text(e)),
    }
}

/// Failing to get a pooled connection: an outage when the database refused or dropped it, or
/// the pool could not open one in time; otherwise transient.
pub fn pool_error(e: deadpool_postgres::PoolError, key: &str, table: &str) -> WorkerError {
    use deadpool_postgres::PoolError;
    let outage = match &e {
        PoolError::Backend(pg) => {
            if let Some(outage) = outage_of(pg) {
                return outage_error(outage, pg, key, table, "cannot connect: ");
            }
            None
        }
        PoolError::Timeout(_) | PoolError::Closed | PoolError::PostCreateHook(_) => {
            Some(Outage::Unavailable)
        }
        PoolError::NoRuntimeSpecified => None,
    };
    let message = format!("cannot connect: {}", pool_error_text(&e));
    match outage {
        Some(outage) => WorkerError::DatabaseOutage {
            key: key.to_owned(),
            table: table.to_owned(),
            outage,
            sqlstate: None,
            message,
        },
        None => WorkerError::Database {
            key: key.to_owned(),
            table: table.to_owned(),
            message,
            sqlstate: None,
            record: None,
            line: None,
            column: None,
            value: None,
            transient: true,
        },
    }
}

/// Turns a PostgreSQL error into a [`WorkerError`]. `record_line` maps a `COPY` line (the record
/// number) to the file's physical line, when known. A lock wait ended by `lock_timeout` is
/// [`WorkerError::LockTimeout`] wherever it happens.
pub fn db_error(
    e: tokio_postgres::Error,
    key: &str,
    table: &str,
    record_line: Option<&dyn Fn(u64) -> Option<u64>>,
) -> WorkerError {
    if is_lock_timeout(&e) {
        return WorkerError::LockTimeout {
            key: key.to_owned(),
            table: table.to_owned(),
            lock: format!("a lock while loading into {table}"),
            waited: None,
            sqlstate: "55P03".to_owned(),
            message: error_text(&e),
        };
    }
    if let Some(outage) = outage_of(&e) {
        return outage_error(outage, &e, key, table, "");
    }
    let (sqlstate, transient, context) = match e.as_db_error() {
        Some(db) => {
            let code = db.code().code().to_owned();
            let context = db.where_().map(parse_copy_context).unwrap_or_default();
            (Some(code.clone()), sqlstate_is_transient(&code), context)
        }
        // No server error and no lost connection: the client's own failure. Try again.
        None => (None, true, CopyContext::default()),
    };
    let CopyContext {
        record,
        column,
        value,
    } = context;
    let line = record.and_then(|r| record_line.and_then(|f| f(r)));
    let mut message = error_text(&e);
    if let Some(r) = record {
        message = format!(
            "record {r}{}: {message}",
            line.map(|l| format!(" at line {l}")).unwrap_or_default()
        );
    }
    WorkerError::Database {
        key: key.to_owned(),
        table: table.to_owned(),
        message,
        sqlstate,
        record,
        line,
        column,
        value,
        transient,
    }
}

/// Where a `COPY` failed, from its error context.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CopyContext {
    /// The `COPY` line: the record number on the fast path, the line of the statement on the
    /// slow path.
    pub record: Option<u64>,
    pub column: Option<String>,
    /// The refused value, as PostgreSQL quotes it (it may cut long values).
    pub value: Option<String>,
}

/// Reads the line, column and value from a `COPY` error context such as
/// `COPY sluice_stage, line 3, column amount: "abc"`.
pub fn parse_copy_context(context: &str) -> CopyContext {
    // The context has one line per level; input functions (json) add theirs above COPY's.
    let Some(rest) = context.lines().find_map(|l| l.strip_prefix("COPY ")) else {
        return CopyContext::default();
    };
    let Some((_, after)) = rest.split_once(", line ") else {
        return CopyContext::default();
    };
    let digits: String = after.chars().take_while(|c| c.is_ascii_digit()).collect();
    let record = digits.parse().ok();
    let (column, value) = match after[digits.len()..].strip_prefix(", column ") {
        Some(c) => match c.split_once(": ") {
            Some((name, v)) => (
                Some(name.to_owned()),
                Some(
                    v.strip_prefix('"')
                        .and_then(|v| v.strip_suffix('"'))
                        .unwrap_or(v)
                        .to_owned(),
                ),
            ),
            None => (Some(c.to_owned()), None),
        },
        None => (None, None),
    };
    let ours = column.as_deref().is_some_and(|c| c.starts_with('_'));
    CopyContext {
        record,
        column: column.filter(|_| !ours),
        value: value.filter(|_| !ours),
    }
}

/// [`bootstrap`], retried while the database is unreachable (workers may start before it).
pub async fn bootstrap_with_retry(
    pool: &Pool,
    state_schema: &str,
    shutdown: &tokio_util::sync::CancellationToken,
) -> Result<(), WorkerError> {
    use sluice_common::retry::{retry, Attempt, Policy};
    let attempt = retry(
        "db_bootstrap",
        Policy::patient(std::time::Duration::from_secs(300)),
        || async {
            bootstrap(pool, state_schema).await.map_err(|e| {
                // Privilege problems will not fix themselves (see `WorkerError::is_transient`).
                if e.is_transient() {
                    Attempt::Transient(e)
                } else {
                    Attempt::Permanent(e)
                }
            })
        },
        |e, wait| tracing::warn!(error = %e, wait_ms = wait.as_millis() as u64, "database not ready, retrying"),
    );
    tokio::select! {
        r = attempt => r,
        _ = shutdown.cancelled() => Err(WorkerError::Bootstrap {
            schema: state_schema.to_owned(),
            message: "shut down before the database was reachable".to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_refused_connection_is_an_outage_to_wait_out() {
        // Nothing listens on port 1: the connection is refused.
        let e = tokio_postgres::connect(
            "host=127.0.0.1 port=1 user=u dbname=d connect_timeout=5",
            tokio_postgres::NoTls,
        )
        .await
        .err()
        .expect("nothing listens on port 1");
        assert_eq!(outage_of(&e), Some(Outage::Unavailable), "{e}");
        let load = db_error(e, "dms/s/t/LOAD00000001.csv", "s.t", None);
        assert_eq!(load.outage(), Some(Outage::Unavailable));
        assert_eq!(load.class(), "database_unavailable");
        assert!(load.retry_in_place());
        assert!(!load.to_file_error().permanent);

        let e = deadpool_postgres::PoolError::Timeout(deadpool_postgres::TimeoutType::Create);
        let load = pool_error(e, "k", "s.t");
        assert_eq!(load.outage(), Some(Outage::Unavailable), "{load}");
        assert!(load.to_string().contains("cannot connect"), "{load}");
    }

    #[test]
    fn connections_opened_before_an_outage_are_stale() {
        let s = Staleness::default();
        let before = Instant::now();
        assert!(!s.is_stale(before), "nothing is stale before an outage");
        s.mark();
        assert!(s.is_stale(before));
        std::thread::sleep(std::time::Duration::from_millis(2));
        let after = Instant::now();
        assert!(
            !s.is_stale(after),
            "a connection opened after the outage is lent"
        );
        s.mark();
        assert!(s.is_stale(after), "a later outage makes it stale too");
    }

    #[test]
    fn copy_context_gives_record_column_and_value() {
        assert_eq!(
            parse_copy_context("COPY sluice_stage, line 3, column amount: \"abc\""),
            CopyContext {
                record: Some(3),
                column: Some("amount".to_owned()),
                value: Some("abc".to_owned())
            }
        );
        assert_eq!(
            parse_copy_context("COPY sluice_stage, line 12"),
            CopyContext {
                record: Some(12),
                ..CopyContext::default()
            }
        );
        assert_eq!(
            parse_copy_context(
                "JSON data, line 1: {not...\nCOPY sluice_stage, line 5, column doc: \"{not json\""
            ),
            CopyContext {
                record: Some(5),
                column: Some("doc".to_owned()),
                value: Some("{not json".to_owned())
            }
        );
        assert_eq!(
            parse_copy_context("SQL statement \"...\""),
            CopyContext::default()
        );
        // our own bookkeeping columns are not the user's business
        assert_eq!(
            parse_copy_context("COPY sluice_stage, line 2, column _sluice_op: \"xx\""),
            CopyContext {
                record: Some(2),
                ..CopyContext::default()
            }
        );
    }
}
