//! The direct path: a full-load file into a table that holds nothing, or only rows of the
//! file's own full-load generation, needs no stage and no merge. It is copied straight into the
//! target, each row with its system columns (binary `COPY` where every column has a binary
//! form), then, under the merge lock, a tombstone at least as new removes its row, so an
//! earlier delete still wins.
//!
//! Whether a file fits ([`target_fits`]) is decided without reading the table's rows:
//! - the table has no rows at all; or
//! - every file the ledger has applied to the table is a `LOAD` file of this file's folder and
//!   generation ([`one_generation`]: no CDC file, no two files with one sequence number, as DMS
//!   numbers every full load from 1, none older than the generation's `LOAD00000001`), and the
//!   rows at both ends of the primary key were written by those files (rows written by hand,
//!   or left by files whose ledger rows `reload` or `refresh` deleted, show there first).
//!
//! That is a forecast, never what makes the result right. The direct `COPY` meets any key that
//! is already there as a unique violation (a committed row, or one being written, once its
//! transaction ends), and the file then loads by the staged path. A key that is not there is
//! inserted exactly as the staged merge would insert it; a newer tombstone wins afterwards,
//! under the merge lock; a soft-deleted row is still a row, so its key clashes. A wrong forecast
//! costs one attempt, rolled back: the file streams once more.
//!
//! Must not: apply anything it cannot take exactly (a record that is not an insert, a value
//! only PostgreSQL should read, a key already there): it ends with [`Attempt::Staged`], or for
//! a value with `WorkerError::DirectUnfit` (the caller tries the direct path again in text), the
//! transaction rolls back, and the file loads with the same result.

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
use sluice_common::mapping::{file_of, FileKind};
use sluice_common::warehouse::state;
use std::time::{Instant, SystemTime};

/// The most files the ledger may have applied to a table for a full-load file to go direct;
/// beyond, it goes staged. Bounds what one forecast reads: a generation of 10,000 files of
/// DMS's default 1 GB is 10 TB.
const MAX_APPLIED: i64 = 10_000;

/// A file the ledger has applied to the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Applied {
    pub bucket: String,
    pub key: String,
    pub file_id: i64,
    /// The file's time as the ledger has it (NULL in ledgers older than the column).
    pub file_time: Option<SystemTime>,
}

/// Whether the target may take the file by the direct path (see the module's documentation):
/// it has no rows, or only rows of the file's own generation. `file_id` is the file's own
/// ledger row, claimed in `txn`. Reads no more of the table than two rows of its key's index.
pub(super) async fn target_fits(
    load: &FileLoad<'_>,
    txn: &deadpool_postgres::Transaction<'_>,
    target: &sql::TargetTable,
    file_id: i64,
) -> Result<bool, WorkerError> {
    let pg = load.pg(&load.target_label);
    let empty: bool = txn
        .query_one(&sql::target_is_empty_sql(target), &[])
        .await
        .map_err(&pg)?
        .get(0);
    if empty {
        return Ok(true);
    }
    let rows = txn
        .query(
            &state::ledger_applied_sql(&load.ctx.state_schema),
            &[&load.target_label, &file_id, &MAX_APPLIED],
        )
        .await
        .map_err(&pg)?;
    if rows.len() as i64 >= MAX_APPLIED {
        return Ok(false);
    }
    let applied: Vec<Applied> = rows
        .iter()
        .map(|r| Applied {
            bucket: r.get(0),
            key: r.get(1),
            file_id: r.get(2),
            file_time: r.get(3),
        })
        .collect();
    let msg = load.msg;
    if !one_generation(&msg.bucket, &msg.key, load.file_time, &applied) {
        return Ok(false);
    }
    let ends = txn
        .query_one(&sql::target_ends_sql(target), &[])
        .await
        .map_err(&pg)?;
    let written_by_them =
        |id: Option<i64>| id.is_some_and(|id| applied.iter().any(|a| a.file_id == id));
    Ok(written_by_them(ends.get(0)) && written_by_them(ends.get(1)))
}

