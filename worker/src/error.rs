//! The worker's one error enum: everything that can go wrong with one file, each variant
//! carrying what an operator needs (bucket, key, etag, table, record, line, column, SQLSTATE)
//! and decided transient or permanent where it is built, and what stops the worker before it
//! loads anything (settings, the database URL, the bookkeeping schema, the metrics and health
//! endpoint) or fails a receive from the queue. [`WorkerError::to_file_error`] turns a file's
//! failure into the manifest's record; the start-up and receive variants never reach it.
//!
//! A database that cannot take any load right now ([`Outage`]: read-only, restarting, refusing
//! connections, refusing the credentials) is not the file's fault: such an error is
//! [`WorkerError::DatabaseOutage`], transient, and the worker hands the file back without
//! spending an attempt. Invariants of the SQLSTATE tables ([`sqlstate_outage`],
//! [`sqlstate_is_transient`]): every outage code is transient; 40002 (an integrity constraint
//! checked at commit) is permanent although the rest of class 40 (serialization failures,
//! deadlocks) is transient.

use sluice_common::manifest::{cap_text, FileError};

/// Why the database cannot take a load at all right now: an outage to wait out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outage {
    /// 25006: the server is read-only (a writer demoted by a failover and still reached
    /// through a stale DNS answer, a standby, `default_transaction_read_only`).
    ReadOnly,
    /// The server refuses or drops connections: class 08, 57P01-57P03 (shut down, restarting),
    /// a connection refused, cut or timed out.
    Unavailable,
    /// 28P01, 28000: the server refuses the credentials (a rotated password). A running
    /// process cannot fix that: its health turns bad so that it is replaced.
    Authentication,
}

impl Outage {
    /// The manifest's error class.
    pub fn class(self) -> &'static str {
        match self {
            Outage::ReadOnly => "database_read_only",
            Outage::Unavailable => "database_unavailable",
            Outage::Authentication => "database_authentication",
        }
    }

    /// What is wrong, for messages.
    pub fn describe(self) -> &'static str {
        match self {
            Outage::ReadOnly => "the database is read-only",
            Outage::Unavailable => "the database is unavailable",
            Outage::Authentication => "authentication to the database failed",
        }
    }

    /// Whether retrying in place, while the message is held, may help: a failover or a restart
    /// ends by itself; refused credentials do not change under a running process.
    pub fn retry_in_place(self) -> bool {
        self != Outage::Authentication
    }
}

