//! Sluice's worker: takes file messages off the queue and applies each file to PostgreSQL
//! exactly once.
//!
//! # Layout
//!
//! - [`receive`]: the receive loop (bounded concurrency, shutdown, drain), one message's life,
//!   the settle decision, and the visibility heartbeat.
//! - [`load`]: the transaction that applies one file, with its ledger row.
//! - [`encode`]: CSV -> `COPY` text, on a blocking thread, with the file's layout.
//! - [`csv`]: the streaming RFC 4180 reader (quotedness, positions, raw bytes).
//! - [`parquet`]: DMS Parquet files as a CSV stream for the encoder (spooled to a local file).
//! - [`sql`]: every SQL text the worker runs; the merge.
//! - [`target`]: catalog lookup of a target table.
//! - [`db`]: pool, bookkeeping schema, PostgreSQL error classification.
//! - [`config`]: flags and environment, validated.
//! - [`error`]: `LoadError`, the worker's one error enum: a file's failure (transient or
//!   permanent), a failed receive, or what stops the worker at start-up.

// `LoadError` carries every identifier an operator needs; it is built once per failed file,
// so its size on the error path does not matter.
#![allow(clippy::result_large_err)]

pub mod binary;
pub mod config;
pub mod csv;
pub mod db;
pub mod document;
pub mod encode;
pub mod error;
pub mod load;
pub mod parquet;
pub mod receive;
pub mod sql;
pub mod target;

pub use config::{WorkerArgs, WorkerConfig};
pub use receive::{run, RunSummary};
