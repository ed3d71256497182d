//! Listing checkpoints: what a coordinator pass remembers of the listing it diffed, so that the
//! next pass reads from the manifest only the objects that changed. Pure.
//!
//! A checkpoint covers a run of consecutive keys of the sorted listing. It records the run's
//! first key (`start`), its last key (`last`), how many objects it holds, and a SHA-256 digest of
//! its `(key, etag)` pairs in key order (each one length-prefixed, so no two sequences hash
//! the same bytes).
//!
//! # What makes skipping safe
//!
//! A checkpoint is written only after every pair it covers is recorded in the manifest
//! (the pass that listed them has written every new item), and the manifest never deletes an
//! item. So when the listed pairs from a checkpoint's `start` to its `last` hash to its digest,
//! each of them is known to the manifest, and reading them again would change nothing the pass
//! does. Everything else is read:
//! - pairs of a checkpoint whose digest differs (a file changed, was removed, or a key was
//!   inserted between `start` and `last`): the whole checkpoint's range;
//! - pairs after a checkpoint's `last` and before the next one's `start` (files appended to a
//!   folder, as DMS appends CDC files): only those;
//! - pairs before the first checkpoint, or with no checkpoints at all (the first pass).
//!
//! A checkpoint written by a pass that raced another one is still true of the pairs it hashes,
//! so the invariant holds whichever write lands last.
//!
//! # Where checkpoints begin
//!
//! A new checkpoint starts at every change of folder (trailing date folders aside: the days of
//! one table share checkpoints) and of file-name shape (the name with its digits replaced), so
//! DMS's `LOAD00000001.csv` files never share a checkpoint with the timestamped CDC files that
//! sort before them, and new CDC files land after the `last` of their table's checkpoint
//! instead of inside it. A checkpoint that grows past [`MAX_KEYS`]
//! is split every [`TARGET_KEYS`] keys. A pass keeps the starts it found where they still
//! begin a run, so an unchanged range keeps its checkpoint from pass to pass.

use sha2::{Digest, Sha256};
use std::collections::BTreeSet;

/// Keys a split checkpoint holds.
pub const TARGET_KEYS: usize = 1000;
/// A checkpoint larger than this is split.
pub const MAX_KEYS: usize = 2 * TARGET_KEYS;

/// One stored checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub start: String,
    pub last: String,
    pub count: u64,
    /// Lower-case hex SHA-256 of the covered pairs.
    pub digest: String,
}

/// Which listed pairs a pass must read from the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coverage {
    /// Aligned with the listing: true where a matching checkpoint vouches for the pair.
    pub covered: Vec<bool>,
    /// Checkpoints that matched.
    pub matched: usize,
    /// Checkpoints whose range changed (read whole).
    pub mismatched: usize,
}

impl Coverage {
    pub fn covered_count(&self) -> usize {
        self.covered.iter().filter(|c| **c).count()
    }
}

