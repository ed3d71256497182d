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
//!   page header of its column chunks is read (see [`check_chunk`]); a page larger than the
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

use parquet::basic::{ConvertedType, LogicalType, TimeUnit, Type as PhysicalType};
use parquet::column::reader::ColumnReader;
use parquet::data_type::{ByteArray, FixedLenByteArray, Int96};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::reader::RowIter;
use parquet::record::{Field, Row};
use parquet::schema::types::{ColumnDescriptor, Type};
use sluice_common::rules::{Encoding, TableRules};
use std::fs::File;
use std::io::{self, Read, Write};
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

/// How one primitive column's values become text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Render {
    Bool,
    Int,
    /// An integer whose physical type is signed but whose logical type is unsigned.
    UInt,
    Decimal {
        scale: i32,
    },
    Float,
    Float16,
    Date,
    Time(Unit),
    Timestamp(Unit),
    Int96,
    Text,
    Hex,
    Uuid,
    Interval,
}

/// A time unit, as nanoseconds per unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Millis,
    Micros,
    Nanos,
}

impl Unit {
    fn nanos(self) -> i128 {
        match self {
            Unit::Millis => 1_000_000,
            Unit::Micros => 1_000,
            Unit::Nanos => 1,
        }
    }

    fn of(u: &TimeUnit) -> Unit {
        match u {
            TimeUnit::MILLIS => Unit::Millis,
            TimeUnit::MICROS => Unit::Micros,
            TimeUnit::NANOS => Unit::Nanos,
        }
    }
}

/// The rendering of a primitive column, from its logical type, else its converted type.
fn render_of(d: &ColumnDescriptor) -> Render {
    let physical = d.physical_type();
    let logical = d.logical_type_ref();
    let integer = matches!(physical, PhysicalType::INT32 | PhysicalType::INT64);
    let bytes = matches!(
        physical,
        PhysicalType::BYTE_ARRAY | PhysicalType::FIXED_LEN_BYTE_ARRAY
    );
    match logical {
        Some(LogicalType::Timestamp(t)) if physical == PhysicalType::INT64 => {
            return Render::Timestamp(Unit::of(&t.unit))
        }
        Some(LogicalType::Time(t)) if integer => return Render::Time(Unit::of(&t.unit)),
        Some(LogicalType::Date) if physical == PhysicalType::INT32 => return Render::Date,
        Some(LogicalType::Decimal(dt)) if integer || bytes => {
            return Render::Decimal { scale: dt.scale }
        }
        Some(LogicalType::Integer(i)) if integer => {
            return if i.is_signed {
                Render::Int
            } else {
                Render::UInt
            }
        }
        Some(LogicalType::String | LogicalType::Enum | LogicalType::Json) if bytes => {
            return Render::Text
        }
        Some(LogicalType::Uuid)
            if physical == PhysicalType::FIXED_LEN_BYTE_ARRAY && d.type_length() == 16 =>
        {
            return Render::Uuid
        }
        Some(LogicalType::Float16)
            if physical == PhysicalType::FIXED_LEN_BYTE_ARRAY && d.type_length() == 2 =>
        {
            return Render::Float16
        }
        _ => {}
    }
    match (physical, d.converted_type()) {
        (PhysicalType::BOOLEAN, _) => Render::Bool,
        (PhysicalType::INT96, _) => Render::Int96,
        (PhysicalType::FLOAT | PhysicalType::DOUBLE, _) => Render::Float,
        (_, ConvertedType::DECIMAL) if integer || bytes => Render::Decimal {
            scale: d.type_scale(),
        },
        (PhysicalType::INT32, ConvertedType::DATE) => Render::Date,
        (PhysicalType::INT32, ConvertedType::TIME_MILLIS) => Render::Time(Unit::Millis),
        (PhysicalType::INT64, ConvertedType::TIME_MICROS) => Render::Time(Unit::Micros),
        (PhysicalType::INT64, ConvertedType::TIMESTAMP_MILLIS) => Render::Timestamp(Unit::Millis),
        (PhysicalType::INT64, ConvertedType::TIMESTAMP_MICROS) => Render::Timestamp(Unit::Micros),
        (
            _,
            ConvertedType::UINT_8
            | ConvertedType::UINT_16
            | ConvertedType::UINT_32
            | ConvertedType::UINT_64,
        ) if integer => Render::UInt,
        (PhysicalType::INT32 | PhysicalType::INT64, _) => Render::Int,
        (_, ConvertedType::UTF8 | ConvertedType::ENUM | ConvertedType::JSON) => Render::Text,
        (PhysicalType::FIXED_LEN_BYTE_ARRAY, ConvertedType::INTERVAL) if d.type_length() == 12 => {
            Render::Interval
        }
        _ => Render::Hex,
    }
}

// ----------------------------------------------------------------------------------------
// Pure rendering: each `write_*` appends the bare text of one value (no quotes).

/// Days since 1970-01-01 -> (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `YYYY-MM-DD`; returns whether the year is before 1 (the caller appends ` BC`).
fn write_ymd(out: &mut Vec<u8>, days: i64) -> bool {
    let (year, month, day) = civil_from_days(days);
    let bc = year <= 0;
    let shown = if bc { 1 - year } else { year };
    let _ = write!(out, "{shown:04}-{month:02}-{day:02}");
    bc
}

fn write_date(out: &mut Vec<u8>, days: i32) {
    if write_ymd(out, i64::from(days)) {
        out.extend_from_slice(b" BC");
    }
}

/// `HH:MM:SS.ffffff` of `nanos` within a day (or beyond: hours are not wrapped), with three
/// more digits when the nanoseconds are not whole microseconds.
fn write_clock(out: &mut Vec<u8>, nanos: u128) {
    let secs = nanos / 1_000_000_000;
    let frac = nanos % 1_000_000_000;
    let _ = write!(
        out,
        "{:02}:{:02}:{:02}.{:06}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        frac / 1000
    );
    if !frac.is_multiple_of(1000) {
        let _ = write!(out, "{:03}", frac % 1000);
    }
}

/// A timestamp, `nanos` since the epoch, as UTC wall time.
fn write_timestamp_nanos(out: &mut Vec<u8>, nanos: i128) {
    const DAY: i128 = 86_400_000_000_000;
    let days = nanos.div_euclid(DAY) as i64;
    let bc = write_ymd(out, days);
    out.push(b' ');
    write_clock(out, nanos.rem_euclid(DAY) as u128);
    if bc {
        out.extend_from_slice(b" BC");
    }
}

