//! Deterministic DMS-style data for the `orders` table: a full-load file (no header, unquoted
//! `NULL` for SQL NULL, fields quoted only where they must be) and CDC files (first field
//! `I`/`U`/`D`, named `YYYYMMDD-HHMMSSmmm.csv`). Same arguments, same bytes: the generator is a
//! fixed-seed splitmix64, no clock, no hash-map iteration order.
//!
//! The table (see `bench/sql/tables.sql`):
//! `id bigint PRIMARY KEY, customer_id integer NOT NULL, status text NOT NULL, quantity integer,
//! unit_price numeric(12,2), discount numeric(5,4), total numeric(14,2), currency text,
//! created_at timestamp, updated_at timestamptz, ship_date date, note text, address text`.
//! Text holds quotes, commas, LF and CRLF newlines, tabs, backslashes, non-ASCII, the empty
//! string and the string `NULL` (both quoted), and SQL NULLs.
//!
//! A *wide* full-load file (case 2b) has the same rows, byte for byte in their first 13 fields,
//! plus six more: `code character(3)`, `state` (an enum of `new`, `open`, `held`, `closed`),
//! `pickup time`, `lead interval`, `sizes integer[]`, `tags text[]`, in PostgreSQL's own text
//! forms (what DMS writes for a PostgreSQL source), drawn from a generator of their own so that
//! the first 13 fields stay those of the narrow file.

use std::collections::HashMap;
use std::io::{self, BufWriter, Write};
use std::path::Path;

/// splitmix64: small, fast, and the same sequence on every machine.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0; the bias of a 64-bit modulo is irrelevant here).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// True with probability `pct` percent.
    pub fn pct(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
}

const STATUSES: [&str; 6] = [
    "pending",
    "paid",
    "shipped",
    "delivered",
    "cancelled",
    "returned",
];
const CURRENCIES: [&str; 4] = ["USD", "EUR", "GBP", "JPY"];
const WORDS: [&str; 32] = [
    "order", "gift", "wrap", "please", "deliver", "before", "noon", "fragile", "handle", "with",
    "care", "leave", "at", "door", "call", "on", "arrival", "café", "Zürich", "naïve", "東京",
    "crème", "brûlée", "🚚", "back", "side", "gate", "code", "1234", "ring", "twice", "thanks",
];
const STREETS: [&str; 8] = [
    "Elm Street",
    "Main St.",
    "Rue de l'Église",
    "Bahnhofstraße",
    "O'Connell Street",
    "Avenida \"Central\"",
    "Queen's Road",
    "Via Roma",
];
const CITIES: [&str; 8] = [
    "Springfield",
    "Paris",
    "Zürich",
    "Dublin",
    "São Paulo",
    "Hong Kong",
    "Roma",
    "Kraków",
];

const COUNTRIES: [&str; 6] = [
    "United States",
    "France",
    "Switzerland",
    "Ireland",
    "Brasil",
    "Polska",
];

/// Seconds from 1970-01-01 to 2023-01-01 (UTC).
const BASE_SECS: i64 = 1_672_531_200;

