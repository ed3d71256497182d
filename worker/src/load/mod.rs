//! One file, applied exactly once: the worker's transaction. This folder holds everything that
//! happens between a claimed message and `COMMIT`; it must not touch the queue or the manifest
//! (the receive loop decides what a load's outcome means for them).
//!
//! - [`transaction`]: the staged path, phase by phase; [`direct`]: the direct path;
//! - [`prepare`]: connections and each target's one-time preparation;
//! - [`object`]: the S3 GET and the Parquet spool; [`parse`]: the parser thread and `COPY` sink;
//! - [`rejects`]: the slow path of `reject_rows` and its limits;
//! - [`replace`]: a full-load generation's replacement.
//!
//! ```text
//!   ledger has (bucket, key, etag)?  -> already applied, stop
//!   target prepared? (system columns, tombstone table; once per table and process, own txn)
//!   GET object (If-Match: etag), streamed; a Parquet file is spooled whole to an unlinked
//!     temp file here, before BEGIN, so no transaction stays open while it downloads
//!   BEGIN
//!     INSERT ledger row ON CONFLICT DO NOTHING   -> no file_id: applied by someone else, ROLLBACK
//!     resolve target from the catalog            (names from the key are bound, never spliced)
//!     CREATE TEMP TABLE sluice_stage ... ON COMMIT DROP
//!     COPY sluice_stage FROM STDIN               <- blocking parser thread, bounded channel
//!     fill partial U images from earlier records (only if the file has any)
//!     lock the table's merges (advisory, transaction-scoped, at most --merge-lock-timeout)
//!     version-guarded merge (set-based; see sql.rs), prune old tombstones
//!     UPDATE ledger row with counts
//!   COMMIT                                      -> if the outcome is unknown, the ledger says
//! ```
//!
//! The direct path replaces the stage and the merge for a full-load file into a table with no
//! rows: `COPY` into the target itself (binary format where every column has one), then, under
//! the merge lock, the version guard against tombstones (`sql::direct_guard_sql`). Anything it
//! cannot take (a record that is not an insert, a value only PostgreSQL should read, a key
//! already present) rolls the transaction back and the file is loaded again by the staged path.
//!
//! Invariants: nothing of a file is visible unless all of it is (one transaction); the ledger
//! row commits with the data, so a replay finds it and does nothing; a `COPY` that is not
//! finished is aborted (dropping the sink), so abandoning a load at any point is safe; merges
//! into one table are serialised by its lock, taken after the `COPY` so that the slow part of
//! loads of one table still runs in parallel; an operation changes a row only if its version
//! is newer than the row's and its tombstone's, so files may be applied in any order.
//!
//! Every wait is bounded (`db::Waits`): the merge lock by `merge_lock_timeout`, other locks
//! by the session's `lock_timeout`, statements by `statement_timeout`; a wait that runs out
//! fails the attempt with a transient [`LoadError::LockTimeout`] naming the lock, and the
//! transaction rolls back. Only a CSV object is read from S3 while its transaction is open,
//! as the `COPY` streams it.

mod direct;
mod object;
mod parse;
mod prepare;
mod rejects;
mod replace;
mod transaction;

use crate::db::{error_text, pool_error_text};
use crate::error::LoadError;
use crate::target;
use deadpool_postgres::Pool;
pub use replace::{apply_replace, ReplaceOutcome};
use sluice_common::mapping::FileKind;
use sluice_common::message::FileMessage;
use sluice_common::rules::Rules;
use sluice_common::warehouse::state;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use std::time::SystemTime;
use transaction::load_once;

/// What a load needs, shared by all files a worker handles.
#[derive(Clone)]
pub struct LoadContext {
    pub pool: Pool,
    pub s3: aws_sdk_s3::Client,
    pub rules: Arc<Rules>,
    pub state_schema: String,
    pub worker_id: String,
    pub max_record_bytes: usize,
    /// Most bytes a compressed file may decompress to (see [`parse::Capped`]).
    pub max_decompressed_bytes: u64,
    /// Target tables (schema, name, soft-delete flag) this process has prepared for the version
    /// guard; a prepared table costs no catalog query before its load's transaction.
    pub prepared: Arc<Mutex<HashMap<PreparedTable, u32>>>,
    /// Target schemas files may load into; None: any the role can write.
    pub schemas: Option<Arc<Vec<String>>>,
    /// Longest wait for a table's merge lock; zero: no limit (`db::Waits::merge_lock`).
    pub merge_lock_timeout: Duration,
}

