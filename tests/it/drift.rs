//! Schema drift (`new_columns`): a source table gains columns, and its files name them. Under
//! `"add"` the worker adds them to the target and loads (a header CSV, a Parquet file; the
//! manifest history of the file that brought them says so); under `"fail"` (the default) the
//! file fails as before and the table is unchanged; two workers adding the same column end with
//! one; a file without a header cannot name its new columns and fails saying so; hostile names
//! are refused, and a name that is merely strange is quoted.

use crate::parquet::write_parquet;
use crate::support::{cdc_name, TestBed};
use sluice_common::manifest::Status;
use sluice_worker::error::WorkerError;
use sluice_worker::load::{load_file, LoadContext, LoadOutcome};

/// Writes a rules file for the test and returns the worker flag that uses it.
fn rules_flag(tb: &TestBed, text: &str) -> String {
    let path = std::env::temp_dir().join(format!("{}.toml", tb.name));
    std::fs::write(&path, text).unwrap();
    format!("--config={}", path.display())
}

/// `name type` of each column of a test table, in order.
async fn columns(tb: &TestBed, table: &str) -> Vec<String> {
    tb.rows(&format!(
        "SELECT a.attname || ' ' || format_type(a.atttypid, a.atttypmod) FROM pg_attribute a \
         WHERE a.attrelid = '{{s}}.{table}'::regclass AND a.attnum > 0 AND NOT a.attisdropped \
           AND a.attname NOT LIKE '\\_sluice\\_%' ORDER BY a.attnum"
    ))
    .await
    .into_iter()
    .map(|r| r[0].clone().unwrap())
    .collect()
}

async fn load(ctx: &LoadContext, tb: &TestBed, key: &str) -> Result<LoadOutcome, WorkerError> {
    let msg = tb.message(key).await;
    load_file(ctx, &msg).await
}

