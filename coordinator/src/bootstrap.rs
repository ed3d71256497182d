//! `bootstrap`: the manifest table (and, for local use, the queue with its dead-letter queue).
//! Idempotent: creating what exists is not an error.

use crate::error::CoordinatorError;
use aws_sdk_sqs::types::QueueAttributeName;
use sluice_common::store::ManifestStore;

/// Settings of a queue created by `bootstrap --create-queue`.
#[derive(Debug, Clone)]
pub struct QueueSpec {
    pub name: String,
    pub visibility_timeout_secs: u32,
    /// Receives before SQS moves a message to the dead-letter queue. Above the worker's attempt
    /// limit, so the manifest records `dead` before SQS gives up on the message.
    pub max_receive_count: u32,
}

/// Creates (or finds) the manifest table; returns whether it was created.
pub async fn manifest(store: &ManifestStore) -> Result<bool, CoordinatorError> {
    Ok(store.ensure_table().await?)
}

/// Creates (or finds) the queue and its dead-letter queue `<name>-dlq`; returns the queue URL.
pub async fn queue(
    sqs: &aws_sdk_sqs::Client,
    spec: &QueueSpec,
) -> Result<String, CoordinatorError> {
    let err = |operation: &'static str, queue: &str, e: String| CoordinatorError::Queue {
        operation,
        queue: queue.to_owned(),
        message: e,
    };
    let dlq_name = format!("{}-dlq", spec.name);
    let dlq = sqs
        .create_queue()
        .queue_name(&dlq_name)
        // 14 days, SQS's maximum: the DLQ keeps messages longer than the queue (4 days)
        .attributes(QueueAttributeName::MessageRetentionPeriod, "1209600")
        .send()
        .await
        .map_err(|e| {
            err(
                "create_queue",
                &dlq_name,
                sluice_common::error::sdk_error_text(&e),
            )
        })?;
    let dlq_url = dlq.queue_url().unwrap_or_default().to_owned();
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| {
            err(
                "get_queue_attributes",
                &dlq_name,
                sluice_common::error::sdk_error_text(&e),
            )
        })?;
    let dlq_arn = attrs
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn))
        .cloned()
        .unwrap_or_default();
    let redrive = serde_json::json!({
        "deadLetterTargetArn": dlq_arn,
        "maxReceiveCount": spec.max_receive_count.to_string(),
    });
    let q = sqs
        .create_queue()
        .queue_name(&spec.name)
        .attributes(
            QueueAttributeName::VisibilityTimeout,
            spec.visibility_timeout_secs.to_string(),
        )
        .attributes(QueueAttributeName::MessageRetentionPeriod, "345600")
        .attributes(QueueAttributeName::RedrivePolicy, redrive.to_string())
        .send()
        .await
        .map_err(|e| {
            err(
                "create_queue",
                &spec.name,
                sluice_common::error::sdk_error_text(&e),
            )
        })?;
    Ok(q.queue_url().unwrap_or_default().to_owned())
}
