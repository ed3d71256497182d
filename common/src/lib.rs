//! Sluice's shared core: everything the coordinator and the worker must agree on.
//!
//! # Layout
//!
//! - [`message`]: the SQS message contract (one message per file), versioned.
//! - [`mapping`]: S3 key -> source table and file kind, following AWS DMS's layout. Pure.
//! - [`manifest`]: the manifest model (statuses, items, legal transitions) and the effect of
//!   each move (what it writes, under which condition). Pure.
//! - [`checkpoint`]: listing checkpoints, so a pass reads only what changed. Pure.
//! - [`store`]: the manifest in DynamoDB: renders each move's effect as one conditional write;
//!   queries, the table's creation, the listing checkpoints' items.
//! - [`rules`]: per-table rules from `sluice.toml`.
//! - [`config`]: settings shared by both binaries, validated once at start-up.
//! - [`postgres`]: connection strings and TLS (`sslmode` up to `verify-full`).
//! - [`warehouse`]: the PostgreSQL contract: system columns, quoting, column matching, the
//!   state schema's DDL and statements. Pure.
//! - [`retry`]: the one retry layer for calls the AWS SDK does not already retry.
//! - [`telemetry`]: logging set-up, secret scrubbing.
//! - [`metrics`]: every metric's definition; Prometheus exposition and CloudWatch EMF lines.
//! - [`http`]: the optional `/metrics` and `/health` endpoint, and its minimal client.
//! - [`error`]: the crate's error enum, each variant transient or permanent by construction.
//!
//! The coordinator and the worker share nothing else: a change here is a change to the contract
//! between them.

pub mod checkpoint;
pub mod config;
pub mod error;
pub mod http;
pub mod manifest;
pub mod mapping;
pub mod message;
pub mod metrics;
pub mod postgres;
pub mod retry;
pub mod rules;
pub mod store;
pub mod telemetry;
pub mod timefmt;
pub mod warehouse;

pub use error::Error;
