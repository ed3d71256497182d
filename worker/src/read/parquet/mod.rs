//! DMS Parquet files (`DataFormat=parquet`) as a CSV stream the encoder already understands.
//!
//! [`ParquetCsv`] reads a local Parquet file and is a [`Read`] of RFC 4180 text: first a header
//! record of the top-level column names (so the encoder lays the file out by name and finds
//! DMS's leading `Op` column), then one record per row, in file order. The loader runs the
//! ordinary [`crate::encode::encode`] over it with the rules [`csv_rules`] gives.
//!
//! Invariants:
//! - every non-NULL value, and every header name, is quoted (inner quotes doubled); SQL NULL is
//!   the unquoted [`NULL_MARKER`], which therefore can never be mistaken for data (a string
//!   `"NULL"` stays a string, an empty string stays empty);
//! - values are rendered from the column's Parquet logical type (else its converted type, else
//!   its physical type) as PostgreSQL reads them back exactly: integers in decimal (unsigned
//!   ones as unsigned), DECIMAL exactly from its unscaled integer (never through a float),
//!   floats in their shortest round-trip form (`NaN`, `Infinity`, `-Infinity`), booleans
//!   `true`/`false`, strings (UTF8, ENUM, JSON) as their bytes, binary without a logical type
//!   as `bytea` hex (`\x0a1b`), DATE `YYYY-MM-DD`, TIMESTAMP (millis, micros, nanos, INT96)
//!   `YYYY-MM-DD HH:MM:SS.ffffff` UTC (three more digits when nanoseconds would be lost; ` BC`
//!   for years before 1), TIME `HH:MM:SS.ffffff`, UUID canonical, FLOAT16 as a float, INTERVAL
//!   as ISO 8601, and lists, maps and structs as JSON text;
//! - memory is bounded by the file's row groups, never by its size: rows are read row group by
//!   row group, [`BATCH_ROWS`] at a time per column (the column readers decode page by page),
//!   and at most about [`TEXT_TARGET`] bytes of text (plus one row) are buffered; nothing of a
//!   row group is kept once it has been read;
//! - nothing the file declares is trusted with memory: before a row group is decoded, every
//!   page header of its column chunks is read (see [`pages`]); a page larger than the
//!   record limit ([`ParquetCsv::limit`], the worker's `--max-record-bytes`) is refused, a gzip
//!   page that inflates past its declared size is corrupt, and a batch holds fewer rows where
//!   rows are large, so the pages one batch keeps stay near [`BATCH_BYTES`] (the nested
//!   columns' row iterator buffers as few values per column, and its rows are taken one at a
//!   time, as each is rendered); a value or a row longer than the limit is refused before it
//!   is rendered whole ([`ParquetCsv::over_limit`] then says so: the loader reports
//!   `record_too_long`, not a corrupt file);
//! - anything the Parquet reader refuses (or panics on) is a [`ParquetFailure`]: the file is
//!   not valid Parquet, which no retry can change.
//!
//! Rendering is pure and unit-tested without IO; only [`ParquetCsv`] touches the file.
//!
//! # Layout
//!
//! - this file: [`ParquetCsv`], the reader (row groups, batches, rows as CSV records) and the
//!   sizing of batches;
//! - [`columns`]: a flat column's decoded values, a batch at a time;
//! - [`render`]: values as text (pure);
//! - [`json`]: lists, maps and structs as JSON text (pure);
//! - [`pages`]: page headers and gzip pages checked against the record limit before decoding;
//! - [`types`]: the PostgreSQL type of each column, for the columns `new_columns = "add"` adds.

mod columns;
mod json;
mod pages;
mod render;
mod types;

use columns::{fill, text_value, value_len, Column, Flat, Values};
use json::write_json;
use pages::{check_chunk, Refusal};
use parquet::basic::{ConvertedType, Type as PhysicalType};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::reader::RowIter;
use parquet::record::Field;
use parquet::schema::types::Type;
use render::{render_of, write_quoted, Render};
use sluice_common::rules::{Encoding, TableRules};
use std::fs::File;
use std::io::{self, Read};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

/// The unquoted field that means SQL NULL in the CSV stream.
pub const NULL_MARKER: &str = "NULL";
/// Rows decoded per column at a time.
pub const BATCH_ROWS: usize = 1024;
/// Text rendered ahead of the reader, at most (plus one row).
pub const TEXT_TARGET: usize = 1 << 20;
/// Uncompressed page bytes a batch of rows should keep, at most (see [`batch_rows`]).
pub const BATCH_BYTES: usize = 16 << 20;
/// The record limit of a [`ParquetCsv`] unless [`ParquetCsv::limit`] sets one: the worker's
/// default `--max-record-bytes`.
pub const DEFAULT_LIMIT: usize = 64 << 20;

