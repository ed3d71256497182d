//! The worker's metrics and health: what the receive loop and a file's life report
//! (definitions in [`sluice_common::metrics`]), the optional `/metrics` and `/health` endpoint,
//! and the EMF output.
//!
//! Health (`GET /health`): 200 when both hold, else 503, with a JSON body saying which failed:
//! - the receive loop is alive: it completed a receive within [`Liveness::bound`] (three long
//!   polls plus 30 s) of taking a free slot. Time spent waiting for a slot (every slot busy
//!   with a long file) does not count: a busy worker is not a stalled one;
//! - the database takes loads: a pooled connection answers within 3 s and is writable (not in
//!   recovery, `transaction_read_only` off), the result kept for 5 s so that probes cost the
//!   database little. When every connection is busy loading files the pool cannot lend one in
//!   time; that counts as healthy (`busy`). A read-only answer drops that connection;
//! - no load has met a database outage since the database was last seen taking loads
//!   ([`Database`]): a read-only server, one refusing connections, or refused credentials (a
//!   rotated password: only a new task with the new secret can load, so the health check makes
//!   ECS replace this one).
//!
//! The same [`Database`] holds the receive loop back while an outage lasts
//! ([`Database::wait_until_usable`]): it probes the database with a growing pause (1 s to
//! 30 s) and receives again once it is writable, so a worker never takes files in a loop only
//! to hand them back.

use super::settle::Outcome;
use crate::config::WorkerConfig;
use crate::db::Staleness;
use crate::error::{Outage, WorkerError};
use crate::load::{LoadOutcome, LoadStats, ReplaceOutcome};
use deadpool_postgres::Pool;
use serde_json::json;
use sluice_common::http::{self, HealthCheck, Server};
use sluice_common::metrics::{self as m, Component};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// How long a database check result is reused.
const DB_CHECK_TTL: Duration = Duration::from_secs(5);
/// How long a database check may take.
const DB_CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// The receive loop's progress, for the health check.
pub struct Liveness {
    base: Instant,
    /// Milliseconds since `base` of the last progress (a slot taken, a receive completed).
    last: AtomicU64,
    waiting_for_slot: AtomicBool,
    /// The loop holds back until the database takes loads again (the database check says why).
    waiting_for_database: AtomicBool,
    /// Longest time without progress that is still healthy.
    pub bound: Duration,
}

impl Liveness {
    pub fn new(wait_time: Duration) -> Self {
        Liveness {
            base: Instant::now(),
            last: AtomicU64::new(0),
            waiting_for_slot: AtomicBool::new(false),
            waiting_for_database: AtomicBool::new(false),
            bound: wait_time * 3 + Duration::from_secs(30),
        }
    }

    fn touch(&self) {
        self.last
            .store(self.base.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// The loop waits for a free slot (every permit is held by a file).
    pub fn waiting_for_slot(&self) {
        self.waiting_for_slot.store(true, Ordering::Relaxed);
    }

    /// The loop has a slot and is about to receive.
    pub fn slot_taken(&self) {
        self.waiting_for_slot.store(false, Ordering::Relaxed);
        self.touch();
    }

    /// A receive completed (with or without messages).
    pub fn received(&self) {
        self.touch();
    }

    /// (healthy, seconds since the last progress, waiting for a slot)
    pub fn state(&self) -> (bool, f64, bool) {
        let since = self.base.elapsed().as_millis() as u64 - self.last.load(Ordering::Relaxed);
        let since = Duration::from_millis(since);
        let waiting = self.waiting_for_slot.load(Ordering::Relaxed);
        let held = self.waiting_for_database.load(Ordering::Relaxed);
        (
            waiting || held || since <= self.bound,
            since.as_secs_f64(),
            waiting,
        )
    }
}

/// The worker's endpoint(s) and EMF output; dropping it writes the last EMF lines and stops
/// the endpoint.
pub struct Observer {
    pub liveness: Arc<Liveness>,
    pub database: Arc<Database>,
    servers: Vec<Server>,
    emf: Option<JoinHandle<()>>,
}

impl Observer {
    /// Addresses the endpoint listens on (port 0 in the settings picks one).
    pub fn addrs(&self) -> Vec<std::net::SocketAddr> {
        self.servers.iter().map(|s| s.addr).collect()
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        if let Some(task) = self.emf.take() {
            task.abort();
            m::emf_flush();
        }
    }
}

/// Sets up the metrics, binds `--metrics-addr` and `--health-addr` (once if they are the same;
/// each answers both paths) and starts the EMF output if asked.
/// `stale` is the pool's [`Staleness`]: an outage seen marks it.
pub async fn start(
    cfg: &WorkerConfig,
    pool: &Pool,
    stale: Arc<Staleness>,
) -> Result<Observer, WorkerError> {
    m::init(Component::Worker, &cfg.manifest_table);
    let liveness = Arc::new(Liveness::new(cfg.wait_time));
    let database = Arc::new(Database {
        pool: pool.clone(),
        stale,
        last: tokio::sync::Mutex::new(None),
        seen: std::sync::Mutex::new(None),
    });
    let check = health_check(liveness.clone(), database.clone());
    let mut addrs: Vec<&String> = cfg.metrics_addr.iter().chain(&cfg.health_addr).collect();
    addrs.dedup();
    let mut servers = Vec::new();
    for addr in addrs {
        let server = http::serve(addr, Some(check.clone()))
            .await
            .map_err(|source| WorkerError::Endpoint {
                addr: addr.clone(),
                source,
            })?;
        info!(addr = %server.addr, paths = "/metrics /health", "serving metrics and health");
        servers.push(server);
    }
    let emf = cfg.metrics_emf.then(|| m::emf_start(cfg.metrics_interval));
    Ok(Observer {
        liveness,
        database,
        servers,
        emf,
    })
}

/// What the receive loop may do after [`Database::wait_until_usable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// No outage: receive.
    Open,
    /// The loop was held back by an outage that is over: receive (the time held back is not
    /// idle time).
    Reopened,
    /// Shutdown came first.
    Shutdown,
}

/// What a probe of the database found.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Probe {
    /// Answered, and writable.
    Writable,
    /// Every connection is loading a file: no answer in time, but no sign of trouble.
    Busy,
    /// Answered, read-only: why.
    ReadOnly(String),
    /// No answer: the error.
    Down(String),
}

