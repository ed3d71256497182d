//! The work queue's figures and its dead-letter queue: depths for `status`, and `retry --dlq`,
//! which moves dead-lettered messages back to the work queue.
//!
//! The dead-letter queue is found from the work queue's `RedrivePolicy` (its
//! `deadLetterTargetArn`), as SQS itself knows it; nothing is configured twice.
//!
//! Moving a message back: its manifest item (if any, and not `loaded`) goes to `queued` first
//! (an operator retry: a fresh round of attempts), then the message is sent to the work queue,
//! then deleted from the dead-letter queue. A crash in between leaves a duplicate message,
//! which the ledger makes harmless. A message that is not a Sluice file message stays in the
//! dead-letter queue and is reported: sending it back would only bring it here again. A
//! table's replace message (`"kind": "replace"`, full-load generations) goes back as it is.

use super::{Ops, Scope};
use crate::error::CoordinatorError;
use aws_sdk_sqs::types::{Message, QueueAttributeName as A};
use serde::Serialize;
use sluice_common::manifest::{Changes, Operator};
use sluice_common::manifest::{Status, Transition};
use sluice_common::message::FileMessage;
use sluice_common::store::Moved;
use std::collections::HashMap;

/// Approximate message counts, as SQS reports them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct QueueDepths {
    /// Waiting to be received.
    pub visible: i64,
    /// Received and not yet deleted (being loaded, or waiting out a back-off).
    pub in_flight: i64,
    /// Sent with a delay not yet over.
    pub delayed: i64,
    /// The dead-letter queue, when the queue has a redrive policy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dlq_url: Option<String>,
    pub dlq_visible: i64,
    pub dlq_in_flight: i64,
}

fn queue_err(operation: &'static str, queue: &str, message: String) -> CoordinatorError {
    CoordinatorError::Queue {
        operation,
        queue: queue.to_owned(),
        message,
    }
}

async fn attributes(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    names: &[A],
) -> Result<HashMap<A, String>, CoordinatorError> {
    let out = sqs
        .get_queue_attributes()
        .queue_url(url)
        .set_attribute_names(Some(names.to_vec()))
        .send()
        .await
        .map_err(|e| {
            queue_err(
                "get_queue_attributes",
                url,
                sluice_common::error::sdk_error_text(&e),
            )
        })?;
    Ok(out.attributes().cloned().unwrap_or_default())
}

/// The dead-letter queue's URL from the queue's redrive policy; None without one.
pub async fn dlq_url(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
) -> Result<Option<String>, CoordinatorError> {
    let attrs = attributes(sqs, queue_url, &[A::RedrivePolicy]).await?;
    let Some(policy) = attrs.get(&A::RedrivePolicy) else {
        return Ok(None);
    };
    let Some((account, name)) = dlq_of_policy(policy) else {
        return Ok(None);
    };
    let out = sqs
        .get_queue_url()
        .queue_name(&name)
        .set_queue_owner_aws_account_id(account)
        .send()
        .await
        .map_err(|e| {
            queue_err(
                "get_queue_url",
                &name,
                sluice_common::error::sdk_error_text(&e),
            )
        })?;
    Ok(out.queue_url().map(str::to_owned))
}

/// `(account, queue name)` of a redrive policy's `deadLetterTargetArn`
/// (`arn:aws:sqs:region:account:name`). Pure.
pub fn dlq_of_policy(policy: &str) -> Option<(Option<String>, String)> {
    let v: serde_json::Value = serde_json::from_str(policy).ok()?;
    let arn = v.get("deadLetterTargetArn")?.as_str()?;
    let parts: Vec<&str> = arn.split(':').collect();
    if parts.len() != 6 || parts[0] != "arn" || parts[5].is_empty() {
        return None;
    }
    let account = (!parts[4].is_empty()).then(|| parts[4].to_owned());
    Some((account, parts[5].to_owned()))
}

