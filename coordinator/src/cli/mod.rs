//! The command line: flags with environment equivalents, validated per command, and
//! [`execute`], which hands each command to its runner. `main` only parses, sets up logging and
//! calls [`execute`].
//!
//! - [`pass`]: `bootstrap`, `scan`, `run` (the coordinator's own work);
//! - [`read`]: `manifest`, `status`, `skipped`, `check` (questions; they change nothing);
//! - [`moves`]: `retry`, `reload`, `refresh`, `skip` (operator moves, shown before they are
//!   made unless `--yes`).
//!
//! Must not: hold logic of its own beyond choosing what to print (the runners call `scan`,
//! `ops` and `bootstrap`), or read a setting a command does not need.

mod moves;
mod pass;
mod read;

use crate::error::CoordinatorError;
use crate::observe::MetricsSettings;
use crate::ops::ledger::Ledger;
use crate::ops::{Ops, Scope};
use crate::plan::Policy;
use crate::scan::ScanContext;
use clap::{Args, Parser, Subcommand};
use sluice_common::config::{required, AwsClients, SourceLocation};
use sluice_common::manifest::Status;
use sluice_common::rules::Rules;
use sluice_common::store::ManifestStore;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
#[command(
    name = "sluice-coordinator",
    version,
    about = "Keeps the manifest and the queue in step with the lake"
)]
pub struct Cli {
    #[command(flatten)]
    pub common: Common,
    #[command(subcommand)]
    pub command: Command,
}

/// Settings shared by the commands; each command checks the ones it needs.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// The lake: s3://bucket/prefix/ (prefix may be empty).
    #[arg(long, env = "SLUICE_SOURCE", global = true)]
    pub source: Option<String>,
    /// URL of the work queue.
    #[arg(long, env = "SLUICE_QUEUE_URL", global = true)]
    pub queue_url: Option<String>,
    /// Name of the DynamoDB manifest table.
    #[arg(long, env = "SLUICE_MANIFEST_TABLE", global = true)]
    pub manifest_table: Option<String>,
    /// Re-enqueue files stuck in discovered/queued/loading, or failed, this long (30s, 10m, 1h).
    #[arg(long, env = "SLUICE_REQUEUE_AFTER", default_value = "10m", value_parser = parse_duration, global = true)]
    pub requeue_after: Duration,
    /// How long a table's full load must go without a new LOAD file before it counts as
    /// complete (and its older rows are replaced).
    #[arg(long, env = "SLUICE_GENERATION_QUIET", default_value = "5m", value_parser = parse_duration, global = true)]
    pub generation_quiet: Duration,
    /// Attempts per file before it is marked dead (keep equal to the workers').
    #[arg(long, env = "SLUICE_MAX_ATTEMPTS", default_value = "5", global = true)]
    pub max_attempts: u32,
    /// Log format: json, text or auto (text on a terminal).
    #[arg(long, env = "SLUICE_LOG_FORMAT", default_value = "auto", global = true)]
    pub log_format: String,
    /// PostgreSQL, for the commands that read the ledger (status, skipped, reload); the
    /// password is never shown.
    #[arg(
        long,
        env = "SLUICE_DATABASE_URL",
        hide_env_values = true,
        global = true
    )]
    pub database_url: Option<String>,
    /// Schema of the workers' ledger.
    #[arg(
        long,
        env = "SLUICE_STATE_SCHEMA",
        default_value = "sluice",
        global = true
    )]
    pub state_schema: String,
    /// The rules file (`sluice.toml`): its tables are expected in the lake.
    #[arg(long, env = "SLUICE_CONFIG", global = true)]
    pub config: Option<String>,
    /// `scan` and `run`: serve Prometheus metrics on this address (host:port), at /metrics.
    #[arg(long, env = "SLUICE_METRICS_ADDR", global = true)]
    pub metrics_addr: Option<String>,
    /// `scan` and `run`: write metrics to standard output as CloudWatch embedded-metric-format
    /// lines.
    #[arg(long, env = "SLUICE_METRICS_EMF", global = true, default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub metrics_emf: bool,
    /// Seconds between two EMF flushes.
    #[arg(
        long,
        env = "SLUICE_METRICS_INTERVAL",
        default_value = "60",
        global = true
    )]
    pub metrics_interval: u64,
    /// URL of the dead-letter queue, for its depth in the metrics.
    #[arg(long, env = "SLUICE_DLQ_URL", global = true)]
    pub dlq_url: Option<String>,
    /// `status` and `skipped`: the workers' allowed target schemas, comma-separated; their
    /// tables that never had a file are reported `never_seen`.
    #[arg(long, env = "SLUICE_SCHEMAS", global = true, value_delimiter = ',')]
    pub schemas: Vec<String>,
    /// URL of the S3 events queue (EventBridge rule or bucket notification target): `run`
    /// reads it and enqueues each new file as it lands, between passes; `status` shows it.
    #[arg(long, env = "SLUICE_EVENTS_QUEUE_URL", global = true)]
    pub events_queue_url: Option<String>,
}

