//! Sluice's coordinator: lists the lake, diffs it against the manifest, enqueues one message
//! per new or changed file, and answers the operator's questions.
//!
//! # Layout
//!
//! - [`plan`]: the diff plan (pure).
//! - [`scan`]: one pass: list, diff, write manifest, enqueue, mark queued, ask for the
//!   replacement of complete full-load generations.
//! - [`generation`]: which `LOAD` files form a table's newest full load, and when it is done.
//! - [`bootstrap`]: manifest table and (local) queue creation.
//! - [`report`]: `manifest list / show / summary`.
//! - [`status`]: `status` (figures per table, queues, throughput, ETA, `--watch`).
//! - [`reconcile`]: `skipped` (S3 listing vs manifest vs ledger).
//! - [`ops`]: `retry`, `reload`, `skip`, and the selections they share.
//! - [`dlq`]: queue depths and `retry --dlq`.
//! - [`check`]: `check`: do the rules fit the target tables (catalog, privileges)?
//! - [`refresh`]: `refresh --table T`: re-apply a table's full load as a new generation.
//! - [`ledger`]: read (and, for `reload`, delete) access to the workers' ledger in PostgreSQL.
//! - [`observe`]: metrics of each pass, queue depth, backlog per table (Prometheus, EMF).
//! - [`cli`]: the command line, validated, and the commands' runners.
//! - [`error`]: the crate's error enum, `CoordinatorError`.

pub mod bootstrap;
pub mod check;
pub mod cli;
pub mod dlq;
pub mod error;
pub mod generation;
pub mod ledger;
pub mod observe;
pub mod ops;
pub mod plan;
pub mod reconcile;
pub mod refresh;
pub mod report;
pub mod scan;
pub mod status;
