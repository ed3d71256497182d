//! S3 event notifications: files found seconds after they land, not at the next listing pass.
//!
//! S3 `ObjectCreated` events reach an SQS queue of their own: through EventBridge (the rule's
//! target; the deployed path) or as a bucket notification (the `Records` shape); both are
//! read. [`poll`] long-polls that queue and hands every object under the source prefix to
//! [`crate::scan::admit`], the pass's own path for a new pair (manifest item first, conditional,
//! then the message, then the mark), so an event that repeats, arrives late or races a listing
//! pass enqueues its file once.
//!
//! Invariants:
//! - an event is deleted only after what it names is in the manifest (recorded by this call or
//!   found there), or once it is known to name nothing to load (another bucket, a key outside
//!   the prefix, a folder marker, an event other than `ObjectCreated`: dropped and counted);
//! - an event that cannot be parsed is never deleted: it is made visible again at once, and the
//!   queue's redrive policy moves it to the dead-letter queue after `maxReceiveCount` receives;
//! - when the manifest or the work queue fails, no event of the batch is deleted: SQS delivers
//!   them again after the visibility timeout;
//! - events are an accelerator, never the record: a lost event is found by the next listing.
//!
//! Keys from events are untrusted like listed keys: mapped once by [`Listed::new`].

use crate::error::CoordinatorError;
use crate::listing::Listed;
use crate::scan::{admit, ScanContext};
use serde::Serialize;
use serde_json::Value;
use sluice_common::config::SourceLocation;
use sluice_common::message::{bare_etag, FileMessage};
use sluice_common::metrics as m;
use sluice_common::timefmt;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// A file that a listing pass finds new although events are on counts as a missed event only
/// when it landed longer ago than this (its event may simply not be read yet).
pub const GRACE: Duration = Duration::from_secs(60);

/// The note on the item of a file a listing found although events are on; `skipped` shows it.
pub const MISSED_EVENT_NOTE: &str =
    "found by a listing pass although S3 events are on: its event was lost or late";

/// Notes and counts the files of `recorded` (new items a listing pass just wrote) that landed
/// more than `grace` ago ([`GRACE`]): with events on, their event was missed. Returns how
/// many. A failed note is logged, not an error: the file is recorded and enqueued all the same.
pub async fn note_missed(ctx: &ScanContext, recorded: &[FileMessage], grace: Duration) -> usize {
    let now = time::OffsetDateTime::now_utc();
    let grace = time::Duration::try_from(grace).unwrap_or(time::Duration::MAX);
    let mut missed = 0;
    for m in recorded {
        if timefmt::age(&m.last_modified, now).is_none_or(|age| age < grace) {
            continue;
        }
        missed += 1;
        warn!(bucket = %m.bucket, key = %m.key, etag = %m.etag, last_modified = %m.last_modified,
            "file found by a listing pass although S3 events are on: its event was lost or late");
        if let Err(e) = ctx
            .store
            .annotate(&m.key, &m.etag, &[], Some(MISSED_EVENT_NOTE))
            .await
        {
            warn!(key = %m.key, error = %e, "missed event not noted on the item");
        }
    }
    m::inc(&m::EVENTS, &["missed"], missed as u64);
    missed
}

/// One object an event says was created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventObject {
    pub bucket: String,
    /// Decoded for a bucket notification (which URL-encodes its keys); as written for an
    /// EventBridge event.
    pub key: String,
    /// For an EventBridge event whose key reads differently once URL-decoded (it holds `+` or
    /// `%XX`): the decoded reading. Which of the two S3 holds is asked of S3 ([`resolve`]):
    /// the key is taken from the event, never guessed.
    pub decoded: Option<String>,
    /// Bare ETag.
    pub etag: String,
    pub size: i64,
    /// RFC 3339, UTC: the event's time (S3 events carry no LastModified).
    pub time: String,
}

/// What an event message holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Objects created.
    Created(Vec<EventObject>),
    /// A well-formed event that names nothing to load (S3's test event, a deletion, ...).
    Other(&'static str),
}

