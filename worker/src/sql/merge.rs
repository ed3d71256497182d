//! The version-guarded merge of a stage into its target (one statement per stage: one file, or
//! the files of a batch), the replacement at the end of a full-load generation, and tombstone
//! pruning.

use super::*;
use sluice_common::warehouse::quote_ident;

/// How deletes are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deletes {
    /// Rows leave the table; a tombstone (this qualified table) keeps their version.
    Hard { tombstones: String },
    /// Rows stay, with this boolean column set.
    Soft { flag: String },
}

impl Deletes {
    /// Soft with the table's flag column, else hard with its tombstone table.
    pub fn for_table(target: &TargetTable, soft_delete: Option<&str>, state_schema: &str) -> Self {
        match soft_delete {
            Some(flag) => Deletes::Soft {
                flag: flag.to_owned(),
            },
            None => Deletes::Hard {
                tombstones: target.tombstones(state_schema),
            },
        }
    }
}

/// What the merge of a stage needs to know.
#[derive(Debug, Clone)]
pub struct MergeSpec<'a> {
    pub target: &'a TargetTable,
    /// Target columns staged, in file order (every file of a stage has the same).
    pub file_columns: &'a [usize],
    pub deletes: Deletes,
    /// Whether the stage has partial `U` images (adds the patch statements).
    pub partial: bool,
    /// Hard deletes only: the tombstone table had no rows when the caller checked, holding the
    /// table's merge lock ([`any_tombstone_sql`]). Every statement of the merge sees the table
    /// as it was then, so the tombstone checks, the unburying and the tombstones' conflict
    /// handling are left out: exact, and cheaper.
    pub no_tombstones: bool,
}

/// Whether the tombstone table `tombstones` has a row: one row, one boolean. Asked after the
/// merge lock is taken (every tombstone writer holds it), it decides [`MergeSpec::no_tombstones`].
pub fn any_tombstone_sql(tombstones: &str) -> String {
    format!("SELECT EXISTS (SELECT 1 FROM {tombstones})")
}

/// The version triple of a row `r` of the target or the tombstones.
pub(super) fn version_of(r: &str) -> String {
    format!("({r}._sluice_version, {r}._sluice_file_time, {r}._sluice_record)")
}

/// The version triple of a staged operation `s` (its file's time is on the staged row).
pub(super) const STAGED_VERSION: &str = "(s._v, s._sluice_file_time, s._sluice_rec)";