/// Whether `applied` (not empty) and the file `(bucket, key, file_time)` are all `LOAD` files of
/// one folder of one bucket and of one full-load generation, as the coordinator's rule has it
/// (README, *Full loads*): DMS numbers every full load's files from 1, so a sequence number seen
/// twice means two generations (or one file rewritten); and the generation's `LOAD00000001`,
/// where it is among them, is not newer than any of its files. Nothing applied means the rows
/// came from elsewhere: `false`.
pub(super) fn one_generation(
    bucket: &str,
    key: &str,
    file_time: SystemTime,
    applied: &[Applied],
) -> bool {
    let Some((folder, _)) = key.rsplit_once('/') else {
        return false;
    };
    let sequence = |key: &str| {
        let (dir, name) = key.rsplit_once('/')?;
        match file_of("", "", name).ok()?.kind {
            FileKind::FullLoad { sequence } if dir == folder => Some(sequence),
            _ => None,
        }
    };
    let mut files = vec![(sequence(key), Some(file_time))];
    files.extend(applied.iter().map(|a| {
        let same_bucket = a.bucket == bucket;
        (sequence(&a.key).filter(|_| same_bucket), a.file_time)
    }));
    let mut members: Vec<(u64, SystemTime)> = Vec::with_capacity(files.len());
    for file in files {
        match file {
            (Some(sequence), Some(time)) => members.push((sequence, time)),
            _ => return false,
        }
    }
    members.sort();
    let distinct = members.windows(2).all(|w| w[0].0 != w[1].0);
    let head_first = match members.first() {
        Some(&(1, head)) => members.iter().all(|&(_, t)| t >= head),
        _ => true,
    };
    !applied.is_empty() && distinct && head_first
}

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
        // The record or the file does not fit (a value that does goes back to the caller).
        Err(WorkerError::DirectUnfit { value: false, .. }) => return Ok(Attempt::Staged),
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
                .query_one(&sql::any_tombstone_sql(&tombstones), &[])
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const B: &str = "lake";
    const F: &str = "dms/sales/orders";

    fn at(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + s)
    }

    fn applied(key: &str, s: u64) -> Applied {
        Applied {
            bucket: B.to_owned(),
            key: format!("{F}/{key}"),
            file_id: s as i64,
            file_time: Some(at(s)),
        }
    }

    fn one(key: &str, s: u64, before: &[Applied]) -> bool {
        one_generation(B, &format!("{F}/{key}"), at(s), before)
    }

    #[test]
    fn the_files_of_one_full_load_in_any_order_and_format_are_one_generation() {
        let before = [
            applied("LOAD00000002.csv", 12),
            applied("LOAD00000005.csv", 15),
        ];
        assert!(one("LOAD00000003.csv", 13, &before));
        assert!(one("LOAD00000001.csv", 10, &before));
        let mixed = [
            applied("LOAD00000001.csv.gz", 10),
            applied("LOAD0000000A.parquet", 20),
        ];
        assert!(one("LOAD0000000B.PARQUET", 21, &mixed));
        // Written in the same second as the first file: still the same generation.
        assert!(one("LOAD00000002.csv", 10, &mixed[..1]));
    }

    #[test]
    fn nothing_applied_means_the_rows_came_from_elsewhere() {
        assert!(!one("LOAD00000002.csv", 12, &[]));
    }

    #[test]
    fn a_cdc_file_another_folder_or_bucket_or_an_unknown_time_is_not_the_generation() {
        let first = applied("LOAD00000001.csv", 10);
        let cdc = applied("20241029-113401000.csv", 11);
        assert!(!one("LOAD00000002.csv", 12, &[first.clone(), cdc]));
        let mut other = applied("LOAD00000002.csv", 12);
        other.key = "dms/sales/orders_old/LOAD00000002.csv".to_owned();
        assert!(!one("LOAD00000003.csv", 13, &[first.clone(), other]));
        let mut dated = applied("LOAD00000002.csv", 12);
        dated.key = format!("{F}/2024/10/29/LOAD00000002.csv");
        assert!(!one("LOAD00000003.csv", 13, &[first.clone(), dated]));
        let mut elsewhere = applied("LOAD00000002.csv", 12);
        elsewhere.bucket = "other".to_owned();
        assert!(!one("LOAD00000003.csv", 13, &[first.clone(), elsewhere]));
        let mut unknown = applied("LOAD00000002.csv", 12);
        unknown.file_time = None;
        assert!(!one("LOAD00000003.csv", 13, &[first.clone(), unknown]));
        let other_name = applied("LOAD0000002.csv", 12);
        assert!(!one("LOAD00000003.csv", 13, &[first, other_name]));
        assert!(!one_generation(B, "LOAD00000003.csv", at(13), &[]));
    }

    #[test]
    fn a_reload_is_another_generation() {
        let old = [
            applied("LOAD00000001.csv", 10),
            applied("LOAD00000002.csv", 11),
        ];
        // The same names again, newer: DMS numbers every full load from 1.
        assert!(!one("LOAD00000001.csv", 100, &old));
        assert!(!one("LOAD00000002.csv", 101, &old));
        // A file older than the generation's first: left behind by an earlier load.
        assert!(!one("LOAD00000003.csv", 5, &old));
        let new_head = [applied("LOAD00000001.csv", 100)];
        assert!(!one("LOAD00000002.csv", 11, &new_head));
        // A file numbered past the old load's last, before the new load's first is applied,
        // cannot be told from the old load's: it goes direct, and a key it shares with the old
        // rows sends it to the staged path.
        assert!(one("LOAD00000003.csv", 102, &old));
    }
}
