//! Freshness: when each table's newest file landed in the lake, when one was last loaded, how
//! far the warehouse is behind, and whether the table has gone quiet for longer than expected.
//! A DMS task that stops writing a table produces no file at all, so nothing else in Sluice
//! would say so.
//!
//! The expectation of a table is, in order: its rules' `expect_every` (`configured`), or the
//! cadence learned from its recent landings (`learned`), or nothing (`none`). Learning: the
//! landing times (S3 `LastModified`) of the table's newest files are grouped into bursts (files
//! landing within [`BURST_SECS`] of the previous one are one delivery, as DMS writes a full load
//! or a busy minute as several files), and the expectation is the 90th percentile of the gaps
//! between the newest [`LEARN_GAPS`] bursts, once there are at least [`MIN_GAPS`] gaps.
//!
//! States: `never_seen` (no file ever: a table the rules name, or a target table in the
//! allowed schemas), `unknown` (files, but no expectation), `fresh`, `late` (no file for longer
//! than [`LATE_MULTIPLE`] times the expectation) and `silent` (longer than [`SILENT_MULTIPLE`]
//! times). Time is always given (`now`): nothing here reads a clock.
//!
//! Where the figures come from: `status` and `skipped` read the table's open items (already
//! read) and its newest loaded items from the manifest's `table-index`, backwards, at most
//! [`RECENT_LOADED`] (one query per table, bounded, whatever the table's history); a scan
//! pass uses its own listing for the landings and one query of one item per table for the
//! last load (only when metrics are on). Pure apart from [`observe_tables`].

use futures_util::{stream, StreamExt, TryStreamExt};
use serde::Serialize;
use sluice_common::manifest::{ManifestItem, Status};
use sluice_common::rules::Rules;
use sluice_common::store::{ManifestStore, CONCURRENT_CALLS};
use sluice_common::timefmt;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use time::OffsetDateTime;

/// Landings within this many seconds of the previous one belong to the same delivery.
pub const BURST_SECS: i64 = 60;
/// Gaps (between bursts) the learned cadence is computed from, newest first.
pub const LEARN_GAPS: usize = 48;
/// Fewer gaps than this: no cadence is learned (`none`).
pub const MIN_GAPS: usize = 5;
/// Percentile of the gaps taken as the learned cadence.
pub const LEARN_PERCENTILE: f64 = 0.9;
/// Late: no file for longer than this many expectations.
pub const LATE_MULTIPLE: u64 = 1;
/// Silent: no file for longer than this many expectations.
pub const SILENT_MULTIPLE: u64 = 3;
/// Loaded items read per table for `status` and `skipped` (newest first).
pub const RECENT_LOADED: usize = 100;

/// Where a table's expectation comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Configured,
    Learned,
    None,
}

/// A table's freshness state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Fresh,
    Unknown,
    Late,
    Silent,
    NeverSeen,
}

impl State {
    pub const ALL: [State; 5] = [
        State::Fresh,
        State::Unknown,
        State::Late,
        State::Silent,
        State::NeverSeen,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Fresh => "fresh",
            State::Unknown => "unknown",
            State::Late => "late",
            State::Silent => "silent",
            State::NeverSeen => "never_seen",
        }
    }

    /// Whether the table needs someone to look (what `skipped` lists).
    pub fn needs_attention(self) -> bool {
        matches!(self, State::Late | State::Silent | State::NeverSeen)
    }
}

/// What is known of one table's files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// Landing times (S3 LastModified) of its files, any order (the newest ones suffice).
    pub landed: Vec<OffsetDateTime>,
    /// The landing time of the newest loaded file.
    pub newest_loaded_landed: Option<OffsetDateTime>,
    /// When a file of the table was last loaded.
    pub last_loaded_at: Option<OffsetDateTime>,
    /// The landing time of the oldest file not loaded (skipped files excepted).
    pub oldest_unloaded_landed: Option<OffsetDateTime>,
}

