//! The effect of each manifest move, as plain data: which attributes a [`Transition`] sets, sets
//! only if absent, and removes, how it changes the attempt count, the history entry it appends,
//! and the condition under which it may be applied. Pure (given the time, passed in); the store
//! only renders an [`Effect`] as a DynamoDB `UpdateItem` ([`crate::store`]).
//!
//! Invariants kept here:
//! - every move sets `status`, `updated_at` and `status_at` (`status#updated_at`), and `open`
//!   while the target is open, removing it otherwise (the sparse index never holds a loaded item);
//! - the attempt count changes only as [`Transition::attempt_delta`] says, or restarts for
//!   operator moves that start a fresh round ([`Attempts::Restart`]), when the last error is also
//!   removed unless the move sets one;
//! - a failure is recorded only for the claim that fails: the condition requires the expected
//!   attempt and, with it, the expected worker ([`Condition`]);
//! - error texts, notes and operator texts are capped (and error texts and notes scrubbed of
//!   secrets, [`crate::telemetry::scrub`]) before they reach the item or its history.

use super::{cap_text, Changes, FileError, NewFile, Status, Transition, HISTORY_TEXT_MAX};
use crate::telemetry::scrub;

/// An attribute value, as the manifest stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    S(String),
    N(i64),
    Bool(bool),
}

fn s(v: &str) -> Value {
    Value::S(v.to_owned())
}

/// How a move changes the attempt count of the item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempts {
    Unchanged,
    /// `attempts` becomes its value (0 if absent) plus this.
    Add(i64),
    /// A fresh round: `attempts_before` grows by `attempts`, `attempts` becomes 0 and `retries`
    /// grows by one (all read from the item as it was before the move).
    Restart,
}

/// What a move writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    /// Attributes set, in order.
    pub set: Vec<(&'static str, Value)>,
    /// Attributes set only when the item lacks them (a lost item's base).
    pub set_if_absent: Vec<(&'static str, Value)>,
    /// Attributes removed, in order.
    pub remove: Vec<&'static str>,
    pub attempts: Attempts,
    /// The entry appended to the history (which the store keeps capped).
    pub history: String,
}

/// When a move may be applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// The statuses it may start from (`None`: no item yet), [`Transition::allowed_from`].
    pub from: &'static [Option<Status>],
    /// Only when the item's attempt count equals this.
    pub attempt: Option<u32>,
    /// Only when the item's worker equals this; set only together with `attempt`.
    pub worker: Option<String>,
    /// Only when the item's `updated_at` equals this.
    pub updated_at: Option<String>,
}

/// A move's write and its condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effect {
    pub update: Update,
    pub condition: Condition,
}

/// The error attributes, all removed when an error is cleared.
pub const ERROR_ATTRS: [&str; 8] = [
    "error",
    "error_class",
    "error_permanent",
    "error_sqlstate",
    "error_record",
    "error_line",
    "error_column",
    "error_value",
];

/// The effect of `transition` with `changes` made at `now` (RFC 3339).
pub fn effect(transition: Transition, changes: &Changes, now: &str) -> Effect {
    let mut u = Update {
        set: Vec::new(),
        set_if_absent: Vec::new(),
        remove: Vec::new(),
        attempts: attempts(transition),
        history: history_entry(transition, changes, now),
    };
    status_and_times(&mut u, transition, now);
    if transition.restarts_attempts() && changes.error.is_none() {
        // The last error belongs to the round that ended; the history keeps it.
        u.remove.extend(ERROR_ATTRS);
    }
    if let Some(op) = &changes.operator {
        u.set.push(("operator_action", s(transition.name())));
        u.set.push(("operator", s(&cap_text(&op.who, 300))));
        u.set.push(("operator_at", s(now)));
        match &op.reason {
            Some(r) => u.set.push(("operator_reason", s(&cap_text(r, 2000)))),
            None => u.remove.push("operator_reason"),
        }
    }
    if let Some(worker) = &changes.worker {
        u.set.push(("worker", s(worker)));
    }
    if let Some(id) = &changes.message_id {
        u.set.push(("message_id", s(id)));
    }
    match &changes.error {
        Some(Some(e)) => error_attributes(&mut u, e),
        Some(None) => u.remove.extend(ERROR_ATTRS),
        None => {}
    }
    results(&mut u, changes);
    if let Some(base) = &changes.base {
        u.set_if_absent.extend(
            base_attributes(base)
                .into_iter()
                .filter(|(attr, _)| *attr != "key" && *attr != "etag"),
        );
        u.set_if_absent.push(("discovered_at", s(now)));
    }
    Effect {
        update: u,
        condition: condition(transition, changes),
    }
}

