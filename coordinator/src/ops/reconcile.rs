//! `skipped`: the reconciliation report. Every object of the lake (or of a table, or under a
//! key prefix) that is not loaded, and why, from three sources compared: the S3 listing, the
//! manifest and the PostgreSQL ledger.
//!
//! What is read:
//! - the S3 listing of the scope (the question is about the lake, so it is always listed);
//! - the manifest's sparse `open-index` (every item that is not `loaded`: small by design);
//! - the ledger's rows for the listed `(key, etag)` pairs (primary-key lookups in PostgreSQL);
//! - manifest items by key (`BatchGetItem`) only for listed objects that are neither open nor
//!   in the ledger: the few that may be missing from the manifest, or marked `loaded` without
//!   a ledger row.
//!
//! Listed objects that the ledger holds and that are not open are taken as loaded without
//! reading their manifest items. Whether their items still exist (a loaded file deleted from
//! the manifest) is checked only with `--check-loaded`, which reads one item per loaded file:
//! cost proportional to the loaded files in scope; scope it with `--table`. The report says
//! which of the two it did.
//!
//! Beside the files, the tables that are `late`, `silent` or `never_seen`
//! ([`crate::freshness`]; one bounded `table-index` query per table); a `silent` table counts
//! for `--fail-if-any`.

use super::ledger::Ledger;
use super::moves::is_stuck;
use super::{Ops, Scope};
use crate::error::CoordinatorError;
use crate::listing::{list_objects, Listed};
use serde::Serialize;
use sluice_common::manifest::{FileError, ManifestItem, Status};
use sluice_common::timefmt;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Write;
use std::time::Duration;
use time::OffsetDateTime;

/// Why an object is not loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// In S3, not in the manifest: new since the last scan pass, or its item was deleted.
    NotInManifest,
    /// `discovered`/`queued`/`loading` for longer than expected.
    Stuck,
    Failed,
    Dead,
    /// The manifest says `loaded`, the ledger has no row: its rows may be missing.
    LoadedWithoutLedger,
    /// The ledger has a row (the data is committed) but the manifest does not say `loaded`
    /// (or has no item).
    LedgerWithoutLoaded,
    /// A table configured in the rules file has no object at all in the lake.
    NoFiles,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NotInManifest => "not_in_manifest",
            Reason::Stuck => "stuck",
            Reason::Failed => "failed",
            Reason::Dead => "dead",
            Reason::LoadedWithoutLedger => "loaded_no_ledger",
            Reason::LedgerWithoutLoaded => "ledger_not_loaded",
            Reason::NoFiles => "no_files",
        }
    }
}

/// One object (or configured table) that is not loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    pub reason: Reason,
    /// One line: why, for a person.
    pub why: String,
    pub table: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub key: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub etag: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    pub size: i64,
    /// Whether the object version is still in the S3 listing.
    pub in_lake: bool,
    /// Whether the ledger has a row for it.
    pub in_ledger: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub age_secs: Option<u64>,
    pub attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<FileError>,
}

/// A file skipped on purpose by an operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub table: String,
    pub key: String,
    pub etag: String,
    pub size: i64,
    pub in_lake: bool,
    pub who: String,
    pub why: String,
    pub at: String,
}

/// The whole report.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub at: String,
    pub source: String,
    pub scope: Scope,
    /// Objects listed in scope (folder markers excluded).
    pub listed: usize,
    /// Listed objects that are loaded (ledger row, manifest `loaded` or not re-read).
    pub loaded: usize,
    /// Of those, how many had their manifest item read (all of them with `--check-loaded`).
    pub loaded_checked: usize,
    /// Open files changed recently (`discovered`/`queued`/`loading`): being worked on.
    pub in_progress: usize,
    pub entries: Vec<Entry>,
    pub skipped: Vec<Skipped>,
    pub counts: BTreeMap<Reason, usize>,
    /// Whether every loaded file's manifest item was read (`--check-loaded`).
    pub checked_loaded: bool,
    /// Tables that are `late`, `silent` or `never_seen` ([`crate::freshness`]).
    pub tables: Vec<crate::freshness::TableFreshness>,
    pub notes: Vec<String>,
}

