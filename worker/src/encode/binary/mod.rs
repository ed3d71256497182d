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
//! A column's binary type ([`ColType`]) is decided from the catalog ([`crate::sql::BaseType`]):
//! under its domains (whose `CHECK` constraints `domain_recv` still enforces), an array's
//! element (written with the element oid the catalog gives, `array.rs`), and for `money` and
//! `interval` only in a session whose settings make their text input read the grammar here as
//! it is read here. Dates, times and intervals are in `time.rs`, addresses and identifiers in
//! `net.rs`.
//!
//! `xml` is sent as its bytes only without an XML declaration that may name an encoding:
//! `xml_recv` converts a document from its declared encoding (UTF-8 when none), while `xml_in`
//! reads the text as the client sent it, so a declaration such as `encoding="ISO-8859-1"` on
//! UTF-8 text would store other characters.
//!
//! [`Tuple`] writes one insert of the direct path as a binary tuple, with the same value
//! checks as the text format ([`super::field`]). Must not: guess a value's meaning (a text it
//! cannot encode exactly ends the binary attempt, [`WorkerError::DirectUnfit`] with `value`,
//! and the loader reads the file again in text).

mod array;
mod net;
mod stage;
mod time;

use super::field::{Done, FieldAt, Value};
use super::{Direct, EncodeSpec, Layout};
use crate::error::WorkerError;
use crate::read::csv::Record;
use crate::sql::{Column, TargetTable};
use net::{inet, macaddr, uuid};
pub(super) use stage::write_stage;
pub use time::parse_timestamp;
use time::{date_days, interval, parse_time, parse_timetz};

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
    /// `cidr`, as `inet` with the cidr flag set.
    Cidr,
    /// `interval`: microseconds, days, months, from PostgreSQL's `postgres` output style
    /// (`1 year 2 mons -3 days +04:05:06.5`), in a session whose `IntervalStyle` is not
    /// `sql_standard` (where a leading `-` would apply to every field).
    Interval,
    /// `money` in a session that writes it `-$1,234,567.89` (see [`MONEY_DOLLARS`]): an int8 of
    /// cents.
    Money,
    /// `xml`: its bytes, when the text has no XML declaration naming an encoding (`xml_recv`
    /// converts from the declared encoding, `xml_in` reads the text as it is).
    Xml,
}

/// A column's binary form: one value, or a one-dimensional array of them with the element
/// type's oid (`array_recv` checks it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColType {
    One(BinType),
    Array { elem: BinType, oid: u32 },
}

/// How a session whose `money` input the binary path can read writes -1234567.89 and
/// 1234567.89 (the catalog query's probe): currency symbol `$`, `,` between thousands, `.`
/// before two fractional digits, `-` for negative amounts, no sign for positive ones, as the
/// `C` locale does. `cash_in` reads with the same symbols (its `+` for a positive sign is never
/// in the grammar), so a text in `money()`'s grammar means the same cents in any session
/// that writes them so.
pub const MONEY_DOLLARS: &str = "-$1,234,567.89 $1,234,567.89";

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
        "interval" => BinType::Interval,
        "money" => BinType::Money,
        "xml" => BinType::Xml,
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
        BinType::Inet => inet(v, false, out),
        BinType::Cidr => inet(v, true, out),
        BinType::Interval => interval(v)
            .map(|(micros, days, months)| {
                out.extend_from_slice(&16_i32.to_be_bytes());
                out.extend_from_slice(&micros.to_be_bytes());
                out.extend_from_slice(&days.to_be_bytes());
                out.extend_from_slice(&months.to_be_bytes());
            })
            .is_some(),
        BinType::Money => money(v).map(|c| field(out, &c.to_be_bytes())).is_some(),
        BinType::Xml => {
            // Anything naming an encoding before the first `>` could be a declaration's.
            let head = &v[..memchr::memchr(b'>', v).unwrap_or(v.len())];
            let declares_encoding = memchr::memmem::find(head, b"encoding").is_some();
            if !declares_encoding {
                field(out, v);
            }
            !declares_encoding
        }
    }
}

/// Appends the field for text `v` of column type `t` ([`encode`], or a one-dimensional
/// array of it, [`array::encode`]); false (nothing appended) outside the strict grammar.
pub fn encode_column(t: ColType, v: &[u8], out: &mut Vec<u8>) -> bool {
    match t {
        ColType::One(t) => encode(t, v, out),
        ColType::Array { elem, oid } => array::encode(elem, oid, v, out),
    }
}

