//! The settle step, pure: what happened to a message ([`Happened`]) -> what to do about it
//! ([`Settle`]): which manifest write, what becomes of the SQS message, and the [`Outcome`]
//! for the run's summary and the metrics. No IO here: `message.rs` performs the decision, and
//! draws the jitter of a redelivery delay ([`Delay::draw`]), so [`decide`] is deterministic.
//!
//! The decisions: after COMMIT, manifest `loaded`, then delete the message. On a permanent
//! error: manifest `failed` (permanent) and delete, so it is not retried forever. On a transient
//! error that outlived the retries: manifest `failed` and the message comes back after an
//! exponential, jittered delay. On a database outage (read-only, unavailable, refused
//! credentials: not the file's fault): the claim is handed back (manifest `queued` with the
//! error, the attempt not counted) and the message comes back after a short delay; the receive
//! loop holds back until the database takes loads again (`observe::Database`).
//!
//! Invariants:
//! - a message is deleted only once its fate is settled for good: the data committed (or the
//!   ledger holds it), the failure is permanent, the file is dead or skipped, or the replace
//!   message's work is done or left to the coordinator;
//! - a database outage is not the file's fault: the claim is handed back (`HandBack`, the
//!   attempt not counted) and the message comes back after a short pause, never `Failed`;
//! - a failure is written only over the claim that made it (`expect_attempt`);
//! - past the attempt limit, the ledger decides: `loaded` when it holds the file, `dead` when it
//!   does not, and nothing at all (the message comes back) when it cannot be asked.

use crate::error::WorkerError;
use crate::load::{LoadOutcome, ReplaceOutcome};
use sluice_common::manifest::Changes;
use sluice_common::manifest::{FileError, PhaseTimings, RowCounts, Status, Transition};
use sluice_common::retry::redelivery_delay;
use std::time::Duration;

/// What became of one message, for the run's summary and the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Loaded,
    Duplicate,
    Failed,
    Dead,
    Abandoned,
    BadMessage,
    Deferred,
    Replaced,
}

/// What happened to a message before it is settled.
#[derive(Debug)]
pub(crate) enum Happened<'a> {
    /// The body is not a message of ours.
    Unreadable,
    /// The claim could not be written: the manifest did not answer.
    ClaimUnwritten,
    /// The manifest refused the claim; the item's status (None: no item).
    ClaimRefused(Option<Status>),
    /// The claim's attempt is past the limit; the ledger's answer whether it holds the file
    /// (None: the ledger could not be asked).
    PastTheLimit { ledger: Option<bool> },
    /// The load committed, or the ledger held the file already.
    Loaded(&'a LoadOutcome),
    /// The load failed for good: permanent, or transient past the retries, or an outage.
    Failed {
        error: &'a WorkerError,
        attempt: u32,
    },
    /// Shutdown abandoned the load of `key` (into `table`) before it finished.
    Abandoned {
        key: &'a str,
        table: String,
        attempt: u32,
    },
    /// A replace message's work, for `generation`.
    Replace {
        generation: &'a str,
        result: &'a Result<ReplaceOutcome, WorkerError>,
    },
}

/// The settings a decision reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Attempts per file before it is dead (`--max-attempts`).
    pub max_attempts: u32,
    /// How long a message that is not ours stays invisible (`--bad-message-delay`).
    pub bad_message_delay: Duration,
}

/// What to do about a message.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Settle {
    /// The manifest write, made first.
    pub write: Option<Write>,
    /// Then what becomes of the message.
    pub message: Hand,
    pub outcome: Outcome,
}

/// A manifest write.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Write {
    /// A move of the file's item (`ManifestStore::transition`). When `required` and the write
    /// fails, the message is left (it comes back after its visibility timeout) and the outcome
    /// is [`Outcome::Deferred`] instead.
    Move {
        transition: Transition,
        changes: Box<FileChanges>,
        required: bool,
    },
    /// The file is dead (`ManifestStore::give_up`, class `attempts_exhausted`).
    GiveUp { reason: String },
    /// A replacement's record on the generation's first file (`ManifestStore::annotate`; the
    /// performer adds `replaced_at`).
    Annotate {
        generation: String,
        rows_removed: Option<i64>,
        note: String,
    },
}

