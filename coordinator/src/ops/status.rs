//! `status`: per table and in total, files by state, bytes and rows, the queue's visible /
//! in-flight / dead-letter counts, the age of the oldest unloaded file, recent throughput and
//! an estimated time to drain. `--watch` redraws it with progress bars until the backlog is
//! empty.
//!
//! Where each figure comes from (none reads every loaded manifest item):
//! - files and bytes in every state but `loaded`: the manifest's sparse `open-index`;
//! - loaded files, their rows and the recent throughput: the ledger in PostgreSQL (one
//!   aggregate over the bucket's ledger rows, keys under the scope's prefix);
//! - the queues: SQS's approximate counts;
//! - loaded *bytes*: the ledger does not record sizes, so only with `--full`, which reads the
//!   loaded manifest items of the scope (`table-index` with `--table`, else a full scan).
//!
//! Definitions: the *backlog* is what workers will drain without help (`discovered`,
//! `queued`, `loading`, and `failed` files that are transient and under the attempt limit);
//! files that need an operator (`dead`, `failed` permanently or at the limit) are counted
//! apart; `skipped` ones are neither. The ETA is the backlog divided by the rate of the last
//! `--window` (files per second, from the ledger); with no load in the window it is unknown.
//!
//! Freshness per table (newest landing, last load, lag, `late` / `silent` / `never_seen`) is
//! [`crate::freshness`]'s, from the open items and a bounded `table-index` query per table.

use super::dlq::{self, QueueDepths};
use super::ledger::LedgerTableStats;
use super::{human_bytes, human_duration, Ops, Scope};
use crate::error::CoordinatorError;
use serde::Serialize;
use sluice_common::manifest::{ManifestItem, Status};
use sluice_common::timefmt;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::time::Duration;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

/// The oldest file not loaded (skipped files excepted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Oldest {
    pub key: String,
    pub etag: String,
    pub status: Status,
    /// Since when it waits: its discovery, or its last reload.
    pub since: String,
    pub age_secs: u64,
}

/// One table's line (or the total).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TableStatus {
    pub table: String,
    /// Files by status, every status present (`loaded` from the ledger).
    pub files: BTreeMap<Status, u64>,
    /// Bytes by status; `loaded` only with `--full`.
    pub bytes: BTreeMap<Status, i64>,
    /// Rows read from loaded files, and rows they inserted, updated or deleted (ledger).
    pub rows_read: i64,
    pub rows_merged: i64,
    pub backlog_files: u64,
    pub backlog_bytes: i64,
    /// `dead`, or `failed` permanently or at the attempt limit.
    pub needs_operator: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest_unloaded: Option<Oldest>,
    /// Files and rows loaded in the window.
    pub recent_files: u64,
    pub recent_rows: i64,
    pub files_per_minute: f64,
    /// Seconds until the backlog is drained at the recent rate; None when nothing was loaded
    /// in the window while there is a backlog.
    pub eta_secs: Option<u64>,
}

/// A table's full load that is still loading: files of a full-load generation not yet loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GenerationInProgress {
    /// Source table.
    pub table: String,
    /// The generation's name (its start, or `refresh@...`); `new` until a pass has named it.
    pub generation: String,
    /// Its `LOAD` files not loaded yet.
    pub files_open: u64,
}

/// Full loads in progress, from the open items (a generation whose files are all loaded is
/// replaced by the next pass; the pass's summary counts those). Pure.
pub fn generations_in_progress(open: &[ManifestItem]) -> Vec<GenerationInProgress> {
    let mut by: BTreeMap<(String, String), u64> = BTreeMap::new();
    for i in open {
        if i.kind == "full_load" && i.status.is_some_and(|s| s != Status::Skipped) {
            let g = i.generation.clone().unwrap_or_else(|| "new".to_owned());
            *by.entry((i.table.clone(), g)).or_default() += 1;
        }
    }
    by.into_iter()
        .map(|((table, generation), files_open)| GenerationInProgress {
            table,
            generation,
            files_open,
        })
        .collect()
}

