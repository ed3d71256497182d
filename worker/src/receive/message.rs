//! The life of one message: parse -> claim in the manifest -> heartbeat -> load (retrying
//! transient errors with backoff while the message is held) -> settle. A replace message:
//! heartbeat -> replace (retrying likewise) -> settle.
//!
//! What happened is told to [`settle::decide`], which says what to do; this module logs, counts
//! and performs it, in one order: the manifest write first, then the message (deleted, or made
//! visible again later, or left). Invariant: a message is deleted only after the COMMIT, or once
//! the manifest has the failure (or the file's death), never before.

use super::deleter;
use super::gather::{Arriving, Gather};
use super::observe;
use super::settle::{self, Delay, Hand, Happened, Limits, Outcome, Settle, Write};
use super::visibility;
use crate::config::{Fault, WorkerConfig};
use crate::error::WorkerError;
use crate::load::{apply_replace, batchable, load_file, LoadContext, LoadOutcome, ReplaceOutcome};
use aws_sdk_sqs::types::Message;
use sluice_common::manifest::{Changes, NewFile};
use sluice_common::manifest::{ManifestItem, Status, Transition};
use sluice_common::message::{FileMessage, Message as QueueMessage, ReplaceMessage};
use sluice_common::retry::{retry, Attempt, Policy};
use sluice_common::store::{Annotation, ManifestStore, Moved};
use std::sync::Arc;
use std::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, info_span, warn, Instrument};

/// What every message's task shares: the settings and the clients.
pub(super) struct Shared {
    pub cfg: WorkerConfig,
    pub sqs: aws_sdk_sqs::Client,
    pub store: ManifestStore,
    pub load: LoadContext,
    /// The database as the receive loop and the health check know it; a load's outage is
    /// told to it.
    pub database: Arc<observe::Database>,
    /// The batches being gathered and the load slots.
    pub gather: Arc<Gather>,
    /// Message deletes, grouped while one call is out.
    pub deleter: deleter::Deleter,
}

/// Handles one received message to its end.
pub(super) async fn handle(
    shared: &Shared,
    message: Message,
    abandon: &CancellationToken,
    arriving: Arriving,
) -> Outcome {
    let message_id = message.message_id().unwrap_or_default().to_owned();
    let receipt = message.receipt_handle().unwrap_or_default().to_owned();
    let msg = match QueueMessage::from_body(&message_id, message.body().unwrap_or_default()) {
        Ok(QueueMessage::File(m)) => m,
        Ok(QueueMessage::Replace(m)) => {
            drop(arriving);
            let span = info_span!("replace", bucket = %m.bucket, key = %m.head_key, etag = %m.head_etag,
                table = %m.source_table(), generation = %m.generation, message_id = %message_id,
                worker = %shared.cfg.worker_id);
            return handle_replace(shared, m, receipt).instrument(span).await;
        }
        Err(e) => {
            drop(arriving);
            // Not ours to delete: it stays visible to the dead-letter queue's redrive, at a
            // slow pace instead of a crash loop.
            error!(message_id = %message_id, error = %e, "refusing message");
            let settle = settle::decide(&Happened::Unreadable, &limits(shared));
            hand(shared, &receipt, settle.message).await;
            return settle.outcome;
        }
    };
    let span = info_span!("file", bucket = %msg.bucket, key = %msg.key, etag = %msg.etag,
        table = %msg.source_table(), message_id = %message_id, worker = %shared.cfg.worker_id, attempt = tracing::field::Empty);
    let started = Instant::now();
    let outcome = handle_file(shared, msg, (message_id, receipt), abandon, arriving)
        .instrument(span)
        .await;
    observe::file_done(outcome, started.elapsed());
    outcome
}

fn limits(shared: &Shared) -> Limits {
    Limits {
        max_attempts: shared.cfg.max_attempts,
        bad_message_delay: shared.cfg.bad_message_delay,
    }
}

