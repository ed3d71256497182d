//! Batches: several CDC files of one table applied in one transaction by the worker's receive
//! loop, with exactly-once per file. The batches' convergence under shuffled and repeated
//! deliveries is in `order.rs` (the same random histories as one by one).

use crate::support::{cdc_name, TestBed, WorkerProcess};
use sluice_common::manifest::Status;
use sluice_worker::RunSummary;

const T: &str = "CREATE TABLE {s}.t (id int PRIMARY KEY, v text, n int)";

/// Distinct transactions that wrote the ledger rows of this test's files.
async fn transactions(tb: &TestBed) -> i64 {
    tb.count(&format!(
        "SELECT count(DISTINCT xmin::text) FROM \"{}\".ledger WHERE bucket = '{}'",
        tb.state_schema, tb.bucket
    ))
    .await
}

/// `n` CDC files of table `t`, each inserting 10 rows and updating the previous file's rows;
/// returns (key, etag) of each.
async fn cdc_files(tb: &TestBed, n: usize) -> Vec<(String, String)> {
    let mut files = Vec::new();
    for f in 0..n {
        let mut body = String::new();
        for i in 0..10 {
            let id = f * 10 + i;
            body.push_str(&format!("I,{id},\"v, {id}\",{f}\n"));
            if f > 0 {
                body.push_str(&format!("U,{},\"w \"\"{f}\"\"\",{f}\n", id - 10));
            }
        }
        let key = tb.key(&format!("t/{}", cdc_name(f as i64 * 10)));
        let etag = tb.put(&key, body).await;
        files.push((key, etag));
    }
    files
}

/// Drains with batches of up to 10 files and a long gathering wait (the batch closes as soon
/// as every received message is in it, however slow the shared test services are), and `more`.
async fn drain_batched(tb: &TestBed, more: &[&str]) -> RunSummary {
    let mut args = vec!["--batch-files=10", "--batch-wait-ms=10000"];
    args.extend_from_slice(more);
    tb.drain(&args).await
}

