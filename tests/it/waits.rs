//! Every wait on PostgreSQL is bounded: a session that holds a table's merge lock (someone's
//! `BEGIN` in psql) makes a worker's attempt fail as `lock_timeout` and retry, not wait
//! forever; a worker's session idle inside a transaction is ended by the server. All on the
//! shared PostgreSQL, in the test's own schemas; no cluster is stopped.

use crate::support::{database_url, TestBed};
use sluice_common::manifest::Status;
use sluice_worker::db::Waits;
use std::time::Duration;
use tokio_postgres::NoTls;
use tokio_util::sync::CancellationToken;

/// A plain session, as psql would open one.
async fn session() -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(&database_url(), NoTls)
        .await
        .expect("connect to PostgreSQL");
    tokio::spawn(conn);
    client
}

/// The advisory lock key the worker takes to merge into `schema.table`.
async fn merge_lock_key(schema: &str, table: &str) -> i64 {
    let pool = sluice_worker::db::pool(&database_url(), 1, "sluice-test").expect("pool");
    let client = pool.get().await.expect("pooled connection");
    sluice_worker::target::resolve(&client, schema, table, None, "test")
        .await
        .expect("the target table")
        .merge_lock()
}

/// Polls the manifest until `done` holds for the item (a limit, not an expectation).
async fn wait_item(
    tb: &TestBed,
    key: &str,
    etag: &str,
    what: &str,
    done: impl Fn(&sluice_common::manifest::ManifestItem) -> bool,
) -> sluice_common::manifest::ManifestItem {
    for _ in 0..600 {
        if let Some(item) = tb.manifest.get(key, etag).await.expect("manifest get") {
            if done(&item) {
                return item;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{key}: never {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_merge_lock_fails_the_attempt_as_lock_timeout_and_the_file_loads_once_released() {
    let tb = TestBed::new("waits-lock").await;
    tb.sql("CREATE TABLE {s}.t (id int PRIMARY KEY, v text)")
        .await;
    let lock = merge_lock_key(&tb.schema, "t").await;
    // Someone's open transaction holds the table's merge lock.
    let holder = session().await;
    holder
        .batch_execute(&format!("BEGIN; SELECT pg_advisory_xact_lock({lock})"))
        .await
        .expect("take the merge lock");

    let key = tb.key("t/LOAD00000001.csv");
    let etag = tb.put(&key, "1,a\n2,b\n").await;
    tb.scan().await;
    // One attempt waits a second for the lock; the retries give up after a second, so the
    // failure reaches the manifest and the message comes back later.
    let cfg = tb.worker_config(&[
        "--merge-lock-timeout=1",
        "--db-retry-for=1",
        "--exit-when-idle=600",
    ]);
    assert_eq!(cfg.waits.merge_lock, Duration::from_secs(1));
    let stop = CancellationToken::new();
    let worker = tokio::spawn(sluice_worker::run(cfg, tb.aws.clone(), stop.clone()));

    let failed = wait_item(&tb, &key, &etag, "failed", |i| {
        i.status == Some(Status::Failed)
    })
    .await;
    let error = failed.error.expect("the failure's error");
    assert_eq!(error.class, "lock_timeout", "{error:?}");
    assert!(!error.permanent, "{error:?}");
    assert_eq!(error.sqlstate.as_deref(), Some("55P03"), "{error:?}");
    let named = format!(
        "gave up waiting for the merge lock of {}.t (advisory lock {lock}) after ",
        tb.schema
    );
    assert!(error.message.starts_with(&named), "{}", error.message);
    assert!(
        error.message.contains("another session holds it"),
        "{}",
        error.message
    );
    // Nothing of the file was applied while the lock was held.
    assert_eq!(tb.count("SELECT count(*) FROM {s}.t").await, 0);
    assert_eq!(tb.ledger_count(&key).await, 0);

    // The holder ends its transaction: the next attempt loads the file.
    holder.batch_execute("COMMIT").await.expect("release");
    let loaded = wait_item(&tb, &key, &etag, "loaded", |i| {
        i.status == Some(Status::Loaded)
    })
    .await;
    stop.cancel();
    let run = worker.await.expect("worker task").expect("worker ran");
    assert_eq!(run.loaded, 1, "{run:?}");
    assert!(loaded.attempts >= 2, "{:?}", loaded.history);
    assert!(
        loaded.history.iter().any(|h| h.contains(&named)),
        "{:?}",
        loaded.history
    );
    assert_eq!(
        tb.rows("SELECT id::text, v FROM {s}.t ORDER BY id").await,
        vec![
            vec![Some("1".into()), Some("a".into())],
            vec![Some("2".into()), Some("b".into())]
        ]
    );
    assert_eq!(tb.ledger_count(&key).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_sessions_carry_their_limits_and_one_idle_in_a_transaction_is_ended() {
    let tb = TestBed::new("waits-idle").await;
    // The flags reach every session of the worker's pool.
    let cfg = tb.worker_config(&[
        "--lock-timeout=7",
        "--statement-timeout=90",
        "--idle-in-transaction-timeout=1",
    ]);
    let pool =
        sluice_worker::db::pool_with(&database_url(), 2, "sluice-test", &cfg.waits).expect("pool");
    let client = pool.get().await.expect("pooled connection");
    let show = |name: &'static str| {
        let client = &client;
        async move {
            let row = client
                .query_one(&format!("SHOW {name}"), &[])
                .await
                .expect("show");
            row.get::<_, String>(0)
        }
    };
    assert_eq!(show("lock_timeout").await, "7s");
    assert_eq!(show("statement_timeout").await, "90s");
    assert_eq!(show("idle_in_transaction_session_timeout").await, "1s");
    assert_eq!(show("TimeZone").await, "UTC");
    // The server's side of the keepalives (the test connects over TCP).
    assert_eq!(show("tcp_keepalives_idle").await, "30");
    assert_eq!(show("tcp_keepalives_interval").await, "10");
    assert_eq!(show("tcp_keepalives_count").await, "3");

    // The worker's session takes a lock in a transaction and goes quiet, as a paused worker
    // would: the server ends the session and the lock is free for another.
    let key = 0x5445_5354_i64 << 16 | i64::from(rand::random::<u16>());
    client
        .batch_execute(&format!("BEGIN; SELECT pg_advisory_xact_lock({key})"))
        .await
        .expect("lock");
    let other = session().await;
    tokio::time::timeout(
        Duration::from_secs(60),
        other.batch_execute(&format!(
            "BEGIN; SELECT pg_advisory_xact_lock({key}); COMMIT"
        )),
    )
    .await
    .expect("the idle session's lock was released within a minute")
    .expect("lock taken by the other session");
    let e = client
        .query_one("SELECT 1", &[])
        .await
        .expect_err("the idle session was ended");
    let text = format!("{e:?}");
    assert!(
        e.code() == Some(&tokio_postgres::error::SqlState::IDLE_IN_TRANSACTION_SESSION_TIMEOUT)
            || e.is_closed(),
        "{text}"
    );

    // The defaults: every wait bounded, the statement limit long enough for a big COPY.
    let defaults = tb.worker_config(&[]).waits;
    assert_eq!(defaults, Waits::default());
    assert_eq!(defaults.merge_lock, Duration::from_secs(600));
    assert_eq!(defaults.lock, Duration::from_secs(30));
    assert_eq!(defaults.statement, Duration::from_secs(3600));
    assert_eq!(defaults.idle_in_transaction, Duration::from_secs(60));
}
