//! Streaming CSV record reader for AWS DMS output files.
//!
//! This module owns the lowest layer of loading a DMS file: cutting a
//! (decompressed) byte stream into records and fields. It knows nothing about
//! tables, column types or SQL; the caller checks field counts, validates
//! UTF-8 and maps fields to columns.
//!
//! # Grammar (RFC 4180, with the leniencies DMS output needs)
//!
//! * A record ends at an unquoted LF. An unquoted CR immediately before that
//!   LF belongs to the terminator (CRLF); a lone CR anywhere else outside
//!   quotes is data. With another [`ReaderOptions::terminator`] (DMS
//!   `CsvRowDelimiter`), that byte ends a record, CR is always data, and
//!   "lines" below count that byte instead of LF.
//! * The final record may lack a terminator. An empty stream has no records.
//!   A completely empty line (only LF or CRLF) is skipped: it is no record and
//!   does not advance the record number, but it is a physical line. A line
//!   holding only `""` is a record with one empty quoted field.
//! * Fields are separated by the delimiter. `a,b,` has three fields, the last
//!   one empty and unquoted. The number of fields is not checked here.
//! * A field is quoted when its first byte is the quote char. Inside quotes a
//!   doubled quote stands for one quote char, and every other byte (delimiter,
//!   CR, LF, tab, backslash, NUL, invalid UTF-8, ...) is data. After the
//!   closing quote the next byte must be the delimiter, LF, CR+LF or the end
//!   of the stream; anything else is [`CsvError::AfterQuote`]. The end of the
//!   stream inside quotes is [`CsvError::UnterminatedQuote`].
//! * A quote char in the middle of an unquoted field (`ab"c`) is taken
//!   literally, and the field stays unquoted.
//!
//! Every [`Field`] says whether it was quoted, because DMS writes SQL NULL as
//! an unquoted `NULL` and the four-letter string as a quoted `"NULL"`. That
//! distinction, the exact positions and the raw bytes of each record are what
//! the `csv` crate does not expose, and it also treats a lone CR as a record
//! terminator; hence this reader.
//!
//! # Invariants
//!
//! * Bytes, not `str`: field values are passed through untouched apart from
//!   unescaping doubled quotes.
//! * Bounded memory: the reader keeps one raw-record buffer, one buffer of
//!   unescaped values and one vector of field positions, all reused from
//!   record to record (no allocation per record in steady state). A record
//!   whose bytes, terminator excluded, exceed
//!   [`ReaderOptions::max_record_bytes`] is [`CsvError::RecordTooLong`]; the
//!   reader never looks more than `max_record_bytes + 2` bytes into a record,
//!   so no buffer grows past that. Field positions (16 bytes each, where a
//!   field may take one byte: a record of commas) are kept for the first
//!   [`ReaderOptions::max_fields`] fields only; the fields beyond are counted,
//!   not kept, so [`Record::field_count`] is exact while [`Record::len`] (what
//!   [`Record::get`] and [`Record::iter`] see) is at most `max_fields`. A
//!   caller that knows how many fields a record must have sets that many (plus
//!   one, to tell "too many" from "exact") with [`RecordReader::set_max_fields`].
//! * Positions: [`Record::record_number`] counts records returned (blank lines
//!   excluded), [`Record::line`] is the 1-based physical line (LF count) where
//!   the record starts, LFs embedded in quoted fields included, and
//!   [`Record::byte_offset`] is the offset of its first byte in the stream.
//!   [`Record::raw`] is the record's original bytes without its terminator.
//! * After an error the reader is in an unspecified (but memory-safe) state;
//!   callers stop reading.
//!
//! # Layout
//!
//! This file holds the reader (options, errors, records, the stream and its buffers);
//! [`scan`] the state machine that cuts one chunk of bytes into fields.

mod scan;

use scan::{AtEnd, FieldPos, Fields, Scanner, Syntax, CR, LF, POS_MASK};
use std::fmt;
use std::io::{self, BufRead};

/// Configuration of a [`RecordReader`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReaderOptions {
    /// Field separator, `,` by default.
    pub delimiter: u8,
    /// Quote char, `"` by default.
    pub quote: u8,
    /// Record terminator outside quotes, LF by default (which also accepts CRLF).
    pub terminator: u8,
    /// Largest accepted record, in bytes of the stream excluding the record
    /// terminator (64 MiB by default). On 32-bit targets it is capped at
    /// 1 GiB.
    pub max_record_bytes: usize,
    /// Fields whose positions are kept per record ([`DEFAULT_MAX_FIELDS`] by
    /// default); more are counted only. At least 1.
    pub max_fields: usize,
}

/// Default [`ReaderOptions::max_fields`]: 1 MiB of positions.
pub const DEFAULT_MAX_FIELDS: usize = 1 << 16;

impl Default for ReaderOptions {
    fn default() -> Self {
        ReaderOptions {
            delimiter: b',',
            quote: b'"',
            terminator: LF,
            max_record_bytes: 64 * 1024 * 1024,
            max_fields: DEFAULT_MAX_FIELDS,
        }
    }
}

/// Errors of [`RecordReader::next_record`]. `record` is the 1-based number the
/// failing record would have had and `line` the physical line it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CsvError {
    /// The underlying reader failed; `message` is the `io::Error` text.
    Io { message: String },
    /// The stream ended inside a quoted field.
    UnterminatedQuote { record: u64, line: u64 },
    /// A byte other than the delimiter, LF, CRLF or end of stream followed a
    /// closing quote. `column` is the 1-based index of the field in the
    /// record and `byte` the offending byte.
    AfterQuote {
        record: u64,
        line: u64,
        column: usize,
        byte: u8,
    },
    /// The record is longer than `limit` bytes.
    RecordTooLong {
        record: u64,
        line: u64,
        limit: usize,
    },
}

