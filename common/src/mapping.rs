//! S3 key -> source table and file kind, following AWS DMS's layout. Pure; no IO.
//!
//! Layout: `<prefix><schema>/<table>/[date folders/]<file>`. Invariants:
//! - a key maps to a table only when it has a schema folder, a table folder and a file name,
//!   all non-empty; anything between the table folder and the file is a date partition and is
//!   ignored for mapping;
//! - schema and table names are returned exactly as they appear in the key: they are untrusted
//!   and the worker matches them against the catalog, never splices them into SQL;
//! - full-load files are `LOAD` + 8 hexadecimal digits (DMS counts in hex: `...09`, `...0A`);
//!   CDC files are named by timestamp (`20241029-113401000`), so lexical order is time order;
//! - the extension gives the format: `.csv`, `.csv.gz` (CSV, gzip-compressed) or `.parquet`
//!   (DMS `DataFormat=parquet`; compression is inside the file), matched without regard to case.
//!   The kind rules above are the same for every format;
//! - some schemas are never targets, whatever a key or the rules file says and whatever the
//!   worker's `--schemas` allows ([`reserved_schema`]): Sluice's state schema (its ledger,
//!   rejects, generations and tombstone tables) and PostgreSQL's own (`pg_catalog`,
//!   `information_schema`, `pg_toast` and every `pg_*`). The check is on the final target
//!   schema, after the rules' `target`, and ignores ASCII case: PostgreSQL would match a folder
//!   `Sluice` only to a schema of that exact name, but refusing a look-alike costs an operator
//!   a rename, while missing one would let the lake write Sluice's state.

use serde::{Deserialize, Serialize};
use std::fmt;

/// What kind of DMS file a key names. On the wire (the file message's `file`), `{"kind":
/// "full_load", "sequence": 1}`, `{"kind": "cdc", "timestamp_ms": ...}` or `{"kind": "other"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FileKind {
    /// `LOADxxxxxxxx.csv` (or `.parquet`): a full-load file, with its (hexadecimal) sequence number.
    FullLoad { sequence: u64 },
    /// `YYYYMMDD-HHMMSSmmm.csv` (or `.parquet`): a CDC file; `timestamp_ms` is milliseconds since the epoch (UTC).
    Cdc { timestamp_ms: i64 },
    /// Any other `.csv` or `.parquet` name: loaded like a CDC file without a file-level time.
    Other,
}

impl FileKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            FileKind::FullLoad { .. } => "full_load",
            FileKind::Cdc { .. } => "cdc",
            FileKind::Other => "other",
        }
    }
}

/// Compression of a file, from its name. A Parquet file's compression is inside it: `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    None,
    Gzip,
}

/// The format of a file, from its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// RFC 4180 text (`.csv`, `.csv.gz`).
    Csv,
    /// Apache Parquet (`.parquet`), as DMS writes with `DataFormat=parquet`.
    Parquet,
}

/// A key that names a loadable file: what the coordinator maps once from the listing and the
/// file message carries to the worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceFile {
    pub schema: String,
    pub table: String,
    pub file_name: String,
    #[serde(flatten)]
    pub kind: FileKind,
    pub format: Format,
    pub compression: Compression,
}

impl SourceFile {
    /// `schema.table` as written in the key: the manifest's table label and the rules file's key.
    pub fn source_table(&self) -> String {
        format!("{}.{}", self.schema, self.table)
    }
}

/// Why a key is not a loadable file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unmapped {
    /// A zero-byte "folder" object (`.../`); not a file at all, ignored.
    Folder,
    /// The key is outside the source prefix.
    OutsidePrefix,
    /// Not `<schema>/<table>/.../<file>`.
    TooShallow,
    /// A file whose name is not `.csv`, `.csv.gz` or `.parquet`.
    UnsupportedFile(String),
}

impl fmt::Display for Unmapped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unmapped::Folder => write!(f, "folder marker, not a file"),
            Unmapped::OutsidePrefix => write!(f, "key is outside the source prefix"),
            Unmapped::TooShallow => write!(
                f,
                "key is not <schema>/<table>/[date folders/]<file> under the source prefix"
            ),
            Unmapped::UnsupportedFile(name) => {
                write!(f, "file {name:?} is not .csv, .csv.gz or .parquet")
            }
        }
    }
}

/// Why a schema is never a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReservedSchema {
    /// Sluice's own state schema (`--state-schema`).
    State,
    /// A schema of PostgreSQL's own: `pg_catalog`, `information_schema`, `pg_toast`, `pg_*`.
    System,
}

impl fmt::Display for ReservedSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReservedSchema::State => write!(f, "sluice's state schema"),
            ReservedSchema::System => write!(f, "a postgresql system schema"),
        }
    }
}

/// Whether `schema` (a target's final schema) may never be loaded into, given Sluice's state
/// schema. ASCII case is ignored on purpose (see the module docs).
pub fn reserved_schema(schema: &str, state_schema: &str) -> Option<ReservedSchema> {
    let lower = schema.to_ascii_lowercase();
    if lower == state_schema.to_ascii_lowercase() {
        Some(ReservedSchema::State)
    } else if lower == "information_schema" || lower.starts_with("pg_") {
        Some(ReservedSchema::System)
    } else {
        None
    }
}