impl Report {
    /// Files (and tables) needing attention: everything but deliberate skips and work in
    /// progress, and the tables gone silent.
    pub fn problems(&self) -> usize {
        self.entries.len()
            + self
                .tables
                .iter()
                .filter(|t| t.state == crate::freshness::State::Silent)
                .count()
    }
}

/// The exit status for `skipped`: 0 when nothing needs attention (or without `--fail-if-any`),
/// [`EXIT_FOUND`] when something does. Deliberate skips and files in progress never count.
pub fn exit_code(report: &Report, fail_if_any: bool) -> i32 {
    if fail_if_any && report.problems() > 0 {
        EXIT_FOUND
    } else {
        0
    }
}

/// `skipped --fail-if-any` found files that are not loaded (1 is a failed command, 2 a usage
/// error).
pub const EXIT_FOUND: i32 = 3;

/// What the pure classification is given.
pub struct Inputs<'a> {
    pub listing: &'a [Listed],
    /// Open manifest items in scope.
    pub open: &'a [ManifestItem],
    /// Pairs (listed or open) that have a ledger row.
    pub ledger: &'a HashSet<(String, String)>,
    /// Pairs whose manifest item was read, with the item when it exists.
    pub looked_up: &'a HashMap<(String, String), Option<ManifestItem>>,
    /// Configured tables in scope.
    pub configured: &'a [String],
    pub now: OffsetDateTime,
    pub stuck_after: Duration,
    pub max_attempts: u32,
}

/// Classifies every object and open item. Pure.
pub fn classify(inp: &Inputs<'_>) -> Report {
    let mut r = Report::default();
    let listed: HashMap<(String, String), &Listed> = inp
        .listing
        .iter()
        .filter(|o| !o.is_folder())
        .map(|o| ((o.key.clone(), o.etag.clone()), o))
        .collect();
    r.listed = listed.len();
    let open: HashMap<(String, String), &ManifestItem> = inp
        .open
        .iter()
        .map(|i| ((i.key.clone(), i.etag.clone()), i))
        .collect();

    let mut pairs: Vec<&(String, String)> = listed.keys().collect();
    pairs.sort();
    for pair in pairs {
        let o = listed[pair];
        let in_ledger = inp.ledger.contains(pair);
        let table = o.source_table().unwrap_or_default();
        let item: &ManifestItem = match open.get(pair) {
            Some(i) => i,
            None => match inp.looked_up.get(pair) {
                Some(Some(i)) => i,
                Some(None) => {
                    r.entries.push(missing_entry(o, &table, in_ledger));
                    continue;
                }
                None => {
                    // In the ledger and not open; its item was not read.
                    r.loaded += 1;
                    continue;
                }
            },
        };
        if item.status == Some(Status::Loaded) {
            r.loaded += 1;
            r.loaded_checked += 1;
            if !in_ledger {
                r.entries.push(entry(
                    Reason::LoadedWithoutLedger,
                    "the manifest says loaded but the ledger has no row: its rows may be missing from PostgreSQL; reload it".to_owned(),
                    item,
                    true,
                    false,
                    inp.now,
                ));
            }
            continue;
        }
        classify_open(&mut r, item, true, in_ledger, inp);
    }
    // Open items whose object version is no longer listed (deleted or overwritten in S3).
    let mut gone: Vec<&ManifestItem> = inp
        .open
        .iter()
        .filter(|i| !listed.contains_key(&(i.key.clone(), i.etag.clone())))
        .collect();
    gone.sort_by(|a, b| (&a.key, &a.etag).cmp(&(&b.key, &b.etag)));
    for item in gone {
        let in_ledger = inp.ledger.contains(&(item.key.clone(), item.etag.clone()));
        classify_open(&mut r, item, false, in_ledger, inp);
    }
    // Configured tables without a single object.
    let tables_listed: HashSet<String> = inp
        .listing
        .iter()
        .filter_map(Listed::source_table)
        .collect();
    let configured: BTreeSet<&String> = inp.configured.iter().collect();
    for t in configured {
        if !tables_listed.contains(t.as_str()) {
            r.entries.push(Entry {
                reason: Reason::NoFiles,
                why: "configured in the rules file, but the lake has no file for it (DMS writes no folder for an empty or suspended table)".to_owned(),
                table: t.clone(),
                key: String::new(),
                etag: String::new(),
                status: None,
                size: 0,
                in_lake: false,
                in_ledger: false,
                updated_at: None,
                age_secs: None,
                attempts: 0,
                error: None,
            });
        }
    }
    for e in &r.entries {
        *r.counts.entry(e.reason).or_default() += 1;
    }
    r
}

