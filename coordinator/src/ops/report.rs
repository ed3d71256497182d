//! `manifest list`, `manifest show` and `manifest summary`: what an operator reads.
//!
//! Which index answers what: by status (not `loaded`) -> the sparse `open-index`; by table (and
//! status) -> `table-index`; one key -> the base table. `loaded` files without a table, and the
//! summary's loaded count, need a full scan, and the output says so.

use crate::error::CoordinatorError;
use sluice_common::manifest::{ManifestItem, Status};
use sluice_common::store::ManifestStore;
use std::collections::BTreeMap;
use std::fmt::Write;

/// Items matching the filters; the flag says whether a full scan was needed.
pub async fn list(
    store: &ManifestStore,
    status: Option<Status>,
    table: Option<&str>,
    limit: Option<usize>,
) -> Result<(Vec<ManifestItem>, bool), CoordinatorError> {
    Ok(match (status, table) {
        (s, Some(t)) => (store.list_table(t, s, limit).await?, false),
        (Some(s), None) if s.is_open() => (store.list_open(s, limit).await?, false),
        (Some(s), None) => {
            let mut items = store.scan_all(None).await?;
            items.retain(|i| i.status == Some(s));
            if let Some(l) = limit {
                items.truncate(l);
            }
            (items, true)
        }
        (None, None) => {
            let mut items = Vec::new();
            for s in Status::ALL.into_iter().filter(|s| s.is_open()) {
                items.extend(store.list_open(s, limit).await?);
            }
            if let Some(l) = limit {
                items.truncate(l);
            }
            (items, false)
        }
    })
}

/// One line per item, aligned, for a terminal.
pub fn format_list(items: &[ManifestItem]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<10} {:>3} {:<28} {:<24} KEY (ETAG) / ERROR",
        "STATUS", "TRY", "TABLE", "UPDATED"
    );
    for i in items {
        let _ = writeln!(
            out,
            "{:<10} {:>3} {:<28} {:<24} {} ({})",
            i.status.map(|s| s.as_str()).unwrap_or("?"),
            i.attempts,
            i.table,
            i.updated_at.as_deref().unwrap_or(""),
            i.key,
            i.etag
        );
        if let Some(e) = &i.error {
            let _ = writeln!(out, "{:>44}{}: {}", "", e.class, e.message);
        }
    }
    out
}

/// Every version of a key with its whole story.
pub fn format_show(items: &[ManifestItem]) -> String {
    let mut out = String::new();
    for i in items {
        let _ = writeln!(out, "key:           {}", i.key);
        let _ = writeln!(out, "etag:          {}", i.etag);
        let _ = writeln!(
            out,
            "status:        {}",
            i.status.map(|s| s.as_str()).unwrap_or("?")
        );
        let _ = writeln!(out, "table:         {}", i.table);
        let _ = writeln!(out, "kind:          {}", i.kind);
        let _ = writeln!(
            out,
            "size:          {} bytes, last modified {}",
            i.size, i.last_modified
        );
        if i.attempts_before > 0 || i.retries > 0 {
            let _ = writeln!(
                out,
                "attempts:      {} this round, {} before ({} operator retries or reloads)",
                i.attempts, i.attempts_before, i.retries
            );
        } else {
            let _ = writeln!(out, "attempts:      {}", i.attempts);
        }
        if let Some(op) = &i.operator {
            let _ = writeln!(
                out,
                "operator:      {} by {} at {}{}",
                op.action,
                op.who,
                op.at,
                op.reason
                    .as_deref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            );
        }
        if let Some(w) = &i.worker {
            let _ = writeln!(out, "worker:        {w}");
        }
        if let Some(r) = &i.rows {
            let _ = writeln!(
                out,
                "rows:          {} read, {} merged, {} rejected",
                r.read, r.merged, r.rejected
            );
        }
        if let Some(t) = &i.timings {
            let _ = writeln!(
                out,
                "timings:       copy {} ms, merge {} ms, commit {} ms",
                t.copy_ms, t.merge_ms, t.commit_ms
            );
        }
        if let Some(e) = &i.error {
            let _ = writeln!(
                out,
                "error:         [{}{}] {}",
                e.class,
                if e.permanent { ", permanent" } else { "" },
                e.message
            );
            if let Some(s) = &e.sqlstate {
                let _ = writeln!(out, "  sqlstate:    {s}");
            }
            if e.record.is_some() || e.line.is_some() || e.column.is_some() {
                let _ = writeln!(
                    out,
                    "  at:          record {} line {} column {}",
                    e.record
                        .map(|v| v.to_string())
                        .unwrap_or_else(|| "?".into()),
                    e.line.map(|v| v.to_string()).unwrap_or_else(|| "?".into()),
                    e.column.as_deref().unwrap_or("?")
                );
            }
        }
        for (label, v) in [
            ("discovered", &i.discovered_at),
            ("enqueued", &i.enqueued_at),
            ("started", &i.started_at),
            ("finished", &i.finished_at),
        ] {
            if let Some(v) = v {
                let _ = writeln!(out, "{:<14} {v}", format!("{label}:"));
            }
        }
        let _ = writeln!(out, "history:");
        for h in &i.history {
            let _ = writeln!(out, "  {h}");
        }
        out.push('\n');
    }
    out
}