/// The name DMS gives a CDC file written at `t` (UTC, millisecond precision):
/// `YYYYMMDD-HHMMSSmmm.csv`. The inverse of what [`map_key`] reads.
pub fn cdc_file_name(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}{:02}{:02}-{:02}{:02}{:02}{:03}.csv",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// Maps a key under `prefix` (which is empty or ends with `/`) to a source file.
pub fn map_key(prefix: &str, key: &str) -> Result<SourceFile, Unmapped> {
    if key.ends_with('/') {
        return Err(Unmapped::Folder);
    }
    let rest = key.strip_prefix(prefix).ok_or(Unmapped::OutsidePrefix)?;
    let parts: Vec<&str> = rest.split('/').collect();
    if parts.len() < 3 || parts.iter().any(|p| p.is_empty()) {
        return Err(Unmapped::TooShallow);
    }
    file_of(parts[0], parts[1], parts[parts.len() - 1])
}

/// The source file that `file_name` is in the folder of `schema.table`: its kind, format and
/// compression from the name.
pub fn file_of(schema: &str, table: &str, file_name: &str) -> Result<SourceFile, Unmapped> {
    let (stem, format, compression) = if let Some(stem) = strip_suffix_ci(file_name, ".csv.gz") {
        (stem, Format::Csv, Compression::Gzip)
    } else if let Some(stem) = strip_suffix_ci(file_name, ".csv") {
        (stem, Format::Csv, Compression::None)
    } else if let Some(stem) = strip_suffix_ci(file_name, ".parquet") {
        (stem, Format::Parquet, Compression::None)
    } else {
        return Err(Unmapped::UnsupportedFile(file_name.to_owned()));
    };
    Ok(SourceFile {
        schema: schema.to_owned(),
        table: table.to_owned(),
        file_name: file_name.to_owned(),
        kind: file_kind(stem),
        format,
        compression,
    })
}

fn strip_suffix_ci<'a>(s: &'a str, suffix: &str) -> Option<&'a str> {
    let cut = s.len().checked_sub(suffix.len())?;
    if s.is_char_boundary(cut) && s[cut..].eq_ignore_ascii_case(suffix) && cut > 0 {
        Some(&s[..cut])
    } else {
        None
    }
}

/// Classifies a file name without its extension.
pub fn file_kind(stem: &str) -> FileKind {
    if let Some(hex) = stem.strip_prefix("LOAD") {
        if hex.len() == 8 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            if let Ok(sequence) = u64::from_str_radix(hex, 16) {
                return FileKind::FullLoad { sequence };
            }
        }
    }
    if let Some(timestamp_ms) = cdc_timestamp_ms(stem) {
        return FileKind::Cdc { timestamp_ms };
    }
    FileKind::Other
}

