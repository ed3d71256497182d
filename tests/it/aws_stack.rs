//! The AWS deployment, as far as the local services go. `infra/aws/sluice.yaml` is created as a
//! CloudFormation stack in moto (by `infra/aws/moto_stack.py`); then the coordinator and a worker
//! run the way their ECS tasks would: the binaries, started through the image's entrypoint with
//! the command, environment and secret of the task definitions the stack registered, against the
//! queue and manifest table the stack created, from an upload to rows in PostgreSQL.
//!
//! moto skips the resource types it does not implement (the Application Auto Scaling target and
//! policies, the CloudWatch alarms, the events queue policy); cfn-lint and `infra/aws/test_template.py` check those.

use crate::support::{binary, cdc_name, database_url, TestBed};
use serde_json::Value;
use sluice_common::manifest::Status;
use sluice_common::store::ManifestStore;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the repository")
        .to_owned()
}

fn entrypoint() -> PathBuf {
    repo_root().join("infra/docker/entrypoint.sh")
}

/// Host, port, database, user and password of the local PostgreSQL.
struct Db {
    host: String,
    port: u16,
    name: String,
    user: String,
    password: String,
}

fn local_db() -> Db {
    let cfg: tokio_postgres::Config = database_url().parse().expect("SLUICE_DATABASE_URL");
    let host = match &cfg.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(h) => h.clone(),
        other => panic!("the test needs a TCP host, not {other:?}"),
    };
    Db {
        host,
        port: cfg.get_ports().first().copied().unwrap_or(5432),
        name: cfg.get_dbname().expect("dbname").to_owned(),
        user: cfg.get_user().expect("user").to_owned(),
        password: String::from_utf8(cfg.get_password().expect("password").to_vec()).unwrap(),
    }
}

