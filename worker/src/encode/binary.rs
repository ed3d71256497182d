//! PostgreSQL's binary `COPY` format for the direct path: the worker turns DMS's text into each
//! column's binary form, so the server does not parse it. Pure; no IO.
//!
//! Invariant: a value is encoded only when its text is in a strict grammar for which the result
//! is exactly what PostgreSQL's text input would store (the same integer, the same numeric
//! digits and display scale, the same correctly rounded float, the same microsecond). Anything
//! else (spaces, `+`, exponents in numerics, `Infinity`, more than six fractional digits,
//! out-of-range values) is refused with `None`, and the loader loads the file by the staged
//! path, where PostgreSQL reads the text itself and reports any error as usual.
//!
//! [`Tuple`] writes one insert of the direct path as a binary tuple, with the same value
//! checks as the text format ([`super::field`]). Must not: guess a value's meaning (a text it
//! cannot encode exactly ends the direct path, [`WorkerError::DirectUnfit`]).

use super::field::{Done, FieldAt, Value};
use super::{Direct, EncodeSpec, Layout};
use crate::error::WorkerError;
use crate::read::csv::Record;
use crate::sql::{Column, TargetTable};

/// A column type the binary path can write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinType {
    Int2,
    Int4,
    Int8,
    /// `numeric`, or `numeric(precision, scale)`.
    Numeric(Option<(u16, u16)>),
    Float4,
    Float8,
    Bool,
    Date,
    /// `timestamp` and `timestamptz` alike: DMS writes UTC and sessions run in UTC.
    Timestamp,
    /// `time` (without time zone): microseconds since midnight, `24:00:00` included.
    Time,
    /// `time with time zone`: microseconds since midnight, then the offset in seconds west of
    /// UTC (`+02` is -7200), as `timetz_send` writes them.
    TimeTz,
    /// `text`, `varchar` and `character`: the text's bytes. On receive PostgreSQL checks a
    /// `varchar(n)` length, and pads or checks a `character(n)` value, with the same code as
    /// its text input (`bpcharrecv` and `bpcharin` both call `bpchar_input`).
    Text,
    /// An enum (the catalog's `typtype`, not its name, says so): the label's bytes, which
    /// `enum_recv` looks up like `enum_in`, with the same error for an unknown label.
    Enum,
    Json,
    Jsonb,
    Uuid,
    Bytea,
    /// `macaddr`: its six bytes.
    Macaddr,
    /// `inet` (IPv4 only): family, bits, the cidr flag, address length, address.
    Inet,
    /// `cidr` (IPv4 only), as `inet` with the cidr flag set.
    Cidr,
}

/// The binary type for a catalog type name (`format_type`), if the binary path handles it.
pub fn bin_type(sql_type: &str) -> Option<BinType> {
    Some(match sql_type {
        "smallint" => BinType::Int2,
        "integer" => BinType::Int4,
        "bigint" => BinType::Int8,
        "numeric" => BinType::Numeric(None),
        "real" => BinType::Float4,
        "double precision" => BinType::Float8,
        "boolean" => BinType::Bool,
        "date" => BinType::Date,
        "timestamp without time zone" | "timestamp with time zone" => BinType::Timestamp,
        "time without time zone" => BinType::Time,
        "time with time zone" => BinType::TimeTz,
        "text" | "character varying" | "character" | "bpchar" => BinType::Text,
        "json" => BinType::Json,
        "jsonb" => BinType::Jsonb,
        "uuid" => BinType::Uuid,
        "bytea" => BinType::Bytea,
        "macaddr" => BinType::Macaddr,
        "inet" => BinType::Inet,
        "cidr" => BinType::Cidr,
        t => {
            if let Some(args) = t.strip_prefix("numeric(").and_then(|r| r.strip_suffix(')')) {
                let (p, s) = args.split_once(',')?;
                return Some(BinType::Numeric(Some((
                    p.trim().parse().ok()?,
                    s.trim().parse().ok()?,
                ))));
            }
            let lengths = ["character varying(", "character("];
            return lengths
                .iter()
                .any(|p| length_of(t, p).is_some())
                .then_some(BinType::Text);
        }
    })
}

/// The length of a type name `{prefix}n)` (`character(3)`); None for anything else (an
/// array of it, `character(3)[]`, has another binary form).
fn length_of(t: &str, prefix: &str) -> Option<u32> {
    let n = t.strip_prefix(prefix)?.strip_suffix(')')?;
    n.bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| n.parse().ok())?
}

/// `PGCOPY\n\377\r\n\0`, flags, header extension length.
pub const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// The file trailer: a tuple with field count -1.
pub const TRAILER: &[u8] = &[0xff, 0xff];

