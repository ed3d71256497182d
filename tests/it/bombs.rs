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

/// Creates `{s}.good`, uploads 2,000 rows for it next to the hostile object (already uploaded
/// at `key`, version `etag`), runs one worker process with `--concurrency=2` and `flags` until
/// both files have an outcome, and checks that the good file loaded and the hostile one failed
/// permanently, naming its key.
async fn beside_a_good_file(tb: &TestBed, key: &str, etag: &str, flags: &[&str]) -> Outcome {
    tb.sql("CREATE TABLE {s}.good (id int PRIMARY KEY, v text)")
        .await;
    let good: String = (1..=2000).map(|i| format!("{i},row {i}\n")).collect();
    let good_key = tb.key("good/LOAD00000001.csv");
    let good_etag = tb.put(&good_key, good).await;
    tb.scan().await;
    let mut args = vec!["--concurrency=2"];
    args.extend_from_slice(flags);
    let child = WorkerProcess::start(tb, &database_url(), &args, &[]);
    let started = Instant::now();
    let peak_mib = loop {
        let hostile = tb.status(key, etag).await;
        let good = tb.status(&good_key, &good_etag).await;
        let done = |s: Option<Status>| matches!(s, Some(Status::Loaded | Status::Failed));
        if done(hostile) && done(good) {
            break child.peak_rss_mib().expect("worker still running");
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "{hostile:?} {good:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    drop(child);
    println!("{key}: worker peak RSS {peak_mib} MiB");
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
