//! `sluice-bench`: the Rust helpers of `bench/run.sh` (issue 8). Each command prints one line of
//! `name=value` pairs on standard output for the script to read; the AWS side comes from the
//! same environment as Sluice's binaries (`AWS_ENDPOINT_URL`, ...).

mod bare;
mod drive;
mod gen;
mod lake;

use clap::{Parser, Subcommand};
use sluice_common::config::AwsClients;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Parser)]
#[command(about = "Sluice benchmark helpers (driven by bench/run.sh)")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Writes a DMS full-load file of the orders table (ids start_id..start_id+rows).
    GenLoad {
        #[arg(long)]
        rows: u64,
        #[arg(long, default_value = "1")]
        start_id: u64,
        #[arg(long, default_value = "8")]
        seed: u64,
        /// Six more columns (character(3), an enum, time, interval, integer[], text[]): case 2b.
        #[arg(long)]
        wide: bool,
        #[arg(long)]
        out: PathBuf,
    },
    /// Writes DMS CDC files of the orders table into a directory.
    GenCdc {
        #[arg(long)]
        ops: u64,
        #[arg(long)]
        files: u64,
        /// Ids 1..=base_rows exist before the first operation.
        #[arg(long, default_value = "0")]
        base_rows: u64,
        #[arg(long, default_value = "8")]
        seed: u64,
        /// Time of the first file (RFC 3339).
        #[arg(long, default_value = "2025-01-01T00:00:00Z")]
        start: String,
        /// Time between two files, in milliseconds.
        #[arg(long, default_value = "60000")]
        interval_ms: u64,
        #[arg(long)]
        out: PathBuf,
    },
    /// Uploads one file as one object (creates the bucket if needed).
    Put {
        #[arg(long)]
        bucket: String,
        #[arg(long)]
        key: String,
        #[arg(long)]
        file: PathBuf,
    },
    /// Uploads every file of a directory under a prefix.
    PutDir {
        #[arg(long)]
        bucket: String,
        #[arg(long)]
        prefix: String,
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value = "16")]
        parallel: usize,
    },
    /// Puts objects from..to of the many-objects lake.
    Seed {
        #[arg(long)]
        bucket: String,
        #[arg(long)]
        prefix: String,
        #[arg(long)]
        from: u64,
        #[arg(long)]
        to: u64,
        #[arg(long, default_value = "10")]
        tables: u64,
        #[arg(long, default_value = "32")]
        parallel: usize,
    },
    /// Case 3, the floor: reads one object to nowhere.
    Read {
        #[arg(long)]
        bucket: String,
        #[arg(long)]
        key: String,
    },
    /// Case 6's reference: lists a prefix, paginated, nothing else.
    List {
        #[arg(long)]
        bucket: String,
        #[arg(long)]
        prefix: String,
    },
    /// Runs sluice-worker processes until the queue is empty.
    Drive {
        #[arg(long)]
        worker: PathBuf,
        #[arg(long, default_value = "1")]
        workers: usize,
        #[arg(long, default_value = "4")]
        concurrency: usize,
        #[arg(long)]
        queue_url: String,
        #[arg(long)]
        manifest_table: String,
        #[arg(long)]
        log_dir: PathBuf,
        #[arg(long)]
        moto_pid: Option<u32>,
        /// Files that must be `loaded` in the manifest afterwards (default: the fed files).
        #[arg(long)]
        expect: Option<u64>,
        /// More arguments for every `sluice-worker run`, split at whitespace (run.sh passes
        /// `$SLUICE_BENCH_WORKER_ARGS`, e.g. "--batch-files 8 --batch-wait-ms 50").
        #[arg(long, default_value = "", allow_hyphen_values = true)]
        worker_args: String,
        #[command(flatten)]
        feed: FeedArgs,
    },
    /// Case 5's reference: the worker's AWS calls per file, nothing else.
    Bare {
        #[arg(long)]
        queue_url: String,
        #[arg(long)]
        manifest_table: String,
        #[arg(long, default_value = "1")]
        loops: usize,
        #[arg(long, default_value = "4")]
        concurrency: usize,
        #[arg(long)]
        expect: Option<u64>,
        #[arg(long)]
        moto_pid: Option<u32>,
        #[command(flatten)]
        feed: FeedArgs,
    },
    /// Writes every object under a prefix into the manifest as `loaded` (case 6's start).
    SeedManifest {
        #[arg(long)]
        table: String,
        #[arg(long)]
        bucket: String,
        #[arg(long)]
        prefix: String,
        #[arg(long, default_value = "16")]
        parallel: usize,
    },
    /// Removes the manifest items of many-objects objects from..to.
    Forget {
        #[arg(long)]
        table: String,
        #[arg(long)]
        prefix: String,
        #[arg(long)]
        from: u64,
        #[arg(long)]
        to: u64,
        #[arg(long, default_value = "10")]
        tables: u64,
        #[arg(long, default_value = "16")]
        parallel: usize,
    },
    /// The listing checkpoints of a source, as a pass over its present objects leaves them:
    /// `--save FILE` computes and writes them (and keeps a copy in FILE), `--restore FILE`
    /// puts that copy back (case 6: every timed pass starts from the same checkpoints).
    Checkpoints {
        #[arg(long)]
        table: String,
        #[arg(long)]
        bucket: String,
        #[arg(long)]
        prefix: String,
        #[arg(long, conflicts_with = "restore", required_unless_present = "restore")]
        save: Option<PathBuf>,
        #[arg(long)]
        restore: Option<PathBuf>,
    },
    /// Empties a queue.
    Purge {
        #[arg(long)]
        queue_url: String,
    },
    /// Counts manifest items per status.
    Statuses {
        #[arg(long)]
        table: String,
    },
}

