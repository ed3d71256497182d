//! Several CDC files of one target applied in one transaction: one stage, one version-guarded
//! merge, one ledger row per file, one `COMMIT`. Exactly-once stays per file: each file claims
//! its own ledger row in the transaction, so a file another session applied meanwhile is
//! simply left out, and a replay of any of them finds its row.
//!
//! ```text
//!   ledger has the file?      -> already applied, left out (per file)
//!   target prepared? (once)   Parquet objects spooled (before BEGIN)
//!   BEGIN
//!     INSERT each file's ledger row ON CONFLICT DO NOTHING   -> no file_id: left out
//!     CREATE TEMP TABLE sluice_stage (... _sluice_file_time, _sluice_file)
//!     per file: the stage's file columns' defaults := its time and file_id; COPY it in
//!               (CSV objects: GETs started a few files ahead, `object::Fetches`)
//!     lock the table's merges; one merge of the whole stage; counts per file
//!     UPDATE each ledger row with its counts
//!   COMMIT
//! ```
//!
//! Must not: decide anything a one-by-one load would decide differently. The stage orders
//! operations by their version `(v, file time, record)` exactly as the target does, so the
//! newest operation per key wins whichever order the files came in, as it does one by one.
//! Anything a batch cannot take ends it with an error and nothing applied: a file whose
//! columns differ from the first file's ([`WorkerError::BatchUnfit`]), a bad record, a value
//! PostgreSQL refuses, a lost connection. The caller then loads the files one by one
//! ([`super::load_file`]), where a bad file fails alone with its own error. A value the binary
//! stage cannot take exactly is not such a thing: the batch is staged again in text.
//!
//! Only CSV or Parquet CDC files of a table without `reject_rows` are batched (the rejects'
//! slow path re-reads one file in segments; full-load files take the direct path).

use super::commit::{in_ledger, ledger_has};
use super::context::{FileLoad, LoadContext, LoadOutcome, LoadStats};
use super::object::{open_body, Body, Fetches};
use super::parse::{copy_fast, start_parse};
use super::prepare::{connect, prepared_target};
use super::transaction::{claim, merge_stage, resolve_prepared};
use crate::db::db_error;
use crate::error::WorkerError;
use crate::sql;
use sluice_common::mapping::FileKind;
use sluice_common::message::FileMessage;
use sluice_common::rules::{OnError, Rules};
use sluice_common::warehouse::state;
use std::time::Instant;

/// Whether a file may join a batch with others of its table: a CDC file of a table whose
/// rules do not set rejects aside.
pub fn batchable(rules: &Rules, msg: &FileMessage) -> bool {
    matches!(msg.file.kind, FileKind::Cdc { .. })
        && rules.for_table(&msg.source_table()).on_error != OnError::RejectRows
}

/// One file of a batch on its way through the transaction.
struct Member<'a> {
    load: FileLoad<'a>,
    /// A Parquet object spooled before `BEGIN`; a CSV object is opened at its turn.
    spooled: Option<Body>,
    file_id: i64,
    stats: LoadStats,
}

/// Applies `msgs` (CDC files of one source table, each at most once) in one transaction.
/// Returns each file's outcome in the order given; an error means nothing was applied and the
/// files should be loaded one by one.
///
/// The stage is binary where every column has a binary form; a value with no exact binary form
/// (one only PostgreSQL's own input reads) stages the whole batch again in text, still one
/// transaction. Every file is read again either way: the first transaction rolled back.
pub async fn load_batch(
    ctx: &LoadContext,
    msgs: &[FileMessage],
) -> Result<Vec<LoadOutcome>, WorkerError> {
    match load_batch_staged(ctx, msgs, true).await {
        Err(WorkerError::DirectUnfit { value: true, .. }) => {
            load_batch_staged(ctx, msgs, false).await
        }
        other => other,
    }
}

