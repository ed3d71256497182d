//! Names as the worker matches them, and the hints `check` gives when one does not match.
//! Pure.

use super::CatalogColumn;
use sluice_common::warehouse::{is_system_column, match_column};

/// The data column the worker would match `name` to (exact first, then ASCII
/// case-insensitive: [`sluice_common::warehouse::match_column`]).
pub(super) fn find<'a>(data: &[&'a CatalogColumn], name: &str) -> Option<&'a CatalogColumn> {
    match_column(data.iter().map(|c| c.name.as_str()), name).map(|i| data[i])
}

pub(super) fn same_name(a: &str, b: &str) -> bool {
    a == b || a.eq_ignore_ascii_case(b)
}

pub(super) fn is_system(name: &str) -> bool {
    is_system_column(name)
}

/// Edit distance, on lower-cased characters.
pub(super) fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.to_lowercase().chars().collect();
    let b: Vec<char> = b.to_lowercase().chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Up to three of `candidates` closest to `name`: within a few edits, or containing it (or
/// contained in it); closest first.
pub fn closest<'a>(name: &str, candidates: &[&'a str]) -> Vec<&'a str> {
    let lower = name.to_lowercase();
    let limit = 2.max(name.chars().count() / 3);
    let mut scored: Vec<(usize, &str)> = candidates
        .iter()
        .filter_map(|c| {
            let d = distance(name, c);
            let cl = c.to_lowercase();
            let contains =
                lower.len() >= 3 && cl.len() >= 3 && (cl.contains(&lower) || lower.contains(&cl));
            (d <= limit || contains).then_some((d, *c))
        })
        .collect();
    scored.sort();
    scored.dedup_by(|a, b| a.1 == b.1);
    scored.into_iter().take(3).map(|(_, c)| c).collect()
}

/// "; closest: a, b" or, with nothing close, "; <what>: a, b, c" (at most 12 names).
pub(super) fn hint(name: &str, candidates: &[&str], what: &str) -> String {
    let near = closest(name, candidates);
    if !near.is_empty() {
        return format!("; closest: {}", near.join(", "));
    }
    if candidates.is_empty() {
        return format!("; it has no {what}");
    }
    let shown: Vec<&str> = candidates.iter().take(12).copied().collect();
    let more = if candidates.len() > 12 {
        format!(" (and {} more)", candidates.len() - 12)
    } else {
        String::new()
    };
    format!("; {what}: {}{more}", shown.join(", "))
}
