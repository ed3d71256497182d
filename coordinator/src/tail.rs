//! Listings proportional to change: each table's folder listed from after the last key its
//! checkpoints vouch for (`StartAfter`), not from its first key.
//!
//! A tail listing is three kinds of `ListObjectsV2` call: the lake's prefix with a delimiter
//! (its schema folders, and the objects beside them), each schema folder with a delimiter (its
//! table folders, and the objects beside them), then each table folder from its start key. So a
//! lake of closed date folders costs `1 + schemas + tables` calls per pass (more only past 1,000
//! keys of a page), whatever it has ever held.
//!
//! Where a table folder's listing starts ([`folder_start`]): after the `last` key of its
//! newest CDC checkpoint (DMS appends CDC files in time order, so new ones sort after it), but
//! never past its first full-load file (the `LOAD` files are listed every pass: the generation
//! bookkeeping needs each of them, and a reload rewrites them in place). A newest checkpoint of
//! fewer than [`TAIL_MIN_KEYS`] keys is listed again, so it grows instead of every pass leaving
//! a small checkpoint behind. The checkpoints wholly before the start are *carried*: unlisted,
//! still true (the manifest never deletes an item), written back unchanged.
//!
//! What it cannot see, by construction: a key that sorts before its table's start (a late file
//! in a closed date folder, a rewritten CDC file, a file in an earlier sub-folder). A full
//! listing catches those: every N passes of `run` (`--full-listing-every`), and `scan --full`.
//! Events, when on, usually find them first.

use crate::error::CoordinatorError;
use crate::listing::{list_range, ListRequest, Listed};
use futures_util::{stream, StreamExt, TryStreamExt};
use sluice_common::checkpoint::Checkpoint;
use sluice_common::mapping::{map_key, FileKind};
use sluice_common::store::CONCURRENT_CALLS;
use std::collections::BTreeMap;

/// A newest CDC checkpoint smaller than this is listed again (and grows).
pub const TAIL_MIN_KEYS: u64 = 100;

/// The table folder (`<prefix><schema>/<table>/`) of a key, when the key lies in one.
pub fn table_folder(lake_prefix: &str, key: &str) -> Option<String> {
    let rest = key.strip_prefix(lake_prefix)?;
    let mut parts = rest.splitn(3, '/');
    let (schema, table) = (parts.next()?, parts.next()?);
    parts.next()?;
    (!schema.is_empty() && !table.is_empty()).then(|| format!("{lake_prefix}{schema}/{table}/"))
}

/// Where a table folder's listing starts, and the checkpoints it leaves unlisted.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FolderStart {
    /// `StartAfter`; None lists the folder whole.
    pub start_after: Option<String>,
    /// Checkpoints wholly at or before `start_after`.
    pub carried: Vec<Checkpoint>,
}

/// The start of one table folder's listing, from its checkpoints.
pub fn folder_start(lake_prefix: &str, checkpoints: &[Checkpoint]) -> FolderStart {
    let is_load = |c: &Checkpoint| is_load_key(lake_prefix, &c.start);
    let bound = checkpoints
        .iter()
        .filter(|c| is_load(c))
        .map(|c| c.start.as_str())
        .min();
    let mut eligible: Vec<&Checkpoint> = checkpoints
        .iter()
        .filter(|c| !is_load(c) && bound.is_none_or(|b| c.last.as_str() < b))
        .collect();
    eligible.sort_by(|a, b| a.start.cmp(&b.start));
    let Some(newest) = eligible.last() else {
        return FolderStart::default();
    };
    let start_after = if newest.count >= TAIL_MIN_KEYS {
        Some(newest.last.clone())
    } else {
        eligible
            .iter()
            .filter(|c| c.last < newest.start)
            .map(|c| c.last.clone())
            .max()
    };
    let carried = match &start_after {
        Some(after) => checkpoints
            .iter()
            .filter(|c| c.last <= *after)
            .cloned()
            .collect(),
        None => Vec::new(),
    };
    FolderStart {
        start_after,
        carried,
    }
}

/// Whether a key names a full-load (`LOAD`) file.
fn is_load_key(lake_prefix: &str, key: &str) -> bool {
    matches!(map_key(lake_prefix, key), Ok(f) if matches!(f.kind, FileKind::FullLoad { .. }))
}

