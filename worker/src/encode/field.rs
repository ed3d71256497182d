//! One field's value, checked and cleaned, before a writer (text or binary) puts it in a row.
//! Pure; shared by [`super::text`] and [`super::binary`], so both paths refuse and repair the
//! same values in the same order.
//!
//! Invariants, in the order they are checked ([`FieldAt::value`]):
//! - an unquoted field equal to the NULL marker is NULL; a NULL in a NOT NULL column is
//!   `null_not_allowed`, except in a non-key column of a delete (a delete needs only its key);
//! - a field longer than the table's `max_field_bytes` is `field_too_long`;
//! - a clean field (valid UTF-8, or ASCII under a single-byte source encoding, and no NUL) is
//!   passed through; in a `bytea` column it must be hex in one of DMS's forms ([`dms_hex`]),
//!   else `bad_value`;
//! - anything else goes through the byte policy (strip, replace, or `bad_bytes`) or is
//!   transcoded from its source encoding, and is counted as repaired.
//!
//! Must not: write a row's bytes (the writers do) or know the row's layout.

use crate::error::WorkerError;
use crate::read::csv::Field;
use crate::sql::TargetTable;
use sluice_common::rules::{Encoding, InvalidBytes, TableRules};

/// What writing one record did.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Done {
    /// A partial `U` image.
    pub(super) partial: bool,
    /// Fields whose bytes were changed.
    pub(super) repaired: u64,
}

/// A field's value once checked, as the writers take it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Value<'v> {
    /// SQL NULL.
    Null,
    /// A clean value, as it is in the file.
    Text(&'v [u8]),
    /// The hexadecimal digits of a `bytea` value ([`dms_hex`]).
    Hex(&'v [u8]),
    /// A value whose bytes the byte policy or the source encoding changed.
    Repaired(String),
}

/// Where a field is: its file, table and rules, its record's number and line, and the
/// record's operation (`I`, `U` or `D`). One per record; the context of every field check.
pub(super) struct FieldAt<'a> {
    pub(super) key: &'a str,
    pub(super) target: &'a TargetTable,
    pub(super) rules: &'a TableRules,
    pub(super) number: u64,
    pub(super) line: u64,
    pub(super) op: u8,
}

impl<'a> FieldAt<'a> {
    /// The context of a record's fields: its file's settings, number, line and operation.
    pub(super) fn of(
        spec: &super::EncodeSpec<'a>,
        record: &crate::read::csv::Record<'_>,
        number: u64,
        op: u8,
    ) -> Self {
        FieldAt {
            key: spec.key,
            target: spec.target,
            rules: spec.rules,
            number,
            line: record.line(),
            op,
        }
    }
}

