//! Dates, times and intervals in binary: days, microseconds and months counted as
//! PostgreSQL's `*_recv` functions take them. Pure; no IO. The strict-grammar rule of [`super`] holds.

pub(super) fn digits_at(v: &[u8], at: usize, n: usize) -> Option<i64> {
    let d = v.get(at..at + n)?;
    d.iter()
        .all(u8::is_ascii_digit)
        .then(|| d.iter().fold(0_i64, |a, &b| a * 10 + i64::from(b - b'0')))
}

/// `YYYY-MM-DD`, years 1 to 9999, as days since 1970-01-01.
pub(super) fn date_days(v: &[u8]) -> Option<i64> {
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
pub(super) fn parse_time(v: &[u8]) -> Option<i64> {
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
pub(super) fn parse_timetz(v: &[u8]) -> Option<(i64, i32)> {
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

/// An `interval` as PostgreSQL's default `postgres` output style writes it: space-separated
/// `N year(s)`, `N mon(s)` (or `month(s)`), `N day(s)`, each at most once and in that order,
/// then optionally `H:MM:SS[.f{1,6}]`, each number with its own optional sign (`-1 days
/// +02:03:04`); at least one part (`00:00:00` for zero). Returns microseconds, days and months
/// as `interval_recv` takes them. Numbers have at most nine digits, so nothing overflows
/// before the final range checks (months and days in `int4`). Other spellings (`@ 1 day ago`,
/// ISO 8601 `P1D`, SQL `1-2`, fractional units, `1:02`, seconds of 60, more than six
/// fractional digits, `infinity`) are left to PostgreSQL.
pub(super) fn interval(v: &[u8]) -> Option<(i64, i32, i32)> {
    let (mut months, mut days, mut micros) = (0_i64, 0_i64, 0_i64);
    let mut next_unit = 0;
    let mut rest = Some(v);
    while let Some(r) = rest {
        let (token, after) = word(r);
        if token.contains(&b':') {
            micros = signed_clock(token)?;
            if after.is_some() {
                return None;
            }
            break;
        }
        let n = signed(token)?;
        let (unit, after) = word(after?);
        let unit = match unit {
            b"year" | b"years" => 0,
            b"mon" | b"mons" | b"month" | b"months" => 1,
            b"day" | b"days" => 2,
            _ => return None,
        };
        if unit < next_unit {
            return None;
        }
        next_unit = unit + 1;
        match unit {
            0 => months += n * 12,
            1 => months += n,
            _ => days = n,
        }
        rest = after;
    }
    Some((
        micros,
        i32::try_from(days).ok()?,
        i32::try_from(months).ok()?,
    ))
}

/// The bytes up to the first space, and those after it (None when there is no space).
fn word(v: &[u8]) -> (&[u8], Option<&[u8]>) {
    match v.iter().position(|&b| b == b' ') {
        Some(i) => (&v[..i], Some(&v[i + 1..])),
        None => (v, None),
    }
}

/// `[+-]?[0-9]{1,9}`.
fn signed(t: &[u8]) -> Option<i64> {
    let (neg, digits) = sign(t);
    let n = (1..=9)
        .contains(&digits.len())
        .then(|| digits_at(digits, 0, digits.len()))??;
    Some(if neg { -n } else { n })
}

/// `[+-]?H{1,9}:MM:SS[.f{1,6}]`, minutes and seconds below 60, as signed microseconds.
fn signed_clock(t: &[u8]) -> Option<i64> {
    let (neg, body) = sign(t);
    let colon = body.iter().position(|&b| b == b':')?;
    let hours = (1..=9)
        .contains(&colon)
        .then(|| digits_at(body, 0, colon))??;
    let rest = &body[colon + 1..];
    if rest.len() < 5 || rest[2] != b':' {
        return None;
    }
    let (minutes, seconds) = (digits_at(rest, 0, 2)?, digits_at(rest, 3, 2)?);
    let fraction = match &rest[5..] {
        [] => 0,
        [b'.', f @ ..] if !f.is_empty() && f.len() <= 6 => {
            digits_at(f, 0, f.len())? * 10_i64.pow(6 - f.len() as u32)
        }
        _ => return None,
    };
    if minutes > 59 || seconds > 59 {
        return None;
    }
    let micros = hours * 3_600_000_000 + minutes * 60_000_000 + seconds * 1_000_000 + fraction;
    Some(if neg { -micros } else { micros })
}

fn sign(t: &[u8]) -> (bool, &[u8]) {
    match t.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, t),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::enc;
    use super::super::{bin_type, BinType};
    use super::*;

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
    fn intervals_in_the_postgres_output_style() {
        let iv = |v: &str| {
            enc(BinType::Interval, v).map(|b| {
                assert_eq!(b[..4], [0, 0, 0, 16]);
                (
                    i64::from_be_bytes(b[4..12].try_into().unwrap()),
                    i32::from_be_bytes(b[12..16].try_into().unwrap()),
                    i32::from_be_bytes(b[16..].try_into().unwrap()),
                )
            })
        };
        assert_eq!(bin_type("interval"), Some(BinType::Interval));
        for t in ["interval year", "interval(3)", "interval[]"] {
            assert_eq!(bin_type(t), None, "{t}");
        }
        assert_eq!(
            iv("1 year 2 mons 3 days 04:05:06.789"),
            Some((14_706_789_000, 3, 14))
        );
        assert_eq!(iv("00:00:00"), Some((0, 0, 0)));
        assert_eq!(iv("-00:00:01"), Some((-1_000_000, 0, 0)));
        assert_eq!(iv("-1 days +02:03:04"), Some((7_384_000_000, -1, 0)));
        assert_eq!(
            iv("-1 years -2 mons +3 days -04:05:06.000001"),
            Some((-14_706_000_001, 3, -14))
        );
        assert_eq!(iv("1 day"), Some((0, 1, 0)));
        assert_eq!(iv("2 years"), Some((0, 0, 24)));
        assert_eq!(iv("1 mon"), Some((0, 0, 1)));
        assert_eq!(iv("11 months 100 days"), Some((0, 100, 11)));
        assert_eq!(iv("838:59:59.5"), Some((3_020_399_500_000, 0, 0)));
        assert_eq!(iv("178956970 years 7 mons"), Some((0, 0, i32::MAX)));
        for v in [
            "178956970 years 8 mons",
            "1 day 1 day",
            "1 day 1 year",
            "1 year 02:00:00 1 day",
            "@ 1 day",
            "1 day ago",
            "P1D",
            "PT1S",
            "1-2",
            "1.5 days",
            "1 hour",
            "1 days  02:00:00",
            " 1 day",
            "1 day ",
            "1",
            "12:00",
            "00:00:60",
            "00:60:00",
            "0:0:00",
            "00:00:00.1234567",
            "00:00:00.",
            "1234567890:00:00",
            "1234567890 days",
            "1 DAY",
            "infinity",
            "--1 day",
            "",
        ] {
            assert_eq!(enc(BinType::Interval, v), None, "{v}");
        }
    }
}
