//! The coordinator's metrics (definitions in [`sluice_common::metrics`]): what each pass found
//! and did, the queues' depth, the manifest's open items per status and the age of each
//! table's oldest file not loaded. Exposed on `--metrics-addr` (`/metrics`) and as EMF lines
//! (`--metrics-emf`).
//!
//! AWS calls made here, besides the pass's own: `GetQueueAttributes` on the work queue (and on
//! the dead-letter queue with `--dlq-url`), two `COUNT` queries on `open-index` (dead and
//! skipped items, which the pass does not read), and for freshness one query of one item per
//! table on `table-index` (its newest loaded file). Only when a metrics output is on.
//!
//! Freshness ([`crate::freshness`]) is computed at each pass: landings from the pass's listing,
//! the last load per table from the manifest, the expectation from the rules file
//! (`--config`), now from the clock.

use crate::error::CoordinatorError;
use crate::plan::Plan;
use crate::scan::{ScanContext, ScanSummary};
use sluice_common::http::{self, Server};
use sluice_common::manifest::Status;
use sluice_common::metrics::{self as m, Component};
use std::time::Duration;
use tokio::task::JoinHandle;
use tracing::{info, warn};

/// Metrics settings of the coordinator's flags.
#[derive(Debug, Clone, Default)]
pub struct MetricsSettings {
    pub addr: Option<String>,
    pub emf: bool,
    pub interval: Duration,
    pub dlq_url: Option<String>,
    /// The rules file's tables and expectations (`expect_every`), for freshness.
    pub rules: sluice_common::rules::Rules,
}

impl MetricsSettings {
    pub fn enabled(&self) -> bool {
        self.addr.is_some() || self.emf
    }
}

/// The endpoint and EMF output; dropping it writes the last EMF lines and stops the endpoint.
pub struct Observer {
    settings: MetricsSettings,
    server: Option<Server>,
    emf: Option<JoinHandle<()>>,
    /// Landings per table from every pass so far (the newest few of each): a pass that lists
    /// only past its checkpoints sees a table's new files only, and the gauges need its newest
    /// landing and its cadence.
    landed: std::sync::Mutex<std::collections::BTreeMap<String, Vec<time::OffsetDateTime>>>,
}