impl FieldAt<'_> {
    /// The value of `field`, which fills target column `col`; see the module's invariants.
    pub(super) fn value<'v>(&self, field: Field<'v>, col: usize) -> Result<Value<'v>, WorkerError> {
        let v = field.value;
        let column = &self.target.columns[col];
        if !field.quoted && v == self.rules.null.as_bytes() {
            // A delete needs only its key; any other operation must give NOT NULL columns a value.
            if column.not_null && (self.op != b'D' || self.target.key.contains(&col)) {
                return Err(WorkerError::NullNotAllowed {
                    key: self.key.to_owned(),
                    table: self.target.label(),
                    record: self.number,
                    line: self.line,
                    column: column.name.clone(),
                });
            }
            return Ok(Value::Null);
        }
        if let Some(limit) = self.rules.max_field_bytes {
            if v.len() > limit {
                return Err(WorkerError::FieldTooLong {
                    key: self.key.to_owned(),
                    record: self.number,
                    line: self.line,
                    column: column.name.clone(),
                    length: v.len(),
                    limit,
                    value: excerpt(v),
                });
            }
        }
        let has_nul = memchr::memchr(0, v).is_some();
        let clean = !has_nul
            && match self.rules.encoding {
                Encoding::Utf8 => std::str::from_utf8(v).is_ok(),
                Encoding::Latin1 | Encoding::Windows1252 => v.is_ascii(),
            };
        if !clean {
            return self.repair(v, &column.name).map(Value::Repaired);
        }
        if column.sql_type != "bytea" {
            return Ok(Value::Text(v));
        }
        dms_hex(v)
            .map(Value::Hex)
            .map_err(|reason| WorkerError::BadValue {
                key: self.key.to_owned(),
                record: self.number,
                line: self.line,
                column: column.name.clone(),
                reason: reason.to_owned(),
                value: excerpt(v),
            })
    }

    /// A value that is not clean as text, through the byte policy (NUL, invalid UTF-8) or
    /// transcoded from its single-byte source encoding.
    fn repair(&self, v: &[u8], column: &str) -> Result<String, WorkerError> {
        let policy = self.rules.invalid_bytes;
        let bad = |reason: String| WorkerError::BadBytes {
            key: self.key.to_owned(),
            record: self.number,
            line: self.line,
            column: column.to_owned(),
            reason,
            value: excerpt(v),
        };
        let mut text = String::with_capacity(v.len() + 8);
        let push_nul = |text: &mut String, at: usize| -> Result<(), WorkerError> {
            match policy {
                InvalidBytes::Reject => Err(bad(format!("NUL byte at offset {at} of the field"))),
                InvalidBytes::Strip => Ok(()),
                InvalidBytes::Replace => {
                    text.push('\u{FFFD}');
                    Ok(())
                }
            }
        };
        match self.rules.encoding {
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
                                return Err(bad(format!(
                                    "invalid UTF-8 at offset {at} of the field"
                                )))
                            }
                            InvalidBytes::Strip => {}
                            InvalidBytes::Replace => text.push('\u{FFFD}'),
                        }
                        at += chunk.invalid().len();
                    }
                }
            }
            Encoding::Latin1 | Encoding::Windows1252 => {
                let cp1252 = self.rules.encoding == Encoding::Windows1252;
                for (i, &b) in v.iter().enumerate() {
                    match b {
                        0 => push_nul(&mut text, i)?,
                        0x80..=0x9f if cp1252 => {
                            text.push(WINDOWS_1252_80_9F[usize::from(b - 0x80)])
                        }
                        b => text.push(char::from(b)),
                    }
                }
            }
        }
        Ok(text)
    }

    /// Checks the value of the field that versions the row (DMS's timestamp column).
    pub(super) fn check_version(&self, v: &[u8]) -> Result<(), WorkerError> {
        if is_dms_timestamp(v) {
            return Ok(());
        }
        Err(WorkerError::BadVersion {
            key: self.key.to_owned(),
            record: self.number,
            line: self.line,
            column: self.rules.timestamp_column.clone().unwrap_or_default(),
            value: excerpt(v),
        })
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::Column;

    fn target() -> TargetTable {
        let col = |name: &str, sql_type: &str, not_null: bool| Column {
            name: name.into(),
            sql_type: sql_type.into(),
            not_null,
            is_enum: false,
            base: None,
        };
        TargetTable {
            schema: "s".into(),
            name: "t".into(),
            columns: vec![
                col("id", "integer", true),
                col("note", "text", true),
                col("blob", "bytea", false),
            ],
            key: vec![0],
            oid: 1,
            present: vec![],
        }
    }

    fn value(
        rules: &TableRules,
        op: u8,
        v: &[u8],
        quoted: bool,
        col: usize,
    ) -> Result<Value<'static>, WorkerError> {
        let t = target();
        let at = FieldAt {
            key: "k",
            target: &t,
            rules,
            number: 3,
            line: 5,
            op,
        };
        let v: &'static [u8] = Vec::leak(v.to_vec());
        at.value(Field { value: v, quoted }, col)
    }

    #[test]
    fn field_values_are_null_text_hex_or_repaired_in_that_order_of_checks() {
        let rules = TableRules::default();
        assert_eq!(
            value(&rules, b'I', b"NULL", true, 1).unwrap(),
            Value::Text(b"NULL")
        );
        // NULL: refused in a NOT NULL column, except in a delete's non-key column.
        let e = value(&rules, b'I', b"NULL", false, 1).unwrap_err();
        assert!(
            matches!(&e, WorkerError::NullNotAllowed { record: 3, line: 5, column, .. } if column == "note"),
            "{e}"
        );
        assert_eq!(value(&rules, b'D', b"NULL", false, 1).unwrap(), Value::Null);
        assert!(value(&rules, b'D', b"NULL", false, 0).is_err());
        assert_eq!(value(&rules, b'U', b"NULL", false, 2).unwrap(), Value::Null);
        // bytea: DMS's hex forms, digits only; anything else is a bad value.
        for v in [&b"DEADBEEF"[..], b"0xDEADBEEF", b"\\xDEADBEEF"] {
            assert_eq!(
                value(&rules, b'I', v, false, 2).unwrap(),
                Value::Hex(b"DEADBEEF")
            );
        }
        let e = value(&rules, b'I', b"xyz", false, 2).unwrap_err();
        assert_eq!(e.class(), "bad_value", "{e}");
        // The length limit comes before the bytes.
        let limited = TableRules {
            max_field_bytes: Some(2),
            ..TableRules::default()
        };
        let e = value(&limited, b'I', b"a\0b", false, 1).unwrap_err();
        assert_eq!(e.class(), "field_too_long", "{e}");
        // Bytes that are not clean follow the policy, and count as repaired.
        let e = value(&rules, b'I', b"a\0b", false, 1).unwrap_err();
        assert_eq!(e.class(), "bad_bytes", "{e}");
        let strip = TableRules {
            invalid_bytes: InvalidBytes::Strip,
            ..TableRules::default()
        };
        assert_eq!(
            value(&strip, b'I', b"a\0b\xff", false, 1).unwrap(),
            Value::Repaired("ab".into())
        );
        // A repaired bytea value is text, not hex.
        assert_eq!(
            value(&strip, b'I', b"0x\xff00", false, 2).unwrap(),
            Value::Repaired("0x00".into())
        );
    }

    #[test]
    fn a_version_must_look_like_a_dms_timestamp() {
        let t = target();
        let rules = TableRules {
            timestamp_column: Some("ts".into()),
            ..TableRules::default()
        };
        let at = FieldAt {
            key: "k",
            target: &t,
            rules: &rules,
            number: 1,
            line: 1,
            op: b'I',
        };
        assert!(at.check_version(b"2024-10-29 11:34:01.5").is_ok());
        let e = at.check_version(b"yesterday").unwrap_err();
        assert!(
            matches!(&e, WorkerError::BadVersion { column, value, .. } if column == "ts" && value == "yesterday"),
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
    fn excerpts_escape_and_cut() {
        assert_eq!(excerpt(b"a\tb\x00\xff\n"), "a\\tb\\0\\xff\\n");
        let long = "é".repeat(200);
        let e = excerpt(long.as_bytes());
        assert_eq!(e.chars().count(), 121);
        assert!(e.ends_with('…'));
    }
}
