//! Runs `sluice-worker` processes until the queue is empty, the way an operator would run them,
//! and measures: wall time from the first spawn until SQS holds no message (visible or in
//! flight: a worker deletes a file's message only after its COMMIT and the manifest's `loaded`),
//! each worker's peak RSS (`VmHWM` in /proc, read before it is stopped), and the CPU time the
//! workers, the moto server and PostgreSQL spent meanwhile (/proc/<pid>/stat).
//!
//! The workers log JSON; their `file loaded` lines give the copy/merge/commit breakdown.

use crate::lake::Feeder;
use sluice_common::config::AwsClients;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub struct DriveSpec {
    pub worker: PathBuf,
    pub workers: usize,
    pub concurrency: usize,
    pub queue_url: String,
    pub manifest_table: String,
    pub log_dir: PathBuf,
    pub moto_pid: Option<u32>,
    /// Files the run should load.
    pub expect: u64,
    /// Messages to send while the run goes (see [`Feeder`]); None: they are all in the queue.
    pub feeder: Option<Feeder>,
    /// Appended to every worker's arguments (e.g. batching flags being compared).
    pub extra_args: Vec<String>,
}

/// Counts `file loaded` lines in a growing log, reading only what was appended.
struct LogTail {
    path: PathBuf,
    offset: u64,
    partial: Vec<u8>,
    loaded: u64,
}

impl LogTail {
    fn new(path: PathBuf) -> LogTail {
        LogTail {
            path,
            offset: 0,
            partial: Vec::new(),
            loaded: 0,
        }
    }

    fn loaded(&mut self) -> u64 {
        use std::io::{Read, Seek, SeekFrom};
        let Ok(mut f) = std::fs::File::open(&self.path) else {
            return self.loaded;
        };
        let mut buf = Vec::new();
        if f.seek(SeekFrom::Start(self.offset)).is_ok() && f.read_to_end(&mut buf).is_ok() {
            self.offset += buf.len() as u64;
            self.partial.extend_from_slice(&buf);
            let end = self
                .partial
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i + 1);
            let text = String::from_utf8_lossy(&self.partial[..end]);
            self.loaded += text
                .lines()
                .filter(|l| l.contains("\"message\":\"file loaded\""))
                .count() as u64;
            self.partial.drain(..end);
        }
        self.loaded
    }
}

#[derive(Debug, Default)]
pub struct DriveResult {
    pub secs: f64,
    pub peak_rss_kb: u64,
    pub worker_cpu: f64,
    pub moto_cpu: f64,
    pub pg_cpu: f64,
    pub files: u64,
    pub copy_ms: u64,
    pub merge_ms: u64,
    pub commit_ms: u64,
    pub rows_read: u64,
    pub rows_merged: u64,
    pub rows_superseded: u64,
    pub worker_pids: Vec<u32>,
}

/// Clock ticks per second of /proc/<pid>/stat (USER_HZ, 100 on Linux x86 and arm64).
const TICKS: f64 = 100.0;

/// utime + stime of a process, in seconds.
pub fn cpu_of(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / TICKS)
}

/// CPU seconds of every PostgreSQL process, by pid.
fn postgres_cpu() -> HashMap<u32, f64> {
    let mut out = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim_end() == "postgres" {
            if let Some(c) = cpu_of(pid) {
                out.insert(pid, c);
            }
        }
    }
    out
}

fn hwm_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

