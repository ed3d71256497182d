//! The worker's receive loop and the life of one message.
//!
//! Backpressure at the source: a message is received only when a concurrency permit is free,
//! so a worker never holds more messages than it is loading. One shutdown token fans out to
//! the loop (stop receiving) and, after the drain timeout, to every in-flight file (abandon:
//! the transaction rolls back, the message is made visible again at once).
//!
//! A message's life: parse -> claim in the manifest -> heartbeat -> load (retrying transient
//! errors with backoff while the message is held) -> after COMMIT: manifest `loaded`, then
//! delete the message. On a permanent error: manifest `failed` (permanent) and delete, so it
//! is not retried forever. On a transient error that outlived the retries: manifest `failed`
//! and the message comes back after an exponential, jittered delay. On a database outage
//! (read-only, unavailable, refused credentials: not the file's fault) that outlived the
//! retries, or at once for refused credentials: the claim is handed back (manifest `queued`
//! with the error, the attempt not counted), the message comes back after a short delay, and
//! the receive loop holds back until the database takes loads again (see `observe::Database`).

use crate::config::{Fault, WorkerConfig};
use crate::db;
use crate::error::LoadError;
use crate::load::{apply_replace, load_file, LoadContext, LoadOutcome, ReplaceOutcome};
use crate::observe;
use crate::visibility;
use aws_sdk_sqs::types::Message;
use sluice_common::config::AwsClients;
use sluice_common::manifest::{Changes, NewFile};
use sluice_common::manifest::{ManifestItem, PhaseTimings, RowCounts, Status, Transition};
use sluice_common::message::{FileMessage, Message as QueueMessage, ReplaceMessage};
use sluice_common::retry::{redelivery_delay, retry, Attempt, Policy};
use sluice_common::store::{ManifestStore, Moved};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, info_span, warn, Instrument};

/// Errors that stop the worker before it loads anything.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Config(#[from] sluice_common::Error),
    #[error(transparent)]
    Database(#[from] db::DbSetupError),
    #[error("cannot serve metrics or health on {addr}: {source}")]
    Endpoint {
        addr: String,
        source: std::io::Error,
    },
}

/// What one run did, for the exit log line and for tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RunSummary {
    pub loaded: u64,
    pub duplicates: u64,
    pub failed: u64,
    pub dead: u64,
    pub abandoned: u64,
    pub bad_messages: u64,
    /// Full-load generations whose replacement this worker ran.
    pub replaced: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Loaded,
    Duplicate,
    Failed,
    Dead,
    Abandoned,
    BadMessage,
    Deferred,
    Replaced,
}

struct Shared {
    cfg: WorkerConfig,
    sqs: aws_sdk_sqs::Client,
    store: ManifestStore,
    load: LoadContext,
    database: Arc<observe::Database>,
}