/// The whole status.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StatusReport {
    pub at: String,
    pub source: String,
    pub scope: Scope,
    pub window_secs: u64,
    pub total: TableStatus,
    pub tables: Vec<TableStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<QueueDepths>,
    /// The S3 events queue, when events are on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events: Option<super::events_status::EventsStatus>,
    /// Whether loaded bytes were read from the manifest (`--full`).
    pub full: bool,
    /// Full loads (generations) still loading.
    pub generations: Vec<GenerationInProgress>,
    /// Per table: landings, loads, lag and state against its expectation.
    pub freshness: Vec<crate::freshness::TableFreshness>,
    pub notes: Vec<String>,
}

/// Files per second over the window, and the time to drain `backlog` at that rate. Pure.
pub fn eta(backlog: u64, recent: u64, window: Duration) -> Option<u64> {
    if backlog == 0 {
        return Some(0);
    }
    if recent == 0 || window.is_zero() {
        return None;
    }
    let rate = recent as f64 / window.as_secs_f64();
    Some((backlog as f64 / rate).ceil() as u64)
}

/// Whether an open item is backlog (workers drain it without help). Pure.
pub fn is_backlog(item: &ManifestItem, max_attempts: u32) -> bool {
    match item.status {
        Some(Status::Discovered | Status::Queued | Status::Loading) => true,
        Some(Status::Failed) => {
            !item.error.as_ref().is_some_and(|e| e.permanent) && item.attempts < max_attempts
        }
        _ => false,
    }
}

/// What the figures are computed from.
pub struct Inputs<'a> {
    pub open: &'a [ManifestItem],
    pub ledger: &'a [LedgerTableStats],
    /// Loaded bytes per table (`--full`).
    pub loaded_bytes: Option<&'a HashMap<String, i64>>,
    /// Tables to show even without any file (configured ones).
    pub configured: &'a [String],
    pub now: OffsetDateTime,
    pub window: Duration,
    pub max_attempts: u32,
}

/// Computes per-table lines and the total. Pure.
pub fn compute(inp: &Inputs<'_>) -> (Vec<TableStatus>, TableStatus) {
    let mut tables: BTreeMap<String, TableStatus> = BTreeMap::new();
    for t in inp.configured {
        tables.entry(t.clone()).or_insert_with(|| empty_line(t));
    }
    for i in inp.open {
        let Some(status) = i.status else { continue };
        let name = if i.table.is_empty() {
            "(unloadable)"
        } else {
            i.table.as_str()
        };
        let l = tables
            .entry(name.to_owned())
            .or_insert_with(|| empty_line(name));
        *l.files.entry(status).or_default() += 1;
        *l.bytes.entry(status).or_default() += i.size;
        if is_backlog(i, inp.max_attempts) {
            l.backlog_files += 1;
            l.backlog_bytes += i.size;
        } else if status != Status::Skipped {
            l.needs_operator += 1;
        }
        if status != Status::Skipped {
            let since = unloaded_since(i);
            let older = l.oldest_unloaded.as_ref().is_none_or(|o| since < o.since);
            if older {
                l.oldest_unloaded = Some(Oldest {
                    key: i.key.clone(),
                    etag: i.etag.clone(),
                    status,
                    age_secs: timefmt::age(&since, inp.now)
                        .map(|d| d.whole_seconds().max(0) as u64)
                        .unwrap_or(0),
                    since,
                });
            }
        }
    }
    for s in inp.ledger {
        let l = tables
            .entry(s.table.clone())
            .or_insert_with(|| empty_line(&s.table));
        l.files.insert(Status::Loaded, s.files);
        l.rows_read = s.rows_read;
        l.rows_merged = s.rows_merged;
        l.recent_files = s.recent_files;
        l.recent_rows = s.recent_rows;
    }
    if let Some(bytes) = inp.loaded_bytes {
        for (t, b) in bytes {
            let l = tables.entry(t.clone()).or_insert_with(|| empty_line(t));
            l.bytes.insert(Status::Loaded, *b);
        }
    }
    let mut total = empty_line("TOTAL");
    for l in tables.values_mut() {
        finish(l, inp.window);
        for (s, n) in &l.files {
            *total.files.entry(*s).or_default() += n;
        }
        for (s, n) in &l.bytes {
            *total.bytes.entry(*s).or_default() += n;
        }
        total.rows_read += l.rows_read;
        total.rows_merged += l.rows_merged;
        total.backlog_files += l.backlog_files;
        total.backlog_bytes += l.backlog_bytes;
        total.needs_operator += l.needs_operator;
        total.recent_files += l.recent_files;
        total.recent_rows += l.recent_rows;
        if let Some(o) = &l.oldest_unloaded {
            if total
                .oldest_unloaded
                .as_ref()
                .is_none_or(|t| o.since < t.since)
            {
                total.oldest_unloaded = Some(o.clone());
            }
        }
    }
    if inp.loaded_bytes.is_none() {
        total.bytes.remove(&Status::Loaded);
    }
    finish(&mut total, inp.window);
    (tables.into_values().collect(), total)
}

