//! Manifest items as DynamoDB attributes: the model's values to attributes, and items read back
//! into [`ManifestItem`]. Pure.

use crate::manifest::effect::Value;
use crate::manifest::{FileError, ManifestItem, OperatorAction, PhaseTimings, RowCounts, Status};
use aws_sdk_dynamodb::types::AttributeValue;
use std::collections::HashMap;

pub(super) type Item = HashMap<String, AttributeValue>;

/// A model value as an attribute.
pub(super) fn attribute(v: &Value) -> AttributeValue {
    match v {
        Value::S(v) => AttributeValue::S(v.clone()),
        Value::N(v) => AttributeValue::N(v.to_string()),
        Value::Bool(v) => AttributeValue::Bool(*v),
    }
}

pub(super) fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

pub(super) fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(super) fn get_s(item: &Item, attr: &str) -> Option<String> {
    item.get(attr).and_then(|v| v.as_s().ok()).cloned()
}

pub(super) fn get_n(item: &Item, attr: &str) -> Option<i64> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::effect::base_attributes;
    use crate::manifest::NewFile;

    /// The attributes of a new item ([`base_attributes`]).
    fn base_item(file: &NewFile) -> Item {
        base_attributes(file)
            .into_iter()
            .map(|(attr, v)| (attr.to_owned(), attribute(&v)))
            .collect()
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
