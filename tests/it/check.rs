//! `sluice-coordinator check`, the real binary against real tables: a rules file with
//! deliberate misfits (and a lake with a stray table folder) is reported rule by rule with exit
//! status 1, checked as the workers' restricted role; rules that fit exit 0, warnings and notes
//! included.

use crate::support::{binary, database_url, TestBed};
use serde_json::Value;
use std::process::Command;

fn restricted_url() -> String {
    std::env::var("SLUICE_TEST_RESTRICTED_URL")
        .expect("SLUICE_TEST_RESTRICTED_URL is not set: run the tests through .ci/run")
}

/// Runs `sluice-coordinator <global flags> check <args>`; returns the exit status and stdout.
fn run_check(tb: &TestBed, url: &str, rules: &str, source: bool, args: &[&str]) -> (i32, String) {
    let path = std::env::temp_dir().join(format!("{}.toml", tb.name));
    std::fs::write(&path, rules).expect("write the rules file");
    let mut cmd = Command::new(binary("sluice-coordinator"));
    cmd.arg(format!("--database-url={url}"))
        .arg(format!("--config={}", path.display()))
        .env("SLUICE_LOG_FORMAT", "json")
        .env_remove("SLUICE_SOURCE");
    if source {
        cmd.arg(format!("--source=s3://{}/{}", tb.bucket, tb.prefix));
    }
    let out = cmd.arg("check").args(args).output().expect("run check");
    let _ = std::fs::remove_file(&path);
    let stdout = String::from_utf8(out.stdout).expect("utf-8 output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code().is_some(),
        "check was killed: {stdout}\n{stderr}"
    );
    assert!(
        !stderr.contains("Error:"),
        "check could not run: {stdout}\n{stderr}"
    );
    (out.status.code().unwrap(), stdout)
}

/// `(table, level, rule)` of every finding but `rule`, sorted.
fn findings(report: &Value, except_rule: &str) -> Vec<(String, String, String)> {
    let mut v: Vec<(String, String, String)> = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["rule"] != except_rule)
        .map(|f| {
            (
                f["table"].as_str().unwrap().to_owned(),
                f["level"].as_str().unwrap().to_owned(),
                f["rule"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    v.sort();
    v
}

/// The message of the finding of `table` and `rule` that contains `text`.
fn message<'a>(report: &'a Value, table: &str, rule: &str, text: &str) -> &'a str {
    let all: Vec<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["table"] == table && f["rule"] == rule)
        .map(|f| f["message"].as_str().unwrap())
        .collect();
    all.iter()
        .find(|m| m.contains(text))
        .copied()
        .unwrap_or_else(|| panic!("no {rule} finding of {table} contains {text:?}: {all:#?}"))
}

