//! The manifest model: one item per S3 object version seen, identified by `(key, etag)`, the
//! legal moves between its statuses, and what each move writes ([`effect`]). Pure: no I/O, no
//! DynamoDB type; the DynamoDB side is in [`crate::store`], which must not decide anything this
//! folder decides.
//!
//! # Layout
//!
//! - `mod.rs`: statuses, transitions and their legal starts, the item as read back, what a move
//!   carries ([`Changes`]), the history's cap;
//! - [`effect`]: the effect of each move (attributes, attempt arithmetic, history entry,
//!   condition) as plain data.
//!
//! ```text
//!   (none) --discover--> discovered --enqueue--> queued --claim--> loading --complete--> loaded
//!                                                  ^   ^              |
//!                                                  |   +--hand back---+  (database outage: no attempt spent)
//!                                                  +-- enqueue -- failed <--fail--+
//!                              (attempt limit or permanent error) --give up--> dead
//!                              operator: retry -> queued, skip -> skipped
//!   loaded --reload (operator)--> queued
//! ```
//!
//! Invariants kept by [`Transition::allowed_from`], which the store turns into DynamoDB
//! condition expressions so that racing coordinators and workers cannot corrupt an item:
//! - `loaded` is final for automatic moves: only the ledger in PostgreSQL decides it, and nothing
//!   but an operator's `reload` leaves it;
//! - `fail` applies only to the claim that is failing (same status and attempt number), so a
//!   stale worker waking up late cannot overwrite a newer attempt's state; so does `hand back`;
//! - only `claim` spends an attempt, and `hand back` returns it ([`Transition::attempt_delta`]):
//!   a file that met a database outage (read-only, restarting, refusing connections or
//!   credentials) goes back to `queued` with its attempt count as before the claim, so waiting
//!   out an outage, however long, never makes a file `dead`;
//! - `dead` and `skipped` items leave only through an operator's retry;
//! - operator moves that re-enqueue (`retry`, `reload`) start a fresh round of attempts: the
//!   attempt count restarts at 0 (the earlier ones are kept in `attempts_before`), so the attempt
//!   limit does not kill the file again at its first claim;
//! - an item's history holds at most [`HISTORY_CAP`] entries, the newest; the oldest are dropped
//!   ([`history_excess`]), so no item grows without bound however often it is written.

pub mod effect;

use serde::Serialize;
use std::fmt;

/// Where a file is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Discovered,
    Queued,
    Loading,
    Loaded,
    Failed,
    Dead,
    Skipped,
}

