//! The binary direct path for the types DMS sources bring besides the basic ones: `interval`,
//! IPv6 `inet`/`cidr`, `money`, `xml`, domains (nested, over arrays, array elements) and
//! one-dimensional arrays. A full-load file into an empty table must store exactly what the
//! staged path (PostgreSQL's own text input) stores, value by value; a value only PostgreSQL
//! reads makes the binary attempt step aside and the file load direct in text, which proves the
//! direct load was binary (a text-format direct `COPY` reads every value itself and never steps
//! aside for one).

use crate::support::{database_url, TestBed};
use sluice_worker::load::{load_file, LoadContext, LoadOutcome, LoadStats};
use sluice_worker::sql::{BaseType, Element};
use sluice_worker::target::resolve;

fn stats(outcome: LoadOutcome) -> LoadStats {
    match outcome {
        LoadOutcome::Loaded(s) => s,
        other => panic!("not loaded: {other:?}"),
    }
}

const TABLE: &str = "(id int PRIMARY KEY, iv interval, ip inet, net cidr, m money, x xml, \
    dc {s}.code2, ia int[], ta text[], ca character(3)[], ea {s}.mood[], va interval[], \
    na numeric(5,2)[], ba bytea[], dda {s}.code[], di {s}.ints)";

const COLUMNS: &[&str] = &[
    "id", "iv", "ip", "net", "m", "x", "dc", "ia", "ta", "ca", "ea", "va", "na", "ba", "dda", "di",
];

/// Rows of [`TABLE`], values as DMS writes them (before CSV quoting), at their edges.
const ROWS: &[[&str; 16]] = &[
    [
        "1",
        "1 year 2 mons 3 days 04:05:06.789",
        "2001:db8::1/64",
        "2001:db8::/32",
        "$1,234.56",
        "<a b=\"1\">é &amp; ü</a>",
        "ab",
        "{1,-2,NULL,2147483647}",
        r#"{a,"c d","NULL",NULL,"","q\"\\x",é}"#,
        r#"{ab,abc,""}"#,
        r#"{sad,"with space",NULL}"#,
        r#"{"1 day",-00:00:01,"-1 days +02:03:04"}"#,
        "{1.05,-999.99,0}",
        r#"{"\\x0102",NULL}"#,
        "{ab,NULL}",
        "{1,2}",
    ],
    [
        "2",
        "-00:00:01",
        "::ffff:1.2.3.4",
        "::/0",
        "-1234.5",
        "<?xml version=\"1.0\"?><r/>",
        "",
        "{}",
        "{}",
        "{NULL}",
        "{}",
        "{}",
        "{}",
        "{}",
        "{}",
        "{}",
    ],
    [
        "3",
        "00:00:00",
        "::",
        "1:2:3:4:5:6:7::/112",
        "0",
        "text only",
        "xyz",
        "{0}",
        r#"{"{}",","}"#,
        r#"{"a b"}"#,
        "{ü}",
        r#"{"178956970 years 7 mons","-1 years -2 mons +3 days -04:05:06.000001"}"#,
        "{NULL}",
        r#"{"\\x"}"#,
        r#"{""}"#,
        "{-1}",
    ],
    [
        "4",
        "838:59:59.5",
        "FE80::1:2",
        "::ffff:0.0.0.0/96",
        "9999999999999999.99",
        "NULL",
        "NULL",
        "NULL",
        "NULL",
        "NULL",
        "NULL",
        "NULL",
        "NULL",
        "NULL",
        "NULL",
        "NULL",
    ],
];

/// One CSV line: each value quoted (quotes doubled), `NULL` bare (SQL NULL).
fn line(values: &[&str]) -> String {
    let fields: Vec<String> = values
        .iter()
        .map(|v| match *v {
            "NULL" => "NULL".to_owned(),
            v => format!("\"{}\"", v.replace('"', "\"\"")),
        })
        .collect();
    fields.join(",") + "\n"
}

/// The rows, and a fifth with `value` in `column` (the plain values of the first row
/// elsewhere) when there is one.
fn body(odd: Option<(&str, &str)>) -> String {
    let mut out: String = ROWS.iter().map(|r| line(r)).collect();
    if let Some((column, value)) = odd {
        let at = COLUMNS.iter().position(|c| *c == column).expect(column);
        let mut row = ROWS[0];
        row[0] = "5";
        row[at] = value;
        out.push_str(&line(&row));
    }
    out
}

async fn types(tb: &TestBed) {
    tb.sql(
        "CREATE TYPE {s}.mood AS ENUM ('sad', 'ok', 'with space', 'ü'); \
         CREATE DOMAIN {s}.code AS varchar(3) CHECK (VALUE <> 'bad'); \
         CREATE DOMAIN {s}.code2 AS {s}.code; \
         CREATE DOMAIN {s}.ints AS int[] CHECK (cardinality(VALUE) < 3)",
    )
    .await;
}

