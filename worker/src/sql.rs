//! All SQL the worker runs, built in one place. Pure; unit-tested without a database.
//!
//! Invariants:
//! - every identifier is quoted with [`quote_ident`] and comes from the PostgreSQL catalog (or
//!   the operator's rules file), never from an S3 key: names from keys are only ever bound as
//!   parameters to the catalog lookup;
//! - every value is bound or streamed through `COPY`, never spliced into SQL text;
//! - the merge is set-based: one statement per file, whatever its size.
//!
//! # The merge
//!
//! Rows are staged in a temporary table `sluice_stage` (typed like the target, so PostgreSQL's
//! own input functions check every value during `COPY`) with two extra columns: `_sluice_rec`,
//! the record number in the file, and `_sluice_op`, `I`, `U` or `D`. The merge keeps the last
//! operation per key (`DISTINCT ON ... ORDER BY key, _sluice_rec DESC`), deletes the keys whose
//! last operation is `D` and upserts the others, all in one statement. A version guard fits in
//! the upsert's `DO UPDATE ... WHERE` and the delete's `WHERE` without changing this shape.

pub use sluice_common::warehouse::state::{
    bootstrap_sql, ledger_claim_sql, ledger_counts_sql, ledger_exists_sql, BOOTSTRAP_DONE,
};
pub use sluice_common::warehouse::{is_system_column, quote_ident, quote_literal};
use sluice_common::warehouse::{SystemColumn, SYSTEM_COLUMNS};

/// A target column as the catalog describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    /// `format_type(atttypid, atttypmod)`: a type name from the catalog, e.g. `numeric(12,2)`.
    pub sql_type: String,
    /// `NOT NULL` in the catalog.
    pub not_null: bool,
}

/// A target table: its data columns in ordinal order and its primary key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetTable {
    pub schema: String,
    pub name: String,
    /// The table's oid: names its tombstone table and its merge lock.
    pub oid: u32,
    /// Data columns in ordinal order: every column but Sluice's system columns and the
    /// soft-delete flag.
    pub columns: Vec<Column>,
    /// Indexes into `columns` of the primary key's columns, in key order.
    pub key: Vec<usize>,
    /// Names of the system columns and the soft-delete flag the table already has.
    pub present: Vec<String>,
}

impl TargetTable {
    /// `"schema"."table"`.
    pub fn qualified(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name))
    }

    /// `schema.table`, unquoted, for messages.
    pub fn label(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }

    /// The table's tombstone table (hard deletes), in the state schema.
    pub fn tombstones(&self, state_schema: &str) -> String {
        format!("{}.tombstones_{}", quote_ident(state_schema), self.oid)
    }

    /// The advisory lock key that serialises merges into this table.
    pub fn merge_lock(&self) -> i64 {
        (0x534C_5543_i64 << 32) | i64::from(self.oid)
    }

    /// Whether the table has every system column, and the flag column where one is asked for.
    pub fn is_prepared(&self, soft_delete: Option<&str>) -> bool {
        SYSTEM_COLUMNS
            .iter()
            .all(|c| self.present.iter().any(|p| p == c.name))
            && soft_delete.is_none_or(|f| self.present.iter().any(|p| p == f))
    }
}

/// The staging table's name (temporary, dropped at commit).
pub const STAGE: &str = "sluice_stage";

/// Catalog lookup of a table's columns and key. Parameters: `$1` schema, `$2` table, compared
/// as `text` so that a name longer than PostgreSQL's 63-byte limit never matches a truncated one.
pub const CATALOG_COLUMNS: &str = "\
SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), \
       coalesce((SELECT k.ord FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) \
                  WHERE k.attnum = a.attnum), 0)::int4 AS key_position, c.oid, a.attnotnull \
  FROM pg_catalog.pg_class c \
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
  JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
  LEFT JOIN pg_catalog.pg_index i ON i.indrelid = c.oid AND i.indisprimary \
 WHERE n.nspname::text = $1 AND c.relname::text = $2 AND c.relkind IN ('r', 'p') \
   AND a.attgenerated = '' \
 ORDER BY a.attnum";

