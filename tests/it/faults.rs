//! Faults that must be survived. Each test ends with the same checks: every row exactly as the
//! source says (nothing lost, nothing doubled), every file in a visible manifest state, and a
//! clear error wherever something failed.
//!
//! Tests that stop or restart PostgreSQL use the stack's second cluster (`faults`), one at a
//! time, so the tests running beside them on the main cluster never notice. Timeouts here are
//! limits, not expectations.

use crate::netfault::{Mode, Proxy};
use crate::support::{database_url, TestBed, WorkerProcess};
use sluice_common::manifest::Status;
use std::process::Command;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// One test at a time on the `faults` cluster (`outage.rs` takes it too).
pub(crate) static FAULTS_CLUSTER: Mutex<()> = Mutex::const_new(());

pub(crate) fn faults_url() -> String {
    std::env::var("SLUICE_TEST_FAULTS_URL")
        .expect("SLUICE_TEST_FAULTS_URL is not set: run the tests through .ci/run")
}

/// Runs `pg_ctlcluster <faults cluster> <action>`. A loaded machine can make one attempt fail
/// (a wait that runs out): the cluster's state decides whether it was done, then up to three
/// attempts, and the tool's own words in the failure.
fn pg_ctl(action: &[&str]) {
    let cluster = std::env::var("SLUICE_TEST_FAULTS_CLUSTER").expect("SLUICE_TEST_FAULTS_CLUSTER");
    let mut args: Vec<&str> = cluster.split_whitespace().collect();
    args.extend_from_slice(action);
    let mut said = String::new();
    for attempt in 1..=3 {
        let out = Command::new("pg_ctlcluster")
            .args(&args)
            .output()
            .expect("pg_ctlcluster");
        if out.status.success() {
            return;
        }
        // A failed answer after the deed was done (a wait that ran out) counts as done.
        let mut status: Vec<&str> = cluster.split_whitespace().collect();
        status.push("status");
        let running = Command::new("pg_ctlcluster")
            .args(&status)
            .output()
            .is_ok_and(|o| o.status.success());
        match action[0] {
            "start" if running => return,
            "stop" if !running => return,
            _ => {}
        }
        said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!(
            "pg_ctlcluster {args:?}, attempt {attempt}: {}: {said}",
            out.status
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    panic!("pg_ctlcluster {args:?} failed three times: {said}");
}

/// Starts the `faults` cluster if an earlier test left it down, and waits until it answers.
async fn faults_up() {
    let cluster = std::env::var("SLUICE_TEST_FAULTS_CLUSTER").expect("SLUICE_TEST_FAULTS_CLUSTER");
    let mut args: Vec<&str> = cluster.split_whitespace().collect();
    args.push("status");
    let running = Command::new("pg_ctlcluster")
        .args(&args)
        .stdout(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !running {
        pg_ctl(&["start"]);
    }
    let started = Instant::now();
    while tokio_postgres::connect(&faults_url(), tokio_postgres::NoTls)
        .await
        .is_err()
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "faults cluster did not come up"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A client of the `faults` cluster with the test's own schemas.
pub(crate) async fn faults_db(tb: &TestBed) -> tokio_postgres::Client {
    faults_up().await;
    let (db, conn) = tokio_postgres::connect(&faults_url(), tokio_postgres::NoTls)
        .await
        .expect("connect to the faults cluster");
    tokio::spawn(conn);
    db.batch_execute(&format!(
        "DROP SCHEMA IF EXISTS \"{s}\" CASCADE; CREATE SCHEMA \"{s}\"",
        s = tb.schema
    ))
    .await
    .unwrap();
    db
}

async fn count(db: &tokio_postgres::Client, sql: &str) -> i64 {
    db.query_one(sql, &[]).await.unwrap().get(0)
}

fn rows_csv(from: u64, to: u64) -> String {
    (from..=to)
        .map(|i| format!("{i},\"row {i}, with comma\",{}\n", i * 3))
        .collect()
}

/// Waits until `key`'s manifest item is `loading`, held by `worker`.
async fn wait_loading(tb: &TestBed, key: &str, etag: &str, worker: &str) {
    let started = Instant::now();
    loop {
        let item = tb.item(key, etag).await;
        if item.status == Some(Status::Loading) && item.worker.as_deref() == Some(worker) {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(90), "{item:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_mid_load_is_survived_in_place() {
    let _one = FAULTS_CLUSTER.lock().await;
    let tb = TestBed::new("pgrestart").await;
    let db = faults_db(&tb).await;
    db.batch_execute(&format!(
        "CREATE TABLE \"{}\".t (id bigint PRIMARY KEY, v text, n bigint)",
        tb.schema
    ))
    .await
    .unwrap();
    let key = tb.key("t/LOAD00000001.csv");
    let etag = tb.put(&key, rows_csv(1, 300_000)).await;
    tb.scan().await;
    let url = faults_url();
    let db_arg = format!("--database-url={url}");
    let args = [db_arg.as_str(), "--worker-id=w", "--exit-when-idle=5"];
    let worker = tb.drain(&args);
    let restart = async {
        wait_loading(&tb, &key, &etag, "w").await;
        tokio::time::sleep(Duration::from_millis(400)).await;
        pg_ctl(&["restart", "-m", "immediate"]);
    };
    let (run, ()) = tokio::join!(worker, restart);
    assert_eq!(run.loaded, 1, "{run:?}");
    let item = tb.item(&key, &etag).await;
    assert_eq!(item.status, Some(Status::Loaded));
    assert_eq!(
        item.attempts, 1,
        "retried in place, not redelivered: {:?}",
        item.history
    );
    assert!(
        !item.history.iter().any(|h| h.contains("failed")),
        "{:?}",
        item.history
    );
    let (db, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let s = &tb.schema;
    assert_eq!(
        count(&db, &format!("SELECT count(*) FROM \"{s}\".t")).await,
        300_000
    );
    assert_eq!(
        count(&db, &format!("SELECT count(DISTINCT id) FROM \"{s}\".t")).await,
        300_000
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn outage_backlog_drains_when_postgres_comes_back() {
    let _one = FAULTS_CLUSTER.lock().await;
    let tb = TestBed::new("outage").await;
    let db = faults_db(&tb).await;
    db.batch_execute(&format!(
        "CREATE TABLE \"{}\".t (id bigint PRIMARY KEY, v text, n bigint)",
        tb.schema
    ))
    .await
    .unwrap();
    drop(db);
    let url = faults_url();
    // Three workers are up (their bookkeeping schema exists) when PostgreSQL goes down.
    let workers = async {
        let args = |id: &str| {
            vec![
                format!("--database-url={url}"),
                format!("--worker-id={id}"),
                "--concurrency=4".to_owned(),
                "--exit-when-idle=12".to_owned(),
                "--db-retry-for=120".to_owned(),
                "--visibility-timeout=20".to_owned(),
            ]
        };
        let (a, b, c) = (args("a"), args("b"), args("c"));
        fn as_str(v: &[String]) -> Vec<&str> {
            v.iter().map(String::as_str).collect()
        }
        let (a, b, c) = (as_str(&a), as_str(&b), as_str(&c));
        tokio::join!(tb.drain(&a), tb.drain(&b), tb.drain(&c))
    };
    let files = 300u64;
    let per_file = 50u64;
    let outage = async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        pg_ctl(&["stop", "-m", "fast"]);
        let down = Instant::now();
        // Files land while PostgreSQL is down; the coordinator keeps enqueueing.
        for batch in 0..3 {
            for f in 0..files / 3 {
                let n = batch * (files / 3) + f;
                let name = format!("t/2025/01/01/20250101-{:06}{:03}.csv", n / 1000, n % 1000);
                let body: String = (n * per_file + 1..=(n + 1) * per_file)
                    .map(|i| format!("I,{i},\"v {i}\",{n}\n"))
                    .collect();
                tb.put(&tb.key(&name), body).await;
            }
            tb.scan().await;
        }
        tokio::time::sleep(Duration::from_secs(4)).await;
        let outage = down.elapsed();
        pg_ctl(&["start"]);
        (outage, Instant::now())
    };
    let ((a, b, c), (outage, back)) = tokio::join!(workers, outage);
    let drained = back.elapsed();
    let loaded = a.loaded + b.loaded + c.loaded;
    let failed = a.failed + b.failed + c.failed;
    println!(
        "outage drain: {files} files, {} rows; PostgreSQL down {:.1}s; backlog drained {:.1}s after it came back (incl. the workers' idle exit); loaded a={} b={} c={}, failed {failed}",
        files * per_file,
        outage.as_secs_f64(),
        drained.as_secs_f64(),
        a.loaded,
        b.loaded,
        c.loaded
    );
    assert_eq!(loaded, files, "{a:?} {b:?} {c:?}");
    let (db, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let s = &tb.schema;
    assert_eq!(
        count(&db, &format!("SELECT count(*) FROM \"{s}\".t")).await,
        (files * per_file) as i64
    );
    assert_eq!(
        count(
            &db,
            &format!("SELECT count(*) FROM \"{}\".ledger", tb.state_schema)
        )
        .await,
        files as i64
    );
    let (failed_items, _) =
        sluice_coordinator::ops::report::list(&tb.manifest, Some(Status::Failed), None, None)
            .await
            .unwrap();
    assert!(failed_items.is_empty(), "{failed_items:?}");
    assert_eq!(tb.queue_depth(&tb.queue_url).await, (0, 0));
    assert_eq!(
        tb.queue_depth(&tb.dlq_url).await,
        (0, 0),
        "nothing reached the DLQ"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_cut_at_commit_is_settled_by_the_ledger() {
    let tb = TestBed::new("cutcommit").await;
    tb.sql("CREATE TABLE {s}.t (id bigint PRIMARY KEY, v text, n bigint)")
        .await;
    let pg_port = std::env::var("SLUICE_PG_PORT").unwrap_or_else(|_| "5432".into());
    let proxy = Proxy::start(format!("127.0.0.1:{pg_port}").parse().unwrap()).await;
    let url = format!(
        "{}?sslmode=disable",
        database_url().replace(&format!("127.0.0.1:{pg_port}"), &proxy.addr.to_string())
    );
    assert!(url.contains(&proxy.addr.to_string()), "{url}");
    let key = tb.key("t/LOAD00000001.csv");
    let etag = tb.put(&key, rows_csv(1, 1000)).await;
    tb.scan().await;
    proxy.set(Mode::CutAtCommit);
    let db_arg = format!("--database-url={url}");
    let run = tb.drain(&[db_arg.as_str()]).await;
    assert!(
        proxy.cut.load(std::sync::atomic::Ordering::SeqCst),
        "the COMMIT was cut"
    );
    // The worker asked the ledger whether its COMMIT took effect: loaded, not applied twice,
    // not retried (a retry would have found the ledger row: a duplicate).
    assert_eq!(
        (run.loaded, run.duplicates, run.failed),
        (1, 0, 0),
        "{run:?}"
    );
    let item = tb.item(&key, &etag).await;
    assert_eq!((item.status, item.attempts), (Some(Status::Loaded), 1));
    assert_eq!(tb.count("SELECT count(*) FROM {s}.t").await, 1000);
    assert_eq!(tb.ledger_count(&key).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_dying_after_commit_or_after_the_manifest_update_changes_nothing_twice() {
    let tb = TestBed::new("dying").await;
    tb.sql("CREATE TABLE {s}.t (id bigint PRIMARY KEY, v text, n bigint)")
        .await;
    for (n, fault) in ["exit-after-commit", "exit-after-manifest"]
        .iter()
        .enumerate()
    {
        let key = tb.key(&format!("t/LOAD0000000{}.csv", n + 1));
        let from = n as u64 * 1000 + 1;
        let etag = tb.put(&key, rows_csv(from, from + 999)).await;
        tb.scan().await;
        WorkerProcess::run_to_fault(
            &tb,
            &["--visibility-timeout=3", "--worker-id=doomed"],
            fault,
        )
        .await;
        let item = tb.item(&key, &etag).await;
        let expected = if n == 0 {
            Status::Loading
        } else {
            Status::Loaded
        };
        assert_eq!(item.status, Some(expected), "{fault}: {item:?}");
        assert_eq!(
            tb.ledger_count(&key).await,
            1,
            "{fault}: committed before dying"
        );
        // The message comes back; another worker finds the ledger row and finishes the story.
        let run = tb.drain(&["--worker-id=heir", "--exit-when-idle=6"]).await;
        assert_eq!((run.loaded, run.duplicates), (0, 1), "{fault}: {run:?}");
        let item = tb.item(&key, &etag).await;
        assert_eq!(item.status, Some(Status::Loaded), "{fault}");
        assert_eq!(tb.queue_depth(&tb.queue_url).await, (0, 0), "{fault}");
    }
    assert_eq!(tb.count("SELECT count(*) FROM {s}.t").await, 2000);
    assert_eq!(tb.count("SELECT count(DISTINCT id) FROM {s}.t").await, 2000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_worker_that_wakes_after_another_took_over_has_no_second_effect() {
    let tb = TestBed::new("paused").await;
    tb.sql("CREATE TABLE {s}.t (id bigint PRIMARY KEY, v text, n bigint)")
        .await;
    let key = tb.key("t/LOAD00000001.csv");
    let etag = tb.put(&key, rows_csv(1, 200_000)).await;
    tb.scan().await;
    let sleeper = WorkerProcess::start(
        &tb,
        &database_url(),
        &["--visibility-timeout=3", "--worker-id=sleeper"],
        &[],
    );
    wait_loading(&tb, &key, &etag, "sleeper").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid = sleeper.id().to_string();
    assert!(Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .unwrap()
        .success());
    // The message comes back after its visibility timeout; another worker takes the file over
    // (and waits for the sleeper's open transaction on the ledger row, if it got that far).
    let wake = async {
        wait_loading(&tb, &key, &etag, "heir").await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(Command::new("kill")
            .args(["-CONT", &pid])
            .status()
            .unwrap()
            .success());
    };
    let (run, ()) = tokio::join!(tb.drain(&["--worker-id=heir", "--exit-when-idle=8"]), wake);
    tokio::time::sleep(Duration::from_secs(2)).await;
    drop(sleeper);
    assert_eq!(run.loaded + run.duplicates, 1, "{run:?}");
    assert_eq!(tb.count("SELECT count(*) FROM {s}.t").await, 200_000);
    assert_eq!(tb.ledger_count(&key).await, 1);
    let item = tb.item(&key, &etag).await;
    assert_eq!(item.status, Some(Status::Loaded), "{item:?}");
    assert_eq!(item.attempts, 2, "{:?}", item.history);
    assert_eq!(tb.queue_depth(&tb.queue_url).await, (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_coordinators_at_once_enqueue_each_file_once_in_the_manifest() {
    let tb = TestBed::new("twocoord").await;
    tb.sql("CREATE TABLE {s}.t (id bigint PRIMARY KEY, v text, n bigint)")
        .await;
    for f in 0..40u64 {
        tb.put(
            &tb.key(&format!("t/20250101-0000{:02}000.csv", f)),
            rows_csv(f * 10 + 1, f * 10 + 10)
                .lines()
                .map(|l| format!("I,{l}\n"))
                .collect::<String>(),
        )
        .await;
    }
    let (a, b) = tokio::join!(tb.scan(), tb.scan());
    // The manifest write is conditional: whichever coordinator writes a file first sends it.
    assert_eq!(a.sent + b.sent, 40, "{a:?} {b:?}");
    let run = tb.drain(&["--concurrency=4"]).await;
    assert_eq!(run.loaded, 40, "{run:?}");
    let items = tb
        .manifest
        .list_table(&format!("{}.t", tb.schema), None, None)
        .await
        .unwrap();
    assert_eq!(items.len(), 40);
    assert!(items.iter().all(|i| i.status == Some(Status::Loaded)));
    assert_eq!(tb.count("SELECT count(*) FROM {s}.t").await, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_answering_503_or_unreachable_is_waited_out_not_failed() {
    let tb = TestBed::new("awsdown").await;
    tb.sql("CREATE TABLE {s}.t (id bigint PRIMARY KEY, v text, n bigint)")
        .await;
    let mut keys = Vec::new();
    for f in 1..=5u64 {
        let key = tb.key(&format!("t/LOAD0000000{f}.csv"));
        let etag = tb.put(&key, rows_csv(f * 100, f * 100 + 99)).await;
        keys.push((key, etag));
    }
    tb.scan().await;
    let moto: std::net::SocketAddr = std::env::var("AWS_ENDPOINT_URL")
        .unwrap()
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    let proxy = Proxy::start(moto).await;
    let aws = tb.aws_via(&proxy.url());
    // The coordinator through the outage: a clear, transient error; nothing written.
    proxy.set(Mode::Unavailable);
    let mut ctx = tb.scan_context(Duration::from_secs(600));
    ctx.s3 = aws.s3.clone();
    let e = sluice_coordinator::scan::scan(&ctx, false)
        .await
        .unwrap_err();
    assert!(e.is_transient(), "{e}");
    // The worker through 503s, then through a dead endpoint, then recovery.
    let cfg = tb.worker_config(&["--exit-when-idle=5"]);
    let worker = sluice_worker::run(cfg, aws, tokio_util::sync::CancellationToken::new());
    let outage = async {
        tokio::time::sleep(Duration::from_secs(4)).await;
        proxy.set(Mode::Refuse);
        tokio::time::sleep(Duration::from_secs(4)).await;
        let faults = proxy.faults.load(std::sync::atomic::Ordering::SeqCst);
        proxy.set(Mode::Forward);
        faults
    };
    let (run, faults) = tokio::join!(worker, outage);
    let run = run.unwrap();
    println!("AWS outage: {faults} requests refused in 8 s");
    assert!(faults > 0, "the outage was felt");
    assert!(
        faults < 300,
        "backed off instead of spinning: {faults} requests in 8 s"
    );
    assert_eq!(run.loaded, 5, "{run:?}");
    for (key, etag) in &keys {
        let item = tb.item(key, etag).await;
        assert_eq!(item.status, Some(Status::Loaded));
        assert!(
            !item.history.iter().any(|h| h.contains("failed")),
            "{:?}",
            item.history
        );
    }
    assert_eq!(tb.count("SELECT count(*) FROM {s}.t").await, 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overwritten_object_fails_clearly_and_its_new_version_loads() {
    let tb = TestBed::new("overwrite").await;
    tb.sql("CREATE TABLE {s}.t (id bigint PRIMARY KEY, v text, n bigint)")
        .await;
    let key = tb.key("t/LOAD00000001.csv");
    let old = tb.put(&key, rows_csv(1, 10)).await;
    tb.scan().await;
    let new = tb.put(&key, rows_csv(1, 20)).await;
    tb.drain(&[]).await;
    let e = tb.item(&key, &old).await.error.unwrap();
    assert_eq!(e.class, "object_superseded");
    assert!(
        e.message.contains(&old) && e.message.contains(&key),
        "{}",
        e.message
    );
    let pass = tb.scan().await;
    assert_eq!(pass.changed, 1, "{pass:?}");
    tb.drain(&[]).await;
    assert_eq!(tb.status(&key, &new).await, Some(Status::Loaded));
    assert_eq!(tb.count("SELECT count(*) FROM {s}.t").await, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_that_are_not_sluices_fail_clearly_without_a_crash_loop() {
    let tb = TestBed::new("garbage").await;
    tb.sql("CREATE TABLE {s}.t (id bigint PRIMARY KEY, v text, n bigint)")
        .await;
    let key = tb.key("t/LOAD00000001.csv");
    let etag = tb.put(&key, rows_csv(1, 10)).await;
    tb.scan().await;
    for body in [
        "garbage",
        "{\"v\":2,\"bucket\":\"b\",\"key\":\"k\"}",
        "{\"v\":1,\"kind\":\"drop\"}",
    ] {
        tb.aws
            .sqs
            .send_message()
            .queue_url(&tb.queue_url)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }
    let started = Instant::now();
    let run = tb
        .drain(&["--bad-message-delay=8", "--exit-when-idle=4"])
        .await;
    assert_eq!(run.loaded, 1, "{run:?}");
    assert_eq!(
        run.bad_messages,
        3,
        "each refused once, then left alone for the delay: {run:?} in {:?}",
        started.elapsed()
    );
    assert_eq!(tb.status(&key, &etag).await, Some(Status::Loaded));
    // Not deleted: the queue's redrive policy takes them to the dead-letter queue.
    let (visible, in_flight) = tb.queue_depth(&tb.queue_url).await;
    assert_eq!(visible + in_flight, 3);
}
