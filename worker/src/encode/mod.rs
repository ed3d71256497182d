//! Encoding: records in, `COPY` rows out. Turns a DMS CSV stream (or a Parquet file read as
//! one) into PostgreSQL `COPY` text for the staging table, or, on the direct path, rows of the
//! target in text or binary. Runs on a blocking thread (parsing is CPU work); sends ~1 MiB
//! chunks over a bounded channel, so memory stays bounded whatever the file size: at most
//! [`CHANNEL_CHUNKS`] chunks in flight plus one record.
//!
//! # Layout
//!
//! - this file: the record loop ([`encode`]), what it sends ([`Chunk`]: the file's
//!   [`Layout`] first, then data or [`Segment`]s), what it read ([`Parsed`]) and its settings
//!   ([`EncodeSpec`], [`Direct`]);
//! - [`layout`]: deciding the file's layout, from the rules and the header or the first record;
//! - [`field`]: one field's checks (NULL, length, bytes, `bytea` hex), shared by both formats;
//! - [`text`]: PostgreSQL's text `COPY` rows;
//! - [`binary`]: PostgreSQL's binary `COPY` tuples, for the direct path;
//! - [`rejects`]: rejected records' stage rows, and those held until the layout is known.
//!
//! Must not: fetch or read an object's bytes (`read` does), run SQL or hold a transaction (the
//! loader sends the chunks to `COPY`), or retry anything.
//!
//! Per file it decides the layout once, from the rules and the first record:
//! - which target columns the file holds, in file order (rules' column list, header names, or
//!   every column in ordinal order);
//! - whether records start with DMS's `Op` field (`I`/`U`/`D`): by header name, or by count
//!   (one more field than columns). Full-load files without it are all inserts.
//!
//! Invariants: every record has exactly the layout's field count (the reader keeps the
//! positions of at most [`layout::max_file_fields`] fields of a data record, so a record of
//! millions of empty fields costs its bytes, not 16 bytes of bookkeeping per byte, and is a
//! `column_count` error); each field is valid UTF-8 without NUL (PostgreSQL refuses both in
//! text) after the table's byte policy (strip, replace, or the record is bad) or transcoding
//! from its source encoding ([`field`]); an unquoted field equal to the NULL marker is `\N`,
//! everything else (a quoted `"NULL"`, an empty quoted field) is data, escaped byte-exact.
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
pub mod field;
pub mod layout;
pub mod rejects;
pub mod text;

use crate::error::WorkerError;
use crate::read::csv::{CsvError, ReaderOptions, Record, RecordBuf, RecordReader};
use crate::read::document::DocumentPlan;
use crate::sql::TargetTable;
use binary::ColType;
use bytes::Bytes;
use field::{excerpt, Done};
use layout::{default_layout, layout_by_count, layout_from_header, max_file_fields};
use rejects::{
    is_record_error, write_hex, write_reject_head, write_reject_tail, Pending, PendingReject,
    RecordAt,
};
use sluice_common::rules::{OnError, TableRules};
use std::io::BufRead;
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
    pub binary: Option<Vec<ColType>>,
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

    /// The value of the field that versions the row, if the layout has one. The record has
    /// the layout's field count (checked before).
    fn version_of<'r>(&self, record: &Record<'r>) -> Option<&'r [u8]> {
        let first = usize::from(self.has_op);
        self.version_field.map(|j| {
            record
                .get(first + j)
                .expect("field count was checked")
                .value
        })
    }

    /// Indexes of the fields of a record of `len` fields that are staged, in order: every
    /// field after `Op` but a version-only timestamp field and the ignored ones. The `n`th
    /// fills target column `columns[n]`.
    fn staged(&self, len: usize) -> impl Iterator<Item = usize> + Clone + '_ {
        let first = usize::from(self.has_op);
        (first..len).filter(move |&i| {
            !(self.version_only && Some(i - first) == self.version_field)
                && self.ignored.binary_search(&(i - first)).is_err()
        })
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
    /// Write the rows (the stage's, or the target's on the direct path) in binary where every
    /// column has a binary type (never with rejects: their rows are text); a value without an
    /// exact binary form then ends the attempt ([`WorkerError::DirectUnfit`] with `value`), and
    /// the loader reads the file again in text.
    pub try_binary: bool,
}

/// The direct path: a file of inserts only, into a table that had no rows (or only its own
/// generation's), is copied into the target itself, each row with its system columns, so no
/// stage and no merge are needed. Each
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