/// The parts of [`Changes`] a move of the worker's sets besides the worker's name.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct FileChanges {
    /// Some(Some(e)): record the error; Some(None): clear it.
    pub error: Option<Option<FileError>>,
    pub rows: Option<RowCounts>,
    pub timings: Option<PhaseTimings>,
    pub note: Option<String>,
    /// Only over the claim with this attempt number.
    pub expect_attempt: Option<u32>,
}

impl FileChanges {
    /// The store's [`Changes`], made by `worker`.
    pub fn into_changes(self, worker: &str) -> Changes {
        Changes {
            worker: Some(worker.to_owned()),
            error: self.error,
            rows: self.rows,
            timings: self.timings,
            note: self.note,
            expect_attempt: self.expect_attempt,
            ..Changes::default()
        }
    }
}

/// What becomes of the SQS message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hand {
    Delete,
    /// Visible again after the delay.
    Return(Delay),
    /// Left as it is: it comes back when its visibility timeout runs out.
    Leave,
}

/// A message's visibility delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delay {
    Fixed(Duration),
    /// Exponential from `base` for `attempt`, capped at `cap`, with equal jitter
    /// (`sluice_common::retry::redelivery_delay`): between half the nominal delay and all of it.
    Backoff {
        attempt: u32,
        base: Duration,
        cap: Duration,
    },
}

impl Delay {
    /// The delay, its jitter drawn now.
    pub fn draw(self) -> Duration {
        match self {
            Delay::Fixed(d) => d,
            Delay::Backoff { attempt, base, cap } => redelivery_delay(attempt, base, cap),
        }
    }
}

/// The note of a move whose data the ledger already held.
const IN_THE_LEDGER: &str = "already in the ledger";

/// Decides how a message is settled.
pub(crate) fn decide(happened: &Happened, limits: &Limits) -> Settle {
    match happened {
        Happened::Unreadable => settle(
            None,
            Hand::Return(Delay::Fixed(limits.bad_message_delay)),
            Outcome::BadMessage,
        ),
        Happened::ClaimUnwritten => settle(None, Hand::Leave, Outcome::Deferred),
        Happened::ClaimRefused(status) => claim_refused(*status),
        Happened::PastTheLimit { ledger } => past_the_limit(*ledger, limits.max_attempts),
        Happened::Loaded(outcome) => loaded(outcome),
        Happened::Failed { error, attempt } => failed(error, *attempt),
        Happened::Abandoned {
            key,
            table,
            attempt,
        } => {
            let error = abandoned_error(key, table);
            settle(
                Some(record_failure(&error, *attempt)),
                Hand::Return(Delay::Fixed(Duration::ZERO)),
                Outcome::Abandoned,
            )
        }
        Happened::Replace { generation, result } => replace(generation, result),
    }
}

fn settle(write: Option<Write>, message: Hand, outcome: Outcome) -> Settle {
    Settle {
        write,
        message,
        outcome,
    }
}

/// A refused claim: a loaded, dead or skipped file's message is a duplicate; any other status
/// (another worker holds the file, ...) leaves the message to come back.
fn claim_refused(status: Option<Status>) -> Settle {
    match status {
        Some(Status::Loaded) | Some(Status::Dead) | Some(Status::Skipped) => {
            settle(None, Hand::Delete, Outcome::Duplicate)
        }
        _ => settle(None, Hand::Leave, Outcome::Deferred),
    }
}

/// A move to `loaded`, clearing the error.
fn complete(changes: FileChanges, required: bool) -> Write {
    Write::Move {
        transition: Transition::Complete,
        changes: Box::new(FileChanges {
            error: Some(None),
            ..changes
        }),
        required,
    }
}

fn past_the_limit(ledger: Option<bool>, max_attempts: u32) -> Settle {
    match ledger {
        Some(true) => {
            let changes = FileChanges {
                note: Some(IN_THE_LEDGER.to_owned()),
                ..FileChanges::default()
            };
            settle(
                Some(complete(changes, true)),
                Hand::Delete,
                Outcome::Duplicate,
            )
        }
        Some(false) => settle(
            Some(Write::GiveUp {
                reason: format!("gave up after {max_attempts} attempts"),
            }),
            Hand::Delete,
            Outcome::Dead,
        ),
        None => settle(None, Hand::Leave, Outcome::Deferred),
    }
}

