//! The diff plan: what a coordinator pass must do, from the listing and the manifest. Pure.
//!
//! Invariants:
//! - an object version is identified by `(key, etag)`: a known pair costs no write; an unknown
//!   pair is new, or *changed* when the key is known with other ETags (never silently ignored);
//! - a key that does not name a loadable file is still recorded (as `dead`, with the reason), so
//!   the manifest shows every object of the lake; folder markers are the one exception;
//! - open items are re-enqueued when stuck in `discovered`/`queued`/`loading` longer than
//!   `requeue_after` (their last change or, while loading, the worker's heartbeat: a long load
//!   is not stuck), or `failed` (transient) below the attempt limit; `failed` at the limit
//!   becomes `dead`. A stuck item at the limit is re-enqueued all the same: its last attempt
//!   may have committed, and the worker's claim checks the ledger before giving up. Permanent
//!   failures wait for an operator.

pub use crate::listing::Listed;
use sluice_common::manifest::{ManifestItem, Status};
use sluice_common::mapping::{SourceFile, Unmapped};
use sluice_common::timefmt;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;
use time::OffsetDateTime;

/// A listed object to write to the manifest and enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub object: Listed,
    pub file: SourceFile,
}

/// Thresholds for open items.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub requeue_after: Duration,
    pub max_attempts: u32,
    /// How long a full-load generation must go without a new file before it counts as complete.
    pub generation_quiet: Duration,
}

/// What a pass does.
#[derive(Debug, Default)]
pub struct Plan {
    pub new: Vec<Candidate>,
    pub changed: Vec<Candidate>,
    /// Not loadable; recorded as dead with the reason.
    pub unloadable: Vec<(Listed, String)>,
    pub unchanged: usize,
    pub folders: usize,
    pub requeue: Vec<ManifestItem>,
    pub give_up: Vec<ManifestItem>,
    /// Open items left alone (in progress, or failed permanently awaiting an operator).
    pub waiting: usize,
    /// Every table's newest full-load generation (filled by the scan, which knows the manifest).
    pub generations: Vec<crate::generation::GenerationPlan>,
    /// Files not loaded yet (filled by the scan from the open items), for the metrics.
    pub backlog: Backlog,
}

/// Files not loaded yet, as the open index shows them at a pass.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Backlog {
    /// Items per status, of those the pass reads (discovered, queued, loading, failed).
    pub by_status: BTreeMap<Status, usize>,
    /// Per source table (`schema.table`): age in seconds of its oldest file not loaded, from
    /// the object's LastModified.
    pub oldest: BTreeMap<String, f64>,
    /// Per source table: landing times (LastModified) of its newest listed files, for the
    /// freshness metrics ([`crate::freshness::landings`]; filled by the scan from its listing).
    pub landed: BTreeMap<String, Vec<OffsetDateTime>>,
}

/// The backlog of `open` items (dead and skipped ones wait for an operator: not counted as
/// waiting to load).
pub fn backlog(open: &[ManifestItem], now: OffsetDateTime) -> Backlog {
    let mut b = Backlog::default();
    for item in open {
        let Some(status) = item.status else { continue };
        if matches!(status, Status::Dead | Status::Skipped | Status::Loaded) {
            continue;
        }
        *b.by_status.entry(status).or_default() += 1;
        if item.table.is_empty() {
            continue;
        }
        if let Some(age) = timefmt::age(&item.last_modified, now) {
            let secs = age.as_seconds_f64().max(0.0);
            let oldest = b.oldest.entry(item.table.clone()).or_insert(secs);
            *oldest = oldest.max(secs);
        }
    }
    b
}

/// Pairs of the listing that the manifest does not hold (the only ones worth a second look).
pub fn unknown_pairs<'a>(
    listing: &'a [Listed],
    known: &HashMap<(String, String), ManifestItem>,
) -> Vec<&'a Listed> {
    listing
        .iter()
        .filter(|o| !known.contains_key(&(o.key.clone(), o.etag.clone())))
        .collect()
}

