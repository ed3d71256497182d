//! Keeps a held message invisible while its file loads: a task per message that extends the
//! visibility timeout ahead of expiry (every third of it), so a long load is never handed to a
//! second worker, and a dead worker's message comes back within one timeout.
//!
//! Invariant: the task stops when the guard is dropped, whatever way the load ended.

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

/// Starts extending `receipt`'s visibility to `timeout` every `timeout / 3`.
pub fn start(
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    receipt: String,
    message_id: String,
    timeout: Duration,
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
            crate::observe::visibility_extended(result.is_ok());
            if let Err(e) = result {
                // The load goes on: the ledger keeps its effect single even if another
                // worker takes the message over.
                warn!(message_id = %message_id, error = %sluice_common::error::sdk_error_text(&e), "cannot extend message visibility");
            }
        }
    });
    Heartbeat { task }
}