/// Since when a file has been waiting to load: its discovery, or its last reload (it was
/// loaded until then).
fn unloaded_since(i: &ManifestItem) -> String {
    let discovered = i
        .discovered_at
        .clone()
        .or_else(|| i.updated_at.clone())
        .unwrap_or_default();
    match &i.operator {
        Some(op) if op.action == "reload" && op.at > discovered => op.at.clone(),
        _ => discovered,
    }
}

fn empty_line(name: &str) -> TableStatus {
    TableStatus {
        table: name.to_owned(),
        files: Status::ALL.into_iter().map(|s| (s, 0)).collect(),
        bytes: Status::ALL
            .into_iter()
            .filter(|s| s.is_open())
            .map(|s| (s, 0))
            .collect(),
        ..TableStatus::default()
    }
}

fn finish(l: &mut TableStatus, window: Duration) {
    l.files_per_minute = if window.is_zero() {
        0.0
    } else {
        l.recent_files as f64 * 60.0 / window.as_secs_f64()
    };
    l.eta_secs = eta(l.backlog_files, l.recent_files, window);
}

/// Options of `status`.
#[derive(Debug, Clone)]
pub struct Options {
    pub scope: Scope,
    /// The recent window for throughput and ETA.
    pub window: Duration,
    /// Also read loaded manifest items for loaded bytes.
    pub full: bool,
}

/// Reads the sources and computes the status, now.
pub async fn collect(ops: &Ops, opts: &Options) -> Result<StatusReport, CoordinatorError> {
    collect_at(ops, opts, OffsetDateTime::now_utc()).await
}

/// Reads the sources and computes the status as of `now`.
pub async fn collect_at(
    ops: &Ops,
    opts: &Options,
    now: OffsetDateTime,
) -> Result<StatusReport, CoordinatorError> {
    let source = ops.source("status")?;
    let ledger = ops.ledger("status")?;
    let prefix = opts.scope.key_prefix(&source.prefix)?;
    let mut open = Vec::new();
    for status in Status::ALL.into_iter().filter(|s| s.is_open()) {
        open.extend(ops.store.list_open(status, None).await?);
    }
    open.retain(|i| opts.scope.holds(&i.key, &i.table) && i.key.starts_with(&prefix));
    let mut stats = ledger
        .table_stats(
            &source.bucket,
            &source.prefix,
            &prefix,
            opts.window.as_secs_f64(),
        )
        .await?;
    if let Some(t) = &opts.scope.table {
        stats.retain(|s| s.table == *t);
    }
    let configured = super::configured_in_scope(ops, &opts.scope, &source.prefix, &prefix);
    let mut notes = Vec::new();
    let loaded_bytes = if opts.full {
        let items = match &opts.scope.table {
            Some(t) => {
                notes.push(format!(
                    "--full: read every loaded manifest item of {t} (table-index) for loaded bytes"
                ));
                ops.store.list_table(t, Some(Status::Loaded), None).await?
            }
            None => {
                notes.push(
                    "--full: a full scan of the manifest for loaded bytes (reads every item; scope it with --table)"
                        .to_owned(),
                );
                let mut all = ops.store.scan_all(None).await?;
                all.retain(|i| i.status == Some(Status::Loaded));
                all
            }
        };
        let mut bytes: HashMap<String, i64> = HashMap::new();
        for i in items {
            if opts.scope.holds(&i.key, &i.table) && i.key.starts_with(&prefix) {
                *bytes.entry(i.table.clone()).or_default() += i.size;
            }
        }
        Some(bytes)
    } else {
        notes.push(
            "loaded files and rows come from the ledger; loaded bytes need --full (reads the loaded manifest items in scope)"
                .to_owned(),
        );
        None
    };
    let queue = match &ops.queue_url {
        Some(url) => Some(dlq::depths(&ops.aws.sqs, url).await?),
        None => {
            notes.push("no SLUICE_QUEUE_URL: queue figures not shown".to_owned());
            None
        }
    };
    let events = super::events_status::read(ops, source, now).await?;
    let (tables, total) = compute(&Inputs {
        open: &open,
        ledger: &stats,
        loaded_bytes: loaded_bytes.as_ref(),
        configured: &configured,
        now,
        window: opts.window,
        max_attempts: ops.policy.max_attempts,
    });
    let in_schemas =
        super::schema_tables_in_scope(ops, &opts.scope, &source.prefix, &prefix).await?;
    let freshness = super::freshness_of(
        ops,
        &source.prefix,
        tables.iter().map(|l| l.table.clone()).chain(in_schemas),
        &open,
        now,
    )
    .await?;
    Ok(StatusReport {
        freshness,
        at: timefmt::format(now),
        source: format!("s3://{}/{}", source.bucket, prefix),
        scope: opts.scope.clone(),
        window_secs: opts.window.as_secs(),
        total,
        tables,
        queue,
        events,
        full: opts.full,
        generations: generations_in_progress(&open),
        notes,
    })
}