/// What a plan is made from.
pub struct PlanInput<'a> {
    /// The listing, each key already mapped.
    pub listing: &'a [Listed],
    /// Manifest items of the listed pairs that were read.
    pub known: &'a HashMap<(String, String), ManifestItem>,
    /// Aligned with the listing (or empty): true where a listing checkpoint vouches that the
    /// manifest holds the pair (it was not read).
    pub vouched: &'a [bool],
    /// Keys of unknown pairs that the manifest holds under another ETag.
    pub keys_with_other_etags: &'a HashSet<String>,
    /// The manifest's open items (from the sparse index).
    pub open: &'a [ManifestItem],
    pub now: OffsetDateTime,
}

/// Builds the plan.
pub fn plan(input: &PlanInput<'_>, policy: Policy) -> Plan {
    let PlanInput {
        listing,
        known,
        vouched,
        keys_with_other_etags,
        open,
        now,
    } = *input;
    let mut p = Plan::default();
    for (i, object) in listing.iter().enumerate() {
        if vouched.get(i).copied().unwrap_or(false)
            || known.contains_key(&(object.key.clone(), object.etag.clone()))
        {
            p.unchanged += 1;
            continue;
        }
        match &object.file {
            Err(Unmapped::Folder) => p.folders += 1,
            Err(reason) => p.unloadable.push((object.clone(), reason.to_string())),
            Ok(file) => {
                let c = Candidate {
                    object: object.clone(),
                    file: file.clone(),
                };
                if keys_with_other_etags.contains(&object.key) {
                    p.changed.push(c);
                } else {
                    p.new.push(c);
                }
            }
        }
    }
    for item in open {
        let Some(status) = item.status else { continue };
        let age = item
            .last_active()
            .and_then(|u| timefmt::age(u, now))
            .unwrap_or(time::Duration::MAX);
        let stale =
            age >= time::Duration::try_from(policy.requeue_after).unwrap_or(time::Duration::MAX);
        match status {
            // Even at the attempt limit: the last attempt may have committed before its worker
            // died, and only a worker can ask the ledger. The next claim does, and gives up
            // only when the ledger does not hold the file.
            Status::Discovered | Status::Queued | Status::Loading if stale => {
                p.requeue.push(item.clone());
            }
            Status::Failed => {
                let permanent = item.error.as_ref().is_some_and(|e| e.permanent);
                if item.attempts >= policy.max_attempts {
                    p.give_up.push(item.clone());
                } else if !permanent && stale {
                    p.requeue.push(item.clone());
                } else {
                    p.waiting += 1;
                }
            }
            _ => p.waiting += 1,
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_common::manifest::FileError;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2024-10-29 12:00 UTC);
    const POLICY: Policy = Policy {
        generation_quiet: Duration::from_secs(300),
        requeue_after: Duration::from_secs(600),
        max_attempts: 3,
    };

    fn obj(key: &str, etag: &str) -> Listed {
        let prefix = if key.starts_with("p/") { "p/" } else { "" };
        Listed::new(prefix, key, etag, 1, "2024-10-29T11:00:00.000Z")
    }

    /// The plan of a listing, with no checkpoint and the given manifest.
    fn plan_of(
        listing: &[Listed],
        known: &HashMap<(String, String), ManifestItem>,
        vouched: &[bool],
        others: &HashSet<String>,
        open: &[ManifestItem],
        policy: Policy,
    ) -> Plan {
        let input = PlanInput {
            listing,
            known,
            vouched,
            keys_with_other_etags: others,
            open,
            now: NOW,
        };
        plan(&input, policy)
    }

    fn item(key: &str, status: Status, attempts: u32, updated: &str) -> ManifestItem {
        ManifestItem {
            key: key.into(),
            etag: "e".into(),
            status: Some(status),
            attempts,
            updated_at: Some(updated.into()),
            ..Default::default()
        }
    }

    fn known(pairs: &[(&str, &str)]) -> HashMap<(String, String), ManifestItem> {
        pairs
            .iter()
            .map(|(k, e)| (((*k).into(), (*e).into()), ManifestItem::default()))
            .collect()
    }

    #[test]
    fn backlog_counts_open_items_and_the_oldest_per_table() {
        let mut open = vec![
            item("a", Status::Queued, 0, "2024-10-29T11:00:00.000Z"),
            item("b", Status::Failed, 2, "2024-10-29T11:00:00.000Z"),
            item("c", Status::Loading, 1, "2024-10-29T11:00:00.000Z"),
            item("d", Status::Dead, 5, "2024-10-29T11:00:00.000Z"),
        ];
        let times = [
            "2024-10-29T11:59:00.000Z",
            "2024-10-29T11:00:00.000Z",
            "bad",
            "2024-10-01T00:00:00.000Z",
        ];
        let tables = ["s.t", "s.t", "s.u", "s.t"];
        for ((i, t), table) in open.iter_mut().zip(times).zip(tables) {
            i.last_modified = t.into();
            i.table = table.into();
        }
        let b = backlog(&open, NOW);
        assert_eq!(
            b.by_status,
            BTreeMap::from([
                (Status::Queued, 1),
                (Status::Loading, 1),
                (Status::Failed, 1)
            ])
        );
        // the dead file does not count; s.u's time does not parse
        assert_eq!(b.oldest, BTreeMap::from([("s.t".to_owned(), 3600.0)]));
    }

    #[test]
    fn new_changed_and_unchanged_by_key_and_etag() {
        let listing = vec![
            obj("p/s/t/LOAD00000001.csv", "a"),
            obj("p/s/t/LOAD00000002.csv", "b2"),
            obj("p/s/t/20241029-110000000.csv", "c"),
        ];
        let k = known(&[
            ("p/s/t/LOAD00000001.csv", "a"),
            ("p/s/t/LOAD00000002.csv", "b1"),
        ]);
        assert_eq!(unknown_pairs(&listing, &k).len(), 2);
        let others = HashSet::from(["p/s/t/LOAD00000002.csv".to_string()]);
        let p = plan_of(&listing, &k, &[], &others, &[], POLICY);
        assert_eq!(p.unchanged, 1);
        assert_eq!(p.changed.len(), 1);
        assert_eq!(p.changed[0].object.etag, "b2");
        assert_eq!(p.new.len(), 1);
        assert_eq!(p.new[0].file.table, "t");
    }

    #[test]
    fn a_pair_a_checkpoint_vouches_for_is_unchanged_without_being_read() {
        let listing = vec![
            obj("p/s/t/20241029-110000000.csv", "a"),
            obj("p/s/t/20241029-110000001.csv", "b"),
        ];
        let p = plan_of(
            &listing,
            &HashMap::new(),
            &[true, false],
            &HashSet::new(),
            &[],
            POLICY,
        );
        assert_eq!(p.unchanged, 1);
        assert_eq!(p.new.len(), 1);
        assert_eq!(p.new[0].object.etag, "b");
    }

    #[test]
    fn unloadable_keys_are_recorded_folders_ignored_parquet_planned() {
        let listing = vec![
            obj("p/s/", ""),
            obj("p/readme.txt", "x"),
            obj("p/s/t/x.orc", "y"),
            obj("p/s/t/LOAD00000001.parquet", "z"),
        ];
        let p = plan_of(&listing, &HashMap::new(), &[], &HashSet::new(), &[], POLICY);
        assert_eq!(p.folders, 1);
        assert_eq!(p.unloadable.len(), 2);
        assert!(p.unloadable[1].1.contains("x.orc"));
        // DMS Parquet files are picked up like CSV ones.
        assert_eq!(p.new.len(), 1);
        assert_eq!(
            p.new[0].file.format,
            sluice_common::mapping::Format::Parquet
        );
    }

    #[test]
    fn stuck_items_are_requeued_fresh_ones_left_alone() {
        let open = vec![
            item("a", Status::Queued, 0, "2024-10-29T11:00:00.000Z"),
            item("b", Status::Queued, 0, "2024-10-29T11:59:00.000Z"),
            item("c", Status::Discovered, 0, "2024-10-29T11:00:00.000Z"),
            item("d", Status::Loading, 1, "2024-10-29T11:00:00.000Z"),
            item("e", Status::Dead, 3, "2024-10-29T11:00:00.000Z"),
            item("f", Status::Skipped, 0, "2024-10-29T11:00:00.000Z"),
        ];
        let p = plan_of(&[], &HashMap::new(), &[], &HashSet::new(), &open, POLICY);
        let keys: Vec<&str> = p.requeue.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(keys, vec!["a", "c", "d"]);
        assert_eq!(p.waiting, 3);
        assert!(p.give_up.is_empty());
    }

    #[test]
    fn failed_items_retry_below_the_limit_and_die_at_it() {
        let mut permanent = item("p", Status::Failed, 1, "2024-10-29T11:00:00.000Z");
        permanent.error = Some(FileError {
            permanent: true,
            ..Default::default()
        });
        let open = vec![
            item("t", Status::Failed, 1, "2024-10-29T11:00:00.000Z"),
            item("x", Status::Failed, 3, "2024-10-29T11:00:00.000Z"),
            item("q", Status::Queued, 3, "2024-10-29T11:00:00.000Z"),
            permanent,
        ];
        let p = plan_of(&[], &HashMap::new(), &[], &HashSet::new(), &open, POLICY);
        // `q` is stuck at the limit: back to a worker, whose claim asks the ledger first.
        assert_eq!(
            p.requeue.iter().map(|i| i.key.as_str()).collect::<Vec<_>>(),
            vec!["t", "q"]
        );
        assert_eq!(
            p.give_up.iter().map(|i| i.key.as_str()).collect::<Vec<_>>(),
            vec!["x"]
        );
        assert_eq!(p.waiting, 1);
    }

    #[test]
    fn a_loading_item_whose_worker_beats_is_not_stuck() {
        let mut beating = item("beating", Status::Loading, 1, "2024-10-29T11:00:00.000Z");
        beating.heartbeat_at = Some("2024-10-29T11:59:30.000Z".into());
        let mut silent = item("silent", Status::Loading, 1, "2024-10-29T11:00:00.000Z");
        silent.heartbeat_at = Some("2024-10-29T11:40:00.000Z".into());
        // A beat left from an earlier claim does not make a re-queued item look alive.
        let mut queued = item("queued", Status::Queued, 1, "2024-10-29T11:00:00.000Z");
        queued.heartbeat_at = Some("2024-10-29T11:59:30.000Z".into());
        let mut at_limit = item("at_limit", Status::Loading, 3, "2024-10-29T11:00:00.000Z");
        at_limit.heartbeat_at = Some("2024-10-29T11:58:00.000Z".into());
        let open = vec![beating, silent, queued, at_limit];
        let p = plan_of(&[], &HashMap::new(), &[], &HashSet::new(), &open, POLICY);
        assert_eq!(
            p.requeue.iter().map(|i| i.key.as_str()).collect::<Vec<_>>(),
            vec!["silent", "queued"]
        );
        assert!(p.give_up.is_empty());
        assert_eq!(p.waiting, 2);
    }

    #[test]
    fn zero_requeue_after_requeues_every_stuck_item() {
        let open = vec![item("b", Status::Queued, 0, "2024-10-29T12:00:00.000Z")];
        let policy = Policy {
            generation_quiet: Duration::from_secs(300),
            requeue_after: Duration::ZERO,
            ..POLICY
        };
        let p = plan_of(&[], &HashMap::new(), &[], &HashSet::new(), &open, policy);
        assert_eq!(p.requeue.len(), 1);
    }
}
