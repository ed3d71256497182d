//! The operator's moves: `retry`, `reload` and `skip`, and the selections they share.
//!
//! Invariants:
//! - every move is a conditional manifest write, conditioned on the item being exactly as the
//!   operator was shown it (same status, same `updated_at`): an item that moved in between is
//!   reported as refused, never overwritten;
//! - manifest first, then the message (as in a scan pass): an item moved to `queued` whose
//!   message was not sent is re-enqueued by the next pass once `--requeue-after` has passed;
//! - `reload` deletes the ledger rows first (one transaction), then moves the items
//!   `loaded -> queued`, then sends; a crash in between leaves items `loaded` without a ledger
//!   row, which `skipped` reports and a second `reload` repairs;
//! - `retry` and `reload` start a fresh round of attempts (see `sluice_common::store`);
//! - nothing changes without `--yes` (the commands print what they would do).
//!
//! Which index answers what: open statuses by time range -> `open-index` (sort key
//! `updated_at`); a table's files of one status by time range -> `table-index` (sort key
//! `status#updated_at`); loaded files under a key prefix wider than one table -> the ledger's
//! rows (in PostgreSQL), then their manifest items by key. No move reads every loaded item.

use super::{human_bytes, Ops, Scope};
use crate::error::CoordinatorError;
use crate::scan::{message_for_item, send_batch};
use serde::Serialize;
use sluice_common::config::SourceLocation;
use sluice_common::manifest::{Changes, Operator};
use sluice_common::manifest::{ManifestItem, Status, Transition};
use sluice_common::mapping::map_key;
use sluice_common::message::FileMessage;
use sluice_common::store::Moved;
use sluice_common::timefmt;
use std::collections::BTreeMap;
use std::time::Duration;
use time::OffsetDateTime;

/// Which items a move is about: statuses, then filters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Selection {
    pub statuses: Vec<Status>,
    #[serde(flatten)]
    pub scope: Scope,
    /// Case-insensitive text in the error class or message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The item's last change at or after this time (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// The item's last change at or before this time (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
}

/// Why a candidate was left out of a move.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Excluded {
    /// `discovered`/`queued`/`loading`, changed less than the stuck threshold ago.
    InProgress,
    /// Its key does not name a loadable file under the lake's prefix: no message can be built.
    NotLoadable,
}

impl Excluded {
    pub fn describe(self) -> &'static str {
        match self {
            Excluded::InProgress => "in progress (changed less than --requeue-after ago)",
            Excluded::NotLoadable => {
                "not a loadable file under the lake's prefix (no message can be built)"
            }
        }
    }
}

/// Whether an item passes the selection's filters (statuses excepted: they chose the query).
pub fn matches(sel: &Selection, item: &ManifestItem) -> bool {
    if !sel.scope.holds(&item.key, &item.table) {
        return false;
    }
    if let Some(text) = &sel.error {
        let needle = text.to_lowercase();
        let hit = item.error.as_ref().is_some_and(|e| {
            e.class.to_lowercase().contains(&needle) || e.message.to_lowercase().contains(&needle)
        });
        if !hit {
            return false;
        }
    }
    let updated = item.updated_at.as_deref().unwrap_or("");
    if sel.since.as_deref().is_some_and(|s| updated < s) {
        return false;
    }
    if sel.until.as_deref().is_some_and(|u| updated > u) {
        return false;
    }
    true
}

/// Whether an in-progress item (`discovered`/`queued`/`loading`) is stuck: unchanged (and, while
/// loading, without a heartbeat of its worker) for at least `stuck_after`. Other statuses are
/// never "in progress".
pub fn is_stuck(item: &ManifestItem, now: OffsetDateTime, stuck_after: Duration) -> bool {
    match item.status {
        Some(Status::Discovered | Status::Queued | Status::Loading) => {
            let age = item
                .last_active()
                .and_then(|u| timefmt::age(u, now))
                .unwrap_or(time::Duration::MAX);
            age >= time::Duration::try_from(stuck_after).unwrap_or(time::Duration::MAX)
        }
        _ => true,
    }
}