/// `money` as [`MONEY_DOLLARS`] writes it, as cents: `-?$?` then digits, with single commas
/// between digits (which `cash_in` skips), then optionally `.` and one or two digits, or more
/// whose extra digits are all zeros (`cash_in` rounds on the first extra digit; a zero never
/// rounds). At most 18 digits, so no sum overflows. Parentheses, spaces, a trailing sign or
/// symbol, `+` and other spellings are left to PostgreSQL.
fn money(v: &[u8]) -> Option<i64> {
    let (neg, v) = match v.strip_prefix(b"-") {
        Some(rest) => (true, rest),
        None => (false, v),
    };
    let v = v.strip_prefix(b"$").unwrap_or(v);
    let (int_part, frac) = match v.iter().position(|&b| b == b'.') {
        Some(i) => (&v[..i], Some(&v[i + 1..])),
        None => (v, None),
    };
    let grouped = !int_part.is_empty()
        && int_part.first().is_some_and(u8::is_ascii_digit)
        && int_part.last().is_some_and(u8::is_ascii_digit)
        && int_part.iter().all(|&b| b.is_ascii_digit() || b == b',')
        && memchr::memmem::find(int_part, b",,").is_none();
    if !grouped {
        return None;
    }
    let frac = frac.unwrap_or(b"00");
    let (cents, extra) = frac.split_at(frac.len().min(2));
    let frac_ok = !frac.is_empty()
        && cents.iter().all(u8::is_ascii_digit)
        && extra.iter().all(|&b| b == b'0');
    let digits = int_part.iter().filter(|b| b.is_ascii_digit()).count();
    if !frac_ok || digits + 2 > 18 {
        return None;
    }
    let mut value: i64 = 0;
    for &b in int_part.iter().chain(cents).filter(|b| b.is_ascii_digit()) {
        value = value * 10 + i64::from(b - b'0');
    }
    if cents.len() == 1 {
        value *= 10;
    }
    Some(if neg { -value } else { value })
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
    let (neg, digits) = match v.strip_prefix(b"-") {
        Some(d) => (true, d),
        None => (false, v),
    };
    if digits.is_empty() || digits.len() > 18 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = digits
        .iter()
        .fold(0_i64, |n, &d| n * 10 + i64::from(d - b'0'));
    Some(if neg { -n } else { n })
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

/// The binary type of a catalog column (under its domains; an array's element type), if the
/// binary path handles it.
fn column_type(column: &Column) -> Option<ColType> {
    let Some(base) = &column.base else {
        return scalar(&column.sql_type, column.is_enum, None).map(ColType::One);
    };
    let session = base.session.as_deref();
    match &base.element {
        None => scalar(&base.sql_type, base.is_enum, session).map(ColType::One),
        Some(e) => {
            scalar(&e.sql_type, e.is_enum, session).map(|elem| ColType::Array { elem, oid: e.oid })
        }
    }
}

/// The binary type of a type that is no domain and no array: enums by their catalog kind,
/// `money` and `interval` only in a session whose setting their input depends on allows it.
fn scalar(sql_type: &str, is_enum: bool, session: Option<&str>) -> Option<BinType> {
    if is_enum {
        return Some(BinType::Enum);
    }
    match bin_type(sql_type)? {
        BinType::Money => (session == Some(MONEY_DOLLARS)).then_some(BinType::Money),
        BinType::Interval => matches!(session, Some("postgres" | "postgres_verbose" | "iso_8601"))
            .then_some(BinType::Interval),
        t => Some(t),
    }
}

/// The binary types of the columns, when every one has one (else the text format is used).
pub(super) fn column_types(target: &TargetTable, columns: &[usize]) -> Option<Vec<ColType>> {
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
    pub(super) types: &'a [ColType],
    pub(super) direct: &'a Direct,
}

impl Tuple<'_> {
    /// One insert as a binary `COPY` tuple: record, version, file time, file id, the
    /// soft-delete flag where there is one, then the columns. A value the binary form cannot
    /// take exactly ends the binary attempt ([`WorkerError::DirectUnfit`] with `value`).
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
            value: true,
        };
        let at = FieldAt::of(spec, record, number, b'I');
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
fn write_value(value: &Value<'_>, t: ColType, out: &mut Vec<u8>) -> bool {
    match value {
        Value::Null => {
            null(out);
            true
        }
        Value::Text(v) => encode_column(t, v, out),
        Value::Hex(hex) => bytea_hex(hex, out),
        Value::Repaired(text) => encode_column(t, text.as_bytes(), out),
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::sql::{BaseType, Element};

    pub(in super::super) fn enc(t: BinType, v: &str) -> Option<Vec<u8>> {
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
        assert_eq!(bin_type("interval"), Some(BinType::Interval));
        assert_eq!(bin_type("money[]"), None);
    }

    #[test]
    fn enums_by_their_catalog_kind_not_their_name() {
        let col = |sql_type: &str, is_enum| Column {
            name: "c".into(),
            sql_type: sql_type.into(),
            not_null: false,
            is_enum,
            base: None,
        };
        assert_eq!(
            column_type(&col("mood", true)),
            Some(ColType::One(BinType::Enum))
        );
        // An enum named like a built-in type is still an enum.
        assert_eq!(
            column_type(&col("public.date", true)),
            Some(ColType::One(BinType::Enum))
        );
        assert_eq!(column_type(&col("mood", false)), None);
        assert_eq!(column_type(&col("mood[]", false)), None);
        assert_eq!(
            column_type(&col("integer", false)),
            Some(ColType::One(BinType::Int4))
        );
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

    fn column(sql_type: &str, base: Option<BaseType>) -> Column {
        Column {
            name: "c".into(),
            sql_type: sql_type.into(),
            not_null: false,
            is_enum: false,
            base,
        }
    }

    fn base(sql_type: &str, element: Option<(u32, &str, bool)>, session: Option<&str>) -> BaseType {
        BaseType {
            sql_type: sql_type.into(),
            is_enum: false,
            element: element.map(|(oid, t, is_enum)| Element {
                oid,
                sql_type: t.into(),
                is_enum,
            }),
            session: session.map(str::to_owned),
        }
    }

    #[test]
    fn domains_and_arrays_by_the_type_under_them() {
        let t = |sql_type: &str, b| column_type(&column(sql_type, Some(b)));
        // A domain over varchar(3): its base type, whatever the domain is called.
        assert_eq!(
            t("public.code", base("character varying(3)", None, None)),
            Some(ColType::One(BinType::Text))
        );
        assert_eq!(t("public.point_d", base("point", None, None)), None);
        // An array of a domain over an enum: the domain's oid, the enum's binary form.
        assert_eq!(
            t(
                "moods[]",
                base("moods[]", Some((90_001, "mood", true)), None)
            ),
            Some(ColType::Array {
                elem: BinType::Enum,
                oid: 90_001
            })
        );
        assert_eq!(
            t(
                "numeric(5,2)[]",
                base("numeric(5,2)[]", Some((1700, "numeric(5,2)", false)), None)
            ),
            Some(ColType::Array {
                elem: BinType::Numeric(Some((5, 2))),
                oid: 1700
            })
        );
        assert_eq!(
            t(
                "point[]",
                base("point[]", Some((600, "point", false)), None)
            ),
            None
        );
        // Without the catalog's element an array has no binary form.
        assert_eq!(column_type(&column("integer[]", None)), None);
    }

    #[test]
    fn money_and_interval_only_in_a_session_that_reads_them_so() {
        let t = |sql_type: &str, session: Option<&str>| {
            column_type(&column(sql_type, Some(base(sql_type, None, session))))
        };
        assert_eq!(
            t("money", Some(MONEY_DOLLARS)),
            Some(ColType::One(BinType::Money))
        );
        assert_eq!(t("money", Some("-€1.234.567,89 €1.234.567,89")), None);
        assert_eq!(t("money", Some("-1,234,568 1,234,568")), None);
        assert_eq!(t("money", None), None);
        assert_eq!(column_type(&column("money", None)), None);
        for style in ["postgres", "postgres_verbose", "iso_8601"] {
            assert_eq!(
                t("interval", Some(style)),
                Some(ColType::One(BinType::Interval))
            );
        }
        assert_eq!(t("interval", Some("sql_standard")), None);
        assert_eq!(column_type(&column("interval", None)), None);
        let arr = base(
            "interval[]",
            Some((1186, "interval", false)),
            Some("sql_standard"),
        );
        assert_eq!(column_type(&column("interval[]", Some(arr))), None);
    }

    #[test]
    fn money_as_cents_in_the_dollar_spelling() {
        let cents = |v: &str| {
            enc(BinType::Money, v).map(|b| i64::from_be_bytes(b[4..].try_into().unwrap()))
        };
        assert_eq!(enc(BinType::Money, "0").unwrap()[..4], [0, 0, 0, 8]);
        assert_eq!(cents("1234.56"), Some(123_456));
        assert_eq!(cents("$1,234.56"), Some(123_456));
        assert_eq!(cents("-$1,234,567.89"), Some(-123_456_789));
        assert_eq!(cents("-1234.5"), Some(-123_450));
        assert_eq!(cents("12"), Some(1_200));
        assert_eq!(cents("12.3400"), Some(1_234));
        assert_eq!(cents("-0"), Some(0));
        assert_eq!(cents("9999999999999999.99"), Some(999_999_999_999_999_999));
        for v in [
            "99999999999999999.99",
            "1.005",
            "1.239",
            "1.",
            ".5",
            "$-1.00",
            "(1.00)",
            "1.00-",
            "+1.00",
            " 1.00",
            "1.00 ",
            "1,,000",
            ",100",
            "100,",
            "1.0,0",
            "$",
            "-",
            "1e3",
            "USD 1",
            "",
        ] {
            assert_eq!(cents(v), None, "{v}");
        }
    }

    #[test]
    fn xml_as_its_text_unless_a_declaration_may_name_an_encoding() {
        assert_eq!(bin_type("xml"), Some(BinType::Xml));
        assert_eq!(
            enc(BinType::Xml, "<a>é</a>"),
            Some(b"\0\0\0\x09<a>\xc3\xa9</a>".to_vec())
        );
        assert!(enc(BinType::Xml, "<?xml version=\"1.0\"?><a/>").is_some());
        assert!(enc(BinType::Xml, "text, no markup").is_some());
        for v in [
            "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><a/>",
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><a/>",
            "<?xml encoding",
        ] {
            assert_eq!(enc(BinType::Xml, v), None, "{v}");
        }
    }
}
