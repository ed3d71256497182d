//! Full refresh and cutover: a table's new full-load generation replaces it (rows gone from the
//! source leave), CDC written during the reload lands right whatever the order, and readers
//! never see a half-replaced table.

use crate::support::{cdc_name, TestBed};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use sluice_common::manifest::Status;
use std::collections::BTreeMap;
use std::time::Duration;

type State = BTreeMap<i32, (String, i32)>;

fn load_csv(rows: &[(i32, (String, i32))]) -> String {
    rows.iter()
        .map(|(id, (a, n))| format!("{id},\"{}\",{n}\n", a.replace('"', "\"\"")))
        .collect()
}

/// Random changes to `state`, as CDC records (`I`/`U`/`D`), applied to `state` as they go.
fn changes(rng: &mut StdRng, state: &mut State, count: usize, keys: i32, tag: &str) -> String {
    let mut out = String::new();
    for i in 0..count {
        let id = rng.random_range(1..=keys);
        let value = (format!("{tag} {i}, \"q\""), rng.random_range(0..1000));
        if state.contains_key(&id) && rng.random_bool(0.3) {
            let (a, n) = state.remove(&id).unwrap();
            out.push_str(&format!("D,{id},\"{}\",{n}\n", a.replace('"', "\"\"")));
        } else {
            let op = if state.contains_key(&id) { "U" } else { "I" };
            out.push_str(&format!(
                "{op},{id},\"{}\",{}\n",
                value.0.replace('"', "\"\""),
                value.1
            ));
            state.insert(id, value);
        }
    }
    out
}