/// A failure of [`ParquetCsv`] that is a page, value or row beyond the record limit rather
/// than damage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverLimit {
    /// The 1-based row whose value or text passed the limit; None for a page.
    pub row: Option<u64>,
}

/// The rules the encoder reads a [`ParquetCsv`] stream with: the table's own, but a header
/// (the Parquet schema names the columns, so a configured column list is ignored), `,`, the
/// [`NULL_MARKER`], UTF-8.
pub fn csv_rules(table: &TableRules) -> TableRules {
    TableRules {
        header: true,
        delimiter: b',',
        null: NULL_MARKER.to_owned(),
        encoding: Encoding::Utf8,
        columns: None,
        ..table.clone()
    }
}

/// Why a file could not be read as Parquet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParquetFailure(pub String);

impl std::fmt::Display for ParquetFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A Parquet file as a CSV byte stream; see the module docs.
pub struct ParquetCsv {
    file: SerializedFileReader<File>,
    /// The same file, for reading page headers before the reader decodes their pages.
    raw: File,
    /// Largest page, value and row accepted, in bytes.
    limit: usize,
    /// Rows per batch of the current row group (see [`batch_rows`]).
    batch: usize,
    /// Rows rendered so far.
    rows_done: u64,
    over_limit: Option<OverLimit>,
    columns: Vec<Column>,
    names: Vec<String>,
    /// Rows of the list, map and struct columns, in step with the flat columns' readers.
    /// Read one row at a time, as each row is rendered: a batch of them could be large.
    nested: Option<RowIter<'static>>,
    null: Vec<u8>,
    row_group: usize,
    /// Rows of the current row group not yet decoded.
    group_left: usize,
    /// Rows of the current batch, and the next one to render.
    batch_rows: usize,
    batch_next: usize,
    header_done: bool,
    text: Vec<u8>,
    text_pos: usize,
    failure: Option<ParquetFailure>,
}

/// Runs `f`, turning a Parquet error or a panic of the reader into a [`ParquetFailure`].
fn guarded<T>(f: impl FnOnce() -> Result<T, ParquetFailure>) -> Result<T, ParquetFailure> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "unknown".to_owned());
            Err(ParquetFailure(format!("the Parquet reader failed: {what}")))
        }
    }
}

fn failure(e: parquet::errors::ParquetError) -> ParquetFailure {
    ParquetFailure(e.to_string())
}

impl ParquetCsv {
    /// Opens a Parquet file: reads its footer (schema, row groups). `null` is written,
    /// unquoted, for SQL NULL.
    pub fn open(file: File, null: &str) -> Result<ParquetCsv, ParquetFailure> {
        guarded(|| {
            let reopen = |e: io::Error| ParquetFailure(format!("cannot reopen the file: {e}"));
            let second = file.try_clone().map_err(reopen)?;
            let raw = file.try_clone().map_err(reopen)?;
            let reader = SerializedFileReader::new(file).map_err(failure)?;
            let schema = reader.metadata().file_metadata().schema_descr_ptr();
            let root = schema.root_schema();
            let mut leaf_of_root = vec![None; root.get_fields().len()];
            for leaf in 0..schema.num_columns() {
                let r = schema.get_column_root_idx(leaf);
                if leaf_of_root[r].is_none() {
                    leaf_of_root[r] = Some(leaf);
                }
            }
            let mut columns = Vec::new();
            let mut names = Vec::new();
            let mut nested_fields: Vec<Arc<Type>> = Vec::new();
            for (i, field) in root.get_fields().iter().enumerate() {
                names.push(field.name().to_owned());
                if field.is_primitive() {
                    let leaf = leaf_of_root[i].ok_or_else(|| {
                        ParquetFailure(format!("column {:?} has no data", field.name()))
                    })?;
                    let d = schema.column(leaf);
                    if d.max_rep_level() > 0 {
                        // A repeated primitive at the top: a list in all but name.
                        columns.push(Column::Nested(nested_fields.len()));
                        nested_fields.push(field.clone());
                        continue;
                    }
                    columns.push(Column::Flat(Box::new(Flat {
                        name: field.name().to_owned(),
                        leaf,
                        render: render_of(&d),
                        max_def: d.max_def_level(),
                        reader: None,
                        values: Values::for_type(d.physical_type()),
                        defs: Vec::new(),
                        next_value: 0,
                    })));
                } else {
                    columns.push(Column::Nested(nested_fields.len()));
                    nested_fields.push(field.clone());
                }
            }
            let nested = if nested_fields.is_empty() {
                None
            } else {
                check_nested_types(&schema)?;
                let projection = Type::group_type_builder(root.name())
                    .with_fields(nested_fields)
                    .build()
                    .map_err(failure)?;
                let own = SerializedFileReader::new(second).map_err(failure)?;
                Some(
                    RowIter::from_file_into(Box::new(own))
                        .project(Some(projection))
                        .map_err(failure)?
                        .with_batch_size(BATCH_ROWS),
                )
            };
            Ok(ParquetCsv {
                file: reader,
                raw,
                limit: DEFAULT_LIMIT,
                batch: BATCH_ROWS,
                rows_done: 0,
                over_limit: None,
                columns,
                names,
                nested,
                null: null.as_bytes().to_vec(),
                row_group: 0,
                group_left: 0,
                batch_rows: 0,
                batch_next: 0,
                header_done: false,
                text: Vec::with_capacity(TEXT_TARGET + 4096),
                text_pos: 0,
                failure: None,
            })
        })
    }

