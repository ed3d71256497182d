//! The S3 events queue as `status` shows it: its depth (and its dead-letter queue's), and when
//! SQS received the newest event the coordinator read (recorded in the manifest table by the
//! events loop, [`crate::events`]). Read only when `SLUICE_EVENTS_QUEUE_URL` is set.

use super::dlq::{self, QueueDepths};
use super::{human_duration, Ops};
use crate::error::CoordinatorError;
use serde::Serialize;
use sluice_common::config::SourceLocation;
use sluice_common::timefmt;
use time::OffsetDateTime;

/// The events queue at a glance.
#[derive(Debug, Clone, Serialize)]
pub struct EventsStatus {
    pub queue: QueueDepths,
    /// When SQS received the newest event the coordinator read (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub newest_event_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub newest_event_age_secs: Option<u64>,
}

/// The events queue's figures, when events are on.
pub async fn read(
    ops: &Ops,
    source: &SourceLocation,
    now: OffsetDateTime,
) -> Result<Option<EventsStatus>, CoordinatorError> {
    let Some(url) = &ops.events_queue_url else {
        return Ok(None);
    };
    let queue = dlq::depths(&ops.aws.sqs, url).await?;
    let newest_event_at = ops
        .store
        .newest_event(&source.bucket, &source.prefix)
        .await?;
    let newest_event_age_secs = newest_event_at
        .as_deref()
        .and_then(|t| timefmt::age(t, now))
        .map(|a| a.whole_seconds().max(0) as u64);
    Ok(Some(EventsStatus {
        queue,
        newest_event_at,
        newest_event_age_secs,
    }))
}

/// The line of `status`, with its newline; nothing when events are off.
pub fn lines(e: Option<&EventsStatus>) -> String {
    e.map(|e| format_line(e) + "\n").unwrap_or_default()
}

/// One line for a terminal.
pub fn format_line(e: &EventsStatus) -> String {
    let q = &e.queue;
    let newest = match e.newest_event_age_secs {
        Some(age) => format!("newest event received {} ago", human_duration(age)),
        None => "no event received yet (is EventBridge on for the bucket?)".to_owned(),
    };
    let dlq = if q.dlq_visible + q.dlq_in_flight > 0 {
        format!(
            "{} unparseable in its dead-letter queue",
            q.dlq_visible + q.dlq_in_flight
        )
    } else {
        "its dead-letter queue empty".to_owned()
    };
    format!(
        "S3 events: {} waiting, {} in flight, {newest}, {dlq}",
        q.visible, q.in_flight
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_says_depth_age_and_dead_letters() {
        let mut e = EventsStatus {
            queue: QueueDepths {
                visible: 3,
                in_flight: 1,
                ..QueueDepths::default()
            },
            newest_event_at: Some("2024-10-29T11:00:00.000Z".into()),
            newest_event_age_secs: Some(4),
        };
        let line = format_line(&e);
        assert!(
            line.starts_with("S3 events: 3 waiting, 1 in flight, newest event received 4"),
            "{line}"
        );
        assert!(line.ends_with("its dead-letter queue empty"), "{line}");
        e.newest_event_age_secs = None;
        e.queue.dlq_visible = 2;
        let line = format_line(&e);
        assert!(line.contains("no event received yet"), "{line}");
        assert!(line.contains("2 unparseable"), "{line}");
    }
}
