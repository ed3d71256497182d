//! The end of a file's transaction: the ledger's counts, then `COMMIT`; and the ledger's answer
//! when the answer to `COMMIT` was lost.

use super::context::{Attempt, LoadContext, LoadOutcome, LoadStats};
use crate::db::db_error;
use crate::error::WorkerError;
use sluice_common::message::FileMessage;
use sluice_common::warehouse::state;
use std::time::Instant;

/// Records the load's counts on its ledger row, then commits. When the answer to `COMMIT` is
/// lost (the connection broke), the ledger says whether it took effect.
pub(super) async fn commit(
    ctx: &LoadContext,
    msg: &FileMessage,
    txn: deadpool_postgres::Transaction<'_>,
    file_id: i64,
    stats: LoadStats,
) -> Result<Attempt, WorkerError> {
    let table = stats.target.clone();
    txn.execute(
        &state::ledger_counts_sql(&ctx.state_schema),
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

/// Whether the ledger holds the file, asked on a fresh connection.
pub async fn ledger_has(ctx: &LoadContext, msg: &FileMessage) -> Result<bool, WorkerError> {
    let table = msg.source_table();
    let client = ctx
        .pool
        .get()
        .await
        .map_err(|e| crate::db::pool_error(e, &msg.key, &table))?;
    in_ledger(&client, ctx, msg, &table).await
}

/// Whether the ledger holds the file (`table`: the target, for errors), on `client`.
pub(super) async fn in_ledger(
    client: &tokio_postgres::Client,
    ctx: &LoadContext,
    msg: &FileMessage,
    table: &str,
) -> Result<bool, WorkerError> {
    let rows = client
        .query(
            &state::ledger_exists_sql(&ctx.state_schema),
            &[&msg.bucket, &msg.key, &msg.etag],
        )
        .await
        .map_err(|e| db_error(e, &msg.key, table, None))?;
    Ok(!rows.is_empty())
}