/// Adds what the version guard needs to a target table: the system columns (with comments),
/// the soft-delete flag, or the tombstone table for hard deletes. Idempotent; run under the
/// table's merge lock, outside any load (adding a column takes a brief exclusive lock).
pub fn prepare_sql(target: &TargetTable, soft_delete: Option<&str>, state_schema: &str) -> String {
    let t = target.qualified();
    let mut sql = String::new();
    let mut adds = Vec::new();
    for SystemColumn {
        name, ddl_type: ty, ..
    } in SYSTEM_COLUMNS
    {
        if !target.present.iter().any(|p| p == name) {
            adds.push(format!(
                "ADD COLUMN IF NOT EXISTS {} {ty}",
                quote_ident(name)
            ));
        }
    }
    if let Some(flag) = soft_delete {
        if !target.present.iter().any(|p| p == flag) {
            adds.push(format!(
                "ADD COLUMN IF NOT EXISTS {} boolean NOT NULL DEFAULT false",
                quote_ident(flag)
            ));
        }
    }
    if !adds.is_empty() {
        sql.push_str(&format!("ALTER TABLE {t} {};\n", adds.join(", ")));
        for SystemColumn { name, comment, .. } in SYSTEM_COLUMNS {
            if !target.present.iter().any(|p| p == name) {
                sql.push_str(&format!(
                    "COMMENT ON COLUMN {t}.{} IS {};\n",
                    quote_ident(name),
                    quote_literal(comment)
                ));
            }
        }
    }
    if soft_delete.is_none() {
        let tomb = target.tombstones(state_schema);
        let mut cols: Vec<String> = target
            .key
            .iter()
            .map(|&i| {
                let c = &target.columns[i];
                format!("{} {} NOT NULL", quote_ident(&c.name), c.sql_type)
            })
            .collect();
        cols.push("_sluice_version timestamptz NOT NULL".to_owned());
        cols.push("_sluice_file_time timestamptz NOT NULL".to_owned());
        cols.push("_sluice_record bigint NOT NULL".to_owned());
        cols.push("_sluice_file bigint NOT NULL".to_owned());
        sql.push_str(&format!(
            "CREATE TABLE IF NOT EXISTS {tomb} ({}, PRIMARY KEY ({}));\n\
             CREATE INDEX IF NOT EXISTS tombstones_{oid}_version ON {tomb} (_sluice_version);\n\
             COMMENT ON TABLE {tomb} IS {};\n",
            cols.join(", "),
            key_list(target),
            quote_literal(&format!(
                "sluice: tombstones of rows deleted from {}, so that older operations cannot bring them back",
                target.qualified()
            )),
            oid = target.oid,
        ));
    }
    sql
}

