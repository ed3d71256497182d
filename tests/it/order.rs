//! Row order: CDC files applied in any order, by several workers at once, some twice, converge
//! to the source; the version guard, tombstones, full loads after CDC, reloads, partial images
//! and soft deletes. Files are applied directly (`load_file`, or `load_batch` for several at
//! once) so each test picks the order.

use crate::support::{cdc_name, TestBed};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use sluice_worker::load::{load_batch, load_file, LoadContext, LoadOutcome};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Row = Vec<Option<String>>;

fn stats(outcome: LoadOutcome) -> sluice_worker::load::LoadStats {
    match outcome {
        LoadOutcome::Loaded(s) => s,
        LoadOutcome::AlreadyApplied => panic!("expected a load, the ledger had the file"),
    }
}

/// A CDC file name for a time given as milliseconds since the epoch.
fn cdc_at(ms: i64) -> String {
    sluice_common::mapping::cdc_file_name(
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap(),
    )
}

/// DMS's timestamp column text for microseconds since the epoch.
fn dms_ts(us: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1_000).unwrap();
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:06}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
}

/// 2025-01-01T00:00:00Z in milliseconds.
const BASE_MS: i64 = 1_735_689_600_000;

#[derive(Debug, Clone)]
struct Op {
    op: char,
    id: i32,
    a: Option<String>,
    b: Option<i32>,
    ts_us: i64,
}

const TEXTS: &[&str] = &[
    "x",
    "comma, inside",
    "say \"hi\"",
    "line\nbreak",
    "",
    "NULL",
    "ünï 😀",
];

/// A random source history over a few keys: inserts, updates, deletes, re-inserts after a
/// delete, and commit-time ties.
fn history(rng: &mut StdRng, n: usize, keys: i32) -> Vec<Op> {
    let mut live = BTreeSet::new();
    let mut ts_us = BASE_MS * 1000;
    let mut ops = Vec::with_capacity(n);
    for _ in 0..n {
        let id = rng.random_range(1..=keys);
        let op = if !live.contains(&id) {
            'I'
        } else if rng.random_bool(0.3) {
            'D'
        } else {
            'U'
        };
        match op {
            'D' => live.remove(&id),
            _ => live.insert(id),
        };
        if !rng.random_bool(0.3) {
            ts_us += rng.random_range(1..400);
        }
        ops.push(Op {
            op,
            id,
            a: rng
                .random_bool(0.85)
                .then(|| TEXTS[rng.random_range(0..TEXTS.len())].to_owned()),
            b: rng.random_bool(0.85).then(|| rng.random_range(-5..1000)),
            ts_us,
        });
    }
    ops
}

/// The source's final state: applying every operation once, in order.
fn oracle(ops: &[Op]) -> (BTreeMap<i32, Row>, BTreeSet<i32>) {
    let mut rows = BTreeMap::new();
    let mut deleted = BTreeSet::new();
    for o in ops {
        if o.op == 'D' {
            rows.remove(&o.id);
            deleted.insert(o.id);
        } else {
            deleted.remove(&o.id);
            rows.insert(
                o.id,
                vec![
                    Some(o.id.to_string()),
                    o.a.clone(),
                    o.b.map(|b| b.to_string()),
                ],
            );
        }
    }
    (rows, deleted)
}

fn csv_line(o: &Op, with_ts: bool) -> String {
    let a = match &o.a {
        Some(a) => format!("\"{}\"", a.replace('"', "\"\"")),
        None => "NULL".to_owned(),
    };
    let b = o.b.map_or("NULL".to_owned(), |b| b.to_string());
    if with_ts {
        format!("{},{},{},{a},{b}\n", o.op, dms_ts(o.ts_us), o.id)
    } else {
        format!("{},{},{a},{b}\n", o.op, o.id)
    }
}

