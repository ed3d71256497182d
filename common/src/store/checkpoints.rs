//! The listing checkpoints ([`crate::checkpoint`]) as manifest items: a partition of their own
//! per source, whose key no object of the lake can have, so that no index holds them and no
//! query of files meets them.

use super::item::{get_n, get_s, n, s, Item};
use super::ManifestStore;
use crate::checkpoint::Checkpoint;
use crate::error::{Error, ItemRef};
use crate::timefmt;
use std::collections::HashMap;
use std::time::Duration;

impl ManifestStore {
    /// Listing checkpoints (see [`crate::checkpoint`]), kept in the manifest table under a
    /// partition of their own per source: those of `s3://bucket/prefix`, in no particular
    /// order. Items of another format version are ignored (their ranges are then read whole).
    pub async fn read_checkpoints(
        &self,
        bucket: &str,
        prefix: &str,
    ) -> Result<Vec<Checkpoint>, Error> {
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#k = :k")
                .expression_attribute_names("#k", "key")
                .expression_attribute_values(":k", s(&checkpoint_partition(bucket, prefix)))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| self.err("query_checkpoints", ItemRef::none(), &e))?;
            out.extend(page.items().iter().filter_map(parse_checkpoint));
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return Ok(out),
            }
        }
    }

    /// Replaces the source's checkpoints `previous` (as read) by `next`: writes the new and
    /// changed ones, deletes those whose start is gone, 25 per `BatchWriteItem`. Returns the
    /// items written or deleted. Call it only once every pair `next` covers is in the manifest.
    pub async fn write_checkpoints(
        &self,
        bucket: &str,
        prefix: &str,
        previous: &[Checkpoint],
        next: &[Checkpoint],
    ) -> Result<usize, Error> {
        use aws_sdk_dynamodb::types::{DeleteRequest, PutRequest, WriteRequest};
        let partition = checkpoint_partition(bucket, prefix);
        let before: HashMap<&str, &Checkpoint> =
            previous.iter().map(|c| (c.start.as_str(), c)).collect();
        let starts: std::collections::HashSet<&str> =
            next.iter().map(|c| c.start.as_str()).collect();
        let now = timefmt::now();
        let mut requests = Vec::new();
        for c in next {
            if before.get(c.start.as_str()) == Some(&c) {
                continue;
            }
            let item = HashMap::from([
                ("key".to_owned(), s(&partition)),
                ("etag".to_owned(), s(&checkpoint_sort_key(&c.start))),
                ("v".to_owned(), n(CHECKPOINT_VERSION)),
                ("start".to_owned(), s(&c.start)),
                ("last".to_owned(), s(&c.last)),
                ("count".to_owned(), n(c.count as i64)),
                ("digest".to_owned(), s(&c.digest)),
                ("written_at".to_owned(), s(&now)),
            ]);
            let put = PutRequest::builder().set_item(Some(item)).build();
            requests.push(
                WriteRequest::builder()
                    .put_request(put.expect("item is set"))
                    .build(),
            );
        }
        for c in previous {
            if starts.contains(c.start.as_str()) {
                continue;
            }
            let key = HashMap::from([
                ("key".to_owned(), s(&partition)),
                ("etag".to_owned(), s(&checkpoint_sort_key(&c.start))),
            ]);
            let delete = DeleteRequest::builder().set_key(Some(key)).build();
            requests.push(
                WriteRequest::builder()
                    .delete_request(delete.expect("key is set"))
                    .build(),
            );
        }
        let written = requests.len();
        for chunk in requests.chunks(25) {
            let mut pending = HashMap::from([(self.table.clone(), chunk.to_vec())]);
            let mut wait = Duration::from_millis(50);
            loop {
                let out = self
                    .client
                    .batch_write_item()
                    .set_request_items(Some(pending))
                    .send()
                    .await
                    .map_err(|e| self.err("write_checkpoints", ItemRef::none(), &e))?;
                match out.unprocessed_items() {
                    Some(rest) if rest.values().any(|v| !v.is_empty()) => {
                        // DynamoDB's documented answer to unprocessed items: back off, ask again.
                        pending = rest.clone();
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(Duration::from_secs(5));
                    }
                    _ => break,
                }
            }
        }
        Ok(written)
    }
}

/// Format version of checkpoint items.
const CHECKPOINT_VERSION: i64 = 1;

/// The partition of a source's checkpoints. It begins with U+0000, which no key of the lake
/// can: S3's XML listing cannot carry that character. Checkpoint items have no `status`,
/// `open` or `table`, so no index holds them, and [`ManifestStore::scan_all`] leaves them out.
fn checkpoint_partition(bucket: &str, prefix: &str) -> String {
    format!("\u{0}checkpoints\u{0}{bucket}\u{0}{prefix}")
}

/// Whether a manifest key is a checkpoint partition rather than an object of the lake.
pub fn is_checkpoint_key(key: &str) -> bool {
    key.starts_with('\u{0}')
}

/// A checkpoint's sort key: a digest of its start (a start may be as long as an S3 key, 1,024
/// bytes, which is the most a sort key may be).
fn checkpoint_sort_key(start: &str) -> String {
    format!("cp#{}", &crate::checkpoint::digest([(start, "")])[..40])
}

fn parse_checkpoint(item: &Item) -> Option<Checkpoint> {
    if get_n(item, "v") != Some(CHECKPOINT_VERSION) {
        return None;
    }
    Some(Checkpoint {
        start: get_s(item, "start")?,
        last: get_s(item, "last")?,
        count: u64::try_from(get_n(item, "count")?).ok()?,
        digest: get_s(item, "digest")?,
    })
}
