//! The staged path of one file: the transaction that claims the file in the ledger, streams
//! it into a temporary stage, merges the stage into the target under the table's merge lock,
//! records the counts and commits. The direct path ([`super::direct`]) and the slow path of
//! rejects ([`super::rejects`]) branch off it.
//!
//! Must not: fetch anything from S3 while no transaction needs it (a Parquet object is spooled
//! before `BEGIN`, [`super::object`]); hold the merge lock while the file streams in (it is
//! taken after the `COPY`, so the slow part of loads of one table runs in parallel).

use super::commit::{commit, in_ledger};
use super::context::{Attempt, FileLoad, LoadContext, LoadOutcome, LoadStats};
use super::direct::{direct_load, target_fits, Copying};
use super::object::{get_object, open_body, Body};
use super::parse::{copy_fast, start_parse, ParseRun};
use super::prepare::{connect, lock_merges, prepared_target};
use super::rejects::{check_reject_limits, copy_in_segments, is_data_error};
use crate::db::{self, db_error};
use crate::encode::{Direct, Layout, Parsed};
use crate::error::WorkerError;
use crate::sql;
use crate::target;
use sluice_common::mapping::FileKind;
use sluice_common::message::FileMessage;
use sluice_common::warehouse::state;
use std::time::SystemTime;
use std::time::{Duration, Instant};

/// Applies one file. Errors say whether retrying can help.
pub async fn load_file(ctx: &LoadContext, msg: &FileMessage) -> Result<LoadOutcome, WorkerError> {
    // First the direct path where the file fits it (only a full-load file can), in binary where
    // every column has a binary form. A record or a file the direct path cannot take (not an
    // insert, no rows, a key already there) sends the file the staged way; a value with no
    // exact binary form sends it to text (the direct path in text, where PostgreSQL reads the
    // value, or the stage in text), as every binary attempt would meet it again. Nothing was
    // applied by an attempt that ends so. Each retry clears one of `way`'s two flags, so a file
    // is read at most three times.
    let mut way = Way {
        direct: true,
        binary: true,
    };
    loop {
        match load_once(ctx, msg, way).await {
            Ok(Attempt::Done(outcome)) => return Ok(outcome),
            Ok(Attempt::Staged) | Err(WorkerError::DirectUnfit { value: false, .. })
                if way.direct =>
            {
                way.direct = false
            }
            Err(WorkerError::DirectUnfit { value: true, .. }) if way.binary => way.binary = false,
            Ok(Attempt::Staged) => unreachable!("the staged path always ends"),
            Err(e) => return Err(e),
        }
    }
}

/// How an attempt may apply a file.
#[derive(Debug, Clone, Copy)]
pub(super) struct Way {
    /// The direct path, where the file fits it.
    pub direct: bool,
    /// A binary `COPY` (into the target or the stage), where every column has a binary type.
    pub binary: bool,
}

/// One attempt at a file: the staged path, or the direct path where `way` allows it and the
/// file fits it.
pub(super) async fn load_once(
    ctx: &LoadContext,
    msg: &FileMessage,
    way: Way,
) -> Result<Attempt, WorkerError> {
    let mut load = FileLoad::new(ctx, msg)?;
    load.try_binary = way.binary;
    let load = load;
    let pg = load.pg(&load.target_label);
    let mut client = connect(ctx, load.key(), &load.target_label).await?;
    if in_ledger(&client, ctx, msg, &load.target_label).await? {
        return Ok(Attempt::Done(LoadOutcome::AlreadyApplied));
    }
    let (schema, table, soft) = (&load.schema, &load.table, load.soft());
    let prepared_oid = prepared_target(ctx, &mut client, schema, table, soft, load.key()).await?;
    let (body, spooled_again) = open_body(ctx, msg, load.source.format).await?;

    let txn = client.transaction().await.map_err(&pg)?;
    let Some(file_id) = claim(&load, &txn).await? else {
        return Ok(Attempt::Done(LoadOutcome::AlreadyApplied));
    };
    let target = resolve_prepared(&load, &txn, prepared_oid).await?;
    // Parser thread -> bounded channel -> COPY sink.
    let started = Instant::now();
    let full_load = matches!(msg.file.kind, FileKind::FullLoad { .. });
    let direct = if way.direct && full_load && !load.rejects() {
        direct_plan(&load, &txn, &target, file_id).await?
    } else {
        None
    };
    let mut run = start_parse(&load, body, &target, false, direct.clone());
    let layout = run.layout(msg, load.source.compression).await?;
    if direct.is_some() {
        let copying = Copying {
            run,
            layout,
            file_id,
            started,
        };
        return direct_load(&load, txn, &target, copying).await;
    }
    let staged = stage(&load, &txn, &target, &layout, (run, file_id), spooled_again).await?;
    let copy = started.elapsed();
    let stats = merge(&load, &txn, &target, &layout, file_id, (staged, copy)).await?;
    commit(ctx, msg, txn, file_id, stats).await
}

