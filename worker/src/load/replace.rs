//! The end of a full-load generation: once the ledger holds every `LOAD` file of the generation,
//! remove (or flag) the table's rows that the generation did not contain and no newer change
//! wrote, once per generation, in one transaction under the table's merge lock.
//!
//! Must not: replace a generation whose files are not all in the ledger, or twice
//! (`<state>.generations`).

use super::prepare::{connect, lock_merges, prepared_target};

use super::context::LoadContext;
use crate::db::db_error;
use crate::error::WorkerError;
use crate::sql;
use crate::target;
use sluice_common::message::ReplaceMessage;
use sluice_common::rules::FullLoad;
use sluice_common::warehouse::state;
use std::time::SystemTime;

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
) -> Result<ReplaceOutcome, WorkerError> {
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
        .ok_or_else(|| WorkerError::Rules {
            key: key.to_owned(),
            message: format!("generation start {:?} is not an RFC 3339 time", msg.start),
        })?;
    let mut client = connect(ctx, key, &target_label).await?;
    let soft = rules.soft_delete.as_deref();
    prepared_target(ctx, &mut client, &schema, &table, soft, key).await?;
    let keys = client
        .query(
            &state::generation_files_sql(&ctx.state_schema),
            &[&msg.bucket, &msg.folder, &start],
        )
        .await
        .map_err(pg)?;
    let found = state::count_full_loads(keys.iter().map(|r| r.get::<_, &str>(0)));
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
            &state::generation_claim_sql(&ctx.state_schema),
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
        &state::generation_done_sql(&ctx.state_schema),
        &[&target.label(), &msg.generation, &rows_removed],
    )
    .await
    .map_err(pg)?;
    txn.commit().await.map_err(pg)?;
    Ok(ReplaceOutcome::Replaced { rows_removed })
}