/// Loads `body` into an empty table (the direct path) and into one with a row (the staged
/// path): the first's path and `COPY` format, and both tables' rows, every value as text.
async fn both_ways(
    tb: &TestBed,
    ctx: &LoadContext,
    name: &str,
    body: &str,
) -> (
    (&'static str, &'static str),
    Vec<Vec<Option<String>>>,
    Vec<Vec<Option<String>>>,
) {
    let (a, b) = (format!("{name}_a"), format!("{name}_b"));
    tb.sql(&format!(
        "CREATE TABLE {{s}}.{a} {TABLE}; CREATE TABLE {{s}}.{b} {TABLE}; \
         INSERT INTO {{s}}.{b} (id) VALUES (0)"
    ))
    .await;
    let sa = stats(
        tb.put_and_load(ctx, &tb.key(&format!("{a}/LOAD00000001.csv")), body)
            .await,
    );
    let sb = stats(
        tb.put_and_load(ctx, &tb.key(&format!("{b}/LOAD00000001.csv")), body)
            .await,
    );
    assert!(!sb.direct);
    let cols: Vec<String> = COLUMNS.iter().map(|c| format!("{c}::text")).collect();
    let select = |t: &str| {
        format!(
            "SELECT {}, _sluice_record::text FROM {{s}}.{t} WHERE id > 0 ORDER BY id",
            cols.join(", ")
        )
    };
    (
        (sa.path(), sa.copy_format()),
        tb.rows(&select(&a)).await,
        tb.rows(&select(&b)).await,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dms_types_load_in_binary_exactly_as_text_input_reads_them() {
    let tb = TestBed::new("types-binary").await;
    types(&tb).await;
    let ctx = tb.load_context("").await;
    let (way, a, b) = both_ways(&tb, &ctx, "plain", &body(None)).await;
    assert_eq!(way, ("direct", "binary"));
    assert_eq!(a.len(), ROWS.len());
    assert_eq!(a, b);
    // Values as PostgreSQL's text input reads them, for the edges.
    let value = |row: usize, column: &str| {
        let at = COLUMNS.iter().position(|c| *c == column).unwrap();
        a[row][at].clone()
    };
    let want = [
        (0, "iv", "1 year 2 mons 3 days 04:05:06.789"),
        (1, "iv", "-00:00:01"),
        (2, "iv", "00:00:00"),
        (3, "iv", "838:59:59.5"),
        (1, "ip", "::ffff:1.2.3.4/128"),
        (3, "ip", "fe80::1:2/128"),
        (2, "net", "1:2:3:4:5:6:7:0/112"),
        (0, "m", "$1,234.56"),
        (1, "m", "-$1,234.50"),
        (3, "m", "$9,999,999,999,999,999.99"),
        (0, "ta", r#"{a,"c d","NULL",NULL,"","q\"\\x",é}"#),
        (0, "ca", r#"{"ab ",abc,"   "}"#),
        (2, "ca", r#"{"a b"}"#),
        (0, "va", r#"{"1 day",-00:00:01,"-1 days +02:03:04"}"#),
        (
            2,
            "va",
            r#"{"178956970 years 7 mons","-1 years -2 mons +3 days -04:05:06.000001"}"#,
        ),
        (0, "na", "{1.05,-999.99,0.00}"),
        (0, "ba", r#"{"\\x0102",NULL}"#),
        (1, "ia", "{}"),
    ];
    for (row, column, text) in want {
        assert_eq!(value(row, column).as_deref(), Some(text), "{row} {column}");
    }
    // The element oids are the catalog's: an array of a domain is of the domain.
    assert_eq!(
        tb.rows(
            "SELECT pg_typeof(dda[1])::text, pg_typeof(ea[1])::text FROM {s}.plain_a WHERE id = 1"
        )
        .await,
        vec![vec![
            Some(format!("{}.code", tb.schema)),
            Some(format!("{}.mood", tb.schema))
        ]]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spellings_only_postgresql_reads_send_the_file_direct_in_text() {
    let tb = TestBed::new("types-odd").await;
    types(&tb).await;
    let ctx = tb.load_context("").await;
    let odd = [
        ("iv", "1 day 02:00"),
        ("iv", "@ 1 day ago"),
        ("iv", "P1Y2M3DT4H5M6S"),
        ("iv", "00:00:00.1234567"),
        ("iv", "1 DAY"),
        ("ip", "::ffff:1.2.3"),
        ("net", "::ffff:1.2.3"),
        ("m", "(1.00)"),
        ("m", "1.005"),
        ("m", "$ 1.00"),
        ("x", "<?xml version=\"1.0\" encoding=\"UTF-8\"?><r/>"),
        ("ia", "{1, 2}"),
        ("ia", "[0:1]={1,2}"),
        ("ia", "{{1,2},{3,4}}"),
        ("ia", "{+1}"),
        ("ta", "{ a }"),
        ("ca", "{ ab}"),
        ("ea", "{ sad}"),
        ("na", "{1.005}"),
        ("ba", r#"{"\\001"}"#),
        ("dda", "{ ab}"),
        ("va", r#"{"1 day 02:00"}"#),
        ("di", "{ 1 }"),
    ];
    for (n, (column, value)) in odd.into_iter().enumerate() {
        let (way, a, b) =
            both_ways(&tb, &ctx, &format!("o{n}"), &body(Some((column, value)))).await;
        assert_eq!(way, ("direct", "text"), "{column} {value}");
        assert_eq!(a.len(), ROWS.len() + 1);
        assert_eq!(a, b, "{column} {value}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn domain_checks_and_element_errors_refuse_binary_and_text_alike() {
    let tb = TestBed::new("types-refused").await;
    types(&tb).await;
    let ctx = tb.load_context("").await;
    let cases = [
        ("dc", "bad", "violates check constraint"),
        ("dda", "{ab,bad}", "violates check constraint"),
        ("di", "{1,2,3}", "violates check constraint"),
        ("ca", "{abcd}", "value too long for type character(3)"),
        ("ea", "{angry}", "invalid input value for enum"),
        ("net", "2001:db8::1/32", "invalid cidr value"),
    ];
    for (n, (column, value, message)) in cases.into_iter().enumerate() {
        let mut errors = Vec::new();
        for (t, rows) in [("a", ""), ("b", "INSERT INTO {s}.{t} (id) VALUES (0);")] {
            let t = format!("r{n}{t}");
            tb.sql(&format!(
                "CREATE TABLE {{s}}.{t} {TABLE}; {}",
                rows.replace("{t}", &t)
            ))
            .await;
            let key = tb.key(&format!("{t}/LOAD00000001.csv"));
            tb.put(&key, body(Some((column, value)))).await;
            let e = load_file(&ctx, &tb.message(&key).await).await.unwrap_err();
            errors.push((e.class(), e.to_string().contains(message)));
        }
        assert_eq!(errors[0], errors[1], "{column} {value}");
        assert!(errors[0].1, "{column} {value}: {errors:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalog_resolves_domains_array_elements_and_session_settings() {
    let tb = TestBed::new("types-catalog").await;
    types(&tb).await;
    tb.sql(&format!("CREATE TABLE {{s}}.t {TABLE}")).await;
    let oids = tb
        .rows("SELECT '{s}.code'::regtype::oid::text, '{s}.mood'::regtype::oid::text")
        .await;
    let oid = |i: usize| oids[0][i].as_deref().unwrap().parse::<u32>().unwrap();
    let (code, mood) = (oid(0), oid(1));
    let pool = sluice_worker::db::pool(&database_url(), 1, "types-test").unwrap();
    let client = pool.get().await.unwrap();
    client
        .batch_execute("SET IntervalStyle = postgres; SET lc_monetary = 'C'")
        .await
        .unwrap();
    let table = resolve(&client, &tb.schema, "t", None, "k").await.unwrap();
    let base = |c: &str| {
        let column = table.columns.iter().find(|x| x.name == c).unwrap();
        column.base.clone()
    };
    let base_type = |t: &str, element: Option<(u32, &str, bool)>, session: Option<&str>| {
        Some(BaseType {
            sql_type: t.to_owned(),
            is_enum: false,
            element: element.map(|(oid, t, is_enum)| Element {
                oid,
                sql_type: t.to_owned(),
                is_enum,
            }),
            session: session.map(str::to_owned),
        })
    };
    assert_eq!(base("id"), None);
    assert_eq!(base("ip"), None);
    // A domain over a domain over varchar(3): the innermost domain's type modifier.
    assert_eq!(base("dc"), base_type("character varying(3)", None, None));
    // An array of a domain: the element oid is the domain's, its type the one under it.
    let dda = base("dda").unwrap();
    assert_eq!(
        dda.element,
        base_type("", Some((code, "character varying(3)", false)), None)
            .unwrap()
            .element
    );
    assert_eq!(
        base("ca").unwrap().element,
        base_type("", Some((1042, "character(3)", false)), None)
            .unwrap()
            .element
    );
    assert_eq!(
        base("ea").unwrap().element.map(|e| (e.oid, e.is_enum)),
        Some((mood, true))
    );
    // A domain over an array.
    assert_eq!(
        base("di"),
        base_type("integer[]", Some((23, "integer", false)), None)
    );
    assert_eq!(
        base("m"),
        base_type(
            "money",
            None,
            Some(sluice_worker::encode::binary::MONEY_DOLLARS)
        )
    );
    assert_eq!(base("iv"), base_type("interval", None, Some("postgres")));
    client
        .batch_execute("SET IntervalStyle = sql_standard")
        .await
        .unwrap();
    let table = resolve(&client, &tb.schema, "t", None, "k").await.unwrap();
    let va = table.columns.iter().find(|x| x.name == "va").unwrap();
    assert_eq!(
        va.base.as_ref().and_then(|b| b.session.as_deref()),
        Some("sql_standard")
    );
}
