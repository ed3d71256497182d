//! Sluice's coordinator: lists the lake, diffs it against the manifest, enqueues one message
//! per new or changed file, and answers the operator's questions.
//!
//! # Layout
//!
//! - [`listing`]: the lake's objects, each key mapped once to the file it names.
//! - [`plan`]: the diff plan (pure).
//! - [`scan`]: one pass: list, diff, write manifest, enqueue, mark queued, ask for the
//!   replacement of complete full-load generations.
//! - [`events`]: S3 event notifications from their own queue, each new object admitted as a
//!   pass admits a new pair.
//! - [`tail`]: listings proportional to change (each table folder from after its checkpoints).
//! - [`generation`]: which `LOAD` files form a table's newest full load, and when it is done.
//! - [`bootstrap`]: manifest table and (local) queue creation.
//! - [`ops`]: the operator's commands: `status`, `skipped`, `manifest`, `retry`, `reload`,
//!   `skip`, `retry --dlq`, `refresh`, `check`, and read access to the workers' ledger.
//! - [`freshness`]: when each table's files land and load, against what is expected of it.
//! - [`observe`]: metrics of each pass, queue depth, backlog per table (Prometheus, EMF).
//! - [`cli`]: the command line, validated, and the commands' runners.
//! - [`error`]: the crate's error enum, `CoordinatorError`.

pub mod bootstrap;
pub mod cli;
pub mod error;
pub mod events;
pub mod freshness;
pub mod generation;
pub mod listing;
pub mod observe;
pub mod ops;
pub mod plan;
pub mod scan;
pub mod tail;