impl fmt::Display for CsvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CsvError::Io { message } => write!(f, "i/o error while reading csv: {message}"),
            CsvError::UnterminatedQuote { record, line } => write!(
                f,
                "unterminated quoted field in record {record} starting at line {line}"
            ),
            CsvError::AfterQuote {
                record,
                line,
                column,
                byte,
            } => {
                if byte.is_ascii_graphic() || *byte == b' ' {
                    write!(f, "unexpected character '{}'", char::from(*byte))?;
                } else {
                    write!(f, "unexpected byte 0x{byte:02x}")?;
                }
                write!(
                    f,
                    " after closing quote in column {column} of record {record} starting at line {line}"
                )
            }
            CsvError::RecordTooLong {
                record,
                line,
                limit,
            } => write!(
                f,
                "record {record} starting at line {line} is longer than the limit of {limit} bytes"
            ),
        }
    }
}

impl std::error::Error for CsvError {}

/// One field of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field<'a> {
    /// The field's bytes, quotes removed and doubled quotes unescaped.
    pub value: &'a [u8],
    /// Whether the field was enclosed in quotes in the stream.
    pub quoted: bool,
}

/// A record: a view of the reader's buffers, valid until the next call of
/// [`RecordReader::next_record`].
#[derive(Clone, Copy)]
pub struct Record<'a> {
    raw: &'a [u8],
    data: &'a [u8],
    fields: &'a [FieldPos],
    /// Fields of the record, those beyond `fields` (not kept) included.
    count: usize,
    number: u64,
    line: u64,
    offset: u64,
}

impl<'a> Record<'a> {
    /// Number of fields kept (at least 1): all of them unless the record has
    /// more than [`ReaderOptions::max_fields`] (see [`Record::field_count`]).
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Number of fields of the record, counted even where their positions
    /// were not kept (more than [`ReaderOptions::max_fields`]).
    pub fn field_count(&self) -> usize {
        self.count
    }

    /// Whether the record has no field (never true for a record returned by
    /// the reader, which always has at least one).
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// The field at 0-based index `i`.
    pub fn get(&self, i: usize) -> Option<Field<'a>> {
        self.fields
            .get(i)
            .map(|pos| resolve(self.raw, self.data, *pos))
    }

    /// The fields in order.
    pub fn iter(&self) -> impl Iterator<Item = Field<'a>> {
        let (raw, data) = (self.raw, self.data);
        self.fields.iter().map(move |pos| resolve(raw, data, *pos))
    }

    /// 1-based count of records returned so far, this one included (blank
    /// lines do not count).
    pub fn record_number(&self) -> u64 {
        self.number
    }

    /// 1-based physical line on which the record starts.
    pub fn line(&self) -> u64 {
        self.line
    }

    /// Offset of the record's first byte in the stream.
    pub fn byte_offset(&self) -> u64 {
        self.offset
    }

    /// The record's exact original bytes, quotes included, terminating LF or
    /// CRLF excluded.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }
}

/// The fields of a record made by the caller rather than read from a stream (a record whose
/// fields were transformed); [`RecordBuf::record`] views it as a [`Record`] with the original
/// record's position and raw bytes. Buffers are reused from record to record.
#[derive(Debug, Default)]
pub struct RecordBuf {
    data: Vec<u8>,
    fields: Vec<FieldPos>,
}

impl RecordBuf {
    pub fn clear(&mut self) {
        self.data.clear();
        self.fields.clear();
    }

    pub fn push(&mut self, value: &[u8], quoted: bool) {
        let start = self.data.len();
        self.data.extend_from_slice(value);
        self.fields
            .push(FieldPos::new(start, self.data.len(), quoted, true));
    }

    /// This buffer's fields as a record at the place of `original`.
    pub fn record<'a>(&'a self, original: &Record<'a>) -> Record<'a> {
        Record {
            raw: original.raw,
            data: &self.data,
            fields: &self.fields,
            count: self.fields.len(),
            number: original.number,
            line: original.line,
            offset: original.offset,
        }
    }
}

impl fmt::Debug for Record<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Fields<'r, 'a>(&'r Record<'a>);
        impl fmt::Debug for Fields<'_, '_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_list()
                    .entries(
                        self.0
                            .iter()
                            .map(|field| (String::from_utf8_lossy(field.value), field.quoted)),
                    )
                    .finish()
            }
        }
        f.debug_struct("Record")
            .field("record_number", &self.number)
            .field("line", &self.line)
            .field("byte_offset", &self.offset)
            .field("fields", &Fields(self))
            .finish()
    }
}

#[inline]
fn resolve<'a>(raw: &'a [u8], data: &'a [u8], pos: FieldPos) -> Field<'a> {
    let (range, in_data) = pos.range();
    let value = if in_data { &data[range] } else { &raw[range] };
    Field {
        value,
        quoted: pos.quoted(),
    }
}

/// How reading one physical record ended.
enum Outcome {
    /// Clean end of stream before any byte of a record.
    Eof,
    /// An empty line, to be skipped.
    Blank,
    /// A record is in the buffers.
    Record,
}

/// Streaming CSV record reader over a [`BufRead`]. See the module docs for
/// the grammar.
pub struct RecordReader<R: BufRead> {
    reader: R,
    delimiter: u8,
    quote: u8,
    terminator: u8,
    /// Effective `max_record_bytes`.
    limit: usize,
    /// Raw bytes of the current record (terminator stripped once complete).
    raw: Vec<u8>,
    /// Unescaped values of quoted fields that had doubled quotes.
    data: Vec<u8>,
    fields: Fields,
    scanner: Scanner,
    bytes_read: u64,
    lines_read: u64,
    records: u64,
    /// Start line and byte offset of the record being read.
    record_line: u64,
    record_offset: u64,
}

