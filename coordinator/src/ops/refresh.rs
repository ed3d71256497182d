//! `refresh --table T`: re-applies a table's current full-load generation, for a table damaged
//! by hand. Its `LOAD` files, and the CDC files written since it started, are reloaded (ledger rows deleted, items `loaded -> queued`,
//! messages sent) under a new generation name, `refresh@<time>`, recorded on every file's
//! manifest item; the first file's `replaced_at` is cleared, so once every file is loaded
//! again the coordinator's pass asks for the replacement, which removes the rows the
//! generation does not contain (rows inserted by hand) in one transaction. Files re-applied
//! carry their own versions: rows changed by hand are restored, rows deleted by hand come back,
//! and rows that newer CDC changed keep the newer values.
//!
//! Invariant: a generation still loading is never refreshed (it would not be complete anyway).

use super::moves::{self, MovePlan, MoveResult, Selection};
use super::{human_bytes, Ops};
use crate::error::CoordinatorError;
use crate::generation::Generation;
use crate::scan::{make_plan, ScanContext};
use serde::Serialize;
use sluice_common::manifest::{ManifestItem, Status};
use sluice_common::mapping::FileKind;
use sluice_common::store::Annotation;
use sluice_common::timefmt;

/// What a refresh would do.
#[derive(Debug, Clone, Serialize)]
pub struct RefreshPlan {
    /// Source table, `schema.table` as in the keys.
    pub table: String,
    /// Target table in PostgreSQL.
    pub target: String,
    /// The generation's start (LastModified of its first file).
    pub start: String,
    /// Its `LOAD` files (the first ones of `files`); the rest are CDC files written since.
    pub generation_files: usize,
    pub files: Vec<ManifestItem>,
    pub bytes: i64,
    /// Rows in the target now, when the database is reachable and the table exists.
    pub current_rows: Option<i64>,
}

/// Finds the table's current generation; refuses one that is still loading.
pub async fn plan_refresh(ops: &Ops, table: &str) -> Result<RefreshPlan, CoordinatorError> {
    let source = ops.source("refresh")?.clone();
    let queue_url = ops.queue_url("refresh")?.to_owned();
    let ledger = ops.ledger("refresh")?;
    let ctx = ScanContext {
        s3: ops.aws.s3.clone(),
        sqs: ops.aws.sqs.clone(),
        store: ops.store.clone(),
        source,
        queue_url,
        policy: ops.policy,
    };
    let (listing, plan) = make_plan(&ctx).await?;
    let Some(g) = plan
        .generations
        .into_iter()
        .map(|p| p.generation)
        .find(|g| g.source_table() == table)
    else {
        return Err(CoordinatorError::Usage(format!(
            "no LOAD files of {table} in the lake: nothing to refresh"
        )));
    };
    let Generation {
        members,
        start,
        schema,
        table: name,
        ..
    } = g;
    let mut pairs: Vec<(String, String)> = members
        .iter()
        .map(|o| (o.key.clone(), o.etag.clone()))
        .collect();
    let generation_files = pairs.len();
    // The CDC files written since the generation started: applied again too, so a row that
    // newer CDC changed, and that a hand then changed, gets the CDC's values back.
    let start_ms = timefmt::parse(&start)
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
        .unwrap_or(i64::MAX);
    for o in &listing {
        if let Ok(f) = &o.file {
            if let FileKind::Cdc { timestamp_ms } = f.kind {
                if f.schema == schema && f.table == name && timestamp_ms >= start_ms {
                    pairs.push((o.key.clone(), o.etag.clone()));
                }
            }
        }
    }
    let known = ops.store.lookup(&pairs).await?;
    let mut files = Vec::with_capacity(pairs.len());
    for pair in &pairs {
        match known.get(pair) {
            Some(item) if item.status == Some(Status::Loaded) => files.push(item.clone()),
            other => {
                return Err(CoordinatorError::Usage(format!(
                "{table}'s generation is still loading ({} is {}): refresh it once it is complete",
                pair.0,
                other
                    .and_then(|i| i.status)
                    .map_or("not in the manifest".to_owned(), |s| s.to_string())
            )))
            }
        }
    }
    let rules = ops.rules.for_table(table);
    let (tschema, ttable) = rules.target.unwrap_or((schema, name));
    let current_rows = ledger.count_rows(&tschema, &ttable).await?;
    Ok(RefreshPlan {
        table: table.to_owned(),
        target: format!("{tschema}.{ttable}"),
        start,
        generation_files,
        bytes: files.iter().map(|i| i.size).sum(),
        files,
        current_rows,
    })
}

/// Names the new generation on every file, clears the first file's replacement, and reloads
/// the files.
pub async fn apply_refresh(
    ops: &Ops,
    plan: &RefreshPlan,
    who: &str,
) -> Result<(String, MoveResult), CoordinatorError> {
    let label = format!("refresh@{}", timefmt::now());
    let mut head: Option<&ManifestItem> = None;
    for item in &plan.files[..plan.generation_files] {
        if head.is_none_or(|h| (&item.last_modified, &item.key) < (&h.last_modified, &h.key)) {
            head = Some(item);
        }
    }
    for item in &plan.files[..plan.generation_files] {
        let mut attrs = vec![("generation", Annotation::Text(label.clone()))];
        let mut note = None;
        if head.is_some_and(|h| h.key == item.key && h.etag == item.etag) {
            attrs.push(("replaced_at", Annotation::Remove));
            attrs.push(("replace_sent_at", Annotation::Remove));
            attrs.push(("rows_removed", Annotation::Remove));
            note = Some(format!("refresh by {who}: generation {label}"));
        }
        ops.store
            .annotate(&item.key, &item.etag, &attrs, note.as_deref())
            .await?;
    }
    let reload = MovePlan {
        command: "reload",
        selection: Selection {
            statuses: vec![Status::Loaded],
            ..Selection::default()
        },
        files: plan.files.clone(),
        bytes: plan.bytes,
        excluded: Vec::new(),
        notes: Vec::new(),
    };
    let result =
        moves::apply_reload(ops, &reload, who, Some(&format!("refresh ({label})"))).await?;
    Ok((label, result))
}

/// What `refresh` prints.
pub fn format_refresh(plan: &RefreshPlan, done: Option<&(String, MoveResult)>) -> String {
    let rows = plan
        .current_rows
        .map_or("unknown".to_owned(), |n| n.to_string());
    let mut out = format!(
        "{} -> {}: generation of {} ({} LOAD files and {} CDC files written since, {}); the table has {rows} rows now\n",
        plan.table,
        plan.target,
        plan.start,
        plan.generation_files,
        plan.files.len() - plan.generation_files,
        human_bytes(plan.bytes),
    );
    match done {
        None => out.push_str(
            "refresh reloads these files as a new generation and, once all are loaded, removes the rows they do not contain\nrun again with --yes to do it\n",
        ),
        Some((label, r)) => out.push_str(&format!(
            "generation {label}: {} ledger rows deleted, {} files re-enqueued ({} not sent); the replacement follows once they are loaded\n",
            r.ledger_rows_deleted, r.sent, r.send_failed
        )),
    }
    out
}