fn key_list(target: &TargetTable) -> String {
    target
        .key
        .iter()
        .map(|&i| quote_ident(&target.columns[i].name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The staging table's own columns, before the file's: record number, operation, the
/// version from the file's timestamp column (NULL: the file's time), and the 1-based positions
/// (among the file's columns) that a partial `U` image leaves unchanged (NULL: none).
const STAGE_SYSTEM: &str =
    "_sluice_rec bigint NOT NULL, _sluice_op \"char\" NOT NULL, _sluice_version timestamptz, _sluice_keep int2[]";

/// With `on_error = reject_rows`, a rejected record is a stage row with `_sluice_op = 'R'`, NULL
/// data columns, and these: why, where, and its original bytes.
const STAGE_REJECT: &str = "_sluice_reject text, _sluice_class text, _sluice_column text, \
     _sluice_line bigint, _sluice_offset bigint, _sluice_raw bytea";
const STAGE_REJECT_NAMES: &str =
    "_sluice_reject, _sluice_class, _sluice_column, _sluice_line, _sluice_offset, _sluice_raw";

/// `CREATE TEMP TABLE sluice_stage (...)` for the file's columns (indexes into the target).
pub fn create_stage_sql(target: &TargetTable, file_columns: &[usize], rejects: bool) -> String {
    let mut cols = vec![STAGE_SYSTEM.to_owned()];
    if rejects {
        cols.push(STAGE_REJECT.to_owned());
    }
    for &i in file_columns {
        let c = &target.columns[i];
        cols.push(format!("{} {}", quote_ident(&c.name), c.sql_type));
    }
    format!(
        "CREATE TEMP TABLE {STAGE} ({}) ON COMMIT DROP",
        cols.join(", ")
    )
}

/// `COPY sluice_stage (...) FROM STDIN` in text format.
pub fn copy_stage_sql(target: &TargetTable, file_columns: &[usize], rejects: bool) -> String {
    let mut cols = vec!["_sluice_rec, _sluice_op, _sluice_version, _sluice_keep".to_owned()];
    if rejects {
        cols.push(STAGE_REJECT_NAMES.to_owned());
    }
    cols.extend(
        file_columns
            .iter()
            .map(|&i| quote_ident(&target.columns[i].name)),
    );
    format!("COPY pg_temp.{STAGE} ({}) FROM STDIN", cols.join(", "))
}

/// Fills the columns that partial `U` images leave unchanged from the latest earlier record of
/// the same key in the same file that carries a value, so that `I` then partial `U` in one file
/// merges as the source had it. Only run for files with partial images; one `UPDATE` per
/// non-key column, set-based, over an index on the stage.
pub fn resolve_partial_sql(target: &TargetTable, file_columns: &[usize]) -> String {
    let q = |i: usize| quote_ident(&target.columns[i].name);
    let key: Vec<String> = target.key.iter().map(|&i| q(i)).collect();
    let key_match = key
        .iter()
        .map(|k| format!("p.{k} = s.{k}"))
        .collect::<Vec<_>>()
        .join(" AND ");
    let mut sql = format!(
        "CREATE INDEX ON pg_temp.{STAGE} ({}, _sluice_rec);\nANALYZE pg_temp.{STAGE};\n",
        key.join(", ")
    );
    for (pos, &i) in file_columns.iter().enumerate() {
        if target.key.contains(&i) {
            continue;
        }
        let pos = pos + 1;
        let c = q(i);
        let earlier = format!(
            "FROM pg_temp.{STAGE} p WHERE {key_match} AND p._sluice_rec < s._sluice_rec \
             AND p._sluice_op <> 'R' AND NOT ({pos} = ANY(coalesce(p._sluice_keep, '{{}}')))"
        );
        sql.push_str(&format!(
            "UPDATE pg_temp.{STAGE} s SET {c} = (SELECT p.{c} {earlier} ORDER BY p._sluice_rec DESC LIMIT 1), \
             _sluice_keep = array_remove(s._sluice_keep, {pos}::int2) \
             WHERE {pos} = ANY(s._sluice_keep) AND EXISTS (SELECT 1 {earlier});\n"
        ));
    }
    sql
}

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

/// Takes a table's merge lock (`$1` [`TargetTable::merge_lock`]) until the transaction ends.
pub const MERGE_LOCK: &str = "SELECT pg_advisory_xact_lock($1)";

/// Takes a table's merge lock until the transaction ends, waiting at most `timeout` (zero: no
/// limit): `lock_timeout` applies to advisory locks, so it is raised to `timeout` for this one
/// wait and set back to the session's value (`--lock-timeout`) for the rest of the
/// transaction. One round trip; the key is an integer of ours, never user text.
pub fn merge_lock_sql(target: &TargetTable, timeout: std::time::Duration) -> String {
    format!(
        "SET LOCAL lock_timeout = {}; SELECT pg_advisory_xact_lock({}); SET LOCAL lock_timeout TO DEFAULT",
        timeout.as_millis(),
        target.merge_lock()
    )
}

/// What the merge of one file needs to know.
#[derive(Debug, Clone)]
pub struct MergeSpec<'a> {
    pub target: &'a TargetTable,
    /// Target columns staged, in file order.
    pub file_columns: &'a [usize],
    pub deletes: Deletes,
    /// Whether the file has partial `U` images (adds the patch statements).
    pub partial: bool,
}

/// The version triple of a row `r` of the target or the tombstones.
fn version_of(r: &str) -> String {
    format!("({r}._sluice_version, {r}._sluice_file_time, {r}._sluice_record)")
}

/// The version triple of a staged operation `s` (`$1` is the file's time).
const STAGED_VERSION: &str = "(s._v, $1::timestamptz, s._sluice_rec)";

/// Whether the target has no rows at all: the direct path's condition (see
/// `encode::Direct`). Rows other transactions have not committed are not seen; a clash with
/// them is a unique violation, after which the file loads by the staged path.
pub fn target_is_empty_sql(target: &TargetTable) -> String {
    format!("SELECT NOT EXISTS (SELECT 1 FROM {})", target.qualified())
}

/// `COPY` of the direct path, straight into the target: the system columns first (the
/// soft-delete flag too, where there is one), then the file's columns; lines are written by
/// `encode_record` with an `encode::Direct`.
pub fn direct_copy_sql(
    target: &TargetTable,
    file_columns: &[usize],
    flag: Option<&str>,
    binary: bool,
) -> String {
    let mut cols =
        vec!["_sluice_record, _sluice_version, _sluice_file_time, _sluice_file".to_owned()];
    if let Some(f) = flag {
        cols.push(quote_ident(f));
    }
    cols.extend(
        file_columns
            .iter()
            .map(|&i| quote_ident(&target.columns[i].name)),
    );
    format!(
        "COPY {} ({}) FROM STDIN{}",
        target.qualified(),
        cols.join(", "),
        if binary { " (FORMAT binary)" } else { "" }
    )
}

/// After a direct `COPY`, under the table's merge lock: the guard, applied afterwards. Rows of
/// file `$1` that a tombstone at least as new supersedes are removed (a delete merged while
/// the copy ran, or before it); tombstones older than the row that replaced them go, as the
/// merge's `unburied` step does. Returns the number of rows removed.
pub fn direct_guard_sql(target: &TargetTable, tombstones: &str) -> String {
    let t = target.qualified();
    let km = target
        .key
        .iter()
        .map(|&i| {
            let k = quote_ident(&target.columns[i].name);
            format!("x.{k} = t.{k}")
        })
        .collect::<Vec<_>>()
        .join(" AND ");
    let (xv, tv) = (version_of("x"), version_of("t"));
    format!(
        "WITH gone AS (
    DELETE FROM {t} AS t USING {tombstones} AS x
     WHERE t._sluice_file = $1 AND {km} AND {xv} >= {tv}
    RETURNING 1
), unburied AS (
    DELETE FROM {tombstones} AS x USING {t} AS t
     WHERE t._sluice_file = $1 AND {km} AND {xv} < {tv}
    RETURNING 1
)
SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM unburied)"
    )
}

