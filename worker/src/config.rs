//! The worker's settings: flags with environment equivalents, validated once at start-up.

use crate::db::Waits;
use clap::Parser;
use sluice_common::config::redact_url;
use sluice_common::rules::Rules;
use std::num::NonZeroUsize;
use std::time::Duration;

/// `sluice-worker run`: take files off the queue and load them into PostgreSQL.
#[derive(Debug, Clone, Parser)]
pub struct WorkerArgs {
    /// URL of the work queue.
    #[arg(long, env = "SLUICE_QUEUE_URL")]
    pub queue_url: String,
    /// Name of the DynamoDB manifest table.
    #[arg(long, env = "SLUICE_MANIFEST_TABLE")]
    pub manifest_table: String,
    /// PostgreSQL connection URL (its password is never logged).
    #[arg(long, env = "SLUICE_DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
    /// Path of a `sluice.toml` with per-table rules; DMS defaults without it.
    #[arg(long, env = "SLUICE_CONFIG")]
    pub config: Option<String>,
    /// Files loaded at once.
    #[arg(long, env = "SLUICE_CONCURRENCY", default_value = "4")]
    pub concurrency: NonZeroUsize,
    /// Most CDC files of one table applied in one transaction (one stage, one merge); 1 loads
    /// every file alone. A worker holds up to `concurrency` + this many - 1 messages at once.
    #[arg(long, env = "SLUICE_BATCH_FILES", default_value = "100", value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub batch_files: u16,
    /// Most bytes (of the objects, as listed) in one batch; a file larger than this loads alone.
    #[arg(long, env = "SLUICE_BATCH_MAX_BYTES", default_value = "268435456")]
    pub batch_max_bytes: u64,
    /// Longest wait, in milliseconds, for more files of a table to join its batch; the wait
    /// ends as soon as no received message is still on its way to the batch.
    #[arg(long, env = "SLUICE_BATCH_WAIT_MS", default_value = "200")]
    pub batch_wait_ms: u64,
    /// Exit 0 once the queue has stayed empty this many seconds (default: run until SIGTERM).
    #[arg(long, env = "SLUICE_EXIT_WHEN_IDLE")]
    pub exit_when_idle: Option<u64>,
    /// Seconds a received message stays invisible; extended every third of it while loading.
    #[arg(long, env = "SLUICE_VISIBILITY_TIMEOUT", default_value = "120")]
    pub visibility_timeout: u64,
    /// Long-poll wait of each receive, in seconds (0 to 20).
    #[arg(long, env = "SLUICE_WAIT_TIME", default_value = "20")]
    pub wait_time: u64,
    /// Attempts per file before it is marked dead.
    #[arg(long, env = "SLUICE_MAX_ATTEMPTS", default_value = "5")]
    pub max_attempts: u32,
    /// On SIGTERM, seconds to let in-flight files finish before abandoning them.
    #[arg(long, env = "SLUICE_DRAIN_TIMEOUT", default_value = "90")]
    pub drain_timeout: u64,
    /// Seconds to keep retrying a file through a database outage before giving it back.
    #[arg(long, env = "SLUICE_DB_RETRY_FOR", default_value = "300")]
    pub db_retry_for: u64,
    /// Name of this worker in the manifest (default: host name and process id).
    #[arg(long, env = "SLUICE_WORKER_ID")]
    pub worker_id: Option<String>,
    /// PostgreSQL schema of Sluice's own bookkeeping (the ledger).
    #[arg(long, env = "SLUICE_STATE_SCHEMA", default_value = "sluice")]
    pub state_schema: String,
    /// Largest record accepted, in bytes; a longer one fails its file.
    #[arg(long, env = "SLUICE_MAX_RECORD_BYTES", default_value = "67108864")]
    pub max_record_bytes: usize,
    /// Largest decompressed size of one `.csv.gz` file, in bytes (default 4 GiB, four times the
    /// largest file DMS writes); a file that decompresses to more fails as
    /// `decompressed_too_large`, a gzip bomb.
    #[arg(
        long,
        env = "SLUICE_MAX_DECOMPRESSED_BYTES",
        default_value = "4294967296"
    )]
    pub max_decompressed_bytes: u64,
    /// Log format: json, text or auto (text on a terminal).
    #[arg(long, env = "SLUICE_LOG_FORMAT", default_value = "auto")]
    pub log_format: String,
    /// Target schemas files may load into, comma-separated (default: any the role can write).
    /// A key naming a table elsewhere fails before any SQL touches it.
    #[arg(long, env = "SLUICE_SCHEMAS", value_delimiter = ',')]
    pub schemas: Option<Vec<String>>,
    /// Seconds a message that is not Sluice's stays invisible before its next receive (the
    /// queue's redrive policy moves it to the dead-letter queue).
    #[arg(long, env = "SLUICE_BAD_MESSAGE_DELAY", default_value = "300")]
    pub bad_message_delay: u64,
    /// Fault injection for the fault tests only: `exit-after-commit` or `exit-after-manifest`
    /// make the process exit at once at that point of the first file.
    #[arg(long, env = "SLUICE_FAULT", hide = true)]
    pub fault: Option<String>,
    /// Serve Prometheus metrics on this address (host:port), at /metrics (and /health).
    #[arg(long, env = "SLUICE_METRICS_ADDR")]
    pub metrics_addr: Option<String>,
    /// Serve the health check on this address (host:port), at /health (and /metrics); may be
    /// the metrics address.
    #[arg(long, env = "SLUICE_HEALTH_ADDR")]
    pub health_addr: Option<String>,
    /// Write metrics to standard output as CloudWatch embedded-metric-format lines.
    #[arg(long, env = "SLUICE_METRICS_EMF", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub metrics_emf: bool,
    /// Seconds between two EMF flushes.
    #[arg(long, env = "SLUICE_METRICS_INTERVAL", default_value = "60")]
    pub metrics_interval: u64,
    /// Longest wait, in seconds, for a table's merge lock (other loads of the table merge
    /// meanwhile); then the attempt fails as `lock_timeout` and is retried. 0: no limit.
    #[arg(long, env = "SLUICE_MERGE_LOCK_TIMEOUT", default_value = "600")]
    pub merge_lock_timeout: u64,
    /// Longest wait, in seconds, for any other lock (PostgreSQL's `lock_timeout`): adding the
    /// system columns or a tombstone table, the bookkeeping schema, the ledger row of a file
    /// another session is loading. 0: no limit.
    #[arg(long, env = "SLUICE_LOCK_TIMEOUT", default_value = "30")]
    pub lock_timeout: u64,
    /// Longest run of one statement, in seconds (PostgreSQL's `statement_timeout`); a file's
    /// `COPY` is one statement, so this bounds the load of the largest file. 0: no limit.
    #[arg(long, env = "SLUICE_STATEMENT_TIMEOUT", default_value = "3600")]
    pub statement_timeout: u64,
    /// Seconds a worker's session may sit idle inside a transaction before PostgreSQL ends it
    /// and releases its locks (`idle_in_transaction_session_timeout`). 0: no limit.
    #[arg(long, env = "SLUICE_IDLE_IN_TRANSACTION_TIMEOUT", default_value = "60")]
    pub idle_in_transaction_timeout: u64,
}