/// Each file `loaded` in the manifest, with one ledger row.
async fn loaded_once<'a>(tb: &TestBed, files: impl IntoIterator<Item = &'a (String, String)>) {
    for (key, etag) in files {
        assert_eq!(tb.status(key, etag).await, Some(Status::Loaded), "{key}");
        assert_eq!(tb.ledger_count(key).await, 1, "{key}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tables_files_apply_in_one_transaction_with_a_ledger_row_each() {
    let tb = TestBed::new("batch").await;
    tb.sql(T).await;
    let files = cdc_files(&tb, 8).await;
    tb.scan().await;
    let run = drain_batched(&tb, &["--concurrency=2"]).await;
    assert_eq!(run.loaded, 8, "{run:?}");
    loaded_once(&tb, &files).await;
    // One receive gets all 8 messages: one transaction, a ledger row per file.
    assert_eq!(transactions(&tb).await, 1);
    assert_eq!(tb.count("SELECT count(*) FROM {s}.t").await, 80);
    // Each file's counts are on its own ledger row. In one stage only the newest operation
    // per key counts: file f's update of file f-1's insert is the row's insert, counted on
    // file f; the insert it replaced is counted nowhere (as two operations on one key within
    // one file are).
    let counts = tb
        .rows(&format!(
            "SELECT rows_read::text, rows_inserted::text, rows_updated::text FROM \"{}\".ledger \
              WHERE bucket = '{}' ORDER BY key",
            tb.state_schema, tb.bucket
        ))
        .await;
    let want = |read: &str, ins: &str| vec![Some(read.into()), Some(ins.into()), Some("0".into())];
    let mut expected = vec![want("10", "0")];
    expected.extend((1..8).map(|_| want("20", "10")));
    expected[7] = want("20", "20");
    assert_eq!(counts, expected);
    // Updates from later files win over the inserts of earlier files in the same stage.
    assert_eq!(
        tb.rows("SELECT v, n::text FROM {s}.t WHERE id = 0").await,
        vec![vec![Some("w \"1\"".into()), Some("1".into())]]
    );
    assert_eq!(
        tb.rows("SELECT v FROM {s}.t WHERE id = 75").await,
        vec![vec![Some("v, 75".into())]]
    );

    // Without batches, the same files take a transaction each.
    let one = TestBed::new("batch-one").await;
    one.sql(T).await;
    cdc_files(&one, 8).await;
    one.scan().await;
    one.drain(&["--concurrency=2", "--batch-files=1"]).await;
    assert_eq!(transactions(&one).await, 8);
    assert_eq!(
        one.rows("SELECT id::text, v, n::text FROM {s}.t ORDER BY id")
            .await,
        tb.rows("SELECT id::text, v, n::text FROM {s}.t ORDER BY id")
            .await,
        "batched and one by one give the same rows"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_only_postgresql_reads_stages_the_batch_in_text_still_one_transaction() {
    let tb = TestBed::new("batch-text").await;
    tb.sql(T).await;
    let mut files = cdc_files(&tb, 4).await;
    // A number with a leading `+`: PostgreSQL's input reads it, the binary encoders refuse it.
    let key = tb.key(&format!("t/{}", cdc_name(40)));
    let etag = tb.put(&key, "I,40,plus,+7\nU,31,\"w, 31\",+8\n").await;
    files.push((key, etag));
    tb.scan().await;
    let run = drain_batched(&tb, &["--concurrency=2"]).await;
    assert_eq!(run.loaded, 5, "{run:?}");
    loaded_once(&tb, &files).await;
    // Not one by one: the five files in one transaction.
    assert_eq!(transactions(&tb).await, 1);
    assert_eq!(
        tb.rows("SELECT id::text, v, n::text FROM {s}.t WHERE id IN (30, 31, 40) ORDER BY id")
            .await,
        vec![
            vec![Some("30".into()), Some("v, 30".into()), Some("3".into())],
            vec![Some("31".into()), Some("w, 31".into()), Some("8".into())],
            vec![Some("40".into()), Some("plus".into()), Some("7".into())],
        ]
    );
    assert_eq!(tb.count("SELECT count(*) FROM {s}.t").await, 41);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_file_in_a_batch_fails_alone_with_its_own_error() {
    let tb = TestBed::new("batch-bad").await;
    tb.sql(T).await;
    let mut files = cdc_files(&tb, 5).await;
    let bad = tb.key(&format!("t/{}", cdc_name(25)));
    let bad_etag = tb.put(&bad, "I,900,ok,1\nI,901,not a number,zwei\n").await;
    files.push((bad.clone(), bad_etag.clone()));
    tb.scan().await;
    let run = drain_batched(&tb, &["--concurrency=1", "--max-attempts=1"]).await;
    assert_eq!(
        (run.loaded, run.loaded + run.failed + run.dead),
        (5, 6),
        "{run:?}"
    );
    let item = tb.item(&bad, &bad_etag).await;
    assert!(
        matches!(item.status, Some(Status::Failed) | Some(Status::Dead)),
        "{item:?}"
    );
    let error = item.error.expect("the bad file's error is recorded");
    assert_eq!(error.record, Some(2), "{error:?}");
    assert!(
        error.message.contains("zwei") && error.message.contains(&bad),
        "the bad file's own error, with its value and key: {error:?}"
    );
    assert_eq!(tb.ledger_count(&bad).await, 0);
    for (key, etag) in &files[..5] {
        assert_eq!(tb.status(key, etag).await, Some(Status::Loaded), "{key}");
    }
    assert_eq!(tb.count("SELECT count(*) FROM {s}.t").await, 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_gone_from_s3_fails_alone_and_the_rest_of_its_batch_loads() {
    let tb = TestBed::new("batch-gone").await;
    tb.sql(T).await;
    let files = cdc_files(&tb, 7).await;
    tb.scan().await;
    // Deleted between listing and loading, in the middle of the batch: its GET, made ahead
    // of its turn while earlier files are copied, fails at its turn.
    let (gone, gone_etag) = files[3].clone();
    tb.delete(&gone).await;
    let run = drain_batched(&tb, &["--concurrency=1", "--max-attempts=1"]).await;
    assert_eq!((run.loaded, run.loaded + run.failed), (6, 7), "{run:?}");
    let item = tb.item(&gone, &gone_etag).await;
    assert_eq!(item.status, Some(Status::Failed), "{item:?}");
    let e = item.error.expect("the missing file's error is recorded");
    assert_eq!(e.class, "object_missing", "{e:?}");
    assert!(e.message.contains(&gone), "{}", e.message);
    assert_eq!(tb.ledger_count(&gone).await, 0);
    loaded_once(&tb, files.iter().filter(|(k, _)| *k != gone)).await;
    // File 3's inserts (ids 30..39) are missing; file 4 inserts 40..49 and updates 30..39,
    // which it therefore inserts, with its own values.
    assert_eq!(tb.count("SELECT count(*) FROM {s}.t").await, 70);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_the_batch_commit_and_the_manifest_leaves_each_file_loaded_once() {
    let tb = TestBed::new("batch-crash").await;
    tb.sql(T).await;
    let files = cdc_files(&tb, 6).await;
    tb.scan().await;
    WorkerProcess::run_to_fault(
        &tb,
        &[
            "--visibility-timeout=3",
            "--concurrency=1",
            "--batch-files=10",
            "--batch-wait-ms=10000",
            "--worker-id=doomed",
        ],
        "exit-after-commit",
    )
    .await;
    // One transaction committed every file; the worker died before the manifest knew.
    for (key, _) in &files {
        assert_eq!(tb.ledger_count(key).await, 1, "{key}: committed");
    }
    assert_eq!(transactions(&tb).await, 1);
    let run = tb
        .drain(&["--worker-id=heir", "--exit-when-idle=6", "--batch-files=10"])
        .await;
    assert_eq!((run.loaded, run.duplicates), (0, 6), "{run:?}");
    for (key, etag) in &files {
        assert_eq!(tb.status(key, etag).await, Some(Status::Loaded), "{key}");
        assert_eq!(tb.ledger_count(key).await, 1, "{key}: once");
    }
    assert_eq!(tb.count("SELECT count(*) FROM {s}.t").await, 60);
    assert_eq!(tb.queue_depth(&tb.queue_url).await, (0, 0));
}