fn write_timestamp(out: &mut Vec<u8>, value: i64, unit: Unit) {
    write_timestamp_nanos(out, i128::from(value) * unit.nanos());
}

/// INT96 (deprecated, still written by some tools): nanoseconds of the day, then the Julian day.
fn write_int96(out: &mut Vec<u8>, v: &Int96) {
    const UNIX_EPOCH_JULIAN_DAY: i128 = 2_440_588;
    let d = v.data();
    let nanos_of_day = (u64::from(d[1]) << 32) | u64::from(d[0]);
    let days = i128::from(d[2]) - UNIX_EPOCH_JULIAN_DAY;
    write_timestamp_nanos(out, days * 86_400_000_000_000 + i128::from(nanos_of_day));
}

fn write_time(out: &mut Vec<u8>, value: i64, unit: Unit) {
    let nanos = i128::from(value) * unit.nanos();
    if nanos < 0 {
        // Not a time of day; written as is, PostgreSQL refuses it with the record's position.
        out.push(b'-');
    }
    write_clock(out, nanos.unsigned_abs());
}

/// An unscaled integer's decimal digits (`digits`, no sign) with `scale` digits after the point.
fn write_scaled(out: &mut Vec<u8>, negative: bool, digits: &str, scale: i32) {
    if negative && digits.bytes().any(|b| b != b'0') {
        out.push(b'-');
    }
    if scale <= 0 {
        out.extend_from_slice(digits.as_bytes());
        out.extend(std::iter::repeat_n(b'0', scale.unsigned_abs() as usize));
        return;
    }
    let scale = scale as usize;
    if digits.len() <= scale {
        out.extend_from_slice(b"0.");
        out.extend(std::iter::repeat_n(b'0', scale - digits.len()));
        out.extend_from_slice(digits.as_bytes());
    } else {
        let (int, frac) = digits.split_at(digits.len() - scale);
        out.extend_from_slice(int.as_bytes());
        out.push(b'.');
        out.extend_from_slice(frac.as_bytes());
    }
}

fn write_decimal_int(out: &mut Vec<u8>, unscaled: i128, scale: i32) {
    write_scaled(
        out,
        unscaled < 0,
        &unscaled.unsigned_abs().to_string(),
        scale,
    );
}

/// A DECIMAL stored as a big-endian two's complement integer of any length.
fn write_decimal_bytes(out: &mut Vec<u8>, be: &[u8], scale: i32) {
    if be.is_empty() {
        return write_decimal_int(out, 0, scale);
    }
    if be.len() <= 16 {
        let fill = if be[0] & 0x80 != 0 { 0xff } else { 0 };
        let mut buf = [fill; 16];
        buf[16 - be.len()..].copy_from_slice(be);
        return write_decimal_int(out, i128::from_be_bytes(buf), scale);
    }
    // Longer than any i128: the magnitude in base 10^9, by repeated division.
    let negative = be[0] & 0x80 != 0;
    let mut mag: Vec<u8> = be.to_vec();
    if negative {
        // Two's complement negation: invert, add one.
        for b in mag.iter_mut() {
            *b = !*b;
        }
        for b in mag.iter_mut().rev() {
            let (v, carry) = b.overflowing_add(1);
            *b = v;
            if !carry {
                break;
            }
        }
    }
    let mut limbs: Vec<u32> = Vec::new();
    while mag.iter().any(|&b| b != 0) {
        let mut rem: u64 = 0;
        for b in mag.iter_mut() {
            let cur = (rem << 8) | u64::from(*b);
            *b = (cur / 1_000_000_000) as u8;
            rem = cur % 1_000_000_000;
        }
        limbs.push(rem as u32);
    }
    let mut digits = String::new();
    for (i, limb) in limbs.iter().rev().enumerate() {
        if i == 0 {
            digits.push_str(&limb.to_string());
        } else {
            digits.push_str(&format!("{limb:09}"));
        }
    }
    if digits.is_empty() {
        digits.push('0');
    }
    write_scaled(out, negative, &digits, scale);
}

macro_rules! write_float_fn {
    ($name:ident, $t:ty) => {
        /// Shortest text that reads back as the same value; PostgreSQL's spellings of the
        /// special values; exponent form for very large or small magnitudes.
        fn $name(out: &mut Vec<u8>, v: $t) {
            if v.is_nan() {
                out.extend_from_slice(b"NaN");
            } else if v.is_infinite() {
                out.extend_from_slice(if v > 0.0 { b"Infinity" } else { b"-Infinity" });
            } else {
                let a = v.abs();
                if a == 0.0 || (1e-5..1e16).contains(&a) {
                    let _ = write!(out, "{v}");
                } else {
                    let _ = write!(out, "{v:e}");
                }
            }
        }
    };
}
write_float_fn!(write_f64, f64);
write_float_fn!(write_f32, f32);

/// IEEE 754 half precision (little-endian in Parquet) to single precision, exactly.
fn f16_to_f32(bits: u16) -> f32 {
    let sign = if bits & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = u32::from((bits >> 10) & 0x1f);
    let mant = u32::from(bits & 0x3ff);
    let mag = match exp {
        0 => mant as f32 * (1.0 / 16_777_216.0), // subnormal: mant * 2^-24
        31 if mant == 0 => f32::INFINITY,
        31 => f32::NAN,
        _ => f32::from_bits(((exp + 112) << 23) | (mant << 13)),
    };
    sign * mag
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn write_hex_digits(out: &mut Vec<u8>, v: &[u8]) {
    out.reserve(v.len() * 2);
    for &b in v {
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 15)]);
    }
}

/// PostgreSQL `bytea` hex input: `\x` then two digits per byte.
fn write_bytea(out: &mut Vec<u8>, v: &[u8]) {
    out.extend_from_slice(b"\\x");
    write_hex_digits(out, v);
}

fn write_uuid(out: &mut Vec<u8>, v: &[u8]) {
    for (i, part) in [&v[0..4], &v[4..6], &v[6..8], &v[8..10], &v[10..16]]
        .iter()
        .enumerate()
    {
        if i > 0 {
            out.push(b'-');
        }
        write_hex_digits(out, part);
    }
}