/// The set-based, version-guarded merge of the staged file into the target. Parameters: `$1`
/// the file's time (`timestamptz`), `$2` its ledger `file_id`. Returns one row: `(inserted,
/// updated, deleted, superseded bigint, newest version timestamptz)`.
///
/// Every operation has a version `(v, file time, record)`, compared as a row: `v` is the
/// file's timestamp column or else the file's time. Per key only the newest operation of the
/// file counts. It is applied only if it is not older than the row's stored version (an equal
/// version is the same operation applied again, as an operator's reload does: it restores the
/// row) and newer than the key's tombstone; a delete removes the row (or flags it) and records
/// a tombstone. An operation
/// that loses is *superseded*: counted, not applied. The caller holds the table's merge lock,
/// so merges of one table never interleave (two statements could otherwise both miss each
/// other's uncommitted tombstone and row).
pub fn merge_sql(m: &MergeSpec<'_>) -> String {
    let target = m.target;
    let t = target.qualified();
    let q = |i: usize| quote_ident(&target.columns[i].name);
    let key: Vec<String> = target.key.iter().map(|&i| q(i)).collect();
    let key_list = key.join(", ");
    let matching = |a: &str, b: &str| {
        key.iter()
            .map(|k| format!("{a}.{k} = {b}.{k}"))
            .collect::<Vec<_>>()
            .join(" AND ")
    };
    let cols: Vec<String> = m.file_columns.iter().map(|&i| q(i)).collect();
    let s_cols = cols
        .iter()
        .map(|c| format!("s.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let col_list = cols.join(", ");
    let sys_list = "_sluice_version, _sluice_file_time, _sluice_record, _sluice_file";
    let sys_values = "s._v, $1::timestamptz, s._sluice_rec, $2::bigint";
    let sys_set = "_sluice_version = EXCLUDED._sluice_version, _sluice_file_time = EXCLUDED._sluice_file_time, \
                   _sluice_record = EXCLUDED._sluice_record, _sluice_file = EXCLUDED._sluice_file";
    let non_key: Vec<(usize, String)> = m
        .file_columns
        .iter()
        .enumerate()
        .filter(|(_, i)| !target.key.contains(i))
        .map(|(pos, &i)| (pos + 1, q(i)))
        .collect();
    let row_guard = format!(
        "(t._sluice_version IS NULL OR {} <= {})",
        version_of("t"),
        version_of("EXCLUDED")
    );
    let tv = version_of("t");
    let km = matching("t", "s");
    let s_keys = key
        .iter()
        .map(|k| format!("s.{k}"))
        .collect::<Vec<_>>()
        .join(", ");

    let mut ctes = vec![format!(
        "last AS MATERIALIZED (
    SELECT DISTINCT ON ({key_list}) s.*, coalesce(s._sluice_version, $1::timestamptz) AS _v,
           s._sluice_keep IS NULL OR cardinality(s._sluice_keep) = 0 AS _full
      FROM pg_temp.{STAGE} AS s
     WHERE s._sluice_op <> 'R'
     ORDER BY {key_list}, coalesce(s._sluice_version, $1::timestamptz) DESC, s._sluice_rec DESC
)"
    )];
    let mut counts_applied = vec!["(SELECT count(*) FROM upserted)".to_owned()];
    let (inserted, updated);
    // Partial images: the flag to clear (soft) or the tombstone check (hard).
    let (deleted, patch_flag, patch_tombstones) = match &m.deletes {
        Deletes::Hard { tombstones } => {
            let xm = matching("x", "s");
            let xv = version_of("x");
            let tomb_blocks = format!(
                "NOT EXISTS (SELECT 1 FROM {tombstones} AS x WHERE {xm} AND {xv} >= {STAGED_VERSION})"
            );
            ctes.push(format!(
                "deleted AS (
    DELETE FROM {t} AS t USING last AS s
     WHERE s._sluice_op = 'D' AND {km} AND (t._sluice_version IS NULL OR {tv} <= {STAGED_VERSION})
    RETURNING 1
)"
            ));
            ctes.push(format!(
                "buried AS (
    INSERT INTO {tombstones} AS x ({key_list}, {sys_list})
    SELECT {s_keys}, {sys_values} FROM last AS s
     WHERE s._sluice_op = 'D'
       AND NOT EXISTS (SELECT 1 FROM {t} AS t WHERE {km} AND {tv} > {STAGED_VERSION})
    ON CONFLICT ({key_list}) DO UPDATE SET {sys_set}
     WHERE {xv} < {ev}
    RETURNING 1
)",
                ev = version_of("EXCLUDED"),
            ));
            ctes.push(format!(
                "unburied AS (
    DELETE FROM {tombstones} AS x USING last AS s
     WHERE s._sluice_op <> 'D' AND {xm} AND {xv} < {STAGED_VERSION}
    RETURNING 1
)"
            ));
            let updates: Vec<String> = non_key
                .iter()
                .map(|(_, c)| format!("{c} = EXCLUDED.{c}"))
                .chain(std::iter::once(sys_set.to_owned()))
                .collect();
            ctes.push(format!(
                "upserted AS (
    INSERT INTO {t} AS t ({col_list}, {sys_list})
    SELECT {s_cols}, {sys_values} FROM last AS s
     WHERE s._sluice_op <> 'D' AND s._full AND {tomb_blocks}
     ORDER BY {s_keys}
    ON CONFLICT ({key_list}) DO UPDATE SET {updates}
     WHERE {row_guard}
    RETURNING (t.xmax = 0) AS inserted, false AS gone
)",
                updates = updates.join(", "),
            ));
            counts_applied.push("(SELECT count(*) FROM buried)".to_owned());
            ("(SELECT count(*) FROM deleted)", None, Some(tomb_blocks))
        }
        Deletes::Soft { flag } => {
            let f = quote_ident(flag);
            let updates: Vec<String> = non_key
                .iter()
                .map(|(_, c)| {
                    format!("{c} = CASE WHEN EXCLUDED.{f} THEN t.{c} ELSE EXCLUDED.{c} END")
                })
                .chain(std::iter::once(format!("{f} = EXCLUDED.{f}")))
                .chain(std::iter::once(sys_set.to_owned()))
                .collect();
            ctes.push(format!(
                "upserted AS (
    INSERT INTO {t} AS t ({col_list}, {f}, {sys_list})
    SELECT {s_cols}, s._sluice_op = 'D', {sys_values} FROM last AS s
     WHERE s._full OR s._sluice_op = 'D'
     ORDER BY {s_keys}
    ON CONFLICT ({key_list}) DO UPDATE SET {updates}
     WHERE {row_guard}
    RETURNING (t.xmax = 0) AS inserted, t.{f} AS gone
)",
                updates = updates.join(", "),
            ));
            ("(SELECT count(*) FROM upserted WHERE gone)", Some(f), None)
        }
    };
    if m.partial {
        push_patches(
            &mut ctes,
            &t,
            &col_list,
            &s_cols,
            &non_key,
            &km,
            &tv,
            patch_flag.as_deref(),
            patch_tombstones.as_deref(),
        );
        counts_applied.push("(SELECT count(*) FROM patched)".to_owned());
        counts_applied.push("(SELECT count(*) FROM patched_new)".to_owned());
    }
    if m.partial {
        inserted = "(SELECT count(*) FROM upserted WHERE inserted AND NOT gone) + (SELECT count(*) FROM patched_new)".to_owned();
        updated = "(SELECT count(*) FROM upserted WHERE NOT inserted AND NOT gone) + (SELECT count(*) FROM patched)".to_owned();
    } else {
        inserted = "(SELECT count(*) FROM upserted WHERE inserted AND NOT gone)".to_owned();
        updated = "(SELECT count(*) FROM upserted WHERE NOT inserted AND NOT gone)".to_owned();
    }
    format!(
        "WITH {}
SELECT {inserted}, {updated}, {deleted},
       (SELECT count(*) FROM last) - {applied},
       (SELECT max(_v) FROM last)",
        ctes.join(",\n"),
        applied = counts_applied.join(" - "),
    )
}

