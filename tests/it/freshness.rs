//! Silent tables: a table that stops receiving files turns `late`, then `silent`; a cadence
//! learned from hourly files; `never_seen` for a configured table with no file; `status --json`
//! and `skipped --json` carry them. Time is driven from the files' own landing times (each
//! report is computed "as of" a time after them), never by sleeping.

use crate::support::TestBed;
use sluice_common::manifest::NewFile;
use sluice_common::timefmt;
use sluice_coordinator::ops::reconcile;
use sluice_coordinator::ops::status;
use sluice_coordinator::ops::Scope;
use std::time::Duration;
use time::OffsetDateTime;

fn status_opts() -> status::Options {
    status::Options {
        scope: Scope::default(),
        window: Duration::from_secs(600),
        full: false,
    }
}

fn skipped_opts() -> reconcile::Options {
    reconcile::Options {
        scope: Scope::default(),
        check_loaded: false,
        stuck_after: Duration::from_secs(86_400),
    }
}

/// The freshness entry of `table` in a status's JSON.
fn entry(json: &serde_json::Value, field: &str, table: &str) -> Option<serde_json::Value> {
    json[field]
        .as_array()
        .unwrap_or_else(|| panic!("{field} is a list: {json}"))
        .iter()
        .find(|t| t["table"] == table)
        .cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_that_stops_receiving_files_turns_late_then_silent() {
    let tb = TestBed::new("fresh-silent").await;
    // t receives a file; quiet and m (the target of src.mapped) never do.
    tb.sql("CREATE TABLE {s}.t (id int PRIMARY KEY, v text); CREATE TABLE {s}.quiet (id int PRIMARY KEY); CREATE TABLE {s}.m (id int PRIMARY KEY)")
        .await;
    let key = tb.key("t/LOAD00000001.csv");
    let etag = tb.put(&key, "1,a\n").await;
    tb.scan().await;
    let run = tb.drain(&[]).await;
    assert_eq!(run.loaded, 1, "{run:?}");
    let landed = timefmt::parse(&tb.item(&key, &etag).await.last_modified).unwrap();
    let (t, nothing) = (format!("{}.t", tb.schema), format!("{}.nothing", tb.schema));
    let rules = format!(
        "[defaults]\nexpect_every = \"1h\"\n[tables.\"{t}\"]\nnull = \"NULL\"\n[tables.\"{nothing}\"]\nnull = \"NULL\"\n[tables.\"src.mapped\"]\ntarget = \"{}.m\"\n",
        tb.schema
    );
    let mut ops = tb.ops(&rules);
    let at = |secs: i64| landed + time::Duration::seconds(secs);

    // Half an hour after its last file: fresh, loaded, nothing behind.
    let r = status::collect_at(&ops, &status_opts(), at(1800))
        .await
        .unwrap();
    let json = serde_json::to_value(&r).unwrap();
    let f = entry(&json, "freshness", &t).expect("t in status --json");
    assert_eq!(f["state"], "fresh", "{f}");
    assert_eq!(f["expectation"], "configured", "{f}");
    assert_eq!(f["expect_every_secs"], 3600, "{f}");
    assert_eq!(f["since_landed_secs"], 1800, "{f}");
    assert_eq!(f["newest_loaded_landed"], timefmt::format(landed), "{f}");
    assert_eq!(f["behind_secs"], 0, "{f}");
    assert!(f["since_loaded_secs"].as_u64().is_some(), "{f}");
    let n = entry(&json, "freshness", &nothing).expect("the configured table without files");
    assert_eq!(n["state"], "never_seen", "{n}");
    let quiet = format!("{}.quiet", tb.schema);
    assert!(
        entry(&json, "freshness", &quiet).is_none(),
        "no --schemas: {json}"
    );
    // With the allowed schemas, their tables without any file are never_seen too; a table the
    // rules map a source table to is named by that source table.
    ops.schemas = vec![tb.schema.clone()];
    let r = status::collect_at(&ops, &status_opts(), at(1800))
        .await
        .unwrap();
    let json = serde_json::to_value(&r).unwrap();
    for table in [quiet.as_str(), "src.mapped"] {
        let e = entry(&json, "freshness", table).unwrap_or_else(|| panic!("{table}: {json}"));
        assert_eq!(e["state"], "never_seen", "{e}");
    }
    assert!(
        entry(&json, "freshness", &format!("{}.m", tb.schema)).is_none(),
        "{json}"
    );
    assert_eq!(entry(&json, "freshness", &t).unwrap()["state"], "fresh");
    assert!(status::format(&r).contains("never_seen"));
    let s = reconcile::report_at(&ops, &skipped_opts(), at(1800))
        .await
        .unwrap();
    let sj = serde_json::to_value(&s).unwrap();
    assert!(
        entry(&sj, "tables", &t).is_none(),
        "a fresh table is not listed: {sj}"
    );
    assert_eq!(
        entry(&sj, "tables", &nothing).unwrap()["state"],
        "never_seen"
    );
    assert_eq!(entry(&sj, "tables", &quiet).unwrap()["state"], "never_seen");

    // Past the expectation: late; past three times it: silent.
    for (secs, state) in [
        (3600, "fresh"),
        (3601, "late"),
        (3 * 3600, "late"),
        (3 * 3600 + 1, "silent"),
    ] {
        let r = status::collect_at(&ops, &status_opts(), at(secs))
            .await
            .unwrap();
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(
            entry(&json, "freshness", &t).unwrap()["state"],
            state,
            "{secs}s"
        );
    }
    let s = reconcile::report_at(&ops, &skipped_opts(), at(3 * 3600 + 1))
        .await
        .unwrap();
    let sj = serde_json::to_value(&s).unwrap();
    let listed = entry(&sj, "tables", &t).expect("a silent table in skipped --json");
    assert_eq!(listed["state"], "silent", "{listed}");
    assert_eq!(listed["silent_after_secs"], 3 * 3600, "{listed}");
    assert!(reconcile::format(&s).contains("silent"));
    // Every file is loaded, yet `--fail-if-any` fails: the table went silent.
    assert_eq!(s.entries.iter().filter(|e| !e.key.is_empty()).count(), 0);
    assert_eq!(reconcile::exit_code(&s, true), reconcile::EXIT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cadence_is_learned_from_hourly_files() {
    let tb = TestBed::new("fresh-learned").await;
    let table = format!("{}.h", tb.schema);
    // A day of hourly CDC files as the manifest recorded them (their S3 landing times).
    let first = OffsetDateTime::now_utc() - time::Duration::days(2);
    let mut last = first;
    for h in 0..24 {
        last = first + time::Duration::hours(h);
        let recorded = tb
            .manifest
            .record_discovered(&NewFile {
                bucket: tb.bucket.clone(),
                key: tb.key(&format!("h/2026{h:02}-cdc.csv")),
                etag: format!("e{h}"),
                size: 10,
                last_modified: timefmt::format(last),
                table: table.clone(),
                kind: "cdc".into(),
            })
            .await
            .unwrap();
        assert!(recorded);
    }
    let ops = tb.ops("");
    let at = |secs: i64| last + time::Duration::seconds(secs);
    let r = status::collect_at(&ops, &status_opts(), at(1800))
        .await
        .unwrap();
    let json = serde_json::to_value(&r).unwrap();
    let f = entry(&json, "freshness", &table).expect("h in status --json");
    assert_eq!(f["expectation"], "learned", "{f}");
    assert_eq!(f["expect_every_secs"], 3600, "{f}");
    assert_eq!(f["learned_from_gaps"], 23, "{f}");
    assert_eq!(f["state"], "fresh", "{f}");
    // Nothing is loaded: the warehouse is behind by the oldest file's age.
    assert_eq!(f["behind_secs"], 23 * 3600 + 1800, "{f}");
    assert!(status::format(&r).contains("1h 0m (learned)"));
    let r = status::collect_at(&ops, &status_opts(), at(4 * 3600))
        .await
        .unwrap();
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(
        entry(&json, "freshness", &table).unwrap()["state"],
        "silent"
    );
}

/// Runs `sluice-coordinator check --json` with `rules`; returns the exit status, stdout and
/// stderr.
fn check(tb: &TestBed, rules: &str) -> (Option<i32>, String, String) {
    let path = std::env::temp_dir().join(format!("{}-check.toml", tb.name));
    std::fs::write(&path, rules).expect("write the rules file");
    let out = std::process::Command::new(crate::support::binary("sluice-coordinator"))
        .arg(format!("--database-url={}", crate::support::database_url()))
        .arg(format!("--config={}", path.display()))
        .env("SLUICE_LOG_FORMAT", "json")
        .env_remove("SLUICE_SOURCE")
        .args(["check", "--json"])
        .output()
        .expect("run check");
    let _ = std::fs::remove_file(&path);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_refuses_a_bad_expectation_and_one_for_a_missing_table() {
    let tb = TestBed::new("fresh-check").await;
    tb.sql("CREATE TABLE {s}.t (id int PRIMARY KEY, v text)")
        .await;
    let s = &tb.schema;
    // A value that does not parse: an error naming the file, the table and the value, before
    // anything is checked.
    let (code, out, err) = check(
        &tb,
        &format!("[tables.\"{s}.t\"]\nexpect_every = \"1 hour\"\n"),
    );
    assert_eq!(code, Some(1), "{out}\n{err}");
    assert!(out.is_empty(), "{out}");
    assert!(
        err.contains(&format!(
            "{s}.t: expect_every \"1 hour\" must be a whole number"
        )),
        "{err}"
    );
    // An expectation for a table that does not exist: the check fails on it.
    let (code, out, err) = check(
        &tb,
        &format!("[tables.\"{s}.t\"]\nexpect_every = \"1h\"\n[tables.\"{s}.ghost\"]\nexpect_every = \"1h\"\n"),
    );
    assert_eq!(code, Some(1), "{out}\n{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let errors: Vec<(String, String)> = r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["level"] == "error")
        .map(|f| {
            (
                f["table"].as_str().unwrap().to_owned(),
                f["rule"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        errors,
        vec![(format!("{s}.ghost"), "target".to_owned())],
        "{out}"
    );
}
