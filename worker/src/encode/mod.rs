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
//! Invariants: every record has exactly the layout's field count (the reader keeps the positions
//! of at most [`max_file_fields`] fields of a data record, so a record of millions of empty
//! fields costs its bytes, not 16 bytes of bookkeeping per byte, and is a `column_count` error); each field is valid UTF-8
//! without NUL (PostgreSQL refuses both in text) after the table's byte policy (strip, replace,
//! or the record is bad) or transcoding from its source encoding; an unquoted field equal to the
//! NULL marker is `\N`, everything else (a quoted `"NULL"`, an empty quoted field) is data,
//! escaped byte-exact.
//!
//! Bad records: with `on_error = fail_file` the first one is the error. With `reject_rows` a bad
//! record becomes a stage row with operation `R`, its reason, position and original bytes, and
//! the parse goes on. Structural errors (unterminated quote, garbage after a closing quote, a
//! record beyond the size limit) leave no way to know where the next record starts: they fail
//! the file in either mode.
//!
//! Segments: for the slow path of `reject_rows` (PostgreSQL refused a value), records are sent
//! in [`Segment`]s that keep each record's `COPY` line and original bytes, so the loader can
//! set aside exactly the record PostgreSQL refused and send the rest again.

pub mod binary;

use crate::error::LoadError;
use crate::read::csv::{CsvError, Field, ReaderOptions, Record, RecordBuf, RecordReader};
use crate::read::document::{DocColumn, DocumentPlan};
use crate::sql::TargetTable;
use binary::BinType;
use bytes::Bytes;
use sluice_common::rules::{Encoding, Flatten, InvalidBytes, OnError, TableRules, UnknownColumns};
use std::io::{BufRead, Write};
use std::ops::Range;
use tokio::sync::mpsc;

/// Chunks buffered between the parser and the `COPY` sink.
pub const CHANNEL_CHUNKS: usize = 8;
const CHUNK_BYTES: usize = 1 << 20;
/// Entries kept to map record numbers to physical lines (only records after a multi-line
/// record need one); beyond this, lines of later records are not reported.
const LINE_MAP_LIMIT: usize = 1 << 20;

/// Records per segment on the slow path: the most a refused value makes the loader send again.
const SEGMENT_RECORDS: usize = 1000;
/// Records rejected before the file's layout is known (a file whose first records are all bad).
const PENDING_REJECTS_LIMIT: usize = 10_000;

/// What the parser sends: the layout once, then data chunks (or segments).
#[derive(Debug)]
pub enum Chunk {
    Layout(Layout),
    Data(Bytes),
    Segment(Segment),
}

/// Records of the slow path: their `COPY` text and, per record, its position and original bytes.
#[derive(Debug, Default)]
pub struct Segment {
    pub text: Vec<u8>,
    pub raw: Vec<u8>,
    pub records: Vec<SegmentRecord>,
}

/// One record of a [`Segment`].
#[derive(Debug, Clone)]
pub struct SegmentRecord {
    pub number: u64,
    pub line: u64,
    pub offset: u64,
    /// Its `COPY` line (terminator included) in [`Segment::text`].
    pub text: Range<usize>,
    /// Its original bytes in [`Segment::raw`].
    pub raw: Range<usize>,
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
    /// Fields (indexes after `Op`, ascending) that name no column and are left out
    /// (`unknown_columns = "ignore"`).
    pub ignored: Vec<usize>,
    /// MongoDB document mode: one field of the file becomes several columns. The other fields
    /// of this layout describe the record after that expansion.
    pub document: Option<DocShape>,
    /// The direct path in PostgreSQL's binary format: the binary type of each column (every
    /// column has one). None: text format.
    pub binary: Option<Vec<BinType>>,
}

/// Where the document is in the file and which columns it becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocShape {
    /// Index of the document field among the file's fields after `Op`.
    pub field: usize,
    /// The document column's name, for messages.
    pub name: String,
    pub plan: DocumentPlan,
}

impl Layout {
    fn plain(columns: Vec<usize>, has_op: bool) -> Layout {
        Layout {
            columns,
            has_op,
            version_field: None,
            version_only: false,
            ignored: Vec::new(),
            document: None,
            binary: None,
        }
    }

    /// Fields every record has once its document (if any) is expanded.
    pub fn field_count(&self) -> usize {
        self.columns.len()
            + usize::from(self.has_op)
            + usize::from(self.version_only)
            + self.ignored.len()
    }

    /// Fields every record of the file must have.
    pub fn file_field_count(&self) -> usize {
        match &self.document {
            Some(d) => self.field_count() + 1 - d.plan.width(),
            None => self.field_count(),
        }
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
    /// Records the parser set aside as rejects (`reject_rows`).
    pub rejected: u64,
    /// Fields whose bytes the byte policy or the source encoding changed.
    pub repaired: u64,
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
    /// Send [`Chunk::Segment`]s instead of plain data (the slow path of `reject_rows`).
    pub segmented: bool,
    /// Write rows for `COPY` straight into the target (see [`Direct`]) instead of the stage.
    pub direct: Option<&'a Direct>,
}

/// The direct path: a file of inserts only, into a table that had no rows, is copied into the
/// target itself, each row with its system columns, so no stage and no merge are needed. Each
/// line is `record, version, file time, file id[, false], columns...`, matching
/// `sql::direct_copy_sql`. The first record that is not an insert stops the parse
/// ([`Parsed::not_insert`]): the loader then loads the file again by the staged path.
#[derive(Debug, Clone)]
pub struct Direct {
    /// The file's time as `timestamptz` text: the version of rows without a timestamp field.
    pub file_time: String,
    /// `\t<file time>\t<file id>` and, for a soft-delete table, `\tf`.
    pub tail: String,
    /// The same for the binary format: the file's time (microseconds since 1970), its ledger
    /// id, and whether the table has a soft-delete flag.
    pub file_time_micros: i64,
    pub file_id: i64,
    pub soft: bool,
}

/// The binary types of the columns, when every one has one (else the text format is used).
fn binary_types(target: &TargetTable, columns: &[usize]) -> Option<Vec<BinType>> {
    columns
        .iter()
        .map(|&c| binary::bin_type(&target.columns[c].sql_type))
        .collect()
}

impl EncodeSpec<'_> {
    fn rejects(&self) -> bool {
        self.rules.on_error == OnError::RejectRows
    }
}

