//! Turns a DMS CSV stream into PostgreSQL `COPY` text for the staging table. Runs on a blocking
//! thread (parsing is CPU work); sends ~1 MiB chunks over a bounded channel, so memory stays
//! bounded whatever the file size: at most [`CHANNEL_CHUNKS`] chunks in flight plus one record.
//!
//! Per file it decides the layout once, from the rules and the first record:
//! - which target columns the file holds, in file order (rules' column list, header names, or
//!   every column in ordinal order);
//! - whether records start with DMS's `Op` field (`I`/`U`/`D`): by header name, or by count
//!   (one more field than columns). Full-load files without it are all inserts.
//!
//! Invariants: every record has exactly the layout's field count; each field is valid UTF-8
//! without NUL (PostgreSQL refuses both in text); an unquoted field equal to the NULL marker is
//! `\N`, everything else (a quoted `"NULL"`, an empty quoted field) is data, escaped byte-exact.

use crate::csv::{CsvError, Field, ReaderOptions, Record, RecordReader};
use crate::error::LoadError;
use crate::sql::TargetTable;
use bytes::Bytes;
use sluice_common::rules::TableRules;
use std::io::{BufRead, Write};
use tokio::sync::mpsc;

/// Chunks buffered between the parser and the `COPY` sink.
pub const CHANNEL_CHUNKS: usize = 8;
const CHUNK_BYTES: usize = 1 << 20;
/// Entries kept to map record numbers to physical lines (only records after a multi-line
/// record need one); beyond this, lines of later records are not reported.
const LINE_MAP_LIMIT: usize = 1 << 20;

/// What the parser sends: the layout once, then data chunks.
#[derive(Debug)]
pub enum Chunk {
    Layout(Layout),
    Data(Bytes),
}

/// The file's shape, known after its first record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Target column indexes staged, in file order.
    pub columns: Vec<usize>,
    /// Whether each record starts with an `Op` field.
    pub has_op: bool,
    /// Index, among the fields after `Op`, of the timestamp field that versions each row.
    pub version_field: Option<usize>,
    /// Whether that field is only a version (the target has no column of its name).
    pub version_only: bool,
}

impl Layout {
    fn plain(columns: Vec<usize>, has_op: bool) -> Layout {
        Layout {
            columns,
            has_op,
            version_field: None,
            version_only: false,
        }
    }

    /// Fields every record must have.
    pub fn field_count(&self) -> usize {
        self.columns.len() + usize::from(self.has_op) + usize::from(self.version_only)
    }
}

/// What the parser read.
#[derive(Debug, Default, Clone)]
pub struct Parsed {
    pub records: u64,
    pub bytes: u64,
    pub lines: LineMap,
    /// `U` records with at least one column left unchanged (DMS `CsvNoSupValue`).
    pub partial: u64,
}

/// Maps a data record number to its physical line, cheaply: one entry per change of the
/// difference between the two (a header, a blank line, a record spanning lines).
#[derive(Debug, Default, Clone)]
pub struct LineMap {
    entries: Vec<(u64, u64)>,
    complete: bool,
}

impl LineMap {
    fn new() -> Self {
        LineMap {
            entries: Vec::new(),
            complete: true,
        }
    }

    fn note(&mut self, record: u64, line: u64) {
        let predicted = match self.entries.last() {
            Some(&(r, l)) => l + (record - r),
            None => record,
        };
        if predicted != line {
            if self.entries.len() >= LINE_MAP_LIMIT {
                self.complete = false;
                return;
            }
            self.entries.push((record, line));
        }
    }

    /// The physical line where data record `record` starts, when known.
    pub fn line_of(&self, record: u64) -> Option<u64> {
        let idx = self.entries.partition_point(|&(r, _)| r <= record);
        if !self.complete && idx == self.entries.len() && !self.entries.is_empty() {
            return None;
        }
        Some(match idx {
            0 => record,
            i => {
                let (r, l) = self.entries[i - 1];
                l + (record - r)
            }
        })
    }
}

/// Settings of one file's parse.
pub struct EncodeSpec<'a> {
    pub key: &'a str,
    pub target: &'a TargetTable,
    pub rules: &'a TableRules,
    pub max_record_bytes: usize,
}

