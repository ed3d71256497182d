//! Failures are recorded, precise and contained: unknown tables, bad records, bad values, a
//! coordinator that died between the manifest write and the send, a send that failed, a worker
//! killed mid-file.

use crate::support::{database_url, TestBed, WorkerProcess};
use sluice_common::manifest::NewFile;
use sluice_common::manifest::Status;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_table_fails_with_its_name_and_other_files_load() {
    let tb = TestBed::new("unknown").await;
    tb.sql("CREATE TABLE {s}.good (id int PRIMARY KEY, v text)")
        .await;
    let good = tb.key("good/LOAD00000001.csv");
    let eg = tb.put(&good, "1,x\n2,y\n").await;
    let bad = tb.key("no_such_table/LOAD00000001.csv");
    let eb = tb.put(&bad, "1,x\n").await;
    // A hostile folder name: must be refused by the catalog lookup, never reach SQL unquoted.
    let hostile = format!(
        "{}x\"; DROP TABLE {}.good; --/t/LOAD00000001.csv",
        tb.prefix, tb.schema
    );
    let eh = tb.put(&hostile, "1,x\n").await;
    // Objects that are not loadable files are recorded with the reason, never silently skipped.
    let stray = format!("{}notes.txt", tb.prefix);
    let es = tb.put(&stray, "hello").await;
    let pass = tb.scan().await;
    assert_eq!(
        (pass.new, pass.unloadable, pass.sent),
        (3, 1, 3),
        "{pass:?}"
    );
    let s = tb.item(&stray, &es).await;
    assert_eq!(s.status, Some(Status::Dead));
    assert_eq!(s.error.as_ref().unwrap().class, "unloadable_key");
    assert!(s.error.unwrap().message.contains("not <schema>/<table>"));
    let run = tb.drain(&[]).await;
    assert_eq!((run.loaded, run.failed), (1, 2), "{run:?}");

    assert_eq!(tb.count("SELECT count(*) FROM {s}.good").await, 2);
    assert_eq!(tb.status(&good, &eg).await, Some(Status::Loaded));
    let item = tb.item(&bad, &eb).await;
    assert_eq!(item.status, Some(Status::Failed));
    let err = item.error.expect("error recorded");
    assert_eq!(err.class, "unknown_table");
    assert!(err.permanent);
    assert!(
        err.message
            .contains(&format!("{}.no_such_table", tb.schema)),
        "{}",
        err.message
    );
    assert!(err.message.contains(&bad), "{}", err.message);
    let h = tb.item(&hostile, &eh).await;
    assert_eq!(h.error.unwrap().class, "unknown_table");
    // Permanent failures are not retried forever: their messages are gone.
    assert_eq!(tb.queue_depth(&tb.queue_url).await, (0, 0));
    // The operator finds them by status without reading loaded items.
    let (failed, scanned) =
        sluice_coordinator::ops::report::list(&tb.manifest, Some(Status::Failed), None, None)
            .await
            .unwrap();
    assert!(!scanned);
    assert_eq!(failed.len(), 2);
    let (dead, _) =
        sluice_coordinator::ops::report::list(&tb.manifest, Some(Status::Dead), None, None)
            .await
            .unwrap();
    assert_eq!(dead.len(), 1);
    assert!(sluice_coordinator::ops::report::format_list(&failed).contains("unknown_table"));
    // A later pass does not re-enqueue a permanent failure.
    let pass = sluice_coordinator::scan::scan(&tb.scan_context(Duration::ZERO), false)
        .await
        .unwrap()
        .0;
    assert_eq!((pass.requeued, pass.sent), (0, 0), "{pass:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_records_and_values_fail_the_file_with_position() {
    let tb = TestBed::new("badrec").await;
    tb.sql("CREATE TABLE {s}.n (id int PRIMARY KEY, amount int, note text)")
        .await;
    let k_count = tb.key("n/LOAD00000001.csv");
    let e_count = tb.put(&k_count, "1,1,a\n2,2,\"two\nlines\"\n3,3\n").await;
    let k_type = tb.key("n/LOAD00000002.csv");
    let e_type = tb.put(&k_type, "10,1,a\n11,\"x\nx\",b\n12,abc,c\n").await;
    let k_quote = tb.key("n/LOAD00000003.csv");
    let e_quote = tb.put(&k_quote, "20,1,a\n21,2,\"never closed\n").await;
    let k_ok = tb.key("n/LOAD00000004.csv");
    let e_ok = tb.put(&k_ok, "30,3,fine\n").await;
    tb.scan().await;
    tb.drain(&[]).await;

    let e = tb.item(&k_count, &e_count).await.error.unwrap();
    assert_eq!(e.class, "column_count");
    assert_eq!((e.record, e.line), (Some(3), Some(4)), "{e:?}");
    assert!(e.message.contains("has 2 fields"), "{}", e.message);

    let e = tb.item(&k_type, &e_type).await.error.unwrap();
    assert_eq!(e.sqlstate.as_deref(), Some("22P02"), "{e:?}");
    assert_eq!(e.class, "bad_value");
    assert_eq!(e.column.as_deref(), Some("amount"));
    // "x\nx" in record 2 is the first bad value; it spans lines 2-3.
    assert_eq!((e.record, e.line), (Some(2), Some(2)), "{e:?}");

    let e = tb.item(&k_quote, &e_quote).await.error.unwrap();
    assert_eq!(e.class, "unterminated_quote");
    assert_eq!((e.record, e.line), (Some(2), Some(2)), "{e:?}");

    // Nothing of a failed file was applied; the good file loaded.
    assert_eq!(
        tb.rows("SELECT id::text FROM {s}.n ORDER BY id").await,
        vec![vec![Some("30".to_owned())]]
    );
    assert_eq!(tb.status(&k_ok, &e_ok).await, Some(Status::Loaded));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordinator_crash_between_manifest_write_and_send_is_repaired() {
    let tb = TestBed::new("crash").await;
    tb.sql("CREATE TABLE {s}.c (id int PRIMARY KEY)").await;
    let key = tb.key("c/LOAD00000001.csv");
    let etag = tb.put(&key, "1\n2\n").await;
    // What a coordinator that died right after the manifest write leaves behind: the item,
    // `queued` (a pass writes it so before it sends), and no message.
    let listed = sluice_coordinator::scan::list(&tb.scan_context(Duration::ZERO))
        .await
        .unwrap();
    let o = &listed[0];
    assert!(tb
        .manifest
        .record_queued(&NewFile {
            bucket: tb.bucket.clone(),
            key: key.clone(),
            etag: etag.clone(),
            size: o.size,
            last_modified: o.last_modified.clone(),
            table: format!("{}.c", tb.schema),
            kind: "full_load".into(),
        })
        .await
        .unwrap());
    assert_eq!(tb.queue_depth(&tb.queue_url).await, (0, 0));
    // A fresh item is left alone (it may be in flight); a stuck one is re-enqueued.
    let fresh = sluice_coordinator::scan::scan(&tb.scan_context(Duration::from_secs(600)), false)
        .await
        .unwrap()
        .0;
    assert_eq!(
        (fresh.requeued, fresh.unchanged, fresh.sent),
        (0, 1, 0),
        "{fresh:?}"
    );
    let pass = sluice_coordinator::scan::scan(&tb.scan_context(Duration::ZERO), false)
        .await
        .unwrap()
        .0;
    assert_eq!((pass.requeued, pass.sent), (1, 1), "{pass:?}");
    tb.drain(&[]).await;
    assert_eq!(tb.status(&key, &etag).await, Some(Status::Loaded));
    assert_eq!(tb.count("SELECT count(*) FROM {s}.c").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_the_pass_could_not_send_is_noted_and_sent_again() {
    let tb = TestBed::new("unsent").await;
    tb.sql("CREATE TABLE {s}.u (id int PRIMARY KEY)").await;
    let key = tb.key("u/LOAD00000001.csv");
    let etag = tb.put(&key, "1\n2\n3\n").await;
    // The queue is not there: every send fails.
    let mut gone = tb.scan_context(Duration::from_secs(600));
    gone.queue_url = format!("{}-missing", tb.queue_url);
    let (first, _) = sluice_coordinator::scan::scan(&gone, false).await.unwrap();
    assert_eq!(
        (first.new, first.sent, first.send_failed),
        (1, 0, 1),
        "{first:?}"
    );
    let item = tb.item(&key, &etag).await;
    assert_eq!(item.status, Some(Status::Queued));
    let note = item.history.last().unwrap();
    assert!(
        note.contains("message not sent (") && note.contains("--requeue-after"),
        "{:?}",
        item.history
    );
    assert!(item.message_id.is_none());
    assert_eq!(tb.queue_depth(&tb.queue_url).await, (0, 0));
    // Once stale, a pass sends it again and marks it, with the message id; it loads.
    let (again, _) = sluice_coordinator::scan::scan(&tb.scan_context(Duration::ZERO), false)
        .await
        .unwrap();
    assert_eq!((again.requeued, again.sent), (1, 1), "{again:?}");
    assert!(tb.item(&key, &etag).await.message_id.is_some());
    tb.drain(&[]).await;
    assert_eq!(tb.status(&key, &etag).await, Some(Status::Loaded));
    assert_eq!(tb.count("SELECT count(*) FROM {s}.u").await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_killed_mid_file_is_loaded_once_by_another() {
    let tb = TestBed::new("kill").await;
    tb.sql("CREATE TABLE {s}.big (id bigint PRIMARY KEY, a text, b numeric, c timestamptz)")
        .await;
    let rows: u64 = 400_000;
    let mut body = String::with_capacity(rows as usize * 60);
    for i in 1..=rows {
        body.push_str(&format!(
            "{i},\"row {i}, with comma\",{}.{:02},2024-10-29 11:34:01.{:06}\n",
            i * 3,
            i % 100,
            i % 1_000_000
        ));
    }
    let key = tb.key("big/LOAD00000001.csv");
    let etag = tb.put(&key, body).await;
    tb.scan().await;

    let child = WorkerProcess::start(
        &tb,
        &database_url(),
        &["--visibility-timeout=4", "--worker-id=doomed"],
        &[],
    );
    // Wait until it holds the file, then let it get into the COPY before killing it.
    let started = Instant::now();
    loop {
        let item = tb.item(&key, &etag).await;
        if item.status == Some(Status::Loading) && item.worker.as_deref() == Some("doomed") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "worker never claimed the file: {item:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(child); // SIGKILL
    assert_eq!(
        tb.ledger_count(&key).await,
        0,
        "the worker committed before it was killed; the test needs a bigger file to kill it mid-file"
    );
    assert_eq!(
        tb.count("SELECT count(*) FROM {s}.big").await,
        0,
        "a killed load leaves nothing behind"
    );

    // Its message comes back after the visibility timeout and another worker takes over.
    let run = tb
        .drain(&["--worker-id=survivor", "--exit-when-idle=8"])
        .await;
    assert_eq!(run.loaded, 1, "{run:?}");
    let item = tb.item(&key, &etag).await;
    assert_eq!(item.status, Some(Status::Loaded));
    assert_eq!(item.attempts, 2);
    assert_eq!(item.worker.as_deref(), Some("survivor"));
    assert_eq!(tb.ledger_count(&key).await, 1);
    assert_eq!(tb.count("SELECT count(*) FROM {s}.big").await, rows as i64);
    assert_eq!(
        tb.count("SELECT count(DISTINCT id) FROM {s}.big").await,
        rows as i64
    );
}