/// Who makes an operator move.
#[derive(Debug, Clone, Args)]
pub struct WhoArg {
    /// Recorded as who made the move (default: $USER, else the AWS caller's ARN).
    #[arg(long, env = "SLUICE_WHO")]
    pub who: Option<String>,
}

/// The part of the lake a command is about.
#[derive(Debug, Clone, Args)]
pub struct ScopeArgs {
    /// Source table, schema.table as in the S3 key.
    #[arg(long)]
    pub table: Option<String>,
    /// Key prefix, as in S3 keys (including the lake's prefix).
    #[arg(long)]
    pub prefix: Option<String>,
}

impl ScopeArgs {
    fn scope(&self) -> Scope {
        Scope {
            table: self.table.clone(),
            prefix: self.prefix.clone(),
        }
    }
}

/// A time range on the items' last change.
#[derive(Debug, Clone, Args)]
pub struct RangeArgs {
    /// Last changed at or after: RFC 3339 (2024-10-29T11:00:00Z) or an age (30m, 2h).
    #[arg(long, value_parser = parse_time)]
    pub since: Option<String>,
    /// Last changed at or before: RFC 3339 or an age.
    #[arg(long, value_parser = parse_time)]
    pub until: Option<String>,
}

impl Common {
    /// The metrics flags, checked.
    pub fn metrics(&self) -> Result<MetricsSettings, CoordinatorError> {
        if self.metrics_interval == 0 {
            return Err(sluice_common::Error::Config {
                setting: "SLUICE_METRICS_INTERVAL",
                reason: "must be at least 1 second".into(),
            }
            .into());
        }
        Ok(MetricsSettings {
            addr: self.metrics_addr.clone().filter(|a| !a.is_empty()),
            emf: self.metrics_emf,
            interval: Duration::from_secs(self.metrics_interval),
            dlq_url: self.dlq_url.clone().filter(|a| !a.is_empty()),
            rules: match &self.config {
                Some(path) => Rules::load(path)?,
                None => Rules::default(),
            },
        })
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the manifest table (and, with --create-queue, a queue with its dead-letter queue).
    Bootstrap(BootstrapArgs),
    /// One pass: list, diff against the manifest, enqueue.
    Scan(ScanArgs),
    /// Pass after pass until SIGTERM.
    Run(RunArgs),
    /// Read the manifest.
    Manifest {
        #[command(subcommand)]
        command: ManifestCommand,
    },
    /// Files by state, bytes, rows, queues, oldest unloaded file, throughput and time to drain.
    Status(StatusArgs),
    /// Every object in the lake that is not loaded, and why (S3 vs manifest vs ledger).
    Skipped(SkippedArgs),
    /// Re-enqueue failed, dead (or stuck, or skipped) files; dead files come back only here.
    Retry(RetryArgs),
    /// Load loaded files again (by table or key prefix): ledger rows deleted, files re-enqueued.
    Reload(ReloadArgs),
    /// Re-apply a table's current full load as a new generation (for a table damaged by hand):
    /// its LOAD files load again, then the rows they do not contain are removed.
    Refresh(RefreshArgs),
    /// Check that each table's rules fit its target table in PostgreSQL (the tables of the
    /// rules file, and with --source every table folder in the lake), before anything loads.
    /// Exit status 1 when any finding is an error.
    Check(CheckArgs),
    /// Mark a file as deliberately not loaded, recording who and why.
    Skip(SkipArgs),
}

#[derive(Debug, Args)]
pub struct BootstrapArgs {
    /// Also create this queue and `<name>-dlq` (for local use; on AWS the stack makes them).
    #[arg(long)]
    pub create_queue: Option<String>,
    #[arg(long, default_value = "120")]
    pub visibility_timeout: u32,
    /// Receives before SQS moves a message to the dead-letter queue.
    #[arg(long, default_value = "10")]
    pub max_receive_count: u32,
}

#[derive(Debug, Args)]
pub struct ScanArgs {
    /// Print the plan; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// List the whole lake (not each table folder from after its checkpoints) and read every
    /// listed object's manifest item, not only those the listing checkpoints do not vouch
    /// for, and rewrite the checkpoints (after manifest items were deleted by hand, or to
    /// catch a file rewritten inside a closed range).
    #[arg(long)]
    pub full: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Time between passes (30s, 5m, 1h). With --events-queue-url the passes only reconcile
    /// (they catch the files whose event was lost): a longer interval does.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub interval: Duration,
    /// List the whole lake every N passes (the first pass included); the others list each
    /// table folder from after the keys its checkpoints vouch for (S3 StartAfter). 1: every
    /// pass lists the whole lake.
    #[arg(long, env = "SLUICE_FULL_LISTING_EVERY", default_value = "10", value_parser = clap::value_parser!(u32).range(1..))]
    pub full_listing_every: u32,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub scope: ScopeArgs,
    /// Redraw with progress bars until the backlog is empty.
    #[arg(long)]
    pub watch: bool,
    /// Time between redraws with --watch.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub interval: Duration,
    /// Window for the recent throughput and the ETA.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub window: Duration,
    /// Also read loaded manifest items for loaded bytes (a full scan without --table).
    #[arg(long)]
    pub full: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SkippedArgs {
    #[command(flatten)]
    pub scope: ScopeArgs,
    /// Also read every loaded file's manifest item (finds loaded files whose item was deleted).
    #[arg(long)]
    pub check_loaded: bool,
    /// discovered/queued/loading longer than this is stuck (default: --requeue-after).
    #[arg(long, value_parser = parse_duration)]
    pub stuck_after: Option<Duration>,
    /// Exit with status 3 when any file is not loaded (deliberate skips excepted).
    #[arg(long)]
    pub fail_if_any: bool,
    #[arg(long)]
    pub json: bool,
}

/// What an operator move is and how it is shown: shared by `retry` and `reload`.
#[derive(Debug, Args)]
pub struct MoveArgs {
    /// Recorded with the move.
    #[arg(long)]
    pub reason: Option<String>,
    #[command(flatten)]
    pub who: WhoArg,
    /// Do it (without: show what would be done).
    #[arg(long)]
    pub yes: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RetryArgs {
    /// Statuses to retry (repeatable; default: failed and dead).
    #[arg(long, value_parser = parse_status)]
    pub status: Vec<Status>,
    #[command(flatten)]
    pub scope: ScopeArgs,
    /// Only files whose error class or message contains this text (case-insensitive).
    #[arg(long)]
    pub error: Option<String>,
    #[command(flatten)]
    pub range: RangeArgs,
    /// Move the dead-letter queue's messages back to the work queue instead.
    #[arg(long)]
    pub dlq: bool,
    #[command(flatten)]
    pub moving: MoveArgs,
}

#[derive(Debug, Args)]
pub struct ReloadArgs {
    #[command(flatten)]
    pub scope: ScopeArgs,
    #[command(flatten)]
    pub range: RangeArgs,
    #[command(flatten)]
    pub moving: MoveArgs,
}

#[derive(Debug, Args)]
pub struct RefreshArgs {
    /// Source table, schema.table as in the S3 key.
    #[arg(long)]
    pub table: String,
    #[command(flatten)]
    pub who: WhoArg,
    /// Do it (without: show what would be done).
    #[arg(long)]
    pub yes: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Check this role's privileges and ownership (the workers' role; default: the role
    /// of --database-url).
    #[arg(long)]
    pub role: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SkipArgs {
    pub key: String,
    /// Why it is not loaded.
    #[arg(long)]
    pub reason: String,
    /// Only this version of the key (default: every version that is not loaded).
    #[arg(long)]
    pub etag: Option<String>,
    #[command(flatten)]
    pub who: WhoArg,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum ManifestCommand {
    /// Files by status and/or table (without filters: every file that is not loaded).
    List {
        #[arg(long, value_parser = parse_status)]
        status: Option<Status>,
        /// Source table, schema.table as in the S3 key.
        #[arg(long)]
        table: Option<String>,
        #[arg(long)]
        limit: Option<usize>,
        #[arg(long)]
        json: bool,
    },
    /// One key's whole story, every version of it.
    Show {
        key: String,
        #[arg(long)]
        json: bool,
    },
    /// Files per table and status (a full scan of the manifest).
    Summary {
        #[arg(long)]
        json: bool,
    },
}

/// Parses `90`, `90s`, `15m`, `2h`.
pub fn parse_duration(s: &str) -> Result<Duration, CoordinatorError> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let bad = |why: String| CoordinatorError::Usage(why);
    let n: u64 = num
        .parse()
        .map_err(|_| bad(format!("{s:?} is not a duration like 30s, 10m or 1h")))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(bad(format!("{s:?}: unit must be s, m or h"))),
    };
    Ok(Duration::from_secs(secs))
}

/// Parses a time as RFC 3339, or an age (`30m`: thirty minutes ago), into the manifest's format.
pub fn parse_time(s: &str) -> Result<String, CoordinatorError> {
    if let Some(t) = sluice_common::timefmt::parse(s) {
        return Ok(sluice_common::timefmt::format(t));
    }
    let bad = || {
        CoordinatorError::Usage(format!(
            "{s:?} is neither an RFC 3339 time nor an age like 30m or 2h"
        ))
    };
    let age = parse_duration(s).map_err(|_| bad())?;
    let age = time::Duration::try_from(age).map_err(|_| bad())?;
    Ok(sluice_common::timefmt::format(
        time::OffsetDateTime::now_utc() - age,
    ))
}

fn parse_status(s: &str) -> Result<Status, CoordinatorError> {
    Status::parse(s).ok_or_else(|| {
        CoordinatorError::Usage(format!(
            "unknown status {s:?}; one of {}",
            Status::ALL.map(|s| s.as_str()).join(", ")
        ))
    })
}

fn store(common: &Common, aws: &AwsClients) -> Result<ManifestStore, CoordinatorError> {
    let table = required("SLUICE_MANIFEST_TABLE", common.manifest_table.clone())?;
    Ok(ManifestStore::new(aws.dynamodb.clone(), table))
}

/// Validates what a scan needs.
pub fn scan_context(common: &Common, aws: &AwsClients) -> Result<ScanContext, CoordinatorError> {
    let source = SourceLocation::parse(&required("SLUICE_SOURCE", common.source.clone())?)?;
    let queue_url = required("SLUICE_QUEUE_URL", common.queue_url.clone())?;
    if common.max_attempts == 0 {
        return Err(sluice_common::Error::Config {
            setting: "SLUICE_MAX_ATTEMPTS",
            reason: "must be at least 1".into(),
        }
        .into());
    }
    Ok(ScanContext {
        s3: aws.s3.clone(),
        sqs: aws.sqs.clone(),
        store: store(common, aws)?,
        source,
        queue_url,
        policy: Policy {
            requeue_after: common.requeue_after,
            max_attempts: common.max_attempts,
            generation_quiet: common.generation_quiet,
        },
    })
}

/// What the operator commands may use; each command checks what it needs when it runs.
pub fn ops_context(common: &Common, aws: &AwsClients) -> Result<Ops, CoordinatorError> {
    let source = match &common.source {
        Some(s) if !s.trim().is_empty() => Some(SourceLocation::parse(s)?),
        _ => None,
    };
    let ledger = match &common.database_url {
        Some(url) if !url.trim().is_empty() => Some(Ledger::connect(url, &common.state_schema)?),
        _ => None,
    };
    let rules = match &common.config {
        Some(path) => Rules::load(path)?,
        None => Rules::default(),
    };
    Ok(Ops {
        aws: aws.clone(),
        store: store(common, aws)?,
        source,
        queue_url: common.queue_url.clone().filter(|q| !q.trim().is_empty()),
        events_queue_url: common
            .events_queue_url
            .clone()
            .filter(|q| !q.trim().is_empty()),
        ledger,
        rules,
        policy: Policy {
            requeue_after: common.requeue_after,
            max_attempts: common.max_attempts,
            generation_quiet: common.generation_quiet,
        },
        schemas: common
            .schemas
            .iter()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect(),
    })
}

/// Runs a command; what it prints goes to standard output, logs to standard error. Returns
/// the process's exit status (non-zero only for `skipped --fail-if-any` and `check`; errors are
/// `Err`).
pub async fn execute(
    cli: Cli,
    aws: AwsClients,
    shutdown: CancellationToken,
) -> Result<i32, CoordinatorError> {
    let common = &cli.common;
    match cli.command {
        Command::Bootstrap(a) => pass::bootstrap(common, &aws, a).await,
        Command::Scan(a) => pass::scan(common, &aws, a).await,
        Command::Run(a) => pass::run(common, &aws, a, &shutdown).await,
        Command::Manifest { command } => read::manifest(common, &aws, command).await,
        Command::Status(a) => read::status(common, &aws, a, &shutdown).await,
        Command::Skipped(a) => read::skipped(common, &aws, a).await,
        Command::Check(a) => read::check(common, &aws, a).await,
        Command::Retry(a) => moves::retry(common, &aws, a).await,
        Command::Reload(a) => moves::reload(common, &aws, a).await,
        Command::Refresh(a) => moves::refresh(common, &aws, a).await,
        Command::Skip(a) => moves::skip(common, &aws, a).await,
    }
}

fn print_json<T: serde::Serialize>(v: &T) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).expect("reports serialize")
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert!(parse_duration("1d").is_err());
        assert!(parse_duration("m").is_err());
    }