/// A point where the fault tests make the worker die.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// After the data is committed, before the manifest says `loaded`.
    ExitAfterCommit,
    /// After the manifest says `loaded`, before the message is deleted.
    ExitAfterManifest,
}

/// Validated settings.
#[derive(Clone)]
pub struct WorkerConfig {
    pub queue_url: String,
    pub manifest_table: String,
    pub database_url: String,
    pub rules: Rules,
    pub concurrency: usize,
    /// Most CDC files of one table per transaction (1: no batching).
    pub batch_files: usize,
    /// Most object bytes per batch.
    pub batch_max_bytes: u64,
    /// Longest wait for a batch to gather.
    pub batch_wait: Duration,
    pub exit_when_idle: Option<Duration>,
    pub visibility_timeout: Duration,
    pub wait_time: Duration,
    pub max_attempts: u32,
    pub drain_timeout: Duration,
    pub db_retry_for: Duration,
    pub worker_id: String,
    pub state_schema: String,
    pub max_record_bytes: usize,
    pub max_decompressed_bytes: u64,
    /// Target schemas files may load into; None: any.
    pub schemas: Option<Vec<String>>,
    pub bad_message_delay: Duration,
    pub fault: Option<Fault>,
    pub metrics_addr: Option<String>,
    pub health_addr: Option<String>,
    pub metrics_emf: bool,
    pub metrics_interval: Duration,
    /// How long the worker waits on PostgreSQL.
    pub waits: Waits,
}