/// The digest of pairs, in the order given.
pub fn digest<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut h = Sha256::new();
    for (key, etag) in pairs {
        h.update((key.len() as u64).to_be_bytes());
        h.update(key.as_bytes());
        h.update((etag.len() as u64).to_be_bytes());
        h.update(etag.as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Listing indices in key order (S3 lists in this order already; sorting costs little and
/// makes the ranges independent of it).
fn sorted<'a>(pairs: &[(&'a str, &'a str)]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..pairs.len()).collect();
    order.sort_by(|a, b| pairs[*a].0.cmp(pairs[*b].0));
    order
}

/// Which of the listed `(key, etag)` pairs the stored checkpoints vouch for.
pub fn cover(pairs: &[(&str, &str)], stored: &[Checkpoint]) -> Coverage {
    let order = sorted(pairs);
    let mut checkpoints: Vec<&Checkpoint> = stored.iter().collect();
    checkpoints.sort_by(|a, b| a.start.cmp(&b.start));
    let mut coverage = Coverage {
        covered: vec![false; pairs.len()],
        matched: 0,
        mismatched: 0,
    };
    // Position in `order` of the first key at or after `bound`.
    let at = |bound: &str| order.partition_point(|i| pairs[*i].0 < bound);
    for (n, c) in checkpoints.iter().enumerate() {
        let begin = at(&c.start);
        let end = checkpoints
            .get(n + 1)
            .map_or(order.len(), |next| at(&next.start));
        let through = begin + order[begin..end].partition_point(|i| pairs[*i].0 <= c.last.as_str());
        let range = &order[begin..through];
        let same =
            range.len() as u64 == c.count && digest(range.iter().map(|i| pairs[*i])) == c.digest;
        if same {
            coverage.matched += 1;
            for i in range {
                coverage.covered[*i] = true;
            }
        } else {
            coverage.mismatched += 1;
        }
    }
    coverage
}

/// Where checkpoints begin: a change of folder, not counting trailing date folders, or of
/// file-name shape (digits replaced). DMS's date partitions (`2024/10/29/`, `20241029/`,
/// `2024-10-29/`, ...) of one table thus share checkpoints: a new day's files sort after the
/// last key of the table's run, so they are read alone, and the closed days never are.
fn run_of(key: &str) -> (&str, String) {
    let (mut folder, name) = key.rsplit_once('/').unwrap_or(("", key));
    while let Some((parent, last)) = folder.rsplit_once('/') {
        let dated = !last.is_empty()
            && last.bytes().any(|b| b.is_ascii_digit())
            && last
                .bytes()
                .all(|b| b.is_ascii_digit() || b == b'-' || b == b'_');
        if !dated {
            break;
        }
        folder = parent;
    }
    let shape = name
        .chars()
        .map(|c| if c.is_ascii_digit() { '0' } else { c })
        .collect();
    (folder, shape)
}

/// The checkpoints of a listing whose every pair is recorded in the manifest. `previous`: the
/// checkpoints read at the pass's start, whose starts are kept where they still fall inside a
/// run.
pub fn build(pairs: &[(&str, &str)], previous: &[Checkpoint]) -> Vec<Checkpoint> {
    let order = sorted(pairs);
    let kept: BTreeSet<&str> = previous.iter().map(|c| c.start.as_str()).collect();
    let mut out = Vec::new();
    let mut piece: Vec<usize> = Vec::new();
    let flush = |piece: &mut Vec<usize>, out: &mut Vec<Checkpoint>| {
        for part in split(piece) {
            out.push(Checkpoint {
                start: pairs[part[0]].0.to_owned(),
                last: pairs[*part.last().expect("parts are not empty")]
                    .0
                    .to_owned(),
                count: part.len() as u64,
                digest: digest(part.iter().map(|i| pairs[*i])),
            });
        }
        piece.clear();
    };
    let mut previous_key: Option<&str> = None;
    for &i in &order {
        let key = pairs[i].0;
        let begins = match previous_key {
            None => true,
            Some(p) => {
                run_of(p) != run_of(key)
                    // A kept start between the previous key and this one (inclusive).
                    || kept.range::<str, _>((std::ops::Bound::Excluded(p), std::ops::Bound::Included(key))).next().is_some()
            }
        };
        if begins && !piece.is_empty() {
            flush(&mut piece, &mut out);
        }
        piece.push(i);
        previous_key = Some(key);
    }
    if !piece.is_empty() {
        flush(&mut piece, &mut out);
    }
    out
}

/// A piece of at most [`MAX_KEYS`] stays whole; a larger one is cut every [`TARGET_KEYS`].
fn split(piece: &[usize]) -> Vec<&[usize]> {
    if piece.len() <= MAX_KEYS {
        vec![piece]
    } else {
        piece.chunks(TARGET_KEYS).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cdc(folder: &str, n: u32) -> String {
        format!("dms/{folder}/20261130-{n:09}.csv")
    }

    fn listing(keys: &[String]) -> Vec<(String, String)> {
        keys.iter()
            .map(|k| (k.clone(), format!("e-{}", k.len())))
            .collect()
    }

    fn refs(p: &[(String, String)]) -> Vec<(&str, &str)> {
        p.iter().map(|(k, e)| (k.as_str(), e.as_str())).collect()
    }

    fn lake(folders: &[&str], per: u32) -> Vec<String> {
        let mut keys = Vec::new();
        for f in folders {
            keys.push(format!("dms/{f}/LOAD00000001.csv"));
            for n in 0..per {
                keys.push(cdc(f, n));
            }
        }
        keys
    }

    #[test]
    fn the_digest_separates_key_from_etag() {
        assert_ne!(digest([("ab", "c")]), digest([("a", "bc")]));
        assert_ne!(digest([("a", "b")]), digest([("a", "b"), ("a", "b")]));
        assert_eq!(digest([("a", "b")]).len(), 64);
    }

    #[test]
    fn no_checkpoints_cover_nothing() {
        let p = listing(&lake(&["s/a"], 3));
        let c = cover(&refs(&p), &[]);
        assert_eq!(c.covered_count(), 0);
    }

    #[test]
    fn an_unchanged_listing_is_covered_whole() {
        let p = listing(&lake(&["s/a", "s/b"], 50));
        let saved = build(&refs(&p), &[]);
        // Folder and name shape: LOAD and CDC of each folder apart.
        assert_eq!(saved.len(), 4);
        let c = cover(&refs(&p), &saved);
        assert_eq!(c.covered_count(), p.len());
        assert_eq!((c.matched, c.mismatched), (4, 0));
    }

    #[test]
    fn appended_cdc_files_are_the_only_ones_read() {
        let before = lake(&["s/a", "s/b"], 50);
        let saved = build(&refs(&listing(&before)), &[]);
        let mut after = before.clone();
        after.push(cdc("s/a", 50));
        after.push(cdc("s/b", 77));
        let p = listing(&after);
        let c = cover(&refs(&p), &saved);
        let unread: Vec<&str> = p
            .iter()
            .zip(&c.covered)
            .filter(|(_, c)| !**c)
            .map(|((k, _), _)| k.as_str())
            .collect();
        assert_eq!(unread, vec![cdc("s/a", 50), cdc("s/b", 77)]);
        assert_eq!(c.mismatched, 0);
    }

    #[test]
    fn a_changed_etag_or_a_removed_key_reads_its_whole_checkpoint() {
        let keys = lake(&["s/a", "s/b"], 10);
        let p = listing(&keys);
        let saved = build(&refs(&p), &[]);
        let mut changed = p.clone();
        changed[3].1 = "new".into();
        let c = cover(&refs(&changed), &saved);
        assert_eq!(c.mismatched, 1);
        // s/a's CDC files (10) read, everything else covered.
        assert_eq!(c.covered_count(), p.len() - 10);
        assert!(!c.covered[3]);

        let mut removed = p.clone();
        removed.remove(5);
        let c = cover(&refs(&removed), &saved);
        assert_eq!(c.mismatched, 1);
        assert_eq!(c.covered_count(), removed.len() - 9);
    }

    #[test]
    fn a_key_inserted_inside_a_checkpoint_reads_it_whole() {
        let keys = lake(&["s/a"], 10);
        let saved = build(&refs(&listing(&keys)), &[]);
        let mut after = keys.clone();
        after.push("dms/s/a/20261130-000000004x.csv".into());
        let p = listing(&after);
        let c = cover(&refs(&p), &saved);
        assert!(!c.covered[p.len() - 1]);
        assert_eq!(
            c.covered_count(),
            1,
            "only the LOAD checkpoint still matches"
        );
    }

    #[test]
    fn starts_are_kept_and_large_runs_split() {
        let keys = lake(&["s/a"], 2500);
        let p = listing(&keys);
        let first = build(&refs(&p), &[]);
        // LOAD, then 2500 CDC keys cut at 1000.
        let counts: Vec<u64> = first.iter().map(|c| c.count).collect();
        assert_eq!(counts, vec![1000, 1000, 500, 1]);
        // Appending keeps the earlier starts: the first two checkpoints are unchanged.
        let mut more = keys.clone();
        for n in 2500..2600 {
            more.push(cdc("s/a", n));
        }
        let p2 = listing(&more);
        let second = build(&refs(&p2), &first);
        assert_eq!(&second[..2], &first[..2]);
        assert_eq!(second[2].count, 600);
        assert_eq!(second[2].start, first[2].start);
    }

    #[test]
    fn date_folders_of_a_table_share_checkpoints_and_a_new_day_is_read_alone() {
        let day = |d: u32, n: u32| format!("dms/s/a/2024/10/{d:02}/202410{d:02}-{n:09}.csv");
        let mut keys = vec!["dms/s/a/LOAD00000001.csv".to_owned()];
        for d in 1..=20 {
            for n in 0..5 {
                keys.push(day(d, n));
            }
        }
        keys.push("dms/s/b/2024/10/01/20241001-000000000.csv".into());
        let saved = build(&refs(&listing(&keys)), &[]);
        // a's 100 CDC files in one checkpoint, a's LOAD file, b's CDC file.
        assert_eq!(saved.len(), 3, "{saved:?}");
        let mut after = keys.clone();
        after.push(day(20, 5));
        after.push(day(21, 0));
        let p = listing(&after);
        let c = cover(&refs(&p), &saved);
        assert_eq!(c.covered_count(), keys.len());
        assert_eq!(c.mismatched, 0);
        // Folders that only look like dates in part are folders.
        assert_ne!(run_of("dms/s/v2/x.csv").0, run_of("dms/s/v3/x.csv").0);
        assert_eq!(
            run_of("dms/s/t/20241029/1.csv").0,
            run_of("dms/s/t/2024_10_30/2.csv").0
        );
        assert_ne!(run_of("dms/s/1/x.csv").0, "");
    }

    #[test]
    fn a_listing_out_of_order_gives_the_same_checkpoints() {
        let keys = lake(&["s/a", "s/b"], 20);
        let p = listing(&keys);
        let mut shuffled = p.clone();
        shuffled.reverse();
        assert_eq!(build(&refs(&p), &[]), build(&refs(&shuffled), &[]));
        let saved = build(&refs(&p), &[]);
        assert_eq!(cover(&refs(&shuffled), &saved).covered_count(), p.len());
    }
}