impl Status {
    pub const ALL: [Status; 7] = [
        Status::Discovered,
        Status::Queued,
        Status::Loading,
        Status::Loaded,
        Status::Failed,
        Status::Dead,
        Status::Skipped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Discovered => "discovered",
            Status::Queued => "queued",
            Status::Loading => "loading",
            Status::Loaded => "loaded",
            Status::Failed => "failed",
            Status::Dead => "dead",
            Status::Skipped => "skipped",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Every status but `loaded` is "open": such items are kept in the sparse `open` index so
    /// that listing them never reads the (many) loaded items.
    pub fn is_open(self) -> bool {
        self != Status::Loaded
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A move of a manifest item, with who makes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Coordinator: a new object version was listed.
    Discover,
    /// Coordinator: the message was sent (or sent again).
    Enqueue,
    /// Worker: took the file; increments the attempt count.
    Claim,
    /// Worker: the data is committed (or the ledger says it already was).
    Complete,
    /// Worker: the attempt failed; guarded by the attempt number.
    Fail,
    /// Worker: the database was out (not the file's fault): the claim goes back to the queue
    /// and its attempt is not counted; guarded like `Fail`.
    HandBack,
    /// Coordinator or worker: the attempt limit is reached; an operator must act.
    GiveUp,
    /// Operator: try again, whatever happened before.
    Retry,
    /// Operator: do not load this file, recording who and why.
    Skip,
    /// Operator: load a loaded file again (its ledger row was deleted first).
    Reload,
}

impl Transition {
    /// The status an item has after the move.
    pub fn target(self) -> Status {
        match self {
            Transition::Discover => Status::Discovered,
            Transition::Enqueue | Transition::Retry | Transition::Reload | Transition::HandBack => {
                Status::Queued
            }
            Transition::Claim => Status::Loading,
            Transition::Complete => Status::Loaded,
            Transition::Fail => Status::Failed,
            Transition::GiveUp => Status::Dead,
            Transition::Skip => Status::Skipped,
        }
    }

    /// The statuses the move may start from; `None` stands for "no item yet".
    pub fn allowed_from(self) -> &'static [Option<Status>] {
        use Status::*;
        match self {
            Transition::Discover => &[None],
            Transition::Enqueue => &[Some(Discovered), Some(Queued), Some(Failed)],
            // `None`: a message whose item is missing (deleted by hand) is still loaded and the
            // item re-created; `Loading`: the previous holder died or is a concurrent duplicate
            // (the ledger keeps the effect single).
            Transition::Claim => &[
                None,
                Some(Discovered),
                Some(Queued),
                Some(Failed),
                Some(Loading),
            ],
            Transition::Complete => &[
                None,
                Some(Discovered),
                Some(Queued),
                Some(Loading),
                Some(Failed),
                Some(Dead),
                Some(Skipped),
            ],
            Transition::Fail | Transition::HandBack => &[Some(Loading)],
            Transition::GiveUp => &[Some(Discovered), Some(Queued), Some(Loading), Some(Failed)],
            Transition::Retry => &[
                Some(Discovered),
                Some(Queued),
                Some(Failed),
                Some(Dead),
                Some(Skipped),
                Some(Loading),
            ],
            Transition::Skip => &[Some(Discovered), Some(Queued), Some(Failed), Some(Dead)],
            Transition::Reload => &[Some(Loaded)],
        }
    }

    /// Whether the move may be made from `from`.
    pub fn allows(self, from: Option<Status>) -> bool {
        self.allowed_from().contains(&from)
    }

    pub fn name(self) -> &'static str {
        match self {
            Transition::Discover => "discover",
            Transition::Enqueue => "enqueue",
            Transition::Claim => "claim",
            Transition::Complete => "complete",
            Transition::Fail => "fail",
            Transition::HandBack => "hand_back",
            Transition::GiveUp => "give_up",
            Transition::Retry => "retry",
            Transition::Skip => "skip",
            Transition::Reload => "reload",
        }
    }

    /// Moves only an operator makes (they record who and why).
    pub fn is_operator_move(self) -> bool {
        matches!(
            self,
            Transition::Retry | Transition::Skip | Transition::Reload
        )
    }

    /// Moves that start a fresh round of attempts.
    pub fn restarts_attempts(self) -> bool {
        matches!(self, Transition::Retry | Transition::Reload)
    }

    /// How the move changes the attempt count of the current round: a claim spends one, a
    /// hand-back returns the one its claim spent (the store applies it only to that claim: same
    /// attempt number and worker). Operator moves that restart the round are apart
    /// ([`Transition::restarts_attempts`]).
    pub fn attempt_delta(self) -> i64 {
        match self {
            Transition::Claim => 1,
            Transition::HandBack => -1,
            _ => 0,
        }
    }
}

/// The last operator move on an item: what, who, why, when.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OperatorAction {
    /// `retry`, `reload` or `skip`.
    pub action: String,
    pub who: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub at: String,
}

/// A failure as the manifest records it: what an operator needs to find and fix the cause.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FileError {
    /// One line, lowercase, naming bucket/key/table/record where known. Never holds secrets.
    pub message: String,
    /// Stable reason class for grouping and alarms (`unknown_table`, `column_count`, ...).
    pub class: String,
    /// True when retrying cannot help until someone changes something.
    pub permanent: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sqlstate: Option<String>,
    /// 1-based record number in the file (data records, header excluded).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<u64>,
    /// 1-based physical line in the file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    /// An excerpt of the offending value or record (at most a few hundred characters, invalid
    /// UTF-8 and control characters escaped).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// Row counts of one load.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RowCounts {
    /// Data records read from the file.
    pub read: i64,
    /// Rows inserted, updated or deleted in the target.
    pub merged: i64,
    /// Records set aside as rejects.
    pub rejected: i64,
    /// Operations not applied because the row held a newer version.
    #[serde(default)]
    pub superseded: i64,
    /// Fields whose bytes were changed by the table's byte policy (NUL stripped, invalid
    /// UTF-8 replaced, or transcoded from the source encoding).
    #[serde(default)]
    pub repaired: i64,
}

