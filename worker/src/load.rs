//! One file, applied exactly once: the worker's transaction.
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

use crate::db::{self, db_error, error_text, pool_error_text};
use crate::encode::{encode, Chunk, Direct, EncodeSpec, Layout, Parsed, Segment, CHANNEL_CHUNKS};
use crate::error::LoadError;
use crate::sql;
use crate::target;
use deadpool_postgres::Pool;
use futures_util::SinkExt;
use sluice_common::mapping::{map_key, Compression, FileKind, Format};
use sluice_common::message::{FileMessage, ReplaceMessage};
use sluice_common::rules::{FullLoad, OnError, Rules, TableRules};
use std::collections::HashMap;
use std::io::{BufReader, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::SystemTime;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::io::SyncIoBridge;

/// What a load needs, shared by all files a worker handles.
#[derive(Clone)]
pub struct LoadContext {
    pub pool: Pool,
    pub s3: aws_sdk_s3::Client,
    pub rules: Arc<Rules>,
    pub state_schema: String,
    pub worker_id: String,
    pub max_record_bytes: usize,
    /// Most bytes a compressed file may decompress to (see [`Capped`]).
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

async fn load_once(
    ctx: &LoadContext,
    msg: &FileMessage,
    allow_direct: bool,
) -> Result<Attempt, LoadError> {
    let key = msg.key.as_str();
    let label = msg.source_table();
    let rules = ctx.rules.for_table(&label);
    let (schema, table) = rules
        .target
        .clone()
        .unwrap_or_else(|| (msg.schema.clone(), msg.table.clone()));
    let target_label = format!("{schema}.{table}");
    ctx.check_schema(key, &schema, &table)?;
    let pg = |e: tokio_postgres::Error| db_error(e, key, &target_label, None);

    let mut client = connect(ctx, key, &target_label).await?;
    let ledger_args: [&(dyn tokio_postgres::types::ToSql + Sync); 3] =
        [&msg.bucket, &msg.key, &msg.etag];
    if !client
        .query(&sql::ledger_exists_sql(&ctx.state_schema), &ledger_args)
        .await
        .map_err(pg)?
        .is_empty()
    {
        return Ok(Attempt::Done(LoadOutcome::AlreadyApplied));
    }

    let file_time = file_time(msg)?;
    let soft = rules.soft_delete.as_deref();
    let prepared_oid = prepared_target(ctx, &mut client, &schema, &table, soft, key).await?;

    let (format, compression) = map_key("", key)
        .map(|f| (f.format, f.compression))
        .unwrap_or((Format::Csv, Compression::None));
    let (body, spooled_again) = open_body(ctx, msg, format).await?;

    let txn = client.transaction().await.map_err(pg)?;
    let claim_started = Instant::now();
    let claimed = txn
        .query(
            &sql::ledger_claim_sql(&ctx.state_schema),
            &[
                &msg.bucket,
                &msg.key,
                &msg.etag,
                &target_label,
                &ctx.worker_id,
                &file_time,
            ],
        )
        .await
        .map_err(|e| {
            let lock = format!("the ledger row of {key} (another session is loading the file)");
            db::lock_error(e, key, &target_label, &lock, claim_started.elapsed())
        })?;
    let Some(file_id) = claimed.first().map(|r| r.get::<_, i64>(0)) else {
        return Ok(Attempt::Done(LoadOutcome::AlreadyApplied));
    };
    let target = target::resolve(&txn, &schema, &table, soft, key).await?;
    // The table was dropped and made again (a new oid, so a new tombstone table), or its system
    // columns dropped, since this process prepared it: prepare again on the retry.
    if !target.is_prepared(soft) || target.oid != prepared_oid {
        ctx.prepared
            .lock()
            .expect("prepared-table cache lock")
            .remove(&(schema.clone(), table.clone(), rules.soft_delete.clone()));
        return Err(LoadError::Database {
            key: key.to_owned(),
            table: target.label(),
            message: "the table changed while the file was being prepared; retrying".to_owned(),
            sqlstate: None,
            record: None,
            line: None,
            column: None,
            value: None,
            transient: true,
        });
    }

    // Parser thread -> bounded channel -> COPY sink.
    let rejects = rules.on_error == OnError::RejectRows;
    let started = Instant::now();
    // The direct path: a full-load file into a table with no rows needs no stage and no merge.
    let full_load = matches!(
        map_key("", key).map(|f| f.kind),
        Ok(FileKind::FullLoad { .. })
    );
    let direct = if allow_direct && full_load && !rejects {
        let empty: bool = txn
            .query_one(&sql::target_is_empty_sql(&target), &[])
            .await
            .map_err(pg)?
            .get(0);
        let t = time::OffsetDateTime::from(file_time);
        let text = sluice_common::timefmt::format(t);
        empty.then(|| Direct {
            tail: format!(
                "\t{text}\t{file_id}{}",
                if soft.is_some() { "\tf" } else { "" }
            ),
            file_time: text,
            file_time_micros: (t.unix_timestamp_nanos() / 1000) as i64,
            file_id,
            soft: soft.is_some(),
        })
    } else {
        None
    };
    let source = Source {
        format,
        compression,
    };
    let mut run = start_parse(
        ctx,
        msg,
        body,
        source,
        &target,
        &rules,
        false,
        direct.clone(),
    );
    let layout = run.layout(msg, compression).await?;
    if direct.is_some() {
        return direct_load(ctx, msg, txn, run, &target, &layout, file_id, soft, started).await;
    }
    txn.batch_execute(&sql::create_stage_sql(&target, &layout.columns, rejects))
        .await
        .map_err(pg)?;
    if rejects {
        txn.execute(
            &sql::clear_rejects_sql(&ctx.state_schema),
            &[&msg.bucket, &msg.key, &msg.etag],
        )
        .await
        .map_err(pg)?;
        txn.batch_execute("SAVEPOINT sluice_copy")
            .await
            .map_err(pg)?;
    }
    let copy_sql = sql::copy_stage_sql(&target, &layout.columns, rejects);
    let (parsed, refused) = match copy_fast(&txn, &copy_sql, &mut run).await {
        Err(e) => return Err(pg(e)),
        Ok(copy_result) => {
            let parsed = run.finish(msg, compression).await;
            let lines = parsed.as_ref().map(|p| p.lines.clone()).unwrap_or_default();
            let line_of = move |r: u64| lines.line_of(r);
            // A parse error wins over anything PostgreSQL says after it: the sink was dropped
            // unfinished, which aborts the COPY, and the transaction rolls back.
            let parsed = parsed?;
            match copy_result {
                Ok(()) => (parsed, 0),
                Err(e) if rejects && is_data_error(&e) => {
                    // The slow path: PostgreSQL refused a value. Read the file again in
                    // segments, and set aside exactly the records it refuses.
                    txn.batch_execute("ROLLBACK TO SAVEPOINT sluice_copy")
                        .await
                        .map_err(pg)?;
                    let body = match spooled_again {
                        Some(file) => Body::Spooled(file),
                        None => Body::Stream(Box::new(get_object(&ctx.s3, msg).await?)),
                    };
                    let mut run = start_parse(ctx, msg, body, source, &target, &rules, true, None);
                    run.layout(msg, compression).await?;
                    let mut refused = 0;
                    let mut failure = None;
                    while let Some(chunk) = run.rx.recv().await {
                        if let Chunk::Segment(seg) = chunk {
                            match copy_segment(ctx, &txn, msg, &target, &copy_sql, &seg).await {
                                Ok(n) => refused += n,
                                Err(e) => {
                                    failure = Some(e);
                                    break;
                                }
                            }
                        }
                    }
                    let parsed = run.finish(msg, compression).await?;
                    if let Some(e) = failure {
                        return Err(e);
                    }
                    (parsed, refused)
                }
                Err(e) => {
                    return Err(db_error(e, key, &target.label(), Some(&line_of)));
                }
            }
        }
    };
    let rejected = parsed.rejected + refused;
    if rejects {
        if parsed.rejected > 0 {
            txn.execute(
                &sql::save_staged_rejects_sql(&ctx.state_schema),
                &[&msg.bucket, &msg.key, &msg.etag, &target.label()],
            )
            .await
            .map_err(pg)?;
        }
        check_reject_limits(&rules, key, rejected, parsed.records)?;
    }
    let copy = started.elapsed();

    let started = Instant::now();
    let merge_err = |e: tokio_postgres::Error| db_error(e, key, &target.label(), None);
    if parsed.partial > 0 {
        txn.batch_execute(&sql::resolve_partial_sql(&target, &layout.columns))
            .await
            .map_err(merge_err)?;
    }
    let deletes = sql::Deletes::for_table(&target, soft, &ctx.state_schema);
    lock_merges(&txn, &target, key, ctx.merge_lock_timeout).await?;
    let merge_sql = sql::merge_sql(&sql::MergeSpec {
        target: &target,
        file_columns: &layout.columns,
        deletes: deletes.clone(),
        partial: parsed.partial > 0,
    });
    let row = txn
        .query_one(&merge_sql, &[&file_time, &file_id])
        .await
        .map_err(merge_err)?;
    let (inserted, updated, deleted, superseded): (i64, i64, i64, i64) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    let newest: Option<SystemTime> = row.get(4);
    if let (sql::Deletes::Hard { tombstones }, Some(newest)) = (&deletes, newest) {
        let horizon =
            newest - Duration::from_secs(u64::from(rules.tombstone_retention_hours) * 3600);
        txn.execute(&sql::prune_tombstones_sql(tombstones), &[&horizon])
            .await
            .map_err(merge_err)?;
    }
    let merge = started.elapsed();
    let stats = LoadStats {
        target: target.label(),
        records: parsed.records,
        bytes: parsed.bytes,
        inserted,
        updated,
        deleted,
        superseded,
        partial: parsed.partial,
        rejected,
        repaired: parsed.repaired,
        copy,
        merge,
        commit: Duration::ZERO,
        direct: false,
    };
    commit(ctx, msg, txn, file_id, stats).await
}

/// The rest of a load by the direct path: `COPY` into the target, then, under the merge lock,
/// the version guard against tombstones, the ledger's counts, and the commit. A key that is
/// already there (a duplicate in the file, a row committed meanwhile) or a record that is not
/// an insert ends it with [`Attempt::Staged`], and the transaction rolls back.
#[allow(clippy::too_many_arguments)]
async fn direct_load(
    ctx: &LoadContext,
    msg: &FileMessage,
    txn: deadpool_postgres::Transaction<'_>,
    mut run: ParseRun,
    target: &sql::TargetTable,
    layout: &Layout,
    file_id: i64,
    soft: Option<&str>,
    started: Instant,
) -> Result<Attempt, LoadError> {
    let key = msg.key.as_str();
    let pg = |e: tokio_postgres::Error| db_error(e, key, &target.label(), None);
    let compression = map_key("", key)
        .map(|f| f.compression)
        .unwrap_or(Compression::None);
    let copy_sql = sql::direct_copy_sql(target, &layout.columns, soft, layout.binary.is_some());
    let copy_result = copy_fast(&txn, &copy_sql, &mut run).await.map_err(pg)?;
    let parsed = run.finish(msg, compression).await;
    let lines = parsed.as_ref().map(|p| p.lines.clone()).unwrap_or_default();
    let parsed = match parsed {
        Err(LoadError::DirectUnfit { .. }) => return Ok(Attempt::Staged),
        other => other?,
    };
    if let Err(e) = copy_result {
        if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) {
            return Ok(Attempt::Staged);
        }
        let line_of = move |r: u64| lines.line_of(r);
        return Err(db_error(e, key, &target.label(), Some(&line_of)));
    }
    let copy = started.elapsed();

    let started = Instant::now();
    lock_merges(&txn, target, key, ctx.merge_lock_timeout).await?;
    let superseded = match sql::Deletes::for_table(target, soft, &ctx.state_schema) {
        sql::Deletes::Hard { tombstones } => {
            // Usually there are none: then nothing to compare, and no scan of the new rows.
            let any: bool = txn
                .query_one(&format!("SELECT EXISTS (SELECT 1 FROM {tombstones})"), &[])
                .await
                .map_err(pg)?
                .get(0);
            if any {
                let row = txn
                    .query_one(&sql::direct_guard_sql(target, &tombstones), &[&file_id])
                    .await
                    .map_err(pg)?;
                row.get::<_, i64>(0)
            } else {
                0
            }
        }
        sql::Deletes::Soft { .. } => 0,
    };
    let inserted = parsed.records as i64 - superseded;
    let merge = started.elapsed();
    let stats = LoadStats {
        target: target.label(),
        records: parsed.records,
        bytes: parsed.bytes,
        inserted,
        superseded,
        repaired: parsed.repaired,
        copy,
        merge,
        direct: true,
        ..LoadStats::default()
    };
    commit(ctx, msg, txn, file_id, stats).await
}

/// Records the load's counts on its ledger row, then commits. When the answer to `COMMIT` is
/// lost (the connection broke), the ledger says whether it took effect.
async fn commit(
    ctx: &LoadContext,
    msg: &FileMessage,
    txn: deadpool_postgres::Transaction<'_>,
    file_id: i64,
    stats: LoadStats,
) -> Result<Attempt, LoadError> {
    let table = stats.target.clone();
    txn.execute(
        &sql::ledger_counts_sql(&ctx.state_schema),
        &[
            &file_id,
            &(stats.records as i64),
            &stats.inserted,
            &stats.updated,
            &stats.deleted,
            &stats.superseded,
        ],
    )
    .await
    .map_err(|e| db_error(e, &msg.key, &table, None))?;
    let started = Instant::now();
    let result = txn.commit().await;
    let done = |stats: LoadStats| {
        Ok(Attempt::Done(LoadOutcome::Loaded(LoadStats {
            commit: started.elapsed(),
            ..stats
        })))
    };
    match result {
        Ok(()) => done(stats),
        Err(e) if e.as_db_error().is_none() && matches!(ledger_has(ctx, msg).await, Ok(true)) => {
            done(stats)
        }
        Err(e) => Err(db_error(e, &msg.key, &table, None)),
    }
}

/// The file's own time: the CDC file name's timestamp, else the object's LastModified. It is
/// the version of every row of a file without a timestamp column, and breaks version ties.
pub fn file_time(msg: &FileMessage) -> Result<SystemTime, LoadError> {
    if let Ok(f) = map_key("", &msg.key) {
        if let FileKind::Cdc { timestamp_ms } = f.kind {
            if let Ok(ms) = u64::try_from(timestamp_ms) {
                return Ok(SystemTime::UNIX_EPOCH + Duration::from_millis(ms));
            }
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

/// A pooled connection; failing to get one is transient, an outage when the database refused
/// or dropped it (it may be restarting, read-only or refusing the credentials).
async fn connect(
    ctx: &LoadContext,
    key: &str,
    table: &str,
) -> Result<deadpool_postgres::Object, LoadError> {
    ctx.pool
        .get()
        .await
        .map_err(|e| crate::db::pool_error(e, key, table))
}

/// Makes sure this process has prepared a target for the version guard; returns the oid it had
/// then. A prepared target costs no query here.
async fn prepared_target(
    ctx: &LoadContext,
    client: &mut deadpool_postgres::Object,
    schema: &str,
    table: &str,
    soft: Option<&str>,
    key: &str,
) -> Result<u32, LoadError> {
    let cache_key = (schema.to_owned(), table.to_owned(), soft.map(str::to_owned));
    let known = ctx
        .prepared
        .lock()
        .expect("prepared-table cache lock")
        .get(&cache_key)
        .copied();
    let oid = match known {
        Some(oid) => oid,
        None => {
            let target = target::resolve(&*client, schema, table, soft, key).await?;
            prepare(ctx, client, &target, soft, key).await?;
            ctx.prepared
                .lock()
                .expect("prepared-table cache lock")
                .insert(cache_key, target.oid);
            target.oid
        }
    };
    Ok(oid)
}

/// How a replacement message ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplaceOutcome {
    /// This worker removed (or flagged) the rows the generation did not contain.
    Replaced { rows_removed: i64 },
    /// The generation's replacement ran before.
    AlreadyDone,
    /// The ledger does not hold every file of the generation yet; nothing was done.
    Incomplete { found: i64, expected: u64 },
    /// The table's rules say `full_load = "merge"`: full loads never remove rows.
    Merge,
}

/// Ends a full-load generation: removes the table's rows that the generation did not contain
/// and that no newer change wrote, in one transaction under the table's merge lock, once per
/// generation (recorded in `<state>.generations`). Readers see the table before or after,
/// never in between.
pub async fn apply_replace(
    ctx: &LoadContext,
    msg: &ReplaceMessage,
) -> Result<ReplaceOutcome, LoadError> {
    let key = msg.head_key.as_str();
    let rules = ctx.rules.for_table(&msg.source_table());
    if rules.full_load == FullLoad::Merge {
        return Ok(ReplaceOutcome::Merge);
    }
    let (schema, table) = rules
        .target
        .clone()
        .unwrap_or_else(|| (msg.schema.clone(), msg.table.clone()));
    let target_label = format!("{schema}.{table}");
    ctx.check_schema(key, &schema, &table)?;
    let pg = |e: tokio_postgres::Error| db_error(e, key, &target_label, None);
    let start: SystemTime = sluice_common::timefmt::parse(&msg.start)
        .map(SystemTime::from)
        .ok_or_else(|| LoadError::Rules {
            key: key.to_owned(),
            message: format!("generation start {:?} is not an RFC 3339 time", msg.start),
        })?;
    let mut client = connect(ctx, key, &target_label).await?;
    let soft = rules.soft_delete.as_deref();
    prepared_target(ctx, &mut client, &schema, &table, soft, key).await?;
    let keys = client
        .query(
            &sql::generation_files_sql(&ctx.state_schema),
            &[&msg.bucket, &msg.folder, &start],
        )
        .await
        .map_err(pg)?;
    let found = sql::count_full_loads(keys.iter().map(|r| r.get::<_, &str>(0)));
    if found < msg.files as i64 {
        return Ok(ReplaceOutcome::Incomplete {
            found,
            expected: msg.files,
        });
    }
    let txn = client.transaction().await.map_err(pg)?;
    let target = target::resolve(&txn, &schema, &table, soft, key).await?;
    lock_merges(&txn, &target, key, ctx.merge_lock_timeout).await?;
    let claimed = txn
        .query(
            &sql::generation_claim_sql(&ctx.state_schema),
            &[
                &target.label(),
                &msg.generation,
                &start,
                &(msg.files as i64),
                &ctx.worker_id,
            ],
        )
        .await
        .map_err(pg)?;
    if claimed.is_empty() {
        return Ok(ReplaceOutcome::AlreadyDone);
    }
    let deletes = sql::Deletes::for_table(&target, soft, &ctx.state_schema);
    let rows_removed: i64 = txn
        .query_one(&sql::replace_sql(&target, &deletes), &[&start])
        .await
        .map_err(pg)?
        .get(0);
    txn.execute(
        &sql::generation_done_sql(&ctx.state_schema),
        &[&target.label(), &msg.generation, &rows_removed],
    )
    .await
    .map_err(pg)?;
    txn.commit().await.map_err(pg)?;
    Ok(ReplaceOutcome::Replaced { rows_removed })
}

/// Adds the system columns, the soft-delete flag or the tombstone table to a target, under
/// its merge lock, in a transaction of its own. Idempotent. Its DDL waits for the table's
/// exclusive lock at most the session's `lock_timeout`: readers queue behind a waiting
/// `ALTER TABLE`, so it gives up early ([`LoadError::LockTimeout`]) and the load retries.
async fn prepare(
    ctx: &LoadContext,
    client: &mut deadpool_postgres::Object,
    target: &sql::TargetTable,
    soft: Option<&str>,
    key: &str,
) -> Result<(), LoadError> {
    let state_schema = ctx.state_schema.as_str();
    let err = |e: tokio_postgres::Error| {
        let mut e = db_error(e, key, &target.label(), None);
        if let LoadError::Database { message, .. } = &mut e {
            message.push_str(&format!(
                " (while adding sluice's system columns to {}: grant the worker's role ownership \
                 of the table, or add them as the README shows)",
                target.label()
            ));
        }
        e
    };
    let txn = client.transaction().await.map_err(err)?;
    lock_merges(&txn, target, key, ctx.merge_lock_timeout).await?;
    let current = target::resolve(&txn, &target.schema, &target.name, soft, key).await?;
    let started = Instant::now();
    txn.batch_execute(&sql::prepare_sql(&current, soft, state_schema))
        .await
        .map_err(|e| {
            if e.code() == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE) {
                let lock = format!(
                    "the lock on {} to add sluice's system columns or its tombstone table",
                    target.label()
                );
                db::lock_error(e, key, &target.label(), &lock, started.elapsed())
            } else {
                err(e)
            }
        })?;
    txn.commit().await.map_err(err)
}

/// Takes the table's merge lock for the rest of the transaction, waiting at most `timeout`
/// (zero: no limit); a wait that runs out is [`LoadError::LockTimeout`], naming the lock.
async fn lock_merges(
    txn: &deadpool_postgres::Transaction<'_>,
    target: &sql::TargetTable,
    key: &str,
    timeout: Duration,
) -> Result<(), LoadError> {
    let started = Instant::now();
    txn.batch_execute(&sql::merge_lock_sql(target, timeout))
        .await
        .map_err(|e| {
            let lock = format!(
                "the merge lock of {} (advisory lock {})",
                target.label(),
                target.merge_lock()
            );
            db::lock_error(e, key, &target.label(), &lock, started.elapsed())
        })
}

/// Whether the ledger holds the file, asked on a fresh connection.
pub async fn ledger_has(ctx: &LoadContext, msg: &FileMessage) -> Result<bool, String> {
    let client = ctx.pool.get().await.map_err(|e| pool_error_text(&e))?;
    let rows = client
        .query(
            &sql::ledger_exists_sql(&ctx.state_schema),
            &[&msg.bucket, &msg.key, &msg.etag],
        )
        .await
        .map_err(|e| error_text(&e))?;
    Ok(!rows.is_empty())
}

/// A running parse: the parser thread and the channel it fills.
struct ParseRun {
    rx: mpsc::Receiver<Chunk>,
    parser: tokio::task::JoinHandle<Result<Parsed, LoadError>>,
    source_failed: Arc<AtomicBool>,
}

/// What an object's bytes are: the key's format and compression.
#[derive(Debug, Clone, Copy)]
struct Source {
    format: Format,
    compression: Compression,
}

/// An object's bytes, as the parser gets them.
enum Body {
    /// A CSV object, streamed from S3 while the `COPY` runs.
    Stream(Box<dyn tokio::io::AsyncRead + Send + Unpin>),
    /// A Parquet object, already downloaded ([`spool`]).
    Spooled(std::fs::File),
}

/// An object's bytes before its transaction begins: a CSV object's stream, or a Parquet
/// object downloaded whole ([`spool`]), with a second handle on the file for the slow path,
/// which reads it again.
async fn open_body(
    ctx: &LoadContext,
    msg: &FileMessage,
    format: Format,
) -> Result<(Body, Option<std::fs::File>), LoadError> {
    let body = get_object(&ctx.s3, msg).await?;
    if format == Format::Csv {
        return Ok((Body::Stream(Box::new(body)), None));
    }
    let file = spool(body, msg).await?;
    let again = file.try_clone().map_err(|e| LoadError::Spool {
        bucket: msg.bucket.clone(),
        key: msg.key.clone(),
        message: e.to_string(),
    })?;
    Ok((Body::Spooled(file), Some(again)))
}

/// Downloads a Parquet object's `body` whole to a temporary file, before its transaction
/// begins. Memory stays bounded: the body is copied through a 64 KiB buffer. The file is
/// unlinked as soon as it is created, so it disappears when its last handle closes, whatever
/// happens (an error, a panic, the process killed).
async fn spool(
    body: impl tokio::io::AsyncRead + Send + Unpin + 'static,
    msg: &FileMessage,
) -> Result<std::fs::File, LoadError> {
    let (bucket, key) = (msg.bucket.clone(), msg.key.clone());
    let spooled = tokio::task::spawn_blocking(move || {
        let spool_err = |e: std::io::Error| LoadError::Spool {
            bucket: bucket.clone(),
            key: key.clone(),
            message: e.to_string(),
        };
        let mut raw = SyncIoBridge::new(body);
        let mut file = unlinked_temp_file().map_err(spool_err)?;
        let mut copy_buf = vec![0u8; 1 << 16];
        loop {
            let n = match raw.read(&mut copy_buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(LoadError::S3 {
                        bucket: bucket.clone(),
                        key: key.clone(),
                        message: e.to_string(),
                        transient: true,
                    })
                }
            };
            std::io::Write::write_all(&mut file, &copy_buf[..n]).map_err(spool_err)?;
        }
        Ok(file)
    })
    .await;
    spooled.unwrap_or_else(|e| {
        Err(LoadError::Spool {
            bucket: msg.bucket.clone(),
            key: msg.key.clone(),
            message: format!("spooling thread failed: {e}"),
        })
    })
}

/// Starts parsing an object's body on a blocking thread.
#[allow(clippy::too_many_arguments)]
fn start_parse(
    ctx: &LoadContext,
    msg: &FileMessage,
    body: Body,
    source: Source,
    target: &sql::TargetTable,
    rules: &TableRules,
    segmented: bool,
    direct: Option<Direct>,
) -> ParseRun {
    let (tx, rx) = mpsc::channel::<Chunk>(CHANNEL_CHUNKS);
    let source_failed = Arc::new(AtomicBool::new(false));
    let target = target.clone();
    let rules = match source.format {
        Format::Csv => rules.clone(),
        Format::Parquet => crate::read::parquet::csv_rules(rules),
    };
    let (bucket, key) = (msg.bucket.clone(), msg.key.clone());
    let max_record_bytes = ctx.max_record_bytes;
    let max_decompressed = ctx.max_decompressed_bytes;
    let failed = source_failed.clone();
    let parser = tokio::task::spawn_blocking(move || {
        let spec = EncodeSpec {
            key: &key,
            target: &target,
            rules: &rules,
            max_record_bytes,
            segmented,
            direct: direct.as_ref(),
        };
        let body = match body {
            Body::Spooled(file) => return encode_parquet(file, &bucket, &spec, &tx),
            Body::Stream(body) => body,
        };
        let raw = Tracked {
            inner: SyncIoBridge::new(body),
            failed,
        };
        let over = Arc::new(AtomicBool::new(false));
        let input: Box<dyn Read> = match source.compression {
            Compression::Gzip => Box::new(Capped {
                inner: flate2::read::MultiGzDecoder::new(BufReader::with_capacity(1 << 16, raw)),
                left: max_decompressed,
                over: over.clone(),
            }),
            Compression::None => Box::new(raw),
        };
        let parsed = encode(BufReader::with_capacity(1 << 20, input), &spec, &tx);
        if over.load(Ordering::SeqCst) {
            return Err(LoadError::DecompressedTooLarge {
                key,
                limit: max_decompressed,
            });
        }
        parsed
    });
    ParseRun {
        rx,
        parser,
        source_failed,
    }
}

/// Parses a Parquet object spooled to `file` ([`spool`]): runs the encoder over the file as
/// CSV ([`crate::read::parquet::ParquetCsv`]; `spec.rules` are already
/// [`crate::read::parquet::csv_rules`]), row group by row group, so memory stays bounded. A
/// zero-byte object is an empty file, as for CSV.
fn encode_parquet(
    file: std::fs::File,
    bucket: &str,
    spec: &EncodeSpec<'_>,
    tx: &mpsc::Sender<Chunk>,
) -> Result<Parsed, LoadError> {
    let size = file
        .metadata()
        .map_err(|e| LoadError::Spool {
            bucket: bucket.to_owned(),
            key: spec.key.to_owned(),
            message: e.to_string(),
        })?
        .len();
    if size == 0 {
        let parsed = encode(&b""[..], spec, tx)?;
        return Ok(parsed);
    }
    let not_parquet = |f: &crate::read::parquet::ParquetFailure| LoadError::Parquet {
        bucket: bucket.to_owned(),
        key: spec.key.to_owned(),
        message: f.0.clone(),
    };
    let mut rows = crate::read::parquet::ParquetCsv::open(file, crate::read::parquet::NULL_MARKER)
        .map_err(|f| not_parquet(&f))?
        .limit(spec.max_record_bytes);
    let result = encode(BufReader::with_capacity(1 << 16, &mut rows), spec, tx);
    match (result, rows.failure()) {
        // A page, value or row beyond the record limit: bad input, as in a CSV file.
        (Err(_), Some(f)) if rows.over_limit().is_some() => Err(LoadError::Csv {
            key: spec.key.to_owned(),
            reason: f.0.clone(),
            record: rows.over_limit().and_then(|o| o.row),
            line: None,
            class: "record_too_long",
        }),
        (Err(_), Some(f)) => Err(not_parquet(f)),
        (Err(e), None) => Err(e),
        (Ok(parsed), _) => Ok(Parsed {
            // As read from S3: the file's own size, not the CSV it became.
            bytes: size,
            ..parsed
        }),
    }
}

/// A new file in the temporary directory, already unlinked: only this handle reaches it.
fn unlinked_temp_file() -> std::io::Result<std::fs::File> {
    use std::sync::atomic::AtomicU64;
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let path = std::env::temp_dir().join(format!(
        "sluice-{}-{}-{nanos}.parquet",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)?;
    std::fs::remove_file(&path)?;
    Ok(file)
}

impl ParseRun {
    /// The file's layout, which the parser sends first.
    async fn layout(
        &mut self,
        msg: &FileMessage,
        compression: Compression,
    ) -> Result<Layout, LoadError> {
        match self.rx.recv().await {
            Some(Chunk::Layout(l)) => Ok(l),
            _ => {
                self.rx.close();
                Err(
                    parser_result(&mut self.parser, msg, &self.source_failed, compression)
                        .await
                        .err()
                        .unwrap_or_else(|| LoadError::Csv {
                            key: msg.key.clone(),
                            reason: "parser ended without a layout".to_owned(),
                            record: None,
                            line: None,
                            class: "internal",
                        }),
                )
            }
        }
    }

    /// Stops the channel and waits for the parser's result.
    async fn finish(
        mut self,
        msg: &FileMessage,
        compression: Compression,
    ) -> Result<Parsed, LoadError> {
        self.rx.close();
        // Unblock a parser waiting to send: what it still had is not needed.
        while self.rx.recv().await.is_some() {}
        parser_result(&mut self.parser, msg, &self.source_failed, compression).await
    }
}

/// The fast path: every chunk into one `COPY`. The outer error is a failure to start the
/// `COPY`; the inner one is PostgreSQL's answer to the data.
async fn copy_fast(
    txn: &deadpool_postgres::Transaction<'_>,
    copy_sql: &str,
    run: &mut ParseRun,
) -> Result<Result<(), tokio_postgres::Error>, tokio_postgres::Error> {
    let sink = txn.copy_in::<_, bytes::Bytes>(copy_sql).await?;
    futures_util::pin_mut!(sink);
    while let Some(chunk) = run.rx.recv().await {
        if let Chunk::Data(data) = chunk {
            if let Err(e) = sink.send(data).await {
                run.rx.close();
                return Ok(Err(e));
            }
        }
    }
    Ok(sink.as_mut().finish().await.map(|_| ()))
}

/// Whether PostgreSQL refused a value (SQLSTATE class 22, data exception): a record's fault.
fn is_data_error(e: &tokio_postgres::Error) -> bool {
    e.as_db_error()
        .is_some_and(|db| db.code().code().starts_with("22"))
}

/// The slow path for one segment: `COPY` it under a savepoint; when PostgreSQL refuses a
/// record, roll back to the savepoint, set exactly that record aside (with its original
/// bytes) and send the rest again. Returns how many records were set aside.
async fn copy_segment(
    ctx: &LoadContext,
    txn: &deadpool_postgres::Transaction<'_>,
    msg: &FileMessage,
    target: &sql::TargetTable,
    copy_sql: &str,
    seg: &Segment,
) -> Result<u64, LoadError> {
    let pg = |e: tokio_postgres::Error| db_error(e, &msg.key, &target.label(), None);
    let mut alive: Vec<usize> = (0..seg.records.len()).collect();
    let mut refused = 0u64;
    while !alive.is_empty() {
        txn.batch_execute("SAVEPOINT sluice_segment")
            .await
            .map_err(pg)?;
        let text = if refused == 0 {
            bytes::Bytes::copy_from_slice(&seg.text)
        } else {
            let mut t = Vec::with_capacity(seg.text.len());
            for &i in &alive {
                t.extend_from_slice(&seg.text[seg.records[i].text.clone()]);
            }
            bytes::Bytes::from(t)
        };
        let result = async {
            let sink = txn.copy_in::<_, bytes::Bytes>(copy_sql).await?;
            futures_util::pin_mut!(sink);
            sink.send(text).await?;
            sink.as_mut().finish().await
        }
        .await;
        let e = match result {
            Ok(_) => {
                txn.batch_execute("RELEASE SAVEPOINT sluice_segment")
                    .await
                    .map_err(pg)?;
                return Ok(refused);
            }
            Err(e) => e,
        };
        let at = e
            .as_db_error()
            .and_then(|db| db.where_())
            .map(crate::db::parse_copy_context)
            .and_then(|c| c.record)
            .and_then(|line| usize::try_from(line).ok())
            .filter(|&line| line >= 1 && line <= alive.len());
        let Some(at) = at.filter(|_| is_data_error(&e)) else {
            return Err(pg(e));
        };
        txn.batch_execute("ROLLBACK TO SAVEPOINT sluice_segment")
            .await
            .map_err(pg)?;
        let rec = &seg.records[alive.remove(at - 1)];
        let refusal = match db_error(e, &msg.key, &target.label(), None) {
            LoadError::Database {
                key,
                table,
                message,
                sqlstate,
                column,
                value,
                transient,
                ..
            } => LoadError::Database {
                key,
                table,
                // `message` starts with the statement's line; say the file's record instead.
                message: format!(
                    "record {} at line {}: {}",
                    rec.number,
                    rec.line,
                    message
                        .split_once(": ")
                        .map_or(message.as_str(), |(_, m)| m)
                ),
                sqlstate,
                record: Some(rec.number),
                line: Some(rec.line),
                column,
                value,
                transient,
            },
            other => other,
        };
        let column = match &refusal {
            LoadError::Database { column, .. } => column.clone(),
            _ => None,
        };
        txn.execute(
            &sql::insert_reject_sql(&ctx.state_schema),
            &[
                &msg.bucket,
                &msg.key,
                &msg.etag,
                &(rec.number as i64),
                &(rec.line as i64),
                &(rec.offset as i64),
                &column,
                &refusal.class(),
                &refusal.to_string(),
                &&seg.raw[rec.raw.clone()],
                &target.label(),
            ],
        )
        .await
        .map_err(pg)?;
        refused += 1;
    }
    Ok(refused)
}

/// Fails the file when it has more rejects than its rules allow.
fn check_reject_limits(
    rules: &TableRules,
    key: &str,
    rejected: u64,
    read: u64,
) -> Result<(), LoadError> {
    let too_many = |limit: String| LoadError::TooManyRejects {
        key: key.to_owned(),
        rejected,
        read,
        limit,
    };
    if let Some(max) = rules.max_rejects {
        if rejected > max {
            return Err(too_many(format!("max_rejects = {max}")));
        }
    }
    if let Some(ppm) = rules.max_reject_share_ppm {
        if u128::from(rejected) * 1_000_000 > u128::from(ppm) * u128::from(read) {
            return Err(too_many(format!(
                "max_reject_share = {}",
                f64::from(ppm) / 1e6
            )));
        }
    }
    Ok(())
}

async fn parser_result(
    parser: &mut tokio::task::JoinHandle<Result<Parsed, LoadError>>,
    msg: &FileMessage,
    source_failed: &AtomicBool,
    compression: Compression,
) -> Result<Parsed, LoadError> {
    let result = parser.await.map_err(|e| LoadError::Csv {
        key: msg.key.clone(),
        reason: format!("parser thread failed: {e}"),
        record: None,
        line: None,
        class: "internal",
    })?;
    match result {
        Err(LoadError::Csv {
            reason,
            class: "read",
            ..
        }) => {
            if source_failed.load(Ordering::SeqCst) || compression == Compression::None {
                Err(LoadError::S3 {
                    bucket: msg.bucket.clone(),
                    key: msg.key.clone(),
                    message: reason,
                    transient: true,
                })
            } else {
                Err(LoadError::Gzip {
                    key: msg.key.clone(),
                    message: reason,
                })
            }
        }
        other => other,
    }
}

/// Records whether the underlying S3 stream failed, to tell a network error (transient) from
/// a corrupt gzip stream (permanent) once both have become `io::Error`s.
struct Tracked<R> {
    inner: R,
    failed: Arc<AtomicBool>,
}

impl<R: Read> Read for Tracked<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner
            .read(buf)
            .inspect_err(|_| self.failed.store(true, Ordering::SeqCst))
    }
}