/// Messages fed while a run goes: one per object under `feed_prefix`, at most `window` ahead of
/// the files done (see `lake::Feeder`).
#[derive(clap::Args)]
struct FeedArgs {
    #[arg(long, requires = "feed_prefix")]
    feed_bucket: Option<String>,
    #[arg(long, requires = "feed_bucket")]
    feed_prefix: Option<String>,
    #[arg(long, default_value = "50")]
    window: usize,
}

impl FeedArgs {
    async fn feeder(&self, aws: &AwsClients) -> anyhow::Result<Option<lake::Feeder>> {
        match (&self.feed_bucket, &self.feed_prefix) {
            (Some(bucket), Some(prefix)) => Ok(Some(lake::Feeder::new(
                lake::file_messages(aws, bucket, prefix).await?,
                self.window,
            ))),
            _ => Ok(None),
        }
    }
}

/// Files a run must load: as asked, else as many as are fed.
fn expected(expect: Option<u64>, feeder: &Option<lake::Feeder>) -> anyhow::Result<u64> {
    expect
        .or(feeder.as_ref().map(lake::Feeder::total))
        .ok_or_else(|| anyhow::anyhow!("give --expect, or feed the run"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::GenLoad {
            rows,
            start_id,
            seed,
            wide,
            out,
        } => {
            let started = Instant::now();
            let bytes = gen::full_load(&out, rows, start_id, seed, wide)?;
            println!(
                "rows={rows} bytes={bytes} secs={:.3}",
                started.elapsed().as_secs_f64()
            );
        }
        Cmd::GenCdc {
            ops,
            files,
            base_rows,
            seed,
            start,
            interval_ms,
            out,
        } => {
            let start = time::OffsetDateTime::parse(
                &start,
                &time::format_description::well_known::Rfc3339,
            )?;
            let started = Instant::now();
            let c = gen::cdc(&out, ops, files, base_rows, seed, start, interval_ms)?;
            println!(
                "ops={ops} files={files} inserts={} updates={} deletes={} bytes={} secs={:.3}",
                c.inserts,
                c.updates,
                c.deletes,
                c.bytes,
                started.elapsed().as_secs_f64()
            );
        }
        Cmd::Put { bucket, key, file } => {
            let aws = AwsClients::from_env().await;
            lake::ensure_bucket(&aws, &bucket).await?;
            let started = Instant::now();
            let etag = lake::put_file(&aws, &bucket, &key, &file).await?;
            println!("etag={etag} secs={:.3}", started.elapsed().as_secs_f64());
        }
        Cmd::PutDir {
            bucket,
            prefix,
            dir,
            parallel,
        } => {
            let aws = AwsClients::from_env().await;
            lake::ensure_bucket(&aws, &bucket).await?;
            let started = Instant::now();
            let n = lake::put_dir(&aws, &bucket, &prefix, &dir, parallel).await?;
            println!("objects={n} secs={:.3}", started.elapsed().as_secs_f64());
        }
        Cmd::Seed {
            bucket,
            prefix,
            from,
            to,
            tables,
            parallel,
        } => {
            let aws = AwsClients::from_env().await;
            lake::ensure_bucket(&aws, &bucket).await?;
            let started = Instant::now();
            lake::seed(&aws, &bucket, &prefix, from, to, tables, parallel).await?;
            println!(
                "objects={} secs={:.3}",
                to - from,
                started.elapsed().as_secs_f64()
            );
        }
        Cmd::Read { bucket, key } => {
            let aws = AwsClients::from_env().await;
            let (t, bytes) = lake::read(&aws, &bucket, &key).await?;
            println!("bytes={bytes} secs={:.3}", t.as_secs_f64());
        }
        Cmd::List { bucket, prefix } => {
            let aws = AwsClients::from_env().await;
            let (t, objects, pages) = lake::list(&aws, &bucket, &prefix).await?;
            println!(
                "objects={objects} pages={pages} secs={:.3}",
                t.as_secs_f64()
            );
        }
        Cmd::Drive {
            worker,
            workers,
            concurrency,
            queue_url,
            manifest_table,
            log_dir,
            moto_pid,
            expect,
            worker_args,
            feed,
        } => {
            let aws = AwsClients::from_env().await;
            let feeder = feed.feeder(&aws).await?;
            let expect = expected(expect, &feeder)?;
            let r = drive::run(
                drive::DriveSpec {
                    worker,
                    workers,
                    concurrency,
                    queue_url,
                    manifest_table: manifest_table.clone(),
                    log_dir,
                    moto_pid,
                    expect,
                    feeder,
                    extra_args: worker_args.split_whitespace().map(str::to_owned).collect(),
                },
                &aws,
            )
            .await?;
            let statuses = lake::statuses(&aws, &manifest_table).await?;
            let loaded = statuses
                .iter()
                .find(|(s, _)| s == "loaded")
                .map_or(0, |(_, n)| *n);
            anyhow::ensure!(
                loaded == expect,
                "expected {expect} files loaded, the manifest has {statuses:?}"
            );
            println!(
                "secs={:.3} peak_rss_kb={} worker_cpu={:.2} moto_cpu={:.2} pg_cpu={:.2} files={} \
                 loaded={loaded} copy_ms={} merge_ms={} commit_ms={} rows_read={} rows_merged={} \
                 rows_superseded={} worker_pids={}",
                r.secs,
                r.peak_rss_kb,
                r.worker_cpu,
                r.moto_cpu,
                r.pg_cpu,
                r.files,
                r.copy_ms,
                r.merge_ms,
                r.commit_ms,
                r.rows_read,
                r.rows_merged,
                r.rows_superseded,
                r.worker_pids
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            );
        }
        Cmd::Bare {
            queue_url,
            manifest_table,
            loops,
            concurrency,
            expect,
            moto_pid,
            feed,
        } => {
            let feeder = feed.feeder(&AwsClients::from_env().await).await?;
            let expect = expected(expect, &feeder)?;
            let cpu = |pid: Option<u32>| pid.and_then(drive::cpu_of).unwrap_or(0.0);
            let moto_before = cpu(moto_pid);
            let (t, bytes) = bare::run(bare::BareSpec {
                queue_url,
                manifest_table,
                loops,
                concurrency,
                expect,
                feeder,
            })
            .await?;
            println!(
                "secs={:.3} files={expect} bytes={bytes} moto_cpu={:.2}",
                t.as_secs_f64(),
                cpu(moto_pid) - moto_before
            );
        }
        Cmd::SeedManifest {
            table,
            bucket,
            prefix,
            parallel,
        } => {
            let aws = AwsClients::from_env().await;
            let started = Instant::now();
            let n = lake::seed_manifest(&aws, &table, &bucket, &prefix, parallel).await?;
            println!("items={n} secs={:.3}", started.elapsed().as_secs_f64());
        }
        Cmd::Forget {
            table,
            prefix,
            from,
            to,
            tables,
            parallel,
        } => {
            let aws = AwsClients::from_env().await;
            let n = lake::forget(&aws, &table, &prefix, from, to, tables, parallel).await?;
            println!("items={n}");
        }
        Cmd::Checkpoints {
            table,
            bucket,
            prefix,
            save,
            restore,
        } => {
            let aws = AwsClients::from_env().await;
            let n = match (save, restore) {
                (Some(file), _) => {
                    lake::save_checkpoints(&aws, &table, &bucket, &prefix, &file).await?
                }
                (None, Some(file)) => {
                    lake::restore_checkpoints(&aws, &table, &bucket, &prefix, &file).await?
                }
                (None, None) => unreachable!("clap requires one"),
            };
            println!("checkpoints={n}");
        }
        Cmd::Purge { queue_url } => {
            let aws = AwsClients::from_env().await;
            lake::purge(&aws, &queue_url).await?;
            println!("purged=1");
        }
        Cmd::Statuses { table } => {
            let aws = AwsClients::from_env().await;
            let s = lake::statuses(&aws, &table).await?;
            println!(
                "{}",
                s.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
        }
    }
    Ok(())
}
