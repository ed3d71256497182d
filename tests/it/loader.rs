//! The core loader end to end: full load plus CDC for several tables, byte-exact special
//! characters, duplicates of every kind, changed files.

use crate::support::{cdc_name, TestBed};
use sluice_common::manifest::Status;
use std::io::Write;

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

fn t(rows: &[&[Option<&str>]]) -> Vec<Vec<Option<String>>> {
    rows.iter()
        .map(|r| r.iter().map(|v| v.map(str::to_owned)).collect())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_load_then_cdc_for_several_tables() {
    let tb = TestBed::new("e2e").await;
    tb.sql(
        "CREATE TABLE {s}.customers (id int PRIMARY KEY, name text, balance numeric(10,2), updated_at timestamptz);
         CREATE TABLE {s}.order_lines (order_id bigint, line int, sku text NOT NULL, qty int, PRIMARY KEY (order_id, line));",
    )
    .await;
    let c = |f: &str| tb.key(&format!("customers/{f}"));
    let o = |f: &str| tb.key(&format!("order_lines/{f}"));
    tb.put(&c("LOAD00000001.csv"), "1,Ada,10.50,2024-10-29 11:00:00.000000\n2,Bob,NULL,2024-10-29 11:00:00.000000\n3,Cy,3.00,NULL\n").await;
    // DMS counts full-load files in hexadecimal; gzip on the fly.
    tb.put(
        &c("LOAD0000000A.csv.gz"),
        gzip(b"4,Dee,4.00,2024-10-29 11:00:00.123456\n"),
    )
    .await;
    tb.put(
        &o("LOAD00000001.csv"),
        "100,1,A-1,2\n100,2,B-2,1\n101,1,C-3,5\n",
    )
    .await;

    let first = tb.scan().await;
    assert_eq!(
        (first.listed, first.new, first.sent),
        (3, 3, 3),
        "{first:?}"
    );
    let run = tb.drain(&["--concurrency=2"]).await;
    assert_eq!(run.loaded, 3, "{run:?}");

    // CDC, in DMS date folders, with the Op column; last operation per key wins within a file.
    // Named, as DMS names them, by a time after the full load.
    let cdc = cdc_name(60_000);
    let folder = format!("{}/{}/{}", &cdc[..4], &cdc[4..6], &cdc[6..8]);
    tb.put(
        &c(&format!("{folder}/{cdc}")),
        "I,5,Eve,5.00,2024-10-29 11:34:01.000000\nU,2,Bobby,2.00,2024-10-29 11:34:01.000000\nD,3,NULL,NULL,NULL\nU,5,Eve2,5.50,2024-10-29 11:34:01.000000\n",
    )
    .await;
    tb.put(
        &o(&format!("{}/{cdc}", &cdc[..8])),
        "D,100,2,B-2,1\nU,101,1,C-3,6\nI,102,1,D-4,1\n",
    )
    .await;
    let second = tb.scan().await;
    assert_eq!(
        (second.new, second.unchanged, second.sent),
        (2, 3, 2),
        "{second:?}"
    );
    let run = tb.drain(&[]).await;
    assert_eq!(run.loaded, 2, "{run:?}");

    assert_eq!(
        tb.rows(
            "SELECT id::text, name, balance::text, updated_at::text FROM {s}.customers ORDER BY id"
        )
        .await,
        t(&[
            &[
                Some("1"),
                Some("Ada"),
                Some("10.50"),
                Some("2024-10-29 11:00:00+00")
            ],
            &[
                Some("2"),
                Some("Bobby"),
                Some("2.00"),
                Some("2024-10-29 11:34:01+00")
            ],
            &[
                Some("4"),
                Some("Dee"),
                Some("4.00"),
                Some("2024-10-29 11:00:00.123456+00")
            ],
            &[
                Some("5"),
                Some("Eve2"),
                Some("5.50"),
                Some("2024-10-29 11:34:01+00")
            ],
        ])
    );
    assert_eq!(
        tb.rows(
            "SELECT order_id::text, line::text, sku, qty::text FROM {s}.order_lines ORDER BY 1, 2"
        )
        .await,
        t(&[
            &[Some("100"), Some("1"), Some("A-1"), Some("2")],
            &[Some("101"), Some("1"), Some("C-3"), Some("6")],
            &[Some("102"), Some("1"), Some("D-4"), Some("1")],
        ])
    );
    // Every file loaded, with its row counts; nothing left in the queue.
    let items = tb
        .manifest
        .list_table(&format!("{}.customers", tb.schema), None, None)
        .await
        .unwrap();
    assert_eq!(items.len(), 3);
    for i in &items {
        assert_eq!(i.status, Some(Status::Loaded), "{i:?}");
        assert!(i.rows.unwrap().read > 0);
        assert!(i.timings.is_some(), "phase timings recorded: {i:?}");
        assert!(i.started_at.is_some() && i.finished_at.is_some());
        assert!(
            i.history.iter().any(|h| h.contains("queued")),
            "{:?}",
            i.history
        );
    }
    let cdc = tb
        .item(
            &c(&format!("{folder}/{cdc}")),
            &items.iter().find(|i| i.key.ends_with(&cdc)).unwrap().etag,
        )
        .await;
    assert_eq!(cdc.rows.unwrap().read, 4);
    assert_eq!(cdc.kind, "cdc");
    assert_eq!(tb.queue_depth(&tb.queue_url).await, (0, 0));
    // A third pass finds nothing to do and writes nothing.
    let third = tb.scan().await;
    assert_eq!(
        (third.unchanged, third.sent, third.new, third.changed),
        (5, 0, 0, 0),
        "{third:?}"
    );
}

/// Values that broke the tools Sluice replaces. `None` is SQL NULL.
const SPECIAL: &[Option<&str>] = &[
    Some("plain"),
    Some("comma, inside"),
    Some("say \"hi\""),
    Some("line1\nline2"),
    Some("crlf\r\nnext"),
    Some("back\\slash and \\N and trailing\\"),
    Some("tab\there"),
    Some("emoji 😀🚀 and ZWJ 👩‍💻"),
    Some("中文 日本語 한국어"),
    Some(""),
    Some("NULL"),
    Some("  spaces  "),
    Some("\"\""),
    Some("'single' quotes; DROP TABLE x; --"),
    None,
];

fn special_csv(quote_all: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, v) in SPECIAL.iter().enumerate() {
        out.extend_from_slice(format!("{},", i + 1).as_bytes());
        match v {
            None => out.extend_from_slice(b"NULL"),
            Some(s) => {
                let needs =
                    quote_all || s.is_empty() || *s == "NULL" || s.contains([',', '"', '\n', '\r']);
                if needs {
                    out.push(b'"');
                    out.extend_from_slice(s.replace('"', "\"\"").as_bytes());
                    out.push(b'"');
                } else {
                    out.extend_from_slice(s.as_bytes());
                }
            }
        }
        out.extend_from_slice(if i % 2 == 0 { b"\n" } else { b"\r\n" });
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn special_characters_round_trip_byte_exact() {
    let tb = TestBed::new("special").await;
    tb.sql(
        "CREATE TABLE {s}.notes (id int PRIMARY KEY, note text);
            CREATE TABLE {s}.notes_gz (id int PRIMARY KEY, note text);
            CREATE TABLE {s}.notes_quoted (id int PRIMARY KEY, note text);",
    )
    .await;
    tb.put(&tb.key("notes/LOAD00000001.csv"), special_csv(false))
        .await;
    tb.put(
        &tb.key("notes_gz/LOAD00000001.csv.gz"),
        gzip(&special_csv(false)),
    )
    .await;
    tb.put(&tb.key("notes_quoted/LOAD00000001.csv"), special_csv(true))
        .await;
    tb.scan().await;
    let run = tb.drain(&[]).await;
    assert_eq!(run.loaded, 3, "{run:?}");
    let expected: Vec<Vec<Option<String>>> = SPECIAL
        .iter()
        .enumerate()
        .map(|(i, v)| vec![Some((i + 1).to_string()), v.map(str::to_owned)])
        .collect();
    for table in ["notes", "notes_gz", "notes_quoted"] {
        let got = tb
            .rows(&format!(
                "SELECT id::text AS i, note FROM {{s}}.{table} ORDER BY id"
            ))
            .await;
        assert_eq!(got, expected, "table {table}");
    }
    // Byte-exact, not just equal after decoding: compare the UTF-8 bytes PostgreSQL stored.
    let bytes = tb
        .rows("SELECT encode(convert_to(note, 'UTF8'), 'hex') FROM {s}.notes WHERE id = 8")
        .await;
    assert_eq!(
        bytes[0][0].as_deref(),
        Some(hex("emoji 😀🚀 and ZWJ 👩‍💻").as_str())
    );
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

/// A trigger counts every row the loader applies: a file applied twice would count twice.
async fn counted_table(tb: &TestBed) {
    let schema = format!("\"{}\"", tb.schema);
    tb.sql(&format!(
        "CREATE TABLE {schema}.items (id int PRIMARY KEY, v text);
         CREATE TABLE {schema}.applied (n bigint NOT NULL);
         INSERT INTO {schema}.applied VALUES (0);
         CREATE FUNCTION {schema}.count_applied() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN UPDATE {schema}.applied SET n = n + 1; RETURN NULL; END $$;
         CREATE TRIGGER counted AFTER INSERT OR UPDATE OR DELETE ON {schema}.items
           FOR EACH ROW EXECUTE FUNCTION {schema}.count_applied();"
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_have_no_duplicate_effect() {
    let tb = TestBed::new("dup").await;
    counted_table(&tb).await;
    let key = tb.key("items/20241029-113401000.csv");
    let etag = tb.put(&key, "I,1,a\nI,2,b\nU,1,a2\nI,3,c\n").await;
    let first = tb.scan().await;
    assert_eq!(first.sent, 1);
    // The same file enqueued twice: a second pass that treats it as stuck re-sends it.
    let again = sluice_coordinator::scan::scan(&tb.scan_context(std::time::Duration::ZERO), false)
        .await
        .unwrap()
        .0;
    assert_eq!(again.requeued, 1, "{again:?}");
    // The same message delivered twice more, by hand.
    let item = tb.item(&key, &etag).await;
    let body = sluice_common::message::FileMessage {
        v: 1,
        bucket: tb.bucket.clone(),
        key: key.clone(),
        etag: etag.clone(),
        size: item.size,
        last_modified: item.last_modified.clone(),
        file: sluice_common::mapping::map_key(&tb.prefix, &key).unwrap(),
    }
    .to_body();
    for _ in 0..2 {
        tb.aws
            .sqs
            .send_message()
            .queue_url(&tb.queue_url)
            .message_body(&body)
            .send()
            .await
            .unwrap();
    }
    let run = tb.drain(&["--concurrency=4"]).await;
    assert_eq!(run.loaded, 1, "{run:?}");
    assert_eq!(run.duplicates, 3, "{run:?}");
    // 3 distinct keys after the last-op-wins collapse: 3 row effects, once.
    assert_eq!(tb.count("SELECT n FROM {s}.applied").await, 3);
    assert_eq!(tb.ledger_count(&key).await, 1);
    assert_eq!(tb.status(&key, &etag).await, Some(Status::Loaded));

    // Redelivery long after the load: acknowledged, nothing applied.
    tb.aws
        .sqs
        .send_message()
        .queue_url(&tb.queue_url)
        .message_body(&body)
        .send()
        .await
        .unwrap();
    let run = tb.drain(&[]).await;
    assert_eq!((run.loaded, run.duplicates), (0, 1), "{run:?}");
    assert_eq!(tb.count("SELECT n FROM {s}.applied").await, 3);
    assert_eq!(
        tb.rows("SELECT id::text, v FROM {s}.items ORDER BY id")
            .await,
        t(&[
            &[Some("1"), Some("a2")],
            &[Some("2"), Some("b")],
            &[Some("3"), Some("c")]
        ])
    );
    assert_eq!(tb.queue_depth(&tb.queue_url).await, (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_file_is_loaded_again_unchanged_never_requeued() {
    let tb = TestBed::new("changed").await;
    tb.sql("CREATE TABLE {s}.kv (k text PRIMARY KEY, v text)")
        .await;
    let key = tb.key("kv/LOAD00000001.csv");
    let e1 = tb.put(&key, "a,1\nb,2\n").await;
    tb.scan().await;
    tb.drain(&[]).await;
    let idle = tb.scan().await;
    assert_eq!(
        (idle.unchanged, idle.sent, idle.requeued),
        (1, 0, 0),
        "{idle:?}"
    );

    let e2 = tb.put(&key, "a,10\nc,3\n").await;
    assert_ne!(e1, e2);
    let pass = tb.scan().await;
    assert_eq!((pass.changed, pass.new, pass.sent), (1, 0, 1), "{pass:?}");
    tb.drain(&[]).await;
    assert_eq!(
        tb.rows("SELECT k, v FROM {s}.kv ORDER BY k").await,
        t(&[
            &[Some("a"), Some("10")],
            &[Some("b"), Some("2")],
            &[Some("c"), Some("3")]
        ])
    );
    let story = tb.manifest.history(&key).await.unwrap();
    assert_eq!(story.len(), 2);
    assert!(story.iter().all(|i| i.status == Some(Status::Loaded)));
    let text = sluice_coordinator::ops::report::format_show(&story);
    assert!(text.contains(&e1) && text.contains(&e2), "{text}");
    let idle = tb.scan().await;
    assert_eq!((idle.unchanged, idle.sent), (1, 0), "{idle:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_and_header_only_files_load_zero_rows() {
    let tb = TestBed::new("empty").await;
    tb.sql("CREATE TABLE {s}.e (id int PRIMARY KEY, v text)")
        .await;
    let k1 = tb.key("e/LOAD00000001.csv");
    let e1 = tb.put(&k1, "").await;
    let k2 = tb.key("e/LOAD00000002.csv.gz");
    let e2 = tb.put(&k2, gzip(b"")).await;
    tb.scan().await;
    let run = tb.drain(&[]).await;
    assert_eq!(run.loaded, 2, "{run:?}");
    for (k, e) in [(&k1, &e1), (&k2, &e2)] {
        let item = tb.item(k, e).await;
        assert_eq!(item.status, Some(Status::Loaded));
        assert_eq!(item.rows.unwrap().read, 0);
    }
}
