//! Rejected records (`on_error = "reject_rows"`): which errors concern one record only, the
//! stage row a rejected record becomes, and the records held back before the file's layout is
//! known. Pure.
//!
//! Invariants: a reject's stage row is `record, R, NULL, NULL, reason, class, column, line,
//! byte offset, original bytes (hex bytea), NULL data columns`; its original bytes are whole,
//! never truncated. At most [`PENDING_REJECTS_LIMIT`] records, and at most the record limit of
//! their bytes, are held before the layout is known; beyond, the record's own error fails the
//! file.
//!
//! Must not: send anything (the record loop's output does) or decide whether a file rejects
//! rows (its rules do).

use super::text::escape_copy_text;
use super::Layout;
use crate::error::WorkerError;
use std::io::Write;

/// Records rejected before the file's layout is known (a file whose first records are all bad).
pub const PENDING_REJECTS_LIMIT: usize = 10_000;

/// Whether an error concerns one record only (and may be set aside as a reject).
pub fn is_record_error(e: &WorkerError) -> bool {
    matches!(
        e,
        WorkerError::ColumnCount { .. }
            | WorkerError::BadOperation { .. }
            | WorkerError::BadBytes { .. }
            | WorkerError::BadVersion { .. }
            | WorkerError::BadDocument { .. }
            | WorkerError::BadValue { .. }
            | WorkerError::NullNotAllowed { .. }
            | WorkerError::FieldTooLong { .. }
    )
}

/// The column a record error names, if any.
fn error_column(e: &WorkerError) -> Option<&str> {
    match e {
        WorkerError::BadBytes { column, .. }
        | WorkerError::BadVersion { column, .. }
        | WorkerError::BadDocument { column, .. }
        | WorkerError::BadValue { column, .. }
        | WorkerError::NullNotAllowed { column, .. }
        | WorkerError::FieldTooLong { column, .. } => Some(column),
        _ => None,
    }
}

/// Where a record is in the file, and its original bytes.
#[derive(Clone, Copy)]
pub(super) struct RecordAt<'a> {
    pub(super) number: u64,
    pub(super) line: u64,
    pub(super) offset: u64,
    pub(super) raw: &'a [u8],
}

/// A rejected record's stage row, written in three parts: `R`, reason, class, column, line,
/// byte offset ([`write_reject_head`]), original bytes (hex `bytea`, [`write_hex`]), and NULL
/// data columns ([`write_reject_tail`]).
pub(super) fn write_reject_head(out: &mut Vec<u8>, at: &RecordAt<'_>, error: &WorkerError) {
    let _ = write!(out, "{}\tR\t\\N\t\\N\t", at.number);
    escape_copy_text(error.to_string().as_bytes(), out);
    out.push(b'\t');
    out.extend_from_slice(error.class().as_bytes());
    out.push(b'\t');
    match error_column(error) {
        Some(c) => escape_copy_text(c.as_bytes(), out),
        None => out.extend_from_slice(b"\\N"),
    }
    let _ = write!(out, "\t{}\t{}\t\\\\x", at.line, at.offset);
}

/// Bytes as hex digits (part of a reject's `bytea`).
pub(super) fn write_hex(out: &mut Vec<u8>, raw: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(raw.len() * 2);
    for &b in raw {
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 15)]);
    }
}

/// A reject's stage row after its original bytes: NULL data columns.
pub(super) fn write_reject_tail(out: &mut Vec<u8>, layout: &Layout) {
    for _ in 0..layout.columns.len() {
        out.extend_from_slice(b"\t\\N");
    }
    out.push(b'\n');
}

/// A record set aside before the layout was known.
pub(super) struct PendingReject {
    pub(super) number: u64,
    pub(super) line: u64,
    pub(super) offset: u64,
    pub(super) raw: Vec<u8>,
    pub(super) error: WorkerError,
}

impl PendingReject {
    pub(super) fn at(&self) -> RecordAt<'_> {
        RecordAt {
            number: self.number,
            line: self.line,
            offset: self.offset,
            raw: &self.raw,
        }
    }
}

/// The records rejected before the layout was known, within their limits.
#[derive(Default)]
pub(super) struct Pending {
    records: Vec<PendingReject>,
    /// Their original bytes, in all.
    bytes: usize,
}

impl Pending {
    /// Holds a rejected record until the layout is known; its own error when the held
    /// records would pass [`PENDING_REJECTS_LIMIT`] or `max_bytes` of original bytes.
    pub(super) fn hold(
        &mut self,
        reject: PendingReject,
        max_bytes: usize,
    ) -> Result<(), WorkerError> {
        self.bytes += reject.raw.len();
        if self.records.len() >= PENDING_REJECTS_LIMIT || self.bytes > max_bytes {
            return Err(reject.error);
        }
        self.records.push(reject);
        Ok(())
    }

    /// The held records, in file order; none are held afterwards.
    pub(super) fn drain(&mut self) -> std::vec::Drain<'_, PendingReject> {
        self.records.drain(..)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bad(number: u64, raw: &[u8]) -> PendingReject {
        PendingReject {
            number,
            line: number,
            offset: 0,
            raw: raw.to_vec(),
            error: WorkerError::BadOperation {
                key: "k".into(),
                record: number,
                line: number,
                value: "x".into(),
            },
        }
    }

    #[test]
    fn held_rejects_are_bounded_by_count_and_bytes() {
        let mut p = Pending::default();
        p.hold(bad(1, b"aaaa"), 8).unwrap();
        p.hold(bad(2, b"bbbb"), 8).unwrap();
        let e = p.hold(bad(3, b"c"), 8).unwrap_err();
        assert!(
            matches!(e, WorkerError::BadOperation { record: 3, .. }),
            "{e}"
        );
        assert_eq!(p.drain().map(|r| r.number).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(p.drain().count(), 0);
        let mut p = Pending::default();
        for n in 0..PENDING_REJECTS_LIMIT as u64 {
            p.hold(bad(n, b""), 0).unwrap();
        }
        assert!(p.hold(bad(0, b""), usize::MAX).is_err());
    }

    #[test]
    fn a_reject_row_carries_reason_class_column_position_and_bytes() {
        let e = WorkerError::NullNotAllowed {
            key: "k".into(),
            table: "s.t".into(),
            record: 3,
            line: 4,
            column: "no\tte".into(),
        };
        assert!(is_record_error(&e));
        let at = RecordAt {
            number: 3,
            line: 4,
            offset: 17,
            raw: b"3,\xff",
        };
        let mut out = Vec::new();
        write_reject_head(&mut out, &at, &e);
        write_hex(&mut out, at.raw);
        let layout = Layout::plain(vec![0, 1], false);
        write_reject_tail(&mut out, &layout);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("3\tR\t\\N\t\\N\t"), "{text}");
        assert!(
            text.ends_with("\tnull_not_allowed\tno\\tte\t4\t17\t\\\\x332cff\t\\N\t\\N\n"),
            "{text}"
        );
        assert!(!is_record_error(&WorkerError::DirectUnfit {
            key: "k".into(),
            record: 1,
            value: true,
        }));
    }
}
