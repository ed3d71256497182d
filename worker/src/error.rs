//! The worker's error enum: everything that can go wrong with one file, each variant carrying
//! what an operator needs (bucket, key, etag, table, record, line, column, SQLSTATE) and decided
//! transient or permanent where it is built. [`LoadError::to_file_error`] turns it into the
//! manifest's record.

use sluice_common::manifest::{cap_text, FileError};

/// One file's failure.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
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

    #[error("target table {table} has no primary key; sluice merges by primary key")]
    NoPrimaryKey { table: String },

    #[error("column {column:?} of {key} is not a column of {table}")]
    UnknownColumn {
        key: String,
        table: String,
        column: String,
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

    /// Internal to the loader: a record the direct path cannot write (not an insert, or a value
    /// only PostgreSQL should read). The loader loads the file by the staged path instead; this
    /// never reaches the manifest.
    #[error("record {record} of {key} does not fit the direct path")]
    DirectUnfit { key: String, record: u64 },

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
}

impl LoadError {
    pub fn is_transient(&self) -> bool {
        match self {
            LoadError::S3 { transient, .. } | LoadError::Database { transient, .. } => *transient,
            LoadError::Spool { .. } => true,
            _ => false,
        }
    }

    /// Stable class for grouping in the manifest and in alarms.
    pub fn class(&self) -> &'static str {
        match self {
            LoadError::UnknownTable { .. } => "unknown_table",
            LoadError::SchemaNotAllowed { .. } => "schema_not_allowed",
            LoadError::NoPrimaryKey { .. } => "no_primary_key",
            LoadError::UnknownColumn { .. } => "unknown_column",
            LoadError::MissingKeyColumn { .. } => "missing_key_column",
            LoadError::ColumnCount { .. } => "column_count",
            LoadError::BadOperation { .. } => "bad_operation",
            LoadError::BadVersion { .. } => "bad_version",
            LoadError::BadDocument { .. } => "bad_document",
            LoadError::BadValue { .. } => "bad_value",
            LoadError::DirectUnfit { .. } => "internal",
            LoadError::NullNotAllowed { .. } => "null_not_allowed",
            LoadError::FieldTooLong { .. } => "field_too_long",
            LoadError::TooManyRejects { .. } => "too_many_rejects",
            LoadError::Csv { class, .. } => class,
            LoadError::BadBytes { .. } => "bad_bytes",
            LoadError::ObjectMissing { .. } => "object_missing",
            LoadError::ObjectChanged { .. } => "object_superseded",
            LoadError::AccessDenied { .. } => "access_denied",
            LoadError::S3 { .. } => "s3",
            LoadError::Gzip { .. } => "corrupt_gzip",
            LoadError::Parquet { .. } => "corrupt_parquet",
            LoadError::Spool { .. } => "local_io",
            LoadError::Database {
                sqlstate,
                transient,
                ..
            } => {
                if *transient {
                    "database_unavailable"
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
            LoadError::Rules { .. } => "rules",
        }
    }

    /// The manifest's record of this failure.
    pub fn to_file_error(&self) -> FileError {
        let (sqlstate, record, line, column, value) = match self {
            LoadError::ColumnCount {
                record,
                line,
                value,
                ..
            }
            | LoadError::BadOperation {
                record,
                line,
                value,
                ..
            } => (None, Some(*record), Some(*line), None, Some(value.clone())),
            LoadError::BadBytes {
                record,
                line,
                column,
                value,
                ..
            }
            | LoadError::BadVersion {
                record,
                line,
                column,
                value,
                ..
            }
            | LoadError::BadDocument {
                record,
                line,
                column,
                value,
                ..
            }
            | LoadError::BadValue {
                record,
                line,
                column,
                value,
                ..
            }
            | LoadError::FieldTooLong {
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
            LoadError::NullNotAllowed {
                record,
                line,
                column,
                ..
            } => (None, Some(*record), Some(*line), Some(column.clone()), None),
            LoadError::Csv { record, line, .. } => (None, *record, *line, None, None),
            LoadError::Database {
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
/// deadlocks, resource exhaustion, shutdowns and lock timeouts. Everything else (bad data,
/// constraints, missing objects, privileges) is permanent for this file; so is 40002
/// (transaction_integrity_constraint_violation: a deferred constraint refused at commit fails
/// the same way every time), the one code of class 40 that retrying cannot fix.
pub fn sqlstate_is_transient(code: &str) -> bool {
    if code == "40002" {
        return false;
    }
    matches!(&code[..2.min(code.len())], "08" | "40" | "53" | "58")
        || matches!(
            code,
            "57P01" | "57P02" | "57P03" | "55P03" | "55006" | "57014"
        )
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
        // serialization failure, deadlock, and the class's other codes stay transient
        for code in ["40001", "40P01", "40000", "40003"] {
            assert!(sqlstate_is_transient(code), "{code}");
        }
        let e = LoadError::Database {
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
        assert!(!e.is_transient());
        let f = e.to_file_error();
        assert!(f.permanent);
        assert_eq!(f.class, "constraint");
        assert_eq!(f.sqlstate.as_deref(), Some("40002"));
    }

    #[test]
    fn file_error_carries_position_and_class() {
        let e = LoadError::ColumnCount {
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

        let db = LoadError::Database {
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
        let pq = LoadError::Parquet {
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
        let spool = LoadError::Spool {
            bucket: "b".into(),
            key: "k.parquet".into(),
            message: "No space left on device".into(),
        };
        assert!(spool.is_transient());
        assert_eq!(spool.class(), "local_io");
    }
}
