//! PostgreSQL's text `COPY` format: one record as one stage row (or, on the direct path of a
//! table whose columns are not all binary, one target row). Pure.
//!
//! A stage row is `record, op, version, unchanged columns[, reject columns], columns...`; a
//! direct row `record, version, file time, file id[, false], columns...` (see
//! [`super::Direct`]). Invariants: every value is escaped byte-exact ([`escape_copy_text`]);
//! NULL is `\N`; a `bytea` value is PostgreSQL's hex input; under `nosup_value`, the non-key
//! columns of a `U` record holding that value are listed as unchanged and staged as NULL.
//!
//! Must not: decide the layout, or refuse a value PostgreSQL would take (the value checks are
//! [`super::field`]'s, shared with the binary format).

use super::field::{excerpt, Done, FieldAt, Value};
use super::{EncodeSpec, Layout};
use crate::error::WorkerError;
use crate::read::csv::Record;
use std::io::Write;

/// Writes one record as a `COPY` line. `keep` is scratch space for the unchanged columns.
pub(super) fn encode_record(
    spec: &EncodeSpec<'_>,
    layout: &Layout,
    record: &Record<'_>,
    number: u64,
    keep: &mut Vec<usize>,
    out: &mut Vec<u8>,
) -> Result<Done, WorkerError> {
    let op = operation(spec, layout, record, number)?;
    let at = FieldAt::of(spec, record, number, op);
    // Writing into a Vec cannot fail.
    let _ = write!(out, "{number}");
    out.push(b'\t');
    if spec.direct.is_none() {
        out.push(op);
        out.push(b'\t');
    }
    match layout.version_of(record) {
        Some(v) => {
            at.check_version(v)?;
            out.extend_from_slice(v);
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
    unchanged_columns(spec, layout, record, op, keep);
    if spec.direct.is_none() {
        // The direct path has inserts only: no column is kept, and the target has no such
        // column.
        write_unchanged(keep, out);
    }
    if spec.rejects() {
        out.extend_from_slice(b"\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N");
    }
    let done = write_columns(&at, layout, record, keep, out)?;
    out.push(b'\n');
    Ok(done)
}

/// The record's operation: its `Op` field (`I`, `U` or `D`), or `I` without one.
pub(super) fn operation(
    spec: &EncodeSpec<'_>,
    layout: &Layout,
    record: &Record<'_>,
    number: u64,
) -> Result<u8, WorkerError> {
    if !layout.has_op {
        return Ok(b'I');
    }
    let f = record.get(0).expect("field count was checked");
    match f.value {
        b"I" | b"U" | b"D" => Ok(f.value[0]),
        other => Err(WorkerError::BadOperation {
            key: spec.key.to_owned(),
            record: number,
            line: record.line(),
            value: excerpt(other),
        }),
    }
}

/// Fills `keep` with the 1-based positions, among the staged columns, of the columns a `U`
/// record leaves unchanged (DMS's `CsvNoSupValue`); never a key column.
pub(super) fn unchanged_columns(
    spec: &EncodeSpec<'_>,
    layout: &Layout,
    record: &Record<'_>,
    op: u8,
    keep: &mut Vec<usize>,
) {
    keep.clear();
    let (b'U', Some(nosup)) = (op, spec.rules.nosup_value.as_deref()) else {
        return;
    };
    for (pos, i) in layout.staged(record.len()).enumerate() {
        let col = layout.columns[pos];
        if !spec.target.key.contains(&col)
            && record.get(i).is_some_and(|f| f.value == nosup.as_bytes())
        {
            keep.push(pos + 1);
        }
    }
}

/// The unchanged columns as an `int[]` (`{2,3}`), or NULL when there are none.
fn write_unchanged(keep: &[usize], out: &mut Vec<u8>) {
    if keep.is_empty() {
        out.extend_from_slice(b"\\N");
        return;
    }
    out.push(b'{');
    for (n, pos) in keep.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        let _ = write!(out, "{pos}");
    }
    out.push(b'}');
}

/// The staged columns' values, each after a tab; an unchanged column is NULL.
fn write_columns(
    at: &FieldAt<'_>,
    layout: &Layout,
    record: &Record<'_>,
    keep: &[usize],
    out: &mut Vec<u8>,
) -> Result<Done, WorkerError> {
    let mut kept = keep.iter().peekable();
    let mut done = Done {
        partial: !keep.is_empty(),
        repaired: 0,
    };
    for (pos, i) in layout.staged(record.len()).enumerate() {
        let field = record.get(i).expect("field count was checked");
        out.push(b'\t');
        if kept.peek() == Some(&&(pos + 1)) {
            kept.next();
            out.extend_from_slice(b"\\N");
            continue;
        }
        let value = at.value(field, layout.columns[pos])?;
        done.repaired += u64::from(matches!(value, Value::Repaired(_)));
        write_value(&value, out);
    }
    Ok(done)
}

/// One checked value as `COPY` text.
fn write_value(value: &Value<'_>, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.extend_from_slice(b"\\N"),
        Value::Text(v) => escape_copy_text(v, out),
        Value::Hex(hex) => {
            out.extend_from_slice(b"\\\\x");
            out.extend_from_slice(hex);
        }
        Value::Repaired(text) => escape_copy_text(text.as_bytes(), out),
    }
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

    #[test]
    fn escape_is_reversible_for_every_special_byte() {
        let mut out = Vec::new();
        escape_copy_text("a\\b\tc\nd\re😀表".as_bytes(), &mut out);
        assert_eq!(out, "a\\\\b\\tc\\nd\\re😀表".as_bytes());
    }
}