    /// `(name, PostgreSQL type)` of each top-level column ([`types`]).
    pub fn column_types(&self) -> Vec<(String, String)> {
        types::sql_types(self.file.metadata().file_metadata().schema_descr())
    }

    /// Why reading failed, if it did (the [`Read`] error only carries the text).
    pub fn failure(&self) -> Option<&ParquetFailure> {
        self.failure.as_ref()
    }

    /// Sets the largest page, value and row accepted ([`DEFAULT_LIMIT`] otherwise).
    pub fn limit(mut self, max_record_bytes: usize) -> ParquetCsv {
        self.limit = max_record_bytes;
        self
    }

    /// Whether the failure was a page, value or row beyond the limit.
    pub fn over_limit(&self) -> Option<OverLimit> {
        self.over_limit
    }

    /// Checks the page headers of row group `index` (see [`pages`]) and sizes its
    /// batches: those of the flat columns, and the values the nested columns' row iterator
    /// buffers per leaf (it opens the row group after this, with that size).
    fn check_row_group(&mut self, index: usize) -> Result<(), ParquetFailure> {
        let meta = self.file.metadata().row_group(index);
        let limit = self.limit as u64;
        let mut per_row = Vec::new();
        let mut nested_per_value = Vec::new();
        let mut refused = None;
        for (leaf, chunk) in meta.columns().iter().enumerate() {
            let gzip = matches!(chunk.compression(), parquet::basic::Compression::GZIP(_));
            match check_chunk(&self.raw, chunk.byte_range(), gzip, limit) {
                Ok(pages) => {
                    let flat = self
                        .columns
                        .iter()
                        .any(|c| matches!(c, Column::Flat(f) if f.leaf == leaf));
                    if flat {
                        per_row.push(pages.per_row);
                    } else {
                        nested_per_value.push(pages.per_row);
                    }
                }
                Err(r) => {
                    refused = Some((chunk.column_path().string(), r));
                    break;
                }
            }
        }
        match refused {
            None => {
                self.batch = batch_rows(&per_row);
                self.nested = self
                    .nested
                    .take()
                    .map(|rows| rows.with_batch_size(batch_rows(&nested_per_value)));
                Ok(())
            }
            Some((column, Refusal::TooLarge(why))) => {
                self.over_limit = Some(OverLimit { row: None });
                Err(ParquetFailure(format!(
                    "row group {index}, column {column:?}: {why}"
                )))
            }
            Some((column, Refusal::Corrupt(why))) => Err(ParquetFailure(format!(
                "row group {index}, column {column:?}: {why}"
            ))),
        }
    }

    /// Renders more text into `self.text`; false at the end of the file.
    fn refill(&mut self) -> Result<bool, ParquetFailure> {
        self.text.clear();
        self.text_pos = 0;
        if !self.header_done {
            self.header_done = true;
            for (i, name) in self.names.iter().enumerate() {
                if i > 0 {
                    self.text.push(b',');
                }
                write_quoted(&mut self.text, name.as_bytes());
            }
            self.text.extend_from_slice(b"\r\n");
            return Ok(true);
        }
        while self.text.len() < TEXT_TARGET {
            if self.batch_next == self.batch_rows && !self.next_batch()? {
                break;
            }
            self.render_row()?;
        }
        Ok(!self.text.is_empty())
    }