/// Parses `input` and sends the layout, then `COPY` text chunks, to `tx`. Stops early (Ok) if
/// the receiver is gone: the other side has failed and reports why.
pub fn encode<R: BufRead>(
    input: R,
    spec: &EncodeSpec<'_>,
    tx: &mpsc::Sender<Chunk>,
) -> Result<Parsed, LoadError> {
    let options = ReaderOptions {
        delimiter: spec.rules.delimiter,
        max_record_bytes: spec.max_record_bytes,
        ..ReaderOptions::default()
    };
    let mut reader = RecordReader::new(input, options);
    let mut parsed = Parsed {
        lines: LineMap::new(),
        ..Parsed::default()
    };
    let csv_err = |e: CsvError| csv_error(spec.key, e);

    let mut header_layout = None;
    if spec.rules.header {
        if let Some(header) = reader.next_record().map_err(csv_err)? {
            header_layout = Some(layout_from_header(spec, &header)?);
        }
    }
    let mut out = Vec::with_capacity(CHUNK_BYTES + 4096);
    let mut layout: Option<Layout> = None;
    let mut data_record: u64 = 0;
    let mut expected_fields = 0usize;
    let mut keep: Vec<usize> = Vec::new();
    while let Some(record) = reader.next_record().map_err(csv_err)? {
        data_record += 1;
        let line = record.line();
        parsed.lines.note(data_record, line);
        if layout.is_none() {
            let l = match &header_layout {
                Some(l) => l.clone(),
                None => layout_by_count(spec, &record, data_record, line)?,
            };
            expected_fields = l.field_count();
            if tx.blocking_send(Chunk::Layout(l.clone())).is_err() {
                return Ok(parsed);
            }
            layout = Some(l);
        }
        let l = layout.as_ref().expect("layout is set above");
        if record.len() != expected_fields {
            return Err(LoadError::ColumnCount {
                key: spec.key.to_owned(),
                table: spec.target.label(),
                record: data_record,
                line,
                expected: expected_fields,
                found: record.len(),
            });
        }
        if encode_record(spec, l, &record, data_record, &mut keep, &mut out)? {
            parsed.partial += 1;
        }
        if out.len() >= CHUNK_BYTES {
            let chunk = Bytes::from(std::mem::replace(
                &mut out,
                Vec::with_capacity(CHUNK_BYTES + 4096),
            ));
            if tx.blocking_send(Chunk::Data(chunk)).is_err() {
                return Ok(parsed);
            }
        }
    }
    if layout.is_none() {
        // No data records: the layout still has to be announced so the stage can be made.
        let l = header_layout.unwrap_or_else(|| default_layout(spec));
        if tx.blocking_send(Chunk::Layout(l)).is_err() {
            return Ok(parsed);
        }
    }
    if !out.is_empty() && tx.blocking_send(Chunk::Data(Bytes::from(out))).is_err() {
        return Ok(parsed);
    }
    parsed.records = data_record;
    parsed.bytes = reader.bytes_read();
    Ok(parsed)
}

fn csv_error(key: &str, e: CsvError) -> LoadError {
    let (record, line, class) = match &e {
        CsvError::Io { .. } => (None, None, "read"),
        CsvError::UnterminatedQuote { record, line } => {
            (Some(*record), Some(*line), "unterminated_quote")
        }
        CsvError::AfterQuote { record, line, .. } => (Some(*record), Some(*line), "csv_syntax"),
        CsvError::RecordTooLong { record, line, .. } => {
            (Some(*record), Some(*line), "record_too_long")
        }
    };
    LoadError::Csv {
        key: key.to_owned(),
        reason: e.to_string(),
        record,
        line,
        class,
    }
}

/// Every data column in ordinal order (used for files with no records and no header).
fn default_layout(spec: &EncodeSpec<'_>) -> Layout {
    match &spec.rules.columns {
        Some(list) => named_layout(spec, list, false)
            .unwrap_or_else(|_| Layout::plain((0..spec.target.columns.len()).collect(), false)),
        None => Layout::plain((0..spec.target.columns.len()).collect(), false),
    }
}

fn find_column(target: &TargetTable, name: &str) -> Option<usize> {
    target
        .columns
        .iter()
        .position(|c| c.name == name)
        .or_else(|| {
            target
                .columns
                .iter()
                .position(|c| c.name.eq_ignore_ascii_case(name))
        })
}