/// Where a key's kind of file ends in its table folder: the folder, and whether the files are
/// full-load files (they sort after the CDC files of the same folder, and have checkpoints of
/// their own: a checkpoint is cut at each change of file-name shape).
type Run = (String, bool);

/// The last key the checkpoints vouch for in each table folder, for its CDC files and for its
/// full-load files apart.
pub fn vouched_ends(lake_prefix: &str, checkpoints: &[Checkpoint]) -> BTreeMap<Run, String> {
    let mut ends: BTreeMap<Run, String> = BTreeMap::new();
    for c in checkpoints {
        let Some(folder) = table_folder(lake_prefix, &c.start) else {
            continue;
        };
        let end = ends
            .entry((folder, is_load_key(lake_prefix, &c.start)))
            .or_default();
        if c.last > *end {
            end.clone_from(&c.last);
        }
    }
    ends
}

/// Whether a listed object's key sorts after every key of its kind (CDC or full-load) that its
/// table folder's checkpoints vouch for. False where there are no such checkpoints (a first
/// pass, a new table), and for a key that names no file: nothing is known there.
///
/// Every pass that completes writes checkpoints over every pair it listed, so such a key was
/// recorded by no completed pass: only by one that crashed before its checkpoints, one running
/// at the same time, or an S3 event.
pub fn past_vouched(ends: &BTreeMap<Run, String>, lake_prefix: &str, o: &Listed) -> bool {
    if ends.is_empty() {
        return false;
    }
    let Ok(file) = &o.file else {
        return false;
    };
    let Some(folder) = table_folder(lake_prefix, &o.key) else {
        return false;
    };
    let load = matches!(file.kind, FileKind::FullLoad { .. });
    ends.get(&(folder, load))
        .is_some_and(|end| o.key.as_str() > end.as_str())
}

/// A tail listing.
#[derive(Debug, Default)]
pub struct TailListing {
    /// The listed objects, in key order.
    pub objects: Vec<Listed>,
    pub calls: usize,
    /// Checkpoints of the pairs left unlisted (to be written back as they are).
    pub carried: Vec<Checkpoint>,
}