/// Microseconds from 1970-01-01 to PostgreSQL's epoch, 2000-01-01.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
/// Days from 1970-01-01 to 2000-01-01.
const PG_EPOCH_DAYS: i64 = 10_957;

pub fn null(out: &mut Vec<u8>) {
    out.extend_from_slice(&(-1_i32).to_be_bytes());
}

fn field(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
    out.extend_from_slice(bytes);
}

pub fn int8(out: &mut Vec<u8>, v: i64) {
    field(out, &v.to_be_bytes());
}

pub fn boolean(out: &mut Vec<u8>, v: bool) {
    field(out, &[u8::from(v)]);
}

/// A timestamp as microseconds since 1970 (UTC).
pub fn timestamp_micros(out: &mut Vec<u8>, unix_micros: i64) {
    field(out, &(unix_micros - PG_EPOCH_MICROS).to_be_bytes());
}

/// Appends the field for text `v` of type `t`; false (and nothing appended) when `v` is outside
/// the strict grammar.
pub fn encode(t: BinType, v: &[u8], out: &mut Vec<u8>) -> bool {
    match t {
        BinType::Int2 => int(v)
            .and_then(|n| i16::try_from(n).ok())
            .map(|n| field(out, &n.to_be_bytes()))
            .is_some(),
        BinType::Int4 => int(v)
            .and_then(|n| i32::try_from(n).ok())
            .map(|n| field(out, &n.to_be_bytes()))
            .is_some(),
        BinType::Int8 => int(v).map(|n| field(out, &n.to_be_bytes())).is_some(),
        BinType::Numeric(typmod) => numeric(v, typmod, out),
        BinType::Float4 => float_text(v)
            .and_then(|s| Some((s, s.parse::<f32>().ok()?)))
            .filter(|(s, f)| !out_of_range(s, f.is_normal(), *f == 0.0))
            .map(|(_, f)| field(out, &f.to_be_bytes()))
            .is_some(),
        BinType::Float8 => float_text(v)
            .and_then(|s| Some((s, s.parse::<f64>().ok()?)))
            .filter(|(s, f)| !out_of_range(s, f.is_normal(), *f == 0.0))
            .map(|(_, f)| field(out, &f.to_be_bytes()))
            .is_some(),
        BinType::Bool => match v {
            b"t" | b"true" | b"1" => {
                boolean(out, true);
                true
            }
            b"f" | b"false" | b"0" => {
                boolean(out, false);
                true
            }
            _ => false,
        },
        BinType::Date => date_days(v)
            .map(|d| field(out, &((d - PG_EPOCH_DAYS) as i32).to_be_bytes()))
            .is_some(),
        BinType::Timestamp => parse_timestamp(v)
            .map(|us| timestamp_micros(out, us))
            .is_some(),
        BinType::Time => parse_time(v)
            .map(|us| field(out, &us.to_be_bytes()))
            .is_some(),
        BinType::TimeTz => parse_timetz(v)
            .map(|(us, west)| {
                out.extend_from_slice(&12_i32.to_be_bytes());
                out.extend_from_slice(&us.to_be_bytes());
                out.extend_from_slice(&west.to_be_bytes());
            })
            .is_some(),
        BinType::Text | BinType::Enum | BinType::Json => {
            field(out, v);
            true
        }
        BinType::Jsonb => {
            out.extend_from_slice(&(v.len() as i32 + 1).to_be_bytes());
            out.push(1);
            out.extend_from_slice(v);
            true
        }
        BinType::Uuid => uuid(v).map(|b| field(out, &b)).is_some(),
        // PostgreSQL's hex form, `\x` and digits.
        BinType::Bytea => v
            .strip_prefix(b"\\x")
            .is_some_and(|hex| bytea_hex(hex, out)),
        BinType::Macaddr => macaddr(v).map(|b| field(out, &b)).is_some(),
        BinType::Inet => ipv4(v, false).map(|b| field(out, &b)).is_some(),
        BinType::Cidr => ipv4(v, true).map(|b| field(out, &b)).is_some(),
    }
}

/// A `bytea` field from hexadecimal digits; false (nothing appended) if they are not.
pub fn bytea_hex(hex: &[u8], out: &mut Vec<u8>) -> bool {
    if !hex.len().is_multiple_of(2) {
        return false;
    }
    let start = out.len();
    out.extend_from_slice(&((hex.len() / 2) as i32).to_be_bytes());
    for pair in hex.chunks(2) {
        match (hex_digit(pair[0]), hex_digit(pair[1])) {
            (Some(a), Some(b)) => out.push(a << 4 | b),
            _ => {
                out.truncate(start);
                return false;
            }
        }
    }
    true
}

