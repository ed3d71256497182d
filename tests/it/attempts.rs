//! Attempts are counted with the ledger in view: a file whose data committed is `loaded`, never
//! `dead`, however its attempts were spent; and a long load keeps its manifest item fresh, so
//! the coordinator never re-sends it while a worker is still at work.

use crate::support::*;
use sluice_common::manifest::Status;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

fn rows_csv(from: u64, to: u64) -> String {
    (from..=to)
        .map(|i| format!("{i},\"row {i}\",{}\n", i * 3))
        .collect()
}

/// Runs a worker process that commits its one allowed attempt and dies before the manifest
/// update: the item is left `loading` at the attempt limit, with its data in the ledger.
async fn commit_on_the_last_attempt_and_die(tb: &TestBed, key: &str, etag: &str) {
    let flags = [
        "--visibility-timeout=3",
        "--max-attempts=1",
        "--worker-id=doomed",
    ];
    WorkerProcess::run_to_fault(tb, &flags, "exit-after-commit").await;
    let item = tb.item(key, etag).await;
    assert_eq!((item.status, item.attempts), (Some(Status::Loading), 1));
    assert_eq!(tb.ledger_count(key).await, 1, "committed before dying");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_committed_on_its_last_attempt_is_loaded_not_dead() {
    let tb = TestBed::new("lastattempt").await;
    tb.sql("CREATE TABLE {s}.t (id bigint PRIMARY KEY, v text, n bigint)")
        .await;

    // The message comes back to a worker, whose claim is past the limit: it asks the ledger.
    let key = tb.key("t/LOAD00000001.csv");
    let etag = tb.put(&key, rows_csv(1, 500)).await;
    tb.scan().await;
    commit_on_the_last_attempt_and_die(&tb, &key, &etag).await;
    let run = tb
        .drain(&["--max-attempts=1", "--worker-id=heir", "--exit-when-idle=6"])
        .await;
    assert_eq!((run.dead, run.duplicates), (0, 1), "{run:?}");
    let item = tb.item(&key, &etag).await;
    assert_eq!(item.status, Some(Status::Loaded), "{item:?}");
    assert!(item.error.is_none(), "{item:?}");

    // The coordinator finds the item stuck at the limit: it does not give up on it (it cannot
    // see the ledger), it hands it to a worker, which finds the ledger row.
    let key = tb.key("t/LOAD00000002.csv");
    let etag = tb.put(&key, rows_csv(501, 1000)).await;
    tb.scan().await;
    commit_on_the_last_attempt_and_die(&tb, &key, &etag).await;
    let mut ctx = tb.scan_context(Duration::ZERO);
    ctx.policy.max_attempts = 1;
    let pass = sluice_coordinator::scan::scan(&ctx, false)
        .await
        .expect("scan")
        .0;
    assert_eq!((pass.requeued, pass.dead), (1, 0), "{pass:?}");
    assert_eq!(tb.status(&key, &etag).await, Some(Status::Loading));
    let run = tb
        .drain(&[
            "--max-attempts=1",
            "--worker-id=heir2",
            "--exit-when-idle=6",
        ])
        .await;
    assert_eq!(run.dead, 0, "{run:?}");
    let item = tb.item(&key, &etag).await;
    assert_eq!(item.status, Some(Status::Loaded), "{item:?}");

    assert_eq!(tb.count("SELECT count(*) FROM {s}.t").await, 1000);
    assert_eq!(tb.count("SELECT count(DISTINCT id) FROM {s}.t").await, 1000);
    assert_eq!(tb.queue_depth(&tb.queue_url).await, (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_never_committed_still_dies_at_the_limit() {
    let tb = TestBed::new("stilldead").await;
    tb.sql("CREATE TABLE {s}.t (id bigint PRIMARY KEY, v text, n bigint)")
        .await;
    let key = tb.key("t/LOAD00000001.csv");
    let etag = tb.put(&key, rows_csv(1, 10)).await;
    tb.scan().await;
    // Two claims that never commit (the item is made to look as if they had been spent).
    for _ in 0..2 {
        let claimed = tb
            .manifest
            .transition(
                &key,
                &etag,
                sluice_common::manifest::Transition::Claim,
                Default::default(),
            )
            .await
            .unwrap();
        assert!(matches!(claimed, sluice_common::store::Moved::Applied(_)));
    }
    let run = tb.drain(&["--max-attempts=2", "--exit-when-idle=4"]).await;
    assert_eq!(run.dead, 1, "{run:?}");
    let item = tb.item(&key, &etag).await;
    assert_eq!(item.status, Some(Status::Dead), "{item:?}");
    assert_eq!(
        item.error.map(|e| e.class).as_deref(),
        Some("attempts_exhausted")
    );
    assert_eq!(tb.ledger_count(&key).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_load_is_not_sent_again_while_its_worker_is_at_work() {
    let tb = TestBed::new("longload").await;
    tb.sql("CREATE TABLE {s}.t (id bigint PRIMARY KEY, v text, n bigint)")
        .await;
    let key = tb.key("t/LOAD00000001.csv");
    let etag = tb.put(&key, rows_csv(1, 1000)).await;
    tb.scan().await;

    // Someone holds the table: the load waits, far longer than the coordinator's requeue-after.
    let (holder, conn) = tokio_postgres::connect(&database_url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    holder
        .batch_execute(&format!(
            "BEGIN; LOCK TABLE \"{}\".t IN ACCESS EXCLUSIVE MODE",
            tb.schema
        ))
        .await
        .unwrap();

    let cfg = tb.worker_config(&[
        "--visibility-timeout=3",
        "--exit-when-idle=3",
        "--worker-id=patient",
    ]);
    let worker = tokio::spawn(sluice_worker::run(
        cfg,
        tb.aws.clone(),
        CancellationToken::new(),
    ));
    let started = Instant::now();
    loop {
        let item = tb.item(&key, &etag).await;
        if item.status == Some(Status::Loading) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{item:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Passes that take anything unchanged for 3 s as stuck, over 8 s of waiting.
    let ctx = tb.scan_context(Duration::from_secs(3));
    let watching = Instant::now();
    while watching.elapsed() < Duration::from_secs(8) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let pass = sluice_coordinator::scan::scan(&ctx, false)
            .await
            .expect("scan")
            .0;
        assert_eq!(pass.requeued, 0, "a live load was sent again: {pass:?}");
    }
    let item = tb.item(&key, &etag).await;
    assert_eq!((item.status, item.attempts), (Some(Status::Loading), 1));
    assert!(item.heartbeat_at > item.updated_at, "{item:?}");

    holder.batch_execute("COMMIT").await.unwrap();
    let run = worker.await.unwrap().expect("worker ran");
    assert_eq!((run.loaded, run.duplicates, run.dead), (1, 0, 0), "{run:?}");
    let item = tb.item(&key, &etag).await;
    assert_eq!((item.status, item.attempts), (Some(Status::Loaded), 1));
    assert_eq!(tb.count("SELECT count(*) FROM {s}.t").await, 1000);
    assert_eq!(tb.queue_depth(&tb.queue_url).await, (0, 0));
}