/// The queue's and its dead-letter queue's depths.
pub async fn depths(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
) -> Result<QueueDepths, CoordinatorError> {
    let names = [
        A::ApproximateNumberOfMessages,
        A::ApproximateNumberOfMessagesNotVisible,
        A::ApproximateNumberOfMessagesDelayed,
    ];
    let get = |attrs: &HashMap<A, String>, a: A| -> i64 {
        attrs.get(&a).and_then(|v| v.parse().ok()).unwrap_or(0)
    };
    let q = attributes(sqs, queue_url, &names).await?;
    let mut d = QueueDepths {
        visible: get(&q, A::ApproximateNumberOfMessages),
        in_flight: get(&q, A::ApproximateNumberOfMessagesNotVisible),
        delayed: get(&q, A::ApproximateNumberOfMessagesDelayed),
        ..QueueDepths::default()
    };
    if let Some(url) = dlq_url(sqs, queue_url).await? {
        let dl = attributes(sqs, &url, &names).await?;
        d.dlq_visible = get(&dl, A::ApproximateNumberOfMessages);
        d.dlq_in_flight = get(&dl, A::ApproximateNumberOfMessagesNotVisible);
        d.dlq_url = Some(url);
    }
    Ok(d)
}

/// One dead-lettered message, as `retry --dlq` sees it.
#[derive(Debug, Clone, Serialize)]
pub struct DlqEntry {
    pub message_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// The manifest's status of the file when the message was read (None: no item).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    /// What was (or would be) done: `move`, `move_replace` (a table's replace message, moved
    /// as it is), `drop_loaded` (the file is loaded: the message is deleted),
    /// `keep_unreadable`, `keep_out_of_scope`.
    pub action: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// What `retry --dlq` did (or would do).
#[derive(Debug, Clone, Default, Serialize)]
pub struct DlqResult {
    pub dlq_url: String,
    pub applied: bool,
    pub entries: Vec<DlqEntry>,
    pub moved: usize,
    pub dropped_loaded: usize,
    pub kept: usize,
    pub failed: usize,
}

/// Reads every message of the dead-letter queue and, with `apply`, moves the Sluice file
/// messages in scope back to the work queue. Without `apply` the messages are only looked at
/// and made visible again at once.
pub async fn redrive(
    ops: &Ops,
    scope: &Scope,
    who: &str,
    apply: bool,
) -> Result<DlqResult, CoordinatorError> {
    let queue_url = ops.queue_url("retry --dlq")?.to_owned();
    let sqs = &ops.aws.sqs;
    let Some(dlq) = dlq_url(sqs, &queue_url).await? else {
        return Err(CoordinatorError::Usage(format!(
            "queue {queue_url} has no redrive policy, hence no dead-letter queue"
        )));
    };
    let mut result = DlqResult {
        dlq_url: dlq.clone(),
        applied: apply,
        ..DlqResult::default()
    };
    let run = Redrive {
        ops,
        queue_url: &queue_url,
        dlq: &dlq,
        scope,
        who,
        apply,
    };
    // Receipts of messages left in the DLQ, made visible again at the end (not at once, or the
    // loop would read them again).
    let mut hand_back: Vec<String> = Vec::new();
    let mut empty_receives = 0;
    while empty_receives < 2 {
        let out = sqs
            .receive_message()
            .queue_url(&dlq)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .visibility_timeout(120)
            .send()
            .await
            .map_err(|e| {
                queue_err(
                    "receive_message",
                    &dlq,
                    sluice_common::error::sdk_error_text(&e),
                )
            })?;
        let messages = out.messages.unwrap_or_default();
        if messages.is_empty() {
            empty_receives += 1;
            continue;
        }
        empty_receives = 0;
        for m in messages {
            let receipt = m.receipt_handle().unwrap_or_default().to_owned();
            let entry = run.handle(&m, &mut result).await;
            if !apply || entry.action.starts_with("keep") || entry.problem.is_some() {
                hand_back.push(receipt);
            }
            result.entries.push(entry);
        }
    }
    for receipt in hand_back {
        // Best effort: otherwise the message becomes visible when its timeout ends.
        let _ = sqs
            .change_message_visibility()
            .queue_url(&dlq)
            .receipt_handle(receipt)
            .visibility_timeout(0)
            .send()
            .await;
    }
    Ok(result)
}

/// One `retry --dlq` run: where messages go, who moves them, and the tally so far.
struct Redrive<'a> {
    ops: &'a Ops,
    queue_url: &'a str,
    dlq: &'a str,
    scope: &'a Scope,
    who: &'a str,
    apply: bool,
}