/// Where a record is in the file, and its original bytes.
#[derive(Clone, Copy)]
struct RecordAt<'a> {
    number: u64,
    line: u64,
    offset: u64,
    raw: &'a [u8],
}

/// A record set aside before the layout was known.
struct PendingReject {
    number: u64,
    line: u64,
    offset: u64,
    raw: Vec<u8>,
    error: LoadError,
}

/// Whether an error concerns one record only (and may be set aside as a reject).
pub fn is_record_error(e: &LoadError) -> bool {
    matches!(
        e,
        LoadError::ColumnCount { .. }
            | LoadError::BadOperation { .. }
            | LoadError::BadBytes { .. }
            | LoadError::BadVersion { .. }
            | LoadError::BadDocument { .. }
            | LoadError::BadValue { .. }
            | LoadError::NullNotAllowed { .. }
            | LoadError::FieldTooLong { .. }
    )
}

/// The column a record error names, if any.
fn error_column(e: &LoadError) -> Option<&str> {
    match e {
        LoadError::BadBytes { column, .. }
        | LoadError::BadVersion { column, .. }
        | LoadError::BadDocument { column, .. }
        | LoadError::BadValue { column, .. }
        | LoadError::NullNotAllowed { column, .. }
        | LoadError::FieldTooLong { column, .. } => Some(column),
        _ => None,
    }
}

/// The output being built: plain chunks, or segments with per-record bookkeeping.
struct Output<'t> {
    tx: &'t mpsc::Sender<Chunk>,
    segmented: bool,
    seg: Segment,
    out: Vec<u8>,
}