/// One table's freshness (`status --json`'s `freshness`, `skipped --json`'s `tables`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableFreshness {
    pub table: String,
    pub state: State,
    /// `configured`, `learned` or `none`.
    pub expectation: Source,
    pub expect_every_secs: Option<u64>,
    /// Gaps the learned cadence was computed from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub learned_from_gaps: Option<usize>,
    pub late_after_secs: Option<u64>,
    pub silent_after_secs: Option<u64>,
    pub newest_landed: Option<String>,
    pub since_landed_secs: Option<u64>,
    pub newest_loaded_landed: Option<String>,
    pub last_loaded_at: Option<String>,
    pub since_loaded_secs: Option<u64>,
    /// How far the warehouse is behind the lake: now minus the landing of the oldest file not
    /// loaded (0 when every file is loaded).
    pub behind_secs: u64,
    pub oldest_unloaded_landed: Option<String>,
}

/// The cadence learned from landing times: (seconds, gaps used). Pure.
pub fn learn(landed: &[OffsetDateTime]) -> Option<(u64, usize)> {
    let mut times: Vec<OffsetDateTime> = landed.to_vec();
    times.sort();
    let mut bursts: Vec<OffsetDateTime> = Vec::new();
    let mut last: Option<OffsetDateTime> = None;
    for t in times {
        if last.is_none_or(|l| (t - l).whole_seconds() > BURST_SECS) {
            bursts.push(t);
        }
        last = Some(t);
    }
    let start = bursts.len().saturating_sub(LEARN_GAPS + 1);
    let mut gaps: Vec<i64> = bursts[start..]
        .windows(2)
        .map(|w| (w[1] - w[0]).whole_seconds())
        .collect();
    if gaps.len() < MIN_GAPS {
        return None;
    }
    gaps.sort_unstable();
    let rank = ((gaps.len() as f64) * LEARN_PERCENTILE).ceil() as usize;
    let p = gaps[rank.clamp(1, gaps.len()) - 1];
    Some((p.max(1) as u64, gaps.len()))
}

fn secs_between(from: OffsetDateTime, now: OffsetDateTime) -> u64 {
    (now - from).whole_seconds().max(0) as u64
}

/// A table's freshness at `now`, with `configured` its rules' `expect_every`. Pure.
pub fn assess(
    table: &str,
    configured: Option<Duration>,
    seen: &Observed,
    now: OffsetDateTime,
) -> TableFreshness {
    let learned = learn(&seen.landed);
    let (expectation, every, gaps) = match (configured, learned) {
        (Some(d), _) => (Source::Configured, Some(d.as_secs().max(1)), None),
        (None, Some((s, n))) => (Source::Learned, Some(s), Some(n)),
        (None, None) => (Source::None, None, None),
    };
    let newest = seen.landed.iter().max().copied();
    let since_landed = newest.map(|t| secs_between(t, now));
    let state = match (since_landed, every) {
        (None, _) => State::NeverSeen,
        (Some(_), None) => State::Unknown,
        (Some(s), Some(e)) if s > e * SILENT_MULTIPLE => State::Silent,
        (Some(s), Some(e)) if s > e * LATE_MULTIPLE => State::Late,
        _ => State::Fresh,
    };
    let fmt = |t: Option<OffsetDateTime>| t.map(timefmt::format);
    TableFreshness {
        table: table.to_owned(),
        state,
        expectation,
        expect_every_secs: every,
        learned_from_gaps: gaps,
        late_after_secs: every.map(|e| e * LATE_MULTIPLE),
        silent_after_secs: every.map(|e| e * SILENT_MULTIPLE),
        newest_landed: fmt(newest),
        since_landed_secs: since_landed,
        newest_loaded_landed: fmt(seen.newest_loaded_landed),
        last_loaded_at: fmt(seen.last_loaded_at),
        since_loaded_secs: seen.last_loaded_at.map(|t| secs_between(t, now)),
        behind_secs: seen
            .oldest_unloaded_landed
            .map(|t| secs_between(t, now))
            .unwrap_or(0),
        oldest_unloaded_landed: fmt(seen.oldest_unloaded_landed),
    }
}