/// Why an object of an event is not loaded from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    OtherBucket,
    OutsidePrefix,
    Folder,
    NotCreated,
}

impl Dropped {
    pub fn as_str(self) -> &'static str {
        match self {
            Dropped::OtherBucket => "other_bucket",
            Dropped::OutsidePrefix => "outside_prefix",
            Dropped::Folder => "folder",
            Dropped::NotCreated => "not_created",
        }
    }
}

/// Parses an event message body: an EventBridge event or a bucket notification. `Err` says
/// why the body is not an S3 event the coordinator can read.
pub fn parse(body: &str) -> Result<Event, String> {
    let v: Value = serde_json::from_str(body).map_err(|e| format!("not JSON: {e}"))?;
    if let Some(detail_type) = v.get("detail-type") {
        if v.get("source").and_then(Value::as_str) != Some("aws.s3") {
            return Err("an EventBridge event whose source is not aws.s3".into());
        }
        if detail_type.as_str() != Some("Object Created") {
            return Ok(Event::Other("not_created"));
        }
        let detail = v.get("detail").ok_or("EventBridge event without detail")?;
        let time = event_time(v.get("time"));
        let bucket = text(detail, &["bucket", "name"])?;
        let object = detail.get("object").ok_or("detail without object")?;
        return Ok(Event::Created(vec![object_of(
            object, bucket, time, false,
        )?]));
    }
    if v.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
        return Ok(Event::Other("test_event"));
    }
    let records = v
        .get("Records")
        .and_then(Value::as_array)
        .ok_or("neither an EventBridge event nor a bucket notification")?;
    let mut out = Vec::new();
    for r in records {
        if r.get("eventSource").and_then(Value::as_str) != Some("aws:s3") {
            return Err("a record whose eventSource is not aws:s3".into());
        }
        let name = r.get("eventName").and_then(Value::as_str).unwrap_or("");
        if !name.starts_with("ObjectCreated:") {
            continue;
        }
        let s3 = r.get("s3").ok_or("record without s3")?;
        let bucket = text(s3, &["bucket", "name"])?;
        let object = s3.get("object").ok_or("record without s3.object")?;
        out.push(object_of(
            object,
            bucket,
            event_time(r.get("eventTime")),
            true,
        )?);
    }
    if out.is_empty() {
        return Ok(Event::Other("not_created"));
    }
    Ok(Event::Created(out))
}

fn text(v: &Value, path: &[&str]) -> Result<String, String> {
    path.iter()
        .try_fold(v, |v, p| v.get(p))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| format!("no {}", path.join(".")))
}

fn object_of(
    o: &Value,
    bucket: String,
    time: String,
    encoded: bool,
) -> Result<EventObject, String> {
    let raw = text(o, &["key"])?;
    let (key, decoded) = if encoded {
        (url_decode(&raw)?, None)
    } else {
        let decoded = url_decode(&raw).ok().filter(|d| *d != raw);
        (raw, decoded)
    };
    // EventBridge writes `etag` (moto `eTag`); bucket notifications `eTag`.
    let etag = text(o, &["etag"]).or_else(|_| text(o, &["eTag"]))?;
    let size = o.get("size").and_then(Value::as_i64).unwrap_or(0);
    Ok(EventObject {
        bucket,
        key,
        decoded,
        etag: bare_etag(&etag),
        size,
        time,
    })
}

/// The event's time in the manifest's format; now when absent or unreadable.
fn event_time(v: Option<&Value>) -> String {
    v.and_then(Value::as_str)
        .and_then(|s| timefmt::parse(s).or_else(|| timefmt::parse(&format!("{s}Z"))))
        .map(timefmt::format)
        .unwrap_or_else(timefmt::now)
}

/// A bucket notification's key: `+` is a space, `%XX` a byte; the bytes must be UTF-8.
pub fn url_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = s
                    .get(i + 1..i + 3)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("bad percent-encoding in key {s:?}"))?;
                out.push(hex);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| format!("key {s:?} is not UTF-8 once decoded"))
}