/// One CSV line builder: appends fields, quoting only where RFC 4180 needs it, plus the empty
/// string and the text `NULL`, which DMS quotes so they stay data.
struct Line<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl Line<'_> {
    fn sep(&mut self) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
    }

    fn raw(&mut self, s: &str) {
        self.sep();
        self.out.extend_from_slice(s.as_bytes());
    }

    fn null(&mut self) {
        self.raw("NULL");
    }

    fn int(&mut self, v: u64) {
        self.sep();
        let mut buf = [0u8; 20];
        let mut i = buf.len();
        let mut v = v;
        loop {
            i -= 1;
            buf[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.out.extend_from_slice(&buf[i..]);
    }

    /// `whole.frac` with `digits` fractional digits.
    fn decimal(&mut self, whole: u64, frac: u64, digits: usize) {
        self.int(whole);
        self.out.push(b'.');
        let s = format!("{frac:0digits$}");
        self.out.extend_from_slice(s.as_bytes());
    }

    fn text(&mut self, s: &str) {
        self.sep();
        let needs = s.is_empty()
            || s == "NULL"
            || s.bytes().any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r'));
        if needs {
            self.out.push(b'"');
            for b in s.bytes() {
                if b == b'"' {
                    self.out.push(b'"');
                }
                self.out.push(b);
            }
            self.out.push(b'"');
        } else {
            self.out.extend_from_slice(s.as_bytes());
        }
    }
}

/// (year, month, day) of a Unix time, UTC.
fn civil(secs: i64) -> (i32, u8, u8) {
    let date = time::OffsetDateTime::from_unix_timestamp(secs)
        .expect("generated times are in range")
        .date();
    (date.year(), u8::from(date.month()), date.day())
}

fn timestamp(secs: i64, micros: u64) -> String {
    let (y, m, d) = civil(secs);
    let s = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{micros:06}",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

fn date(secs: i64) -> String {
    let (y, m, d) = civil(secs);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `min` words, plus up to `spread - 1` more.
fn words(rng: &mut Rng, min: u64, spread: u64, out: &mut String) {
    let n = min + if spread > 0 { rng.below(spread) } else { 0 };
    for i in 0..n {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(WORDS[rng.below(WORDS.len() as u64) as usize]);
    }
}

/// The `note` column: mostly plain, often with the characters CSV must quote.
fn note(rng: &mut Rng) -> Option<String> {
    let mut s = String::new();
    match rng.below(100) {
        0..=9 => return None,
        10..=11 => return Some(String::new()),
        12 => return Some("NULL".to_owned()),
        13..=39 => words(rng, 6, 10, &mut s),
        40..=54 => {
            words(rng, 2, 4, &mut s);
            s.push_str(", ");
            words(rng, 2, 4, &mut s);
        }
        55..=66 => {
            s.push_str("said \"");
            words(rng, 2, 4, &mut s);
            s.push_str("\", then ");
            words(rng, 2, 0, &mut s);
        }
        67..=78 => {
            words(rng, 3, 0, &mut s);
            s.push('\n');
            words(rng, 3, 3, &mut s);
            if rng.pct(50) {
                s.push_str("\r\n");
                words(rng, 2, 0, &mut s);
            }
        }
        79..=86 => {
            s.push_str("path C:\\orders\\");
            words(rng, 1, 0, &mut s);
            s.push_str("\ttab\t");
            words(rng, 2, 0, &mut s);
        }
        _ => {
            // A long note.
            words(rng, 20, 20, &mut s);
            s.push_str(", \"quoted\", and more");
        }
    }
    Some(s)
}

fn address(rng: &mut Rng) -> Option<String> {
    if rng.pct(5) {
        return None;
    }
    let mut s = format!(
        "{} {}",
        1 + rng.below(9999),
        STREETS[rng.below(STREETS.len() as u64) as usize]
    );
    if rng.pct(40) {
        s.push_str(&format!(", Apt {}", 1 + rng.below(300)));
    }
    s.push(if rng.pct(50) { '\n' } else { ',' });
    s.push(' ');
    s.push_str(CITIES[rng.below(CITIES.len() as u64) as usize]);
    s.push_str(&format!(" {:05}", rng.below(100_000)));
    if rng.pct(60) {
        s.push_str(", ");
        s.push_str(COUNTRIES[rng.below(COUNTRIES.len() as u64) as usize]);
    }
    Some(s)
}

/// Appends one `orders` row (without an `Op` field) for `id`.
fn row(rng: &mut Rng, id: u64, line: &mut Line<'_>) {
    line.int(id);
    line.int(1 + rng.below(200_000));
    line.raw(STATUSES[rng.below(STATUSES.len() as u64) as usize]);
    let quantity = 1 + rng.below(20);
    if rng.pct(2) {
        line.null();
    } else {
        line.int(quantity);
    }
    let cents = 50 + rng.below(99_950);
    line.decimal(cents / 100, cents % 100, 2);
    if rng.pct(30) {
        line.null();
    } else {
        line.decimal(0, rng.below(3000), 4);
    }
    let total = cents * quantity;
    line.decimal(total / 100, total % 100, 2);
    line.raw(CURRENCIES[rng.below(CURRENCIES.len() as u64) as usize]);
    let created = BASE_SECS + rng.below(2 * 365 * 86_400) as i64;
    line.raw(&timestamp(created, rng.below(1_000_000)));
    let updated = created + rng.below(30 * 86_400) as i64;
    line.raw(&timestamp(updated, rng.below(1_000_000)));
    if rng.pct(25) {
        line.null();
    } else {
        line.raw(&date(created + rng.below(10 * 86_400) as i64));
    }
    match note(rng) {
        Some(n) => line.text(&n),
        None => line.null(),
    }
    match address(rng) {
        Some(a) => line.text(&a),
        None => line.null(),
    }
}

const STATES: [&str; 4] = ["new", "open", "held", "closed"];
const CODES: [&str; 6] = ["USD", "EUR", "GBP", "CHF", "JP", "X"];
const TAGS: [&str; 8] = [
    "gift",
    "fragile",
    "express",
    "a b",
    "x,y",
    "say \"hi\"",
    "Zürich",
    "NULL",
];

/// A `time`: `HH:MM:SS`, or with one to six fractional digits.
fn time_of_day(rng: &mut Rng) -> String {
    let s = rng.below(86_400);
    let mut t = format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60);
    if rng.pct(40) {
        let digits = 1 + rng.below(6) as usize;
        let frac = rng.below(10u64.pow(digits as u32));
        t.push_str(&format!(".{frac:0digits$}"));
    }
    t
}

/// An `interval` as PostgreSQL prints it (`IntervalStyle = postgres`).
fn interval(rng: &mut Rng) -> String {
    let s = rng.below(86_400);
    let clock = format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60);
    match rng.below(6) {
        0 => clock,
        1 => format!("{} days {clock}", 2 + rng.below(30)),
        2 => format!("1 day {clock}"),
        3 => format!("{} mons {} days", 2 + rng.below(10), 1 + rng.below(27)),
        4 => format!("-{clock}.{:06}", rng.below(1_000_000)),
        _ => format!("{} years {} mons", 1 + rng.below(3), 2 + rng.below(10)),
    }
}

/// A one-dimensional array literal of `n` elements, `NULL` elements included.
fn array(rng: &mut Rng, n: u64, element: impl Fn(&mut Rng) -> String) -> String {
    let items: Vec<String> = (0..n)
        .map(|_| {
            if rng.pct(5) {
                "NULL".to_owned()
            } else {
                element(rng)
            }
        })
        .collect();
    format!("{{{}}}", items.join(","))
}

/// An element of a `text[]` literal, quoted where the array grammar needs it.
fn tag(rng: &mut Rng) -> String {
    let t = TAGS[rng.below(TAGS.len() as u64) as usize];
    if t.bytes().any(|b| matches!(b, b' ' | b',' | b'"' | b'\\')) || t == "NULL" {
        format!("\"{}\"", t.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        t.to_owned()
    }
}

/// A value, or (3% of the time) SQL NULL.
fn maybe(rng: &mut Rng, line: &mut Line<'_>, v: String) {
    if rng.pct(3) {
        line.null();
    } else {
        line.text(&v);
    }
}

/// Appends the six columns of the wide file for `id`, from a generator of their own.
fn wide_extras(id: u64, seed: u64, line: &mut Line<'_>) {
    let mut rng = Rng::new(seed ^ id.wrapping_mul(0x9E6C_63D0_676A_9A99) ^ 0x5749_4445);
    let code = CODES[rng.below(CODES.len() as u64) as usize].to_owned();
    maybe(&mut rng, line, code);
    line.raw(STATES[rng.below(STATES.len() as u64) as usize]);
    let t = time_of_day(&mut rng);
    maybe(&mut rng, line, t);
    let i = interval(&mut rng);
    maybe(&mut rng, line, i);
    let n = rng.below(5);
    let sizes = array(&mut rng, n, |r| (r.below(2000) as i64 - 100).to_string());
    maybe(&mut rng, line, sizes);
    let n = rng.below(4);
    let tags = array(&mut rng, n, tag);
    maybe(&mut rng, line, tags);
}

/// Writes a full-load file of `rows` rows with ids `start_id..start_id + rows` (with the six
/// more columns of case 2b when `wide`). Returns bytes.
pub fn full_load(path: &Path, rows: u64, start_id: u64, seed: u64, wide: bool) -> io::Result<u64> {
    let mut rng = Rng::new(seed ^ start_id.wrapping_mul(0x2545_F491_4F6C_DD1D));
    let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut buf = Vec::with_capacity(1 << 16);
    let mut bytes = 0u64;
    for i in 0..rows {
        {
            let mut line = Line {
                out: &mut buf,
                first: true,
            };
            row(&mut rng, start_id + i, &mut line);
            if wide {
                wide_extras(start_id + i, seed, &mut line);
            }
        }
        buf.push(b'\n');
        if buf.len() >= 1 << 15 {
            bytes += buf.len() as u64;
            w.write_all(&buf)?;
            buf.clear();
        }
    }
    bytes += buf.len() as u64;
    w.write_all(&buf)?;
    w.flush()?;
    Ok(bytes)
}

/// Keys that exist, with O(1) random pick and removal.
struct LiveSet {
    keys: Vec<u64>,
    pos: HashMap<u64, usize>,
}

impl LiveSet {
    fn insert(&mut self, k: u64) {
        if !self.pos.contains_key(&k) {
            self.pos.insert(k, self.keys.len());
            self.keys.push(k);
        }
    }

    fn remove_at(&mut self, i: usize) -> u64 {
        let k = self.keys.swap_remove(i);
        self.pos.remove(&k);
        if let Some(&moved) = self.keys.get(i) {
            self.pos.insert(moved, i);
        }
        k
    }
}

/// What a CDC stream holds, counted while it is written.
#[derive(Debug, Default)]
pub struct CdcCounts {
    pub inserts: u64,
    pub updates: u64,
    pub deletes: u64,
    pub bytes: u64,
}

/// Writes `ops` operations in `files` CDC files into `dir`, on a table whose ids
/// `1..=base_rows` exist. About 20% inserts (a tenth of them re-insert a deleted key), 70%
/// updates (full row images) and 10% deletes of existing keys; a key is never inserted while it
/// exists nor updated or deleted when it does not, as a real source's log would be. File `k` is
/// named after `start + k * interval_ms` (UTC).
pub fn cdc(
    dir: &Path,
    ops: u64,
    files: u64,
    base_rows: u64,
    seed: u64,
    start: time::OffsetDateTime,
    interval_ms: u64,
) -> io::Result<CdcCounts> {
    std::fs::create_dir_all(dir)?;
    let mut rng = Rng::new(seed ^ 0xC0FF_EE00_D15E_A5E5);
    let mut live = LiveSet {
        keys: (1..=base_rows).collect(),
        pos: (1..=base_rows).enumerate().map(|(i, k)| (k, i)).collect(),
    };
    let mut deleted: Vec<u64> = Vec::new();
    let mut next_id = base_rows + 1;
    let mut counts = CdcCounts::default();
    let mut buf = Vec::with_capacity(1 << 16);
    for f in 0..files {
        let n = ops / files + u64::from(f < ops % files);
        let name = sluice_common::mapping::cdc_file_name(
            start + time::Duration::milliseconds((f * interval_ms) as i64),
        );
        let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(dir.join(name))?);
        for _ in 0..n {
            let roll = rng.below(100);
            let (op, id) = if live.keys.is_empty() || roll < 20 {
                let id = if !deleted.is_empty() && rng.pct(10) {
                    deleted.swap_remove(rng.below(deleted.len() as u64) as usize)
                } else {
                    next_id += 1;
                    next_id - 1
                };
                live.insert(id);
                counts.inserts += 1;
                ("I", id)
            } else if roll < 90 {
                counts.updates += 1;
                ("U", live.keys[rng.below(live.keys.len() as u64) as usize])
            } else {
                let id = live.remove_at(rng.below(live.keys.len() as u64) as usize);
                deleted.push(id);
                counts.deletes += 1;
                ("D", id)
            };
            {
                let mut line = Line {
                    out: &mut buf,
                    first: true,
                };
                line.raw(op);
                row(&mut rng, id, &mut line);
            }
            buf.extend_from_slice(b"\n");
            if buf.len() >= 1 << 15 {
                counts.bytes += buf.len() as u64;
                w.write_all(&buf)?;
                buf.clear();
            }
        }
        counts.bytes += buf.len() as u64;
        w.write_all(&buf)?;
        buf.clear();
        w.flush()?;
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(19_358 * 86_400), (2023, 1, 1));
        assert_eq!(civil(19_417 * 86_400 - 1), (2023, 2, 28));
        assert_eq!(timestamp(BASE_SECS + 3661, 7), "2023-01-01 01:01:01.000007");
    }

    #[test]
    fn quoting_follows_rfc4180_and_dms_nulls() {
        let mut out = Vec::new();
        let mut l = Line {
            out: &mut out,
            first: true,
        };
        l.text("plain");
        l.text("a,b");
        l.text("say \"hi\"");
        l.text("");
        l.text("NULL");
        l.null();
        l.decimal(12, 5, 2);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "plain,\"a,b\",\"say \"\"hi\"\"\",\"\",\"NULL\",NULL,12.05"
        );
    }

    #[test]
    fn wide_rows_are_the_narrow_rows_and_six_more_fields() {
        // Three consecutive rows from one generator, as full_load writes them: the extras must
        // not draw from it, or the rows after the first would change.
        let render = |wide: bool| {
            let mut rng = Rng::new(3);
            (40..43)
                .map(|id| {
                    let mut out = Vec::new();
                    let mut line = Line {
                        out: &mut out,
                        first: true,
                    };
                    row(&mut rng, id, &mut line);
                    if wide {
                        wide_extras(id, 3, &mut line);
                    }
                    String::from_utf8(out).unwrap()
                })
                .collect::<Vec<_>>()
        };
        let (narrow, wide) = (render(false), render(true));
        for (n, w) in narrow.iter().zip(&wide) {
            let extra = w.strip_prefix(n.as_str()).expect("same first fields");
            assert!(extra.starts_with(','), "{extra}");
        }
        assert_eq!(render(true), wide);
    }

    #[test]
    fn array_elements_are_quoted_where_the_array_grammar_needs_it() {
        let mut rng = Rng::new(1);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            seen.insert(tag(&mut rng));
        }
        assert!(seen.contains("gift"));
        assert!(seen.contains("\"a b\""));
        assert!(seen.contains("\"x,y\""));
        assert!(seen.contains("\"say \\\"hi\\\"\""));
        assert!(seen.contains("\"NULL\""));
    }

    #[test]
    fn rows_are_deterministic() {
        let one = |seed| {
            let mut out = Vec::new();
            let mut rng = Rng::new(seed);
            row(
                &mut rng,
                7,
                &mut Line {
                    out: &mut out,
                    first: true,
                },
            );
            out
        };
        assert_eq!(one(1), one(1));
        assert_ne!(one(1), one(2));
    }
}