/// The set-based, version-guarded merge of the stage into the target. No parameters: each
/// staged row carries its file's time and ledger `file_id`. Returns one row per file with
/// operations in the stage: `(file_id, inserted, updated, deleted, superseded bigint, newest
/// version timestamptz)`.
///
/// Every operation has a version `(v, file time, record)`, compared as a row: `v` is the
/// file's timestamp column or else the file's time. Per key only the newest operation of the
/// stage counts (ties between files of a batch: the later `file_id`); an operation that a newer
/// one of the same stage replaced is counted nowhere, as within one file. It is applied only if it is not older than the row's stored version (an equal
/// version is the same operation applied again, as an operator's reload does: it restores the
/// row) and newer than the key's tombstone; a delete removes the row (or flags it) and records
/// a tombstone. An operation
/// that loses is *superseded*: counted, not applied. The caller holds the table's merge lock,
/// so merges of one table never interleave (two statements could otherwise both miss each
/// other's uncommitted tombstone and row).
///
/// Cost: `last` is one sort of the stage; it comes out in key order, and the upserts read it
/// in that order (so they carry no `ORDER BY`, which would sort it again: a CTE scan has no
/// known order). With no tombstones ([`MergeSpec::no_tombstones`]) no statement reads the
/// tombstone table.
pub fn merge_sql(m: &MergeSpec<'_>) -> String {
    let x = MergeText::new(m);
    let mut ctes = vec![x.last_cte()];
    // Per file and statement: (inserted, updated, deleted, operations in `last`, applied,
    // newest version), counted where each statement's rows are (cheaper than one row each
    // through the union); the sums are the file's counts, superseded = last - applied.
    let mut counted = vec![
        "SELECT _sluice_file, 0, 0, 0, count(*), 0, max(_v) FROM last GROUP BY 1".to_owned(),
        "SELECT file, count(*) FILTER (WHERE inserted AND NOT gone), count(*) FILTER (WHERE NOT inserted AND NOT gone), \
         count(*) FILTER (WHERE gone), 0, count(*), NULL FROM upserted GROUP BY 1"
            .to_owned(),
    ];
    // Partial images: the flag to clear (soft) or the tombstone check (hard).
    let (patch_flag, patch_tombstones) = match &m.deletes {
        Deletes::Hard { tombstones } => {
            let tomb_blocks = x.hard_ctes(tombstones, m.no_tombstones, &mut ctes);
            counted
                .push("SELECT file, 0, 0, count(*), 0, 0, NULL FROM deleted GROUP BY 1".to_owned());
            counted
                .push("SELECT file, 0, 0, 0, 0, count(*), NULL FROM buried GROUP BY 1".to_owned());
            (None, tomb_blocks)
        }
        Deletes::Soft { flag } => {
            let f = quote_ident(flag);
            ctes.push(x.soft_upsert_cte(&f));
            (Some(f), None)
        }
    };
    if m.partial {
        x.push_patches(
            &mut ctes,
            patch_flag.as_deref(),
            patch_tombstones.as_deref(),
        );
        counted.push(
            "SELECT file, 0, count(*), 0, 0, count(*), NULL FROM patched GROUP BY 1".to_owned(),
        );
        counted.push(
            "SELECT file, count(*), 0, 0, 0, count(*), NULL FROM patched_new GROUP BY 1".to_owned(),
        );
    }
    format!(
        "WITH {}
SELECT file, sum(i)::bigint, sum(u)::bigint, sum(d)::bigint, (sum(l) - sum(a))::bigint, max(v)
  FROM ({}) AS counted (file, i, u, d, l, a, v)
 GROUP BY file",
        ctes.join(",\n"),
        counted.join("\n        UNION ALL "),
    )
}

/// The pieces of text the merge's statements share, computed once per merge.
struct MergeText {
    /// The target, qualified and quoted.
    t: String,
    /// The key's columns, quoted; comma-separated; and as `s.k` of the staged row.
    key: Vec<String>,
    key_list: String,
    s_keys: String,
    /// The staged columns, quoted, comma-separated; and as `s.c`.
    col_list: String,
    s_cols: String,
    /// The staged columns outside the key: (1-based position in the file, quoted name).
    non_key: Vec<(usize, String)>,
    /// The key of `t` equal to the key of `s`.
    km: String,
    /// The version triple of the target row `t`.
    tv: String,
    /// An upsert changes a row only if its version is not older than the row's.
    row_guard: String,
}

const SYS_LIST: &str = "_sluice_version, _sluice_file_time, _sluice_record, _sluice_file";
const SYS_VALUES: &str = "s._v, s._sluice_file_time, s._sluice_rec, s._sluice_file";
const SYS_SET: &str = "_sluice_version = EXCLUDED._sluice_version, _sluice_file_time = EXCLUDED._sluice_file_time, \
                       _sluice_record = EXCLUDED._sluice_record, _sluice_file = EXCLUDED._sluice_file";