/// Runs until `shutdown` is cancelled (then drains) or, with `exit_when_idle`, until the queue
/// has stayed empty that long.
pub async fn run(
    cfg: WorkerConfig,
    aws: AwsClients,
    shutdown: CancellationToken,
) -> Result<RunSummary, WorkerError> {
    let stale = Arc::new(db::Staleness::default());
    let pool = db::worker_pool(
        &cfg.database_url,
        cfg.concurrency + 1,
        "sluice-worker",
        &cfg.waits,
        stale.clone(),
    )?;
    let observer = observe::start(&cfg, &pool, stale)
        .await
        .map_err(|(addr, source)| WorkerError::Endpoint { addr, source })?;
    db::bootstrap_with_retry(&pool, &cfg.state_schema, &shutdown).await?;
    info!(worker = %cfg.worker_id, config = ?cfg, "worker started");
    let shared = Arc::new(Shared {
        load: LoadContext {
            pool,
            s3: aws.s3.clone(),
            rules: Arc::new(cfg.rules.clone()),
            state_schema: cfg.state_schema.clone(),
            worker_id: cfg.worker_id.clone(),
            max_record_bytes: cfg.max_record_bytes,
            max_decompressed_bytes: cfg.max_decompressed_bytes,
            prepared: Default::default(),
            schemas: cfg.schemas.clone().map(Arc::new),
            merge_lock_timeout: cfg.waits.merge_lock,
        },
        store: ManifestStore::new(aws.dynamodb.clone(), cfg.manifest_table.clone()),
        sqs: aws.sqs.clone(),
        database: observer.database.clone(),
        cfg,
    });
    let permits = Arc::new(Semaphore::new(shared.cfg.concurrency));
    let abandon = CancellationToken::new();
    let mut tasks: JoinSet<Outcome> = JoinSet::new();
    let mut summary = RunSummary::default();
    let mut idle_since = Instant::now();
    let mut receive_failures = 0u32;

    loop {
        while let Some(done) = tasks.try_join_next() {
            tally(&mut summary, done);
        }
        match shared
            .database
            .wait_until_usable(&observer.liveness, &shutdown)
            .await
        {
            observe::Gate::Open => {}
            observe::Gate::Reopened => idle_since = Instant::now(),
            observe::Gate::Shutdown => break,
        }
        observer.liveness.waiting_for_slot();
        let first = tokio::select! {
            _ = shutdown.cancelled() => break,
            p = permits.clone().acquire_owned() => p.expect("semaphore is never closed"),
        };
        observer.liveness.slot_taken();
        let mut held = vec![first];
        while held.len() < 10 {
            match permits.clone().try_acquire_owned() {
                Ok(p) => held.push(p),
                Err(_) => break,
            }
        }
        let received = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = receive(&shared, held.len() as i32) => r,
        };
        let messages = match received {
            Ok(m) => {
                observer.liveness.received();
                receive_failures = 0;
                m
            }
            Err(e) => {
                receive_failures += 1;
                let wait = redelivery_delay(
                    receive_failures,
                    Duration::from_millis(500),
                    Duration::from_secs(30),
                );
                warn!(error = %e, wait_ms = wait.as_millis() as u64, "receive failed, backing off");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(wait) => continue,
                }
            }
        };
        if messages.is_empty() {
            if tasks.is_empty() {
                if let Some(idle) = shared.cfg.exit_when_idle {
                    if idle_since.elapsed() >= idle {
                        info!(idle_secs = idle.as_secs(), "queue stayed empty, exiting");
                        break;
                    }
                }
            } else {
                idle_since = Instant::now();
            }
            continue;
        }
        idle_since = Instant::now();
        for message in messages {
            let permit = held.pop().expect("never more messages than permits");
            let shared = shared.clone();
            let abandon = abandon.clone();
            tasks.spawn(async move {
                let _in_flight = observe::in_flight();
                let outcome = handle(&shared, message, &abandon).await;
                drop(permit);
                outcome
            });
        }
        if !tasks.is_empty() {
            idle_since = Instant::now();
        }
    }

    // Drain: let in-flight files finish, then abandon what is left.
    if !tasks.is_empty() {
        info!(
            in_flight = tasks.len(),
            "stopping: finishing in-flight files"
        );
        let deadline = tokio::time::sleep(shared.cfg.drain_timeout);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                done = tasks.join_next() => match done {
                    Some(done) => tally(&mut summary, done),
                    None => break,
                },
                _ = &mut deadline, if !abandon.is_cancelled() => {
                    warn!(in_flight = tasks.len(), "drain timeout: abandoning in-flight files");
                    abandon.cancel();
                }
            }
        }
    }
    info!(?summary, "worker stopped");
    drop(observer);
    Ok(summary)
}

