//! The worker's receive loop: takes messages off the queue while a concurrency slot is free,
//! hands each to its own task (`message.rs`), and drains at shutdown.
//!
//! What it does: backpressure at the source (a message is received only when a concurrency
//! permit is free, so a worker never holds more messages than it is loading); holding back
//! while the database is out (see `observe::Database`); one shutdown token that stops the loop,
//! and after the drain timeout abandons every in-flight file (the transaction rolls back, the
//! message is made visible again at once). What it must not do: load a file, or decide a file's
//! fate: the loading is `crate::load`'s, the decision `settle.rs`'s (pure), and performing it
//! `message.rs`'s.
//!
//! - `message.rs`: one message's life: parse, claim, heartbeat, load, settle.
//! - `gather.rs`: a table's CDC files gathered into one transaction, and the load slots.
//! - `settle.rs`: what happened -> what to do (manifest move, message, outcome), with no IO.
//! - `deleter.rs`: message deletes, grouped while one call is out.
//! - `visibility.rs`: the heartbeat that keeps a held message invisible.
//! - `observe.rs`: metrics of a message's life, the `/metrics` and `/health` endpoint.

mod deleter;
mod gather;
mod message;
pub mod observe;
mod settle;
pub mod visibility;

use crate::config::WorkerConfig;
use crate::db;
use crate::error::WorkerError;
use crate::load::LoadContext;
use aws_sdk_sqs::types::Message;
use message::Shared;
use settle::Outcome;
use sluice_common::config::AwsClients;
use sluice_common::retry::redelivery_delay;
use sluice_common::store::ManifestStore;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

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

/// Runs until `shutdown` is cancelled (then drains) or, with `exit_when_idle`, until the queue
/// has stayed empty that long.
pub async fn run(
    cfg: WorkerConfig,
    aws: AwsClients,
    shutdown: CancellationToken,
) -> Result<RunSummary, WorkerError> {
    let (shared, observer) = start(cfg, aws, &shutdown).await?;
    let mut receiver = Receiver {
        permits: Arc::new(Semaphore::new(
            shared.cfg.concurrency + shared.cfg.batch_files - 1,
        )),
        liveness: observer.liveness.clone(),
        shared,
        shutdown,
        tasks: Tasks::default(),
        idle_since: Instant::now(),
        receive_failures: 0,
    };
    receiver.receive_until_stopped().await;
    let summary = receiver
        .tasks
        .drain(receiver.shared.cfg.drain_timeout)
        .await;
    info!(?summary, "worker stopped");
    drop(observer);
    Ok(summary)
}

/// Opens the pool, the metrics and health endpoint, and the bookkeeping schema.
async fn start(
    cfg: WorkerConfig,
    aws: AwsClients,
    shutdown: &CancellationToken,
) -> Result<(Arc<Shared>, observe::Observer), WorkerError> {
    let stale = Arc::new(db::Staleness::default());
    let pool = db::worker_pool(
        &cfg.database_url,
        cfg.concurrency + 1,
        "sluice-worker",
        &cfg.waits,
        stale.clone(),
    )?;
    let observer = observe::start(&cfg, &pool, stale).await?;
    db::bootstrap_with_retry(&pool, &cfg.state_schema, shutdown).await?;
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
        deleter: deleter::deleter(aws.sqs.clone(), cfg.queue_url.clone()),
        database: observer.database.clone(),
        gather: gather::Gather::new(
            gather::Settings {
                concurrency: cfg.concurrency,
                max_files: cfg.batch_files,
                max_bytes: cfg.batch_max_bytes,
                wait: cfg.batch_wait,
                retry_for: cfg.db_retry_for,
            },
            observer.database.clone(),
        ),
        cfg,
    });
    Ok((shared, observer))
}

/// The receive loop's state.
struct Receiver {
    shared: Arc<Shared>,
    liveness: Arc<observe::Liveness>,
    shutdown: CancellationToken,
    /// One per message held (`concurrency` + `batch_files` - 1): taken before receiving, given back
    /// when the message is done. What is applied at once is bounded by the load slots
    /// (`gather.rs`), one per `concurrency`.
    permits: Arc<Semaphore>,
    tasks: Tasks,
    /// Since when the queue gave nothing and no file was in flight.
    idle_since: Instant,
    /// Receives failed in a row, for the backoff.
    receive_failures: u32,
}

/// What a receive gave.
enum Received {
    Messages(Vec<Message>),
    /// It failed; the backoff is over: try again.
    Again,
    Shutdown,
}