impl Output<'_> {
    /// Records one record that was just written at `start..`; sends when full. False when the
    /// receiver is gone.
    fn record_done(
        &mut self,
        start: usize,
        number: u64,
        line: u64,
        offset: u64,
        raw: &[u8],
    ) -> bool {
        if self.segmented {
            let r = self.seg.raw.len();
            self.seg.raw.extend_from_slice(raw);
            self.seg.records.push(SegmentRecord {
                number,
                line,
                offset,
                text: start..self.out.len(),
                raw: r..self.seg.raw.len(),
            });
            if self.seg.records.len() >= SEGMENT_RECORDS || self.out.len() >= CHUNK_BYTES {
                return self.flush();
            }
        } else if self.out.len() >= CHUNK_BYTES {
            return self.flush();
        }
        true
    }

    /// Writes a rejected record's stage row ([`write_reject`]). Without segments, the hex of
    /// a long record is sent in chunks as it is written, so a rejected record of the limit's
    /// size costs no second, doubled copy of itself. False when the receiver is gone.
    fn reject(&mut self, layout: &Layout, at: RecordAt<'_>, error: &LoadError) -> bool {
        write_reject_head(&mut self.out, at.number, at.line, at.offset, error);
        for piece in at.raw.chunks(CHUNK_BYTES / 2) {
            write_hex(&mut self.out, piece);
            if !self.segmented && self.out.len() >= CHUNK_BYTES && !self.flush() {
                return false;
            }
        }
        write_reject_tail(&mut self.out, layout);
        true
    }

    fn flush(&mut self) -> bool {
        let text = std::mem::replace(&mut self.out, Vec::with_capacity(CHUNK_BYTES + 4096));
        if self.segmented {
            if self.seg.records.is_empty() {
                return true;
            }
            let mut seg = std::mem::take(&mut self.seg);
            seg.text = text;
            self.tx.blocking_send(Chunk::Segment(seg)).is_ok()
        } else {
            text.is_empty()
                || self
                    .tx
                    .blocking_send(Chunk::Data(Bytes::from(text)))
                    .is_ok()
        }
    }
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
        terminator: spec.rules.row_delimiter,
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
    reader.set_max_fields(max_file_fields(spec, header_layout.as_ref()));
    let mut output = Output {
        tx,
        segmented: spec.segmented,
        seg: Segment::default(),
        out: Vec::with_capacity(CHUNK_BYTES + 4096),
    };
    let mut layout: Option<Layout> = None;
    let mut pending: Vec<PendingReject> = Vec::new();
    let mut pending_bytes: usize = 0;
    let mut data_record: u64 = 0;
    let mut keep: Vec<usize> = Vec::new();
    let mut expanded = RecordBuf::default();
    let mut doc_values: Vec<Option<String>> = Vec::new();
    while let Some(record) = reader.next_record().map_err(csv_err)? {
        data_record += 1;
        let line = record.line();
        parsed.lines.note(data_record, line);
        if layout.is_none() {
            let found = match &header_layout {
                Some(l) => Ok(l.clone()),
                None => layout_by_count(spec, &record, data_record, line),
            };
            match found {
                Ok(mut l) => {
                    if spec.direct.is_some() {
                        l.binary = binary_types(spec.target, &l.columns);
                        if l.binary.is_some() {
                            output.out.extend_from_slice(binary::HEADER);
                        }
                    }
                    if tx.blocking_send(Chunk::Layout(l.clone())).is_err() {
                        return Ok(parsed);
                    }
                    if !write_pending(spec, &l, &mut pending, &mut output, &mut parsed) {
                        return Ok(parsed);
                    }
                    layout = Some(l);
                }
                Err(e) if spec.rejects() && is_record_error(&e) => {
                    pending_bytes += record.raw().len();
                    if pending.len() >= PENDING_REJECTS_LIMIT
                        || pending_bytes > spec.max_record_bytes
                    {
                        return Err(e);
                    }
                    pending.push(PendingReject {
                        number: data_record,
                        line,
                        offset: record.byte_offset(),
                        raw: record.raw().to_vec(),
                        error: e,
                    });
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
        let l = layout.as_ref().expect("layout is set above");
        let start = output.out.len();
        let result = if record.field_count() != l.file_field_count() {
            Err(LoadError::ColumnCount {
                key: spec.key.to_owned(),
                table: spec.target.label(),
                record: data_record,
                line,
                expected: l.file_field_count(),
                found: record.field_count(),
                value: excerpt(record.raw()),
            })
        } else if spec.direct.is_some()
            && l.has_op
            && record.get(0).is_some_and(|f| f.value != b"I")
        {
            return Err(LoadError::DirectUnfit {
                key: spec.key.to_owned(),
                record: data_record,
            });
        } else if let Some(doc) = &l.document {
            expand_document(spec, l, doc, &record, &mut doc_values, &mut expanded).and_then(|()| {
                let virtual_record = expanded.record(&record);
                encode_record(
                    spec,
                    l,
                    &virtual_record,
                    data_record,
                    &mut keep,
                    &mut output.out,
                )
            })
        } else {
            encode_record(spec, l, &record, data_record, &mut keep, &mut output.out)
        };
        match result {
            Ok(done) => {
                parsed.partial += u64::from(done.partial);
                parsed.repaired += done.repaired;
            }
            Err(e) if spec.rejects() && is_record_error(&e) => {
                output.out.truncate(start);
                let at = RecordAt {
                    number: data_record,
                    line,
                    offset: record.byte_offset(),
                    raw: record.raw(),
                };
                if !output.reject(l, at, &e) {
                    return Ok(parsed);
                }
                parsed.rejected += 1;
            }
            Err(e) => return Err(e),
        }
        if !output.record_done(start, data_record, line, record.byte_offset(), record.raw()) {
            return Ok(parsed);
        }
    }
    if layout.is_none() {
        // No good data record: the layout still has to be announced so the stage can be made.
        let l = header_layout.unwrap_or_else(|| default_layout(spec));
        if spec.direct.is_some() {
            // Text format: there are no rows to write.
            return Err(LoadError::DirectUnfit {
                key: spec.key.to_owned(),
                record: 0,
            });
        }
        if tx.blocking_send(Chunk::Layout(l.clone())).is_err() {
            return Ok(parsed);
        }
        if !write_pending(spec, &l, &mut pending, &mut output, &mut parsed) {
            return Ok(parsed);
        }
    }
    if layout.as_ref().is_some_and(|l| l.binary.is_some()) {
        output.out.extend_from_slice(binary::TRAILER);
    }
    if !output.flush() {
        return Ok(parsed);
    }
    parsed.records = data_record;
    parsed.bytes = reader.bytes_read();
    Ok(parsed)
}

/// The record with its document field replaced by the document's column values (quoted, so
/// that only NULL is the unquoted NULL marker).
fn expand_document(
    spec: &EncodeSpec<'_>,
    layout: &Layout,
    doc: &DocShape,
    record: &Record<'_>,
    values: &mut Vec<Option<String>>,
    out: &mut RecordBuf,
) -> Result<(), LoadError> {
    let null = spec.rules.null.as_bytes();
    let at = usize::from(layout.has_op) + doc.field;
    out.clear();
    for (i, f) in record.iter().enumerate() {
        if i != at {
            out.push(f.value, f.quoted);
            continue;
        }
        if !f.quoted && f.value == null {
            // No document (a delete may carry only its key): every column is NULL.
            for _ in 0..doc.plan.width() {
                out.push(null, false);
            }
            continue;
        }
        doc.plan
            .expand(f.value, values)
            .map_err(|e| LoadError::BadDocument {
                key: spec.key.to_owned(),
                record: record.record_number(),
                line: record.line(),
                column: doc.name.clone(),
                reason: e.to_string(),
                value: excerpt(f.value),
            })?;
        for v in values.iter() {
            match v {
                Some(v) => out.push(v.as_bytes(), true),
                None => out.push(null, false),
            }
        }
    }
    Ok(())
}

/// Writes the records rejected before the layout was known.
fn write_pending(
    spec: &EncodeSpec<'_>,
    layout: &Layout,
    pending: &mut Vec<PendingReject>,
    output: &mut Output<'_>,
    parsed: &mut Parsed,
) -> bool {
    let _ = spec;
    for p in pending.drain(..) {
        let start = output.out.len();
        let at = RecordAt {
            number: p.number,
            line: p.line,
            offset: p.offset,
            raw: &p.raw,
        };
        if !output.reject(layout, at, &p.error) {
            return false;
        }
        parsed.rejected += 1;
        if !output.record_done(start, p.number, p.line, p.offset, &p.raw) {
            return false;
        }
    }
    true
}

/// A rejected record's stage row, written by [`Output::reject`] in three parts: `R`, reason,
/// class, column, line, byte offset ([`write_reject_head`]), original bytes (hex `bytea`,
/// [`write_hex`]), and NULL data columns ([`write_reject_tail`]).
fn write_reject_head(out: &mut Vec<u8>, number: u64, line: u64, offset: u64, error: &LoadError) {
    let _ = write!(out, "{number}\tR\t\\N\t\\N\t");
    escape_copy_text(error.to_string().as_bytes(), out);
    out.push(b'\t');
    out.extend_from_slice(error.class().as_bytes());
    out.push(b'\t');
    match error_column(error) {
        Some(c) => escape_copy_text(c.as_bytes(), out),
        None => out.extend_from_slice(b"\\N"),
    }
    let _ = write!(out, "\t{line}\t{offset}\t\\\\x");
}

/// Bytes as hex digits (part of a reject's `bytea`).
fn write_hex(out: &mut Vec<u8>, raw: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(raw.len() * 2);
    for &b in raw {
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 15)]);
    }
}

/// A reject's stage row after its original bytes: NULL data columns.
fn write_reject_tail(out: &mut Vec<u8>, layout: &Layout) {
    for _ in 0..layout.columns.len() {
        out.extend_from_slice(b"\t\\N");
    }
    out.push(b'\n');
}

