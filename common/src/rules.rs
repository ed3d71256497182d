//! Per-table rules from `sluice.toml`.
//!
//! With no rules file, DMS's conventions apply to every table: no header row, CSV columns by
//! position in the target's ordinal order, unquoted `NULL` is SQL NULL, an empty quoted field is
//! the empty string, and the target is the table named by the key's folders.
//!
//! ```toml
//! [defaults]
//! null = "NULL"          # DMS CsvNullValue
//! header = false         # DMS AddColumnName
//!
//! [tables."dms_schema.orders"]      # schema.table as in the S3 key
//! target = "warehouse.orders"       # schema.table in PostgreSQL
//! columns = ["id", "customer", "amount"]
//! null = ""
//! header = true
//! timestamp_column = "dms_ts"       # DMS TimestampColumnName: the row version
//! nosup_value = "__SLUICE_NOSUP__"  # DMS CsvNoSupValue: this column is unchanged in a U row
//! soft_delete = "is_deleted"        # keep deleted rows, flagged, instead of removing them
//! tombstone_retention_hours = 168   # how long a hard delete's tombstone outlives newer data
//! on_error = "reject_rows"          # or "fail_file" (the default)
//! max_rejects = 100                 # with reject_rows: beyond this many, the file fails
//! max_reject_share = 0.01           # ... or beyond this share of the file's records
//! invalid_bytes = "replace"         # NUL / invalid UTF-8: "reject" (default), "strip", "replace"
//! encoding = "windows-1252"         # source encoding: "utf-8" (default), "latin1", "windows-1252"
//! max_field_bytes = 1048576         # a longer field is a bad record
//! full_load = "merge"               # or "replace" (default): see the README's generations
//! new_columns = "add"               # a file column the target lacks: "fail" (default), "ignore"
//!                                   # (left out; `unknown_columns = "ignore"` is its alias) or
//!                                   # "add" (the worker adds it to the target, then loads)
//! new_column_type = "varchar(200)"  # with "add": the type of a column a CSV header brings
//!                                   # (default text; Parquet columns take their schema's type)
//! row_delimiter = "\n"              # DMS CsvRowDelimiter: "\n" (default; CRLF also ends a row)
//!                                   # or one other ASCII character
//! expect_every = "1h"               # files should land at least this often (s, m, h, d);
//!                                   # without it, the cadence is learned from the manifest
//!
//! [tables."mongo.customers".document]  # DMS MongoDB document mode: `_id`, `_doc` (JSON)
//! column = "_doc"                   # the CSV column holding the document (default "_doc")
//! flatten = "auto"                  # top-level fields to columns of the same name; or
//! paths = { city = "address.city" } # column = "dotted.path" (with flatten = "paths")
//! rescue = "extra"                  # jsonb column for the fields no column takes
//! ```
//!
//! Invariant: every table gets a complete [`TableRules`]; a table's own values override the
//! defaults field by field. Unknown fields are errors, so a typo does not pass silently.

use crate::error::Error;
use serde::Deserialize;
use std::collections::BTreeMap;