/// The two statements of partial `U` images that are still partial after
/// [`resolve_partial_sql`]: update the row keeping the unchanged columns, or insert it with
/// those columns NULL when the row does not exist (an older full image may still arrive, and
/// loses to this newer one: DMS wrote no value for those columns).
#[allow(clippy::too_many_arguments)]
fn push_patches(
    ctes: &mut Vec<String>,
    t: &str,
    col_list: &str,
    s_cols: &str,
    non_key: &[(usize, String)],
    km: &str,
    tv: &str,
    flag: Option<&str>,
    tomb_blocks: Option<&str>,
) {
    let mut sets: Vec<String> = non_key
        .iter()
        .map(|(pos, c)| {
            format!("{c} = CASE WHEN {pos} = ANY(s._sluice_keep) THEN t.{c} ELSE s.{c} END")
        })
        .collect();
    if let Some(f) = flag {
        sets.push(format!("{f} = false"));
    }
    sets.push(
        "_sluice_version = s._v, _sluice_file_time = $1::timestamptz, _sluice_record = s._sluice_rec, _sluice_file = $2::bigint"
            .to_owned(),
    );
    ctes.push(format!(
        "patched AS (
    UPDATE {t} AS t SET {sets} FROM last AS s
     WHERE s._sluice_op <> 'D' AND NOT s._full AND {km}
       AND (t._sluice_version IS NULL OR {tv} <= {STAGED_VERSION})
    RETURNING 1
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
    SELECT {s_cols}{flag_val}, s._v, $1::timestamptz, s._sluice_rec, $2::bigint FROM last AS s
     WHERE s._sluice_op <> 'D' AND NOT s._full
       AND NOT EXISTS (SELECT 1 FROM {t} AS t WHERE {km}){tomb}
    RETURNING 1
)",
        tomb = tomb_blocks.map(|b| format!("\n       AND {b}")).unwrap_or_default(),
    ));
}

/// Removes a file's earlier rejects (`$1..$3` bucket, key, etag): a file loaded again replaces
/// them.
pub fn clear_rejects_sql(state_schema: &str) -> String {
    format!(
        "DELETE FROM {}.rejects WHERE bucket = $1 AND key = $2 AND etag = $3",
        quote_ident(state_schema)
    )
}

