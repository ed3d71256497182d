//! One coordinator pass: list the lake, diff it against the manifest, write the manifest first,
//! then enqueue in batches of 10.
//!
//! Invariants: a message is sent only for an item already in the manifest. A new file's item is
//! written `queued` before its message is sent (one write per file: [`ManifestStore::record_queued`]),
//! so a crash between the two leaves a `queued` item without a message, which a later pass
//! sends again once it is stale (`--requeue-after`), as it does any stuck item; a send that
//! fails is noted in the item's history. An open item sent again is marked `queued` after its
//! send, with the message id. `--dry-run` reads but writes nothing. Calls that are one per file or per batch run up to `CONCURRENT_CALLS` at a
//! time, each stage finishing before the next starts (all new items are written before the
//! first message is sent).
//!
//! DynamoDB reads are proportional to what changed: the listing checkpoints
//! ([`sluice_common::checkpoint`]) vouch for the unchanged runs of the listing, and the pass
//! reads (100 per `BatchGetItem`) only the pairs no checkpoint vouches for, plus every
//! full-load (`LOAD`) file, whose item the generation bookkeeping needs. Then one query per
//! unknown key (new or changed?), except for keys that sort after every key their table
//! folder's checkpoints vouch for while no S3 events are read: no completed pass recorded
//! those, so they are new (a rewrite recorded only by a pass that crashed before its
//! checkpoints, or by a concurrent one, is then counted new, not changed: loaded all the same).
//! Then the open items from the sparse index, and one query for the
//! checkpoints. Once every listed pair is in the manifest, the pass writes the checkpoints of
//! this listing. `--full` reads every listed pair (and rewrites the checkpoints): the answer
//! if manifest items were ever deleted by hand.
//!
//! S3 reads can be proportional to what changed too: with [`PassOptions::tail`], each table
//! folder is listed from after the keys its checkpoints vouch for ([`crate::tail`]); the
//! checkpoints of what was not listed are carried over unchanged. A full listing (without
//! `tail`) catches what a tail listing cannot see.

use crate::error::CoordinatorError;
use crate::generation::{plan_generations, GenerationPlan};
use crate::listing::{list_objects, Listed};
use crate::plan::{plan, Candidate, Plan, PlanInput, Policy};
use crate::tail;
use futures_util::{stream, StreamExt, TryStreamExt};
use serde::Serialize;
use sluice_common::checkpoint::{self, Checkpoint};
use sluice_common::config::SourceLocation;
use sluice_common::manifest::{Changes, NewFile};
use sluice_common::manifest::{ManifestItem, Status, Transition};
use sluice_common::mapping::FileKind;
use sluice_common::message::{FileMessage, ReplaceMessage, MESSAGE_VERSION};
use sluice_common::store::CONCURRENT_CALLS;
use sluice_common::store::{Annotation, ManifestStore};
use sluice_common::timefmt;
use std::collections::HashSet;
use tracing::{info, warn};

/// What a pass needs.
pub struct ScanContext {
    pub s3: aws_sdk_s3::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub store: ManifestStore,
    pub source: SourceLocation,
    pub queue_url: String,
    pub policy: Policy,
}

/// A pass's figures (`--json` prints this).
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct ScanSummary {
    pub listed: usize,
    pub new: usize,
    pub changed: usize,
    pub requeued: usize,
    pub unchanged: usize,
    pub dead: usize,
    pub unloadable: usize,
    pub sent: usize,
    pub send_failed: usize,
    /// Tables whose newest full-load generation is not replaced yet.
    pub generations_in_progress: usize,
    /// Replace messages sent for complete generations.
    pub replacements_sent: usize,
    /// Listed pairs read from the manifest (`BatchGetItem`).
    pub read: usize,
    /// Listed pairs a checkpoint vouched for (not read).
    pub vouched: usize,
    /// Unknown pairs whose key was queried for other ETags (new or changed?).
    pub asked: usize,
    /// Unknown pairs past their table folder's checkpoints, new without a query.
    pub past_checkpoints: usize,
    /// Checkpoint items written or deleted.
    pub checkpoints_written: usize,
    /// `ListObjectsV2` calls of the listing.
    pub list_calls: usize,
    /// Whether each table folder was listed from after its checkpoints (`StartAfter`), not
    /// from its first key.
    pub tail_listing: bool,
    /// New files found by this pass although S3 events are on (their event was missed).
    pub missed_events: usize,
    pub dry_run: bool,
}