impl MergeText {
    fn new(m: &MergeSpec<'_>) -> Self {
        let target = m.target;
        let q = |i: usize| quote_ident(&target.columns[i].name);
        let key: Vec<String> = target.key.iter().map(|&i| q(i)).collect();
        let cols: Vec<String> = m.file_columns.iter().map(|&i| q(i)).collect();
        let prefixed = |names: &[String]| {
            names
                .iter()
                .map(|c| format!("s.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        MergeText {
            t: target.qualified(),
            key_list: key.join(", "),
            s_keys: prefixed(&key),
            key: key.clone(),
            col_list: cols.join(", "),
            s_cols: prefixed(&cols),
            non_key: m
                .file_columns
                .iter()
                .enumerate()
                .filter(|(_, i)| !target.key.contains(i))
                .map(|(pos, &i)| (pos + 1, q(i)))
                .collect(),
            km: matching(&key, "t", "s"),
            tv: version_of("t"),
            row_guard: format!(
                "(t._sluice_version IS NULL OR {} <= {})",
                version_of("t"),
                version_of("EXCLUDED")
            ),
        }
    }

    /// The newest operation per key of the stage, with only the columns the merge reads (not
    /// the rejects' columns nor `_sluice_version`, which `_v` replaces): `last` is sorted and
    /// then read once per statement, so every byte of its rows costs several times.
    fn last_cte(&self) -> String {
        let MergeText {
            key_list, s_cols, ..
        } = self;
        format!(
            "last AS MATERIALIZED (
    SELECT DISTINCT ON ({key_list}) s._sluice_rec, s._sluice_op, s._sluice_keep, s._sluice_file_time, s._sluice_file,
           {s_cols}, coalesce(s._sluice_version, s._sluice_file_time) AS _v,
           s._sluice_keep IS NULL OR cardinality(s._sluice_keep) = 0 AS _full
      FROM pg_temp.{STAGE} AS s
     WHERE s._sluice_op <> 'R'
     ORDER BY {key_list}, coalesce(s._sluice_version, s._sluice_file_time) DESC,
              s._sluice_file_time DESC, s._sluice_file DESC, s._sluice_rec DESC
)"
        )
    }

    /// Hard deletes: delete, bury, unbury and upsert; returns the condition that a tombstone at
    /// least as new blocks a staged operation (for the partial images), or `None` when there are
    /// no tombstones (`none`, see [`MergeSpec::no_tombstones`]): then nothing blocks, nothing is
    /// unburied, and a tombstone is a plain insert (`last` holds one operation per key).
    /// A delete applies to a row not newer than it (`_older`); it leaves a tombstone unless a
    /// newer row exists (`_bury`, the `NOT EXISTS` of a newer row, NULL versions included).
    fn hard_ctes(&self, tombstones: &str, none: bool, ctes: &mut Vec<String>) -> Option<String> {
        let MergeText {
            t,
            key_list,
            s_keys,
            col_list,
            s_cols,
            km,
            tv,
            row_guard,
            ..
        } = self;
        let xm = matching(&self.key, "x", "s");
        let xv = version_of("x");
        let tomb_blocks = (!none).then(|| {
            format!(
                "NOT EXISTS (SELECT 1 FROM {tombstones} AS x WHERE {xm} AND {xv} >= {STAGED_VERSION})"
            )
        });
        // The deletes' rows of the target, found once (one probe per key) for both the delete
        // (by its row address, with the key for safety: a partitioned table repeats addresses)
        // and the tombstone.
        ctes.push(format!(
            "dels AS MATERIALIZED (
    SELECT {s_keys}, s._v, s._sluice_file_time, s._sluice_rec, s._sluice_file, t.ctid AS _tid,
           t.ctid IS NOT NULL AND (t._sluice_version IS NULL OR {tv} <= {STAGED_VERSION}) AS _older,
           NOT coalesce({tv} > {STAGED_VERSION}, false) AS _bury
      FROM last AS s LEFT JOIN {t} AS t ON {km}
     WHERE s._sluice_op = 'D'
)"
        ));
        ctes.push(format!(
            "deleted AS (
    DELETE FROM {t} AS t USING dels AS s
     WHERE s._older AND t.ctid = s._tid AND {km}
    RETURNING s._sluice_file AS file
)"
        ));
        let on_conflict = if none {
            String::new()
        } else {
            format!(
                "\n    ON CONFLICT ({key_list}) DO UPDATE SET {SYS_SET}\n     WHERE {xv} < {ev}",
                ev = version_of("EXCLUDED"),
            )
        };
        ctes.push(format!(
            "buried AS (
    INSERT INTO {tombstones} AS x ({key_list}, {SYS_LIST})
    SELECT {s_keys}, {SYS_VALUES} FROM dels AS s
     WHERE s._bury{on_conflict}
    RETURNING x._sluice_file AS file
)"
        ));
        if !none {
            ctes.push(format!(
                "unburied AS (
    DELETE FROM {tombstones} AS x USING last AS s
     WHERE s._sluice_op <> 'D' AND {xm} AND {xv} < {STAGED_VERSION}
    RETURNING 1
)"
            ));
        }
        let updates: Vec<String> = self
            .non_key
            .iter()
            .map(|(_, c)| format!("{c} = EXCLUDED.{c}"))
            .chain(std::iter::once(SYS_SET.to_owned()))
            .collect();
        let unblocked = tomb_blocks
            .as_ref()
            .map(|b| format!(" AND {b}"))
            .unwrap_or_default();
        ctes.push(format!(
            "upserted AS (
    INSERT INTO {t} AS t ({col_list}, {SYS_LIST})
    SELECT {s_cols}, {SYS_VALUES} FROM last AS s
     WHERE s._sluice_op <> 'D' AND s._full{unblocked}
    ON CONFLICT ({key_list}) DO UPDATE SET {updates}
     WHERE {row_guard}
    RETURNING (t.xmax = 0) AS inserted, false AS gone, t._sluice_file AS file
)",
            updates = updates.join(", "),
        ));
        tomb_blocks
    }

    /// Soft deletes (`f`, the quoted flag column): one upsert that sets or clears the flag.
    fn soft_upsert_cte(&self, f: &str) -> String {
        let MergeText {
            t,
            key_list,
            col_list,
            s_cols,
            row_guard,
            ..
        } = self;
        let updates: Vec<String> = self
            .non_key
            .iter()
            .map(|(_, c)| format!("{c} = CASE WHEN EXCLUDED.{f} THEN t.{c} ELSE EXCLUDED.{c} END"))
            .chain(std::iter::once(format!("{f} = EXCLUDED.{f}")))
            .chain(std::iter::once(SYS_SET.to_owned()))
            .collect();
        format!(
            "upserted AS (
    INSERT INTO {t} AS t ({col_list}, {f}, {SYS_LIST})
    SELECT {s_cols}, s._sluice_op = 'D', {SYS_VALUES} FROM last AS s
     WHERE s._full OR s._sluice_op = 'D'
    ON CONFLICT ({key_list}) DO UPDATE SET {updates}
     WHERE {row_guard}
    RETURNING (t.xmax = 0) AS inserted, t.{f} AS gone, t._sluice_file AS file
)",
            updates = updates.join(", "),
        )
    }

    /// The two statements of partial `U` images that are still partial after
    /// [`resolve_partial_sql`]: update the row keeping the unchanged columns, or insert it with
    /// those columns NULL when the row does not exist (an older full image may still arrive,
    /// and loses to this newer one: DMS wrote no value for those columns).
    fn push_patches(&self, ctes: &mut Vec<String>, flag: Option<&str>, tomb_blocks: Option<&str>) {
        let MergeText {
            t,
            col_list,
            s_cols,
            km,
            tv,
            ..
        } = self;
        let mut sets: Vec<String> = self
            .non_key
            .iter()
            .map(|(pos, c)| {
                format!("{c} = CASE WHEN {pos} = ANY(s._sluice_keep) THEN t.{c} ELSE s.{c} END")
            })
            .collect();
        if let Some(f) = flag {
            sets.push(format!("{f} = false"));
        }
        sets.push(
            "_sluice_version = s._v, _sluice_file_time = s._sluice_file_time, _sluice_record = s._sluice_rec, _sluice_file = s._sluice_file"
                .to_owned(),
        );
        ctes.push(format!(
            "patched AS (
    UPDATE {t} AS t SET {sets} FROM last AS s
     WHERE s._sluice_op <> 'D' AND NOT s._full AND {km}
       AND (t._sluice_version IS NULL OR {tv} <= {STAGED_VERSION})
    RETURNING t._sluice_file AS file
)",
            sets = sets.join(", ")
        ));
        let (flag_col, flag_val) = match flag {
            Some(f) => (format!(", {f}"), ", false".to_owned()),
            None => (String::new(), String::new()),
        };
        ctes.push(format!(
            "patched_new AS (
    INSERT INTO {t} AS t ({col_list}{flag_col}, _sluice_version, _sluice_file_time, _sluice_record, _sluice_file)
    SELECT {s_cols}{flag_val}, {SYS_VALUES} FROM last AS s
     WHERE s._sluice_op <> 'D' AND NOT s._full
       AND NOT EXISTS (SELECT 1 FROM {t} AS t WHERE {km}){tomb}
    RETURNING t._sluice_file AS file
)",
            tomb = tomb_blocks.map(|b| format!("\n       AND {b}")).unwrap_or_default(),
        ));
    }
}