/// Parquet's INTERVAL: months, days, milliseconds (unsigned little-endian), as ISO 8601.
fn write_interval(out: &mut Vec<u8>, v: &[u8]) {
    let part = |i: usize| u32::from_le_bytes([v[i], v[i + 1], v[i + 2], v[i + 3]]);
    let (months, days, millis) = (part(0), part(4), part(8));
    let _ = write!(
        out,
        "P{months}M{days}DT{}.{:03}S",
        millis / 1000,
        millis % 1000
    );
}

/// A CSV field: quoted, inner quotes doubled.
fn write_quoted(out: &mut Vec<u8>, v: &[u8]) {
    out.push(b'"');
    let mut rest = v;
    while let Some(i) = memchr::memchr(b'"', rest) {
        out.extend_from_slice(&rest[..=i]);
        out.push(b'"');
        rest = &rest[i + 1..];
    }
    out.extend_from_slice(rest);
    out.push(b'"');
}

/// A value as JSON (inside lists, maps and structs). Numbers stay numbers (DECIMAL exactly),
/// what JSON cannot hold as a number (NaN, infinities) and times and bytes become strings.
fn write_json(out: &mut Vec<u8>, f: &Field) {
    let string = |out: &mut Vec<u8>, text: &[u8]| {
        let s = String::from_utf8_lossy(text);
        let _ = serde_json::to_writer(&mut *out, &*s);
    };
    let mut tmp = Vec::new();
    match f {
        Field::Null => out.extend_from_slice(b"null"),
        Field::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Field::Byte(n) => {
            let _ = write!(out, "{n}");
        }
        Field::Short(n) => {
            let _ = write!(out, "{n}");
        }
        Field::Int(n) => {
            let _ = write!(out, "{n}");
        }
        Field::Long(n) => {
            let _ = write!(out, "{n}");
        }
        Field::UByte(n) => {
            let _ = write!(out, "{n}");
        }
        Field::UShort(n) => {
            let _ = write!(out, "{n}");
        }
        Field::UInt(n) => {
            let _ = write!(out, "{n}");
        }
        Field::ULong(n) => {
            let _ = write!(out, "{n}");
        }
        Field::Float16(v) => {
            write_f32(&mut tmp, f16_to_f32(v.to_bits()));
            json_number(out, &tmp);
        }
        Field::Float(v) => {
            write_f32(&mut tmp, *v);
            json_number(out, &tmp);
        }
        Field::Double(v) => {
            write_f64(&mut tmp, *v);
            json_number(out, &tmp);
        }
        Field::Decimal(d) => write_decimal_bytes(out, d.data(), d.scale()),
        Field::Str(s) => string(out, s.as_bytes()),
        Field::Bytes(b) => {
            write_bytea(&mut tmp, b.data());
            string(out, &tmp);
        }
        Field::Date(d) => {
            write_date(&mut tmp, *d);
            string(out, &tmp);
        }
        Field::TimeMillis(t) => {
            write_time(&mut tmp, i64::from(*t), Unit::Millis);
            string(out, &tmp);
        }
        Field::TimeMicros(t) => {
            write_time(&mut tmp, *t, Unit::Micros);
            string(out, &tmp);
        }
        Field::TimestampMillis(t) => {
            write_timestamp(&mut tmp, *t, Unit::Millis);
            string(out, &tmp);
        }
        Field::TimestampMicros(t) => {
            write_timestamp(&mut tmp, *t, Unit::Micros);
            string(out, &tmp);
        }
        Field::Group(row) => write_json_object(out, row),
        Field::ListInternal(list) => {
            out.push(b'[');
            for (i, e) in list.elements().iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json(out, e);
            }
            out.push(b']');
        }
        Field::MapInternal(map) => {
            out.push(b'{');
            for (i, (k, v)) in map.entries().iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                match k {
                    Field::Str(s) => string(out, s.as_bytes()),
                    other => {
                        let mut key = Vec::new();
                        write_json(&mut key, other);
                        string(out, &key);
                    }
                }
                out.push(b':');
                write_json(out, v);
            }
            out.push(b'}');
        }
    }
}

/// A float's text as JSON: a number, or a string for NaN and the infinities.
fn json_number(out: &mut Vec<u8>, text: &[u8]) {
    if text
        .first()
        .is_some_and(|b| b.is_ascii_digit() || *b == b'-')
        && text != b"-Infinity"
    {
        out.extend_from_slice(text);
    } else {
        out.push(b'"');
        out.extend_from_slice(text);
        out.push(b'"');
    }
}

fn write_json_object(out: &mut Vec<u8>, row: &Row) {
    out.push(b'{');
    for (i, (name, value)) in row.get_column_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let _ = serde_json::to_writer(&mut *out, name);
        out.push(b':');
        write_json(out, value);
    }
    out.push(b'}');
}

// ----------------------------------------------------------------------------------------
// Reading.

/// Decoded values of one column for the current batch.
enum Values {
    Bool(Vec<bool>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    I96(Vec<Int96>),
    F32(Vec<f32>),
    F64(Vec<f64>),
    Bytes(Vec<ByteArray>),
    Fixed(Vec<FixedLenByteArray>),
}

impl Values {
    fn for_type(t: PhysicalType) -> Values {
        match t {
            PhysicalType::BOOLEAN => Values::Bool(Vec::new()),
            PhysicalType::INT32 => Values::I32(Vec::new()),
            PhysicalType::INT64 => Values::I64(Vec::new()),
            PhysicalType::INT96 => Values::I96(Vec::new()),
            PhysicalType::FLOAT => Values::F32(Vec::new()),
            PhysicalType::DOUBLE => Values::F64(Vec::new()),
            PhysicalType::BYTE_ARRAY => Values::Bytes(Vec::new()),
            PhysicalType::FIXED_LEN_BYTE_ARRAY => Values::Fixed(Vec::new()),
        }
    }