fn count(n: u64) -> String {
    let digits: Vec<char> = n.to_string().chars().collect();
    let groups: Vec<String> = digits
        .rchunks(3)
        .rev()
        .map(|g| g.iter().collect())
        .collect();
    groups.join(",")
}

fn eta_text(l: &TableStatus) -> String {
    match (l.backlog_files, l.eta_secs) {
        (0, _) => "-".to_owned(),
        (_, Some(s)) => human_duration(s),
        (_, None) => "unknown".to_owned(),
    }
}

/// The status, for a terminal.
pub fn format(r: &StatusReport) -> String {
    let mut out = format!("Sluice status at {}: {}\n", r.at, r.source);
    let _ = writeln!(
        out,
        "{:<24} {:>6} {:>6} {:>7} {:>8} {:>6} {:>5} {:>7}  {:<18} {:>12} {:>9} {:>8} {:>8}",
        "TABLE",
        "DISC",
        "QUEUED",
        "LOADING",
        "LOADED",
        "FAILED",
        "DEAD",
        "SKIPPED",
        "BACKLOG",
        "ROWS LOADED",
        "OLDEST",
        "FILES/MIN",
        "ETA"
    );
    for l in r.tables.iter().chain(std::iter::once(&r.total)) {
        let f = |s: Status| count(l.files.get(&s).copied().unwrap_or(0));
        let _ =
            writeln!(
            out,
            "{:<24} {:>6} {:>6} {:>7} {:>8} {:>6} {:>5} {:>7}  {:<18} {:>12} {:>9} {:>8.1} {:>8}",
            l.table,
            f(Status::Discovered),
            f(Status::Queued),
            f(Status::Loading),
            f(Status::Loaded),
            f(Status::Failed),
            f(Status::Dead),
            f(Status::Skipped),
            format!("{} ({})", count(l.backlog_files), human_bytes(l.backlog_bytes)),
            count(l.rows_read.max(0) as u64),
            l.oldest_unloaded
                .as_ref()
                .map(|o| human_duration(o.age_secs))
                .unwrap_or_else(|| "-".to_owned()),
            l.files_per_minute,
            eta_text(l),
        );
    }
    if let Some(b) = r.total.bytes.get(&Status::Loaded) {
        let _ = writeln!(out, "loaded bytes: {}", human_bytes(*b));
    }
    if r.total.needs_operator > 0 {
        let _ = writeln!(
            out,
            "{} files need an operator (dead, or failed permanently or at the attempt limit): see `skipped`, then `retry`",
            count(r.total.needs_operator)
        );
    }
    if let Some(o) = &r.total.oldest_unloaded {
        let _ = writeln!(
            out,
            "oldest unloaded: {} ({}), {}, seen {} ago",
            o.key,
            o.etag,
            o.status,
            human_duration(o.age_secs)
        );
    }
    if let Some(q) = &r.queue {
        let _ = writeln!(
            out,
            "queue: {} visible, {} in flight, {} delayed | dead-letter queue: {}",
            q.visible,
            q.in_flight,
            q.delayed,
            match &q.dlq_url {
                Some(_) if q.dlq_visible + q.dlq_in_flight > 0 => format!(
                    "{} visible, {} in flight (`retry --dlq` moves them back)",
                    q.dlq_visible, q.dlq_in_flight
                ),
                Some(_) => "empty".to_owned(),
                None => "none (the queue has no redrive policy)".to_owned(),
            }
        );
    }
    out.push_str(&super::events_status::lines(r.events.as_ref()));
    format_tail(r, &mut out);
    out
}

