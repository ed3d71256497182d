//! DMS Parquet files (`DataFormat=parquet`) end to end: files written by pyarrow
//! (`write_parquet.py`, run by each test into a temporary folder), uploaded to the local S3,
//! loaded through the real coordinator and worker (or `load_file` where the order matters), and
//! the main table compared value by value with what PostgreSQL itself prints.

use crate::support::{cdc_name, TestBed};
use sluice_common::manifest::Status;
use sluice_worker::load::{load_file, LoadOutcome};

/// Runs `write_parquet.py CASE` and returns the file's bytes and its description (row groups,
/// rows, column types).
pub(crate) fn write_parquet(case: &str) -> (Vec<u8>, serde_json::Value) {
    let dir = std::env::temp_dir().join(format!(
        "sluice-it-parquet-{}-{}",
        std::process::id(),
        rand::random::<u64>()
    ));
    std::fs::create_dir_all(&dir).expect("temporary folder");
    let out = dir.join(format!("{case}.parquet"));
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("it/write_parquet.py");
    let run = std::process::Command::new("python3")
        .arg(&script)
        .arg(case)
        .arg(&out)
        .output()
        .expect("run python3 (infra/local/stack.sh up installs pyarrow)");
    let bytes = std::fs::read(&out);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        run.status.success(),
        "write_parquet.py {case}: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let described = serde_json::from_slice(&run.stdout).expect("write_parquet.py prints JSON");
    (bytes.expect("the written file"), described)
}

fn v(s: &str) -> Option<String> {
    Some(s.to_owned())
}

const TRICKY: &str = "He said \"hi\", then\r\nleft, tab\there \\ back ☃ 表 🙂";