/// Splits candidates into the selected ones and the excluded ones, with why. Pure.
pub fn select(
    candidates: Vec<ManifestItem>,
    sel: &Selection,
    lake_prefix: &str,
    now: OffsetDateTime,
    stuck_after: Duration,
) -> (Vec<ManifestItem>, Vec<(ManifestItem, Excluded)>) {
    let mut chosen = Vec::new();
    let mut excluded = Vec::new();
    for item in candidates {
        if !item.status.is_some_and(|s| sel.statuses.contains(&s)) || !matches(sel, &item) {
            continue;
        }
        if !is_stuck(&item, now, stuck_after) {
            excluded.push((item, Excluded::InProgress));
        } else if map_key(lake_prefix, &item.key).is_err() {
            excluded.push((item, Excluded::NotLoadable));
        } else {
            chosen.push(item);
        }
    }
    chosen.sort_by(|a, b| (&a.key, &a.etag).cmp(&(&b.key, &b.etag)));
    (chosen, excluded)
}

/// What a move would do, or did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MovePlan {
    pub command: &'static str,
    pub selection: Selection,
    pub files: Vec<ManifestItem>,
    pub bytes: i64,
    pub excluded: Vec<ExcludedFile>,
    /// Notes on how the items were found (which index, or the ledger).
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ExcludedFile {
    pub key: String,
    pub etag: String,
    pub status: Option<Status>,
    pub why: Excluded,
}

/// What applying a plan did.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct MoveResult {
    /// Items moved in the manifest.
    pub moved: usize,
    /// Items that changed since they were listed, with their status now; left alone.
    pub refused: Vec<(String, String, Option<Status>)>,
    /// Ledger rows deleted (`reload`).
    pub ledger_rows_deleted: u64,
    pub sent: usize,
    pub send_failed: usize,
}

fn plan_from(
    command: &'static str,
    sel: &Selection,
    files: Vec<ManifestItem>,
    excluded: Vec<(ManifestItem, Excluded)>,
    notes: Vec<String>,
) -> MovePlan {
    MovePlan {
        command,
        selection: sel.clone(),
        bytes: files.iter().map(|i| i.size).sum(),
        files,
        excluded: excluded
            .into_iter()
            .map(|(i, why)| ExcludedFile {
                key: i.key,
                etag: i.etag,
                status: i.status,
                why,
            })
            .collect(),
        notes,
    }
}

/// The statuses `retry` takes by default.
pub const RETRY_DEFAULT: [Status; 2] = [Status::Failed, Status::Dead];

/// Finds what `retry` would re-enqueue.
pub async fn plan_retry(ops: &Ops, sel: &Selection) -> Result<MovePlan, CoordinatorError> {
    let source = ops.source("retry")?;
    if let Some(s) = sel.statuses.iter().find(|s| !s.is_open()) {
        return Err(CoordinatorError::Usage(format!(
            "retry does not take {s} files: use `reload` to load loaded files again"
        )));
    }
    sel.scope.key_prefix(&source.prefix)?;
    let mut candidates = Vec::new();
    let mut notes = Vec::new();
    let table = sel.scope.table_of_prefix(&source.prefix);
    for &status in &sel.statuses {
        match &table {
            Some(t) => candidates.extend(
                ops.store
                    .list_table_between(t, status, sel.since.as_deref(), sel.until.as_deref())
                    .await?,
            ),
            None => candidates.extend(
                ops.store
                    .list_open_between(status, sel.since.as_deref(), sel.until.as_deref())
                    .await?,
            ),
        }
    }
    notes.push(match &table {
        Some(t) => format!("read from table-index: table {t}, by status"),
        None => "read from open-index (files not loaded), by status".to_owned(),
    });
    let (files, excluded) = select(
        candidates,
        sel,
        &source.prefix,
        OffsetDateTime::now_utc(),
        ops.policy.requeue_after,
    );
    Ok(plan_from("retry", sel, files, excluded, notes))
}