/// The layout of a file whose fields (after `Op`) are `names`, in order: each is a target
/// column, except the timestamp column, which may be a version only.
fn named_layout(
    spec: &EncodeSpec<'_>,
    names: &[String],
    has_op: bool,
) -> Result<Layout, LoadError> {
    let ts = spec.rules.timestamp_column.as_deref();
    let mut columns = Vec::with_capacity(names.len());
    let mut version_field = None;
    let mut version_only = false;
    for (j, name) in names.iter().enumerate() {
        let is_ts = ts.is_some_and(|t| t == name || t.eq_ignore_ascii_case(name));
        if is_ts && version_field.is_none() {
            version_field = Some(j);
        }
        match find_column(spec.target, name) {
            Some(idx) => columns.push(idx),
            None if is_ts => version_only = true,
            None => {
                return Err(LoadError::UnknownColumn {
                    key: spec.key.to_owned(),
                    table: spec.target.label(),
                    column: name.clone(),
                })
            }
        }
    }
    if let (Some(ts), None) = (ts, version_field) {
        return Err(LoadError::Rules {
            key: spec.key.to_owned(),
            message: format!(
                "timestamp column {ts:?} is not among the file's columns ({})",
                names.join(", ")
            ),
        });
    }
    check_key_columns(spec, &columns)?;
    Ok(Layout {
        columns,
        has_op,
        version_field,
        version_only,
    })
}

fn check_key_columns(spec: &EncodeSpec<'_>, columns: &[usize]) -> Result<(), LoadError> {
    for &k in &spec.target.key {
        if !columns.contains(&k) {
            return Err(LoadError::MissingKeyColumn {
                key: spec.key.to_owned(),
                table: spec.target.label(),
                column: spec.target.columns[k].name.clone(),
            });
        }
    }
    Ok(())
}

fn layout_from_header(spec: &EncodeSpec<'_>, header: &Record<'_>) -> Result<Layout, LoadError> {
    let mut names: Vec<String> = Vec::with_capacity(header.len());
    for (i, f) in header.iter().enumerate() {
        let name = std::str::from_utf8(f.value).map_err(|_| LoadError::Csv {
            key: spec.key.to_owned(),
            reason: format!("header field {} is not valid UTF-8", i + 1),
            record: None,
            line: Some(header.line()),
            class: "header",
        })?;
        names.push(name.to_owned());
    }
    let has_op = names
        .first()
        .is_some_and(|n| n.eq_ignore_ascii_case("op") && find_column(spec.target, n).is_none());
    let data_names = if has_op { &names[1..] } else { &names[..] };
    match &spec.rules.columns {
        Some(list) => named_layout(spec, list, has_op),
        None => named_layout(spec, data_names, has_op),
    }
}

/// Without a header: the rules' column list, or the target's data columns in ordinal order
/// (DMS's timestamp column first, where one is configured); `Op` by count.
fn layout_by_count(
    spec: &EncodeSpec<'_>,
    first: &Record<'_>,
    record: u64,
    line: u64,
) -> Result<Layout, LoadError> {
    let layout = match &spec.rules.columns {
        Some(list) => named_layout(spec, list, false)?,
        None => {
            let mut columns: Vec<usize> = (0..spec.target.columns.len()).collect();
            check_key_columns(spec, &columns)?;
            match spec.rules.timestamp_column.as_deref() {
                None => Layout::plain(columns, false),
                Some(ts) => {
                    let own = find_column(spec.target, ts);
                    if let Some(idx) = own {
                        columns.retain(|&c| c != idx);
                        columns.insert(0, idx);
                    }
                    Layout {
                        columns,
                        has_op: false,
                        version_field: Some(0),
                        version_only: own.is_none(),
                    }
                }
            }
        }
    };
    let n = layout.field_count();
    let found = first.len();
    if found == n {
        return Ok(layout);
    }
    if found == n + 1 {
        let op = first.get(0).map(|f| f.value).unwrap_or_default();
        if matches!(op, b"I" | b"U" | b"D") {
            return Ok(Layout {
                has_op: true,
                ..layout
            });
        }
        return Err(LoadError::BadOperation {
            key: spec.key.to_owned(),
            record,
            line,
            value: String::from_utf8_lossy(op).into_owned(),
        });
    }
    Err(LoadError::ColumnCount {
        key: spec.key.to_owned(),
        table: spec.target.label(),
        record,
        line,
        expected: n,
        found,
    })
}

