//! S3 event notifications end to end (moto delivers them through EventBridge and as bucket
//! notifications): a file is loaded with no listing pass, repeated, late and out-of-order
//! events enqueue each file once, a lost event is caught by the next listing, what is outside
//! the lake is dropped and what cannot be parsed goes to the events dead-letter queue, and a
//! key with `+` or a space is recorded as S3 holds it, however the event wrote it.

use crate::support::{cdc_name, TestBed};
use sluice_common::manifest::Status;
use sluice_coordinator::events::{poll, EventsQueue, EventsSummary};
use std::time::Duration;

/// The test's events queue (and `<name>-dlq`, after 2 receives), fed by EventBridge with the
/// bucket's ObjectCreated events under the lake's prefix (`infra/local/eventbridge.py`).
async fn events_queue(tb: &TestBed, eventbridge: bool) -> (EventsQueue, String) {
    let name = format!("{}-ev", tb.name);
    let url = sluice_coordinator::bootstrap::queue(
        &tb.aws.sqs,
        &sluice_coordinator::bootstrap::QueueSpec {
            name: name.clone(),
            visibility_timeout_secs: 30,
            max_receive_count: 2,
        },
    )
    .await
    .expect("create events queue");
    let dlq = url.replace(&name, &format!("{name}-dlq"));
    if eventbridge {
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/local/eventbridge.py");
        let run = std::process::Command::new("python3")
            .arg(&script)
            .args([&tb.bucket, &tb.prefix, &url, &name])
            .output()
            .expect("run python3 (infra/local/stack.sh up installs boto3 with moto)");
        assert!(
            run.status.success(),
            "eventbridge.py: {}",
            String::from_utf8_lossy(&run.stderr)
        );
    }
    let q = EventsQueue {
        url,
        wait: Duration::from_secs(1),
    };
    (q, dlq)
}

/// Polls until a receive comes back empty; the receives' figures added up.
async fn poll_all(tb: &TestBed, q: &EventsQueue) -> EventsSummary {
    let ctx = tb.scan_context(Duration::from_secs(600));
    let mut total = EventsSummary::default();
    loop {
        let s = poll(&ctx, q).await.expect("poll events");
        if s.received == 0 {
            return total;
        }
        total.received += s.received;
        total.enqueued += s.enqueued;
        total.duplicate += s.duplicate;
        total.changed += s.changed;
        total.unparseable += s.unparseable;
        total.send_failed += s.send_failed;
        total.newest_age_secs = s.newest_age_secs.or(total.newest_age_secs);
        for (k, v) in s.dropped {
            *total.dropped.entry(k).or_default() += v;
        }
    }
}

/// Takes every message off a queue (deleting it) and returns the bodies.
async fn take_all(tb: &TestBed, url: &str) -> Vec<String> {
    let mut bodies = Vec::new();
    loop {
        let out = tb
            .aws
            .sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("receive");
        if out.messages().is_empty() {
            return bodies;
        }
        for m in out.messages() {
            bodies.push(m.body().unwrap_or_default().to_owned());
            tb.aws
                .sqs
                .delete_message()
                .queue_url(url)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .expect("delete");
        }
    }
}

