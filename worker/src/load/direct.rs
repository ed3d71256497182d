//! The direct path: a full-load file into a table that has no rows at all needs no stage and no
//! merge. It is copied straight into the target, each row with its system columns (binary
//! `COPY` where every column has a binary form), then, under the merge lock, a tombstone at
//! least as new removes its row, so an earlier delete still wins.
//!
//! Must not: apply anything it cannot take exactly (a record that is not an insert, a value
//! only PostgreSQL should read, a key already there): it ends with [`Attempt::Staged`], the
//! transaction rolls back, and the file loads by the staged path with the same result.

use super::commit::commit;
use super::context::FileLoad;
use super::context::{Attempt, LoadStats};
use super::parse::copy_fast;
use super::parse::ParseRun;
use super::prepare::lock_merges;
use crate::db::db_error;
use crate::encode::Layout;
use crate::error::WorkerError;
use crate::sql;
use std::time::Instant;

/// A file streaming into its transaction: the parse, its layout, its ledger row, and when the
/// `COPY` began.
pub(super) struct Copying {
    pub run: ParseRun,
    pub layout: Layout,
    pub file_id: i64,
    pub started: Instant,
}

/// The rest of a load by the direct path: `COPY` into the target, then, under the merge lock,
/// the version guard against tombstones, the ledger's counts, and the commit. A key that is
/// already there (a duplicate in the file, a row committed meanwhile) or a record that is not
/// an insert ends it with [`Attempt::Staged`], and the transaction rolls back.
pub(super) async fn direct_load(
    load: &FileLoad<'_>,
    txn: deadpool_postgres::Transaction<'_>,
    target: &sql::TargetTable,
    copying: Copying,
) -> Result<Attempt, WorkerError> {
    let (ctx, msg, soft) = (load.ctx, load.msg, load.soft());
    let Copying {
        mut run,
        layout,
        file_id,
        started,
    } = copying;
    let key = msg.key.as_str();
    let pg = |e: tokio_postgres::Error| db_error(e, key, &target.label(), None);
    let compression = msg.file.compression;
    let copy_sql = sql::direct_copy_sql(target, &layout.columns, soft, layout.binary.is_some());
    let copy_result = copy_fast(&txn, &copy_sql, &mut run).await.map_err(pg)?;
    let parsed = run.finish(msg, compression).await;
    let lines = parsed.as_ref().map(|p| p.lines.clone()).unwrap_or_default();
    let parsed = match parsed {
        Err(WorkerError::DirectUnfit { .. }) => return Ok(Attempt::Staged),
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
        binary: layout.binary.is_some(),
        ..LoadStats::default()
    };
    commit(ctx, msg, txn, file_id, stats).await
}