fn attempts(transition: Transition) -> Attempts {
    match transition.attempt_delta() {
        0 if transition.restarts_attempts() => Attempts::Restart,
        0 => Attempts::Unchanged,
        delta => Attempts::Add(delta),
    }
}

/// The status, its index keys and the move's timestamps.
fn status_and_times(u: &mut Update, transition: Transition, now: &str) {
    let target = transition.target();
    u.set.push(("status", s(target.as_str())));
    u.set.push(("updated_at", s(now)));
    u.set.push(("status_at", s(&format!("{target}#{now}"))));
    if target.is_open() {
        u.set.push(("open", s(target.as_str())));
    } else {
        u.remove.push("open");
    }
    match transition {
        Transition::Enqueue => u.set.push(("enqueued_at", s(now))),
        Transition::Retry | Transition::Reload => {
            u.set.push(("enqueued_at", s(now)));
            u.remove.push("finished_at");
        }
        Transition::Claim => {
            u.set.push(("started_at", s(now)));
            u.remove.push("finished_at");
        }
        Transition::Complete | Transition::Fail | Transition::GiveUp | Transition::Skip => {
            u.set.push(("finished_at", s(now)))
        }
        Transition::Discover | Transition::HandBack => {}
    }
}

/// Row counts and phase timings of a load.
fn results(u: &mut Update, changes: &Changes) {
    if let Some(rows) = changes.rows {
        u.set.push(("rows_read", Value::N(rows.read)));
        u.set.push(("rows_merged", Value::N(rows.merged)));
        u.set.push(("rows_rejected", Value::N(rows.rejected)));
        u.set.push(("rows_superseded", Value::N(rows.superseded)));
        u.set.push(("fields_repaired", Value::N(rows.repaired)));
    }
    if let Some(t) = changes.timings {
        u.set.push(("copy_ms", Value::N(t.copy_ms as i64)));
        u.set.push(("merge_ms", Value::N(t.merge_ms as i64)));
        u.set.push(("commit_ms", Value::N(t.commit_ms as i64)));
    }
}

/// An error's attributes: those it has are set, the others removed (nothing of an earlier error
/// is left beside it).
fn error_attributes(u: &mut Update, e: &FileError) {
    // Library texts may carry anything: secrets never reach the manifest.
    u.set
        .push(("error", s(&cap_text(&scrub(&e.message), 4000))));
    u.set.push(("error_class", s(&e.class)));
    u.set.push(("error_permanent", Value::Bool(e.permanent)));
    let optional = [
        ("error_sqlstate", e.sqlstate.as_deref().map(s)),
        ("error_record", e.record.map(|v| Value::N(v as i64))),
        ("error_line", e.line.map(|v| Value::N(v as i64))),
        (
            "error_column",
            e.column.as_deref().map(|v| s(&cap_text(v, 300))),
        ),
        (
            "error_value",
            e.value.as_deref().map(|v| s(&cap_text(&scrub(v), 600))),
        ),
    ];
    for (attr, value) in optional {
        match value {
            Some(v) => u.set.push((attr, v)),
            None => u.remove.push(attr),
        }
    }
}

/// The condition of a move: the statuses it may start from, plus the expectations the caller
/// set. The worker is checked only with the attempt: the claim being failed is this worker's,
/// and an attempt of the same number made by another worker after an operator's retry is not
/// overwritten.
pub fn condition(transition: Transition, changes: &Changes) -> Condition {
    Condition {
        from: transition.allowed_from(),
        attempt: changes.expect_attempt,
        worker: changes.expect_attempt.and(changes.worker.clone()),
        updated_at: changes.expect_updated_at.clone(),
    }
}