/// `a.k = b.k AND ...` over the key's quoted columns.
fn matching(key: &[String], a: &str, b: &str) -> String {
    key.iter()
        .map(|k| format!("{a}.{k} = {b}.{k}"))
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// The replacement at the end of a full-load generation (`$1` its start): removes the rows
/// whose last writer is a file older than the generation, that is rows the generation did not
/// contain and no newer change wrote, and leaves a tombstone at the generation's start so an
/// older change arriving late cannot bring them back (or flags them, with soft deletes).
/// Returns one row: the number of rows removed. The caller holds the table's merge lock.
pub fn replace_sql(target: &TargetTable, deletes: &Deletes) -> String {
    let t = target.qualified();
    let stale = "t._sluice_file_time IS NULL OR t._sluice_file_time < $1::timestamptz";
    match deletes {
        Deletes::Hard { tombstones } => {
            let keys = key_list(target);
            let t_keys = target
                .key
                .iter()
                .map(|&i| format!("t.{}", quote_ident(&target.columns[i].name)))
                .collect::<Vec<_>>()
                .join(", ");
            format!(
                "WITH gone AS (
    DELETE FROM {t} AS t WHERE {stale} RETURNING {t_keys}
), buried AS (
    INSERT INTO {tombstones} AS x ({keys}, _sluice_version, _sluice_file_time, _sluice_record, _sluice_file)
    SELECT {keys}, $1::timestamptz, $1::timestamptz, 0, 0 FROM gone
    ON CONFLICT ({keys}) DO UPDATE SET _sluice_version = EXCLUDED._sluice_version,
        _sluice_file_time = EXCLUDED._sluice_file_time, _sluice_record = 0, _sluice_file = 0
     WHERE {xv} < {ev}
    RETURNING 1
)
SELECT count(*) FROM gone",
                xv = version_of("x"),
                ev = version_of("EXCLUDED"),
            )
        }
        Deletes::Soft { flag } => {
            let f = quote_ident(flag);
            format!(
                "WITH gone AS (
    UPDATE {t} AS t SET {f} = true, _sluice_version = $1::timestamptz, _sluice_file_time = $1::timestamptz,
           _sluice_record = 0, _sluice_file = 0
     WHERE ({stale}) AND NOT t.{f}
    RETURNING 1
)
SELECT count(*) FROM gone"
            )
        }
    }
}

/// Prunes a table's tombstones older than `$1`; see the README's rule.
pub fn prune_tombstones_sql(tombstones: &str) -> String {
    format!("DELETE FROM {tombstones} WHERE _sluice_version < $1")
}
