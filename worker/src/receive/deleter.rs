//! Message deletes, grouped: while one delete call is out, the deletes that arrive wait for it
//! and go together in the next call (`DeleteMessageBatch`, at most 10 a call). A delete that
//! finds no call out is sent at once, so a lone file waits for nothing; files that settle
//! together, as a batch's do, take one call per 10 instead of one each, made one after
//! another (the last of 100 waits for 10 calls).
//!
//! Invariant: every receipt handed to [`Grouper::submit`] is sent in at most one call, and its
//! caller returns only after that call answered, or once the sender ended early (a panic: the
//! receipts still waiting are dropped unsent). A delete that fails or is dropped is logged or
//! let go: the message comes back after its visibility timeout and finds the file's ledger row.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;
use tracing::warn;

/// Entries of one `DeleteMessageBatch` call (the SQS limit).
pub const MAX_GROUP: usize = 10;

type SendGroup<T> = dyn Fn(Vec<T>) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync;

/// Groups items that arrive while a group is being sent; sends each group with `send`.
pub struct Grouper<T> {
    inner: Arc<Inner<T>>,
}

impl<T> Clone for Grouper<T> {
    fn clone(&self) -> Self {
        Grouper {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<T> {
    max: usize,
    send: Box<SendGroup<T>>,
    state: Mutex<State<T>>,
}

struct State<T> {
    pending: Vec<(T, oneshot::Sender<()>)>,
    sending: bool,
}

impl<T: Send + 'static> Grouper<T> {
    /// Groups of at most `max`, each given to `send`.
    pub fn new<F, Fut>(max: usize, send: F) -> Self
    where
        F: Fn(Vec<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        assert!(max > 0, "a group holds at least one item");
        Grouper {
            inner: Arc::new(Inner {
                max,
                send: Box::new(move |items| Box::pin(send(items))),
                state: Mutex::new(State {
                    pending: Vec::new(),
                    sending: false,
                }),
            }),
        }
    }

    /// Queues `item`; returns once the call that carried it answered.
    pub async fn submit(&self, item: T) {
        let (done, answered) = oneshot::channel();
        let start = {
            let mut s = self.inner.state.lock().expect("grouper state");
            s.pending.push((item, done));
            !std::mem::replace(&mut s.sending, true)
        };
        if start {
            // A task of its own: the caller that starts the sending must not carry the groups
            // of everyone after it.
            tokio::spawn(self.clone().send_all());
        }
        // The sender never drops an item's channel unanswered but by panicking; either way
        // there is nothing left to wait for.
        let _ = answered.await;
    }

    /// Sends groups until nothing is pending.
    async fn send_all(self) {
        // Should this task end early (a panic, the runtime shutting down), the next delete must
        // start a sender again, and those waiting must not wait forever: their deletes are
        // dropped, as a failed call's are.
        let mut reset = Reset {
            inner: &self.inner,
            armed: true,
        };
        loop {
            let group: Vec<(T, oneshot::Sender<()>)> = {
                let mut s = self.inner.state.lock().expect("grouper state");
                if s.pending.is_empty() {
                    // Under the lock: a delete that comes next starts a sender of its own.
                    s.sending = false;
                    reset.armed = false;
                    return;
                }
                let n = s.pending.len().min(self.inner.max);
                s.pending.drain(..n).collect()
            };
            let (items, waiters): (Vec<T>, Vec<oneshot::Sender<()>>) = group.into_iter().unzip();
            (self.inner.send)(items).await;
            for w in waiters {
                let _ = w.send(());
            }
        }
    }
}

/// Ends a sending task's turn when it ends early: nothing is being sent, and what waits is let
/// go. Disarmed when the task ends normally (it then leaves `sending` false itself).
struct Reset<'a, T> {
    inner: &'a Inner<T>,
    armed: bool,
}

impl<T> Drop for Reset<'_, T> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let mut s = match self.inner.state.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        s.sending = false;
        s.pending.clear();
    }
}

/// The worker's message deletes on its queue.
pub type Deleter = Grouper<String>;

/// A deleter of receipts on `queue_url`: one `DeleteMessage` for a lone receipt, else one
/// `DeleteMessageBatch`.
pub fn deleter(sqs: aws_sdk_sqs::Client, queue_url: String) -> Deleter {
    Grouper::new(MAX_GROUP, move |receipts: Vec<String>| {
        let (sqs, queue_url) = (sqs.clone(), queue_url.clone());
        async move { delete_group(&sqs, &queue_url, receipts).await }
    })
}

