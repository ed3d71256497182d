//! The flat columns of a row group, a batch at a time: the decoded values of one column
//! ([`Values`]), how a batch is read into them ([`fill`]), and the output's top-level columns
//! ([`Column`]: a flat primitive leaf, or a list, map or struct read by the row iterator).
//!
//! Must not: render a row (the reader does, with [`super::render`]) or keep more than one
//! batch of values per column.

use super::render::{
    write_binary, write_date, write_decimal_int, write_f32, write_f64, write_int96, write_time,
    write_timestamp, Render,
};
use parquet::basic::Type as PhysicalType;
use parquet::column::reader::ColumnReader;
use parquet::data_type::{ByteArray, FixedLenByteArray, Int96};
use std::io::Write;

/// Decoded values of one column for the current batch.
pub(super) enum Values {
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
    pub(super) fn for_type(t: PhysicalType) -> Values {
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
    pub(super) fn write(&self, render: Render, i: usize, out: &mut Vec<u8>) {
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

/// Reads up to `n` records of a flat column into `values` (and `defs`, its definition levels).
pub(super) fn fill(
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
pub(super) struct Flat {
    pub(super) name: String,
    pub(super) leaf: usize,
    pub(super) render: Render,
    pub(super) max_def: i16,
    pub(super) reader: Option<ColumnReader>,
    pub(super) values: Values,
    pub(super) defs: Vec<i16>,
    /// Next value (non-null values only) of the batch.
    pub(super) next_value: usize,
}

/// One top-level column of the output.
pub(super) enum Column {
    Flat(Box<Flat>),
    /// A list, map or struct: the `i`th field of the nested row iterator's rows.
    Nested(usize),
}

/// The length of value `i` when it is bytes (the only values that can be long).
pub(super) fn value_len(values: &Values, i: usize) -> usize {
    match values {
        Values::Bytes(v) => v[i].len(),
        Values::Fixed(v) => v[i].len(),
        _ => 0,
    }
}

/// The bytes of a text value (which may need its quotes doubled).
pub(super) fn text_value(values: &Values, i: usize) -> &[u8] {
    match values {
        Values::Bytes(v) => v[i].data(),
        Values::Fixed(v) => v[i].data(),
        _ => &[],
    }
}