/// How a pass runs.
#[derive(Debug, Default, Clone, Copy)]
pub struct PassOptions {
    /// Read, plan and report; write nothing.
    pub dry_run: bool,
    /// Ignore the checkpoints: read every listed pair (and list the whole lake).
    pub full: bool,
    /// List each table folder from after the last key its checkpoints vouch for
    /// ([`crate::tail`]), not the whole lake.
    pub tail: bool,
    /// Set when S3 events are read between passes: a file this pass finds new that landed
    /// longer ago than this ([`crate::events::GRACE`]) is a missed event, noted and counted.
    pub missed_event_grace: Option<std::time::Duration>,
}

/// A listing diffed against the manifest.
pub struct Diff {
    pub listing: Vec<Listed>,
    pub plan: Plan,
    /// The checkpoints read at the start.
    pub checkpoints: Vec<Checkpoint>,
    pub read: usize,
    pub vouched: usize,
    /// Unknown pairs whose key was queried for other ETags.
    pub asked: usize,
    /// Unknown pairs past their folder's checkpoints, taken as new without a query.
    pub past: usize,
    /// Checkpoints of the pairs a tail listing left unlisted, kept as they are.
    pub carried: Vec<Checkpoint>,
    pub list_calls: usize,
    pub tail_listing: bool,
}

/// Lists every object under the source prefix, paginated, each key mapped.
pub async fn list(ctx: &ScanContext) -> Result<Vec<Listed>, CoordinatorError> {
    let prefix = &ctx.source.prefix;
    list_objects(&ctx.s3, &ctx.source.bucket, prefix, prefix).await
}

/// Builds the plan from a fresh listing and the manifest.
pub async fn make_plan(ctx: &ScanContext) -> Result<(Vec<Listed>, Plan), CoordinatorError> {
    let d = diff(ctx, false).await?;
    Ok((d.listing, d.plan))
}

/// The pairs the checkpoints cover: every listed object but folder markers, which the
/// manifest never records.
fn checkpoint_pairs(listing: &[Listed]) -> (Vec<usize>, Vec<(&str, &str)>) {
    listing
        .iter()
        .enumerate()
        .filter(|(_, o)| !o.is_folder())
        .map(|(i, o)| (i, (o.key.as_str(), o.etag.as_str())))
        .unzip()
}

/// Lists the lake and diffs it against the manifest; `full` ignores the checkpoints.
pub async fn diff(ctx: &ScanContext, full: bool) -> Result<Diff, CoordinatorError> {
    let options = PassOptions {
        full,
        ..PassOptions::default()
    };
    diff_with(ctx, &options).await
}