/// Lists the lake's folders, then each table folder from its start.
pub async fn list_tail(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    lake_prefix: &str,
    checkpoints: &[Checkpoint],
) -> Result<TailListing, CoordinatorError> {
    let level = |prefix: String| async move {
        let request = ListRequest {
            prefix: &prefix,
            start_after: None,
            delimiter: true,
        };
        list_range(s3, bucket, lake_prefix, &request).await
    };
    let root = level(lake_prefix.to_owned()).await?;
    let mut out = TailListing {
        calls: root.calls,
        objects: root.objects,
        ..TailListing::default()
    };
    let schemas: Vec<_> = stream::iter(root.folders)
        .map(level)
        .buffer_unordered(CONCURRENT_CALLS)
        .try_collect()
        .await?;
    let mut tables = Vec::new();
    for s in schemas {
        out.calls += s.calls;
        out.objects.extend(s.objects);
        tables.extend(s.folders);
    }
    let mut by_folder: BTreeMap<String, Vec<Checkpoint>> = BTreeMap::new();
    for c in checkpoints {
        if let Some(f) = table_folder(lake_prefix, &c.start) {
            by_folder.entry(f).or_default().push(c.clone());
        }
    }
    let listed: Vec<_> = stream::iter(tables)
        .map(|folder| {
            let start = folder_start(lake_prefix, by_folder.get(&folder).map_or(&[], |v| v));
            async move {
                let request = ListRequest {
                    prefix: &folder,
                    start_after: start.start_after.as_deref(),
                    delimiter: false,
                };
                let l = list_range(s3, bucket, lake_prefix, &request).await?;
                Ok::<_, CoordinatorError>((l, start.carried))
            }
        })
        .buffer_unordered(CONCURRENT_CALLS)
        .try_collect()
        .await?;
    for (l, carried) in listed {
        out.calls += l.calls;
        out.objects.extend(l.objects);
        out.carried.extend(carried);
    }
    out.objects.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cp(start: &str, last: &str, count: u64) -> Checkpoint {
        Checkpoint {
            start: format!("dms/s/t/{start}"),
            last: format!("dms/s/t/{last}"),
            count,
            digest: "d".into(),
        }
    }

    #[test]
    fn a_key_is_past_the_vouched_keys_only_after_the_last_of_its_folder_and_kind() {
        let other = Checkpoint {
            start: "dms/s/u/20241028-000.csv".into(),
            last: "dms/s/u/20241028-999.csv".into(),
            count: 3,
            digest: "d".into(),
        };
        let checkpoints = [
            cp("20241028-000.csv", "20241028-500.csv", 200),
            cp("20241029-000.csv", "20241029-500.csv", 200),
            cp("LOAD00000001.csv", "LOAD00000004.csv", 4),
            other,
        ];
        let ends = vouched_ends("dms/", &checkpoints);
        assert_eq!(ends.len(), 3);
        let past = |k: &str| past_vouched(&ends, "dms/", &Listed::new("dms/", k, "e", 1, "t"));
        assert!(past("dms/s/t/20241029-501.csv"));
        assert!(past("dms/s/t/20241030-000.csv"));
        assert!(
            !past("dms/s/t/20241029-500.csv"),
            "the last vouched key itself"
        );
        assert!(!past("dms/s/t/20241028-700.csv"), "inside a closed range");
        // Full-load files sort after CDC files: they have their own end.
        assert!(past("dms/s/t/LOAD00000005.csv"));
        assert!(
            !past("dms/s/t/LOAD00000001.csv"),
            "a reload rewrites in place"
        );
        assert!(past("dms/s/u/20250101-000.csv"));
        assert!(
            !past("dms/s/u/LOAD00000001.csv"),
            "no full-load checkpoint in u"
        );
        assert!(
            !past("dms/s/v/20241028-000.csv"),
            "a folder without checkpoints"
        );
        assert!(!past("dms/readme"));
    }

    #[test]
    fn keys_lie_in_table_folders_or_none() {
        assert_eq!(
            table_folder("dms/", "dms/s/t/2024/10/29/x.csv").as_deref(),
            Some("dms/s/t/")
        );
        assert_eq!(
            table_folder("dms/", "dms/s/t/x.csv").as_deref(),
            Some("dms/s/t/")
        );
        assert_eq!(table_folder("dms/", "dms/s/x.csv"), None);
        assert_eq!(table_folder("dms/", "dms/readme"), None);
        assert_eq!(table_folder("dms/", "raw/s/t/x.csv"), None);
        assert_eq!(table_folder("", "s/t/x.csv").as_deref(), Some("s/t/"));
    }

    #[test]
    fn a_folder_is_listed_after_its_newest_cdc_checkpoint_and_never_past_its_load_files() {
        let closed = cp(
            "2024/10/28/20241028-000.csv",
            "2024/10/28/20241028-999.csv",
            500,
        );
        let newest = cp(
            "2024/10/29/20241029-000.csv",
            "2024/10/29/20241029-999.csv",
            150,
        );
        let load = cp("LOAD00000001.csv", "LOAD00000009.csv", 9);
        let s = folder_start("dms/", &[load.clone(), newest.clone(), closed.clone()]);
        assert_eq!(s.start_after.as_deref(), Some(newest.last.as_str()));
        assert_eq!(s.carried, vec![newest.clone(), closed.clone()]);
        // A small newest checkpoint is listed again, so it grows.
        let small = cp(
            "2024/10/29/20241029-000.csv",
            "2024/10/29/20241029-005.csv",
            6,
        );
        let s = folder_start("dms/", &[load.clone(), small, closed.clone()]);
        assert_eq!(s.start_after.as_deref(), Some(closed.last.as_str()));
        assert_eq!(s.carried, vec![closed.clone()]);
        // Only LOAD files, or no checkpoint: the whole folder.
        assert_eq!(
            folder_start("dms/", std::slice::from_ref(&load)),
            FolderStart::default()
        );
        assert_eq!(folder_start("dms/", &[]), FolderStart::default());
        // CDC checkpoints after the first LOAD file never move the start past it.
        let after_load = cp("z/20241029-000.csv", "z/20241029-999.csv", 500);
        assert_eq!(
            folder_start("dms/", &[load, after_load]),
            FolderStart::default()
        );
    }
}
