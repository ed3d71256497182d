//! Sluice's worker: takes file messages off the queue and applies each file to PostgreSQL
//! exactly once.
//!
//! # Layout
//!
//! - [`receive`]: the receive loop (bounded concurrency, shutdown, drain), one message's life,
//!   the settle decision, and the visibility heartbeat.
//! - [`load`]: the transaction that applies one file, with its ledger row.
//! - [`read`]: an object's bytes as records: the CSV reader, Parquet as CSV, MongoDB documents.
//! - [`encode`]: records -> `COPY` rows (text, or binary on the direct path), on a blocking
//!   thread, with the file's layout and its rejects.
//! - [`sql`]: every SQL text the worker runs; the merge.
//! - [`target`]: catalog lookup of a target table.
//! - [`db`]: pool, bookkeeping schema, PostgreSQL error classification.
//! - [`config`]: flags and environment, validated.
//! - [`error`]: `WorkerError`, the worker's one error enum: a file's failure (transient or
//!   permanent), a failed receive, or what stops the worker at start-up.

// `WorkerError` carries every identifier an operator needs; it is built once per failed file,
// so its size on the error path does not matter.
#![allow(clippy::result_large_err)]

pub mod config;
pub mod db;
pub mod encode;
pub mod error;
pub mod load;
pub mod read;
pub mod receive;
pub mod sql;
pub mod target;

pub use config::{WorkerArgs, WorkerConfig};
pub use receive::{run, RunSummary};
