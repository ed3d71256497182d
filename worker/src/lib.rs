//! Sluice's worker: takes file messages off the queue and applies each file to PostgreSQL
//! exactly once.
//!
//! # Layout
//!
//! - [`run`]: the receive loop (bounded concurrency, shutdown, drain) and one message's life.
//! - [`load`]: the transaction that applies one file, with its ledger row.
//! - [`read`]: an object's bytes as records: the CSV reader, Parquet as CSV, MongoDB documents.
//! - [`encode`]: records -> `COPY` rows (text, or binary on the direct path), on a blocking
//!   thread, with the file's layout and its rejects.
//! - [`sql`]: every SQL text the worker runs; the merge.
//! - [`target`]: catalog lookup of a target table.
//! - [`db`]: pool, bookkeeping schema, PostgreSQL error classification.
//! - [`visibility`]: message visibility heartbeat.
//! - [`observe`]: metrics of a file's life, the `/metrics` and `/health` endpoint, EMF output.
//! - [`config`]: flags and environment, validated.
//! - [`error`]: `LoadError`, one file's failure, transient or permanent.

// `LoadError` carries every identifier an operator needs; it is built once per failed file,
// so its size on the error path does not matter.
#![allow(clippy::result_large_err)]

pub mod config;
pub mod db;
pub mod encode;
pub mod error;
pub mod load;
pub mod observe;
pub mod read;
pub mod run;
pub mod sql;
pub mod target;
pub mod visibility;

pub use config::{WorkerArgs, WorkerConfig};
pub use run::{run, RunSummary};