async fn delete_group(sqs: &aws_sdk_sqs::Client, queue_url: &str, receipts: Vec<String>) {
    use aws_sdk_sqs::types::DeleteMessageBatchRequestEntry;
    let count = receipts.len();
    if let [receipt] = receipts.as_slice() {
        let result = sqs
            .delete_message()
            .queue_url(queue_url)
            .receipt_handle(receipt)
            .send()
            .await;
        if let Err(e) = result {
            // Harmless: the message comes back and finds the ledger row.
            warn!(error = %sluice_common::error::sdk_error_text(&e), "cannot delete message");
        }
        return;
    }
    let entries: Vec<DeleteMessageBatchRequestEntry> = receipts
        .into_iter()
        .enumerate()
        .map(|(i, receipt)| {
            DeleteMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .receipt_handle(receipt)
                .build()
                .expect("id and receipt are set")
        })
        .collect();
    match sqs
        .delete_message_batch()
        .queue_url(queue_url)
        .set_entries(Some(entries))
        .send()
        .await
    {
        Ok(out) => {
            for f in out.failed() {
                warn!(
                    code = f.code(),
                    message = f.message().unwrap_or_default(),
                    "cannot delete message; it comes back and finds the ledger row"
                );
            }
        }
        Err(e) => warn!(error = %sluice_common::error::sdk_error_text(&e), count,
            "cannot delete messages; they come back and find the ledger rows"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex as StdMutex;
    use tokio::sync::Semaphore;

    type Groups = Arc<StdMutex<Vec<Vec<u32>>>>;

    /// A grouper whose sends record their groups and wait for a permit each.
    fn recording(max: usize) -> (Grouper<u32>, Groups, Arc<Semaphore>) {
        let groups = Arc::new(StdMutex::new(Vec::new()));
        let gate = Arc::new(Semaphore::new(0));
        let (g, s) = (groups.clone(), gate.clone());
        let grouper = Grouper::new(max, move |items: Vec<u32>| {
            let (g, s) = (g.clone(), s.clone());
            async move {
                g.lock().unwrap().push(items);
                s.acquire().await.unwrap().forget();
            }
        });
        (grouper, groups, gate)
    }

    #[tokio::test]
    async fn a_lone_item_goes_at_once_and_the_rest_wait_for_the_call_out() {
        let (grouper, groups, gate) = recording(10);
        let first = tokio::spawn({
            let g = grouper.clone();
            async move { g.submit(0).await }
        });
        while groups.lock().unwrap().is_empty() {
            tokio::task::yield_now().await;
        }
        let later: Vec<_> = (1..=15)
            .map(|i| {
                let g = grouper.clone();
                tokio::spawn(async move { g.submit(i).await })
            })
            .collect();
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
        assert_eq!(
            groups.lock().unwrap().len(),
            1,
            "nothing more until the call answers"
        );
        assert!(!first.is_finished(), "the first caller waits for its call");
        gate.add_permits(3);
        first.await.unwrap();
        for l in later {
            l.await.unwrap();
        }
        let groups = groups.lock().unwrap().clone();
        let sizes: Vec<usize> = groups.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![1, 10, 5]);
        let mut all: Vec<u32> = groups.into_iter().flatten().collect();
        all.sort_unstable();
        assert_eq!(all, (0..=15).collect::<Vec<_>>(), "each item sent once");
    }

    #[tokio::test]
    async fn a_send_that_panics_lets_its_waiters_go_and_the_next_item_is_sent() {
        let groups: Groups = Arc::new(StdMutex::new(Vec::new()));
        let g = groups.clone();
        let grouper = Grouper::new(10, move |items: Vec<u32>| {
            let g = g.clone();
            async move {
                if items.contains(&0) {
                    panic!("the first call fails hard");
                }
                g.lock().unwrap().push(items);
            }
        });
        grouper.submit(0).await;
        // Without the reset, the second delete would wait for a sender that is gone.
        let next = tokio::time::timeout(std::time::Duration::from_secs(5), grouper.submit(1));
        next.await.expect("the next delete is sent");
        assert_eq!(*groups.lock().unwrap(), vec![vec![1]]);
    }

    #[tokio::test]
    async fn items_that_arrive_apart_go_apart() {
        let (grouper, groups, gate) = recording(10);
        gate.add_permits(3);
        for i in 0..3 {
            grouper.submit(i).await;
        }
        assert_eq!(*groups.lock().unwrap(), vec![vec![0], vec![1], vec![2]]);
    }
}