/// Lists the lake (whole, or each table folder's tail) and diffs it against the manifest.
pub async fn diff_with(ctx: &ScanContext, options: &PassOptions) -> Result<Diff, CoordinatorError> {
    let full = options.full;
    let checkpoints = ctx
        .store
        .read_checkpoints(&ctx.source.bucket, &ctx.source.prefix)
        .await?;
    let (bucket, prefix) = (&ctx.source.bucket, &ctx.source.prefix);
    let tail_listing = options.tail && !full;
    let (listing, list_calls, carried) = if tail_listing {
        let t = crate::tail::list_tail(&ctx.s3, bucket, prefix, &checkpoints).await?;
        (t.objects, t.calls, t.carried)
    } else {
        let request = crate::listing::ListRequest {
            prefix,
            start_after: None,
            delimiter: false,
        };
        let l = crate::listing::list_range(&ctx.s3, bucket, prefix, &request).await?;
        (l.objects, l.calls, Vec::new())
    };
    let mut vouched = vec![false; listing.len()];
    if !full {
        let (index, pairs) = checkpoint_pairs(&listing);
        let coverage = checkpoint::cover(&pairs, &checkpoints);
        for (i, covered) in index.into_iter().zip(coverage.covered) {
            vouched[i] = covered;
        }
    }
    let is_full_load =
        |o: &Listed| matches!(&o.file, Ok(f) if matches!(f.kind, FileKind::FullLoad { .. }));
    let pairs: Vec<(String, String)> = listing
        .iter()
        .zip(&vouched)
        .filter(|(o, v)| !**v || is_full_load(o))
        .map(|(o, _)| (o.key.clone(), o.etag.clone()))
        .collect();
    let known = ctx.store.lookup(&pairs).await?;
    let unknown: Vec<&Listed> = listing
        .iter()
        .zip(&vouched)
        .filter(|(o, v)| {
            !**v && !o.is_folder() && !known.contains_key(&(o.key.clone(), o.etag.clone()))
        })
        .map(|(o, _)| o)
        .collect();
    let told = new_or_changed(ctx, options, &checkpoints, unknown).await?;
    let others = told.changed;
    let mut open = Vec::new();
    for status in [
        Status::Discovered,
        Status::Queued,
        Status::Loading,
        Status::Failed,
    ] {
        open.extend(ctx.store.list_open(status, None).await?);
    }
    let now = time::OffsetDateTime::now_utc();
    let input = PlanInput {
        listing: &listing,
        known: &known,
        vouched: &vouched,
        keys_with_other_etags: &others,
        open: &open,
        now,
    };
    let mut p = plan(&input, ctx.policy);
    p.backlog = crate::plan::backlog(&open, now);
    p.backlog.landed = crate::freshness::landings(
        listing
            .iter()
            .filter_map(|o| Some((o.source_table()?, o.last_modified.as_str()))),
    );
    p.generations = plan_generations(
        &ctx.source.prefix,
        &listing,
        &known,
        now,
        ctx.policy.generation_quiet,
        ctx.policy.requeue_after,
    );
    let vouched_count = vouched.iter().filter(|v| **v).count();
    Ok(Diff {
        read: pairs.len(),
        asked: told.asked,
        past: told.past,
        vouched: vouched_count,
        listing,
        plan: p,
        checkpoints,
        carried,
        list_calls,
        tail_listing,
    })
}

/// New or changed? Keys of the `unknown` pairs that the manifest holds under another ETag, with
/// the pairs asked and those taken as new unasked. A query per key, but for keys past their
/// folder's checkpoints when no S3 events are read: no completed pass recorded those
/// ([`tail::past_vouched`]).
async fn new_or_changed(
    ctx: &ScanContext,
    options: &PassOptions,
    checkpoints: &[Checkpoint],
    unknown: Vec<&Listed>,
) -> Result<Told, CoordinatorError> {
    let prefix = &ctx.source.prefix;
    let ends = if !options.full && options.missed_event_grace.is_none() {
        tail::vouched_ends(prefix, checkpoints)
    } else {
        Default::default()
    };
    let (ask, past): (Vec<&Listed>, Vec<&Listed>) = unknown
        .into_iter()
        .partition(|o| !tail::past_vouched(&ends, prefix, o));
    Ok(Told {
        asked: ask.len(),
        past: past.len(),
        changed: keys_with_other_etags(ctx, ask).await?,
    })
}

/// What [`new_or_changed`] found.
struct Told {
    /// Keys the manifest holds under another ETag.
    changed: HashSet<String>,
    asked: usize,
    past: usize,
}

/// Keys of `unknown` pairs that the manifest holds under another ETag (one query per key).
async fn keys_with_other_etags(
    ctx: &ScanContext,
    unknown: Vec<&Listed>,
) -> Result<HashSet<String>, CoordinatorError> {
    Ok(stream::iter(unknown)
        .map(|o| async move {
            let etags = ctx.store.etags_of(&o.key).await?;
            Ok::<_, sluice_common::error::Error>(
                etags.iter().any(|e| *e != o.etag).then(|| o.key.clone()),
            )
        })
        .buffer_unordered(CONCURRENT_CALLS)
        .try_collect::<Vec<_>>()
        .await?
        .into_iter()
        .flatten()
        .collect())
}