/// Whether `v` looks like DMS's `yyyy-MM-dd HH:mm:ss[.ffffff]` (PostgreSQL checks the ranges).
fn is_dms_timestamp(v: &[u8]) -> bool {
    const SHAPE: &[u8] = b"dddd-dd-dd dd:dd:dd";
    if v.len() < SHAPE.len() {
        return false;
    }
    let shape_ok = SHAPE.iter().zip(v).all(|(&s, &b)| match s {
        b'd' => b.is_ascii_digit(),
        b' ' => b == b' ' || b == b'T',
        _ => b == s,
    });
    let rest = &v[SHAPE.len()..];
    shape_ok
        && (rest.is_empty()
            || (rest[0] == b'.'
                && (2..=10).contains(&rest.len())
                && rest[1..].iter().all(u8::is_ascii_digit)))
}

/// Writes one record as a `COPY` line; returns whether it is a partial `U` image.
fn encode_record(
    spec: &EncodeSpec<'_>,
    layout: &Layout,
    record: &Record<'_>,
    number: u64,
    keep: &mut Vec<usize>,
    out: &mut Vec<u8>,
) -> Result<bool, LoadError> {
    let first = usize::from(layout.has_op);
    let op = if layout.has_op {
        let f = record.get(0).expect("field count was checked");
        match f.value {
            b"I" | b"U" | b"D" => f.value[0],
            other => {
                return Err(LoadError::BadOperation {
                    key: spec.key.to_owned(),
                    record: number,
                    line: record.line(),
                    value: String::from_utf8_lossy(other).into_owned(),
                })
            }
        }
    } else {
        b'I'
    };
    // Writing into a Vec cannot fail.
    let _ = write!(out, "{number}");
    out.push(b'\t');
    out.push(op);
    out.push(b'\t');
    match layout.version_field {
        Some(j) => {
            let f = record.get(first + j).expect("field count was checked");
            if !is_dms_timestamp(f.value) {
                let column = spec.rules.timestamp_column.clone().unwrap_or_default();
                return Err(LoadError::BadVersion {
                    key: spec.key.to_owned(),
                    record: number,
                    line: record.line(),
                    column,
                    value: String::from_utf8_lossy(&f.value[..f.value.len().min(64)]).into_owned(),
                });
            }
            out.extend_from_slice(f.value);
        }
        None => out.extend_from_slice(b"\\N"),
    }
    out.push(b'\t');
    // Staged fields: every field after Op except a version-only timestamp field.
    let staged = (first..record.len())
        .filter(|&i| !(layout.version_only && Some(i - first) == layout.version_field));
    keep.clear();
    if let (b'U', Some(nosup)) = (op, spec.rules.nosup_value.as_deref()) {
        for (pos, i) in staged.clone().enumerate() {
            let col = layout.columns[pos];
            if !spec.target.key.contains(&col)
                && record.get(i).is_some_and(|f| f.value == nosup.as_bytes())
            {
                keep.push(pos + 1);
            }
        }
    }
    if keep.is_empty() {
        out.extend_from_slice(b"\\N");
    } else {
        out.push(b'{');
        for (n, pos) in keep.iter().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            let _ = write!(out, "{pos}");
        }
        out.push(b'}');
    }
    let null = spec.rules.null.as_bytes();
    let mut kept = keep.iter().peekable();
    for (pos, i) in staged.enumerate() {
        let field = record.get(i).expect("field count was checked");
        let col = layout.columns[pos];
        out.push(b'\t');
        if kept.peek() == Some(&&(pos + 1)) {
            kept.next();
            out.extend_from_slice(b"\\N");
            continue;
        }
        encode_field(spec, field, null, col, record, number, out)?;
    }
    out.push(b'\n');
    Ok(!keep.is_empty())
}

