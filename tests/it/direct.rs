//! The direct path: a full-load file into a table with no rows is copied into the target itself.
//! It must give exactly what the staged path gives, and step aside for it whenever it cannot
//! (a duplicate key, a record that is not an insert, rows already there); a delete merged before
//! it still wins over an older full-load row.

use crate::support::{cdc_name, TestBed};
use sluice_worker::load::{load_file, LoadContext, LoadOutcome, LoadStats};

fn stats(outcome: LoadOutcome) -> LoadStats {
    match outcome {
        LoadOutcome::Loaded(s) => s,
        other => panic!("not loaded: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_load_into_an_empty_table_is_direct_and_equals_the_staged_result() {
    let tb = TestBed::new("direct-same").await;
    for t in ["a", "b"] {
        tb.sql(&format!(
            "CREATE TABLE {{s}}.{t} (id int PRIMARY KEY, name text, amount numeric(12,2), at timestamptz)"
        ))
        .await;
    }
    tb.sql("INSERT INTO {s}.b VALUES (0, 'already here', 0, now())")
        .await;
    let s = &tb.schema;
    let rules = format!(
        "[tables.\"{s}.a\"]\ntimestamp_column = \"dms_ts\"\n[tables.\"{s}.b\"]\ntimestamp_column = \"dms_ts\"\n"
    );
    let ctx = tb.load_context(&rules).await;
    let body: String = (1..=500)
        .map(|i| {
            format!(
                "2024-01-01 00:00:{:02}.{i:06},{i},\"n{i}, \"\"q\"\"\nline\",{i}.{:02},{}\n",
                i % 60,
                i % 100,
                if i % 7 == 0 {
                    "NULL".to_owned()
                } else {
                    format!("2024-02-01 10:00:{:02}", i % 60)
                }
            )
        })
        .collect();
    let a = stats(
        tb.put_and_load(&ctx, &tb.key("a/LOAD00000001.csv"), &body)
            .await,
    );
    let b = stats(
        tb.put_and_load(&ctx, &tb.key("b/LOAD00000001.csv"), &body)
            .await,
    );
    assert!(a.direct && !b.direct, "{a:?} {b:?}");
    assert_eq!((a.records, a.inserted, a.superseded), (500, 500, 0));
    assert_eq!((b.records, b.inserted), (500, 500));
    let cols = "id, name, amount::text, at::text, _sluice_version::text, _sluice_record::text";
    let rows_a = tb
        .rows(&format!("SELECT {cols} FROM {{s}}.a ORDER BY id"))
        .await;
    let rows_b = tb
        .rows(&format!(
            "SELECT {cols} FROM {{s}}.b WHERE id > 0 ORDER BY id"
        ))
        .await;
    assert_eq!(rows_a.len(), 500);
    assert_eq!(rows_a, rows_b);
    // The file's own system columns: its ledger id and time.
    assert_eq!(
        tb.count(&format!(
            "SELECT count(*) FROM {{s}}.a WHERE _sluice_file = (SELECT file_id FROM \"{}\".ledger \
             WHERE key = '{}') AND _sluice_file_time IS NOT NULL",
            tb.state_schema,
            tb.key("a/LOAD00000001.csv")
        ))
        .await,
        500
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_steps_aside_for_duplicates_non_inserts_and_tables_with_rows() {
    let tb = TestBed::new("direct-aside").await;
    for t in ["dup", "ops"] {
        tb.sql(&format!(
            "CREATE TABLE {{s}}.{t} (id int PRIMARY KEY, name text)"
        ))
        .await;
    }
    let ctx = tb.load_context("").await;
    // The same key twice: the direct COPY meets a unique violation; the staged path keeps the
    // later record, as it always does.
    let dup = stats(
        tb.put_and_load(
            &ctx,
            &tb.key("dup/LOAD00000001.csv"),
            "1,first\n2,x\n1,second\n",
        )
        .await,
    );
    assert!(!dup.direct);
    assert_eq!(
        tb.rows("SELECT id::text, name FROM {s}.dup ORDER BY id")
            .await,
        vec![
            vec![Some("1".to_owned()), Some("second".to_owned())],
            vec![Some("2".to_owned()), Some("x".to_owned())]
        ]
    );
    // A second full-load file, into a table that holds only its generation's rows (the first
    // file's, merged): direct again (`fullload.rs` has the rest).
    let second = stats(
        tb.put_and_load(&ctx, &tb.key("dup/LOAD00000002.csv"), "3,y\n")
            .await,
    );
    assert!(second.direct);
    assert_eq!(tb.count("SELECT count(*) FROM {s}.dup").await, 3);

    // A full-load file with an Op column and an update in it: staged, nothing applied twice.
    let ops = stats(
        tb.put_and_load(
            &ctx,
            &tb.key("ops/LOAD00000001.csv"),
            "I,1,a\nI,2,b\nU,1,c\n",
        )
        .await,
    );
    assert!(!ops.direct);
    assert_eq!(
        tb.rows("SELECT id::text, name FROM {s}.ops ORDER BY id")
            .await,
        vec![
            vec![Some("1".to_owned()), Some("c".to_owned())],
            vec![Some("2".to_owned()), Some("b".to_owned())]
        ]
    );
    assert_eq!(
        tb.count(&format!(
            "SELECT count(*) FROM \"{}\".ledger WHERE key LIKE '%/ops/%' OR key LIKE '%/dup/%'",
            tb.state_schema
        ))
        .await,
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_delete_wins_over_a_direct_full_load_and_soft_delete_tables_get_their_flag() {
    let tb = TestBed::new("direct-guard").await;
    tb.sql("CREATE TABLE {s}.hard (id int PRIMARY KEY, name text)")
        .await;
    tb.sql("CREATE TABLE {s}.soft (id int PRIMARY KEY, name text)")
        .await;
    let s = &tb.schema;
    let ctx = tb
        .load_context(&format!(
            "[tables.\"{s}.soft\"]\nsoft_delete = \"is_deleted\"\n"
        ))
        .await;
    // A CDC delete written after the full load, applied first: the table stays empty but
    // keeps a tombstone.
    let del = stats(
        tb.put_and_load(
            &ctx,
            &tb.key(&format!("hard/{}", cdc_name(60_000))),
            "D,5,gone\n",
        )
        .await,
    );
    assert_eq!(tb.count("SELECT count(*) FROM {s}.hard").await, 0);
    assert!(!del.direct);
    let body: String = (1..=10).map(|i| format!("{i},n{i}\n")).collect();
    let full = stats(
        tb.put_and_load(&ctx, &tb.key("hard/LOAD00000001.csv"), &body)
            .await,
    );
    assert!(full.direct);
    assert_eq!((full.records, full.inserted, full.superseded), (10, 9, 1));
    assert_eq!(
        tb.count("SELECT count(*) FROM {s}.hard WHERE id = 5").await,
        0
    );
    assert_eq!(tb.count("SELECT count(*) FROM {s}.hard").await, 9);

    let soft = stats(
        tb.put_and_load(&ctx, &tb.key("soft/LOAD00000001.csv"), &body)
            .await,
    );
    assert!(soft.direct);
    assert_eq!(
        tb.count("SELECT count(*) FROM {s}.soft WHERE is_deleted = false")
            .await,
        10
    );
    // And the flag works for later CDC as usual.
    tb.put_and_load(
        &ctx,
        &tb.key(&format!("soft/{}", cdc_name(60_000))),
        "D,3,n3\n",
    )
    .await;
    assert_eq!(
        tb.count("SELECT count(*) FROM {s}.soft WHERE is_deleted")
            .await,
        1
    );
}

/// Columns of every type the binary format handles, and values at their edges.
const TYPED: &str = "(id int PRIMARY KEY, i2 smallint, i8 bigint, n numeric, n2 numeric(12,2), \
    r real, d double precision, b boolean, day date, ts timestamp, tstz timestamptz, \
    u uuid, bin bytea, j json, jb jsonb, v varchar(20), t text, c3 character(3), bp bpchar, \
    e {s}.mood, tm time, mac macaddr, ip inet, net cidr, tz timetz)";

/// A row of [`TYPED`] with plain values, each column by name.
const PLAIN: &[(&str, &str)] = &[
    ("id", "5"),
    ("i2", "1"),
    ("i8", "1"),
    ("n", "1"),
    ("n2", "1"),
    ("r", "1"),
    ("d", "1"),
    ("b", "1"),
    ("day", "2024-01-01"),
    ("ts", "2024-01-01 00:00:00"),
    ("tstz", "2024-01-01 00:00:00"),
    ("u", "NULL"),
    ("bin", "NULL"),
    ("j", "NULL"),
    ("jb", "NULL"),
    ("v", "x"),
    ("t", "x"),
    ("c3", "x"),
    ("bp", "x"),
    ("e", "ok"),
    ("tm", "00:00:00"),
    ("mac", "08:00:2b:01:02:03"),
    ("ip", "10.0.0.1"),
    ("net", "10.0.0.0/8"),
    ("tz", "00:00:00+00"),
];

/// The plain row with `value` in `column`: the only odd value of its file.
fn odd_in(column: &str, value: &str) -> String {
    assert!(PLAIN.iter().any(|(c, _)| *c == column), "{column}");
    PLAIN
        .iter()
        .map(|&(c, v)| if c == column { value } else { v })
        .collect::<Vec<_>>()
        .join(",")
}

fn typed_rows(odd: Option<&str>) -> String {
    let mut rows = vec![
        "1,-32768,-999999999999999999,-123456789.000123456789,-9999999999.99,1.5e-7,-2.2250738585072014e-308,1,0001-01-01,2000-01-01 00:00:00,1999-12-31 23:59:59.999999,a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11,DEADBEEF,\"{\"\"a\"\": [1, 2.50]}\",\"{\"\"b\"\": 1.50, \"\"a\"\": null}\",\"über, \"\"q\"\"\",\"line\nbreak\ttab\\\\back\",ab, x ,with space,12:34:56.5,08:00:2b:01:02:03,192.168.1.5/24,192.168.0.0/16,12:34:56.5+02".to_owned(),
        "2,32767,999999999999999999,0.0000000000000000000001,0.01,3.4028235e38,1.7976931348623157e308,0,9999-12-31,2024-02-29 12:34:56.5,1970-01-01 00:00:00.000001,00000000-0000-0000-0000-000000000000,0x00,[],[],\"\",\"\",abc   ,\"\",ü,23:59:59.999999,0A:bB:Cc:dd:EE:ff,255.255.255.255,10.0.0.0,23:59:59.999999-15:59".to_owned(),
        "3,0,0,0,0,0,-0,t,2000-02-29,1900-01-01 00:00:00,2038-01-19 03:14:08,A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11,\"\",null,\"\"\"s\"\"\",x,NULL,übe,\"NULL\",sad,24:00:00.000,00:00:00:00:00:00,0.0.0.0/0,0.0.0.0/0,24:00:00+05:30".to_owned(),
        "4,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,\"NULL\",NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL".to_owned(),
    ];
    if let Some(odd) = odd {
        rows.push(odd.to_owned());
    }
    rows.join("\n") + "\n"
}

/// Loads `value` into a `ty` column of an empty table (the direct path) and of a table with a
/// row (the staged path): both must fail alike, with PostgreSQL's `message`.
async fn refused_alike(
    tb: &TestBed,
    ctx: &LoadContext,
    name: &str,
    ty: &str,
    value: &str,
    message: &str,
) {
    let mut errors = Vec::new();
    for (t, rows) in [("a", ""), ("b", "INSERT INTO {s}.{t} (id) VALUES (0);")] {
        let t = format!("{name}_{t}");
        let rows = rows.replace("{t}", &t);
        tb.sql(&format!(
            "CREATE TABLE {{s}}.{t} (id int PRIMARY KEY, c {ty}); {rows}"
        ))
        .await;
        let key = tb.key(&format!("{t}/LOAD00000001.csv"));
        tb.put(&key, format!("1,{value}\n")).await;
        let e = load_file(ctx, &tb.message(&key).await).await.unwrap_err();
        errors.push((e.class(), e.to_string().contains(message)));
    }
    assert_eq!(
        errors,
        vec![("bad_value", true); 2],
        "{ty} {value}: {errors:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_direct_copy_stores_exactly_what_postgresql_text_input_stores() {
    let tb = TestBed::new("direct-binary").await;
    // Odd values that only PostgreSQL should read: each makes the binary attempt step aside,
    // and the file loads direct in text, with the same result as the staged path.
    let mut odds = vec![
        None,
        Some("5,1,1,1,1.005,NaN,1,1,2024-01-01,2024-01-01 00:00:00,2024-01-01 00:00:00,NULL,NULL,NULL,NULL,x,x,x,x,ok,00:00:00,08:00:2b:01:02:03,10.0.0.1,10.0.0.0/8,00:00:00+00"),
        Some("5,+1,1,1e3,1,1,Infinity,TRUE,2024-01-01,2024-01-01T00:00:00,2024-01-01 00:00:00.1234567,{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11},NULL,NULL,NULL,x,x,x,x,ok,00:00:00,08:00:2b:01:02:03,10.0.0.1,10.0.0.0/8,00:00:00+00"),
        Some("5, 1,9223372036854775807,1,1,1,1,yes,20240101,2024-01-01 24:00:00,2024-01-01 00:00:00+02,NULL,NULL,NULL,NULL,x,x,x,x,ok,00:00:00,08:00:2b:01:02:03,10.0.0.1,10.0.0.0/8,00:00:00+00"),
    ];
    // One row per odd time, each the only odd value of its file.
    let times = [
        "23:59:60",
        "12:00",
        "1:02:03",
        "12:00:00.1234567",
        "23:59:59.9999995",
        "allballs",
        "12:00:00 PM",
        "12:00:00+02",
        "T12:00:00",
        "\" 12:00:00\"",
    ];
    // And per odd macaddr: every spelling but `xx:xx:xx:xx:xx:xx` is PostgreSQL's to read.
    let macs = [
        "08-00-2b-01-02-03",
        "08002b:010203",
        "08002b-010203",
        "0800.2b01.0203",
        "0800-2b01-0203",
        "08002b010203",
        "8:0:2b:1:2:3",
    ];
    // And per odd address: IPv4 other than a plain dotted quad and `/n`, IPv6 with a short
    // IPv4 tail (more in `types.rs`).
    let ips = ["010.0.0.1", "10.0.0.1/024", "::ffff:1.2.3"];
    let nets = [
        "10",
        "10.1/16",
        "010.0.0.0/8",
        "10.0.0.0/08",
        "::ffff:1.2.3",
    ];
    // And per odd time with time zone: no offset, zone names, other offset spellings.
    let zoned = [
        "12:00:00",
        "12:00:00+2",
        "12:00:00+0200",
        "12:00:00+02:00:15",
        "12:00:00 +02",
        "12:00:00Z",
        "12:00:00 UTC",
        "23:59:60+00",
        "12:00:00.1234567+02",
        "1:02:03-04",
    ];
    let single: Vec<String> = times
        .iter()
        .map(|t| odd_in("tm", t))
        .chain(macs.iter().map(|m| odd_in("mac", m)))
        .chain(ips.iter().map(|v| odd_in("ip", v)))
        .chain(nets.iter().map(|v| odd_in("net", v)))
        .chain(zoned.iter().map(|v| odd_in("tz", v)))
        .collect();
    odds.extend(single.iter().map(|r| Some(r.as_str())));
    tb.sql("SET TimeZone = 'UTC'").await;
    tb.sql("CREATE TYPE {s}.mood AS ENUM ('sad', 'ok', 'with space', 'ü')")
        .await;
    let ctx = tb.load_context("").await;
    for (n, odd) in odds.iter().enumerate() {
        let (a, b) = (format!("a{n}"), format!("b{n}"));
        tb.sql(&format!("CREATE TABLE {{s}}.{a} {TYPED}; CREATE TABLE {{s}}.{b} {TYPED}; INSERT INTO {{s}}.{b} (id) VALUES (0)"))
            .await;
        let body = typed_rows(*odd);
        let sa = stats(
            tb.put_and_load(&ctx, &tb.key(&format!("{a}/LOAD00000001.csv")), &body)
                .await,
        );
        let sb = stats(
            tb.put_and_load(&ctx, &tb.key(&format!("{b}/LOAD00000001.csv")), &body)
                .await,
        );
        // An odd spelling makes the binary attempt step aside: direct again, in text.
        let way = if odd.is_none() { "binary" } else { "text" };
        assert_eq!((sa.path(), sa.copy_format()), ("direct", way), "{odd:?}");
        assert!(!sb.direct);
        let cols = "id, i2::text, i8::text, n::text, n2::text, r::text, d::text, b::text, \
                    day::text, ts::text, tstz::text, u::text, encode(bin, 'hex'), j::text, \
                    jb::text, v, t, c3, octet_length(c3)::text, bp, e::text, tm::text, \
                    mac::text, ip::text, net::text, tz::text, _sluice_record::text";
        let ra = tb
            .rows(&format!("SELECT {cols} FROM {{s}}.{a} ORDER BY id"))
            .await;
        let rb = tb
            .rows(&format!(
                "SELECT {cols} FROM {{s}}.{b} WHERE id > 0 ORDER BY id"
            ))
            .await;
        assert_eq!(ra.len(), 4 + usize::from(odd.is_some()));
        assert_eq!(ra, rb, "{odd:?}");
    }
    // The binary rows themselves, value by value, for what text comparisons could hide.
    assert_eq!(
        tb.rows("SELECT n::text, n2::text, r::text, d::text, ts::text, encode(bin, 'hex'), jb::text FROM {s}.a0 WHERE id = 1").await,
        vec![vec![
            Some("-123456789.000123456789".to_owned()),
            Some("-9999999999.99".to_owned()),
            Some("1.5e-07".to_owned()),
            Some("-2.2250738585072014e-308".to_owned()),
            Some("2000-01-01 00:00:00".to_owned()),
            Some("deadbeef".to_owned()),
            Some(r#"{"a": null, "b": 1.50}"#.to_owned()),
        ]]
    );
    // time up to the end of the day, in microseconds.
    assert_eq!(
        tb.rows("SELECT tm::text FROM {s}.a0 ORDER BY id").await,
        [
            Some("12:34:56.5"),
            Some("23:59:59.999999"),
            Some("24:00:00"),
            None
        ]
        .map(|t| vec![t.map(str::to_owned)])
    );
    // macaddr's six bytes, whatever the case of its digits.
    assert_eq!(
        tb.rows("SELECT mac::text FROM {s}.a0 ORDER BY id").await,
        [
            Some("08:00:2b:01:02:03"),
            Some("0a:bb:cc:dd:ee:ff"),
            Some("00:00:00:00:00:00"),
            None
        ]
        .map(|t| vec![t.map(str::to_owned)])
    );
    // IPv4 inet and cidr, bits as written (32 when not).
    assert_eq!(
        tb.rows("SELECT ip::text, net::text FROM {s}.a0 WHERE id < 4 ORDER BY id")
            .await,
        [
            ["192.168.1.5/24", "192.168.0.0/16"],
            ["255.255.255.255/32", "10.0.0.0/32"],
            ["0.0.0.0/0", "0.0.0.0/0"],
        ]
        .map(|r| r.map(|v| Some(v.to_owned())).to_vec())
    );
    // timetz keeps the offset as written (PostgreSQL stores it west of UTC).
    assert_eq!(
        tb.rows(
            "SELECT tz::text, extract(timezone FROM tz)::text FROM {s}.a0 WHERE id < 4 ORDER BY id"
        )
        .await,
        [
            ["12:34:56.5+02", "7200"],
            ["23:59:59.999999-15:59", "-57540"],
            ["24:00:00+05:30", "19800"],
        ]
        .map(|r| r.map(|v| Some(v.to_owned())).to_vec())
    );
    // character(n) is padded, and spaces beyond its length are cut, as by text input.
    assert_eq!(
        tb.rows("SELECT c3, bp FROM {s}.a0 WHERE id IN (1, 2) ORDER BY id")
            .await,
        vec![
            vec![Some("ab ".to_owned()), Some(" x ".to_owned())],
            vec![Some("abc".to_owned()), Some("".to_owned())]
        ]
    );
    // Values text input refuses: the same error by either path.
    refused_alike(
        &tb,
        &ctx,
        "ch",
        "character(3)",
        "abcd",
        "value too long for type character(3)",
    )
    .await;
    refused_alike(
        &tb,
        &ctx,
        "en",
        "{s}.mood",
        "angry",
        "invalid input value for enum",
    )
    .await;
    refused_alike(
        &tb,
        &ctx,
        "ma",
        "macaddr",
        "08:00:2b:01:02:0g",
        "invalid input syntax for type macaddr",
    )
    .await;
    refused_alike(
        &tb,
        &ctx,
        "ci",
        "cidr",
        "192.168.1.5/24",
        "invalid cidr value",
    )
    .await;
    refused_alike(
        &tb,
        &ctx,
        "in",
        "inet",
        "10.0.0.256",
        "invalid input syntax for type inet",
    )
    .await;
    refused_alike(
        &tb,
        &ctx,
        "tz",
        "timetz",
        "12:00:00+16",
        "time zone displacement out of range",
    )
    .await;
    // A type the binary format does not handle: the direct path in text format.
    tb.sql("CREATE TABLE {s}.pt (id int PRIMARY KEY, p point)")
        .await;
    let pt = stats(
        tb.put_and_load(
            &ctx,
            &tb.key("pt/LOAD00000001.csv"),
            "1,\"(1,2)\"\n2,NULL\n",
        )
        .await,
    );
    assert!(pt.direct);
    // A value only PostgreSQL reads (a leading `+`): the binary attempt steps aside, and the
    // file goes direct again, in text, rather than staged.
    tb.sql("CREATE TABLE {s}.plus (id int PRIMARY KEY, n int)")
        .await;
    let plus = stats(
        tb.put_and_load(&ctx, &tb.key("plus/LOAD00000001.csv"), "1,5\n2,+7\n")
            .await,
    );
    assert_eq!(
        (plus.path(), plus.copy_format()),
        ("direct", "text"),
        "{plus:?}"
    );
    assert_eq!(
        tb.rows("SELECT id::text, n::text FROM {s}.plus ORDER BY id")
            .await,
        vec![
            vec![Some("1".to_owned()), Some("5".to_owned())],
            vec![Some("2".to_owned()), Some("7".to_owned())]
        ]
    );
    assert_eq!(
        tb.rows("SELECT id::text, p::text FROM {s}.pt ORDER BY id")
            .await,
        vec![
            vec![Some("1".to_owned()), Some("(1,2)".to_owned())],
            vec![Some("2".to_owned()), None]
        ]
    );
}