/// Every table's freshness, by name. Pure.
pub fn assess_all(
    rules: &Rules,
    seen: &BTreeMap<String, Observed>,
    now: OffsetDateTime,
) -> Vec<TableFreshness> {
    seen.iter()
        .map(|(t, o)| assess(t, rules.for_table(t).expect_every, o, now))
        .collect()
}

/// Tables per state (every state present). Pure.
pub fn count_states(tables: &[TableFreshness]) -> BTreeMap<State, usize> {
    let mut by: BTreeMap<State, usize> = State::ALL.into_iter().map(|s| (s, 0)).collect();
    for t in tables {
        *by.entry(t.state).or_default() += 1;
    }
    by
}

/// Adds what manifest items say of their tables: landings, the newest loaded, the oldest not
/// loaded. Items of tables outside `into` are left out. Pure.
pub fn add_items(into: &mut BTreeMap<String, Observed>, items: &[ManifestItem]) {
    for i in items {
        let (Some(o), Some(status)) = (into.get_mut(&i.table), i.status) else {
            continue;
        };
        let Some(landed) = timefmt::parse(&i.last_modified) else {
            continue;
        };
        o.landed.push(landed);
        match status {
            Status::Loaded => {
                o.newest_loaded_landed = o.newest_loaded_landed.max(Some(landed));
                let at = i.finished_at.as_deref().or(i.updated_at.as_deref());
                o.last_loaded_at = o.last_loaded_at.max(at.and_then(timefmt::parse));
            }
            Status::Skipped => {}
            _ => {
                let older = o.oldest_unloaded_landed.is_none_or(|t| landed < t);
                if older {
                    o.oldest_unloaded_landed = Some(landed);
                }
            }
        }
    }
}

/// Adds the load of loaded `items` (not their landings: the listing has those). Pure.
pub fn add_loads(into: &mut BTreeMap<String, Observed>, items: &[ManifestItem]) {
    for i in items {
        let Some(o) = into.get_mut(&i.table) else {
            continue;
        };
        if i.status != Some(Status::Loaded) {
            continue;
        }
        let landed = timefmt::parse(&i.last_modified);
        o.newest_loaded_landed = o.newest_loaded_landed.max(landed);
        let at = i.finished_at.as_deref().or(i.updated_at.as_deref());
        o.last_loaded_at = o.last_loaded_at.max(at.and_then(timefmt::parse));
    }
}

/// Reads what `status` and `skipped` need for `tables`: their open items (given) and their
/// newest [`RECENT_LOADED`] loaded items (one bounded `table-index` query per table).
pub async fn observe_tables(
    store: &ManifestStore,
    tables: &BTreeSet<String>,
    open: &[ManifestItem],
) -> Result<BTreeMap<String, Observed>, sluice_common::Error> {
    let loaded: Vec<Vec<ManifestItem>> = stream::iter(tables.iter())
        .map(|t| store.recent_of_table(t, Status::Loaded, RECENT_LOADED))
        .buffer_unordered(CONCURRENT_CALLS)
        .try_collect()
        .await?;
    let mut seen: BTreeMap<String, Observed> = tables
        .iter()
        .map(|t| (t.clone(), Observed::default()))
        .collect();
    add_items(&mut seen, open);
    for items in &loaded {
        add_items(&mut seen, items);
    }
    Ok(seen)
}

/// Landings kept per table: enough for the learned cadence.
pub const KEEP_LANDINGS: usize = 4 * (LEARN_GAPS + 1);