/// Time spent in each phase of a load, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PhaseTimings {
    /// Download, parse and `COPY`, which run together, streamed.
    pub copy_ms: u64,
    pub merge_ms: u64,
    pub commit_ms: u64,
}

/// One manifest item as read back.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ManifestItem {
    pub key: String,
    pub etag: String,
    pub bucket: String,
    pub size: i64,
    pub last_modified: String,
    /// `schema.table` as in the key.
    pub table: String,
    pub kind: String,
    pub status: Option<Status>,
    /// Attempts in the current round (since discovery or the last operator retry or reload).
    pub attempts: u32,
    /// Attempts of earlier rounds, before operator retries or reloads.
    #[serde(skip_serializing_if = "is_zero")]
    pub attempts_before: u32,
    /// Operator retries and reloads so far.
    #[serde(skip_serializing_if = "is_zero")]
    pub retries: u32,
    /// The last operator move (a skipped file's who and why are here).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operator: Option<OperatorAction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<FileError>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows: Option<RowCounts>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timings: Option<PhaseTimings>,
    pub discovered_at: Option<String>,
    pub enqueued_at: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub updated_at: Option<String>,
    /// While `loading`: the last time the worker holding the file said it is still at work
    /// ([`crate::store::ManifestStore::heartbeat`]). A status change does not touch it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heartbeat_at: Option<String>,
    pub worker: Option<String>,
    pub message_id: Option<String>,
    /// Dated events, oldest first: the file's whole story.
    pub history: Vec<String>,
    /// `LOAD` files: the full-load generation the file belongs to (its start, or
    /// `refresh@<time>` for an operator's refresh).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generation: Option<String>,
    /// A generation's first file only: when the coordinator asked for the replacement.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replace_sent_at: Option<String>,
    /// A generation's first file only: when a worker replaced the table's rows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replaced_at: Option<String>,
    /// A generation's first file only: rows the replacement removed (or flagged).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows_removed: Option<i64>,
}

impl ManifestItem {
    /// The last sign of life of the item: its last change, or the holding worker's heartbeat if
    /// that is later. An in-progress item is stuck only when this is old; a long load whose
    /// worker keeps beating is never taken for a lost one.
    pub fn last_active(&self) -> Option<&str> {
        match (self.updated_at.as_deref(), self.heartbeat_at.as_deref()) {
            (Some(u), Some(h)) if self.status == Some(Status::Loading) => Some(u.max(h)),
            (u, _) => u,
        }
    }
}

/// What a new object version looks like when first written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewFile {
    pub bucket: String,
    pub key: String,
    pub etag: String,
    pub size: i64,
    pub last_modified: String,
    pub table: String,
    pub kind: String,
}

/// Extra attributes a transition writes besides the status.
#[derive(Debug, Clone, Default)]
pub struct Changes {
    pub worker: Option<String>,
    pub message_id: Option<String>,
    /// Some(Some(e)): record the error; Some(None): clear it.
    pub error: Option<Option<FileError>>,
    pub rows: Option<RowCounts>,
    pub timings: Option<PhaseTimings>,
    /// Created from these when the item does not exist yet (claim of a lost item).
    pub base: Option<NewFile>,
    /// Only when the item's attempt count equals this (the claim being failed is still current).
    pub expect_attempt: Option<u32>,
    /// A free-text note for the history.
    pub note: Option<String>,
    /// Operator moves: who makes the move, and why.
    pub operator: Option<Operator>,
    /// Only when the item's `updated_at` still equals this (it has not moved since it was read).
    pub expect_updated_at: Option<String>,
}

/// Who makes an operator move, and why.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Operator {
    pub who: String,
    pub reason: Option<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// History entries a manifest item keeps; older ones are dropped. A file's usual story is four
/// entries (discovered, queued, loading, loaded); one that fails up to the attempt limit, with
/// an operator's retry or two, stays under thirty. Fifty keep the whole story of any file but a
/// pathological one, and its latest fifty moves then. Every entry is short (each error, operator
/// text or note in it is capped at [`HISTORY_TEXT_MAX`] bytes), so a full history stays under
/// about 60 KB: with the rest of the item (its error at most 3 KB, an operator's reason 2 KB),
/// far below DynamoDB's 400 KB item limit.
pub const HISTORY_CAP: usize = 50;