/// What [`admit`] did with the objects it was given.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Admitted {
    /// Items this call wrote (`queued`), new or changed files.
    pub recorded: usize,
    /// Of the candidates, those whose key the manifest holds under another ETag (a rewrite).
    pub changed: usize,
    /// Messages sent for them (the rest wait, `queued` with a note, to be sent again once stale).
    pub sent: usize,
    pub send_failed: usize,
    /// Pairs the manifest already held, or that another writer recorded first.
    pub duplicate: usize,
    /// Objects that name no loadable file, recorded `dead` with the reason.
    pub unloadable: usize,
}

/// What a pass does for the pairs it finds new, for objects found another way (an S3 event):
/// the same plan over them (known pairs cost nothing, a known key with another ETag is a
/// change), the same conditional manifest writes first, then the messages of the items this
/// call wrote, then the marks. So an object that a pass, another event or this one already
/// recorded is never enqueued twice. Open items, checkpoints and generations stay the pass's.
pub async fn admit(ctx: &ScanContext, objects: &[Listed]) -> Result<Admitted, CoordinatorError> {
    let pairs: Vec<(String, String)> = objects
        .iter()
        .filter(|o| !o.is_folder())
        .map(|o| (o.key.clone(), o.etag.clone()))
        .collect();
    let known = ctx.store.lookup(&pairs).await?;
    let unknown: Vec<&Listed> = objects
        .iter()
        .filter(|o| !o.is_folder() && !known.contains_key(&(o.key.clone(), o.etag.clone())))
        .collect();
    let others = keys_with_other_etags(ctx, unknown).await?;
    let input = PlanInput {
        listing: objects,
        known: &known,
        vouched: &[],
        keys_with_other_etags: &others,
        open: &[],
        now: time::OffsetDateTime::now_utc(),
    };
    let p = plan(&input, ctx.policy);
    let to_send = record_new(ctx, &p).await?;
    record_unloadable(ctx, &p).await?;
    let (sent, send_failed) = enqueue(ctx, &to_send, Sending::Recorded).await?;
    let candidates = p.new.len() + p.changed.len();
    Ok(Admitted {
        recorded: to_send.len(),
        changed: p.changed.len(),
        sent,
        send_failed,
        duplicate: p.unchanged + candidates - to_send.len(),
        unloadable: p.unloadable.len(),
    })
}

/// One pass.
pub async fn scan(
    ctx: &ScanContext,
    dry_run: bool,
) -> Result<(ScanSummary, Plan), CoordinatorError> {
    pass(
        ctx,
        PassOptions {
            dry_run,
            ..PassOptions::default()
        },
    )
    .await
}

