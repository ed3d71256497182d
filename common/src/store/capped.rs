//! The one conditional update every write that appends a history entry goes through.
//!
//! Invariant: a history never holds more than [`HISTORY_CAP`] entries. The update is conditioned
//! on the history having room; refused on a full one, the oldest entries are dropped by an update
//! conditioned on the history's length as read (so an entry a concurrent writer appended
//! meanwhile is never the one dropped), and it is sent again.

use super::item::{n, s, Item};
use super::ManifestStore;
use crate::error::{Error, ItemRef};
use crate::manifest::{history_excess, HISTORY_CAP};
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use std::collections::HashMap;

impl ManifestStore {
    /// Sends one conditional update. One that appends a history entry also requires room for
    /// it (fewer than [`HISTORY_CAP`] entries); refused on a full history, it drops the oldest
    /// entries ([`ManifestStore::drop_oldest_history`]) and is sent again. Refused otherwise, it
    /// is [`Updated::Refused`].
    pub(super) async fn update_capped(
        &self,
        key: &str,
        etag: &str,
        u: Update,
    ) -> Result<Updated, Error> {
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
pub(super) struct Update {
    pub(super) operation: &'static str,
    pub(super) expression: String,
    pub(super) condition: String,
    pub(super) names: HashMap<String, String>,
    pub(super) values: HashMap<String, AttributeValue>,
    /// It appends one history entry: its condition also requires room for it.
    pub(super) appends_history: bool,
    /// Return the item as it is after the update.
    pub(super) return_new: bool,
}

/// How a conditional update ended.
pub(super) enum Updated {
    /// Applied; the item's attributes after it (empty unless asked).
    Applied(Item),
    /// Its condition refused it (not for want of room in the history).
    Refused,
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