/// The history entry of a move: time, target status, worker, error, operator move and note,
/// each text capped at [`HISTORY_TEXT_MAX`].
pub fn history_entry(transition: Transition, changes: &Changes, now: &str) -> String {
    let mut event = format!("{now} {}", transition.target());
    if let Some(w) = &changes.worker {
        event.push_str(&format!(" by {w}"));
    }
    if let Some(Some(e)) = &changes.error {
        event.push_str(&format!(
            ": {}",
            cap_text(&scrub(&e.message), HISTORY_TEXT_MAX)
        ));
    }
    if let Some(op) = &changes.operator {
        let mut text = format!("{} by {}", transition.name(), op.who);
        if let Some(r) = &op.reason {
            text.push_str(&format!(": {r}"));
        }
        event.push_str(&format!(" ({})", cap_text(&text, HISTORY_TEXT_MAX)));
    }
    if let Some(note) = &changes.note {
        event.push_str(&format!(" ({})", cap_text(&scrub(note), HISTORY_TEXT_MAX)));
    }
    event
}

/// The history entry of a note written without a move (generation bookkeeping).
pub fn note_entry(note: &str, now: &str) -> String {
    format!("{now} {}", cap_text(&scrub(note), HISTORY_TEXT_MAX))
}

/// A new object version's item, written only where none exists: `discovered`
/// ([`Transition::Discover`], [`discovered`]) or already `queued` ([`discovered_and_queued`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewItem {
    /// Its base ([`base_attributes`]), its status, no attempt yet, and its times.
    pub attributes: Vec<(&'static str, Value)>,
    /// Its history's first entries.
    pub history: Vec<String>,
}

/// The item of `file` discovered at `now`.
pub fn discovered(file: &NewFile, now: &str) -> NewItem {
    let status = Transition::Discover.target();
    let mut attributes = base_attributes(file);
    attributes.extend([
        ("status", s(status.as_str())),
        ("open", s(status.as_str())),
        ("attempts", Value::N(0)),
        ("discovered_at", s(now)),
        ("updated_at", s(now)),
        ("status_at", s(&format!("{status}#{now}"))),
    ]);
    NewItem {
        attributes,
        history: vec![format!("{now} {status}")],
    }
}

/// The item of `file` discovered at `now` and enqueued in the same step: the `discovered`
/// item ([`discovered`]) with the `queued` status and `enqueued_at` of [`Transition::Enqueue`],
/// and both entries in its history. A pass writes this before it sends the file's message, so
/// a file in the queue always has its item (one write where `Discover` then `Enqueue` make two).
pub fn discovered_and_queued(file: &NewFile, now: &str) -> NewItem {
    let mut item = discovered(file, now);
    let enqueue = effect(Transition::Enqueue, &Changes::default(), now).update;
    // The move's attributes laid over the new item's: each replaces its namesake or is added.
    for (attr, v) in enqueue.set {
        match item.attributes.iter_mut().find(|(a, _)| *a == attr) {
            Some(slot) => slot.1 = v,
            None => item.attributes.push((attr, v)),
        }
    }
    item.history.push(enqueue.history);
    item
}