    /// Writes value `i`, rendered, without quotes.
    fn write(&self, render: Render, i: usize, out: &mut Vec<u8>) {
        match (self, render) {
            (Values::Bool(v), _) => out.extend_from_slice(if v[i] { b"true" } else { b"false" }),
            (Values::I32(v), Render::Date) => write_date(out, v[i]),
            (Values::I32(v), Render::Time(u)) => write_time(out, i64::from(v[i]), u),
            (Values::I32(v), Render::Decimal { scale }) => {
                write_decimal_int(out, i128::from(v[i]), scale)
            }
            (Values::I32(v), Render::UInt) => {
                let _ = write!(out, "{}", v[i] as u32);
            }
            (Values::I32(v), _) => {
                let _ = write!(out, "{}", v[i]);
            }
            (Values::I64(v), Render::Timestamp(u)) => write_timestamp(out, v[i], u),
            (Values::I64(v), Render::Time(u)) => write_time(out, v[i], u),
            (Values::I64(v), Render::Decimal { scale }) => {
                write_decimal_int(out, i128::from(v[i]), scale)
            }
            (Values::I64(v), Render::UInt) => {
                let _ = write!(out, "{}", v[i] as u64);
            }
            (Values::I64(v), _) => {
                let _ = write!(out, "{}", v[i]);
            }
            (Values::I96(v), _) => write_int96(out, &v[i]),
            (Values::F32(v), _) => write_f32(out, v[i]),
            (Values::F64(v), _) => write_f64(out, v[i]),
            (Values::Bytes(v), r) => write_binary(out, v[i].data(), r),
            (Values::Fixed(v), r) => write_binary(out, v[i].data(), r),
        }
    }
}

fn write_binary(out: &mut Vec<u8>, v: &[u8], render: Render) {
    match render {
        Render::Text => out.extend_from_slice(v),
        Render::Decimal { scale } => write_decimal_bytes(out, v, scale),
        Render::Uuid if v.len() == 16 => write_uuid(out, v),
        Render::Float16 if v.len() == 2 => {
            write_f32(out, f16_to_f32(u16::from_le_bytes([v[0], v[1]])))
        }
        Render::Interval if v.len() == 12 => write_interval(out, v),
        _ => write_bytea(out, v),
    }
}

/// Reads up to `n` records of a flat column into `values` (and `defs`, its definition levels).
fn fill(
    reader: &mut ColumnReader,
    values: &mut Values,
    defs: &mut Vec<i16>,
    n: usize,
) -> parquet::errors::Result<usize> {
    defs.clear();
    macro_rules! read {
        ($r:expr, $v:expr) => {{
            $v.clear();
            $r.read_records(n, Some(defs), None, $v)?.0
        }};
    }
    Ok(match (reader, values) {
        (ColumnReader::BoolColumnReader(r), Values::Bool(v)) => read!(r, v),
        (ColumnReader::Int32ColumnReader(r), Values::I32(v)) => read!(r, v),
        (ColumnReader::Int64ColumnReader(r), Values::I64(v)) => read!(r, v),
        (ColumnReader::Int96ColumnReader(r), Values::I96(v)) => read!(r, v),
        (ColumnReader::FloatColumnReader(r), Values::F32(v)) => read!(r, v),
        (ColumnReader::DoubleColumnReader(r), Values::F64(v)) => read!(r, v),
        (ColumnReader::ByteArrayColumnReader(r), Values::Bytes(v)) => read!(r, v),
        (ColumnReader::FixedLenByteArrayColumnReader(r), Values::Fixed(v)) => read!(r, v),
        _ => {
            return Err(parquet::errors::ParquetError::General(
                "column reader and values disagree on the physical type".into(),
            ))
        }
    })
}

/// A top-level column that is a single primitive leaf.
struct Flat {
    name: String,
    leaf: usize,
    render: Render,
    max_def: i16,
    reader: Option<ColumnReader>,
    values: Values,
    defs: Vec<i16>,
    /// Next value (non-null values only) of the batch.
    next_value: usize,
}

/// One top-level column of the output.
enum Column {
    Flat(Box<Flat>),
    /// A list, map or struct: the `i`th field of the nested row iterator's rows.
    Nested(usize),
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

