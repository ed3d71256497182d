//! Every wait on PostgreSQL is bounded: a session that holds a table's merge lock (someone's
//! `BEGIN` in psql) makes a worker's attempt fail as `lock_timeout` and retry, not wait
//! forever; a worker's session idle inside a transaction is ended by the server; a Parquet
//! object is downloaded before its transaction begins. All on the shared PostgreSQL, in the
//! test's own schemas; no cluster is stopped.

use crate::support::{database_url, TestBed};
use sluice_common::manifest::Status;
use sluice_worker::db::Waits;
use sluice_worker::load::{load_file, LoadOutcome};
use std::time::{Duration, SystemTime};
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

/// An S3 endpoint serving `body` for any GET: the first half at once, the rest after a pause.
/// Returns its URL and the time just before the last byte was sent.
async fn slow_object_endpoint(
    body: Vec<u8>,
    etag: String,
) -> (String, std::sync::Arc<std::sync::Mutex<Option<SystemTime>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let last_byte = std::sync::Arc::new(std::sync::Mutex::new(None));
    let last = last_byte.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let (body, etag, last) = (body.clone(), etag.clone(), last.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16384];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nETag: \"{etag}\"\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let half = body.len() / 2;
                if sock.write_all(head.as_bytes()).await.is_err()
                    || sock.write_all(&body[..half]).await.is_err()
                {
                    return;
                }
                let _ = sock.flush().await;
                tokio::time::sleep(Duration::from_millis(1500)).await;
                *last.lock().unwrap() = Some(SystemTime::now());
                let _ = sock.write_all(&body[half..]).await;
                let _ = sock.flush().await;
            });
        }
    });
    (format!("http://{addr}"), last_byte)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parquet_object_is_downloaded_before_its_transaction_begins() {
    let tb = TestBed::new("waits-spool").await;
    tb.sql("CREATE TABLE {s}.many (id bigint PRIMARY KEY, label text, at timestamp)")
        .await;
    let (file, _) = crate::parquet::write_parquet("row_groups");
    let key = tb.key("many/LOAD00000001.parquet");
    let etag = tb.put(&key, file.clone()).await;
    let msg = tb.message(&key).await;
    let (endpoint, last_byte) = slow_object_endpoint(file, etag).await;
    let mut ctx = tb.load_context("").await;
    ctx.s3 = aws_sdk_s3::Client::from_conf(
        tb.aws
            .s3
            .config()
            .to_builder()
            .endpoint_url(&endpoint)
            .build(),
    );
    let outcome = load_file(&ctx, &msg)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let LoadOutcome::Loaded(stats) = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(stats.records, 10_000);
    let last_byte = last_byte.lock().unwrap().expect("the object was served");
    // The ledger row's loaded_at is now() of the load's transaction: its start.
    let began: SystemTime = tb
        .db
        .query_one(
            &format!(
                "SELECT loaded_at FROM \"{}\".ledger WHERE key = $1",
                tb.state_schema
            ),
            &[&key],
        )
        .await
        .expect("ledger row")
        .get(0);
    assert!(
        began >= last_byte,
        "the transaction began {:?} before the last byte of the object was sent",
        last_byte.duration_since(began).unwrap_or_default()
    );
}
