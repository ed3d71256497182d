//! Records PostgreSQL refuses, under `on_error = "reject_rows"`: the slow path that sends the
//! file again in segments under savepoints and sets aside exactly the refused records (with
//! their original bytes) in `<state>.rejects`, and the table's limits on rejects.
//!
//! Must not: set a record aside without its original bytes, or apply anything of a file whose
//! rejects pass its limits (the transaction rolls back).

use super::context::FileLoad;
use super::context::LoadContext;
use super::object::Body;
use super::parse::start_parse;
use crate::db::db_error;
use crate::encode::{Chunk, Parsed, Segment, SegmentRecord};
use crate::error::WorkerError;
use crate::sql;
use futures_util::SinkExt;
use sluice_common::message::FileMessage;
use sluice_common::rules::TableRules;
use sluice_common::warehouse::state;

/// Whether PostgreSQL refused a value (SQLSTATE class 22, data exception): a record's fault.
pub(super) fn is_data_error(e: &tokio_postgres::Error) -> bool {
    e.as_db_error()
        .is_some_and(|db| db.code().code().starts_with("22"))
}

/// What the slow path read and refused.
pub(super) struct Resent {
    pub parsed: Parsed,
    /// Records PostgreSQL refused, set aside in the rejects table.
    pub refused: u64,
}

/// The slow path: reads the file again (`body`) in segments of records and copies each with
/// [`copy_segment`].
pub(super) async fn copy_in_segments(
    load: &FileLoad<'_>,
    txn: &deadpool_postgres::Transaction<'_>,
    target: &sql::TargetTable,
    copy_sql: &str,
    body: Body,
) -> Result<Resent, WorkerError> {
    let (ctx, msg) = (load.ctx, load.msg);
    let mut run = start_parse(load, body, target, true, None);
    run.layout(msg, load.source.compression).await?;
    let mut refused = 0;
    let mut failure = None;
    while let Some(chunk) = run.rx.recv().await {
        if let Chunk::Segment(seg) = chunk {
            match copy_segment(ctx, txn, msg, target, copy_sql, &seg).await {
                Ok(n) => refused += n,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
    }
    let parsed = run.finish(msg, load.source.compression).await?;
    match failure {
        Some(e) => Err(e),
        None => Ok(Resent { parsed, refused }),
    }
}

/// The slow path for one segment: `COPY` it under a savepoint; when PostgreSQL refuses a
/// record, roll back to the savepoint, set exactly that record aside (with its original
/// bytes) and send the rest again. Returns how many records were set aside.
pub(super) async fn copy_segment(
    ctx: &LoadContext,
    txn: &deadpool_postgres::Transaction<'_>,
    msg: &FileMessage,
    target: &sql::TargetTable,
    copy_sql: &str,
    seg: &Segment,
) -> Result<u64, WorkerError> {
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
        let refusal = refusal_of(db_error(e, &msg.key, &target.label(), None), rec);
        let column = match &refusal {
            WorkerError::Database { column, .. } => column.clone(),
            _ => None,
        };
        txn.execute(
            &state::insert_reject_sql(&ctx.state_schema),
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

/// PostgreSQL's refusal of one record of a segment, said of the file's record and line rather
/// than of the statement's line.
fn refusal_of(e: WorkerError, rec: &SegmentRecord) -> WorkerError {
    match e {
        WorkerError::Database {
            key,
            table,
            message,
            sqlstate,
            column,
            value,
            transient,
            ..
        } => WorkerError::Database {
            key,
            table,
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
    }
}

/// Fails the file when it has more rejects than its rules allow.
pub(super) fn check_reject_limits(
    rules: &TableRules,
    key: &str,
    rejected: u64,
    read: u64,
) -> Result<(), WorkerError> {
    let too_many = |limit: String| WorkerError::TooManyRejects {
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