fn missing_entry(o: &Listed, table: &str, in_ledger: bool) -> Entry {
    let (reason, why) = if in_ledger {
        (
            Reason::LedgerWithoutLoaded,
            "the ledger has it (its rows are in PostgreSQL) but the manifest has no item for it: the item was deleted".to_owned(),
        )
    } else {
        (
            Reason::NotInManifest,
            "not in the manifest: new since the last scan pass (the next pass enqueues it), or its item was deleted (`scan --full` records it again)".to_owned(),
        )
    };
    Entry {
        reason,
        why,
        table: table.to_owned(),
        key: o.key.clone(),
        etag: o.etag.clone(),
        status: None,
        size: o.size,
        in_lake: true,
        in_ledger,
        updated_at: None,
        age_secs: None,
        attempts: 0,
        error: None,
    }
}

fn classify_open(
    r: &mut Report,
    item: &ManifestItem,
    in_lake: bool,
    in_ledger: bool,
    inp: &Inputs<'_>,
) {
    let Some(status) = item.status else { return };
    if status == Status::Skipped {
        r.skipped.push(skipped(item, in_lake));
        return;
    }
    let stuck = is_stuck(item, inp.now, inp.stuck_after);
    if !stuck {
        // Being worked on; a committed file whose manifest update is a moment late is too.
        r.in_progress += 1;
        return;
    }
    let gone = if in_lake {
        ""
    } else {
        " (this object version is no longer in S3)"
    };
    let (reason, why) = if in_ledger {
        (
            Reason::LedgerWithoutLoaded,
            format!("the ledger has it (its rows are in PostgreSQL) but the manifest says {status}: the manifest update was lost; the next delivery repairs it"),
        )
    } else {
        match why_not_loaded(item, status, inp) {
            Some(found) => found,
            None => return,
        }
    };
    r.entries.push(entry(
        reason,
        format!("{why}{gone}"),
        item,
        in_lake,
        in_ledger,
        inp.now,
    ));
}

/// A deliberately skipped file, with who skipped it and why.
fn skipped(item: &ManifestItem, in_lake: bool) -> Skipped {
    let op = item.operator.clone().unwrap_or_default();
    Skipped {
        table: item.table.clone(),
        key: item.key.clone(),
        etag: item.etag.clone(),
        size: item.size,
        in_lake,
        who: op.who,
        why: op.reason.unwrap_or_default(),
        at: if op.at.is_empty() {
            item.updated_at.clone().unwrap_or_default()
        } else {
            op.at
        },
    }
}

/// Whether a pass noted that the item's message could not be sent, and no message was sent
/// since (a sent one leaves its id on the item, by the pass or the claiming worker).
fn unsent(item: &ManifestItem) -> bool {
    let note = format!("{} (", crate::scan::UNSENT_NOTE);
    item.message_id.is_none() && item.history.iter().any(|h| h.contains(&note))
}

