//! Observability: metrics (Prometheus and CloudWatch EMF) match what happened, no secret in
//! anything a failing run prints, the health endpoint follows the database, and the README and
//! the template agree with the metric definitions.
//!
//! The binaries run as processes here: metrics are per process, and what a run prints is what
//! an operator sees.

use crate::netfault::Proxy;
use crate::support::{binary, database_url, TestBed};
use serde_json::Value;
use sluice_common::manifest::Status;
use sluice_common::metrics::{self, Kind};
use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running binary whose standard output and error are collected line by line.
struct Proc {
    child: Child,
    out: Arc<Mutex<Vec<String>>>,
    err: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    fn start(mut cmd: Command) -> Proc {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start binary");
        let collect = |r: Box<dyn std::io::Read + Send>| {
            let lines = Arc::new(Mutex::new(Vec::new()));
            let l = lines.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(r).lines() {
                    match line {
                        Ok(line) => l.lock().unwrap().push(line),
                        Err(_) => break,
                    }
                }
            });
            lines
        };
        let out = collect(Box::new(child.stdout.take().unwrap()));
        let err = collect(Box::new(child.stderr.take().unwrap()));
        Proc { child, out, err }
    }

    fn stdout(&self) -> Vec<String> {
        self.out.lock().unwrap().clone()
    }

    fn stderr(&self) -> Vec<String> {
        self.err.lock().unwrap().clone()
    }

    /// Everything printed so far, both streams.
    fn printed(&self) -> String {
        let mut all = self.stdout();
        all.extend(self.stderr());
        all.join("\n")
    }

    /// Waits for a log line containing `needle`.
    async fn wait_for_log(&self, needle: &str, within: Duration) -> String {
        let started = Instant::now();
        loop {
            if let Some(l) = self.stderr().into_iter().find(|l| l.contains(needle)) {
                return l;
            }
            assert!(
                started.elapsed() < within,
                "no log line with {needle:?} within {within:?}:\n{}",
                self.printed()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The address of the "serving metrics" log line.
    async fn endpoint(&self) -> String {
        let line = self
            .wait_for_log("serving metrics", Duration::from_secs(60))
            .await;
        let v: Value = serde_json::from_str(&line).expect("JSON log line");
        v["addr"].as_str().expect("addr field").to_owned()
    }

    /// SIGTERM, then waits for the exit (the final EMF flush happens on the way out).
    async fn terminate(mut self) -> (std::process::ExitStatus, Proc) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Let the reader threads take the last lines.
                tokio::time::sleep(Duration::from_millis(200)).await;
                return (status, self);
            }
            if started.elapsed() > Duration::from_secs(60) {
                let _ = self.child.kill();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for the process to exit by itself.
    async fn wait(mut self, within: Duration) -> (std::process::ExitStatus, Proc) {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                tokio::time::sleep(Duration::from_millis(200)).await;
                return (status, self);
            }
            assert!(
                started.elapsed() < within,
                "process still running after {within:?}:\n{}",
                self.printed()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn worker(tb: &TestBed, db_url: &str, extra: &[&str]) -> Command {
    worker_on(tb, &tb.queue_url, db_url, extra)
}

fn worker_on(tb: &TestBed, queue_url: &str, db_url: &str, extra: &[&str]) -> Command {
    let mut cmd = Command::new(binary("sluice-worker"));
    cmd.arg("run")
        .args([
            format!("--queue-url={queue_url}"),
            format!("--manifest-table={}", tb.name),
            format!("--state-schema={}", tb.state_schema),
            "--wait-time=1".into(),
            "--visibility-timeout=20".into(),
            "--db-retry-for=5".into(),
        ])
        .args(extra)
        .env("SLUICE_DATABASE_URL", db_url)
        .env("SLUICE_LOG_FORMAT", "json")
        .env_remove("RUST_LOG");
    cmd
}

fn coordinator(tb: &TestBed, args: &[&str]) -> Command {
    let mut cmd = Command::new(binary("sluice-coordinator"));
    cmd.args(args)
        .env("SLUICE_SOURCE", format!("s3://{}/{}", tb.bucket, tb.prefix))
        .env("SLUICE_QUEUE_URL", &tb.queue_url)
        .env("SLUICE_DLQ_URL", &tb.dlq_url)
        .env("SLUICE_MANIFEST_TABLE", &tb.name)
        .env("SLUICE_LOG_FORMAT", "json")
        .env_remove("RUST_LOG");
    cmd
}

/// A sample of a Prometheus exposition: `series{labels}` exactly as written (labels in the
/// definition's order), or None.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(series)?.strip_prefix(' ')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

async fn scrape(addr: &str) -> String {
    let (status, body) = sluice_common::http::get(addr, "/metrics", Duration::from_secs(10))
        .await
        .expect("scrape /metrics");
    assert_eq!(status, 200, "{body}");
    body
}

/// A coordinator's metrics once it counts `passes` good passes (at most a minute).
async fn scrape_after_passes(addr: &str, passes: u32) -> String {
    let started = Instant::now();
    loop {
        let text = scrape(addr).await;
        let done = sample(&text, "sluice_coordinator_passes_total{result=\"ok\"}").unwrap_or(0.0);
        if done >= f64::from(passes) {
            return text;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The EMF documents among printed lines, each checked against the format's rules.
fn emf_documents(lines: &[String], keys: &[String]) -> Vec<Value> {
    let docs: Vec<Value> = lines
        .iter()
        .filter(|l| l.starts_with('{') && l.contains("\"_aws\""))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("EMF line {l}: {e}")))
        .collect();
    for d in &docs {
        let directives = d["_aws"]["CloudWatchMetrics"]
            .as_array()
            .expect("directives");
        assert!(d["_aws"]["Timestamp"].as_u64().is_some(), "{d}");
        for dir in directives {
            assert_eq!(dir["Namespace"], "Sluice", "{d}");
            for set in dir["Dimensions"].as_array().unwrap() {
                let set = set.as_array().unwrap();
                assert_eq!(set[0], "ManifestTable", "{d}");
                for dim in set {
                    let value = d[dim.as_str().unwrap()].as_str().expect("dimension value");
                    assert!(
                        keys.iter().all(|k| !value.contains(k.as_str())) && !value.contains('/'),
                        "a dimension carries an S3 key: {d}"
                    );
                }
            }
            for m in dir["Metrics"].as_array().unwrap() {
                let name = m["Name"].as_str().unwrap();
                let def = metrics::ALL
                    .iter()
                    .find(|def| def.emf_name() == name)
                    .unwrap_or_else(|| panic!("{name} is not a defined metric"));
                assert_eq!(m["Unit"], def.unit.as_str());
                match &d[name] {
                    Value::Number(_) => assert_ne!(def.kind, Kind::Histogram),
                    Value::Array(a) => {
                        assert_eq!(def.kind, Kind::Histogram);
                        assert!(!a.is_empty() && a.len() <= 100)
                    }
                    other => panic!("{name}: {other}"),
                }
            }
        }
    }
    docs
}

/// Sum of a metric over the documents whose dimensions include `dims` exactly (besides
/// `ManifestTable`); for histograms, the number of values.
fn emf_total(docs: &[Value], name: &str, dims: &[(&str, &str)]) -> f64 {
    docs.iter()
        .filter(|d| d.get(name).is_some())
        .filter(|d| {
            let obj = d.as_object().unwrap();
            let dim_names: Vec<&str> = d["_aws"]["CloudWatchMetrics"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|dir| dir["Dimensions"][0].as_array().unwrap().iter())
                .filter_map(|v| v.as_str())
                .filter(|n| *n != "ManifestTable")
                .collect();
            dims.len() <= dim_names.len()
                && dims
                    .iter()
                    .all(|(k, v)| obj.get(*k).and_then(Value::as_str) == Some(*v))
                && dim_names.iter().all(|n| dims.iter().any(|(k, _)| k == n))
        })
        .map(|d| match &d[name] {
            Value::Number(n) => n.as_f64().unwrap(),
            Value::Array(a) => a.len() as f64,
            _ => 0.0,
        })
        .sum()
}

async fn wait_for_statuses(tb: &TestBed, files: &[(&str, &str, Status)]) {
    let started = Instant::now();
    loop {
        let mut done = true;
        for (key, etag, want) in files {
            if tb
                .manifest
                .get(key, etag)
                .await
                .unwrap()
                .and_then(|i| i.status)
                != Some(*want)
            {
                done = false;
            }
        }
        if done {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "files did not reach their statuses"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_emf_lines_match_what_happened() {
    let tb = TestBed::new("obs-metrics").await;
    tb.sql("CREATE TABLE {s}.items (id int PRIMARY KEY, name text, amount numeric); CREATE TABLE {s}.things (id int PRIMARY KEY, label text)")
        .await;
    let items = "1,a,10\n2,b,20\n3,c,30\n";
    let things = "1,x\n2,y\n";
    let bad = "4,d,40\nnot-a-number,e,50\n";
    let k_items = tb.key("items/LOAD00000001.csv");
    let k_things = tb.key("things/LOAD00000001.csv");
    let k_bad = tb.key("items/LOAD00000002.csv");
    let e_items = tb.put(&k_items, items).await;
    let e_things = tb.put(&k_things, things).await;
    let e_bad = tb.put(&k_bad, bad).await;
    let keys = vec![k_items.clone(), k_things.clone(), k_bad.clone()];

    // The coordinator's pass, as EMF lines.
    let (status, scan) = Proc::start(coordinator(&tb, &["scan", "--metrics-emf"]))
        .wait(Duration::from_secs(60))
        .await;
    assert!(status.success(), "{}", scan.printed());
    let docs = emf_documents(&scan.stdout(), &keys);
    assert_eq!(emf_total(&docs, "CoordinatorFilesNew", &[]), 3.0);
    assert_eq!(emf_total(&docs, "CoordinatorObjectsListed", &[]), 3.0);
    assert_eq!(emf_total(&docs, "CoordinatorMessagesSent", &[]), 3.0);
    assert_eq!(
        emf_total(&docs, "CoordinatorPasses", &[("Result", "ok")]),
        1.0
    );
    assert_eq!(
        emf_total(
            &docs,
            "CoordinatorQueueMessages",
            &[("Queue", "work"), ("State", "visible")]
        ),
        3.0
    );
    assert_eq!(
        emf_total(
            &docs,
            "CoordinatorQueueMessages",
            &[("Queue", "dead_letter"), ("State", "visible")]
        ),
        0.0
    );
    assert!(docs.iter().all(|d| d["ManifestTable"] == tb.name.as_str()));

    // The worker, with both outputs.
    let w = Proc::start(worker(
        &tb,
        &database_url(),
        &[
            "--metrics-addr=127.0.0.1:0",
            "--metrics-emf",
            "--metrics-interval=1",
        ],
    ));
    let addr = w.endpoint().await;
    wait_for_statuses(
        &tb,
        &[
            (&k_items, &e_items, Status::Loaded),
            (&k_things, &e_things, Status::Loaded),
            (&k_bad, &e_bad, Status::Failed),
        ],
    )
    .await;
    let item = tb.item(&k_bad, &e_bad).await;
    assert_eq!(item.error.as_ref().unwrap().class, "bad_value", "{item:?}");

    // Scrape until the last outcome is counted (the manifest is written just before).
    let started = Instant::now();
    let text = loop {
        let text = scrape(&addr).await;
        if sample(
            &text,
            "sluice_worker_file_seconds_count{outcome=\"failed\"}",
        ) == Some(1.0)
            && sample(&text, "sluice_worker_files_loaded_total") == Some(2.0)
        {
            break text;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let bytes = (items.len() + things.len()) as f64;
    let expect = [
        ("sluice_worker_files_loaded_total", 2.0),
        (
            "sluice_worker_files_failed_total{reason=\"bad_value\"}",
            1.0,
        ),
        ("sluice_worker_rows_total{kind=\"read\"}", 5.0),
        ("sluice_worker_rows_total{kind=\"merged\"}", 5.0),
        ("sluice_worker_rows_total{kind=\"rejected\"}", 0.0),
        ("sluice_worker_rows_total{kind=\"superseded\"}", 0.0),
        ("sluice_worker_bytes_total", bytes),
        ("sluice_worker_phase_seconds_count{phase=\"copy\"}", 2.0),
        ("sluice_worker_phase_seconds_count{phase=\"merge\"}", 2.0),
        ("sluice_worker_phase_seconds_count{phase=\"commit\"}", 2.0),
        ("sluice_worker_file_seconds_count{outcome=\"loaded\"}", 2.0),
        ("sluice_worker_file_seconds_count{outcome=\"failed\"}", 1.0),
        ("sluice_worker_files_in_flight", 0.0),
        ("sluice_worker_files_dead_total", 0.0),
        ("sluice_worker_files_duplicate_total", 0.0),
    ];
    for (series, want) in expect {
        assert_eq!(sample(&text, series), Some(want), "{series} in\n{text}");
    }
    assert!(
        sample(&text, "sluice_worker_phase_seconds_sum{phase=\"copy\"}").unwrap() > 0.0,
        "{text}"
    );
    assert!(
        !text.contains("sluice_coordinator_"),
        "a worker exposes worker metrics"
    );
    for k in &keys {
        assert!(!text.contains(k.as_str()), "no S3 key in a label");
    }

    // SIGTERM: the last EMF lines are written on the way out.
    let (status, w) = w.terminate().await;
    assert!(status.success(), "{}", w.printed());
    let docs = emf_documents(&w.stdout(), &keys);
    assert!(!docs.is_empty(), "{}", w.printed());
    assert_eq!(emf_total(&docs, "WorkerFilesLoaded", &[]), 2.0);
    assert_eq!(
        emf_total(&docs, "WorkerFilesFailed", &[("Reason", "bad_value")]),
        1.0
    );
    assert_eq!(emf_total(&docs, "WorkerRows", &[("Kind", "read")]), 5.0);
    assert_eq!(emf_total(&docs, "WorkerRows", &[("Kind", "merged")]), 5.0);
    assert_eq!(emf_total(&docs, "WorkerBytes", &[]), bytes);
    assert_eq!(
        emf_total(&docs, "WorkerPhaseSeconds", &[("Phase", "copy")]),
        2.0
    );
    assert_eq!(
        emf_total(&docs, "WorkerFileSeconds", &[("Outcome", "failed")]),
        1.0
    );
    // The failure is also published summed over reasons, for alarms.
    let failed = docs
        .iter()
        .find(|d| d["Reason"] == "bad_value")
        .expect("a bad_value line");
    assert_eq!(
        failed["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
        serde_json::json!([["ManifestTable", "Reason"], ["ManifestTable"]])
    );
    // Every output line is EMF or nothing: stdout is for metrics, logs go to stderr.
    assert!(
        w.stdout().iter().all(|l| l.contains("\"_aws\"")),
        "{:?}",
        w.stdout()
    );
    // One outcome line per file, with rows and phase times.
    let loaded: Vec<Value> = w
        .stderr()
        .iter()
        .filter(|l| l.contains("\"file loaded\""))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(loaded.len(), 2, "{}", w.printed());
    for l in &loaded {
        for field in [
            "rows_read",
            "rows_merged",
            "rows_rejected",
            "copy_ms",
            "merge_ms",
            "commit_ms",
        ] {
            assert!(l.get(field).is_some(), "{field} in {l}");
        }
        let span = &l["span"];
        for field in [
            "bucket",
            "key",
            "etag",
            "table",
            "message_id",
            "attempt",
            "worker",
        ] {
            assert!(span.get(field).is_some(), "{field} in the file span: {l}");
        }
    }
    let failed_lines: Vec<String> = w
        .stderr()
        .into_iter()
        .filter(|l| l.contains("\"file failed\""))
        .collect();
    assert_eq!(failed_lines.len(), 1);
    assert!(failed_lines[0].contains("\"error_class\":\"bad_value\""));

    // The coordinator after the loads: a failed file of one table waits; the other table has
    // nothing waiting. Prometheus from `run`.
    let c = Proc::start(coordinator(
        &tb,
        &["run", "--interval=1s", "--metrics-addr=127.0.0.1:0"],
    ));
    let addr = c.endpoint().await;
    let text = scrape_after_passes(&addr, 2).await;
    let items_table = format!("{}.items", tb.schema);
    let things_table = format!("{}.things", tb.schema);
    assert_eq!(
        sample(
            &text,
            "sluice_coordinator_manifest_files{status=\"failed\"}"
        ),
        Some(1.0),
        "{text}"
    );
    for status in ["discovered", "queued", "loading", "dead", "skipped"] {
        assert_eq!(
            sample(
                &text,
                &format!("sluice_coordinator_manifest_files{{status=\"{status}\"}}")
            ),
            Some(0.0),
            "{status}: {text}"
        );
    }
    let age = sample(
        &text,
        &format!("sluice_coordinator_oldest_unloaded_seconds{{table=\"{items_table}\"}}"),
    )
    .expect("age of the table with a failed file");
    assert!((0.0..600.0).contains(&age), "{age}");
    assert!(
        !text.contains(&format!(
            "sluice_coordinator_oldest_unloaded_seconds{{table=\"{things_table}\""
        )),
        "{text}"
    );
    assert_eq!(
        sample(&text, "sluice_coordinator_objects_listed"),
        Some(3.0)
    );
    assert_eq!(
        sample(&text, "sluice_coordinator_files_new_total"),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &text,
            "sluice_coordinator_queue_messages{queue=\"work\",state=\"visible\"}"
        ),
        Some(0.0)
    );
    assert!(!text.contains("sluice_worker_"), "{text}");
    let (status, c) = c.terminate().await;
    assert!(status.success(), "{}", c.printed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_anything_a_failing_run_prints() {
    let tb = TestBed::new("obs-secrets").await;
    tb.sql("CREATE TABLE {s}.items (id int PRIMARY KEY, name text)")
        .await;
    let n = rand::random::<u32>();
    // Secrets to look for: the stack's database password (in the URL the worker gets), a wrong
    // password full of URL-special characters, and this test's own AWS secret key (moto takes
    // any).
    let url = database_url();
    let password = url
        .split_once("://")
        .and_then(|(_, r)| r.rsplit_once('@'))
        .and_then(|(creds, _)| creds.split_once(':'))
        .map(|(_, p)| p.to_owned())
        .expect("a password in SLUICE_DATABASE_URL");
    let wrong = format!("Wr0ng:@/%\"?&pw-{n}");
    let encoded: String = wrong
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let (creds, host) = url.split_once("://").unwrap().1.rsplit_once('@').unwrap();
    let user = creds.split_once(':').unwrap().0;
    let wrong_url = format!("postgres://{user}:{encoded}@{host}");
    let aws_secret = format!("aws-Secret/{n}+Key");
    let secrets = [
        password.clone(),
        wrong.clone(),
        encoded.clone(),
        aws_secret.clone(),
    ];
    let with_secret = |mut cmd: Command| {
        cmd.env("AWS_SECRET_ACCESS_KEY", &aws_secret);
        cmd
    };
    let mut printed = Vec::new();

    // 1. Files that fail: a bad value, an unknown table; debug logging of Sluice's crates.
    tb.put(&tb.key("items/LOAD00000001.csv"), "1,a\nx,b\n")
        .await;
    tb.put(&tb.key("missing/LOAD00000001.csv"), "1,a\n").await;
    // A value that happens to be the password: PostgreSQL quotes it in its error, which goes to
    // the log and the manifest; the scrubber must catch it there.
    tb.put(&tb.key("items/LOAD00000002.csv"), format!("{password},c\n"))
        .await;
    let (status, scan) = Proc::start(with_secret(coordinator(&tb, &["scan", "--metrics-emf"])))
        .wait(Duration::from_secs(60))
        .await;
    assert!(status.success(), "{}", scan.printed());
    printed.push(scan.printed());
    let mut cmd = with_secret(worker(&tb, &url, &["--exit-when-idle=2", "--metrics-emf"]));
    cmd.env(
        "RUST_LOG",
        "info,sluice_worker=debug,sluice_common=debug,tokio_postgres=debug",
    );
    let (status, w) = Proc::start(cmd).wait(Duration::from_secs(120)).await;
    assert!(status.success(), "{}", w.printed());
    let out = w.printed();
    assert!(
        out.contains("bad_value") && out.contains("unknown_table"),
        "{out}"
    );
    printed.push(out);

    // 2. The database unreachable (through a proxy that refuses), then SIGTERM.
    let proxy = Proxy::start(host.split('/').next().unwrap().parse().unwrap()).await;
    proxy.set_down(true);
    let w = Proc::start(with_secret(worker(&tb, &proxy.pg_url(&url), &[])));
    w.wait_for_log("database not ready", Duration::from_secs(60))
        .await;
    let (status, w) = w.terminate().await;
    assert!(!status.success(), "it never reached the database");
    assert!(proxy.refused() > 0);
    printed.push(w.printed());

    // 3. A wrong password (the server refuses it), then SIGTERM.
    let w = Proc::start(with_secret(worker(&tb, &wrong_url, &[])));
    w.wait_for_log("password authentication failed", Duration::from_secs(60))
        .await;
    let (_, w) = w.terminate().await;
    printed.push(w.printed());

    // 4. A worker whose queue does not exist, a coordinator whose bucket does not exist.
    let nope = format!("{}-nope", tb.queue_url);
    let w = Proc::start(with_secret(worker_on(&tb, &nope, &url, &[])));
    w.wait_for_log("receive failed", Duration::from_secs(60))
        .await;
    let (_, w) = w.terminate().await;
    printed.push(w.printed());
    let mut cmd = with_secret(coordinator(&tb, &["scan"]));
    cmd.env("SLUICE_SOURCE", format!("s3://{}-nope/dms/", tb.bucket));
    let (status, c) = Proc::start(cmd).wait(Duration::from_secs(60)).await;
    assert!(!status.success());
    assert!(c.printed().contains("Error:"), "{}", c.printed());
    printed.push(c.printed());

    // 5. What the manifest says, through the operator's commands and directly.
    for args in [
        vec!["manifest", "list", "--json"],
        vec!["manifest", "list"],
        vec!["manifest", "summary"],
    ] {
        let (_, c) = Proc::start(with_secret(coordinator(&tb, &args)))
            .wait(Duration::from_secs(60))
            .await;
        printed.push(c.printed());
    }
    let items = tb.manifest.scan_all(None).await.unwrap();
    let manifest = serde_json::to_string(&items).unwrap();
    assert!(manifest.contains("bad_value"), "{manifest}");
    printed.push(manifest);

    let all = printed.join("\n");
    assert!(
        all.lines()
            .any(|l| l.contains("file failed") && l.contains("LOAD00000002") && l.contains("***")),
        "the failure quoting the password was scrubbed, not lost:\n{all}"
    );
    assert!(all.len() > 2000, "the runs printed next to nothing:\n{all}");
    for secret in &secrets {
        assert!(
            !all.contains(secret.as_str()),
            "a secret was printed: {secret:?} in\n{}",
            all.lines()
                .filter(|l| l.contains(secret.as_str()))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_follows_the_database_and_the_container_check_agrees() {
    let tb = TestBed::new("obs-health").await;
    let url = database_url();
    let host = url.split_once("://").unwrap().1.rsplit_once('@').unwrap().1;
    let proxy = Proxy::start(host.split('/').next().unwrap().parse().unwrap()).await;
    let w = Proc::start(worker(
        &tb,
        &proxy.pg_url(&url),
        &["--health-addr=127.0.0.1:0"],
    ));
    let addr = w.endpoint().await;
    let health = |addr: String| async move {
        sluice_common::http::get(&addr, "/health", Duration::from_secs(10))
            .await
            .expect("GET /health")
    };
    let check = |addr: &str| {
        Command::new(binary("sluice-worker"))
            .args(["health", "--addr", addr])
            .output()
            .expect("sluice-worker health")
    };
    let wait_for = |want: u16| {
        let addr = addr.clone();
        async move {
            let started = Instant::now();
            loop {
                let (status, body) = health(addr.clone()).await;
                if status == want {
                    return body;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "health stayed {status}: {body}"
                );
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    };

    // Started: the ledger exists and the receive loop runs.
    w.wait_for_log("worker started", Duration::from_secs(60))
        .await;
    let body = wait_for(200).await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "ok", "{v}");
    assert_eq!(v["receive_loop"]["ok"], true);
    assert_eq!(v["database"]["ok"], true);
    let out = check(&addr);
    assert!(out.status.success(), "{out:?}");

    // PostgreSQL unreachable: new connections refused, open ones cut.
    proxy.set_down(true);
    let body = wait_for(503).await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "unhealthy", "{v}");
    assert_eq!(v["database"]["ok"], false, "{v}");
    assert_eq!(
        v["receive_loop"]["ok"], true,
        "only the database is down: {v}"
    );
    let out = check(&addr);
    assert_eq!(out.status.code(), Some(1), "{out:?}");

    // Back.
    proxy.set_down(false);
    let body = wait_for(200).await;
    assert!(body.contains("\"ok\""), "{body}");
    assert!(check(&addr).status.success());

    let (status, w) = w.terminate().await;
    assert!(status.success(), "{}", w.printed());
    // Nobody answers any more: the check fails instead of hanging.
    assert_eq!(check(&addr).status.code(), Some(1));
}

#[test]
fn readme_and_template_use_the_defined_metrics() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    for d in metrics::ALL {
        for name in [d.series(), d.emf_name()] {
            assert!(
                readme.contains(&format!("`{name}`")),
                "README.md does not list {name}"
            );
        }
        for label in d.labels {
            assert!(
                readme.contains(&format!("`{label}`")),
                "README.md does not name label {label} of {}",
                d.name
            );
        }
    }
    // Every alarm on a Sluice metric names a defined metric, with defined dimensions.
    let template = std::fs::read_to_string(root.join("infra/aws/sluice.yaml")).unwrap();
    let lines: Vec<&str> = template.lines().collect();
    let mut alarms = 0;
    for (i, l) in lines.iter().enumerate() {
        if l.trim() != "Namespace: Sluice" {
            continue;
        }
        alarms += 1;
        let name = lines[i + 1]
            .trim()
            .strip_prefix("MetricName: ")
            .expect("MetricName after the namespace");
        let def = metrics::ALL
            .iter()
            .find(|d| d.emf_name() == name)
            .unwrap_or_else(|| panic!("alarm on {name}, which Sluice does not emit"));
        let dims: Vec<String> = lines[i + 2..]
            .iter()
            .take_while(|l| !l.trim_start().starts_with("Statistic"))
            .filter_map(|l| l.split("Name: ").nth(1))
            .map(|n| n.split(',').next().unwrap().trim().to_owned())
            .collect();
        let mut allowed: Vec<String> = vec![metrics::BASE_DIMENSION.to_owned()];
        allowed.extend(d_labels(def));
        assert!(
            dims.iter().all(|d| allowed.contains(d)) && dims[0] == metrics::BASE_DIMENSION,
            "alarm on {name} with dimensions {dims:?}"
        );
    }
    assert!(alarms >= 2, "the template's alarms on Sluice metrics");
}

fn d_labels(d: &metrics::Def) -> Vec<String> {
    d.labels.iter().map(|l| metrics::camel(l)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn freshness_gauges_in_prometheus_and_emf() {
    let tb = TestBed::new("obs-fresh").await;
    tb.sql("CREATE TABLE {s}.t (id int PRIMARY KEY, v text)")
        .await;
    let key = tb.key("t/LOAD00000001.csv");
    tb.put(&key, "1,a\n").await;
    let table = format!("{}.t", tb.schema);
    let rules = std::env::temp_dir().join(format!("{}.toml", tb.name));
    std::fs::write(
        &rules,
        format!(
            "[tables.\"{s}.t\"]\nexpect_every = \"1h\"\n[tables.\"{s}.nothing\"]\nexpect_every = \"1h\"\n",
            s = tb.schema
        ),
    )
    .unwrap();
    let with_rules = |args: &[&str]| {
        let mut cmd = coordinator(&tb, args);
        cmd.env("SLUICE_CONFIG", &rules);
        cmd
    };
    let (status, scan) = Proc::start(with_rules(&["scan", "--metrics-emf"]))
        .wait(Duration::from_secs(60))
        .await;
    assert!(status.success(), "{}", scan.printed());
    let docs = emf_documents(&scan.stdout(), std::slice::from_ref(&key));
    let landed = docs
        .iter()
        .find(|d| d["Table"] == table.as_str() && d.get("CoordinatorSinceLandedSeconds").is_some())
        .unwrap_or_else(|| panic!("no CoordinatorSinceLandedSeconds for {table}: {docs:?}"));
    let secs = landed["CoordinatorSinceLandedSeconds"].as_f64().unwrap();
    assert!((0.0..600.0).contains(&secs), "{secs}");
    assert_eq!(
        emf_total(&docs, "CoordinatorTables", &[("State", "fresh")]),
        1.0
    );
    assert_eq!(
        emf_total(&docs, "CoordinatorTables", &[("State", "never_seen")]),
        1.0
    );
    assert_eq!(
        emf_total(&docs, "CoordinatorTables", &[("State", "silent")]),
        0.0
    );

    // Loaded, then `run` on Prometheus: the last load appears too.
    let run = tb.drain(&[]).await;
    assert_eq!(run.loaded, 1, "{run:?}");
    let c = Proc::start(with_rules(&[
        "run",
        "--interval=1s",
        "--metrics-addr=127.0.0.1:0",
    ]));
    let addr = c.endpoint().await;
    // A pass's gauges are set after its count: two passes, the first one's are all there.
    let text = scrape_after_passes(&addr, 2).await;
    let _ = std::fs::remove_file(&rules);
    for gauge in ["since_landed", "since_loaded"] {
        let v = sample(
            &text,
            &format!("sluice_coordinator_{gauge}_seconds{{table=\"{table}\"}}"),
        )
        .unwrap_or_else(|| panic!("{gauge}: {text}"));
        assert!((0.0..600.0).contains(&v), "{gauge} {v}");
    }
    assert!(
        !text.contains(&format!("{}.nothing\"", tb.schema)),
        "a table with no file has no series: {text}"
    );
    for (state, n) in [
        ("fresh", 1.0),
        ("never_seen", 1.0),
        ("late", 0.0),
        ("silent", 0.0),
    ] {
        assert_eq!(
            sample(
                &text,
                &format!("sluice_coordinator_tables{{state=\"{state}\"}}")
            ),
            Some(n),
            "{state}: {text}"
        );
    }
}