impl Probe {
    fn ok(&self) -> bool {
        matches!(self, Probe::Writable | Probe::Busy)
    }

    fn json(&self) -> serde_json::Value {
        match self {
            Probe::Writable => json!({"ok": true, "writable": true, "detail": "ok"}),
            Probe::Busy => {
                json!({"ok": true, "detail": "busy: every connection is loading a file"})
            }
            Probe::ReadOnly(why) => json!({"ok": false, "writable": false, "error": why}),
            Probe::Down(e) => {
                json!({"ok": false, "error": sluice_common::telemetry::scrub(e)})
            }
        }
    }
}

/// An outage a load met, until the database is seen taking loads again.
#[derive(Debug, Clone)]
struct Seen {
    outage: Outage,
    error: String,
    at: Instant,
}

/// The database as the worker knows it: the health check's probe, and the last outage a load
/// met (kept until a probe finds the database writable or a load commits).
pub struct Database {
    pool: Pool,
    stale: Arc<Staleness>,
    last: tokio::sync::Mutex<Option<(Instant, Probe)>>,
    seen: std::sync::Mutex<Option<Seen>>,
}

impl Database {
    /// What a load attempt tells about the database: an outage is noted (the connections
    /// opened before it are not lent again, the receive loop holds back, the health check
    /// says so); a committed load shows the database takes loads.
    pub fn load_attempted(&self, result: &Result<LoadOutcome, WorkerError>) {
        match result {
            Err(e) => self.load_failed(e),
            Ok(LoadOutcome::Loaded(_)) => self.clear(),
            Ok(LoadOutcome::AlreadyApplied) => {}
        }
    }

    /// A load (of one file or a batch) failed: an outage closes the gate.
    pub fn load_failed(&self, e: &WorkerError) {
        if let Some(outage) = e.outage() {
            self.stale.mark();
            let mut seen = self.seen.lock().expect("outage lock");
            *seen = Some(Seen {
                outage,
                error: sluice_common::telemetry::scrub(&e.to_string()),
                at: Instant::now(),
            });
        }
    }

    /// A batch committed: the database takes loads.
    pub fn batch_loaded(&self) {
        self.clear();
    }

    fn seen(&self) -> Option<Seen> {
        self.seen.lock().expect("outage lock").clone()
    }

    fn clear(&self) {
        self.seen.lock().expect("outage lock").take();
    }

