//! Lists, maps and structs as JSON text (for `jsonb` columns), pure: numbers stay numbers
//! (DECIMAL exactly), what JSON cannot hold as a number (NaN, infinities), times and bytes
//! become strings, rendered as [`super::render`] renders them in flat columns.

use super::render::{
    f16_to_f32, write_bytea, write_date, write_decimal_bytes, write_f32, write_f64, write_time,
    write_timestamp, Unit,
};
use parquet::record::{Field, Row};
use std::io::Write;

/// A value as JSON (inside lists, maps and structs). Numbers stay numbers (DECIMAL exactly),
/// what JSON cannot hold as a number (NaN, infinities) and times and bytes become strings.
pub(super) fn write_json(out: &mut Vec<u8>, f: &Field) {
    match f {
        Field::Group(row) => write_json_object(out, row),
        Field::ListInternal(list) => write_json_list(out, list.elements()),
        Field::MapInternal(map) => write_json_map(out, map.entries()),
        scalar => write_json_scalar(out, scalar),
    }
}

/// Text as a JSON string (bytes that are not UTF-8 replaced).
fn json_string(out: &mut Vec<u8>, text: &[u8]) {
    let s = String::from_utf8_lossy(text);
    let _ = serde_json::to_writer(&mut *out, &*s);
}

/// A value that is neither a list, a map nor a struct.
fn write_json_scalar(out: &mut Vec<u8>, f: &Field) {
    let string = json_string;
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
        Field::Group(_) | Field::ListInternal(_) | Field::MapInternal(_) => write_json(out, f),
    }
}

fn write_json_list(out: &mut Vec<u8>, elements: &[Field]) {
    out.push(b'[');
    for (i, e) in elements.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_json(out, e);
    }
    out.push(b']');
}

/// A map as a JSON object; a key that is not a string is its JSON text, as a string.
fn write_json_map(out: &mut Vec<u8>, entries: &[(Field, Field)]) {
    out.push(b'{');
    for (i, (k, v)) in entries.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        match k {
            Field::Str(s) => json_string(out, s.as_bytes()),
            other => {
                let mut key = Vec::new();
                write_json(&mut key, other);
                json_string(out, &key);
            }
        }
        out.push(b':');
        write_json(out, v);
    }
    out.push(b'}');
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

#[cfg(test)]
mod tests {
    use super::*;
    use parquet::data_type::ByteArray;

    fn s(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        f(&mut out);
        String::from_utf8(out).unwrap()
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
}