/// Effective rules for one source table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRules {
    /// Target `(schema, table)` in PostgreSQL; None means the key's own folder names.
    pub target: Option<(String, String)>,
    /// CSV columns in file order (after the Op column, if any); None means the target's
    /// columns in ordinal order.
    pub columns: Option<Vec<String>>,
    /// The unquoted text that means SQL NULL.
    pub null: String,
    /// Whether each file starts with a header row naming its columns.
    pub header: bool,
    /// Field delimiter.
    pub delimiter: u8,
    /// DMS `TimestampColumnName`: the field holding each row's version (`yyyy-MM-dd
    /// HH:mm:ss.SSSSSS`, UTC). Without a header or column list, DMS writes it as the first
    /// field after `Op`. None: every row of a file takes the file's own time as its version.
    pub timestamp_column: Option<String>,
    /// DMS `CsvNoSupValue`: in a `U` record, a field with this value leaves its column unchanged.
    pub nosup_value: Option<String>,
    /// Name of a boolean column that marks deleted rows; None means deletes are hard.
    pub soft_delete: Option<String>,
    /// How much newer (in source time) applied data must be than a hard delete's tombstone
    /// before the tombstone is pruned.
    pub tombstone_retention_hours: u32,
    pub on_error: OnError,
    /// With `RejectRows`: the most rejects a file may have and still load.
    pub max_rejects: Option<u64>,
    /// With `RejectRows`: the largest share of a file's records, in millionths, that may be
    /// rejects.
    pub max_reject_share_ppm: Option<u32>,
    pub invalid_bytes: InvalidBytes,
    pub encoding: Encoding,
    /// A field longer than this (in source bytes) is a bad record.
    pub max_field_bytes: Option<usize>,
    /// What a completed full-load generation does to rows it did not contain.
    pub full_load: FullLoad,
    /// Byte that ends a record outside quotes (DMS `CsvRowDelimiter`); with `\n`, a CR right
    /// before it belongs to the terminator too.
    pub row_delimiter: u8,
    /// MongoDB document mode: one CSV column holds each row's document as (extended) JSON.
    pub document: Option<DocumentRules>,
    /// What a file column (from the header or the column list) that the target lacks does.
    pub new_columns: NewColumns,
    /// With [`NewColumns::Add`]: the SQL type of a column a CSV file's header brings (None:
    /// `text`). Parquet columns take their schema's type.
    pub new_column_type: Option<String>,
    /// How often new files should land (`expect_every`); None: learned from the manifest.
    pub expect_every: Option<std::time::Duration>,
}

/// A file column the target table does not have (`new_columns`, alias `unknown_columns`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NewColumns {
    /// The file fails, naming the column (a changed source schema is not lost silently).
    #[default]
    Fail,
    /// The column's values are left out; the file loads.
    Ignore,
    /// The worker adds the column to the target (named by the file's header or Parquet schema),
    /// in a short transaction of its own, then loads the file.
    Add,
}

impl NewColumns {
    pub fn as_str(self) -> &'static str {
        match self {
            NewColumns::Fail => "fail",
            NewColumns::Ignore => "ignore",
            NewColumns::Add => "add",
        }
    }
}

/// How a JSON document column (DMS MongoDB document mode, `_doc`) becomes target columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentRules {
    /// The CSV column holding the document; the file's other columns load as usual.
    pub column: String,
    pub flatten: Flatten,
    /// Target column -> dotted path in the document (`address.city`), for [`Flatten::Paths`].
    pub paths: BTreeMap<String, String>,
    /// A `jsonb` column that takes every field no column takes; None: such fields are dropped
    /// (and counted).
    pub rescue: Option<String>,
}

/// Which document fields go to which columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flatten {
    /// Each top-level field to the target column of the same name.
    Auto,
    /// Only [`DocumentRules::paths`].
    Paths,
}

/// What a completed full-load generation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FullLoad {
    /// Rows the generation did not contain, and no newer change wrote, are removed.
    #[default]
    Replace,
    /// Upsert only: rows are never removed by a full load.
    Merge,
}

/// What happens to a file with bad records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnError {
    /// The file fails as a whole; nothing of it is applied.
    #[default]
    FailFile,
    /// Bad records go to the rejects table; the others load.
    RejectRows,
}

/// What happens to bytes PostgreSQL refuses in text (NUL, invalid UTF-8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InvalidBytes {
    /// The record is bad (and follows `on_error`).
    #[default]
    Reject,
    /// The offending bytes are removed.
    Strip,
    /// The offending bytes become U+FFFD.
    Replace,
}

/// The character encoding of the source files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Encoding {
    #[default]
    Utf8,
    /// ISO 8859-1: every byte is the code point of the same value.
    Latin1,
    /// Windows code page 1252 (WHATWG mapping).
    Windows1252,
}

/// Default of [`TableRules::tombstone_retention_hours`]: a week.
pub const DEFAULT_TOMBSTONE_RETENTION_HOURS: u32 = 168;