/// What can go wrong in the worker: one file's failure, a receive's, or the start-up's.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("no target table {schema}.{table} in postgresql for key {key} (the table must exist with a primary key)")]
    UnknownTable {
        key: String,
        schema: String,
        table: String,
    },

    #[error(
        "{key} names {schema}.{table}, outside the schemas this worker may load into ({allowed})"
    )]
    SchemaNotAllowed {
        key: String,
        schema: String,
        table: String,
        allowed: String,
    },

    #[error("{key} names {schema}.{table}, in {reason}: sluice never loads into its own state or postgresql's catalogs, whatever the key, the rules or --schemas say")]
    ReservedSchema {
        key: String,
        schema: String,
        table: String,
        reason: sluice_common::mapping::ReservedSchema,
    },

    #[error("target table {table} has no primary key; sluice merges by primary key")]
    NoPrimaryKey { table: String },

    #[error("column {column:?} of {key} is not a column of {table}")]
    UnknownColumn {
        key: String,
        table: String,
        column: String,
    },

    /// Internal to the loader (`new_columns = "add"`): the file names columns the target lacks.
    /// Nothing was applied; the loader adds them ([`crate::load`]'s `evolve`) and loads the
    /// file again. Transient should it ever reach the retry layer: the next attempt adds them.
    #[error("{key} names columns {} that {table} lacks (new_columns = \"add\": they are added before the file loads)", crate::sql::evolve::names(columns))]
    NewColumns {
        key: String,
        table: String,
        columns: Vec<crate::sql::evolve::NewColumn>,
    },

    /// A file column `new_columns = "add"` refuses to add to the target: a hostile or reserved
    /// name, which no retry changes.
    #[error("{key}: column {column:?} cannot be added to {table}: {rule}")]
    RefusedColumn {
        key: String,
        table: String,
        column: String,
        rule: String,
    },

    #[error("{key} does not carry key column {column:?} of {table}")]
    MissingKeyColumn {
        key: String,
        table: String,
        column: String,
    },

    #[error("record {record} at line {line} of {key} has {found} fields, table {table} expects {expected}: {value}")]
    ColumnCount {
        key: String,
        table: String,
        record: u64,
        line: u64,
        expected: usize,
        found: usize,
        /// Excerpt of the record.
        value: String,
    },

    #[error(
        "record {record} at line {line} of {key} has operation \"{value}\", expected I, U or D"
    )]
    BadOperation {
        key: String,
        record: u64,
        line: u64,
        value: String,
    },

    #[error("record {record} at line {line} of {key}: timestamp column {column:?} holds \"{value}\", expected yyyy-MM-dd HH:mm:ss.ffffff")]
    BadVersion {
        key: String,
        record: u64,
        line: u64,
        column: String,
        value: String,
    },

    #[error(
        "record {record} at line {line} of {key}: document column {column:?} {reason}: \"{value}\""
    )]
    BadDocument {
        key: String,
        record: u64,
        line: u64,
        column: String,
        reason: String,
        value: String,
    },

    #[error("record {record} at line {line} of {key}: column {column} {reason}: \"{value}\"")]
    BadValue {
        key: String,
        record: u64,
        line: u64,
        column: String,
        reason: String,
        value: String,
    },

    /// Internal to the loader: a record the direct path or the binary stage cannot write. With
    /// `value`, one of its values has no exact binary form (only PostgreSQL's own input should
    /// read it): the file is read again in text. Without, the record or the file does not fit
    /// the direct path (not an insert; no rows): the file loads by the staged path. Never
    /// reaches the manifest.
    #[error("record {record} of {key} does not fit the direct path or the binary stage")]
    DirectUnfit {
        key: String,
        record: u64,
        value: bool,
    },

    /// Internal to the loader: a file that cannot join the batch it was gathered into (its
    /// columns differ from the first file's). The batch's files are loaded one by one instead;
    /// this never reaches the manifest.
    #[error("{key} cannot be applied with the other files of its batch: {reason}")]
    BatchUnfit { key: String, reason: String },

    #[error("{key}: {reason}")]
    Csv {
        key: String,
        reason: String,
        record: Option<u64>,
        line: Option<u64>,
        class: &'static str,
    },

    #[error(
        "record {record} at line {line} of {key}, column {column}: {reason} (value \"{value}\")"
    )]
    BadBytes {
        key: String,
        record: u64,
        line: u64,
        column: String,
        reason: String,
        /// Excerpt of the field, bytes that are not UTF-8 escaped.
        value: String,
    },

    #[error("record {record} at line {line} of {key}: column {column} of {table} is NOT NULL and the record has NULL")]
    NullNotAllowed {
        key: String,
        table: String,
        record: u64,
        line: u64,
        column: String,
    },

    #[error("record {record} at line {line} of {key}: field for column {column} has {length} bytes, the limit is {limit}")]
    FieldTooLong {
        key: String,
        record: u64,
        line: u64,
        column: String,
        length: usize,
        limit: usize,
        value: String,
    },

    #[error("{key}: {rejected} of {read} records rejected, more than the table allows ({limit}); nothing of the file was applied")]
    TooManyRejects {
        key: String,
        rejected: u64,
        read: u64,
        limit: String,
    },

    #[error("object s3://{bucket}/{key} with etag {etag} no longer exists")]
    ObjectMissing {
        bucket: String,
        key: String,
        etag: String,
    },

    #[error("object s3://{bucket}/{key} changed: etag {etag} is superseded by a newer version")]
    ObjectChanged {
        bucket: String,
        key: String,
        etag: String,
    },

    #[error("access denied reading s3://{bucket}/{key}: {message}")]
    AccessDenied {
        bucket: String,
        key: String,
        message: String,
    },

    #[error("reading s3://{bucket}/{key} failed: {message}")]
    S3 {
        bucket: String,
        key: String,
        message: String,
        transient: bool,
    },

    #[error("{key} is not a valid gzip stream: {message}")]
    Gzip { key: String, message: String },

    /// A `.csv.gz` object decompresses to more than the worker's cap: a gzip bomb (permanent:
    /// the bytes will not change under the same ETag).
    #[error("{key} decompresses to more than {limit} bytes, the limit per file (--max-decompressed-bytes, SLUICE_MAX_DECOMPRESSED_BYTES); nothing of it was applied")]
    DecompressedTooLarge { key: String, limit: u64 },

    /// The object is not a Parquet file the worker can read (permanent: the bytes will not
    /// change under the same ETag).
    #[error("s3://{bucket}/{key} is not a valid Parquet file: {message}")]
    Parquet {
        bucket: String,
        key: String,
        message: String,
    },

    /// The local temporary file a Parquet object is spooled to could not be written (a full
    /// or failing disk: transient, another attempt may find room).
    #[error("spooling s3://{bucket}/{key} to a local temporary file failed: {message}")]
    Spool {
        bucket: String,
        key: String,
        message: String,
    },

    #[error("postgresql error loading {key} into {table}: {message}")]
    Database {
        key: String,
        table: String,
        message: String,
        sqlstate: Option<String>,
        record: Option<u64>,
        line: Option<u64>,
        column: Option<String>,
        /// The refused value, from `COPY`'s error context.
        value: Option<String>,
        transient: bool,
    },

    #[error("rules for {key}: {message}")]
    Rules { key: String, message: String },

    /// PostgreSQL ended a wait for a lock another session holds (`lock_timeout`, or
    /// `statement_timeout` while waiting). Transient: the load is retried.
    #[error("gave up waiting for {lock}{} loading {key}: another session holds it ({message})", waited_text(*.waited))]
    LockTimeout {
        key: String,
        table: String,
        /// What the lock is: "the merge lock of s.t (advisory lock 123)", ...
        lock: String,
        /// How long the statement waited, where known.
        waited: Option<std::time::Duration>,
        sqlstate: String,
        message: String,
    },

    /// The database cannot take any load now (see [`Outage`]); the file waits, no attempt spent.
    #[error("{}{} loading {key} into {table}: {message}; the file goes back to the queue until the database takes loads again", outage.describe(), sqlstate.as_deref().map(|c| format!(" (sqlstate {c})")).unwrap_or_default())]
    DatabaseOutage {
        key: String,
        table: String,
        outage: Outage,
        sqlstate: Option<String>,
        message: String,
    },

    /// Start-up: a setting is wrong.
    #[error(transparent)]
    Config(sluice_common::Error),

    /// Start-up: the database URL cannot make a pool (its syntax, or TLS settings that cannot
    /// be met, such as a verifying `sslmode` without root certificates).
    #[error("bad database url {url}: {message}")]
    DatabaseUrl { url: String, message: String },

    /// Start-up: the bookkeeping schema and ledger cannot be created.
    #[error("cannot create the bookkeeping schema {schema}: {message}")]
    Bootstrap { schema: String, message: String },

    /// Start-up: `--metrics-addr` or `--health-addr` cannot be served.
    #[error("cannot serve metrics or health on {addr}: {source}")]
    Endpoint {
        addr: String,
        source: std::io::Error,
    },

    /// A receive from the queue failed (the SDK's text); the receive loop backs off and
    /// receives again.
    #[error("{message}")]
    Receive { message: String },
}

