//! The manifest in DynamoDB.
//!
//! Table layout (created by [`ManifestStore::ensure_table`]):
//! - base table: partition key `key` (S), sort key `etag` (S): one item per object version, and
//!   a file's whole story is one `Query` on its key;
//! - GSI `open-index`: partition key `open` (S), sort key `updated_at` (S). `open` holds the
//!   status of every item that is not `loaded` and is removed when an item becomes `loaded`, so
//!   the index is sparse: listing failed or stuck files reads only those, never the millions of
//!   loaded ones;
//! - GSI `table-index`: partition key `table` (S), sort key `status_at` (S, `status#updated_at`):
//!   a table's files, optionally of one status, by key condition;
//! - the listing checkpoints of each source ([`crate::checkpoint`]) in a partition of their own
//!   whose key no object can have (it begins with U+0000); no index holds them.
//!
//! Invariant: every status change is one `UpdateItem` whose condition is built from
//! [`Transition::allowed_from`]; a refused condition is reported as [`Moved::Refused`] with the
//! item as it now is, never silently overwritten.
//!
//! Invariant: an item's history never holds more than [`HISTORY_CAP`] entries. Every write that
//! appends one (a transition, an annotation with a note) is conditioned on the history having
//! room; when it is full, the oldest entries are removed by an update conditioned on the
//! history's length as read (so an entry a concurrent writer appended meanwhile is never the one
//! dropped), and the write is sent again ([`ManifestStore::update_capped`]).
//!
//! Operator moves (`retry`, `reload`, `skip`) record who and why (`operator*` attributes and a
//! history note), and may be conditioned on the item being unchanged since the operator saw it
//! ([`Changes::expect_updated_at`]). `retry` and `reload` start a fresh round of attempts:
//! `attempts` restarts at 0 and the earlier ones are added to `attempts_before`. A failure is
//! recorded only for the claim that fails: same attempt number *and* same worker, so a worker
//! still holding an attempt from before an operator's retry cannot overwrite the new round's
//! attempt that happens to carry the same number. A hand-back (a database outage) has the same
//! guard and gives the claim's attempt back ([`Transition::attempt_delta`]), so it can never
//! take back an attempt it did not spend.

use crate::checkpoint::Checkpoint;
use crate::error::{sdk_error_is_transient, sdk_error_text, Error, ItemRef};
use crate::manifest::{
    cap_text, history_excess, FileError, ManifestItem, OperatorAction, PhaseTimings, RowCounts,
    Status, Transition, HISTORY_CAP, HISTORY_TEXT_MAX,
};
use crate::telemetry::scrub;
use crate::timefmt;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement,
    KeyType, KeysAndAttributes, Projection, ProjectionType, ReturnValue,
    ReturnValuesOnConditionCheckFailure, ScalarAttributeType, TableStatus,
};
use std::collections::HashMap;
use std::time::Duration;

pub const OPEN_INDEX: &str = "open-index";
pub const TABLE_INDEX: &str = "table-index";

type Item = HashMap<String, AttributeValue>;

/// Calls a pass keeps in flight at once for work that is one call per file or per batch
/// (lookups, new items, enqueue marks): a pass over many new files is not one round trip at a
/// time.
pub const CONCURRENT_CALLS: usize = 16;

/// What a new object version looks like when first written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewFile {
    pub bucket: String,
    pub key: String,
    pub etag: String,
    pub size: i64,
    pub last_modified: String,
    pub table: String,
    pub kind: String,
}

/// Extra attributes a transition writes besides the status.
#[derive(Debug, Clone, Default)]
pub struct Changes {
    pub worker: Option<String>,
    pub message_id: Option<String>,
    /// Some(Some(e)): record the error; Some(None): clear it.
    pub error: Option<Option<FileError>>,
    pub rows: Option<RowCounts>,
    pub timings: Option<PhaseTimings>,
    /// Created from these when the item does not exist yet (claim of a lost item).
    pub base: Option<NewFile>,
    /// Only when the item's attempt count equals this (the claim being failed is still current).
    pub expect_attempt: Option<u32>,
    /// A free-text note for the history.
    pub note: Option<String>,
    /// Operator moves: who makes the move, and why.
    pub operator: Option<Operator>,
    /// Only when the item's `updated_at` still equals this (it has not moved since it was read).
    pub expect_updated_at: Option<String>,
}

/// Who makes an operator move, and why.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Operator {
    pub who: String,
    pub reason: Option<String>,
}

/// The result of a transition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Moved {
    /// Applied; the item as it now is.
    Applied(ManifestItem),
    /// The condition refused it; the item as it is (None: no such item).
    Refused(Option<ManifestItem>),
}