impl Receiver {
    /// Receives and spawns until shutdown or, with `exit_when_idle`, an idle queue.
    async fn receive_until_stopped(&mut self) {
        loop {
            self.tasks.tally_finished();
            match self
                .shared
                .database
                .wait_until_usable(&self.liveness, &self.shutdown)
                .await
            {
                observe::Gate::Open => {}
                observe::Gate::Reopened => self.idle_since = Instant::now(),
                observe::Gate::Shutdown => break,
            }
            // Receive only while a load slot is free: messages beyond what the worker can
            // apply soon stay on the queue for other workers (and the autoscaling's count).
            tokio::select! {
                _ = self.shutdown.cancelled() => break,
                _ = self.shared.gather.slot_free() => {}
            }
            let Some(mut held) = self.take_slots().await else {
                break;
            };
            let messages = match self.receive(held.len()).await {
                Received::Messages(m) => m,
                Received::Again => continue,
                Received::Shutdown => break,
            };
            if messages.is_empty() {
                if self.idle_long_enough() {
                    break;
                }
                continue;
            }
            self.idle_since = Instant::now();
            for message in messages {
                let permit = held.pop().expect("never more messages than permits");
                self.tasks.spawn(&self.shared, message, permit);
            }
        }
    }

    /// Waits for a free slot, then takes up to ten (one receive's most); None at shutdown.
    async fn take_slots(&self) -> Option<Vec<OwnedSemaphorePermit>> {
        self.liveness.waiting_for_slot();
        let first = tokio::select! {
            _ = self.shutdown.cancelled() => return None,
            p = self.permits.clone().acquire_owned() => p.expect("semaphore is never closed"),
        };
        self.liveness.slot_taken();
        let mut held = vec![first];
        while held.len() < 10 {
            match self.permits.clone().try_acquire_owned() {
                Ok(p) => held.push(p),
                Err(_) => break,
            }
        }
        Some(held)
    }

    /// One receive of up to `max` messages; a failure backs off (exponentially, while they
    /// last) before the loop tries again.
    async fn receive(&mut self, max: usize) -> Received {
        let received = tokio::select! {
            _ = self.shutdown.cancelled() => return Received::Shutdown,
            r = receive(&self.shared, max as i32) => r,
        };
        match received {
            Ok(m) => {
                self.liveness.received();
                self.receive_failures = 0;
                Received::Messages(m)
            }
            Err(e) => {
                self.receive_failures += 1;
                let wait = redelivery_delay(
                    self.receive_failures,
                    Duration::from_millis(500),
                    Duration::from_secs(30),
                );
                warn!(error = %e, wait_ms = wait.as_millis() as u64, "receive failed, backing off");
                tokio::select! {
                    _ = self.shutdown.cancelled() => Received::Shutdown,
                    _ = tokio::time::sleep(wait) => Received::Again,
                }
            }
        }
    }

    /// After an empty receive: whether the queue has stayed empty, with no file in flight, for
    /// `exit_when_idle`.
    fn idle_long_enough(&mut self) -> bool {
        if !self.tasks.set.is_empty() {
            self.idle_since = Instant::now();
            return false;
        }
        if let Some(idle) = self.shared.cfg.exit_when_idle {
            if self.idle_since.elapsed() >= idle {
                info!(idle_secs = idle.as_secs(), "queue stayed empty, exiting");
                return true;
            }
        }
        false
    }
}

/// The in-flight messages' tasks, and the tally of those done.
#[derive(Default)]
struct Tasks {
    set: JoinSet<Outcome>,
    summary: RunSummary,
    /// Cancelled when the drain timeout passes: every in-flight load is abandoned.
    abandon: CancellationToken,
}

impl Tasks {
    fn spawn(&mut self, shared: &Arc<Shared>, message: Message, permit: OwnedSemaphorePermit) {
        let shared = shared.clone();
        let abandon = self.abandon.clone();
        let arriving = shared.gather.arriving();
        self.set.spawn(async move {
            let _in_flight = observe::in_flight();
            let outcome = message::handle(&shared, message, &abandon, arriving).await;
            drop(permit);
            outcome
        });
    }

    fn tally_finished(&mut self) {
        while let Some(done) = self.set.try_join_next() {
            tally(&mut self.summary, done);
        }
    }

    /// Lets in-flight files finish, abandons those left after `timeout`; the run's summary.
    async fn drain(mut self, timeout: Duration) -> RunSummary {
        if self.set.is_empty() {
            return self.summary;
        }
        info!(
            in_flight = self.set.len(),
            "stopping: finishing in-flight files"
        );
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                done = self.set.join_next() => match done {
                    Some(done) => tally(&mut self.summary, done),
                    None => break,
                },
                _ = &mut deadline, if !self.abandon.is_cancelled() => {
                    warn!(in_flight = self.set.len(), "drain timeout: abandoning in-flight files");
                    self.abandon.cancel();
                }
            }
        }
        self.summary
    }
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

async fn receive(shared: &Shared, max: i32) -> Result<Vec<Message>, WorkerError> {
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
        .map_err(|e| WorkerError::Receive {
            message: sluice_common::error::sdk_error_text(&e),
        })?;
    Ok(out.messages.unwrap_or_default())
}