/// Takes every message off the queue and puts them back shuffled, some twice.
async fn shuffle_queue(tb: &TestBed, rng: &mut StdRng, expected: usize) -> usize {
    let mut bodies = Vec::new();
    let mut empty = 0;
    while empty < 2 {
        let out = tb
            .aws
            .sqs
            .receive_message()
            .queue_url(&tb.queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .visibility_timeout(120)
            .send()
            .await
            .unwrap();
        let messages = out.messages.unwrap_or_default();
        if messages.is_empty() {
            empty += 1;
        }
        for m in messages {
            bodies.push(m.body().unwrap().to_owned());
            tb.aws
                .sqs
                .delete_message()
                .queue_url(&tb.queue_url)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
    }
    assert_eq!(bodies.len(), expected);
    let twice: Vec<String> = bodies
        .iter()
        .filter(|_| rng.random_bool(0.4))
        .cloned()
        .collect();
    bodies.extend(twice);
    bodies.shuffle(rng);
    for b in &bodies {
        tb.aws
            .sqs
            .send_message()
            .queue_url(&tb.queue_url)
            .message_body(b)
            .send()
            .await
            .unwrap();
    }
    bodies.len()
}

async fn table_state(tb: &TestBed) -> State {
    tb.rows("SELECT id::text, a, n::text FROM {s}.t ORDER BY id")
        .await
        .into_iter()
        .map(|r| {
            (
                r[0].as_ref().unwrap().parse().unwrap(),
                (
                    r[1].clone().unwrap(),
                    r[2].as_ref().unwrap().parse().unwrap(),
                ),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reload_with_cdc_during_it_converges_to_the_source_in_any_order() {
    let seed = std::env::var("SLUICE_GENERATION_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u32>) as u64;
    println!("seed {seed} (replay: SLUICE_GENERATION_SEED={seed})");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut tb = TestBed::new("reload").await;
    tb.generation_quiet = Duration::ZERO;
    tb.sql("CREATE TABLE {s}.t (id int PRIMARY KEY, a text, n int)")
        .await;
    let key = |f: &str| tb.key(&format!("t/{f}"));

    // Generation 1: 60 rows in three LOAD files; then CDC.
    let mut source: State = (1..=60)
        .map(|id| (id, (format!("gen1 {id}"), id)))
        .collect();
    let rows: Vec<_> = source.clone().into_iter().collect();
    for (i, chunk) in rows.chunks(20).enumerate() {
        tb.put(&key(&format!("LOAD{:08X}.csv", i + 1)), load_csv(chunk))
            .await;
    }
    for i in 0..3 {
        let body = changes(&mut rng, &mut source, 15, 80, "cdc1");
        tb.put(&key(&cdc_name(100 + i * 200)), body).await;
    }
    tb.scan().await;
    tb.drain(&["--concurrency=4"]).await;
    tb.scan().await; // generation 1 is complete: its replacement removes nothing
    tb.drain(&[]).await;
    assert_eq!(
        table_state(&tb).await,
        source,
        "seed {seed}: after generation 1"
    );

    // The source changes without CDC (a stopped task): rows vanish, change, appear. DMS then
    // reloads the table: two LOAD files over the first two keys (LOAD00000003 of the old
    // generation stays behind), and CDC of changes made during the reload, written after it.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let ids: Vec<i32> = source.keys().copied().collect();
    for id in ids {
        match rng.random_range(0..10) {
            0..=1 => {
                source.remove(&id);
            }
            2 => {
                source.insert(id, (format!("silent {id}"), -id));
            }
            _ => {}
        }
    }
    source.insert(500, ("silent insert".into(), 500));
    let rows: Vec<_> = source.clone().into_iter().collect();
    let half = rows.len() / 2;
    tb.put(&key("LOAD00000001.csv"), load_csv(&rows[..half]))
        .await;
    tb.put(&key("LOAD00000002.csv"), load_csv(&rows[half..]))
        .await;
    for i in 0..4 {
        let body = changes(&mut rng, &mut source, 12, 90, "cdc2");
        tb.put(&key(&cdc_name(1500 + i * 200)), body).await;
    }
    let pass = tb.scan().await;
    assert_eq!((pass.changed, pass.new), (2, 4), "{pass:?}");
    // Every file of this pass, in a shuffled order, some delivered twice, several workers.
    shuffle_queue(&tb, &mut rng, 6).await;
    let (a, b) = tokio::join!(
        tb.drain(&["--concurrency=3", "--worker-id=a"]),
        tb.drain(&["--concurrency=3", "--worker-id=b"])
    );
    assert_eq!(a.loaded + b.loaded, 6, "{a:?} {b:?}");
    let pass = tb.scan().await;
    assert_eq!(pass.replacements_sent, 1, "{pass:?}");
    let run = tb.drain(&[]).await;
    assert_eq!(run.replaced, 1, "{run:?}");

    assert_eq!(
        table_state(&tb).await,
        source,
        "seed {seed}: after the reload"
    );
    // The manifest names each file's generation and records the replacement on its first file.
    let head = tb
        .manifest
        .history(&key("LOAD00000001.csv"))
        .await
        .unwrap()
        .into_iter()
        .last()
        .unwrap();
    assert!(head.replaced_at.is_some(), "{head:?}");
    assert!(head.rows_removed.unwrap() >= 1, "{head:?}");
    let generation = head.generation.clone().unwrap();
    assert_eq!(generation, head.last_modified);
    let second = tb
        .manifest
        .history(&key("LOAD00000002.csv"))
        .await
        .unwrap()
        .into_iter()
        .last()
        .unwrap();
    assert_eq!(second.generation.as_deref(), Some(generation.as_str()));
    let leftover = tb
        .manifest
        .history(&key("LOAD00000003.csv"))
        .await
        .unwrap()
        .remove(0);
    assert_ne!(leftover.generation.as_deref(), Some(generation.as_str()));
    // Later passes ask nothing more.
    let pass = tb.scan().await;
    assert_eq!(
        (pass.replacements_sent, pass.generations_in_progress),
        (0, 0),
        "{pass:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readers_never_see_a_half_replaced_table() {
    let mut tb = TestBed::new("readers").await;
    tb.generation_quiet = Duration::ZERO;
    tb.sql("CREATE TABLE {s}.t (id int PRIMARY KEY, a text, n int)")
        .await;
    let key = |f: &str| tb.key(&format!("t/{f}"));
    let gen1: Vec<_> = (1..=3000)
        .map(|id| (id, (format!("one {id}"), id)))
        .collect();
    for (i, chunk) in gen1.chunks(1000).enumerate() {
        tb.put(&key(&format!("LOAD{:08X}.csv", i + 1)), load_csv(chunk))
            .await;
    }
    tb.scan().await;
    tb.drain(&["--concurrency=3"]).await;
    tb.scan().await;
    tb.drain(&[]).await;
    assert_eq!(tb.count("SELECT count(*) FROM {s}.t").await, 3000);

    // The reload keeps 2,000 rows (1,000 of them changed) and drops 1,000.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let gen2: Vec<_> = (1001..=3000)
        .map(|id| (id, (format!("two {id}"), id * 2)))
        .collect();
    for (i, chunk) in gen2.chunks(1000).enumerate() {
        tb.put(&key(&format!("LOAD{:08X}.csv", i + 1)), load_csv(chunk))
            .await;
    }
    let stop = tokio_util::sync::CancellationToken::new();
    let reader = {
        let stop = stop.clone();
        let url = crate::support::database_url();
        let table = format!("\"{}\".t", tb.schema);
        tokio::spawn(async move {
            let (db, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(conn);
            let mut seen = Vec::new();
            while !stop.is_cancelled() {
                let n: i64 = db
                    .query_one(&format!("SELECT count(*) FROM {table}"), &[])
                    .await
                    .unwrap()
                    .get(0);
                seen.push(n);
            }
            seen
        })
    };
    tb.scan().await;
    tb.drain(&["--concurrency=2"]).await;
    tb.scan().await;
    let run = tb.drain(&[]).await;
    stop.cancel();
    let seen = reader.await.unwrap();
    assert_eq!(run.replaced, 1);
    assert!(
        seen.len() > 10,
        "the reader ran during the load: {}",
        seen.len()
    );
    let lowest = *seen.iter().min().unwrap();
    assert!(lowest >= 2000, "a reader saw {lowest} rows");
    assert_eq!(*seen.last().unwrap(), 2000);
    assert_eq!(
        tb.count("SELECT count(*) FROM {s}.t WHERE a LIKE 'two %'")
            .await,
        2000
    );
    // An older change to a removed row, arriving late, cannot bring it back.
    let late = key("20200101-000000000.csv");
    let etag = tb.put(&late, "U,5,late,5\n").await;
    tb.scan().await;
    tb.drain(&[]).await;
    assert_eq!(tb.status(&late, &etag).await, Some(Status::Loaded));
    assert_eq!(tb.count("SELECT count(*) FROM {s}.t WHERE id = 5").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_tables_and_soft_delete_tables_keep_their_rows_their_way() {
    let mut tb = TestBed::new("genrules").await;
    tb.generation_quiet = Duration::ZERO;
    tb.sql("CREATE TABLE {s}.m (id int PRIMARY KEY, v text); CREATE TABLE {s}.soft (id int PRIMARY KEY, v text)")
        .await;
    let rules = std::env::temp_dir().join(format!("{}.toml", tb.name));
    std::fs::write(
        &rules,
        format!(
            "[tables.\"{s}.m\"]\nfull_load = \"merge\"\n[tables.\"{s}.soft\"]\nsoft_delete = \"deleted\"\n",
            s = tb.schema
        ),
    )
    .unwrap();
    let config = format!("--config={}", rules.display());
    for t in ["m", "soft"] {
        tb.put(&tb.key(&format!("{t}/LOAD00000001.csv")), "1,a\n2,b\n")
            .await;
    }
    tb.scan().await;
    tb.drain(&[config.as_str()]).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for t in ["m", "soft"] {
        tb.put(&tb.key(&format!("{t}/LOAD00000001.csv")), "2,b2\n")
            .await;
    }
    tb.scan().await;
    tb.drain(&[config.as_str()]).await;
    tb.scan().await;
    let run = tb.drain(&[config.as_str()]).await;
    assert_eq!(run.replaced, 2, "{run:?}");
    assert_eq!(
        tb.rows("SELECT id::text, v FROM {s}.m ORDER BY id").await,
        vec![
            vec![Some("1".into()), Some("a".into())],
            vec![Some("2".into()), Some("b2".into())]
        ],
        "merge: nothing removed"
    );
    assert_eq!(
        tb.rows("SELECT id::text, v, deleted::text FROM {s}.soft ORDER BY id")
            .await,
        vec![
            vec![Some("1".into()), Some("a".into()), Some("true".into())],
            vec![Some("2".into()), Some("b2".into()), Some("false".into())]
        ],
        "soft delete: flagged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_restores_a_table_damaged_by_hand() {
    let mut tb = TestBed::new("refresh").await;
    tb.generation_quiet = Duration::ZERO;
    tb.sql("CREATE TABLE {s}.t (id int PRIMARY KEY, a text, n int)")
        .await;
    let key = |f: &str| tb.key(&format!("t/{f}"));
    let rows: Vec<_> = (1..=200)
        .map(|id| (id, (format!("row {id}"), id)))
        .collect();
    for (i, chunk) in rows.chunks(100).enumerate() {
        tb.put(&key(&format!("LOAD{:08X}.csv", i + 1)), load_csv(chunk))
            .await;
    }
    // A CDC change after the full load: a refresh must keep it.
    tb.put(&key(&cdc_name(2_000)), "U,7,\"changed by cdc\",70\n")
        .await;
    tb.scan().await;
    tb.drain(&[]).await;
    tb.scan().await;
    assert_eq!(tb.drain(&[]).await.replaced, 1);
    let before = table_state(&tb).await;
    assert_eq!(before.len(), 200);
    assert_eq!(before[&7], ("changed by cdc".to_owned(), 70));

    // Damage by hand: changed, deleted, inserted rows.
    tb.sql(
        "UPDATE {s}.t SET a = 'oops' WHERE id IN (1, 2, 7); DELETE FROM {s}.t WHERE id BETWEEN 100 AND 110;
         INSERT INTO {s}.t (id, a, n) VALUES (9001, 'stray', 0), (9002, 'stray', 0)",
    )
    .await;
    let ops = tb.ops("");
    let table = format!("{}.t", tb.schema);
    let plan = sluice_coordinator::ops::refresh::plan_refresh(&ops, &table)
        .await
        .unwrap();
    assert_eq!(
        (plan.generation_files, plan.files.len(), plan.current_rows),
        (2, 3, Some(191))
    );
    let shown = sluice_coordinator::ops::refresh::format_refresh(&plan, None);
    assert!(
        shown.contains("2 LOAD files and 1 CDC files") && shown.contains("191 rows"),
        "{shown}"
    );
    let (label, result) = sluice_coordinator::ops::refresh::apply_refresh(&ops, &plan, "tester")
        .await
        .unwrap();
    assert!(label.starts_with("refresh@"));
    assert_eq!(
        (result.ledger_rows_deleted, result.sent),
        (3, 3),
        "{result:?}"
    );
    assert_eq!(tb.drain(&[]).await.loaded, 3);
    let pass = tb.scan().await;
    assert_eq!(pass.replacements_sent, 1, "{pass:?}");
    assert_eq!(tb.drain(&[]).await.replaced, 1);
    assert_eq!(
        table_state(&tb).await,
        before,
        "restored exactly, the CDC change kept"
    );
    let head = tb.item(&key("LOAD00000001.csv"), &plan.files[0].etag).await;
    assert_eq!(head.generation.as_deref(), Some(label.as_str()));
    assert_eq!(head.rows_removed, Some(2));
    assert!(
        head.history.iter().any(|h| h.contains("refresh by tester")),
        "{:?}",
        head.history
    );
}