impl std::fmt::Debug for WorkerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerConfig")
            .field("queue_url", &self.queue_url)
            .field("manifest_table", &self.manifest_table)
            .field("database_url", &redact_url(&self.database_url))
            .field("concurrency", &self.concurrency)
            .field("batch_files", &self.batch_files)
            .field("batch_max_bytes", &self.batch_max_bytes)
            .field("batch_wait", &self.batch_wait)
            .field("exit_when_idle", &self.exit_when_idle)
            .field("visibility_timeout", &self.visibility_timeout)
            .field("max_attempts", &self.max_attempts)
            .field("worker_id", &self.worker_id)
            .field("state_schema", &self.state_schema)
            .field("metrics_addr", &self.metrics_addr)
            .field("health_addr", &self.health_addr)
            .field("metrics_emf", &self.metrics_emf)
            .field("waits", &self.waits)
            .finish_non_exhaustive()
    }
}

impl WorkerArgs {
    /// Checks every setting; the error names the bad one.
    pub fn validate(self) -> Result<WorkerConfig, sluice_common::Error> {
        use sluice_common::config::required;
        let bad = |setting: &'static str, reason: &str| sluice_common::Error::Config {
            setting,
            reason: reason.to_owned(),
        };
        let queue_url = required("SLUICE_QUEUE_URL", Some(self.queue_url))?;
        let manifest_table = required("SLUICE_MANIFEST_TABLE", Some(self.manifest_table))?;
        let database_url = required("SLUICE_DATABASE_URL", Some(self.database_url))?;
        sluice_common::postgres::connection(&database_url)?;
        if !(1..=43200).contains(&self.visibility_timeout) {
            return Err(bad(
                "SLUICE_VISIBILITY_TIMEOUT",
                "must be 1 to 43200 seconds",
            ));
        }
        if self.wait_time > 20 {
            return Err(bad("SLUICE_WAIT_TIME", "must be 0 to 20 seconds"));
        }
        if self.max_attempts == 0 {
            return Err(bad("SLUICE_MAX_ATTEMPTS", "must be at least 1"));
        }
        if self.state_schema.is_empty() {
            return Err(bad("SLUICE_STATE_SCHEMA", "must not be empty"));
        }
        if self.max_decompressed_bytes == 0 {
            return Err(bad("SLUICE_MAX_DECOMPRESSED_BYTES", "must be at least 1"));
        }
        if self.metrics_interval == 0 {
            return Err(bad("SLUICE_METRICS_INTERVAL", "must be at least 1 second"));
        }
        let rules = match &self.config {
            Some(path) => Rules::load(path)?,
            None => Rules::default(),
        };
        let worker_id = self.worker_id.unwrap_or_else(default_worker_id);
        let schemas = self.schemas.map(|v| {
            v.into_iter()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
        });
        if schemas.as_ref().is_some_and(Vec::is_empty) {
            return Err(bad("SLUICE_SCHEMAS", "names no schema"));
        }
        let fault = match self.fault.as_deref() {
            None | Some("") => None,
            Some("exit-after-commit") => Some(Fault::ExitAfterCommit),
            Some("exit-after-manifest") => Some(Fault::ExitAfterManifest),
            Some(_) => return Err(bad("SLUICE_FAULT", "unknown fault")),
        };
        Ok(WorkerConfig {
            queue_url,
            manifest_table,
            database_url,
            rules,
            concurrency: self.concurrency.get(),
            batch_files: usize::from(self.batch_files),
            batch_max_bytes: self.batch_max_bytes,
            batch_wait: Duration::from_millis(self.batch_wait_ms),
            exit_when_idle: self.exit_when_idle.map(Duration::from_secs),
            visibility_timeout: Duration::from_secs(self.visibility_timeout),
            wait_time: Duration::from_secs(self.wait_time),
            max_attempts: self.max_attempts,
            drain_timeout: Duration::from_secs(self.drain_timeout),
            db_retry_for: Duration::from_secs(self.db_retry_for),
            worker_id,
            state_schema: self.state_schema,
            max_record_bytes: self.max_record_bytes,
            max_decompressed_bytes: self.max_decompressed_bytes,
            schemas,
            bad_message_delay: Duration::from_secs(self.bad_message_delay),
            fault,
            metrics_addr: self.metrics_addr.filter(|a| !a.is_empty()),
            health_addr: self.health_addr.filter(|a| !a.is_empty()),
            metrics_emf: self.metrics_emf,
            metrics_interval: Duration::from_secs(self.metrics_interval),
            waits: Waits {
                merge_lock: Duration::from_secs(self.merge_lock_timeout),
                lock: Duration::from_secs(self.lock_timeout),
                statement: Duration::from_secs(self.statement_timeout),
                idle_in_transaction: Duration::from_secs(self.idle_in_transaction_timeout),
            },
        })
    }
}

fn default_worker_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .unwrap_or_else(|| "worker".to_owned());
    format!("{host}-{}", std::process::id())
}