/// Longest error excerpt, operator text or note in one history entry, in bytes.
pub const HISTORY_TEXT_MAX: usize = 300;

/// How many of the oldest entries to drop from a history of `len` entries so that `adding`
/// more leave at most `cap` (at least one entry is always kept: the one added).
pub fn history_excess(len: usize, adding: usize, cap: usize) -> usize {
    (len + adding)
        .saturating_sub(cap.max(adding).max(1))
        .min(len)
}

/// A history after appending `entries`, capped at `cap`: the newest kept, oldest first. What
/// the store's conditional writes leave in DynamoDB.
pub fn append_capped(history: &[String], entries: &[String], cap: usize) -> Vec<String> {
    let drop = history_excess(history.len(), entries.len(), cap);
    history[drop..].iter().chain(entries).cloned().collect()
}

/// Caps a text stored in the manifest (DynamoDB items are limited to 400 KB), on a char boundary.
pub fn cap_text(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}... ({} bytes cut)", &s[..cut], s.len() - cut)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Status::*;

    #[test]
    fn status_names_round_trip() {
        for s in Status::ALL {
            assert_eq!(Status::parse(s.as_str()), Some(s));
        }
        assert_eq!(Status::parse("LOADED"), None);
        assert!(!Loaded.is_open());
        assert!(Failed.is_open() && Skipped.is_open());
    }

    #[test]
    fn discover_only_creates() {
        assert!(Transition::Discover.allows(None));
        for s in Status::ALL {
            assert!(!Transition::Discover.allows(Some(s)), "{s}");
        }
    }

    #[test]
    fn only_reload_leaves_loaded_and_only_from_loaded() {
        for s in Status::ALL {
            assert_eq!(Transition::Reload.allows(Some(s)), s == Loaded, "{s}");
        }
        assert!(!Transition::Reload.allows(None));
        assert_eq!(Transition::Reload.target(), Queued);
        assert!(Transition::Reload.is_operator_move() && Transition::Reload.restarts_attempts());
        // retry never touches a loaded file: that is reload's job, which drops the ledger row
        assert!(!Transition::Retry.allows(Some(Loaded)));
    }

    #[test]
    fn operator_moves_are_the_only_ones_that_restart_attempts() {
        for t in [
            Transition::Discover,
            Transition::Enqueue,
            Transition::Claim,
            Transition::Complete,
            Transition::Fail,
            Transition::HandBack,
            Transition::GiveUp,
        ] {
            assert!(
                !t.is_operator_move() && !t.restarts_attempts(),
                "{}",
                t.name()
            );
        }
        assert!(Transition::Retry.restarts_attempts());
        assert!(Transition::Skip.is_operator_move() && !Transition::Skip.restarts_attempts());
    }

    #[test]
    fn skip_never_takes_a_file_from_a_worker_or_the_ledger() {
        assert!(!Transition::Skip.allows(Some(Loading)));
        assert!(!Transition::Skip.allows(Some(Loaded)));
        assert!(!Transition::Skip.allows(None));
        assert!(Transition::Skip.allows(Some(Dead)) && Transition::Skip.allows(Some(Failed)));
    }

    #[test]
    fn loaded_is_final_for_every_automatic_move() {
        for t in [
            Transition::Discover,
            Transition::Enqueue,
            Transition::Claim,
            Transition::Complete,
            Transition::Fail,
            Transition::HandBack,
            Transition::GiveUp,
            Transition::Skip,
        ] {
            assert!(
                !t.allows(Some(Loaded)),
                "{} must not leave loaded",
                t.name()
            );
        }
    }

    #[test]
    fn dead_and_skipped_leave_only_by_operator_or_ledger() {
        for t in [
            Transition::Enqueue,
            Transition::Claim,
            Transition::Fail,
            Transition::HandBack,
            Transition::GiveUp,
        ] {
            assert!(
                !t.allows(Some(Dead)) && !t.allows(Some(Skipped)),
                "{}",
                t.name()
            );
        }
        assert!(Transition::Retry.allows(Some(Dead)));
        assert!(Transition::Retry.allows(Some(Skipped)));
        // committed data wins over any bookkeeping
        assert!(Transition::Complete.allows(Some(Dead)));
    }

    #[test]
    fn fail_only_from_loading() {
        for s in Status::ALL {
            assert_eq!(Transition::Fail.allows(Some(s)), s == Loading, "{s}");
        }
        assert!(!Transition::Fail.allows(None));
    }

    #[test]
    fn hand_back_returns_the_claims_attempt_to_the_queue() {
        for s in Status::ALL {
            assert_eq!(Transition::HandBack.allows(Some(s)), s == Loading, "{s}");
        }
        assert!(!Transition::HandBack.allows(None));
        assert_eq!(Transition::HandBack.target(), Queued);
        // a claim then a hand-back leaves the count as it was; only claims spend attempts
        assert_eq!(
            Transition::Claim.attempt_delta() + Transition::HandBack.attempt_delta(),
            0
        );
        assert_eq!(Transition::Claim.attempt_delta(), 1);
        for t in [
            Transition::Discover,
            Transition::Enqueue,
            Transition::Complete,
            Transition::Fail,
            Transition::GiveUp,
            Transition::Retry,
            Transition::Skip,
            Transition::Reload,
        ] {
            assert_eq!(t.attempt_delta(), 0, "{}", t.name());
        }
        // the claimed file can be claimed again from the queue
        assert!(Transition::Claim.allows(Some(Transition::HandBack.target())));
    }

    #[test]
    fn claim_takes_over_dead_holders_and_lost_items() {
        assert!(Transition::Claim.allows(Some(Loading)));
        assert!(Transition::Claim.allows(None));
        assert!(Transition::Claim.allows(Some(Failed)));
    }

    #[test]
    fn targets() {
        assert_eq!(Transition::Enqueue.target(), Queued);
        assert_eq!(Transition::Retry.target(), Queued);
        assert_eq!(Transition::GiveUp.target(), Dead);
        assert_eq!(Transition::Complete.target(), Loaded);
    }

    #[test]
    fn histories_keep_their_newest_entries_up_to_the_cap() {
        let h = |r: std::ops::Range<usize>| r.map(|i| format!("e{i}")).collect::<Vec<_>>();
        assert_eq!(history_excess(0, 1, 50), 0);
        assert_eq!(history_excess(48, 1, 50), 0);
        assert_eq!(history_excess(49, 1, 50), 0);
        assert_eq!(history_excess(50, 1, 50), 1);
        assert_eq!(history_excess(1000, 1, 50), 951);
        assert_eq!(history_excess(10, 3, 5), 8);
        assert_eq!(history_excess(1, 1, 0), 1, "the entry added is always kept");
        assert_eq!(history_excess(2, 9, 5), 2, "never more than there is");
        assert_eq!(append_capped(&h(0..3), &h(3..4), 5), h(0..4));
        assert_eq!(append_capped(&h(0..5), &h(5..6), 5), h(1..6));
        assert_eq!(append_capped(&h(0..300), &h(300..301), 50), h(251..301));
        // Appending one at a time never passes the cap and ends with the newest.
        let mut history = Vec::new();
        for i in 0..200 {
            history = append_capped(&history, &h(i..i + 1), HISTORY_CAP);
            assert!(history.len() <= HISTORY_CAP);
        }
        assert_eq!(history, h(150..200));
    }

    #[test]
    fn a_full_history_stays_far_below_the_item_limit() {
        // The longest entry a transition writes: its time, status, worker, and an error, an
        // operator text and a note, each capped.
        let long = "é".repeat(10_000);
        let text = cap_text(&long, HISTORY_TEXT_MAX);
        let entry = format!(
            "2024-10-29T11:34:01.123Z failed by worker-{} : {text} ({text}) ({text})",
            "w".repeat(64)
        );
        assert!(entry.len() < 1200, "{}", entry.len());
        assert!(HISTORY_CAP * entry.len() < 60_000);
    }

    #[test]
    fn cap_text_respects_char_boundaries() {
        assert_eq!(cap_text("abc", 5), "abc");
        let capped = cap_text("ééé", 3);
        assert!(capped.starts_with("é..."), "{capped}");
    }
}
