//! Hostile files: small objects that would make a worker hold far more memory than their size.
//! Each one fails as bad input naming the file, while the worker (one process, two files at a
//! time) keeps its peak resident memory under 256 MiB and loads a good file beside it.

use crate::support::{database_url, TestBed, WorkerProcess};
use sluice_common::manifest::{FileError, Status};
use std::io::Write;
use std::time::{Duration, Instant};

/// Peak resident memory a worker may reach on any hostile file.
const PEAK_LIMIT_MIB: u64 = 256;

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// What became of a hostile file loaded beside a good one.
struct Outcome {
    peak_mib: u64,
    error: FileError,
}

/// Runs one worker process with `--concurrency=2` and `flags` until every file of `files`
/// (key, etag) is loaded or failed; returns the worker's peak resident memory, in MiB.
async fn peak_until_done(tb: &TestBed, files: &[(&str, &str)], flags: &[&str]) -> u64 {
    tb.scan().await;
    let mut args = vec!["--concurrency=2"];
    args.extend_from_slice(flags);
    let child = WorkerProcess::start(tb, &database_url(), &args, &[]);
    let started = Instant::now();
    loop {
        let mut statuses = Vec::new();
        for (key, etag) in files {
            statuses.push(tb.status(key, etag).await);
        }
        if statuses
            .iter()
            .all(|s| matches!(s, Some(Status::Loaded | Status::Failed)))
        {
            let peak = child.peak_rss_mib().expect("worker still running");
            println!("{files:?}: worker peak RSS {peak} MiB");
            return peak;
        }
        assert!(started.elapsed() < Duration::from_secs(300), "{statuses:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Creates `{s}.good`, uploads 2,000 rows for it next to the hostile object (already uploaded
/// at `key`, version `etag`), runs a worker ([`peak_until_done`]) and checks that the good file
/// loaded and the hostile one failed permanently, naming its key.
async fn beside_a_good_file(tb: &TestBed, key: &str, etag: &str, flags: &[&str]) -> Outcome {
    tb.sql("CREATE TABLE {s}.good (id int PRIMARY KEY, v text)")
        .await;
    let good: String = (1..=2000).map(|i| format!("{i},row {i}\n")).collect();
    let good_key = tb.key("good/LOAD00000001.csv");
    let good_etag = tb.put(&good_key, good).await;
    let peak_mib = peak_until_done(tb, &[(key, etag), (&good_key, &good_etag)], flags).await;
    let item = tb.item(&good_key, &good_etag).await;
    assert_eq!(item.status, Some(Status::Loaded), "{:?}", item.error);
    assert_eq!(tb.count("SELECT count(*) FROM {s}.good").await, 2000);
    let item = tb.item(key, etag).await;
    assert_eq!(item.status, Some(Status::Failed), "{item:?}");
    let error = item.error.expect("the failure is recorded");
    assert!(error.permanent, "{error:?}");
    assert!(error.message.contains(key), "{}", error.message);
    Outcome { peak_mib, error }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_of_64_mib_of_commas_is_a_column_count_error_in_bounded_memory() {
    let tb = TestBed::new("commas").await;
    tb.sql("CREATE TABLE {s}.t (id int PRIMARY KEY, v text)")
        .await;
    // 64 MiB of commas (within the default 64 MiB record limit) in a gzip object of ~65 KB:
    // 64 Mi empty fields in one record.
    let mut record = vec![b','; 64 << 20];
    record.push(b'\n');
    let key = tb.key("t/LOAD00000001.csv.gz");
    let etag = tb.put(&key, gzip(&record)).await;
    drop(record);
    let out = beside_a_good_file(&tb, &key, &etag, &[]).await;
    assert_eq!(out.error.class, "column_count", "{:?}", out.error);
    assert_eq!(
        (out.error.record, out.error.line),
        (Some(1), Some(1)),
        "{:?}",
        out.error
    );
    assert!(
        out.error
            .message
            .contains(&format!("has {} fields", (64 << 20) + 1)),
        "{}",
        out.error.message
    );
    assert!(
        out.peak_mib < PEAK_LIMIT_MIB,
        "worker peak RSS {} MiB",
        out.peak_mib
    );
    assert_eq!(tb.count("SELECT count(*) FROM {s}.t").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gzip_bomb_past_the_decompressed_cap_is_refused_in_bounded_memory() {
    let tb = TestBed::new("gzbomb").await;
    tb.sql("CREATE TABLE {s}.t (id int PRIMARY KEY, v text)")
        .await;
    // 64 MiB of valid short records (no record or field limit stops it) in ~64 KB of gzip,
    // against a cap of 8 MiB.
    let line = b"1,all the same row\n";
    let body: Vec<u8> = line
        .iter()
        .copied()
        .cycle()
        .take(line.len() * ((64 << 20) / line.len()))
        .collect();
    let key = tb.key("t/LOAD00000001.csv.gz");
    let etag = tb.put(&key, gzip(&body)).await;
    drop(body);
    let out = beside_a_good_file(&tb, &key, &etag, &["--max-decompressed-bytes=8388608"]).await;
    assert_eq!(out.error.class, "decompressed_too_large", "{:?}", out.error);
    for part in ["8388608 bytes", "--max-decompressed-bytes"] {
        assert!(out.error.message.contains(part), "{}", out.error.message);
    }
    assert!(
        out.peak_mib < PEAK_LIMIT_MIB,
        "worker peak RSS {} MiB",
        out.peak_mib
    );
    assert_eq!(tb.count("SELECT count(*) FROM {s}.t").await, 0);
}

/// Runs a Python snippet with pyarrow that writes a Parquet file to `sys.argv[1]`, and returns
/// the file's bytes.
fn pyarrow_file(snippet: &str) -> Vec<u8> {
    let out = std::env::temp_dir().join(format!(
        "sluice-it-bombs-{}-{}.parquet",
        std::process::id(),
        rand::random::<u64>()
    ));
    let script =
        format!("import sys\nimport pyarrow as pa\nimport pyarrow.parquet as pq\n{snippet}");
    let run = std::process::Command::new("python3")
        .arg("-c")
        .arg(&script)
        .arg(&out)
        .output()
        .expect("run python3 (infra/local/stack.sh up installs pyarrow)");
    let bytes = std::fs::read(&out);
    let _ = std::fs::remove_file(&out);
    assert!(
        run.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    bytes.expect("the written file")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parquet_page_larger_than_the_record_limit_is_refused_before_it_is_read() {
    let tb = TestBed::new("pqpage").await;
    tb.sql("CREATE TABLE {s}.t (id int PRIMARY KEY, v text)")
        .await;
    // One value of 200 MiB, so one data page that declares 200 MiB, gzip-compressed to a few
    // hundred KB; the record limit is the default 64 MiB.
    let file = pyarrow_file(
        "t = pa.table({'id': pa.array([1], pa.int32()), 'v': pa.array(['x' * (200 << 20)])})\n\
         pq.write_table(t, sys.argv[1], compression='gzip', use_dictionary=False)",
    );
    assert!(file.len() < 2 << 20, "{} bytes", file.len());
    let key = tb.key("t/LOAD00000001.parquet");
    let etag = tb.put(&key, file).await;
    let out = beside_a_good_file(&tb, &key, &etag, &[]).await;
    assert_eq!(out.error.class, "record_too_long", "{:?}", out.error);
    for part in [
        "column \"v\"",
        "a page of 2097",
        "67108864 bytes",
        "--max-record-bytes",
    ] {
        assert!(out.error.message.contains(part), "{}", out.error.message);
    }
    assert!(
        out.peak_mib < PEAK_LIMIT_MIB,
        "worker peak RSS {} MiB",
        out.peak_mib
    );
    assert_eq!(tb.count("SELECT count(*) FROM {s}.t").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parquet_row_rendered_past_the_record_limit_is_refused_with_its_row() {
    let tb = TestBed::new("pqrow").await;
    tb.sql("CREATE TABLE {s}.t (id int PRIMARY KEY, v bytea)")
        .await;
    // A binary value of 3 MiB (a page of 3 MiB) is within a record limit of 4 MiB, and its
    // row, as bytea hex, is not.
    let file = pyarrow_file(
        "t = pa.table({'id': pa.array([1, 2], pa.int32()), \
                       'v': pa.array([b'small', b'\\x01' * (3 << 20)])})\n\
         pq.write_table(t, sys.argv[1], compression='snappy', use_dictionary=False)",
    );
    let key = tb.key("t/LOAD00000001.parquet");
    let etag = tb.put(&key, file).await;
    let out = beside_a_good_file(&tb, &key, &etag, &["--max-record-bytes=4194304"]).await;
    assert_eq!(out.error.class, "record_too_long", "{:?}", out.error);
    assert_eq!(out.error.record, Some(2), "{:?}", out.error);
    for part in ["row 2 is longer", "4194304 bytes"] {
        assert!(out.error.message.contains(part), "{}", out.error.message);
    }
    assert!(
        out.peak_mib < PEAK_LIMIT_MIB,
        "worker peak RSS {} MiB",
        out.peak_mib
    );
    assert_eq!(tb.count("SELECT count(*) FROM {s}.t").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parquet_rows_of_1_mib_load_a_few_pages_at_a_time() {
    let tb = TestBed::new("pqlarge").await;
    tb.sql("CREATE TABLE {s}.t (id int PRIMARY KEY, v text)")
        .await;
    // 400 rows of 1 MiB, one page per value, in a few hundred KB of gzip: decoding 1,024 rows
    // at a time would keep every page of the file (400 MiB).
    let file = pyarrow_file(
        "t = pa.table({'id': pa.array(range(1, 401), pa.int32()), \
                       'v': pa.array([chr(97 + i % 26) * (1 << 20) for i in range(400)])})\n\
         pq.write_table(t, sys.argv[1], compression='gzip', use_dictionary=False, \
                        data_page_size=1 << 20, write_batch_size=1)",
    );
    assert!(file.len() < 4 << 20, "{} bytes", file.len());
    let key = tb.key("t/LOAD00000001.parquet");
    let etag = tb.put(&key, file).await;
    let peak = peak_until_done(&tb, &[(&key, &etag)], &[]).await;
    let item = tb.item(&key, &etag).await;
    assert_eq!(item.status, Some(Status::Loaded), "{:?}", item.error);
    assert_eq!(
        tb.count("SELECT count(*) FROM {s}.t WHERE length(v) = 1048576")
            .await,
        400
    );
    assert!(peak < PEAK_LIMIT_MIB, "worker peak RSS {peak} MiB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_reject_rows_the_64_mib_comma_record_is_set_aside_whole_in_bounded_memory() {
    let tb = TestBed::new("commasrej").await;
    tb.sql("CREATE TABLE {s}.t (id int PRIMARY KEY, v text)")
        .await;
    tb.sql("CREATE TABLE {s}.good (id int PRIMARY KEY, v text)")
        .await;
    let rules = std::env::temp_dir().join(format!("{}.toml", tb.name));
    std::fs::write(
        &rules,
        format!("[tables.\"{}.t\"]\non_error = \"reject_rows\"\n", tb.schema),
    )
    .unwrap();
    let config = format!("--config={}", rules.display());
    let mut body = b"1,a\n".to_vec();
    body.extend(vec![b','; 64 << 20]);
    body.extend(b"\n2,b\n");
    let key = tb.key("t/LOAD00000001.csv.gz");
    let etag = tb.put(&key, gzip(&body)).await;
    drop(body);
    let good: String = (1..=2000).map(|i| format!("{i},row {i}\n")).collect();
    let good_key = tb.key("good/LOAD00000001.csv");
    let good_etag = tb.put(&good_key, good).await;
    let peak = peak_until_done(
        &tb,
        &[(&key, &etag), (&good_key, &good_etag)],
        &[config.as_str()],
    )
    .await;
    let _ = std::fs::remove_file(&rules);
    let item = tb.item(&key, &etag).await;
    assert_eq!(item.status, Some(Status::Loaded), "{:?}", item.error);
    let rows = item.rows.unwrap();
    assert_eq!(
        (rows.read, rows.merged, rows.rejected),
        (3, 2, 1),
        "{rows:?}"
    );
    assert_eq!(
        tb.rows(&format!(
            "SELECT record::text, class, length(raw)::text FROM \"{}\".rejects WHERE key = '{key}'",
            tb.state_schema
        ))
        .await,
        vec![vec![
            Some("2".to_owned()),
            Some("column_count".to_owned()),
            Some((64 << 20).to_string())
        ]]
    );
    assert_eq!(tb.status(&good_key, &good_etag).await, Some(Status::Loaded));
    assert!(peak < PEAK_LIMIT_MIB, "worker peak RSS {peak} MiB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parquet_lists_of_1_mib_values_load_a_few_pages_at_a_time() {
    let tb = TestBed::new("pqlists").await;
    tb.sql("CREATE TABLE {s}.t (id int PRIMARY KEY, tags jsonb)")
        .await;
    // 300 rows whose list holds one value of 1 MiB, one page per value: the nested columns'
    // row iterator buffering 1,024 values per column would keep every page (300 MiB).
    let file = pyarrow_file(
        "t = pa.table({'id': pa.array(range(1, 301), pa.int32()), \
                       'tags': pa.array([[chr(97 + i % 26) * (1 << 20)] for i in range(300)])})\n\
         pq.write_table(t, sys.argv[1], compression='gzip', use_dictionary=False, \
                        data_page_size=1 << 20, write_batch_size=1)",
    );
    assert!(file.len() < 4 << 20, "{} bytes", file.len());
    let key = tb.key("t/LOAD00000001.parquet");
    let etag = tb.put(&key, file).await;
    let peak = peak_until_done(&tb, &[(&key, &etag)], &[]).await;
    let item = tb.item(&key, &etag).await;
    assert_eq!(item.status, Some(Status::Loaded), "{:?}", item.error);
    assert_eq!(
        tb.count("SELECT count(*) FROM {s}.t WHERE length(tags->>0) = 1048576")
            .await,
        300
    );
    assert!(peak < PEAK_LIMIT_MIB, "worker peak RSS {peak} MiB");
}
