//! A database outage is waited out: a file that meets a read-only server or refused
//! credentials goes back to the queue without spending an attempt, its message is kept, the
//! worker's `/health` says what is wrong, and once the database takes loads again the file
//! loads with no operator step, its rows once.
//!
//! These tests change the `faults` cluster (read-only for every session, a role's password), so
//! they hold the fault tests' lock, and a guard restores the cluster however the test ends.
//! The changes need a superuser: as the fault tests' `pg_ctlcluster`, they run as the cluster's
//! owner (`postgres`, through `runuser` when the tests run as root). Timeouts are limits, not
//! expectations.

use crate::faults::{faults_db, faults_url, FAULTS_CLUSTER};
use crate::support::{TestBed, WorkerProcess};
use serde_json::Value;
use sluice_common::manifest::{ManifestItem, Status};
use std::process::Command;
use std::time::{Duration, Instant};

/// Runs SQL on the `faults` cluster as its superuser, synchronously (guards call it from
/// `Drop`).
fn as_superuser(sql: &str) -> Result<(), String> {
    let config: tokio_postgres::Config = faults_url().parse().expect("faults url");
    let port = config
        .get_ports()
        .first()
        .copied()
        .unwrap_or(5432)
        .to_string();
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    let mut cmd = if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", "psql"]);
        c
    } else {
        Command::new("psql")
    };
    let out = cmd
        .args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-p",
            &port,
            "-d",
            "postgres",
        ])
        .args(["-c", sql])
        .output()
        .map_err(|e| format!("psql: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "psql {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The `faults` cluster read-only for every session, open ones included (as a writer demoted
/// by a failover is to the connections that still reach it), until dropped.
struct ReadOnly;

impl ReadOnly {
    fn on() -> ReadOnly {
        as_superuser("ALTER SYSTEM SET default_transaction_read_only = on")
            .expect("make the faults cluster read-only");
        as_superuser("SELECT pg_reload_conf()").expect("reload");
        ReadOnly
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        let reset = as_superuser("ALTER SYSTEM RESET default_transaction_read_only")
            .and_then(|()| as_superuser("SELECT pg_reload_conf()"));
        if let Err(e) = reset {
            eprintln!("could not make the faults cluster writable again: {e}");
        }
    }
}

/// The `faults` cluster's test role with another password (a rotated secret), and its open
/// sessions ended, until dropped (the password restored).
struct RotatedPassword {
    user: String,
    password: String,
}

fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

impl RotatedPassword {
    fn rotate() -> RotatedPassword {
        let config: tokio_postgres::Config = faults_url().parse().expect("faults url");
        let user = config
            .get_user()
            .expect("user in the faults url")
            .to_owned();
        let password = String::from_utf8(config.get_password().expect("password").to_vec())
            .expect("utf-8 password");
        let guard = RotatedPassword { user, password };
        as_superuser(&format!(
            "ALTER ROLE {} PASSWORD {}",
            quote_ident(&guard.user),
            quote_literal("rotated-by-the-outage-test")
        ))
        .expect("change the password");
        // Sessions that logged in before keep working; a rotated secret shows when the pool
        // opens a new connection, as it does once its connections are gone.
        as_superuser(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'sluice-worker'",
        )
        .expect("end the worker's sessions");
        guard
    }
}

impl Drop for RotatedPassword {
    fn drop(&mut self) {
        let restore = as_superuser(&format!(
            "ALTER ROLE {} PASSWORD {}",
            quote_ident(&self.user),
            quote_literal(&self.password)
        ));
        if let Err(e) = restore {
            eprintln!("could not restore the faults cluster's password: {e}");
        }
    }
}

/// A free local port for the worker's health endpoint.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

async fn health(addr: &str) -> (u16, Value) {
    let (status, body) = sluice_common::http::get(addr, "/health", Duration::from_secs(10))
        .await
        .expect("GET /health");
    (
        status,
        serde_json::from_str(&body).expect("JSON health body"),
    )
}

/// Waits until `/health` answers `want`.
async fn wait_health(addr: &str, want: u16) -> Value {
    let started = Instant::now();
    loop {
        if let Ok((status, body)) =
            sluice_common::http::get(addr, "/health", Duration::from_secs(10)).await
        {
            if status == want {
                return serde_json::from_str(&body).expect("JSON health body");
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "health stayed {status}: {body}"
            );
        }
        assert!(started.elapsed() < Duration::from_secs(120), "no health");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits until the item satisfies `done`.
async fn wait_item(
    tb: &TestBed,
    key: &str,
    etag: &str,
    what: &str,
    done: impl Fn(&ManifestItem) -> bool,
) -> ManifestItem {
    let started = Instant::now();
    loop {
        if let Some(item) = tb.manifest.get(key, etag).await.expect("manifest get") {
            if done(&item) {
                return item;
            }
            assert!(
                started.elapsed() < Duration::from_secs(180),
                "{key} never {what}: {item:#?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A table on the `faults` cluster, its ledger made while the database is writable, a worker
/// process with a health endpoint, and a first file loaded (the worker's pool is warm).
struct Setup {
    tb: TestBed,
    db: tokio_postgres::Client,
    worker: WorkerProcess,
    health: String,
}

async fn setup(label: &str, worker_id: &str) -> Setup {
    let tb = TestBed::new(label).await;
    let db = faults_db(&tb).await;
    db.batch_execute(&format!(
        "CREATE TABLE \"{}\".t (id bigint PRIMARY KEY, v text)",
        tb.schema
    ))
    .await
    .unwrap();
    let url = faults_url();
    let pool = sluice_worker::db::pool(&url, 1, "sluice-test").expect("pool");
    sluice_worker::db::bootstrap(&pool, &tb.state_schema)
        .await
        .expect("ledger");
    drop(pool);
    let health = format!("127.0.0.1:{}", free_port());
    let worker = WorkerProcess::start(
        &tb,
        &url,
        &[
            &format!("--worker-id={worker_id}"),
            "--concurrency=1",
            "--db-retry-for=3",
            "--visibility-timeout=20",
            &format!("--health-addr={health}"),
        ],
        &[],
    );
    let key = tb.key("t/LOAD00000001.csv");
    let etag = tb.put(&key, "1,one\n2,two\n").await;
    tb.scan().await;
    wait_item(&tb, &key, &etag, "loaded", |i| {
        i.status == Some(Status::Loaded)
    })
    .await;
    let body = wait_health(&health, 200).await;
    assert_eq!(body["database"]["writable"], true, "{body}");
    Setup {
        tb,
        db,
        worker,
        health,
    }
}

/// A second file, loaded after the outage: the rows of both files once, one ledger row each.
async fn assert_loaded_once(s: &Setup, key: &str, etag: &str) {
    let item = wait_item(&s.tb, key, etag, "loaded", |i| {
        i.status == Some(Status::Loaded)
    })
    .await;
    assert_eq!(
        item.attempts, 1,
        "only the attempt that loaded counts: {:#?}",
        item.history
    );
    assert_eq!(item.retries, 0, "no operator step");
    assert!(
        !item
            .history
            .iter()
            .any(|h| h.split_whitespace().nth(1) == Some("failed")),
        "{:#?}",
        item.history
    );
    let schema = &s.tb.schema;
    let rows =
        s.db.query(
            &format!("SELECT id, v FROM \"{schema}\".t ORDER BY id"),
            &[],
        )
        .await
        .unwrap();
    let rows: Vec<(i64, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        rows,
        vec![
            (1, "one".to_owned()),
            (2, "two".to_owned()),
            (3, "three".to_owned()),
            (4, "four".to_owned())
        ]
    );
    let ledger: i64 =
        s.db.query_one(
            &format!(
                "SELECT count(*) FROM \"{}\".ledger WHERE key = $1",
                s.tb.state_schema
            ),
            &[&key],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(ledger, 1);
    // The message is deleted right after the manifest update.
    let started = Instant::now();
    while s.tb.queue_depth(&s.tb.queue_url).await != (0, 0) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the message was not deleted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(s.tb.queue_depth(&s.tb.dlq_url).await, (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_database_is_waited_out_and_the_file_loads_once_writable() {
    let _one = FAULTS_CLUSTER.lock().await;
    let s = setup("readonly", "ro").await;
    let tb = &s.tb;

    // The writer is demoted: every session, the worker's pooled ones too, is read-only.
    let switched: std::time::SystemTime = s.db.query_one("SELECT now()", &[]).await.unwrap().get(0);
    let read_only = ReadOnly::on();
    let key = tb.key("t/LOAD00000002.csv");
    let etag = tb.put(&key, "3,three\n4,four\n").await;
    tb.scan().await;

    // Handed back: queued with the outage's error, no attempt spent, the message kept.
    let item = wait_item(tb, &key, &etag, "handed back", |i| {
        i.error
            .as_ref()
            .is_some_and(|e| e.class == "database_read_only")
    })
    .await;
    assert_eq!(item.status, Some(Status::Queued), "{item:#?}");
    assert_eq!(item.attempts, 0, "no attempt spent: {:#?}", item.history);
    let e = item.error.clone().unwrap();
    assert!(!e.permanent, "{e:?}");
    assert_eq!(e.sqlstate.as_deref(), Some("25006"), "{e:?}");
    assert!(
        e.message.contains("read-only (sqlstate 25006)"),
        "{}",
        e.message
    );
    let (visible, in_flight) = tb.queue_depth(&tb.queue_url).await;
    assert_eq!(visible + in_flight, 1, "the message is kept");
    assert_eq!(tb.queue_depth(&tb.dlq_url).await, (0, 0));

    // The health check says the database takes no loads.
    let body = wait_health(&s.health, 503).await;
    assert_eq!(body["database"]["ok"], false, "{body}");
    assert_eq!(body["database"]["writable"], false, "{body}");
    assert_eq!(body["receive_loop"]["ok"], true, "{body}");
    let (_, body) = health(&s.health).await;
    assert!(
        body["database"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("read-only"))
            || body["database"]["outage"]["class"] == "database_read_only",
        "{body}"
    );

    // The connections that reached the read-only server are not kept for reuse.
    let started = Instant::now();
    loop {
        let old: i64 = s
            .db
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'sluice-worker' AND backend_start < $1",
                &[&switched],
            )
            .await
            .unwrap()
            .get(0);
        if old == 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{old} connections from before the outage are still open"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Writable again: the file loads with no operator step, and the worker is healthy.
    drop(read_only);
    assert_loaded_once(&s, &key, &etag).await;
    let body = wait_health(&s.health, 200).await;
    assert_eq!(body["database"]["writable"], true, "{body}");
    drop(s.worker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_make_the_worker_unhealthy_and_spend_no_attempt() {
    let _one = FAULTS_CLUSTER.lock().await;
    let s = setup("authfail", "auth").await;
    let tb = &s.tb;

    let rotated = RotatedPassword::rotate();
    let key = tb.key("t/LOAD00000002.csv");
    let etag = tb.put(&key, "3,three\n4,four\n").await;
    tb.scan().await;

    let item = wait_item(tb, &key, &etag, "handed back", |i| {
        i.error
            .as_ref()
            .is_some_and(|e| e.class == "database_authentication")
    })
    .await;
    assert_eq!(item.status, Some(Status::Queued), "{item:#?}");
    assert_eq!(item.attempts, 0, "no attempt spent: {:#?}", item.history);
    let e = item.error.clone().unwrap();
    assert!(!e.permanent, "{e:?}");
    assert_eq!(e.sqlstate.as_deref(), Some("28P01"), "{e:?}");
    assert!(e.message.contains("authentication"), "{}", e.message);

    // Unhealthy, saying why, so that ECS starts a task with the new secret.
    let body = wait_health(&s.health, 503).await;
    assert_eq!(body["database"]["ok"], false, "{body}");
    let text = body["database"].to_string();
    assert!(text.contains("authentication"), "{body}");
    assert!(!text.contains("rotated-by-the-outage-test"), "{body}");

    // The worker does not take the file again and again meanwhile: once its message is
    // visible, it stays in the queue, unclaimed.
    let started = Instant::now();
    while tb.queue_depth(&tb.queue_url).await.0 != 1 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the message never came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(tb.queue_depth(&tb.queue_url).await, (1, 0));
    let now = tb.item(&key, &etag).await;
    assert_eq!(now.history, item.history, "not claimed again");

    // The secret is right again: the file loads, the worker is healthy.
    drop(rotated);
    assert_loaded_once(&s, &key, &etag).await;
    wait_health(&s.health, 200).await;
    drop(s.worker);
}
