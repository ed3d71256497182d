//! `bootstrap`, `scan` and `run`: the coordinator's own work.

use super::{scan_context, store, BootstrapArgs, Common, RunArgs, ScanArgs};
use crate::bootstrap::{self, QueueSpec};
use crate::error::CoordinatorError;
use crate::events;
use crate::observe;
use crate::plan::Plan;
use crate::scan::{self, ScanSummary};
use sluice_common::config::AwsClients;
use std::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::info;

pub(super) async fn bootstrap(
    common: &Common,
    aws: &AwsClients,
    a: BootstrapArgs,
) -> Result<i32, CoordinatorError> {
    let store = store(common, aws)?;
    let created = bootstrap::manifest(&store).await?;
    println!(
        "manifest table {}: {}",
        store.table_name(),
        if created { "created" } else { "exists" }
    );
    if let Some(name) = a.create_queue {
        let spec = QueueSpec {
            name,
            visibility_timeout_secs: a.visibility_timeout,
            max_receive_count: a.max_receive_count,
        };
        let url = bootstrap::queue(&aws.sqs, &spec).await?;
        println!("queue: {url}");
    }
    Ok(0)
}

pub(super) async fn scan(
    common: &Common,
    aws: &AwsClients,
    a: ScanArgs,
) -> Result<i32, CoordinatorError> {
    let ctx = scan_context(common, aws)?;
    let obs = observe::start(&common.metrics()?, ctx.store.table_name()).await?;
    let started = Instant::now();
    let options = scan::PassOptions {
        dry_run: a.dry_run,
        full: a.full,
        tail: !a.full,
        missed_event_grace: common
            .events_queue_url
            .as_deref()
            .is_some_and(|u| !u.trim().is_empty())
            .then_some(events::GRACE),
    };
    let result = scan::pass(&ctx, options).await;
    observe::pass(&obs, &ctx, &result, started.elapsed()).await;
    let (summary, plan) = result?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&summary).expect("summary serializes")
        );
    } else {
        print_summary(&summary);
        if a.dry_run {
            print_dry_run(&plan);
        }
    }
    Ok(0)
}

pub(super) async fn run(
    common: &Common,
    aws: &AwsClients,
    a: RunArgs,
    shutdown: &CancellationToken,
) -> Result<i32, CoordinatorError> {
    let ctx = scan_context(common, aws)?;
    let obs = observe::start(&common.metrics()?, ctx.store.table_name()).await?;
    let events = common
        .events_queue_url
        .clone()
        .filter(|u| !u.trim().is_empty())
        .map(|url| events::EventsQueue {
            url,
            wait: std::time::Duration::from_secs(20),
        });
    let events_loop = async {
        if let Some(q) = &events {
            events::run(&ctx, q, shutdown).await;
        }
    };
    let passes = passes(&ctx, &obs, &a, events.is_some(), shutdown);
    tokio::join!(events_loop, passes);
    info!("coordinator stopped");
    Ok(0)
}

/// Pass after pass, `interval` apart, until `shutdown`.
async fn passes(
    ctx: &scan::ScanContext,
    obs: &observe::Observer,
    a: &RunArgs,
    events_on: bool,
    shutdown: &CancellationToken,
) {
    for n in 0u64.. {
        let started = Instant::now();
        let options = scan::PassOptions {
            tail: n % u64::from(a.full_listing_every) != 0,
            missed_event_grace: events_on.then_some(events::GRACE),
            ..scan::PassOptions::default()
        };
        let result = scan::pass(ctx, options).await;
        observe::pass(obs, ctx, &result, started.elapsed()).await;
        match result {
            Ok((summary, _)) if a.json => println!(
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
            _ = tokio::time::sleep(a.interval) => {}
        }
    }
}

fn print_summary(s: &ScanSummary) {
    println!(
        "{}listed {} | new {} | changed {} | re-enqueued {} | unchanged {} | dead {} | unloadable {} | sent {} | send failed {} | generations in progress {} | replacements asked {} | manifest reads {} (checkpoints vouched for {}) | ListObjectsV2 calls {}{}",
        if s.dry_run { "(dry run) " } else { "" },
        s.listed, s.new, s.changed, s.requeued, s.unchanged, s.dead, s.unloadable, s.sent, s.send_failed,
        s.generations_in_progress, s.replacements_sent, s.read, s.vouched, s.list_calls,
        if s.tail_listing { " (each table from after its checkpoints)" } else { "" }
    );
}

fn print_dry_run(plan: &Plan) {
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