    /// Holds the receive loop back while a load's outage lasts: probes the database, with a
    /// growing pause, until it is writable.
    pub async fn wait_until_usable(
        &self,
        liveness: &Liveness,
        shutdown: &CancellationToken,
    ) -> Gate {
        let mut probes = 0u32;
        let mut gate = Gate::Open;
        while let Some(seen) = self.seen() {
            gate = Gate::Reopened;
            liveness.waiting_for_database.store(true, Ordering::Relaxed);
            let probe = self.probe_now().await;
            if probe == Probe::Writable {
                self.clear();
                info!(
                    outage = seen.outage.class(),
                    seconds = seen.at.elapsed().as_secs(),
                    "database takes loads again; receiving"
                );
                break;
            }
            probes += 1;
            if probes == 1 {
                warn!(outage = seen.outage.class(), error = %seen.error,
                    "database outage: not receiving until the database takes loads again");
            }
            let wait = sluice_common::retry::redelivery_delay(
                probes,
                Duration::from_secs(1),
                Duration::from_secs(30),
            );
            tokio::select! {
                _ = shutdown.cancelled() => {
                    liveness.waiting_for_database.store(false, Ordering::Relaxed);
                    return Gate::Shutdown;
                }
                _ = tokio::time::sleep(wait) => {}
            }
        }
        liveness
            .waiting_for_database
            .store(false, Ordering::Relaxed);
        gate
    }

    /// The health check's probe, reused for [`DB_CHECK_TTL`].
    async fn probe(&self) -> Probe {
        {
            let last = self.last.lock().await;
            if let Some((at, probe)) = &*last {
                if at.elapsed() < DB_CHECK_TTL {
                    return probe.clone();
                }
            }
        }
        self.probe_now().await
    }

    async fn probe_now(&self) -> Probe {
        let mut last = self.last.lock().await;
        let probe = self.check().await;
        *last = Some((Instant::now(), probe.clone()));
        probe
    }

    async fn check(&self) -> Probe {
        let attempt = async {
            let client = self
                .pool
                .get()
                .await
                .map_err(|e| Probe::Down(crate::db::pool_error_text(&e)))?;
            let rows = client
                .simple_query(
                    "SELECT pg_is_in_recovery()::text, current_setting('transaction_read_only')",
                )
                .await
                .map_err(|e| Probe::Down(crate::db::error_text(&e)))?;
            let row = rows.iter().find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
                _ => None,
            });
            let (recovery, read_only) = match row {
                Some(r) => (r.get(0) == Some("true"), r.get(1) == Some("on")),
                None => (false, false),
            };
            if recovery || read_only {
                // A connection to a read-only server is not lent again.
                drop(deadpool_postgres::Object::take(client));
                return Err(Probe::ReadOnly(
                    if recovery {
                        "the database is read-only: the server is in recovery (a standby)"
                    } else {
                        "the database is read-only: transaction_read_only is on"
                    }
                    .to_owned(),
                ));
            }
            Ok(Probe::Writable)
        };
        match tokio::time::timeout(DB_CHECK_TIMEOUT, attempt).await {
            Ok(Ok(p)) | Ok(Err(p)) => p,
            Err(_) => {
                let s = self.pool.status();
                if s.size >= s.max_size && s.available == 0 {
                    Probe::Busy
                } else {
                    Probe::Down(format!(
                        "no connection within {} s",
                        DB_CHECK_TIMEOUT.as_secs()
                    ))
                }
            }
        }
    }

    /// The health body's `database` part, and whether it is healthy.
    async fn health(&self) -> (bool, serde_json::Value) {
        let probe = self.probe().await;
        let mut body = probe.json();
        let seen = self.seen();
        if let Some(seen) = &seen {
            if seen.outage == Outage::ReadOnly {
                body["writable"] = json!(false);
            }
            body["ok"] = json!(false);
            body["outage"] = json!({
                "class": seen.outage.class(),
                "reason": seen.outage.describe(),
                "error": seen.error,
                "seconds_ago": seen.at.elapsed().as_secs(),
            });
        }
        (probe.ok() && seen.is_none(), body)
    }
}

fn health_check(liveness: Arc<Liveness>, db: Arc<Database>) -> HealthCheck {
    Arc::new(move || {
        let liveness = liveness.clone();
        let db = db.clone();
        Box::pin(async move {
            let (alive, since, waiting) = liveness.state();
            let (db_ok, database) = db.health().await;
            let ok = alive && db_ok;
            let body = json!({
                "status": if ok { "ok" } else { "unhealthy" },
                "receive_loop": {
                    "ok": alive,
                    "seconds_since_progress": (since * 10.0).round() / 10.0,
                    "waiting_for_slot": waiting,
                    "waiting_for_database": liveness.waiting_for_database.load(Ordering::Relaxed),
                    "bound_seconds": liveness.bound.as_secs(),
                },
                "database": database,
            });
            (ok, body)
        })
    })
}

// ---- what happened: one call per event ------------------------------------------------------

