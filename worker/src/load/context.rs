//! What every step of a load shares: the worker-wide [`LoadContext`], one file's attempt
//! ([`FileLoad`]), and how a load ends ([`LoadOutcome`], [`LoadStats`]). Types and pure
//! helpers only; nothing here talks to PostgreSQL or S3.

use crate::db::db_error;
use crate::error::WorkerError;
use crate::target;
use deadpool_postgres::Pool;
use sluice_common::mapping::{Compression, FileKind, Format};
use sluice_common::message::FileMessage;
use sluice_common::rules::{OnError, Rules, TableRules};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// What a load needs, shared by all files a worker handles.
#[derive(Clone)]
pub struct LoadContext {
    pub pool: Pool,
    pub s3: aws_sdk_s3::Client,
    pub rules: Arc<Rules>,
    pub state_schema: String,
    pub worker_id: String,
    pub max_record_bytes: usize,
    /// Most bytes a compressed file may decompress to (see [`parse::Capped`]).
    pub max_decompressed_bytes: u64,
    /// Target tables (schema, name, soft-delete flag) this process has prepared for the version
    /// guard; a prepared table costs no catalog query before its load's transaction.
    pub prepared: Arc<Mutex<HashMap<PreparedTable, u32>>>,
    /// Target schemas files may load into; None: any the role can write.
    pub schemas: Option<Arc<Vec<String>>>,
    /// Longest wait for a table's merge lock; zero: no limit (`db::Waits::merge_lock`).
    pub merge_lock_timeout: Duration,
}

impl LoadContext {
    /// Refuses a target in a reserved schema (whatever `--schemas` says) or outside the allowed
    /// schemas, before any SQL names it.
    pub(super) fn check_schema(
        &self,
        key: &str,
        schema: &str,
        table: &str,
    ) -> Result<(), WorkerError> {
        target::refuse_reserved(key, schema, table, &self.state_schema)?;
        match &self.schemas {
            Some(allowed) if !allowed.iter().any(|s| s == schema) => {
                Err(WorkerError::SchemaNotAllowed {
                    key: key.to_owned(),
                    schema: schema.to_owned(),
                    table: table.to_owned(),
                    allowed: allowed.join(", "),
                })
            }
            _ => Ok(()),
        }
    }
}

/// A target table (schema, name) and its soft-delete flag; the cache maps it to the oid it had
/// when this process prepared it.
pub type PreparedTable = (String, String, Option<String>);

/// How a load ended, when it did not fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadOutcome {
    /// This worker committed the file.
    Loaded(LoadStats),
    /// The ledger already had the file; nothing was applied.
    AlreadyApplied,
}

/// Figures of one committed load.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadStats {
    pub target: String,
    pub records: u64,
    pub bytes: u64,
    pub inserted: i64,
    pub updated: i64,
    pub deleted: i64,
    /// Operations not applied because the row (or its tombstone) held a newer version.
    pub superseded: i64,
    /// Partial `U` images (columns left unchanged).
    pub partial: u64,
    /// Records set aside in the rejects table.
    pub rejected: u64,
    /// Fields whose bytes the byte policy or the source encoding changed.
    pub repaired: u64,
    /// Download, parse and COPY run together, streamed.
    pub copy: Duration,
    pub merge: Duration,
    pub commit: Duration,
    /// Copied straight into the target (no stage, no merge): see `encode::Direct`.
    pub direct: bool,
    /// Files applied in the same transaction (a batch, `super::batch`); 0 or 1: alone.
    pub batch: usize,
    /// The `COPY` was in PostgreSQL's binary format (into the target or the stage).
    pub binary: bool,
    /// Columns this worker added to the target before the load (`new_columns = "add"`).
    pub columns_added: Vec<crate::sql::evolve::AddedColumn>,
}