impl<R: BufRead> RecordReader<R> {
    /// Creates a reader over `reader`.
    ///
    /// # Panics
    ///
    /// If the delimiter equals the quote char, or either is CR or LF.
    pub fn new(reader: R, options: ReaderOptions) -> Self {
        let ReaderOptions {
            delimiter,
            quote,
            terminator,
            max_record_bytes,
            max_fields,
        } = options;
        assert!(
            delimiter != quote,
            "csv delimiter and quote char must differ"
        );
        assert!(
            ![CR, LF].contains(&delimiter) && ![CR, LF].contains(&quote),
            "csv delimiter and quote char must not be CR or LF"
        );
        assert!(
            terminator != CR && terminator != delimiter && terminator != quote,
            "csv terminator must differ from CR, the delimiter and the quote char"
        );
        RecordReader {
            reader,
            delimiter,
            quote,
            terminator,
            // Positions must leave the two flag bits of `FieldPos` free.
            limit: max_record_bytes.min(POS_MASK - 2),
            raw: Vec::new(),
            data: Vec::new(),
            fields: Fields {
                kept: Vec::new(),
                count: 0,
                cap: max_fields.max(1),
            },
            scanner: Scanner::new(),
            bytes_read: 0,
            lines_read: 0,
            records: 0,
            record_line: 1,
            record_offset: 0,
        }
    }

