//! A full load in many `LOAD` files takes the direct path for every file, not for its first
//! only: a table that holds nothing but rows of the file's own generation takes the file by
//! `COPY` into the target. Anything else that wrote the table (a CDC file, an earlier
//! generation, rows written by hand) sends the file the staged way, and a key already there
//! still falls back to it; either way the rows are those of the staged path.

use crate::support::{binary, cdc_name, database_url, TestBed, WorkerProcess};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use sluice_common::manifest::Status;
use sluice_worker::load::{
    apply_replace, load_file, LoadContext, LoadOutcome, LoadStats, ReplaceOutcome,
};
use std::time::Duration;

fn stats(outcome: LoadOutcome) -> LoadStats {
    match outcome {
        LoadOutcome::Loaded(s) => s,
        other => panic!("not loaded: {other:?}"),
    }
}

/// Rows `ids` of a full-load file, with a DMS timestamp column first: `ts, id, name, amount`.
fn load_rows(ids: impl IntoIterator<Item = i32>, tag: &str) -> String {
    ids.into_iter()
        .map(|i| {
            format!(
                "2024-01-01 00:{:02}:{:02}.{i:06},{i},\"{tag} {i}, \"\"q\"\"\",{i}.{:02}\n",
                i / 60 % 60,
                i % 60,
                i % 100
            )
        })
        .collect()
}

const TABLE: &str = "(id int PRIMARY KEY, name text, amount numeric(12,2))";

/// The rows of a table, with their versions, as text, in key order (`id > 0`: without a row
/// written by hand).
async fn table_rows(tb: &TestBed, table: &str) -> Vec<Vec<Option<String>>> {
    tb.rows(&format!(
        "SELECT id::text AS i, name, amount::text, _sluice_version::text, _sluice_record::text \
         FROM {{s}}.{table} WHERE id > 0 ORDER BY id"
    ))
    .await
}