/// The key an event names, where it can be read two ways ([`EventObject::decoded`]): the one
/// S3 lists with the event's ETag, as written first, then decoded. One `ListObjectsV2` call per
/// reading, only for such keys. When S3 holds neither (the object is gone), the key stays as
/// written: the file then fails as missing and the listing finds nothing, as for any object
/// deleted after its event. A listing that fails is an error: the event is asked again later
/// rather than recorded under a reading that may be wrong.
pub async fn resolve(ctx: &ScanContext, mut o: EventObject) -> Result<EventObject, String> {
    let Some(decoded) = o.decoded.take() else {
        return Ok(o);
    };
    // Only in the lake: the coordinator may list nothing else (and drops the rest anyway).
    let in_lake = |k: &String| o.bucket == ctx.source.bucket && k.starts_with(&ctx.source.prefix);
    let candidates: Vec<String> = [o.key.clone(), decoded]
        .into_iter()
        .filter(in_lake)
        .collect();
    for candidate in candidates {
        if holds(&ctx.s3, &o.bucket, &candidate, &o.etag).await? {
            o.key = candidate;
            return Ok(o);
        }
    }
    Ok(o)
}

/// Every object of one event, resolved ([`resolve`]); None (logged) when one cannot be.
async fn resolve_all(ctx: &ScanContext, list: Vec<EventObject>) -> Option<Vec<EventObject>> {
    let mut resolved = Vec::with_capacity(list.len());
    for o in list {
        let (bucket, key) = (o.bucket.clone(), o.key.clone());
        match resolve(ctx, o).await {
            Ok(o) => resolved.push(o),
            Err(e) => {
                warn!(%bucket, %key, error = %e,
                    "cannot tell how an event's key reads; the event is read again later");
                return None;
            }
        }
    }
    Some(resolved)
}

/// Whether S3 lists `key` with the ETag `etag` (bare).
async fn holds(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    etag: &str,
) -> Result<bool, String> {
    let out = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(key)
        .max_keys(1)
        .send()
        .await
        .map_err(|e| sluice_common::error::sdk_error_text(&e))?;
    Ok(out
        .contents()
        .first()
        .is_some_and(|c| c.key() == Some(key) && c.e_tag().map(bare_etag).as_deref() == Some(etag)))
}

/// An object of an event as the listing would have shown it, or why it is dropped.
pub fn classify(source: &SourceLocation, o: &EventObject) -> Result<Listed, Dropped> {
    if o.bucket != source.bucket {
        return Err(Dropped::OtherBucket);
    }
    if !o.key.starts_with(&source.prefix) {
        return Err(Dropped::OutsidePrefix);
    }
    if o.key.ends_with('/') {
        return Err(Dropped::Folder);
    }
    Ok(Listed::new(
        &source.prefix,
        &o.key,
        &o.etag,
        o.size,
        &o.time,
    ))
}

/// What one receive did (`--json` and the tests read it).
#[derive(Debug, Default, Clone, PartialEq, Serialize)]
pub struct EventsSummary {
    /// Event messages received.
    pub received: usize,
    /// Files recorded and enqueued from them.
    pub enqueued: usize,
    /// Objects the manifest already held (a repeated or late event, or a pass got there first).
    pub duplicate: usize,
    /// Objects whose key the manifest held under another ETag: a file rewritten in place,
    /// counted as a pass counts it (`sluice_coordinator_files_changed_total`).
    pub changed: usize,
    /// Objects and events naming nothing to load, by reason.
    pub dropped: BTreeMap<&'static str, usize>,
    /// Messages that could not be parsed (left for the dead-letter queue).
    pub unparseable: usize,
    /// Recorded files whose message was not sent (the pass re-enqueues them).
    pub send_failed: usize,
    /// Age in seconds of the newest event received (its SentTimestamp), if any.
    pub newest_age_secs: Option<f64>,
    /// When SQS received that event (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub newest_sent_at: Option<String>,
}

