//! One file, applied exactly once: the worker's transaction. This folder holds everything that
//! happens between a claimed message and `COMMIT`; it must not touch the queue or the manifest
//! (the receive loop decides what a load's outcome means for them).
//!
//! - [`context`]: what every step shares; [`transaction`]: the staged path, phase by phase;
//!   [`direct`]: the direct path; [`commit`]: the counts, `COMMIT`, and the ledger's answer;
//!   [`batch`]: several CDC files of one table in one transaction (one stage, one merge);
//! - [`prepare`]: connections and each target's one-time preparation;
//! - [`object`]: the S3 GET and the Parquet spool; [`parse`]: the parser thread and `COPY` sink;
//! - [`rejects`]: the slow path of `reject_rows` and its limits;
//! - [`replace`]: a full-load generation's replacement;
//! - [`evolve`]: `new_columns = "add"`, columns a file names added to its target before it
//!   loads (wraps the staged and direct paths: [`load_file`]).
//!
//! ```text
//!   ledger has (bucket, key, etag)?  -> already applied, stop
//!   target prepared? (system columns, tombstone table; once per table and process, own txn)
//!   GET object (If-Match: etag), streamed; a Parquet file is spooled whole to an unlinked
//!     temp file here, before BEGIN, so no transaction stays open while it downloads
//!   BEGIN
//!     INSERT ledger row ON CONFLICT DO NOTHING   -> no file_id: applied by someone else, ROLLBACK
//!     resolve target from the catalog            (names from the key are bound, never spliced)
//!     CREATE TEMP TABLE sluice_stage ... ON COMMIT DROP
//!     COPY sluice_stage FROM STDIN               <- blocking parser thread, bounded channel
//!     fill partial U images from earlier records (only if the file has any)
//!     lock the table's merges (advisory, transaction-scoped, at most --merge-lock-timeout)
//!     version-guarded merge (set-based; see crate::sql::merge), prune old tombstones
//!     UPDATE ledger row with counts
//!   COMMIT                                      -> if the outcome is unknown, the ledger says
//! ```
//!
//! The direct path replaces the stage and the merge for a full-load file into a table with no
//! rows: `COPY` into the target itself (binary format where every column has one), then, under
//! the merge lock, the version guard against tombstones (`sql::direct_guard_sql`). Anything it
//! cannot take (a record that is not an insert, a value only PostgreSQL should read, a key
//! already present) rolls the transaction back and the file is loaded again by the staged path.
//!
//! Invariants: nothing of a file is visible unless all of it is (one transaction); the ledger
//! row commits with the data, so a replay finds it and does nothing; a `COPY` that is not
//! finished is aborted (dropping the sink), so abandoning a load at any point is safe; merges
//! into one table are serialised by its lock, taken after the `COPY` so that the slow part of
//! loads of one table still runs in parallel; an operation changes a row only if its version
//! is newer than the row's and its tombstone's, so files may be applied in any order.
//!
//! Every wait is bounded (`db::Waits`): the merge lock by `merge_lock_timeout`, other locks
//! by the session's `lock_timeout`, statements by `statement_timeout`; a wait that runs out
//! fails the attempt with a transient [`WorkerError::LockTimeout`] naming the lock, and the
//! transaction rolls back. Only a CSV object is read from S3 while its transaction is open,
//! as the `COPY` streams it.

mod batch;
mod commit;
mod context;
mod direct;
mod evolve;
mod object;
mod parse;
mod prepare;
mod rejects;
mod replace;
mod transaction;

pub use batch::{batchable, load_batch};
pub use commit::ledger_has;
pub use context::{file_time, LoadContext, LoadOutcome, LoadStats, PreparedTable};
pub use evolve::load_file;
pub use replace::{apply_replace, ReplaceOutcome};