impl Observer {
    pub fn addr(&self) -> Option<std::net::SocketAddr> {
        self.server.as_ref().map(|s| s.addr)
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

/// Sets up the metrics and starts what the settings ask for.
pub async fn start(
    settings: &MetricsSettings,
    manifest_table: &str,
) -> Result<Observer, CoordinatorError> {
    m::init(Component::Coordinator, manifest_table);
    let server = match &settings.addr {
        Some(addr) => {
            let s = http::serve(addr, None)
                .await
                .map_err(|source| CoordinatorError::Endpoint {
                    addr: addr.clone(),
                    source,
                })?;
            info!(addr = %s.addr, paths = "/metrics", "serving metrics");
            Some(s)
        }
        None => None,
    };
    let emf = settings.emf.then(|| m::emf_start(settings.interval));
    Ok(Observer {
        settings: settings.clone(),
        server,
        emf,
        landed: Default::default(),
    })
}

/// Records a pass (a dry run records nothing: it changed nothing).
pub async fn pass(
    obs: &Observer,
    ctx: &ScanContext,
    result: &Result<(ScanSummary, Plan), CoordinatorError>,
    elapsed: Duration,
) {
    if !obs.settings.enabled() {
        return;
    }
    let (summary, plan) = match result {
        Ok((s, _)) if s.dry_run => return,
        Ok((s, p)) => (s, p),
        Err(_) => {
            m::inc(&m::PASSES, &["error"], 1);
            m::observe_duration(&m::PASS_SECONDS, &[], elapsed);
            queue_depth(ctx, obs.settings.dlq_url.as_deref()).await;
            return;
        }
    };
    m::inc(&m::PASSES, &["ok"], 1);
    m::observe_duration(&m::PASS_SECONDS, &[], elapsed);
    m::set(&m::OBJECTS_LISTED, &[], summary.listed as f64);
    m::inc(&m::FILES_NEW, &[], summary.new as u64);
    m::inc(&m::FILES_CHANGED, &[], summary.changed as u64);
    m::inc(&m::FILES_REQUEUED, &[], summary.requeued as u64);
    m::inc(
        &m::COORDINATOR_FILES_DEAD,
        &["attempts_exhausted"],
        summary.dead as u64,
    );
    m::inc(
        &m::COORDINATOR_FILES_DEAD,
        &["unloadable_key"],
        summary.unloadable as u64,
    );
    m::inc(&m::MESSAGES_SENT, &[], summary.sent as u64);
    m::inc(&m::SEND_FAILURES, &[], summary.send_failed as u64);
    m::inc(
        &m::REPLACEMENTS_ASKED,
        &[],
        summary.replacements_sent as u64,
    );

    // Open items per status: the pass read discovered, queued, loading and failed; dead and
    // skipped are counted without reading them.
    let mut statuses: Vec<(Vec<String>, f64)> = Vec::new();
    for status in [
        Status::Discovered,
        Status::Queued,
        Status::Loading,
        Status::Failed,
    ] {
        let n = plan.backlog.by_status.get(&status).copied().unwrap_or(0);
        statuses.push((vec![status.as_str().to_owned()], n as f64));
    }
    for status in [Status::Dead, Status::Skipped] {
        match ctx.store.count_open(status).await {
            Ok(n) => statuses.push((vec![status.as_str().to_owned()], n as f64)),
            Err(e) => warn!(error = %e, status = %status, "cannot count manifest items"),
        }
    }
    m::set_all(&m::MANIFEST_FILES, &statuses);
    let oldest: Vec<(Vec<String>, f64)> = plan
        .backlog
        .oldest
        .iter()
        .map(|(table, secs)| (vec![table.clone()], *secs))
        .collect();
    m::set_all(&m::OLDEST_UNLOADED, &oldest);
    let landed = {
        let mut known = obs.landed.lock().expect("landings lock");
        for (t, new) in &plan.backlog.landed {
            let all = known.entry(t.clone()).or_default();
            all.extend(new.iter().copied());
            all.sort_unstable_by(|a, b| b.cmp(a));
            all.dedup();
            all.truncate(crate::freshness::KEEP_LANDINGS);
        }
        known.clone()
    };
    freshness(ctx, &obs.settings.rules, &landed).await;
    queue_depth(ctx, obs.settings.dlq_url.as_deref()).await;
}

/// Seconds since each table's last landing and last load, and tables per freshness state.
async fn freshness(
    ctx: &ScanContext,
    rules: &sluice_common::rules::Rules,
    landed: &std::collections::BTreeMap<String, Vec<time::OffsetDateTime>>,
) {
    use crate::freshness::{self as f, Observed};
    use futures_util::StreamExt;
    let mut seen: std::collections::BTreeMap<String, Observed> = rules
        .configured_tables()
        .map(|t| (t.to_owned(), Observed::default()))
        .collect();
    for (t, landed) in landed {
        seen.entry(t.clone()).or_default().landed = landed.clone();
    }
    let tables: Vec<String> = seen.keys().cloned().collect();
    let last: Vec<(String, Result<Vec<_>, _>)> = futures_util::stream::iter(tables)
        .map(|t| async move {
            let r = ctx.store.recent_of_table(&t, Status::Loaded, 1).await;
            (t, r)
        })
        .buffer_unordered(sluice_common::store::CONCURRENT_CALLS)
        .collect()
        .await;
    for (t, r) in last {
        match r {
            Ok(items) => f::add_loads(&mut seen, &items),
            Err(e) => warn!(table = %t, error = %e, "cannot read the table's last load"),
        }
    }
    let now = time::OffsetDateTime::now_utc();
    let tables = f::assess_all(rules, &seen, now);
    let series = |pick: fn(&f::TableFreshness) -> Option<u64>| -> Vec<(Vec<String>, f64)> {
        tables
            .iter()
            .filter_map(|t| pick(t).map(|s| (vec![t.table.clone()], s as f64)))
            .collect()
    };
    m::set_all(&m::SINCE_LANDED, &series(|t| t.since_landed_secs));
    m::set_all(&m::SINCE_LOADED, &series(|t| t.since_loaded_secs));
    let states: Vec<(Vec<String>, f64)> = f::count_states(&tables)
        .into_iter()
        .map(|(s, n)| (vec![s.as_str().to_owned()], n as f64))
        .collect();
    m::set_all(&m::TABLES, &states);
}

/// Visible and in-flight messages of the work queue and the dead-letter queue.
async fn queue_depth(ctx: &ScanContext, dlq_url: Option<&str>) {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let queues = std::iter::once(("work", ctx.queue_url.as_str()))
        .chain(dlq_url.map(|u| ("dead_letter", u)));
    for (name, url) in queues {
        let out = ctx
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(A::ApproximateNumberOfMessages)
            .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await;
        match out {
            Ok(out) => {
                let attrs = out.attributes().cloned().unwrap_or_default();
                let get = |a: A| {
                    attrs
                        .get(&a)
                        .and_then(|v| v.parse::<f64>().ok())
                        .unwrap_or(0.0)
                };
                m::set(
                    &m::QUEUE_MESSAGES,
                    &[name, "visible"],
                    get(A::ApproximateNumberOfMessages),
                );
                m::set(
                    &m::QUEUE_MESSAGES,
                    &[name, "in_flight"],
                    get(A::ApproximateNumberOfMessagesNotVisible),
                );
            }
            Err(e) => warn!(
                queue = name,
                error = %sluice_common::error::sdk_error_text(&e),
                "cannot read the queue's depth"
            ),
        }
    }
}