/// The events queue and how long a receive waits.
#[derive(Debug, Clone)]
pub struct EventsQueue {
    pub url: String,
    /// Long-poll wait, at most 20 s.
    pub wait: Duration,
}

/// One receive of up to 10 event messages, handled: the objects admitted, the handled
/// messages deleted, the unparseable ones made visible again for the redrive policy.
pub async fn poll(ctx: &ScanContext, q: &EventsQueue) -> Result<EventsSummary, CoordinatorError> {
    use aws_sdk_sqs::types::MessageSystemAttributeName as A;
    let queue_err = |operation: &'static str, e: String| CoordinatorError::Queue {
        operation,
        queue: q.url.clone(),
        message: e,
    };
    let out = ctx
        .sqs
        .receive_message()
        .queue_url(&q.url)
        .max_number_of_messages(10)
        .wait_time_seconds(q.wait.as_secs().min(20) as i32)
        .message_system_attribute_names(A::SentTimestamp)
        .send()
        .await
        .map_err(|e| queue_err("receive_message", sluice_common::error::sdk_error_text(&e)))?;
    let mut summary = EventsSummary {
        received: out.messages().len(),
        ..EventsSummary::default()
    };
    let mut handled = Vec::new();
    let mut objects: BTreeMap<(String, String), Listed> = BTreeMap::new();
    let now_ms = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    let mut newest_ms: Option<i128> = None;
    for msg in out.messages() {
        let Some(handle) = msg.receipt_handle() else {
            continue;
        };
        if let Some(sent) = msg
            .attributes()
            .and_then(|a| a.get(&A::SentTimestamp))
            .and_then(|t| t.parse::<i128>().ok())
        {
            newest_ms = Some(newest_ms.map_or(sent, |n| n.max(sent)));
        }
        match parse(msg.body().unwrap_or_default()) {
            Err(why) => {
                summary.unparseable += 1;
                warn!(queue = %q.url, message_id = msg.message_id().unwrap_or_default(), reason = %why,
                    "event cannot be parsed; left for the dead-letter queue");
                // Visible again at once: the redrive policy counts the receives.
                if let Err(e) = ctx
                    .sqs
                    .change_message_visibility()
                    .queue_url(&q.url)
                    .receipt_handle(handle)
                    .visibility_timeout(0)
                    .send()
                    .await
                {
                    warn!(error = %sluice_common::error::sdk_error_text(&e), "event not made visible again; it returns after the visibility timeout");
                }
            }
            Ok(Event::Other(reason)) => {
                *summary.dropped.entry(reason).or_default() += 1;
                handled.push(handle.to_owned());
            }
            Ok(Event::Created(list)) => {
                // Not handled when a key cannot be resolved: the event comes back.
                let Some(resolved) = resolve_all(ctx, list).await else {
                    continue;
                };
                for o in resolved {
                    match classify(&ctx.source, &o) {
                        Ok(l) => {
                            // The same pair twice in one receive: the second is a duplicate.
                            if objects.insert((l.key.clone(), l.etag.clone()), l).is_some() {
                                summary.duplicate += 1;
                            }
                        }
                        Err(d) => {
                            debug!(bucket = %o.bucket, key = %o.key, reason = d.as_str(), "event dropped");
                            *summary.dropped.entry(d.as_str()).or_default() += 1;
                        }
                    }
                }
                handled.push(handle.to_owned());
            }
        }
    }
    let listed: Vec<Listed> = objects.into_values().collect();
    if !listed.is_empty() {
        // An error here leaves every event of the batch to come back.
        let a = admit(ctx, &listed).await?;
        summary.enqueued = a.sent;
        summary.changed = a.changed;
        summary.send_failed = a.send_failed;
        summary.duplicate += a.duplicate;
    }
    delete(ctx, q, &handled).await?;
    if let Some(sent) = newest_ms {
        record_newest(ctx, &mut summary, sent, now_ms).await;
    }
    count(&summary);
    Ok(summary)
}

