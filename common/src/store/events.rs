//! When the coordinator last received an S3 event, per source: one manifest item under a
//! partition of its own (beginning with U+0000 like the checkpoints', so no object of the lake
//! has its key, no index holds it and [`ManifestStore::scan_all`] leaves it out), for `status`.

use super::item::{get_s, s};
use super::ManifestStore;
use crate::error::{Error, ItemRef};
use crate::timefmt;
use std::collections::HashMap;

impl ManifestStore {
    /// Records `sent_at` (RFC 3339: when SQS received the newest event of a batch) as the
    /// newest event of `s3://bucket/prefix`. Unconditional: the last writer wins, and a
    /// coordinator writes what it just received.
    pub async fn record_newest_event(
        &self,
        bucket: &str,
        prefix: &str,
        sent_at: &str,
    ) -> Result<(), Error> {
        let item = HashMap::from([
            ("key".to_owned(), s(&events_partition(bucket, prefix))),
            ("etag".to_owned(), s("newest")),
            ("sent_at".to_owned(), s(sent_at)),
            ("written_at".to_owned(), s(&timefmt::now())),
        ]);
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| self.err("record_newest_event", ItemRef::none(), &e))?;
        Ok(())
    }

    /// When SQS received the newest event the coordinator read for `s3://bucket/prefix`, if
    /// it ever read one.
    pub async fn newest_event(&self, bucket: &str, prefix: &str) -> Result<Option<String>, Error> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("key", s(&events_partition(bucket, prefix)))
            .key("etag", s("newest"))
            .send()
            .await
            .map_err(|e| self.err("newest_event", ItemRef::none(), &e))?;
        Ok(out.item().and_then(|i| get_s(i, "sent_at")))
    }
}

fn events_partition(bucket: &str, prefix: &str) -> String {
    format!("\u{0}events\u{0}{bucket}\u{0}{prefix}")
}