/// Columns of the `types` case, each with its PostgreSQL type and the text PostgreSQL prints
/// for rows 1, 2 and 3 (row 3 is NULL everywhere but its key).
fn types_expected() -> Vec<(&'static str, &'static str, [Option<String>; 3])> {
    let n = None;
    vec![
        ("id", "int PRIMARY KEY", [v("1"), v("2"), v("3")]),
        ("i8", "smallint", [v("-8"), v("127"), n.clone()]),
        ("i16", "smallint", [v("-16"), v("-32768"), n.clone()]),
        (
            "i64",
            "bigint",
            [v("-1099511627776"), v("9223372036854775807"), n.clone()],
        ),
        ("u8", "smallint", [v("8"), v("255"), n.clone()]),
        ("u16", "int", [v("16"), v("65535"), n.clone()]),
        ("u32", "bigint", [v("32"), v("4294967295"), n.clone()]),
        (
            "u64",
            "numeric(20,0)",
            [v("64"), v("18446744073709551615"), n.clone()],
        ),
        (
            "dec",
            "numeric(38,10)",
            [
                v("1234567890123456789012345678.9012345678"),
                v("-0.0000000001"),
                n.clone(),
            ],
        ),
        (
            "dec_wide",
            "numeric(50,5)",
            [
                v("-123456789012345678901234567890123456789012345.67891"),
                v("0.00000"),
                n.clone(),
            ],
        ),
        ("f32", "real", [v("0.1"), v("Infinity"), n.clone()]),
        ("f64", "double precision", [v("0.1"), v("NaN"), n.clone()]),
        (
            "f64_more",
            "double precision",
            [v("1e+300"), v("-Infinity"), n.clone()],
        ),
        ("f16", "real", [v("1.5"), v("-65504"), n.clone()]),
        ("flag", "boolean", [v("true"), v("false"), n.clone()]),
        // A string "NULL" stays a string; "" and a lone quote stay what they are.
        ("txt", "text", [v(TRICKY), v("NULL"), n.clone()]),
        ("empty_txt", "text", [v(""), v("\""), n.clone()]),
        ("big_txt", "text", [v(&"x".repeat(3000)), v("ü"), n.clone()]),
        ("bin", "bytea", [v("\\x0001feff"), v("\\x"), n.clone()]),
        (
            "fixed_bin",
            "bytea",
            [v("\\x616263"), v("\\x000000"), n.clone()],
        ),
        ("d", "date", [v("2024-10-29"), v("0001-01-01"), n.clone()]),
        (
            "ts",
            "timestamp",
            [
                v("2024-10-29 11:34:01.123456"),
                v("1969-12-31 23:59:59.999999"),
                n.clone(),
            ],
        ),
        (
            "ts_ms",
            "timestamp",
            [
                v("2024-10-29 11:34:01.123"),
                v("9999-12-31 23:59:59.999"),
                n.clone(),
            ],
        ),
        // Nanoseconds: PostgreSQL keeps microseconds, rounding (.123456789 -> .123457).
        (
            "ts_ns",
            "timestamp",
            [
                v("2024-10-29 11:34:01.123457"),
                v("1970-01-01 00:00:00"),
                n.clone(),
            ],
        ),
        (
            "tstz",
            "timestamptz",
            [
                v("2024-10-29 11:34:01.000005+00"),
                v("2000-02-29 00:00:00+00"),
                n.clone(),
            ],
        ),
        (
            "tm",
            "time",
            [v("11:34:01.123456"), v("23:59:59.999999"), n.clone()],
        ),
        (
            "tm_ms",
            "time",
            [v("00:00:00.001"), v("12:00:00"), n.clone()],
        ),
        (
            "uid",
            "uuid",
            [
                v("123e4567-e89b-12d3-a456-426614174000"),
                v("00000000-0000-0000-0000-000000000000"),
                n.clone(),
            ],
        ),
        (
            "js",
            "jsonb",
            [v(r#"{"a": [1, 2.5, "x"]}"#), v("[]"), n.clone()],
        ),
        (
            "tags",
            "jsonb",
            [v(r#"["a", "b\"q", null]"#), v("[]"), n.clone()],
        ),
        (
            "attrs",
            "jsonb",
            [
                v(r#"{"n": 1, "s": "x,y", "when": "2024-01-02"}"#),
                v(r#"{"n": null, "s": null, "when": null}"#),
                n.clone(),
            ],
        ),
        ("kv", "jsonb", [v(r#"{"k1": 1, "k2": null}"#), v("{}"), n]),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_load_file_of_every_type_loads_value_for_value() {
    let tb = TestBed::new("pq-types").await;
    let expected = types_expected();
    let ddl: Vec<String> = expected
        .iter()
        .map(|(c, t, _)| format!("{c} {t}"))
        .collect();
    tb.sql(&format!("CREATE TABLE {{s}}.types ({})", ddl.join(", ")))
        .await;
    let (file, described) = write_parquet("types");
    assert_eq!(described["row_groups"], 1, "{described}");
    assert_eq!(described["columns"]["dec"][0], "FIXED_LEN_BYTE_ARRAY");
    assert_eq!(described["columns"]["uid"][1], "UUID");
    assert_eq!(described["columns"]["txt"][2], "SNAPPY");
    let key = tb.key("types/LOAD00000001.parquet");
    let etag = tb.put(&key, file).await;

    // The real path: the coordinator lists and enqueues it, a worker loads it.
    let scan = tb.scan().await;
    assert_eq!((scan.new, scan.sent), (1, 1), "{scan:?}");
    let run = tb.drain(&[]).await;
    assert_eq!(run.loaded, 1, "{run:?}");
    let item = tb.item(&key, &etag).await;
    assert_eq!(item.status, Some(Status::Loaded), "{item:?}");
    assert_eq!(item.rows.unwrap().read, 3);

    let columns: Vec<String> = expected
        .iter()
        .map(|(c, _, _)| format!("{c}::text"))
        .collect();
    let got = tb
        .rows(&format!(
            "SELECT {} FROM {{s}}.types ORDER BY types.id",
            columns.join(", ")
        ))
        .await;
    assert_eq!(got.len(), 3);
    let mut wrong = Vec::new();
    for (row, got_row) in got.iter().enumerate() {
        for (col, (name, _, want)) in expected.iter().enumerate() {
            if got_row[col] != want[row] {
                wrong.push(format!(
                    "row {} column {name}: got {:?}, want {:?}",
                    row + 1,
                    got_row[col],
                    want[row]
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cdc_files_with_op_and_timestamp_columns_merge_by_version() {
    let tb = TestBed::new("pq-cdc").await;
    tb.sql(
        "CREATE TABLE {s}.cdc (id bigint PRIMARY KEY, name text, amount numeric(9,2), big_amount numeric(18,3))",
    )
    .await;
    // The header-like rules of a CSV table do not apply to Parquet: the file names its columns.
    let rules = format!(
        "[tables.\"{}.cdc\"]\ntimestamp_column = \"dms_ts\"\nheader = false\nnull = \"\"\ncolumns = [\"wrong\"]\ndelimiter = \"|\"\n",
        tb.schema
    );
    let ctx = tb.load_context(&rules).await;

    let (full, described) = write_parquet("cdc_full");
    assert_eq!(described["columns"]["amount"][0], "INT32");
    assert_eq!(described["columns"]["big_amount"][0], "INT64");
    let full_key = tb.key("cdc/LOAD00000001.parquet");
    tb.put(&full_key, full).await;
    let outcome = load_file(&ctx, &tb.message(&full_key).await)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let LoadOutcome::Loaded(stats) = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!((stats.records, stats.inserted), (3, 3), "{stats:?}");

    let (changes, described) = write_parquet("cdc_changes");
    assert_eq!(described["columns"]["Op"][2], "GZIP", "{described}");
    let name = cdc_name(60_000).replace(".csv", ".parquet");
    let cdc_key = tb.key(&format!("cdc/{}/{name}", &name[..8]));
    tb.put(&cdc_key, changes).await;
    let outcome = load_file(&ctx, &tb.message(&cdc_key).await)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let LoadOutcome::Loaded(stats) = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!((stats.records, stats.deleted), (5, 1), "{stats:?}");

    assert_eq!(
        tb.rows(
            "SELECT id::text, name, amount::text, big_amount::text FROM {s}.cdc ORDER BY cdc.id"
        )
        .await,
        vec![
            vec![v("1"), v("one"), v("1.10"), v("10.001")],
            // The update stamped 11:00:02 wins over the one stamped 11:00:01 after it in the file.
            vec![v("2"), v("two v2"), v("-2.25"), v("-20.500")],
            vec![v("4"), v("four v2"), v("4.41"), v("40.005")],
        ]
    );
}

/// PostgreSQL's text of a `timestamp`: fractional seconds without trailing zeros.
fn pg_timestamp(t: time::PrimitiveDateTime) -> String {
    let mut s = format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    if t.microsecond() != 0 {
        let frac = format!(".{:06}", t.microsecond());
        s.push_str(frac.trim_end_matches('0'));
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_of_many_row_groups_is_read_group_by_group() {
    let tb = TestBed::new("pq-groups").await;
    tb.sql("CREATE TABLE {s}.many (id bigint PRIMARY KEY, label text, at timestamp)")
        .await;
    let (file, described) = write_parquet("row_groups");
    assert_eq!(described["row_groups"], 10, "{described}");
    assert_eq!(described["rows"], 10_000);
    // Deprecated INT96 timestamps, gzip pages of 4 KiB.
    assert_eq!(described["columns"]["at"][0], "INT96");
    let key = tb.key("many/LOAD00000001.parquet");
    tb.put(&key, file.clone()).await;
    let ctx = tb.load_context("").await;
    let outcome = load_file(&ctx, &tb.message(&key).await)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let LoadOutcome::Loaded(stats) = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!((stats.records, stats.inserted), (10_000, 10_000));
    // The bytes read from S3: the file, not the CSV it became.
    assert_eq!(stats.bytes, file.len() as u64);

    let start = time::macros::datetime!(2024-01-01 00:00:00);
    let expected: Vec<Vec<Option<String>>> = (1..=10_000i64)
        .map(|i| {
            let at = start + time::Duration::seconds(i) + time::Duration::microseconds(i);
            vec![
                v(&i.to_string()),
                (i % 7 != 0).then(|| format!("row {i}, \"q\"")),
                v(&pg_timestamp(at)),
            ]
        })
        .collect();
    let got = tb
        .rows("SELECT id::text, label, at::text FROM {s}.many ORDER BY many.id")
        .await;
    assert_eq!(got.len(), expected.len());
    for (g, e) in got.iter().zip(&expected) {
        assert_eq!(g, e);
    }

    // The adaptor itself: every row group in turn, the text produced in bounded pieces.
    let path = std::env::temp_dir().join(format!("{}.parquet", tb.name));
    std::fs::write(&path, &file).unwrap();
    let f = std::fs::File::open(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    let mut csv = sluice_worker::read::parquet::ParquetCsv::open(f, "NULL").expect("open");
    let mut text = Vec::new();
    let mut buf = vec![0u8; 1 << 22];
    loop {
        use std::io::Read;
        let n = csv.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        assert!(
            n <= sluice_worker::read::parquet::TEXT_TARGET + 4096,
            "one read hands out at most about TEXT_TARGET bytes, got {n}"
        );
        text.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8(text).unwrap();
    let mut lines = text.split("\r\n");
    assert_eq!(lines.next(), Some(r#""id","label","at""#));
    assert_eq!(
        lines.next(),
        Some(r#""1","row 1, ""q""","2024-01-01 00:00:01.000001""#)
    );
    assert_eq!(
        lines.clone().nth(5),
        Some(r#""7",NULL,"2024-01-01 00:00:07.000007""#)
    );
    assert_eq!(text.matches("\r\n").count(), 10_001);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_parquet_files_fail_clearly_and_apply_nothing() {
    let tb = TestBed::new("pq-corrupt").await;
    tb.sql("CREATE TABLE {s}.many (id bigint PRIMARY KEY, label text, at timestamp)")
        .await;
    let (good, _) = write_parquet("row_groups");
    let (empty, described) = write_parquet("empty");
    assert_eq!(described["rows"], 0);
    // A good footer over a damaged row group: the first row groups are read before the damage
    // is found (a gzip page whose checksum fails).
    let mut damaged = good.clone();
    let at = damaged.len() * 3 / 5;
    damaged[at..at + 200].fill(0xab);
    let put = |name: &str| tb.key(&format!("many/{name}"));
    let cases: Vec<(String, Vec<u8>, &str)> = vec![
        (
            put("LOAD00000001.parquet"),
            b"PAR1 this is not a parquet file at all".to_vec(),
            "corrupt_parquet",
        ),
        (
            put("LOAD00000002.parquet"),
            good[..good.len() / 2].to_vec(),
            "corrupt_parquet",
        ),
        (put("LOAD00000003.parquet"), damaged, "corrupt_parquet"),
        // No rows, and no bytes at all: both load nothing, as an empty CSV file does.
        (put("LOAD00000004.parquet"), empty, "loaded"),
        (put("LOAD00000005.parquet"), Vec::new(), "loaded"),
    ];
    let mut etags = Vec::new();
    for (k, body, _) in &cases {
        etags.push(tb.put(k, body.clone()).await);
    }
    let scan = tb.scan().await;
    assert_eq!(scan.sent, cases.len(), "{scan:?}");
    tb.drain(&[]).await;

    for ((key, _, class), etag) in cases.iter().zip(&etags) {
        let item = tb.item(key, etag).await;
        if *class == "loaded" {
            assert_eq!(item.status, Some(Status::Loaded), "{key}: {item:?}");
            assert_eq!(item.rows.unwrap().read, 0);
            continue;
        }
        assert_eq!(item.status, Some(Status::Failed), "{key}: {item:?}");
        let e = item.error.unwrap();
        assert_eq!(e.class, *class, "{key}: {e:?}");
        assert!(e.permanent, "{key}");
        assert!(
            e.message.contains(&format!(
                "s3://{}/{key} is not a valid Parquet file",
                tb.bucket
            )),
            "{key}: {}",
            e.message
        );
        assert_eq!(tb.ledger_count(key).await, 0, "{key}: nothing committed");
    }
    assert_eq!(tb.count("SELECT count(*) FROM {s}.many").await, 0);
    assert_eq!(tb.queue_depth(&tb.queue_url).await, (0, 0));

    // The same error, directly: permanent, naming the object.
    let ctx = tb.load_context("").await;
    let e = load_file(&ctx, &tb.message(&cases[2].0).await)
        .await
        .unwrap_err();
    assert_eq!(e.class(), "corrupt_parquet", "{e}");
    assert!(!e.is_transient());
    assert!(
        e.to_string().contains("row group"),
        "where the damage is: {e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_rows_sets_aside_the_row_postgresql_refuses() {
    let tb = TestBed::new("pq-rejects").await;
    // Every label fits but the last one's, "row 10000, \"q\"" (14 characters).
    tb.sql("CREATE TABLE {s}.many (id bigint PRIMARY KEY, label varchar(13), at timestamp)")
        .await;
    let rules = format!(
        "[tables.\"{}.many\"]\non_error = \"reject_rows\"\nmax_rejects = 1\n",
        tb.schema
    );
    let ctx = tb.load_context(&rules).await;
    let (file, _) = write_parquet("row_groups");
    let key = tb.key("many/LOAD00000001.parquet");
    let etag = tb.put(&key, file).await;
    // PostgreSQL refuses the value during COPY: the slow path reads (and spools) the object
    // again and sets aside exactly that row.
    let outcome = load_file(&ctx, &tb.message(&key).await)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let LoadOutcome::Loaded(stats) = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(
        (stats.records, stats.inserted, stats.rejected),
        (10_000, 9_999, 1),
        "{stats:?}"
    );
    let rejects = tb
        .rows(&format!(
            "SELECT record::text, class, column_name, convert_from(raw, 'UTF8') FROM \"{}\".rejects \
               WHERE key = '{key}' AND etag = '{etag}'",
            tb.state_schema
        ))
        .await;
    assert_eq!(
        rejects,
        vec![vec![
            v("10000"),
            v("bad_value"),
            v("label"),
            // The row as the CSV it became: the record the encoder read.
            v("\"10000\",\"row 10000, \"\"q\"\"\",\"2024-01-01 02:46:40.010000\""),
        ]]
    );
    assert_eq!(tb.count("SELECT count(*) FROM {s}.many").await, 9_999);
}
