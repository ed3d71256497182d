//! Reads of the manifest: single items, a key's versions, batch lookups, the sparse `open` index
//! and the `table` index, counts and the (rare) full scan. No write here.

use super::checkpoints::is_checkpoint_key;
use super::item::{parse_item, s, Item};
use super::{ManifestStore, CONCURRENT_CALLS, OPEN_INDEX, TABLE_INDEX};
use crate::error::{Error, ItemRef};
use crate::manifest::{ManifestItem, Status};
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use std::collections::HashMap;
use std::time::Duration;

impl ManifestStore {
    /// One item, strongly consistent.
    pub async fn get(&self, key: &str, etag: &str) -> Result<Option<ManifestItem>, Error> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("key", s(key))
            .key("etag", s(etag))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.err("get_item", ItemRef::new(key, etag), &e))?;
        Ok(out.item().map(parse_item))
    }

    /// Every version of one key: the file's whole story, oldest discovery first.
    pub async fn history(&self, key: &str) -> Result<Vec<ManifestItem>, Error> {
        let mut items = self
            .query(
                None,
                "#k = :k",
                &[("#k", "key")],
                vec![(":k", s(key))],
                None,
                "query",
            )
            .await?;
        items.sort_by(|a, b| a.discovered_at.cmp(&b.discovered_at));
        Ok(items)
    }

    /// Statuses of the given `(key, etag)` pairs that exist, read in batches of 100.
    pub async fn lookup(
        &self,
        pairs: &[(String, String)],
    ) -> Result<HashMap<(String, String), ManifestItem>, Error> {
        use futures_util::{StreamExt, TryStreamExt};
        let chunks: Vec<Vec<ManifestItem>> = futures_util::stream::iter(pairs.chunks(100))
            .map(|chunk| self.lookup_chunk(chunk))
            .buffer_unordered(CONCURRENT_CALLS)
            .try_collect()
            .await?;
        Ok(chunks
            .into_iter()
            .flatten()
            .map(|item| ((item.key.clone(), item.etag.clone()), item))
            .collect())
    }

    /// One `BatchGetItem` of at most 100 pairs, retried for its unprocessed keys.
    async fn lookup_chunk(&self, chunk: &[(String, String)]) -> Result<Vec<ManifestItem>, Error> {
        let mut found = Vec::new();
        {
            let keys: Vec<Item> = chunk
                .iter()
                .map(|(k, e)| HashMap::from([("key".to_owned(), s(k)), ("etag".to_owned(), s(e))]))
                .collect();
            let mut request = Some(
                KeysAndAttributes::builder()
                    .set_keys(Some(keys))
                    .consistent_read(true)
                    .build()
                    .expect("keys are set"),
            );
            let mut wait = Duration::from_millis(50);
            while let Some(req) = request.take() {
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, req)
                    .send()
                    .await
                    .map_err(|e| self.err("batch_get_item", ItemRef::none(), &e))?;
                if let Some(items) = out.responses().and_then(|r| r.get(&self.table)) {
                    found.extend(items.iter().map(parse_item));
                }
                if let Some(rest) = out.unprocessed_keys().and_then(|u| u.get(&self.table)) {
                    if !rest.keys().is_empty() {
                        // DynamoDB's documented answer to unprocessed keys: back off, ask again.
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(Duration::from_secs(5));
                        request = Some(rest.clone());
                    }
                }
            }
        }
        Ok(found)
    }

    /// The ETags recorded for a key (to tell a changed file from a new one).
    pub async fn etags_of(&self, key: &str) -> Result<Vec<String>, Error> {
        Ok(self
            .history(key)
            .await?
            .into_iter()
            .map(|i| i.etag)
            .collect())
    }

    /// Items of one open status (anything but `loaded`), from the sparse index; oldest update first.
    pub async fn list_open(
        &self,
        status: Status,
        limit: Option<usize>,
    ) -> Result<Vec<ManifestItem>, Error> {
        assert!(status.is_open(), "loaded items are not in the open index");
        self.query(
            Some(OPEN_INDEX),
            "#o = :s",
            &[("#o", "open")],
            vec![(":s", s(status.as_str()))],
            limit,
            "query_open",
        )
        .await
    }

    /// Items of one open status whose last change falls in `[from, to]` (RFC 3339, either bound
    /// optional), from the sparse index's sort key; oldest first.
    pub async fn list_open_between(
        &self,
        status: Status,
        from: Option<&str>,
        to: Option<&str>,
    ) -> Result<Vec<ManifestItem>, Error> {
        assert!(status.is_open(), "loaded items are not in the open index");
        let (cond, mut values) =
            range_condition("#u", from.map(str::to_owned), to.map(str::to_owned));
        values.push((":s", s(status.as_str())));
        // DynamoDB refuses names the expression does not use.
        let names: &[(&str, &str)] = if cond.is_empty() {
            &[("#o", "open")]
        } else {
            &[("#o", "open"), ("#u", "updated_at")]
        };
        self.query(
            Some(OPEN_INDEX),
            &format!("#o = :s{cond}"),
            names,
            values,
            None,
            "query_open",
        )
        .await
    }

    /// A table's items of one status whose last change falls in `[from, to]`, by key condition
    /// on the table index (`status#updated_at`); oldest first.
    pub async fn list_table_between(
        &self,
        table: &str,
        status: Status,
        from: Option<&str>,
        to: Option<&str>,
    ) -> Result<Vec<ManifestItem>, Error> {
        // "#" sorts before the digits of a time and "~" after them.
        let from = format!("{status}#{}", from.unwrap_or(""));
        let to = format!("{status}#{}", to.unwrap_or("~"));
        self.query(
            Some(TABLE_INDEX),
            "#t = :t AND #sa BETWEEN :a AND :b",
            &[("#t", "table"), ("#sa", "status_at")],
            vec![(":t", s(table)), (":a", s(&from)), (":b", s(&to))],
            None,
            "query_table",
        )
        .await
    }

    /// How many items have one open status (a `COUNT` query on the sparse index: no item is
    /// read).
    pub async fn count_open(&self, status: Status) -> Result<u64, Error> {
        assert!(status.is_open(), "loaded items are not in the open index");
        let mut count = 0u64;
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(OPEN_INDEX)
                .key_condition_expression("#o = :s")
                .expression_attribute_names("#o", "open")
                .expression_attribute_values(":s", s(status.as_str()))
                .select(aws_sdk_dynamodb::types::Select::Count)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| self.err("count_open", ItemRef::none(), &e))?;
            count += out.count().max(0) as u64;
            match out.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return Ok(count),
            }
        }
    }

    /// A table's items, optionally of one status, by key condition on the table index.
    pub async fn list_table(
        &self,
        table: &str,
        status: Option<Status>,
        limit: Option<usize>,
    ) -> Result<Vec<ManifestItem>, Error> {
        match status {
            Some(st) => {
                self.query(
                    Some(TABLE_INDEX),
                    "#t = :t AND begins_with(#sa, :p)",
                    &[("#t", "table"), ("#sa", "status_at")],
                    vec![(":t", s(table)), (":p", s(&format!("{st}#")))],
                    limit,
                    "query_table",
                )
                .await
            }
            None => {
                self.query(
                    Some(TABLE_INDEX),
                    "#t = :t",
                    &[("#t", "table")],
                    vec![(":t", s(table))],
                    limit,
                    "query_table",
                )
                .await
            }
        }
    }

    /// A table's newest `limit` items of one status by their last change (the table index,
    /// read backwards): one query of at most `limit` items, whatever the table's size.
    pub async fn recent_of_table(
        &self,
        table: &str,
        status: Status,
        limit: usize,
    ) -> Result<Vec<ManifestItem>, Error> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(TABLE_INDEX)
            .key_condition_expression("#t = :t AND begins_with(#sa, :p)")
            .expression_attribute_names("#t", "table")
            .expression_attribute_names("#sa", "status_at")
            .expression_attribute_values(":t", s(table))
            .expression_attribute_values(":p", s(&format!("{status}#")))
            .scan_index_forward(false)
            .limit(limit.clamp(1, 1000) as i32)
            .send()
            .await
            .map_err(|e| self.err("query_table", ItemRef::none(), &e))?;
        Ok(out.items().iter().map(parse_item).collect())
    }

    /// Every item: a full scan. Only for questions no index answers; callers say so.
    pub async fn scan_all(&self, limit: Option<usize>) -> Result<Vec<ManifestItem>, Error> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .scan()
                .table_name(&self.table)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| self.err("scan", ItemRef::none(), &e))?;
            items.extend(
                out.items()
                    .iter()
                    .map(parse_item)
                    .filter(|i| !is_checkpoint_key(&i.key)),
            );
            if limit.is_some_and(|l| items.len() >= l) {
                items.truncate(limit.unwrap_or(usize::MAX));
                return Ok(items);
            }
            match out.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return Ok(items),
            }
        }
    }

    async fn query(
        &self,
        index: Option<&str>,
        condition: &str,
        names: &[(&str, &str)],
        values: Vec<(&str, AttributeValue)>,
        limit: Option<usize>,
        operation: &'static str,
    ) -> Result<Vec<ManifestItem>, Error> {
        let names: HashMap<String, String> = names
            .iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect();
        let values: HashMap<String, AttributeValue> =
            values.into_iter().map(|(a, b)| (a.to_owned(), b)).collect();
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .set_index_name(index.map(str::to_owned))
                .key_condition_expression(condition)
                .set_expression_attribute_names(Some(names.clone()))
                .set_expression_attribute_values(Some(values.clone()))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| self.err(operation, ItemRef::none(), &e))?;
            items.extend(out.items().iter().map(parse_item));
            if let Some(l) = limit {
                if items.len() >= l {
                    items.truncate(l);
                    return Ok(items);
                }
            }
            match out.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return Ok(items),
            }
        }
    }
}

/// A key condition on a sort key `name` between optional bounds, and its values.
fn range_condition(
    name: &str,
    from: Option<String>,
    to: Option<String>,
) -> (String, Vec<(&'static str, AttributeValue)>) {
    match (from, to) {
        (Some(a), Some(b)) => (
            format!(" AND {name} BETWEEN :a AND :b"),
            vec![(":a", s(&a)), (":b", s(&b))],
        ),
        (Some(a), None) => (format!(" AND {name} >= :a"), vec![(":a", s(&a))]),
        (None, Some(b)) => (format!(" AND {name} <= :b"), vec![(":b", s(&b))]),
        (None, None) => (String::new(), Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_conditions() {
        assert_eq!(range_condition("#u", None, None).0, "");
        assert_eq!(
            range_condition("#u", Some("a".into()), None).0,
            " AND #u >= :a"
        );
        assert_eq!(
            range_condition("#u", None, Some("b".into())).0,
            " AND #u <= :b"
        );
        let (c, v) = range_condition("#u", Some("a".into()), Some("b".into()));
        assert_eq!(c, " AND #u BETWEEN :a AND :b");
        assert_eq!(v.len(), 2);
    }
}