/// One pass, with its options.
pub async fn pass(
    ctx: &ScanContext,
    options: PassOptions,
) -> Result<(ScanSummary, Plan), CoordinatorError> {
    let d = diff_with(ctx, &options).await?;
    let p = &d.plan;
    let mut summary = ScanSummary {
        read: d.read,
        vouched: d.vouched,
        asked: d.asked,
        past_checkpoints: d.past,
        listed: d.listing.len(),
        new: p.new.len(),
        changed: p.changed.len(),
        requeued: p.requeue.len(),
        unchanged: p.unchanged,
        dead: p.give_up.len(),
        unloadable: p.unloadable.len(),
        generations_in_progress: p
            .generations
            .iter()
            .filter(|g| g.generation.in_progress())
            .count(),
        dry_run: options.dry_run,
        list_calls: d.list_calls,
        tail_listing: d.tail_listing,
        ..ScanSummary::default()
    };
    if options.dry_run {
        return Ok((summary, d.plan));
    }
    // Manifest first: every new item is written before any message is sent.
    let to_send = record_new(ctx, p).await?;
    if let Some(grace) = options.missed_event_grace {
        summary.missed_events = crate::events::note_missed(ctx, &to_send, grace).await;
    }
    let mut again = Vec::new();
    for item in &p.requeue {
        match message_for_item(&ctx.source, item) {
            Some(m) => again.push(m),
            None => warn!(key = %item.key, "open item no longer maps to a table; not re-enqueued"),
        }
    }
    record_unloadable(ctx, p).await?;
    // Every listed pair is in the manifest now: remember this listing.
    let (_, pairs) = checkpoint_pairs(&d.listing);
    // Plus, after a tail listing, the checkpoints of what it did not list.
    let mut next = checkpoint::build(&pairs, &d.checkpoints);
    next.extend(d.carried.iter().cloned());
    summary.checkpoints_written = ctx
        .store
        .write_checkpoints(
            &ctx.source.bucket,
            &ctx.source.prefix,
            &d.checkpoints,
            &next,
        )
        .await?;
    give_up(ctx, p).await?;
    let (sent, failed) = enqueue(ctx, &to_send, Sending::Recorded).await?;
    let (sent_again, failed_again) = enqueue(ctx, &again, Sending::Again).await?;
    (summary.sent, summary.send_failed) = (sent + sent_again, failed + failed_again);
    summary.replacements_sent = generations(ctx, &p.generations).await?;
    info!(
        listed = summary.listed,
        new = summary.new,
        changed = summary.changed,
        requeued = summary.requeued,
        unchanged = summary.unchanged,
        dead = summary.dead,
        unloadable = summary.unloadable,
        sent = summary.sent,
        send_failed = summary.send_failed,
        generations_in_progress = summary.generations_in_progress,
        replacements_sent = summary.replacements_sent,
        read = summary.read,
        vouched = summary.vouched,
        asked = summary.asked,
        past_checkpoints = summary.past_checkpoints,
        checkpoints_written = summary.checkpoints_written,
        list_calls = summary.list_calls,
        tail_listing = summary.tail_listing,
        "scan pass done"
    );
    Ok((summary, d.plan))
}

/// Writes the new and changed files' items, `queued` (their messages are sent next); returns
/// the messages of those this pass wrote (an item another coordinator wrote first is its to
/// send).
async fn record_new(ctx: &ScanContext, p: &Plan) -> Result<Vec<FileMessage>, CoordinatorError> {
    let messages = stream::iter(p.new.iter().chain(&p.changed))
        .map(|c| async move {
            let recorded = ctx.store.record_queued(&new_file(ctx, c)).await?;
            Ok::<_, sluice_common::error::Error>(recorded.then(|| message_for(ctx, c)))
        })
        .buffered(CONCURRENT_CALLS)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(messages.into_iter().flatten().collect())
}

/// Records each object that names no loadable file as `dead`, with the reason.
async fn record_unloadable(ctx: &ScanContext, p: &Plan) -> Result<(), CoordinatorError> {
    for (object, reason) in &p.unloadable {
        let file = NewFile {
            bucket: ctx.source.bucket.clone(),
            key: object.key.clone(),
            etag: object.etag.clone(),
            size: object.size,
            last_modified: object.last_modified.clone(),
            table: String::new(),
            kind: "unloadable".to_owned(),
        };
        if ctx.store.record_discovered(&file).await? {
            let message = format!("not loadable: {reason}");
            ctx.store
                .give_up(&object.key, &object.etag, message, "unloadable_key", None)
                .await?;
            warn!(key = %object.key, reason = %reason, "object is not a loadable file; recorded as dead");
        }
    }
    Ok(())
}

/// Marks the files that failed at the attempt limit `dead`, with their last error.
async fn give_up(ctx: &ScanContext, p: &Plan) -> Result<(), CoordinatorError> {
    for item in &p.give_up {
        let last = item
            .error
            .as_ref()
            .map(|e| e.message.clone())
            .unwrap_or_else(|| "none recorded".to_owned());
        let message = format!(
            "gave up after {} attempts; last error: {last}",
            item.attempts
        );
        ctx.store
            .give_up(&item.key, &item.etag, message, "attempts_exhausted", None)
            .await?;
        warn!(key = %item.key, etag = %item.etag, attempts = item.attempts, "file is dead");
    }
    Ok(())
}