fn tally(summary: &mut RunSummary, done: Result<Outcome, tokio::task::JoinError>) {
    match done {
        Ok(Outcome::Loaded) => summary.loaded += 1,
        Ok(Outcome::Duplicate) => summary.duplicates += 1,
        Ok(Outcome::Failed) => summary.failed += 1,
        Ok(Outcome::Dead) => summary.dead += 1,
        Ok(Outcome::Abandoned) => summary.abandoned += 1,
        Ok(Outcome::BadMessage) => summary.bad_messages += 1,
        Ok(Outcome::Deferred) => {}
        Ok(Outcome::Replaced) => summary.replaced += 1,
        Err(e) => error!(error = %e, "file task panicked"),
    }
}

async fn receive(shared: &Shared, max: i32) -> Result<Vec<Message>, String> {
    let out = shared
        .sqs
        .receive_message()
        .queue_url(&shared.cfg.queue_url)
        .max_number_of_messages(max.clamp(1, 10))
        .wait_time_seconds(shared.cfg.wait_time.as_secs() as i32)
        .visibility_timeout(shared.cfg.visibility_timeout.as_secs() as i32)
        .message_system_attribute_names(
            aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount,
        )
        .send()
        .await
        .map_err(|e| sluice_common::error::sdk_error_text(&e))?;
    Ok(out.messages.unwrap_or_default())
}

async fn handle(shared: &Shared, message: Message, abandon: &CancellationToken) -> Outcome {
    let message_id = message.message_id().unwrap_or_default().to_owned();
    let receipt = message.receipt_handle().unwrap_or_default().to_owned();
    let msg = match QueueMessage::from_body(&message_id, message.body().unwrap_or_default()) {
        Ok(QueueMessage::File(m)) => m,
        Ok(QueueMessage::Replace(m)) => {
            let span = info_span!("replace", bucket = %m.bucket, key = %m.head_key, etag = %m.head_etag,
                table = %m.source_table(), generation = %m.generation, message_id = %message_id,
                worker = %shared.cfg.worker_id);
            return handle_replace(shared, m, receipt).instrument(span).await;
        }
        Err(e) => {
            // Not ours to delete: it stays visible to the dead-letter queue's redrive, at a
            // slow pace instead of a crash loop.
            error!(message_id = %message_id, error = %e, "refusing message");
            set_visibility(shared, &receipt, shared.cfg.bad_message_delay).await;
            return Outcome::BadMessage;
        }
    };
    let span = info_span!("file", bucket = %msg.bucket, key = %msg.key, etag = %msg.etag,
        table = %msg.source_table(), message_id = %message_id, worker = %shared.cfg.worker_id, attempt = tracing::field::Empty);
    let started = Instant::now();
    let outcome = handle_file(shared, msg, message_id, receipt, abandon)
        .instrument(span)
        .await;
    observe::file_done(outcome, started.elapsed());
    outcome
}

