//! What the lake may and may not change: a full load replaces its table whatever the file
//! format, the manifest's items stay small however often they are written, and keys naming
//! Sluice's own state schema or PostgreSQL's catalogs are refused before any SQL names a table.

use crate::support::TestBed;
use std::io::Write;
use std::time::Duration;

/// A full-load file holding rows `(id, "row <id>")`, in the format its extension says.
fn load_file_body(ext: &str, ids: &[i32]) -> Vec<u8> {
    let csv: String = ids
        .iter()
        .map(|id| format!("{id},\"row {id}\"\n"))
        .collect();
    match ext {
        "csv" => csv.into_bytes(),
        "csv.gz" => {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            gz.write_all(csv.as_bytes()).unwrap();
            gz.finish().unwrap()
        }
        "parquet" => parquet_body(ids),
        other => panic!("no such format {other}"),
    }
}

/// A Parquet file of columns `id` (int32) and `a` (string), written by pyarrow.
fn parquet_body(ids: &[i32]) -> Vec<u8> {
    let out = std::env::temp_dir().join(format!(
        "sluice-it-lakestate-{}-{}.parquet",
        std::process::id(),
        rand::random::<u64>()
    ));
    let ids_text: Vec<String> = ids.iter().map(i32::to_string).collect();
    let script = "import sys, pyarrow as pa, pyarrow.parquet as pq\n\
                  ids = [int(x) for x in sys.argv[2].split(',')]\n\
                  t = pa.table({'id': pa.array(ids, pa.int32()), \
                  'a': pa.array(['row %d' % i for i in ids], pa.string())})\n\
                  pq.write_table(t, sys.argv[1])\n";
    let run = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&out)
        .arg(ids_text.join(","))
        .output()
        .expect("run python3 (infra/local/stack.sh up installs pyarrow)");
    assert!(
        run.status.success(),
        "pyarrow: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let bytes = std::fs::read(&out).expect("the written file");
    let _ = std::fs::remove_file(&out);
    bytes
}