/// Whose messages [`enqueue`] sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sending {
    /// Files this call recorded `queued` ([`record_new`]): nothing to mark once sent; one whose
    /// send fails gets a note in its history, and a later pass sends it again once stale.
    Recorded,
    /// Open items sent again: each sent one is marked `queued` (`Enqueue`) with its message id.
    Again,
}

/// Sends the messages, 10 per call; for [`Sending::Again`], marks each sent file `queued`
/// (batches and marks run side by side). Returns the messages sent and those that failed.
async fn enqueue(
    ctx: &ScanContext,
    to_send: &[FileMessage],
    sending: Sending,
) -> Result<(usize, usize), CoordinatorError> {
    let batches: Vec<(usize, usize)> = stream::iter(to_send.chunks(10))
        .map(|batch| async move {
            let (sent, failed) = send_batch(&ctx.sqs, &ctx.queue_url, batch).await;
            let counts = (sent.len(), failed.len());
            match sending {
                Sending::Again => mark_queued(ctx, sent).await?,
                Sending::Recorded => note_unsent(ctx, failed).await,
            }
            Ok::<_, sluice_common::error::Error>(counts)
        })
        .buffer_unordered(CONCURRENT_CALLS / 4)
        .try_collect()
        .await?;
    Ok(batches
        .into_iter()
        .fold((0, 0), |(s, f), (sent, failed)| (s + sent, f + failed)))
}

/// Marks sent files `queued`, with their message ids.
async fn mark_queued(
    ctx: &ScanContext,
    sent: Vec<(FileMessage, String)>,
) -> Result<(), sluice_common::error::Error> {
    stream::iter(sent)
        .map(|(m, message_id)| async move {
            let changes = Changes {
                message_id: Some(message_id),
                ..Changes::default()
            };
            // Refused means a worker already claimed it: fine.
            ctx.store
                .transition(&m.key, &m.etag, Transition::Enqueue, changes)
                .await
                .map(|_| ())
        })
        .buffer_unordered(CONCURRENT_CALLS)
        .try_collect::<Vec<()>>()
        .await
        .map(|_| ())
}

/// How the history note of a file whose message a pass could not send begins (`skipped` reads
/// it).
pub const UNSENT_NOTE: &str = "message not sent";

/// Notes in each recorded file's history that its message was not sent, and why. A note that
/// cannot be written is logged, not a failed pass: the item is `queued` all the same and is
/// sent again once stale.
async fn note_unsent(ctx: &ScanContext, failed: Vec<(FileMessage, String)>) {
    for (m, why) in failed {
        let note = format!(
            "{UNSENT_NOTE} ({why}); a pass sends it again once the item is stale (--requeue-after)"
        );
        if let Err(e) = ctx.store.annotate(&m.key, &m.etag, &[], Some(&note)).await {
            warn!(key = %m.key, etag = %m.etag, error = %e,
                "message not sent, and the note saying so not written; the item is sent again once stale");
        }
    }
}