    /// Checks the page headers of row group `index` (see [`check_chunk`]) and sizes its
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

/// The length of value `i` when it is bytes (the only values that can be long).
fn value_len(values: &Values, i: usize) -> usize {
    match values {
        Values::Bytes(v) => v[i].len(),
        Values::Fixed(v) => v[i].len(),
        _ => 0,
    }
}

/// The bytes of a text value (which may need its quotes doubled).
fn text_value(values: &Values, i: usize) -> &[u8] {
    match values {
        Values::Bytes(v) => v[i].data(),
        Values::Fixed(v) => v[i].data(),
        _ => &[],
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

// ----------------------------------------------------------------------------------------
// Page headers, checked before the reader decodes a row group.
//
// The `parquet` crate allocates a page's declared uncompressed size before decompressing it,
// reads a gzip page to its end whatever it declares, and keeps every page a batch of rows
// touches. So before a row group is read, every page header of its column chunks is read
// here (Thrift compact protocol, fields skipped without allocating): a page declaring more
// than the record limit, compressed or not, is refused, and a gzip page is inflated into a
// small scratch buffer, counting, and refused as soon as it exceeds what it declares. The
// headers also give each flat column's largest bytes per row, which sizes the row group's
// batches.

/// Thrift compact protocol types (the low nibble of a field header).
mod ttype {
    pub const TRUE: u8 = 1;
    pub const FALSE: u8 = 2;
    pub const BYTE: u8 = 3;
    pub const I16: u8 = 4;
    pub const I32: u8 = 5;
    pub const I64: u8 = 6;
    pub const DOUBLE: u8 = 7;
    pub const BINARY: u8 = 8;
    pub const LIST: u8 = 9;
    pub const SET: u8 = 10;
    pub const MAP: u8 = 11;
    pub const STRUCT: u8 = 12;
    pub const UUID: u8 = 13;
}

/// Nesting deeper than this in a page header is refused (a hostile header could recurse).
const MAX_THRIFT_DEPTH: u32 = 32;

/// Why a file is refused before its pages are decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Refusal {
    /// A page or value beyond the record limit: `record_too_long`.
    TooLarge(String),
    /// Not valid Parquet: `corrupt_parquet`.
    Corrupt(String),
}

/// A Thrift compact-protocol reader that skips what it does not need without allocating;
/// no length it reads may exceed `limit`.
struct Compact<R> {
    r: R,
    limit: u64,
}

impl<R: Read> Compact<R> {
    fn byte(&mut self) -> Result<u8, String> {
        let mut b = [0u8; 1];
        self.r
            .read_exact(&mut b)
            .map_err(|e| format!("truncated page header: {e}"))?;
        Ok(b[0])
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut v: u64 = 0;
        for shift in (0..70).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift.min(63);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("page header has a varint longer than 10 bytes".into())
    }

    fn zigzag(&mut self) -> Result<i64, String> {
        let v = self.varint()?;
        Ok((v >> 1) as i64 ^ -((v & 1) as i64))
    }

    fn skip_bytes(&mut self, n: u64) -> Result<(), String> {
        if n > self.limit {
            return Err(format!("page header holds a field of {n} bytes"));
        }
        let copied = io::copy(&mut (&mut self.r).take(n), &mut io::sink())
            .map_err(|e| format!("reading a page header: {e}"))?;
        if copied != n {
            return Err("truncated page header".into());
        }
        Ok(())
    }

    /// The next field of a struct: (id, type), None at its end. `last` is the previous id.
    fn field(&mut self, last: &mut i16) -> Result<Option<(i16, u8)>, String> {
        let b = self.byte()?;
        if b == 0 {
            return Ok(None);
        }
        let delta = i16::from(b >> 4);
        let id = if delta == 0 {
            i16::try_from(self.zigzag()?).map_err(|_| "bad field id in a page header")?
        } else {
            last.wrapping_add(delta)
        };
        *last = id;
        Ok(Some((id, b & 0x0f)))
    }

    /// Reads an integer field of type `ty`.
    fn int(&mut self, ty: u8) -> Result<i64, String> {
        match ty {
            ttype::I16 | ttype::I32 | ttype::I64 => self.zigzag(),
            _ => Err(format!(
                "page header field of type {ty} where an integer belongs"
            )),
        }
    }

    /// Skips a value of type `ty`.
    fn skip(&mut self, ty: u8, depth: u32) -> Result<(), String> {
        if depth > MAX_THRIFT_DEPTH {
            return Err("page header nested too deep".into());
        }
        match ty {
            ttype::TRUE | ttype::FALSE => Ok(()),
            ttype::BYTE => self.byte().map(drop),
            ttype::I16 | ttype::I32 | ttype::I64 => self.varint().map(drop),
            ttype::DOUBLE => self.skip_bytes(8),
            ttype::UUID => self.skip_bytes(16),
            ttype::BINARY => {
                let n = self.varint()?;
                self.skip_bytes(n)
            }
            ttype::LIST | ttype::SET => {
                let h = self.byte()?;
                let n = match h >> 4 {
                    15 => self.varint()?,
                    n => u64::from(n),
                };
                self.skip_elements(n, &[h & 0x0f], depth)
            }
            ttype::MAP => {
                let n = self.varint()?;
                if n == 0 {
                    return Ok(());
                }
                let kv = self.byte()?;
                self.skip_elements(n, &[kv >> 4, kv & 0x0f], depth)
            }
            ttype::STRUCT => {
                let mut last = 0;
                while let Some((_, t)) = self.field(&mut last)? {
                    self.skip(t, depth + 1)?;
                }
                Ok(())
            }
            other => Err(format!("page header has a field of unknown type {other}")),
        }
    }

    /// Skips `n` collection elements of the given types (booleans are one byte each there).
    fn skip_elements(&mut self, n: u64, types: &[u8], depth: u32) -> Result<(), String> {
        if n > self.limit {
            return Err(format!("page header holds a collection of {n} elements"));
        }
        for _ in 0..n {
            for &t in types {
                if t == ttype::TRUE || t == ttype::FALSE {
                    self.byte()?;
                } else {
                    self.skip(t, depth + 1)?;
                }
            }
        }
        Ok(())
    }
}

/// Page types (`parquet.thrift`).
const DICTIONARY_PAGE: i64 = 2;
const DATA_PAGE_V2: i64 = 3;

/// What a page header says about the page's size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct PageHeader {
    kind: i64,
    uncompressed: i64,
    compressed: i64,
    /// Values (data page v1) or rows (v2) in the page; 0 for other pages.
    rows: i64,
    /// Data page v2: bytes of repetition and definition levels, stored uncompressed before
    /// the compressed values.
    levels: i64,
    /// Data page v2: whether the values are compressed (the default).
    compressed_values: bool,
}

/// Reads one page header (the fields that size the page; the rest is skipped).
fn read_page_header<R: Read>(r: R, limit: u64) -> Result<PageHeader, String> {
    let mut c = Compact { r, limit };
    let mut h = PageHeader {
        kind: -1,
        uncompressed: -1,
        compressed: -1,
        compressed_values: true,
        ..PageHeader::default()
    };
    let mut last = 0;
    while let Some((id, ty)) = c.field(&mut last)? {
        match (id, ty) {
            (1, _) => h.kind = c.int(ty)?,
            (2, _) => h.uncompressed = c.int(ty)?,
            (3, _) => h.compressed = c.int(ty)?,
            (5 | 8, ttype::STRUCT) => {
                let v2 = id == 8;
                let mut last = 0;
                let (mut def, mut rep) = (0, 0);
                while let Some((id, ty)) = c.field(&mut last)? {
                    match (id, v2) {
                        (1, false) | (3, true) => h.rows = c.int(ty)?,
                        (5, true) => def = c.int(ty)?,
                        (6, true) => rep = c.int(ty)?,
                        (7, true) => h.compressed_values = ty != ttype::FALSE,
                        _ => c.skip(ty, 1)?,
                    }
                }
                h.levels = def.saturating_add(rep);
            }
            _ => c.skip(ty, 0)?,
        }
    }
    if h.kind < 0 || h.uncompressed < 0 || h.compressed < 0 || h.levels < 0 {
        return Err("page header lacks its type or sizes, or has negative ones".into());
    }
    Ok(h)
}

/// Inflates a gzip page's bytes into a small scratch buffer, counting, and refuses it as
/// soon as it yields more than `declared` bytes (the `parquet` crate would read it whole).
fn check_gzip_page<R: Read>(compressed: R, declared: u64) -> Result<(), String> {
    let mut inflate = flate2::read::MultiGzDecoder::new(compressed);
    let mut scratch = [0u8; 1 << 14];
    let mut total: u64 = 0;
    loop {
        let n = match inflate.read(&mut scratch) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // The reader reports a bad stream itself, with its context.
            Err(_) => return Ok(()),
        };
        total += n as u64;
        if total > declared {
            return Err(format!(
                "a gzip page declares {declared} bytes and inflates to more"
            ));
        }
    }
}

/// A [`Read`] of a file from an offset on, by positioned reads (no shared cursor).
struct ReadAt<'f> {
    file: &'f File,
    pos: u64,
}