/// An excerpt of a value for an error message: at most 120 characters, with control
/// characters and bytes that are not UTF-8 escaped.
pub fn excerpt(v: &[u8]) -> String {
    const MAX: usize = 120;
    let mut s = String::new();
    let mut n = 0;
    for chunk in v.utf8_chunks() {
        for c in chunk.valid().chars() {
            if n >= MAX {
                s.push('…');
                return s;
            }
            match c {
                '\n' => s.push_str("\\n"),
                '\r' => s.push_str("\\r"),
                '\t' => s.push_str("\\t"),
                '\0' => s.push_str("\\0"),
                c if c.is_control() => s.push_str(&format!("\\u{{{:x}}}", c as u32)),
                c => s.push(c),
            }
            n += 1;
        }
        for b in chunk.invalid() {
            if n >= MAX {
                s.push('…');
                return s;
            }
            s.push_str(&format!("\\x{b:02x}"));
            n += 1;
        }
    }
    s
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
    let plain = || Layout::plain((0..spec.target.columns.len()).collect(), false);
    match (&spec.rules.columns, &spec.rules.document) {
        (Some(list), _) => file_layout(spec, list, false).unwrap_or_else(|_| plain()),
        (None, Some(_)) => {
            file_layout(spec, &document_file_columns(spec), false).unwrap_or_else(|_| plain())
        }
        (None, None) => plain(),
    }
}

/// The fields of a document-mode file without a header or column list: DMS's timestamp
/// column (when configured), `_id`, then the document.
fn document_file_columns(spec: &EncodeSpec<'_>) -> Vec<String> {
    let doc = spec.rules.document.as_ref().expect("document mode");
    let mut names: Vec<String> = spec.rules.timestamp_column.iter().cloned().collect();
    names.push("_id".to_owned());
    names.push(doc.column.clone());
    names
}

/// The layout of a file whose fields (after `Op`) are `names`: [`named_layout`], after
/// replacing the document field (in document mode) with the columns it becomes.
fn file_layout(spec: &EncodeSpec<'_>, names: &[String], has_op: bool) -> Result<Layout, LoadError> {
    let Some(rules) = &spec.rules.document else {
        return named_layout(spec, names, has_op);
    };
    let rules_error = |message: String| LoadError::Rules {
        key: spec.key.to_owned(),
        message,
    };
    let field = names
        .iter()
        .position(|n| n == &rules.column)
        .or_else(|| {
            names
                .iter()
                .position(|n| n.eq_ignore_ascii_case(&rules.column))
        })
        .ok_or_else(|| {
            rules_error(format!(
                "document column {:?} is not among the file's columns ({})",
                rules.column,
                names.join(", ")
            ))
        })?;
    let elsewhere: Vec<String> = names
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != field)
        .map(|(_, n)| n.clone())
        .collect();
    let (columns, mut doc_names): (Vec<DocColumn>, Vec<String>) = match rules.flatten {
        Flatten::Paths => rules
            .paths
            .iter()
            .map(|(col, path)| {
                let path = path.split('.').map(str::to_owned).collect();
                (DocColumn { path }, col.clone())
            })
            .unzip(),
        Flatten::Auto => spec
            .target
            .columns
            .iter()
            .map(|c| &c.name)
            .filter(|n| {
                !n.starts_with("_sluice_")
                    && !elsewhere.iter().any(|e| e.eq_ignore_ascii_case(n))
                    && rules.rescue.as_deref() != Some(n.as_str())
                    && spec.rules.soft_delete.as_deref() != Some(n.as_str())
            })
            .map(|n| {
                (
                    DocColumn {
                        path: vec![n.clone()],
                    },
                    n.clone(),
                )
            })
            .unzip(),
    };
    if let Some(r) = &rules.rescue {
        doc_names.push(r.clone());
    }
    if doc_names.is_empty() {
        return Err(rules_error(format!(
            "document column {:?} maps to no column of {}",
            rules.column,
            spec.target.label()
        )));
    }
    let mut expanded: Vec<String> = names[..field].to_vec();
    expanded.extend(doc_names);
    expanded.extend_from_slice(&names[field + 1..]);
    let layout = named_layout(spec, &expanded, has_op)?;
    Ok(Layout {
        document: Some(DocShape {
            field,
            name: rules.column.clone(),
            plan: DocumentPlan {
                columns,
                rescue: rules.rescue.is_some(),
                elsewhere,
            },
        }),
        ..layout
    })
}