    /// Decodes the next batch of rows (opening the next row group when needed).
    fn next_batch(&mut self) -> Result<bool, ParquetFailure> {
        while self.group_left == 0 {
            if self.row_group >= self.file.num_row_groups() {
                return Ok(false);
            }
            self.check_row_group(self.row_group)?;
            let group = self.file.get_row_group(self.row_group).map_err(failure)?;
            let rows = group.metadata().num_rows();
            self.group_left = usize::try_from(rows).map_err(|_| {
                ParquetFailure(format!("row group {} has {rows} rows", self.row_group))
            })?;
            for c in &mut self.columns {
                if let Column::Flat(f) = c {
                    f.reader = Some(group.get_column_reader(f.leaf).map_err(failure)?);
                }
            }
            self.row_group += 1;
        }
        let n = self.group_left.min(self.batch);
        for c in &mut self.columns {
            if let Column::Flat(f) = c {
                let reader = f.reader.as_mut().expect("opened with its row group");
                let got = fill(reader, &mut f.values, &mut f.defs, n).map_err(|e| {
                    ParquetFailure(format!(
                        "row group {}, column {:?}: {e}",
                        self.row_group - 1,
                        f.name
                    ))
                })?;
                if got != n {
                    return Err(ParquetFailure(format!(
                        "column {:?} of row group {} ends after {} of its rows",
                        f.name,
                        self.row_group - 1,
                        got
                    )));
                }
                f.next_value = 0;
            }
        }
        self.group_left -= n;
        self.batch_rows = n;
        self.batch_next = 0;
        if self.group_left == 0 {
            for c in &mut self.columns {
                if let Column::Flat(f) = c {
                    f.reader = None;
                }
            }
        }
        Ok(true)
    }

    /// Writes the batch's next row as a CSV record; refuses a value or a row longer than the
    /// limit before rendering it (further).
    fn render_row(&mut self) -> Result<(), ParquetFailure> {
        let r = self.batch_next;
        self.batch_next += 1;
        self.rows_done += 1;
        let row = self.rows_done;
        let limit = self.limit;
        let start = self.text.len();
        let nested_row = match self.nested.as_mut().map(Iterator::next) {
            None => None,
            Some(Some(Ok(row))) => Some(row),
            Some(Some(Err(e))) => {
                return Err(ParquetFailure(format!(
                    "row group {}, a list, map or struct column: {e}",
                    self.row_group - 1
                )))
            }
            Some(None) => {
                return Err(ParquetFailure(
                    "the nested columns end before the file's rows".into(),
                ))
            }
        };
        let out = &mut self.text;
        let mut cell = Vec::new();
        for (i, c) in self.columns.iter_mut().enumerate() {
            if out.len() - start > limit {
                self.over_limit = Some(OverLimit { row: Some(row) });
                return Err(ParquetFailure(format!(
                    "row {row} is longer than the record limit of {limit} bytes \
                     (--max-record-bytes)"
                )));
            }
            if i > 0 {
                out.push(b',');
            }
            match c {
                Column::Flat(f) => {
                    let present = f.max_def == 0 || f.defs[r] == f.max_def;
                    if !present {
                        out.extend_from_slice(&self.null);
                        continue;
                    }
                    let v = if f.max_def == 0 { r } else { f.next_value };
                    f.next_value += 1;
                    let len = value_len(&f.values, v);
                    if len > limit {
                        self.over_limit = Some(OverLimit { row: Some(row) });
                        return Err(ParquetFailure(format!(
                            "row {row}, column {:?}: a value of {len} bytes, more than the \
                             record limit of {limit} bytes (--max-record-bytes)",
                            f.name
                        )));
                    }
                    match f.render {
                        Render::Text => write_quoted(out, text_value(&f.values, v)),
                        render => {
                            out.push(b'"');
                            f.values.write(render, v, out);
                            out.push(b'"');
                        }
                    }
                }
                Column::Nested(j) => {
                    let field = nested_row
                        .as_ref()
                        .expect("a nested column has its row iterator")
                        .get_column_iter()
                        .nth(*j)
                        .map(|(_, f)| f);
                    match field {
                        None | Some(Field::Null) => out.extend_from_slice(&self.null),
                        Some(f) => {
                            cell.clear();
                            write_json(&mut cell, f);
                            if cell.len() > limit {
                                self.over_limit = Some(OverLimit { row: Some(row) });
                                return Err(ParquetFailure(format!(
                                    "row {row}, column {:?}: a value of {} bytes, more than \
                                     the record limit of {limit} bytes (--max-record-bytes)",
                                    self.names[i],
                                    cell.len()
                                )));
                            }
                            write_quoted(out, &cell);
                        }
                    }
                }
            }
        }
        out.extend_from_slice(b"\r\n");
        if out.len() - start > limit + 2 {
            self.over_limit = Some(OverLimit { row: Some(row) });
            return Err(ParquetFailure(format!(
                "row {row} is longer than the record limit of {limit} bytes (--max-record-bytes)"
            )));
        }
        Ok(())
    }
}