/// [`load_batch`], its stage in binary where it can be (`binary`) or in text.
async fn load_batch_staged(
    ctx: &LoadContext,
    msgs: &[FileMessage],
    binary: bool,
) -> Result<Vec<LoadOutcome>, WorkerError> {
    let first = FileLoad::new(ctx, &msgs[0])?;
    let mut client = connect(ctx, first.key(), &first.target_label).await?;
    let mut members: Vec<Option<Member<'_>>> = Vec::with_capacity(msgs.len());
    for msg in msgs {
        let mut load = FileLoad::new(ctx, msg)?;
        load.try_binary = binary;
        if load.target_label != first.target_label {
            return Err(unfit(msg, "its target differs from the batch's"));
        }
        let applied = in_ledger(&client, ctx, msg, &load.target_label).await?;
        members.push((!applied).then(|| Member {
            load,
            spooled: None,
            file_id: 0,
            stats: LoadStats::default(),
        }));
    }
    let (schema, table, soft) = (&first.schema, &first.table, first.soft());
    let prepared_oid = prepared_target(ctx, &mut client, schema, table, soft, first.key()).await?;
    for m in members.iter_mut().flatten() {
        if m.load.source.format != sluice_common::mapping::Format::Csv {
            m.spooled = Some(open_body(ctx, m.load.msg, m.load.source.format).await?.0);
        }
    }

    let txn = client
        .transaction()
        .await
        .map_err(first.pg(&first.target_label))?;
    for slot in members.iter_mut() {
        if let Some(m) = slot {
            match claim(&m.load, &txn).await? {
                Some(file_id) => m.file_id = file_id,
                None => *slot = None,
            }
        }
    }
    let target = resolve_prepared(&first, &txn, prepared_oid).await?;
    let Some(stage) = fill_stage(ctx, &txn, &target, &mut members).await? else {
        // Every file was applied by another session meanwhile.
        drop(txn);
        return Ok(vec![LoadOutcome::AlreadyApplied; msgs.len()]);
    };
    let lead: &FileMessage = members
        .iter()
        .flatten()
        .map(|m| m.load.msg)
        .next()
        .expect("a stage has a file");
    let lead_load = FileLoad::new(ctx, lead)?;
    let merged = merge_stage(&lead_load, &txn, &target, &stage.columns, stage.partial).await?;
    for m in members.iter_mut().flatten() {
        let counts = merged.of(m.file_id);
        m.stats.inserted = counts.inserted;
        m.stats.updated = counts.updated;
        m.stats.deleted = counts.deleted;
        m.stats.superseded = counts.superseded;
        m.stats.merge = merged.took;
        txn.execute(
            &state::ledger_counts_sql(&ctx.state_schema),
            &[
                &m.file_id,
                &(m.stats.records as i64),
                &counts.inserted,
                &counts.updated,
                &counts.deleted,
                &counts.superseded,
            ],
        )
        .await
        .map_err(m.load.pg(&m.stats.target))?;
    }
    let started = Instant::now();
    let result = txn.commit().await;
    let commit = started.elapsed();
    if let Err(e) = result {
        // The answer to COMMIT was lost: the ledger says whether it took effect (for all the
        // files: one transaction).
        if e.as_db_error().is_some() || !matches!(ledger_has(ctx, lead).await, Ok(true)) {
            return Err(db_error(e, &lead.key, &target.label(), None));
        }
    }
    Ok(members
        .into_iter()
        .map(|m| match m {
            Some(m) => LoadOutcome::Loaded(LoadStats { commit, ..m.stats }),
            None => LoadOutcome::AlreadyApplied,
        })
        .collect())
}

/// What the stage holds once every file is in.
struct Stage {
    /// The target columns staged, the same for every file.
    columns: Vec<usize>,
    /// Whether any file had partial `U` images.
    partial: bool,
}

/// Creates the stage and copies every claimed file into it, each under its own time and
/// `file_id`; None when no file is left to apply.
async fn fill_stage(
    ctx: &LoadContext,
    txn: &deadpool_postgres::Transaction<'_>,
    target: &sql::TargetTable,
    members: &mut [Option<Member<'_>>],
) -> Result<Option<Stage>, WorkerError> {
    let mut stage: Option<Stage> = None;
    let applied = members.iter().flatten().count();
    // CSV objects are fetched a few ahead (Parquet objects were spooled before BEGIN).
    let wanted = members
        .iter()
        .flatten()
        .filter(|m| m.spooled.is_none())
        .map(|m| m.load.msg.clone())
        .collect();
    let mut fetches = Fetches::start(ctx, wanted);
    for m in members.iter_mut().flatten() {
        let msg = m.load.msg;
        let pg = m.load.pg(&m.load.target_label);
        let started = Instant::now();
        let body = match m.spooled.take() {
            Some(body) => body,
            None => fetches.next(&msg.key).await?,
        };
        let mut run = start_parse(&m.load, body, target, false, None);
        let layout = run.layout(msg, m.load.source.compression).await?;
        match &stage {
            None => {
                txn.batch_execute(&sql::create_stage_sql(target, &layout.columns, false))
                    .await
                    .map_err(&pg)?;
                stage = Some(Stage {
                    columns: layout.columns.clone(),
                    partial: false,
                });
            }
            Some(s) if s.columns != layout.columns => {
                return Err(unfit(msg, "its columns differ from the first file's"));
            }
            Some(_) => {}
        }
        txn.batch_execute(&sql::stage_file_sql(&m.load.file_time_text(), m.file_id))
            .await
            .map_err(&pg)?;
        let copy_sql = sql::copy_stage_sql(target, &layout.columns, false, layout.binary.is_some());
        let copied = copy_fast(txn, &copy_sql, &mut run).await.map_err(&pg)?;
        let parsed = run.finish(msg, m.load.source.compression).await;
        let lines = parsed.as_ref().map(|p| p.lines.clone()).unwrap_or_default();
        let parsed = parsed?;
        if let Err(e) = copied {
            let line_of = move |r: u64| lines.line_of(r);
            return Err(db_error(e, m.load.key(), &target.label(), Some(&line_of)));
        }
        if let Some(s) = stage.as_mut() {
            s.partial |= parsed.partial > 0;
        }
        m.stats = LoadStats {
            target: target.label(),
            records: parsed.records,
            bytes: parsed.bytes,
            partial: parsed.partial,
            repaired: parsed.repaired,
            copy: started.elapsed(),
            batch: applied,
            binary: layout.binary.is_some(),
            ..LoadStats::default()
        };
    }
    Ok(stage)
}

fn unfit(msg: &FileMessage, why: &str) -> WorkerError {
    WorkerError::BatchUnfit {
        key: msg.key.clone(),
        reason: why.to_owned(),
    }
}
