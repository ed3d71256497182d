//! Batches: several CDC files of one table applied in one transaction by the worker's receive
//! loop, with exactly-once per file. The batches' convergence under shuffled and repeated
//! deliveries is in `order.rs` (the same random histories as one by one).

use crate::support::{cdc_name, TestBed, WorkerProcess};
use sluice_common::manifest::Status;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tables_files_apply_in_one_transaction_with_a_ledger_row_each() {
    let tb = TestBed::new("batch").await;
    tb.sql(T).await;
    let files = cdc_files(&tb, 8).await;
    tb.scan().await;
    let run = tb.drain(&["--concurrency=2", "--batch-files=10"]).await;
    assert_eq!(run.loaded, 8, "{run:?}");
    for (key, etag) in &files {
        assert_eq!(tb.status(key, etag).await, Some(Status::Loaded), "{key}");
        assert_eq!(tb.ledger_count(key).await, 1, "{key}");
    }
    // The receive loop gets up to 10 messages at once: the 8 files share one or two
    // transactions (a receive may split them), never one each.
    let txns = transactions(&tb).await;
    assert!(txns <= 2, "{txns} transactions for 8 files");
    assert_eq!(tb.count("SELECT count(*) FROM {s}.t").await, 80);
    // Each file's own counts are on its ledger row: 10 inserts, and from the second file on,
    // 10 updates of rows another file of the batch inserted.
    let counts = tb
        .rows(&format!(
            "SELECT sum(inserted)::text, sum(updated)::text FROM \"{}\".ledger WHERE bucket = '{}'",
            tb.state_schema, tb.bucket
        ))
        .await;
    assert_eq!(counts, vec![vec![Some("80".into()), Some("70".into())]]);
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
async fn a_bad_file_in_a_batch_fails_alone_with_its_own_error() {
    let tb = TestBed::new("batch-bad").await;
    tb.sql(T).await;
    let mut files = cdc_files(&tb, 5).await;
    let bad = tb.key(&format!("t/{}", cdc_name(25)));
    let bad_etag = tb.put(&bad, "I,900,ok,1\nI,901,not a number,zwei\n").await;
    files.push((bad.clone(), bad_etag.clone()));
    tb.scan().await;
    let run = tb
        .drain(&["--concurrency=1", "--batch-files=10", "--max-attempts=1"])
        .await;
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
