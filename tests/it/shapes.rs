//! Every common shape of DMS output, configured per table and no user code: MongoDB document
//! mode (extended JSON flattened into columns, a rescue column), text typecasts type by type,
//! and the CSV options DMS exposes. Each test compares the main table value by value.

use crate::support::{cdc_name, TestBed};
use sluice_worker::load::{load_file, LoadOutcome};

type Rows = Vec<Vec<Option<String>>>;

fn row(values: &[Option<&str>]) -> Vec<Option<String>> {
    values.iter().map(|v| v.map(str::to_owned)).collect()
}

/// One CSV field, quoted the way DMS quotes (always, doubling quotes inside).
fn q(v: &str) -> String {
    format!("\"{}\"", v.replace('"', "\"\""))
}

async fn loaded(tb: &TestBed, ctx: &sluice_worker::load::LoadContext, key: &str, body: &str) {
    match tb.put_and_load(ctx, key, body).await {
        LoadOutcome::Loaded(_) => {}
        other => panic!("{key}: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_documents_flatten_nested_paths_every_wrapper_and_a_rescue_column() {
    let tb = TestBed::new("mongo-paths").await;
    tb.sql(
        "CREATE TABLE {s}.customers (_id text PRIMARY KEY, name text, city text, zip text, \
         born timestamptz, visits bigint, balance numeric(40,12), score double precision, \
         tags jsonb, address jsonb, active boolean, avatar bytea, ref uuid, first_tag text, \
         extra jsonb)",
    )
    .await;
    let rules = format!(
        r#"[tables."{s}.customers".document]
paths = {{ name = "name", city = "address.city", zip = "address.zip", born = "born",
          visits = "visits", balance = "balance", score = "score", tags = "tags",
          address = "address", active = "active", avatar = "avatar", ref = "ref",
          first_tag = "tags.0" }}
rescue = "extra"
"#,
        s = tb.schema
    );
    let ctx = tb.load_context(&rules).await;
    let a = r#"{"_id":{"$oid":"64b7f0c2a1b2c3d4e5f60001"},"name":"Zoë \"Z\", Jr.",
        "address":{"city":"Köln","zip":"50667","geo":{"lat":{"$numberDouble":"50.9"}}},
        "born":{"$date":"1990-05-17T08:30:00.250Z"},"visits":{"$numberLong":"9007199254740993"},
        "balance":{"$numberDecimal":"12345678901234567890.123456789012"},
        "score":{"$numberDouble":"-Infinity"},
        "tags":["vip",{"$numberInt":"7"},{"since":{"$date":{"$numberLong":"0"}}}],
        "active":true,"avatar":{"$binary":{"base64":"3q2+7w==","subType":"00"}},
        "ref":{"$binary":{"base64":"ASNFZ4mrze8BI0VniavN7w==","subType":"04"}},
        "nickname":"zz","prefs":{"lang":"de"}}"#;
    // Missing paths are NULL; nothing left for the rescue column: NULL too.
    let b = r#"{"_id":{"$oid":"64b7f0c2a1b2c3d4e5f60002"},"name":"Bo","born":{"$date":0}}"#;
    let body = format!(
        "64b7f0c2a1b2c3d4e5f60001,{}\n64b7f0c2a1b2c3d4e5f60002,{}\n",
        q(a),
        q(b)
    );
    loaded(&tb, &ctx, &tb.key("customers/LOAD00000001.csv"), &body).await;
    tb.sql("SET TimeZone = 'UTC'").await;
    let select = "SELECT _id, name, city, zip, born::text, visits::text, balance::text, \
                  score::text, tags::text, address::text, active::text, encode(avatar, 'hex'), \
                  ref::text, first_tag, extra::text FROM {s}.customers ORDER BY _id";
    assert_eq!(
        tb.rows(select).await,
        vec![
            row(&[
                Some("64b7f0c2a1b2c3d4e5f60001"),
                Some("Zoë \"Z\", Jr."),
                Some("Köln"),
                Some("50667"),
                Some("1990-05-17 08:30:00.25+00"),
                Some("9007199254740993"),
                Some("12345678901234567890.123456789012"),
                Some("-Infinity"),
                Some(r#"["vip", 7, {"since": "1970-01-01T00:00:00.000Z"}]"#),
                Some(r#"{"geo": {"lat": 50.9}, "zip": "50667", "city": "Köln"}"#),
                Some("true"),
                Some("deadbeef"),
                Some("01234567-89ab-cdef-0123-456789abcdef"),
                Some("vip"),
                Some(r#"{"prefs": {"lang": "de"}, "nickname": "zz"}"#),
            ]),
            row(&[
                Some("64b7f0c2a1b2c3d4e5f60002"),
                Some("Bo"),
                None,
                None,
                Some("1970-01-01 00:00:00+00"),
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                None,
            ]),
        ]
    );

    // CDC in document mode: an update carries the whole new document; a delete its key.
    let a2 =
        r#"{"_id":{"$oid":"64b7f0c2a1b2c3d4e5f60001"},"name":"Zoë","visits":{"$numberLong":"1"}}"#;
    let cdc = format!(
        "U,64b7f0c2a1b2c3d4e5f60001,{}\nD,64b7f0c2a1b2c3d4e5f60002,{}\n",
        q(a2),
        q(r#"{"_id":{"$oid":"64b7f0c2a1b2c3d4e5f60002"}}"#)
    );
    loaded(
        &tb,
        &ctx,
        &tb.key(&format!("customers/{}", cdc_name(60_000))),
        &cdc,
    )
    .await;
    assert_eq!(
        tb.rows("SELECT _id, name, visits::text, city, extra::text FROM {s}.customers")
            .await,
        vec![row(&[
            Some("64b7f0c2a1b2c3d4e5f60001"),
            Some("Zoë"),
            Some("1"),
            None,
            None
        ])]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_auto_flatten_maps_top_level_fields_and_bad_documents_follow_the_error_policy() {
    let tb = TestBed::new("mongo-auto").await;
    tb.sql(
        "CREATE TABLE {s}.people (_id text PRIMARY KEY, name text, age int, pets jsonb, \
         rest jsonb)",
    )
    .await;
    let rules = format!(
        "[tables.\"{s}.people\"]\non_error = \"reject_rows\"\n\
         [tables.\"{s}.people\".document]\nflatten = \"auto\"\nrescue = \"rest\"\n",
        s = tb.schema
    );
    let ctx = tb.load_context(&rules).await;
    let docs = [
        (
            "p1",
            r#"{"_id":"p1","name":"Ann","age":{"$numberInt":"41"},"pets":[{"kind":"cat"}],"hobby":"chess"}"#,
        ),
        (
            "p2",
            r#"{"_id":"p2","NAME":"case differs","unknown":{"deep":[1,{"$numberLong":"2"}]}}"#,
        ),
        // A value PostgreSQL cannot cast to int: this record is rejected, the rest load.
        ("p3", r#"{"_id":"p3","name":"Cy","age":"forty"}"#),
        // Not JSON at all: a bad document, rejected with its column named.
        ("p4", r#"{"_id":"p4","name":"#),
        ("p5", r#"{"_id":"p5","age":null}"#),
    ];
    let body: String = docs
        .iter()
        .map(|(id, d)| format!("{id},{}\n", q(d)))
        .collect();
    let key = tb.key("people/LOAD00000001.csv");
    let LoadOutcome::Loaded(stats) = tb.put_and_load(&ctx, &key, &body).await else {
        panic!("not loaded");
    };
    assert_eq!((stats.records, stats.rejected), (5, 2), "{stats:?}");
    assert_eq!(
        tb.rows("SELECT _id, name, age::text, pets::text, rest::text FROM {s}.people ORDER BY _id")
            .await,
        vec![
            row(&[
                Some("p1"),
                Some("Ann"),
                Some("41"),
                Some(r#"[{"kind": "cat"}]"#),
                Some(r#"{"hobby": "chess"}"#)
            ]),
            row(&[
                Some("p2"),
                Some("case differs"),
                None,
                None,
                Some(r#"{"unknown": {"deep": [1, 2]}}"#)
            ]),
            row(&[Some("p5"), None, None, None, None]),
        ]
    );
    let rejects: Rows = tb
        .rows(&format!(
            "SELECT record::text, class, coalesce(column_name, '') FROM \"{}\".rejects \
             WHERE key = '{key}' ORDER BY record",
            tb.state_schema
        ))
        .await;
    assert_eq!(
        rejects,
        vec![
            row(&[Some("3"), Some("bad_value"), Some("age")]),
            row(&[Some("4"), Some("bad_document"), Some("_doc")]),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_is_cast_to_every_common_type_with_dms_formats_and_edge_values() {
    let tb = TestBed::new("typecasts").await;
    tb.sql(
        "CREATE TYPE {s}.mood AS ENUM ('sad', 'ok', 'happy');
         CREATE TABLE {s}.types (id int PRIMARY KEY, i2 smallint, i8 bigint, num numeric, \
         num2 numeric(10,2), r real, d double precision, b boolean, day date, t time, \
         ts timestamp, tstz timestamptz, u uuid, bin bytea, j json, jb jsonb, ia int[], \
         ta text[], m {s}.mood, txt text)",
    )
    .await;
    let ctx = tb.load_context("").await;
    // DMS's text forms; \N-like and quote-heavy text alongside.
    let lines = [
        "1,-32768,-9223372036854775808,0.000000000000000000000000000001,-99999999.99,NaN,-Infinity,1,0001-01-01,00:00:00,2024-02-29 23:59:59.123456,2024-06-01 12:00:00.5,a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11,DEADBEEF,\"{\"\"a\"\":[1,2]}\",\"{\"\"b\"\": null}\",\"{1,2,NULL}\",\"{\"\"a,b\"\",\"\"c\\\"\"d\"\"}\",happy,\"back\\slash\ttab\"",
        "2,32767,9223372036854775807,123456789012345678901234567890.123456789,99999999.99,3.4028235e38,1.7976931348623157e308,0,9999-12-31,23:59:59.999999,1970-01-01 00:00:00,1999-12-31 23:59:59.999999,A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11,0x00ff,[],[],{},{},sad,\"\"",
        "3,0,0,-0.5,0.01,-0,0.1,true,2000-02-29,12:34:56.789,2024-01-01 00:00:00.1234567,2024-01-01T00:00:00,{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11},\"\",\"\"\"text\"\"\",\"[{\"\"x\"\":1.50}]\",\"{-1}\",\"{NULL,\"\"NULL\"\"}\",ok,NULL",
        "4,NULL,NULL,NULL,NULL,NULL,NULL,f,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,\"NULL\"",
    ];
    let body = lines.join("\n") + "\n";
    loaded(&tb, &ctx, &tb.key("types/LOAD00000001.csv"), &body).await;
    tb.sql("SET TimeZone = 'UTC'").await;
    let got = tb
        .rows(
            "SELECT id::text, i2::text, i8::text, num::text, num2::text, r::text, d::text, \
             b::text, day::text, t::text, ts::text, tstz::text, u::text, encode(bin, 'hex'), \
             j::text, jb::text, ia::text, ta::text, m::text, txt FROM {s}.types ORDER BY id",
        )
        .await;
    assert_eq!(
        got,
        vec![
            row(&[
                Some("1"),
                Some("-32768"),
                Some("-9223372036854775808"),
                Some("0.000000000000000000000000000001"),
                Some("-99999999.99"),
                Some("NaN"),
                Some("-Infinity"),
                Some("true"),
                Some("0001-01-01"),
                Some("00:00:00"),
                Some("2024-02-29 23:59:59.123456"),
                Some("2024-06-01 12:00:00.5+00"),
                Some("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
                Some("deadbeef"),
                Some(r#"{"a":[1,2]}"#),
                Some(r#"{"b": null}"#),
                Some("{1,2,NULL}"),
                Some(r#"{"a,b","c\"d"}"#),
                Some("happy"),
                Some("back\\slash\ttab"),
            ]),
            row(&[
                Some("2"),
                Some("32767"),
                Some("9223372036854775807"),
                Some("123456789012345678901234567890.123456789"),
                Some("99999999.99"),
                Some("3.4028235e+38"),
                Some("1.7976931348623157e+308"),
                Some("false"),
                Some("9999-12-31"),
                Some("23:59:59.999999"),
                Some("1970-01-01 00:00:00"),
                Some("1999-12-31 23:59:59.999999+00"),
                Some("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
                Some("00ff"),
                Some("[]"),
                Some("[]"),
                Some("{}"),
                Some("{}"),
                Some("sad"),
                Some(""),
            ]),
            row(&[
                Some("3"),
                Some("0"),
                Some("0"),
                Some("-0.5"),
                Some("0.01"),
                Some("-0"),
                Some("0.1"),
                Some("true"),
                Some("2000-02-29"),
                Some("12:34:56.789"),
                Some("2024-01-01 00:00:00.123457"),
                Some("2024-01-01 00:00:00+00"),
                Some("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
                Some(""),
                Some("\"text\""),
                Some(r#"[{"x": 1.50}]"#),
                Some("{-1}"),
                Some(r#"{NULL,"NULL"}"#),
                Some("ok"),
                None,
            ]),
            row(&[
                Some("4"),
                None,
                None,
                None,
                None,
                None,
                None,
                Some("false"),
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                Some("NULL"),
            ]),
        ]
    );

    // Out of range or malformed, one per type: each fails the file, naming record and column.
    for (i, (bad, column)) in [
        ("5,32768", "i2"),
        ("5,1,9223372036854775808", "i8"),
        ("5,1,1,1,123456789.001", "num2"),
        ("5,1,1,1,1,1,1,maybe", "b"),
        ("5,1,1,1,1,1,1,1,2023-02-29", "day"),
        ("5,1,1,1,1,1,1,1,2023-01-01,00:00,2023-01-01,2023-01-01,not-a-uuid", "u"),
        ("5,1,1,1,1,1,1,1,2023-01-01,00:00,2023-01-01,2023-01-01,NULL,XYZ", "bin"),
        ("5,1,1,1,1,1,1,1,2023-01-01,00:00,2023-01-01,2023-01-01,NULL,NULL,NULL,NULL,NULL,NULL,angry", "m"),
    ]
    .iter()
    .enumerate()
    {
        let fields: Vec<&str> = bad.split(',').collect();
        let mut full: Vec<String> = fields.iter().map(|s| (*s).to_owned()).collect();
        full.resize(20, "NULL".to_owned());
        let key = tb.key(&format!("types/LOAD{:08X}.csv", i + 2));
        tb.put(&key, full.join(",") + "\n").await;
        let msg = tb.message(&key).await;
        let e = load_file(&ctx, &msg).await.expect_err(bad).to_file_error();
        assert_eq!(
            (e.class.as_str(), e.record, e.column.as_deref()),
            ("bad_value", Some(1), Some(*column)),
            "{bad}: {}",
            e.message
        );
    }
    assert_eq!(tb.count("SELECT count(*) FROM {s}.types").await, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_options_dms_exposes_header_delimiters_null_string_op_and_column_list() {
    let tb = TestBed::new("csv-options").await;
    for t in [
        "hdr",
        "semi",
        "tilde",
        "emptynull",
        "opfull",
        "insonly",
        "listed",
        "ts",
    ] {
        tb.sql(&format!(
            "CREATE TABLE {{s}}.{t} (id int PRIMARY KEY, name text, qty int DEFAULT 7)"
        ))
        .await;
    }
    tb.sql("ALTER TABLE {s}.ts ADD COLUMN dms_ts timestamp")
        .await;
    let s = &tb.schema;
    let rules = format!(
        r#"[tables."{s}.hdr"]
header = true
unknown_columns = "ignore"
[tables."{s}.semi"]
delimiter = ";"
[tables."{s}.tilde"]
row_delimiter = "~"
[tables."{s}.emptynull"]
null = ""
[tables."{s}.listed"]
columns = ["name", "id"]
[tables."{s}.ts"]
timestamp_column = "dms_ts"
"#
    );
    let ctx = tb.load_context(&rules).await;
    let select = |t: &str| format!("SELECT id::text, name, qty::text FROM {{s}}.{t} ORDER BY id");
    let want = |rows: &[(&str, Option<&str>, Option<&str>)]| -> Rows {
        rows.iter()
            .map(|(a, b, c)| row(&[Some(a), *b, *c]))
            .collect()
    };

    // AddColumnName=true: matched by name in any order; a column the target lacks is left out
    // (unknown_columns = "ignore"); a column the file lacks takes its default.
    loaded(
        &tb,
        &ctx,
        &tb.key("hdr/LOAD00000001.csv"),
        "Op,legacy,name,id\nI,x,\"a,b\",1\nI,y,NULL,2\n",
    )
    .await;
    assert_eq!(
        tb.rows(&select("hdr")).await,
        want(&[("1", Some("a,b"), Some("7")), ("2", None, Some("7"))])
    );
    // An update that lacks a column leaves it as it is.
    tb.sql("UPDATE {s}.hdr SET qty = 99 WHERE id = 1").await;
    loaded(
        &tb,
        &ctx,
        &tb.key(&format!("hdr/{}", cdc_name(60_000))),
        "Op,name,id\nU,new,1\n",
    )
    .await;
    assert_eq!(
        tb.rows(&select("hdr")).await,
        want(&[("1", Some("new"), Some("99")), ("2", None, Some("7"))])
    );
    // Without "ignore", an unknown header column fails the file and names it.
    let strict = tb
        .load_context(&format!("[tables.\"{s}.hdr\"]\nheader = true\n"))
        .await;
    let key = tb.key("hdr/LOAD00000009.csv");
    tb.put(&key, "id,nope\n1,2\n").await;
    let e = load_file(&strict, &tb.message(&key).await)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("nope"), "{e}");

    loaded(
        &tb,
        &ctx,
        &tb.key("semi/LOAD00000001.csv"),
        "1;\"x;y\";3\n2;NULL;NULL\n",
    )
    .await;
    assert_eq!(
        tb.rows(&select("semi")).await,
        want(&[("1", Some("x;y"), Some("3")), ("2", None, None)])
    );

    // CsvRowDelimiter: records end at '~'; LF inside a field is data.
    loaded(
        &tb,
        &ctx,
        &tb.key("tilde/LOAD00000001.csv"),
        "1,a\nb,1~2,\"c~d\",2~",
    )
    .await;
    assert_eq!(
        tb.rows(&select("tilde")).await,
        want(&[
            ("1", Some("a\nb"), Some("1")),
            ("2", Some("c~d"), Some("2"))
        ])
    );

    // CsvNullValue "": an unquoted empty field is NULL, a quoted one the empty string.
    loaded(
        &tb,
        &ctx,
        &tb.key("emptynull/LOAD00000001.csv"),
        "1,,\n2,\"\",5\n",
    )
    .await;
    assert_eq!(
        tb.rows(&select("emptynull")).await,
        want(&[("1", None, None), ("2", Some(""), Some("5"))])
    );

    // IncludeOpForFullLoad: full-load records start with I.
    loaded(
        &tb,
        &ctx,
        &tb.key("opfull/LOAD00000001.csv"),
        "I,1,a,1\nI,2,b,2\n",
    )
    .await;
    assert_eq!(
        tb.rows(&select("opfull")).await,
        want(&[("1", Some("a"), Some("1")), ("2", Some("b"), Some("2"))])
    );

    // CdcInsertsOnly: CDC files without an Op column, every record an insert; then
    // CdcInsertsAndUpdates: I and U only, no D.
    loaded(
        &tb,
        &ctx,
        &tb.key(&format!("insonly/{}", cdc_name(0))),
        "1,a,1\n2,b,2\n",
    )
    .await;
    loaded(
        &tb,
        &ctx,
        &tb.key(&format!("insonly/{}", cdc_name(1_000))),
        "U,1,a2,10\nI,3,c,3\n",
    )
    .await;
    assert_eq!(
        tb.rows(&select("insonly")).await,
        want(&[
            ("1", Some("a2"), Some("10")),
            ("2", Some("b"), Some("2")),
            ("3", Some("c"), Some("3"))
        ])
    );

    // A column list in sluice.toml instead of the catalog order (qty not in the file).
    loaded(&tb, &ctx, &tb.key("listed/LOAD00000001.csv"), "a,1\nb,2\n").await;
    assert_eq!(
        tb.rows(&select("listed")).await,
        want(&[("1", Some("a"), Some("7")), ("2", Some("b"), Some("7"))])
    );

    // TimestampColumnName: DMS writes it first after Op; it versions the rows, and an older
    // operation arriving later changes nothing.
    let cdc = |t: &str, name: &str, op: &str| format!("{op},{t},1,{name},1\n");
    loaded(
        &tb,
        &ctx,
        &tb.key(&format!("ts/{}", cdc_name(0))),
        &cdc("2024-05-01 10:00:00.000002", "newer", "I"),
    )
    .await;
    loaded(
        &tb,
        &ctx,
        &tb.key(&format!("ts/{}", cdc_name(1_000))),
        &cdc("2024-05-01 10:00:00.000001", "older", "U"),
    )
    .await;
    assert_eq!(
        tb.rows("SELECT id::text, name, dms_ts::text FROM {s}.ts")
            .await,
        vec![row(&[
            Some("1"),
            Some("newer"),
            Some("2024-05-01 10:00:00.000002")
        ])]
    );
}