impl LoadContext {
    /// Refuses a target in a reserved schema (whatever `--schemas` says) or outside the allowed
    /// schemas, before any SQL names it.
    fn check_schema(&self, key: &str, schema: &str, table: &str) -> Result<(), LoadError> {
        target::refuse_reserved(key, schema, table, &self.state_schema)?;
        match &self.schemas {
            Some(allowed) if !allowed.iter().any(|s| s == schema) => {
                Err(LoadError::SchemaNotAllowed {
                    key: key.to_owned(),
                    schema: schema.to_owned(),
                    table: table.to_owned(),
                    allowed: allowed.join(", "),
                })
            }
            _ => Ok(()),
        }
    }
}

/// A target table (schema, name) and its soft-delete flag; the cache maps it to the oid it had
/// when this process prepared it.
pub type PreparedTable = (String, String, Option<String>);

/// How a load ended, when it did not fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadOutcome {
    /// This worker committed the file.
    Loaded(LoadStats),
    /// The ledger already had the file; nothing was applied.
    AlreadyApplied,
}

/// Figures of one committed load.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadStats {
    pub target: String,
    pub records: u64,
    pub bytes: u64,
    pub inserted: i64,
    pub updated: i64,
    pub deleted: i64,
    /// Operations not applied because the row (or its tombstone) held a newer version.
    pub superseded: i64,
    /// Partial `U` images (columns left unchanged).
    pub partial: u64,
    /// Records set aside in the rejects table.
    pub rejected: u64,
    /// Fields whose bytes the byte policy or the source encoding changed.
    pub repaired: u64,
    /// Download, parse and COPY run together, streamed.
    pub copy: Duration,
    pub merge: Duration,
    pub commit: Duration,
    /// Copied straight into the target (no stage, no merge): see `encode::Direct`.
    pub direct: bool,
}

impl LoadStats {
    /// How the file was applied, for logs: `direct` or `staged`.
    pub fn path(&self) -> &'static str {
        if self.direct {
            "direct"
        } else {
            "staged"
        }
    }

    pub fn merged(&self) -> i64 {
        self.inserted + self.updated + self.deleted
    }
}

/// Applies one file. Errors say whether retrying can help.
pub async fn load_file(ctx: &LoadContext, msg: &FileMessage) -> Result<LoadOutcome, LoadError> {
    // A record the direct path cannot take may show as soon as the layout (an empty file) or
    // in the middle of the COPY: either way nothing was applied.
    match load_once(ctx, msg, true).await {
        Ok(Attempt::Done(outcome)) => Ok(outcome),
        Err(e) if !matches!(e, LoadError::DirectUnfit { .. }) => Err(e),
        Ok(Attempt::Staged) | Err(_) => match load_once(ctx, msg, false).await? {
            Attempt::Done(outcome) => Ok(outcome),
            Attempt::Staged => unreachable!("the staged path always ends"),
        },
    }
}

/// How one attempt at a file ended.
enum Attempt {
    Done(LoadOutcome),
    /// The direct path did not fit (a record that is not an insert, a key already present):
    /// nothing was applied; load the file by the staged path.
    Staged,
}

/// The file's own time: the CDC file name's timestamp, else the object's LastModified. It is
/// the version of every row of a file without a timestamp column, and breaks version ties.
pub fn file_time(msg: &FileMessage) -> Result<SystemTime, LoadError> {
    if let FileKind::Cdc { timestamp_ms } = msg.file.kind {
        if let Ok(ms) = u64::try_from(timestamp_ms) {
            return Ok(SystemTime::UNIX_EPOCH + Duration::from_millis(ms));
        }
    }
    sluice_common::timefmt::parse(&msg.last_modified)
        .map(SystemTime::from)
        .ok_or_else(|| LoadError::Rules {
            key: msg.key.clone(),
            message: format!(
                "the message's last_modified {:?} is not an RFC 3339 time",
                msg.last_modified
            ),
        })
}

/// Whether the ledger holds the file, asked on a fresh connection.
pub async fn ledger_has(ctx: &LoadContext, msg: &FileMessage) -> Result<bool, String> {
    let client = ctx.pool.get().await.map_err(|e| pool_error_text(&e))?;
    let rows = client
        .query(
            &state::ledger_exists_sql(&ctx.state_schema),
            &[&msg.bucket, &msg.key, &msg.etag],
        )
        .await
        .map_err(|e| error_text(&e))?;
    Ok(!rows.is_empty())
}