impl EncodeSpec<'_> {
    fn rejects(&self) -> bool {
        self.rules.on_error == OnError::RejectRows
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
    fn record_done(&mut self, start: usize, at: RecordAt<'_>) -> bool {
        if self.segmented {
            let r = self.seg.raw.len();
            self.seg.raw.extend_from_slice(at.raw);
            self.seg.records.push(SegmentRecord {
                number: at.number,
                line: at.line,
                offset: at.offset,
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

    /// Writes a rejected record's stage row ([`rejects::write_reject_head`] and the rest).
    /// Without segments, the hex of a long record is sent in chunks as it is written, so a
    /// rejected record of the limit's size costs no second, doubled copy of itself. False when
    /// the receiver is gone.
    fn reject(&mut self, layout: &Layout, at: RecordAt<'_>, error: &WorkerError) -> bool {
        write_reject_head(&mut self.out, &at, error);
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
) -> Result<Parsed, WorkerError> {
    let options = ReaderOptions {
        delimiter: spec.rules.delimiter,
        terminator: spec.rules.row_delimiter,
        max_record_bytes: spec.max_record_bytes,
        ..ReaderOptions::default()
    };
    let mut reader = RecordReader::new(input, options);
    let csv_err = |e: CsvError| csv_error(spec.key, e);
    let mut header = None;
    if spec.rules.header {
        if let Some(h) = reader.next_record().map_err(csv_err)? {
            header = Some(layout_from_header(spec, &h)?);
        }
    }
    reader.set_max_fields(max_file_fields(spec, header.as_ref()));
    let mut parse = Parse::new(spec, tx, header);
    while let Some(record) = reader.next_record().map_err(csv_err)? {
        if !parse.record(&record)? {
            return Ok(parse.parsed);
        }
    }
    parse.finish(reader.bytes_read())
}

/// One file's parse in progress: what [`encode`] keeps from record to record.
struct Parse<'s, 't> {
    spec: &'s EncodeSpec<'s>,
    tx: &'t mpsc::Sender<Chunk>,
    output: Output<'t>,
    parsed: Parsed,
    /// The layout the header gave, if the file has one.
    header: Option<Layout>,
    /// The file's layout, once announced.
    layout: Option<Layout>,
    pending: Pending,
    /// Data records read so far.
    records: u64,
    scratch: Scratch,
}

/// Buffers reused from record to record.
#[derive(Default)]
struct Scratch {
    /// The unchanged columns of a `U` record.
    keep: Vec<usize>,
    /// A record with its document expanded.
    expanded: RecordBuf,
    /// A document's column values.
    doc_values: Vec<Option<String>>,
}

/// What became of a data record read before the layout was known.
enum First {
    /// The layout is announced: encode the record.
    Encode,
    /// The record is held as a reject until the layout is known.
    Held,
    /// The receiver is gone.
    Stop,
}

impl<'s, 't> Parse<'s, 't> {
    fn new(spec: &'s EncodeSpec<'s>, tx: &'t mpsc::Sender<Chunk>, header: Option<Layout>) -> Self {
        Parse {
            spec,
            tx,
            output: Output {
                tx,
                segmented: spec.segmented,
                seg: Segment::default(),
                out: Vec::with_capacity(CHUNK_BYTES + 4096),
            },
            parsed: Parsed {
                lines: LineMap::new(),
                ..Parsed::default()
            },
            header,
            layout: None,
            pending: Pending::default(),
            records: 0,
            scratch: Scratch::default(),
        }
    }

    /// Encodes one data record, or sets it aside as a reject; false when the receiver is gone.
    fn record(&mut self, record: &Record<'_>) -> Result<bool, WorkerError> {
        self.records += 1;
        let number = self.records;
        let line = record.line();
        self.parsed.lines.note(number, line);
        if self.layout.is_none() {
            match self.first(record)? {
                First::Encode => {}
                First::Held => return Ok(true),
                First::Stop => return Ok(false),
            }
        }
        let spec = self.spec;
        let l = self.layout.as_ref().expect("layout is set above");
        let start = self.output.out.len();
        let at = RecordAt {
            number,
            line,
            offset: record.byte_offset(),
            raw: record.raw(),
        };
        match encode_record(
            spec,
            l,
            record,
            number,
            &mut self.scratch,
            &mut self.output.out,
        ) {
            Ok(done) => {
                self.parsed.partial += u64::from(done.partial);
                self.parsed.repaired += done.repaired;
            }
            Err(e) if spec.rejects() && is_record_error(&e) => {
                self.output.out.truncate(start);
                if !self.output.reject(l, at, &e) {
                    return Ok(false);
                }
                self.parsed.rejected += 1;
            }
            Err(e) => return Err(e),
        }
        Ok(self.output.record_done(start, at))
    }

    /// The first data record: the layout from the header or from the record itself. A record
    /// error there is held as a reject (`reject_rows`), and the next record is tried.
    fn first(&mut self, record: &Record<'_>) -> Result<First, WorkerError> {
        let found = match &self.header {
            Some(l) => Ok(l.clone()),
            None => layout_by_count(self.spec, record, self.records, record.line()),
        };
        match found {
            Ok(l) => Ok(if self.announce(l) {
                First::Encode
            } else {
                First::Stop
            }),
            Err(e) if self.spec.rejects() && is_record_error(&e) => {
                let reject = PendingReject {
                    number: self.records,
                    line: record.line(),
                    offset: record.byte_offset(),
                    raw: record.raw().to_vec(),
                    error: e,
                };
                self.pending.hold(reject, self.spec.max_record_bytes)?;
                Ok(First::Held)
            }
            Err(e) => Err(e),
        }
    }

    /// Sends the layout (in the binary format, where the spec tries it, when every column has a
    /// binary type), then the rejects held until then; false when the receiver is gone.
    fn announce(&mut self, mut l: Layout) -> bool {
        if self.spec.try_binary && !self.spec.rejects() && !self.spec.segmented {
            l.binary = binary::column_types(self.spec.target, &l.columns);
            if l.binary.is_some() {
                self.output.out.extend_from_slice(binary::HEADER);
            }
        }
        if self.tx.blocking_send(Chunk::Layout(l.clone())).is_err() {
            return false;
        }
        let sent = write_pending(&mut self.pending, &l, &mut self.output, &mut self.parsed);
        self.layout = Some(l);
        sent
    }

    /// After the last record: a file without a good data record still announces its layout
    /// (the stage has to be made); the binary trailer; the last chunk.
    fn finish(mut self, bytes_read: u64) -> Result<Parsed, WorkerError> {
        if self.layout.is_none() {
            let l = self
                .header
                .take()
                .unwrap_or_else(|| default_layout(self.spec));
            if self.spec.direct.is_some() {
                // Text format: there are no rows to write.
                return Err(WorkerError::DirectUnfit {
                    key: self.spec.key.to_owned(),
                    record: 0,
                    value: false,
                });
            }
            if !self.announce(l) {
                return Ok(self.parsed);
            }
        }
        if self.layout.as_ref().is_some_and(|l| l.binary.is_some()) {
            self.output.out.extend_from_slice(binary::TRAILER);
        }
        if !self.output.flush() {
            return Ok(self.parsed);
        }
        self.parsed.records = self.records;
        self.parsed.bytes = bytes_read;
        Ok(self.parsed)
    }
}

/// Writes the records rejected before the layout was known; false when the receiver is gone.
fn write_pending(
    pending: &mut Pending,
    layout: &Layout,
    output: &mut Output<'_>,
    parsed: &mut Parsed,
) -> bool {
    for p in pending.drain() {
        let start = output.out.len();
        if !output.reject(layout, p.at(), &p.error) {
            return false;
        }
        parsed.rejected += 1;
        if !output.record_done(start, p.at()) {
            return false;
        }
    }
    true
}

/// One data record of the layout's field count as a row, its document (if any) expanded
/// first: a binary tuple on the direct path when the layout has binary types, else text.
fn encode_record(
    spec: &EncodeSpec<'_>,
    l: &Layout,
    record: &Record<'_>,
    number: u64,
    scratch: &mut Scratch,
    out: &mut Vec<u8>,
) -> Result<Done, WorkerError> {
    if record.field_count() != l.file_field_count() {
        return Err(WorkerError::ColumnCount {
            key: spec.key.to_owned(),
            table: spec.target.label(),
            record: number,
            line: record.line(),
            expected: l.file_field_count(),
            found: record.field_count(),
            value: excerpt(record.raw()),
        });
    }
    if spec.direct.is_some() && l.has_op && record.get(0).is_some_and(|f| f.value != b"I") {
        return Err(WorkerError::DirectUnfit {
            key: spec.key.to_owned(),
            record: number,
            value: false,
        });
    }
    let Some(doc) = &l.document else {
        return write_row(spec, l, record, number, &mut scratch.keep, out);
    };
    expand_document(spec, l, doc, record, scratch)?;
    let expanded = scratch.expanded.record(record);
    write_row(spec, l, &expanded, number, &mut scratch.keep, out)
}

/// Writes a record whose fields are the layout's: binary or text.
fn write_row(
    spec: &EncodeSpec<'_>,
    layout: &Layout,
    record: &Record<'_>,
    number: u64,
    keep: &mut Vec<usize>,
    out: &mut Vec<u8>,
) -> Result<Done, WorkerError> {
    match (&layout.binary, spec.direct) {
        (Some(types), Some(direct)) => {
            let tuple = binary::Tuple {
                spec,
                layout,
                types,
                direct,
            };
            tuple.write(record, number, out)
        }
        (Some(types), None) => {
            binary::write_stage(spec, (layout, types), record, number, keep, out)
        }
        (None, _) => text::encode_record(spec, layout, record, number, keep, out),
    }
}

/// The record with its document field replaced by the document's column values (quoted, so
/// that only NULL is the unquoted NULL marker), into `scratch.expanded`.
fn expand_document(
    spec: &EncodeSpec<'_>,
    layout: &Layout,
    doc: &DocShape,
    record: &Record<'_>,
    scratch: &mut Scratch,
) -> Result<(), WorkerError> {
    let null = spec.rules.null.as_bytes();
    let at = usize::from(layout.has_op) + doc.field;
    let (values, out) = (&mut scratch.doc_values, &mut scratch.expanded);
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
            .map_err(|e| WorkerError::BadDocument {
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

fn csv_error(key: &str, e: CsvError) -> WorkerError {
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
    WorkerError::Csv {
        key: key.to_owned(),
        reason: e.to_string(),
        record,
        line,
        class,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::Column;
    use sluice_common::rules::{Encoding, InvalidBytes};

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
                    is_enum: false,
                    base: None,
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
    ) -> Result<(Option<Layout>, String, Parsed), WorkerError> {
        let (tx, mut rx) = mpsc::channel(1024);
        let spec = EncodeSpec {
            key: "k.csv",
            target,
            rules,
            max_record_bytes: 1 << 20,
            segmented: false,
            direct: None,
            try_binary: false,
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
                WorkerError::BadOperation {
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
                WorkerError::ColumnCount {
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
                WorkerError::ColumnCount {
                    expected: 2,
                    found: 1,
                    ..
                }
            ),
            "{e}"
        );
        let e = run("I,1,a\nQ,2,b\n", &t, &TableRules::default()).unwrap_err();
        assert!(
            matches!(e, WorkerError::BadOperation { record: 2, .. }),
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
                matches!(e, WorkerError::ColumnCount { record: r, expected: x, found, .. }
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
            matches!(e, WorkerError::ColumnCount { expected: 2, found, .. } if found == 1_000_001),
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
            try_binary: false,
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
        assert!(
            matches!(e, WorkerError::ColumnCount { record: 2, .. }),
            "{e}"
        );
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
            try_binary: false,
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
                WorkerError::ColumnCount {
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
            try_binary: false,
        };
        let e = encode(&b"1,a\x00b\n"[..], &spec, &tx).unwrap_err();
        assert!(
            matches!(&e, WorkerError::BadBytes { column, .. } if column == "note"),
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
        assert!(matches!(e, WorkerError::UnknownColumn { .. }), "{e}");
        let e = run("note\nx\n", &t, &rules).unwrap_err();
        assert!(matches!(e, WorkerError::MissingKeyColumn { .. }), "{e}");
    }

    #[test]
    fn under_add_every_name_the_target_lacks_is_reported_after_the_key_check() {
        use sluice_common::rules::NewColumns;
        let t = table(&["id", "note"]);
        let rules = TableRules {
            header: true,
            new_columns: NewColumns::Add,
            ..TableRules::default()
        };
        let e = run(
            "Op,id,email,NOTE,score,email
I,1,a,b,2,a
",
            &t,
            &rules,
        )
        .unwrap_err();
        match e {
            WorkerError::NewColumns { columns, .. } => {
                let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
                assert_eq!(names, ["email", "score", "email"]);
                assert!(columns.iter().all(|c| c.sql_type.is_none()));
            }
            other => panic!("{other}"),
        }
        // A missing key column is the error, not the new columns.
        let e = run(
            "note,email
x,y
",
            &t,
            &rules,
        )
        .unwrap_err();
        assert!(matches!(e, WorkerError::MissingKeyColumn { .. }), "{e}");
        // A column list names the columns: nothing is added from it.
        let listed = TableRules {
            columns: Some(vec!["id".into(), "email".into()]),
            ..rules.clone()
        };
        let e = run(
            "id,email
1,y
",
            &t,
            &listed,
        )
        .unwrap_err();
        assert!(matches!(e, WorkerError::UnknownColumn { .. }), "{e}");
        // Without a header, more fields than columns cannot be named.
        let headerless = TableRules {
            header: false,
            ..rules
        };
        for body in ["I,1,x,extra\n", "1,x,extra\n"] {
            let e = run(body, &t, &headerless).unwrap_err();
            assert_eq!(e.class(), "column_count", "{e}");
            assert!(e.to_string().contains("no header"), "{e}");
        }
        // ... but a record that fits, with Op, still loads.
        assert!(run("I,1,x\n", &t, &headerless).is_ok());
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
            matches!(&e, WorkerError::BadVersion { record: 1, line: 2, value, .. } if value == "yesterday"),
            "{e}"
        );
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
            try_binary: false,
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
            matches!(e, WorkerError::NullNotAllowed { record: 2, .. }),
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
                try_binary: false,
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
            try_binary: false,
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
                WorkerError::FieldTooLong {
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
            try_binary: false,
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
}