/// A float that PostgreSQL's input would refuse as out of range (overflow, or underflow to
/// zero or a subnormal from a value that is not zero).
fn out_of_range(text: &str, normal: bool, zero: bool) -> bool {
    let nonzero_digit = text
        .split(['e', 'E'])
        .next()
        .is_some_and(|m| m.bytes().any(|b| (b'1'..=b'9').contains(&b)));
    !(normal || (zero && !nonzero_digit))
}

fn hex_digit(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// `-?[0-9]{1,18}`: exact in i64 without overflow checks beyond the type's own.
fn int(v: &[u8]) -> Option<i64> {
    let digits = v.strip_prefix(b"-").unwrap_or(v);
    if digits.is_empty() || digits.len() > 18 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// `-?digits(.digits)?([eE][+-]?digits)?`, as text.
fn float_text(v: &[u8]) -> Option<&str> {
    let s = std::str::from_utf8(v).ok()?;
    let body = s.strip_prefix('-').unwrap_or(s);
    let (mantissa, exp) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    let (int_part, frac) = match mantissa.split_once('.') {
        Some((a, b)) => (a, Some(b)),
        None => (mantissa, None),
    };
    let digits = |d: &str| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit());
    let exp_ok = exp.is_none_or(|e| digits(e.strip_prefix(['+', '-']).unwrap_or(e)));
    (digits(int_part) && frac.is_none_or(digits) && exp_ok).then_some(s)
}

/// `numeric` in binary: base-10000 digits, weight, sign, display scale.
fn numeric(v: &[u8], typmod: Option<(u16, u16)>, out: &mut Vec<u8>) -> bool {
    let (neg, body) = match v.strip_prefix(b"-") {
        Some(rest) => (true, rest),
        None => (false, v),
    };
    let (int_part, frac) = match body.iter().position(|&b| b == b'.') {
        Some(i) => (&body[..i], &body[i + 1..]),
        None => (body, &b""[..]),
    };
    if int_part.is_empty()
        || !int_part.iter().all(u8::is_ascii_digit)
        || !frac.iter().all(u8::is_ascii_digit)
        || (body.contains(&b'.') && frac.is_empty())
    {
        return false;
    }
    let int_part = {
        let z = int_part.iter().take_while(|&&b| b == b'0').count();
        &int_part[z.min(int_part.len() - 1)..]
    };
    let dscale = match typmod {
        Some((precision, scale)) => {
            // Rounding is PostgreSQL's job: more fractional digits than the scale go the
            // staged way, and so do values too large for the precision.
            if frac.len() > usize::from(scale) {
                return false;
            }
            let int_digits = if int_part == b"0" { 0 } else { int_part.len() };
            if int_digits > usize::from(precision - scale.min(precision)) {
                return false;
            }
            scale
        }
        None => match u16::try_from(frac.len()) {
            Ok(s) if s <= 1000 => s,
            _ => return false,
        },
    };
    // Digits aligned to groups of four around the decimal point.
    let int_pad = (4 - int_part.len() % 4) % 4;
    let mut all: Vec<u8> = Vec::with_capacity(int_pad + int_part.len() + frac.len() + 4);
    all.extend(std::iter::repeat_n(b'0', int_pad));
    all.extend_from_slice(int_part);
    let int_groups = all.len() / 4;
    all.extend_from_slice(frac);
    all.extend(std::iter::repeat_n(b'0', (4 - frac.len() % 4) % 4));
    let mut groups: Vec<i16> = all
        .chunks(4)
        .map(|c| {
            c.iter()
                .fold(0_i16, |acc, &d| acc * 10 + i16::from(d - b'0'))
        })
        .collect();
    let mut weight = int_groups as i32 - 1;
    // Strip leading and trailing zero groups, as PostgreSQL stores them.
    let lead = groups.iter().take_while(|&&g| g == 0).count();
    groups.drain(..lead);
    weight -= lead as i32;
    while groups.last() == Some(&0) {
        groups.pop();
    }
    let sign: u16 = if neg && !groups.is_empty() { 0x4000 } else { 0 };
    if groups.is_empty() {
        weight = 0;
    }
    let Ok(weight) = i16::try_from(weight) else {
        return false;
    };
    let len = 8 + 2 * groups.len();
    out.extend_from_slice(&(len as i32).to_be_bytes());
    out.extend_from_slice(&(groups.len() as i16).to_be_bytes());
    out.extend_from_slice(&weight.to_be_bytes());
    out.extend_from_slice(&sign.to_be_bytes());
    out.extend_from_slice(&dscale.to_be_bytes());
    for g in groups {
        out.extend_from_slice(&g.to_be_bytes());
    }
    true
}

fn digits_at(v: &[u8], at: usize, n: usize) -> Option<i64> {
    let d = v.get(at..at + n)?;
    d.iter()
        .all(u8::is_ascii_digit)
        .then(|| d.iter().fold(0_i64, |a, &b| a * 10 + i64::from(b - b'0')))
}

/// `YYYY-MM-DD`, years 1 to 9999, as days since 1970-01-01.
fn date_days(v: &[u8]) -> Option<i64> {
    if v.len() != 10 || v[4] != b'-' || v[7] != b'-' {
        return None;
    }
    let (y, m, d) = (
        digits_at(v, 0, 4)?,
        digits_at(v, 5, 2)?,
        digits_at(v, 8, 2)?,
    );
    let month = time::Month::try_from(u8::try_from(m).ok()?).ok()?;
    let date = time::Date::from_calendar_date(i32::try_from(y).ok()?, month, u8::try_from(d).ok()?)
        .ok()?;
    (y >= 1).then(|| i64::from(date.to_julian_day()) - 2_440_588)
}

/// `HH:MM:SS[.f{1,6}]` as hours, minutes, seconds and microseconds, not range-checked.
fn clock(v: &[u8]) -> Option<(i64, i64, i64, i64)> {
    if v.len() < 8 || v[2] != b':' || v[5] != b':' {
        return None;
    }
    let (h, mi, s) = (
        digits_at(v, 0, 2)?,
        digits_at(v, 3, 2)?,
        digits_at(v, 6, 2)?,
    );
    let mut micros = 0;
    if v.len() > 8 {
        let frac = &v[9..];
        if v[8] != b'.' || frac.is_empty() || frac.len() > 6 {
            return None;
        }
        micros = digits_at(frac, 0, frac.len())? * 10_i64.pow(6 - frac.len() as u32);
    }
    Some((h, mi, s, micros))
}

/// DMS's `YYYY-MM-DD HH:MM:SS[.f{1,6}]` (UTC) as microseconds since 1970.
pub fn parse_timestamp(v: &[u8]) -> Option<i64> {
    if v.len() < 19 || v[10] != b' ' {
        return None;
    }
    let days = date_days(&v[..10])?;
    let (h, mi, s, micros) = clock(&v[11..])?;
    if h > 23 || mi > 59 || s > 59 {
        return None;
    }
    Some(((days * 24 + h) * 60 + mi) * 60_000_000 + s * 1_000_000 + micros)
}

/// `HH:MM:SS[.f{1,6}]` from `00:00:00` to `23:59:59.999999`, or `24:00:00` exactly (the end of
/// the day, which `time` stores and `time_recv` takes), as microseconds since midnight. The leap
/// second `23:59:60`, which PostgreSQL also reads as `24:00:00`, is left to it.
fn parse_time(v: &[u8]) -> Option<i64> {
    let (h, mi, s, micros) = clock(v)?;
    let end_of_day = h == 24 && mi == 0 && s == 0 && micros == 0;
    if (h > 23 && !end_of_day) || mi > 59 || s > 59 {
        return None;
    }
    Some((h * 60 + mi) * 60_000_000 + s * 1_000_000 + micros)
}

/// `time` as [`parse_time`] reads it followed by an offset `+HH`, `-HH`, `+HH:MM` or `-HH:MM`
/// (hours up to 15, as text input takes them), as microseconds since midnight and seconds west
/// of UTC. A zone name, an offset with seconds or in other spellings (`+2`, `+0200`, `Z`), no
/// offset (the session's zone) and offsets out of range are left to PostgreSQL.
fn parse_timetz(v: &[u8]) -> Option<(i64, i32)> {
    let at = v.iter().rposition(|&b| b == b'+' || b == b'-')?;
    let (time, zone) = v.split_at(at);
    let (hours, minutes) = match zone.len() {
        3 => (digits_at(zone, 1, 2)?, 0),
        6 if zone[3] == b':' => (digits_at(zone, 1, 2)?, digits_at(zone, 4, 2)?),
        _ => return None,
    };
    if hours > 15 || minutes > 59 {
        return None;
    }
    let east = i32::try_from(hours * 3600 + minutes * 60).ok()?;
    Some((
        parse_time(time)?,
        if zone[0] == b'+' { -east } else { east },
    ))
}

/// The canonical 36-character form, as 16 bytes.
fn uuid(v: &[u8]) -> Option<[u8; 16]> {
    if v.len() != 36 || [8, 13, 18, 23].iter().any(|&i| v[i] != b'-') {
        return None;
    }
    let mut out = [0_u8; 16];
    let mut hex = v.iter().filter(|&&b| b != b'-');
    for byte in &mut out {
        let a = hex_digit(*hex.next()?)?;
        let b = hex_digit(*hex.next()?)?;
        *byte = a << 4 | b;
    }
    Some(out)
}

/// `xx:xx:xx:xx:xx:xx` (hex digits, either case) as six bytes. PostgreSQL's other spellings
/// (`-` or `.` separators, `xxxxxx:xxxxxx`, no separators) are left to it.
fn macaddr(v: &[u8]) -> Option<[u8; 6]> {
    if v.len() != 17 || [2, 5, 8, 11, 14].iter().any(|&i| v[i] != b':') {
        return None;
    }
    let mut out = [0_u8; 6];
    for (byte, pair) in out.iter_mut().zip(v.chunks(3)) {
        *byte = hex_digit(pair[0])? << 4 | hex_digit(pair[1])?;
    }
    Some(out)
}

/// PostgreSQL's address family for IPv4 in `inet` and `cidr` (`PGSQL_AF_INET`).
const PGSQL_AF_INET: u8 = 2;

/// Dotted-quad IPv4 with an optional `/n` (0 to 32; 32 without it), each number without
/// leading zeros, in `inet_send`'s form: family, bits, the cidr flag, address length, address.
/// A `cidr` with bits set right of its mask, which text input refuses, is left to PostgreSQL so
/// that it fails with the same error. IPv6 and PostgreSQL's other spellings (`10.1`, `010.0.0.1`,
/// `1.2.3.4/024`, spaces) are left to it too.
fn ipv4(v: &[u8], cidr: bool) -> Option<[u8; 8]> {
    let s = std::str::from_utf8(v).ok()?;
    let (addr, bits) = match s.split_once('/') {
        Some((a, n)) => (a, decimal(n).filter(|&n| n <= 32)?),
        None => (s, 32),
    };
    let mut out = [PGSQL_AF_INET, bits as u8, u8::from(cidr), 4, 0, 0, 0, 0];
    let mut octets = addr.split('.');
    for byte in &mut out[4..] {
        *byte = u8::try_from(decimal(octets.next()?)?).ok()?;
    }
    let host = u32::from_be_bytes(out[4..].try_into().ok()?);
    let mask = u32::MAX.checked_shr(bits).unwrap_or(0);
    (octets.next().is_none() && !(cidr && host & mask != 0)).then_some(out)
}

/// `0` or `[1-9][0-9]{0,2}`.
fn decimal(d: &str) -> Option<u32> {
    let plain = !d.is_empty() && d.len() <= 3 && d.bytes().all(|b| b.is_ascii_digit());
    (plain && (d == "0" || !d.starts_with('0'))).then(|| d.parse().ok())?
}

/// The binary type of a catalog column, if the binary path handles it.
fn column_type(column: &Column) -> Option<BinType> {
    if column.is_enum {
        return Some(BinType::Enum);
    }
    bin_type(&column.sql_type)
}

/// The binary types of the columns, when every one has one (else the text format is used).
pub(super) fn column_types(target: &TargetTable, columns: &[usize]) -> Option<Vec<BinType>> {
    columns
        .iter()
        .map(|&c| column_type(&target.columns[c]))
        .collect()
}

/// What one insert of the direct path is written with: the file's settings and layout, each
/// column's binary type, and the direct path's system values.
pub(super) struct Tuple<'a> {
    pub(super) spec: &'a EncodeSpec<'a>,
    pub(super) layout: &'a Layout,
    pub(super) types: &'a [BinType],
    pub(super) direct: &'a Direct,
}