impl Default for TableRules {
    fn default() -> Self {
        TableRules {
            target: None,
            columns: None,
            null: "NULL".to_owned(),
            header: false,
            delimiter: b',',
            timestamp_column: None,
            nosup_value: None,
            soft_delete: None,
            tombstone_retention_hours: DEFAULT_TOMBSTONE_RETENTION_HOURS,
            on_error: OnError::FailFile,
            max_rejects: None,
            max_reject_share_ppm: None,
            invalid_bytes: InvalidBytes::Reject,
            encoding: Encoding::Utf8,
            max_field_bytes: None,
            full_load: FullLoad::Replace,
            row_delimiter: b'\n',
            document: None,
            new_columns: NewColumns::Fail,
            new_column_type: None,
            expect_every: None,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRules {
    #[serde(default)]
    defaults: RawTable,
    #[serde(default)]
    tables: BTreeMap<String, RawTable>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTable {
    target: Option<String>,
    columns: Option<Vec<String>>,
    null: Option<String>,
    header: Option<bool>,
    delimiter: Option<String>,
    timestamp_column: Option<String>,
    nosup_value: Option<String>,
    soft_delete: Option<String>,
    tombstone_retention_hours: Option<u32>,
    on_error: Option<String>,
    max_rejects: Option<u64>,
    max_reject_share: Option<f64>,
    invalid_bytes: Option<String>,
    encoding: Option<String>,
    max_field_bytes: Option<usize>,
    full_load: Option<String>,
    row_delimiter: Option<String>,
    document: Option<RawDocument>,
    unknown_columns: Option<String>,
    expect_every: Option<String>,
    new_columns: Option<String>,
    new_column_type: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDocument {
    column: Option<String>,
    flatten: Option<String>,
    #[serde(default)]
    paths: BTreeMap<String, String>,
    rescue: Option<String>,
}

/// All rules: defaults plus per-table overrides, keyed by `schema.table` as in S3 keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    defaults: TableRules,
    tables: BTreeMap<String, TableRules>,
}

impl Rules {
    /// Reads and validates a rules file.
    pub fn load(path: &str) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Rules {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        Self::parse(path, &text)
    }

    /// Parses rules text; `path` only labels errors.
    pub fn parse(path: &str, text: &str) -> Result<Self, Error> {
        let err = |reason: String| Error::Rules {
            path: path.to_owned(),
            reason,
        };
        let raw: RawRules = toml::from_str(text).map_err(|e| err(e.to_string()))?;
        let at = |name| At { path, name };
        let defaults = apply(&TableRules::default(), &raw.defaults, &at("defaults"))?;
        if raw.defaults.target.is_some()
            || raw.defaults.columns.is_some()
            || raw.defaults.document.is_some()
        {
            return Err(err(
                "[defaults] cannot set target, columns or document".to_owned()
            ));
        }
        let mut tables = BTreeMap::new();
        for (name, table) in &raw.tables {
            if split_table(name).is_none() {
                return Err(err(format!(
                    "table key {name:?} must be schema.table, as in the S3 key"
                )));
            }
            tables.insert(name.clone(), apply(&defaults, table, &at(name))?);
        }
        Ok(Rules { defaults, tables })
    }

    /// Rules for a source table (`schema.table` as in the key).
    pub fn for_table(&self, source_table: &str) -> TableRules {
        self.tables
            .get(source_table)
            .cloned()
            .unwrap_or_else(|| self.defaults.clone())
    }

    /// Source tables the rules file names explicitly.
    pub fn configured_tables(&self) -> impl Iterator<Item = &str> {
        self.tables.keys().map(String::as_str)
    }
}

/// Where a rule is read: the file and the table (or `defaults`), for its error.
struct At<'a> {
    path: &'a str,
    name: &'a str,
}

impl At<'_> {
    fn bad(&self, reason: impl std::fmt::Display) -> Error {
        Error::Rules {
            path: self.path.to_owned(),
            reason: format!("{}: {reason}", self.name),
        }
    }
}

/// `raw` over `base`: each setting the table gives replaces the inherited one, checked.
fn apply(base: &TableRules, raw: &RawTable, at: &At<'_>) -> Result<TableRules, Error> {
    let mut rules = base.clone();
    if let Some(target) = &raw.target {
        let (s, t) = split_table(target)
            .ok_or_else(|| at.bad(format_args!("target {target:?} must be schema.table")))?;
        rules.target = Some((s.to_owned(), t.to_owned()));
    }
    if let Some(columns) = &raw.columns {
        if columns.is_empty() {
            return Err(at.bad("columns must not be empty"));
        }
        rules.columns = Some(columns.clone());
    }
    apply_csv(&mut rules, raw, at)?;
    apply_versions(&mut rules, raw, at)?;
    apply_bad_input(&mut rules, raw, at)?;
    if let Some(v) = &raw.full_load {
        rules.full_load = match v.as_str() {
            "replace" => FullLoad::Replace,
            "merge" => FullLoad::Merge,
            other => {
                return Err(at.bad(format_args!(
                    "full_load {other:?} must be \"replace\" or \"merge\""
                )))
            }
        };
    }
    if let Some(d) = &raw.document {
        rules.document = Some(document_rules(d, at)?);
    }
    apply_new_columns(&mut rules, raw, at)?;
    if let Some(v) = &raw.expect_every {
        rules.expect_every = Some(parse_expect_every(v).map_err(|why| at.bad(why))?);
    }
    Ok(rules)
}

/// `expect_every`: a whole number and one unit, `90s`, `15m`, `1h`, `2d`, at least a second
/// and at most 366 days. Nothing else (no spaces, fractions, signs or bare numbers): a value
/// that is not exactly that is an error, never a guess.
pub fn parse_expect_every(v: &str) -> Result<std::time::Duration, String> {
    let bad = || {
        format!("expect_every {v:?} must be a whole number and a unit s, m, h or d, like \"1h\"")
    };
    let split = v.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (num, unit) = v.split_at(split);
    if num.is_empty() || num.len() > 9 {
        return Err(bad());
    }
    let n: u64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(bad()),
    };
    if secs == 0 || secs > 366 * 86_400 {
        return Err(format!(
            "expect_every {v:?} must be at least 1s and at most 366d"
        ));
    }
    Ok(std::time::Duration::from_secs(secs))
}

/// Schema drift: `new_columns` (or its alias `unknown_columns`, which must agree where both
/// are set) and `new_column_type`.
fn apply_new_columns(rules: &mut TableRules, raw: &RawTable, at: &At<'_>) -> Result<(), Error> {
    let new = match &raw.new_columns {
        None => None,
        Some(v) => Some(match v.as_str() {
            "fail" => NewColumns::Fail,
            "ignore" => NewColumns::Ignore,
            "add" => NewColumns::Add,
            other => {
                return Err(at.bad(format_args!(
                    "new_columns {other:?} must be \"fail\", \"ignore\" or \"add\""
                )))
            }
        }),
    };
    let alias = match &raw.unknown_columns {
        None => None,
        Some(v) => Some(match v.as_str() {
            "fail" => NewColumns::Fail,
            "ignore" => NewColumns::Ignore,
            other => {
                return Err(at.bad(format_args!(
                    "unknown_columns {other:?} must be \"fail\" or \"ignore\" (or set \
                     new_columns, which it is an alias of)"
                )))
            }
        }),
    };
    match (new, alias) {
        (Some(n), Some(a)) if n != a => {
            return Err(at.bad(format_args!(
                "new_columns = {:?} and its alias unknown_columns = {:?} disagree: set one",
                n.as_str(),
                a.as_str()
            )))
        }
        (Some(v), _) | (None, Some(v)) => rules.new_columns = v,
        (None, None) => {}
    }
    if let Some(t) = &raw.new_column_type {
        // Spliced into `ADD COLUMN`: a type name and its modifiers only, nothing that could end
        // the statement or start a comment.
        let ok = !t.trim().is_empty()
            && t.len() <= 100
            && t.chars()
                .all(|c| c.is_ascii_alphanumeric() || " _(),.[]".contains(c));
        if !ok {
            return Err(at.bad(format_args!(
                "new_column_type {t:?} must be a type name such as text or varchar(200) (letters, \
                 digits, spaces, _ ( ) , . [ ], at most 100 characters)"
            )));
        }
        rules.new_column_type = Some(t.trim().to_owned());
    }
    // Set on the table itself (inherited from [defaults], document tables simply add nothing).
    if new == Some(NewColumns::Add) && rules.document.is_some() {
        return Err(at.bad(
            "new_columns = \"add\" does not apply to document mode: a document's new fields go \
             to its rescue column",
        ));
    }
    Ok(())
}

/// How the file is written: NULL string, header, delimiters, encoding.
fn apply_csv(rules: &mut TableRules, raw: &RawTable, at: &At<'_>) -> Result<(), Error> {
    if let Some(null) = &raw.null {
        rules.null = null.clone();
    }
    if let Some(header) = raw.header {
        rules.header = header;
    }
    if let Some(d) = &raw.delimiter {
        let bytes = d.as_bytes();
        if bytes.len() != 1 || bytes[0] == b'"' || bytes[0] == b'\n' || bytes[0] == b'\r' {
            return Err(
                at.bad("delimiter must be one ASCII character other than quote and newline")
            );
        }
        rules.delimiter = bytes[0];
    }
    if let Some(d) = &raw.row_delimiter {
        let bytes = d.as_bytes();
        if bytes.len() != 1 || bytes[0] == b'"' || bytes[0] == b'\r' || bytes[0] == rules.delimiter
        {
            return Err(at.bad(
                "row_delimiter must be one ASCII character other than quote, CR and the \
                 field delimiter (\"\\n\" is the default)",
            ));
        }
        rules.row_delimiter = bytes[0];
    }
    if rules.row_delimiter == rules.delimiter {
        return Err(at.bad("delimiter and row_delimiter must differ"));
    }
    if let Some(v) = &raw.encoding {
        rules.encoding = match v.to_ascii_lowercase().as_str() {
            "utf-8" | "utf8" => Encoding::Utf8,
            "latin1" | "latin-1" | "iso-8859-1" => Encoding::Latin1,
            "windows-1252" | "cp1252" => Encoding::Windows1252,
            other => {
                return Err(at.bad(format_args!(
                    "encoding {other:?} must be \"utf-8\", \"latin1\" or \"windows-1252\""
                )))
            }
        };
    }
    Ok(())
}

/// Row order and deletes: the timestamp column, partial images, soft deletes, tombstones.
fn apply_versions(rules: &mut TableRules, raw: &RawTable, at: &At<'_>) -> Result<(), Error> {
    if let Some(c) = &raw.timestamp_column {
        if c.is_empty() {
            return Err(at.bad("timestamp_column must not be empty"));
        }
        rules.timestamp_column = Some(c.clone());
    }
    if let Some(v) = &raw.nosup_value {
        if v.is_empty() {
            return Err(at.bad("nosup_value must not be empty"));
        }
        rules.nosup_value = Some(v.clone());
    }
    if let Some(c) = &raw.soft_delete {
        if c.is_empty() || c.starts_with("_sluice_") {
            return Err(at.bad("soft_delete must name a column, not empty or _sluice_*"));
        }
        rules.soft_delete = Some(c.clone());
    }
    if let Some(h) = raw.tombstone_retention_hours {
        if h == 0 {
            return Err(at.bad("tombstone_retention_hours must be at least 1"));
        }
        rules.tombstone_retention_hours = h;
    }
    Ok(())
}

/// What a bad record or value does: the policy, its limits, bytes, field sizes.
fn apply_bad_input(rules: &mut TableRules, raw: &RawTable, at: &At<'_>) -> Result<(), Error> {
    if let Some(v) = &raw.on_error {
        rules.on_error = match v.as_str() {
            "fail_file" => OnError::FailFile,
            "reject_rows" => OnError::RejectRows,
            other => {
                return Err(at.bad(format_args!(
                    "on_error {other:?} must be \"fail_file\" or \"reject_rows\""
                )))
            }
        };
    }
    if let Some(n) = raw.max_rejects {
        rules.max_rejects = Some(n);
    }
    if let Some(share) = raw.max_reject_share {
        if !(0.0..=1.0).contains(&share) {
            return Err(at.bad("max_reject_share must be between 0 and 1"));
        }
        rules.max_reject_share_ppm = Some((share * 1e6).round() as u32);
    }
    if rules.on_error == OnError::FailFile
        && (raw.max_rejects.is_some() || raw.max_reject_share.is_some())
    {
        return Err(at.bad("max_rejects and max_reject_share need on_error = \"reject_rows\""));
    }
    if let Some(v) = &raw.invalid_bytes {
        rules.invalid_bytes = match v.as_str() {
            "reject" => InvalidBytes::Reject,
            "strip" => InvalidBytes::Strip,
            "replace" => InvalidBytes::Replace,
            other => {
                return Err(at.bad(format_args!(
                    "invalid_bytes {other:?} must be \"reject\", \"strip\" or \"replace\""
                )))
            }
        };
    }
    if let Some(n) = raw.max_field_bytes {
        if n == 0 {
            return Err(at.bad("max_field_bytes must be at least 1"));
        }
        rules.max_field_bytes = Some(n);
    }
    Ok(())
}

fn document_rules(raw: &RawDocument, at: &At<'_>) -> Result<DocumentRules, Error> {
    let bad = |reason: String| at.bad(format_args!("document: {reason}"));
    let column = raw.column.clone().unwrap_or_else(|| "_doc".to_owned());
    if column.is_empty() {
        return Err(bad("column must not be empty".to_owned()));
    }
    let flatten = match raw.flatten.as_deref() {
        Some("auto") => Flatten::Auto,
        Some("paths") => Flatten::Paths,
        None if raw.paths.is_empty() => Flatten::Auto,
        None => Flatten::Paths,
        Some(other) => {
            return Err(bad(format!(
                "flatten {other:?} must be \"auto\" or \"paths\""
            )))
        }
    };
    if flatten == Flatten::Paths && raw.paths.is_empty() {
        return Err(bad(
            "flatten = \"paths\" needs paths = { column = \"a.b\" }".to_owned(),
        ));
    }
    if flatten == Flatten::Auto && !raw.paths.is_empty() {
        return Err(bad("paths are for flatten = \"paths\"".to_owned()));
    }
    for (col, path) in &raw.paths {
        if col.is_empty() || col.starts_with("_sluice_") {
            return Err(bad(format!(
                "column {col:?} must be a column name, not _sluice_*"
            )));
        }
        if path.is_empty() || path.split('.').any(str::is_empty) {
            return Err(bad(format!(
                "path {path:?} of column {col:?} must be dotted names"
            )));
        }
    }
    if let Some(r) = &raw.rescue {
        if r.is_empty() || raw.paths.contains_key(r) {
            return Err(bad(format!(
                "rescue column {r:?} must be a column no path names"
            )));
        }
    }
    Ok(DocumentRules {
        column,
        flatten,
        paths: raw.paths.clone(),
        rescue: raw.rescue.clone(),
    })
}

/// Splits `schema.table` at the first dot; both parts non-empty.
fn split_table(s: &str) -> Option<(&str, &str)> {
    let (a, b) = s.split_once('.')?;
    (!a.is_empty() && !b.is_empty()).then_some((a, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expect_every_is_strict_and_inherited() {
        use std::time::Duration;
        for (v, secs) in [("90s", 90), ("15m", 900), ("1h", 3600), ("2d", 172_800)] {
            assert_eq!(parse_expect_every(v), Ok(Duration::from_secs(secs)), "{v}");
        }
        for v in [
            "",
            "1",
            "h",
            "1H",
            "1 h",
            " 1h",
            "1.5h",
            "-1h",
            "+1h",
            "0s",
            "1h30m",
            "367d",
            "9999999999s",
            "1hour",
        ] {
            let e = parse_expect_every(v).unwrap_err();
            assert!(e.contains("expect_every"), "{v}: {e}");
        }
        let rules = Rules::parse(
            "x.toml",
            "[defaults]\nexpect_every = \"2h\"\n[tables.\"a.b\"]\nexpect_every = \"10m\"\n[tables.\"a.c\"]\nnull = \"\"",
        )
        .unwrap();
        assert_eq!(
            rules.for_table("a.b").expect_every,
            Some(Duration::from_secs(600))
        );
        assert_eq!(
            rules.for_table("a.c").expect_every,
            Some(Duration::from_secs(7200))
        );
        assert_eq!(
            rules.for_table("z.z").expect_every,
            Some(Duration::from_secs(7200))
        );
        assert_eq!(Rules::default().for_table("a.b").expect_every, None);
        let e = Rules::parse("x.toml", "[tables.\"a.b\"]\nexpect_every = \"1x\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("a.b: expect_every \"1x\""), "{e}");
    }

    #[test]
    fn no_rules_means_dms_defaults() {
        let r = Rules::default().for_table("public.orders");
        assert_eq!(r, TableRules::default());
        assert_eq!(r.null, "NULL");
        assert!(!r.header);
    }

    #[test]
    fn table_overrides_defaults_field_by_field() {
        let rules = Rules::parse(
            "t.toml",
            r#"
            [defaults]
            null = ""
            [tables."src.orders"]
            target = "wh.orders"
            columns = ["id", "name"]
            header = true
            delimiter = "|"
            timestamp_column = "dms_ts"
            nosup_value = "~nosup~"
            soft_delete = "gone"
            tombstone_retention_hours = 24
            on_error = "reject_rows"
            max_rejects = 10
            max_reject_share = 0.05
            invalid_bytes = "replace"
            encoding = "Windows-1252"
            max_field_bytes = 4096
            full_load = "merge"
            row_delimiter = "~"
            unknown_columns = "ignore"
            [tables."mongo.people".document]
            rescue = "extra"
            [tables."mongo.pets".document]
            column = "doc"
            paths = { name = "name", city = "owner.address.city" }
            "#,
        )
        .unwrap();
        let o = rules.for_table("src.orders");
        assert_eq!(o.target, Some(("wh".into(), "orders".into())));
        assert_eq!(
            o.columns.as_deref(),
            Some(&["id".to_string(), "name".to_string()][..])
        );
        assert_eq!(o.null, "");
        assert!(o.header);
        assert_eq!(o.delimiter, b'|');
        assert_eq!(o.timestamp_column.as_deref(), Some("dms_ts"));
        assert_eq!(o.nosup_value.as_deref(), Some("~nosup~"));
        assert_eq!(o.soft_delete.as_deref(), Some("gone"));
        assert_eq!(o.tombstone_retention_hours, 24);
        assert_eq!(o.on_error, OnError::RejectRows);
        assert_eq!(
            (o.max_rejects, o.max_reject_share_ppm),
            (Some(10), Some(50_000))
        );
        assert_eq!(o.invalid_bytes, InvalidBytes::Replace);
        assert_eq!(o.encoding, Encoding::Windows1252);
        assert_eq!(o.max_field_bytes, Some(4096));
        assert_eq!(o.full_load, FullLoad::Merge);
        assert_eq!(o.row_delimiter, b'~');
        assert_eq!(o.new_columns, NewColumns::Ignore);
        assert_eq!(o.document, None);
        let people = rules.for_table("mongo.people").document.unwrap();
        assert_eq!(
            (
                people.column.as_str(),
                people.flatten,
                people.rescue.as_deref()
            ),
            ("_doc", Flatten::Auto, Some("extra"))
        );
        let pets = rules.for_table("mongo.pets").document.unwrap();
        assert_eq!(
            (pets.column.as_str(), pets.flatten),
            ("doc", Flatten::Paths)
        );
        assert_eq!(pets.paths["city"], "owner.address.city");
        assert_eq!(rules.for_table("src.other").row_delimiter, b'\n');
        assert_eq!(rules.for_table("src.other").full_load, FullLoad::Replace);
        let other = rules.for_table("src.other");
        assert_eq!(other.null, "");
        assert!(!other.header);
        assert_eq!(
            rules.configured_tables().collect::<Vec<_>>(),
            vec!["mongo.people", "mongo.pets", "src.orders"]
        );
    }

    #[test]
    fn new_columns_and_its_alias() {
        let rules = Rules::parse(
            "t.toml",
            r#"
            [defaults]
            new_columns = "add"
            new_column_type = " varchar(200) "
            [tables."a.old"]
            unknown_columns = "ignore"
            [tables."a.both"]
            unknown_columns = "ignore"
            new_columns = "ignore"
            [tables."a.strict"]
            new_columns = "fail"
            [tables."a.doc".document]
            rescue = "extra"
            "#,
        )
        .unwrap();
        let t = rules.for_table("a.other");
        assert_eq!(t.new_columns, NewColumns::Add);
        assert_eq!(t.new_column_type.as_deref(), Some("varchar(200)"));
        assert_eq!(rules.for_table("a.old").new_columns, NewColumns::Ignore);
        assert_eq!(rules.for_table("a.both").new_columns, NewColumns::Ignore);
        assert_eq!(rules.for_table("a.strict").new_columns, NewColumns::Fail);
        // Inherited "add" does not make a document table an error (it adds nothing).
        assert!(rules.for_table("a.doc").document.is_some());
        let e = Rules::parse(
            "t.toml",
            "[tables.\"a.b\"]\nnew_columns = \"add\"\nunknown_columns = \"fail\"",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("disagree"), "{e}");
        assert_eq!(TableRules::default().new_columns, NewColumns::Fail);
    }

    #[test]
    fn mistakes_are_errors_naming_the_file() {
        for text in [
            "[tables.orders]\nnull = \"\"",
            "[tables.\"a.b\"]\ntarget = \"nodot\"",
            "[tables.\"a.b\"]\nnul = \"\"",
            "[defaults]\ntarget = \"a.b\"",
            "[tables.\"a.b\"]\ndelimiter = \"||\"",
            "[tables.\"a.b\"]\ncolumns = []",
            "[tables.\"a.b\"]\nsoft_delete = \"_sluice_version\"",
            "[tables.\"a.b\"]\ntombstone_retention_hours = 0",
            "[tables.\"a.b\"]\non_error = \"skip\"",
            "[tables.\"a.b\"]\nmax_rejects = 5",
            "[tables.\"a.b\"]\non_error = \"reject_rows\"\nmax_reject_share = 2.0",
            "[tables.\"a.b\"]\ninvalid_bytes = \"ignore\"",
            "[tables.\"a.b\"]\nencoding = \"ebcdic\"",
            "[tables.\"a.b\"]\nrow_delimiter = \",\"",
            "[tables.\"a.b\"]\nunknown_columns = \"drop\"",
            "[tables.\"a.b\"]\nunknown_columns = \"add\"",
            "[tables.\"a.b\"]\nnew_columns = \"evolve\"",
            "[tables.\"a.b\"]\nnew_columns = \"add\"\nunknown_columns = \"ignore\"",
            "[defaults]\nnew_columns = \"fail\"\nunknown_columns = \"ignore\"",
            "[tables.\"a.b\"]\nnew_column_type = \"text; DROP TABLE x\"",
            "[tables.\"a.b\"]\nnew_column_type = \"text -- c\"",
            "[tables.\"a.b\"]\nnew_column_type = \"\"",
            "[tables.\"a.b\"]\nnew_columns = \"add\"\n[tables.\"a.b\".document]\nrescue = \"x\"",
            "[tables.\"a.b\"]\nrow_delimiter = \"\\r\"",
            "[tables.\"a.b\"]\ndelimiter = \";\"\nrow_delimiter = \";\"",
            "[defaults.document]\nrescue = \"x\"",
            "[tables.\"a.b\".document]\nflatten = \"deep\"",
            "[tables.\"a.b\".document]\nflatten = \"paths\"",
            "[tables.\"a.b\".document]\nflatten = \"auto\"\npaths = { a = \"a\" }",
            "[tables.\"a.b\".document]\npaths = { a = \"x..y\" }",
            "[tables.\"a.b\".document]\npaths = { a = \"x\" }\nrescue = \"a\"",
            "[tables.\"a.b\".document]\ncolum = \"_doc\"",
            "[tables.\"a.b\"]\nexpect_every = \"1 h\"",
            "[defaults]\nexpect_every = \"soon\"",
            "[tables.\"a.b\"]\nexpect_every = 3600",
        ] {
            let e = Rules::parse("x.toml", text).unwrap_err().to_string();
            assert!(e.starts_with("rules file x.toml"), "{e}");
        }
    }
}