/// Grants the restricted role CONNECT on the database, unless it has it (tests running beside
/// this one grant it too: a concurrent GRANT on one database may fail once and is retried).
async fn allow_connect(tb: &TestBed) {
    for attempt in 0.. {
        let has: bool = tb
            .db
            .query_one(
                "SELECT has_database_privilege('sluice_restricted', current_database(), 'CONNECT')",
                &[],
            )
            .await
            .expect("privilege query")
            .get(0);
        if has {
            return;
        }
        match tb
            .db
            .batch_execute(
                "DO $$ BEGIN EXECUTE format('GRANT CONNECT ON DATABASE %I TO sluice_restricted', \
                 current_database()); END $$",
            )
            .await
        {
            Ok(()) => return,
            Err(e) if attempt < 5 => {
                eprintln!("grant connect: {e}; again");
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            Err(e) => panic!("grant connect: {e}"),
        }
    }
}

const SYSTEM: &str = "ADD COLUMN _sluice_version timestamptz, ADD COLUMN _sluice_file_time \
                      timestamptz, ADD COLUMN _sluice_record bigint, ADD COLUMN _sluice_file bigint";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_each_rule_that_does_not_fit_its_table() {
    let tb = TestBed::new("check").await;
    let s = tb.schema.clone();
    let hidden = format!("{s}_hidden");
    // A table of PostgreSQL's longest name, and a rule naming it with more: equal once cut to
    // 63 bytes, so the rule names a table that does not exist.
    let long = "l".repeat(63);
    tb.sql(&format!(
        "CREATE TABLE {{s}}.\"{long}\" (id int PRIMARY KEY, v text); ALTER TABLE {{s}}.\"{long}\" {SYSTEM};"
    ))
    .await;
    tb.sql(&format!(
        "CREATE TABLE {{s}}.orders (id int PRIMARY KEY, customer text NOT NULL, \
             amount numeric(12,2), note text NOT NULL DEFAULT '');
         CREATE TABLE {{s}}.nokey (id int, v text);
         CREATE TABLE {{s}}.people (_id text PRIMARY KEY, name text, extra json, deleted text);
         CREATE TABLE {{s}}.locked (id int PRIMARY KEY, v text);
         CREATE TABLE {{s}}.good (id int PRIMARY KEY, v text, dms_ts timestamp);
         CREATE VIEW {{s}}.v AS SELECT 1 AS id;
         ALTER TABLE {{s}}.orders {SYSTEM};
         ALTER TABLE {{s}}.nokey {SYSTEM};
         ALTER TABLE {{s}}.people {SYSTEM};
         ALTER TABLE {{s}}.good {SYSTEM};
         GRANT USAGE ON SCHEMA {{s}} TO sluice_restricted;
         GRANT SELECT, INSERT, UPDATE, DELETE ON {{s}}.orders, {{s}}.nokey, {{s}}.people, {{s}}.good
             TO sluice_restricted;
         GRANT SELECT ON {{s}}.locked TO sluice_restricted;
         CREATE SCHEMA \"{hidden}\";
         CREATE TABLE \"{hidden}\".t (id int PRIMARY KEY);"
    ))
    .await;
    // The lake: a file of a configured table, and a folder no rule names and no table matches.
    tb.put(
        &tb.key("good/LOAD00000001.csv"),
        "1,a,2024-10-29 11:34:01\n",
    )
    .await;
    tb.put(&tb.key("peoples/LOAD00000001.csv"), "x\n").await;
    let rules = format!(
        r#"
[tables."{s}.orders_src"]
target = "{s}.orders"
columns = ["id", "custmer", "amount"]
timestamp_column = "dms_ts"

[tables."{s}.nokey"]
null = ""

[tables."{s}.ordrs"]
null = ""

[tables."{s}.people"]
soft_delete = "deleted"
[tables."{s}.people".document]
paths = {{ name = "name", city = "address.city" }}
rescue = "extra"

[tables."{s}.locked"]
null = ""

[tables."{s}.good"]
timestamp_column = "dms_ts"

[tables."{s}.v"]
null = ""

[tables."src.hidden"]
target = "{hidden}.t"

[tables."{s}.{long}xyz"]
null = ""
"#
    );

    // As an operator connected as the tables' owner, checking the workers' role.
    let (code, out) = run_check(
        &tb,
        &database_url(),
        &rules,
        true,
        &["--role", "sluice_restricted", "--json"],
    );
    assert_eq!(code, 1, "errors fail the check: {out}");
    let r: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(r["role"], "sluice_restricted");
    let t = |name: &str| format!("{s}.{name}");
    let e = |table: String, rule: &str| (table, "error".to_owned(), rule.to_owned());
    let mut want = vec![
        e(t("locked"), "privileges"),
        e(t("locked"), "system columns"),
        e(t("nokey"), "primary key"),
        e(t("orders_src"), "columns"),
        e(t("orders_src"), "timestamp_column"),
        (t("orders_src"), "warning".into(), "columns".into()),
        e(t("ordrs"), "target"),
        e(t("people"), "soft_delete"),
        e(t("people"), "document.paths"),
        e(t("people"), "document.rescue"),
        e(t("peoples"), "target"),
        e(t("v"), "target"),
        e(t(&format!("{long}xyz")), "target"),
        e("src.hidden".into(), "privileges"),
        e("src.hidden".into(), "privileges"),
        e("src.hidden".into(), "system columns"),
    ];
    want.sort();
    assert_eq!(
        findings(&r, "lake"),
        want,
        "{}",
        serde_json::to_string_pretty(&r).unwrap()
    );
    assert_eq!(r["errors"], 15);
    assert_eq!(r["warnings"], 1);

    // Each message says what does not fit, and what exists instead.
    let orders = t("orders_src");
    message(
        &r,
        &orders,
        "columns",
        &format!("\"custmer\" in columns is not a column of {s}.orders; closest: customer"),
    );
    message(
        &r,
        &orders,
        "timestamp_column",
        "\"dms_ts\" is not among columns (id, custmer, amount)",
    );
    message(
        &r,
        &orders,
        "columns",
        "customer is NOT NULL without a default and not in columns",
    );
    message(&r, &t("nokey"), "primary key", "has no primary key");
    let ordrs = message(
        &r,
        &t("ordrs"),
        "target",
        &format!("target {s}.ordrs does not exist; closest: orders"),
    );
    assert!(ordrs.contains("key's own schema.table"), "{ordrs}");
    message(
        &r,
        &t("peoples"),
        "target",
        &format!("target {s}.peoples does not exist; closest: people"),
    );
    message(&r, &t("v"), "target", "is a view, not a table");
    message(
        &r,
        &t("people"),
        "soft_delete",
        &format!("soft_delete column deleted of {s}.people is text, not boolean"),
    );
    message(
        &r,
        &t("people"),
        "document.paths",
        &format!("\"city\" (from \"address.city\") is not a column of {s}.people"),
    );
    message(&r, &t("people"), "document.rescue", "is json, not jsonb");
    message(
        &r,
        &t("locked"),
        "privileges",
        &format!("role sluice_restricted lacks INSERT, UPDATE, DELETE on {s}.locked"),
    );
    message(
        &r,
        &t("locked"),
        "system columns",
        "role sluice_restricted does not own it, so the worker cannot add them",
    );
    message(
        &r,
        "src.hidden",
        "privileges",
        &format!("role sluice_restricted has no USAGE on schema {hidden}"),
    );
    message(
        &r,
        "src.hidden",
        "privileges",
        "lacks SELECT, INSERT, UPDATE, DELETE",
    );
    // The lake: configured tables without files get a note; the table with a file none.
    message(&r, &t("nokey"), "lake", "no file under");
    assert!(!r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["table"] == t("good").as_str()));
    let tables = r["tables"].as_array().unwrap();
    assert_eq!(tables.len(), 10, "{tables:#?}");
    let stray = tables.iter().find(|x| x["table"] == t("peoples")).unwrap();
    assert_eq!(stray["configured"], false);

    // The same as a table for a person, ending with the summary line.
    let (code, text) = run_check(
        &tb,
        &database_url(),
        &rules,
        true,
        &["--role", "sluice_restricted"],
    );
    assert_eq!(code, 1, "{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("TABLE")
            && lines[0].contains("LEVEL")
            && lines[0].ends_with("MESSAGE"),
        "{text}"
    );
    let line = |table: &str, level: &str, rule: &str| {
        lines
            .iter()
            .find(|l| {
                let cells: Vec<&str> = l.split_whitespace().collect();
                cells.len() > 4 && cells[0] == table && cells[2] == level && cells[3] == rule
            })
            .unwrap_or_else(|| panic!("no line {table} {level} {rule}: {text}"))
    };
    assert!(line(&t("good"), "ok", "-").ends_with("the rules fit"));
    assert!(line(&orders, "error", "columns").contains("closest: customer"));
    assert!(
        line(&t("locked"), "error", "privileges").contains("GRANT SELECT, INSERT, UPDATE, DELETE")
    );
    assert_eq!(
        *lines.last().unwrap(),
        "checked 10 tables as role sluice_restricted: 1 fit; 15 errors, 1 warning, 8 notes",
        "{text}"
    );
    // As the owner, the worker could add the system columns itself: that is a note.
    let (_, out) = run_check(&tb, &database_url(), &rules, false, &["--json"]);
    let owner: Value = serde_json::from_str(&out).unwrap();
    assert!(
        !findings(&owner, "lake").contains(&e(t("locked"), "system columns")),
        "{out}"
    );
    message(
        &owner,
        &t("locked"),
        "system columns",
        "the worker adds them on first use",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_passes_when_the_rules_fit_warnings_and_notes_included() {
    let tb = TestBed::new("checkok").await;
    let s = tb.schema.clone();
    allow_connect(&tb).await;
    tb.sql(&format!(
        "CREATE TABLE {{s}}.a (id int PRIMARY KEY, v text);
         CREATE TABLE {{s}}.b (k1 int, k2 text, v text NOT NULL, is_deleted boolean NOT NULL DEFAULT false,
             dms_ts timestamp, PRIMARY KEY (k1, k2));
         CREATE TABLE {{s}}.docs (_id text PRIMARY KEY, name text, city text, rest jsonb);
         CREATE TABLE {{s}}.versioned (id int PRIMARY KEY, v text);
         ALTER TABLE {{s}}.a {SYSTEM};
         ALTER TABLE {{s}}.b {SYSTEM};
         ALTER TABLE {{s}}.docs {SYSTEM};
         ALTER TABLE {{s}}.versioned {SYSTEM};
         GRANT USAGE ON SCHEMA {{s}} TO sluice_restricted;
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {{s}} TO sluice_restricted;"
    ))
    .await;
    let rules = format!(
        r#"
[tables."{s}.a"]
null = ""

[tables."src.b"]
target = "{s}.b"
columns = ["dms_ts", "K1", "k2"]
timestamp_column = "dms_ts"
soft_delete = "is_deleted"

[tables."{s}.docs"]
columns = ["_id", "_doc"]
[tables."{s}.docs".document]
paths = {{ name = "name", city = "address.city" }}
rescue = "rest"

[tables."{s}.versioned"]
timestamp_column = "commit_ts"
"#
    );
    // Connected as the workers' role itself.
    let (code, out) = run_check(&tb, &restricted_url(), &rules, false, &["--json"]);
    assert_eq!(code, 0, "warnings and notes alone do not fail: {out}");
    let r: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(r["role"], "sluice_restricted");
    let mut want: Vec<(String, String, String)> = vec![
        ("src.b".into(), "warning".into(), "columns".into()),
        (
            format!("{s}.versioned"),
            "note".into(),
            "timestamp_column".into(),
        ),
    ];
    want.sort();
    assert_eq!(findings(&r, ""), want, "{out}");
    message(&r, "src.b", "columns", "v is NOT NULL without a default");
    message(
        &r,
        &format!("{s}.versioned"),
        "timestamp_column",
        "DMS writes it as the first field after Op",
    );
    let (code, text) = run_check(&tb, &restricted_url(), &rules, false, &[]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(
        text.lines().last().unwrap(),
        "checked 4 tables as role sluice_restricted: 4 fit; 0 errors, 1 warning, 1 note",
        "{text}"
    );
}