/// The target column a file's column `name` fills (the shared matching rule of
/// [`sluice_common::warehouse::match_column`], which `check` applies too).
fn find_column(target: &TargetTable, name: &str) -> Option<usize> {
    sluice_common::warehouse::match_column(target.columns.iter().map(|c| c.name.as_str()), name)
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
    let mut ignored = Vec::new();
    for (j, name) in names.iter().enumerate() {
        let is_ts = ts.is_some_and(|t| t == name || t.eq_ignore_ascii_case(name));
        if is_ts && version_field.is_none() {
            version_field = Some(j);
        }
        match find_column(spec.target, name) {
            Some(idx) => columns.push(idx),
            None if is_ts => version_only = true,
            None if spec.rules.unknown_columns == UnknownColumns::Ignore => ignored.push(j),
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
        ignored,
        document: None,
        binary: None,
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
    if header.field_count() > header.len() {
        return Err(LoadError::Csv {
            key: spec.key.to_owned(),
            reason: format!(
                "the header has {} fields, more than the {} a header may have",
                header.field_count(),
                header.len()
            ),
            record: None,
            line: Some(header.line()),
            class: "column_count",
        });
    }
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
        Some(list) => file_layout(spec, list, has_op),
        None => file_layout(spec, data_names, has_op),
    }
}

/// The most fields a data record of the file may have: the header's layout's count, else the
/// columns of the rules' list, of document mode or of the table (and DMS's timestamp field),
/// plus `Op`. The reader keeps the positions of no more (see `csv::Record::field_count`); a
/// record with more is a `column_count` error, whatever the layout turns out to be.
fn max_file_fields(spec: &EncodeSpec<'_>, header: Option<&Layout>) -> usize {
    if let Some(l) = header {
        return l.file_field_count();
    }
    let columns = match (&spec.rules.columns, &spec.rules.document) {
        (Some(list), _) => list.len(),
        (None, Some(_)) => document_file_columns(spec).len(),
        (None, None) => {
            spec.target.columns.len() + usize::from(spec.rules.timestamp_column.is_some())
        }
    };
    columns + 1
}

/// Without a header: the rules' column list, or the target's data columns in ordinal order
/// (DMS's timestamp column first, where one is configured); `Op` by count.
fn layout_by_count(
    spec: &EncodeSpec<'_>,
    first: &Record<'_>,
    record: u64,
    line: u64,
) -> Result<Layout, LoadError> {
    let layout = match (&spec.rules.columns, &spec.rules.document) {
        (Some(list), _) => file_layout(spec, list, false)?,
        (None, Some(_)) => file_layout(spec, &document_file_columns(spec), false)?,
        (None, None) => {
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
                        ignored: Vec::new(),
                        document: None,
                        binary: None,
                    }
                }
            }
        }
    };
    let n = layout.file_field_count();
    let found = first.field_count();
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
            value: excerpt(op),
        });
    }
    Err(LoadError::ColumnCount {
        key: spec.key.to_owned(),
        table: spec.target.label(),
        record,
        line,
        expected: n,
        found,
        value: excerpt(first.raw()),
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

/// What writing one record did.
#[derive(Debug, Clone, Copy, Default)]
struct Done {
    /// A partial `U` image.
    partial: bool,
    /// Fields whose bytes were changed.
    repaired: u64,
}

/// Writes one record as a `COPY` line.
fn encode_record(
    spec: &EncodeSpec<'_>,
    layout: &Layout,
    record: &Record<'_>,
    number: u64,
    keep: &mut Vec<usize>,
    out: &mut Vec<u8>,
) -> Result<Done, LoadError> {
    if let (Some(types), Some(direct)) = (&layout.binary, spec.direct) {
        return encode_record_binary(spec, layout, types, direct, record, number, out);
    }
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
                    value: excerpt(other),
                })
            }
        }
    } else {
        b'I'
    };
    // Writing into a Vec cannot fail.
    let _ = write!(out, "{number}");
    out.push(b'\t');
    if spec.direct.is_none() {
        out.push(op);
        out.push(b'\t');
    }
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
                    value: excerpt(f.value),
                });
            }
            out.extend_from_slice(f.value);
        }
        None => match spec.direct {
            Some(d) => out.extend_from_slice(d.file_time.as_bytes()),
            None => out.extend_from_slice(b"\\N"),
        },
    }
    if let Some(d) = spec.direct {
        out.extend_from_slice(d.tail.as_bytes());
    } else {
        out.push(b'\t');
    }
    // Staged fields: every field after Op except a version-only timestamp field.
    let staged = (first..record.len()).filter(|&i| {
        !(layout.version_only && Some(i - first) == layout.version_field)
            && layout.ignored.binary_search(&(i - first)).is_err()
    });
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
    if spec.direct.is_some() {
        // Inserts only: no column is kept, and the target has no such column.
    } else if keep.is_empty() {
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
    if spec.rejects() {
        out.extend_from_slice(b"\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N");
    }
    let null = spec.rules.null.as_bytes();
    let mut kept = keep.iter().peekable();
    let mut done = Done {
        partial: !keep.is_empty(),
        repaired: 0,
    };
    for (pos, i) in staged.enumerate() {
        let field = record.get(i).expect("field count was checked");
        let col = layout.columns[pos];
        out.push(b'\t');
        if kept.peek() == Some(&&(pos + 1)) {
            kept.next();
            out.extend_from_slice(b"\\N");
            continue;
        }
        if encode_field(spec, field, null, col, op, record, number, None, out)? {
            done.repaired += 1;
        }
    }
    out.push(b'\n');
    Ok(done)
}

/// One insert of the direct path as a binary `COPY` tuple: record, version, file time, file
/// id, the soft-delete flag where there is one, then the columns. A value the binary form
/// cannot take exactly ends the direct path ([`LoadError::DirectUnfit`]).
fn encode_record_binary(
    spec: &EncodeSpec<'_>,
    layout: &Layout,
    types: &[BinType],
    direct: &Direct,
    record: &Record<'_>,
    number: u64,
    out: &mut Vec<u8>,
) -> Result<Done, LoadError> {
    let first = usize::from(layout.has_op);
    let unfit = || LoadError::DirectUnfit {
        key: spec.key.to_owned(),
        record: number,
    };
    let fields = 4 + usize::from(direct.soft) + layout.columns.len();
    out.extend_from_slice(&(fields as i16).to_be_bytes());
    binary::int8(out, number as i64);
    match layout.version_field {
        Some(j) => {
            let f = record.get(first + j).expect("field count was checked");
            if !is_dms_timestamp(f.value) {
                return Err(LoadError::BadVersion {
                    key: spec.key.to_owned(),
                    record: number,
                    line: record.line(),
                    column: spec.rules.timestamp_column.clone().unwrap_or_default(),
                    value: excerpt(f.value),
                });
            }
            binary::timestamp_micros(out, binary::parse_timestamp(f.value).ok_or_else(unfit)?);
        }
        None => binary::timestamp_micros(out, direct.file_time_micros),
    }
    binary::timestamp_micros(out, direct.file_time_micros);
    binary::int8(out, direct.file_id);
    if direct.soft {
        binary::boolean(out, false);
    }
    let staged = (first..record.len()).filter(|&i| {
        !(layout.version_only && Some(i - first) == layout.version_field)
            && layout.ignored.binary_search(&(i - first)).is_err()
    });
    let null = spec.rules.null.as_bytes();
    let mut done = Done::default();
    for (pos, i) in staged.enumerate() {
        let field = record.get(i).expect("field count was checked");
        let col = layout.columns[pos];
        if encode_field(
            spec,
            field,
            null,
            col,
            b'I',
            record,
            number,
            Some(types[pos]),
            out,
        )? {
            done.repaired += 1;
        }
    }
    Ok(done)
}

