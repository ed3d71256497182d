//! Security that must hold: TLS to PostgreSQL with the server verified, a worker role with only
//! the documented grants, hostile keys refused before SQL, every dependency accounted for.

use crate::support::{database_url, TestBed};
use sluice_common::manifest::Status;

fn ca() -> String {
    std::env::var("SLUICE_TEST_PG_CA")
        .expect("SLUICE_TEST_PG_CA is not set: run the tests through .ci/run")
}

/// The local database URL with `host` instead of 127.0.0.1 and `query` appended.
fn url_with(host: &str, query: &str) -> String {
    format!("{}?{query}", database_url().replace("127.0.0.1", host))
}

async fn connect_error(url: &str) -> String {
    let pool = sluice_worker::db::pool(url, 1, "sluice-test").expect("pool");
    match pool.get().await {
        Ok(_) => panic!("connected to {url}"),
        Err(e) => format!("{e:?}"),
    }
}

async fn encrypted(url: &str) -> bool {
    let pool = sluice_worker::db::pool(url, 1, "sluice-test").expect("pool");
    let client = pool.get().await.unwrap_or_else(|e| panic!("{url}: {e:?}"));
    client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_verify_full_checks_the_server_and_refuses_a_wrong_name() {
    let tb = TestBed::new("tls").await;
    tb.sql("CREATE TABLE {s}.t (id int PRIMARY KEY, v text)")
        .await;
    let verified = url_with(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={}", ca()),
    );
    assert!(encrypted(&verified).await);
    // A file loads end to end over the verified connection.
    let key = tb.key("t/LOAD00000001.csv");
    let etag = tb.put(&key, "1,secret over tls\n").await;
    tb.scan().await;
    let arg = format!("--database-url={verified}");
    let run = tb.drain(&[arg.as_str()]).await;
    assert_eq!(run.loaded, 1, "{run:?}");
    assert_eq!(tb.status(&key, &etag).await, Some(Status::Loaded));

    // The certificate names localhost: connecting as 127.0.0.1 is refused.
    let e = connect_error(&url_with(
        "127.0.0.1",
        &format!("sslmode=verify-full&sslrootcert={}", ca()),
    ))
    .await;
    assert!(e.contains("NotValidForName"), "{e}");
    // Without a CA a verifying mode is refused before connecting, as libpq does (never the
    // system's public roots for verify-ca); with the system's roots the test CA is unknown.
    for mode in ["verify-full", "verify-ca"] {
        let refused = sluice_worker::db::pool(
            &url_with("localhost", &format!("sslmode={mode}")),
            1,
            "sluice-test",
        )
        .err()
        .unwrap_or_else(|| panic!("sslmode={mode} without sslrootcert accepted"))
        .to_string();
        assert!(
            refused.contains(&format!("sslmode={mode} needs the root certificates")),
            "{refused}"
        );
    }
    assert!(sluice_worker::db::pool(
        &url_with("localhost", "sslrootcert=system&sslmode=verify-ca"),
        1,
        "t"
    )
    .is_err());
    let e = connect_error(&url_with("localhost", "sslrootcert=system")).await;
    assert!(
        e.contains("UnknownIssuer") || e.contains("no root certificate"),
        "{e}"
    );
    // verify-ca checks the chain only; require encrypts without checking; disable does not.
    assert!(
        encrypted(&url_with(
            "127.0.0.1",
            &format!("sslmode=verify-ca&sslrootcert={}", ca())
        ))
        .await
    );
    assert!(encrypted(&url_with("127.0.0.1", "sslmode=require")).await);
    assert!(!encrypted(&url_with("127.0.0.1", "sslmode=disable")).await);
    // No password in any of these errors.
    let password = database_url()
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('@'))
        .and_then(|(auth, _)| auth.split_once(':'))
        .map(|(_, p)| p.to_owned())
        .unwrap();
    assert!(!e.contains(&password));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_with_only_the_documented_grants_loads_and_nothing_else() {
    let tb = TestBed::new("grants").await;
    let url = std::env::var("SLUICE_TEST_RESTRICTED_URL")
        .expect("SLUICE_TEST_RESTRICTED_URL is not set: run the tests through .ci/run");
    // The README's grants, given by the tables' owner; the system columns added by the owner.
    tb.sql(
        "CREATE TABLE {s}.t (id int PRIMARY KEY, v text);
         CREATE TABLE {s}.secret (id int PRIMARY KEY, v text);
         ALTER TABLE {s}.t ADD COLUMN _sluice_version timestamptz, ADD COLUMN _sluice_file_time timestamptz,
             ADD COLUMN _sluice_record bigint, ADD COLUMN _sluice_file bigint;
         ALTER TABLE {s}.secret ADD COLUMN _sluice_version timestamptz, ADD COLUMN _sluice_file_time timestamptz,
             ADD COLUMN _sluice_record bigint, ADD COLUMN _sluice_file bigint;
         GRANT CONNECT, TEMPORARY, CREATE ON DATABASE sluice TO sluice_restricted;
         GRANT USAGE ON SCHEMA {s} TO sluice_restricted;
         GRANT SELECT, INSERT, UPDATE, DELETE ON {s}.t TO sluice_restricted;",
    )
    .await;
    assert_eq!(
        tb.rows("SELECT rolsuper::text, rolcreaterole::text, rolcreatedb::text FROM pg_roles WHERE rolname = 'sluice_restricted'")
            .await,
        vec![vec![Some("false".into()), Some("false".into()), Some("false".into())]]
    );
    let ok = tb.key("t/LOAD00000001.csv");
    let eok = tb.put(&ok, "1,a\n2,b\n").await;
    let denied = tb.key("secret/LOAD00000001.csv");
    let edenied = tb.put(&denied, "1,x\n").await;
    tb.scan().await;
    let state = format!("--state-schema={}_r", tb.state_schema);
    let db = format!("--database-url={url}");
    tb.drain(&[db.as_str(), state.as_str()]).await;
    assert_eq!(tb.status(&ok, &eok).await, Some(Status::Loaded));
    assert_eq!(tb.count("SELECT count(*) FROM {s}.t").await, 2);
    let e = tb.item(&denied, &edenied).await.error.unwrap();
    assert_eq!(e.class, "permission_denied", "{e:?}");
    assert!(e.permanent);
    assert!(e.message.contains("permission denied"), "{}", e.message);
    assert_eq!(tb.count("SELECT count(*) FROM {s}.secret").await, 0);

    // A worker told which schemas it may load into refuses any other before any SQL names it.
    let other = tb.key("t/LOAD00000002.csv");
    let eother = tb.put(&other, "3,c\n").await;
    tb.scan().await;
    let schemas = "--schemas=warehouse,staging";
    tb.drain(&[db.as_str(), state.as_str(), schemas]).await;
    let e = tb.item(&other, &eother).await.error.unwrap();
    assert_eq!(e.class, "schema_not_allowed", "{e:?}");
    assert!(e.message.contains("warehouse, staging"), "{}", e.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_keys_are_refused_before_sql() {
    let tb = TestBed::new("keys").await;
    let exact = "a".repeat(63);
    tb.sql(&format!(
        "CREATE TABLE {{s}}.\"{exact}\" (id int PRIMARY KEY, v text)"
    ))
    .await;
    let good = tb.key(&format!("{exact}/LOAD00000001.csv"));
    let egood = tb.put(&good, "1,a\n").await;
    let hostile = [
        // Longer than PostgreSQL's 63 bytes, equal to an existing table once truncated.
        tb.key(&format!("{exact}bbbbbbb/LOAD00000001.csv")),
        format!("{}../../etc/LOAD00000001.csv", tb.prefix),
        tb.key("../LOAD00000001.csv"),
        tb.key(&format!("{}/LOAD00000001.csv", "x".repeat(900))),
        tb.key("t'; DROP TABLE x; --/LOAD00000001.csv"),
    ];
    let mut etags = Vec::new();
    for k in &hostile {
        etags.push(tb.put(k, "1,x\n").await);
    }
    tb.scan().await;
    tb.drain(&[]).await;
    assert_eq!(tb.status(&good, &egood).await, Some(Status::Loaded));
    for (k, e) in hostile.iter().zip(&etags) {
        let item = tb.item(k, e).await;
        assert_eq!(item.status, Some(Status::Failed), "{k}");
        let err = item.error.unwrap();
        assert_eq!(err.class, "unknown_table", "{k}: {err:?}");
        assert!(err.permanent);
    }
    assert_eq!(
        tb.count(&format!("SELECT count(*) FROM {{s}}.\"{exact}\""))
            .await,
        1,
        "the truncated-name key did not reach the 63-byte table"
    );
}

#[test]
fn every_dependency_has_a_reason_and_backoff_stays_in_the_retry_module() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let deps_section = readme
        .split("## Dependencies")
        .nth(1)
        .expect("README has a Dependencies section");
    let table = deps_section.split("\n## ").next().unwrap();
    let workspace_deps = manifest
        .split("[workspace.dependencies]")
        .nth(1)
        .unwrap()
        .split("\n[")
        .next()
        .unwrap();
    let mut names = Vec::new();
    for line in workspace_deps.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name = line.split('=').next().unwrap().trim();
        if !name.starts_with("sluice-") {
            names.push(name.to_owned());
        }
    }
    assert!(names.len() > 10, "{names:?}");
    for name in &names {
        assert!(
            table.contains(&format!("`{name}`")),
            "dependency {name} has no line in the README's Dependencies table"
        );
    }
    // Every crate takes its dependencies from the workspace list, so the list is complete.
    for krate in ["common", "coordinator", "worker", "tests"] {
        let text = std::fs::read_to_string(root.join(krate).join("Cargo.toml")).unwrap();
        let mut in_deps = false;
        for line in text.lines().map(str::trim) {
            if line.starts_with('[') {
                in_deps = line.contains("dependencies");
                continue;
            }
            if in_deps && !line.is_empty() && !line.starts_with('#') {
                assert!(
                    line.replace(' ', "").contains("workspace=true"),
                    "{krate}/Cargo.toml takes a dependency outside the workspace list: {line}"
                );
            }
        }
    }
    // `backoff` carries an unmaintained-crate advisory: it stays in common/src/retry.rs.
    let mut users = Vec::new();
    for dir in ["common/src", "coordinator/src", "worker/src"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                if text.contains("backoff::") {
                    users.push(path.strip_prefix(&root).unwrap().display().to_string());
                }
            }
        }
    }
    assert_eq!(users, vec!["common/src/retry.rs".to_owned()]);
}