impl LoadStats {
    /// How the file was applied, for logs: `direct` or `staged`.
    pub fn path(&self) -> &'static str {
        if self.direct {
            "direct"
        } else {
            "staged"
        }
    }

    /// The `COPY`'s format, for logs: `binary` or `text`.
    pub fn copy_format(&self) -> &'static str {
        if self.binary {
            "binary"
        } else {
            "text"
        }
    }

    pub fn merged(&self) -> i64 {
        self.inserted + self.updated + self.deleted
    }
}

/// How one attempt at a file ended.
pub(super) enum Attempt {
    Done(LoadOutcome),
    /// The direct path did not fit (a record that is not an insert, a key already present):
    /// nothing was applied; load the file by the staged path.
    Staged,
}

/// The file's own time: the CDC file name's timestamp, else the object's LastModified. It is
/// the version of every row of a file without a timestamp column, and breaks version ties.
pub fn file_time(msg: &FileMessage) -> Result<SystemTime, WorkerError> {
    if let FileKind::Cdc { timestamp_ms } = msg.file.kind {
        if let Ok(ms) = u64::try_from(timestamp_ms) {
            return Ok(SystemTime::UNIX_EPOCH + Duration::from_millis(ms));
        }
    }
    sluice_common::timefmt::parse(&msg.last_modified)
        .map(SystemTime::from)
        .ok_or_else(|| WorkerError::Rules {
            key: msg.key.clone(),
            message: format!(
                "the message's last_modified {:?} is not an RFC 3339 time",
                msg.last_modified
            ),
        })
}

/// What an object's bytes are: the key's format and compression.
#[derive(Debug, Clone, Copy)]
pub(super) struct Source {
    pub(super) format: Format,
    pub(super) compression: Compression,
}

/// One file's attempt: what every step of its transaction needs.
pub(super) struct FileLoad<'a> {
    pub ctx: &'a LoadContext,
    pub msg: &'a FileMessage,
    pub rules: TableRules,
    /// The target's schema and table: the rules' `target`, else the key's own folders.
    pub schema: String,
    pub table: String,
    /// `schema.table` of the target, for messages.
    pub target_label: String,
    /// The file's own time ([`file_time`]): its rows' version without a timestamp column.
    pub file_time: SystemTime,
    pub source: Source,
    /// Write the rows (into the stage, or the target on the direct path) in binary where every
    /// column has a binary type (see `encode::EncodeSpec::try_binary`).
    pub try_binary: bool,
}

impl<'a> FileLoad<'a> {
    /// Resolves the file's target from its rules, refusing a reserved or disallowed schema
    /// before any SQL names it.
    pub(super) fn new(ctx: &'a LoadContext, msg: &'a FileMessage) -> Result<Self, WorkerError> {
        let rules = ctx.rules.for_table(&msg.source_table());
        let (schema, table) = rules
            .target
            .clone()
            .unwrap_or_else(|| (msg.file.schema.clone(), msg.file.table.clone()));
        ctx.check_schema(&msg.key, &schema, &table)?;
        Ok(FileLoad {
            ctx,
            msg,
            target_label: format!("{schema}.{table}"),
            file_time: file_time(msg)?,
            source: Source {
                format: msg.file.format,
                compression: msg.file.compression,
            },
            rules,
            schema,
            table,
            try_binary: true,
        })
    }

    pub fn key(&self) -> &'a str {
        &self.msg.key
    }

    /// The file's time as SQL text reads it (RFC 3339).
    pub fn file_time_text(&self) -> String {
        sluice_common::timefmt::format(time::OffsetDateTime::from(self.file_time))
    }

    pub fn soft(&self) -> Option<&str> {
        self.rules.soft_delete.as_deref()
    }

    /// `on_error = "reject_rows"`: bad records are set aside, the others load.
    pub fn rejects(&self) -> bool {
        self.rules.on_error == OnError::RejectRows
    }

    /// A PostgreSQL error of this file's load, against `table`.
    pub fn pg(&self, table: &str) -> impl Fn(tokio_postgres::Error) -> WorkerError + '_ {
        let table = table.to_owned();
        move |e| db_error(e, self.key(), &table, None)
    }
}