async fn handle_file(
    shared: &Shared,
    msg: FileMessage,
    message_id: String,
    receipt: String,
    abandon: &CancellationToken,
) -> Outcome {
    let store = &shared.store;
    let claim = store
        .transition(
            &msg.key,
            &msg.etag,
            Transition::Claim,
            Changes {
                worker: Some(shared.cfg.worker_id.clone()),
                message_id: Some(message_id.clone()),
                base: Some(NewFile {
                    bucket: msg.bucket.clone(),
                    key: msg.key.clone(),
                    etag: msg.etag.clone(),
                    size: msg.size,
                    last_modified: msg.last_modified.clone(),
                    table: msg.source_table(),
                    kind: sluice_common::mapping::map_key("", &msg.key)
                        .map(|f| f.kind.as_str())
                        .unwrap_or("other")
                        .to_owned(),
                }),
                ..Changes::default()
            },
        )
        .await;
    let attempt = match claim {
        Ok(Moved::Applied(item)) => item.attempts,
        Ok(Moved::Refused(item)) => return refused_claim(shared, &receipt, item).await,
        Err(e) => {
            // The message comes back after its visibility timeout.
            warn!(error = %e, "cannot claim file in the manifest");
            return Outcome::Deferred;
        }
    };
    tracing::Span::current().record("attempt", attempt);
    if attempt > shared.cfg.max_attempts {
        return past_the_limit(shared, &msg, &receipt).await;
    }

    let heartbeat = visibility::start(
        shared.sqs.clone(),
        shared.cfg.queue_url.clone(),
        receipt.clone(),
        message_id.clone(),
        shared.cfg.visibility_timeout,
        Some(visibility::ManifestBeat {
            store: store.clone(),
            key: msg.key.clone(),
            etag: msg.etag.clone(),
            worker: shared.cfg.worker_id.clone(),
            attempt,
        }),
    );
    let policy = Policy::patient(shared.cfg.db_retry_for);
    let load = retry(
        "load_file",
        policy,
        || async {
            let result = load_file(&shared.load, &msg).await;
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

    match result {
        Some(Ok(outcome)) => {
            if shared.cfg.fault == Some(Fault::ExitAfterCommit) {
                fault_exit("after commit, before the manifest update");
            }
            let timings = match &outcome {
                LoadOutcome::Loaded(stats) => Some(PhaseTimings {
                    copy_ms: stats.copy.as_millis() as u64,
                    merge_ms: stats.merge.as_millis() as u64,
                    commit_ms: stats.commit.as_millis() as u64,
                }),
                LoadOutcome::AlreadyApplied => None,
            };
            let (rows, duplicate) = match &outcome {
                LoadOutcome::Loaded(stats) => {
                    observe::loaded(stats);
                    info!(
                        target_table = %stats.target, rows_read = stats.records, rows_merged = stats.merged(), rows_inserted = stats.inserted,
                        rows_updated = stats.updated, rows_deleted = stats.deleted, rows_superseded = stats.superseded,
                        rows_rejected = stats.rejected, fields_repaired = stats.repaired,
                        partial_images = stats.partial, bytes = stats.bytes,
                        copy_ms = stats.copy.as_millis() as u64, merge_ms = stats.merge.as_millis() as u64,
                        commit_ms = stats.commit.as_millis() as u64, path = stats.path(), "file loaded"
                    );
                    (
                        Some(RowCounts {
                            read: stats.records as i64,
                            merged: stats.merged(),
                            rejected: stats.rejected as i64,
                            superseded: stats.superseded,
                            repaired: stats.repaired as i64,
                        }),
                        false,
                    )
                }
                LoadOutcome::AlreadyApplied => {
                    info!("file already applied (ledger); acknowledging");
                    (None, true)
                }
            };
            let changes = Changes {
                worker: Some(shared.cfg.worker_id.clone()),
                error: Some(None),
                rows,
                timings,
                note: duplicate.then(|| "already in the ledger".to_owned()),
                ..Changes::default()
            };
            if let Err(e) = store
                .transition(&msg.key, &msg.etag, Transition::Complete, changes)
                .await
            {
                // Harmless: the next delivery or the coordinator's pass repairs it from the ledger.
                warn!(error = %e, "data committed but the manifest update failed");
            }
            if shared.cfg.fault == Some(Fault::ExitAfterManifest) {
                fault_exit("after the manifest update, before the message delete");
            }
            delete(shared, &receipt).await;
            if duplicate {
                Outcome::Duplicate
            } else {
                Outcome::Loaded
            }
        }
        Some(Err(e)) => file_failed(shared, &msg, attempt, &receipt, &e).await,
        None => {
            warn!("abandoned at shutdown; the message is handed back");
            let e = LoadError::Database {
                key: msg.key.clone(),
                table: msg.source_table(),
                message: "abandoned: the worker shut down before the load finished".to_owned(),
                sqlstate: None,
                record: None,
                line: None,
                column: None,
                value: None,
                transient: true,
            };
            record_failure(shared, &msg, attempt, &e).await;
            set_visibility(shared, &receipt, Duration::ZERO).await;
            Outcome::Abandoned
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
    use sluice_common::store::Annotation;
    let (note, rows) = match &result {
        Ok(ReplaceOutcome::Replaced { rows_removed }) => {
            info!(rows_removed, "generation replaced the table's older rows");
            (
                format!(
                    "generation {} replaced: {rows_removed} rows removed",
                    msg.generation
                ),
                Some(*rows_removed),
            )
        }
        Ok(ReplaceOutcome::AlreadyDone) => {
            info!("generation was replaced before");
            (
                format!("generation {} was replaced before", msg.generation),
                None,
            )
        }
        Ok(ReplaceOutcome::Merge) => {
            info!("table's full loads merge only; nothing removed");
            (
                format!(
                    "generation {} complete; full_load = merge, nothing removed",
                    msg.generation
                ),
                Some(0),
            )
        }
        Ok(ReplaceOutcome::Incomplete { found, expected }) => {
            warn!(
                found,
                expected, "generation incomplete in the ledger; the coordinator will ask again"
            );
            delete(shared, &receipt).await;
            return Outcome::Deferred;
        }
        Err(e) => {
            error!(error = %e, error_class = e.class(), "generation replacement failed");
            if e.is_transient() {
                set_visibility(shared, &receipt, Duration::from_secs(60)).await;
            } else {
                delete(shared, &receipt).await;
            }
            return Outcome::Failed;
        }
    };
    let mut attrs = vec![
        (
            "replaced_at",
            Annotation::Text(sluice_common::timefmt::now()),
        ),
        ("generation", Annotation::Text(msg.generation.clone())),
    ];
    if let Some(rows) = rows {
        attrs.push(("rows_removed", Annotation::Number(rows)));
    }
    if let Err(e) = shared
        .store
        .annotate(&msg.head_key, &msg.head_etag, &attrs, Some(&note))
        .await
    {
        // The coordinator asks again; the replacement will be found done.
        warn!(error = %e, "replacement done but the manifest update failed");
    }
    delete(shared, &receipt).await;
    Outcome::Replaced
}

/// The fault tests' crash: exit at once, as a killed process would (no drain, no cleanup).
fn fault_exit(point: &str) -> ! {
    error!(point, "SLUICE_FAULT: exiting now");
    std::process::exit(86)
}

async fn refused_claim(shared: &Shared, receipt: &str, item: Option<ManifestItem>) -> Outcome {
    let status = item.as_ref().and_then(|i| i.status);
    match status {
        Some(Status::Loaded) => {
            info!("file already loaded; acknowledging duplicate message");
            delete(shared, receipt).await;
            Outcome::Duplicate
        }
        Some(Status::Dead) | Some(Status::Skipped) => {
            info!(status = ?status, "file is dead or skipped; only an operator's retry loads it");
            delete(shared, receipt).await;
            Outcome::Duplicate
        }
        _ => {
            warn!(status = ?status, "manifest refused the claim; leaving the message");
            Outcome::Deferred
        }
    }
}

/// A load that failed for good (permanent, or transient past the retries): recorded, and its
/// message deleted (permanent) or made visible again later. A database outage is not the
/// file's fault: the claim is handed back and the message comes back after a short pause.
async fn file_failed(
    shared: &Shared,
    msg: &FileMessage,
    attempt: u32,
    receipt: &str,
    e: &LoadError,
) -> Outcome {
    let permanent = !e.is_transient();
    observe::failed(e);
    if e.outage().is_some() {
        warn!(error = %e, error_class = e.class(), "database outage: file handed back, no attempt spent");
    } else {
        error!(error = %e, error_class = e.class(), permanent, "file failed");
    }
    record_failure(shared, msg, attempt, e).await;
    if permanent {
        delete(shared, receipt).await;
    } else if e.outage().is_some() {
        // The receive loop waits for the database; a short pause lets another worker (whose
        // database may be fine) take the file.
        let wait = redelivery_delay(1, Duration::from_secs(10), Duration::from_secs(10));
        set_visibility(shared, receipt, wait).await;
        return Outcome::Deferred;
    } else {
        let wait = redelivery_delay(attempt, Duration::from_secs(10), Duration::from_secs(900));
        set_visibility(shared, receipt, wait).await;
    }
    Outcome::Failed
}

/// Records a failed attempt (`failed`), or hands the claim back (`queued`, the attempt not
/// counted) when the database was out: waiting out an outage never makes a file `dead`.
async fn record_failure(shared: &Shared, msg: &FileMessage, attempt: u32, e: &LoadError) {
    let (transition, note) = match e.outage() {
        Some(o) => (
            Transition::HandBack,
            Some(format!("{}: handed back, no attempt spent", o.class())),
        ),
        None => (Transition::Fail, None),
    };
    let changes = Changes {
        worker: Some(shared.cfg.worker_id.clone()),
        error: Some(Some(e.to_file_error())),
        expect_attempt: Some(attempt),
        note,
        ..Changes::default()
    };
    match shared
        .store
        .transition(&msg.key, &msg.etag, transition, changes)
        .await
    {
        Ok(Moved::Applied(_)) => {}
        Ok(Moved::Refused(now)) => {
            info!(status = ?now.and_then(|i| i.status), "a newer attempt owns the file; failure not recorded over it")
        }
        Err(err) => warn!(error = %err, "cannot record the failure in the manifest"),
    }
}

/// A claim past the attempt limit. The last attempt may have committed before its manifest
/// update was lost (a worker killed between the two): the ledger decides. A file the ledger
/// holds is `loaded`; one it does not hold is `dead`. When the ledger cannot be asked, the
/// message comes back after its visibility timeout and the question is asked again.
async fn past_the_limit(shared: &Shared, msg: &FileMessage, receipt: &str) -> Outcome {
    match crate::load::ledger_has(&shared.load, msg).await {
        Ok(true) => {
            info!("attempt limit passed, but the ledger holds the file: its data committed");
            let changes = Changes {
                worker: Some(shared.cfg.worker_id.clone()),
                error: Some(None),
                note: Some("already in the ledger".to_owned()),
                ..Changes::default()
            };
            if let Err(e) = shared
                .store
                .transition(&msg.key, &msg.etag, Transition::Complete, changes)
                .await
            {
                warn!(error = %e, "data committed but the manifest update failed");
                return Outcome::Deferred;
            }
            delete(shared, receipt).await;
            Outcome::Duplicate
        }
        Ok(false) => {
            let reason = format!("gave up after {} attempts", shared.cfg.max_attempts);
            give_up(shared, msg, &reason).await;
            delete(shared, receipt).await;
            Outcome::Dead
        }
        Err(e) => {
            warn!(error = %e, "attempt limit passed and the ledger cannot be asked; the message comes back");
            Outcome::Deferred
        }
    }
}

async fn give_up(shared: &Shared, msg: &FileMessage, reason: &str) {
    let worker = Some(shared.cfg.worker_id.clone());
    let result = shared
        .store
        .give_up(
            &msg.key,
            &msg.etag,
            reason.to_owned(),
            "attempts_exhausted",
            worker,
        )
        .await;
    match result {
        Ok(_) => error!(reason, "file is dead; an operator must retry it"),
        Err(e) => warn!(error = %e, "cannot mark the file dead"),
    }
}

async fn delete(shared: &Shared, receipt: &str) {
    if let Err(e) = shared
        .sqs
        .delete_message()
        .queue_url(&shared.cfg.queue_url)
        .receipt_handle(receipt)
        .send()
        .await
    {
        // Harmless: the message comes back and finds the ledger row.
        warn!(error = %sluice_common::error::sdk_error_text(&e), "cannot delete message");
    }
}

async fn set_visibility(shared: &Shared, receipt: &str, wait: Duration) {
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
