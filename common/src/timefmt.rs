//! Timestamps as the manifest stores them: RFC 3339 in UTC with millisecond precision, so that
//! lexical order is time order (the manifest's sort keys rely on that).

use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime, UtcOffset};

/// Now, in the manifest's format.
pub fn now() -> String {
    format(OffsetDateTime::now_utc())
}

/// Formats a time in UTC with exactly three fractional digits (`2024-10-29T11:34:01.000Z`).
pub fn format(t: OffsetDateTime) -> String {
    let t = t.to_offset(UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// Parses any RFC 3339 time.
pub fn parse(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

/// How long ago `s` was, relative to `now`; None when `s` does not parse.
pub fn age(s: &str, now: OffsetDateTime) -> Option<Duration> {
    parse(s).map(|t| now - t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn format_is_fixed_width_utc_and_round_trips() {
        let t = datetime!(2024-10-29 11:34:01.5 +02:00);
        let s = format(t);
        assert_eq!(s, "2024-10-29T09:34:01.500Z");
        assert_eq!(parse(&s).unwrap(), t);
    }

    #[test]
    fn lexical_order_is_time_order() {
        let a = format(datetime!(2024-01-01 09:59:59.999 UTC));
        let b = format(datetime!(2024-01-01 10:00:00 UTC));
        assert!(a < b);
    }
}