/// Moves the rejects the parser wrote into the stage to the rejects table (`$1..$3` bucket, key,
/// etag; `$4` target label).
pub fn save_staged_rejects_sql(state_schema: &str) -> String {
    format!(
        "INSERT INTO {}.rejects (bucket, key, etag, record, line, byte_offset, column_name, class, reason, raw, target_table) \
         SELECT $1, $2, $3, _sluice_rec, _sluice_line, _sluice_offset, _sluice_column, _sluice_class, _sluice_reject, _sluice_raw, $4 \
           FROM pg_temp.{STAGE} WHERE _sluice_op = 'R'",
        quote_ident(state_schema)
    )
}

/// One reject found by PostgreSQL (`$1..$3` bucket, key, etag; `$4` record; `$5` line; `$6`
/// byte offset; `$7` column; `$8` class; `$9` reason; `$10` raw bytes; `$11` target).
pub fn insert_reject_sql(state_schema: &str) -> String {
    format!(
        "INSERT INTO {}.rejects (bucket, key, etag, record, line, byte_offset, column_name, class, reason, raw, target_table) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        quote_ident(state_schema)
    )
}

/// The keys of a table folder written at or after a generation's start that the ledger holds
/// and whose name may be a `LOAD` file (`$1` bucket, `$2` folder, `$3` start). Which of them are
/// full-load files is for [`count_full_loads`] to say: the key's name, format and kind are read
/// by `sluice_common::mapping` alone, as the coordinator reads them when it counts the
/// generation's members, so a format the mapping loads (`.csv`, `.csv.gz`, `.parquet`) is
/// counted here too.
pub fn generation_files_sql(state_schema: &str) -> String {
    format!(
        "SELECT DISTINCT key FROM {}.ledger WHERE bucket = $1 AND starts_with(key, $2) \
         AND file_time >= $3 AND strpos(key, '/LOAD') > 0",
        quote_ident(state_schema)
    )
}

/// How many of `keys` name full-load files, by the same rule the coordinator uses to find a
/// generation's members ([`sluice_common::mapping::map_key`]).
pub fn count_full_loads<'a>(keys: impl IntoIterator<Item = &'a str>) -> i64 {
    keys.into_iter()
        .filter(|key| {
            matches!(
                sluice_common::mapping::map_key("", key).map(|f| f.kind),
                Ok(sluice_common::mapping::FileKind::FullLoad { .. })
            )
        })
        .count() as i64
}

/// Records that a generation's replacement runs (`$1` target, `$2` generation, `$3` start, `$4`
/// files, `$5` worker); no row back means it ran already.
pub fn generation_claim_sql(state_schema: &str) -> String {
    format!(
        "INSERT INTO {}.generations (target_table, generation, start, files, worker) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING 1",
        quote_ident(state_schema)
    )
}