impl Read for ReadAt<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = std::os::unix::fs::FileExt::read_at(self.file, buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// What the pages of one column chunk hold at most.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct ChunkPages {
    /// The largest declared uncompressed page.
    largest: u64,
    /// The most uncompressed bytes per row (per value) of a data page.
    per_row: u64,
}

/// Checks every page header of the column chunk at `start..start + len` of `file` against
/// `limit` (see the section's comment); `gzip`: its pages are gzip, inflated to check them.
fn check_chunk(
    file: &File,
    (start, len): (u64, u64),
    gzip: bool,
    limit: u64,
) -> Result<ChunkPages, Refusal> {
    let end = start.saturating_add(len);
    let mut pos = start;
    let mut pages = ChunkPages::default();
    while pos < end {
        let mut at = io::BufReader::with_capacity(1 << 12, ReadAt { file, pos });
        let h = read_page_header(&mut at, limit).map_err(Refusal::Corrupt)?;
        let header_len = at.get_ref().pos - at.buffer().len() as u64 - pos;
        let (uncompressed, compressed) = (h.uncompressed as u64, h.compressed as u64);
        let size = uncompressed.max(compressed);
        if size > limit {
            return Err(Refusal::TooLarge(format!(
                "a page of {size} bytes, more than the record limit of {limit} bytes \
                 (--max-record-bytes)"
            )));
        }
        let body = pos + header_len;
        if gzip && compressed > 0 {
            let levels = if h.kind == DATA_PAGE_V2 {
                h.levels as u64
            } else {
                0
            };
            let declared = uncompressed.saturating_sub(levels);
            // A page declaring no bytes has only NULLs: the reader does not inflate it.
            if declared > 0 && (h.kind != DATA_PAGE_V2 || h.compressed_values) {
                let values = ReadAt {
                    file,
                    pos: body.saturating_add(levels),
                }
                .take(compressed.saturating_sub(levels));
                check_gzip_page(values, declared).map_err(Refusal::Corrupt)?;
            }
        }
        pages.largest = pages.largest.max(uncompressed);
        if h.kind != DICTIONARY_PAGE && h.rows > 0 {
            pages.per_row = pages.per_row.max(uncompressed.div_ceil(h.rows as u64));
        }
        pos = body.saturating_add(compressed);
    }
    Ok(pages)
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

    fn s(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        f(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn dates_are_proleptic_gregorian() {
        assert_eq!(s(|o| write_date(o, 0)), "1970-01-01");
        assert_eq!(s(|o| write_date(o, 19_000)), "2022-01-08");
        assert_eq!(s(|o| write_date(o, -1)), "1969-12-31");
        assert_eq!(s(|o| write_date(o, 11_016)), "2000-02-29");
        assert_eq!(s(|o| write_date(o, 2_932_896)), "9999-12-31");
        assert_eq!(s(|o| write_date(o, -719_162)), "0001-01-01");
        assert_eq!(s(|o| write_date(o, -719_163)), "0001-12-31 BC");
    }

    #[test]
    fn timestamps_are_utc_with_microseconds() {
        let t = 1_730_201_641_123_456i64; // 2024-10-29 11:34:01.123456
        assert_eq!(
            s(|o| write_timestamp(o, t, Unit::Micros)),
            "2024-10-29 11:34:01.123456"
        );
        assert_eq!(
            s(|o| write_timestamp(o, t / 1000, Unit::Millis)),
            "2024-10-29 11:34:01.123000"
        );
        assert_eq!(
            s(|o| write_timestamp(o, t * 1000, Unit::Nanos)),
            "2024-10-29 11:34:01.123456"
        );
        // Nanoseconds that are not whole microseconds are kept: PostgreSQL rounds them.
        assert_eq!(
            s(|o| write_timestamp(o, t * 1000 + 789, Unit::Nanos)),
            "2024-10-29 11:34:01.123456789"
        );
        assert_eq!(
            s(|o| write_timestamp(o, -1, Unit::Micros)),
            "1969-12-31 23:59:59.999999"
        );
        assert_eq!(
            s(|o| write_timestamp(o, 0, Unit::Millis)),
            "1970-01-01 00:00:00.000000"
        );
        assert_eq!(
            s(|o| write_timestamp(o, -62_135_596_800_000_001, Unit::Micros)),
            "0001-12-31 23:59:59.999999 BC"
        );
    }

    #[test]
    fn int96_is_julian_day_and_nanoseconds() {
        let mut v = Int96::new();
        // 2024-10-29 is Julian day 2460613; 11:34:01.123456789 of that day.
        let nanos: u64 = (11 * 3600 + 34 * 60 + 1) * 1_000_000_000 + 123_456_789;
        v.set_data(nanos as u32, (nanos >> 32) as u32, 2_460_613);
        assert_eq!(s(|o| write_int96(o, &v)), "2024-10-29 11:34:01.123456789");
    }

    #[test]
    fn times_of_day() {
        assert_eq!(s(|o| write_time(o, 0, Unit::Millis)), "00:00:00.000000");
        assert_eq!(
            s(|o| write_time(o, 86_399_999_999, Unit::Micros)),
            "23:59:59.999999"
        );
        assert_eq!(
            s(|o| write_time(o, 3_723_000_000_001, Unit::Nanos)),
            "01:02:03.000000001"
        );
        assert_eq!(
            s(|o| write_time(o, 86_400_000, Unit::Millis)),
            "24:00:00.000000"
        );
    }

    #[test]
    fn decimals_are_exact() {
        assert_eq!(s(|o| write_decimal_int(o, 12345, 2)), "123.45");
        assert_eq!(s(|o| write_decimal_int(o, -12345, 2)), "-123.45");
        assert_eq!(s(|o| write_decimal_int(o, 5, 3)), "0.005");
        assert_eq!(s(|o| write_decimal_int(o, -5, 3)), "-0.005");
        assert_eq!(s(|o| write_decimal_int(o, 0, 2)), "0.00");
        assert_eq!(s(|o| write_decimal_int(o, 42, 0)), "42");
        // 38 digits (the most DMS writes), big-endian two's complement in 16 bytes.
        let max = 99_999_999_999_999_999_999_999_999_999_999_999_999i128;
        assert_eq!(
            s(|o| write_decimal_bytes(o, &max.to_be_bytes(), 10)),
            "9999999999999999999999999999.9999999999"
        );
        assert_eq!(
            s(|o| write_decimal_bytes(o, &(-max).to_be_bytes(), 38)),
            "-0.99999999999999999999999999999999999999"
        );
        // Minimal-length encodings, as writers emit them.
        assert_eq!(s(|o| write_decimal_bytes(o, &[0xff], 1)), "-0.1");
        assert_eq!(s(|o| write_decimal_bytes(o, &[0x00, 0x80], 0)), "128");
        assert_eq!(s(|o| write_decimal_bytes(o, &[], 2)), "0.00");
        // Beyond i128: 10^40 and -(10^40) in 17 bytes.
        let ten40: [u8; 17] = {
            let mut b = [0u8; 17];
            // 10^40 = 0x1D6329F1C35CA4BFABB9F5610000000000
            let hex = "1d6329f1c35ca4bfabb9f5610000000000";
            for (i, byte) in b.iter_mut().enumerate() {
                *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
            }
            b
        };
        assert_eq!(
            s(|o| write_decimal_bytes(o, &ten40, 2)),
            format!("1{}.00", "0".repeat(38))
        );
        let mut neg = ten40.map(|b| !b);
        for b in neg.iter_mut().rev() {
            let (v, c) = b.overflowing_add(1);
            *b = v;
            if !c {
                break;
            }
        }
        let mut wide = vec![0xffu8];
        wide.extend_from_slice(&neg);
        assert_eq!(
            s(|o| write_decimal_bytes(o, &wide, 0)),
            format!("-1{}", "0".repeat(40))
        );
    }

    #[test]
    fn floats_round_trip_and_spell_specials_as_postgresql() {
        for v in [
            0.1f64,
            1.0 / 3.0,
            -2.5,
            1e300,
            5e-324,
            123_456_789.125,
            1e16,
            1e-5,
        ] {
            let text = s(|o| write_f64(o, v));
            assert_eq!(text.parse::<f64>().unwrap(), v, "{text}");
        }
        assert_eq!(s(|o| write_f64(o, 0.1)), "0.1");
        assert_eq!(s(|o| write_f64(o, 1e300)), "1e300");
        assert_eq!(s(|o| write_f64(o, -0.0)), "-0");
        assert_eq!(s(|o| write_f64(o, f64::NAN)), "NaN");
        assert_eq!(s(|o| write_f64(o, f64::INFINITY)), "Infinity");
        assert_eq!(s(|o| write_f64(o, f64::NEG_INFINITY)), "-Infinity");
        assert_eq!(s(|o| write_f32(o, 0.1f32)), "0.1");
        assert_eq!(s(|o| write_f32(o, 3.4028235e38)), "3.4028235e38");
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert!(f16_to_f32(0x7e00).is_nan());
        assert_eq!(f16_to_f32(0xfc00), f32::NEG_INFINITY);
    }

    #[test]
    fn binary_uuid_interval_and_quoting() {
        assert_eq!(s(|o| write_bytea(o, &[0, 0x1b, 0xff])), "\\x001bff");
        assert_eq!(s(|o| write_bytea(o, &[])), "\\x");
        let u = [
            0x12, 0x3e, 0x45, 0x67, 0xe8, 0x9b, 0x12, 0xd3, 0xa4, 0x56, 0x42, 0x66, 0x14, 0x17,
            0x40, 0x00,
        ];
        assert_eq!(
            s(|o| write_uuid(o, &u)),
            "123e4567-e89b-12d3-a456-426614174000"
        );
        let mut iv = Vec::new();
        for part in [14u32, 3, 4_005] {
            iv.extend_from_slice(&part.to_le_bytes());
        }
        assert_eq!(s(|o| write_interval(o, &iv)), "P14M3DT4.005S");
        assert_eq!(
            s(|o| write_quoted(o, "a \"b\", c\nd".as_bytes())),
            "\"a \"\"b\"\", c\nd\""
        );
        assert_eq!(s(|o| write_quoted(o, b"")), "\"\"");
        assert_eq!(s(|o| write_quoted(o, b"\"")), "\"\"\"\"");
    }

    #[test]
    fn nested_values_are_json() {
        use parquet::record::Field as F;
        let text = s(|o| write_json(o, &F::Str("a\"b\\\n".into())));
        assert_eq!(text, r#""a\"b\\\n""#);
        assert_eq!(s(|o| write_json(o, &F::Double(f64::NAN))), r#""NaN""#);
        assert_eq!(
            s(|o| write_json(o, &F::Double(f64::NEG_INFINITY))),
            r#""-Infinity""#
        );
        assert_eq!(s(|o| write_json(o, &F::Double(-1.5))), "-1.5");
        assert_eq!(
            s(|o| write_json(
                o,
                &F::Decimal(parquet::data_type::Decimal::from_i64(-105, 10, 2))
            )),
            "-1.05"
        );
        assert_eq!(
            s(|o| write_json(o, &F::Bytes(ByteArray::from(vec![1u8, 2])))),
            r#""\\x0102""#
        );
        assert_eq!(
            s(|o| write_json(o, &F::TimestampMicros(1_000_001))),
            r#""1970-01-01 00:00:01.000001""#
        );
        assert_eq!(s(|o| write_json(o, &F::Date(1))), r#""1970-01-02""#);
        assert_eq!(
            s(|o| write_json(o, &F::ULong(u64::MAX))),
            "18446744073709551615"
        );
    }

    /// Thrift compact encoding, for hand-made page headers.
    fn zz(v: i64) -> Vec<u8> {
        let mut u = ((v << 1) ^ (v >> 63)) as u64;
        let mut out = Vec::new();
        loop {
            if u < 0x80 {
                out.push(u as u8);
                return out;
            }
            out.push((u as u8 & 0x7f) | 0x80);
            u >>= 7;
        }
    }

    fn int_field(delta: u8, v: i64) -> Vec<u8> {
        let mut out = vec![(delta << 4) | ttype::I32];
        out.extend(zz(v));
        out
    }

    /// A page header: (type, uncompressed, compressed), rows in its data or dictionary page
    /// header, or a v2 header with (rows, level bytes, values compressed).
    fn header(kind: i64, sizes: (i64, i64), rows: i64, v2: Option<(i64, bool)>) -> Vec<u8> {
        let mut h = int_field(1, kind);
        h.extend(int_field(1, sizes.0));
        h.extend(int_field(1, sizes.1));
        match v2 {
            None => {
                let delta = if kind == DICTIONARY_PAGE { 4 } else { 2 };
                h.push((delta << 4) | ttype::STRUCT);
                h.extend(int_field(1, rows));
                h.extend(int_field(1, 0));
                h.push(0);
            }
            Some((levels, compressed)) => {
                h.push((5 << 4) | ttype::STRUCT);
                for v in [rows, 0, rows, 0, levels, 0] {
                    h.extend(int_field(1, v));
                }
                h.push(
                    (1 << 4)
                        | if compressed {
                            ttype::TRUE
                        } else {
                            ttype::FALSE
                        },
                );
                h.push(0);
            }
        }
        h.push(0);
        h
    }

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        std::io::Write::write_all(&mut e, data).unwrap();
        e.finish().unwrap()
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

    #[test]
    fn page_headers_give_their_sizes_and_unknown_fields_are_skipped() {
        let h = header(0, (1000, 300), 10, None);
        let got = read_page_header(&h[..], 1 << 20).unwrap();
        assert_eq!(
            (got.kind, got.uncompressed, got.compressed, got.rows),
            (0, 1000, 300, 10)
        );
        let got =
            read_page_header(&header(3, (900, 200), 7, Some((40, false)))[..], 1 << 20).unwrap();
        assert_eq!(
            (got.rows, got.levels, got.compressed_values),
            (7, 40, false)
        );
        // A crc, a binary field, a list and a nested struct, as later fields: skipped.
        let mut h = int_field(1, 0);
        h.extend(int_field(1, 64));
        h.extend(int_field(1, 32));
        h.extend(int_field(1, 12345));
        h.push((6 << 4) | ttype::BINARY);
        h.push(3);
        h.extend(b"abc");
        h.push((1 << 4) | ttype::LIST);
        h.push((3 << 4) | ttype::I32);
        h.extend([2, 4, 6]);
        h.push((1 << 4) | ttype::STRUCT);
        h.push((1 << 4) | ttype::BINARY);
        h.extend([2, b'x', b'y']);
        h.push(0);
        h.push(0);
        let got = read_page_header(&h[..], 1 << 20).unwrap();
        assert_eq!((got.uncompressed, got.compressed), (64, 32));
        // A binary field longer than the limit is refused without reading (or allocating) it.
        let mut h = int_field(1, 0);
        h.push((8 << 4) | ttype::BINARY);
        h.extend([0xff, 0xff, 0xff, 0xff, 0x0f]);
        let e = read_page_header(&h[..], 1 << 20).unwrap_err();
        assert!(e.contains("a field of 4294967295 bytes"), "{e}");
        // Truncated, or without its sizes.
        let h = header(0, (1000, 300), 10, None);
        assert!(read_page_header(&h[..5], 1 << 20).is_err());
        assert!(read_page_header(&[0u8][..], 1 << 20).is_err());
        // Nesting beyond reason.
        let mut h = vec![(9 << 4) | ttype::STRUCT];
        h.extend(std::iter::repeat_n((1 << 4) | ttype::STRUCT, 100));
        let e = read_page_header(&h[..], 1 << 20).unwrap_err();
        assert!(e.contains("nested too deep"), "{e}");
    }

    #[test]
    fn column_chunks_are_checked_page_by_page() {
        let values = vec![b'v'; 4000];
        let dict = gz(b"dictionary");
        let data = gz(&values);
        let mut chunk = header(DICTIONARY_PAGE, (10, dict.len() as i64), 1, None);
        chunk.extend(&dict);
        chunk.extend(header(0, (4000, data.len() as i64), 100, None));
        chunk.extend(&data);
        // A v2 page: 8 bytes of levels, uncompressed, then the gzip values.
        chunk.extend(header(
            3,
            (4008, 8 + data.len() as i64),
            50,
            Some((8, true)),
        ));
        chunk.extend([0u8; 8]);
        chunk.extend(&data);
        let f = temp_file(&chunk);
        let all = (0, chunk.len() as u64);
        assert_eq!(
            check_chunk(&f, all, true, 1 << 20),
            Ok(ChunkPages {
                largest: 4008,
                per_row: 81
            })
        );
        // A page declaring more than the limit, compressed or not.
        assert!(matches!(
            check_chunk(&f, all, true, 4000),
            Err(Refusal::TooLarge(m)) if m.contains("a page of 4008 bytes, more than the record limit of 4000")
        ));
        let mut big = header(0, (10, 1 << 30), 1, None);
        big.extend(b"short");
        let f = temp_file(&big);
        assert!(matches!(
            check_chunk(&f, (0, big.len() as u64), false, 1 << 20),
            Err(Refusal::TooLarge(_))
        ));
        // A gzip page that inflates past what it declares: corrupt, found while counting.
        let bomb = gz(&vec![0u8; 8 << 20]);
        let mut lying = header(0, (4000, bomb.len() as i64), 100, None);
        lying.extend(&bomb);
        let f = temp_file(&lying);
        assert!(matches!(
            check_chunk(&f, (0, lying.len() as u64), true, 1 << 20),
            Err(Refusal::Corrupt(m)) if m.contains("declares 4000 bytes and inflates to more")
        ));
        // Not gzip: not inflated (the reader checks snappy pages against their header itself).
        assert!(check_chunk(&f, (0, lying.len() as u64), false, 16 << 20).is_ok());
        // A chunk that claims more bytes than the file has.
        assert!(matches!(
            check_chunk(&f, (0, lying.len() as u64 + 100), true, 16 << 20),
            Err(Refusal::Corrupt(_))
        ));
    }

    #[test]
    fn batches_hold_fewer_rows_where_rows_are_large() {
        assert_eq!(batch_rows(&[]), BATCH_ROWS);
        assert_eq!(batch_rows(&[8, 100, 4]), BATCH_ROWS);
        assert_eq!(batch_rows(&[1 << 20]), 16);
        assert_eq!(batch_rows(&[1 << 20, 1 << 20]), 8);
        assert_eq!(batch_rows(&[64 << 20]), 1);
        assert_eq!(batch_rows(&[u64::MAX, u64::MAX]), 1);
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