/// The manifest table.
#[derive(Clone, Debug)]
pub struct ManifestStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl ManifestStore {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        ManifestStore {
            client,
            table: table.into(),
        }
    }

    pub fn table_name(&self) -> &str {
        &self.table
    }

    fn err<E>(
        &self,
        operation: &'static str,
        item: ItemRef,
        e: &aws_sdk_dynamodb::error::SdkError<E>,
    ) -> Error
    where
        E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + 'static,
    {
        Error::Manifest {
            operation,
            table: self.table.clone(),
            item,
            message: sdk_error_text(e),
            transient: sdk_error_is_transient(e),
        }
    }

    /// Creates the table and its indexes if missing and waits until it is active. Idempotent.
    pub async fn ensure_table(&self) -> Result<bool, Error> {
        let attr = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("attribute definition is complete")
        };
        let key = |name: &str, kind: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
                .expect("key schema element is complete")
        };
        let gsi = |name: &str, hash: &str, range: &str| {
            GlobalSecondaryIndex::builder()
                .index_name(name)
                .key_schema(key(hash, KeyType::Hash))
                .key_schema(key(range, KeyType::Range))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::All)
                        .build(),
                )
                .build()
                .expect("index definition is complete")
        };
        let created = self
            .client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attr("key"))
            .attribute_definitions(attr("etag"))
            .attribute_definitions(attr("open"))
            .attribute_definitions(attr("updated_at"))
            .attribute_definitions(attr("table"))
            .attribute_definitions(attr("status_at"))
            .key_schema(key("key", KeyType::Hash))
            .key_schema(key("etag", KeyType::Range))
            .global_secondary_indexes(gsi(OPEN_INDEX, "open", "updated_at"))
            .global_secondary_indexes(gsi(TABLE_INDEX, "table", "status_at"))
            .send()
            .await;
        let created = match created {
            Ok(_) => true,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_in_use_exception()) =>
            {
                false
            }
            Err(e) => return Err(self.err("create_table", ItemRef::none(), &e)),
        };
        for _ in 0..600 {
            let described = self
                .client
                .describe_table()
                .table_name(&self.table)
                .send()
                .await
                .map_err(|e| self.err("describe_table", ItemRef::none(), &e))?;
            let status = described.table().and_then(|t| t.table_status().cloned());
            if status == Some(TableStatus::Active) {
                return Ok(created);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(Error::Manifest {
            operation: "describe_table",
            table: self.table.clone(),
            item: ItemRef::none(),
            message: "table did not become active within 5 minutes".to_owned(),
            transient: true,
        })
    }

    /// Writes a newly discovered object version. Ok(false) when it already exists (another
    /// coordinator won the race), which is not an error.
    pub async fn record_discovered(&self, file: &NewFile) -> Result<bool, Error> {
        let now = timefmt::now();
        let mut item = base_item(file);
        let status = Status::Discovered;
        item.insert("status".into(), s(status.as_str()));
        item.insert("open".into(), s(status.as_str()));
        item.insert("attempts".into(), n(0));
        item.insert("discovered_at".into(), s(&now));
        item.insert("updated_at".into(), s(&now));
        item.insert("status_at".into(), s(&format!("{status}#{now}")));
        item.insert(
            "history".into(),
            AttributeValue::L(vec![s(&format!("{now} discovered"))]),
        );
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#k)")
            .expression_attribute_names("#k", "key")
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(self.err("put_item", ItemRef::new(&file.key, &file.etag), &e)),
        }
    }

    /// Sets (`Some`) or removes (`None`) attributes of an existing item without changing its
    /// status, appending `note` to its history. Only for the generation bookkeeping
    /// (`generation`, `replace_sent_at`, `replaced_at`, `rows_removed`).
    pub async fn annotate(
        &self,
        key: &str,
        etag: &str,
        attrs: &[(&str, Annotation)],
        note: Option<&str>,
    ) -> Result<(), Error> {
        let mut x = Expr::default();
        let now = timefmt::now();
        for (attr, value) in attrs {
            debug_assert!(ANNOTATIONS.contains(attr), "{attr}");
            match value {
                Annotation::Text(v) => x.set(attr, s(v)),
                Annotation::Number(v) => x.set(attr, n(*v)),
                Annotation::Remove => x.remove(attr),
            }
        }
        if let Some(note) = note {
            let h = x.name("history");
            let entry = x.value(AttributeValue::L(vec![s(&format!(
                "{now} {}",
                cap_text(&scrub(note), HISTORY_TEXT_MAX)
            ))]));
            let empty = x.value(AttributeValue::L(vec![]));
            x.sets.push(format!(
                "{h} = list_append(if_not_exists({h}, {empty}), {entry})"
            ));
        }
        let k = x.name("key");
        let update = Update {
            operation: "update_item",
            expression: x.update_expression(),
            condition: format!("attribute_exists({k})"),
            names: x.names,
            values: x.values,
            appends_history: note.is_some(),
            return_new: false,
        };
        match self.update_capped(key, etag, update).await? {
            Updated::Applied(_) => Ok(()),
            Updated::Refused => Err(Error::Manifest {
                operation: "update_item",
                table: self.table.clone(),
                item: ItemRef::new(key, etag),
                message: "no such manifest item".to_owned(),
                transient: false,
            }),
        }
    }

    /// Applies a transition as one conditional update.
    pub async fn transition(
        &self,
        key: &str,
        etag: &str,
        transition: Transition,
        changes: Changes,
    ) -> Result<Moved, Error> {
        let now = timefmt::now();
        let target = transition.target();
        let mut x = Expr::default();
        x.set("status", s(target.as_str()));
        x.set("updated_at", s(&now));
        x.set("status_at", s(&format!("{target}#{now}")));
        if target.is_open() {
            x.set("open", s(target.as_str()));
        } else {
            x.remove("open");
        }
        match transition {
            Transition::Enqueue => x.set("enqueued_at", s(&now)),
            Transition::Retry | Transition::Reload => {
                x.set("enqueued_at", s(&now));
                x.remove("finished_at");
            }
            Transition::Claim => {
                x.set("started_at", s(&now));
                x.remove("finished_at");
            }
            Transition::Complete | Transition::Fail | Transition::GiveUp | Transition::Skip => {
                x.set("finished_at", s(&now))
            }
            Transition::Discover | Transition::HandBack => {}
        }
        let delta = transition.attempt_delta();
        if delta != 0 {
            let a = x.name("attempts");
            let zero = x.value(n(0));
            let d = x.value(n(delta));
            x.sets
                .push(format!("{a} = if_not_exists({a}, {zero}) + {d}"));
        }
        if transition.restarts_attempts() {
            // A fresh round: the attempt limit counts again from zero; the earlier attempts are
            // kept. Both right-hand sides read the item as it was before this update.
            let a = x.name("attempts");
            let before = x.name("attempts_before");
            let r = x.name("retries");
            let zero = x.value(n(0));
            let one = x.value(n(1));
            x.sets.push(format!(
                "{before} = if_not_exists({before}, {zero}) + if_not_exists({a}, {zero})"
            ));
            x.sets.push(format!("{a} = {zero}"));
            x.sets
                .push(format!("{r} = if_not_exists({r}, {zero}) + {one}"));
            // The last error belongs to the round that ended; the history keeps it.
            if changes.error.is_none() {
                for attr in ERROR_ATTRS {
                    x.remove(attr);
                }
            }
        }
        if let Some(op) = &changes.operator {
            x.set("operator_action", s(transition.name()));
            x.set("operator", s(&cap_text(&op.who, 300)));
            x.set("operator_at", s(&now));
            match &op.reason {
                Some(r) => x.set("operator_reason", s(&cap_text(r, 2000))),
                None => x.remove("operator_reason"),
            }
        }
        if let Some(worker) = &changes.worker {
            x.set("worker", s(worker));
        }
        if let Some(id) = &changes.message_id {
            x.set("message_id", s(id));
        }
        match &changes.error {
            Some(Some(e)) => set_error(&mut x, e),
            Some(None) => {
                for attr in ERROR_ATTRS {
                    x.remove(attr);
                }
            }
            None => {}
        }
        if let Some(rows) = changes.rows {
            x.set("rows_read", n(rows.read));
            x.set("rows_merged", n(rows.merged));
            x.set("rows_rejected", n(rows.rejected));
            x.set("rows_superseded", n(rows.superseded));
            x.set("fields_repaired", n(rows.repaired));
        }
        if let Some(t) = changes.timings {
            x.set("copy_ms", n(t.copy_ms as i64));
            x.set("merge_ms", n(t.merge_ms as i64));
            x.set("commit_ms", n(t.commit_ms as i64));
        }
        if let Some(base) = &changes.base {
            for (attr, value) in base_item(base) {
                if attr != "key" && attr != "etag" {
                    x.set_if_absent(&attr, value);
                }
            }
            x.set_if_absent("discovered_at", s(&now));
        }
        let mut event = format!("{now} {target}");
        if let Some(w) = &changes.worker {
            event.push_str(&format!(" by {w}"));
        }
        if let Some(Some(e)) = &changes.error {
            event.push_str(&format!(
                ": {}",
                cap_text(&scrub(&e.message), HISTORY_TEXT_MAX)
            ));
        }
        if let Some(op) = &changes.operator {
            let mut text = format!("{} by {}", transition.name(), op.who);
            if let Some(r) = &op.reason {
                text.push_str(&format!(": {r}"));
            }
            event.push_str(&format!(" ({})", cap_text(&text, HISTORY_TEXT_MAX)));
        }
        if let Some(note) = &changes.note {
            event.push_str(&format!(" ({})", cap_text(&scrub(note), HISTORY_TEXT_MAX)));
        }
        let h = x.name("history");
        let empty = x.value(AttributeValue::L(vec![]));
        let ev = x.value(AttributeValue::L(vec![s(&event)]));
        x.sets.push(format!(
            "{h} = list_append(if_not_exists({h}, {empty}), {ev})"
        ));

        let condition = x.condition(transition, &changes);
        let update = Update {
            operation: transition.name(),
            expression: x.update_expression(),
            condition,
            names: x.names,
            values: x.values,
            appends_history: true,
            return_new: true,
        };
        match self.update_capped(key, etag, update).await? {
            Updated::Applied(item) => Ok(Moved::Applied(parse_item(&item))),
            Updated::Refused => Ok(Moved::Refused(self.get(key, etag).await?)),
        }
    }

    /// Sends one conditional update. One that appends a history entry also requires room for
    /// it (fewer than [`HISTORY_CAP`] entries); refused on a full history, it drops the oldest
    /// entries ([`ManifestStore::drop_oldest_history`]) and is sent again. Refused otherwise, it
    /// is [`Updated::Refused`].
    async fn update_capped(&self, key: &str, etag: &str, u: Update) -> Result<Updated, Error> {
        let mut names = u.names;
        let mut values = u.values;
        let condition = if u.appends_history {
            names.insert(HISTORY.to_owned(), "history".to_owned());
            values.insert(":history_cap".to_owned(), n(HISTORY_CAP as i64));
            format!(
                "({}) AND (attribute_not_exists({HISTORY}) OR size({HISTORY}) < :history_cap)",
                u.condition
            )
        } else {
            u.condition
        };
        // A history far over the cap (written before there was one) takes a few rounds.
        for _ in 0..HISTORY_ROUNDS {
            let result = self
                .client
                .update_item()
                .table_name(&self.table)
                .key("key", s(key))
                .key("etag", s(etag))
                .update_expression(&u.expression)
                .condition_expression(&condition)
                .set_expression_attribute_names(Some(names.clone()))
                .set_expression_attribute_values(Some(values.clone()))
                .return_values(if u.return_new {
                    ReturnValue::AllNew
                } else {
                    ReturnValue::None
                })
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .send()
                .await;
            let refused = match result {
                Ok(out) => return Ok(Updated::Applied(out.attributes.unwrap_or_default())),
                Err(e) => match e.as_service_error() {
                    Some(UpdateItemError::ConditionalCheckFailedException(c)) => c.item.clone(),
                    _ => return Err(self.err(u.operation, ItemRef::new(key, etag), &e)),
                },
            };
            if !u.appends_history {
                return Ok(Updated::Refused);
            }
            // The item as the condition saw it; read it when the service did not say.
            let len = match refused {
                Some(item) => history_len(&item),
                None => match self.get(key, etag).await? {
                    Some(item) => item.history.len(),
                    None => return Ok(Updated::Refused),
                },
            };
            if len < HISTORY_CAP {
                return Ok(Updated::Refused);
            }
            self.drop_oldest_history(key, etag, len, u.operation)
                .await?;
        }
        Err(Error::Manifest {
            operation: u.operation,
            table: self.table.clone(),
            item: ItemRef::new(key, etag),
            message: "the item's history kept changing while room was made for a new entry"
                .to_owned(),
            transient: true,
        })
    }

    /// Drops the oldest entries of a history that held `len` entries when it was read, so that
    /// one more fits (at most [`HISTORY_TRIM_BATCH`] at a time). Conditioned on the history
    /// still holding `len` entries: if another writer changed it meanwhile, nothing is dropped
    /// and the caller's next attempt reads it again.
    async fn drop_oldest_history(
        &self,
        key: &str,
        etag: &str,
        len: usize,
        operation: &'static str,
    ) -> Result<(), Error> {
        let drop = history_excess(len, 1, HISTORY_CAP).min(HISTORY_TRIM_BATCH);
        if drop == 0 {
            return Ok(());
        }
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("key", s(key))
            .key("etag", s(etag))
            .update_expression(trim_expression(drop))
            .condition_expression(format!("size({HISTORY}) = :history_len"))
            .expression_attribute_names(HISTORY, "history")
            .expression_attribute_values(":history_len", n(len as i64))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(self.err(operation, ItemRef::new(key, etag), &e)),
        }
    }

    /// Marks an item `dead` with a permanent error of `class`: the one way both binaries give up.
    pub async fn give_up(
        &self,
        key: &str,
        etag: &str,
        message: String,
        class: &str,
        worker: Option<String>,
    ) -> Result<Moved, Error> {
        let error = FileError {
            message,
            class: class.to_owned(),
            permanent: true,
            ..FileError::default()
        };
        let changes = Changes {
            worker,
            error: Some(Some(error)),
            ..Changes::default()
        };
        self.transition(key, etag, Transition::GiveUp, changes)
            .await
    }

    /// Says that `worker` is still loading its claim `attempt` of the item: sets `heartbeat_at`,
    /// only while the item is `loading` by that worker and attempt (a claim taken over, or a
    /// file that has moved on, is left alone: `Ok(false)`). No history entry and no status
    /// change, so a long load's beats neither grow the item nor move it in the indexes. The
    /// coordinator reads it through [`ManifestItem::last_active`].
    pub async fn heartbeat(
        &self,
        key: &str,
        etag: &str,
        worker: &str,
        attempt: u32,
    ) -> Result<bool, Error> {
        let mut x = Expr::default();
        x.set("heartbeat_at", s(&timefmt::now()));
        let (st, w, a) = (x.name("status"), x.name("worker"), x.name("attempts"));
        let (loading, me, current) = (
            x.value(s(Status::Loading.as_str())),
            x.value(s(worker)),
            x.value(n(attempt as i64)),
        );
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("key", s(key))
            .key("etag", s(etag))
            .update_expression(x.update_expression())
            .condition_expression(format!(
                "{st} = {loading} AND {w} = {me} AND {a} = {current}"
            ))
            .set_expression_attribute_names(Some(x.names))
            .set_expression_attribute_values(Some(x.values))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(self.err("update_item", ItemRef::new(key, etag), &e)),
        }
    }

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

    /// Records the id of the message sent for a `queued` item (no status change, no history).
    /// Ok(false) when the item is no longer queued: a worker already took the message.
    pub async fn record_message_id(
        &self,
        key: &str,
        etag: &str,
        message_id: &str,
    ) -> Result<bool, Error> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("key", s(key))
            .key("etag", s(etag))
            .update_expression("SET #m = :m")
            .condition_expression("#s = :q")
            .expression_attribute_names("#m", "message_id")
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":m", s(message_id))
            .expression_attribute_values(":q", s(Status::Queued.as_str()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(self.err("update_item", ItemRef::new(key, etag), &e)),
        }
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

const ERROR_ATTRS: [&str; 8] = [
    "error",
    "error_class",
    "error_permanent",
    "error_sqlstate",
    "error_record",
    "error_line",
    "error_column",
    "error_value",
];

fn set_error(x: &mut Expr, e: &FileError) {
    // Library texts may carry anything: secrets never reach the manifest.
    x.set("error", s(&cap_text(&scrub(&e.message), 4000)));
    x.set("error_class", s(&e.class));
    x.set("error_permanent", AttributeValue::Bool(e.permanent));
    match &e.sqlstate {
        Some(v) => x.set("error_sqlstate", s(v)),
        None => x.remove("error_sqlstate"),
    }
    match e.record {
        Some(v) => x.set("error_record", n(v as i64)),
        None => x.remove("error_record"),
    }
    match e.line {
        Some(v) => x.set("error_line", n(v as i64)),
        None => x.remove("error_line"),
    }
    match &e.column {
        Some(v) => x.set("error_column", s(&cap_text(v, 300))),
        None => x.remove("error_column"),
    }
    match &e.value {
        Some(v) => x.set("error_value", s(&cap_text(&scrub(v), 600))),
        None => x.remove("error_value"),
    }
}

/// The attributes of a new item. `table` is an index key, so it is left out (not written
/// empty, which DynamoDB refuses) for objects that name no table.
fn base_item(file: &NewFile) -> Item {
    let mut item = HashMap::from([
        ("key".to_owned(), s(&file.key)),
        ("etag".to_owned(), s(&file.etag)),
        ("bucket".to_owned(), s(&file.bucket)),
        ("size".to_owned(), n(file.size)),
        ("last_modified".to_owned(), s(&file.last_modified)),
        ("table".to_owned(), s(&file.table)),
        ("kind".to_owned(), s(&file.kind)),
    ]);
    if file.table.is_empty() {
        item.remove("table");
    }
    item
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn get_s(item: &Item, attr: &str) -> Option<String> {
    item.get(attr).and_then(|v| v.as_s().ok()).cloned()
}

fn get_n(item: &Item, attr: &str) -> Option<i64> {
    item.get(attr)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

/// Reads an item back into the model; missing attributes become defaults.
pub fn parse_item(item: &Item) -> ManifestItem {
    let error = get_s(item, "error").map(|message| FileError {
        message,
        class: get_s(item, "error_class").unwrap_or_default(),
        permanent: item
            .get("error_permanent")
            .and_then(|v| v.as_bool().ok())
            .copied()
            .unwrap_or(false),
        sqlstate: get_s(item, "error_sqlstate"),
        record: get_n(item, "error_record").map(|v| v as u64),
        line: get_n(item, "error_line").map(|v| v as u64),
        column: get_s(item, "error_column"),
        value: get_s(item, "error_value"),
    });
    let rows = get_n(item, "rows_read").map(|read| RowCounts {
        read,
        merged: get_n(item, "rows_merged").unwrap_or(0),
        rejected: get_n(item, "rows_rejected").unwrap_or(0),
        superseded: get_n(item, "rows_superseded").unwrap_or(0),
        repaired: get_n(item, "fields_repaired").unwrap_or(0),
    });
    let timings = get_n(item, "copy_ms").map(|copy_ms| PhaseTimings {
        copy_ms: copy_ms as u64,
        merge_ms: get_n(item, "merge_ms").unwrap_or(0) as u64,
        commit_ms: get_n(item, "commit_ms").unwrap_or(0) as u64,
    });
    ManifestItem {
        key: get_s(item, "key").unwrap_or_default(),
        etag: get_s(item, "etag").unwrap_or_default(),
        bucket: get_s(item, "bucket").unwrap_or_default(),
        size: get_n(item, "size").unwrap_or(0),
        last_modified: get_s(item, "last_modified").unwrap_or_default(),
        table: get_s(item, "table").unwrap_or_default(),
        kind: get_s(item, "kind").unwrap_or_default(),
        status: get_s(item, "status").as_deref().and_then(Status::parse),
        attempts: get_n(item, "attempts").unwrap_or(0) as u32,
        attempts_before: get_n(item, "attempts_before").unwrap_or(0) as u32,
        retries: get_n(item, "retries").unwrap_or(0) as u32,
        operator: get_s(item, "operator").map(|who| OperatorAction {
            action: get_s(item, "operator_action").unwrap_or_default(),
            who,
            reason: get_s(item, "operator_reason"),
            at: get_s(item, "operator_at").unwrap_or_default(),
        }),
        error,
        rows,
        timings,
        discovered_at: get_s(item, "discovered_at"),
        enqueued_at: get_s(item, "enqueued_at"),
        started_at: get_s(item, "started_at"),
        finished_at: get_s(item, "finished_at"),
        updated_at: get_s(item, "updated_at"),
        heartbeat_at: get_s(item, "heartbeat_at"),
        worker: get_s(item, "worker"),
        message_id: get_s(item, "message_id"),
        history: item
            .get("history")
            .and_then(|v| v.as_l().ok())
            .map(|l| l.iter().filter_map(|v| v.as_s().ok().cloned()).collect())
            .unwrap_or_default(),
        generation: get_s(item, "generation"),
        replace_sent_at: get_s(item, "replace_sent_at"),
        replaced_at: get_s(item, "replaced_at"),
        rows_removed: get_n(item, "rows_removed"),
    }
}

/// The history's name placeholder in the expressions that cap it.
const HISTORY: &str = "#history";

/// Oldest history entries one update drops at most (keeps the expression far below DynamoDB's
/// 4 KB limit).
const HISTORY_TRIM_BATCH: usize = 100;

/// Attempts of one write whose history needs room: enough for a history of 2,000 entries.
const HISTORY_ROUNDS: usize = 25;

/// `REMOVE` of a history's `drop` oldest entries (indexes refer to the list before the update).
fn trim_expression(drop: usize) -> String {
    let paths: Vec<String> = (0..drop).map(|i| format!("{HISTORY}[{i}]")).collect();
    format!("REMOVE {}", paths.join(", "))
}

fn history_len(item: &Item) -> usize {
    item.get("history")
        .and_then(|v| v.as_l().ok())
        .map_or(0, Vec::len)
}

/// A conditional update, as [`ManifestStore::update_capped`] sends it.
struct Update {
    operation: &'static str,
    expression: String,
    condition: String,
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
    /// It appends one history entry: its condition also requires room for it.
    appends_history: bool,
    /// Return the item as it is after the update.
    return_new: bool,
}

/// How a conditional update ended.
enum Updated {
    /// Applied; the item's attributes after it (empty unless asked).
    Applied(Item),
    /// Its condition refused it (not for want of room in the history).
    Refused,
}

/// A value [`ManifestStore::annotate`] writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Annotation {
    Text(String),
    Number(i64),
    Remove,
}

/// Attributes [`ManifestStore::annotate`] may write.
const ANNOTATIONS: [&str; 4] = [
    "generation",
    "replace_sent_at",
    "replaced_at",
    "rows_removed",
];

/// Builds update and condition expressions with placeholders for every name and value, so no
/// attribute name collides with DynamoDB's reserved words and no value is spliced in.
#[derive(Default)]
struct Expr {
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
    sets: Vec<String>,
    removes: Vec<String>,
}

impl Expr {
    fn name(&mut self, attr: &str) -> String {
        let placeholder = format!("#{attr}");
        self.names.insert(placeholder.clone(), attr.to_owned());
        placeholder
    }

    fn value(&mut self, v: AttributeValue) -> String {
        let placeholder = format!(":v{}", self.values.len());
        self.values.insert(placeholder.clone(), v);
        placeholder
    }

    fn set(&mut self, attr: &str, v: AttributeValue) {
        let name = self.name(attr);
        let value = self.value(v);
        self.sets.push(format!("{name} = {value}"));
    }

    fn set_if_absent(&mut self, attr: &str, v: AttributeValue) {
        let name = self.name(attr);
        let value = self.value(v);
        self.sets
            .push(format!("{name} = if_not_exists({name}, {value})"));
    }

    fn remove(&mut self, attr: &str) {
        let name = self.name(attr);
        self.removes.push(name);
    }

    fn update_expression(&self) -> String {
        let mut e = format!("SET {}", self.sets.join(", "));
        if !self.removes.is_empty() {
            e.push_str(&format!(" REMOVE {}", self.removes.join(", ")));
        }
        e
    }

    /// The whole condition of a transition: the statuses it may start from, plus the
    /// expectations the caller set.
    fn condition(&mut self, t: Transition, changes: &Changes) -> String {
        let mut condition = self.transition_condition(t);
        if let Some(attempt) = changes.expect_attempt {
            let a = self.name("attempts");
            let v = self.value(n(i64::from(attempt)));
            condition = format!("({condition}) AND {a} = {v}");
            // The claim being failed is this worker's: an attempt of the same number made by
            // another worker after an operator's retry is not overwritten.
            if let Some(w) = &changes.worker {
                let name = self.name("worker");
                let v = self.value(s(w));
                condition = format!("{condition} AND {name} = {v}");
            }
        }
        if let Some(at) = &changes.expect_updated_at {
            let u = self.name("updated_at");
            let v = self.value(s(at));
            condition = format!("({condition}) AND {u} = {v}");
        }
        condition
    }

    fn transition_condition(&mut self, t: Transition) -> String {
        let allowed = t.allowed_from();
        let mut parts = Vec::new();
        if allowed.contains(&None) {
            let k = self.name("key");
            parts.push(format!("attribute_not_exists({k})"));
        }
        let statuses: Vec<Status> = allowed.iter().flatten().copied().collect();
        if !statuses.is_empty() {
            let st = self.name("status");
            let values: Vec<String> = statuses
                .iter()
                .map(|s| self.value(AttributeValue::S(s.as_str().to_owned())))
                .collect();
            parts.push(format!("{st} IN ({})", values.join(", ")));
        }
        parts.join(" OR ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_condition_admits_missing_items_and_listed_statuses() {
        let mut x = Expr::default();
        let c = x.transition_condition(Transition::Claim);
        assert!(
            c.starts_with("attribute_not_exists(#key) OR #status IN ("),
            "{c}"
        );
        let statuses: Vec<&str> = x
            .values
            .values()
            .filter_map(|v| v.as_s().ok())
            .map(String::as_str)
            .collect();
        for s in ["discovered", "queued", "failed", "loading"] {
            assert!(statuses.contains(&s), "{s}");
        }
        assert!(!statuses.contains(&"loaded"));
        assert_eq!(x.names["#key"], "key");
    }

    #[test]
    fn trimming_removes_the_oldest_entries_by_index() {
        assert_eq!(trim_expression(1), "REMOVE #history[0]");
        assert_eq!(
            trim_expression(3),
            "REMOVE #history[0], #history[1], #history[2]"
        );
        assert!(trim_expression(HISTORY_TRIM_BATCH).len() < 2000);
        let item = HashMap::from([(
            "history".to_owned(),
            AttributeValue::L(vec![s("a"), s("b")]),
        )]);
        assert_eq!(history_len(&item), 2);
        assert_eq!(history_len(&HashMap::new()), 0);
    }

    #[test]
    fn fail_condition_never_admits_a_missing_item() {
        let mut x = Expr::default();
        let c = x.transition_condition(Transition::Fail);
        assert_eq!(c, "#status IN (:v0)");
    }

    #[test]
    fn failing_a_claim_needs_its_attempt_and_its_worker() {
        let mut x = Expr::default();
        let changes = Changes {
            worker: Some("w1".into()),
            expect_attempt: Some(2),
            ..Changes::default()
        };
        let c = x.condition(Transition::Fail, &changes);
        assert_eq!(
            c,
            "(#status IN (:v0)) AND #attempts = :v1 AND #worker = :v2"
        );
        assert_eq!(x.values[":v2"].as_s().unwrap(), "w1");
    }

    #[test]
    fn handing_back_needs_the_claims_attempt_and_worker() {
        let mut x = Expr::default();
        let changes = Changes {
            worker: Some("w1".into()),
            expect_attempt: Some(3),
            ..Changes::default()
        };
        let c = x.condition(Transition::HandBack, &changes);
        assert_eq!(
            c,
            "(#status IN (:v0)) AND #attempts = :v1 AND #worker = :v2"
        );
        assert_eq!(x.values[":v0"].as_s().unwrap(), "loading");
    }

    #[test]
    fn operator_moves_can_require_the_item_unchanged() {
        let mut x = Expr::default();
        let changes = Changes {
            expect_updated_at: Some("2024-10-29T11:00:00.000Z".into()),
            ..Changes::default()
        };
        let c = x.condition(Transition::Reload, &changes);
        assert_eq!(c, "(#status IN (:v0)) AND #updated_at = :v1");
        assert_eq!(x.values[":v0"].as_s().unwrap(), "loaded");
        // no expectation: only the statuses
        let mut y = Expr::default();
        assert_eq!(
            y.condition(Transition::Reload, &Changes::default()),
            "#status IN (:v0)"
        );
    }

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

    #[test]
    fn operator_attributes_round_trip() {
        let mut item = base_item(&NewFile {
            bucket: "b".into(),
            key: "k".into(),
            etag: "e".into(),
            size: 1,
            last_modified: String::new(),
            table: "s.t".into(),
            kind: "cdc".into(),
        });
        item.insert("attempts_before".into(), n(5));
        item.insert("retries".into(), n(1));
        item.insert("operator".into(), s("alice"));
        item.insert("operator_action".into(), s("skip"));
        item.insert("operator_reason".into(), s("vendor resent it"));
        item.insert("operator_at".into(), s("2024-10-29T11:00:00.000Z"));
        let parsed = parse_item(&item);
        assert_eq!((parsed.attempts_before, parsed.retries), (5, 1));
        let op = parsed.operator.unwrap();
        assert_eq!(
            (op.action.as_str(), op.who.as_str(), op.reason.as_deref()),
            ("skip", "alice", Some("vendor resent it"))
        );
    }

    #[test]
    fn update_expression_has_set_and_remove() {
        let mut x = Expr::default();
        x.set("status", s("loaded"));
        x.remove("open");
        x.set_if_absent("size", n(3));
        assert_eq!(
            x.update_expression(),
            "SET #status = :v0, #size = if_not_exists(#size, :v1) REMOVE #open"
        );
    }

    #[test]
    fn items_round_trip_through_attributes() {
        let file = NewFile {
            bucket: "b".into(),
            key: "k".into(),
            etag: "e".into(),
            size: 7,
            last_modified: "2024-01-01T00:00:00.000Z".into(),
            table: "s.t".into(),
            kind: "cdc".into(),
        };
        let mut item = base_item(&file);
        item.insert("status".into(), s("failed"));
        item.insert("attempts".into(), n(2));
        item.insert("error".into(), s("boom"));
        item.insert("error_class".into(), s("unknown_table"));
        item.insert("error_permanent".into(), AttributeValue::Bool(true));
        item.insert("error_line".into(), n(9));
        item.insert("rows_read".into(), n(5));
        let parsed = parse_item(&item);
        assert_eq!(parsed.key, "k");
        assert_eq!(parsed.size, 7);
        assert_eq!(parsed.status, Some(Status::Failed));
        assert_eq!(parsed.attempts, 2);
        let e = parsed.error.unwrap();
        assert!(e.permanent);
        assert_eq!(e.line, Some(9));
        assert_eq!(e.record, None);
        assert_eq!(parsed.rows.unwrap().read, 5);
    }
}