/// Finds what `reload` would load again: `loaded` files of a table, or under a key prefix.
pub async fn plan_reload(ops: &Ops, sel: &Selection) -> Result<MovePlan, CoordinatorError> {
    let source = ops.source("reload")?;
    let ledger = ops.ledger("reload")?;
    if sel.scope.is_everything() {
        return Err(CoordinatorError::Usage(
            "reload needs --table schema.table or --prefix KEY_PREFIX: it does not reload the whole lake by accident".to_owned(),
        ));
    }
    let prefix = sel.scope.key_prefix(&source.prefix)?;
    let mut notes = Vec::new();
    let candidates = match sel.scope.table_of_prefix(&source.prefix) {
        Some(t) => {
            notes.push(format!(
                "read from table-index: loaded files of {t} (no other table's items are read)"
            ));
            ops.store
                .list_table_between(
                    &t,
                    Status::Loaded,
                    sel.since.as_deref(),
                    sel.until.as_deref(),
                )
                .await?
        }
        None => {
            // Wider than one table: the ledger knows every loaded key; read their items by key.
            let rows = ledger.under(&source.bucket, &prefix).await?;
            notes.push(format!(
                "found through the ledger: {} rows under {prefix}, then their manifest items by key \
                 (manifest items marked loaded without a ledger row are not found this way: reload them by --table)",
                rows.len()
            ));
            let pairs: Vec<(String, String)> = rows.into_iter().map(|r| (r.key, r.etag)).collect();
            let found = ops.store.lookup(&pairs).await?;
            let mut items: Vec<ManifestItem> = found.into_values().collect();
            items.retain(|i| i.status == Some(Status::Loaded));
            items
        }
    };
    let sel = Selection {
        statuses: vec![Status::Loaded],
        ..sel.clone()
    };
    let (files, excluded) = select(
        candidates,
        &sel,
        &source.prefix,
        OffsetDateTime::now_utc(),
        ops.policy.requeue_after,
    );
    Ok(plan_from("reload", &sel, files, excluded, notes))
}

/// Applies a retry plan: each item -> `queued` (a fresh round of attempts), then its message.
pub async fn apply_retry(
    ops: &Ops,
    plan: &MovePlan,
    who: &str,
    reason: Option<&str>,
) -> Result<MoveResult, CoordinatorError> {
    let source = ops.source("retry")?.clone();
    let queue_url = ops.queue_url("retry")?.to_owned();
    let mut result = MoveResult::default();
    let by = Operator {
        who: who.to_owned(),
        reason: reason.map(str::to_owned),
    };
    let to_send = move_items(ops, plan, (Transition::Retry, &by), &source, &mut result).await?;
    send_all(ops, &queue_url, &to_send, &mut result).await?;
    Ok(result)
}

/// Applies a reload plan: ledger rows deleted (one transaction), items `loaded -> queued`,
/// messages sent.
pub async fn apply_reload(
    ops: &Ops,
    plan: &MovePlan,
    who: &str,
    reason: Option<&str>,
) -> Result<MoveResult, CoordinatorError> {
    let source = ops.source("reload")?.clone();
    let queue_url = ops.queue_url("reload")?.to_owned();
    let ledger = ops.ledger("reload")?;
    let mut result = MoveResult::default();
    let mut by_bucket: BTreeMap<&str, Vec<(String, String)>> = BTreeMap::new();
    for i in &plan.files {
        let bucket = if i.bucket.is_empty() {
            source.bucket.as_str()
        } else {
            i.bucket.as_str()
        };
        by_bucket
            .entry(bucket)
            .or_default()
            .push((i.key.clone(), i.etag.clone()));
    }
    for (bucket, pairs) in &by_bucket {
        result.ledger_rows_deleted += ledger.delete(bucket, pairs).await?;
    }
    let by = Operator {
        who: who.to_owned(),
        reason: reason.map(str::to_owned),
    };
    let to_send = move_items(ops, plan, (Transition::Reload, &by), &source, &mut result).await?;
    send_all(ops, &queue_url, &to_send, &mut result).await?;
    Ok(result)
}

/// Makes an operator's move (`transition`, by whom and why) on each file of the plan that has
/// not moved since the plan was shown; returns the messages to send for those that moved.
async fn move_items(
    ops: &Ops,
    plan: &MovePlan,
    (transition, by): (Transition, &Operator),
    source: &SourceLocation,
    result: &mut MoveResult,
) -> Result<Vec<FileMessage>, CoordinatorError> {
    let mut to_send = Vec::new();
    for item in &plan.files {
        let Some(message) = message_for_item(source, item) else {
            continue;
        };
        let changes = Changes {
            operator: Some(by.clone()),
            expect_updated_at: item.updated_at.clone(),
            ..Changes::default()
        };
        match ops
            .store
            .transition(&item.key, &item.etag, transition, changes)
            .await?
        {
            Moved::Applied(_) => {
                result.moved += 1;
                to_send.push(message);
            }
            Moved::Refused(now) => result.refused.push((
                item.key.clone(),
                item.etag.clone(),
                now.and_then(|i| i.status),
            )),
        }
    }
    Ok(to_send)
}

