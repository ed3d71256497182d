//! The bare loop of case 5: per file exactly the AWS calls a worker makes (see
//! `worker/src/run.rs`), and nothing else: SQS `ReceiveMessage` (up to the free slots, at most
//! 10), DynamoDB `UpdateItem` (the claim, `ReturnValues=ALL_NEW`), S3 `GetObject` (`If-Match`,
//! read to the end), DynamoDB `UpdateItem` (`loaded`, with counts and timings), SQS
//! `DeleteMessage`. No PostgreSQL, no parsing: what is left of a worker's time per file is
//! Sluice's own overhead.

use crate::lake::Feeder;
use sluice_common::config::AwsClients;
use sluice_common::manifest::{Changes, NewFile};
use sluice_common::manifest::{PhaseTimings, RowCounts, Transition};
use sluice_common::message::{FileMessage, Message};
use sluice_common::store::{ManifestStore, Moved};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Notify, Semaphore};

pub struct BareSpec {
    pub queue_url: String,
    pub manifest_table: String,
    pub loops: usize,
    pub concurrency: usize,
    pub expect: u64,
    /// Messages to send while the loops run; None: they are all in the queue.
    pub feeder: Option<Feeder>,
}

struct Shared {
    aws: AwsClients,
    store: ManifestStore,
    queue_url: String,
    done: AtomicU64,
    bytes: AtomicU64,
    expect: u64,
    finished: Notify,
}

/// Runs `loops` receive loops of `concurrency` slots each until `expect` files are done;
/// returns the wall time and the bytes read.
pub async fn run(mut spec: BareSpec) -> anyhow::Result<(Duration, u64)> {
    let aws = AwsClients::from_env().await;
    if let Some(f) = spec.feeder.as_mut() {
        f.top_up(&aws, &spec.queue_url, 0).await?;
    }
    let shared = Arc::new(Shared {
        store: ManifestStore::new(aws.dynamodb.clone(), spec.manifest_table.clone()),
        aws,
        queue_url: spec.queue_url.clone(),
        done: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        expect: spec.expect,
        finished: Notify::new(),
    });
    let started = Instant::now();
    let finished = shared.finished.notified();
    let feeding = spec.feeder.take().map(|mut f| {
        let shared = shared.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(50)).await;
                let done = shared.done.load(Ordering::SeqCst);
                if let Err(e) = f.top_up(&shared.aws, &shared.queue_url, done).await {
                    eprintln!("feeding failed: {e:#}");
                }
                if done >= f.total() {
                    break;
                }
            }
        })
    });
    let mut loops = Vec::new();
    for i in 0..spec.loops {
        let shared = shared.clone();
        let worker = format!("bare-{i}");
        let slots = spec.concurrency;
        loops.push(tokio::spawn(async move {
            receive_loop(shared, worker, slots).await;
        }));
    }
    finished.await;
    let elapsed = started.elapsed();
    for l in loops.into_iter().chain(feeding) {
        l.abort();
    }
    Ok((elapsed, shared.bytes.load(Ordering::SeqCst)))
}

async fn receive_loop(shared: Arc<Shared>, worker: String, slots: usize) {
    let permits = Arc::new(Semaphore::new(slots));
    loop {
        let first = permits
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore is never closed");
        let mut held = vec![first];
        while held.len() < 10 {
            match permits.clone().try_acquire_owned() {
                Ok(p) => held.push(p),
                Err(_) => break,
            }
        }
        let received = shared
            .aws
            .sqs
            .receive_message()
            .queue_url(&shared.queue_url)
            .max_number_of_messages(held.len() as i32)
            .wait_time_seconds(1)
            .visibility_timeout(120)
            .message_system_attribute_names(
                aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount,
            )
            .send()
            .await;
        let messages = match received {
            Ok(out) => out.messages.unwrap_or_default(),
            Err(e) => {
                eprintln!("receive failed: {e:?}");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        for message in messages {
            let permit = held.pop().expect("never more messages than permits");
            let shared = shared.clone();
            let worker = worker.clone();
            tokio::spawn(async move {
                if let Err(e) = one_file(&shared, &worker, message).await {
                    eprintln!("bare file failed: {e:#}");
                }
                drop(permit);
            });
        }
    }
}

async fn one_file(
    shared: &Shared,
    worker: &str,
    message: aws_sdk_sqs::types::Message,
) -> anyhow::Result<()> {
    let message_id = message.message_id().unwrap_or_default().to_owned();
    let receipt = message.receipt_handle().unwrap_or_default().to_owned();
    let msg: FileMessage =
        match Message::from_body(&message_id, message.body().unwrap_or_default())? {
            Message::File(m) => m,
            Message::Replace(_) => anyhow::bail!("unexpected replace message"),
        };
    let claim = shared
        .store
        .transition(
            &msg.key,
            &msg.etag,
            Transition::Claim,
            Changes {
                worker: Some(worker.to_owned()),
                message_id: Some(message_id),
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
        .await?;
    anyhow::ensure!(
        matches!(claim, Moved::Applied(_)),
        "claim refused for {}",
        msg.key
    );
    let started = Instant::now();
    let mut body = shared
        .aws
        .s3
        .get_object()
        .bucket(&msg.bucket)
        .key(&msg.key)
        .if_match(format!("\"{}\"", msg.etag))
        .send()
        .await?
        .body;
    let mut bytes = 0u64;
    while let Some(chunk) = body.try_next().await? {
        bytes += chunk.len() as u64;
    }
    shared.bytes.fetch_add(bytes, Ordering::SeqCst);
    let copy_ms = started.elapsed().as_millis() as u64;
    shared
        .store
        .transition(
            &msg.key,
            &msg.etag,
            Transition::Complete,
            Changes {
                worker: Some(worker.to_owned()),
                error: Some(None),
                rows: Some(RowCounts {
                    read: 50,
                    merged: 50,
                    rejected: 0,
                    superseded: 0,
                    repaired: 0,
                }),
                timings: Some(PhaseTimings {
                    copy_ms,
                    merge_ms: 0,
                    commit_ms: 0,
                }),
                ..Changes::default()
            },
        )
        .await?;
    shared
        .aws
        .sqs
        .delete_message()
        .queue_url(&shared.queue_url)
        .receipt_handle(&receipt)
        .send()
        .await?;
    if shared.done.fetch_add(1, Ordering::SeqCst) + 1 == shared.expect {
        shared.finished.notify_one();
    }
    Ok(())
}