/// Writes one field, as `COPY` text or (with `bin`) in binary; returns whether its bytes were
/// changed (byte policy, transcoding).
#[allow(clippy::too_many_arguments)]
fn encode_field(
    spec: &EncodeSpec<'_>,
    field: Field<'_>,
    null: &[u8],
    col: usize,
    op: u8,
    record: &Record<'_>,
    number: u64,
    bin: Option<BinType>,
    out: &mut Vec<u8>,
) -> Result<bool, LoadError> {
    let unfit = || LoadError::DirectUnfit {
        key: spec.key.to_owned(),
        record: number,
    };
    let v = field.value;
    let column = &spec.target.columns[col];
    if !field.quoted && v == null {
        // A delete needs only its key; any other operation must give NOT NULL columns a value.
        if column.not_null && (op != b'D' || spec.target.key.contains(&col)) {
            return Err(LoadError::NullNotAllowed {
                key: spec.key.to_owned(),
                table: spec.target.label(),
                record: number,
                line: record.line(),
                column: column.name.clone(),
            });
        }
        match bin {
            Some(_) => binary::null(out),
            None => out.extend_from_slice(b"\\N"),
        }
        return Ok(false);
    }
    if let Some(limit) = spec.rules.max_field_bytes {
        if v.len() > limit {
            return Err(LoadError::FieldTooLong {
                key: spec.key.to_owned(),
                record: number,
                line: record.line(),
                column: column.name.clone(),
                length: v.len(),
                limit,
                value: excerpt(v),
            });
        }
    }
    let has_nul = memchr::memchr(0, v).is_some();
    let clean = !has_nul
        && match spec.rules.encoding {
            Encoding::Utf8 => std::str::from_utf8(v).is_ok(),
            Encoding::Latin1 | Encoding::Windows1252 => v.is_ascii(),
        };
    if clean {
        if column.sql_type == "bytea" {
            let hex = dms_hex(v).map_err(|reason| LoadError::BadValue {
                key: spec.key.to_owned(),
                record: number,
                line: record.line(),
                column: column.name.clone(),
                reason: reason.to_owned(),
                value: excerpt(v),
            })?;
            match bin {
                Some(_) => {
                    if !binary::bytea_hex(hex, out) {
                        return Err(unfit());
                    }
                }
                None => {
                    out.extend_from_slice(b"\\\\x");
                    out.extend_from_slice(hex);
                }
            }
            return Ok(false);
        }
        match bin {
            Some(t) => {
                if !binary::encode(t, v, out) {
                    return Err(unfit());
                }
            }
            None => escape_copy_text(v, out),
        }
        return Ok(false);
    }
    let policy = spec.rules.invalid_bytes;
    let bad = |reason: String| LoadError::BadBytes {
        key: spec.key.to_owned(),
        record: number,
        line: record.line(),
        column: column.name.clone(),
        reason,
        value: excerpt(v),
    };
    let mut text = String::with_capacity(v.len() + 8);
    let push_nul = |text: &mut String, at: usize| -> Result<(), LoadError> {
        match policy {
            InvalidBytes::Reject => Err(bad(format!("NUL byte at offset {at} of the field"))),
            InvalidBytes::Strip => Ok(()),
            InvalidBytes::Replace => {
                text.push('\u{FFFD}');
                Ok(())
            }
        }
    };
    match spec.rules.encoding {
        Encoding::Utf8 => {
            let mut at = 0;
            for chunk in v.utf8_chunks() {
                for (i, c) in chunk.valid().char_indices() {
                    if c == '\0' {
                        push_nul(&mut text, at + i)?;
                    } else {
                        text.push(c);
                    }
                }
                at += chunk.valid().len();
                if !chunk.invalid().is_empty() {
                    match policy {
                        InvalidBytes::Reject => {
                            return Err(bad(format!("invalid UTF-8 at offset {at} of the field")))
                        }
                        InvalidBytes::Strip => {}
                        InvalidBytes::Replace => text.push('\u{FFFD}'),
                    }
                    at += chunk.invalid().len();
                }
            }
        }
        Encoding::Latin1 | Encoding::Windows1252 => {
            let cp1252 = spec.rules.encoding == Encoding::Windows1252;
            for (i, &b) in v.iter().enumerate() {
                match b {
                    0 => push_nul(&mut text, i)?,
                    0x80..=0x9f if cp1252 => text.push(WINDOWS_1252_80_9F[usize::from(b - 0x80)]),
                    b => text.push(char::from(b)),
                }
            }
        }
    }
    match bin {
        Some(t) => {
            if !binary::encode(t, text.as_bytes(), out) {
                return Err(unfit());
            }
        }
        None => escape_copy_text(text.as_bytes(), out),
    }
    Ok(true)
}

/// The hexadecimal digits of a `bytea` value in DMS's form (`DEADBEEF`, or with `0x`), or in
/// PostgreSQL's `\x...` form; written as PostgreSQL's hex input.
/// Anything else would be read as PostgreSQL's escape format and silently become other bytes,
/// so it is an error.
fn dms_hex(v: &[u8]) -> Result<&[u8], &'static str> {
    let hex = if let Some(rest) = v.strip_prefix(b"\\x") {
        rest
    } else if let Some(rest) = v.strip_prefix(b"0x").or_else(|| v.strip_prefix(b"0X")) {
        rest
    } else {
        v
    };
    if hex.len() % 2 != 0 || !hex.iter().all(u8::is_ascii_hexdigit) {
        return Err("is not binary data in hexadecimal (DEADBEEF, 0xDEADBEEF or \\xDEADBEEF)");
    }
    Ok(hex)
}

