//! Full-load generations: which `LOAD` files of a table belong to its newest full load, and
//! when that load is complete so the worker can remove the rows it did not contain. Pure.
//!
//! The rule (stated in the README):
//! - a table's newest generation starts with its newest `LOAD00000001` object (DMS starts every
//!   full load, first or reload, at 1); its start is that object's LastModified. Without a
//!   `LOAD00000001`, the oldest `LOAD` file starts it;
//! - its members are the table's `LOAD` files modified at or after the start (files of older
//!   loads that DMS left behind are not members; same keys with new ETags are);
//! - it is complete when every member is `loaded` in the manifest and no member was modified
//!   for the quiet period (DMS may still be writing the generation);
//! - a complete generation is replaced once: the coordinator sends one replace message and
//!   records `replace_sent_at` on the first file's item, and asks again only after
//!   `requeue_after` without a `replaced_at`. Only the first ask is noted in the first file's
//!   history ([`GenerationPlan::replace_note`]): asking again changes nothing worth a line, and
//!   the history stays short however long the generation waits.
//!
//! Invariant: a generation is never declared complete while any member is unknown to the
//! manifest or not `loaded`.

use crate::listing::Listed;
use sluice_common::manifest::{ManifestItem, Status};
use sluice_common::mapping::FileKind;
use sluice_common::timefmt;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use time::OffsetDateTime;

/// A table's newest full-load generation, as the listing and the manifest show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generation {
    pub schema: String,
    pub table: String,
    /// Key prefix of the table's folder.
    pub folder: String,
    /// RFC 3339: LastModified of its first file.
    pub start: String,
    /// Its name: the head item's recorded name (an operator's `refresh@...`), else `start`.
    pub label: String,
    /// Its first file.
    pub head: Listed,
    pub members: Vec<Listed>,
    /// Members `loaded` in the manifest.
    pub loaded: usize,
    /// LastModified of its newest member.
    pub newest: String,
    pub replaced: bool,
}

impl Generation {
    pub fn source_table(&self) -> String {
        format!("{}.{}", self.schema, self.table)
    }

    pub fn in_progress(&self) -> bool {
        !self.replaced
    }
}

/// What a pass does about one generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerationPlan {
    pub generation: Generation,
    /// Members whose manifest item does not name the generation yet.
    pub unlabelled: Vec<(String, String)>,
    /// Send the replace message now.
    pub send_replace: bool,
    /// The replacement was asked before (the first file records `replace_sent_at`).
    pub asked_before: bool,
}

impl GenerationPlan {
    /// The history note of a replace ask: the first ask only; asking again changes nothing the
    /// history should repeat.
    pub fn replace_note(&self) -> Option<String> {
        let g = &self.generation;
        (!self.asked_before).then(|| {
            format!(
                "generation {} complete ({} files): replacement asked",
                g.label,
                g.members.len()
            )
        })
    }
}

