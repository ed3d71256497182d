//! The worker's metrics and health: what the receive loop and a file's life report
//! (definitions in [`sluice_common::metrics`]), the optional `/metrics` and `/health` endpoint,
//! and the EMF output.
//!
//! Health (`GET /health`): 200 when both hold, else 503, with a JSON body saying which failed:
//! - the receive loop is alive: it completed a receive within [`Liveness::bound`] (three long
//!   polls plus 30 s) of taking a free slot. Time spent waiting for a slot (every slot busy
//!   with a long file) does not count: a busy worker is not a stalled one;
//! - the pool gives a working connection: `SELECT 1` on a pooled connection within 3 s, the
//!   result kept for 5 s so that probes cost the database little. When every connection is
//!   busy loading files the pool cannot lend one in time; that counts as healthy (`busy`).

use crate::config::WorkerConfig;
use crate::error::LoadError;
use crate::load::{LoadStats, ReplaceOutcome};
use crate::run::Outcome;
use deadpool_postgres::Pool;
use serde_json::json;
use sluice_common::http::{self, HealthCheck, Server};
use sluice_common::metrics::{self as m, Component};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use tracing::info;

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
    /// Longest time without progress that is still healthy.
    pub bound: Duration,
}

impl Liveness {
    pub fn new(wait_time: Duration) -> Self {
        Liveness {
            base: Instant::now(),
            last: AtomicU64::new(0),
            waiting_for_slot: AtomicBool::new(false),
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
        (waiting || since <= self.bound, since.as_secs_f64(), waiting)
    }
}

/// The worker's endpoint(s) and EMF output; dropping it writes the last EMF lines and stops
/// the endpoint.
pub struct Observer {
    pub liveness: Arc<Liveness>,
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
pub async fn start(cfg: &WorkerConfig, pool: &Pool) -> Result<Observer, (String, std::io::Error)> {
    m::init(Component::Worker, &cfg.manifest_table);
    let liveness = Arc::new(Liveness::new(cfg.wait_time));
    let check = health_check(liveness.clone(), pool.clone());
    let mut addrs: Vec<&String> = cfg.metrics_addr.iter().chain(&cfg.health_addr).collect();
    addrs.dedup();
    let mut servers = Vec::new();
    for addr in addrs {
        let server = http::serve(addr, Some(check.clone()))
            .await
            .map_err(|e| (addr.clone(), e))?;
        info!(addr = %server.addr, paths = "/metrics /health", "serving metrics and health");
        servers.push(server);
    }
    let emf = cfg.metrics_emf.then(|| m::emf_start(cfg.metrics_interval));
    Ok(Observer {
        liveness,
        servers,
        emf,
    })
}

struct DbCheck {
    pool: Pool,
    last: tokio::sync::Mutex<Option<(Instant, Result<&'static str, String>)>>,
}

impl DbCheck {
    async fn get(&self) -> Result<&'static str, String> {
        let mut last = self.last.lock().await;
        if let Some((at, result)) = &*last {
            if at.elapsed() < DB_CHECK_TTL {
                return result.clone();
            }
        }
        let result = self.check().await;
        *last = Some((Instant::now(), result.clone()));
        result
    }

    async fn check(&self) -> Result<&'static str, String> {
        let attempt = async {
            let client = self
                .pool
                .get()
                .await
                .map_err(|e| crate::db::pool_error_text(&e))?;
            client
                .simple_query("SELECT 1")
                .await
                .map_err(|e| crate::db::error_text(&e))?;
            Ok("ok")
        };
        match tokio::time::timeout(DB_CHECK_TIMEOUT, attempt).await {
            Ok(r) => r,
            Err(_) => {
                let s = self.pool.status();
                if s.size >= s.max_size && s.available == 0 {
                    Ok("busy: every connection is loading a file")
                } else {
                    Err(format!(
                        "no connection within {} s",
                        DB_CHECK_TIMEOUT.as_secs()
                    ))
                }
            }
        }
    }
}

fn health_check(liveness: Arc<Liveness>, pool: Pool) -> HealthCheck {
    let db = Arc::new(DbCheck {
        pool,
        last: tokio::sync::Mutex::new(None),
    });
    Arc::new(move || {
        let liveness = liveness.clone();
        let db = db.clone();
        Box::pin(async move {
            let (alive, since, waiting) = liveness.state();
            let database = db.get().await;
            let ok = alive && database.is_ok();
            let body = json!({
                "status": if ok { "ok" } else { "unhealthy" },
                "receive_loop": {
                    "ok": alive,
                    "seconds_since_progress": (since * 10.0).round() / 10.0,
                    "waiting_for_slot": waiting,
                    "bound_seconds": liveness.bound.as_secs(),
                },
                "database": match &database {
                    Ok(detail) => json!({"ok": true, "detail": detail}),
                    Err(e) => json!({"ok": false, "error": sluice_common::telemetry::scrub(e)}),
                },
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
pub fn failed(e: &LoadError) {
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
pub fn replacement(result: &Result<ReplaceOutcome, LoadError>) {
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
    }
}
