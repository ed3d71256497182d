//! A stage row in binary, the counterpart of [`crate::encode::text`]'s stage line: record
//! (`int8`), operation (`"char"`, one byte), version (`timestamptz`, NULL for the file's time),
//! the unchanged columns (`int2[]`, NULL for none), then the staged columns, an unchanged one as
//! NULL. Written only where every staged column has a binary type and the table does not set
//! rejects aside; a value without an exact binary form ends the attempt
//! ([`WorkerError::DirectUnfit`]), and the loader stages the file again in text. Pure.

use super::{null, parse_timestamp, timestamp_micros, write_value, ColType};
use crate::encode::field::{Done, FieldAt};
use crate::encode::text::{operation, unchanged_columns};
use crate::encode::{EncodeSpec, Layout};
use crate::error::WorkerError;
use crate::read::csv::Record;

/// `int2`'s oid, the element type of the stage's unchanged-columns array.
const INT2_OID: u32 = 21;

/// Writes one record as a binary stage tuple. `keep` is scratch space for the unchanged
/// columns.
pub(in crate::encode) fn write_stage(
    spec: &EncodeSpec<'_>,
    (layout, types): (&Layout, &[ColType]),
    record: &Record<'_>,
    number: u64,
    keep: &mut Vec<usize>,
    out: &mut Vec<u8>,
) -> Result<Done, WorkerError> {
    let unfit = || WorkerError::DirectUnfit {
        key: spec.key.to_owned(),
        record: number,
        value: true,
    };
    let op = operation(spec, layout, record, number)?;
    let at = FieldAt::of(spec, record, number, op);
    let fields = 4 + layout.columns.len();
    out.extend_from_slice(&(fields as i16).to_be_bytes());
    super::int8(out, number as i64);
    out.extend_from_slice(&1_i32.to_be_bytes());
    out.push(op);
    match layout.version_of(record) {
        Some(v) => {
            at.check_version(v)?;
            timestamp_micros(out, parse_timestamp(v).ok_or_else(unfit)?);
        }
        None => null(out),
    }
    unchanged_columns(spec, layout, record, op, keep);
    int2_array(keep, out);
    let mut kept = keep.iter().peekable();
    let mut done = Done {
        partial: !keep.is_empty(),
        repaired: 0,
    };
    for (pos, i) in layout.staged(record.len()).enumerate() {
        if kept.peek() == Some(&&(pos + 1)) {
            kept.next();
            null(out);
            continue;
        }
        let field = record.get(i).expect("field count was checked");
        let value = at.value(field, layout.columns[pos])?;
        done.repaired += u64::from(matches!(value, crate::encode::field::Value::Repaired(_)));
        if !write_value(&value, types[pos], out) {
            return Err(unfit());
        }
    }
    Ok(done)
}

/// The 1-based positions as a one-dimensional `int2[]` field, or NULL when there are none.
fn int2_array(positions: &[usize], out: &mut Vec<u8>) {
    if positions.is_empty() {
        null(out);
        return;
    }
    let len = 20 + positions.len() * 6;
    out.extend_from_slice(&(len as i32).to_be_bytes());
    out.extend_from_slice(&1_i32.to_be_bytes()); // dimensions
    out.extend_from_slice(&0_i32.to_be_bytes()); // no NULL element
    out.extend_from_slice(&INT2_OID.to_be_bytes());
    out.extend_from_slice(&(positions.len() as i32).to_be_bytes());
    out.extend_from_slice(&1_i32.to_be_bytes()); // lower bound
    for &p in positions {
        out.extend_from_slice(&2_i32.to_be_bytes());
        out.extend_from_slice(&(p as i16).to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unchanged_columns_are_an_int2_array_or_null() {
        let mut out = Vec::new();
        int2_array(&[], &mut out);
        assert_eq!(out, (-1_i32).to_be_bytes());
        out.clear();
        int2_array(&[2, 5], &mut out);
        let mut want = 32_i32.to_be_bytes().to_vec();
        for v in [1_i32, 0, 21, 2, 1] {
            want.extend_from_slice(&v.to_be_bytes());
        }
        for p in [2_i16, 5] {
            want.extend_from_slice(&2_i32.to_be_bytes());
            want.extend_from_slice(&p.to_be_bytes());
        }
        assert_eq!(out, want);
    }
}