async fn send_all(
    ops: &Ops,
    queue_url: &str,
    messages: &[FileMessage],
    result: &mut MoveResult,
) -> Result<(), CoordinatorError> {
    for batch in messages.chunks(10) {
        let (sent, failed) = send_batch(&ops.aws.sqs, queue_url, batch).await;
        result.send_failed += failed.len();
        for (m, id) in sent {
            result.sent += 1;
            // false: a worker already took it, which is fine.
            ops.store.record_message_id(&m.key, &m.etag, &id).await?;
        }
    }
    Ok(())
}

/// What `skip` did to each version of the key.
#[derive(Debug, Clone, Serialize)]
pub struct SkipResult {
    pub skipped: Vec<ManifestItem>,
    /// Versions left alone, with their status (loaded, loading, already skipped).
    pub left: Vec<(String, Option<Status>)>,
}

/// Marks a key's versions (or one, with `etag`) as deliberately skipped, recording who and why.
/// Only versions that are not loaded, not being loaded and not skipped already are moved.
pub async fn skip(
    ops: &Ops,
    key: &str,
    etag: Option<&str>,
    reason: &str,
    who: &str,
) -> Result<SkipResult, CoordinatorError> {
    if reason.trim().is_empty() {
        return Err(CoordinatorError::Usage(
            "skip needs --reason: say why the file is not loaded".to_owned(),
        ));
    }
    let versions = ops.store.history(key).await?;
    if versions.is_empty() {
        return Err(CoordinatorError::Usage(format!(
            "no manifest item for key {key}: only files the manifest knows can be skipped (run scan first)"
        )));
    }
    let mut out = SkipResult {
        skipped: Vec::new(),
        left: Vec::new(),
    };
    let mut matched = false;
    for v in versions {
        if etag.is_some_and(|e| e != v.etag) {
            continue;
        }
        matched = true;
        if !Transition::Skip.allows(v.status) {
            out.left.push((v.etag.clone(), v.status));
            continue;
        }
        let changes = Changes {
            operator: Some(Operator {
                who: who.to_owned(),
                reason: Some(reason.to_owned()),
            }),
            expect_updated_at: v.updated_at.clone(),
            ..Changes::default()
        };
        match ops
            .store
            .transition(key, &v.etag, Transition::Skip, changes)
            .await?
        {
            Moved::Applied(item) => out.skipped.push(item),
            Moved::Refused(now) => out.left.push((v.etag.clone(), now.and_then(|i| i.status))),
        }
    }
    if !matched {
        return Err(CoordinatorError::Usage(format!(
            "key {key} has no version with etag {}",
            etag.unwrap_or_default()
        )));
    }
    Ok(out)
}

/// A plan, for a terminal: what would be (or was) moved, and what was left out.
pub fn format_plan(plan: &MovePlan, applied: bool) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let verb = match plan.command {
        "reload" => "load again",
        _ => "re-enqueue",
    };
    for n in &plan.notes {
        let _ = writeln!(out, "note: {n}");
    }
    let _ = writeln!(
        out,
        "{} {} files ({}) to {verb}",
        if applied { "selected" } else { "would select" },
        plan.files.len(),
        human_bytes(plan.bytes),
    );
    if !plan.files.is_empty() {
        let _ = writeln!(
            out,
            "  {:<8} {:>3} {:<24} {:>10}  KEY (ETAG) / LAST ERROR",
            "STATUS", "TRY", "UPDATED", "BYTES"
        );
    }
    for i in &plan.files {
        let _ = writeln!(
            out,
            "  {:<8} {:>3} {:<24} {:>10}  {} ({})",
            i.status.map(|s| s.as_str()).unwrap_or("?"),
            i.attempts,
            i.updated_at.as_deref().unwrap_or(""),
            i.size,
            i.key,
            i.etag
        );
        if let Some(e) = &i.error {
            let _ = writeln!(out, "  {:>50}{}: {}", "", e.class, e.message);
        }
    }
    for e in &plan.excluded {
        let _ = writeln!(
            out,
            "  left out: {} ({}), {}: {}",
            e.key,
            e.etag,
            e.status.map(|s| s.as_str()).unwrap_or("?"),
            e.why.describe()
        );
    }
    out
}