/// `YYYYMMDD-HHMMSSmmm` -> milliseconds since the epoch, UTC.
fn cdc_timestamp_ms(stem: &str) -> Option<i64> {
    let b = stem.as_bytes();
    if b.len() != 18 || b[8] != b'-' {
        return None;
    }
    if !b[..8].iter().chain(&b[9..]).all(u8::is_ascii_digit) {
        return None;
    }
    let num = |r: std::ops::Range<usize>| stem[r].parse::<u32>().ok();
    let month = time::Month::try_from(num(4..6)? as u8).ok()?;
    let date = time::Date::from_calendar_date(num(0..4)? as i32, month, num(6..8)? as u8).ok()?;
    let t = time::Time::from_hms_milli(
        num(9..11)? as u8,
        num(11..13)? as u8,
        num(13..15)? as u8,
        num(15..18)? as u16,
    )
    .ok()?;
    let dt = time::PrimitiveDateTime::new(date, t).assume_utc();
    Some((dt.unix_timestamp_nanos() / 1_000_000) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cdc_file_names_round_trip() {
        let t = time::macros::datetime!(2024-10-29 11:34:01.250 UTC);
        let name = cdc_file_name(t);
        assert_eq!(name, "20241029-113401250.csv");
        let f = map_key("", &format!("s/t/{name}")).unwrap();
        assert_eq!(
            f.kind,
            FileKind::Cdc {
                timestamp_ms: (t.unix_timestamp_nanos() / 1_000_000) as i64
            }
        );
    }

    #[test]
    fn maps_full_load_with_hex_counter() {
        let f = map_key("dms/", "dms/public/orders/LOAD0000000A.csv").unwrap();
        assert_eq!(f.schema, "public");
        assert_eq!(f.table, "orders");
        assert_eq!(f.kind, FileKind::FullLoad { sequence: 10 });
        assert_eq!(f.compression, Compression::None);
        assert_eq!(f.format, Format::Csv);
        assert_eq!(f.source_table(), "public.orders");
        assert_eq!(
            file_kind("LOAD00000009"),
            FileKind::FullLoad { sequence: 9 }
        );
    }

    #[test]
    fn maps_cdc_in_date_folders_and_gzip() {
        let f = map_key("", "hr/emp/2024/10/29/20241029-113401000.csv.gz").unwrap();
        assert_eq!((f.schema.as_str(), f.table.as_str()), ("hr", "emp"));
        assert_eq!(f.compression, Compression::Gzip);
        assert_eq!(f.format, Format::Csv);
        // 2024-10-29T11:34:01Z
        assert_eq!(
            f.kind,
            FileKind::Cdc {
                timestamp_ms: 1_730_201_641_000
            }
        );
        let hourly = map_key("", "hr/emp/20241029/11/20241029-113401123.csv").unwrap();
        assert_eq!(
            hourly.kind,
            FileKind::Cdc {
                timestamp_ms: 1_730_201_641_123
            }
        );
    }

    #[test]
    fn parquet_files_map_like_csv_ones() {
        let f = map_key("dms/", "dms/public/orders/LOAD0000000A.parquet").unwrap();
        assert_eq!((f.schema.as_str(), f.table.as_str()), ("public", "orders"));
        assert_eq!(f.kind, FileKind::FullLoad { sequence: 10 });
        assert_eq!(f.format, Format::Parquet);
        assert_eq!(f.compression, Compression::None);
        assert_eq!(f.file_name, "LOAD0000000A.parquet");
        let cdc = map_key("", "hr/emp/2024/10/29/20241029-113401000.PARQUET").unwrap();
        assert_eq!(cdc.format, Format::Parquet);
        assert_eq!(
            cdc.kind,
            FileKind::Cdc {
                timestamp_ms: 1_730_201_641_000
            }
        );
        let other = map_key("", "s/t/export.parquet").unwrap();
        assert_eq!(
            (other.kind, other.format),
            (FileKind::Other, Format::Parquet)
        );
        assert_eq!(
            map_key("", "a/b/.parquet"),
            Err(Unmapped::UnsupportedFile(".parquet".into()))
        );
        // Parquet compresses inside the file; a gzipped Parquet file is not something DMS writes.
        assert_eq!(
            map_key("", "a/b/LOAD00000001.parquet.gz"),
            Err(Unmapped::UnsupportedFile("LOAD00000001.parquet.gz".into()))
        );
    }

    #[test]
    fn other_csv_names_are_loadable() {
        let f = map_key("", "s/t/export.CSV").unwrap();
        assert_eq!(f.kind, FileKind::Other);
        assert_eq!(file_kind("LOAD0000000G"), FileKind::Other);
        assert_eq!(file_kind("20241399-113401000"), FileKind::Other);
    }

    #[test]
    fn unmapped_keys_say_why() {
        assert_eq!(map_key("dms/", "dms/public/"), Err(Unmapped::Folder));
        assert_eq!(
            map_key("dms/", "other/a/b/c.csv"),
            Err(Unmapped::OutsidePrefix)
        );
        assert_eq!(
            map_key("dms/", "dms/public/x.csv"),
            Err(Unmapped::TooShallow)
        );
        assert_eq!(map_key("", "a//b/x.csv"), Err(Unmapped::TooShallow));
        assert_eq!(
            map_key("", "a/b/x.orc"),
            Err(Unmapped::UnsupportedFile("x.orc".into()))
        );
        assert_eq!(
            Unmapped::UnsupportedFile("x.orc".into()).to_string(),
            "file \"x.orc\" is not .csv, .csv.gz or .parquet"
        );
        assert_eq!(
            map_key("", "a/b/.csv"),
            Err(Unmapped::UnsupportedFile(".csv".into()))
        );
    }

    #[test]
    fn the_state_schema_and_postgresql_schemas_are_never_targets() {
        use ReservedSchema::*;
        for (schema, state, reserved) in [
            ("sluice", "sluice", Some(State)),
            ("Sluice", "sluice", Some(State)),
            ("SLUICE", "sluice", Some(State)),
            ("warehouse_state", "Warehouse_State", Some(State)),
            ("sluice", "other", None),
            ("other", "other", Some(State)),
            ("sluice_x", "sluice", None),
            ("pg_catalog", "sluice", Some(System)),
            ("PG_CATALOG", "sluice", Some(System)),
            ("pg_toast", "sluice", Some(System)),
            ("pg_toast_temp_1", "sluice", Some(System)),
            ("pg_temp_3", "sluice", Some(System)),
            ("Pg_Anything", "sluice", Some(System)),
            ("information_schema", "sluice", Some(System)),
            ("Information_Schema", "sluice", Some(System)),
            ("information_schema2", "sluice", None),
            ("pgdata", "sluice", None),
            ("public", "sluice", None),
            ("", "sluice", None),
        ] {
            assert_eq!(
                reserved_schema(schema, state),
                reserved,
                "{schema} ({state})"
            );
        }
        assert_eq!(State.to_string(), "sluice's state schema");
        assert_eq!(System.to_string(), "a postgresql system schema");
    }

    #[test]
    fn hostile_names_are_returned_verbatim_not_cleaned() {
        let f = map_key("", "pub\"lic/t; drop table x/ü 表/LOAD00000001.csv").unwrap();
        assert_eq!(f.schema, "pub\"lic");
        assert_eq!(f.table, "t; drop table x");
    }
}