/// Why a stuck, failed or dead file (its data not in the ledger) is not loaded, and what
/// happens next. None for statuses that are not a reason (loaded, skipped).
fn why_not_loaded(
    item: &ManifestItem,
    status: Status,
    inp: &Inputs<'_>,
) -> Option<(Reason, String)> {
    Some(match status {
        Status::Discovered | Status::Queued | Status::Loading => {
            let age = age_text(item, inp.now);
            // A queued file with an error was handed back by a worker that met a database
            // outage (the classes `database_*` of the worker's outages): it waits for the
            // database, not for a worker.
            let outage = item
                .error
                .as_ref()
                .filter(|e| status == Status::Queued && e.class.starts_with("database_"));
            let what = match (status, outage) {
                (Status::Queued, Some(e)) => format!(
                    "queued, handed back during a database outage ({}): waiting for the database",
                    e.class
                ),
                (Status::Discovered, _) => "discovered but never enqueued".to_owned(),
                (Status::Queued, None) if unsent(item) => {
                    "queued, but its message was not sent (see the history)".to_owned()
                }
                (Status::Queued, None) => "queued, no worker took it".to_owned(),
                _ => "loading, its worker may have died".to_owned(),
            };
            (
                Reason::Stuck,
                format!(
                    "{what}, unchanged for {age} (more than {}); the next scan pass re-enqueues it",
                    super::human_duration(inp.stuck_after.as_secs())
                ),
            )
        }
        Status::Failed => {
            let e = item.error.clone().unwrap_or_default();
            let next = if e.permanent {
                "permanent: fix the cause, then retry"
            } else if item.attempts >= inp.max_attempts {
                "attempt limit reached: the next pass marks it dead"
            } else {
                "transient: retried automatically"
            };
            (
                Reason::Failed,
                format!(
                    "failed after {} attempt{} ({next}): {}: {}",
                    item.attempts,
                    if item.attempts == 1 { "" } else { "s" },
                    e.class,
                    e.message
                ),
            )
        }
        Status::Dead => {
            let e = item.error.clone().unwrap_or_default();
            (
                Reason::Dead,
                format!(
                    "dead (only `retry` brings it back): {}: {}",
                    e.class, e.message
                ),
            )
        }
        Status::Loaded | Status::Skipped => return None,
    })
}

fn age_secs(item: &ManifestItem, now: OffsetDateTime) -> Option<u64> {
    item.updated_at
        .as_deref()
        .and_then(|u| timefmt::age(u, now))
        .map(|d| d.whole_seconds().max(0) as u64)
}

fn age_text(item: &ManifestItem, now: OffsetDateTime) -> String {
    age_secs(item, now)
        .map(super::human_duration)
        .unwrap_or_else(|| "an unknown time".to_owned())
}

fn entry(
    reason: Reason,
    why: String,
    item: &ManifestItem,
    in_lake: bool,
    in_ledger: bool,
    now: OffsetDateTime,
) -> Entry {
    let missed = item
        .history
        .iter()
        .any(|h| h.contains(crate::events::MISSED_EVENT_NOTE));
    let why = if missed {
        format!("{why} ({})", crate::events::MISSED_EVENT_NOTE)
    } else {
        why
    };
    Entry {
        reason,
        why,
        table: item.table.clone(),
        key: item.key.clone(),
        etag: item.etag.clone(),
        status: item.status,
        size: item.size,
        in_lake,
        in_ledger,
        updated_at: item.updated_at.clone(),
        age_secs: age_secs(item, now),
        attempts: item.attempts,
        error: item.error.clone(),
    }
}

/// Options of `skipped`.
#[derive(Debug, Clone)]
pub struct Options {
    pub scope: Scope,
    /// Read the manifest item of every loaded file too (cost: one item per loaded file).
    pub check_loaded: bool,
    /// How long `discovered`/`queued`/`loading` may last before it counts as stuck.
    pub stuck_after: Duration,
}

/// Reads the three sources and builds the report, now.
pub async fn report(ops: &Ops, opts: &Options) -> Result<Report, CoordinatorError> {
    report_at(ops, opts, OffsetDateTime::now_utc()).await
}