/// The newest generation of every table with `LOAD` files, and what to do about each.
pub fn plan_generations(
    prefix: &str,
    listing: &[Listed],
    known: &HashMap<(String, String), ManifestItem>,
    now: OffsetDateTime,
    quiet: Duration,
    requeue_after: Duration,
) -> Vec<GenerationPlan> {
    let mut tables: BTreeMap<(String, String), Vec<(&Listed, u64)>> = BTreeMap::new();
    for o in listing {
        if let Ok(f) = &o.file {
            if let FileKind::FullLoad { sequence } = f.kind {
                tables
                    .entry((f.schema.clone(), f.table.clone()))
                    .or_default()
                    .push((o, sequence));
            }
        }
    }
    let item = |o: &Listed| known.get(&(o.key.clone(), o.etag.clone()));
    let older_than = |at: Option<&str>, d: Duration| {
        at.and_then(|a| timefmt::age(a, now))
            .is_none_or(|age| age >= time::Duration::try_from(d).unwrap_or(time::Duration::MAX))
    };
    let mut plans = Vec::new();
    for ((schema, table), files) in tables {
        let head = files
            .iter()
            .filter(|(_, seq)| *seq == 1)
            .max_by(|a, b| (&a.0.last_modified, &a.0.key).cmp(&(&b.0.last_modified, &b.0.key)))
            .or_else(|| {
                files.iter().min_by(|a, b| {
                    (&a.0.last_modified, &a.0.key).cmp(&(&b.0.last_modified, &b.0.key))
                })
            })
            .map(|(o, _)| (*o).clone())
            .expect("a table here has at least one LOAD file");
        let start = head.last_modified.clone();
        let members: Vec<Listed> = files
            .iter()
            .filter(|(o, _)| o.last_modified >= start)
            .map(|(o, _)| (*o).clone())
            .collect();
        let head_item = item(&head);
        let label = head_item
            .and_then(|i| i.generation.clone())
            .unwrap_or_else(|| start.clone());
        let loaded = members
            .iter()
            .filter(|o| item(o).and_then(|i| i.status) == Some(Status::Loaded))
            .count();
        let newest = members
            .iter()
            .map(|o| o.last_modified.clone())
            .max()
            .unwrap_or_else(|| start.clone());
        let replaced = head_item.is_some_and(|i| i.replaced_at.is_some());
        let unlabelled = members
            .iter()
            .filter(|o| item(o).is_some_and(|i| i.generation.as_deref() != Some(label.as_str())))
            .map(|o| (o.key.clone(), o.etag.clone()))
            .collect();
        let complete = loaded == members.len() && older_than(Some(&newest), quiet);
        let asked_at = head_item.and_then(|i| i.replace_sent_at.as_deref());
        let send_replace = complete && !replaced && older_than(asked_at, requeue_after);
        plans.push(GenerationPlan {
            generation: Generation {
                folder: format!("{prefix}{schema}/{table}/"),
                schema,
                table,
                start,
                label,
                head,
                members,
                loaded,
                newest,
                replaced,
            },
            unlabelled,
            send_replace,
            asked_before: asked_at.is_some(),
        });
    }
    plans
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn obj(key: &str, etag: &str, at: &str) -> Listed {
        let prefix = if key.starts_with("p/") { "p/" } else { "" };
        Listed::new(prefix, key, etag, 1, at)
    }

    fn item(o: &Listed, status: Status) -> ((String, String), ManifestItem) {
        (
            (o.key.clone(), o.etag.clone()),
            ManifestItem {
                key: o.key.clone(),
                etag: o.etag.clone(),
                status: Some(status),
                ..Default::default()
            },
        )
    }

    const NOW: OffsetDateTime = datetime!(2024-10-29 12:00 UTC);
    const QUIET: Duration = Duration::from_secs(300);
    const REQUEUE: Duration = Duration::from_secs(600);

    #[test]
    fn newest_load_one_starts_the_generation_and_old_leftovers_are_not_members() {
        let old2 = obj("p/s/t/LOAD00000002.csv", "o2", "2024-10-29T09:00:00.000Z");
        let old3 = obj("p/s/t/LOAD00000003.csv", "o3", "2024-10-29T09:00:01.000Z");
        let new1 = obj("p/s/t/LOAD00000001.csv", "n1", "2024-10-29T11:00:00.000Z");
        let new2 = obj(
            "p/s/t/LOAD00000002.csv.gz",
            "n2",
            "2024-10-29T11:00:05.000Z",
        );
        let cdc = obj(
            "p/s/t/20241029-110000000.csv",
            "c",
            "2024-10-29T11:00:06.000Z",
        );
        let listing = vec![old2.clone(), old3, new1.clone(), new2.clone(), cdc];
        let known: HashMap<_, _> = [item(&new1, Status::Loaded), item(&new2, Status::Loaded)]
            .into_iter()
            .collect();
        let plans = plan_generations("p/", &listing, &known, NOW, QUIET, REQUEUE);
        assert_eq!(plans.len(), 1);
        let g = &plans[0].generation;
        assert_eq!(
            (g.schema.as_str(), g.table.as_str(), g.folder.as_str()),
            ("s", "t", "p/s/t/")
        );
        assert_eq!(g.start, "2024-10-29T11:00:00.000Z");
        assert_eq!(g.label, g.start);
        assert_eq!(g.members, vec![new1.clone(), new2.clone()]);
        assert_eq!(
            (g.loaded, g.newest.as_str()),
            (2, "2024-10-29T11:00:05.000Z")
        );
        assert!(plans[0].send_replace, "complete and quiet");
        assert_eq!(plans[0].unlabelled.len(), 2);
    }

    #[test]
    fn incomplete_noisy_replaced_or_recently_asked_generations_send_nothing() {
        let a = obj("s/t/LOAD00000001.csv", "a", "2024-10-29T11:00:00.000Z");
        let b = obj("s/t/LOAD00000002.csv", "b", "2024-10-29T11:58:00.000Z");
        let listing = vec![a.clone(), b.clone()];
        let mut known: HashMap<_, _> = [item(&a, Status::Loaded), item(&b, Status::Queued)]
            .into_iter()
            .collect();
        let send = |known: &HashMap<_, _>, quiet| {
            plan_generations("", &listing, known, NOW, quiet, REQUEUE)[0].send_replace
        };
        assert!(!send(&known, Duration::ZERO), "a member is not loaded");
        known.insert(item(&b, Status::Loaded).0, item(&b, Status::Loaded).1);
        assert!(!send(&known, QUIET), "last member written 2 minutes ago");
        assert!(send(&known, Duration::ZERO));
        let head = known
            .get_mut(&("s/t/LOAD00000001.csv".into(), "a".into()))
            .unwrap();
        head.replace_sent_at = Some("2024-10-29T11:55:00.000Z".into());
        assert!(!send(&known, Duration::ZERO), "asked 5 minutes ago");
        let head = known
            .get_mut(&("s/t/LOAD00000001.csv".into(), "a".into()))
            .unwrap();
        head.replace_sent_at = Some("2024-10-29T11:00:00.000Z".into());
        assert!(
            send(&known, Duration::ZERO),
            "asked long ago, never done: ask again"
        );
        let head = known
            .get_mut(&("s/t/LOAD00000001.csv".into(), "a".into()))
            .unwrap();
        head.replaced_at = Some("2024-10-29T11:01:00.000Z".into());
        assert!(!send(&known, Duration::ZERO), "done");
        // Unknown to the manifest: never complete.
        let fresh = vec![obj("s/u/LOAD00000001.csv", "x", "2024-10-29T10:00:00.000Z")];
        let p = plan_generations("", &fresh, &HashMap::new(), NOW, Duration::ZERO, REQUEUE);
        assert!(!p[0].send_replace);
        assert!(p[0].unlabelled.is_empty());
    }

    #[test]
    fn parquet_and_gzip_full_loads_are_generations_like_csv_ones() {
        let a = obj("s/t/LOAD00000001.parquet", "a", "2024-10-29T11:00:00.000Z");
        let b = obj("s/t/LOAD00000002.PARQUET", "b", "2024-10-29T11:00:01.000Z");
        let c = obj("s/u/LOAD00000001.csv.gz", "c", "2024-10-29T11:00:00.000Z");
        let listing = vec![a.clone(), b.clone(), c.clone()];
        let known: HashMap<_, _> = [
            item(&a, Status::Loaded),
            item(&b, Status::Loaded),
            item(&c, Status::Loaded),
        ]
        .into_iter()
        .collect();
        let plans = plan_generations("", &listing, &known, NOW, QUIET, REQUEUE);
        assert_eq!(plans.len(), 2);
        assert_eq!(plans[0].generation.members, vec![a.clone(), b]);
        assert_eq!(plans[0].generation.head, a);
        assert_eq!(plans[1].generation.members, vec![c]);
        assert!(plans.iter().all(|p| p.send_replace));
    }

    #[test]
    fn only_the_first_replace_ask_is_noted_in_the_history() {
        let a = obj("s/t/LOAD00000001.csv", "a", "2024-10-29T11:00:00.000Z");
        let mut known: HashMap<_, _> = [item(&a, Status::Loaded)].into_iter().collect();
        let plan = |known: &HashMap<_, _>| {
            plan_generations("", std::slice::from_ref(&a), known, NOW, QUIET, REQUEUE).remove(0)
        };
        let first = plan(&known);
        assert!(first.send_replace && !first.asked_before);
        assert_eq!(
            first.replace_note().as_deref(),
            Some("generation 2024-10-29T11:00:00.000Z complete (1 files): replacement asked")
        );
        known.values_mut().next().unwrap().replace_sent_at =
            Some("2024-10-29T11:10:00.000Z".into());
        let again = plan(&known);
        assert!(again.send_replace && again.asked_before, "asked long ago");
        assert_eq!(again.replace_note(), None);
    }

    #[test]
    fn a_refresh_label_on_the_head_names_the_generation() {
        let a = obj("s/t/LOAD00000001.csv", "a", "2024-10-29T11:00:00.000Z");
        let mut known: HashMap<_, _> = [item(&a, Status::Loaded)].into_iter().collect();
        known.values_mut().next().unwrap().generation =
            Some("refresh@2024-10-29T11:30:00.000Z".into());
        let p = plan_generations("", &[a], &known, NOW, QUIET, REQUEUE);
        assert_eq!(p[0].generation.label, "refresh@2024-10-29T11:30:00.000Z");
        assert!(p[0].unlabelled.is_empty());
        assert_eq!(p[0].generation.start, "2024-10-29T11:00:00.000Z");
    }
}