    #[test]
    fn cli_parses() {
        let cli = Cli::try_parse_from([
            "sluice-coordinator",
            "manifest",
            "list",
            "--status",
            "failed",
            "--json",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Command::Manifest {
                command: ManifestCommand::List {
                    status: Some(Status::Failed),
                    json: true,
                    ..
                }
            }
        ));
        assert!(Cli::try_parse_from([
            "sluice-coordinator",
            "manifest",
            "list",
            "--status",
            "nope"
        ])
        .is_err());
        // A bare --metrics-emf before the command does not swallow it.
        let cli = Cli::try_parse_from(["sluice-coordinator", "--metrics-emf", "scan"]).unwrap();
        assert!(cli.common.metrics_emf);
        assert!(matches!(cli.command, Command::Scan(_)));
        let cli =
            Cli::try_parse_from(["sluice-coordinator", "scan", "--metrics-emf=false"]).unwrap();
        assert!(!cli.common.metrics_emf);
    }

    #[test]
    fn operator_commands_parse() {
        let cli = Cli::try_parse_from([
            "sluice-coordinator",
            "retry",
            "--status",
            "dead",
            "--status",
            "queued",
            "--table",
            "s.t",
            "--error",
            "unknown_table",
            "--since",
            "2h",
            "--yes",
            "--who",
            "alice",
        ])
        .unwrap();
        match cli.command {
            Command::Retry(a) => {
                assert_eq!(a.status, vec![Status::Dead, Status::Queued]);
                assert_eq!(a.scope.table.as_deref(), Some("s.t"));
                assert_eq!(a.error.as_deref(), Some("unknown_table"));
                assert!(a.range.since.unwrap().ends_with('Z'));
                assert!(a.moving.yes && !a.dlq);
                assert_eq!(a.moving.who.who.as_deref(), Some("alice"));
            }
            other => panic!("{other:?}"),
        }
        // skip needs a reason
        assert!(Cli::try_parse_from(["sluice-coordinator", "skip", "k"]).is_err());
        let cli = Cli::try_parse_from([
            "sluice-coordinator",
            "--database-url",
            "postgres://u:p@h/db",
            "skipped",
            "--fail-if-any",
            "--stuck-after",
            "30m",
        ])
        .unwrap();
        assert_eq!(cli.common.state_schema, "sluice");
        assert!(matches!(
            cli.command,
            Command::Skipped(SkippedArgs {
                fail_if_any: true,
                stuck_after: Some(d),
                ..
            }) if d == Duration::from_secs(1800)
        ));
        let cli = Cli::try_parse_from([
            "sluice-coordinator",
            "status",
            "--watch",
            "--interval",
            "2s",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Command::Status(StatusArgs { watch: true, .. })
        ));
        let cli = Cli::try_parse_from([
            "sluice-coordinator",
            "--config",
            "sluice.toml",
            "check",
            "--role",
            "sluice_worker",
            "--json",
        ])
        .unwrap();
        assert_eq!(cli.common.config.as_deref(), Some("sluice.toml"));
        assert!(matches!(
            cli.command,
            Command::Check(CheckArgs { role: Some(r), json: true }) if r == "sluice_worker"
        ));
    }

    #[test]
    fn times_are_rfc3339_or_ages() {
        assert_eq!(
            parse_time("2024-10-29T11:00:00+02:00").unwrap(),
            "2024-10-29T09:00:00.000Z"
        );
        let ago = parse_time("1h").unwrap();
        let t = sluice_common::timefmt::parse(&ago).unwrap();
        let age = time::OffsetDateTime::now_utc() - t;
        assert!(age >= time::Duration::minutes(59) && age <= time::Duration::minutes(61));
        assert!(parse_time("yesterday").is_err());
    }
}
