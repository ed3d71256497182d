//! The command line: flags with environment equivalents, validated per command, and the
//! commands themselves. `main` only parses, sets up logging and calls [`execute`].

use crate::bootstrap::{self, QueueSpec};
use crate::error::CoordinatorError;
use crate::observe::{self, MetricsSettings};
use crate::plan::Policy;
use crate::report;
use crate::scan::{self, ScanContext};
use clap::{Args, Parser, Subcommand};
use sluice_common::config::{required, AwsClients, SourceLocation};
use sluice_common::manifest::Status;
use sluice_common::store::ManifestStore;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tracing::info;

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
        })
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the manifest table (and, with --create-queue, a queue with its dead-letter queue).
    Bootstrap {
        /// Also create this queue and `<name>-dlq` (for local use; on AWS the stack makes them).
        #[arg(long)]
        create_queue: Option<String>,
        #[arg(long, default_value = "120")]
        visibility_timeout: u32,
        /// Receives before SQS moves a message to the dead-letter queue.
        #[arg(long, default_value = "10")]
        max_receive_count: u32,
    },
    /// One pass: list, diff against the manifest, enqueue.
    Scan {
        /// Print the plan; change nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
    /// Pass after pass until SIGTERM.
    Run {
        /// Time between passes (30s, 5m, 1h).
        #[arg(long, default_value = "60s", value_parser = parse_duration)]
        interval: Duration,
        #[arg(long)]
        json: bool,
    },
    /// Read the manifest.
    Manifest {
        #[command(subcommand)]
        command: ManifestCommand,
    },
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
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 30s, 10m or 1h"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("{s:?}: unit must be s, m or h")),
    };
    Ok(Duration::from_secs(secs))
}

fn parse_status(s: &str) -> Result<Status, String> {
    Status::parse(s).ok_or_else(|| {
        format!(
            "unknown status {s:?}; one of {}",
            Status::ALL.map(|s| s.as_str()).join(", ")
        )
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

/// Runs a command; what it prints goes to standard output, logs to standard error.
pub async fn execute(
    cli: Cli,
    aws: AwsClients,
    shutdown: CancellationToken,
) -> Result<(), CoordinatorError> {
    let common = &cli.common;
    match cli.command {
        Command::Bootstrap {
            create_queue,
            visibility_timeout,
            max_receive_count,
        } => {
            let store = store(common, &aws)?;
            let created = bootstrap::manifest(&store).await?;
            println!(
                "manifest table {}: {}",
                store.table_name(),
                if created { "created" } else { "exists" }
            );
            if let Some(name) = create_queue {
                let url = bootstrap::queue(
                    &aws.sqs,
                    &QueueSpec {
                        name,
                        visibility_timeout_secs: visibility_timeout,
                        max_receive_count,
                    },
                )
                .await?;
                println!("queue: {url}");
            }
        }
        Command::Scan { dry_run, json } => {
            let ctx = scan_context(common, &aws)?;
            let obs = observe::start(&common.metrics()?, ctx.store.table_name()).await?;
            let started = Instant::now();
            let result = scan::scan(&ctx, dry_run).await;
            observe::pass(&obs, &ctx, &result, started.elapsed()).await;
            let (summary, plan) = result?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&summary).expect("summary serializes")
                );
            } else {
                print_summary(&summary);
                if dry_run {
                    for c in plan.new.iter().chain(&plan.changed) {
                        println!("  would enqueue {} ({})", c.object.key, c.object.etag);
                    }
                    for i in &plan.requeue {
                        println!(
                            "  would re-enqueue {} ({}), {}",
                            i.key,
                            i.etag,
                            i.status.map(|s| s.as_str()).unwrap_or("?")
                        );
                    }
                    for i in &plan.give_up {
                        println!(
                            "  would mark dead {} ({}) after {} attempts",
                            i.key, i.etag, i.attempts
                        );
                    }
                    for (o, why) in &plan.unloadable {
                        println!("  would record as unloadable {}: {why}", o.key);
                    }
                }
            }
        }
        Command::Run { interval, json } => {
            let ctx = scan_context(common, &aws)?;
            let obs = observe::start(&common.metrics()?, ctx.store.table_name()).await?;
            loop {
                let started = Instant::now();
                let result = scan::scan(&ctx, false).await;
                observe::pass(&obs, &ctx, &result, started.elapsed()).await;
                match result {
                    Ok((summary, _)) if json => println!(
                        "{}",
                        serde_json::to_string(&summary).expect("summary serializes")
                    ),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::error!(error = %e, "scan pass failed; next pass in one interval")
                    }
                }
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(interval) => {}
                }
            }
            info!("coordinator stopped");
        }
        Command::Manifest { command } => {
            let store = store(common, &aws)?;
            match command {
                ManifestCommand::List {
                    status,
                    table,
                    limit,
                    json,
                } => {
                    let (items, scanned) =
                        report::list(&store, status, table.as_deref(), limit).await?;
                    if scanned {
                        eprintln!("note: listing loaded files without --table needs a full scan of the manifest");
                    }
                    if json {
                        println!(
                            "{}",
                            serde_json::to_string_pretty(&items).expect("items serialize")
                        );
                    } else {
                        print!("{}", report::format_list(&items));
                        if status.is_none() && table.is_none() {
                            println!("({} files not loaded; loaded files are listed with --status loaded or --table)", items.len());
                        }
                    }
                }
                ManifestCommand::Show { key, json } => {
                    let items = store.history(&key).await?;
                    if items.is_empty() {
                        return Err(CoordinatorError::Usage(format!(
                            "no manifest item for key {key}"
                        )));
                    }
                    if json {
                        println!(
                            "{}",
                            serde_json::to_string_pretty(&items).expect("items serialize")
                        );
                    } else {
                        print!("{}", report::format_show(&items));
                    }
                }
                ManifestCommand::Summary { json } => {
                    let s = report::summary(&store).await?;
                    if json {
                        println!(
                            "{}",
                            serde_json::to_string_pretty(&s).expect("summary serializes")
                        );
                    } else {
                        print!("{}", report::format_summary(&s));
                    }
                }
            }
        }
    }
    Ok(())
}

fn print_summary(s: &scan::ScanSummary) {
    println!(
        "{}listed {} | new {} | changed {} | re-enqueued {} | unchanged {} | dead {} | unloadable {} | sent {} | send failed {} | generations in progress {} | replacements asked {}",
        if s.dry_run { "(dry run) " } else { "" },
        s.listed, s.new, s.changed, s.requeued, s.unchanged, s.dead, s.unloadable, s.sent, s.send_failed,
        s.generations_in_progress, s.replacements_sent
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
        assert!(matches!(cli.command, Command::Scan { .. }));
        let cli =
            Cli::try_parse_from(["sluice-coordinator", "scan", "--metrics-emf=false"]).unwrap();
        assert!(!cli.common.metrics_emf);
    }
}