/// Claims the file in the ledger, inside the transaction; `None`: another session applied it.
pub(super) async fn claim(
    load: &FileLoad<'_>,
    txn: &deadpool_postgres::Transaction<'_>,
) -> Result<Option<i64>, WorkerError> {
    let (ctx, msg, key) = (load.ctx, load.msg, load.key());
    let claim_started = Instant::now();
    let claimed = txn
        .query(
            &state::ledger_claim_sql(&ctx.state_schema),
            &[
                &msg.bucket,
                &msg.key,
                &msg.etag,
                &load.target_label,
                &ctx.worker_id,
                &load.file_time,
            ],
        )
        .await
        .map_err(|e| {
            let lock = format!("the ledger row of {key} (another session is loading the file)");
            db::lock_error(e, key, &load.target_label, &lock, claim_started.elapsed())
        })?;
    Ok(claimed.first().map(|r| r.get::<_, i64>(0)))
}

/// The target as the catalog has it now, still as this process prepared it. A table dropped
/// and made again (a new oid, so a new tombstone table), or whose system columns were dropped,
/// since then is prepared again on the retry.
pub(super) async fn resolve_prepared(
    load: &FileLoad<'_>,
    txn: &deadpool_postgres::Transaction<'_>,
    prepared_oid: u32,
) -> Result<sql::TargetTable, WorkerError> {
    let (schema, table, soft) = (&load.schema, &load.table, load.soft());
    let target = target::resolve(txn, schema, table, soft, load.key()).await?;
    if target.is_prepared(soft) && target.oid == prepared_oid {
        return Ok(target);
    }
    load.ctx
        .prepared
        .lock()
        .expect("prepared-table cache lock")
        .remove(&(
            schema.clone(),
            table.clone(),
            load.rules.soft_delete.clone(),
        ));
    Err(WorkerError::Database {
        key: load.key().to_owned(),
        table: target.label(),
        message: "the table changed while the file was being prepared; retrying".to_owned(),
        sqlstate: None,
        record: None,
        line: None,
        column: None,
        value: None,
        transient: true,
    })
}

/// The direct path's plan for a full-load file: `Some` when the target has no rows at all, or
/// only rows of the file's own generation ([`target_fits`]).
async fn direct_plan(
    load: &FileLoad<'_>,
    txn: &deadpool_postgres::Transaction<'_>,
    target: &sql::TargetTable,
    file_id: i64,
) -> Result<Option<Direct>, WorkerError> {
    let fits = target_fits(load, txn, target, file_id).await?;
    let t = time::OffsetDateTime::from(load.file_time);
    let text = load.file_time_text();
    let soft = load.soft().is_some();
    Ok(fits.then(|| Direct {
        tail: format!("\t{text}\t{file_id}{}", if soft { "\tf" } else { "" }),
        file_time: text,
        file_time_micros: (t.unix_timestamp_nanos() / 1000) as i64,
        file_id,
        soft,
    }))
}

/// What the stage holds once the file is in: the parse's figures and the records set aside.
struct Staged {
    parsed: Parsed,
    rejected: u64,
    binary: bool,
}

/// Streams the file into a temporary stage typed like the target. With `reject_rows`, a value
/// PostgreSQL refuses sends the file again in segments ([`copy_in_segments`]), and the
/// records set aside are counted against the table's limits.
async fn stage(
    load: &FileLoad<'_>,
    txn: &deadpool_postgres::Transaction<'_>,
    target: &sql::TargetTable,
    layout: &Layout,
    (mut run, file_id): (ParseRun, i64),
    spooled_again: Option<std::fs::File>,
) -> Result<Staged, WorkerError> {
    let (ctx, msg, rejects) = (load.ctx, load.msg, load.rejects());
    let pg = load.pg(&load.target_label);
    txn.batch_execute(&sql::create_stage_sql(target, &layout.columns, rejects))
        .await
        .map_err(&pg)?;
    txn.batch_execute(&sql::stage_file_sql(&load.file_time_text(), file_id))
        .await
        .map_err(&pg)?;
    if rejects {
        txn.execute(
            &state::clear_rejects_sql(&ctx.state_schema),
            &[&msg.bucket, &msg.key, &msg.etag],
        )
        .await
        .map_err(&pg)?;
        txn.batch_execute("SAVEPOINT sluice_copy")
            .await
            .map_err(&pg)?;
    }
    let copy_sql = sql::copy_stage_sql(target, &layout.columns, rejects, layout.binary.is_some());
    let copy_result = copy_fast(txn, &copy_sql, &mut run).await.map_err(&pg)?;
    let parsed = run.finish(msg, load.source.compression).await;
    let lines = parsed.as_ref().map(|p| p.lines.clone()).unwrap_or_default();
    let line_of = move |r: u64| lines.line_of(r);
    // A parse error wins over anything PostgreSQL says after it: the sink was dropped
    // unfinished, which aborts the COPY, and the transaction rolls back.
    let parsed = parsed?;
    let (parsed, refused) = match copy_result {
        Ok(()) => (parsed, 0),
        Err(e) if rejects && is_data_error(&e) => {
            // The slow path: PostgreSQL refused a value. Read the file again in segments, and
            // set aside exactly the records it refuses.
            txn.batch_execute("ROLLBACK TO SAVEPOINT sluice_copy")
                .await
                .map_err(&pg)?;
            let body = match spooled_again {
                Some(file) => Body::Spooled(file),
                None => Body::Stream(Box::new(get_object(&ctx.s3, msg).await?)),
            };
            let resent = copy_in_segments(load, txn, target, &copy_sql, body).await?;
            (resent.parsed, resent.refused)
        }
        Err(e) => return Err(db_error(e, load.key(), &target.label(), Some(&line_of))),
    };
    let rejected = parsed.rejected + refused;
    if rejects {
        if parsed.rejected > 0 {
            txn.execute(
                &sql::save_staged_rejects_sql(&ctx.state_schema),
                &[&msg.bucket, &msg.key, &msg.etag, &target.label()],
            )
            .await
            .map_err(&pg)?;
        }
        check_reject_limits(&load.rules, load.key(), rejected, parsed.records)?;
    }
    Ok(Staged {
        parsed,
        rejected,
        binary: layout.binary.is_some(),
    })
}