async fn queue_depth(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> anyhow::Result<u64> {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let out = sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(A::ApproximateNumberOfMessages)
        .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
        .attribute_names(A::ApproximateNumberOfMessagesDelayed)
        .send()
        .await?;
    let attrs = out.attributes().cloned().unwrap_or_default();
    Ok(attrs.values().map(|v| v.parse::<u64>().unwrap_or(0)).sum())
}

pub async fn run(mut spec: DriveSpec, aws: &AwsClients) -> anyhow::Result<DriveResult> {
    std::fs::create_dir_all(&spec.log_dir)?;
    if let Some(f) = spec.feeder.as_mut() {
        f.top_up(aws, &spec.queue_url, 0).await?;
    }
    let moto_before = spec.moto_pid.and_then(cpu_of).unwrap_or(0.0);
    let pg_before = postgres_cpu();
    let started = Instant::now();
    let mut children = Vec::new();
    for i in 0..spec.workers {
        let log = std::fs::File::create(spec.log_dir.join(format!("worker-{i}.log")))?;
        let child = Command::new(&spec.worker)
            .args([
                "run".to_owned(),
                format!("--concurrency={}", spec.concurrency),
                format!("--queue-url={}", spec.queue_url),
                format!("--manifest-table={}", spec.manifest_table),
                "--wait-time=1".to_owned(),
                "--log-format=json".to_owned(),
                format!("--worker-id=bench-{i}"),
            ])
            .args(&spec.extra_args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        children.push(child);
    }
    // Done when SQS holds no message. The queue is asked only once the workers' logs count
    // every file loaded (or every 2 s, should a file fail): polling it all along would load
    // the emulator that case 5 measures.
    let mut tails: Vec<LogTail> = (0..spec.workers)
        .map(|i| LogTail::new(spec.log_dir.join(format!("worker-{i}.log"))))
        .collect();
    let mut polls = 0u64;
    let done_at = loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        polls += 1;
        for c in children.iter_mut() {
            if let Some(status) = c.try_wait()? {
                anyhow::bail!(
                    "a worker exited early ({status}); see {}",
                    spec.log_dir.display()
                );
            }
        }
        let logged: u64 = tails.iter_mut().map(LogTail::loaded).sum();
        if let Some(f) = spec.feeder.as_mut() {
            f.top_up(aws, &spec.queue_url, logged).await?;
        }
        if (logged >= spec.expect || polls.is_multiple_of(40))
            && queue_depth(&aws.sqs, &spec.queue_url).await? == 0
        {
            break started.elapsed();
        }
    };
    let mut result = DriveResult {
        secs: done_at.as_secs_f64(),
        ..DriveResult::default()
    };
    let pg_after = postgres_cpu();
    result.pg_cpu = pg_after
        .iter()
        .map(|(pid, after)| after - pg_before.get(pid).copied().unwrap_or(0.0))
        .sum();
    result.moto_cpu = spec.moto_pid.and_then(cpu_of).unwrap_or(0.0) - moto_before;
    for c in &children {
        let pid = c.id();
        result.worker_pids.push(pid);
        result.peak_rss_kb = result.peak_rss_kb.max(hwm_kb(pid));
        result.worker_cpu += cpu_of(pid).unwrap_or(0.0);
    }
    for c in children.iter_mut() {
        // SIGTERM: the worker drains (nothing is in flight) and exits 0.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
    }
    for c in children.iter_mut() {
        let deadline = Instant::now() + Duration::from_secs(60);
        while c.try_wait()?.is_none() {
            if Instant::now() > deadline {
                c.kill()?;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    for i in 0..spec.workers {
        let text = std::fs::read_to_string(spec.log_dir.join(format!("worker-{i}.log")))?;
        for line in text.lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let field = |name: &str| {
                v.get(name)
                    .or_else(|| v.get("fields").and_then(|f| f.get(name)))
                    .and_then(|x| x.as_u64())
                    .unwrap_or(0)
            };
            let message = v
                .get("message")
                .or_else(|| v.get("fields").and_then(|f| f.get("message")))
                .and_then(|m| m.as_str())
                .unwrap_or_default();
            if message == "file loaded" {
                result.files += 1;
                result.copy_ms += field("copy_ms");
                result.merge_ms += field("merge_ms");
                result.commit_ms += field("commit_ms");
                result.rows_read += field("rows_read");
                result.rows_merged += field("rows_merged");
                result.rows_superseded += field("rows_superseded");
            }
        }
    }
    Ok(result)
}