/// Records how many rows a generation's replacement removed (`$1` target, `$2` generation,
/// `$3` rows).
pub fn generation_done_sql(state_schema: &str) -> String {
    format!(
        "UPDATE {}.generations SET rows_removed = $3 WHERE target_table = $1 AND generation = $2",
        quote_ident(state_schema)
    )
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

#[cfg(test)]
mod tests {
    use super::*;

    fn orders() -> TargetTable {
        TargetTable {
            schema: "wh".into(),
            name: "or\"ders".into(),
            oid: 16384,
            columns: vec![
                Column {
                    name: "id".into(),
                    sql_type: "integer".into(),
                    not_null: true,
                },
                Column {
                    name: "note".into(),
                    sql_type: "text".into(),
                    not_null: false,
                },
                Column {
                    name: "amount".into(),
                    sql_type: "numeric(12,2)".into(),
                    not_null: false,
                },
            ],
            key: vec![0],
            present: vec![],
        }
    }

    fn hard() -> Deletes {
        Deletes::Hard {
            tombstones: orders().tombstones("st"),
        }
    }

    #[test]
    fn identifiers_are_quoted_and_inner_quotes_doubled() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_ident("x; drop table y"), "\"x; drop table y\"");
        assert_eq!(orders().qualified(), "\"wh\".\"or\"\"ders\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(orders().tombstones("s\"t"), "\"s\"\"t\".tombstones_16384");
    }

    #[test]
    fn stage_is_typed_like_the_target() {
        let sql = create_stage_sql(&orders(), &[0, 2], false);
        assert_eq!(
            sql,
            "CREATE TEMP TABLE sluice_stage (_sluice_rec bigint NOT NULL, _sluice_op \"char\" NOT NULL, _sluice_version timestamptz, _sluice_keep int2[], \"id\" integer, \"amount\" numeric(12,2)) ON COMMIT DROP"
        );
        assert_eq!(
            copy_stage_sql(&orders(), &[0, 2], false),
            "COPY pg_temp.sluice_stage (_sluice_rec, _sluice_op, _sluice_version, _sluice_keep, \"id\", \"amount\") FROM STDIN"
        );
        let with_rejects = create_stage_sql(&orders(), &[0], true);
        assert!(with_rejects.contains("_sluice_keep int2[], _sluice_reject text, _sluice_class text, _sluice_column text, _sluice_line bigint, _sluice_offset bigint, _sluice_raw bytea, \"id\" integer"), "{with_rejects}");
        assert!(copy_stage_sql(&orders(), &[0], true).contains("_sluice_keep, _sluice_reject, _sluice_class, _sluice_column, _sluice_line, _sluice_offset, _sluice_raw, \"id\")"));
    }

    #[test]
    fn merge_keeps_the_newest_op_per_key_and_guards_every_write_by_version() {
        let t = orders();
        let sql = merge_sql(&MergeSpec {
            target: &t,
            file_columns: &[0, 2],
            deletes: hard(),
            partial: false,
        });
        assert!(sql.contains("SELECT DISTINCT ON (\"id\") s.*, coalesce(s._sluice_version, $1::timestamptz) AS _v"), "{sql}");
        assert!(sql.contains("ORDER BY \"id\", coalesce(s._sluice_version, $1::timestamptz) DESC, s._sluice_rec DESC"), "{sql}");
        assert!(
            sql.contains("WHERE s._sluice_op <> 'R'"),
            "rejects never merge: {sql}"
        );
        // Upsert: only newer than the row, and never over a newer tombstone.
        assert!(sql.contains("ON CONFLICT (\"id\") DO UPDATE SET \"amount\" = EXCLUDED.\"amount\", _sluice_version = EXCLUDED._sluice_version"), "{sql}");
        assert!(sql.contains("WHERE (t._sluice_version IS NULL OR (t._sluice_version, t._sluice_file_time, t._sluice_record) <= (EXCLUDED._sluice_version, EXCLUDED._sluice_file_time, EXCLUDED._sluice_record))"), "{sql}");
        assert!(sql.contains("NOT EXISTS (SELECT 1 FROM \"st\".tombstones_16384 AS x WHERE x.\"id\" = s.\"id\" AND (x._sluice_version, x._sluice_file_time, x._sluice_record) >= (s._v, $1::timestamptz, s._sluice_rec))"), "{sql}");
        // Delete: only an older row; the tombstone only where no newer row exists.
        assert!(sql.contains("DELETE FROM \"wh\".\"or\"\"ders\" AS t USING last AS s\n     WHERE s._sluice_op = 'D' AND t.\"id\" = s.\"id\" AND (t._sluice_version IS NULL OR (t._sluice_version, t._sluice_file_time, t._sluice_record) <= (s._v, $1::timestamptz, s._sluice_rec))"), "{sql}");
        assert!(
            sql.contains("INSERT INTO \"st\".tombstones_16384 AS x"),
            "{sql}"
        );
        assert!(
            !sql.contains("patched"),
            "no partial images, no patch statements: {sql}"
        );
        assert!(
            !sql.contains("\"note\""),
            "columns not in the file stay untouched: {sql}"
        );
    }

    #[test]
    fn soft_deletes_flag_the_row_and_keep_its_values() {
        let t = orders();
        let sql = merge_sql(&MergeSpec {
            target: &t,
            file_columns: &[0, 1, 2],
            deletes: Deletes::Soft {
                flag: "gone".into(),
            },
            partial: true,
        });
        assert!(!sql.contains("tombstones"), "{sql}");
        assert!(
            sql.contains("SELECT s.\"id\", s.\"note\", s.\"amount\", s._sluice_op = 'D'"),
            "{sql}"
        );
        assert!(
            sql.contains(
                "\"note\" = CASE WHEN EXCLUDED.\"gone\" THEN t.\"note\" ELSE EXCLUDED.\"note\" END"
            ),
            "{sql}"
        );
        assert!(sql.contains("\"amount\" = CASE WHEN 3 = ANY(s._sluice_keep) THEN t.\"amount\" ELSE s.\"amount\" END"), "{sql}");
        assert!(sql.contains("\"gone\" = false"), "{sql}");
    }

    #[test]
    fn merge_with_composite_key_and_only_key_columns() {
        let mut t = orders();
        t.key = vec![0, 1];
        let sql = merge_sql(&MergeSpec {
            target: &t,
            file_columns: &[0, 1],
            deletes: hard(),
            partial: false,
        });
        assert!(sql.contains("DISTINCT ON (\"id\", \"note\")"), "{sql}");
        assert!(
            sql.contains("t.\"id\" = s.\"id\" AND t.\"note\" = s.\"note\""),
            "{sql}"
        );
        assert!(
            sql.contains("ON CONFLICT (\"id\", \"note\") DO UPDATE SET _sluice_version"),
            "{sql}"
        );
    }

    #[test]
    fn partial_images_are_filled_from_earlier_records_of_the_file() {
        let sql = resolve_partial_sql(&orders(), &[0, 1, 2]);
        assert!(
            sql.starts_with("CREATE INDEX ON pg_temp.sluice_stage (\"id\", _sluice_rec);"),
            "{sql}"
        );
        assert!(sql.contains("SET \"note\" = (SELECT p.\"note\" FROM pg_temp.sluice_stage p WHERE p.\"id\" = s.\"id\" AND p._sluice_rec < s._sluice_rec AND p._sluice_op <> 'R' AND NOT (2 = ANY(coalesce(p._sluice_keep, '{}'))) ORDER BY p._sluice_rec DESC LIMIT 1)"), "{sql}");
        assert!(
            sql.contains("array_remove(s._sluice_keep, 3::int2)"),
            "{sql}"
        );
        assert!(
            !sql.contains("SET \"id\""),
            "key columns are never partial: {sql}"
        );
    }

    #[test]
    fn prepare_adds_only_what_is_missing() {
        let mut t = orders();
        let sql = prepare_sql(&t, None, "st");
        assert!(sql.contains("ALTER TABLE \"wh\".\"or\"\"ders\" ADD COLUMN IF NOT EXISTS \"_sluice_version\" timestamptz, "), "{sql}");
        assert!(sql.contains("CREATE TABLE IF NOT EXISTS \"st\".tombstones_16384 (\"id\" integer NOT NULL, _sluice_version timestamptz NOT NULL"), "{sql}");
        assert!(
            sql.contains(
                "COMMENT ON COLUMN \"wh\".\"or\"\"ders\".\"_sluice_file\" IS 'sluice: file_id"
            ),
            "{sql}"
        );
        t.present = SYSTEM_COLUMNS.iter().map(|c| c.name.to_owned()).collect();
        assert!(t.is_prepared(None));
        assert!(!t.is_prepared(Some("gone")));
        let sql = prepare_sql(&t, Some("gone"), "st");
        assert_eq!(sql, "ALTER TABLE \"wh\".\"or\"\"ders\" ADD COLUMN IF NOT EXISTS \"gone\" boolean NOT NULL DEFAULT false;\n");
    }

    #[test]
    fn replacement_removes_rows_older_than_the_generation_and_buries_them() {
        let sql = replace_sql(&orders(), &hard());
        assert!(sql.contains("DELETE FROM \"wh\".\"or\"\"ders\" AS t WHERE t._sluice_file_time IS NULL OR t._sluice_file_time < $1::timestamptz RETURNING t.\"id\""), "{sql}");
        assert!(
            sql.contains("INSERT INTO \"st\".tombstones_16384 AS x (\"id\", _sluice_version"),
            "{sql}"
        );
        let soft = replace_sql(
            &orders(),
            &Deletes::Soft {
                flag: "gone".into(),
            },
        );
        assert!(
            soft.contains("SET \"gone\" = true") && soft.contains("AND NOT t.\"gone\""),
            "{soft}"
        );
        assert!(generation_files_sql("s").contains("starts_with(key, $2) AND file_time >= $3"));
    }

    #[test]
    fn a_generation_counts_its_load_files_in_every_format() {
        let keys = [
            "dms/s/t/LOAD00000001.csv",
            "dms/s/t/LOAD00000002.csv.gz",
            "dms/s/t/LOAD00000003.parquet",
            "dms/s/t/LOAD0000000A.PARQUET",
            "dms/s/t/20241029-113401000.parquet",
            "dms/s/t/20241029-113401000.csv",
            "dms/s/t/load00000004.csv",
            "dms/s/t/LOAD00000005.orc",
            "dms/s/t/LOAD0000006.parquet",
        ];
        assert_eq!(count_full_loads(keys), 4);
        assert_eq!(count_full_loads(["dms/s/t/LOAD00000001.parquet"]), 1);
        assert!(generation_files_sql("s").contains("strpos(key, '/LOAD') > 0"));
    }

    #[test]
    fn the_merge_lock_waits_its_own_time_then_the_session_lock_timeout_is_back() {
        let t = orders();
        assert_eq!(
            merge_lock_sql(&t, std::time::Duration::from_millis(2500)),
            format!(
                "SET LOCAL lock_timeout = 2500; SELECT pg_advisory_xact_lock({}); \
                 SET LOCAL lock_timeout TO DEFAULT",
                t.merge_lock()
            )
        );
    }

    #[test]
    fn merge_locks_are_per_table() {
        let mut a = orders();
        let b = a.clone();
        a.oid = 16385;
        assert_ne!(a.merge_lock(), b.merge_lock());
        assert!(a.merge_lock() > 0);
    }

    #[test]
    fn catalog_lookup_binds_names() {
        assert!(CATALOG_COLUMNS.contains("n.nspname::text = $1 AND c.relname::text = $2"));
    }

    #[test]
    fn ledger_sql_uses_the_quoted_state_schema() {
        assert!(ledger_claim_sql("st\"x").starts_with("INSERT INTO \"st\"\"x\".ledger"));
        assert!(ledger_claim_sql("s").ends_with("RETURNING file_id"));
        assert!(bootstrap_sql("sluice").contains("PRIMARY KEY (bucket, key, etag)"));
    }
}