impl Redrive<'_> {
    /// Decides what one dead-lettered message needs and, with `apply`, does it.
    async fn handle(&self, m: &Message, result: &mut DlqResult) -> DlqEntry {
        let message_id = m.message_id().unwrap_or_default().to_owned();
        let body = m.body().unwrap_or_default();
        let mut entry = DlqEntry {
            message_id: message_id.clone(),
            key: None,
            etag: None,
            status: None,
            action: "move",
            problem: None,
        };
        if let Some(replace) = replace_message(body) {
            // A table's "replace" message (full-load generations): it goes back as it is; its
            // outcome is recorded on its first file's item, so no manifest item moves.
            entry.key = Some(replace.head_key.clone());
            entry.etag = Some(replace.head_etag.clone());
            entry.action = "move_replace";
            if !self.scope.holds(&replace.head_key, &replace.table) {
                entry.action = "keep_out_of_scope";
                result.kept += 1;
                return entry;
            }
            if !self.apply {
                result.moved += 1;
                return entry;
            }
            return self.send_back(m, body, entry, result).await;
        }
        let msg = match FileMessage::from_body(&message_id, body) {
            Ok(msg) => msg,
            Err(e) => {
                entry.action = "keep_unreadable";
                entry.problem = Some(e.to_string());
                result.kept += 1;
                return entry;
            }
        };
        entry.key = Some(msg.key.clone());
        entry.etag = Some(msg.etag.clone());
        if !self.scope.holds(&msg.key, &msg.source_table()) {
            entry.action = "keep_out_of_scope";
            result.kept += 1;
            return entry;
        }
        let item = match self.ops.store.get(&msg.key, &msg.etag).await {
            Ok(item) => item,
            Err(e) => {
                entry.problem = Some(e.to_string());
                result.failed += 1;
                return entry;
            }
        };
        entry.status = item.as_ref().and_then(|i| i.status);
        if entry.status == Some(Status::Loaded) {
            entry.action = "drop_loaded";
        }
        if !self.apply {
            match entry.action {
                "drop_loaded" => result.dropped_loaded += 1,
                _ => result.moved += 1,
            }
            return entry;
        }
        if entry.action == "move" {
            if let Err(problem) = self.move_file(&msg, item.is_some(), &mut entry).await {
                entry.problem = Some(problem.to_string());
                result.failed += 1;
                return entry;
            }
        }
        self.delete(m, entry, result).await
    }

    /// A file message's move: its manifest item (if any) to `queued` as an operator retry,
    /// then the message to the work queue. A file loaded in between needs no message
    /// (`drop_loaded`).
    async fn move_file(
        &self,
        msg: &FileMessage,
        has_item: bool,
        entry: &mut DlqEntry,
    ) -> Result<(), CoordinatorError> {
        let store = &self.ops.store;
        if has_item {
            let changes = Changes {
                operator: Some(Operator {
                    who: self.who.to_owned(),
                    reason: Some("moved back from the dead-letter queue".to_owned()),
                }),
                ..Changes::default()
            };
            match store
                .transition(&msg.key, &msg.etag, Transition::Retry, changes)
                .await
            {
                Ok(Moved::Applied(_)) => {}
                Ok(Moved::Refused(now)) => {
                    // Loaded in between: the message is not needed any more.
                    if now.and_then(|i| i.status) == Some(Status::Loaded) {
                        entry.action = "drop_loaded";
                        return Ok(());
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        let sent = self
            .ops
            .aws
            .sqs
            .send_message()
            .queue_url(self.queue_url)
            .message_body(msg.to_body())
            .send()
            .await
            .map_err(|e| {
                queue_err(
                    "send_message",
                    self.queue_url,
                    sluice_common::error::sdk_error_text(&e),
                )
            })?;
        if let Some(id) = sent.message_id() {
            let _ = store.record_message_id(&msg.key, &msg.etag, id).await;
        }
        Ok(())
    }

    /// Sends a message's body back to the work queue as it is, then deletes it from the DLQ.
    async fn send_back(
        &self,
        m: &Message,
        body: &str,
        mut entry: DlqEntry,
        result: &mut DlqResult,
    ) -> DlqEntry {
        let sent = self
            .ops
            .aws
            .sqs
            .send_message()
            .queue_url(self.queue_url)
            .message_body(body)
            .send()
            .await;
        if let Err(e) = sent {
            entry.problem = Some(sluice_common::error::sdk_error_text(&e));
            result.failed += 1;
            return entry;
        }
        self.delete(m, entry, result).await
    }

    /// Deletes a handled message from the dead-letter queue and counts the entry.
    async fn delete(&self, m: &Message, mut entry: DlqEntry, result: &mut DlqResult) -> DlqEntry {
        let deleted = self
            .ops
            .aws
            .sqs
            .delete_message()
            .queue_url(self.dlq)
            .receipt_handle(m.receipt_handle().unwrap_or_default())
            .send()
            .await;
        match deleted {
            Ok(_) => match entry.action {
                "drop_loaded" => result.dropped_loaded += 1,
                _ => result.moved += 1,
            },
            Err(e) => {
                // Sent but not deleted: a duplicate, harmless (the ledger keeps the effect
                // single).
                entry.problem = Some(format!(
                    "sent, but not deleted from the dead-letter queue: {}",
                    sluice_common::error::sdk_error_text(&e)
                ));
                result.failed += 1;
            }
        }
        entry
    }
}

/// The parts of a table's replace message (`"kind": "replace"`) that `retry --dlq` needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplaceRef {
    /// `schema.table` as in the key.
    pub table: String,
    pub head_key: String,
    pub head_etag: String,
}

/// Recognises a replace message (the work queue's other message kind) without interpreting
/// it further; None for anything else. Pure.
pub fn replace_message(body: &str) -> Option<ReplaceRef> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    if v.get("kind")?.as_str()? != "replace" {
        return None;
    }
    let text = |f: &str| v.get(f).and_then(|x| x.as_str()).map(str::to_owned);
    let head_key = text("head_key").filter(|k| !k.is_empty())?;
    Some(ReplaceRef {
        table: format!("{}.{}", text("schema")?, text("table")?),
        head_key,
        head_etag: text("head_etag").unwrap_or_default(),
    })
}

pub fn format_redrive(r: &DlqResult) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "dead-letter queue {}", r.dlq_url);
    for e in &r.entries {
        let _ = writeln!(
            out,
            "  {:<18} {:<10} {} ({}){}",
            e.action,
            e.status.map(|s| s.as_str()).unwrap_or("-"),
            e.key.as_deref().unwrap_or("(not a sluice message)"),
            e.etag.as_deref().unwrap_or(&e.message_id),
            e.problem
                .as_deref()
                .map(|p| format!(": {p}"))
                .unwrap_or_default()
        );
    }
    let _ = writeln!(
        out,
        "{}{} moved back to the work queue, {} dropped (already loaded), {} kept in the dead-letter queue, {} failed",
        if r.applied { "" } else { "would be: " },
        r.moved,
        r.dropped_loaded,
        r.kept,
        r.failed
    );
    if !r.applied && (r.moved + r.dropped_loaded) > 0 {
        let _ = writeln!(out, "run again with --yes to do it");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_messages_are_recognised_and_nothing_else() {
        let body = r#"{"v":1,"kind":"replace","bucket":"lake","schema":"s","table":"t","folder":"dms/s/t/","generation":"g","start":"g","files":2,"head_key":"dms/s/t/LOAD00000001.csv","head_etag":"e"}"#;
        assert_eq!(
            replace_message(body),
            Some(ReplaceRef {
                table: "s.t".into(),
                head_key: "dms/s/t/LOAD00000001.csv".into(),
                head_etag: "e".into(),
            })
        );
        assert_eq!(replace_message(r#"{"v":1,"key":"k","etag":"e"}"#), None);
        assert_eq!(replace_message(r#"{"kind":"replace"}"#), None);
        assert_eq!(replace_message("garbage"), None);
    }

    #[test]
    fn the_dead_letter_queue_comes_from_the_redrive_policy() {
        let p = r#"{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:123456789012:work-dlq","maxReceiveCount":"10"}"#;
        assert_eq!(
            dlq_of_policy(p),
            Some((Some("123456789012".to_owned()), "work-dlq".to_owned()))
        );
        assert_eq!(dlq_of_policy("{}"), None);
        assert_eq!(dlq_of_policy("not json"), None);
        assert_eq!(
            dlq_of_policy(r#"{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:123"}"#),
            None
        );
    }
}