/// The attributes of a new item, `key` and `etag` first. `table` is an index key, so it is left
/// out (not written empty, which DynamoDB refuses) for objects that name no table.
pub fn base_attributes(file: &NewFile) -> Vec<(&'static str, Value)> {
    let mut attrs = vec![
        ("key", s(&file.key)),
        ("etag", s(&file.etag)),
        ("bucket", s(&file.bucket)),
        ("size", Value::N(file.size)),
        ("last_modified", s(&file.last_modified)),
        ("table", s(&file.table)),
        ("kind", s(&file.kind)),
    ];
    if file.table.is_empty() {
        attrs.retain(|(attr, _)| *attr != "table");
    }
    attrs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{Operator, PhaseTimings, RowCounts, HISTORY_CAP};
    use Status::*;

    const NOW: &str = "2024-10-29T11:34:01.123Z";

    fn set_of(u: &Update) -> Vec<&'static str> {
        u.set.iter().map(|(a, _)| *a).collect()
    }

    fn get<'a>(u: &'a Update, attr: &str) -> Option<&'a Value> {
        u.set.iter().find(|(a, _)| *a == attr).map(|(_, v)| v)
    }

    fn file(table: &str) -> NewFile {
        NewFile {
            bucket: "b".into(),
            key: "k".into(),
            etag: "e".into(),
            size: 7,
            last_modified: "2024-01-01T00:00:00.000Z".into(),
            table: table.into(),
            kind: "cdc".into(),
        }
    }

    fn error() -> FileError {
        FileError {
            message: "boom".into(),
            class: "column_count".into(),
            permanent: true,
            line: Some(9),
            ..FileError::default()
        }
    }

    #[test]
    fn every_move_sets_its_status_and_index_keys() {
        for t in [
            Transition::Discover,
            Transition::Enqueue,
            Transition::Claim,
            Transition::HandBack,
            Transition::Complete,
            Transition::Fail,
            Transition::GiveUp,
            Transition::Retry,
            Transition::Reload,
            Transition::Skip,
        ] {
            let e = effect(t, &Changes::default(), NOW);
            let u = &e.update;
            let target = t.target();
            assert_eq!(
                &u.set[..3],
                &[
                    ("status", s(target.as_str())),
                    ("updated_at", s(NOW)),
                    ("status_at", s(&format!("{target}#{NOW}"))),
                ]
            );
            assert_eq!(
                get(u, "open"),
                target.is_open().then(|| s(target.as_str())).as_ref()
            );
            assert_eq!(
                u.remove.contains(&"open"),
                !target.is_open(),
                "{}",
                t.name()
            );
            assert_eq!(u.history, format!("{NOW} {target}"));
            assert!(u.set_if_absent.is_empty());
            assert_eq!(e.condition.from, t.allowed_from());
            assert_eq!(e.condition.attempt, None);
        }
    }

    #[test]
    fn timestamps_of_each_move() {
        let times = |t: Transition| {
            let u = effect(t, &Changes::default(), NOW).update;
            let set: Vec<&str> = set_of(&u)
                .into_iter()
                .filter(|a| a.ends_with("ed_at") && *a != "updated_at")
                .collect();
            (set, u.remove.contains(&"finished_at"))
        };
        assert_eq!(times(Transition::Discover), (vec![], false));
        assert_eq!(times(Transition::HandBack), (vec![], false));
        assert_eq!(times(Transition::Enqueue), (vec!["enqueued_at"], false));
        assert_eq!(times(Transition::Retry), (vec!["enqueued_at"], true));
        assert_eq!(times(Transition::Reload), (vec!["enqueued_at"], true));
        assert_eq!(times(Transition::Claim), (vec!["started_at"], true));
        for t in [
            Transition::Complete,
            Transition::Fail,
            Transition::GiveUp,
            Transition::Skip,
        ] {
            assert_eq!(times(t), (vec!["finished_at"], false), "{}", t.name());
        }
    }

    #[test]
    fn only_claims_hand_backs_and_fresh_rounds_touch_attempts() {
        let a = |t| effect(t, &Changes::default(), NOW).update.attempts;
        assert_eq!(a(Transition::Claim), Attempts::Add(1));
        assert_eq!(a(Transition::HandBack), Attempts::Add(-1));
        assert_eq!(a(Transition::Retry), Attempts::Restart);
        assert_eq!(a(Transition::Reload), Attempts::Restart);
        for t in [
            Transition::Discover,
            Transition::Enqueue,
            Transition::Complete,
            Transition::Fail,
            Transition::GiveUp,
            Transition::Skip,
        ] {
            assert_eq!(a(t), Attempts::Unchanged, "{}", t.name());
        }
    }

    #[test]
    fn a_fresh_round_clears_the_last_error_unless_it_sets_one() {
        let u = effect(Transition::Retry, &Changes::default(), NOW).update;
        for attr in ERROR_ATTRS {
            assert!(u.remove.contains(&attr), "{attr}");
        }
        let changes = Changes {
            error: Some(Some(error())),
            ..Changes::default()
        };
        let u = effect(Transition::Reload, &changes, NOW).update;
        assert_eq!(get(&u, "error"), Some(&s("boom")));
        assert!(!u.remove.contains(&"error"));
        // other moves leave an error alone when told nothing
        let u = effect(Transition::Enqueue, &Changes::default(), NOW).update;
        assert!(!u.remove.contains(&"error"));
    }

    #[test]
    fn errors_are_set_whole_and_cleared_whole() {
        let changes = Changes {
            worker: Some("w1".into()),
            error: Some(Some(error())),
            ..Changes::default()
        };
        let u = effect(Transition::Fail, &changes, NOW).update;
        assert_eq!(get(&u, "error"), Some(&s("boom")));
        assert_eq!(get(&u, "error_class"), Some(&s("column_count")));
        assert_eq!(get(&u, "error_permanent"), Some(&Value::Bool(true)));
        assert_eq!(get(&u, "error_line"), Some(&Value::N(9)));
        // what this error lacks, an earlier one's is removed
        for attr in [
            "error_sqlstate",
            "error_record",
            "error_column",
            "error_value",
        ] {
            assert!(
                u.remove.contains(&attr) && get(&u, attr).is_none(),
                "{attr}"
            );
        }
        assert_eq!(u.history, format!("{NOW} failed by w1: boom"));

        let cleared = Changes {
            error: Some(None),
            ..Changes::default()
        };
        let u = effect(Transition::Complete, &cleared, NOW).update;
        assert_eq!(u.remove, [&["open"][..], &ERROR_ATTRS[..]].concat());
    }

    #[test]
    fn long_error_texts_are_capped() {
        let e = FileError {
            message: "x".repeat(10_000),
            column: Some("c".repeat(1_000)),
            value: Some("v".repeat(1_000)),
            ..FileError::default()
        };
        let changes = Changes {
            error: Some(Some(e)),
            ..Changes::default()
        };
        let u = effect(Transition::GiveUp, &changes, NOW).update;
        let len = |attr| match get(&u, attr) {
            Some(Value::S(v)) => v.len(),
            other => panic!("{attr}: {other:?}"),
        };
        assert!(len("error") < 4100 && len("error_column") < 400 && len("error_value") < 700);
        assert!(u.history.len() < 400, "{}", u.history.len());
    }

    #[test]
    fn operator_moves_record_who_and_why() {
        let changes = Changes {
            operator: Some(Operator {
                who: "alice".into(),
                reason: Some("vendor resent it".into()),
            }),
            expect_updated_at: Some("2024-10-29T11:00:00.000Z".into()),
            ..Changes::default()
        };
        let e = effect(Transition::Skip, &changes, NOW);
        let u = &e.update;
        assert_eq!(get(u, "operator_action"), Some(&s("skip")));
        assert_eq!(get(u, "operator"), Some(&s("alice")));
        assert_eq!(get(u, "operator_at"), Some(&s(NOW)));
        assert_eq!(get(u, "operator_reason"), Some(&s("vendor resent it")));
        assert_eq!(
            u.history,
            format!("{NOW} skipped (skip by alice: vendor resent it)")
        );
        assert_eq!(
            e.condition.updated_at.as_deref(),
            Some("2024-10-29T11:00:00.000Z")
        );

        // no reason: an earlier one is removed
        let changes = Changes {
            operator: Some(Operator {
                who: "bob".into(),
                reason: None,
            }),
            ..Changes::default()
        };
        let u = effect(Transition::Retry, &changes, NOW).update;
        assert!(u.remove.contains(&"operator_reason"));
        assert_eq!(u.attempts, Attempts::Restart);
        assert_eq!(u.history, format!("{NOW} queued (retry by bob)"));
    }

    fn attribute_of<'a>(item: &'a NewItem, attr: &str) -> Option<&'a Value> {
        item.attributes
            .iter()
            .find(|(a, _)| *a == attr)
            .map(|(_, v)| v)
    }

    #[test]
    fn a_discovered_item_starts_its_story() {
        let item = discovered(&file("s.t"), NOW);
        let attrs: Vec<&str> = item.attributes.iter().map(|(a, _)| *a).collect();
        assert_eq!(
            attrs,
            [
                "key",
                "etag",
                "bucket",
                "size",
                "last_modified",
                "table",
                "kind",
                "status",
                "open",
                "attempts",
                "discovered_at",
                "updated_at",
                "status_at"
            ]
        );
        let get = |attr| attribute_of(&item, attr);
        assert_eq!(get("status"), Some(&s("discovered")));
        assert_eq!(get("attempts"), Some(&Value::N(0)));
        assert_eq!(get("status_at"), Some(&s(&format!("discovered#{NOW}"))));
        assert_eq!(item.history, [format!("{NOW} discovered")]);
        assert!(discovered(&file(""), NOW)
            .attributes
            .iter()
            .all(|(a, _)| *a != "table"));
    }

    #[test]
    fn an_item_discovered_and_queued_at_once_says_both() {
        let item = discovered_and_queued(&file("s.t"), NOW);
        let get = |attr| attribute_of(&item, attr);
        assert_eq!(get("status"), Some(&s("queued")));
        assert_eq!(get("open"), Some(&s("queued")));
        assert_eq!(get("status_at"), Some(&s(&format!("queued#{NOW}"))));
        assert_eq!(get("enqueued_at"), Some(&s(NOW)));
        assert_eq!(get("discovered_at"), Some(&s(NOW)));
        assert_eq!(get("attempts"), Some(&Value::N(0)));
        assert_eq!(
            item.history,
            [format!("{NOW} discovered"), format!("{NOW} queued")]
        );
        let plain = discovered(&file("s.t"), NOW);
        assert_eq!(item.attributes.len(), plain.attributes.len() + 1);
    }

    #[test]
    fn a_lost_item_is_created_from_its_base() {
        let changes = Changes {
            worker: Some("w1".into()),
            message_id: Some("m1".into()),
            base: Some(file("s.t")),
            ..Changes::default()
        };
        let u = effect(Transition::Claim, &changes, NOW).update;
        let absent: Vec<&str> = u.set_if_absent.iter().map(|(a, _)| *a).collect();
        assert_eq!(
            absent,
            [
                "bucket",
                "size",
                "last_modified",
                "table",
                "kind",
                "discovered_at"
            ]
        );
        assert_eq!(u.set_if_absent[1].1, Value::N(7));
        assert_eq!(get(&u, "worker"), Some(&s("w1")));
        assert_eq!(get(&u, "message_id"), Some(&s("m1")));
        // an object that names no table has no `table` (an index key cannot be empty)
        let changes = Changes {
            base: Some(file("")),
            ..Changes::default()
        };
        let u = effect(Transition::Claim, &changes, NOW).update;
        assert!(u.set_if_absent.iter().all(|(a, _)| *a != "table"));
        let attrs: Vec<&str> = base_attributes(&file("s.t"))
            .iter()
            .map(|(a, _)| *a)
            .collect();
        assert_eq!(&attrs[..2], ["key", "etag"]);
    }

    #[test]
    fn rows_and_timings_of_a_load() {
        let changes = Changes {
            rows: Some(RowCounts {
                read: 5,
                merged: 4,
                rejected: 1,
                superseded: 2,
                repaired: 3,
            }),
            timings: Some(PhaseTimings {
                copy_ms: 10,
                merge_ms: 20,
                commit_ms: 30,
            }),
            ..Changes::default()
        };
        let u = effect(Transition::Complete, &changes, NOW).update;
        let n = |attr| get(&u, attr).cloned();
        assert_eq!(n("rows_read"), Some(Value::N(5)));
        assert_eq!(n("rows_superseded"), Some(Value::N(2)));
        assert_eq!(n("fields_repaired"), Some(Value::N(3)));
        assert_eq!(n("copy_ms"), Some(Value::N(10)));
        assert_eq!(n("commit_ms"), Some(Value::N(30)));
    }

    #[test]
    fn failing_or_handing_back_a_claim_requires_its_attempt_and_worker() {
        for t in [Transition::Fail, Transition::HandBack] {
            let changes = Changes {
                worker: Some("w1".into()),
                expect_attempt: Some(2),
                ..Changes::default()
            };
            let c = effect(t, &changes, NOW).condition;
            assert_eq!(c.from, &[Some(Loading)]);
            assert_eq!((c.attempt, c.worker.as_deref()), (Some(2), Some("w1")));
        }
        // a worker without an expected attempt is written, not required
        let changes = Changes {
            worker: Some("w1".into()),
            ..Changes::default()
        };
        let c = effect(Transition::Claim, &changes, NOW).condition;
        assert_eq!((c.attempt, c.worker), (None, None));
    }

    #[test]
    fn notes_are_capped_and_history_entries_short() {
        let changes = Changes {
            note: Some("n".repeat(5_000)),
            ..Changes::default()
        };
        let entry = effect(Transition::Enqueue, &changes, NOW).update.history;
        assert!(entry.starts_with(&format!("{NOW} queued (nnn")), "{entry}");
        assert!(entry.len() < 400, "{}", entry.len());
        let note = note_entry(&"é".repeat(1_000), NOW);
        assert!(note.starts_with(&format!("{NOW} é")) && note.len() < 400);
        // the longest entry a move writes keeps a full history far below the item limit
        let long = "é".repeat(10_000);
        let changes = Changes {
            worker: Some("w".repeat(64)),
            error: Some(Some(FileError {
                message: long.clone(),
                ..FileError::default()
            })),
            operator: Some(Operator {
                who: long.clone(),
                reason: Some(long.clone()),
            }),
            note: Some(long),
            ..Changes::default()
        };
        let entry = history_entry(Transition::Skip, &changes, NOW);
        assert!(HISTORY_CAP * entry.len() < 60_000, "{}", entry.len());
    }
}
