//! Gathering a table's CDC files into batches, and the load slots every load takes.
//!
//! A message's task, once it holds its file in the manifest, hands a batchable file
//! ([`crate::load::batchable`]) to [`Gather::submit`] and waits. One runner per source table
//! collects what arrives, waits a little for more (at most `--batch-wait-ms`, and not at all
//! once no received message is still on its way here), takes a load slot, and applies up to
//! `--batch-files` files in one transaction ([`crate::load::load_batch`]). Each waiting task
//! gets its file's outcome, or `None`: load it alone, through the one-file path and its
//! retries. That is the answer for a file gathered alone, and for every file of a batch that
//! failed (nothing of it was applied), so a bad file fails alone with its own error and the
//! others load.
//!
//! Through a database outage a batch is retried whole, in place, for `--db-retry-for` (its
//! outage closes the receive loop's gate as a file's does), so the files it holds load in one
//! transaction once the database is back; only then does it answer `None`.
//!
//! Invariants: at most one runner per table, so a worker never merges two batches of one table
//! at once; every load, alone or batched, holds one of `--concurrency` load slots while it
//! runs, so a worker never applies more at once than it did without batches; a runner stops
//! when its table has nothing left, and at shutdown's abandon (the open transaction rolls
//! back; the tasks see `None` and are abandoned themselves).

