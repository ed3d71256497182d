//! Keeps a held message invisible while its file loads: a task per message that extends the
//! visibility timeout ahead of expiry (every third of it), so a long load is never handed to a
//! second worker, and a dead worker's message comes back within one timeout. At the same pace it
//! beats the file's manifest item (`heartbeat_at`), so the coordinator, which re-enqueues items
//! unchanged for `--requeue-after`, never takes a long load for a lost one.
//!
//! Invariant: the task stops when the guard is dropped, whatever way the load ended.

use sluice_common::store::ManifestStore;
use std::time::Duration;
use tokio::task::JoinHandle;
use tracing::warn;

/// Stops the extension task on drop.
pub struct Heartbeat {
    task: JoinHandle<()>,
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The manifest item a heartbeat keeps fresh: one claim of one file.
pub struct ManifestBeat {
    pub store: ManifestStore,
    pub key: String,
    pub etag: String,
    pub worker: String,
    /// The claim's attempt number: a beat never touches a later claim's item.
    pub attempt: u32,
}

/// Starts extending `receipt`'s visibility to `timeout` every `timeout / 3`, and beating
/// `manifest` (when given) at the same pace.
pub fn start(
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    receipt: String,
    message_id: String,
    timeout: Duration,
    manifest: Option<ManifestBeat>,
) -> Heartbeat {
    let every = (timeout / 3).max(Duration::from_secs(1));
    let task = tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            let result = sqs
                .change_message_visibility()
                .queue_url(&queue_url)
                .receipt_handle(&receipt)
                .visibility_timeout(timeout.as_secs() as i32)
                .send()
                .await;
            super::observe::visibility_extended(result.is_ok());
            if let Err(e) = result {
                // The load goes on: the ledger keeps its effect single even if another
                // worker takes the message over.
                warn!(message_id = %message_id, error = %sluice_common::error::sdk_error_text(&e), "cannot extend message visibility");
            }
            if let Some(m) = &manifest {
                // A missed beat only risks a duplicate message, which the claim and the ledger
                // absorb.
                if let Err(e) = m
                    .store
                    .heartbeat(&m.key, &m.etag, &m.worker, m.attempt)
                    .await
                {
                    warn!(message_id = %message_id, error = %e, "cannot beat the manifest item");
                }
            }
        }
    });
    Heartbeat { task }
}
