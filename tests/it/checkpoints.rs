//! Listing checkpoints end to end: a pass reads from the manifest only what changed since the
//! last pass, and misses nothing that changed.

use crate::support::{cdc_name, TestBed};
use sluice_coordinator::scan::{pass, PassOptions};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_reads_only_what_changed_and_misses_nothing() {
    let tb = TestBed::new("ckpt").await;
    let t = |f: &str| tb.key(&format!("t/{f}"));
    let u = |f: &str| tb.key(&format!("u/{f}"));
    tb.put(&t("LOAD00000001.csv"), "1,a\n").await;
    let mut t_cdc = Vec::new();
    for n in 0..30 {
        let key = t(&cdc_name(n * 1000));
        let etag = tb.put(&key, format!("I,{n},x\n")).await;
        t_cdc.push((key, etag));
    }
    let mut u_cdc = Vec::new();
    for n in 0..10 {
        let key = u(&cdc_name(n * 1000));
        tb.put(&key, format!("I,{n},y\n")).await;
        u_cdc.push(key);
    }

    // No checkpoints yet: every pair is read.
    let first = tb.scan().await;
    assert_eq!((first.listed, first.new), (41, 41), "{first:?}");
    assert_eq!((first.read, first.vouched), (41, 0), "{first:?}");
    // t's CDC files, t's LOAD file, u's CDC files.
    assert_eq!(first.checkpoints_written, 3, "{first:?}");

    // Nothing changed: only the LOAD file is read (the generation bookkeeping needs its item).
    let idle = tb.scan().await;
    assert_eq!(
        (idle.new, idle.changed, idle.unchanged),
        (0, 0, 41),
        "{idle:?}"
    );
    assert_eq!((idle.read, idle.vouched), (1, 41), "{idle:?}");
    assert_eq!(idle.checkpoints_written, 0, "{idle:?}");

    // Two CDC files appended to t, one of u's files rewritten: read are the two new files,
    // u's checkpoint whole (10), and the LOAD file.
    tb.put(&t(&cdc_name(90_000)), "I,90,x\n").await;
    tb.put(&t(&cdc_name(91_000)), "I,91,x\n").await;
    tb.put(&u_cdc[4], "U,4,changed\n").await;
    let after = tb.scan().await;
    assert_eq!((after.new, after.changed), (2, 1), "{after:?}");
    assert_eq!((after.read, after.vouched), (13, 31), "{after:?}");
    assert_eq!(after.checkpoints_written, 2, "{after:?}");
    let idle = tb.scan().await;
    assert_eq!((idle.new, idle.changed, idle.read), (0, 0, 1), "{idle:?}");

    // A dry run reads with the checkpoints and writes none.
    tb.put(&t(&cdc_name(92_000)), "I,92,x\n").await;
    let ctx = tb.scan_context(Duration::from_secs(600));
    let dry = pass(
        &ctx,
        PassOptions {
            dry_run: true,
            full: false,
            ..PassOptions::default()
        },
    )
    .await
    .unwrap()
    .0;
    assert_eq!(
        (dry.new, dry.read, dry.checkpoints_written),
        (1, 2, 0),
        "{dry:?}"
    );
    assert_eq!(tb.scan().await.new, 1);

    // An item deleted by hand is vouched for by its checkpoint; `--full` reads every pair and
    // records it again.
    let (gone, gone_etag) = &t_cdc[7];
    tb.delete_item(gone, gone_etag).await;
    let vouched = tb.scan().await;
    assert_eq!(vouched.new, 0, "{vouched:?}");
    let full = pass(
        &ctx,
        PassOptions {
            dry_run: false,
            full: true,
            ..PassOptions::default()
        },
    )
    .await
    .unwrap()
    .0;
    assert_eq!((full.new, full.read, full.vouched), (1, 44, 0), "{full:?}");
    assert!(tb.manifest.get(gone, gone_etag).await.unwrap().is_some());
}
