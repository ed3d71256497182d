//! The manifest in DynamoDB: the thin adapter between the manifest model ([`crate::manifest`])
//! and the table. What a move writes, and under which condition, is decided by the pure
//! [`crate::manifest::effect`]; this folder only renders that as expressions and sends it. It must
//! not decide a move's attributes or conditions itself, nor hold any state but the client.
//!
//! # Layout
//!
//! - `mod.rs`: [`ManifestStore`] and its writes (discovery, transitions, heartbeats, notes);
//! - `capped.rs`: the conditional update that keeps a history within its cap;
//! - `expr.rs`: the expression builder (placeholders for every name and value);
//! - `item.rs`: DynamoDB attributes to and from the model;
//! - `queries.rs`: lookups and index queries;
//! - `table.rs`: table and index creation;
//! - [`checkpoints`]: the listing checkpoints' items.
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
//! Invariant: an item's history never holds more than [`crate::manifest::HISTORY_CAP`] entries.
//! Every write that appends one (a transition, an annotation with a note) is conditioned on the
//! history having room; when it is full, the oldest entries are removed by an update conditioned
//! on the history's length as read (so an entry a concurrent writer appended meanwhile is never
//! the one dropped), and the write is sent again (`capped.rs`).
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

mod capped;
pub mod checkpoints;
mod events;
mod expr;
mod item;
mod queries;
mod table;

use crate::error::{sdk_error_is_transient, sdk_error_text, Error, ItemRef};
use crate::manifest::effect::{self, note_entry};
use crate::manifest::{Changes, FileError, ManifestItem, NewFile, Status, Transition};
use crate::timefmt;
use aws_sdk_dynamodb::types::AttributeValue;
use capped::{Update, Updated};
use expr::Expr;
use item::{attribute, n, parse_item, s};
use std::collections::HashMap;

pub const OPEN_INDEX: &str = "open-index";
pub const TABLE_INDEX: &str = "table-index";

/// Calls a pass keeps in flight at once for work that is one call per file or per batch
/// (lookups, new items, enqueue marks): a pass over many new files is not one round trip at a
/// time.
pub const CONCURRENT_CALLS: usize = 16;

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

    /// The answer to a conditional write: Ok(true) when applied, Ok(false) when its condition
    /// refused it (not an error: another writer got there first, or the item moved on).
    fn applied<O, E>(
        &self,
        operation: &'static str,
        item: ItemRef,
        result: Result<O, aws_sdk_dynamodb::error::SdkError<E>>,
    ) -> Result<bool, Error>
    where
        E: ConditionFailed
            + aws_sdk_dynamodb::error::ProvideErrorMetadata
            + std::error::Error
            + 'static,
    {
        match result {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(ConditionFailed::condition_failed) =>
            {
                Ok(false)
            }
            Err(e) => Err(self.err(operation, item, &e)),
        }
    }

    /// Writes a newly discovered object version. Ok(false) when it already exists (another
    /// coordinator won the race), which is not an error.
    pub async fn record_discovered(&self, file: &NewFile) -> Result<bool, Error> {
        self.record_new(file, effect::discovered(file, &timefmt::now()))
            .await
    }

    /// Records a new object version as `queued` at once, as [`Self::record_discovered`] does
    /// `discovered`: for a file whose message is sent next ([`effect::discovered_and_queued`]).
    pub async fn record_queued(&self, file: &NewFile) -> Result<bool, Error> {
        self.record_new(file, effect::discovered_and_queued(file, &timefmt::now()))
            .await
    }

    async fn record_new(&self, file: &NewFile, new: effect::NewItem) -> Result<bool, Error> {
        let mut item: HashMap<String, AttributeValue> = new
            .attributes
            .iter()
            .map(|(attr, v)| ((*attr).to_owned(), attribute(v)))
            .collect();
        let history = new.history.iter().map(|h| s(h)).collect();
        item.insert("history".into(), AttributeValue::L(history));
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#k)")
            .expression_attribute_names("#k", "key")
            .send()
            .await;
        self.applied("put_item", ItemRef::new(&file.key, &file.etag), result)
    }

    /// Sets (`Some`) or removes (`None`) attributes of an existing item without changing its
    /// status, appending `note` to its history: the generation bookkeeping (`generation`,
    /// `replace_sent_at`, `replaced_at`, `rows_removed`), and notes alone (a message not sent,
    /// an event missed).
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
            x.append_history(&note_entry(note, &now));
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

    /// Applies a transition as one conditional update: its effect ([`effect::effect`]) rendered
    /// as an `UpdateItem`.
    pub async fn transition(
        &self,
        key: &str,
        etag: &str,
        transition: Transition,
        changes: Changes,
    ) -> Result<Moved, Error> {
        let now = timefmt::now();
        let effect = effect::effect(transition, &changes, &now);
        let mut x = Expr::default();
        x.update(&effect.update);
        let condition = x.render_condition(&effect.condition);
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
        self.applied("update_item", ItemRef::new(key, etag), result)
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
        self.applied("update_item", ItemRef::new(key, etag), result)
    }
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

/// A DynamoDB write error that can say its condition refused the write.
trait ConditionFailed {
    fn condition_failed(&self) -> bool;
}

impl ConditionFailed for aws_sdk_dynamodb::operation::put_item::PutItemError {
    fn condition_failed(&self) -> bool {
        self.is_conditional_check_failed_exception()
    }
}

impl ConditionFailed for aws_sdk_dynamodb::operation::update_item::UpdateItemError {
    fn condition_failed(&self) -> bool {
        self.is_conditional_check_failed_exception()
    }
}
