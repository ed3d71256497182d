//! Values as text, pure and without IO: how one primitive column's values become text
//! ([`Render`], from the column's logical, converted or physical type) and the `write_*`
//! functions, each appending the bare text of one value (no quotes) as PostgreSQL reads it back
//! exactly (see the invariants of [`super`]), and [`write_quoted`], a CSV field.
//!
//! Must not: read the file or decide what a value's column is in the target; a value it cannot
//! render as its type is written as `bytea` hex, never dropped.

use parquet::basic::{ConvertedType, LogicalType, TimeUnit, Type as PhysicalType};
use parquet::data_type::Int96;
use parquet::schema::types::ColumnDescriptor;
use std::io::Write;

/// How one primitive column's values become text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Render {
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
pub(super) enum Unit {
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
pub(super) fn render_of(d: &ColumnDescriptor) -> Render {
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

pub(super) fn write_date(out: &mut Vec<u8>, days: i32) {
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

pub(super) fn write_timestamp(out: &mut Vec<u8>, value: i64, unit: Unit) {
    write_timestamp_nanos(out, i128::from(value) * unit.nanos());
}

/// INT96 (deprecated, still written by some tools): nanoseconds of the day, then the Julian day.
pub(super) fn write_int96(out: &mut Vec<u8>, v: &Int96) {
    const UNIX_EPOCH_JULIAN_DAY: i128 = 2_440_588;
    let d = v.data();
    let nanos_of_day = (u64::from(d[1]) << 32) | u64::from(d[0]);
    let days = i128::from(d[2]) - UNIX_EPOCH_JULIAN_DAY;
    write_timestamp_nanos(out, days * 86_400_000_000_000 + i128::from(nanos_of_day));
}

pub(super) fn write_time(out: &mut Vec<u8>, value: i64, unit: Unit) {
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

pub(super) fn write_decimal_int(out: &mut Vec<u8>, unscaled: i128, scale: i32) {
    write_scaled(
        out,
        unscaled < 0,
        &unscaled.unsigned_abs().to_string(),
        scale,
    );
}

/// A DECIMAL stored as a big-endian two's complement integer of any length.
pub(super) fn write_decimal_bytes(out: &mut Vec<u8>, be: &[u8], scale: i32) {
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
        pub(super) fn $name(out: &mut Vec<u8>, v: $t) {
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
pub(super) fn f16_to_f32(bits: u16) -> f32 {
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
pub(super) fn write_bytea(out: &mut Vec<u8>, v: &[u8]) {
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
pub(super) fn write_quoted(out: &mut Vec<u8>, v: &[u8]) {
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

pub(super) fn write_binary(out: &mut Vec<u8>, v: &[u8], render: Render) {
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
}