/// The newest event's age into the summary, and its time into the manifest for `status`.
async fn record_newest(
    ctx: &ScanContext,
    summary: &mut EventsSummary,
    sent_ms: i128,
    now_ms: i128,
) {
    summary.newest_age_secs = Some((now_ms - sent_ms).max(0) as f64 / 1000.0);
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(sent_ms * 1_000_000)
        .map(timefmt::format)
        .ok();
    if let Some(at) = &at {
        let (bucket, prefix) = (&ctx.source.bucket, &ctx.source.prefix);
        if let Err(e) = ctx.store.record_newest_event(bucket, prefix, at).await {
            warn!(error = %e, "newest event time not recorded (status shows an older one)");
        }
    }
    summary.newest_sent_at = at;
}

async fn delete(
    ctx: &ScanContext,
    q: &EventsQueue,
    handles: &[String],
) -> Result<(), CoordinatorError> {
    use aws_sdk_sqs::types::DeleteMessageBatchRequestEntry as E;
    if handles.is_empty() {
        return Ok(());
    }
    let entries = handles
        .iter()
        .enumerate()
        .map(|(i, h)| {
            E::builder()
                .id(i.to_string())
                .receipt_handle(h)
                .build()
                .expect("id and handle are set")
        })
        .collect();
    let out = ctx
        .sqs
        .delete_message_batch()
        .queue_url(&q.url)
        .set_entries(Some(entries))
        .send()
        .await
        .map_err(|e| CoordinatorError::Queue {
            operation: "delete_message_batch",
            queue: q.url.clone(),
            message: sluice_common::error::sdk_error_text(&e),
        })?;
    for f in out.failed() {
        // Delivered again later: admitting it again is a duplicate, nothing more.
        warn!(queue = %q.url, entry = f.id(), code = f.code(), "event not deleted; it comes back as a duplicate");
    }
    Ok(())
}

fn count(s: &EventsSummary) {
    m::inc(&m::EVENTS, &["received"], s.received as u64);
    m::inc(&m::EVENTS, &["enqueued"], s.enqueued as u64);
    m::inc(&m::EVENTS, &["duplicate"], s.duplicate as u64);
    m::inc(
        &m::EVENTS,
        &["dropped"],
        s.dropped.values().sum::<usize>() as u64,
    );
    m::inc(&m::EVENTS, &["unparseable"], s.unparseable as u64);
    m::inc(&m::FILES_CHANGED, &[], s.changed as u64);
    if let Some(age) = s.newest_age_secs {
        m::set(&m::NEWEST_EVENT_AGE, &[], age);
    }
}

