//! Bad bytes and bad rows: each a distinct, recorded outcome; with `reject_rows` the bad records
//! land in the rejects table with their original bytes and every good record loads, identically
//! whether it went by the fast path or the slow one; hostile keys never reach SQL unquoted;
//! memory stays bounded on a huge record and a gzip bomb.

use crate::support::{database_url, TestBed, WorkerProcess};
use sluice_common::manifest::Status;
use sluice_worker::load::{load_file, LoadOutcome};
use std::io::Write;
use std::time::{Duration, Instant};

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// Writes a rules file for the test and returns the worker flag that uses it.
fn rules_flag(tb: &TestBed, text: &str) -> String {
    let path = std::env::temp_dir().join(format!("{}.toml", tb.name));
    std::fs::write(&path, text).unwrap();
    format!("--config={}", path.display())
}

const TYPED: &str = "CREATE TABLE {s}.typed (id int PRIMARY KEY, amount int NOT NULL, note text, \
                     doc jsonb, day date, small numeric(4,2))";

/// Good records, with what breaks other loaders.
fn good_records(from: i32, to: i32) -> Vec<String> {
    (from..=to)
        .map(|i| {
            format!(
                "{i},{},\"note {i}, with \"\"quotes\"\" and\nnewline\",\"{{\"\"k\"\": {i}}}\",2024-02-{:02},{}.{:02}\n",
                i * 10,
                1 + i % 28,
                i % 100,
                i % 100
            )
        })
        .collect()
}

