//! A test bed per test: its own bucket, queue (with DLQ), manifest table and PostgreSQL schemas,
//! named uniquely so tests run in parallel against one moto server and one PostgreSQL.
//!
//! The services come from the environment that `infra/local/stack.sh up` writes
//! (`AWS_ENDPOINT_URL`, `SLUICE_DATABASE_URL`, ...). Without it the tests fail and say so: a
//! test that cannot reach its services is a failure, never a skip.

use sluice_common::config::{AwsClients, SourceLocation};
use sluice_common::manifest::{ManifestItem, Status};
use sluice_common::message::FileMessage;
use sluice_common::rules::Rules;
use sluice_common::store::ManifestStore;
use sluice_coordinator::plan::Policy;
use sluice_coordinator::scan::{self, ScanContext, ScanSummary};
use sluice_worker::load::{load_file, LoadContext, LoadOutcome};
use sluice_worker::{RunSummary, WorkerArgs, WorkerConfig};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::NoTls;
use tokio_util::sync::CancellationToken;

static COUNTER: AtomicU32 = AtomicU32::new(0);

pub fn database_url() -> String {
    std::env::var("SLUICE_DATABASE_URL").expect(
        "SLUICE_DATABASE_URL is not set: run the tests through .ci/run (or source the env file of infra/local/stack.sh up)",
    )
}

pub struct TestBed {
    pub name: String,
    pub aws: AwsClients,
    pub bucket: String,
    pub prefix: String,
    pub queue_url: String,
    #[allow(dead_code)] // for tests of the dead-letter path
    pub dlq_url: String,
    pub manifest: ManifestStore,
    /// Schema of the target tables.
    pub schema: String,
    /// Schema of sluice's ledger for this test.
    pub state_schema: String,
    pub db: tokio_postgres::Client,
    /// The coordinator's quiet period for full-load generations: a day unless a test of
    /// generations sets it, so other tests never see a replacement.
    pub generation_quiet: Duration,
}

impl TestBed {
    pub async fn new(label: &str) -> TestBed {
        assert!(
            std::env::var("AWS_ENDPOINT_URL").is_ok(),
            "AWS_ENDPOINT_URL is not set: run the tests through .ci/run"
        );
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!(
            "it-{label}-{}-{n}-{}",
            std::process::id(),
            rand::random::<u16>()
        );
        let aws = AwsClients::from_env().await;
        let bucket = name.clone();
        aws.s3
            .create_bucket()
            .bucket(&bucket)
            .send()
            .await
            .expect("create bucket");
        let manifest = ManifestStore::new(aws.dynamodb.clone(), name.clone());
        manifest
            .ensure_table()
            .await
            .expect("create manifest table");
        let queue_url = sluice_coordinator::bootstrap::queue(
            &aws.sqs,
            &sluice_coordinator::bootstrap::QueueSpec {
                name: name.clone(),
                visibility_timeout_secs: 30,
                max_receive_count: 10,
            },
        )
        .await
        .expect("create queue");
        let dlq_url = queue_url.replace(&name, &format!("{name}-dlq"));
        let schema = name.replace('-', "_");
        let state_schema = format!("{schema}_state");
        let (db, conn) = tokio_postgres::connect(&database_url(), NoTls)
            .await
            .expect("connect to PostgreSQL");
        tokio::spawn(conn);
        db.batch_execute(&format!("CREATE SCHEMA \"{schema}\"; SET TimeZone = 'UTC'"))
            .await
            .expect("create schema");
        TestBed {
            name,
            aws,
            bucket,
            prefix: "dms/".into(),
            queue_url,
            dlq_url,
            manifest,
            schema,
            state_schema,
            db,
            generation_quiet: Duration::from_secs(86_400),
        }
    }