/// A decompressed stream that fails once more than `left` bytes came out of it (a gzip bomb),
/// and sets `over`, so that the parser's error becomes [`LoadError::DecompressedTooLarge`]
/// rather than a corrupt stream. A stream of exactly the limit passes.
struct Capped<R> {
    inner: R,
    left: u64,
    over: Arc<AtomicBool>,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // One byte more than is left tells "exactly the limit" from "more".
        let want =
            usize::try_from(self.left.saturating_add(1)).map_or(buf.len(), |w| w.min(buf.len()));
        let n = self.inner.read(&mut buf[..want])?;
        if n as u64 > self.left {
            self.over.store(true, Ordering::SeqCst);
            return Err(std::io::Error::other(
                "decompressed size beyond the limit per file",
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Starts the GET of exactly the message's object version.
async fn get_object(
    s3: &aws_sdk_s3::Client,
    msg: &FileMessage,
) -> Result<impl tokio::io::AsyncRead + Send + Unpin + 'static, LoadError> {
    let result = s3
        .get_object()
        .bucket(&msg.bucket)
        .key(&msg.key)
        .if_match(format!("\"{}\"", msg.etag))
        .send()
        .await;
    match result {
        Ok(out) => Ok(out.body.into_async_read()),
        Err(e) => {
            use aws_sdk_s3::error::ProvideErrorMetadata;
            let status = e.raw_response().map(|r| r.status().as_u16());
            let code = e.code().unwrap_or_default().to_owned();
            let missing = e.as_service_error().is_some_and(|s| s.is_no_such_key())
                || code == "NoSuchKey"
                || status == Some(404);
            let (bucket, key, etag) = (msg.bucket.clone(), msg.key.clone(), msg.etag.clone());
            if missing {
                return Err(LoadError::ObjectMissing { bucket, key, etag });
            }
            if status == Some(412) || code == "PreconditionFailed" {
                return Err(LoadError::ObjectChanged { bucket, key, etag });
            }
            if status == Some(403) || code == "AccessDenied" {
                return Err(LoadError::AccessDenied {
                    bucket,
                    key,
                    message: sluice_common::error::sdk_error_text(&e),
                });
            }
            Err(LoadError::S3 {
                bucket,
                key,
                message: sluice_common::error::sdk_error_text(&e),
                transient: sluice_common::error::sdk_error_is_transient(&e),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_capped(data: &[u8], limit: u64) -> (std::io::Result<Vec<u8>>, bool) {
        let over = Arc::new(AtomicBool::new(false));
        let mut capped = Capped {
            inner: data,
            left: limit,
            over: over.clone(),
        };
        let mut out = Vec::new();
        let result = capped.read_to_end(&mut out).map(|_| out);
        (result, over.load(Ordering::SeqCst))
    }

    #[test]
    fn decompressed_bytes_are_capped_per_file() {
        let data = vec![7u8; 10_000];
        let (ok, over) = read_capped(&data, 10_000);
        assert_eq!((ok.unwrap().len(), over), (10_000, false));
        let (ok, over) = read_capped(&data, 20_000);
        assert_eq!((ok.unwrap().len(), over), (10_000, false));
        let (err, over) = read_capped(&data, 9_999);
        assert!(err.is_err() && over);
        let (err, over) = read_capped(&data, 1);
        assert!(err.is_err() && over);
        let (ok, over) = read_capped(b"", 1);
        assert_eq!((ok.unwrap().len(), over), (0, false));
        // Through a real gzip bomb: 8 MiB of zeros, 8 KiB compressed, capped at 1 MiB.
        let mut bomb = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        std::io::Write::write_all(&mut bomb, &vec![0u8; 8 << 20]).unwrap();
        let bomb = bomb.finish().unwrap();
        let over = Arc::new(AtomicBool::new(false));
        let mut capped = Capped {
            inner: flate2::read::MultiGzDecoder::new(&bomb[..]),
            left: 1 << 20,
            over: over.clone(),
        };
        let mut sink = [0u8; 1 << 16];
        let mut total = 0u64;
        let err = loop {
            match capped.read(&mut sink) {
                Ok(0) => panic!("the bomb ended within the cap"),
                Ok(n) => total += n as u64,
                Err(e) => break e,
            }
        };
        assert!(over.load(Ordering::SeqCst), "{err}");
        assert_eq!(total, 1 << 20, "every byte up to the cap is passed on");
    }

    #[test]
    fn decompressed_too_large_is_permanent_and_names_file_cap_and_flag() {
        let e = LoadError::DecompressedTooLarge {
            key: "dms/s/t/LOAD00000001.csv.gz".into(),
            limit: 1 << 20,
        };
        let f = e.to_file_error();
        assert_eq!(f.class, "decompressed_too_large");
        assert!(f.permanent);
        for part in [
            "dms/s/t/LOAD00000001.csv.gz",
            "1048576 bytes",
            "--max-decompressed-bytes",
        ] {
            assert!(f.message.contains(part), "{}", f.message);
        }
    }
}