/// Reads the three sources and builds the report as of `now`.
pub async fn report_at(
    ops: &Ops,
    opts: &Options,
    now: OffsetDateTime,
) -> Result<Report, CoordinatorError> {
    let source = ops.source("skipped")?;
    let ledger: &Ledger = ops.ledger("skipped")?;
    let prefix = opts.scope.key_prefix(&source.prefix)?;
    let mut listing = list_objects(&ops.aws.s3, &source.bucket, &source.prefix, &prefix).await?;
    listing.retain(|o| !o.is_folder());
    if let Some(t) = &opts.scope.table {
        listing.retain(|o| o.source_table().as_ref() == Some(t));
    }
    let mut open = Vec::new();
    for status in Status::ALL.into_iter().filter(|s| s.is_open()) {
        open.extend(ops.store.list_open(status, None).await?);
    }
    open.retain(|i| {
        opts.scope.holds(&i.key, &i.table)
            && i.key.starts_with(&prefix)
            && (i.bucket.is_empty() || i.bucket == source.bucket)
    });
    let open_pairs: HashSet<(String, String)> = open
        .iter()
        .map(|i| (i.key.clone(), i.etag.clone()))
        .collect();
    let listed_pairs: HashSet<(String, String)> = listing
        .iter()
        .map(|o| (o.key.clone(), o.etag.clone()))
        .collect();
    let mut ask: Vec<(String, String)> = listed_pairs.iter().cloned().collect();
    ask.extend(open_pairs.difference(&listed_pairs).cloned());
    let in_ledger = ledger.present(&source.bucket, &ask).await?;
    let to_read: Vec<(String, String)> = listing
        .iter()
        .map(|o| (o.key.clone(), o.etag.clone()))
        .filter(|p| !open_pairs.contains(p) && (opts.check_loaded || !in_ledger.contains(p)))
        .collect();
    let found = ops.store.lookup(&to_read).await?;
    let looked_up: HashMap<(String, String), Option<ManifestItem>> = to_read
        .iter()
        .map(|p| (p.clone(), found.get(p).cloned()))
        .collect();
    let configured = super::configured_in_scope(ops, &opts.scope, &source.prefix, &prefix);
    let mut r = classify(&Inputs {
        listing: &listing,
        open: &open,
        ledger: &in_ledger,
        looked_up: &looked_up,
        configured: &configured,
        now,
        stuck_after: opts.stuck_after,
        max_attempts: ops.policy.max_attempts,
    });
    let in_schemas =
        super::schema_tables_in_scope(ops, &opts.scope, &source.prefix, &prefix).await?;
    let tables = configured
        .iter()
        .cloned()
        .chain(in_schemas)
        .chain(listing.iter().filter_map(Listed::source_table))
        .chain(open.iter().map(|i| i.table.clone()));
    r.tables = super::freshness_of(ops, &source.prefix, tables, &open, now).await?;
    r.tables.retain(|t| t.state.needs_attention());
    r.at = timefmt::format(now);
    r.source = format!("s3://{}/{}", source.bucket, prefix);
    r.scope = opts.scope.clone();
    r.checked_loaded = opts.check_loaded;
    r.notes.push(format!(
        "read: S3 listing of {prefix} ({} objects), manifest open-index ({} items in scope), \
         ledger {}.ledger ({} key lookups), manifest items by key ({})",
        listing.len(),
        open.len(),
        ledger.schema_name(),
        ask.len(),
        to_read.len()
    ));
    if opts.check_loaded {
        r.notes.push(format!(
            "--check-loaded: the manifest item of every listed file was read ({} reads){}",
            to_read.len(),
            if opts.scope.is_everything() {
                "; this reads one item per loaded file of the whole lake: scope it with --table"
            } else {
                ""
            }
        ));
    } else if r.loaded > r.loaded_checked {
        r.notes.push(format!(
            "{} loaded files were taken from the ledger without reading their manifest items; \
             --check-loaded also finds loaded files whose manifest item was deleted (one read per loaded file; scope it with --table)",
            r.loaded - r.loaded_checked
        ));
    }
    no_rules_note(ops, &mut r);
    Ok(r)
}

/// Says when no table is looked for although it may have no file.
fn no_rules_note(ops: &Ops, r: &mut Report) {
    if !ops.rules.configured_tables().any(|_| true) && ops.schemas.is_empty() {
        r.notes.push(
            "no rules file (--config / SLUICE_CONFIG) or no table in it, and no --schemas: tables without any file are not checked".to_owned(),
        );
    }
}