/// Merges the stage into the target: partial images filled, the table's merges locked, one
/// version-guarded statement, old tombstones pruned. Returns the load's figures.
async fn merge(
    load: &FileLoad<'_>,
    txn: &deadpool_postgres::Transaction<'_>,
    target: &sql::TargetTable,
    layout: &Layout,
    file_id: i64,
    (staged, copy): (Staged, Duration),
) -> Result<LoadStats, WorkerError> {
    let Staged {
        parsed,
        rejected,
        binary,
    } = staged;
    let merged = merge_stage(load, txn, target, &layout.columns, parsed.partial > 0).await?;
    let counts = merged.of(file_id);
    Ok(LoadStats {
        target: target.label(),
        records: parsed.records,
        bytes: parsed.bytes,
        inserted: counts.inserted,
        updated: counts.updated,
        deleted: counts.deleted,
        superseded: counts.superseded,
        partial: parsed.partial,
        rejected,
        repaired: parsed.repaired,
        copy,
        merge: merged.took,
        commit: Duration::ZERO,
        direct: false,
        batch: 0,
        binary,
        columns_added: Vec::new(),
    })
}

/// What a file's operations did to the target, from the merge of its stage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct FileCounts {
    pub inserted: i64,
    pub updated: i64,
    pub deleted: i64,
    pub superseded: i64,
}

/// A stage's merge: each file's counts (a file none of whose operations is the newest of its
/// key in the stage has none), and how long it took.
pub(super) struct Merged {
    counts: std::collections::HashMap<i64, FileCounts>,
    pub took: Duration,
}

impl Merged {
    pub fn of(&self, file_id: i64) -> FileCounts {
        self.counts.get(&file_id).copied().unwrap_or_default()
    }
}

/// Merges the stage (one file, or a batch's files) into the target: partial images filled,
/// the table's merges locked, one version-guarded statement, old tombstones pruned. `load` is
/// the (first) file's, for its rules and the errors' key.
pub(super) async fn merge_stage(
    load: &FileLoad<'_>,
    txn: &deadpool_postgres::Transaction<'_>,
    target: &sql::TargetTable,
    columns: &[usize],
    partial: bool,
) -> Result<Merged, WorkerError> {
    let started = Instant::now();
    let merge_err = load.pg(&target.label());
    if partial {
        txn.batch_execute(&sql::resolve_partial_sql(target, columns))
            .await
            .map_err(&merge_err)?;
    }
    let deletes = sql::Deletes::for_table(target, load.soft(), &load.ctx.state_schema);
    lock_merges(txn, target, load.key(), load.ctx.merge_lock_timeout).await?;
    // Usually a table has no tombstones: then the merge need not look for them.
    let no_tombstones = match &deletes {
        sql::Deletes::Hard { tombstones } => !txn
            .query_one(&sql::any_tombstone_sql(tombstones), &[])
            .await
            .map_err(&merge_err)?
            .get::<_, bool>(0),
        sql::Deletes::Soft { .. } => false,
    };
    let merge_sql = sql::merge_sql(&sql::MergeSpec {
        target,
        file_columns: columns,
        deletes: deletes.clone(),
        partial,
        no_tombstones,
    });
    let rows = txn.query(&merge_sql, &[]).await.map_err(&merge_err)?;
    let mut counts = std::collections::HashMap::with_capacity(rows.len());
    let mut newest: Option<SystemTime> = None;
    for row in rows {
        counts.insert(
            row.get::<_, i64>(0),
            FileCounts {
                inserted: row.get(1),
                updated: row.get(2),
                deleted: row.get(3),
                superseded: row.get(4),
            },
        );
        newest = newest.max(row.get::<_, Option<SystemTime>>(5));
    }
    if let (sql::Deletes::Hard { tombstones }, Some(newest)) = (&deletes, newest) {
        let retention = u64::from(load.rules.tombstone_retention_hours) * 3600;
        let horizon = newest - Duration::from_secs(retention);
        txn.execute(&sql::prune_tombstones_sql(tombstones), &[&horizon])
            .await
            .map_err(&merge_err)?;
    }
    Ok(Merged {
        counts,
        took: started.elapsed(),
    })
}