/// Windows-1252's 0x80..=0x9F (WHATWG's mapping: the five unassigned bytes map to the C1
/// controls of the same value); the rest of the code page is Latin-1.
const WINDOWS_1252_80_9F: [char; 32] = [
    '\u{20AC}', '\u{0081}', '\u{201A}', '\u{0192}', '\u{201E}', '\u{2026}', '\u{2020}', '\u{2021}',
    '\u{02C6}', '\u{2030}', '\u{0160}', '\u{2039}', '\u{0152}', '\u{008D}', '\u{017D}', '\u{008F}',
    '\u{0090}', '\u{2018}', '\u{2019}', '\u{201C}', '\u{201D}', '\u{2022}', '\u{2013}', '\u{2014}',
    '\u{02DC}', '\u{2122}', '\u{0161}', '\u{203A}', '\u{0153}', '\u{009D}', '\u{017E}', '\u{0178}',
];

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
                    not_null: false,
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
            segmented: false,
            direct: None,
        };
        let parsed = encode(input.as_bytes(), &spec, &tx)?;
        drop(tx);
        let mut layout = None;
        let mut text = Vec::new();
        while let Ok(c) = rx.try_recv() {
            match c {
                Chunk::Layout(l) => layout = Some(l),
                Chunk::Data(d) => text.extend_from_slice(&d),
                Chunk::Segment(s) => text.extend_from_slice(&s.text),
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
    fn a_record_of_millions_of_fields_is_a_column_count_error_without_their_positions() {
        let t = table(&["id", "note"]);
        // A million commas (within the 1 MiB record limit): a million empty fields, 16 bytes
        // of position each if they were kept.
        let commas = ",".repeat(1_000_000);
        for (input, record, expected) in [
            (format!("{commas}\n"), 1, 2),
            (format!("I,1,a\n{commas}\n"), 2, 3),
        ] {
            let e = run(&input, &t, &TableRules::default()).unwrap_err();
            assert!(
                matches!(e, LoadError::ColumnCount { record: r, expected: x, found, .. }
                    if r == record && x == expected && found == 1_000_001),
                "{e}"
            );
            assert_eq!(e.class(), "column_count");
        }
        assert_eq!(max_file_fields_of(&t, &TableRules::default()), 3);
        // With a header, records have exactly its count; the header itself is bounded.
        let rules = TableRules {
            header: true,
            ..TableRules::default()
        };
        let e = run(&format!("id,note\n{commas}\n"), &t, &rules).unwrap_err();
        assert!(
            matches!(e, LoadError::ColumnCount { expected: 2, found, .. } if found == 1_000_001),
            "{e}"
        );
        let e = run(&format!("id,note{commas}\n1,a\n"), &t, &rules).unwrap_err();
        assert_eq!(e.class(), "column_count", "{e}");
        assert!(e.to_string().contains("the header has"), "{e}");
        // With reject_rows the record is set aside (its bytes kept) and the rest loads.
        let rules = TableRules {
            on_error: OnError::RejectRows,
            ..TableRules::default()
        };
        let (_, text, parsed) = run(&format!("1,a\n{commas}\n2,b\n"), &t, &rules).unwrap();
        assert_eq!((parsed.records, parsed.rejected), (3, 1));
        assert!(text.ends_with("\t2\tb\n"), "{}", &text[text.len() - 40..]);
    }

    #[test]
    fn a_huge_rejected_record_is_sent_in_chunks_and_early_rejects_are_bounded() {
        let t = table(&["id", "note"]);
        let rules = TableRules {
            on_error: OnError::RejectRows,
            ..TableRules::default()
        };
        let spec = EncodeSpec {
            key: "k.csv",
            target: &t,
            rules: &rules,
            max_record_bytes: 8 << 20,
            segmented: false,
            direct: None,
        };
        // 3 MiB of commas after a good record: its reject row (6 MiB of hex) goes out in
        // chunks of about CHUNK_BYTES, never as one piece.
        let input = format!("1,a\n{}\n2,b\n", ",".repeat(3 << 20));
        let (tx, mut rx) = mpsc::channel(1024);
        let parsed = encode(input.as_bytes(), &spec, &tx).unwrap();
        drop(tx);
        assert_eq!((parsed.records, parsed.rejected), (3, 1));
        let mut text = Vec::new();
        let mut largest = 0;
        while let Ok(c) = rx.try_recv() {
            if let Chunk::Data(d) = c {
                largest = largest.max(d.len());
                text.extend_from_slice(&d);
            }
        }
        assert!(largest < CHUNK_BYTES + (CHUNK_BYTES / 2) * 2, "{largest}");
        let text = String::from_utf8(text).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[1].starts_with("2\tR\t"), "{}", &lines[1][..40]);
        assert!(
            lines[1].ends_with(&format!("\\\\x{}\t\\N\t\\N", "2c".repeat(3 << 20))),
            "the original bytes, untruncated"
        );
        assert!(lines[2].ends_with("\t2\tb"), "{}", lines[2]);
        // Records rejected before the layout is known are kept up to the record limit.
        let bad = ",".repeat(600 << 10);
        let (tx, _rx) = mpsc::channel(1024);
        let small = EncodeSpec {
            max_record_bytes: 1 << 20,
            ..spec
        };
        let e = encode(format!("{bad}\n{bad}\n1,a\n").as_bytes(), &small, &tx).unwrap_err();
        assert!(matches!(e, LoadError::ColumnCount { record: 2, .. }), "{e}");
        let (_, _, parsed) = run(&format!("{bad}\n1\n1,a\n"), &t, &rules).unwrap();
        assert_eq!((parsed.records, parsed.rejected), (3, 2));
    }

    fn max_file_fields_of(t: &TargetTable, rules: &TableRules) -> usize {
        let spec = EncodeSpec {
            key: "k.csv",
            target: t,
            rules,
            max_record_bytes: 1 << 20,
            segmented: false,
            direct: None,
        };
        max_file_fields(&spec, None)
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
            segmented: false,
            direct: None,
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

    fn collect(rx: &mut mpsc::Receiver<Chunk>) -> (Vec<u8>, Vec<Segment>) {
        let mut text = Vec::new();
        let mut segments = Vec::new();
        while let Ok(c) = rx.try_recv() {
            match c {
                Chunk::Layout(_) => {}
                Chunk::Data(d) => text.extend_from_slice(&d),
                Chunk::Segment(s) => {
                    text.extend_from_slice(&s.text);
                    segments.push(s);
                }
            }
        }
        (text, segments)
    }

    fn reject_rules() -> TableRules {
        TableRules {
            on_error: OnError::RejectRows,
            ..TableRules::default()
        }
    }

    #[test]
    fn rejected_records_become_r_rows_with_their_original_bytes() {
        let mut t = table(&["id", "note"]);
        t.columns[1].not_null = true;
        let rules = reject_rules();
        let spec = EncodeSpec {
            key: "k",
            target: &t,
            rules: &rules,
            max_record_bytes: 1024,
            segmented: false,
            direct: None,
        };
        let (tx, mut rx) = mpsc::channel(64);
        // A bad first record (wrong count), NUL, NULL into NOT NULL, then good ones.
        let parsed = encode(
            &b"1,a,extra\n2,b\x00c\n3,NULL\n4,\"ok\"\r\n"[..],
            &spec,
            &tx,
        )
        .unwrap();
        assert_eq!((parsed.records, parsed.rejected), (4, 3));
        let (text, _) = collect(&mut rx);
        let text = String::from_utf8(text).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(
            lines[0].starts_with("1\tR\t\\N\t\\N\trecord 1 at line 1 of k has operation \"1\""),
            "{text}"
        );
        assert!(
            lines[0].ends_with("\tbad_operation\t\\N\t1\t0\t\\\\x312c612c6578747261\t\\N\t\\N"),
            "{text}"
        );
        assert!(
            lines[1].contains("\tbad_bytes\tnote\t2\t10\t\\\\x322c620063\t"),
            "{text}"
        );
        assert!(
            lines[2].contains("\tnull_not_allowed\tnote\t3\t16\t"),
            "{text}"
        );
        assert_eq!(
            lines[3],
            "4\tI\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t4\tok"
        );
        // Without reject_rows, the first bad record is the error.
        let rules = TableRules::default();
        let spec = EncodeSpec {
            rules: &rules,
            ..spec
        };
        let e = encode(&b"1,a\n2,NULL\n"[..], &spec, &tx).unwrap_err();
        assert!(
            matches!(e, LoadError::NullNotAllowed { record: 2, .. }),
            "{e}"
        );
        // A delete needs only its key.
        let (_, text, _) = run("D,1,NULL\n", &t, &rules).unwrap();
        assert!(text.ends_with("\t1\t\\N\n"), "{text}");
    }

    #[test]
    fn byte_policies_strip_replace_or_reject_and_count() {
        let t = table(&["id", "note"]);
        let input = &b"1,a\x00b\n2,caf\xe9\n3,plain\n"[..];
        let mut rules = TableRules {
            invalid_bytes: InvalidBytes::Strip,
            ..TableRules::default()
        };
        let encode_with = |rules: &TableRules| {
            let (tx, mut rx) = mpsc::channel(64);
            let spec = EncodeSpec {
                key: "k",
                target: &t,
                rules,
                max_record_bytes: 1024,
                segmented: false,
                direct: None,
            };
            let parsed = encode(input, &spec, &tx);
            parsed.map(|p| (p.repaired, String::from_utf8(collect(&mut rx).0).unwrap()))
        };
        let (repaired, text) = encode_with(&rules).unwrap();
        assert_eq!(repaired, 2);
        assert!(
            text.contains("\t1\tab\n") && text.contains("\t2\tcaf\n"),
            "{text}"
        );
        rules.invalid_bytes = InvalidBytes::Replace;
        let (_, text) = encode_with(&rules).unwrap();
        assert!(
            text.contains("\t1\ta\u{FFFD}b\n") && text.contains("\t2\tcaf\u{FFFD}\n"),
            "{text}"
        );
        rules.invalid_bytes = InvalidBytes::Reject;
        let e = encode_with(&rules).unwrap_err();
        assert!(
            e.to_string().contains("NUL byte at offset 1") && e.to_string().contains("a\\0b"),
            "{e}"
        );
        // A source encoding transcodes instead; NUL still follows the policy.
        rules.encoding = Encoding::Latin1;
        rules.invalid_bytes = InvalidBytes::Strip;
        let (repaired, text) = encode_with(&rules).unwrap();
        assert_eq!(repaired, 2);
        assert!(text.contains("\t2\tcafé\n"), "{text}");
        rules.encoding = Encoding::Windows1252;
        let (tx, mut rx) = mpsc::channel(64);
        let spec = EncodeSpec {
            key: "k",
            target: &t,
            rules: &rules,
            max_record_bytes: 1024,
            segmented: false,
            direct: None,
        };
        encode(&b"1,\x80 \x93quoted\x94 \xe9\x81\n"[..], &spec, &tx).unwrap();
        let text = String::from_utf8(collect(&mut rx).0).unwrap();
        assert!(text.ends_with("\t1\t€ “quoted” é\u{81}\n"), "{text}");
    }

    #[test]
    fn long_fields_are_bad_records() {
        let t = table(&["id", "note"]);
        let rules = TableRules {
            max_field_bytes: Some(4),
            ..TableRules::default()
        };
        let e = run("1,abcd\n2,abcde\n", &t, &rules).unwrap_err();
        assert!(
            matches!(
                &e,
                LoadError::FieldTooLong {
                    record: 2,
                    length: 5,
                    limit: 4,
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn segments_keep_each_records_line_and_original_bytes() {
        let t = table(&["id", "note"]);
        let rules = reject_rules();
        let spec = EncodeSpec {
            key: "k",
            target: &t,
            rules: &rules,
            max_record_bytes: 1 << 20,
            segmented: true,
            direct: None,
        };
        let mut input = String::new();
        for i in 1..=2500 {
            input.push_str(&format!("{i},\"v\n{i}\"\n"));
        }
        let (tx, mut rx) = mpsc::channel(64);
        let parsed = encode(input.as_bytes(), &spec, &tx).unwrap();
        assert_eq!(parsed.records, 2500);
        let (_, segments) = collect(&mut rx);
        assert_eq!(
            segments.iter().map(|s| s.records.len()).collect::<Vec<_>>(),
            vec![1000, 1000, 500]
        );
        let r = &segments[1].records[5];
        assert_eq!((r.number, r.line), (1006, 2011));
        assert_eq!(&segments[1].raw[r.raw.clone()], b"1006,\"v\n1006\"");
        assert_eq!(
            &segments[1].text[r.text.clone()],
            b"1006\tI\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t1006\tv\\n1006\n"
        );
    }

    #[test]
    fn excerpts_escape_and_cut() {
        assert_eq!(excerpt(b"a\tb\x00\xff\n"), "a\\tb\\0\\xff\\n");
        let long = "é".repeat(200);
        let e = excerpt(long.as_bytes());
        assert_eq!(e.chars().count(), 121);
        assert!(e.ends_with('…'));
    }

    #[test]
    fn escape_is_reversible_for_every_special_byte() {
        let mut out = Vec::new();
        escape_copy_text("a\\b\tc\nd\re😀表".as_bytes(), &mut out);
        assert_eq!(out, "a\\\\b\\tc\\nd\\re😀表".as_bytes());
    }
}