/// The report, for a terminal.
pub fn format(r: &Report) -> String {
    let mut out = String::new();
    let scope = match (&r.scope.table, &r.scope.prefix) {
        (None, None) => "the whole lake".to_owned(),
        (Some(t), None) => format!("table {t}"),
        (None, Some(p)) => format!("keys under {p}"),
        (Some(t), Some(p)) => format!("table {t}, keys under {p}"),
    };
    let _ = writeln!(out, "Not loaded in {} ({scope}), at {}", r.source, r.at);
    if r.entries.is_empty() {
        let _ = writeln!(
            out,
            "  nothing: every listed file is loaded, skipped on purpose or in progress"
        );
    } else {
        let _ = writeln!(
            out,
            "{:<18} {:<10} {:<24} {:>8}  KEY (ETAG)",
            "REASON", "STATUS", "TABLE", "AGE"
        );
    }
    for e in &r.entries {
        let what = if e.key.is_empty() {
            format!("(table {})", e.table)
        } else {
            format!("{} ({})", e.key, e.etag)
        };
        let _ = writeln!(
            out,
            "{:<18} {:<10} {:<24} {:>8}  {what}",
            e.reason.as_str(),
            e.status.map(|s| s.as_str()).unwrap_or("-"),
            e.table,
            e.age_secs
                .map(super::human_duration)
                .unwrap_or_else(|| "-".to_owned()),
        );
        let _ = writeln!(out, "{:>20}{}", "", e.why);
    }
    if !r.tables.is_empty() {
        let _ = writeln!(
            out,
            "\nTables late, silent or never seen ({}):",
            r.tables.len()
        );
        out.push_str(&crate::freshness::format_lines(&r.tables));
    }
    if !r.skipped.is_empty() {
        let _ = writeln!(out, "\nSkipped on purpose ({}):", r.skipped.len());
        for s in &r.skipped {
            let _ = writeln!(
                out,
                "  {} ({}) {} by {} at {}: {}{}",
                s.key,
                s.etag,
                s.table,
                s.who,
                s.at,
                s.why,
                if s.in_lake { "" } else { " (no longer in S3)" }
            );
        }
    }
    let counts: Vec<String> = r
        .counts
        .iter()
        .map(|(k, v)| format!("{} {v}", k.as_str()))
        .collect();
    let _ = writeln!(
        out,
        "\n{} listed | {} loaded | {} in progress | {} not loaded{} | {} skipped on purpose",
        r.listed,
        r.loaded,
        r.in_progress,
        r.entries.len(),
        if counts.is_empty() {
            String::new()
        } else {
            format!(" ({})", counts.join(", "))
        },
        r.skipped.len()
    );
    for n in &r.notes {
        let _ = writeln!(out, "note: {n}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_common::manifest::OperatorAction;
    use sluice_common::mapping::map_key;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2024-10-29 12:00 UTC);

    fn obj(key: &str) -> Listed {
        Listed::new("dms/", key, "e", 100, "2024-10-29T09:00:00.000Z")
    }

    fn item(key: &str, status: Status, updated: &str) -> ManifestItem {
        ManifestItem {
            key: key.into(),
            etag: "e".into(),
            table: map_key("dms/", key)
                .map(|f| f.source_table())
                .unwrap_or_default(),
            status: Some(status),
            updated_at: Some(updated.into()),
            size: 100,
            attempts: 1,
            ..Default::default()
        }
    }

    fn pair(key: &str) -> (String, String) {
        (key.into(), "e".into())
    }

    struct Case {
        listing: Vec<Listed>,
        open: Vec<ManifestItem>,
        ledger: HashSet<(String, String)>,
        looked_up: HashMap<(String, String), Option<ManifestItem>>,
        configured: Vec<String>,
    }

    impl Case {
        fn run(&self) -> Report {
            classify(&Inputs {
                listing: &self.listing,
                open: &self.open,
                ledger: &self.ledger,
                looked_up: &self.looked_up,
                configured: &self.configured,
                now: NOW,
                stuck_after: Duration::from_secs(600),
                max_attempts: 5,
            })
        }
    }

    fn reasons(r: &Report) -> Vec<(&str, Reason)> {
        r.entries
            .iter()
            .map(|e| {
                (
                    if e.key.is_empty() {
                        e.table.as_str()
                    } else {
                        e.key.as_str()
                    },
                    e.reason,
                )
            })
            .collect()
    }

    #[test]
    fn every_reason_from_the_three_sources() {
        let loaded = item("dms/s/t/1.csv", Status::Loaded, "2024-10-29T10:00:00.000Z");
        let lost_rows = item("dms/s/t/2.csv", Status::Loaded, "2024-10-29T10:00:00.000Z");
        let mut failed = item("dms/s/t/4.csv", Status::Failed, "2024-10-29T11:00:00.000Z");
        failed.error = Some(FileError {
            class: "column_count".into(),
            message: "record 3 has 2 fields".into(),
            permanent: true,
            ..Default::default()
        });
        let mut skipped = item("dms/s/t/8.csv", Status::Skipped, "2024-10-29T11:00:00.000Z");
        skipped.operator = Some(OperatorAction {
            action: "skip".into(),
            who: "alice".into(),
            reason: Some("vendor test file".into()),
            at: "2024-10-29T11:00:00.000Z".into(),
        });
        let case = Case {
            listing: [
                "dms/s/t/1.csv", // loaded, ledger, read
                "dms/s/t/2.csv", // loaded, no ledger row
                "dms/s/t/3.csv", // not in the manifest
                "dms/s/t/4.csv", // failed
                "dms/s/t/5.csv", // queued long ago: stuck
                "dms/s/t/6.csv", // queued just now: in progress
                "dms/s/t/7.csv", // failed, but the ledger has it
                "dms/s/t/8.csv", // skipped on purpose
                "dms/s/t/9.csv", // loaded, ledger, not read
                "dms/s/u/1.csv", // in the ledger, no manifest item (read)
                "dms/s/",        // folder marker
            ]
            .into_iter()
            .map(obj)
            .collect(),
            open: vec![
                failed,
                item("dms/s/t/5.csv", Status::Queued, "2024-10-29T11:00:00.000Z"),
                item("dms/s/t/6.csv", Status::Queued, "2024-10-29T11:58:00.000Z"),
                item("dms/s/t/7.csv", Status::Failed, "2024-10-29T11:00:00.000Z"),
                skipped,
                item("dms/s/gone/1.csv", Status::Dead, "2024-10-29T11:00:00.000Z"),
            ],
            ledger: [
                "dms/s/t/1.csv",
                "dms/s/t/7.csv",
                "dms/s/t/9.csv",
                "dms/s/u/1.csv",
            ]
            .into_iter()
            .map(pair)
            .collect(),
            looked_up: HashMap::from([
                (pair("dms/s/t/1.csv"), Some(loaded)),
                (pair("dms/s/t/2.csv"), Some(lost_rows)),
                (pair("dms/s/t/3.csv"), None),
                (pair("dms/s/u/1.csv"), None),
            ]),
            configured: vec!["s.t".into(), "s.empty".into()],
        };
        let r = case.run();
        assert_eq!(
            reasons(&r),
            vec![
                ("dms/s/t/2.csv", Reason::LoadedWithoutLedger),
                ("dms/s/t/3.csv", Reason::NotInManifest),
                ("dms/s/t/4.csv", Reason::Failed),
                ("dms/s/t/5.csv", Reason::Stuck),
                ("dms/s/t/7.csv", Reason::LedgerWithoutLoaded),
                ("dms/s/u/1.csv", Reason::LedgerWithoutLoaded),
                ("dms/s/gone/1.csv", Reason::Dead),
                ("s.empty", Reason::NoFiles),
            ]
        );
        assert_eq!(r.listed, 10);
        assert_eq!((r.loaded, r.loaded_checked), (3, 2));
        assert_eq!(r.in_progress, 1);
        assert_eq!(r.skipped.len(), 1);
        assert_eq!(
            (r.skipped[0].who.as_str(), r.skipped[0].why.as_str()),
            ("alice", "vendor test file")
        );
        let failed = &r.entries[2];
        assert!(failed.why.contains("permanent"), "{}", failed.why);
        assert!(
            failed.why.contains("record 3 has 2 fields"),
            "{}",
            failed.why
        );
        let stuck = &r.entries[3];
        assert!(
            stuck
                .why
                .contains("queued, no worker took it, unchanged for 1h 0m"),
            "{}",
            stuck.why
        );
        assert!(!r.entries[6].in_lake && r.entries[6].why.contains("no longer in S3"));
        assert_eq!(r.counts[&Reason::LedgerWithoutLoaded], 2);
        assert_eq!(r.problems(), 8);
    }

    #[test]
    fn a_file_handed_back_during_an_outage_says_it_waits_for_the_database() {
        let mut queued = item("dms/s/t/1.csv", Status::Queued, "2024-10-29T11:00:00.000Z");
        queued.error = Some(FileError {
            class: "database_read_only".into(),
            message: "the database is read-only (sqlstate 25006)".into(),
            ..Default::default()
        });
        let case = Case {
            listing: vec![obj("dms/s/t/1.csv")],
            open: vec![queued],
            ledger: HashSet::new(),
            looked_up: HashMap::new(),
            configured: vec![],
        };
        let r = case.run();
        assert_eq!(r.entries.len(), 1, "{:?}", r.entries);
        assert!(
            r.entries[0].why.contains(
                "queued, handed back during a database outage (database_read_only): waiting for the database"
            ),
            "{}",
            r.entries[0].why
        );
    }

    #[test]
    fn a_file_whose_message_was_not_sent_says_so() {
        let mut queued = item("dms/s/t/1.csv", Status::Queued, "2024-10-29T11:00:00.000Z");
        queued.history = vec![
            "2024-10-29T11:00:00.000Z discovered".into(),
            "2024-10-29T11:00:00.000Z queued".into(),
            "2024-10-29T11:00:00.100Z message not sent (QueueDoesNotExist: gone); a pass sends it again once the item is stale (--requeue-after)".into(),
        ];
        let case = |q: ManifestItem| Case {
            listing: vec![obj("dms/s/t/1.csv")],
            open: vec![q],
            ledger: HashSet::new(),
            looked_up: HashMap::new(),
            configured: vec![],
        };
        let r = case(queued.clone()).run();
        assert!(
            r.entries[0]
                .why
                .contains("queued, but its message was not sent (see the history)"),
            "{}",
            r.entries[0].why
        );
        // Sent since (the id of the message is on the item): waiting for a worker again.
        queued.message_id = Some("m-2".into());
        let r = case(queued).run();
        assert!(
            r.entries[0].why.contains("queued, no worker took it"),
            "{}",
            r.entries[0].why
        );
    }

    #[test]
    fn a_clean_lake_reports_nothing() {
        let case = Case {
            listing: vec![obj("dms/s/t/1.csv")],
            open: vec![],
            ledger: [pair("dms/s/t/1.csv")].into_iter().collect(),
            looked_up: HashMap::new(),
            configured: vec!["s.t".into()],
        };
        let r = case.run();
        assert!(r.entries.is_empty(), "{:?}", r.entries);
        assert_eq!(r.loaded, 1);
        assert_eq!(exit_code(&r, true), 0);
        assert!(format(&r).contains("nothing: every listed file is loaded"));
    }

    #[test]
    fn fail_if_any_counts_problems_but_not_deliberate_skips_or_work_in_progress() {
        let mut r = Report::default();
        assert_eq!(exit_code(&r, true), 0);
        r.skipped.push(Skipped {
            table: "s.t".into(),
            key: "k".into(),
            etag: "e".into(),
            size: 1,
            in_lake: true,
            who: "a".into(),
            why: "b".into(),
            at: "c".into(),
        });
        r.in_progress = 4;
        assert_eq!(exit_code(&r, true), 0);
        r.entries
            .push(missing_entry(&obj("dms/s/t/1.csv"), "s.t", false));
        assert_eq!(exit_code(&r, true), EXIT_FOUND);
        // without the flag the report is information only
        assert_eq!(exit_code(&r, false), 0);
    }
}