fn text(rows: &[&[&str]]) -> Vec<Vec<Option<String>>> {
    rows.iter()
        .map(|r| {
            r.iter()
                .map(|v| (*v != "NULL").then(|| (*v).to_owned()))
                .collect()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_with_new_columns_evolve_the_table_under_add_and_the_history_says_so() {
    let tb = TestBed::new("drift-add").await;
    tb.sql(
        "CREATE TABLE {s}.people (id int PRIMARY KEY, name text);
         INSERT INTO {s}.people VALUES (1, 'ann');
         CREATE TABLE {s}.items (id bigint PRIMARY KEY, name text);",
    )
    .await;
    let s = &tb.schema;
    let flag = rules_flag(
        &tb,
        &format!(
            "[defaults]\nnew_columns = \"add\"\n[tables.\"{s}.people\"]\nheader = true\n\
             new_column_type = \"varchar(100)\"\n"
        ),
    );
    // A CDC file whose header names two columns the table lacks (one of them by a name that
    // needs quoting), and an update of a row that was there before.
    let csv_key = tb.key(&format!("people/{}", cdc_name(0)));
    let csv_etag = tb
        .put(
            &csv_key,
            "Op,id,name,email,Nick Name\nI,2,bob,b@x.org,Bobby\nU,1,ann,a@x.org,NULL\n",
        )
        .await;
    // A full load in Parquet into an empty table: three new columns, typed from the schema.
    let (parquet, _) = write_parquet("drift");
    let pq_key = tb.key("items/LOAD00000001.parquet");
    let pq_etag = tb.put(&pq_key, parquet).await;
    tb.scan().await;
    tb.drain(&[&flag]).await;

    for (key, etag) in [(&csv_key, &csv_etag), (&pq_key, &pq_etag)] {
        let item = tb.item(key, etag).await;
        assert_eq!(item.status, Some(Status::Loaded), "{key}: {:?}", item.error);
    }
    assert_eq!(
        columns(&tb, "people").await,
        [
            "id integer",
            "name text",
            "email character varying(100)",
            "Nick Name character varying(100)"
        ]
    );
    assert_eq!(
        tb.rows("SELECT id::text, name, email, \"Nick Name\" FROM {s}.people ORDER BY id")
            .await,
        text(&[
            &["1", "ann", "a@x.org", "NULL"],
            &["2", "bob", "b@x.org", "Bobby"]
        ])
    );
    assert_eq!(
        columns(&tb, "items").await,
        [
            "id bigint",
            "name text",
            "score bigint",
            "rating numeric(5,2)",
            "seen timestamp with time zone"
        ]
    );
    assert_eq!(
        tb.rows(
            "SELECT id::text, name, score::text, rating::text, seen::text FROM {s}.items \
             ORDER BY id"
        )
        .await,
        text(&[
            &["10", "ten", "7", "4.50", "2024-10-29 12:00:00.000001+00"],
            &["11", "eleven", "NULL", "-1.25", "NULL"]
        ])
    );
    // The file that brought the columns records them in its history.
    let history = tb.item(&csv_key, &csv_etag).await.history.join("\n");
    assert!(
        history.contains(&format!(
            "columns added to {s}.people: \"email\" varchar(100), \"Nick Name\" varchar(100)"
        )),
        "{history}"
    );
    let history = tb.item(&pq_key, &pq_etag).await.history.join("\n");
    assert!(
        history.contains(
            "\"score\" bigint, \"rating\" numeric(5,2), \"seen\" timestamp with time zone"
        ),
        "{history}"
    );

    // A later file with the same columns adds nothing and records nothing.
    let later = tb.key(&format!("people/{}", cdc_name(1000)));
    let later_etag = tb
        .put(
            &later,
            "Op,id,name,email,Nick Name\nU,2,bob,bob@x.org,Bob\n",
        )
        .await;
    tb.scan().await;
    tb.drain(&[&flag]).await;
    let item = tb.item(&later, &later_etag).await;
    assert_eq!(item.status, Some(Status::Loaded));
    assert!(
        !item.history.join("\n").contains("columns added"),
        "{:?}",
        item.history
    );
    assert_eq!(
        tb.count("SELECT count(*) FROM {s}.people WHERE email = 'bob@x.org'")
            .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_fail_files_with_new_columns_fail_and_the_table_is_unchanged() {
    let tb = TestBed::new("drift-fail").await;
    tb.sql(
        "CREATE TABLE {s}.people (id int PRIMARY KEY, name text);
         CREATE TABLE {s}.items (id bigint PRIMARY KEY, name text);",
    )
    .await;
    let s = &tb.schema;
    for rules in [
        format!("[tables.\"{s}.people\"]\nheader = true\n"),
        format!("[defaults]\nnew_columns = \"fail\"\n[tables.\"{s}.people\"]\nheader = true\n"),
    ] {
        let ctx = tb.load_context(&rules).await;
        let key = tb.key("people/LOAD00000001.csv");
        tb.put(&key, "id,name,email\n1,ann,a@x.org\n").await;
        let e = load(&ctx, &tb, &key).await.unwrap_err();
        assert_eq!(e.class(), "unknown_column", "{e}");
        assert!(!e.is_transient());
        assert!(e.to_string().contains("\"email\""), "{e}");

        let (parquet, _) = write_parquet("drift");
        let key = tb.key("items/LOAD00000001.parquet");
        tb.put(&key, parquet).await;
        let e = load(&ctx, &tb, &key).await.unwrap_err();
        assert_eq!(e.class(), "unknown_column", "{e}");
        assert!(e.to_string().contains("\"score\""), "{e}");
    }
    assert_eq!(columns(&tb, "people").await, ["id integer", "name text"]);
    assert_eq!(columns(&tb, "items").await, ["id bigint", "name text"]);
    assert_eq!(tb.count("SELECT count(*) FROM {s}.people").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_workers_adding_the_same_column_at_once_end_with_one() {
    let tb = TestBed::new("drift-race").await;
    tb.sql("CREATE TABLE {s}.people (id int PRIMARY KEY, name text)")
        .await;
    let rules = format!(
        "[tables.\"{}.people\"]\nheader = true\nnew_columns = \"add\"\n",
        tb.schema
    );
    // Two workers: each its own pool and prepared-table cache.
    let a = tb.load_context(&rules).await;
    let b = tb.load_context(&rules).await;
    for round in 0..4 {
        let col = format!("c{round}");
        let ka = tb.key(&format!("people/{}", cdc_name(round * 10)));
        let kb = tb.key(&format!("people/{}", cdc_name(round * 10 + 5)));
        tb.put(&ka, format!("Op,id,name,{col}\nI,{},a,x\n", round * 2))
            .await;
        tb.put(&kb, format!("Op,id,{col},name\nI,{},y,b\n", round * 2 + 1))
            .await;
        let (ma, mb) = (tb.message(&ka).await, tb.message(&kb).await);
        let (ra, rb) = tokio::join!(load_file(&a, &ma), load_file(&b, &mb));
        let mut reported = 0;
        for r in [ra, rb] {
            match r {
                Ok(LoadOutcome::Loaded(stats)) => reported += stats.columns_added.len(),
                other => panic!("round {round}: {other:?}"),
            }
        }
        assert_eq!(reported, 1, "round {round}: one worker added {col}");
        assert_eq!(
            tb.count(&format!(
                "SELECT count(*) FROM pg_attribute WHERE attrelid = '{{s}}.people'::regclass \
                 AND attname = '{col}' AND NOT attisdropped"
            ))
            .await,
            1
        );
        assert_eq!(
            tb.count(&format!(
                "SELECT count(*) FROM {{s}}.people WHERE {col} IS NOT NULL"
            ))
            .await,
            2
        );
    }
    assert_eq!(columns(&tb, "people").await.len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_without_a_header_cannot_name_its_new_columns_and_fails_saying_so() {
    let tb = TestBed::new("drift-unnamed").await;
    tb.sql("CREATE TABLE {s}.people (id int PRIMARY KEY, name text)")
        .await;
    let ctx = tb
        .load_context(&format!(
            "[tables.\"{}.people\"]\nnew_columns = \"add\"\n",
            tb.schema
        ))
        .await;
    // A CDC record with one field more than Op and the columns; a full-load record with one
    // field more than the columns (without "add" the latter would read as a bad operation).
    for (name, body) in [
        (cdc_name(0), "I,1,ann,a@x.org\n"),
        ("LOAD00000001.csv".to_owned(), "1,ann,a@x.org\n"),
    ] {
        let key = tb.key(&format!("people/{name}"));
        tb.put(&key, body).await;
        let e = load(&ctx, &tb, &key).await.unwrap_err();
        assert_eq!(e.class(), "column_count", "{e}");
        assert!(!e.is_transient());
        let text = e.to_string();
        assert!(
            text.contains("no header") && text.contains("names of the columns the table lacks"),
            "{text}"
        );
        let f = e.to_file_error();
        assert_eq!((f.record, f.line), (Some(1), Some(1)));
    }
    assert_eq!(columns(&tb, "people").await, ["id integer", "name text"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_column_names_are_refused_and_strange_ones_quoted() {
    let tb = TestBed::new("drift-hostile").await;
    tb.sql("CREATE TABLE {s}.people (id int PRIMARY KEY, name text, gone boolean)")
        .await;
    let s = &tb.schema;
    let ctx = tb
        .load_context(&format!(
            "[tables.\"{s}.people\"]\nheader = true\nnew_columns = \"add\"\n\
             soft_delete = \"gone\"\n"
        ))
        .await;
    let long = "x".repeat(64);
    for (header, rule) in [
        (
            "id,name,_sluice_version",
            "_sluice_* names are sluice's system columns",
        ),
        (
            "id,name,_sluice_evil",
            "_sluice_* names are sluice's system columns",
        ),
        (&format!("id,name,{long}"), "64 bytes long"),
        ("id,name,\"a\u{1}b\"", "control character U+0001"),
        ("id,name,\"line\nbreak\"", "control character U+000A"),
        ("id,name,xmin", "postgresql's system columns"),
        ("id,name,GONE", "soft_delete flag"),
    ] {
        let key = tb.key(&format!("people/{}", cdc_name(0)));
        tb.put(&key, format!("{header}\n1,ann,v\n")).await;
        let e = load(&ctx, &tb, &key).await.unwrap_err();
        assert_eq!(e.class(), "refused_column", "{header}: {e}");
        assert!(!e.is_transient());
        assert!(e.to_string().contains(rule), "{header}: {e}");
        assert_eq!(
            columns(&tb, "people").await,
            ["id integer", "name text", "gone boolean"]
        );
    }
    // Not hostile, only strange: added exactly as written, quoted; nothing else happens.
    let strange = "x\"); DROP TABLE people; --";
    let key = tb.key("people/LOAD00000001.csv");
    tb.put(
        &key,
        format!("id,name,\"{}\"\n1,ann,v\n", strange.replace('"', "\"\"")),
    )
    .await;
    load(&ctx, &tb, &key).await.expect("loaded");
    assert_eq!(
        columns(&tb, "people").await,
        [
            "id integer".to_owned(),
            "name text".to_owned(),
            "gone boolean".to_owned(),
            format!("{strange} text")
        ]
    );
    assert_eq!(
        tb.count(&format!(
            "SELECT count(*) FROM {{s}}.people WHERE \"{}\" = 'v'",
            strange.replace('"', "\"\"")
        ))
        .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_lists_the_columns_the_lake_has_that_the_target_lacks() {
    use std::io::Write;
    let tb = TestBed::new("drift-check").await;
    tb.sql(
        "CREATE TABLE {s}.people (id int PRIMARY KEY, name text);
         CREATE TABLE {s}.items (id bigint PRIMARY KEY, name text);
         CREATE TABLE {s}.fits (id int PRIMARY KEY, name text);",
    )
    .await;
    let s = &tb.schema;
    // A gzip CDC file with a header naming a column people lacks (new_columns = "fail"), a
    // Parquet file with three columns items lacks (new_columns = "add"), and a file that fits.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(b"Op,id,name,email\nI,1,ann,a@x.org\n")
        .unwrap();
    tb.put(
        &tb.key(&format!("people/{}.gz", cdc_name(0))),
        gz.finish().unwrap(),
    )
    .await;
    let (parquet, _) = write_parquet("drift");
    tb.put(&tb.key("items/LOAD00000001.parquet"), parquet).await;
    tb.put(&tb.key("fits/LOAD00000001.csv"), "id,name\n1,a\n")
        .await;
    let rules =
        format!("[defaults]\nheader = true\n[tables.\"{s}.items\"]\nnew_columns = \"add\"\n");
    let path = std::env::temp_dir().join(format!("{}-check.toml", tb.name));
    std::fs::write(&path, rules).unwrap();
    let out = std::process::Command::new(crate::support::binary("sluice-coordinator"))
        .arg(format!("--database-url={}", crate::support::database_url()))
        .arg(format!("--config={}", path.display()))
        .arg(format!("--source=s3://{}/{}", tb.bucket, tb.prefix))
        .env("SLUICE_LOG_FORMAT", "json")
        .args(["check", "--json"])
        .output()
        .expect("run check");
    let _ = std::fs::remove_file(&path);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}", String::from_utf8_lossy(&out.stderr));
    });
    assert_eq!(out.status.code(), Some(1), "{report:#}");
    let drift: Vec<(String, String, String)> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["rule"] == "new_columns")
        .map(|f| {
            (
                f["table"].as_str().unwrap().to_owned(),
                f["level"].as_str().unwrap().to_owned(),
                f["message"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(drift.len(), 2, "{drift:#?}");
    let (table, level, message) = &drift[0];
    assert_eq!(
        (table.as_str(), level.as_str()),
        (format!("{s}.items").as_str(), "note")
    );
    assert!(
        message.contains("lacks: \"score\", \"rating\", \"seen\"; the worker adds them"),
        "{message}"
    );
    let (table, level, message) = &drift[1];
    assert_eq!(
        (table.as_str(), level.as_str()),
        (format!("{s}.people").as_str(), "error")
    );
    assert!(
        message.contains("lacks: \"email\"; files like it fail"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_ownership_adding_fails_as_permission_denied_naming_the_grant() {
    let tb = TestBed::new("drift-grant").await;
    let url = std::env::var("SLUICE_TEST_RESTRICTED_URL")
        .expect("SLUICE_TEST_RESTRICTED_URL is not set: run the tests through .ci/run");
    // The README's grants without ownership: the system columns added by the owner.
    tb.sql(
        "CREATE TABLE {s}.people (id int PRIMARY KEY, name text, _sluice_version timestamptz,
             _sluice_file_time timestamptz, _sluice_record bigint, _sluice_file bigint);
         GRANT USAGE ON SCHEMA {s} TO sluice_restricted;
         GRANT SELECT, INSERT, UPDATE, DELETE ON {s}.people TO sluice_restricted;",
    )
    .await;
    for attempt in 0.. {
        let granted = tb
            .db
            .batch_execute(
                "DO $$ BEGIN EXECUTE format('GRANT CONNECT, TEMPORARY, CREATE ON DATABASE %I \
                 TO sluice_restricted', current_database()); END $$",
            )
            .await;
        match granted {
            Ok(()) => break,
            Err(e) if attempt < 5 => {
                eprintln!("grant: {e}; again");
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            Err(e) => panic!("grant: {e}"),
        }
    }
    // The state schema is the restricted role's own, as a worker running as it makes it.
    let pool = sluice_worker::db::pool(&url, 2, "sluice-test").expect("pool");
    sluice_worker::db::bootstrap(&pool, &tb.state_schema)
        .await
        .expect("bootstrap as the restricted role");
    let rules = format!(
        "[tables.\"{}.people\"]\nheader = true\nnew_columns = \"add\"\n",
        tb.schema
    );
    let ctx = LoadContext {
        pool,
        s3: tb.aws.s3.clone(),
        rules: std::sync::Arc::new(sluice_common::rules::Rules::parse("t.toml", &rules).unwrap()),
        state_schema: tb.state_schema.clone(),
        worker_id: format!("{}-restricted", tb.name),
        max_record_bytes: 1 << 20,
        max_decompressed_bytes: 1 << 32,
        prepared: Default::default(),
        schemas: None,
        merge_lock_timeout: sluice_worker::db::Waits::default().merge_lock,
    };
    let key = tb.key("people/LOAD00000001.csv");
    tb.put(&key, "id,name,email\n1,ann,a@x.org\n").await;
    let e = load(&ctx, &tb, &key).await.unwrap_err();
    assert_eq!(e.class(), "permission_denied", "{e}");
    assert!(!e.is_transient());
    let text = e.to_string();
    assert!(
        text.contains("adding columns \"email\"") && text.contains("must own the table"),
        "{text}"
    );
    assert_eq!(columns(&tb, "people").await, ["id integer", "name text"]);
    // Without the new column the same role loads.
    let key = tb.key("people/LOAD00000002.csv");
    tb.put(&key, "id,name\n1,ann\n").await;
    load(&ctx, &tb, &key).await.expect("loads without drift");
}
