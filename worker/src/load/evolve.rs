//! Schema drift (`new_columns = "add"`): a file that names columns its target lacks (a CSV
//! header, a Parquet schema) has them added to the target, then loads as usual.
//!
//! ```text
//!   load the file (transaction.rs)   -> its layout names columns the target lacks:
//!                                       WorkerError::NewColumns before any COPY; ROLLBACK
//!   BEGIN                            (a short transaction of its own)
//!     lock the table's merges        (the same advisory lock the merges take)
//!     the catalog again              (another worker may have added them meanwhile)
//!     ALTER TABLE ... ADD COLUMN IF NOT EXISTS "name" type, ...   (only the missing ones)
//!   COMMIT                           -> log event, metric
//!   load the file again              -> LoadStats::columns_added, for the manifest history
//! ```
//!
//! Invariants: columns are only added, never changed or dropped (`sql::evolve`); a name from
//! a file reaches SQL only after `sql::evolve::refusal` (length, control characters, `_sluice_*`,
//! PostgreSQL's system columns, the soft-delete flag) and quoted; two workers adding the same
//! column end with one (the merge lock serialises them, the second finds it in the catalog, and
//! `IF NOT EXISTS` covers anyone who adds it without the lock); no DDL runs inside a file's
//! transaction, and the DDL waits for the table's lock at most the session's `lock_timeout`
//! (readers queue behind a waiting `ALTER TABLE`), failing as a transient `lock_timeout`.
//!
//! Cost: nothing for a file whose columns the target has. The file that brings a column is read
//! twice (the first read stops at its header, or, for Parquet, after its download).

use super::context::{FileLoad, LoadContext, LoadOutcome};
use super::prepare::{connect, lock_merges};
use crate::db::{self, db_error};
use crate::error::WorkerError;
use crate::sql::evolve::{self as sql, AddedColumn, NewColumn};
use crate::target;
use sluice_common::message::FileMessage;
use sluice_common::metrics as m;
use std::time::Instant;
use tracing::info;

/// Applies one file (see [`super::transaction::load_file`]), adding first the columns it names
/// that its target lacks where the table's rules say `new_columns = "add"`.
pub async fn load_file(ctx: &LoadContext, msg: &FileMessage) -> Result<LoadOutcome, WorkerError> {
    let columns = match super::transaction::load_file(ctx, msg).await {
        Err(WorkerError::NewColumns { columns, .. }) => columns,
        other => return other,
    };
    let added = add_columns(ctx, msg, &columns).await?;
    Ok(match super::transaction::load_file(ctx, msg).await? {
        LoadOutcome::Loaded(mut stats) => {
            stats.columns_added = added;
            LoadOutcome::Loaded(stats)
        }
        other => other,
    })
}

/// The Parquet schema's types for the columns of a [`WorkerError::NewColumns`] (`types` is
/// called only then); any other error is returned as it is.
pub(super) fn typed(e: WorkerError, types: impl FnOnce() -> Vec<(String, String)>) -> WorkerError {
    match e {
        WorkerError::NewColumns {
            key,
            table,
            mut columns,
        } => {
            let types = types();
            for c in &mut columns {
                c.sql_type = types
                    .iter()
                    .find(|(n, _)| *n == c.name)
                    .map(|(_, t)| t.clone());
            }
            WorkerError::NewColumns {
                key,
                table,
                columns,
            }
        }
        other => other,
    }
}

/// Adds to the file's target, in a transaction of its own under the table's merge lock, those
/// of `columns` it still lacks; returns what this worker added (nothing when another did).
async fn add_columns(
    ctx: &LoadContext,
    msg: &FileMessage,
    columns: &[NewColumn],
) -> Result<Vec<AddedColumn>, WorkerError> {
    let load = FileLoad::new(ctx, msg)?;
    let (key, label, soft) = (load.key(), load.target_label.as_str(), load.soft());
    let err = |e: tokio_postgres::Error| {
        let mut e = db_error(e, key, label, None);
        if let WorkerError::Database { message, .. } = &mut e {
            message.push_str(&format!(
                " (while adding columns {} to {label} for new_columns = \"add\": the worker's \
                 role must own the table)",
                sql::names(columns)
            ));
        }
        e
    };
    let mut client = connect(ctx, key, label).await?;
    let txn = client.transaction().await.map_err(err)?;
    let before = target::resolve(&txn, &load.schema, &load.table, soft, key).await?;
    lock_merges(&txn, &before, key, ctx.merge_lock_timeout).await?;
    let target = target::resolve(&txn, &load.schema, &load.table, soft, key).await?;
    let every: Vec<String> = txn
        .query(sql::EVERY_COLUMN_SQL, &[&target.oid])
        .await
        .map_err(err)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let default_type = load.rules.new_column_type.as_deref();
    let plan = sql::plan(&target, &every, columns, soft, default_type).map_err(|r| {
        WorkerError::RefusedColumn {
            key: key.to_owned(),
            table: label.to_owned(),
            column: r.name,
            rule: r.rule,
        }
    })?;
    if plan.add.is_empty() {
        txn.commit().await.map_err(err)?;
        return Ok(Vec::new());
    }
    let started = Instant::now();
    txn.batch_execute(&sql::add_columns_sql(&target, &plan.add))
        .await
        .map_err(|e| {
            if e.code() == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE) {
                let lock = format!("the lock on {label} to add columns {}", sql::names(columns));
                db::lock_error(e, key, label, &lock, started.elapsed())
            } else {
                err(e)
            }
        })?;
    txn.commit().await.map_err(err)?;
    let described = sql::describe(&plan.add);
    info!(target_table = %label, columns = %described, "columns added to the target table");
    m::inc(&m::COLUMNS_ADDED, &[], plan.add.len() as u64);
    Ok(plan.add)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parquet_types_fill_only_the_new_columns_error() {
        let e = WorkerError::NewColumns {
            key: "k".into(),
            table: "s.t".into(),
            columns: vec![
                NewColumn {
                    name: "score".into(),
                    sql_type: None,
                },
                NewColumn {
                    name: "odd".into(),
                    sql_type: None,
                },
            ],
        };
        let types = || {
            vec![
                ("id".into(), "integer".into()),
                ("score".into(), "bigint".into()),
            ]
        };
        match typed(e, types) {
            WorkerError::NewColumns { columns, .. } => {
                assert_eq!(columns[0].sql_type.as_deref(), Some("bigint"));
                assert_eq!(columns[1].sql_type, None);
            }
            other => panic!("{other}"),
        }
        let other = WorkerError::NoPrimaryKey {
            table: "s.t".into(),
        };
        let called = std::cell::Cell::new(false);
        let back = typed(other, || {
            called.set(true);
            Vec::new()
        });
        assert!(matches!(back, WorkerError::NoPrimaryKey { .. }) && !called.get());
    }
}