/// Creates the stack in moto; returns what `moto_stack.py` prints.
async fn create_stack(tb: &TestBed, db: &Db) -> Value {
    let out = tokio::process::Command::new("python3")
        .arg(repo_root().join("infra/aws/moto_stack.py"))
        .args(["--stack-name", &tb.name, "--bucket", &tb.bucket])
        .args(["--prefix", &tb.prefix, "--concurrency", "2"])
        .args(["--schemas", &tb.schema])
        .args(["--db-host", &db.host, "--db-port", &db.port.to_string()])
        .args(["--db-name", &db.name, "--db-user", &db.user])
        .env("SLUICE_TEST_DB_PASSWORD", &db.password)
        .output()
        .await
        .expect("run python3 infra/aws/moto_stack.py");
    assert!(
        out.status.success(),
        "moto_stack.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("moto_stack.py prints JSON")
}

fn text(v: &Value) -> String {
    // moto hands numbers back as numbers where ECS would give strings.
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A started task, killed if the test ends (or fails) before it stopped.
struct Task(Child);

impl Drop for Task {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Starts a task's container command on this machine: through the image's entrypoint, with an
/// environment made only of the task definition's, its resolved secrets, and `local` (what
/// differs from ECS: moto instead of AWS, and test isolation). Standard error goes to `log`.
fn start_task(
    task: &Value,
    secrets: &[(&str, &str)],
    local: &[(&str, String)],
    log: &Path,
) -> Task {
    let command: Vec<String> = task["command"]
        .as_array()
        .expect("command")
        .iter()
        .map(text)
        .collect();
    let bin_dir = binary("sluice-worker").parent().unwrap().to_owned();
    let mut cmd = Command::new(entrypoint());
    cmd.args(&command)
        .env_clear()
        .env("PATH", format!("{}:/usr/bin:/bin", bin_dir.display()));
    for (k, v) in task["environment"].as_object().expect("environment") {
        cmd.env(k, text(v));
    }
    for (k, v) in secrets.iter().copied() {
        cmd.env(k, v);
    }
    for (k, v) in local {
        cmd.env(k, v);
    }
    let child = cmd
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("log file"))
        .spawn()
        .unwrap_or_else(|e| panic!("start {command:?}: {e}"));
    Task(child)
}

/// SIGTERM, as ECS stops a task; the exit status within `limit`.
async fn stop(task: &mut Task, limit: Duration) -> ExitStatus {
    let child = &mut task.0;
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(status.success());
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("did not stop within {limit:?} of SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A DynamoDB table's layout, in a form two tables can be compared by.
async fn table_layout(tb: &TestBed, table: &str) -> Value {
    let d = tb
        .aws
        .dynamodb
        .describe_table()
        .table_name(table)
        .send()
        .await
        .expect("describe_table");
    let t = d.table().expect("table");
    let keys = |k: &[aws_sdk_dynamodb::types::KeySchemaElement]| -> Vec<(String, String)> {
        k.iter()
            .map(|e| {
                (
                    e.attribute_name().to_owned(),
                    e.key_type().as_str().to_owned(),
                )
            })
            .collect()
    };
    let attrs: BTreeSet<(String, String)> = t
        .attribute_definitions()
        .iter()
        .map(|a| {
            (
                a.attribute_name().to_owned(),
                a.attribute_type().as_str().to_owned(),
            )
        })
        .collect();
    let gsis: BTreeMap<String, Value> = t
        .global_secondary_indexes()
        .iter()
        .map(|g| {
            let projection = g
                .projection()
                .and_then(|p| p.projection_type())
                .map(|p| p.as_str().to_owned());
            (
                g.index_name().unwrap_or_default().to_owned(),
                serde_json::json!({ "keys": keys(g.key_schema()), "projection": projection }),
            )
        })
        .collect();
    let billing = t
        .billing_mode_summary()
        .and_then(|b| b.billing_mode())
        .map(|b| b.as_str().to_owned());
    serde_json::json!({
        "attributes": attrs,
        "keys": keys(t.key_schema()),
        "indexes": gsis,
        "billing": billing,
    })
}

async fn queue_attributes(tb: &TestBed, url: &str) -> BTreeMap<String, String> {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let out = tb
        .aws
        .sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(A::All)
        .send()
        .await
        .expect("queue attributes");
    out.attributes()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k.as_str().to_owned(), v))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stack_in_moto_runs_coordinator_and_worker_end_to_end() {
    // The test bed gives a bucket (the lake DMS writes to, not part of the stack) and schemas;
    // its own queue and manifest table are used only as the reference layout below.
    let tb = TestBed::new("stack").await;
    let db = local_db();
    let stack = create_stack(&tb, &db).await;
    let outputs = &stack["outputs"];
    let out = |k: &str| {
        outputs[k]
            .as_str()
            .unwrap_or_else(|| panic!("stack output {k} missing: {outputs}"))
            .to_owned()
    };

    // moto made everything but what it does not implement.
    let skipped: BTreeSet<String> = stack["skipped"]
        .as_object()
        .unwrap()
        .values()
        .map(text)
        .collect();
    let unimplemented: BTreeSet<String> = [
        "AWS::ApplicationAutoScaling::ScalableTarget",
        "AWS::ApplicationAutoScaling::ScalingPolicy",
        "AWS::CloudWatch::Alarm",
        // The events queue's policy (test_template.py checks it).
        "AWS::SQS::QueuePolicy",
    ]
    .map(str::to_owned)
    .into();
    assert!(skipped.is_subset(&unimplemented), "skipped: {skipped:?}");
    let created = stack["created"].as_object().unwrap();
    for r in [
        "WorkQueue",
        "DeadLetterQueue",
        "ManifestTable",
        "WorkerTaskRole",
        "CoordinatorTaskRole",
        "WorkerExecutionRole",
        "CoordinatorExecutionRole",
        "Cluster",
        "WorkerTaskDefinition",
        "CoordinatorTaskDefinition",
        "WorkerService",
        "CoordinatorService",
        "LogGroup",
        "TaskSecurityGroup",
        "AlarmTopic",
    ] {
        assert!(created.contains_key(r), "{r} not created: {created:?}");
    }

    // The stack's manifest table is laid out exactly as ManifestStore::ensure_table makes it.
    let table = out("ManifestTableName");
    assert_eq!(
        table_layout(&tb, &table).await,
        table_layout(&tb, &tb.name).await
    );

    // The queue: visibility as the worker's, redrive to the DLQ above the attempt limit, and
    // the DLQ keeping messages longer than the queue.
    let q = queue_attributes(&tb, &out("QueueUrl")).await;
    let dlq = queue_attributes(&tb, &out("DeadLetterQueueUrl")).await;
    assert_eq!(q["VisibilityTimeout"], "120");
    let redrive: Value = serde_json::from_str(&q["RedrivePolicy"]).expect("redrive policy");
    assert_eq!(text(&redrive["deadLetterTargetArn"]), dlq["QueueArn"]);
    assert_eq!(text(&redrive["maxReceiveCount"]), "10");
    let retention =
        |a: &BTreeMap<String, String>| -> u64 { a["MessageRetentionPeriod"].parse().unwrap() };
    assert!(retention(&dlq) > retention(&q), "{dlq:?} vs {q:?}");

    // What the task definitions say.
    let worker_task = &stack["worker"];
    let coordinator_task = &stack["coordinator"];
    let secret_ref = format!("{}:password::", text(&stack["secret_arn"]));
    assert_eq!(
        text(&worker_task["secrets"]["SLUICE_DB_PASSWORD"]),
        secret_ref
    );
    assert!(coordinator_task["secrets"].as_object().unwrap().is_empty());
    assert_eq!(
        text(&worker_task["environment"]["SLUICE_QUEUE_URL"]),
        out("QueueUrl")
    );
    assert_eq!(
        text(&coordinator_task["environment"]["SLUICE_MANIFEST_TABLE"]),
        table
    );
    assert_eq!(
        text(&worker_task["environment"]["SLUICE_SCHEMAS"]),
        tb.schema
    );

    // The lake: a full load and a CDC file for one table.
    tb.sql("CREATE TABLE {s}.orders (id int PRIMARY KEY, customer text, amount numeric(10,2))")
        .await;
    let load_key = tb.key("orders/LOAD00000001.csv");
    let load_etag = tb
        .put(
            &load_key,
            "1,Ada,10.50\n2,Bob,NULL\n3,\"Cy, \"\"the\"\" third\",3.00\n",
        )
        .await;
    let cdc_key = tb.key(&format!("orders/{}", cdc_name(60_000)));
    let cdc_etag = tb
        .put(&cdc_key, "U,2,Bob,20.00\nD,3,NULL,NULL\nI,4,Dee,4.00\n")
        .await;

    // Both tasks, as ECS would start them. Differences from ECS, all here: the AWS endpoint
    // and credentials are moto's (ECS gives the task role's), the ledger schema is the test's
    // own (isolation in the shared PostgreSQL), and the secret is resolved by the test (ECS
    // resolves `secret_ref`; the value is the password moto_stack.py stored there).
    let local = vec![
        (
            "AWS_ENDPOINT_URL",
            std::env::var("AWS_ENDPOINT_URL").unwrap(),
        ),
        (
            "AWS_ACCESS_KEY_ID",
            std::env::var("AWS_ACCESS_KEY_ID").unwrap(),
        ),
        (
            "AWS_SECRET_ACCESS_KEY",
            std::env::var("AWS_SECRET_ACCESS_KEY").unwrap(),
        ),
        ("SLUICE_STATE_SCHEMA", tb.state_schema.clone()),
    ];
    let logs = std::env::temp_dir().join(&tb.name);
    std::fs::create_dir_all(&logs).unwrap();
    let mut coordinator = start_task(coordinator_task, &[], &local, &logs.join("coordinator.log"));
    let mut worker = start_task(
        worker_task,
        &[("SLUICE_DB_PASSWORD", &db.password)],
        &local,
        &logs.join("worker.log"),
    );

    let manifest = ManifestStore::new(tb.aws.dynamodb.clone(), table.clone());
    let started = Instant::now();
    loop {
        let load = manifest.get(&load_key, &load_etag).await.unwrap();
        let cdc = manifest.get(&cdc_key, &cdc_etag).await.unwrap();
        let statuses = (
            load.as_ref().and_then(|i| i.status),
            cdc.as_ref().and_then(|i| i.status),
        );
        if statuses == (Some(Status::Loaded), Some(Status::Loaded)) {
            break;
        }
        if let Some(status) = worker.0.try_wait().unwrap() {
            panic!(
                "worker exited ({status}): {}",
                std::fs::read_to_string(logs.join("worker.log")).unwrap_or_default()
            );
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "files not loaded within 2 minutes: {statuses:?}; worker log: {}\ncoordinator log: {}",
            std::fs::read_to_string(logs.join("worker.log")).unwrap_or_default(),
            std::fs::read_to_string(logs.join("coordinator.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The container health check, run as the task definition says (the image's binary is
    // this build's): the worker is healthy.
    let check: Vec<String> = worker_task["health_check"]
        .as_array()
        .expect("the worker's health check")
        .iter()
        .map(text)
        .collect();
    assert_eq!(
        check[..2],
        ["CMD", "/usr/local/bin/sluice-worker"],
        "{check:?}"
    );
    let health = Command::new(binary("sluice-worker"))
        .args(&check[2..])
        .output()
        .expect("run the health check");
    assert!(
        health.status.success(),
        "health check {check:?}: {}",
        String::from_utf8_lossy(&health.stdout)
    );

    // ECS stops tasks with SIGTERM; both stop cleanly, well within the StopTimeout.
    assert!(stop(&mut worker, Duration::from_secs(30)).await.success());
    assert!(stop(&mut coordinator, Duration::from_secs(30))
        .await
        .success());

    assert_eq!(
        tb.rows("SELECT id::text, customer, amount::text FROM {s}.orders ORDER BY id")
            .await,
        vec![
            vec![Some("1".into()), Some("Ada".into()), Some("10.50".into())],
            vec![Some("2".into()), Some("Bob".into()), Some("20.00".into())],
            vec![Some("4".into()), Some("Dee".into()), Some("4.00".into())],
        ]
    );
    let item = manifest.get(&load_key, &load_etag).await.unwrap().unwrap();
    assert_eq!(item.rows.map(|r| r.read), Some(3));
    assert_eq!(item.attempts, 1);
    assert_eq!(tb.queue_depth(&out("QueueUrl")).await, (0, 0));
    assert_eq!(tb.queue_depth(&out("DeadLetterQueueUrl")).await, (0, 0));

    // The worker logged its settings with the URL the entrypoint built, password hidden.
    let worker_log = std::fs::read_to_string(logs.join("worker.log")).unwrap();
    assert!(worker_log.contains("worker started"), "{worker_log}");
    assert!(
        worker_log.contains(&format!("postgres://{}:***@", db.user)),
        "{worker_log}"
    );
    assert!(!worker_log.contains(&db.password), "password in the log");
    std::fs::remove_dir_all(&logs).ok();
}

/// The entrypoint's URL carries any user, password and database name through tokio-postgres's
/// parser unchanged, and does not leave the password in the environment on its own.
#[test]
fn entrypoint_builds_a_database_url_that_survives_any_password() {
    let password = "p@ss w:rd/%?#'\"\\ é€&=+;,";
    let user = "svc@sluice";
    let name = "ware house";
    let run = |args: &[&str], extra: &[(&str, &str)]| {
        let mut cmd = Command::new(entrypoint());
        cmd.args(args)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("SLUICE_DB_HOST", "db.internal.example")
            .env("SLUICE_DB_PORT", "6432")
            .env("SLUICE_DB_NAME", name)
            .env("SLUICE_DB_USER", user)
            .env("SLUICE_DB_PASSWORD", password);
        for (k, v) in extra {
            cmd.env(k, v);
        }
        cmd.output().expect("run the entrypoint")
    };

    let out = run(&["printenv", "SLUICE_DATABASE_URL"], &[]);
    assert!(out.status.success(), "{out:?}");
    let url = String::from_utf8(out.stdout).unwrap();
    let cfg: tokio_postgres::Config = url.trim_end().parse().expect("a valid URL");
    assert_eq!(cfg.get_password(), Some(password.as_bytes()));
    assert_eq!(cfg.get_user(), Some(user));
    assert_eq!(cfg.get_dbname(), Some(name));
    assert_eq!(cfg.get_ports(), &[6432]);
    assert!(matches!(
        &cfg.get_hosts()[0],
        tokio_postgres::config::Host::Tcp(h) if h == "db.internal.example"
    ));
    assert_eq!(
        sluice_common::config::redact_url(url.trim_end()),
        "postgres://svc%40sluice:***@db.internal.example:6432/ware%20house"
    );

    // The bare password does not stay in the environment of the binary.
    let out = run(&["printenv", "SLUICE_DB_PASSWORD"], &[]);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());

    // A URL given outright wins (local runs).
    let out = run(
        &["printenv", "SLUICE_DATABASE_URL"],
        &[("SLUICE_DATABASE_URL", "postgres://u:p@h/d")],
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "postgres://u:p@h/d\n"
    );

    // A missing setting stops it with a message that names the setting, not the password.
    let out = run(&["true"], &[("SLUICE_DB_HOST", "")]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("SLUICE_DB_HOST"), "{err}");
    assert!(!err.contains(password));
}