fn encode_field(
    spec: &EncodeSpec<'_>,
    field: Field<'_>,
    null: &[u8],
    col: usize,
    record: &Record<'_>,
    number: u64,
    out: &mut Vec<u8>,
) -> Result<(), LoadError> {
    let v = field.value;
    if !field.quoted && v == null {
        out.extend_from_slice(b"\\N");
        return Ok(());
    }
    let bad = |reason: String| LoadError::BadBytes {
        key: spec.key.to_owned(),
        record: number,
        line: record.line(),
        column: spec.target.columns[col].name.clone(),
        reason,
    };
    if let Some(pos) = memchr::memchr(0, v) {
        return Err(bad(format!("NUL byte at offset {pos} of the field")));
    }
    if let Err(e) = std::str::from_utf8(v) {
        return Err(bad(format!(
            "invalid UTF-8 at offset {} of the field",
            e.valid_up_to()
        )));
    }
    escape_copy_text(v, out);
    Ok(())
}

/// Escapes a value for `COPY ... FROM STDIN` text format: backslash, tab, LF and CR.
pub fn escape_copy_text(v: &[u8], out: &mut Vec<u8>) {
    let mut rest = v;
    loop {
        let special = rest
            .iter()
            .position(|&b| matches!(b, b'\\' | b'\t' | b'\n' | b'\r'));
        match special {
            None => {
                out.extend_from_slice(rest);
                return;
            }
            Some(i) => {
                out.extend_from_slice(&rest[..i]);
                out.extend_from_slice(match rest[i] {
                    b'\\' => b"\\\\",
                    b'\t' => b"\\t",
                    b'\n' => b"\\n",
                    _ => b"\\r",
                });
                rest = &rest[i + 1..];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::Column;

    fn table(cols: &[&str]) -> TargetTable {
        TargetTable {
            schema: "s".into(),
            name: "t".into(),
            columns: cols
                .iter()
                .map(|c| Column {
                    name: (*c).into(),
                    sql_type: "text".into(),
                })
                .collect(),
            key: vec![0],
            oid: 1,
            present: vec![],
        }
    }

    fn run(
        input: &str,
        target: &TargetTable,
        rules: &TableRules,
    ) -> Result<(Option<Layout>, String, Parsed), LoadError> {
        let (tx, mut rx) = mpsc::channel(1024);
        let spec = EncodeSpec {
            key: "k.csv",
            target,
            rules,
            max_record_bytes: 1 << 20,
        };
        let parsed = encode(input.as_bytes(), &spec, &tx)?;
        drop(tx);
        let mut layout = None;
        let mut text = Vec::new();
        while let Ok(c) = rx.try_recv() {
            match c {
                Chunk::Layout(l) => layout = Some(l),
                Chunk::Data(d) => text.extend_from_slice(&d),
            }
        }
        Ok((layout, String::from_utf8(text).unwrap(), parsed))
    }

    #[test]
    fn full_load_without_op_is_inserts_with_nulls_and_escapes() {
        let t = table(&["id", "note"]);
        let (layout, text, parsed) = run(
            "1,NULL\n2,\"NULL\"\n3,\"\"\n4,\"a\tb\\c\r\nd\"\n",
            &t,
            &TableRules::default(),
        )
        .unwrap();
        assert_eq!(layout, Some(Layout::plain(vec![0, 1], false)));
        assert_eq!(
            text,
            "1\tI\t\\N\t\\N\t1\t\\N\n2\tI\t\\N\t\\N\t2\tNULL\n3\tI\t\\N\t\\N\t3\t\n4\tI\t\\N\t\\N\t4\ta\\tb\\\\c\\r\\nd\n"
        );
        assert_eq!(parsed.records, 4);
        assert_eq!(parsed.lines.line_of(4), Some(4));
    }

    #[test]
    fn cdc_op_is_detected_by_count() {
        let t = table(&["id", "note"]);
        let (layout, text, _) =
            run("I,1,a\nU,1,b\nD,1,NULL\n", &t, &TableRules::default()).unwrap();
        assert!(layout.unwrap().has_op);
        assert_eq!(
            text,
            "1\tI\t\\N\t\\N\t1\ta\n2\tU\t\\N\t\\N\t1\tb\n3\tD\t\\N\t\\N\t1\t\\N\n"
        );
    }

    #[test]
    fn bad_op_and_column_counts_are_precise() {
        let t = table(&["id", "note"]);
        let e = run("X,1,a\n", &t, &TableRules::default()).unwrap_err();
        assert!(
            matches!(
                e,
                LoadError::BadOperation {
                    record: 1,
                    line: 1,
                    ..
                }
            ),
            "{e}"
        );
        let e = run("I,1,a\nI,2\n", &t, &TableRules::default()).unwrap_err();
        assert!(
            matches!(
                e,
                LoadError::ColumnCount {
                    record: 2,
                    line: 2,
                    expected: 3,
                    found: 2,
                    ..
                }
            ),
            "{e}"
        );
        let e = run("1\n", &t, &TableRules::default()).unwrap_err();
        assert!(
            matches!(
                e,
                LoadError::ColumnCount {
                    expected: 2,
                    found: 1,
                    ..
                }
            ),
            "{e}"
        );
        let e = run("I,1,a\nQ,2,b\n", &t, &TableRules::default()).unwrap_err();
        assert!(
            matches!(e, LoadError::BadOperation { record: 2, .. }),
            "{e}"
        );
    }

    #[test]
    fn multi_line_records_keep_line_numbers() {
        let t = table(&["id", "note"]);
        let (_, _, parsed) =
            run("1,\"a\nb\nc\"\n2,x\n\n3,y\n", &t, &TableRules::default()).unwrap();
        assert_eq!(parsed.lines.line_of(1), Some(1));
        assert_eq!(parsed.lines.line_of(2), Some(4));
        assert_eq!(parsed.lines.line_of(3), Some(6));
        let e = run("1,\"a\nb\"\n2,x,y\n", &t, &TableRules::default()).unwrap_err();
        assert!(
            matches!(
                e,
                LoadError::ColumnCount {
                    record: 2,
                    line: 3,
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn nul_and_invalid_utf8_are_refused_with_column() {
        let t = table(&["id", "note"]);
        let (tx, _rx) = mpsc::channel(16);
        let rules = TableRules::default();
        let spec = EncodeSpec {
            key: "k",
            target: &t,
            rules: &rules,
            max_record_bytes: 1024,
        };
        let e = encode(&b"1,a\x00b\n"[..], &spec, &tx).unwrap_err();
        assert!(
            matches!(&e, LoadError::BadBytes { column, .. } if column == "note"),
            "{e}"
        );
        let e = encode(&b"1,caf\xe9\n"[..], &spec, &tx).unwrap_err();
        assert!(e.to_string().contains("invalid UTF-8 at offset 3"), "{e}");
    }

    #[test]
    fn header_maps_columns_by_name_in_any_order() {
        let t = table(&["id", "note", "extra"]);
        let rules = TableRules {
            header: true,
            ..TableRules::default()
        };
        let (layout, text, parsed) = run("Op,note,id\nI,hello,1\n", &t, &rules).unwrap();
        assert_eq!(layout, Some(Layout::plain(vec![1, 0], true)));
        assert_eq!(text, "1\tI\t\\N\t\\N\thello\t1\n");
        assert_eq!(parsed.lines.line_of(1), Some(2));
        let e = run("id,nope\n1,2\n", &t, &rules).unwrap_err();
        assert!(matches!(e, LoadError::UnknownColumn { .. }), "{e}");
        let e = run("note\nx\n", &t, &rules).unwrap_err();
        assert!(matches!(e, LoadError::MissingKeyColumn { .. }), "{e}");
    }

    #[test]
    fn empty_and_header_only_files_announce_a_layout() {
        let t = table(&["id", "note"]);
        let (layout, text, parsed) = run("", &t, &TableRules::default()).unwrap();
        assert_eq!(layout.unwrap().columns, vec![0, 1]);
        assert_eq!((text.as_str(), parsed.records), ("", 0));
        let rules = TableRules {
            header: true,
            ..TableRules::default()
        };
        let (layout, _, parsed) = run("note,id\n", &t, &rules).unwrap();
        assert_eq!(layout.unwrap().columns, vec![1, 0]);
        assert_eq!(parsed.records, 0);
    }

    #[test]
    fn custom_null_marker_and_column_list() {
        let t = table(&["id", "note", "other"]);
        let rules = TableRules {
            null: String::new(),
            columns: Some(vec!["id".into(), "other".into()]),
            ..TableRules::default()
        };
        let (layout, text, _) = run("1,\n2,\"\"\n", &t, &rules).unwrap();
        assert_eq!(layout.unwrap().columns, vec![0, 2]);
        assert_eq!(text, "1\tI\t\\N\t\\N\t1\t\\N\n2\tI\t\\N\t\\N\t2\t\n");
    }

    #[test]
    fn timestamp_column_versions_rows_first_after_op_or_by_name() {
        // Not a target column: a version only, DMS's place (first after Op).
        let t = table(&["id", "note"]);
        let rules = TableRules {
            timestamp_column: Some("dms_ts".into()),
            ..TableRules::default()
        };
        let (layout, text, _) = run(
            "U,2024-10-29 11:34:01.123456,1,a\nD,2024-10-29 11:34:02,1,NULL\n",
            &t,
            &rules,
        )
        .unwrap();
        let layout = layout.unwrap();
        assert_eq!(
            (layout.version_field, layout.version_only, layout.has_op),
            (Some(0), true, true)
        );
        assert_eq!(layout.columns, vec![0, 1]);
        assert_eq!(
            text,
            "1\tU\t2024-10-29 11:34:01.123456\t\\N\t1\ta\n2\tD\t2024-10-29 11:34:02\t\\N\t1\t\\N\n"
        );
        // A target column of that name is loaded too.
        let t = table(&["id", "note", "dms_ts"]);
        let (layout, text, _) = run("2024-01-01 00:00:00.5,1,a\n", &t, &rules).unwrap();
        let layout = layout.unwrap();
        assert_eq!(
            (layout.version_only, layout.columns.clone()),
            (false, vec![2, 0, 1])
        );
        assert_eq!(
            text,
            "1\tI\t2024-01-01 00:00:00.5\t\\N\t2024-01-01 00:00:00.5\t1\ta\n"
        );
        // By name from a header, anywhere.
        let rules = TableRules {
            header: true,
            ..rules
        };
        let t = table(&["id", "note"]);
        let (layout, text, _) =
            run("Op,id,note,dms_ts\nI,1,a,2024-01-01 00:00:00\n", &t, &rules).unwrap();
        assert_eq!(layout.unwrap().version_field, Some(2));
        assert_eq!(text, "1\tI\t2024-01-01 00:00:00\t\\N\t1\ta\n");
        let e = run("Op,id,note\nI,1,a\n", &t, &rules).unwrap_err();
        assert!(
            e.to_string()
                .contains("timestamp column \"dms_ts\" is not among"),
            "{e}"
        );
        let e = run("Op,id,note,dms_ts\nI,1,a,yesterday\n", &t, &rules).unwrap_err();
        assert!(
            matches!(&e, LoadError::BadVersion { record: 1, line: 2, value, .. } if value == "yesterday"),
            "{e}"
        );
    }

    #[test]
    fn dms_timestamps_are_recognised_strictly() {
        for ok in [
            "2024-10-29 11:34:01",
            "2024-10-29 11:34:01.123456",
            "2024-10-29T11:34:01.1",
        ] {
            assert!(is_dms_timestamp(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "",
            "NULL",
            "2024-10-29",
            "2024-10-29 11:34:01.",
            "2024-10-29 11:34:01+02",
            "2024/10/29 11:34:01",
        ] {
            assert!(!is_dms_timestamp(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn nosup_value_in_u_rows_marks_columns_unchanged() {
        let t = table(&["id", "note", "blob"]);
        let rules = TableRules {
            nosup_value: Some("~ns~".into()),
            ..TableRules::default()
        };
        let (_, text, parsed) = run(
            "I,1,a,~ns~\nU,1,~ns~,~ns~\nU,~ns~,b,c\nU,2,x,y\n",
            &t,
            &rules,
        )
        .unwrap();
        assert_eq!(parsed.partial, 1);
        assert_eq!(
            text,
            "1\tI\t\\N\t\\N\t1\ta\t~ns~\n\
             2\tU\t\\N\t{2,3}\t1\t\\N\t\\N\n\
             3\tU\t\\N\t\\N\t~ns~\tb\tc\n\
             4\tU\t\\N\t\\N\t2\tx\ty\n",
            "only U rows, never key columns"
        );
    }

    #[test]
    fn escape_is_reversible_for_every_special_byte() {
        let mut out = Vec::new();
        escape_copy_text("a\\b\tc\nd\re😀表".as_bytes(), &mut out);
        assert_eq!(out, "a\\\\b\\tc\\nd\\re😀表".as_bytes());
    }
}