use super::observe::Database;
use crate::error::WorkerError;
use crate::load::{load_batch, LoadContext, LoadOutcome};
use sluice_common::message::FileMessage;
use sluice_common::retry::{retry, Attempt, Policy};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{oneshot, Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// A batched file's answer: its outcome, or `None` to load it alone.
pub(super) type Answer = Option<LoadOutcome>;

/// The batches being gathered, per source table, and the worker's load slots.
pub(super) struct Gather {
    pending: Mutex<HashMap<String, Table>>,
    /// Received messages not yet handed here nor settled otherwise (see [`Arriving`]).
    arriving: AtomicUsize,
    /// Told of every file handed here and every message that stops arriving.
    news: Notify,
    slots: Arc<Semaphore>,
    max_files: usize,
    max_bytes: u64,
    wait: Duration,
    /// The database as the receive loop knows it: a batch's outage closes its gate too.
    database: Arc<Database>,
    /// How long a batch is retried in place through a database outage (`--db-retry-for`).
    retry_for: Duration,
}

/// What gathering needs from the worker's settings.
pub(super) struct Settings {
    pub concurrency: usize,
    pub max_files: usize,
    pub max_bytes: u64,
    pub wait: Duration,
    pub retry_for: Duration,
}

/// One table's files waiting for its runner.
#[derive(Default)]
struct Table {
    files: Vec<(FileMessage, oneshot::Sender<Answer>)>,
    running: bool,
}

/// A received message on its way: counted from its receipt until its file is handed to
/// [`Gather::submit`] or its task ends otherwise, so a runner knows when waiting for more is
/// pointless.
pub(super) struct Arriving(Arc<Gather>);

impl Drop for Arriving {
    fn drop(&mut self) {
        self.0.arriving.fetch_sub(1, Ordering::SeqCst);
        self.0.news.notify_waiters();
    }
}

impl Gather {
    pub(super) fn new(settings: Settings, database: Arc<Database>) -> Arc<Self> {
        Arc::new(Gather {
            pending: Mutex::default(),
            arriving: AtomicUsize::new(0),
            news: Notify::new(),
            slots: Arc::new(Semaphore::new(settings.concurrency)),
            max_files: settings.max_files,
            max_bytes: settings.max_bytes,
            wait: settings.wait,
            database,
            retry_for: settings.retry_for,
        })
    }

    /// Whether files are gathered at all (`--batch-files` above 1).
    pub(super) fn batches(&self) -> bool {
        self.max_files > 1
    }

    /// Counts a received message as on its way until the returned guard drops.
    pub(super) fn arriving(self: &Arc<Self>) -> Arriving {
        self.arriving.fetch_add(1, Ordering::SeqCst);
        Arriving(self.clone())
    }

    /// One load slot, held while a load runs.
    pub(super) async fn slot(&self) -> OwnedSemaphorePermit {
        self.slots
            .clone()
            .acquire_owned()
            .await
            .expect("the load slots are never closed")
    }

    /// Waits until a load slot is free (and gives it back): the receive loop receives only
    /// then, behind every task already waiting for one.
    pub(super) async fn slot_free(&self) {
        drop(self.slot().await);
    }

    /// Hands a file to its table's batch; its outcome, or `None` to load it alone. `arriving`
    /// is the file's message's guard: it stops counting now.
    pub(super) async fn submit(
        self: &Arc<Self>,
        ctx: &LoadContext,
        msg: FileMessage,
        arriving: Arriving,
        abandon: &CancellationToken,
    ) -> Answer {
        let (tx, rx) = oneshot::channel();
        let table = msg.source_table();
        let start = {
            let mut pending = self.pending.lock().expect("gather lock");
            let entry = pending.entry(table.clone()).or_default();
            entry.files.push((msg, tx));
            !std::mem::replace(&mut entry.running, true)
        };
        drop(arriving);
        if start {
            let (gather, ctx, abandon) = (self.clone(), ctx.clone(), abandon.clone());
            tokio::spawn(async move {
                tokio::select! {
                    _ = gather.run(&ctx, &table) => {}
                    _ = abandon.cancelled() => gather.stop(&table),
                }
            });
        }
        rx.await.unwrap_or(None)
    }

    /// A table's runner: batches until the table has nothing waiting.
    async fn run(&self, ctx: &LoadContext, table: &str) {
        loop {
            self.gather(table).await;
            let slot = self.slot().await;
            let files = {
                let mut pending = self.pending.lock().expect("gather lock");
                let entry = pending
                    .get_mut(table)
                    .expect("a running table has an entry");
                let sizes = entry.files.iter().map(|(m, _)| m.size);
                let n = batch_len(sizes, self.max_files, self.max_bytes);
                let files: Vec<_> = entry.files.drain(..n).collect();
                if files.is_empty() {
                    pending.remove(table);
                    return;
                }
                files
            };
            let files = alone_if_repeated(files);
            if files.len() > 1 {
                self.apply(ctx, table, files).await;
            } else {
                for (_, tx) in files {
                    let _ = tx.send(None);
                }
            }
            drop(slot);
        }
    }

    /// Waits until the table's batch is full, no received message is still on its way, or the
    /// wait is over.
    async fn gather(&self, table: &str) {
        let deadline = tokio::time::Instant::now() + self.wait;
        loop {
            let news = self.news.notified();
            tokio::pin!(news);
            news.as_mut().enable();
            let waiting = {
                let pending = self.pending.lock().expect("gather lock");
                pending.get(table).map_or(0, |t| t.files.len())
            };
            if waiting >= self.max_files || self.arriving.load(Ordering::SeqCst) == 0 {
                return;
            }
            if tokio::time::timeout_at(deadline, news).await.is_err() {
                return;
            }
        }
    }

    /// At abandon: the table's waiting files are told to load alone (they are abandoned too).
    fn stop(&self, table: &str) {
        let mut pending = self.pending.lock().expect("gather lock");
        if let Some(entry) = pending.remove(table) {
            for (_, tx) in entry.files {
                let _ = tx.send(None);
            }
        }
    }
}

/// How many of the waiting files (oldest first) the next batch takes: at most `max_files`,
/// and no more bytes than `max_bytes` unless it is a single file. Pure.
fn batch_len(sizes: impl Iterator<Item = i64>, max_files: usize, max_bytes: u64) -> usize {
    let mut bytes = 0u64;
    let mut n = 0;
    for size in sizes.take(max_files) {
        bytes = bytes.saturating_add(u64::try_from(size).unwrap_or(0));
        if n > 0 && bytes > max_bytes {
            break;
        }
        n += 1;
    }
    n
}

/// A file delivered twice (the same object version in two messages) is not batched with
/// itself: the extra copies load alone and find the ledger row.
fn alone_if_repeated(
    files: Vec<(FileMessage, oneshot::Sender<Answer>)>,
) -> Vec<(FileMessage, oneshot::Sender<Answer>)> {
    let mut seen = std::collections::HashSet::new();
    let mut kept = Vec::with_capacity(files.len());
    for (msg, tx) in files {
        if seen.insert((msg.bucket.clone(), msg.key.clone(), msg.etag.clone())) {
            kept.push((msg, tx));
        } else {
            let _ = tx.send(None);
        }
    }
    kept
}

impl Gather {
    /// Applies a batch and answers each file; a failed batch answers `None` to all. Through a
    /// database outage the batch is retried whole, in place, for `--db-retry-for` (as a file
    /// alone is), so the backlog it holds loads in batches once the database is back.
    async fn apply(
        &self,
        ctx: &LoadContext,
        table: &str,
        files: Vec<(FileMessage, oneshot::Sender<Answer>)>,
    ) {
        let (msgs, txs): (Vec<FileMessage>, Vec<_>) = files.into_iter().unzip();
        let result: Result<Vec<LoadOutcome>, WorkerError> = retry(
            "load_batch",
            Policy::patient(self.retry_for),
            || async {
                let result = load_batch(ctx, &msgs).await;
                match &result {
                    Ok(_) => self.database.batch_loaded(),
                    Err(e) => self.database.load_failed(e),
                }
                result.map_err(|e| {
                    // As a file alone: an outage that waiting can end, not refused credentials.
                    if e.outage().is_some_and(crate::error::Outage::retry_in_place) {
                        Attempt::Transient(e)
                    } else {
                        Attempt::Permanent(e)
                    }
                })
            },
            |e, wait| {
                warn!(table, error = %e, wait_ms = wait.as_millis() as u64,
                "database outage, retrying the batch")
            },
        )
        .await;
        match result {
            Ok(outcomes) => {
                info!(table, files = msgs.len(), "batch committed");
                for (tx, outcome) in txs.into_iter().zip(outcomes) {
                    let _ = tx.send(Some(outcome));
                }
            }
            Err(e) => {
                warn!(table, files = msgs.len(), error = %e, error_class = e.class(),
                    "batch failed, nothing applied; loading its files one by one");
                for tx in txs {
                    let _ = tx.send(None);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::batch_len;

    #[test]
    fn a_batch_stops_at_its_file_count_or_its_bytes_but_takes_one_file_whatever_its_size() {
        assert_eq!(batch_len([10, 10, 10].into_iter(), 100, 1000), 3);
        assert_eq!(batch_len([10, 10, 10].into_iter(), 2, 1000), 2);
        assert_eq!(batch_len([400, 400, 400].into_iter(), 100, 1000), 2);
        assert_eq!(batch_len([5000, 1].into_iter(), 100, 1000), 1);
        assert_eq!(batch_len(std::iter::empty(), 100, 1000), 0);
    }
}