/// " after 2.0 s", or nothing when the wait is not known.
fn waited_text(waited: Option<std::time::Duration>) -> String {
    waited
        .map(|w| format!(" after {:.1} s", w.as_secs_f64()))
        .unwrap_or_default()
}

impl WorkerError {
    pub fn is_transient(&self) -> bool {
        match self {
            WorkerError::S3 { transient, .. } | WorkerError::Database { transient, .. } => {
                *transient
            }
            WorkerError::Spool { .. }
            | WorkerError::NewColumns { .. }
            | WorkerError::LockTimeout { .. }
            | WorkerError::DatabaseOutage { .. } => true,
            // A common error says itself whether it may pass (a rules file that cannot be read
            // now, ...).
            WorkerError::Config(e) => e.is_transient(),
            // Privilege problems will not fix themselves; a database not reachable yet (workers
            // may start before it) may.
            WorkerError::Bootstrap { message, .. } => !message.contains("permission denied"),
            // The receive loop backs off and receives again, whatever the error.
            WorkerError::Receive { .. } => true,
            WorkerError::DatabaseUrl { .. } | WorkerError::Endpoint { .. } => false,
            _ => false,
        }
    }

    /// The database outage this error shows, if it is one.
    pub fn outage(&self) -> Option<Outage> {
        match self {
            WorkerError::DatabaseOutage { outage, .. } => Some(*outage),
            _ => None,
        }
    }