/// Names each generation's files in the manifest, and asks a worker to replace the rows of
/// every complete generation (recording when it asked). Returns the messages sent.
async fn generations(
    ctx: &ScanContext,
    plans: &[GenerationPlan],
) -> Result<usize, CoordinatorError> {
    let mut sent = 0;
    for plan in plans {
        let g = &plan.generation;
        for (key, etag) in &plan.unlabelled {
            ctx.store
                .annotate(
                    key,
                    etag,
                    &[("generation", Annotation::Text(g.label.clone()))],
                    None,
                )
                .await?;
        }
        if !plan.send_replace {
            continue;
        }
        let message = ReplaceMessage {
            v: MESSAGE_VERSION,
            kind: "replace".to_owned(),
            bucket: ctx.source.bucket.clone(),
            schema: g.schema.clone(),
            table: g.table.clone(),
            folder: g.folder.clone(),
            generation: g.label.clone(),
            start: g.start.clone(),
            files: g.members.len() as u64,
            head_key: g.head.key.clone(),
            head_etag: g.head.etag.clone(),
        };
        let result = ctx
            .sqs
            .send_message()
            .queue_url(&ctx.queue_url)
            .message_body(message.to_body())
            .send()
            .await;
        match result {
            Ok(_) => {
                sent += 1;
                ctx.store
                    .annotate(
                        &g.head.key,
                        &g.head.etag,
                        &[("replace_sent_at", Annotation::Text(timefmt::now()))],
                        plan.replace_note().as_deref(),
                    )
                    .await?;
                info!(table = %g.source_table(), generation = %g.label, files = g.members.len(), "full-load generation complete; replacement asked");
            }
            Err(e) => warn!(
                table = %g.source_table(),
                error = %sluice_common::error::sdk_error_text(&e),
                "replace message not sent; the next pass asks again"
            ),
        }
    }
    Ok(sent)
}

fn new_file(ctx: &ScanContext, c: &Candidate) -> NewFile {
    NewFile {
        bucket: ctx.source.bucket.clone(),
        key: c.object.key.clone(),
        etag: c.object.etag.clone(),
        size: c.object.size,
        last_modified: c.object.last_modified.clone(),
        table: c.file.source_table(),
        kind: c.file.kind.as_str().to_owned(),
    }
}

fn message_for(ctx: &ScanContext, c: &Candidate) -> FileMessage {
    FileMessage {
        v: MESSAGE_VERSION,
        bucket: ctx.source.bucket.clone(),
        key: c.object.key.clone(),
        etag: c.object.etag.clone(),
        size: c.object.size,
        last_modified: c.object.last_modified.clone(),
        file: c.file.clone(),
    }
}

/// The message for a manifest item (the same one the first pass sent); None when its key no
/// longer maps to a table under the lake's prefix. The item holds the key as text, so this is
/// where a file that comes back from the manifest (not from a listing) is mapped.
pub fn message_for_item(source: &SourceLocation, item: &ManifestItem) -> Option<FileMessage> {
    let file = sluice_common::mapping::map_key(&source.prefix, &item.key).ok()?;
    Some(FileMessage {
        v: MESSAGE_VERSION,
        bucket: if item.bucket.is_empty() {
            source.bucket.clone()
        } else {
            item.bucket.clone()
        },
        key: item.key.clone(),
        etag: item.etag.clone(),
        size: item.size,
        last_modified: item.last_modified.clone(),
        file,
    })
}

/// Sends up to 10 messages; returns the sent ones with their ids, and the failed ones with why.
pub async fn send_batch(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    batch: &[FileMessage],
) -> (Vec<(FileMessage, String)>, Vec<(FileMessage, String)>) {
    use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
    let entries: Vec<SendMessageBatchRequestEntry> = batch
        .iter()
        .enumerate()
        .map(|(i, m)| {
            SendMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .message_body(m.to_body())
                .build()
                .expect("id and body are set")
        })
        .collect();
    let result = sqs
        .send_message_batch()
        .queue_url(queue_url)
        .set_entries(Some(entries))
        .send()
        .await;
    let entry = |id: &str| id.parse::<usize>().ok().and_then(|i| batch.get(i)).cloned();
    match result {
        Ok(out) => {
            let failed = out
                .failed()
                .iter()
                .filter_map(|f| {
                    let why = format!("{}: {}", f.code(), f.message().unwrap_or_default());
                    warn!(entry = f.id(), error = %why, "message not sent");
                    Some((entry(f.id())?, why))
                })
                .collect();
            let sent = out
                .successful()
                .iter()
                .filter_map(|s| Some((entry(s.id())?, s.message_id().to_owned())))
                .collect();
            (sent, failed)
        }
        Err(e) => {
            let why = sluice_common::error::sdk_error_text(&e);
            warn!(error = %why, count = batch.len(), "batch not sent");
            let failed = batch.iter().map(|m| (m.clone(), why.clone())).collect();
            (Vec::new(), failed)
        }
    }
}