/// Counts a held message while it is alive.
pub struct InFlight;

/// A message is being handled until the guard drops.
pub fn in_flight() -> InFlight {
    m::add(&m::FILES_IN_FLIGHT, &[], 1.0);
    InFlight
}

impl Drop for InFlight {
    fn drop(&mut self) {
        m::add(&m::FILES_IN_FLIGHT, &[], -1.0);
    }
}

/// A file committed by this worker.
pub fn loaded(stats: &LoadStats) {
    m::inc(&m::FILES_LOADED, &[], 1);
    m::inc(&m::ROWS, &["read"], stats.records);
    m::inc(&m::ROWS, &["merged"], stats.merged().max(0) as u64);
    m::inc(&m::ROWS, &["rejected"], stats.rejected);
    m::inc(&m::ROWS, &["superseded"], stats.superseded.max(0) as u64);
    m::inc(&m::BYTES, &[], stats.bytes);
    m::observe_duration(&m::PHASE_SECONDS, &["copy"], stats.copy);
    m::observe_duration(&m::PHASE_SECONDS, &["merge"], stats.merge);
    m::observe_duration(&m::PHASE_SECONDS, &["commit"], stats.commit);
}

/// A load attempt failed.
pub fn failed(e: &WorkerError) {
    m::inc(&m::FILES_FAILED, &[e.class()], 1);
}

/// A file message's outcome, with the time since it was received.
pub(crate) fn file_done(outcome: Outcome, elapsed: Duration) {
    let label = match outcome {
        Outcome::Loaded => "loaded",
        Outcome::Failed => "failed",
        Outcome::Duplicate => {
            m::inc(&m::FILES_DUPLICATE, &[], 1);
            "duplicate"
        }
        Outcome::Dead => {
            m::inc(&m::FILES_DEAD, &[], 1);
            "dead"
        }
        Outcome::Abandoned => {
            m::inc(&m::FILES_FAILED, &["abandoned"], 1);
            "abandoned"
        }
        // The manifest refused the claim or could not be written: the message comes back.
        Outcome::Deferred | Outcome::BadMessage | Outcome::Replaced => return,
    };
    m::observe_duration(&m::FILE_SECONDS, &[label], elapsed);
}

/// A visibility extension of a held message.
pub fn visibility_extended(ok: bool) {
    m::inc(
        &m::VISIBILITY_EXTENSIONS,
        &[if ok { "ok" } else { "error" }],
        1,
    );
}

/// A replace message handled.
pub fn replacement(result: &Result<ReplaceOutcome, WorkerError>) {
    let label = match result {
        Ok(ReplaceOutcome::Replaced { rows_removed }) => {
            m::inc(&m::ROWS, &["removed"], (*rows_removed).max(0) as u64);
            "replaced"
        }
        Ok(ReplaceOutcome::AlreadyDone) => "already_done",
        Ok(ReplaceOutcome::Merge) => "merge_only",
        Ok(ReplaceOutcome::Incomplete { .. }) => "incomplete",
        Err(_) => "failed",
    };
    m::inc(&m::REPLACEMENTS, &[label], 1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn liveness_is_lost_only_outside_slot_waits() {
        let l = Liveness::new(Duration::ZERO);
        assert_eq!(l.bound, Duration::from_secs(30));
        l.slot_taken();
        assert!(l.state().0);
        // Far past the bound without progress:
        l.last.store(0, Ordering::Relaxed);
        let l = Liveness {
            base: Instant::now() - Duration::from_secs(100),
            ..l
        };
        assert!(!l.state().0, "{:?}", l.state());
        l.waiting_for_slot();
        assert!(l.state().0, "waiting for a slot is not a stall");
        l.slot_taken();
        assert!(l.state().0);
        // Held back by a database outage: the database check says so, the loop is not stalled.
        let l = Liveness {
            base: Instant::now() - Duration::from_secs(200),
            ..l
        };
        assert!(!l.state().0);
        l.waiting_for_database.store(true, Ordering::Relaxed);
        assert!(l.state().0, "waiting for the database is not a stall");
    }

    #[test]
    fn a_read_only_probe_is_unhealthy_and_says_not_writable() {
        let ro = Probe::ReadOnly("the database is read-only: transaction_read_only is on".into());
        assert!(!ro.ok());
        assert_eq!(ro.json()["writable"], false);
        assert_eq!(ro.json()["ok"], false);
        assert!(Probe::Busy.ok() && Probe::Writable.ok());
        assert_eq!(Probe::Writable.json()["writable"], true);
        assert!(!Probe::Down("connection refused".into()).ok());
    }
}