impl Tuple<'_> {
    /// One insert as a binary `COPY` tuple: record, version, file time, file id, the
    /// soft-delete flag where there is one, then the columns. A value the binary form cannot
    /// take exactly ends the direct path ([`WorkerError::DirectUnfit`]).
    pub(super) fn write(
        &self,
        record: &Record<'_>,
        number: u64,
        out: &mut Vec<u8>,
    ) -> Result<Done, WorkerError> {
        let (spec, layout, direct) = (self.spec, self.layout, self.direct);
        let unfit = || WorkerError::DirectUnfit {
            key: spec.key.to_owned(),
            record: number,
        };
        let at = FieldAt {
            key: spec.key,
            target: spec.target,
            rules: spec.rules,
            number,
            line: record.line(),
            op: b'I',
        };
        let fields = 4 + usize::from(direct.soft) + layout.columns.len();
        out.extend_from_slice(&(fields as i16).to_be_bytes());
        int8(out, number as i64);
        match layout.version_of(record) {
            Some(v) => {
                at.check_version(v)?;
                timestamp_micros(out, parse_timestamp(v).ok_or_else(unfit)?);
            }
            None => timestamp_micros(out, direct.file_time_micros),
        }
        timestamp_micros(out, direct.file_time_micros);
        int8(out, direct.file_id);
        if direct.soft {
            boolean(out, false);
        }
        let mut done = Done::default();
        for (pos, i) in layout.staged(record.len()).enumerate() {
            let field = record.get(i).expect("field count was checked");
            let value = at.value(field, layout.columns[pos])?;
            done.repaired += u64::from(matches!(value, Value::Repaired(_)));
            if !write_value(&value, self.types[pos], out) {
                return Err(unfit());
            }
        }
        Ok(done)
    }
}