async fn handle_file(
    shared: &Shared,
    msg: FileMessage,
    (message_id, receipt): (String, String),
    abandon: &CancellationToken,
    arriving: Arriving,
) -> Outcome {
    let attempt = match claim(shared, &msg, &message_id).await {
        Ok(attempt) => attempt,
        Err(happened) => return settle_file(shared, &msg, &receipt, &happened).await,
    };
    tracing::Span::current().record("attempt", attempt);
    if attempt > shared.cfg.max_attempts {
        let happened = past_the_limit(shared, &msg).await;
        return settle_file(shared, &msg, &receipt, &happened).await;
    }
    let held = Held {
        message_id: &message_id,
        receipt: &receipt,
        attempt,
    };
    let Some(result) = load_held(shared, &msg, held, abandon, arriving).await else {
        warn!("abandoned at shutdown; the message is handed back");
        let happened = Happened::Abandoned {
            key: &msg.key,
            table: msg.source_table(),
            attempt,
        };
        return settle_file(shared, &msg, &receipt, &happened).await;
    };
    let happened = match &result {
        Ok(outcome) => {
            if shared.cfg.fault == Some(Fault::ExitAfterCommit) {
                fault_exit("after commit, before the manifest update");
            }
            announce_loaded(outcome);
            Happened::Loaded(outcome)
        }
        Err(e) => {
            announce_failed(e);
            Happened::Failed { error: e, attempt }
        }
    };
    let settle = settle::decide(&happened, &limits(shared));
    let written = write_item(shared, Item::of(&msg), settle.write).await;
    if result.is_ok() && shared.cfg.fault == Some(Fault::ExitAfterManifest) {
        fault_exit("after the manifest update, before the message delete");
    }
    finish(shared, &receipt, written, settle.message, settle.outcome).await
}

/// Claims the file in the manifest: the claim's attempt number, or what kept it from being
/// claimed.
async fn claim(
    shared: &Shared,
    msg: &FileMessage,
    message_id: &str,
) -> Result<u32, Happened<'static>> {
    let changes = Changes {
        worker: Some(shared.cfg.worker_id.clone()),
        message_id: Some(message_id.to_owned()),
        base: Some(NewFile {
            bucket: msg.bucket.clone(),
            key: msg.key.clone(),
            etag: msg.etag.clone(),
            size: msg.size,
            last_modified: msg.last_modified.clone(),
            table: msg.source_table(),
            kind: msg.file.kind.as_str().to_owned(),
        }),
        ..Changes::default()
    };
    let claim = shared
        .store
        .transition(&msg.key, &msg.etag, Transition::Claim, changes)
        .await;
    match claim {
        Ok(Moved::Applied(item)) => Ok(item.attempts),
        Ok(Moved::Refused(item)) => Err(refused_claim(item)),
        Err(e) => {
            // The message comes back after its visibility timeout.
            warn!(error = %e, "cannot claim file in the manifest");
            Err(Happened::ClaimUnwritten)
        }
    }
}

fn refused_claim(item: Option<ManifestItem>) -> Happened<'static> {
    let status = item.as_ref().and_then(|i| i.status);
    match status {
        Some(Status::Loaded) => {
            info!("file already loaded; acknowledging duplicate message");
        }
        Some(Status::Dead) | Some(Status::Skipped) => {
            info!(status = ?status, "file is dead or skipped; only an operator's retry loads it");
        }
        _ => {
            warn!(status = ?status, "manifest refused the claim; leaving the message");
        }
    }
    Happened::ClaimRefused(status)
}

/// A claim past the attempt limit. The last attempt may have committed before its manifest
/// update was lost (a worker killed between the two): the ledger is asked.
async fn past_the_limit(shared: &Shared, msg: &FileMessage) -> Happened<'static> {
    let ledger = match crate::load::ledger_has(&shared.load, msg).await {
        Ok(true) => {
            info!("attempt limit passed, but the ledger holds the file: its data committed");
            Some(true)
        }
        Ok(false) => Some(false),
        Err(e) => {
            warn!(error = %e, "attempt limit passed and the ledger cannot be asked; the message comes back");
            None
        }
    };
    Happened::PastTheLimit { ledger }
}

/// A claimed message: its ids and the claim's attempt.
struct Held<'a> {
    message_id: &'a str,
    receipt: &'a str,
    attempt: u32,
}

/// Loads the file while the message is held (its visibility extended, the manifest item
/// beaten): with its table's other files in one batch where it can, else alone, retrying
/// what may pass in place; None when shutdown abandoned it.
async fn load_held(
    shared: &Shared,
    msg: &FileMessage,
    held: Held<'_>,
    abandon: &CancellationToken,
    arriving: Arriving,
) -> Option<Result<LoadOutcome, WorkerError>> {
    let Held {
        message_id,
        receipt,
        attempt,
    } = held;
    let heartbeat = visibility::start(
        shared.sqs.clone(),
        shared.cfg.queue_url.clone(),
        receipt.to_owned(),
        message_id.to_owned(),
        shared.cfg.visibility_timeout,
        Some(visibility::ManifestBeat {
            store: shared.store.clone(),
            key: msg.key.clone(),
            etag: msg.etag.clone(),
            worker: shared.cfg.worker_id.clone(),
            attempt,
        }),
    );
    if shared.gather.batches() && batchable(&shared.load.rules, msg) {
        let submitted = shared
            .gather
            .submit(&shared.load, msg.clone(), arriving, abandon);
        let answer = tokio::select! {
            a = submitted => a,
            _ = abandon.cancelled() => return None,
        };
        if let Some(outcome) = answer {
            return Some(Ok(outcome));
        }
    } else {
        drop(arriving);
    }
    let policy = Policy::patient(shared.cfg.db_retry_for);
    let load = retry(
        "load_file",
        policy,
        || async {
            let _slot = shared.gather.slot().await;
            let result = load_file(&shared.load, msg).await;
            shared.database.load_attempted(&result);
            result.map_err(|e| {
                if e.retry_in_place() {
                    Attempt::Transient(e)
                } else {
                    Attempt::Permanent(e)
                }
            })
        },
        |e, wait| warn!(error = %e, wait_ms = wait.as_millis() as u64, "transient error, retrying"),
    );
    let result = tokio::select! {
        r = load => Some(r),
        _ = abandon.cancelled() => None,
    };
    drop(heartbeat);
    result
}