/// The end of the status: freshness, full loads in progress, the window, the notes.
fn format_tail(r: &StatusReport, out: &mut String) {
    if !r.freshness.is_empty() {
        out.push('\n');
        out.push_str(&crate::freshness::format_lines(&r.freshness));
    }
    for g in &r.generations {
        let _ = writeln!(
            out,
            "full load in progress: {} generation {}, {} LOAD files not loaded yet (its older rows are replaced once all are)",
            g.table,
            g.generation,
            count(g.files_open)
        );
    }
    let _ = writeln!(
        out,
        "rate and ETA over the last {}",
        human_duration(r.window_secs)
    );
    for n in &r.notes {
        let _ = writeln!(out, "note: {n}");
    }
}

/// A progress bar of `width` cells: `[#####-----]`. Pure.
pub fn bar(done: u64, total: u64, width: usize) -> String {
    let filled = if total == 0 {
        width
    } else {
        ((done.min(total) as f64 / total as f64) * width as f64).floor() as usize
    };
    format!("[{}{}]", "#".repeat(filled), "-".repeat(width - filled))
}

/// Loaded files per table when watching started, to measure progress from.
pub type Baseline = HashMap<String, u64>;

pub fn baseline(r: &StatusReport) -> Baseline {
    r.tables
        .iter()
        .map(|l| {
            (
                l.table.clone(),
                l.files.get(&Status::Loaded).copied().unwrap_or(0),
            )
        })
        .collect()
}

/// Progress since `base`: files loaded since, out of those plus the backlog.
pub fn progress(l: &TableStatus, base: &Baseline) -> (u64, u64) {
    let now = l.files.get(&Status::Loaded).copied().unwrap_or(0);
    let done = now.saturating_sub(base.get(&l.table).copied().unwrap_or(0));
    (done, done + l.backlog_files)
}

/// The progress bars of one frame of `--watch`.
pub fn format_bars(r: &StatusReport, base: &Baseline) -> String {
    let mut out = String::new();
    let lines = r
        .tables
        .iter()
        .filter(|l| progress(l, base).1 > 0)
        .chain(std::iter::once(&r.total));
    for l in lines {
        let (done, total) = if l.table == "TOTAL" {
            r.tables
                .iter()
                .map(|t| progress(t, base))
                .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
        } else {
            progress(l, base)
        };
        let pct = (done * 100).checked_div(total).unwrap_or(100);
        let _ = writeln!(
            out,
            "{:<24} {} {:>3}%  {}/{} files  backlog {}  ETA {}",
            l.table,
            bar(done, total, 30),
            pct,
            count(done),
            count(total),
            human_bytes(l.backlog_bytes),
            eta_text(l)
        );
    }
    out
}