    /// Whether the worker should retry while it holds the message: transient errors, except
    /// an outage that waiting in place cannot end (refused credentials).
    pub fn retry_in_place(&self) -> bool {
        self.is_transient() && self.outage().is_none_or(Outage::retry_in_place)
    }

    /// Stable class for grouping in the manifest and in alarms.
    pub fn class(&self) -> &'static str {
        match self {
            WorkerError::UnknownTable { .. } => "unknown_table",
            WorkerError::SchemaNotAllowed { .. } => "schema_not_allowed",
            WorkerError::ReservedSchema { .. } => "reserved_schema",
            WorkerError::NoPrimaryKey { .. } => "no_primary_key",
            WorkerError::UnknownColumn { .. } | WorkerError::NewColumns { .. } => "unknown_column",
            WorkerError::RefusedColumn { .. } => "refused_column",
            WorkerError::MissingKeyColumn { .. } => "missing_key_column",
            WorkerError::ColumnCount { .. } => "column_count",
            WorkerError::BadOperation { .. } => "bad_operation",
            WorkerError::BadVersion { .. } => "bad_version",
            WorkerError::BadDocument { .. } => "bad_document",
            WorkerError::BadValue { .. } => "bad_value",
            WorkerError::DirectUnfit { .. } | WorkerError::BatchUnfit { .. } => "internal",
            WorkerError::NullNotAllowed { .. } => "null_not_allowed",
            WorkerError::FieldTooLong { .. } => "field_too_long",
            WorkerError::TooManyRejects { .. } => "too_many_rejects",
            WorkerError::Csv { class, .. } => class,
            WorkerError::BadBytes { .. } => "bad_bytes",
            WorkerError::ObjectMissing { .. } => "object_missing",
            WorkerError::ObjectChanged { .. } => "object_superseded",
            WorkerError::AccessDenied { .. } => "access_denied",
            WorkerError::S3 { .. } => "s3",
            WorkerError::Gzip { .. } => "corrupt_gzip",
            WorkerError::DecompressedTooLarge { .. } => "decompressed_too_large",
            WorkerError::Parquet { .. } => "corrupt_parquet",
            WorkerError::Spool { .. } => "local_io",
            WorkerError::DatabaseOutage { outage, .. } => outage.class(),
            WorkerError::Database {
                sqlstate,
                transient,
                ..
            } => {
                if *transient {
                    "database_transient"
                } else {
                    match sqlstate.as_deref().map(|s| &s[..2.min(s.len())]) {
                        _ if sqlstate.as_deref() == Some("42501") => "permission_denied",
                        _ if sqlstate.as_deref() == Some("40002") => "constraint",
                        Some("22") => "bad_value",
                        Some("23") => "constraint",
                        Some("42") => "schema",
                        _ => "database",
                    }
                }
            }
            WorkerError::Rules { .. } => "rules",
            WorkerError::LockTimeout { .. } => "lock_timeout",
            WorkerError::Config(_) => "config",
            WorkerError::DatabaseUrl { .. } => "database_url",
            WorkerError::Bootstrap { .. } => "bootstrap",
            WorkerError::Endpoint { .. } => "endpoint",
            WorkerError::Receive { .. } => "sqs_receive",
        }
    }

    /// The manifest's record of this failure.
    pub fn to_file_error(&self) -> FileError {
        let (sqlstate, record, line, column, value) = match self {
            WorkerError::ColumnCount {
                record,
                line,
                value,
                ..
            }
            | WorkerError::BadOperation {
                record,
                line,
                value,
                ..
            } => (None, Some(*record), Some(*line), None, Some(value.clone())),
            WorkerError::BadBytes {
                record,
                line,
                column,
                value,
                ..
            }
            | WorkerError::BadVersion {
                record,
                line,
                column,
                value,
                ..
            }
            | WorkerError::BadDocument {
                record,
                line,
                column,
                value,
                ..
            }
            | WorkerError::BadValue {
                record,
                line,
                column,
                value,
                ..
            }
            | WorkerError::FieldTooLong {
                record,
                line,
                column,
                value,
                ..
            } => (
                None,
                Some(*record),
                Some(*line),
                Some(column.clone()),
                Some(value.clone()),
            ),
            WorkerError::NullNotAllowed {
                record,
                line,
                column,
                ..
            } => (None, Some(*record), Some(*line), Some(column.clone()), None),
            WorkerError::Csv { record, line, .. } => (None, *record, *line, None, None),
            WorkerError::RefusedColumn { column, .. } => {
                (None, None, None, Some(column.clone()), None)
            }
            WorkerError::Database {
                sqlstate,
                record,
                line,
                column,
                value,
                ..
            } => (
                sqlstate.clone(),
                *record,
                *line,
                column.clone(),
                value.clone(),
            ),
            WorkerError::LockTimeout { sqlstate, .. } => {
                (Some(sqlstate.clone()), None, None, None, None)
            }
            WorkerError::DatabaseOutage { sqlstate, .. } => {
                (sqlstate.clone(), None, None, None, None)
            }
            _ => (None, None, None, None, None),
        };
        FileError {
            message: cap_text(&self.to_string(), 3000),
            class: self.class().to_owned(),
            permanent: !self.is_transient(),
            sqlstate,
            record,
            line,
            column,
            value,
        }
    }
}