fn timestamp_rules(tb: &TestBed, tables: &[&str], extra: &str) -> String {
    let s = &tb.schema;
    tables
        .iter()
        .map(|t| format!("[tables.\"{s}.{t}\"]\ntimestamp_column = \"dms_ts\"\n{extra}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_file_of_a_full_load_is_direct_in_any_order_and_equals_the_staged_result() {
    let tb = TestBed::new("fullload-all").await;
    for t in ["a", "soft", "b"] {
        tb.sql(&format!("CREATE TABLE {{s}}.{t} {TABLE}")).await;
    }
    // A row written by hand (the operator's): the table takes every file the staged way.
    tb.sql("INSERT INTO {s}.b VALUES (0, 'by hand', 0)").await;
    let rules = timestamp_rules(&tb, &["a", "b"], "")
        + &timestamp_rules(&tb, &["soft"], "soft_delete = \"is_deleted\"\n");
    let ctx = tb.load_context(&rules).await;
    let mut files: Vec<i32> = (1..=6).collect();
    files.shuffle(&mut StdRng::seed_from_u64(21));
    let mut paths = Vec::new();
    for t in ["a", "soft", "b"] {
        // DMS writes the files in order; they are loaded in any.
        for n in 1..=6 {
            let start = (n - 1) * 50 + 1;
            let key = tb.key(&format!("{t}/LOAD{n:08}.csv"));
            tb.put(&key, load_rows(start..start + 50, "v")).await;
        }
        for &n in &files {
            let key = tb.key(&format!("{t}/LOAD{n:08}.csv"));
            let s = stats(load_file(&ctx, &tb.message(&key).await).await.unwrap());
            assert_eq!(
                (s.records, s.inserted, s.superseded),
                (50, 50, 0),
                "{t} {n}"
            );
            paths.push((t, n, s.direct));
        }
    }
    let expected: Vec<_> = ["a", "soft", "b"]
        .iter()
        .flat_map(|&t| files.iter().map(move |&n| (t, n, t != "b")))
        .collect();
    assert_eq!(paths, expected, "order of files: {files:?}");
    let a = table_rows(&tb, "a").await;
    assert_eq!(a.len(), 300);
    assert_eq!(a, table_rows(&tb, "b").await);
    assert_eq!(a, table_rows(&tb, "soft").await);
    assert_eq!(
        tb.count("SELECT count(*) FROM {s}.soft WHERE NOT is_deleted")
            .await,
        300
    );
    // Each row carries its own file's ledger id.
    assert_eq!(
        tb.count(&format!(
            "SELECT count(*) FROM {{s}}.a t JOIN \"{}\".ledger l ON l.file_id = t._sluice_file \
             WHERE l.key LIKE '%/a/LOAD%' AND l.file_time = t._sluice_file_time",
            tb.state_schema
        ))
        .await,
        300
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_in_two_load_files_falls_back_to_the_staged_path_and_stays_right() {
    let tb = TestBed::new("fullload-dup").await;
    for t in ["a", "b"] {
        tb.sql(&format!("CREATE TABLE {{s}}.{t} {TABLE}")).await;
    }
    tb.sql("INSERT INTO {s}.b VALUES (0, 'by hand', 0)").await;
    let ctx = tb
        .load_context(&timestamp_rules(&tb, &["a", "b"], ""))
        .await;
    // Key 20 is in files 1 and 2; file 1's image is the newer one (its timestamp field).
    let newer = load_rows([20], "newer").replace("2024-01-01", "2024-06-01");
    let bodies = [
        (1, load_rows(1..20, "v") + &newer),
        (2, load_rows(20..=40, "old")),
        (3, load_rows(41..=60, "v")),
    ];
    for t in ["a", "b"] {
        for (n, body) in &bodies {
            tb.put(&tb.key(&format!("{t}/LOAD{n:08}.csv")), body.clone())
                .await;
        }
        let mut paths = Vec::new();
        for n in [2, 1, 3] {
            let msg = tb.message(&tb.key(&format!("{t}/LOAD{n:08}.csv"))).await;
            paths.push(stats(load_file(&ctx, &msg).await.unwrap()).direct);
        }
        if t == "a" {
            // File 1 meets key 20 and steps aside; file 3 is direct again.
            assert_eq!(paths, [true, false, true]);
        } else {
            assert_eq!(paths, [false, false, false]);
        }
    }
    let a = table_rows(&tb, "a").await;
    assert_eq!(a.len(), 60);
    assert_eq!(a, table_rows(&tb, "b").await);
    assert_eq!(
        tb.rows("SELECT name FROM {s}.a WHERE id = 20").await,
        vec![vec![Some("newer 20, \"q\"".to_owned())]]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_cdc_file_the_rest_of_the_full_load_goes_staged_and_the_changes_win() {
    let tb = TestBed::new("fullload-cdc").await;
    tb.sql(&format!("CREATE TABLE {{s}}.t {TABLE}")).await;
    let ctx = tb.load_context("").await;
    let plain = |ids: std::ops::RangeInclusive<i32>| -> String {
        ids.map(|i| format!("{i},n{i},{i}\n")).collect()
    };
    let first = stats(
        tb.put_and_load(&ctx, &tb.key("t/LOAD00000001.csv"), &plain(1..=10))
            .await,
    );
    assert!(first.direct);
    // Written after the full load, applied between its files: an update of a row of the first
    // file, and a delete of a row of the second, which is not there yet (a tombstone).
    let cdc = stats(
        tb.put_and_load(
            &ctx,
            &tb.key(&format!("t/{}", cdc_name(60_000))),
            "U,3,changed,33\nD,15,n15,15\n",
        )
        .await,
    );
    assert!(!cdc.direct);
    for n in [2, 3] {
        let start = (n - 1) * 10 + 1;
        let s = stats(
            tb.put_and_load(
                &ctx,
                &tb.key(&format!("t/LOAD{n:08}.csv")),
                &plain(start..=start + 9),
            )
            .await,
        );
        assert!(!s.direct, "file {n} after a CDC file: {s:?}");
    }
    assert_eq!(tb.count("SELECT count(*) FROM {s}.t").await, 29);
    assert_eq!(
        tb.count("SELECT count(*) FROM {s}.t WHERE id = 15").await,
        0
    );
    assert_eq!(
        tb.rows("SELECT name, amount::text FROM {s}.t WHERE id = 3")
            .await,
        vec![vec![Some("changed".to_owned()), Some("33.00".to_owned())]]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_generation_over_the_old_one_s_rows_goes_staged_and_replaces_them() {
    let tb = TestBed::new("fullload-reload").await;
    tb.sql(&format!("CREATE TABLE {{s}}.t {TABLE}")).await;
    let ctx: LoadContext = tb.load_context("").await;
    let plain = |ids: std::ops::RangeInclusive<i32>, tag: &str| -> String {
        ids.map(|i| format!("{i},{tag}{i},{i}\n")).collect()
    };
    let (one, two) = (tb.key("t/LOAD00000001.csv"), tb.key("t/LOAD00000002.csv"));
    for (key, body) in [(&one, plain(1..=10, "old")), (&two, plain(11..=20, "old"))] {
        assert!(stats(tb.put_and_load(&ctx, key, &body).await).direct);
    }
    // DMS reloads the table a while later: the same names, new objects. Rows 11..20 are gone
    // from the source, 21..30 are new.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let head_etag = tb.put(&one, plain(1..=10, "new")).await;
    tb.put(&two, plain(21..=30, "new")).await;
    let start = tb.message(&one).await.last_modified;
    // Its second file first: none of its keys is in the table, yet it is not the table's
    // generation.
    for key in [&two, &one] {
        let msg = tb.message(key).await;
        let s = stats(load_file(&ctx, &msg).await.unwrap());
        assert!(!s.direct, "{key}: {s:?}");
    }
    assert_eq!(tb.count("SELECT count(*) FROM {s}.t").await, 30);
    let replaced = apply_replace(
        &ctx,
        &sluice_common::message::ReplaceMessage {
            v: 1,
            kind: "replace".into(),
            bucket: tb.bucket.clone(),
            schema: tb.schema.clone(),
            table: "t".into(),
            folder: format!("{}{}/t/", tb.prefix, tb.schema),
            generation: start.clone(),
            start,
            files: 2,
            head_key: one.clone(),
            head_etag,
        },
    )
    .await
    .unwrap();
    assert_eq!(replaced, ReplaceOutcome::Replaced { rows_removed: 10 });
    let want: Vec<Vec<Option<String>>> = (1..=10)
        .chain(21..=30)
        .map(|i| vec![Some(i.to_string()), Some(format!("new{i}"))])
        .collect();
    assert_eq!(
        tb.rows("SELECT id::text AS i, name FROM {s}.t ORDER BY id")
            .await,
        want
    );
}

/// Takes the `expected` messages off the queue and sends them back in a shuffled order;
/// returns the keys in that order.
async fn shuffle_queue(tb: &TestBed, expected: usize) -> Vec<String> {
    let sqs = &tb.aws.sqs;
    let mut bodies = Vec::new();
    while bodies.len() < expected {
        let out = sqs
            .receive_message()
            .queue_url(&tb.queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        for m in out.messages.unwrap_or_default() {
            bodies.push(m.body().unwrap().to_owned());
            sqs.delete_message()
                .queue_url(&tb.queue_url)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
    }
    bodies.shuffle(&mut StdRng::seed_from_u64(7));
    let mut keys = Vec::new();
    for body in bodies {
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        keys.push(
            v["key"]
                .as_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
                .to_owned(),
        );
        sqs.send_message()
            .queue_url(&tb.queue_url)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }
    keys
}

/// A `sluice-worker run` process whose JSON log goes to `log`.
fn logged_worker(tb: &TestBed, log: &std::path::Path) -> WorkerProcess {
    let file = std::fs::File::create(log).expect("worker log file");
    let child = std::process::Command::new(binary("sluice-worker"))
        .arg("run")
        .args([
            format!("--queue-url={}", tb.queue_url),
            format!("--manifest-table={}", tb.name),
            format!("--state-schema={}", tb.state_schema),
            "--wait-time=1".into(),
            "--concurrency=1".into(),
            "--exit-when-idle=3".into(),
        ])
        .env("SLUICE_DATABASE_URL", database_url())
        .env("SLUICE_LOG_FORMAT", "json")
        .stderr(file)
        .spawn()
        .expect("start worker");
    WorkerProcess(child)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_take_every_file_of_a_full_load_by_the_direct_path() {
    let tb = TestBed::new("fullload-workers").await;
    tb.sql(&format!("CREATE TABLE {{s}}.t {TABLE}")).await;
    let mut etags = Vec::new();
    for n in 1..=8 {
        let start = (n - 1) * 100 + 1;
        let key = tb.key(&format!("t/LOAD{n:08}.csv"));
        let body: String = (start..start + 100)
            .map(|i| format!("{i},n{i},{i}\n"))
            .collect();
        etags.push((key.clone(), tb.put(&key, body).await));
    }
    tb.scan().await;
    let files = shuffle_queue(&tb, 8).await;
    let dir = std::env::temp_dir();
    let logs: Vec<_> = (0..2)
        .map(|w| dir.join(format!("{}-worker{w}.log", tb.name)))
        .collect();
    let mut workers: Vec<_> = logs.iter().map(|l| logged_worker(&tb, l)).collect();
    let waited = tokio::task::spawn_blocking(move || {
        for w in &mut workers {
            let status = w.0.wait().unwrap();
            assert!(status.success(), "worker exit: {status}");
        }
    });
    tokio::time::timeout(Duration::from_secs(120), waited)
        .await
        .expect("workers drained within 2 minutes")
        .unwrap();
    let mut paths = Vec::new();
    for log in &logs {
        let text = std::fs::read_to_string(log).unwrap();
        std::fs::remove_file(log).ok();
        for line in text.lines().filter(|l| l.contains("\"file loaded\"")) {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            paths.push(v["path"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(paths, vec!["direct"; 8], "order of files: {files:?}");
    for (key, etag) in &etags {
        assert_eq!(tb.status(key, etag).await, Some(Status::Loaded), "{key}");
    }
    assert_eq!(
        tb.rows(
            "SELECT count(*)::text, sum(id)::text, count(DISTINCT _sluice_file)::text FROM {s}.t"
        )
        .await,
        vec![vec![
            Some("800".to_owned()),
            Some((1..=800).sum::<i32>().to_string()),
            Some("8".to_owned())
        ]]
    );
}