/// The log line and metrics of a committed (or already applied) file.
fn announce_loaded(outcome: &LoadOutcome) {
    match outcome {
        LoadOutcome::Loaded(stats) => {
            observe::loaded(stats);
            info!(
                target_table = %stats.target, rows_read = stats.records, rows_merged = stats.merged(), rows_inserted = stats.inserted,
                rows_updated = stats.updated, rows_deleted = stats.deleted, rows_superseded = stats.superseded,
                rows_rejected = stats.rejected, fields_repaired = stats.repaired,
                partial_images = stats.partial, bytes = stats.bytes,
                copy_ms = stats.copy.as_millis() as u64, merge_ms = stats.merge.as_millis() as u64,
                commit_ms = stats.commit.as_millis() as u64, path = stats.path(), copy_format = stats.copy_format(), batch_files = stats.batch.max(1),
                "file loaded"
            );
        }
        LoadOutcome::AlreadyApplied => {
            info!("file already applied (ledger); acknowledging");
        }
    }
}

/// The log line and metric of a load that failed for good (permanent, or transient past the
/// retries, or an outage).
fn announce_failed(e: &WorkerError) {
    let permanent = !e.is_transient();
    observe::failed(e);
    if e.outage().is_some() {
        warn!(error = %e, error_class = e.class(), "database outage: file handed back, no attempt spent");
    } else {
        error!(error = %e, error_class = e.class(), permanent, "file failed");
    }
}

/// The manifest item a message is about: the file's, or a generation's first file's.
#[derive(Clone, Copy)]
struct Item<'a> {
    key: &'a str,
    etag: &'a str,
}

impl<'a> Item<'a> {
    fn of(msg: &'a FileMessage) -> Self {
        Item {
            key: &msg.key,
            etag: &msg.etag,
        }
    }
}

/// Performs a file message's decision.
async fn settle_file(
    shared: &Shared,
    msg: &FileMessage,
    receipt: &str,
    happened: &Happened<'_>,
) -> Outcome {
    let settle = settle::decide(happened, &limits(shared));
    perform(shared, Item::of(msg), receipt, settle).await
}

/// Performs a decision: the manifest write, then the message.
async fn perform(shared: &Shared, item: Item<'_>, receipt: &str, settle: Settle) -> Outcome {
    let Settle {
        write,
        message,
        outcome,
    } = settle;
    let written = write_item(shared, item, write).await;
    finish(shared, receipt, written, message, outcome).await
}

/// The message's part of a decision, once its write is done; a required write that failed
/// leaves the message (it comes back after its visibility timeout).
async fn finish(
    shared: &Shared,
    receipt: &str,
    written: bool,
    message: Hand,
    outcome: Outcome,
) -> Outcome {
    if !written {
        return Outcome::Deferred;
    }
    hand(shared, receipt, message).await;
    outcome
}