    /// Runs SQL with `{s}` replaced by the test's quoted schema.
    pub async fn sql(&self, sql: &str) {
        let sql = sql.replace("{s}", &format!("\"{}\"", self.schema));
        self.db
            .batch_execute(&sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    pub fn key(&self, rest: &str) -> String {
        format!("{}{}/{}", self.prefix, self.schema, rest)
    }

    pub async fn put(&self, key: &str, body: impl Into<Vec<u8>>) -> String {
        let out = self
            .aws
            .s3
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(body.into().into())
            .send()
            .await
            .unwrap_or_else(|e| panic!("put {key}: {e:?}"));
        sluice_common::message::bare_etag(out.e_tag().unwrap_or_default())
    }

    /// Deletes the object at `key` (as if it went between a listing and its load).
    pub async fn delete(&self, key: &str) {
        self.aws
            .s3
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .unwrap_or_else(|e| panic!("delete {key}: {e:?}"));
    }

    pub fn scan_context(&self, requeue_after: Duration) -> ScanContext {
        ScanContext {
            s3: self.aws.s3.clone(),
            sqs: self.aws.sqs.clone(),
            store: self.manifest.clone(),
            source: SourceLocation::parse(&format!("s3://{}/{}", self.bucket, self.prefix))
                .unwrap(),
            queue_url: self.queue_url.clone(),
            policy: Policy {
                requeue_after,
                max_attempts: 5,
                // Generations complete only where a test says so (see generation_quiet()).
                generation_quiet: self.generation_quiet,
            },
        }
    }

    pub async fn scan(&self) -> ScanSummary {
        scan::scan(&self.scan_context(Duration::from_secs(600)), false)
            .await
            .expect("scan")
            .0
    }

    pub fn worker_args(&self, extra: &[&str]) -> WorkerArgs {
        use clap::Parser;
        #[derive(Parser)]
        #[command(args_override_self = true)]
        struct W {
            #[command(flatten)]
            args: WorkerArgs,
        }
        let mut argv = vec![
            "w".to_owned(),
            format!("--queue-url={}", self.queue_url),
            format!("--manifest-table={}", self.name),
            format!("--database-url={}", database_url()),
            format!("--state-schema={}", self.state_schema),
            "--wait-time=1".to_owned(),
            "--exit-when-idle=2".to_owned(),
            "--visibility-timeout=20".to_owned(),
            "--db-retry-for=20".to_owned(),
        ];
        argv.extend(extra.iter().map(|s| (*s).to_owned()));
        W::try_parse_from(argv).expect("worker args").args
    }

    pub fn worker_config(&self, extra: &[&str]) -> WorkerConfig {
        self.worker_args(extra)
            .validate()
            .expect("valid worker config")
    }

    /// Runs one in-process worker until the queue stays empty.
    pub async fn drain(&self, extra: &[&str]) -> RunSummary {
        let cfg = self.worker_config(extra);
        tokio::time::timeout(
            Duration::from_secs(300),
            sluice_worker::run(cfg, self.aws.clone(), CancellationToken::new()),
        )
        .await
        .expect("worker drained within 5 minutes")
        .expect("worker ran")
    }

    pub async fn item(&self, key: &str, etag: &str) -> ManifestItem {
        self.manifest
            .get(key, etag)
            .await
            .expect("manifest get")
            .unwrap_or_else(|| panic!("no manifest item for {key} {etag}"))
    }

    pub async fn status(&self, key: &str, etag: &str) -> Option<Status> {
        self.item(key, etag).await.status
    }

    /// Rows of a query as text tuples (NULL as None), for exact comparisons.
    pub async fn rows(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        let sql = sql.replace("{s}", &format!("\"{}\"", self.schema));
        self.db
            .simple_query(&sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .into_iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => {
                    Some((0..r.len()).map(|i| r.get(i).map(str::to_owned)).collect())
                }
                _ => None,
            })
            .collect()
    }

    pub async fn count(&self, sql: &str) -> i64 {
        self.rows(sql).await[0][0]
            .as_ref()
            .unwrap()
            .parse()
            .unwrap()
    }

    pub async fn ledger_count(&self, key: &str) -> i64 {
        let n: i64 = self
            .db
            .query_one(
                &format!(
                    "SELECT count(*) FROM \"{}\".ledger WHERE key = $1",
                    self.state_schema
                ),
                &[&key],
            )
            .await
            .expect("ledger query")
            .get(0);
        n
    }

    /// What a worker needs to apply files directly (no queue, no manifest): for tests that
    /// choose the order in which files are applied.
    pub async fn load_context(&self, rules: &str) -> LoadContext {
        let pool = sluice_worker::db::pool(&database_url(), 8, "sluice-test").expect("pool");
        sluice_worker::db::bootstrap(&pool, &self.state_schema)
            .await
            .expect("bootstrap ledger");
        LoadContext {
            pool,
            s3: self.aws.s3.clone(),
            rules: Arc::new(Rules::parse("test.toml", rules).expect("rules")),
            state_schema: self.state_schema.clone(),
            worker_id: format!("{}-direct", self.name),
            max_record_bytes: 1 << 20,
            max_decompressed_bytes: 1 << 32,
            prepared: Default::default(),
            schemas: None,
            merge_lock_timeout: sluice_worker::db::Waits::default().merge_lock,
        }
    }

    /// The message the coordinator would send for `key` as it is now in S3.
    pub async fn message(&self, key: &str) -> FileMessage {
        let head = self
            .aws
            .s3
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .unwrap_or_else(|e| panic!("head {key}: {e:?}"));
        let file = sluice_common::mapping::map_key(&self.prefix, key).expect("a loadable key");
        FileMessage {
            v: 1,
            bucket: self.bucket.clone(),
            key: key.to_owned(),
            etag: sluice_common::message::bare_etag(head.e_tag().unwrap_or_default()),
            size: head.content_length().unwrap_or(0),
            last_modified: head
                .last_modified()
                .and_then(|t| time::OffsetDateTime::from_unix_timestamp_nanos(t.as_nanos()).ok())
                .map(sluice_common::timefmt::format)
                .expect("last modified"),
            file,
        }
    }

    /// Uploads `body` at `key` and applies it at once, directly.
    pub async fn put_and_load(&self, ctx: &LoadContext, key: &str, body: &str) -> LoadOutcome {
        self.put(key, body.to_owned()).await;
        let msg = self.message(key).await;
        load_file(ctx, &msg)
            .await
            .unwrap_or_else(|e| panic!("load {key}: {e}"))
    }

    /// The test's AWS clients, sending to `endpoint` instead (a fault proxy, a stub).
    pub fn aws_via(&self, endpoint: &str) -> AwsClients {
        AwsClients {
            s3: aws_sdk_s3::Client::from_conf(
                self.aws
                    .s3
                    .config()
                    .to_builder()
                    .endpoint_url(endpoint)
                    .build(),
            ),
            sqs: aws_sdk_sqs::Client::from_conf(
                self.aws
                    .sqs
                    .config()
                    .to_builder()
                    .endpoint_url(endpoint)
                    .build(),
            ),
            dynamodb: aws_sdk_dynamodb::Client::from_conf(
                self.aws
                    .dynamodb
                    .config()
                    .to_builder()
                    .endpoint_url(endpoint)
                    .build(),
            ),
        }
    }

    pub async fn queue_depth(&self, url: &str) -> (i64, i64) {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let out = self
            .aws
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(A::ApproximateNumberOfMessages)
            .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .expect("queue attributes");
        let attrs = out.attributes().cloned().unwrap_or_default();
        let get = |a: A| attrs.get(&a).and_then(|v| v.parse().ok()).unwrap_or(0);
        (
            get(A::ApproximateNumberOfMessages),
            get(A::ApproximateNumberOfMessagesNotVisible),
        )
    }
}

/// A DMS CDC file name (`YYYYMMDD-HHMMSSmmm.csv`) for `offset_ms` from now: CDC written after
/// a full load that is being uploaded now must be named after it, as DMS names them.
pub fn cdc_name(offset_ms: i64) -> String {
    sluice_common::mapping::cdc_file_name(
        time::OffsetDateTime::now_utc() + time::Duration::milliseconds(offset_ms),
    )
}

/// A `sluice-worker run` process on the test's queue, manifest and state schema, with
/// `--wait-time=1` and JSON logs to nowhere; resumed (after a SIGSTOP) and killed when dropped,
/// however the test ends: a stopped worker left behind would hold its locks for later tests.
pub struct WorkerProcess(pub std::process::Child);

impl WorkerProcess {
    pub fn start(tb: &TestBed, url: &str, extra: &[&str], env: &[(&str, &str)]) -> WorkerProcess {
        let mut cmd = std::process::Command::new(binary("sluice-worker"));
        cmd.arg("run")
            .args([
                format!("--queue-url={}", tb.queue_url),
                format!("--manifest-table={}", tb.name),
                format!("--state-schema={}", tb.state_schema),
                "--wait-time=1".into(),
            ])
            .args(extra)
            .env("SLUICE_DATABASE_URL", url)
            .env("SLUICE_LOG_FORMAT", "json")
            .stderr(std::process::Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        WorkerProcess(cmd.spawn().expect("start worker"))
    }

    pub fn id(&self) -> u32 {
        self.0.id()
    }

    /// Peak resident memory (VmHWM) so far, in MiB.
    pub fn peak_rss_mib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.id())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib / 1024)
    }
}