async fn send(tb: &TestBed, url: &str, body: &str) {
    tb.aws
        .sqs
        .send_message()
        .queue_url(url)
        .message_body(body)
        .send()
        .await
        .expect("send");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_put_in_s3_is_loaded_with_no_listing_pass() {
    let tb = TestBed::new("evload").await;
    tb.sql("CREATE TABLE {s}.t (id int PRIMARY KEY, v text)")
        .await;
    let (q, _) = events_queue(&tb, true).await;
    let key = tb.key(&format!("t/{}", cdc_name(0)));
    let etag = tb.put(&key, "I,1,landed\n").await;
    let s = poll_all(&tb, &q).await;
    assert_eq!((s.received, s.enqueued, s.duplicate), (1, 1, 0), "{s:?}");
    assert!(s.newest_age_secs.is_some_and(|a| a < 60.0), "{s:?}");
    assert_eq!(tb.status(&key, &etag).await, Some(Status::Queued));
    let run = tb.drain(&[]).await;
    assert_eq!(run.loaded, 1, "{run:?}");
    assert_eq!(
        tb.rows("SELECT id::text, v FROM {s}.t").await,
        vec![vec![Some("1".to_owned()), Some("landed".to_owned())]]
    );
    // The listing that follows finds the file known: nothing new.
    let pass = tb.scan().await;
    assert_eq!((pass.listed, pass.new, pass.sent), (1, 0, 0), "{pass:?}");
    // The file rewritten in place: its event enqueues the new version, counted as a change.
    let rewritten = tb.put(&key, "U,1,rewritten\n").await;
    assert_ne!(rewritten, etag);
    let s = poll_all(&tb, &q).await;
    assert_eq!((s.enqueued, s.changed), (1, 1), "{s:?}");
    assert_eq!(tb.status(&key, &rewritten).await, Some(Status::Queued));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_late_and_out_of_order_events_enqueue_each_file_once() {
    let tb = TestBed::new("evonce").await;
    let (q, _) = events_queue(&tb, true).await;
    let a = tb.key(&format!("t/{}", cdc_name(0)));
    let b = tb.key(&format!("t/{}", cdc_name(1000)));
    tb.put(&a, "I,1,a\n").await;
    tb.put(&b, "I,2,b\n").await;
    let bodies = take_all(&tb, &q.url).await;
    assert_eq!(bodies.len(), 2, "one EventBridge event per put: {bodies:?}");
    // Out of order, each twice, some in one receive and some in the next.
    for body in [&bodies[1], &bodies[1], &bodies[0]] {
        send(&tb, &q.url, body).await;
    }
    let first = poll_all(&tb, &q).await;
    send(&tb, &q.url, &bodies[0]).await;
    let second = poll_all(&tb, &q).await;
    assert_eq!(first.enqueued + second.enqueued, 2, "{first:?} {second:?}");
    assert_eq!(
        first.duplicate + second.duplicate,
        2,
        "{first:?} {second:?}"
    );
    // A third file races a listing pass: the pass gets there first, its event is a duplicate.
    let c = tb.key(&format!("t/{}", cdc_name(2000)));
    tb.put(&c, "I,3,c\n").await;
    let pass = tb.scan().await;
    assert_eq!((pass.new, pass.sent), (1, 1), "{pass:?}");
    // A late event for a file long recorded.
    send(&tb, &q.url, &bodies[1]).await;
    let late = poll_all(&tb, &q).await;
    assert_eq!(
        (late.received, late.enqueued, late.duplicate),
        (2, 0, 2),
        "{late:?}"
    );
    // Three files, three messages.
    assert_eq!(tb.queue_depth(&tb.queue_url).await, (3, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_event_is_caught_by_the_next_listing() {
    let tb = TestBed::new("evlost").await;
    let (q, _) = events_queue(&tb, true).await;
    let key = tb.key(&format!("t/{}", cdc_name(0)));
    let etag = tb.put(&key, "I,1,a\n").await;
    assert_eq!(take_all(&tb, &q.url).await.len(), 1, "the event, lost");
    assert_eq!(poll_all(&tb, &q).await.received, 0);
    assert!(tb.manifest.get(&key, &etag).await.unwrap().is_none());
    let pass = tb.scan().await;
    assert_eq!((pass.new, pass.sent), (1, 1), "{pass:?}");
    assert_eq!(tb.status(&key, &etag).await, Some(Status::Queued));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_outside_the_lake_are_dropped_and_bad_events_go_to_the_dead_letter_queue() {
    use aws_sdk_s3::types::{Event, NotificationConfiguration, QueueConfiguration};
    let tb = TestBed::new("evdrop").await;
    let (q, dlq) = events_queue(&tb, false).await;
    // A bucket notification for every key (not filtered to the prefix): keys are URL-encoded.
    let arn = format!("arn:aws:sqs:us-east-1:123456789012:{}-ev", tb.name);
    let config = NotificationConfiguration::builder()
        .queue_configurations(
            QueueConfiguration::builder()
                .queue_arn(arn)
                .events(Event::S3ObjectCreated)
                .build()
                .unwrap(),
        )
        .build();
    tb.aws
        .s3
        .put_bucket_notification_configuration()
        .bucket(&tb.bucket)
        .notification_configuration(config)
        .send()
        .await
        .expect("bucket notification");
    let inside = tb.key(&format!("t/{} x.csv", cdc_name(0).trim_end_matches(".csv")));
    let etag = tb.put(&inside, "I,1,a\n").await;
    tb.put("raw/t/file.csv", "I,1,a\n").await;
    tb.put(&tb.key("t/"), "").await;
    send(&tb, &q.url, "{\"not\": \"an event\"}").await;
    let s = poll_all(&tb, &q).await;
    assert_eq!(s.enqueued, 1, "{s:?}");
    assert_eq!(tb.status(&inside, &etag).await, Some(Status::Queued));
    assert_eq!(s.dropped.get("outside_prefix"), Some(&1), "{s:?}");
    assert_eq!(s.dropped.get("folder"), Some(&1), "{s:?}");
    // Received twice (made visible again at once), then moved by the redrive policy.
    assert_eq!(s.unparseable, 2, "{s:?}");
    assert_eq!(tb.queue_depth(&q.url).await, (0, 0));
    assert_eq!(tb.queue_depth(&dlq).await.0, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_racing_each_other_enqueue_each_file_once() {
    use sluice_coordinator::listing::Listed;
    use sluice_coordinator::scan::admit;
    let tb = TestBed::new("evrace").await;
    let ctx = tb.scan_context(Duration::from_secs(600));
    let mut objects = Vec::new();
    for n in 0..5 {
        let key = tb.key(&format!("t/{}", cdc_name(n * 1000)));
        let etag = tb.put(&key, format!("I,{n},x\n")).await;
        objects.push(Listed::new(
            &tb.prefix,
            &key,
            &etag,
            6,
            "2024-10-29T11:00:00.000Z",
        ));
    }
    // Two coordinators handle the same five events at the same moment: both read the manifest
    // before either writes, and only the conditional write decides.
    let (a, b) = tokio::join!(admit(&ctx, &objects), admit(&ctx, &objects));
    let (a, b) = (a.expect("admit"), b.expect("admit"));
    assert_eq!(a.sent + b.sent, 5, "{a:?} {b:?}");
    assert_eq!(a.duplicate + b.duplicate, 5, "{a:?} {b:?}");
    assert_eq!(tb.queue_depth(&tb.queue_url).await, (5, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missed_event_is_noted_and_status_shows_the_events_queue() {
    use sluice_coordinator::ops::{reconcile, status, Scope};
    use sluice_coordinator::scan::{pass, PassOptions};
    let tb = TestBed::new("evmiss").await;
    let (q, _) = events_queue(&tb, true).await;
    let a = tb.key(&format!("t/{}", cdc_name(0)));
    tb.put(&a, "I,1,a\n").await;
    assert_eq!(poll_all(&tb, &q).await.enqueued, 1);
    let b = tb.key(&format!("t/{}", cdc_name(1000)));
    let b_etag = tb.put(&b, "I,2,b\n").await;
    assert_eq!(take_all(&tb, &q.url).await.len(), 1, "b's event, lost");

    // A pass with events on finds b: a missed event, noted on its item.
    let options = PassOptions {
        missed_event_grace: Some(Duration::ZERO),
        ..PassOptions::default()
    };
    let ctx = tb.scan_context(Duration::from_secs(600));
    let found = pass(&ctx, options).await.expect("pass").0;
    assert_eq!((found.new, found.missed_events), (1, 1), "{found:?}");
    let r = reconcile::report(
        &tb.ops(""),
        &reconcile::Options {
            scope: Scope::default(),
            check_loaded: false,
            stuck_after: Duration::ZERO,
        },
    )
    .await
    .expect("skipped");
    let entry = r
        .entries
        .iter()
        .find(|e| e.key == b)
        .expect("b is not loaded");
    assert_eq!(entry.etag, b_etag);
    assert!(entry.why.contains("S3 events are on"), "{}", entry.why);
    assert!(r
        .entries
        .iter()
        .any(|e| e.key == a && !e.why.contains("events")));

    // status: the events queue (empty), and how long ago the newest event arrived.
    let mut ops = tb.ops("");
    ops.events_queue_url = Some(q.url.clone());
    let s = status::collect(
        &ops,
        &status::Options {
            scope: Scope::default(),
            window: Duration::from_secs(600),
            full: false,
        },
    )
    .await
    .expect("status");
    let e = s.events.clone().expect("events shown");
    assert_eq!((e.queue.visible, e.queue.in_flight), (0, 0));
    assert!(e.newest_event_age_secs.is_some_and(|a| a < 60), "{e:?}");
    assert!(
        status::format(&s).contains("S3 events: 0 waiting"),
        "{}",
        status::format(&s)
    );
}

/// An EventBridge `Object Created` event for `key` as written in the event.
fn eventbridge_event(tb: &TestBed, key: &str, etag: &str) -> String {
    serde_json::json!({
        "version": "0", "id": "e", "detail-type": "Object Created", "source": "aws.s3",
        "account": "123456789012", "time": "2026-01-01T00:00:00Z", "region": "us-east-1",
        "resources": [],
        "detail": {
            "version": "0", "bucket": {"name": tb.bucket},
            "object": {"key": key, "size": 6, "etag": etag},
            "reason": "PutObject"
        }
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eventbridge_key_with_a_plus_or_a_space_is_recorded_as_s3_holds_it() {
    let tb = TestBed::new("evkeys").await;
    tb.sql("CREATE TABLE {s}.t (id int PRIMARY KEY, v text)")
        .await;
    let (q, _) = events_queue(&tb, false).await;
    let stem = |n: i64| cdc_name(n).trim_end_matches(".csv").to_owned();
    // A space in the key, the event URL-encoding it (as bucket notifications do)...
    let spaced = tb.key(&format!("t/{} x.csv", stem(0)));
    let spaced_etag = tb.put(&spaced, "I,1,a\n").await;
    let spaced_as_sent = spaced.replace(' ', "+");
    // ...and a `+` that is part of the key, the event writing it as it is.
    let plus = tb.key(&format!("t/{}+y.csv", stem(1000)));
    let plus_etag = tb.put(&plus, "I,2,b\n").await;
    send(
        &tb,
        &q.url,
        &eventbridge_event(&tb, &spaced_as_sent, &spaced_etag),
    )
    .await;
    send(&tb, &q.url, &eventbridge_event(&tb, &plus, &plus_etag)).await;
    let s = poll_all(&tb, &q).await;
    assert_eq!((s.received, s.enqueued), (2, 2), "{s:?}");
    assert_eq!(tb.status(&spaced, &spaced_etag).await, Some(Status::Queued));
    assert_eq!(tb.status(&plus, &plus_etag).await, Some(Status::Queued));
    // Nothing under a reading S3 does not hold.
    for wrong in [spaced_as_sent, plus.replace('+', " ")] {
        let items = tb.manifest.etags_of(&wrong).await.unwrap();
        assert!(items.is_empty(), "{wrong}: {items:?}");
    }
    let run = tb.drain(&[]).await;
    assert_eq!((run.loaded, run.failed), (2, 0), "{run:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_whose_key_s3_cannot_be_asked_about_is_read_again_later() {
    let tb = TestBed::new("evunread").await;
    let (q, _) = events_queue(&tb, false).await;
    let stem = cdc_name(0).trim_end_matches(".csv").to_owned();
    let spaced = tb.key(&format!("t/{stem} x.csv"));
    let etag = tb.put(&spaced, "I,1,a\n").await;
    let as_sent = spaced.replace(' ', "+");
    send(&tb, &q.url, &eventbridge_event(&tb, &as_sent, &etag)).await;
    // S3 cannot be reached to tell the two readings apart (nothing listens on port 1).
    let mut ctx = tb.scan_context(Duration::from_secs(600));
    ctx.s3 = aws_sdk_s3::Client::from_conf(
        tb.aws_via("http://127.0.0.1:1")
            .s3
            .config()
            .to_builder()
            .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled())
            .build(),
    );
    let s = poll(&ctx, &q).await.expect("poll events");
    assert_eq!((s.received, s.enqueued), (1, 0), "{s:?}");
    // Nothing recorded under either reading, and the event not deleted: it comes back.
    for key in [&spaced, &as_sent] {
        let items = tb.manifest.etags_of(key).await.unwrap();
        assert!(items.is_empty(), "{key}: {items:?}");
    }
    let attrs = tb
        .aws
        .sqs
        .get_queue_attributes()
        .queue_url(&q.url)
        .attribute_names(
            aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
        )
        .send()
        .await
        .unwrap();
    let in_flight = attrs
        .attributes()
        .and_then(|a| {
            a.get(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        })
        .cloned();
    assert_eq!(in_flight.as_deref(), Some("1"));
}