/// Refuses, before reading, list, map and struct columns whose leaves the row reader cannot
/// convert (it would panic): what it converts is listed in `parquet::record::Field`.
fn check_nested_types(
    schema: &parquet::schema::types::SchemaDescriptor,
) -> Result<(), ParquetFailure> {
    for leaf in 0..schema.num_columns() {
        let d = schema.column(leaf);
        let root = schema.get_column_root(leaf);
        if root.is_primitive() && d.max_rep_level() == 0 {
            continue;
        }
        use ConvertedType as C;
        let ok = match d.physical_type() {
            PhysicalType::BOOLEAN
            | PhysicalType::INT96
            | PhysicalType::FLOAT
            | PhysicalType::DOUBLE => true,
            PhysicalType::INT32 => matches!(
                d.converted_type(),
                C::NONE
                    | C::INT_8
                    | C::INT_16
                    | C::INT_32
                    | C::UINT_8
                    | C::UINT_16
                    | C::UINT_32
                    | C::DATE
                    | C::TIME_MILLIS
                    | C::DECIMAL
            ),
            PhysicalType::INT64 => matches!(
                d.converted_type(),
                C::NONE
                    | C::INT_64
                    | C::UINT_64
                    | C::TIME_MICROS
                    | C::TIMESTAMP_MILLIS
                    | C::TIMESTAMP_MICROS
                    | C::DECIMAL
            ),
            PhysicalType::BYTE_ARRAY => matches!(
                d.converted_type(),
                C::NONE | C::UTF8 | C::ENUM | C::JSON | C::BSON | C::DECIMAL
            ),
            PhysicalType::FIXED_LEN_BYTE_ARRAY => {
                matches!(d.converted_type(), C::NONE | C::DECIMAL)
            }
        };
        if !ok {
            return Err(ParquetFailure(format!(
                "column {:?} ({} {}) inside a list, map or struct is not supported",
                d.path().string(),
                d.physical_type(),
                d.converted_type()
            )));
        }
    }
    Ok(())
}

/// Rows a batch of the row group holds: as many as keep the pages a batch touches near
/// [`BATCH_BYTES`], given each flat column's bytes per row (never fewer than 1, never more
/// than [`BATCH_ROWS`]).
fn batch_rows(per_row: &[u64]) -> usize {
    let row_bytes: u64 = per_row
        .iter()
        .fold(0u64, |a, &b| a.saturating_add(b))
        .max(1);
    usize::try_from(BATCH_BYTES as u64 / row_bytes)
        .unwrap_or(BATCH_ROWS)
        .clamp(1, BATCH_ROWS)
}

impl Read for ParquetCsv {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(f) = &self.failure {
            return Err(io::Error::other(f.0.clone()));
        }
        if self.text_pos == self.text.len() {
            match guarded(|| self.refill()) {
                Ok(true) => {}
                Ok(false) => return Ok(0),
                Err(f) => {
                    let e = io::Error::other(f.0.clone());
                    self.failure = Some(f);
                    return Err(e);
                }
            }
        }
        let n = buf.len().min(self.text.len() - self.text_pos);
        buf[..n].copy_from_slice(&self.text[self.text_pos..self.text_pos + n]);
        self.text_pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquet::data_type::ByteArray;

    #[test]
    fn batches_hold_fewer_rows_where_rows_are_large() {
        assert_eq!(batch_rows(&[]), BATCH_ROWS);
        assert_eq!(batch_rows(&[8, 100, 4]), BATCH_ROWS);
        assert_eq!(batch_rows(&[1 << 20]), 16);
        assert_eq!(batch_rows(&[1 << 20, 1 << 20]), 8);
        assert_eq!(batch_rows(&[64 << 20]), 1);
        assert_eq!(batch_rows(&[u64::MAX, u64::MAX]), 1);
    }