/// One bad record of every kind a table's types and rules refuse, with its class.
fn bad_records() -> Vec<(&'static [u8], &'static str)> {
    vec![
        (&b"9001,not a number,x,NULL,NULL,NULL\n"[..], "bad_value"),
        (&b"9002,1,x,NULL,2024-02-30,NULL\n"[..], "bad_value"),
        (&b"9003,1,x,NULL,NULL,123.45\n"[..], "bad_value"),
        (&b"9004,1,x,\"{not json\",NULL,NULL\n"[..], "bad_value"),
        (&b"9005,NULL,x,NULL,NULL,NULL\n"[..], "null_not_allowed"),
        (&b"9006,1,too,many,fields,here,really\n"[..], "column_count"),
        (&b"9007,1,nul\x00byte,NULL,NULL,NULL\n"[..], "bad_bytes"),
        (&b"9008,1,caf\xe9 latin1,NULL,NULL,NULL\n"[..], "bad_bytes"),
        (&b"9009,1,\"\xf0\x9f\x98\x80 quoted, \"\"fine\"\" but 99999999999 and more words\",NULL,NULL,NULL\n"[..], "field_too_long"),
        (&b"9010,99999999999,x,NULL,NULL,NULL\r\n"[..], "bad_value"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_rows_keeps_bad_records_byte_exact_and_loads_the_rest() {
    let tb = TestBed::new("rejects").await;
    tb.sql(TYPED).await;
    let config = rules_flag(
        &tb,
        &format!(
            "[tables.\"{}.typed\"]\non_error = \"reject_rows\"\nmax_field_bytes = 40\n",
            tb.schema
        ),
    );
    // 2,500 good records (three slow-path segments) with the bad ones spread among them.
    let good = good_records(1, 2500);
    let bad = bad_records();
    let mut body = Vec::new();
    let mut bad_numbers = Vec::new();
    let mut n = 0;
    for (i, g) in good.iter().enumerate() {
        if i % 250 == 100 && i / 250 < bad.len() {
            body.extend_from_slice(bad[i / 250].0);
            n += 1;
            bad_numbers.push(n);
        }
        body.extend_from_slice(g.as_bytes());
        n += 1;
    }
    let key = tb.key("typed/LOAD00000001.csv");
    let etag = tb.put(&key, body.clone()).await;
    tb.scan().await;
    let run = tb.drain(&[config.as_str()]).await;
    let item = tb.item(&key, &etag).await;
    assert_eq!(run.loaded, 1, "{run:?} {:?}", item.error);

    assert_eq!(item.status, Some(Status::Loaded));
    let rows = item.rows.unwrap();
    assert_eq!(
        (rows.read, rows.merged, rows.rejected),
        (2510, 2500, 10),
        "{rows:?}"
    );
    assert_eq!(tb.count("SELECT count(*) FROM {s}.typed").await, 2500);

    // Each reject: its class, its record number, and its original bytes, exactly.
    let rejects = tb
        .rows(&format!(
            "SELECT record::text, line::text, byte_offset::text, class, coalesce(column_name, ''), reason, encode(raw, 'hex') \
               FROM \"{}\".rejects WHERE key = '{key}' AND etag = '{etag}' ORDER BY rejects.record",
            tb.state_schema
        ))
        .await;
    assert_eq!(
        rejects.len(),
        10,
        "{:?}",
        rejects
            .iter()
            .map(|r| (r[0].clone(), r[3].clone()))
            .collect::<Vec<_>>()
    );
    for (r, ((raw, class), number)) in rejects.iter().zip(bad.iter().zip(&bad_numbers)) {
        let get = |i: usize| r[i].clone().unwrap();
        assert_eq!(get(0), number.to_string(), "{r:?}");
        assert_eq!(get(3), *class, "{r:?}");
        let without_terminator = raw
            .strip_suffix(b"\r\n")
            .or_else(|| raw.strip_suffix(b"\n"))
            .unwrap();
        let hex: String = without_terminator
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(get(6), hex, "raw bytes of record {number}");
        // Byte offsets point at the record in the file.
        let offset: usize = get(2).parse().unwrap();
        assert!(body[offset..].starts_with(without_terminator), "{r:?}");
        // Every good record before it spans two lines.
        let line: usize = get(1).parse().unwrap();
        assert_eq!(
            line,
            2 * (number - 1) - (bad_numbers.iter().filter(|b| *b < number).count()) + 1
        );
        assert!(get(5).contains(&format!("record {number}")), "{r:?}");
    }
    let reasons: Vec<String> = rejects.iter().map(|r| r[5].clone().unwrap()).collect();
    assert!(
        reasons[0].contains("invalid input syntax for type integer"),
        "{reasons:?}"
    );
    assert!(
        reasons[1].contains("date/time field value out of range"),
        "{reasons:?}"
    );
    assert!(reasons[2].contains("numeric field overflow"), "{reasons:?}");
    assert!(
        reasons[3].contains("invalid input syntax for type json"),
        "{reasons:?}"
    );
    assert_eq!(rejects[4][4].as_deref(), Some("amount"));

    // Loading the same file version again (as an operator's reload does) replaces its rejects.
    tb.sql(&format!(
        "DELETE FROM \"{}\".ledger WHERE key = '{key}'",
        tb.state_schema
    ))
    .await;
    let ctx = tb
        .load_context(&format!(
            "[tables.\"{}.typed\"]\non_error = \"reject_rows\"\nmax_field_bytes = 40\n",
            tb.schema
        ))
        .await;
    let again = load_file(&ctx, &tb.message(&key).await).await.unwrap();
    assert!(
        matches!(again, LoadOutcome::Loaded(ref s) if s.rejected == 10),
        "{again:?}"
    );
    assert_eq!(
        tb.count(&format!(
            "SELECT count(*) FROM \"{}\".rejects WHERE key = '{key}'",
            tb.state_schema
        ))
        .await,
        10
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn good_records_load_identically_by_the_fast_and_the_slow_path() {
    let tb = TestBed::new("paths").await;
    for t in ["fast", "fast_rejecting", "slow"] {
        tb.sql(&TYPED.replace("typed", t)).await;
    }
    let rules = format!(
        "[tables.\"{s}.fast_rejecting\"]\non_error = \"reject_rows\"\n[tables.\"{s}.slow\"]\non_error = \"reject_rows\"\n",
        s = tb.schema
    );
    let ctx = tb.load_context(&rules).await;
    let good: String = good_records(1, 2200).concat();
    // The same good records with refused values among them: PostgreSQL refuses them during the
    // COPY, so this file goes by the slow path.
    let mut mixed = String::new();
    for (i, g) in good_records(1, 2200).iter().enumerate() {
        if i % 700 == 3 {
            mixed.push_str(&format!("{},bad int,x,NULL,NULL,NULL\n", 50_000 + i));
        }
        mixed.push_str(g);
    }
    for (table, body) in [("fast", &good), ("fast_rejecting", &good), ("slow", &mixed)] {
        let outcome = tb
            .put_and_load(&ctx, &tb.key(&format!("{table}/LOAD00000001.csv")), body)
            .await;
        let LoadOutcome::Loaded(stats) = outcome else {
            panic!("{table} not loaded");
        };
        let want = if table == "slow" { 4 } else { 0 };
        assert_eq!(stats.rejected, want, "{table}");
    }
    let dump = |t: &str| {
        format!("SELECT id::text, amount::text, note, doc::text, day::text, small::text FROM {{s}}.{t} ORDER BY id")
    };
    let fast = tb.rows(&dump("fast")).await;
    assert_eq!(fast.len(), 2200);
    assert_eq!(tb.rows(&dump("fast_rejecting")).await, fast);
    assert_eq!(tb.rows(&dump("slow")).await, fast);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_rejects_fail_the_file_and_apply_nothing() {
    let tb = TestBed::new("toomany").await;
    tb.sql(TYPED).await;
    tb.sql(&TYPED.replace("typed", "shared")).await;
    let config = rules_flag(
        &tb,
        &format!(
            "[tables.\"{s}.typed\"]\non_error = \"reject_rows\"\nmax_rejects = 1\n\
             [tables.\"{s}.shared\"]\non_error = \"reject_rows\"\nmax_reject_share = 0.25\n",
            s = tb.schema
        ),
    );
    let k1 = tb.key("typed/LOAD00000001.csv");
    let e1 = tb
        .put(
            &k1,
            "1,1,a,NULL,NULL,NULL\n2,x,b,NULL,NULL,NULL\n3,y,c,NULL,NULL,NULL\n",
        )
        .await;
    // 1 of 4 is within a 25% share; 2 of 4 is not.
    let k2 = tb.key("shared/LOAD00000001.csv");
    let e2 = tb
        .put(&k2, "1,1,a,NULL,NULL,NULL\n2,2,b,NULL,NULL,NULL\n3,3,c,NULL,NULL,NULL\n4,x,d,NULL,NULL,NULL\n")
        .await;
    let k3 = tb.key("shared/LOAD00000002.csv");
    let e3 = tb
        .put(&k3, "5,1,a,NULL,NULL,NULL\n6,y,b,NULL,NULL,NULL\n7,3,c,NULL,NULL,NULL\n8,x,d,NULL,NULL,NULL\n")
        .await;
    tb.scan().await;
    tb.drain(&[config.as_str()]).await;

    let item = tb.item(&k1, &e1).await;
    assert_eq!(item.status, Some(Status::Failed));
    let e = item.error.unwrap();
    assert_eq!(e.class, "too_many_rejects");
    assert!(e.permanent);
    assert!(
        e.message.contains("2 of 3 records rejected") && e.message.contains("max_rejects = 1"),
        "{}",
        e.message
    );
    assert_eq!(tb.count("SELECT count(*) FROM {s}.typed").await, 0);
    assert_eq!(
        tb.count(&format!(
            "SELECT count(*) FROM \"{}\".rejects WHERE key = '{k1}'",
            tb.state_schema
        ))
        .await,
        0,
        "a failed file leaves no rejects behind"
    );
    assert_eq!(tb.status(&k2, &e2).await, Some(Status::Loaded));
    let e = tb.item(&k3, &e3).await.error.unwrap();
    assert!(
        e.message.contains("max_reject_share = 0.25"),
        "{}",
        e.message
    );
    assert_eq!(
        tb.rows("SELECT id::text FROM {s}.shared ORDER BY id").await,
        vec![
            vec![Some("1".into())],
            vec![Some("2".into())],
            vec![Some("3".into())]
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn byte_policies_and_source_encodings_repair_and_count() {
    let tb = TestBed::new("bytes").await;
    for t in ["stripped", "replaced", "latin", "cp1252", "strict"] {
        tb.sql(&format!(
            "CREATE TABLE {{s}}.{t} (id int PRIMARY KEY, v text)"
        ))
        .await;
    }
    let config = rules_flag(
        &tb,
        &format!(
            "[tables.\"{s}.stripped\"]\ninvalid_bytes = \"strip\"\n\
             [tables.\"{s}.replaced\"]\ninvalid_bytes = \"replace\"\n\
             [tables.\"{s}.latin\"]\nencoding = \"latin1\"\ninvalid_bytes = \"strip\"\n\
             [tables.\"{s}.cp1252\"]\nencoding = \"windows-1252\"\n",
            s = tb.schema
        ),
    );
    let body = b"1,a\x00b\n2,caf\xe9\n3,\"\x93smart\x94 \xa3\"\n4,plain \xc3\xa9\n".to_vec();
    let mut keys = Vec::new();
    for t in ["stripped", "replaced", "latin", "strict"] {
        let k = tb.key(&format!("{t}/LOAD00000001.csv"));
        let e = tb.put(&k, body.clone()).await;
        keys.push((t, k, e));
    }
    let kc = tb.key("cp1252/LOAD00000001.csv");
    let ec = tb
        .put(&kc, b"1,\x80 \x93smart\x94 caf\xe9\n".to_vec())
        .await;
    tb.scan().await;
    tb.drain(&[config.as_str()]).await;

    let v = |t: &str| format!("SELECT id::text, v FROM {{s}}.{t} ORDER BY id");
    let t = |rows: &[(&str, &str)]| -> Vec<Vec<Option<String>>> {
        rows.iter()
            .map(|(a, b)| vec![Some((*a).to_owned()), Some((*b).to_owned())])
            .collect()
    };
    assert_eq!(
        tb.rows(&v("stripped")).await,
        t(&[("1", "ab"), ("2", "caf"), ("3", "smart "), ("4", "plain é")])
    );
    assert_eq!(
        tb.rows(&v("replaced")).await,
        t(&[
            ("1", "a\u{FFFD}b"),
            ("2", "caf\u{FFFD}"),
            ("3", "\u{FFFD}smart\u{FFFD} \u{FFFD}"),
            ("4", "plain é")
        ])
    );
    // Latin-1 reads every byte as its code point: the UTF-8 "é" of record 4 becomes two.
    assert_eq!(
        tb.rows(&v("latin")).await,
        t(&[
            ("1", "ab"),
            ("2", "café"),
            ("3", "\u{93}smart\u{94} £"),
            ("4", "plain Ã©")
        ])
    );
    assert_eq!(tb.rows(&v("cp1252")).await, t(&[("1", "€ “smart” café")]));
    for (table, key, etag) in &keys[..3] {
        let item = tb.item(key, etag).await;
        assert_eq!(item.status, Some(Status::Loaded), "{table}");
        let want = if *table == "latin" { 4 } else { 3 };
        assert_eq!(
            item.rows.unwrap().repaired,
            want,
            "{table}: every change is counted"
        );
    }
    assert_eq!(tb.item(&kc, &ec).await.rows.unwrap().repaired, 1);
    // The default policy: the file fails at the first bad byte, with the column and an excerpt.
    let (_, key, etag) = &keys[3];
    let e = tb.item(key, etag).await.error.unwrap();
    assert_eq!(e.class, "bad_bytes");
    assert_eq!(
        (e.record, e.line, e.column.as_deref()),
        (Some(1), Some(1), Some("v"))
    );
    assert_eq!(e.value.as_deref(), Some("a\\0b"));
    assert!(e.message.contains("NUL byte at offset 1"), "{}", e.message);
}

/// An S3 endpoint that refuses everything, as S3 does for a role without `s3:GetObject`.
async fn access_denied_endpoint() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16384];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AccessDenied</Code><Message>Access Denied</Message><RequestId>T1</RequestId></Error>";
                let response = format!(
                    "HTTP/1.1 403 Forbidden\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(response.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_kind_of_bad_input_is_a_distinct_recorded_outcome() {
    let tb = TestBed::new("outcomes").await;
    tb.sql("CREATE TABLE {s}.t (id int PRIMARY KEY, v text)")
        .await;
    let config = rules_flag(
        &tb,
        &format!("[tables.\"{}.t\"]\nmax_field_bytes = 10\n", tb.schema),
    );
    let put = |name: &str| tb.key(&format!("t/{name}"));
    let cases: Vec<(String, Vec<u8>, &str)> = vec![
        (
            put("LOAD00000001.csv"),
            b"1,a\n2,b,c\n".to_vec(),
            "column_count",
        ),
        (
            put("LOAD00000002.csv"),
            b"1,a\n2,\"never closed\n".to_vec(),
            "unterminated_quote",
        ),
        (put("LOAD00000003.csv"), b"x,a\n".to_vec(), "bad_value"),
        (
            put("LOAD00000004.csv"),
            b"1,this is far too long\n".to_vec(),
            "field_too_long",
        ),
        (
            put("LOAD00000005.csv"),
            format!("1,{}\n", "r".repeat(5000)).into_bytes(),
            "record_too_long",
        ),
        (
            put("LOAD00000006.csv.gz"),
            b"\x1f\x8b\x08\x00garbage that is not deflate".to_vec(),
            "corrupt_gzip",
        ),
        (
            put("LOAD00000007.csv"),
            b"1,\"a\"b\n".to_vec(),
            "csv_syntax",
        ),
        (put("LOAD00000008.csv"), Vec::new(), "loaded"),
        (put("LOAD00000009.csv.gz"), gzip(b""), "loaded"),
    ];
    let mut etags = Vec::new();
    for (k, body, _) in &cases {
        etags.push(tb.put(k, body.clone()).await);
    }
    // Deleted between listing and loading.
    let gone = put("LOAD0000000A.csv");
    let gone_etag = tb.put(&gone, "1,a\n").await;
    tb.scan().await;
    tb.delete(&gone).await;
    tb.drain(&[config.as_str(), "--max-record-bytes=1024"])
        .await;

    for ((key, _, class), etag) in cases.iter().zip(&etags) {
        let item = tb.item(key, etag).await;
        if *class == "loaded" {
            assert_eq!(item.status, Some(Status::Loaded), "{key}: {item:?}");
            assert_eq!(item.rows.unwrap().read, 0);
            continue;
        }
        assert_eq!(item.status, Some(Status::Failed), "{key}");
        let e = item.error.unwrap();
        assert_eq!(e.class, *class, "{key}: {e:?}");
        assert!(e.permanent, "{key}");
        assert!(e.message.contains(key.as_str()), "{key}: {}", e.message);
    }
    let e = tb.item(&cases[2].0, &etags[2]).await.error.unwrap();
    assert_eq!(
        (e.record, e.column.as_deref(), e.value.as_deref()),
        (Some(1), Some("id"), Some("x")),
        "{e:?}"
    );
    let e = tb.item(&cases[0].0, &etags[0]).await.error.unwrap();
    assert_eq!(
        (e.record, e.line, e.value.as_deref()),
        (Some(2), Some(2), Some("2,b,c")),
        "{e:?}"
    );
    let e = tb.item(&gone, &gone_etag).await.error.unwrap();
    assert_eq!(e.class, "object_missing");
    assert!(
        e.message.contains(&gone) && e.message.contains(&gone_etag),
        "{}",
        e.message
    );
    assert_eq!(tb.count("SELECT count(*) FROM {s}.t").await, 0);
    assert_eq!(
        tb.queue_depth(&tb.queue_url).await,
        (0, 0),
        "no crash loop, nothing left over"
    );

    // Access denied, as S3 answers a role without s3:GetObject on the prefix.
    let key = put("LOAD0000000B.csv");
    tb.put(&key, "1,a\n").await;
    let msg = tb.message(&key).await;
    let mut ctx = tb.load_context("").await;
    ctx.s3 = tb.aws_via(&access_denied_endpoint().await).s3;
    let e = load_file(&ctx, &msg).await.unwrap_err();
    assert_eq!(e.class(), "access_denied", "{e}");
    assert!(!e.is_transient());
    assert!(e.to_string().contains(&key), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_and_foreign_names_are_matched_quoted_or_refused() {
    let tb = TestBed::new("names").await;
    // Tables whose names need quoting exist, and load.
    tb.sql("CREATE TABLE {s}.\"odd \"\"name\"\"; x\" (id int PRIMARY KEY, v text); CREATE TABLE {s}.\"zählung\" (id int PRIMARY KEY, v text)")
        .await;
    let odd = tb.key("odd \"name\"; x/LOAD00000001.csv");
    let eo = tb.put(&odd, "1,quoted\n").await;
    let umlaut = tb.key("zählung/LOAD00000001.csv");
    let eu = tb.put(&umlaut, "1,ü\n").await;
    // Names that match nothing: refused with their name, the SQL never built from them.
    let hostile = [
        "x'; DROP SCHEMA public CASCADE; --",
        "a b",
        "日本語",
        "t\"; SELECT pg_sleep(10); --",
        "ODD \"NAME\"; X",
    ];
    let mut bad = Vec::new();
    for h in hostile {
        let k = tb.key(&format!("{h}/LOAD00000001.csv"));
        bad.push((k.clone(), tb.put(&k, "1,x\n").await));
    }
    tb.scan().await;
    let started = Instant::now();
    tb.drain(&[]).await;
    assert!(started.elapsed() < Duration::from_secs(60));
    assert_eq!(tb.status(&odd, &eo).await, Some(Status::Loaded));
    assert_eq!(tb.status(&umlaut, &eu).await, Some(Status::Loaded));
    assert_eq!(
        tb.rows(
            "SELECT v FROM {s}.\"odd \"\"name\"\"; x\" UNION ALL SELECT v FROM {s}.\"zählung\""
        )
        .await,
        vec![vec![Some("quoted".into())], vec![Some("ü".into())]]
    );
    for (k, e) in &bad {
        let item = tb.item(k, e).await;
        assert_eq!(item.status, Some(Status::Failed), "{k}");
        let err = item.error.unwrap();
        assert_eq!(err.class, "unknown_table", "{k}");
        assert!(err.message.contains(k.as_str()), "{}", err.message);
    }
    assert_eq!(
        tb.count("SELECT count(*) FROM pg_namespace WHERE nspname = 'public'")
            .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_bounded_on_a_huge_record_and_a_gzip_bomb() {
    let tb = TestBed::new("memory").await;
    tb.sql("CREATE TABLE {s}.blob (id int PRIMARY KEY, body text)")
        .await;
    // One 50 MB record, quoted, with the characters that need escaping.
    let mut record = String::with_capacity(50 << 20);
    record.push_str("1,\"");
    while record.len() < 50 << 20 {
        record.push_str("text, \"\"quoted\"\"\nand\ttabs\\ ");
    }
    record.push_str("\"\n");
    let big = tb.key("blob/LOAD00000001.csv");
    let eb = tb.put(&big, record.clone()).await;
    // 1 GiB of zeros in 1 MiB of gzip: one endless record, refused at the record limit.
    let mut bomb = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![b'0'; 1 << 20];
    for _ in 0..1024 {
        bomb.write_all(&zeros).unwrap();
    }
    let bomb_key = tb.key("blob/LOAD00000002.csv.gz");
    let ebomb = tb.put(&bomb_key, bomb.finish().unwrap()).await;
    tb.scan().await;

    let child = WorkerProcess::start(
        &tb,
        &database_url(),
        &["--concurrency=1", "--max-record-bytes=67108864"],
        &[],
    );
    let started = Instant::now();
    let peak = loop {
        let a = tb.status(&big, &eb).await;
        let b = tb.status(&bomb_key, &ebomb).await;
        let done = |s: Option<Status>| matches!(s, Some(Status::Loaded | Status::Failed));
        if done(a) && done(b) {
            break child.peak_rss_mib().expect("worker still running");
        }
        assert!(started.elapsed() < Duration::from_secs(240), "{a:?} {b:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    drop(child);
    assert_eq!(tb.status(&big, &eb).await, Some(Status::Loaded));
    assert_eq!(
        tb.count("SELECT length(body) FROM {s}.blob").await,
        (record.len() - 5 - record.matches("\"\"").count()) as i64
    );
    let e = tb.item(&bomb_key, &ebomb).await.error.unwrap();
    assert_eq!(e.class, "record_too_long", "{e:?}");
    // The record limit is 64 MiB; the reader, the COPY text and one chunk in flight hold a
    // few copies of the largest record at most.
    assert!(peak < 320, "worker peak RSS {peak} MiB");
    println!("worker peak RSS: {peak} MiB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_bounded_on_a_1_gib_file() {
    let tb = TestBed::new("gib").await;
    tb.sql("CREATE TABLE {s}.blob (id int PRIMARY KEY, body text)")
        .await;
    // 1 GiB of CSV as 128 gzip members of the same 8 MiB of records (gzip allows members one
    // after another; DMS's files are read the same way): 10,240 records of 100 KiB.
    let mut chunk = Vec::with_capacity(8 << 20);
    for id in 1..=80 {
        chunk.extend_from_slice(format!("{id},").as_bytes());
        while chunk.len() % (100 << 10) != (100 << 10) - 1 {
            chunk.push(b'a' + (chunk.len() % 26) as u8);
        }
        chunk.push(b'\n');
    }
    assert_eq!(chunk.len(), 80 * (100 << 10));
    let member = gzip(&chunk);
    let body: Vec<u8> = std::iter::repeat_n(&member, 128)
        .flatten()
        .copied()
        .collect();
    let key = tb.key("blob/LOAD00000001.csv.gz");
    let etag = tb.put(&key, body).await;
    tb.scan().await;
    let child = WorkerProcess::start(&tb, &database_url(), &["--concurrency=1"], &[]);
    let started = Instant::now();
    let peak = loop {
        if let Some(Status::Loaded | Status::Failed) = tb.status(&key, &etag).await {
            break child.peak_rss_mib().expect("worker still running");
        }
        assert!(started.elapsed() < Duration::from_secs(600));
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    drop(child);
    let item = tb.item(&key, &etag).await;
    assert_eq!(item.status, Some(Status::Loaded), "{:?}", item.error);
    assert_eq!(item.rows.unwrap().read, 10_240);
    assert_eq!(tb.count("SELECT count(*) FROM {s}.blob").await, 80);
    println!(
        "1 GiB file: worker peak RSS {peak} MiB, {:?}",
        started.elapsed()
    );
    assert!(peak < 128, "worker peak RSS {peak} MiB");
}
