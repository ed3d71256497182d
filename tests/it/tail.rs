//! Listings proportional to change: a tail pass lists each table folder from after the keys its
//! checkpoints vouch for (S3 StartAfter), with exact ListObjectsV2 call and key counts; a full
//! listing finds what a tail listing cannot see (a rewrite inside a closed range).

use crate::support::{cdc_name, TestBed};
use sluice_coordinator::scan::{pass, PassOptions, ScanSummary};
use std::time::Duration;

async fn tail_pass(tb: &TestBed, tail: bool) -> ScanSummary {
    let options = PassOptions {
        tail,
        ..PassOptions::default()
    };
    pass(&tb.scan_context(Duration::from_secs(600)), options)
        .await
        .expect("pass")
        .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tail_listing_lists_only_past_its_checkpoints_and_a_full_one_finds_a_rewrite() {
    let tb = TestBed::new("tail").await;
    let t = |f: &str| tb.key(&format!("t/{f}"));
    let u = |f: &str| tb.key(&format!("u/{f}"));
    tb.put(&t("LOAD00000001.csv"), "1,a\n").await;
    let mut t_cdc = Vec::new();
    for n in 0..120 {
        let key = t(&cdc_name(n * 1000));
        tb.put(&key, format!("I,{n},x\n")).await;
        t_cdc.push(key);
    }
    for n in 0..5 {
        tb.put(&u(&cdc_name(n * 1000)), format!("I,{n},y\n")).await;
    }

    // No checkpoints: every table folder whole. Calls: the prefix and the schema folder (one
    // level each), then t and u.
    let first = tail_pass(&tb, true).await;
    assert_eq!(
        (first.listed, first.new, first.list_calls),
        (126, 126, 4),
        "{first:?}"
    );
    assert!(first.tail_listing);
    // Without checkpoints nothing is known of a key: each one asked for other ETags.
    assert_eq!((first.asked, first.past_checkpoints), (126, 0), "{first:?}");

    // Nothing new: t is listed after its 120 CDC files (its LOAD file, every pass); u's
    // checkpoint is small (5 < 100 keys), listed again.
    let idle = tail_pass(&tb, true).await;
    assert_eq!(
        (idle.listed, idle.new, idle.list_calls),
        (1 + 5, 0, 4),
        "{idle:?}"
    );
    assert_eq!(idle.checkpoints_written, 0, "{idle:?}");

    // Three CDC files appended to t: listed are they, the LOAD file and u.
    let later: Vec<String> = (0..3).map(|n| t(&cdc_name(600_000 + n * 1000))).collect();
    for k in &later {
        tb.put(k, "I,500,z\n").await;
    }
    let after = tail_pass(&tb, true).await;
    assert_eq!(
        (after.listed, after.new, after.sent),
        (3 + 1 + 5, 3, 3),
        "{after:?}"
    );
    assert_eq!(after.list_calls, 4, "{after:?}");
    // Past every key t's checkpoints vouch for: new without a query for other ETags.
    assert_eq!((after.asked, after.past_checkpoints), (0, 3), "{after:?}");
    // They are a checkpoint of their own, small: listed again (and read from none) until it
    // grows to 100 keys; the 120 before them are not listed again.
    let idle = tail_pass(&tb, true).await;
    assert_eq!(
        (idle.listed, idle.new, idle.read),
        (3 + 1 + 5, 0, 1),
        "{idle:?}"
    );

    // A CDC file rewritten inside t's closed range: a tail listing cannot see it...
    tb.put(&t_cdc[10], "U,10,rewritten\n").await;
    let blind = tail_pass(&tb, true).await;
    assert_eq!((blind.listed, blind.changed), (3 + 1 + 5, 0), "{blind:?}");
    // ...the full listing (every N passes of `run`) does, in one call for 129 keys.
    let full = tail_pass(&tb, false).await;
    assert!(!full.tail_listing);
    assert_eq!(
        (full.listed, full.changed, full.sent),
        (129, 1, 1),
        "{full:?}"
    );
    assert_eq!(full.list_calls, 1, "{full:?}");
    // Inside a vouched range, an unknown pair is asked: that is how it is known changed.
    assert_eq!((full.asked, full.past_checkpoints), (1, 0), "{full:?}");
    // The checkpoints the tail passes carried are still whole: the full pass read only the
    // rewritten range and the LOAD file, not every key.
    assert!(full.read < 129, "{full:?}");
    let idle = tail_pass(&tb, true).await;
    assert_eq!((idle.new, idle.changed), (0, 0), "{idle:?}");
}