    fn temp_file(bytes: &[u8]) -> File {
        let path = std::env::temp_dir().join(format!(
            "sluice-unit-{}-{:?}.bin",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::write(&path, bytes).unwrap();
        let f = File::open(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        f
    }

    /// A Parquet file written by the crate: `id` int32 and `v` binary (UTF8), gzip pages of
    /// one value each where values are long.
    fn written(values: &[&[u8]]) -> File {
        use parquet::column::writer::ColumnWriter;
        use parquet::file::properties::WriterProperties;
        use parquet::file::writer::SerializedFileWriter;
        let schema = Arc::new(
            parquet::schema::parser::parse_message_type(
                "message m { required int32 id; required binary v (UTF8); }",
            )
            .unwrap(),
        );
        let props = Arc::new(
            WriterProperties::builder()
                .set_compression(parquet::basic::Compression::GZIP(Default::default()))
                .set_dictionary_enabled(false)
                .set_data_page_size_limit(1000)
                .set_write_batch_size(1)
                .build(),
        );
        let mut out = Vec::new();
        let mut w = SerializedFileWriter::new(&mut out, schema, props).unwrap();
        let mut rg = w.next_row_group().unwrap();
        while let Some(mut col) = rg.next_column().unwrap() {
            match col.untyped() {
                ColumnWriter::Int32ColumnWriter(c) => {
                    let ids: Vec<i32> = (1..=values.len() as i32).collect();
                    c.write_batch(&ids, None, None).unwrap();
                }
                ColumnWriter::ByteArrayColumnWriter(c) => {
                    let v: Vec<ByteArray> =
                        values.iter().map(|v| ByteArray::from(v.to_vec())).collect();
                    c.write_batch(&v, None, None).unwrap();
                }
                _ => unreachable!(),
            }
            col.close().unwrap();
        }
        rg.close().unwrap();
        w.close().unwrap();
        temp_file(&out)
    }

    fn read_all(csv: &mut ParquetCsv) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        csv.read_to_end(&mut out).map(|_| out)
    }

    #[test]
    fn pages_and_rows_beyond_the_limit_fail_before_they_are_rendered() {
        let a = vec![b'a'; 3000];
        // Within the limit: the rows come out.
        let mut csv = ParquetCsv::open(written(&[b"x", &a]), "NULL")
            .unwrap()
            .limit(8000);
        let text = read_all(&mut csv).unwrap();
        // The header, `"1","x"` and `"2","aaa..."`, each with CRLF.
        assert_eq!(text.len(), 10 + 9 + 3008);
        assert_eq!(csv.over_limit(), None);
        // A page beyond it: refused before the row group is read.
        let mut csv = ParquetCsv::open(written(&[b"x", &a]), "NULL")
            .unwrap()
            .limit(2000);
        assert!(read_all(&mut csv).is_err());
        assert_eq!(csv.over_limit(), Some(OverLimit { row: None }));
        let f = csv.failure().unwrap();
        assert!(f.0.contains("row group 0, column \"v\": a page of"), "{f}");
        // The value and its page fit, its row does not (every quote doubled): refused while
        // rendering, with the row.
        let quotes = vec![b'"'; 1500];
        let mut csv = ParquetCsv::open(written(&[b"x", &quotes]), "NULL")
            .unwrap()
            .limit(2000);
        let e = read_all(&mut csv).unwrap_err();
        assert!(
            e.to_string()
                .contains("row 2 is longer than the record limit of 2000"),
            "{e}"
        );
        assert_eq!(csv.over_limit(), Some(OverLimit { row: Some(2) }));
    }

    #[test]
    fn csv_rules_override_the_table_s_csv_settings_only() {
        let table = TableRules {
            header: false,
            delimiter: b'|',
            null: String::new(),
            encoding: Encoding::Windows1252,
            columns: Some(vec!["a".into()]),
            timestamp_column: Some("ts".into()),
            ..TableRules::default()
        };
        let r = csv_rules(&table);
        assert!(r.header);
        assert_eq!(r.delimiter, b',');
        assert_eq!(r.null, NULL_MARKER);
        assert_eq!(r.encoding, Encoding::Utf8);
        assert_eq!(r.columns, None);
        assert_eq!(r.timestamp_column.as_deref(), Some("ts"));
    }
}