/// A generation with ids 1, 2, 3, then the same key rewritten with ids 1, 2 (a reload): after
/// passes and workers, the table holds 1 and 2 only, and the first file records the
/// replacement.
async fn a_reload_replaces_the_table(ext: &str) {
    let mut tb = TestBed::new(&format!("replace-{}", ext.replace('.', ""))).await;
    tb.generation_quiet = Duration::ZERO;
    tb.sql("CREATE TABLE {s}.t (id int PRIMARY KEY, a text)")
        .await;
    let key = tb.key(&format!("t/LOAD00000001.{ext}"));
    tb.put(&key, load_file_body(ext, &[1, 2, 3])).await;
    tb.scan().await;
    tb.drain(&[]).await;
    let pass = tb.scan().await;
    assert_eq!(pass.replacements_sent, 1, "{ext}: {pass:?}");
    let run = tb.drain(&[]).await;
    assert_eq!(run.replaced, 1, "{ext}: generation 1: {run:?}");
    let ids = "SELECT string_agg(id::text, ',' ORDER BY id) FROM {s}.t";
    assert_eq!(tb.rows(ids).await[0][0].as_deref(), Some("1,2,3"), "{ext}");

    // The reload: a later LastModified starts a new generation.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let etag = tb.put(&key, load_file_body(ext, &[1, 2])).await;
    let pass = tb.scan().await;
    assert_eq!(pass.changed, 1, "{ext}: {pass:?}");
    tb.drain(&[]).await;
    let pass = tb.scan().await;
    assert_eq!(pass.replacements_sent, 1, "{ext}: {pass:?}");
    let run = tb.drain(&[]).await;
    assert_eq!(run.replaced, 1, "{ext}: the reload's replacement: {run:?}");
    assert_eq!(tb.rows(ids).await[0][0].as_deref(), Some("1,2"), "{ext}");
    let head = tb.item(&key, &etag).await;
    assert!(head.replaced_at.is_some(), "{ext}: {head:?}");
    assert_eq!(head.rows_removed, Some(1), "{ext}: {head:?}");
    // Nothing more to ask.
    let pass = tb.scan().await;
    assert_eq!(
        (pass.replacements_sent, pass.generations_in_progress),
        (0, 0),
        "{ext}: {pass:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_csv_reload_replaces_the_table() {
    a_reload_replaces_the_table("csv").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_gzip_reload_replaces_the_table() {
    a_reload_replaces_the_table("csv.gz").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_parquet_reload_replaces_the_table() {
    a_reload_replaces_the_table("parquet").await;
}

/// Columns of the tables of `schemas`, as `schema.table.column`, sorted.
async fn columns_of(tb: &TestBed, schemas: &[&str]) -> Vec<String> {
    let rows = tb
        .db
        .query(
            "SELECT table_schema || '.' || table_name || '.' || column_name \
             FROM information_schema.columns WHERE table_schema = ANY($1) ORDER BY 1",
            &[&schemas],
        )
        .await
        .expect("columns");
    rows.iter().map(|r| r.get(0)).collect()
}

/// Keys naming Sluice's state schema (its ledger, rejects, generations and tombstone tables,
/// also in other case), PostgreSQL's schemas, or mapped there by the rules, are refused as
/// `reserved_schema` before any SQL names their table, whatever `--schemas` says: no system
/// column is added, and the state tables hold what they held.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keys_naming_the_state_schema_or_postgresql_schemas_are_refused() {
    let tb = TestBed::new("reserved").await;
    let state = tb.state_schema.clone();
    tb.sql("CREATE TABLE {s}.t (id int PRIMARY KEY, a text)")
        .await;
    let good = tb.key("t/LOAD00000001.csv");
    let egood = tb.put(&good, "1,a\n2,b\n").await;
    tb.scan().await;
    tb.drain(&[]).await;
    assert_eq!(
        tb.status(&good, &egood).await,
        Some(sluice_common::manifest::Status::Loaded)
    );
    let oid: u32 = tb
        .db
        .query_one(
            "SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = 't'",
            &[&tb.schema],
        )
        .await
        .unwrap()
        .get(0);
    let state_tables = [
        "ledger".to_owned(),
        "rejects".to_owned(),
        "generations".to_owned(),
        format!("tombstones_{oid}"),
    ];
    let system = ["pg_catalog", "information_schema", "pg_toast"];
    let state_columns = columns_of(&tb, &[&state]).await;
    for t in &state_tables {
        assert!(
            state_columns
                .iter()
                .any(|c| c.starts_with(&format!("{state}.{t}."))),
            "{t} exists: {state_columns:?}"
        );
    }
    let system_columns = columns_of(&tb, &system).await;
    let ledger_before = tb
        .rows(&format!(
            "SELECT key, etag FROM \"{state}\".ledger ORDER BY 1, 2"
        ))
        .await;

    // A forged generation, ledger row and reject, in every case PostgreSQL would tell apart.
    let forged_generation = format!("{}.t,forged,2000-01-01 00:00:00+00,1,x\n", tb.schema);
    let mut hostile: Vec<(String, String)> = state_tables
        .iter()
        .map(|t| {
            (
                format!("{}{state}/{t}/LOAD00000001.csv", tb.prefix),
                state.clone(),
            )
        })
        .collect();
    let upper = state.to_ascii_uppercase();
    hostile.push((
        format!("{}{upper}/generations/LOAD00000001.csv", tb.prefix),
        upper.clone(),
    ));
    for (schema, table) in [
        ("pg_catalog", "pg_class"),
        ("PG_CATALOG", "pg_class"),
        ("pg_catalog", "pg_namespace"),
        ("information_schema", "tables"),
        ("pg_toast", "pg_toast_2619"),
    ] {
        hostile.push((
            format!("{}{schema}/{table}/LOAD00000001.csv", tb.prefix),
            schema.to_owned(),
        ));
    }
    // The rules file maps two harmless-looking folders onto the state schema and the catalog.
    hostile.push((tb.key("decoy/LOAD00000001.csv"), state.clone()));
    hostile.push((tb.key("decoy2/LOAD00000001.csv"), "pg_catalog".to_owned()));
    let rules = std::env::temp_dir().join(format!("{}.toml", tb.name));
    std::fs::write(
        &rules,
        format!(
            "[tables.\"{s}.decoy\"]\ntarget = \"{state}.generations\"\n\
             [tables.\"{s}.decoy2\"]\ntarget = \"pg_catalog.pg_class\"\n",
            s = tb.schema
        ),
    )
    .unwrap();
    let mut etags = Vec::new();
    for (key, _) in &hostile {
        etags.push(tb.put(key, forged_generation.clone()).await);
    }
    let good2 = tb.key("t/20241029-113401000.csv");
    let egood2 = tb.put(&good2, "I,3,c\n").await;
    tb.scan().await;
    // Even a worker told it may load into them refuses them.
    let schemas = format!(
        "--schemas={},{state},{upper},pg_catalog,PG_CATALOG,information_schema,pg_toast",
        tb.schema
    );
    let config = format!("--config={}", rules.display());
    tb.drain(&[schemas.as_str(), config.as_str()]).await;
    let _ = std::fs::remove_file(&rules);

    assert_eq!(
        tb.status(&good2, &egood2).await,
        Some(sluice_common::manifest::Status::Loaded)
    );
    for ((key, schema), etag) in hostile.iter().zip(&etags) {
        let item = tb.item(key, etag).await;
        assert_eq!(
            item.status,
            Some(sluice_common::manifest::Status::Failed),
            "{key}"
        );
        let e = item.error.unwrap_or_else(|| panic!("{key}: no error"));
        assert_eq!(e.class, "reserved_schema", "{key}: {e:?}");
        assert!(e.permanent, "{key}");
        assert!(e.message.contains(key.as_str()), "{key}: {}", e.message);
        assert!(
            e.message.contains(&format!(" {schema}.")),
            "{key}: {}",
            e.message
        );
    }
    // Nothing was added to any of those tables, and the state holds what it held.
    assert_eq!(columns_of(&tb, &[&state]).await, state_columns);
    assert_eq!(columns_of(&tb, &system).await, system_columns);
    assert!(
        !system_columns.iter().any(|c| c.contains("._sluice_")),
        "{system_columns:?}"
    );
    let mut ledger_after = tb
        .rows(&format!(
            "SELECT key, etag FROM \"{state}\".ledger ORDER BY 1, 2"
        ))
        .await;
    ledger_after.retain(|r| r[0].as_deref() != Some(good2.as_str()));
    assert_eq!(ledger_after, ledger_before);
    let generations = format!("SELECT count(*) FROM \"{state}\".generations");
    assert_eq!(tb.count(&generations).await, 0);
    let rejects = format!("SELECT count(*) FROM \"{state}\".rejects");
    assert_eq!(tb.count(&rejects).await, 0);
    assert_eq!(tb.count("SELECT count(*) FROM {s}.t").await, 3);

    // A replacement asked for a table of the state schema is refused the same way.
    let ctx = tb.load_context("").await;
    let msg = sluice_common::message::ReplaceMessage {
        v: 1,
        kind: "replace".into(),
        bucket: tb.bucket.clone(),
        schema: state.clone(),
        table: "generations".into(),
        folder: format!("{}{state}/generations/", tb.prefix),
        generation: "2000-01-01T00:00:00.000Z".into(),
        start: "2000-01-01T00:00:00.000Z".into(),
        files: 0,
        head_key: hostile[2].0.clone(),
        head_etag: etags[2].clone(),
    };
    let e = sluice_worker::load::apply_replace(&ctx, &msg)
        .await
        .expect_err("refused");
    assert_eq!(e.class(), "reserved_schema", "{e}");
    assert_eq!(tb.count(&generations).await, 0);
}

/// A manifest item for `key` in the test's table, `discovered`.
async fn discovered(tb: &TestBed, key: &str) {
    let file = sluice_common::manifest::NewFile {
        bucket: tb.bucket.clone(),
        key: key.to_owned(),
        etag: "e1".to_owned(),
        size: 1,
        last_modified: "2024-10-29T11:00:00.000Z".to_owned(),
        table: format!("{}.t", tb.schema),
        kind: "cdc".to_owned(),
    };
    assert!(tb.manifest.record_discovered(&file).await.unwrap());
}

/// Transitions, annotations and an item written before there was a cap all leave the history
/// at the cap, with the newest entries kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn manifest_histories_stop_at_the_cap_with_the_newest_entries() {
    use sluice_common::manifest::Changes;
    use sluice_common::manifest::{Transition, HISTORY_CAP};
    use sluice_common::store::{Annotation, Moved};
    let tb = TestBed::new("history").await;
    let key = tb.key("t/20241029-113401000.csv");
    discovered(&tb, &key).await;

    // Transitions: queued again and again, each with a long note (capped per entry).
    for i in 0..(HISTORY_CAP + 30) {
        let changes = Changes {
            note: Some(format!("pass {i} {}", "x".repeat(5000))),
            ..Changes::default()
        };
        let moved = tb
            .manifest
            .transition(&key, "e1", Transition::Enqueue, changes)
            .await
            .unwrap();
        let Moved::Applied(item) = moved else {
            panic!("enqueue {i}: {moved:?}")
        };
        assert!(item.history.len() <= HISTORY_CAP, "{i}");
    }
    let item = tb.item(&key, "e1").await;
    assert_eq!(item.history.len(), HISTORY_CAP);
    assert!(item.history[HISTORY_CAP - 1].contains("(pass 79 xxx"));
    assert!(
        item.history[0].contains("(pass 30 xxx"),
        "{}",
        item.history[0]
    );
    assert!(item.history.iter().all(|h| h.len() < 1000));

    // A refused transition on a full history is still refused, and reports the item.
    let moved = tb
        .manifest
        .transition(&key, "e1", Transition::Reload, Changes::default())
        .await
        .unwrap();
    assert!(
        matches!(&moved, Moved::Refused(Some(i)) if i.status == Some(sluice_common::manifest::Status::Queued)),
        "{moved:?}"
    );

    // Annotations and transitions in turn (what a coordinator and a worker write on one item):
    // each write keeps the newest entries. (Writers at once on one item are not tried here: the
    // moto server does not serialise writes to an item as DynamoDB does, so it cannot judge the
    // conditional writes that keep them apart.)
    for i in 0..40 {
        tb.manifest
            .annotate(
                &key,
                "e1",
                &[("replace_sent_at", Annotation::Text(format!("{i}")))],
                Some(&format!("note {i}")),
            )
            .await
            .unwrap();
        let changes = Changes {
            note: Some(format!("move {i}")),
            ..Changes::default()
        };
        let moved = tb
            .manifest
            .transition(&key, "e1", Transition::Enqueue, changes)
            .await
            .unwrap();
        let Moved::Applied(item) = moved else {
            panic!("enqueue {i}: {moved:?}")
        };
        assert_eq!(item.history.len(), HISTORY_CAP, "{i}");
        assert!(item.history[HISTORY_CAP - 2].ends_with(&format!(" note {i}")));
        assert!(item.history[HISTORY_CAP - 1].ends_with(&format!("(move {i})")));
    }
    let item = tb.item(&key, "e1").await;
    let expected: Vec<String> = (15..40)
        .flat_map(|i| [format!(" note {i}"), format!("(move {i})")])
        .collect();
    assert_eq!(item.history.len(), expected.len());
    for (h, e) in item.history.iter().zip(&expected) {
        assert!(h.ends_with(e.as_str()), "{h} / {e}");
    }

    // An item written before the cap, with 300 entries, is brought back to it by its next write.
    let old_key = tb.key("t/20241029-113402000.csv");
    discovered(&tb, &old_key).await;
    let long: Vec<_> = (0..300)
        .map(|i| aws_sdk_dynamodb::types::AttributeValue::S(format!("old {i}")))
        .collect();
    tb.aws
        .dynamodb
        .update_item()
        .table_name(&tb.name)
        .key(
            "key",
            aws_sdk_dynamodb::types::AttributeValue::S(old_key.clone()),
        )
        .key(
            "etag",
            aws_sdk_dynamodb::types::AttributeValue::S("e1".into()),
        )
        .update_expression("SET history = :h")
        .expression_attribute_values(":h", aws_sdk_dynamodb::types::AttributeValue::L(long))
        .send()
        .await
        .unwrap();
    let moved = tb
        .manifest
        .transition(&old_key, "e1", Transition::Enqueue, Changes::default())
        .await
        .unwrap();
    let Moved::Applied(item) = moved else {
        panic!("{moved:?}")
    };
    assert_eq!(item.history.len(), HISTORY_CAP);
    assert_eq!(item.history[0], "old 251");
    assert_eq!(item.history[HISTORY_CAP - 2], "old 299");
    assert!(item.history[HISTORY_CAP - 1].ends_with(" queued"));
}

/// A complete generation that no worker replaces is asked for again at every pass; its first
/// file's history notes the first ask only.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn asking_again_for_a_replacement_adds_nothing_to_the_history() {
    let mut tb = TestBed::new("reask").await;
    tb.generation_quiet = Duration::ZERO;
    tb.sql("CREATE TABLE {s}.t (id int PRIMARY KEY, a text)")
        .await;
    let key = tb.key("t/LOAD00000001.csv");
    let etag = tb.put(&key, "1,a\n").await;
    tb.scan().await;
    tb.drain(&[]).await;
    let ctx = tb.scan_context(Duration::ZERO);
    let mut lengths = Vec::new();
    for _ in 0..6 {
        let (pass, _) = sluice_coordinator::scan::scan(&ctx, false).await.unwrap();
        assert_eq!(pass.replacements_sent, 1, "{pass:?}");
        lengths.push(tb.item(&key, &etag).await.history.len());
    }
    let item = tb.item(&key, &etag).await;
    let asks = item
        .history
        .iter()
        .filter(|h| h.contains("replacement asked"))
        .count();
    assert_eq!(asks, 1, "{:?}", item.history);
    assert!(lengths.windows(2).all(|w| w[0] == w[1]), "{lengths:?}");
    assert!(item.replace_sent_at.is_some());
}