impl WorkerProcess {
    /// Runs a worker with `SLUICE_FAULT=fault` until it dies at that fault point (exit 86, as a
    /// killed process would leave things), with `extra` flags.
    pub async fn run_to_fault(tb: &TestBed, extra: &[&str], fault: &str) {
        let mut child =
            WorkerProcess::start(tb, &database_url(), extra, &[("SLUICE_FAULT", fault)]);
        let status = tokio::task::spawn_blocking(move || child.0.wait().unwrap())
            .await
            .unwrap();
        assert_eq!(
            status.code(),
            Some(86),
            "{fault}: the worker died at the fault point"
        );
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-CONT", &self.0.id().to_string()])
            .status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Path of a binary built by `cargo build --bins` into the same target directory as this test.
pub fn binary(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the binaries first (`cargo build --workspace --bins`, as .ci/run does)",
        path.display()
    );
    path
}

impl TestBed {
    /// What the coordinator's operator commands use, against this test's services; `rules`
    /// is the text of a rules file (empty: none).
    pub fn ops(&self, rules: &str) -> sluice_coordinator::ops::Ops {
        sluice_coordinator::ops::Ops {
            aws: self.aws.clone(),
            store: self.manifest.clone(),
            source: Some(
                SourceLocation::parse(&format!("s3://{}/{}", self.bucket, self.prefix)).unwrap(),
            ),
            queue_url: Some(self.queue_url.clone()),
            events_queue_url: None,
            ledger: Some(
                sluice_coordinator::ops::ledger::Ledger::connect(
                    &database_url(),
                    &self.state_schema,
                )
                .expect("ledger pool"),
            ),
            rules: Rules::parse("test.toml", rules).expect("rules"),
            policy: self.scan_context(Duration::from_secs(600)).policy,
            schemas: Vec::new(),
        }
    }

    /// Deletes a manifest item behind Sluice's back (as a careless person could).
    pub async fn delete_item(&self, key: &str, etag: &str) {
        use aws_sdk_dynamodb::types::AttributeValue;
        self.aws
            .dynamodb
            .delete_item()
            .table_name(&self.name)
            .key("key", AttributeValue::S(key.to_owned()))
            .key("etag", AttributeValue::S(etag.to_owned()))
            .send()
            .await
            .expect("delete manifest item");
    }
}
