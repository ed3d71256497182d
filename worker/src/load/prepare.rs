//! What a target needs before its first load in this process: a pooled connection, and the
//! system columns, soft-delete flag or tombstone table of the version guard, added in a short
//! transaction of their own under the table's merge lock and cached per process.
//!
//! Must not: run DDL inside a file's transaction (adding a column takes an exclusive lock that
//! would block every reader of the table for the whole load).

use super::context::LoadContext;
use crate::db::{self, db_error};
use crate::error::WorkerError;
use crate::sql;
use crate::target;
use std::time::{Duration, Instant};

/// A pooled connection; failing to get one is transient, an outage when the database refused
/// or dropped it (it may be restarting, read-only or refusing the credentials).
pub(super) async fn connect(
    ctx: &LoadContext,
    key: &str,
    table: &str,
) -> Result<deadpool_postgres::Object, WorkerError> {
    ctx.pool
        .get()
        .await
        .map_err(|e| crate::db::pool_error(e, key, table))
}

/// Makes sure this process has prepared a target for the version guard; returns the oid it had
/// then. A prepared target costs no query here.
pub(super) async fn prepared_target(
    ctx: &LoadContext,
    client: &mut deadpool_postgres::Object,
    schema: &str,
    table: &str,
    soft: Option<&str>,
    key: &str,
) -> Result<u32, WorkerError> {
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

/// Adds the system columns, the soft-delete flag or the tombstone table to a target, under
/// its merge lock, in a transaction of its own. Idempotent. Its DDL waits for the table's
/// exclusive lock at most the session's `lock_timeout`: readers queue behind a waiting
/// `ALTER TABLE`, so it gives up early ([`WorkerError::LockTimeout`]) and the load retries.
pub(super) async fn prepare(
    ctx: &LoadContext,
    client: &mut deadpool_postgres::Object,
    target: &sql::TargetTable,
    soft: Option<&str>,
    key: &str,
) -> Result<(), WorkerError> {
    let state_schema = ctx.state_schema.as_str();
    let err = |e: tokio_postgres::Error| {
        let mut e = db_error(e, key, &target.label(), None);
        if let WorkerError::Database { message, .. } = &mut e {
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
/// (zero: no limit); a wait that runs out is [`WorkerError::LockTimeout`], naming the lock.
pub(super) async fn lock_merges(
    txn: &deadpool_postgres::Transaction<'_>,
    target: &sql::TargetTable,
    key: &str,
    timeout: Duration,
) -> Result<(), WorkerError> {
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