/// Writes a decision's manifest part; false when a required write failed.
async fn write_item(shared: &Shared, item: Item<'_>, write: Option<Write>) -> bool {
    let worker = &shared.cfg.worker_id;
    match write {
        None => true,
        Some(Write::Move {
            transition,
            changes,
            required,
        }) => {
            let changes = changes.into_changes(worker);
            let result = shared
                .store
                .transition(item.key, item.etag, transition, changes)
                .await;
            match (transition, result) {
                (_, Ok(Moved::Applied(_))) | (Transition::Complete, Ok(Moved::Refused(_))) => {}
                (_, Ok(Moved::Refused(now))) => {
                    info!(status = ?now.and_then(|i| i.status), "a newer attempt owns the file; failure not recorded over it")
                }
                (Transition::Complete, Err(e)) => {
                    // Harmless: the next delivery or the coordinator's pass repairs it from the
                    // ledger.
                    warn!(error = %e, "data committed but the manifest update failed");
                    return !required;
                }
                (_, Err(err)) => warn!(error = %err, "cannot record the failure in the manifest"),
            }
            true
        }
        Some(Write::GiveUp { reason }) => {
            let result = shared
                .store
                .give_up(
                    item.key,
                    item.etag,
                    reason.clone(),
                    "attempts_exhausted",
                    Some(worker.clone()),
                )
                .await;
            match result {
                Ok(_) => error!(reason, "file is dead; an operator must retry it"),
                Err(e) => warn!(error = %e, "cannot mark the file dead"),
            }
            true
        }
        Some(Write::Annotate {
            generation,
            rows_removed,
            note,
        }) => {
            let mut attrs = vec![
                (
                    "replaced_at",
                    Annotation::Text(sluice_common::timefmt::now()),
                ),
                ("generation", Annotation::Text(generation)),
            ];
            if let Some(rows) = rows_removed {
                attrs.push(("rows_removed", Annotation::Number(rows)));
            }
            let result = shared
                .store
                .annotate(item.key, item.etag, &attrs, Some(&note))
                .await;
            if let Err(e) = result {
                // The coordinator asks again; the replacement will be found done.
                warn!(error = %e, "replacement done but the manifest update failed");
            }
            true
        }
    }
}

/// A completed generation's replacement: run it (retrying transient errors while the message
/// is held), record the outcome on the generation's first file in the manifest, delete the
/// message. An incomplete generation is left to the coordinator, which asks again later.
async fn handle_replace(shared: &Shared, msg: ReplaceMessage, receipt: String) -> Outcome {
    let heartbeat = visibility::start(
        shared.sqs.clone(),
        shared.cfg.queue_url.clone(),
        receipt.clone(),
        msg.head_key.clone(),
        shared.cfg.visibility_timeout,
        None,
    );
    let result = retry(
        "replace",
        Policy::patient(shared.cfg.db_retry_for),
        || async {
            let _slot = shared.gather.slot().await;
            apply_replace(&shared.load, &msg).await.map_err(|e| {
                if e.is_transient() {
                    Attempt::Transient(e)
                } else {
                    Attempt::Permanent(e)
                }
            })
        },
        |e, wait| warn!(error = %e, wait_ms = wait.as_millis() as u64, "transient error, retrying"),
    )
    .await;
    drop(heartbeat);
    observe::replacement(&result);
    announce_replace(&result);
    let happened = Happened::Replace {
        generation: &msg.generation,
        result: &result,
    };
    let settle = settle::decide(&happened, &limits(shared));
    let head = Item {
        key: &msg.head_key,
        etag: &msg.head_etag,
    };
    perform(shared, head, &receipt, settle).await
}

/// The log line of a replacement's result.
fn announce_replace(result: &Result<ReplaceOutcome, WorkerError>) {
    match result {
        Ok(ReplaceOutcome::Replaced { rows_removed }) => {
            info!(rows_removed, "generation replaced the table's older rows");
        }
        Ok(ReplaceOutcome::AlreadyDone) => info!("generation was replaced before"),
        Ok(ReplaceOutcome::Merge) => info!("table's full loads merge only; nothing removed"),
        Ok(ReplaceOutcome::Incomplete { found, expected }) => {
            warn!(
                found,
                expected, "generation incomplete in the ledger; the coordinator will ask again"
            );
        }
        Err(e) => {
            error!(error = %e, error_class = e.class(), "generation replacement failed");
        }
    }
}

/// The fault tests' crash: exit at once, as a killed process would (no drain, no cleanup).
fn fault_exit(point: &str) -> ! {
    error!(point, "SLUICE_FAULT: exiting now");
    std::process::exit(86)
}

/// Performs the message's part of a decision.
async fn hand(shared: &Shared, receipt: &str, message: Hand) {
    match message {
        Hand::Delete => delete(shared, receipt).await,
        Hand::Return(delay) => set_visibility(shared, receipt, delay).await,
        Hand::Leave => {}
    }
}

async fn delete(shared: &Shared, receipt: &str) {
    shared.deleter.submit(receipt.to_owned()).await;
}

async fn set_visibility(shared: &Shared, receipt: &str, delay: Delay) {
    let wait = delay.draw();
    if let Err(e) = shared
        .sqs
        .change_message_visibility()
        .queue_url(&shared.cfg.queue_url)
        .receipt_handle(receipt)
        .visibility_timeout(wait.as_secs().min(43_200) as i32)
        .send()
        .await
    {
        warn!(error = %sluice_common::error::sdk_error_text(&e), "cannot change message visibility");
    }
}