/// Polls the events queue until `shutdown`; a failed receive or admit waits a second and goes
/// on (the events come back after the visibility timeout). A receive is abandoned at shutdown;
/// a batch being admitted is finished first.
pub async fn run(ctx: &ScanContext, q: &EventsQueue, shutdown: &CancellationToken) {
    info!(queue = %q.url, "reading S3 events");
    loop {
        let result = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = poll(ctx, q) => r,
        };
        match result {
            Ok(s) if s.received > 0 => info!(
                received = s.received,
                enqueued = s.enqueued,
                duplicate = s.duplicate,
                dropped = s.dropped.values().sum::<usize>(),
                unparseable = s.unparseable,
                "events handled"
            ),
            Ok(_) => {}
            Err(e) => {
                warn!(error = %e, queue = %q.url, "events not handled; they come back after the visibility timeout");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source() -> SourceLocation {
        SourceLocation::parse("s3://lake/dms/").unwrap()
    }

    #[test]
    fn an_eventbridge_event_names_its_object() {
        let body = r#"{"version":"0","detail-type":"Object Created","source":"aws.s3",
            "time":"2021-11-12T00:00:00Z","detail":{"bucket":{"name":"lake"},
            "object":{"key":"dms/s/t/a+b%20.csv","size":5,"etag":"abc"}}}"#;
        let Event::Created(objects) = parse(body).unwrap() else {
            panic!()
        };
        assert_eq!(
            objects,
            vec![EventObject {
                bucket: "lake".into(),
                // As written, and the decoded reading: S3 is asked which one it holds.
                key: "dms/s/t/a+b%20.csv".into(),
                decoded: Some("dms/s/t/a b .csv".into()),
                etag: "abc".into(),
                size: 5,
                time: "2021-11-12T00:00:00.000Z".into(),
            }]
        );
        let moto = body.replace("\"etag\"", "\"eTag\"");
        assert!(matches!(parse(&moto), Ok(Event::Created(_))));
        // A key that reads one way only, or whose decoding is no key, is taken as written.
        for (key, decoded) in [("dms/s/t/ab.csv", None), ("dms/s/t/a%zz.csv", None)] {
            let Ok(Event::Created(o)) = parse(&body.replace("dms/s/t/a+b%20.csv", key)) else {
                panic!("{key}")
            };
            assert_eq!((o[0].key.as_str(), o[0].decoded.as_deref()), (key, decoded));
        }
        let deleted = body.replace("Object Created", "Object Deleted");
        assert_eq!(parse(&deleted), Ok(Event::Other("not_created")));
    }

    #[test]
    fn a_bucket_notification_decodes_its_keys() {
        let body = r#"{"Records":[{"eventSource":"aws:s3","eventName":"ObjectCreated:Put",
            "eventTime":"2024-10-29T11:00:00.123456","s3":{"bucket":{"name":"lake"},
            "object":{"key":"dms/s/t/a+b%C3%A9.csv","size":3,"eTag":"\"e1\""}}},
            {"eventSource":"aws:s3","eventName":"ObjectRemoved:Delete","s3":{}}]}"#;
        let Event::Created(objects) = parse(body).unwrap() else {
            panic!()
        };
        assert_eq!(objects.len(), 1);
        assert_eq!(objects[0].key, "dms/s/t/a bé.csv");
        assert_eq!(objects[0].decoded, None);
        assert_eq!(objects[0].etag, "e1");
        assert!(objects[0].time.starts_with("2024-10-29T11:00:00"));
        let test_event = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":"lake"}"#;
        assert_eq!(parse(test_event), Ok(Event::Other("test_event")));
    }

    #[test]
    fn what_is_not_an_s3_event_is_refused() {
        for body in [
            "not json",
            "{}",
            r#"{"detail-type":"Object Created","source":"aws.ec2","detail":{}}"#,
            r#"{"detail-type":"Object Created","source":"aws.s3","detail":{"bucket":{"name":"b"},"object":{"key":"k"}}}"#,
            r#"{"Records":[{"eventSource":"aws:s3","eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"%zz","eTag":"e"}}}]}"#,
            r#"{"Records":[{"eventSource":"aws:s3","eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"%ff","eTag":"e"}}}]}"#,
        ] {
            assert!(parse(body).is_err(), "{body}");
        }
    }

    #[test]
    fn objects_outside_the_lake_are_dropped() {
        let o = |bucket: &str, key: &str| EventObject {
            bucket: bucket.into(),
            key: key.into(),
            decoded: None,
            etag: "e".into(),
            size: 1,
            time: "t".into(),
        };
        let l = classify(&source(), &o("lake", "dms/s/t/LOAD00000001.csv")).unwrap();
        assert_eq!(l.source_table().as_deref(), Some("s.t"));
        assert_eq!(
            classify(&source(), &o("other", "dms/s/t/x.csv")),
            Err(Dropped::OtherBucket)
        );
        assert_eq!(
            classify(&source(), &o("lake", "raw/s/t/x.csv")),
            Err(Dropped::OutsidePrefix)
        );
        assert_eq!(
            classify(&source(), &o("lake", "dms/s/t/")),
            Err(Dropped::Folder)
        );
        // Inside the prefix but no table: a listing records it dead; so does an event.
        assert!(classify(&source(), &o("lake", "dms/readme.txt"))
            .unwrap()
            .file
            .is_err());
    }
}