fn loaded(outcome: &LoadOutcome) -> Settle {
    match outcome {
        LoadOutcome::Loaded(stats) => {
            let changes = FileChanges {
                rows: Some(RowCounts {
                    read: stats.records as i64,
                    merged: stats.merged(),
                    rejected: stats.rejected as i64,
                    superseded: stats.superseded,
                    repaired: stats.repaired as i64,
                }),
                timings: Some(PhaseTimings {
                    copy_ms: stats.copy.as_millis() as u64,
                    merge_ms: stats.merge.as_millis() as u64,
                    commit_ms: stats.commit.as_millis() as u64,
                }),
                // The file that brought new columns records them (new_columns = "add").
                note: (!stats.columns_added.is_empty()).then(|| {
                    let added = crate::sql::evolve::describe(&stats.columns_added);
                    format!("columns added to {}: {added}", stats.target)
                }),
                ..FileChanges::default()
            };
            settle(
                Some(complete(changes, false)),
                Hand::Delete,
                Outcome::Loaded,
            )
        }
        LoadOutcome::AlreadyApplied => {
            let changes = FileChanges {
                note: Some(IN_THE_LEDGER.to_owned()),
                ..FileChanges::default()
            };
            settle(
                Some(complete(changes, false)),
                Hand::Delete,
                Outcome::Duplicate,
            )
        }
    }
}

/// A failed load: recorded; a permanent failure's message is deleted (it is not retried
/// forever); an outage's comes back after a short pause (another worker, whose database may be
/// fine, may take it), not counted as a failure; a transient one's after an exponential delay.
fn failed(error: &WorkerError, attempt: u32) -> Settle {
    let write = Some(record_failure(error, attempt));
    if !error.is_transient() {
        return settle(write, Hand::Delete, Outcome::Failed);
    }
    if error.outage().is_some() {
        let pause = Delay::Backoff {
            attempt: 1,
            base: Duration::from_secs(10),
            cap: Duration::from_secs(10),
        };
        return settle(write, Hand::Return(pause), Outcome::Deferred);
    }
    let backoff = Delay::Backoff {
        attempt,
        base: Duration::from_secs(10),
        cap: Duration::from_secs(900),
    };
    settle(write, Hand::Return(backoff), Outcome::Failed)
}

/// Records a failed attempt (`failed`), or hands the claim back (`queued`, the attempt not
/// counted) when the database was out: waiting out an outage never makes a file `dead`.
fn record_failure(error: &WorkerError, attempt: u32) -> Write {
    let (transition, note) = match error.outage() {
        Some(o) => (
            Transition::HandBack,
            Some(format!("{}: handed back, no attempt spent", o.class())),
        ),
        None => (Transition::Fail, None),
    };
    Write::Move {
        transition,
        changes: Box::new(FileChanges {
            error: Some(Some(error.to_file_error())),
            expect_attempt: Some(attempt),
            note,
            ..FileChanges::default()
        }),
        required: false,
    }
}

/// The failure an abandoned load records: transient, so the file is loaded again.
fn abandoned_error(key: &str, table: &str) -> WorkerError {
    WorkerError::Database {
        key: key.to_owned(),
        table: table.to_owned(),
        message: "abandoned: the worker shut down before the load finished".to_owned(),
        sqlstate: None,
        record: None,
        line: None,
        column: None,
        value: None,
        transient: true,
    }
}

