//! S3, SQS and DynamoDB chores of the benchmark: uploads, the many-objects seed, the floor read,
//! the bare listing, and putting a manifest into the state a case starts from.

use aws_sdk_dynamodb::types::{AttributeValue, DeleteRequest, PutRequest, WriteRequest};
use sluice_common::config::AwsClients;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

type Item = HashMap<String, AttributeValue>;

pub async fn ensure_bucket(aws: &AwsClients, bucket: &str) -> anyhow::Result<()> {
    if aws.s3.head_bucket().bucket(bucket).send().await.is_err() {
        aws.s3.create_bucket().bucket(bucket).send().await?;
    }
    Ok(())
}

/// One object from a file, in one `PutObject` (the body is read into memory first, as the
/// integration tests send theirs). Returns the ETag without quotes.
pub async fn put_file(
    aws: &AwsClients,
    bucket: &str,
    key: &str,
    file: &Path,
) -> anyhow::Result<String> {
    let body = tokio::fs::read(file).await?;
    let out = aws
        .s3
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(body.into())
        .send()
        .await?;
    Ok(sluice_common::message::bare_etag(
        out.e_tag().unwrap_or_default(),
    ))
}

/// Every file of `dir` (sorted by name) as `prefix` + its name, `parallel` at a time.
pub async fn put_dir(
    aws: &AwsClients,
    bucket: &str,
    prefix: &str,
    dir: &Path,
    parallel: usize,
) -> anyhow::Result<usize> {
    let mut names: Vec<String> = std::fs::read_dir(dir)?
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .collect();
    names.sort();
    let gate = Arc::new(Semaphore::new(parallel));
    let mut tasks = Vec::new();
    for name in &names {
        let permit = gate.clone().acquire_owned().await?;
        let (aws, bucket) = (aws.clone(), bucket.to_owned());
        let key = format!("{prefix}{name}");
        let path = dir.join(name);
        tasks.push(tokio::spawn(async move {
            let r = put_file(&aws, &bucket, &key, &path).await;
            drop(permit);
            r
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(names.len())
}

/// The key of many-objects object `i`: `tables` table folders, CDC names one second apart.
pub fn seed_key(prefix: &str, i: u64, tables: u64) -> String {
    let t = time::macros::datetime!(2024-01-01 00:00:00 UTC) + time::Duration::seconds(i as i64);
    format!(
        "{prefix}bench/many_{:02}/{}",
        i % tables,
        sluice_common::mapping::cdc_file_name(t)
    )
}

/// Objects `from..to` of the many-objects lake (a one-line CDC body each), `parallel` at a time.
pub async fn seed(
    aws: &AwsClients,
    bucket: &str,
    prefix: &str,
    from: u64,
    to: u64,
    tables: u64,
    parallel: usize,
) -> anyhow::Result<()> {
    let gate = Arc::new(Semaphore::new(parallel));
    let mut tasks = Vec::new();
    for i in from..to {
        let permit = gate.clone().acquire_owned().await?;
        let s3 = aws.s3.clone();
        let (bucket, key) = (bucket.to_owned(), seed_key(prefix, i, tables));
        tasks.push(tokio::spawn(async move {
            let r = s3
                .put_object()
                .bucket(bucket)
                .key(key)
                .body(format!("I,{i}\n").into_bytes().into())
                .send()
                .await;
            drop(permit);
            r.map(|_| ())
        }));
        if tasks.len() >= 4096 {
            for t in tasks.drain(..) {
                t.await??;
            }
        }
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// The floor: one `GetObject`, read to the end, kept nowhere. Returns (time, bytes).
pub async fn read(aws: &AwsClients, bucket: &str, key: &str) -> anyhow::Result<(Duration, u64)> {
    let started = Instant::now();
    let mut body = aws
        .s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await?
        .body;
    let mut bytes = 0u64;
    while let Some(chunk) = body.try_next().await? {
        bytes += chunk.len() as u64;
    }
    Ok((started.elapsed(), bytes))
}

/// The bare listing: `ListObjectsV2` pages until the end, as the coordinator pages. Returns
/// (time, objects, pages).
pub async fn list(
    aws: &AwsClients,
    bucket: &str,
    prefix: &str,
) -> anyhow::Result<(Duration, u64, u64)> {
    let started = Instant::now();
    let (mut objects, mut pages) = (0u64, 0u64);
    let mut token: Option<String> = None;
    loop {
        let page = aws
            .s3
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_continuation_token(token.take())
            .send()
            .await?;
        pages += 1;
        objects += page.contents().len() as u64;
        match page.next_continuation_token() {
            Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_owned()),
            _ => return Ok((started.elapsed(), objects, pages)),
        }
    }
}

async fn scan_all(aws: &AwsClients, table: &str) -> anyhow::Result<Vec<Item>> {
    let mut items = Vec::new();
    let mut start: Option<Item> = None;
    loop {
        let out = aws
            .dynamodb
            .scan()
            .table_name(table)
            .set_exclusive_start_key(start.take())
            .send()
            .await?;
        items.extend(out.items().iter().cloned());
        match out.last_evaluated_key() {
            Some(k) if !k.is_empty() => start = Some(k.clone()),
            _ => return Ok(items),
        }
    }
}

/// The source's checkpoints: computed from its present listing (`save`, written to `file` as
/// JSON lines too) and stored in place of those the manifest holds. Returns how many.
pub async fn save_checkpoints(
    aws: &AwsClients,
    table: &str,
    bucket: &str,
    prefix: &str,
    file: &Path,
) -> anyhow::Result<usize> {
    let listed = list_all(aws, bucket, prefix).await?;
    let pairs: Vec<(&str, &str)> = listed
        .iter()
        .filter(|o| !o.key.ends_with('/'))
        .map(|o| (o.key.as_str(), o.etag.as_str()))
        .collect();
    let built = sluice_common::checkpoint::build(&pairs, &[]);
    let mut text = String::new();
    for c in &built {
        let line = serde_json::json!({
            "start": c.start, "last": c.last, "count": c.count, "digest": c.digest,
        });
        text.push_str(&line.to_string());
        text.push('\n');
    }
    std::fs::write(file, text)?;
    put_checkpoints(aws, table, bucket, prefix, &built).await
}

/// Puts back the checkpoints `save_checkpoints` wrote to `file`.
pub async fn restore_checkpoints(
    aws: &AwsClients,
    table: &str,
    bucket: &str,
    prefix: &str,
    file: &Path,
) -> anyhow::Result<usize> {
    let mut saved = Vec::new();
    for line in std::fs::read_to_string(file)?.lines() {
        let v: serde_json::Value = serde_json::from_str(line)?;
        let text = |k: &str| {
            v[k].as_str()
                .map(str::to_owned)
                .ok_or_else(|| anyhow::anyhow!("{k} missing in {line}"))
        };
        saved.push(sluice_common::checkpoint::Checkpoint {
            start: text("start")?,
            last: text("last")?,
            count: v["count"]
                .as_u64()
                .ok_or_else(|| anyhow::anyhow!("count missing in {line}"))?,
            digest: text("digest")?,
        });
    }
    put_checkpoints(aws, table, bucket, prefix, &saved).await
}

/// Stores `next` as the source's checkpoints, as the coordinator names the source.
async fn put_checkpoints(
    aws: &AwsClients,
    table: &str,
    bucket: &str,
    prefix: &str,
    next: &[sluice_common::checkpoint::Checkpoint],
) -> anyhow::Result<usize> {
    let source = sluice_common::config::SourceLocation::parse(&format!("s3://{bucket}/{prefix}"))?;
    let store = sluice_common::store::ManifestStore::new(aws.dynamodb.clone(), table);
    let current = store
        .read_checkpoints(&source.bucket, &source.prefix)
        .await?;
    // Deleted first, so that an unchanged checkpoint is written again too.
    store
        .write_checkpoints(&source.bucket, &source.prefix, &current, &[])
        .await?;
    store
        .write_checkpoints(&source.bucket, &source.prefix, &[], next)
        .await?;
    Ok(next.len())
}

/// Items per status.
pub async fn statuses(aws: &AwsClients, table: &str) -> anyhow::Result<Vec<(String, u64)>> {
    let mut counts: HashMap<String, u64> = HashMap::new();
    for item in scan_all(aws, table).await? {
        let key = item.get("key").and_then(|v| v.as_s().ok());
        if key.is_some_and(|k| sluice_common::store::checkpoints::is_checkpoint_key(k)) {
            continue;
        }
        let status = item
            .get("status")
            .and_then(|v| v.as_s().ok())
            .cloned()
            .unwrap_or_default();
        *counts.entry(status).or_default() += 1;
    }
    let mut out: Vec<(String, u64)> = counts.into_iter().collect();
    out.sort();
    Ok(out)
}

async fn batch_write(
    aws: &AwsClients,
    table: &str,
    requests: Vec<WriteRequest>,
    parallel: usize,
) -> anyhow::Result<()> {
    let gate = Arc::new(Semaphore::new(parallel));
    let mut tasks = Vec::new();
    for chunk in requests.chunks(25) {
        let permit = gate.clone().acquire_owned().await?;
        let ddb = aws.dynamodb.clone();
        let table = table.to_owned();
        let chunk = chunk.to_vec();
        tasks.push(tokio::spawn(async move {
            let mut pending = HashMap::from([(table.clone(), chunk)]);
            let mut wait = Duration::from_millis(50);
            let result = loop {
                match ddb
                    .batch_write_item()
                    .set_request_items(Some(pending))
                    .send()
                    .await
                {
                    Ok(out) => match out.unprocessed_items() {
                        Some(rest) if rest.values().any(|v| !v.is_empty()) => {
                            pending = rest.clone();
                            tokio::time::sleep(wait).await;
                            wait = (wait * 2).min(Duration::from_secs(2));
                        }
                        _ => break Ok(()),
                    },
                    Err(e) => break Err(anyhow::Error::from(e)),
                }
            };
            drop(permit);
            result
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// One listed object.
pub struct Listed {
    pub key: String,
    pub etag: String,
    pub size: i64,
    pub last_modified: String,
}

/// Every object under a prefix, with what the coordinator reads of it.
pub async fn list_all(aws: &AwsClients, bucket: &str, prefix: &str) -> anyhow::Result<Vec<Listed>> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = aws
            .s3
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_continuation_token(token.take())
            .send()
            .await?;
        for o in page.contents() {
            out.push(Listed {
                key: o.key().unwrap_or_default().to_owned(),
                etag: sluice_common::message::bare_etag(o.e_tag().unwrap_or_default()),
                size: o.size().unwrap_or(0),
                last_modified: o
                    .last_modified()
                    .and_then(|t| {
                        time::OffsetDateTime::from_unix_timestamp_nanos(t.as_nanos()).ok()
                    })
                    .map(sluice_common::timefmt::format)
                    .unwrap_or_default(),
            });
        }
        match page.next_continuation_token() {
            Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_owned()),
            _ => return Ok(out),
        }
    }
}

/// Writes the manifest of a drained backlog: every object under `prefix` as a `loaded` item.
/// The first object goes through the store's own moves (discovered, queued, loading, loaded,
/// as the coordinator and a worker make them); the others are copies of that item with their
/// own key, ETag, size, time and table, written 25 per `BatchWriteItem`. A coordinator pass
/// then sees what it sees after months of loading: every listed object known and loaded.
/// Returns the items written.
pub async fn seed_manifest(
    aws: &AwsClients,
    table: &str,
    bucket: &str,
    prefix: &str,
    parallel: usize,
) -> anyhow::Result<usize> {
    use sluice_common::manifest::{Changes, NewFile};
    use sluice_common::manifest::{PhaseTimings, RowCounts, Transition};
    use sluice_common::store::ManifestStore;
    let listed = list_all(aws, bucket, prefix).await?;
    let Some(first) = listed.first() else {
        return Ok(0);
    };
    let new_file = |o: &Listed| -> anyhow::Result<NewFile> {
        let f = sluice_common::mapping::map_key(prefix, &o.key)
            .map_err(|e| anyhow::anyhow!("{}: {e:?}", o.key))?;
        Ok(NewFile {
            bucket: bucket.to_owned(),
            key: o.key.clone(),
            etag: o.etag.clone(),
            size: o.size,
            last_modified: o.last_modified.clone(),
            table: f.source_table(),
            kind: f.kind.as_str().to_owned(),
        })
    };
    let store = ManifestStore::new(aws.dynamodb.clone(), table);
    store.record_discovered(&new_file(first)?).await?;
    let moves = [
        (
            Transition::Enqueue,
            Changes {
                message_id: Some("seed".into()),
                ..Changes::default()
            },
        ),
        (
            Transition::Claim,
            Changes {
                worker: Some("seed".into()),
                message_id: Some("seed".into()),
                ..Changes::default()
            },
        ),
        (
            Transition::Complete,
            Changes {
                worker: Some("seed".into()),
                error: Some(None),
                rows: Some(RowCounts {
                    read: 1,
                    merged: 1,
                    ..RowCounts::default()
                }),
                timings: Some(PhaseTimings::default()),
                ..Changes::default()
            },
        ),
    ];
    for (t, changes) in moves {
        store
            .transition(&first.key, &first.etag, t, changes)
            .await?;
    }
    let template = aws
        .dynamodb
        .get_item()
        .table_name(table)
        .key("key", AttributeValue::S(first.key.clone()))
        .key("etag", AttributeValue::S(first.etag.clone()))
        .consistent_read(true)
        .send()
        .await?
        .item
        .ok_or_else(|| anyhow::anyhow!("the template item was not written"))?;
    let mut requests = Vec::with_capacity(listed.len());
    for o in &listed[1..] {
        let f = new_file(o)?;
        let mut item = template.clone();
        item.insert("key".into(), AttributeValue::S(f.key));
        item.insert("etag".into(), AttributeValue::S(f.etag));
        item.insert("size".into(), AttributeValue::N(f.size.to_string()));
        item.insert("last_modified".into(), AttributeValue::S(f.last_modified));
        item.insert("table".into(), AttributeValue::S(f.table));
        requests.push(
            WriteRequest::builder()
                .put_request(
                    PutRequest::builder()
                        .set_item(Some(item))
                        .build()
                        .expect("item is set"),
                )
                .build(),
        );
    }
    batch_write(aws, table, requests, parallel).await?;
    Ok(listed.len())
}

/// Removes the manifest items of many-objects objects `from..to` (every ETag of each key), so
/// that the next pass finds them new again. Returns the items removed.
pub async fn forget(
    aws: &AwsClients,
    table: &str,
    prefix: &str,
    from: u64,
    to: u64,
    tables: u64,
    parallel: usize,
) -> anyhow::Result<usize> {
    let gate = Arc::new(Semaphore::new(parallel));
    let mut tasks = Vec::new();
    for i in from..to {
        let permit = gate.clone().acquire_owned().await?;
        let ddb = aws.dynamodb.clone();
        let table = table.to_owned();
        let key = seed_key(prefix, i, tables);
        tasks.push(tokio::spawn(async move {
            let out = ddb
                .query()
                .table_name(table)
                .key_condition_expression("#k = :k")
                .expression_attribute_names("#k", "key")
                .expression_attribute_values(":k", AttributeValue::S(key.clone()))
                .send()
                .await;
            drop(permit);
            let etags: Vec<AttributeValue> = out?
                .items()
                .iter()
                .filter_map(|it| it.get("etag").cloned())
                .collect();
            Ok::<_, anyhow::Error>((key, etags))
        }));
    }
    let mut requests = Vec::new();
    for t in tasks {
        let (key, etags) = t.await??;
        for etag in etags {
            requests.push(
                WriteRequest::builder()
                    .delete_request(
                        DeleteRequest::builder()
                            .key("key", AttributeValue::S(key.clone()))
                            .key("etag", etag)
                            .build()
                            .expect("key is set"),
                    )
                    .build(),
            );
        }
    }
    let n = requests.len();
    batch_write(aws, table, requests, parallel).await?;
    Ok(n)
}

/// The bodies of one file message per object under `prefix` (what a coordinator pass sends),
/// in key order.
pub async fn file_messages(
    aws: &AwsClients,
    bucket: &str,
    prefix: &str,
) -> anyhow::Result<Vec<String>> {
    use sluice_common::message::{FileMessage, MESSAGE_VERSION};
    let mut bodies = Vec::new();
    for o in list_all(aws, bucket, prefix).await? {
        let f = sluice_common::mapping::map_key(prefix, &o.key)
            .map_err(|e| anyhow::anyhow!("{}: {e:?}", o.key))?;
        bodies.push(
            FileMessage {
                v: MESSAGE_VERSION,
                bucket: bucket.to_owned(),
                key: o.key,
                etag: o.etag,
                size: o.size,
                last_modified: o.last_modified,
                file: f,
            }
            .to_body(),
        );
    }
    Ok(bodies)
}

/// Sends messages 10 per `SendMessageBatch`.
pub async fn send(aws: &AwsClients, queue_url: &str, bodies: &[String]) -> anyhow::Result<()> {
    use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
    for batch in bodies.chunks(10) {
        let entries: Vec<SendMessageBatchRequestEntry> = batch
            .iter()
            .enumerate()
            .map(|(i, body)| {
                SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(body)
                    .build()
                    .expect("id and body are set")
            })
            .collect();
        let out = aws
            .sqs
            .send_message_batch()
            .queue_url(queue_url)
            .set_entries(Some(entries))
            .send()
            .await?;
        anyhow::ensure!(
            out.failed().is_empty(),
            "messages not sent: {:?}",
            out.failed()
        );
    }
    Ok(())
}

/// Keeps a queue fed from a list of messages with at most `window` of them not yet done.
///
/// Why not enqueue them all at once: moto's SQS scans the whole queue on every
/// `ReceiveMessage` and `SendMessageBatch` (about 0.5 ms per message held: 1 s per receive at
/// 2,000 messages, 30 ms at 40), which real SQS does not; a full queue would measure that scan.
/// Messages sent without manifest items: a worker's claim creates a missing item (as for a
/// message whose item was lost) with the same one `UpdateItem` as for a queued one.
pub struct Feeder {
    bodies: Vec<String>,
    sent: usize,
    window: usize,
}

impl Feeder {
    pub fn new(bodies: Vec<String>, window: usize) -> Feeder {
        Feeder {
            bodies,
            sent: 0,
            window: window.max(10),
        }
    }

    pub fn total(&self) -> u64 {
        self.bodies.len() as u64
    }

    /// Sends what the window allows, given how many files are done.
    pub async fn top_up(
        &mut self,
        aws: &AwsClients,
        queue_url: &str,
        done: u64,
    ) -> anyhow::Result<()> {
        let done = usize::try_from(done).unwrap_or(usize::MAX);
        while self.sent < self.bodies.len() && self.sent < done.saturating_add(self.window) {
            let end = (self.sent + 10).min(self.bodies.len());
            send(aws, queue_url, &self.bodies[self.sent..end]).await?;
            self.sent = end;
        }
        Ok(())
    }
}

pub async fn purge(aws: &AwsClients, queue_url: &str) -> anyhow::Result<()> {
    aws.sqs.purge_queue().queue_url(queue_url).send().await?;
    Ok(())
}
