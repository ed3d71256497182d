//! The operator's view: `skipped` (S3 vs manifest vs ledger), `status` (figures checked against
//! the true counts), `retry` (a dead file comes back and loads), `reload` (loaded files load
//! again and restore rows edited by hand), `skip`, and the dead-letter queue.

use crate::support::TestBed;
use sluice_common::manifest::Changes;
use sluice_common::manifest::{Status, Transition};
use sluice_coordinator::ops::moves::{self as ops, Selection};
use sluice_coordinator::ops::reconcile::{self, Reason};
use sluice_coordinator::ops::status;
use sluice_coordinator::ops::Scope;
use std::time::Duration;

fn reasons(r: &reconcile::Report) -> Vec<(String, Reason)> {
    let mut v: Vec<(String, Reason)> = r
        .entries
        .iter()
        .map(|e| {
            (
                if e.key.is_empty() {
                    e.table.clone()
                } else {
                    e.key.clone()
                },
                e.reason,
            )
        })
        .collect();
    v.sort();
    v
}

fn opts(stuck_after: Duration, check_loaded: bool) -> reconcile::Options {
    reconcile::Options {
        scope: Scope::default(),
        check_loaded,
        stuck_after,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skipped_compares_the_lake_the_manifest_and_the_ledger() {
    let tb = TestBed::new("skipped").await;
    tb.sql("CREATE TABLE {s}.t (id int PRIMARY KEY, v text)")
        .await;
    let k = |f: &str| tb.key(&format!("t/{f}"));
    let ok = k("LOAD00000001.csv");
    tb.put(&ok, "1,a\n").await;
    let lost_rows = k("LOAD00000002.csv");
    tb.put(&lost_rows, "2,b\n").await;
    let forgotten = k("LOAD00000003.csv");
    let e_forgotten = tb.put(&forgotten, "3,c\n").await;
    let unmanaged = k("LOAD00000004.csv");
    let e_unmanaged = tb.put(&unmanaged, "4,d\n").await;
    let bad = k("LOAD00000005.csv");
    tb.put(&bad, "5,e,extra,more\n").await;
    let no_table = tb.key("nope/LOAD00000001.csv");
    let e_no_table = tb.put(&no_table, "1,x\n").await;
    let deleted_item = tb.key("nope/LOAD00000002.csv");
    let e_deleted_item = tb.put(&deleted_item, "2,x\n").await;
    tb.scan().await;
    let run = tb.drain(&[]).await;
    assert_eq!((run.loaded, run.failed), (4, 3), "{run:?}");
    let ops = tb.ops(&format!(
        "[tables.\"{s}.t\"]\nnull = \"NULL\"\n[tables.\"{s}.empty\"]\nnull = \"NULL\"\n",
        s = tb.schema
    ));

    // A clean part of the lake first: only the expected failures.
    let r = reconcile::report(&ops, &opts(Duration::from_secs(600), false))
        .await
        .unwrap();
    assert_eq!(r.loaded, 4);

    // Two files queued with no worker running (stuck later), then a new file nobody scanned.
    let fresh = k("LOAD00000006.csv");
    tb.put(&fresh, "6,f\n").await;
    let scanned = k("LOAD00000007.csv");
    tb.put(&scanned, "7,g\n").await;
    let pass = tb.scan().await;
    assert_eq!(pass.new, 2, "{pass:?}");
    // Break it in every way.
    // (1) a loaded file's ledger row disappears: its rows may be gone
    tb.db
        .execute(
            &format!("DELETE FROM \"{}\".ledger WHERE key = $1", tb.state_schema),
            &[&lost_rows],
        )
        .await
        .unwrap();
    // (2) a loaded file's manifest item is deleted: the ledger still has it
    tb.delete_item(&unmanaged, &e_unmanaged).await;
    // (3) a file that never loaded is deleted from the manifest: missing
    tb.delete_item(&deleted_item, &e_deleted_item).await;
    // (4) the manifest forgets that a file loaded (moved back to queued, no message)
    tb.manifest
        .transition(
            &forgotten,
            &e_forgotten,
            Transition::Reload,
            Changes::default(),
        )
        .await
        .unwrap();
    let fresh2 = k("LOAD00000008.csv");
    tb.put(&fresh2, "8,h\n").await;
    // (7) skip the unknown table's file on purpose
    let skip = ops::skip(&ops, &no_table, None, "table retired upstream", "carol")
        .await
        .unwrap();
    assert_eq!(skip.skipped.len(), 1);
    assert_eq!(skip.skipped[0].etag, e_no_table);

    // Stuck after zero: the queued files count as stuck.
    let r = reconcile::report(&ops, &opts(Duration::ZERO, false))
        .await
        .unwrap();
    let text = reconcile::format(&r);
    let mut want = vec![
        (lost_rows.clone(), Reason::LoadedWithoutLedger),
        (deleted_item.clone(), Reason::NotInManifest),
        (forgotten.clone(), Reason::LedgerWithoutLoaded),
        (fresh.clone(), Reason::Stuck),
        (scanned.clone(), Reason::Stuck),
        (fresh2.clone(), Reason::NotInManifest),
        (bad.clone(), Reason::Failed),
        (format!("{}.empty", tb.schema), Reason::NoFiles),
    ];
    want.sort();
    assert_eq!(reasons(&r), want, "{text}");
    // Deleted from the manifest, loaded: only --check-loaded reads loaded items and finds it.
    assert!(text.contains("--check-loaded"), "{text}");
    assert!(!text.contains(&format!("{unmanaged} (")), "{text}");
    // Deliberate skips are listed apart, with who and why.
    assert_eq!(r.skipped.len(), 1, "{text}");
    assert_eq!(r.skipped[0].key, no_table);
    assert_eq!(
        (r.skipped[0].who.as_str(), r.skipped[0].why.as_str()),
        ("carol", "table retired upstream")
    );
    assert!(text.contains("Skipped on purpose (1)"), "{text}");
    assert!(text.contains("by carol"), "{text}");
    let failed = r.entries.iter().find(|e| e.key == bad).unwrap();
    assert_eq!(failed.error.as_ref().unwrap().class, "column_count");
    assert!(failed.why.contains("column_count"), "{}", failed.why);
    assert_eq!(reconcile::exit_code(&r, true), reconcile::EXIT_FOUND);
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["counts"]["stuck"], 2, "{json}");

    let checked = reconcile::report(&ops, &opts(Duration::ZERO, true))
        .await
        .unwrap();
    let found: Vec<(String, Reason)> = reasons(&checked)
        .into_iter()
        .filter(|(k, _)| *k == unmanaged)
        .collect();
    assert_eq!(
        found,
        vec![(unmanaged.clone(), Reason::LedgerWithoutLoaded)]
    );
    assert_eq!(checked.loaded, checked.loaded_checked);

    // Scoped to one table: the other table's files are not read or reported.
    let scoped = reconcile::report(
        &ops,
        &reconcile::Options {
            scope: Scope {
                table: Some(format!("{}.nope", tb.schema)),
                prefix: None,
            },
            check_loaded: true,
            stuck_after: Duration::ZERO,
        },
    )
    .await
    .unwrap();
    assert_eq!(
        reasons(&scoped),
        vec![(deleted_item.clone(), Reason::NotInManifest)]
    );
    assert_eq!(scoped.skipped.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_figures_match_the_true_counts() {
    let tb = TestBed::new("status").await;
    tb.sql(
        "CREATE TABLE {s}.a (id int PRIMARY KEY, v text); CREATE TABLE {s}.b (id int PRIMARY KEY, v text)",
    )
    .await;
    let a = |f: &str| tb.key(&format!("a/{f}"));
    let b = |f: &str| tb.key(&format!("b/{f}"));
    let mut loaded_bytes = 0i64;
    for (key, body) in [
        (a("LOAD00000001.csv"), "1,x\n2,y\n3,z\n"),
        (a("LOAD00000002.csv"), "4,x\n"),
        (b("LOAD00000001.csv"), "1,q\n2,r\n"),
    ] {
        tb.put(&key, body).await;
        loaded_bytes += body.len() as i64;
    }
    let failed = a("LOAD00000003.csv");
    tb.put(&failed, "9,bad,extra,more\n").await;
    let dead = b("LOAD00000002.csv");
    let e_dead = tb.put(&dead, "3,s\n").await;
    tb.scan().await;
    // the dead one is given up before any worker sees it
    tb.manifest
        .give_up(&dead, &e_dead, "test".into(), "attempts_exhausted", None)
        .await
        .unwrap();
    let run = tb.drain(&[]).await;
    assert_eq!((run.loaded, run.failed), (3, 1), "{run:?}");
    // backlog: two queued files of table a, one of them received (in flight)
    let q1 = a("LOAD00000004.csv");
    tb.put(&q1, "10,x\n11,y\n").await;
    let q2 = a("LOAD00000005.csv");
    tb.put(&q2, "12,x\n").await;
    let skipped = b("LOAD00000003.csv");
    tb.put(&skipped, "4,t\n").await;
    tb.scan().await;
    let ops_ = tb.ops("");
    ops::skip(&ops_, &skipped, None, "not wanted", "dave")
        .await
        .unwrap();
    // The skipped file's message is still queued; take one message into flight.
    let got = tb
        .aws
        .sqs
        .receive_message()
        .queue_url(&tb.queue_url)
        .max_number_of_messages(1)
        .visibility_timeout(300)
        .send()
        .await
        .unwrap();
    assert_eq!(got.messages().len(), 1);
    // A message in the dead-letter queue.
    tb.aws
        .sqs
        .send_message()
        .queue_url(&tb.dlq_url)
        .message_body("{\"v\":1}")
        .send()
        .await
        .unwrap();

    let r = status::collect(
        &ops_,
        &status::Options {
            scope: Scope::default(),
            window: Duration::from_secs(600),
            full: true,
        },
    )
    .await
    .unwrap();
    let json = serde_json::to_value(&r).unwrap();
    let text = status::format(&r);
    let ta = format!("{}.a", tb.schema);
    let tbl = |name: &str| {
        json["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["table"] == name)
            .unwrap_or_else(|| panic!("no {name} in {json}"))
            .clone()
    };
    let line_a = tbl(&ta);
    let line_b = tbl(&format!("{}.b", tb.schema));
    let files = |l: &serde_json::Value, s: &str| l["files"][s].as_u64().unwrap();
    assert_eq!(
        (
            files(&line_a, "loaded"),
            files(&line_a, "queued"),
            files(&line_a, "failed")
        ),
        (2, 2, 1),
        "{text}"
    );
    assert_eq!(
        (
            files(&line_b, "loaded"),
            files(&line_b, "dead"),
            files(&line_b, "skipped")
        ),
        (1, 1, 1),
        "{text}"
    );
    let total = &json["total"];
    assert_eq!(files(total, "loaded"), 3);
    assert_eq!(files(total, "loading") + files(total, "discovered"), 0);
    assert_eq!(total["backlog_files"], 2);
    assert_eq!(
        total["backlog_bytes"],
        ("10,x\n11,y\n".len() + "12,x\n".len()) as i64
    );
    assert_eq!(total["bytes"]["skipped"], "4,t\n".len() as i64);
    assert_eq!(total["bytes"]["dead"], "3,s\n".len() as i64);
    assert_eq!(total["bytes"]["loaded"], loaded_bytes);
    assert_eq!(total["rows_read"], 6);
    assert_eq!(total["recent_files"], 3);
    assert_eq!(
        total["needs_operator"], 2,
        "a permanent failure and a dead file"
    );
    assert!(total["eta_secs"].as_u64().is_some());
    assert_eq!(
        total["oldest_unloaded"]["key"].as_str().unwrap(),
        failed.as_str(),
        "{text}"
    );
    // Queue: the three messages of the last pass, one received.
    assert_eq!(json["queue"]["visible"], 2, "{text}");
    assert_eq!(json["queue"]["in_flight"], 1, "{text}");
    assert_eq!(json["queue"]["dlq_visible"], 1, "{text}");
    assert_eq!(
        tb.queue_depth(&tb.queue_url).await,
        (2, 1),
        "what SQS says directly"
    );
    assert!(
        text.contains("dead-letter queue: 1 visible, 0 in flight"),
        "{text}"
    );
    assert!(text.contains("TOTAL"), "{text}");

    // Without --full: no loaded bytes, and it says why.
    let light = status::collect(
        &ops_,
        &status::Options {
            scope: Scope {
                table: Some(ta.clone()),
                prefix: None,
            },
            window: Duration::from_secs(600),
            full: false,
        },
    )
    .await
    .unwrap();
    assert_eq!(light.tables.len(), 1);
    assert_eq!(light.total.files[&Status::Loaded], 2);
    assert!(!light.total.bytes.contains_key(&Status::Loaded));
    assert!(status::format(&light).contains("loaded bytes need --full"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_brings_a_dead_file_back_and_it_loads() {
    let tb = TestBed::new("retry").await;
    let key = tb.key("late/LOAD00000001.csv");
    let etag = tb.put(&key, "1,one\n2,two\n").await;
    tb.scan().await;
    // One attempt allowed: the table does not exist yet, so it fails, then dies.
    let run = tb.drain(&["--max-attempts=1"]).await;
    assert_eq!(run.failed, 1, "{run:?}");
    let mut ctx = tb.scan_context(Duration::ZERO);
    ctx.policy.requeue_after = Duration::ZERO;
    ctx.policy.max_attempts = 1;
    let pass = sluice_coordinator::scan::scan(&ctx, false).await.unwrap().0;
    assert_eq!(pass.dead, 1, "{pass:?}");
    assert_eq!(tb.status(&key, &etag).await, Some(Status::Dead));
    // Scans leave it dead; a worker refuses it.
    let pass = sluice_coordinator::scan::scan(&ctx, false).await.unwrap().0;
    assert_eq!(pass.sent, 0);

    tb.sql("CREATE TABLE {s}.late (id int PRIMARY KEY, v text)")
        .await;
    let ops_ = tb.ops("");
    let sel = Selection {
        statuses: ops::RETRY_DEFAULT.to_vec(),
        error: Some("ATTEMPTS".into()),
        ..Default::default()
    };
    let plan = ops::plan_retry(&ops_, &sel).await.unwrap();
    assert_eq!(plan.files.len(), 1, "{}", ops::format_plan(&plan, false));
    assert_eq!(plan.bytes, "1,one\n2,two\n".len() as i64);
    assert!(ops::format_plan(&plan, false).contains("would select 1 files"));
    // Showing changes nothing.
    assert_eq!(tb.status(&key, &etag).await, Some(Status::Dead));
    // An error text that matches nothing selects nothing.
    let none = ops::plan_retry(
        &ops_,
        &Selection {
            error: Some("no such text".into()),
            ..sel.clone()
        },
    )
    .await
    .unwrap();
    assert!(none.files.is_empty());

    let done = ops::apply_retry(&ops_, &plan, "alice", Some("table created"))
        .await
        .unwrap();
    assert_eq!(
        (done.moved, done.sent, done.send_failed),
        (1, 1, 0),
        "{done:?}"
    );
    let item = tb.item(&key, &etag).await;
    assert_eq!(item.status, Some(Status::Queued));
    assert_eq!(
        (item.attempts, item.attempts_before, item.retries),
        (0, 1, 1)
    );
    assert!(item.error.is_none());
    assert!(item.message_id.is_some());
    let op = item.operator.unwrap();
    assert_eq!((op.action.as_str(), op.who.as_str()), ("retry", "alice"));
    assert!(
        item.history
            .last()
            .unwrap()
            .contains("queued (retry by alice: table created)"),
        "{:?}",
        item.history
    );
    // Applying the same plan again is refused: the items changed since they were listed.
    let again = ops::apply_retry(&ops_, &plan, "alice", None).await.unwrap();
    assert_eq!((again.moved, again.refused.len()), (0, 1));

    // Still one attempt allowed: the fresh round makes it the first.
    let run = tb.drain(&["--max-attempts=1"]).await;
    assert_eq!(run.loaded, 1, "{run:?}");
    assert_eq!(tb.status(&key, &etag).await, Some(Status::Loaded));
    assert_eq!(tb.count("SELECT count(*) FROM {s}.late").await, 2);
    let r = reconcile::report(&ops_, &opts(Duration::ZERO, true))
        .await
        .unwrap();
    assert!(r.entries.is_empty(), "{}", reconcile::format(&r));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_loads_a_table_again_and_restores_rows_edited_by_hand() {
    let tb = TestBed::new("reload").await;
    tb.sql(
        "CREATE TABLE {s}.r (id int PRIMARY KEY, v text); CREATE TABLE {s}.other (id int PRIMARY KEY, v text)",
    )
    .await;
    let k1 = tb.key("r/LOAD00000001.csv");
    let e1 = tb.put(&k1, "1,one\n2,two\n").await;
    let k2 = tb.key("r/LOAD00000002.csv");
    tb.put(&k2, "3,three\n").await;
    let ko = tb.key("other/LOAD00000001.csv");
    let eo = tb.put(&ko, "1,x\n").await;
    tb.scan().await;
    assert_eq!(tb.drain(&[]).await.loaded, 3);
    let want = tb.rows("SELECT id::text, v FROM {s}.r ORDER BY id").await;
    tb.sql("UPDATE {s}.r SET v = 'edited by hand' WHERE id = 1; DELETE FROM {s}.r WHERE id = 3")
        .await;
    let other_file_id = tb
        .rows(&format!(
            "SELECT file_id::text FROM \"{}\".ledger WHERE key = '{ko}'",
            tb.state_schema
        ))
        .await;

    let ops_ = tb.ops("");
    let table = format!("{}.r", tb.schema);
    // Without a table or a prefix, reload refuses.
    assert!(ops::plan_reload(
        &ops_,
        &Selection {
            statuses: vec![Status::Loaded],
            ..Default::default()
        }
    )
    .await
    .is_err());
    let sel = Selection {
        statuses: vec![Status::Loaded],
        scope: Scope {
            table: Some(table.clone()),
            prefix: None,
        },
        ..Default::default()
    };
    let plan = ops::plan_reload(&ops_, &sel).await.unwrap();
    assert_eq!(plan.files.len(), 2, "{}", ops::format_plan(&plan, false));
    assert!(plan.notes[0].contains("table-index"), "{:?}", plan.notes);
    let done = ops::apply_reload(&ops_, &plan, "bob", None).await.unwrap();
    assert_eq!(
        (done.ledger_rows_deleted, done.moved, done.sent),
        (2, 2, 2),
        "{done:?}"
    );
    assert_eq!(tb.ledger_count(&k1).await, 0);
    let item = tb.item(&k1, &e1).await;
    assert_eq!(item.status, Some(Status::Queued));
    assert!(
        item.history.last().unwrap().contains("(reload by bob)"),
        "{:?}",
        item.history
    );
    assert_eq!(item.attempts, 0);

    let run = tb.drain(&[]).await;
    assert_eq!(run.loaded, 2, "{run:?}");
    assert_eq!(
        tb.rows("SELECT id::text, v FROM {s}.r ORDER BY id").await,
        want,
        "rows edited by hand are restored"
    );
    assert_eq!(tb.ledger_count(&k1).await, 1);
    assert_eq!(tb.ledger_count(&k2).await, 1);
    assert_eq!(tb.status(&k1, &e1).await, Some(Status::Loaded));
    // The other table was not touched.
    assert_eq!(tb.status(&ko, &eo).await, Some(Status::Loaded));
    assert_eq!(
        tb.rows(&format!(
            "SELECT file_id::text FROM \"{}\".ledger WHERE key = '{ko}'",
            tb.state_schema
        ))
        .await,
        other_file_id
    );

    // A prefix wider than one table goes through the ledger.
    let wide = Selection {
        statuses: vec![Status::Loaded],
        scope: Scope {
            table: None,
            prefix: Some(format!("{}{}/", tb.prefix, tb.schema)),
        },
        ..Default::default()
    };
    let plan = ops::plan_reload(&ops_, &wide).await.unwrap();
    assert_eq!(plan.files.len(), 3, "{}", ops::format_plan(&plan, false));
    assert!(
        plan.notes[0].contains("through the ledger"),
        "{:?}",
        plan.notes
    );
    // A time range that ends before the loads selects nothing.
    let old = Selection {
        until: Some("2000-01-01T00:00:00.000Z".into()),
        ..sel.clone()
    };
    assert!(ops::plan_reload(&ops_, &old)
        .await
        .unwrap()
        .files
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_records_who_and_why_and_nothing_loads_it() {
    let tb = TestBed::new("skip").await;
    tb.sql("CREATE TABLE {s}.s (id int PRIMARY KEY, v text)")
        .await;
    let good = tb.key("s/LOAD00000001.csv");
    let e_good = tb.put(&good, "1,a\n").await;
    let junk = tb.key("s/LOAD00000002.csv");
    let e_junk = tb.put(&junk, "not,a,row,of,this,table\n").await;
    tb.scan().await;
    tb.drain(&[]).await;
    assert_eq!(tb.status(&junk, &e_junk).await, Some(Status::Failed));
    let ops_ = tb.ops("");

    // A loaded file cannot be skipped; a blank reason is refused.
    let loaded = ops::skip(&ops_, &good, None, "why not", "erin")
        .await
        .unwrap();
    assert!(loaded.skipped.is_empty());
    assert_eq!(loaded.left, vec![(e_good.clone(), Some(Status::Loaded))]);
    assert!(ops::skip(&ops_, &junk, None, "  ", "erin").await.is_err());
    assert!(ops::skip(&ops_, &junk, Some("other-etag"), "x", "erin")
        .await
        .is_err());

    let r = ops::skip(
        &ops_,
        &junk,
        Some(&e_junk),
        "sample file from the vendor",
        "erin",
    )
    .await
    .unwrap();
    assert_eq!(r.skipped.len(), 1);
    let item = tb.item(&junk, &e_junk).await;
    assert_eq!(item.status, Some(Status::Skipped));
    let op = item.operator.clone().unwrap();
    assert_eq!(
        (op.action.as_str(), op.who.as_str(), op.reason.as_deref()),
        ("skip", "erin", Some("sample file from the vendor"))
    );
    assert!(item
        .history
        .last()
        .unwrap()
        .contains("skipped (skip by erin: sample file from the vendor)"));

    let rep = reconcile::report(&ops_, &opts(Duration::ZERO, false))
        .await
        .unwrap();
    assert!(rep.entries.is_empty(), "{}", reconcile::format(&rep));
    assert_eq!(rep.skipped.len(), 1);
    assert_eq!(rep.skipped[0].who, "erin");
    assert_eq!(
        reconcile::exit_code(&rep, true),
        0,
        "deliberate skips are no alarm"
    );
    // Scans leave it alone; retry takes it only when asked for skipped files.
    let pass = sluice_coordinator::scan::scan(&tb.scan_context(Duration::ZERO), false)
        .await
        .unwrap()
        .0;
    assert_eq!(pass.sent, 0, "{pass:?}");
    let default = ops::plan_retry(
        &ops_,
        &Selection {
            statuses: ops::RETRY_DEFAULT.to_vec(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(default.files.is_empty());
    let explicit = ops::plan_retry(
        &ops_,
        &Selection {
            statuses: vec![Status::Skipped],
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(explicit.files.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_dlq_moves_messages_back_and_keeps_unreadable_ones() {
    let tb = TestBed::new("dlq").await;
    tb.sql("CREATE TABLE {s}.d (id int PRIMARY KEY, v text)")
        .await;
    let key = tb.key("d/LOAD00000001.csv");
    let etag = tb.put(&key, "1,a\n2,b\n").await;
    tb.scan().await;
    // SQS gave up on the message: move it to the dead-letter queue as its redrive would.
    let got = tb
        .aws
        .sqs
        .receive_message()
        .queue_url(&tb.queue_url)
        .max_number_of_messages(1)
        .send()
        .await
        .unwrap();
    let m = &got.messages()[0];
    tb.aws
        .sqs
        .send_message()
        .queue_url(&tb.dlq_url)
        .message_body(m.body().unwrap())
        .send()
        .await
        .unwrap();
    tb.aws
        .sqs
        .delete_message()
        .queue_url(&tb.queue_url)
        .receipt_handle(m.receipt_handle().unwrap())
        .send()
        .await
        .unwrap();
    tb.aws
        .sqs
        .send_message()
        .queue_url(&tb.dlq_url)
        .message_body("garbage")
        .send()
        .await
        .unwrap();
    let ops_ = tb.ops("");
    let depths = sluice_coordinator::ops::dlq::depths(&tb.aws.sqs, &tb.queue_url)
        .await
        .unwrap();
    assert_eq!((depths.visible, depths.dlq_visible), (0, 2), "{depths:?}");

    // Looking changes nothing.
    let look = sluice_coordinator::ops::dlq::redrive(&ops_, &Scope::default(), "", false)
        .await
        .unwrap();
    assert_eq!((look.moved, look.kept), (1, 1), "{look:?}");
    assert_eq!(tb.queue_depth(&tb.dlq_url).await, (2, 0));
    assert_eq!(tb.queue_depth(&tb.queue_url).await, (0, 0));

    let done = sluice_coordinator::ops::dlq::redrive(&ops_, &Scope::default(), "frank", true)
        .await
        .unwrap();
    assert_eq!((done.moved, done.kept, done.failed), (1, 1, 0), "{done:?}");
    assert_eq!(
        tb.queue_depth(&tb.dlq_url).await,
        (1, 0),
        "the unreadable one stays"
    );
    assert_eq!(tb.queue_depth(&tb.queue_url).await, (1, 0));
    let item = tb.item(&key, &etag).await;
    assert_eq!(item.status, Some(Status::Queued));
    assert!(
        item.history
            .last()
            .unwrap()
            .contains("retry by frank: moved back from the dead-letter queue"),
        "{:?}",
        item.history
    );
    assert!(sluice_coordinator::ops::dlq::format_redrive(&done).contains("keep_unreadable"));
    assert_eq!(tb.drain(&[]).await.loaded, 1);
    assert_eq!(tb.count("SELECT count(*) FROM {s}.d").await, 2);

    // A table's replace message (the queue's other kind) goes back as it is.
    let replace = format!(
        r#"{{"v":1,"kind":"replace","bucket":"{}","schema":"{s}","table":"d","folder":"{p}{s}/d/","generation":"g","start":"g","files":1,"head_key":"{key}","head_etag":"{etag}"}}"#,
        tb.bucket,
        s = tb.schema,
        p = tb.prefix
    );
    tb.aws
        .sqs
        .send_message()
        .queue_url(&tb.dlq_url)
        .message_body(&replace)
        .send()
        .await
        .unwrap();
    let done = sluice_coordinator::ops::dlq::redrive(&ops_, &Scope::default(), "frank", true)
        .await
        .unwrap();
    assert_eq!((done.moved, done.kept), (1, 1), "{done:?}");
    assert!(done.entries.iter().any(|e| e.action == "move_replace"));
    let back = tb
        .aws
        .sqs
        .receive_message()
        .queue_url(&tb.queue_url)
        .max_number_of_messages(10)
        .send()
        .await
        .unwrap();
    let bodies: Vec<&str> = back.messages().iter().filter_map(|m| m.body()).collect();
    assert_eq!(bodies, vec![replace.as_str()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_watch_draws_progress_until_the_backlog_is_drained() {
    let tb = TestBed::new("watch").await;
    tb.sql("CREATE TABLE {s}.w (id int PRIMARY KEY, v text)")
        .await;
    for i in 1..=4 {
        tb.put(
            &tb.key(&format!("w/LOAD0000000{i}.csv")),
            format!("{i},v\n"),
        )
        .await;
    }
    tb.scan().await;
    let ops_ = tb.ops("");
    let opts = status::Options {
        scope: Scope::default(),
        window: Duration::from_secs(600),
        full: false,
    };
    let stop = tokio_util::sync::CancellationToken::new();
    let mut out: Vec<u8> = Vec::new();
    let (last, run) = tokio::join!(
        async {
            tokio::time::timeout(
                Duration::from_secs(120),
                status::watch(&ops_, &opts, Duration::from_secs(1), false, &stop, &mut out),
            )
            .await
            .expect("watch ends once the backlog is drained")
            .unwrap()
        },
        async {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            tb.drain(&[]).await
        }
    );
    assert_eq!(run.loaded, 4);
    assert_eq!(last.total.backlog_files, 0);
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("backlog drained"), "{text}");
    assert!(
        text.contains("0/4 files"),
        "first frame: nothing loaded yet\n{text}"
    );
    assert!(
        text.contains("[##############################] 100%  4/4 files"),
        "{text}"
    );
}