/// A replacement: done (or found done, or a merge-only table) is recorded on the generation's
/// first file; an incomplete generation is left to the coordinator, which asks again; a failure
/// comes back in a minute when transient, and is dropped when permanent.
fn replace(generation: &str, result: &Result<ReplaceOutcome, WorkerError>) -> Settle {
    let (note, rows_removed) = match result {
        Ok(ReplaceOutcome::Replaced { rows_removed }) => (
            format!("generation {generation} replaced: {rows_removed} rows removed"),
            Some(*rows_removed),
        ),
        Ok(ReplaceOutcome::AlreadyDone) => {
            (format!("generation {generation} was replaced before"), None)
        }
        Ok(ReplaceOutcome::Merge) => (
            format!("generation {generation} complete; full_load = merge, nothing removed"),
            Some(0),
        ),
        Ok(ReplaceOutcome::Incomplete { .. }) => {
            return settle(None, Hand::Delete, Outcome::Deferred)
        }
        Err(e) if e.is_transient() => {
            let later = Hand::Return(Delay::Fixed(Duration::from_secs(60)));
            return settle(None, later, Outcome::Failed);
        }
        Err(_) => return settle(None, Hand::Delete, Outcome::Failed),
    };
    let write = Write::Annotate {
        generation: generation.to_owned(),
        rows_removed,
        note,
    };
    settle(Some(write), Hand::Delete, Outcome::Replaced)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Outage;
    use crate::load::LoadStats;

    const LIMITS: Limits = Limits {
        max_attempts: 5,
        bad_message_delay: Duration::from_secs(300),
    };

    fn decide_(happened: Happened) -> Settle {
        decide(&happened, &LIMITS)
    }

    fn moved(s: &Settle) -> (Transition, &FileChanges, bool) {
        match &s.write {
            Some(Write::Move {
                transition,
                changes,
                required,
            }) => (*transition, &**changes, *required),
            other => panic!("not a move: {other:?}"),
        }
    }

    fn permanent() -> WorkerError {
        WorkerError::ColumnCount {
            key: "dms/s/t/LOAD00000001.csv".into(),
            table: "s.t".into(),
            record: 3,
            line: 4,
            expected: 2,
            found: 5,
            value: "1,2,3,4,5".into(),
        }
    }

    fn deadlock() -> WorkerError {
        WorkerError::Database {
            key: "k".into(),
            table: "s.t".into(),
            message: "deadlock detected".into(),
            sqlstate: Some("40P01".into()),
            record: None,
            line: None,
            column: None,
            value: None,
            transient: true,
        }
    }

    fn outage(outage: Outage) -> WorkerError {
        WorkerError::DatabaseOutage {
            key: "k".into(),
            table: "s.t".into(),
            outage,
            sqlstate: None,
            message: "cannot connect".into(),
        }
    }

    /// Every draw of `delay` lies within [low, high].
    fn draws_within(delay: Delay, low: Duration, high: Duration) {
        for _ in 0..200 {
            let d = delay.draw();
            assert!(
                low <= d && d <= high,
                "{delay:?}: {d:?} not in [{low:?}, {high:?}]"
            );
        }
    }

    #[test]
    fn a_loaded_file_completes_with_its_counts_and_timings_and_is_deleted() {
        let stats = LoadStats {
            records: 10,
            inserted: 4,
            updated: 3,
            deleted: 1,
            superseded: 2,
            rejected: 1,
            repaired: 5,
            copy: Duration::from_millis(120),
            merge: Duration::from_millis(30),
            commit: Duration::from_millis(4),
            ..LoadStats::default()
        };
        let s = decide_(Happened::Loaded(&LoadOutcome::Loaded(stats)));
        assert_eq!((s.message, s.outcome), (Hand::Delete, Outcome::Loaded));
        let (transition, changes, required) = moved(&s);
        assert_eq!((transition, required), (Transition::Complete, false));
        assert_eq!(
            changes,
            &FileChanges {
                error: Some(None),
                rows: Some(RowCounts {
                    read: 10,
                    merged: 8,
                    rejected: 1,
                    superseded: 2,
                    repaired: 5,
                }),
                timings: Some(PhaseTimings {
                    copy_ms: 120,
                    merge_ms: 30,
                    commit_ms: 4,
                }),
                note: None,
                expect_attempt: None,
            }
        );
    }

    #[test]
    fn a_file_the_ledger_held_completes_as_a_duplicate() {
        let s = decide_(Happened::Loaded(&LoadOutcome::AlreadyApplied));
        assert_eq!((s.message, s.outcome), (Hand::Delete, Outcome::Duplicate));
        let (transition, changes, required) = moved(&s);
        assert_eq!((transition, required), (Transition::Complete, false));
        assert_eq!(
            changes,
            &FileChanges {
                error: Some(None),
                note: Some("already in the ledger".into()),
                ..FileChanges::default()
            }
        );
    }

    #[test]
    fn a_permanent_failure_is_recorded_over_its_claim_and_deleted() {
        let e = permanent();
        let s = decide_(Happened::Failed {
            error: &e,
            attempt: 2,
        });
        assert_eq!((s.message, s.outcome), (Hand::Delete, Outcome::Failed));
        let (transition, changes, required) = moved(&s);
        assert_eq!((transition, required), (Transition::Fail, false));
        assert_eq!(changes.expect_attempt, Some(2));
        assert_eq!(changes.note, None);
        let recorded = changes.error.clone().flatten().expect("error recorded");
        assert_eq!(recorded, e.to_file_error());
        assert!(recorded.permanent);
    }

    #[test]
    fn a_transient_failure_comes_back_after_a_growing_jittered_delay() {
        let e = deadlock();
        for (attempt, nominal) in [(1, 10), (2, 20), (3, 40), (7, 640), (8, 900), (30, 900)] {
            let s = decide_(Happened::Failed { error: &e, attempt });
            let (transition, changes, _) = moved(&s);
            assert_eq!(transition, Transition::Fail);
            assert_eq!(changes.expect_attempt, Some(attempt));
            assert!(!changes.error.clone().flatten().unwrap().permanent);
            assert_eq!(s.outcome, Outcome::Failed);
            let delay = Delay::Backoff {
                attempt,
                base: Duration::from_secs(10),
                cap: Duration::from_secs(900),
            };
            assert_eq!(s.message, Hand::Return(delay));
            let nominal = Duration::from_secs(nominal);
            draws_within(delay, nominal / 2, nominal);
        }
    }

    #[test]
    fn an_outage_hands_the_claim_back_without_spending_an_attempt() {
        for (o, class) in [
            (Outage::ReadOnly, "database_read_only"),
            (Outage::Unavailable, "database_unavailable"),
            (Outage::Authentication, "database_authentication"),
        ] {
            let e = outage(o);
            let s = decide_(Happened::Failed {
                error: &e,
                attempt: 4,
            });
            assert_eq!(s.outcome, Outcome::Deferred, "{o:?}");
            let (transition, changes, required) = moved(&s);
            assert_eq!((transition, required), (Transition::HandBack, false));
            assert_eq!(changes.expect_attempt, Some(4));
            assert_eq!(
                changes.note.as_deref(),
                Some(format!("{class}: handed back, no attempt spent").as_str())
            );
            assert_eq!(changes.error.clone().flatten().unwrap().class, class);
            let pause = Delay::Backoff {
                attempt: 1,
                base: Duration::from_secs(10),
                cap: Duration::from_secs(10),
            };
            assert_eq!(s.message, Hand::Return(pause));
            draws_within(pause, Duration::from_secs(5), Duration::from_secs(10));
        }
    }

    #[test]
    fn an_abandoned_load_records_a_transient_failure_and_comes_back_at_once() {
        let s = decide_(Happened::Abandoned {
            key: "dms/s/t/LOAD00000001.csv",
            table: "s.t".into(),
            attempt: 3,
        });
        assert_eq!(s.outcome, Outcome::Abandoned);
        assert_eq!(s.message, Hand::Return(Delay::Fixed(Duration::ZERO)));
        assert_eq!(Delay::Fixed(Duration::ZERO).draw(), Duration::ZERO);
        let (transition, changes, required) = moved(&s);
        assert_eq!((transition, required), (Transition::Fail, false));
        assert_eq!(changes.expect_attempt, Some(3));
        let e = changes.error.clone().flatten().unwrap();
        assert_eq!(
            (e.class.as_str(), e.permanent),
            ("database_transient", false)
        );
        assert_eq!(
            e.message,
            "postgresql error loading dms/s/t/LOAD00000001.csv into s.t: abandoned: the worker \
             shut down before the load finished"
        );
    }

    #[test]
    fn a_refused_claim_deletes_a_settled_files_message_and_leaves_the_others() {
        for status in [Status::Loaded, Status::Dead, Status::Skipped] {
            let s = decide_(Happened::ClaimRefused(Some(status)));
            assert_eq!(
                s,
                settle(None, Hand::Delete, Outcome::Duplicate),
                "{status:?}"
            );
        }
        for status in [
            Some(Status::Discovered),
            Some(Status::Queued),
            Some(Status::Loading),
            Some(Status::Failed),
            None,
        ] {
            let s = decide_(Happened::ClaimRefused(status));
            assert_eq!(
                s,
                settle(None, Hand::Leave, Outcome::Deferred),
                "{status:?}"
            );
        }
    }

    #[test]
    fn an_unwritten_claim_or_an_unreadable_message_is_left_to_come_back() {
        let s = decide_(Happened::ClaimUnwritten);
        assert_eq!(s, settle(None, Hand::Leave, Outcome::Deferred));
        let s = decide_(Happened::Unreadable);
        let later = Hand::Return(Delay::Fixed(Duration::from_secs(300)));
        assert_eq!(s, settle(None, later, Outcome::BadMessage));
    }

    #[test]
    fn past_the_limit_the_ledger_decides() {
        // the ledger holds the file: its data committed; the move must be written
        let s = decide_(Happened::PastTheLimit { ledger: Some(true) });
        assert_eq!((s.message, s.outcome), (Hand::Delete, Outcome::Duplicate));
        let (transition, changes, required) = moved(&s);
        assert_eq!((transition, required), (Transition::Complete, true));
        assert_eq!(
            changes,
            &FileChanges {
                error: Some(None),
                note: Some("already in the ledger".into()),
                ..FileChanges::default()
            }
        );
        // it does not: dead
        let s = decide_(Happened::PastTheLimit {
            ledger: Some(false),
        });
        let dead = Write::GiveUp {
            reason: "gave up after 5 attempts".into(),
        };
        assert_eq!(s, settle(Some(dead), Hand::Delete, Outcome::Dead));
        // it cannot be asked: nothing is written, the message comes back
        let s = decide_(Happened::PastTheLimit { ledger: None });
        assert_eq!(s, settle(None, Hand::Leave, Outcome::Deferred));
    }

    #[test]
    fn each_replace_outcome_is_settled() {
        let annotate = |rows_removed: Option<i64>, note: &str| {
            Some(Write::Annotate {
                generation: "g1".into(),
                rows_removed,
                note: note.into(),
            })
        };
        let cases: [(Result<ReplaceOutcome, WorkerError>, Settle); 6] = [
            (
                Ok(ReplaceOutcome::Replaced { rows_removed: 7 }),
                settle(
                    annotate(Some(7), "generation g1 replaced: 7 rows removed"),
                    Hand::Delete,
                    Outcome::Replaced,
                ),
            ),
            (
                Ok(ReplaceOutcome::AlreadyDone),
                settle(
                    annotate(None, "generation g1 was replaced before"),
                    Hand::Delete,
                    Outcome::Replaced,
                ),
            ),
            (
                Ok(ReplaceOutcome::Merge),
                settle(
                    annotate(
                        Some(0),
                        "generation g1 complete; full_load = merge, nothing removed",
                    ),
                    Hand::Delete,
                    Outcome::Replaced,
                ),
            ),
            (
                Ok(ReplaceOutcome::Incomplete {
                    found: 2,
                    expected: 3,
                }),
                settle(None, Hand::Delete, Outcome::Deferred),
            ),
            (
                Err(deadlock()),
                settle(
                    None,
                    Hand::Return(Delay::Fixed(Duration::from_secs(60))),
                    Outcome::Failed,
                ),
            ),
            (
                Err(permanent()),
                settle(None, Hand::Delete, Outcome::Failed),
            ),
        ];
        for (result, expected) in cases {
            let s = decide_(Happened::Replace {
                generation: "g1",
                result: &result,
            });
            assert_eq!(s, expected, "{result:?}");
        }
    }

    #[test]
    fn file_changes_name_the_worker() {
        let c = FileChanges {
            error: Some(None),
            note: Some("n".into()),
            expect_attempt: Some(2),
            ..FileChanges::default()
        }
        .into_changes("w-1");
        assert_eq!(c.worker.as_deref(), Some("w-1"));
        assert_eq!((c.error, c.note.as_deref()), (Some(None), Some("n")));
        assert_eq!(c.expect_attempt, Some(2));
        assert!(c.message_id.is_none() && c.base.is_none() && c.rows.is_none());
    }
}