/// One checked value in binary; false (the direct path ends) when it has no exact binary form.
fn write_value(value: &Value<'_>, t: BinType, out: &mut Vec<u8>) -> bool {
    match value {
        Value::Null => {
            null(out);
            true
        }
        Value::Text(v) => encode(t, v, out),
        Value::Hex(hex) => bytea_hex(hex, out),
        Value::Repaired(text) => encode(t, text.as_bytes(), out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(t: BinType, v: &str) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        encode(t, v.as_bytes(), &mut out).then_some(out)
    }

    fn be(fields: &[i16]) -> Vec<u8> {
        fields.iter().flat_map(|f| f.to_be_bytes()).collect()
    }

    #[test]
    fn catalog_names_map_to_binary_types() {
        assert_eq!(
            bin_type("numeric(12,2)"),
            Some(BinType::Numeric(Some((12, 2))))
        );
        assert_eq!(bin_type("character varying(20)"), Some(BinType::Text));
        assert_eq!(bin_type("timestamp(3) without time zone"), None);
        assert_eq!(bin_type("character(3)"), Some(BinType::Text));
        assert_eq!(bin_type("character"), Some(BinType::Text));
        assert_eq!(bin_type("bpchar"), Some(BinType::Text));
        assert_eq!(bin_type("\"char\""), None);
        assert_eq!(bin_type("character(3)[]"), None);
        assert_eq!(bin_type("character varying(20)[]"), None);
        assert_eq!(bin_type("interval"), None);
    }

    #[test]
    fn enums_by_their_catalog_kind_not_their_name() {
        let col = |sql_type: &str, is_enum| Column {
            name: "c".into(),
            sql_type: sql_type.into(),
            not_null: false,
            is_enum,
        };
        assert_eq!(column_type(&col("mood", true)), Some(BinType::Enum));
        // An enum named like a built-in type is still an enum.
        assert_eq!(column_type(&col("public.date", true)), Some(BinType::Enum));
        assert_eq!(column_type(&col("mood", false)), None);
        assert_eq!(column_type(&col("mood[]", false)), None);
        assert_eq!(column_type(&col("integer", false)), Some(BinType::Int4));
        assert_eq!(enc(BinType::Enum, "sad"), Some(b"\0\0\0\x03sad".to_vec()));
    }

    #[test]
    fn numerics_are_exact_with_postgresql_weight_and_scale() {
        // 12345.678 -> groups 1 2345 6780, weight 1, dscale 3.
        let mut want = 14_i32.to_be_bytes().to_vec();
        want.extend(be(&[3, 1, 0, 3, 1, 2345, 6780]));
        assert_eq!(enc(BinType::Numeric(None), "12345.678"), Some(want));
        // -0.0001 -> group 1, weight -1, negative, dscale 4.
        let mut want = 10_i32.to_be_bytes().to_vec();
        want.extend(be(&[1, -1, 0x4000, 4, 1]));
        assert_eq!(enc(BinType::Numeric(None), "-0.0001"), Some(want));
        // Zero, with numeric(5,2)'s display scale, and no sign.
        let mut want = 8_i32.to_be_bytes().to_vec();
        want.extend(be(&[0, 0, 0, 2]));
        assert_eq!(enc(BinType::Numeric(Some((5, 2))), "-0.0"), Some(want));
        // 10000 -> one group 1, weight 1.
        let mut want = 10_i32.to_be_bytes().to_vec();
        want.extend(be(&[1, 1, 0, 0, 1]));
        assert_eq!(enc(BinType::Numeric(None), "0010000"), Some(want));
        // What PostgreSQL must decide: rounding, overflow, other spellings.
        for v in ["1.005", "1e5", "+1", " 1", ".5", "5.", "NaN", "1000"] {
            assert_eq!(enc(BinType::Numeric(Some((5, 2))), v), None, "{v}");
        }
    }

    #[test]
    fn integers_floats_and_booleans_in_the_strict_grammar_only() {
        assert_eq!(
            enc(BinType::Int2, "-32768"),
            Some([0, 0, 0, 2, 0x80, 0].to_vec())
        );
        assert_eq!(enc(BinType::Int2, "32768"), None);
        assert_eq!(enc(BinType::Int8, "9223372036854775807"), None); // 19 digits: PostgreSQL's
        assert_eq!(enc(BinType::Int4, "+1"), None);
        assert_eq!(
            enc(BinType::Float8, "0.1").unwrap()[4..],
            0.1_f64.to_be_bytes()
        );
        assert_eq!(
            enc(BinType::Float4, "1e-3").unwrap()[4..],
            1e-3_f32.to_be_bytes()
        );
        assert_eq!(
            enc(BinType::Float8, "-0.0").unwrap()[4..],
            (-0.0_f64).to_be_bytes()
        );
        for v in [
            "NaN", "Infinity", "inf", "1e999", "1e-999", "4e-320", "0x10", "",
        ] {
            assert_eq!(enc(BinType::Float8, v), None, "{v}");
        }
        assert_eq!(enc(BinType::Bool, "1"), Some([0, 0, 0, 1, 1].to_vec()));
        assert_eq!(enc(BinType::Bool, "TRUE"), None);
    }

    #[test]
    fn dates_and_timestamps_count_from_2000() {
        assert_eq!(
            enc(BinType::Date, "2000-01-02"),
            Some([0, 0, 0, 4, 0, 0, 0, 1].to_vec())
        );
        assert_eq!(enc(BinType::Date, "2023-02-29"), None);
        assert_eq!(parse_timestamp(b"1970-01-01 00:00:01.5"), Some(1_500_000));
        assert_eq!(
            enc(BinType::Timestamp, "2000-01-01 00:00:00.000001").unwrap()[4..],
            1_i64.to_be_bytes()
        );
        for v in [
            "2024-01-01T00:00:00",
            "2024-01-01 00:00:00.1234567",
            "2024-01-01 24:00:00",
        ] {
            assert_eq!(enc(BinType::Timestamp, v), None, "{v}");
        }
    }

    #[test]
    fn times_count_microseconds_from_midnight_to_the_end_of_the_day() {
        let micros =
            |v: &str| enc(BinType::Time, v).map(|b| i64::from_be_bytes(b[4..].try_into().unwrap()));
        assert_eq!(
            enc(BinType::Time, "00:00:00"),
            Some([0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0].to_vec())
        );
        assert_eq!(micros("00:00:01.5"), Some(1_500_000));
        assert_eq!(micros("23:59:59.999999"), Some(86_399_999_999));
        assert_eq!(micros("24:00:00"), Some(86_400_000_000));
        assert_eq!(micros("24:00:00.000"), Some(86_400_000_000));
        assert_eq!(bin_type("time without time zone"), Some(BinType::Time));
        for t in ["time(3) without time zone", "time without time zone[]"] {
            assert_eq!(bin_type(t), None, "{t}");
        }
        for v in [
            "24:00:00.000001",
            "24:00:01",
            "23:59:60",
            "23:60:00",
            "25:00:00",
            "1:02:03",
            "12:00",
            "12:00:00.1234567",
            "12:00:00.",
            "12:00:00 PM",
            "12:00:00+02",
            "allballs",
            "T12:00:00",
            " 12:00:00",
            "-01:00:00",
            "",
        ] {
            assert_eq!(enc(BinType::Time, v), None, "{v}");
        }
    }

    #[test]
    fn macaddrs_as_six_bytes_in_the_colon_spelling_only() {
        assert_eq!(bin_type("macaddr"), Some(BinType::Macaddr));
        for t in ["macaddr8", "macaddr[]"] {
            assert_eq!(bin_type(t), None, "{t}");
        }
        assert_eq!(
            enc(BinType::Macaddr, "08:00:2b:01:02:03"),
            Some([0, 0, 0, 6, 0x08, 0x00, 0x2b, 0x01, 0x02, 0x03].to_vec())
        );
        assert_eq!(
            enc(BinType::Macaddr, "0A:bB:Cc:dd:EE:ff"),
            Some([0, 0, 0, 6, 0x0a, 0xbb, 0xcc, 0xdd, 0xee, 0xff].to_vec())
        );
        for v in [
            "08-00-2b-01-02-03",
            "08002b:010203",
            "08002b-010203",
            "0800.2b01.0203",
            "0800-2b01-0203",
            "08002b010203",
            "8:0:2b:1:2:3",
            "08:00:2b:01:02:03 ",
            " 08:00:2b:01:02:03",
            "08:00:2b:01:02:0g",
            "08:00:2b:01:02:03:04",
            "+8:00:2b:01:02:03",
            "",
        ] {
            assert_eq!(enc(BinType::Macaddr, v), None, "{v}");
        }
    }

    #[test]
    fn ipv4_inet_and_cidr_as_inet_send_writes_them() {
        assert_eq!(bin_type("inet"), Some(BinType::Inet));
        assert_eq!(bin_type("cidr"), Some(BinType::Cidr));
        assert_eq!(bin_type("inet[]"), None);
        let head = [0, 0, 0, 8];
        assert_eq!(
            enc(BinType::Inet, "1.2.3.4/24"),
            Some([&head[..], &[2, 24, 0, 4, 1, 2, 3, 4]].concat())
        );
        assert_eq!(
            enc(BinType::Inet, "255.255.255.255"),
            Some([&head[..], &[2, 32, 0, 4, 255, 255, 255, 255]].concat())
        );
        assert_eq!(
            enc(BinType::Inet, "0.0.0.0/0"),
            Some([&head[..], &[2, 0, 0, 4, 0, 0, 0, 0]].concat())
        );
        assert_eq!(
            enc(BinType::Cidr, "1.2.3.0/24"),
            Some([&head[..], &[2, 24, 1, 4, 1, 2, 3, 0]].concat())
        );
        assert_eq!(
            enc(BinType::Cidr, "10.0.0.0"),
            Some([&head[..], &[2, 32, 1, 4, 10, 0, 0, 0]].concat())
        );
        assert_eq!(
            enc(BinType::Cidr, "0.0.0.0/0"),
            Some([&head[..], &[2, 0, 1, 4, 0, 0, 0, 0]].concat())
        );
        // Bits right of the mask: a cidr is PostgreSQL's to refuse, an inet keeps them.
        assert_eq!(enc(BinType::Cidr, "1.2.3.4/24"), None);
        assert_eq!(enc(BinType::Cidr, "128.0.0.0/0"), None);
        assert!(enc(BinType::Inet, "128.0.0.0/0").is_some());
        for v in [
            "1.2.3.256",
            "1.2.3",
            "10.1",
            "1.2.3.4.5",
            "010.0.0.1",
            "1.2.3.4/024",
            "1.2.3.4/33",
            "1.2.3.4/",
            "1.2.3.4/-1",
            "1.2.3.4/+8",
            "1..3.4",
            " 1.2.3.4",
            "1.2.3.4 ",
            "::1",
            "::ffff:1.2.3.4",
            "1.2.3.4/24/8",
            "",
        ] {
            assert_eq!(enc(BinType::Inet, v), None, "{v}");
            assert_eq!(enc(BinType::Cidr, v), None, "{v}");
        }
    }

    #[test]
    fn times_with_zones_count_their_offset_west_of_utc() {
        let fields = |v: &str| {
            enc(BinType::TimeTz, v).map(|b| {
                assert_eq!(b[..4], [0, 0, 0, 12]);
                (
                    i64::from_be_bytes(b[4..12].try_into().unwrap()),
                    i32::from_be_bytes(b[12..].try_into().unwrap()),
                )
            })
        };
        assert_eq!(bin_type("time with time zone"), Some(BinType::TimeTz));
        for t in ["time(3) with time zone", "time with time zone[]"] {
            assert_eq!(bin_type(t), None, "{t}");
        }
        assert_eq!(fields("12:00:00+02"), Some((43_200_000_000, -7200)));
        assert_eq!(fields("12:00:00+02:30"), Some((43_200_000_000, -9000)));
        assert_eq!(fields("00:00:01.5-05"), Some((1_500_000, 18_000)));
        assert_eq!(
            fields("23:59:59.999999-15:59"),
            Some((86_399_999_999, 57_540))
        );
        assert_eq!(fields("24:00:00+00"), Some((86_400_000_000, 0)));
        assert_eq!(fields("01:02:03-00"), Some((3_723_000_000, 0)));
        for v in [
            "12:00:00",
            "12:00:00+2",
            "12:00:00+0200",
            "12:00:00+02:00:00",
            "12:00:00 +02",
            "12:00:00Z",
            "12:00:00 UTC",
            "12:00:00+16",
            "12:00:00+02:60",
            "12:00:00+02:3",
            "24:00:00.000001+00",
            "23:59:60+00",
            "12:00+02",
            "12:00:00.1234567+02",
            "+02",
            "",
        ] {
            assert_eq!(enc(BinType::TimeTz, v), None, "{v}");
        }
    }

    #[test]
    fn uuids_bytea_and_jsonb() {
        let u = enc(BinType::Uuid, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11").unwrap();
        assert_eq!(u[..6], [0, 0, 0, 16, 0xa0, 0xee]);
        assert_eq!(
            enc(BinType::Uuid, "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}"),
            None
        );
        assert_eq!(
            enc(BinType::Bytea, "\\xdead"),
            Some([0, 0, 0, 2, 0xde, 0xad].to_vec())
        );
        assert_eq!(enc(BinType::Bytea, "\\xdeaz"), None);
        assert_eq!(
            enc(BinType::Jsonb, "{}"),
            Some([0, 0, 0, 3, 1, b'{', b'}'].to_vec())
        );
    }
}