/// `status --watch`: redraws every `every` until the backlog is empty or `stop` is cancelled.
/// Frames go to `out`; on a terminal each frame replaces the previous one.
pub async fn watch(
    ops: &Ops,
    opts: &Options,
    every: Duration,
    terminal: bool,
    stop: &CancellationToken,
    out: &mut (dyn std::io::Write + Send),
) -> Result<StatusReport, CoordinatorError> {
    let mut base: Option<Baseline> = None;
    loop {
        let r = collect(ops, opts).await?;
        let b = base.get_or_insert_with(|| baseline(&r));
        let mut frame = String::new();
        if terminal {
            frame.push_str("\x1b[2J\x1b[H");
        }
        frame.push_str(&format(&r));
        frame.push('\n');
        frame.push_str(&format_bars(&r, b));
        let drained = r.total.backlog_files == 0;
        if drained {
            frame.push_str("backlog drained\n");
        }
        frame.push('\n');
        let _ = out.write_all(frame.as_bytes());
        let _ = out.flush();
        if drained {
            return Ok(r);
        }
        tokio::select! {
            _ = stop.cancelled() => return Ok(r),
            _ = tokio::time::sleep(every) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_common::manifest::FileError;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2024-10-29 12:00 UTC);

    fn item(table: &str, n: u32, status: Status, size: i64) -> ManifestItem {
        ManifestItem {
            key: format!("dms/{}/{n}.csv", table.replace('.', "/")),
            etag: "e".into(),
            table: table.into(),
            status: Some(status),
            size,
            attempts: 1,
            discovered_at: Some(format!("2024-10-29T11:{:02}:00.000Z", 10 + n)),
            updated_at: Some("2024-10-29T11:59:00.000Z".into()),
            ..Default::default()
        }
    }

    #[test]
    fn eta_is_backlog_over_recent_rate() {
        assert_eq!(eta(0, 0, Duration::from_secs(600)), Some(0));
        assert_eq!(eta(10, 0, Duration::from_secs(600)), None);
        // 60 files in 10 minutes = 0.1/s: 30 files take 300 s
        assert_eq!(eta(30, 60, Duration::from_secs(600)), Some(300));
        assert_eq!(eta(1, 3, Duration::from_secs(10)), Some(4));
        assert_eq!(eta(5, 5, Duration::ZERO), None);
    }

    #[test]
    fn backlog_is_what_workers_drain_alone() {
        let mut transient = item("s.t", 1, Status::Failed, 1);
        transient.error = Some(FileError::default());
        assert!(is_backlog(&transient, 5));
        transient.attempts = 5;
        assert!(!is_backlog(&transient, 5));
        let mut permanent = item("s.t", 2, Status::Failed, 1);
        permanent.error = Some(FileError {
            permanent: true,
            ..Default::default()
        });
        assert!(!is_backlog(&permanent, 5));
        for s in [Status::Discovered, Status::Queued, Status::Loading] {
            assert!(is_backlog(&item("s.t", 3, s, 1), 5));
        }
        for s in [Status::Dead, Status::Skipped, Status::Loaded] {
            assert!(!is_backlog(&item("s.t", 3, s, 1), 5));
        }
    }

    #[test]
    fn per_table_and_total_figures() {
        let mut dead = item("s.b", 4, Status::Dead, 1000);
        dead.discovered_at = Some("2024-10-29T09:00:00.000Z".into());
        let open = vec![
            item("s.a", 1, Status::Queued, 100),
            item("s.a", 2, Status::Loading, 200),
            item("s.a", 3, Status::Skipped, 50),
            dead,
        ];
        let ledger = vec![
            LedgerTableStats {
                table: "s.a".into(),
                files: 10,
                rows_read: 1000,
                rows_merged: 900,
                recent_files: 6,
                recent_rows: 600,
                ..Default::default()
            },
            LedgerTableStats {
                table: "s.c".into(),
                files: 3,
                rows_read: 30,
                rows_merged: 30,
                ..Default::default()
            },
        ];
        let (tables, total) = compute(&Inputs {
            open: &open,
            ledger: &ledger,
            loaded_bytes: None,
            configured: &["s.empty".to_owned()],
            now: NOW,
            window: Duration::from_secs(600),
            max_attempts: 5,
        });
        let names: Vec<&str> = tables.iter().map(|t| t.table.as_str()).collect();
        assert_eq!(names, vec!["s.a", "s.b", "s.c", "s.empty"]);
        let a = &tables[0];
        assert_eq!(a.files[&Status::Queued], 1);
        assert_eq!(a.files[&Status::Loaded], 10);
        assert_eq!(a.files[&Status::Skipped], 1);
        assert_eq!((a.backlog_files, a.backlog_bytes), (2, 300));
        assert_eq!(a.bytes[&Status::Skipped], 50);
        assert!(!a.bytes.contains_key(&Status::Loaded));
        assert_eq!(a.oldest_unloaded.as_ref().unwrap().key, "dms/s/a/1.csv");
        assert!((a.files_per_minute - 0.6).abs() < 1e-9);
        // 2 files at 0.01/s
        assert_eq!(a.eta_secs, Some(200));
        let b = &tables[1];
        assert_eq!((b.backlog_files, b.needs_operator), (0, 1));
        assert_eq!(b.eta_secs, Some(0));
        assert_eq!(tables[3].files.values().sum::<u64>(), 0);

        assert_eq!(total.files[&Status::Loaded], 13);
        assert_eq!(total.rows_read, 1030);
        assert_eq!((total.backlog_files, total.needs_operator), (2, 1));
        let oldest = total.oldest_unloaded.as_ref().unwrap();
        assert_eq!(
            (oldest.key.as_str(), oldest.age_secs),
            ("dms/s/b/4.csv", 3 * 3600)
        );
        assert_eq!(total.eta_secs, Some(200));
        let text = format(&StatusReport {
            at: "now".into(),
            total: total.clone(),
            tables: tables.clone(),
            window_secs: 600,
            ..Default::default()
        });
        assert!(text.contains("TOTAL"), "{text}");
        assert!(text.contains("1 files need an operator"), "{text}");
    }

    #[test]
    fn a_reloaded_file_waits_since_its_reload() {
        let mut i = item("s.a", 1, Status::Queued, 1);
        assert_eq!(unloaded_since(&i), "2024-10-29T11:11:00.000Z");
        i.operator = Some(sluice_common::manifest::OperatorAction {
            action: "reload".into(),
            who: "bob".into(),
            reason: None,
            at: "2024-10-29T11:50:00.000Z".into(),
        });
        assert_eq!(unloaded_since(&i), "2024-10-29T11:50:00.000Z");
        i.operator.as_mut().unwrap().action = "retry".into();
        assert_eq!(unloaded_since(&i), "2024-10-29T11:11:00.000Z");
    }

    #[test]
    fn loaded_bytes_only_when_read() {
        let bytes = HashMap::from([("s.a".to_owned(), 4096)]);
        let (tables, total) = compute(&Inputs {
            open: &[],
            ledger: &[],
            loaded_bytes: Some(&bytes),
            configured: &[],
            now: NOW,
            window: Duration::from_secs(600),
            max_attempts: 5,
        });
        assert_eq!(tables[0].bytes[&Status::Loaded], 4096);
        assert_eq!(total.bytes[&Status::Loaded], 4096);
    }

    #[test]
    fn bars_and_progress() {
        assert_eq!(bar(0, 10, 10), "[----------]");
        assert_eq!(bar(5, 10, 10), "[#####-----]");
        assert_eq!(bar(10, 10, 10), "[##########]");
        assert_eq!(bar(12, 10, 4), "[####]");
        assert_eq!(bar(0, 0, 4), "[####]");
        let mut l = empty_line("s.a");
        l.files.insert(Status::Loaded, 15);
        l.backlog_files = 5;
        let base = HashMap::from([("s.a".to_owned(), 10)]);
        assert_eq!(progress(&l, &base), (5, 10));
        let r = StatusReport {
            total: TableStatus {
                backlog_files: 5,
                ..empty_line("TOTAL")
            },
            tables: vec![l],
            ..Default::default()
        };
        let text = format_bars(&r, &base);
        assert!(
            text.contains("[###############---------------]  50%  5/10 files"),
            "{text}"
        );
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(1234567), "1,234,567");
    }

    #[test]
    fn full_loads_in_progress_are_counted_per_table_and_generation() {
        let item =
            |table: &str, kind: &str, generation: Option<&str>, status: Status| ManifestItem {
                table: table.into(),
                kind: kind.into(),
                generation: generation.map(str::to_owned),
                status: Some(status),
                ..Default::default()
            };
        let open = vec![
            item("s.t", "full_load", Some("g1"), Status::Queued),
            item("s.t", "full_load", Some("g1"), Status::Loading),
            item("s.t", "cdc", None, Status::Queued),
            item("s.u", "full_load", None, Status::Discovered),
            item("s.u", "full_load", None, Status::Skipped),
        ];
        assert_eq!(
            generations_in_progress(&open),
            vec![
                GenerationInProgress {
                    table: "s.t".into(),
                    generation: "g1".into(),
                    files_open: 2
                },
                GenerationInProgress {
                    table: "s.u".into(),
                    generation: "new".into(),
                    files_open: 1
                },
            ]
        );
    }
}