pub fn format_result(plan: &MovePlan, r: &MoveResult) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let moved = match plan.command {
        "reload" => format!(
            "reload: {} ledger rows deleted, {} files loaded -> queued",
            r.ledger_rows_deleted, r.moved
        ),
        _ => format!("retry: {} files -> queued (attempts restart at 0)", r.moved),
    };
    let _ = writeln!(
        out,
        "{moved}, {} messages sent, {} not sent, {} refused",
        r.sent,
        r.send_failed,
        r.refused.len()
    );
    for (k, e, s) in &r.refused {
        let _ = writeln!(
            out,
            "  refused (changed since it was listed, now {}): {k} ({e})",
            s.map(|s| s.as_str()).unwrap_or("missing")
        );
    }
    if r.send_failed > 0 {
        let _ = writeln!(
            out,
            "  files whose message was not sent stay queued; the coordinator's next pass re-enqueues them after --requeue-after"
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::human_duration;
    use super::*;
    use sluice_common::manifest::FileError;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2024-10-29 12:00 UTC);
    const TEN_MIN: Duration = Duration::from_secs(600);

    fn item(key: &str, status: Status, updated: &str) -> ManifestItem {
        ManifestItem {
            key: key.into(),
            etag: "e".into(),
            table: sluice_common::mapping::map_key("dms/", key)
                .map(|f| f.source_table())
                .unwrap_or_default(),
            status: Some(status),
            updated_at: Some(updated.into()),
            size: 10,
            ..Default::default()
        }
    }

    fn failed(key: &str, class: &str, message: &str) -> ManifestItem {
        let mut i = item(key, Status::Failed, "2024-10-29T11:00:00.000Z");
        i.error = Some(FileError {
            class: class.into(),
            message: message.into(),
            ..Default::default()
        });
        i
    }

    fn keys(items: &[ManifestItem]) -> Vec<&str> {
        items.iter().map(|i| i.key.as_str()).collect()
    }

    #[test]
    fn statuses_choose_and_filters_narrow() {
        let items = vec![
            failed("dms/s/a/1.csv", "unknown_table", "no table s.a"),
            failed("dms/s/b/1.csv", "column_count", "record 3 has 2 fields"),
            item("dms/s/a/2.csv", Status::Dead, "2024-10-29T10:00:00.000Z"),
            item("dms/s/a/3.csv", Status::Skipped, "2024-10-29T10:00:00.000Z"),
        ];
        let sel = Selection {
            statuses: RETRY_DEFAULT.to_vec(),
            ..Default::default()
        };
        let (chosen, excluded) = select(items.clone(), &sel, "dms/", NOW, TEN_MIN);
        assert_eq!(
            keys(&chosen),
            vec!["dms/s/a/1.csv", "dms/s/a/2.csv", "dms/s/b/1.csv"]
        );
        assert!(excluded.is_empty());

        let by_table = Selection {
            scope: Scope {
                table: Some("s.a".into()),
                prefix: None,
            },
            ..sel.clone()
        };
        let (chosen, _) = select(items.clone(), &by_table, "dms/", NOW, TEN_MIN);
        assert_eq!(keys(&chosen), vec!["dms/s/a/1.csv", "dms/s/a/2.csv"]);

        let by_error = Selection {
            error: Some("FIELDS".into()),
            ..sel.clone()
        };
        let (chosen, _) = select(items.clone(), &by_error, "dms/", NOW, TEN_MIN);
        assert_eq!(keys(&chosen), vec!["dms/s/b/1.csv"]);
        let by_class = Selection {
            error: Some("unknown_table".into()),
            ..sel.clone()
        };
        assert_eq!(
            keys(&select(items.clone(), &by_class, "dms/", NOW, TEN_MIN).0),
            vec!["dms/s/a/1.csv"]
        );

        let by_prefix = Selection {
            scope: Scope {
                table: None,
                prefix: Some("dms/s/a/2".into()),
            },
            ..sel.clone()
        };
        assert_eq!(
            keys(&select(items.clone(), &by_prefix, "dms/", NOW, TEN_MIN).0),
            vec!["dms/s/a/2.csv"]
        );

        let by_time = Selection {
            since: Some("2024-10-29T10:30:00.000Z".into()),
            until: Some("2024-10-29T11:30:00.000Z".into()),
            ..sel.clone()
        };
        assert_eq!(
            keys(&select(items.clone(), &by_time, "dms/", NOW, TEN_MIN).0),
            vec!["dms/s/a/1.csv", "dms/s/b/1.csv"]
        );

        let skipped = Selection {
            statuses: vec![Status::Skipped],
            ..Default::default()
        };
        assert_eq!(
            keys(&select(items, &skipped, "dms/", NOW, TEN_MIN).0),
            vec!["dms/s/a/3.csv"]
        );
    }

    #[test]
    fn fresh_in_progress_files_and_unloadable_keys_are_left_out() {
        let items = vec![
            item("dms/s/a/1.csv", Status::Queued, "2024-10-29T11:58:00.000Z"),
            item("dms/s/a/2.csv", Status::Loading, "2024-10-29T11:00:00.000Z"),
            item("dms/notes.txt", Status::Dead, "2024-10-29T11:00:00.000Z"),
        ];
        let sel = Selection {
            statuses: vec![Status::Queued, Status::Loading, Status::Dead],
            ..Default::default()
        };
        let (chosen, excluded) = select(items, &sel, "dms/", NOW, TEN_MIN);
        assert_eq!(keys(&chosen), vec!["dms/s/a/2.csv"]);
        let why: Vec<(&str, Excluded)> =
            excluded.iter().map(|(i, w)| (i.key.as_str(), *w)).collect();
        assert_eq!(
            why,
            vec![
                ("dms/s/a/1.csv", Excluded::InProgress),
                ("dms/notes.txt", Excluded::NotLoadable)
            ]
        );
    }

    #[test]
    fn scopes_give_the_narrowest_prefix_and_the_table_they_lie_in() {
        let t = Scope {
            table: Some("s.orders".into()),
            prefix: None,
        };
        assert_eq!(t.key_prefix("dms/").unwrap(), "dms/s/orders/");
        assert_eq!(t.table_of_prefix("dms/").as_deref(), Some("s.orders"));
        let p = Scope {
            table: None,
            prefix: Some("dms/s/orders/2024/".into()),
        };
        assert_eq!(p.key_prefix("dms/").unwrap(), "dms/s/orders/2024/");
        assert_eq!(p.table_of_prefix("dms/").as_deref(), Some("s.orders"));
        let wide = Scope {
            table: None,
            prefix: Some("dms/s/ord".into()),
        };
        assert_eq!(wide.table_of_prefix("dms/"), None);
        let both = Scope {
            table: Some("s.orders".into()),
            prefix: Some("dms/s/".into()),
        };
        assert_eq!(both.key_prefix("dms/").unwrap(), "dms/s/orders/");
        let clash = Scope {
            table: Some("s.orders".into()),
            prefix: Some("dms/x/".into()),
        };
        assert!(clash.key_prefix("dms/").is_err());
        let outside = Scope {
            table: None,
            prefix: Some("other/".into()),
        };
        assert!(outside.key_prefix("dms/").is_err());
        assert!(Scope {
            table: Some("nodot".into()),
            prefix: None
        }
        .key_prefix("dms/")
        .is_err());
        assert!(Scope::default().holds("anything", ""));
        assert!(!t.holds("dms/s/orders/1.csv", "s.other"));
    }

    #[test]
    fn human_units() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KB");
        assert_eq!(human_bytes(5 * 1024 * 1024 * 1024), "5.0 GB");
        assert_eq!(human_duration(45), "45s");
        assert_eq!(human_duration(200), "3m 20s");
        assert_eq!(human_duration(7500), "2h 5m");
        assert_eq!(human_duration(3 * 86400 + 4 * 3600 + 5), "3d 4h");
    }
}