/// Counts by table and status, from a full scan.
pub async fn summary(
    store: &ManifestStore,
) -> Result<BTreeMap<String, BTreeMap<String, u64>>, CoordinatorError> {
    let mut by_table: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for i in store.scan_all(None).await? {
        let table = if i.table.is_empty() {
            "(unloadable)".to_owned()
        } else {
            i.table.clone()
        };
        let status = i.status.map(|s| s.as_str()).unwrap_or("?").to_owned();
        *by_table
            .entry(table)
            .or_default()
            .entry(status)
            .or_default() += 1;
    }
    Ok(by_table)
}

pub fn format_summary(s: &BTreeMap<String, BTreeMap<String, u64>>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{:<32} FILES BY STATUS", "TABLE");
    for (table, counts) in s {
        let parts: Vec<String> = counts.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let _ = writeln!(out, "{:<32} {}", table, parts.join(" "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_common::manifest::FileError;

    #[test]
    fn list_shows_errors_under_their_file() {
        let item = ManifestItem {
            key: "dms/s/t/LOAD00000001.csv".into(),
            etag: "e1".into(),
            table: "s.t".into(),
            status: Some(Status::Failed),
            attempts: 2,
            error: Some(FileError {
                class: "unknown_table".into(),
                message: "no target table s.t".into(),
                permanent: true,
                ..Default::default()
            }),
            ..Default::default()
        };
        let text = format_list(std::slice::from_ref(&item));
        assert!(text.contains("failed"), "{text}");
        assert!(text.contains("dms/s/t/LOAD00000001.csv (e1)"), "{text}");
        assert!(
            text.contains("unknown_table: no target table s.t"),
            "{text}"
        );
        let show = format_show(std::slice::from_ref(&item));
        assert!(show.contains("[unknown_table, permanent]"), "{show}");
        assert!(show.contains("attempts:      2\n"), "{show}");
        let retried = ManifestItem {
            attempts: 0,
            attempts_before: 2,
            retries: 1,
            operator: Some(sluice_common::manifest::OperatorAction {
                action: "retry".into(),
                who: "alice".into(),
                reason: Some("table created".into()),
                at: "2024-10-29T11:00:00.000Z".into(),
            }),
            ..item
        };
        let show = format_show(&[retried]);
        assert!(
            show.contains("0 this round, 2 before (1 operator retries or reloads)"),
            "{show}"
        );
        assert!(
            show.contains("retry by alice at 2024-10-29T11:00:00.000Z: table created"),
            "{show}"
        );
    }
}