/// Landing times per table from a listing, as RFC 3339 texts (the newest
/// `4 * (LEARN_GAPS + 1)` of each table suffice). Pure.
pub fn landings<'a>(
    listed: impl Iterator<Item = (String, &'a str)>,
) -> BTreeMap<String, Vec<OffsetDateTime>> {
    let mut by: BTreeMap<String, Vec<OffsetDateTime>> = BTreeMap::new();
    for (table, lm) in listed {
        if let Some(t) = timefmt::parse(lm) {
            by.entry(table).or_default().push(t);
        }
    }
    let keep = KEEP_LANDINGS;
    for v in by.values_mut() {
        v.sort_unstable_by(|a, b| b.cmp(a));
        v.truncate(keep);
    }
    by
}

/// The tables' freshness, for a terminal (`status` and `skipped`).
pub fn format_lines(tables: &[TableFreshness]) -> String {
    use super::ops::human_duration;
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<24} {:<10} {:<16} {:>10} {:>10} {:>10}",
        "TABLE", "FRESHNESS", "EXPECTED EVERY", "LANDED", "LOADED", "BEHIND"
    );
    let ago = |s: Option<u64>| {
        s.map(|s| format!("{} ago", human_duration(s)))
            .unwrap_or_else(|| "never".to_owned())
    };
    for t in tables {
        let every = match (t.expect_every_secs, t.expectation) {
            (Some(e), Source::Configured) => format!("{} (set)", human_duration(e)),
            (Some(e), _) => format!("{} (learned)", human_duration(e)),
            (None, _) => "- (none)".to_owned(),
        };
        let _ = writeln!(
            out,
            "{:<24} {:<10} {:<16} {:>10} {:>10} {:>10}",
            t.table,
            t.state.as_str(),
            every,
            ago(t.since_landed_secs),
            ago(t.since_loaded_secs),
            human_duration(t.behind_secs)
        );
    }
    let _ = writeln!(
        out,
        "late: no file for more than {LATE_MULTIPLE}x the expectation; silent: more than {SILENT_MULTIPLE}x; \
         learned: the 90th percentile of the gaps between a table's recent deliveries (at least {MIN_GAPS} gaps)"
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-11-01 00:00 UTC);

    fn hourly(n: i64) -> Vec<OffsetDateTime> {
        (0..n).map(|h| T0 + time::Duration::hours(h)).collect()
    }

    #[test]
    fn hourly_files_teach_an_hour() {
        assert_eq!(learn(&hourly(10)), Some((3600, 9)));
        // Too few gaps: nothing learned.
        assert_eq!(learn(&hourly(5)), None);
        assert_eq!(learn(&hourly(6)), Some((3600, 5)));
        assert_eq!(learn(&[]), None);
    }

    #[test]
    fn a_burst_is_one_delivery_and_outliers_do_not_rule() {
        // Each hour DMS writes three files a few seconds apart.
        let mut t: Vec<OffsetDateTime> = hourly(12)
            .into_iter()
            .flat_map(|h| {
                [
                    h,
                    h + time::Duration::seconds(5),
                    h + time::Duration::seconds(30),
                ]
            })
            .collect();
        t.reverse();
        assert_eq!(learn(&t), Some((3600, 11)));
        // One gap of ten hours in twenty: the 90th percentile is still an hour.
        let mut long = hourly(20);
        long.push(T0 + time::Duration::hours(29));
        assert_eq!(learn(&long), Some((3600, 20)));
        // Only the newest 48 gaps count: an old daily history does not dilute an hourly one.
        let mut mixed: Vec<OffsetDateTime> =
            (0..60).map(|d| T0 - time::Duration::days(d + 1)).collect();
        mixed.extend(hourly(49));
        assert_eq!(learn(&mixed), Some((3600, 48)));
    }

    #[test]
    fn late_then_silent_past_the_expectation() {
        let seen = Observed {
            landed: vec![T0],
            ..Default::default()
        };
        let hour = Some(Duration::from_secs(3600));
        let at = |secs: i64| assess("s.t", hour, &seen, T0 + time::Duration::seconds(secs));
        assert_eq!(at(0).state, State::Fresh);
        assert_eq!(at(3600).state, State::Fresh);
        assert_eq!(at(3601).state, State::Late);
        assert_eq!(at(3 * 3600).state, State::Late);
        assert_eq!(at(3 * 3600 + 1).state, State::Silent);
        let f = at(7200);
        assert_eq!(f.expectation, Source::Configured);
        assert_eq!(
            (f.late_after_secs, f.silent_after_secs),
            (Some(3600), Some(10800))
        );
        assert_eq!(f.since_landed_secs, Some(7200));
        assert_eq!(f.newest_landed.as_deref(), Some("2026-11-01T00:00:00.000Z"));
        // No expectation: unknown; no file: never seen.
        assert_eq!(assess("s.t", None, &seen, T0).state, State::Unknown);
        assert_eq!(assess("s.t", None, &seen, T0).expectation, Source::None);
        let none = assess("s.t", hour, &Observed::default(), T0);
        assert_eq!(none.state, State::NeverSeen);
        assert_eq!(none.since_landed_secs, None);
    }

    #[test]
    fn learned_when_not_configured_and_configured_wins() {
        let seen = Observed {
            landed: hourly(10),
            ..Default::default()
        };
        let last = T0 + time::Duration::hours(9);
        let f = assess("s.t", None, &seen, last + time::Duration::minutes(90));
        assert_eq!(
            (
                f.expectation,
                f.expect_every_secs,
                f.learned_from_gaps,
                f.state
            ),
            (Source::Learned, Some(3600), Some(9), State::Late)
        );
        let f = assess(
            "s.t",
            Some(Duration::from_secs(86400)),
            &seen,
            last + time::Duration::minutes(90),
        );
        assert_eq!((f.expectation, f.state), (Source::Configured, State::Fresh));
    }

    #[test]
    fn items_give_landings_loads_and_the_lag() {
        let item = |n: i64, status: Status| ManifestItem {
            key: format!("k{n}"),
            table: "s.t".into(),
            status: Some(status),
            last_modified: timefmt::format(T0 + time::Duration::hours(n)),
            finished_at: (status == Status::Loaded).then(|| {
                timefmt::format(T0 + time::Duration::hours(n) + time::Duration::minutes(1))
            }),
            ..Default::default()
        };
        let mut seen = BTreeMap::from([("s.t".to_owned(), Observed::default())]);
        add_items(
            &mut seen,
            &[
                item(0, Status::Loaded),
                item(1, Status::Loaded),
                item(2, Status::Skipped),
                item(3, Status::Failed),
                item(4, Status::Queued),
                ManifestItem {
                    table: "other.t".into(),
                    ..item(5, Status::Queued)
                },
            ],
        );
        let o = &seen["s.t"];
        assert_eq!(o.landed.len(), 5);
        assert_eq!(o.newest_loaded_landed, Some(T0 + time::Duration::hours(1)));
        assert_eq!(
            o.last_loaded_at,
            Some(T0 + time::Duration::hours(1) + time::Duration::minutes(1))
        );
        assert_eq!(
            o.oldest_unloaded_landed,
            Some(T0 + time::Duration::hours(3))
        );
        let f = assess("s.t", None, o, T0 + time::Duration::hours(5));
        assert_eq!(f.behind_secs, 2 * 3600);
        assert_eq!(f.since_loaded_secs, Some(3 * 3600 + 59 * 60));
        assert_eq!(f.since_landed_secs, Some(3600));
        let counts = count_states(&[f]);
        assert_eq!(counts[&State::Unknown], 1);
        assert_eq!(counts[&State::Silent], 0);
    }

    #[test]
    fn listing_landings_keep_the_newest() {
        let times: Vec<String> = (0..500)
            .map(|m| timefmt::format(T0 + time::Duration::minutes(m)))
            .collect();
        let by = landings(times.iter().map(|t| ("s.t".to_owned(), t.as_str())));
        assert_eq!(by["s.t"].len(), 4 * (LEARN_GAPS + 1));
        assert_eq!(by["s.t"][0], T0 + time::Duration::minutes(499));
    }
}