/// Whether a SQLSTATE means "try again later": connection loss, serialization failures and
/// deadlocks, resource exhaustion, shutdowns and lock timeouts, and every outage of
/// [`sqlstate_outage`]. Everything else (bad data, constraints, missing objects, privileges) is
/// permanent for this file; so is 40002 (transaction_integrity_constraint_violation: a deferred
/// constraint refused at commit fails the same way every time), the one code of class 40 that
/// retrying cannot fix.
pub fn sqlstate_is_transient(code: &str) -> bool {
    if code == "40002" {
        return false;
    }
    sqlstate_outage(code).is_some()
        || matches!(&code[..2.min(code.len())], "40" | "53" | "58")
        || matches!(code, "55P03" | "55006" | "57014")
}

/// The outage a SQLSTATE means, if any: 25006 read-only; class 08 and 57P01-57P03
/// unavailable (connection failures, the server shutting down or starting); 28P01 and 28000
/// refused credentials.
pub fn sqlstate_outage(code: &str) -> Option<Outage> {
    match code {
        "25006" => Some(Outage::ReadOnly),
        "28P01" | "28000" => Some(Outage::Authentication),
        "57P01" | "57P02" | "57P03" => Some(Outage::Unavailable),
        _ if code.starts_with("08") => Some(Outage::Unavailable),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_are_classified() {
        for transient in [
            "08006", "08001", "40001", "40P01", "53300", "57P01", "57P03", "55P03",
        ] {
            assert!(sqlstate_is_transient(transient), "{transient}");
        }
        for permanent in [
            "22P02", "22003", "23505", "23502", "42P01", "42501", "XX000", "40002",
        ] {
            assert!(!sqlstate_is_transient(permanent), "{permanent}");
        }
    }

    #[test]
    fn integrity_violation_at_commit_is_permanent_other_rollbacks_are_not() {
        // 40002: a deferred constraint refused at COMMIT; retrying gives the same refusal.
        assert!(!sqlstate_is_transient("40002"));
        assert_eq!(sqlstate_outage("40002"), None);
        // serialization failure, deadlock, and the class's other codes stay transient
        for code in ["40001", "40P01", "40000", "40003"] {
            assert!(sqlstate_is_transient(code), "{code}");
        }
        let e = WorkerError::Database {
            key: "k".into(),
            table: "s.t".into(),
            message: "insert or update violates foreign key constraint".into(),
            sqlstate: Some("40002".into()),
            record: None,
            line: None,
            column: None,
            value: None,
            transient: sqlstate_is_transient("40002"),
        };
        assert!(!e.is_transient() && !e.retry_in_place());
        let f = e.to_file_error();
        assert!(f.permanent);
        assert_eq!(f.class, "constraint");
        assert_eq!(f.sqlstate.as_deref(), Some("40002"));
    }

    #[test]
    fn outages_are_classified_by_sqlstate() {
        assert_eq!(sqlstate_outage("25006"), Some(Outage::ReadOnly));
        for code in [
            "08006", "08001", "08003", "08004", "57P01", "57P02", "57P03",
        ] {
            assert_eq!(sqlstate_outage(code), Some(Outage::Unavailable), "{code}");
        }
        for code in ["28P01", "28000"] {
            assert_eq!(
                sqlstate_outage(code),
                Some(Outage::Authentication),
                "{code}"
            );
        }
        for code in [
            "40001", "40P01", "53300", "55P03", "57014", "22P02", "42501", "25P02",
        ] {
            assert_eq!(sqlstate_outage(code), None, "{code}");
        }
        // every outage is transient
        for code in ["25006", "08006", "57P01", "57P03", "28P01", "28000"] {
            assert!(sqlstate_is_transient(code), "{code}");
        }
    }

    #[test]
    fn an_outage_has_its_own_class_names_its_sqlstate_and_is_not_permanent() {
        let ro = WorkerError::DatabaseOutage {
            key: "dms/s/t/LOAD00000001.csv".into(),
            table: "s.t".into(),
            outage: Outage::ReadOnly,
            sqlstate: Some("25006".into()),
            message: "cannot execute INSERT in a read-only transaction".into(),
        };
        assert!(ro.is_transient() && ro.retry_in_place());
        assert_eq!(ro.outage(), Some(Outage::ReadOnly));
        let f = ro.to_file_error();
        assert_eq!(f.class, "database_read_only");
        assert!(!f.permanent);
        assert_eq!(f.sqlstate.as_deref(), Some("25006"));
        assert!(
            f.message.starts_with(
                "the database is read-only (sqlstate 25006) loading dms/s/t/LOAD00000001.csv into s.t: cannot execute INSERT"
            ),
            "{}",
            f.message
        );
        let auth = WorkerError::DatabaseOutage {
            key: "k".into(),
            table: "s.t".into(),
            outage: Outage::Authentication,
            sqlstate: Some("28P01".into()),
            message: "password authentication failed for user \"sluice\"".into(),
        };
        // transient (the file is not at fault) but not retried in place
        assert!(auth.is_transient() && !auth.retry_in_place());
        assert_eq!(auth.class(), "database_authentication");
        assert!(auth.to_string().contains("authentication"), "{auth}");
        let down = WorkerError::DatabaseOutage {
            key: "k".into(),
            table: "s.t".into(),
            outage: Outage::Unavailable,
            sqlstate: None,
            message: "cannot connect: error connecting to server: Connection refused".into(),
        };
        assert_eq!(down.class(), "database_unavailable");
        assert!(down.retry_in_place());
        assert!(!down.to_string().contains("sqlstate"), "{down}");
        // a transient error that is no outage keeps the attempt-spending path
        let deadlock = WorkerError::Database {
            key: "k".into(),
            table: "s.t".into(),
            message: "deadlock detected".into(),
            sqlstate: Some("40P01".into()),
            record: None,
            line: None,
            column: None,
            value: None,
            transient: true,
        };
        assert_eq!(deadlock.outage(), None);
        assert_eq!(deadlock.class(), "database_transient");
    }

    #[test]
    fn file_error_carries_position_and_class() {
        let e = WorkerError::ColumnCount {
            key: "k".into(),
            table: "s.t".into(),
            record: 3,
            line: 4,
            expected: 2,
            found: 5,
            value: "1,2,3,4,5".into(),
        };
        let f = e.to_file_error();
        assert_eq!(f.class, "column_count");
        assert!(f.permanent);
        assert_eq!((f.record, f.line), (Some(3), Some(4)));
        assert!(
            f.message.contains("record 3 at line 4 of k has 5 fields"),
            "{}",
            f.message
        );

        let db = WorkerError::Database {
            key: "k".into(),
            table: "s.t".into(),
            message: "invalid input syntax for type integer: \"x\"".into(),
            sqlstate: Some("22P02".into()),
            record: Some(7),
            line: Some(9),
            column: Some("amount".into()),
            value: Some("x".into()),
            transient: false,
        };
        let f = db.to_file_error();
        assert_eq!(f.class, "bad_value");

        assert_eq!(f.sqlstate.as_deref(), Some("22P02"));
        assert_eq!(f.column.as_deref(), Some("amount"));
        let pq = WorkerError::Parquet {
            bucket: "b".into(),
            key: "s/t/LOAD00000001.parquet".into(),
            message: "Invalid Parquet file. Corrupt footer".into(),
        };
        let f = pq.to_file_error();
        assert_eq!(f.class, "corrupt_parquet");
        assert!(f.permanent);
        assert!(f
            .message
            .starts_with("s3://b/s/t/LOAD00000001.parquet is not a valid Parquet file"));
        let spool = WorkerError::Spool {
            bucket: "b".into(),
            key: "k.parquet".into(),
            message: "No space left on device".into(),
        };
        assert!(spool.is_transient());
        assert_eq!(spool.class(), "local_io");
    }

    #[test]
    fn a_lock_wait_that_ran_out_is_transient_and_named() {
        let e = WorkerError::LockTimeout {
            key: "dms/s/t/LOAD00000001.csv".into(),
            table: "s.t".into(),
            lock: "the merge lock of s.t (advisory lock 42)".into(),
            waited: Some(std::time::Duration::from_millis(2049)),
            sqlstate: "55P03".into(),
            message: "canceling statement due to lock timeout".into(),
        };
        assert!(e.is_transient());
        let f = e.to_file_error();
        assert_eq!((f.class.as_str(), f.permanent), ("lock_timeout", false));
        assert_eq!(f.sqlstate.as_deref(), Some("55P03"));
        assert_eq!(
            f.message,
            "gave up waiting for the merge lock of s.t (advisory lock 42) after 2.0 s loading \
             dms/s/t/LOAD00000001.csv: another session holds it (canceling statement due to \
             lock timeout)"
        );
    }

    #[test]
    fn start_up_and_receive_errors_keep_their_texts_and_are_decided() {
        let url = WorkerError::DatabaseUrl {
            url: "postgres://sluice:***@db/warehouse".into(),
            message: "invalid port".into(),
        };
        assert_eq!(
            url.to_string(),
            "bad database url postgres://sluice:***@db/warehouse: invalid port"
        );
        assert_eq!((url.class(), url.is_transient()), ("database_url", false));

        let denied = WorkerError::Bootstrap {
            schema: "sluice".into(),
            message: "permission denied for database warehouse".into(),
        };
        assert_eq!(
            denied.to_string(),
            "cannot create the bookkeeping schema sluice: permission denied for database warehouse"
        );
        assert_eq!(
            (denied.class(), denied.is_transient()),
            ("bootstrap", false)
        );
        let not_yet = WorkerError::Bootstrap {
            schema: "sluice".into(),
            message: "error connecting to server: Connection refused".into(),
        };
        assert!(not_yet.is_transient(), "a database not up yet may come up");

        let endpoint = WorkerError::Endpoint {
            addr: "0.0.0.0:9102".into(),
            source: std::io::Error::new(std::io::ErrorKind::AddrInUse, "address in use"),
        };
        assert_eq!(
            endpoint.to_string(),
            "cannot serve metrics or health on 0.0.0.0:9102: address in use"
        );
        assert!(std::error::Error::source(&endpoint).is_some());
        assert_eq!(
            (endpoint.class(), endpoint.is_transient()),
            ("endpoint", false)
        );

        let inner = sluice_common::Error::Config {
            setting: "SLUICE_WAIT_TIME",
            reason: "must be 0 to 20 seconds".into(),
        };
        let text = inner.to_string();
        let config = WorkerError::Config(inner);
        assert_eq!(config.to_string(), text);
        assert_eq!((config.class(), config.is_transient()), ("config", false));

        let receive = WorkerError::Receive {
            message: "service error: AWS.SimpleQueueService.NonExistentQueue".into(),
        };
        assert_eq!(
            receive.to_string(),
            "service error: AWS.SimpleQueueService.NonExistentQueue"
        );
        assert_eq!(
            (receive.class(), receive.is_transient()),
            ("sqs_receive", true)
        );
        // none of them is an outage, and none reaches the manifest as a file's position
        for e in [url, denied, endpoint, config, receive] {
            assert_eq!(e.outage(), None);
            let f = e.to_file_error();
            assert_eq!((f.record, f.line, f.sqlstate), (None, None, None));
        }
    }
}