/// Applies `files[group]` as the worker does: in one batch, and one by one where the batch
/// fails (nothing of it applied). Returns how many files it committed.
async fn apply_group(
    ctx: &LoadContext,
    files: &[sluice_common::message::FileMessage],
    group: &[usize],
) -> Result<usize, String> {
    let msgs: Vec<_> = group.iter().map(|&i| files[i].clone()).collect();
    let outcomes = match load_batch(ctx, &msgs).await {
        Ok(outcomes) => outcomes,
        Err(_) => {
            let mut outcomes = Vec::new();
            for m in &msgs {
                outcomes.push(
                    load_file(ctx, m)
                        .await
                        .map_err(|e| format!("{}: {e}", m.key))?,
                );
            }
            outcomes
        }
    };
    Ok(outcomes
        .iter()
        .filter(|o| matches!(o, LoadOutcome::Loaded(_)))
        .count())
}

/// One seed: a history cut into CDC files, applied by four concurrent appliers in a shuffled
/// order with some files twice, one by one or (`batched`) in batches of 1 to 6 deliveries;
/// the table must equal the oracle.
async fn converge(tb: &TestBed, n: usize, seed: u64, batched: bool) -> Result<(), String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let table = format!("r{n}");
    let with_ts = rng.random_bool(0.5);
    let soft = rng.random_bool(0.3);
    tb.sql(&format!(
        "CREATE TABLE {{s}}.{table} (id int PRIMARY KEY, a text, b int)"
    ))
    .await;
    let mut rules = format!("[tables.\"{}.{table}\"]\n", tb.schema);
    if with_ts {
        rules.push_str("timestamp_column = \"ts\"\n");
    }
    if soft {
        rules.push_str("soft_delete = \"gone\"\n");
    }
    let ctx = tb.load_context(&rules).await;

    let (len, keys) = (rng.random_range(40..160), rng.random_range(2..10));
    let ops = history(&mut rng, len, keys);
    let mut files = Vec::new();
    let mut name_ms = BASE_MS;
    let mut rest = &ops[..];
    while !rest.is_empty() {
        let take = rng.random_range(1..=12).min(rest.len());
        let (chunk, tail) = rest.split_at(take);
        rest = tail;
        // DMS names a CDC file after the changes it holds.
        let newest_ms = (chunk.last().unwrap().ts_us + 999) / 1000;
        name_ms = (name_ms + 1).max(newest_ms);
        let body: String = chunk.iter().map(|o| csv_line(o, with_ts)).collect();
        let key = tb.key(&format!("{table}/{}", cdc_at(name_ms)));
        tb.put(&key, body).await;
        files.push(tb.message(&key).await);
    }
    let mut deliveries: Vec<usize> = (0..files.len()).collect();
    for i in 0..files.len() {
        if rng.random_bool(0.3) {
            deliveries.push(i);
        }
    }
    deliveries.shuffle(&mut rng);
    let queue = Arc::new(Mutex::new(deliveries.into_iter().collect::<VecDeque<_>>()));
    let files = Arc::new(files);
    let mut appliers = Vec::new();
    for a in 0..4u64 {
        let (queue, files, ctx): (_, _, LoadContext) = (queue.clone(), files.clone(), ctx.clone());
        let mut group_rng = StdRng::seed_from_u64(seed ^ a);
        appliers.push(tokio::spawn(async move {
            let mut loaded = 0;
            loop {
                if batched {
                    let size = group_rng.random_range(1..=6);
                    let group: Vec<usize> = {
                        let mut q = queue.lock().unwrap();
                        (0..size).map_while(|_| q.pop_front()).collect()
                    };
                    if group.is_empty() {
                        return Ok::<usize, String>(loaded);
                    }
                    loaded += apply_group(&ctx, &files, &group).await?;
                    continue;
                }
                let Some(i) = queue.lock().unwrap().pop_front() else {
                    return Ok::<usize, String>(loaded);
                };
                match load_file(&ctx, &files[i]).await {
                    Ok(LoadOutcome::Loaded(_)) => loaded += 1,
                    Ok(LoadOutcome::AlreadyApplied) => {}
                    Err(e) => return Err(format!("{}: {e}", files[i].key)),
                }
            }
        }));
    }
    let mut loaded = 0;
    for a in appliers {
        loaded += a.await.unwrap()?;
    }
    if loaded != files.len() {
        return Err(format!("{loaded} loads for {} files", files.len()));
    }

    let (want, deleted) = oracle(&ops);
    let live = if soft { " WHERE NOT gone" } else { "" };
    let got = tb
        .rows(&format!(
            "SELECT id::text, a, b::text FROM {{s}}.{table}{live} ORDER BY id"
        ))
        .await;
    let want: Vec<Row> = want.into_values().collect();
    if got != want {
        return Err(format!(
            "with_ts={with_ts} soft={soft}\n got: {got:?}\nwant: {want:?}\nops: {ops:?}"
        ));
    }
    if soft {
        let gone: BTreeSet<i32> = tb
            .rows(&format!("SELECT id::text FROM {{s}}.{table} WHERE gone"))
            .await
            .into_iter()
            .map(|r| r[0].as_ref().unwrap().parse().unwrap())
            .collect();
        if gone != deleted {
            return Err(format!("soft-deleted {gone:?}, source deleted {deleted:?}"));
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn random_cdc_streams_in_any_order_converge_to_the_source() {
    let tb = TestBed::new("converge").await;
    let (first, count) = match std::env::var("SLUICE_ORDER_SEED") {
        Ok(s) => (s.parse::<u64>().expect("SLUICE_ORDER_SEED is a number"), 1),
        Err(_) => (rand::random::<u32>() as u64, 24),
    };
    println!("seeds {first}..{}", first + count);
    for (n, seed) in (first..first + count).enumerate() {
        if let Err(e) = converge(&tb, n, seed, false).await {
            panic!("seed {seed} diverged (replay: SLUICE_ORDER_SEED={seed}): {e}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn random_cdc_streams_in_batches_in_any_order_converge_to_the_source() {
    let tb = TestBed::new("converge-batched").await;
    let (first, count) = match std::env::var("SLUICE_ORDER_SEED") {
        Ok(s) => (s.parse::<u64>().expect("SLUICE_ORDER_SEED is a number"), 1),
        Err(_) => (rand::random::<u32>() as u64, 24),
    };
    println!("seeds {first}..{}", first + count);
    for (n, seed) in (first..first + count).enumerate() {
        if let Err(e) = converge(&tb, n, seed, true).await {
            panic!("seed {seed} diverged in batches (replay: SLUICE_ORDER_SEED={seed}): {e}");
        }
    }
}

const ITEMS: &str = "CREATE TABLE {s}.items (id int PRIMARY KEY, v text, n int)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_older_operations_lose_to_newer_ones() {
    let tb = TestBed::new("late").await;
    tb.sql(ITEMS).await;
    let ctx = tb.load_context("").await;
    let k = |ms: i64| tb.key(&format!("items/{}", cdc_at(BASE_MS + ms)));

    // Update: v3 lands before v2; v2 arrives late and is superseded.
    tb.put_and_load(&ctx, &k(1000), "I,1,v1,1\n").await;
    tb.put_and_load(&ctx, &k(3000), "U,1,v3,3\n").await;
    let late = stats(tb.put_and_load(&ctx, &k(2000), "U,1,v2,2\n").await);
    assert_eq!((late.updated, late.superseded), (0, 1), "{late:?}");
    assert_eq!(
        tb.rows("SELECT v, n::text FROM {s}.items").await,
        vec![vec![Some("v3".into()), Some("3".into())]]
    );

    // Delete first, then the older insert: the tombstone keeps the row out.
    let del = stats(tb.put_and_load(&ctx, &k(5000), "D,2,x,0\n").await);
    assert_eq!(
        (del.deleted, del.superseded),
        (0, 0),
        "tombstone only: {del:?}"
    );
    let ins = stats(tb.put_and_load(&ctx, &k(4000), "I,2,old,4\n").await);
    assert_eq!((ins.inserted, ins.superseded), (0, 1), "{ins:?}");
    assert_eq!(
        tb.count("SELECT count(*) FROM {s}.items WHERE id = 2")
            .await,
        0
    );
    let tombstones = format!(
        "SELECT count(*) FROM \"{}\".tombstones_{} WHERE id = 2",
        tb.state_schema,
        tb.count("SELECT '{s}.items'::regclass::oid::int8").await
    );
    assert_eq!(tb.count(&tombstones).await, 1);
    // A newer insert brings it back and clears its tombstone.
    tb.put_and_load(&ctx, &k(6000), "I,2,again,6\n").await;
    assert_eq!(
        tb.rows("SELECT v FROM {s}.items WHERE id = 2").await,
        vec![vec![Some("again".into())]]
    );
    assert_eq!(tb.count(&tombstones).await, 0);

    // Within one file the newest operation per key wins; a delete of a newer row is stale.
    tb.put_and_load(&ctx, &k(7000), "U,1,a,7\nD,1,a,7\nI,1,b,8\n")
        .await;
    let stale = stats(tb.put_and_load(&ctx, &k(6500), "D,1,a,7\n").await);
    assert_eq!((stale.deleted, stale.superseded), (0, 1), "{stale:?}");
    assert_eq!(
        tb.rows("SELECT v, n::text FROM {s}.items WHERE id = 1")
            .await,
        vec![vec![Some("b".into()), Some("8".into())]]
    );

    // The version and the file that wrote each row are visible in system columns.
    let rows = tb
        .rows(&format!(
            "SELECT i.id::text, i._sluice_version::text, i._sluice_record::text, l.key \
               FROM {{s}}.items i JOIN \"{}\".ledger l ON l.file_id = i._sluice_file ORDER BY i.id",
            tb.state_schema
        ))
        .await;
    assert_eq!(
        rows,
        vec![
            vec![
                Some("1".into()),
                Some("2025-01-01 00:00:07+00".into()),
                Some("3".into()),
                Some(k(7000))
            ],
            vec![
                Some("2".into()),
                Some("2025-01-01 00:00:06+00".into()),
                Some("1".into()),
                Some(k(6000))
            ],
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timestamp_column_orders_rows_and_old_tombstones_are_pruned() {
    let tb = TestBed::new("tscol").await;
    tb.sql("CREATE TABLE {s}.items (id int PRIMARY KEY, v text, changed_at timestamp)")
        .await;
    let rules = format!(
        "[tables.\"{}.items\"]\ntimestamp_column = \"changed_at\"\ntombstone_retention_hours = 1\n",
        tb.schema
    );
    let ctx = tb.load_context(&rules).await;
    let k = |ms: i64| tb.key(&format!("items/{}", cdc_at(BASE_MS + ms)));
    // One file holds two commits; a later file holds an older commit of key 1 (the file time
    // says newer, the row's own commit time says older: the commit time wins).
    tb.put_and_load(
        &ctx,
        &k(10_000),
        "I,2025-01-01 00:00:05.000002,1,new\nI,2025-01-01 00:00:05.000001,2,b\n",
    )
    .await;
    let s = stats(
        tb.put_and_load(&ctx, &k(20_000), "U,2025-01-01 00:00:05.000001,1,old\n")
            .await,
    );
    assert_eq!(s.superseded, 1, "{s:?}");
    assert_eq!(
        tb.rows("SELECT id::text, v, changed_at::text, _sluice_version::text FROM {s}.items ORDER BY id")
            .await,
        vec![
            vec![
                Some("1".into()),
                Some("new".into()),
                Some("2025-01-01 00:00:05.000002".into()),
                Some("2025-01-01 00:00:05.000002+00".into())
            ],
            vec![
                Some("2".into()),
                Some("b".into()),
                Some("2025-01-01 00:00:05.000001".into()),
                Some("2025-01-01 00:00:05.000001+00".into())
            ],
        ]
    );
    // Same commit time in two files: file order breaks the tie.
    tb.put_and_load(&ctx, &k(40_000), "U,2025-01-01 00:10:00,2,second\n")
        .await;
    let tie = stats(
        tb.put_and_load(&ctx, &k(30_000), "U,2025-01-01 00:10:00,2,first\n")
            .await,
    );
    assert_eq!(tie.superseded, 1);
    assert_eq!(
        tb.rows("SELECT v FROM {s}.items WHERE id = 2").await,
        vec![vec![Some("second".into())]]
    );

    // A delete's tombstone outlives newer data by the retention (1 hour here), then goes.
    let oid = tb.count("SELECT '{s}.items'::regclass::oid::int8").await;
    let tombstones = format!(
        "SELECT count(*) FROM \"{}\".tombstones_{oid}",
        tb.state_schema
    );
    tb.put_and_load(&ctx, &k(50_000), "D,2025-01-01 01:00:00,1,x\n")
        .await;
    assert_eq!(tb.count(&tombstones).await, 1);
    tb.put_and_load(&ctx, &k(60_000), "I,2025-01-01 01:30:00,3,c\n")
        .await;
    assert_eq!(tb.count(&tombstones).await, 1, "within the retention");
    tb.put_and_load(&ctx, &k(70_000), "I,2025-01-01 02:00:01,4,d\n")
        .await;
    assert_eq!(tb.count(&tombstones).await, 0, "pruned past the retention");

    // A timestamp that is not DMS's format is a precise, permanent failure.
    tb.put(&k(80_000), "I,01/01/2025,5,e\n".to_owned()).await;
    let msg = tb.message(&k(80_000)).await;
    let e = load_file(&ctx, &msg).await.unwrap_err();
    assert_eq!(e.class(), "bad_version");
    assert!(e.to_string().contains("record 1 at line 1"), "{e}");
    assert!(!e.is_transient());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_load_after_cdc_keeps_newer_rows_and_a_reload_replaces_older_ones() {
    let tb = TestBed::new("fullcdc").await;
    tb.sql(ITEMS).await;
    let ctx = tb.load_context("").await;
    // DMS writes the CDC file after the full load it follows; the worker gets it first.
    let cdc = tb.key(&format!("items/{}", cdc_name(2_000)));
    let load = tb.key("items/LOAD00000001.csv");
    tb.put(&load, "1,full,1\n2,full,2\n3,full,3\n").await;
    let full = tb.message(&load).await;
    tb.put_and_load(&ctx, &cdc, "U,1,cdc,10\nD,2,x,0\n").await;
    let s = stats(load_file(&ctx, &full).await.unwrap());
    assert_eq!((s.inserted, s.superseded), (1, 2), "{s:?}");
    assert_eq!(
        tb.rows("SELECT id::text, v FROM {s}.items ORDER BY id")
            .await,
        vec![
            vec![Some("1".into()), Some("cdc".into())],
            vec![Some("3".into()), Some("full".into())],
        ]
    );

    // DMS reloads the table: the same key with a new ETag, written later (after the CDC file's
    // time; S3 times have whole seconds), replaces older rows.
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let s = stats(
        tb.put_and_load(&ctx, &load, "1,reload,1\n3,reload,3\n4,reload,4\n")
            .await,
    );
    assert_eq!((s.inserted, s.updated, s.superseded), (1, 2, 0), "{s:?}");
    assert_eq!(
        tb.rows("SELECT id::text, v FROM {s}.items ORDER BY id")
            .await,
        vec![
            vec![Some("1".into()), Some("reload".into())],
            vec![Some("3".into()), Some("reload".into())],
            vec![Some("4".into()), Some("reload".into())],
        ]
    );
    // A new LOAD file of a later reload does the same.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    tb.put_and_load(
        &ctx,
        &tb.key("items/LOAD00000002.csv"),
        "4,second reload,4\n",
    )
    .await;
    assert_eq!(
        tb.rows("SELECT v FROM {s}.items WHERE id = 4").await,
        vec![vec![Some("second reload".into())]]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_update_images_leave_unsupported_columns_unchanged() {
    let tb = TestBed::new("partial").await;
    tb.sql("CREATE TABLE {s}.docs (id int PRIMARY KEY, title text, body text, n int)")
        .await;
    let rules = format!(
        "[tables.\"{}.docs\"]\nnosup_value = \"~nosup~\"\n",
        tb.schema
    );
    let ctx = tb.load_context(&rules).await;
    let k = |ms: i64| tb.key(&format!("docs/{}", cdc_at(BASE_MS + ms)));
    // Insert then partial updates in one file: the unchanged columns keep the insert's values.
    let s = stats(
        tb.put_and_load(
            &ctx,
            &k(1000),
            "I,1,t1,long body,1\nU,1,t2,~nosup~,2\nU,1,~nosup~,~nosup~,3\nI,2,x,y,1\n",
        )
        .await,
    );
    assert_eq!(s.partial, 2);
    assert_eq!(
        tb.rows("SELECT id::text, title, body, n::text FROM {s}.docs ORDER BY id")
            .await,
        vec![
            vec![
                Some("1".into()),
                Some("t2".into()),
                Some("long body".into()),
                Some("3".into())
            ],
            vec![
                Some("2".into()),
                Some("x".into()),
                Some("y".into()),
                Some("1".into())
            ],
        ]
    );
    // In a later file: the row's stored values stay.
    tb.put_and_load(&ctx, &k(2000), "U,2,~nosup~,new body,~nosup~\n")
        .await;
    // An older partial image arriving late loses like any other.
    let late = stats(
        tb.put_and_load(&ctx, &k(1500), "U,2,late,~nosup~,9\n")
            .await,
    );
    assert_eq!(late.superseded, 1);
    // A partial image of a row not there yet: what DMS did not send is NULL.
    tb.put_and_load(&ctx, &k(3000), "U,3,t3,~nosup~,3\n").await;
    assert_eq!(
        tb.rows("SELECT id::text, title, body, n::text FROM {s}.docs WHERE id > 1 ORDER BY id")
            .await,
        vec![
            vec![
                Some("2".into()),
                Some("x".into()),
                Some("new body".into()),
                Some("1".into())
            ],
            vec![Some("3".into()), Some("t3".into()), None, Some("3".into())],
        ]
    );
    // Without the rule the sentinel is just text.
    let plain = tb.load_context("").await;
    tb.sql("CREATE TABLE {s}.plain (id int PRIMARY KEY, v text)")
        .await;
    tb.put_and_load(
        &plain,
        &tb.key(&format!("plain/{}", cdc_at(BASE_MS))),
        "U,1,~nosup~\n",
    )
    .await;
    assert_eq!(
        tb.rows("SELECT v FROM {s}.plain").await,
        vec![vec![Some("~nosup~".into())]]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soft_deletes_keep_a_flagged_row() {
    let tb = TestBed::new("soft").await;
    tb.sql(ITEMS).await;
    let rules = format!(
        "[tables.\"{}.items\"]\nsoft_delete = \"deleted\"\n",
        tb.schema
    );
    let ctx = tb.load_context(&rules).await;
    let k = |ms: i64| tb.key(&format!("items/{}", cdc_at(BASE_MS + ms)));
    tb.put_and_load(&ctx, &k(1000), "I,1,a,1\nI,2,b,2\n").await;
    let s = stats(tb.put_and_load(&ctx, &k(2000), "D,1,NULL,NULL\n").await);
    assert_eq!(s.deleted, 1);
    // Late, older update: the deleted row stays deleted.
    tb.put_and_load(&ctx, &k(1500), "U,1,late,5\n").await;
    assert_eq!(
        tb.rows("SELECT id::text, v, n::text, deleted::text FROM {s}.items ORDER BY id")
            .await,
        vec![
            vec![
                Some("1".into()),
                Some("a".into()),
                Some("1".into()),
                Some("true".into())
            ],
            vec![
                Some("2".into()),
                Some("b".into()),
                Some("2".into()),
                Some("false".into())
            ],
        ]
    );
    // Re-inserted later: live again.
    tb.put_and_load(&ctx, &k(3000), "I,1,back,7\n").await;
    assert_eq!(
        tb.rows("SELECT v, deleted::text FROM {s}.items WHERE id = 1")
            .await,
        vec![vec![Some("back".into()), Some("false".into())]]
    );
    // No tombstone table for a soft-delete table.
    assert_eq!(
        tb.count(&format!(
            "SELECT count(*) FROM pg_tables WHERE schemaname = '{}' AND tablename LIKE 'tombstones_%'",
            tb.state_schema
        ))
        .await,
        0
    );
}