    /// Reads the next record; `Ok(None)` at the end of the stream.
    pub fn next_record(&mut self) -> Result<Option<Record<'_>>, CsvError> {
        loop {
            self.raw.clear();
            self.data.clear();
            self.fields.clear();
            self.scanner.reset();
            self.record_line = self.lines_read + 1;
            self.record_offset = self.bytes_read;
            match self.read_record()? {
                Outcome::Eof => return Ok(None),
                Outcome::Blank => self.lines_read += 1,
                Outcome::Record => break,
            }
        }
        self.records += 1;
        self.lines_read += self.scanner.newlines + 1;
        Ok(Some(Record {
            raw: &self.raw,
            data: &self.data,
            fields: &self.fields.kept,
            count: self.fields.count,
            number: self.records,
            line: self.record_line,
            offset: self.record_offset,
        }))
    }

    /// Changes [`ReaderOptions::max_fields`] for the records read from now on.
    pub fn set_max_fields(&mut self, max_fields: usize) {
        self.fields.cap = max_fields.max(1);
    }

    /// Total bytes of the stream consumed so far.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    /// Physical lines consumed so far (a final line without LF counts).
    pub fn lines_read(&self) -> u64 {
        self.lines_read
    }

    /// Reads one physical record (possibly a blank line) into the buffers.
    fn read_record(&mut self) -> Result<Outcome, CsvError> {
        // A record within the limit, with its terminator, fits in `cap`
        // bytes; never look further than that.
        let cap = self.limit + 2;
        loop {
            let buf = match self.reader.fill_buf() {
                Ok(buf) => buf,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(CsvError::Io {
                        message: e.to_string(),
                    })
                }
            };
            if buf.is_empty() {
                return self.finish_at_eof();
            }
            let window = &buf[..buf.len().min(cap - self.raw.len())];
            let step = self
                .scanner
                .scan(
                    &self.raw,
                    window,
                    &mut self.data,
                    &mut self.fields,
                    Syntax {
                        delimiter: self.delimiter,
                        quote: self.quote,
                        term: self.terminator,
                    },
                )
                .map_err(|bad| CsvError::AfterQuote {
                    record: self.records + 1,
                    line: self.record_line,
                    column: bad.column,
                    byte: bad.byte,
                })?;
            self.raw.extend_from_slice(&window[..step.consumed]);
            self.reader.consume(step.consumed);
            self.bytes_read += step.consumed as u64;
            if step.done {
                let terminator = if self.scanner.crlf { 2 } else { 1 };
                let len = self.raw.len() - terminator;
                if len == 0 {
                    return Ok(Outcome::Blank);
                }
                return self.complete(len);
            }
            if self.raw.len() >= cap {
                return Err(self.too_long());
            }
        }
    }

    /// Ends the record at the end of the stream.
    fn finish_at_eof(&mut self) -> Result<Outcome, CsvError> {
        let end = self.raw.len();
        match self.scanner.finish(end, &self.data, &mut self.fields) {
            AtEnd::Nothing => Ok(Outcome::Eof),
            AtEnd::Record => self.complete(end),
            AtEnd::InQuotes => Err(CsvError::UnterminatedQuote {
                record: self.records + 1,
                line: self.record_line,
            }),
            AtEnd::AfterQuoteCr => Err(CsvError::AfterQuote {
                record: self.records + 1,
                line: self.record_line,
                column: self.fields.count + 1,
                byte: CR,
            }),
        }
    }

    /// Checks the length of the record, whose bytes without terminator are
    /// the first `len` of the raw buffer, and drops the terminator.
    fn complete(&mut self, len: usize) -> Result<Outcome, CsvError> {
        if len > self.limit {
            return Err(self.too_long());
        }
        self.raw.truncate(len);
        Ok(Outcome::Record)
    }

    fn too_long(&self) -> CsvError {
        CsvError::RecordTooLong {
            record: self.records + 1,
            line: self.record_line,
            limit: self.limit,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufReader, Read};

    /// An owned copy of a record, for comparisons.
    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Rec {
        fields: Vec<(Vec<u8>, bool)>,
        number: u64,
        line: u64,
        offset: u64,
        raw: Vec<u8>,
    }

    impl Rec {
        fn values(&self) -> Vec<Vec<u8>> {
            self.fields.iter().map(|(v, _)| v.clone()).collect()
        }
    }

    /// Everything a run of the reader produced.
    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Run {
        records: Vec<Rec>,
        error: Option<CsvError>,
        /// `bytes_read` and `lines_read` at clean EOF (None after an error).
        totals: Option<(u64, u64)>,
    }

    fn run_reader<R: BufRead>(reader: R, options: ReaderOptions) -> Run {
        let mut rdr = RecordReader::new(reader, options);
        let mut records = Vec::new();
        loop {
            match rdr.next_record() {
                Ok(Some(rec)) => {
                    assert_eq!(rec.len(), rec.iter().count());
                    assert!(!rec.is_empty());
                    assert!(rec.get(rec.len()).is_none());
                    for (i, f) in rec.iter().enumerate() {
                        assert_eq!(rec.get(i), Some(f));
                    }
                    records.push(Rec {
                        fields: rec.iter().map(|f| (f.value.to_vec(), f.quoted)).collect(),
                        number: rec.record_number(),
                        line: rec.line(),
                        offset: rec.byte_offset(),
                        raw: rec.raw().to_vec(),
                    });
                }
                Ok(None) => {
                    // EOF is sticky.
                    assert!(rdr.next_record().unwrap().is_none());
                    let totals = Some((rdr.bytes_read(), rdr.lines_read()));
                    return Run {
                        records,
                        error: None,
                        totals,
                    };
                }
                Err(e) => {
                    return Run {
                        records,
                        error: Some(e),
                        totals: None,
                    }
                }
            }
        }
    }

    /// Runs the reader over `input` with several buffer capacities, checks
    /// they all agree and returns the result.
    fn run_with(input: &[u8], options: ReaderOptions) -> Run {
        let whole = run_reader(input, options);
        for cap in [1, 2, 3, 7, 8192] {
            let run = run_reader(BufReader::with_capacity(cap, input), options);
            assert_eq!(run, whole, "buffer capacity {cap} disagrees");
        }
        if let Some((bytes, _)) = whole.totals {
            assert_eq!(bytes, input.len() as u64);
        }
        whole
    }

    fn run(input: &[u8]) -> Run {
        run_with(input, ReaderOptions::default())
    }

    /// Records of a stream that must parse without error.
    fn ok(input: &[u8]) -> Vec<Rec> {
        let run = run(input);
        assert_eq!(
            run.error,
            None,
            "input {:?}",
            String::from_utf8_lossy(input)
        );
        run.records
    }

    fn err(input: &[u8]) -> CsvError {
        run(input).error.expect("an error")
    }

    fn u(v: &[u8]) -> (Vec<u8>, bool) {
        (v.to_vec(), false)
    }

    fn q(v: &[u8]) -> (Vec<u8>, bool) {
        (v.to_vec(), true)
    }

    fn fields(input: &[u8]) -> Vec<Vec<(Vec<u8>, bool)>> {
        ok(input).into_iter().map(|r| r.fields).collect()
    }

    /// (record number, line, byte offset) of each record.
    fn positions(input: &[u8]) -> Vec<(u64, u64, u64)> {
        ok(input)
            .iter()
            .map(|r| (r.number, r.line, r.offset))
            .collect()
    }

    fn totals(input: &[u8]) -> (u64, u64) {
        run(input).totals.unwrap()
    }

    #[test]
    fn defaults() {
        let o = ReaderOptions::default();
        assert_eq!((o.delimiter, o.quote), (b',', b'"'));
        assert_eq!(o.max_record_bytes, 64 * 1024 * 1024);
    }

    #[test]
    fn simple_records() {
        assert_eq!(
            fields(b"a,b,c\n1,22,333\n"),
            vec![
                vec![u(b"a"), u(b"b"), u(b"c")],
                vec![u(b"1"), u(b"22"), u(b"333")]
            ]
        );
    }

    #[test]
    fn empty_stream_has_no_records() {
        assert_eq!(
            run(b""),
            Run {
                records: vec![],
                error: None,
                totals: Some((0, 0))
            }
        );
    }

    #[test]
    fn null_quoted_and_unquoted() {
        assert_eq!(
            fields(b"1,NULL,\"NULL\",null\n"),
            vec![vec![u(b"1"), u(b"NULL"), q(b"NULL"), u(b"null")]]
        );
    }

    #[test]
    fn empty_fields() {
        assert_eq!(
            fields(b"\"\",,\"\"\n,\n"),
            vec![vec![q(b""), u(b""), q(b"")], vec![u(b""), u(b"")]]
        );
        // A line holding only "" is a record with one empty quoted field.
        assert_eq!(fields(b"\"\"\n"), vec![vec![q(b"")]]);
        assert_eq!(fields(b"\"\""), vec![vec![q(b"")]]);
        assert_eq!(fields(b"\"\"\r\n"), vec![vec![q(b"")]]);
    }

    #[test]
    fn trailing_delimiter_gives_an_empty_last_field() {
        assert_eq!(
            fields(b"a,b,\na,\"b\",\n"),
            vec![
                vec![u(b"a"), u(b"b"), u(b"")],
                vec![u(b"a"), q(b"b"), u(b"")]
            ]
        );
        assert_eq!(fields(b"a,b,"), vec![vec![u(b"a"), u(b"b"), u(b"")]]);
        assert_eq!(fields(b"a,\r\n"), vec![vec![u(b"a"), u(b"")]]);
        assert_eq!(fields(b","), vec![vec![u(b""), u(b"")]]);
    }

    #[test]
    fn doubled_quotes() {
        assert_eq!(
            fields(b"\"a\"\"b\",\"\"\"\"\n\"\"\"x\",\"y\"\"\",\"\"\"\"\"\"\n"),
            vec![
                vec![q(b"a\"b"), q(b"\"")],
                vec![q(b"\"x"), q(b"y\""), q(b"\"\"")]
            ]
        );
        assert_eq!(
            fields(b"\"say \"\"hi\"\", then \"\"bye\"\"\",z"),
            vec![vec![q(b"say \"hi\", then \"bye\""), u(b"z")]]
        );
    }

    #[test]
    fn quoted_fields_hold_any_bytes() {
        assert_eq!(
            fields(b"\"a,b\",\"tab\there\",\"back\\slash\\\",\"cr\rlf\n\"\n"),
            vec![vec![
                q(b"a,b"),
                q(b"tab\there"),
                q(b"back\\slash\\"),
                q(b"cr\rlf\n")
            ]]
        );
    }

    #[test]
    fn unquoted_fields_keep_tabs_backslashes_and_spaces() {
        assert_eq!(
            fields(b"  ,\t,a\\b, x \n   \n"),
            vec![
                vec![u(b"  "), u(b"\t"), u(b"a\\b"), u(b" x ")],
                vec![u(b"   ")]
            ]
        );
    }

    #[test]
    fn quote_inside_unquoted_field_is_literal() {
        assert_eq!(
            fields(b"ab\"c,a\"\"b,x\"\n"),
            vec![vec![u(b"ab\"c"), u(b"a\"\"b"), u(b"x\"")]]
        );
    }

    #[test]
    fn embedded_newlines_advance_lines() {
        let input = b"1,\"two\nlines\"\n2,\"three\r\nlines\r\nhere\"\r\n3,x\n\"\n\",\"\n\"\n4\n";
        let recs = ok(input);
        assert_eq!(recs.len(), 5);
        assert_eq!(recs[0].fields, vec![u(b"1"), q(b"two\nlines")]);
        assert_eq!(recs[1].fields, vec![u(b"2"), q(b"three\r\nlines\r\nhere")]);
        assert_eq!(recs[2].fields, vec![u(b"3"), u(b"x")]);
        assert_eq!(recs[3].fields, vec![q(b"\n"), q(b"\n")]);
        assert_eq!(recs[4].fields, vec![u(b"4")]);
        let lines: Vec<u64> = recs.iter().map(|r| r.line).collect();
        assert_eq!(lines, vec![1, 3, 6, 7, 10]);
        assert_eq!(totals(input), (input.len() as u64, 10));
    }

    #[test]
    fn crlf_terminators() {
        let input = b"a,b\r\n\"c\",\"d\"\r\n\r\ne,\r\n";
        assert_eq!(
            fields(input),
            vec![
                vec![u(b"a"), u(b"b")],
                vec![q(b"c"), q(b"d")],
                vec![u(b"e"), u(b"")]
            ]
        );
        assert_eq!(positions(input), vec![(1, 1, 0), (2, 2, 5), (3, 4, 16)]);
        assert_eq!(totals(input), (input.len() as u64, 4));
        let recs = ok(input);
        assert_eq!(recs[0].raw, b"a,b");
        assert_eq!(recs[1].raw, b"\"c\",\"d\"");
        assert_eq!(recs[2].raw, b"e,");
    }

    #[test]
    fn lone_cr_is_data() {
        assert_eq!(
            fields(b"a\rb,c\r\r\nd\r\n\r\r\ne\r"),
            vec![
                vec![u(b"a\rb"), u(b"c\r")],
                vec![u(b"d")],
                vec![u(b"\r")],
                vec![u(b"e\r")]
            ]
        );
        // Only CR on a line: not blank, one field holding CR.
        assert_eq!(fields(b"\r\n\r"), vec![vec![u(b"\r")]]);
        assert_eq!(fields(b"\r"), vec![vec![u(b"\r")]]);
    }

    #[test]
    fn no_trailing_newline() {
        let input = b"a,b\nc,\"d\"";
        assert_eq!(
            fields(input),
            vec![vec![u(b"a"), u(b"b")], vec![u(b"c"), q(b"d")]]
        );
        assert_eq!(totals(input), (input.len() as u64, 2));
        assert_eq!(fields(b"x"), vec![vec![u(b"x")]]);
        assert_eq!(totals(b"x"), (1, 1));
    }

    #[test]
    fn blank_lines_are_skipped() {
        let input = b"\n\r\na\n\n\nb\r\n\r\n\nc\n\n";
        let recs = ok(input);
        assert_eq!(
            recs.iter().map(Rec::values).collect::<Vec<_>>(),
            vec![
                vec![b"a".to_vec()],
                vec![b"b".to_vec()],
                vec![b"c".to_vec()]
            ]
        );
        assert_eq!(positions(input), vec![(1, 3, 3), (2, 6, 7), (3, 9, 13)]);
        assert_eq!(totals(input), (input.len() as u64, 10));
        // Only blank lines: no record, but lines are counted.
        assert_eq!(
            run(b"\n\r\n\n"),
            Run {
                records: vec![],
                error: None,
                totals: Some((4, 3))
            }
        );
    }

    #[test]
    fn raw_bytes_are_exact() {
        let input = b"1,\"a\"\"b\",NULL\r\n\"x\ny\",  z \n\"\"\nlast,\"\"";
        let raws: Vec<Vec<u8>> = ok(input).into_iter().map(|r| r.raw).collect();
        assert_eq!(
            raws,
            vec![
                b"1,\"a\"\"b\",NULL".to_vec(),
                b"\"x\ny\",  z ".to_vec(),
                b"\"\"".to_vec(),
                b"last,\"\"".to_vec()
            ]
        );
    }

    #[test]
    fn byte_offsets_are_exact() {
        let input = b"ab,c\n\n\"d\ne\",f\r\ng\n\r\n\"h\"";
        let recs = ok(input);
        let offsets: Vec<u64> = recs.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, vec![0, 6, 15, 19]);
        for r in &recs {
            let start = r.offset as usize;
            assert_eq!(&input[start..start + r.raw.len()], &r.raw[..]);
        }
        assert_eq!(
            positions(input),
            vec![(1, 1, 0), (2, 3, 6), (3, 5, 15), (4, 7, 19)]
        );
    }

    fn limited(limit: usize) -> ReaderOptions {
        ReaderOptions {
            max_record_bytes: limit,
            ..ReaderOptions::default()
        }
    }

    #[test]
    fn fields_beyond_max_fields_are_counted_not_kept() {
        // A record of a million empty fields, then a normal one.
        let mut input = vec![b','; 1_000_000];
        input.extend_from_slice(b"\n\"x\",y\n1,\"a\"z\n");
        let options = ReaderOptions {
            max_fields: 3,
            ..ReaderOptions::default()
        };
        let mut rdr = RecordReader::new(&input[..], options);
        let rec = rdr.next_record().unwrap().unwrap();
        assert_eq!((rec.len(), rec.field_count()), (3, 1_000_001));
        assert_eq!(rec.iter().count(), 3);
        assert!(rec.get(3).is_none());
        assert_eq!(rec.raw().len(), 1_000_000);
        assert!(
            rdr.fields.kept.capacity() <= 4,
            "positions kept: {}",
            rdr.fields.kept.capacity()
        );
        // The reader goes on at the next record, which fits.
        let rec = rdr.next_record().unwrap().unwrap();
        assert_eq!((rec.len(), rec.field_count()), (2, 2));
        assert_eq!(
            rec.get(0),
            Some(Field {
                value: b"x",
                quoted: true
            })
        );
        assert_eq!((rec.record_number(), rec.line()), (2, 2));
        // Columns in errors count every field, kept or not.
        rdr.set_max_fields(1);
        assert_eq!(
            rdr.next_record().unwrap_err(),
            CsvError::AfterQuote {
                record: 3,
                line: 3,
                column: 2,
                byte: b'z'
            }
        );
        // Every buffer capacity agrees on the counts.
        for cap in [1, 7, 8192] {
            let mut rdr = RecordReader::new(BufReader::with_capacity(cap, &input[..]), options);
            let rec = rdr.next_record().unwrap().unwrap();
            assert_eq!((rec.len(), rec.field_count()), (3, 1_000_001), "{cap}");
        }
    }

    #[test]
    fn record_at_the_limit_is_accepted() {
        for input in [
            &b"abcde\n"[..],
            b"abcde\r\n",
            b"abcde",
            b"\"a\"\"\"\n",
            b"\"abc\"\r\n",
            b"\"abc\"",
            b"\"a\nb\"",
            b"a,b,c",
            b"abcd\r",
        ] {
            let run = run_with(input, limited(5));
            assert_eq!(run.error, None, "{:?}", String::from_utf8_lossy(input));
            assert_eq!(run.records.len(), 1);
        }
    }

    #[test]
    fn record_too_long() {
        for input in [
            &b"ok\nabcdef\n"[..],
            b"ok\nabcdef\r\n",
            b"ok\nabcdef",
            b"ok\n\"abcd\"\n",
            b"ok\n\"abcd\"\r\n",
            b"ok\n\"abcd\"",
            b"ok\n\"a\"\"bc\"\n",
            b"ok\n\"abc\nd\"",
            b"ok\nab,c,d\n",
            b"ok\nabcde\r\r\n",
            // Unterminated quote far longer than the limit: the limit wins.
            b"ok\n\"abcdefghijklmnopqrstuvwxyz",
            b"ok\nabcdefghijklmnopqrstuvwxyz",
        ] {
            let run = run_with(input, limited(5));
            assert_eq!(
                run.error,
                Some(CsvError::RecordTooLong {
                    record: 2,
                    line: 2,
                    limit: 5
                }),
                "{:?}",
                String::from_utf8_lossy(input)
            );
            assert_eq!(run.records.len(), 1);
        }
    }

    #[test]
    fn limit_bounds_the_buffers() {
        // A huge unterminated record read from one big slice: the reader
        // stops after at most limit + 2 bytes.
        let input = vec![b'x'; 1 << 20];
        let mut rdr = RecordReader::new(&input[..], limited(1000));
        let e = rdr.next_record().unwrap_err();
        assert_eq!(
            e,
            CsvError::RecordTooLong {
                record: 1,
                line: 1,
                limit: 1000
            }
        );
        assert!(rdr.bytes_read() <= 1002);
        assert!(rdr.raw.capacity() < 4096);
    }

    #[test]
    fn zero_limit_rejects_any_record_but_skips_blanks() {
        let run = run_with(b"\n\r\nx\n", limited(0));
        assert_eq!(
            run.error,
            Some(CsvError::RecordTooLong {
                record: 1,
                line: 3,
                limit: 0
            })
        );
    }

    #[test]
    fn unterminated_quote() {
        assert_eq!(
            err(b"a\n\nb,\"c\nd\ne"),
            CsvError::UnterminatedQuote { record: 2, line: 3 }
        );
        assert_eq!(
            err(b"\""),
            CsvError::UnterminatedQuote { record: 1, line: 1 }
        );
        assert_eq!(
            err(b"\"a\"\"\n"),
            CsvError::UnterminatedQuote { record: 1, line: 1 }
        );
        assert_eq!(
            err(b"\"\"\"\"\""),
            CsvError::UnterminatedQuote { record: 1, line: 1 }
        );
        let run = run(b"x\n\"\n\"\ny,\"z");
        assert_eq!(run.records.len(), 2);
        assert_eq!(
            run.error,
            Some(CsvError::UnterminatedQuote { record: 3, line: 4 })
        );
    }

    #[test]
    fn after_quote() {
        let cases: &[(&[u8], u64, u64, usize, u8)] = &[
            (b"\"a\"b\n", 1, 1, 1, b'b'),
            (b"x,\"a\" ,y\n", 1, 1, 2, b' '),
            (b"ok\n\nx,y,\"a\"\"\"z", 2, 3, 3, b'z'),
            (b"\"a\"\rx\n", 1, 1, 1, b'\r'),
            (b"\"a\"\r", 1, 1, 1, b'\r'),
            (b"\"a\"\r\r\n", 1, 1, 1, b'\r'),
            (b"1\n\"a\nb\"\"\"\"\"x\n", 2, 2, 1, b'x'),
            (b"\"\"\"\",\"\"x", 1, 1, 2, b'x'),
            (b"\"a\"\x00", 1, 1, 1, 0),
        ];
        for &(input, record, line, column, byte) in cases {
            assert_eq!(
                err(input),
                CsvError::AfterQuote {
                    record,
                    line,
                    column,
                    byte
                },
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn invalid_utf8_and_nul_pass_through() {
        let input = b"\xff\xfe,\x00a\x00,\"\xc3\x28\x00\",\"\x80\"\"\xbf\"\n";
        assert_eq!(
            fields(input),
            vec![vec![
                u(b"\xff\xfe"),
                u(b"\x00a\x00"),
                q(b"\xc3\x28\x00"),
                q(b"\x80\"\xbf")
            ]]
        );
    }

    #[test]
    fn emoji_and_cjk() {
        let input = "😀,\"日本語, テキスト\",\"中\"\"文\",🇫🇷\n".as_bytes();
        assert_eq!(
            fields(input),
            vec![vec![
                u("😀".as_bytes()),
                q("日本語, テキスト".as_bytes()),
                q("中\"文".as_bytes()),
                u("🇫🇷".as_bytes())
            ]]
        );
    }

    #[test]
    fn custom_delimiters() {
        let pipe = ReaderOptions {
            delimiter: b'|',
            ..ReaderOptions::default()
        };
        let run = run_with(b"a|b,c|\"d|e\"|\n", pipe);
        assert_eq!(
            run.records[0].fields,
            vec![u(b"a"), u(b"b,c"), q(b"d|e"), u(b"")]
        );
        let tab = ReaderOptions {
            delimiter: b'\t',
            ..ReaderOptions::default()
        };
        let run = run_with(b"a\tb c\t\"d\te\"\t\"\"\r\nx\n", tab);
        assert_eq!(run.error, None);
        assert_eq!(
            run.records[0].fields,
            vec![u(b"a"), u(b"b c"), q(b"d\te"), q(b"")]
        );
        assert_eq!(run.records[1].fields, vec![u(b"x")]);
        let single = ReaderOptions {
            quote: b'\'',
            ..ReaderOptions::default()
        };
        let run = run_with(b"'a,''b',\"c\"\n", single);
        assert_eq!(run.records[0].fields, vec![q(b"a,'b"), u(b"\"c\"")]);
    }

    #[test]
    fn another_row_delimiter_ends_records_and_lf_and_cr_are_data() {
        let tilde = ReaderOptions {
            terminator: b'~',
            ..ReaderOptions::default()
        };
        let run = run_with(b"a,b\nc~~\"x~y\"\"\",z\r~\"q\"", tilde);
        assert_eq!(run.error, None);
        assert_eq!(run.records.len(), 3);
        assert_eq!(run.records[0].fields, vec![u(b"a"), u(b"b\nc")]);
        assert_eq!(run.records[1].fields, vec![q(b"x~y\""), u(b"z\r")]);
        // The blank record between the first two terminators is skipped but is a "line", and so
        // is the quoted terminator in record 2.
        assert_eq!(
            (
                run.records[1].number,
                run.records[1].line,
                run.records[2].line
            ),
            (2, 3, 5)
        );
        assert_eq!(run.records[2].fields, vec![q(b"q")]);
        // After a closing quote only the delimiter, the terminator or the end may follow.
        assert!(matches!(
            run_with(b"\"q\"\r\n", tilde).error,
            Some(CsvError::AfterQuote { byte: b'\r', .. })
        ));
    }

    #[test]
    #[should_panic(expected = "must differ")]
    fn delimiter_equal_to_quote_is_rejected() {
        let _ = RecordReader::new(
            &b""[..],
            ReaderOptions {
                delimiter: b'"',
                ..ReaderOptions::default()
            },
        );
    }

    #[test]
    #[should_panic(expected = "must not be CR or LF")]
    fn newline_delimiter_is_rejected() {
        let _ = RecordReader::new(
            &b""[..],
            ReaderOptions {
                delimiter: b'\n',
                ..ReaderOptions::default()
            },
        );
    }

    #[test]
    fn counters_follow_records() {
        let mut rdr = RecordReader::new(&b"a\n\n\"b\nc\"\nd"[..], ReaderOptions::default());
        assert_eq!((rdr.bytes_read(), rdr.lines_read()), (0, 0));
        assert_eq!(rdr.next_record().unwrap().unwrap().record_number(), 1);
        assert_eq!((rdr.bytes_read(), rdr.lines_read()), (2, 1));
        let rec = rdr.next_record().unwrap().unwrap();
        assert_eq!(
            (rec.record_number(), rec.line(), rec.byte_offset()),
            (2, 3, 3)
        );
        assert_eq!((rdr.bytes_read(), rdr.lines_read()), (9, 4));
        assert_eq!(rdr.next_record().unwrap().unwrap().line(), 5);
        assert_eq!((rdr.bytes_read(), rdr.lines_read()), (10, 5));
        assert!(rdr.next_record().unwrap().is_none());
    }

    #[test]
    fn record_debug_shows_fields() {
        let mut rdr = RecordReader::new(&b"a,\"b\"\n"[..], ReaderOptions::default());
        let rec = rdr.next_record().unwrap().unwrap();
        let s = format!("{rec:?}");
        assert!(
            s.contains("(\"a\", false)") && s.contains("(\"b\", true)"),
            "{s}"
        );
    }

    /// A reader that yields its bytes one at a time, interleaved with
    /// `Interrupted` errors, then fails.
    struct Flaky {
        data: Vec<u8>,
        pos: usize,
        interrupt: bool,
    }

    impl Read for Flaky {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.interrupt = !self.interrupt;
            if self.interrupt {
                return Err(io::Error::new(io::ErrorKind::Interrupted, "again"));
            }
            if self.pos == self.data.len() {
                return Err(io::Error::other("connection reset"));
            }
            buf[0] = self.data[self.pos];
            self.pos += 1;
            Ok(1)
        }
    }

    #[test]
    fn io_errors_are_reported_and_interrupts_retried() {
        let flaky = Flaky {
            data: b"a,b\n\"c\nd\",e\nf".to_vec(),
            pos: 0,
            interrupt: false,
        };
        let run = run_reader(BufReader::new(flaky), ReaderOptions::default());
        assert_eq!(run.records.len(), 2);
        assert_eq!(run.records[1].fields, vec![q(b"c\nd"), u(b"e")]);
        assert_eq!(
            run.error,
            Some(CsvError::Io {
                message: "connection reset".into()
            })
        );
    }

    #[test]
    fn error_messages() {
        let cases = [
            (
                CsvError::Io {
                    message: "boom".into(),
                },
                "i/o error while reading csv: boom",
            ),
            (
                CsvError::UnterminatedQuote { record: 3, line: 5 },
                "unterminated quoted field in record 3 starting at line 5",
            ),
            (
                CsvError::AfterQuote {
                    record: 3,
                    line: 5,
                    column: 2,
                    byte: b'x',
                },
                "unexpected character 'x' after closing quote in column 2 of record 3 starting at line 5",
            ),
            (
                CsvError::AfterQuote {
                    record: 1,
                    line: 1,
                    column: 1,
                    byte: b'\r',
                },
                "unexpected byte 0x0d after closing quote in column 1 of record 1 starting at line 1",
            ),
            (
                CsvError::RecordTooLong {
                    record: 7,
                    line: 9,
                    limit: 10,
                },
                "record 7 starting at line 9 is longer than the limit of 10 bytes",
            ),
        ];
        for (e, msg) in cases {
            assert_eq!(e.to_string(), msg);
            let _: &dyn std::error::Error = &e;
        }
    }

    /// splitmix64: a small deterministic PRNG.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    const ALPHABET: &[u8] = b",\"\r\n\\\tNUL a\x00\xc3\xa9\xff\xe4\xb8";

    fn random_rows(rng: &mut Rng) -> Vec<Vec<Vec<u8>>> {
        (0..rng.below(12))
            .map(|_| {
                (0..1 + rng.below(5))
                    .map(|_| {
                        let len = match rng.below(4) {
                            0 => 0,
                            1 => rng.below(40),
                            _ => rng.below(6),
                        };
                        (0..len)
                            .map(|_| ALPHABET[rng.below(ALPHABET.len())])
                            .collect()
                    })
                    .collect()
            })
            .collect()
    }

    fn needs_quotes(field: &[u8]) -> bool {
        field.iter().any(|b| b",\"\r\n".contains(b))
    }

    #[test]
    fn property_matches_csv_crate() {
        let mut rng = Rng(0x5eed);
        for case in 0..600 {
            let rows = random_rows(&mut rng);
            for style in [::csv::QuoteStyle::Necessary, ::csv::QuoteStyle::Always] {
                let mut w = ::csv::WriterBuilder::new()
                    .quote_style(style)
                    .flexible(true)
                    .from_writer(Vec::new());
                for row in &rows {
                    w.write_record(row).unwrap();
                }
                let bytes = w.into_inner().unwrap();

                let reference: Vec<Vec<Vec<u8>>> = ::csv::ReaderBuilder::new()
                    .has_headers(false)
                    .flexible(true)
                    .from_reader(&bytes[..])
                    .byte_records()
                    .map(|r| r.unwrap().iter().map(<[u8]>::to_vec).collect())
                    .collect();
                assert_eq!(reference, rows, "csv crate round trip, case {case}");

                let whole = run_reader(&bytes[..], ReaderOptions::default());
                assert_eq!(whole.error, None, "case {case}: {bytes:?}");
                for cap in [1, 3, 64, 8192] {
                    let run = run_reader(
                        BufReader::with_capacity(cap, &bytes[..]),
                        ReaderOptions::default(),
                    );
                    assert_eq!(run, whole, "case {case}, capacity {cap}");
                }
                let got: Vec<Vec<Vec<u8>>> = whole.records.iter().map(Rec::values).collect();
                assert_eq!(got, rows, "case {case} {style:?}");

                // Positions and raw bytes rebuild the stream.
                let mut offset = 0u64;
                let mut line = 1u64;
                for (i, (rec, row)) in whole.records.iter().zip(&rows).enumerate() {
                    assert_eq!(rec.number, i as u64 + 1);
                    assert_eq!((rec.offset, rec.line), (offset, line));
                    assert_eq!(&bytes[offset as usize..][..rec.raw.len()], &rec.raw[..]);
                    assert_eq!(bytes[offset as usize + rec.raw.len()], b'\n');
                    offset += rec.raw.len() as u64 + 1;
                    line += rec.raw.iter().filter(|&&b| b == b'\n').count() as u64 + 1;
                    for (j, (value, quoted)) in rec.fields.iter().enumerate() {
                        let expect = match style {
                            ::csv::QuoteStyle::Always => true,
                            _ => needs_quotes(value) || (row.len() == 1 && value.is_empty()),
                        };
                        assert_eq!(*quoted, expect, "case {case} record {i} field {j}");
                    }
                }
                assert_eq!(whole.totals, Some((offset, line - 1)));
            }
        }
    }

    /// Our own writer: random quoting of fields that do not need it, random
    /// LF or CRLF terminators and random blank lines.
    #[test]
    fn property_with_crlf_blank_lines_and_optional_quotes() {
        let mut rng = Rng(42);
        for case in 0..600 {
            let rows = random_rows(&mut rng);
            let mut bytes = Vec::new();
            let mut expected = Vec::new();
            let mut line = 1u64;
            for row in &rows {
                while rng.below(4) == 0 {
                    bytes.extend_from_slice(if rng.below(2) == 0 { b"\n" } else { b"\r\n" });
                    line += 1;
                }
                let start = bytes.len() as u64;
                let start_line = line;
                let mut fields = Vec::new();
                for (j, value) in row.iter().enumerate() {
                    if j > 0 {
                        bytes.push(b',');
                    }
                    // Unquoted must be unambiguous: no special byte, not
                    // starting with a quote, no trailing CR, and a lone
                    // empty field must be quoted.
                    let quoted = needs_quotes(value)
                        || (row.len() == 1 && value.is_empty())
                        || rng.below(3) == 0;
                    if quoted {
                        bytes.push(b'"');
                        for &b in value {
                            if b == b'"' {
                                bytes.push(b'"');
                            }
                            bytes.push(b);
                        }
                        bytes.push(b'"');
                    } else {
                        bytes.extend_from_slice(value);
                    }
                    line += value.iter().filter(|&&b| b == b'\n').count() as u64;
                    fields.push((value.clone(), quoted));
                }
                let raw = bytes[start as usize..].to_vec();
                expected.push(Rec {
                    fields,
                    number: expected.len() as u64 + 1,
                    line: start_line,
                    offset: start,
                    raw,
                });
                bytes.extend_from_slice(if rng.below(2) == 0 { b"\n" } else { b"\r\n" });
                line += 1;
            }
            let whole = run_reader(&bytes[..], ReaderOptions::default());
            assert_eq!(whole.error, None, "case {case}");
            assert_eq!(whole.records, expected, "case {case}");
            assert_eq!(whole.totals, Some((bytes.len() as u64, line - 1)));
            for cap in [1, 3, 64, 8192] {
                let run = run_reader(
                    BufReader::with_capacity(cap, &bytes[..]),
                    ReaderOptions::default(),
                );
                assert_eq!(run, whole, "case {case}, capacity {cap}");
            }
        }
    }
}
