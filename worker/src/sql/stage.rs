//! The stage: a temporary table typed like the target, the `COPY` into it (or, on the direct
//! path, straight into the target), partial images filled from earlier records, and the
//! rejects the parser set aside moved to the rejects table.

use super::merge::version_of;
use super::*;
use sluice_common::warehouse::{quote_ident, quote_literal};

/// The staging table's own columns, before the file's: record number, operation, the
/// version from the file's timestamp column (NULL: the file's time), the 1-based positions
/// (among the file's columns) that a partial `U` image leaves unchanged (NULL: none), and the
/// file each row came from: its time and its ledger `file_id`. A stage holds one file, or the
/// files of a batch (`crate::load::batch`); the last two are never in a `COPY`'s column list:
/// they are the columns' defaults, set to each file's values before its `COPY`
/// ([`stage_file_sql`]).
pub(super) const STAGE_SYSTEM: &str =
    "_sluice_rec bigint NOT NULL, _sluice_op \"char\" NOT NULL, _sluice_version timestamptz, _sluice_keep int2[], \
     _sluice_file_time timestamptz NOT NULL, _sluice_file bigint NOT NULL";

/// With `on_error = reject_rows`, a rejected record is a stage row with `_sluice_op = 'R'`, NULL
/// data columns, and these: why, where, and its original bytes.
pub(super) const STAGE_REJECT: &str =
    "_sluice_reject text, _sluice_class text, _sluice_column text, \
     _sluice_line bigint, _sluice_offset bigint, _sluice_raw bytea";
pub(super) const STAGE_REJECT_NAMES: &str =
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

/// Makes the next rows copied into the stage the file's: its time (`file_time`, RFC 3339 as
/// [`sluice_common::timefmt::format`] writes it) and its ledger `file_id`, as the defaults of
/// the stage's file columns. Both values are the worker's own, never text from a file.
pub fn stage_file_sql(file_time: &str, file_id: i64) -> String {
    format!(
        "ALTER TABLE pg_temp.{STAGE} ALTER COLUMN _sluice_file_time SET DEFAULT {}::timestamptz, \
         ALTER COLUMN _sluice_file SET DEFAULT {file_id}",
        quote_literal(file_time)
    )
}

/// `COPY sluice_stage (...) FROM STDIN`, in text format or, with `binary`, PostgreSQL's binary
/// format (never with rejects).
pub fn copy_stage_sql(
    target: &TargetTable,
    file_columns: &[usize],
    rejects: bool,
    binary: bool,
) -> String {
    let mut cols = vec!["_sluice_rec, _sluice_op, _sluice_version, _sluice_keep".to_owned()];
    if rejects {
        cols.push(STAGE_REJECT_NAMES.to_owned());
    }
    cols.extend(
        file_columns
            .iter()
            .map(|&i| quote_ident(&target.columns[i].name)),
    );
    format!(
        "COPY pg_temp.{STAGE} ({}) FROM STDIN{}",
        cols.join(", "),
        if binary { " (FORMAT binary)" } else { "" }
    )
}

/// Fills the columns that partial `U` images leave unchanged from the latest earlier record of
/// the same key in the stage that carries a value, so that `I` then partial `U` merges as the
/// source had it. Earlier is earlier in (file time, file, record) order: within one file, the
/// record order; across the files of a batch, the order in which they were written. Only run
/// for stages with partial images; one `UPDATE` per non-key column, set-based, over an index
/// on the stage.
pub fn resolve_partial_sql(target: &TargetTable, file_columns: &[usize]) -> String {
    let q = |i: usize| quote_ident(&target.columns[i].name);
    let key: Vec<String> = target.key.iter().map(|&i| q(i)).collect();
    let key_match = key
        .iter()
        .map(|k| format!("p.{k} = s.{k}"))
        .collect::<Vec<_>>()
        .join(" AND ");
    let mut sql = format!(
        "CREATE INDEX ON pg_temp.{STAGE} ({}, {ORDER});\nANALYZE pg_temp.{STAGE};\n",
        key.join(", ")
    );
    for (pos, &i) in file_columns.iter().enumerate() {
        if target.key.contains(&i) {
            continue;
        }
        let pos = pos + 1;
        let c = q(i);
        let earlier = format!(
            "FROM pg_temp.{STAGE} p WHERE {key_match} AND ({p_order}) < ({s_order}) \
             AND p._sluice_op <> 'R' AND NOT ({pos} = ANY(coalesce(p._sluice_keep, '{{}}')))",
            p_order = order_of("p"),
            s_order = order_of("s"),
        );
        let p_desc = "p._sluice_file_time DESC, p._sluice_file DESC, p._sluice_rec DESC";
        sql.push_str(&format!(
            "UPDATE pg_temp.{STAGE} s SET {c} = (SELECT p.{c} {earlier} ORDER BY {p_desc} LIMIT 1), \
             _sluice_keep = array_remove(s._sluice_keep, {pos}::int2) \
             WHERE {pos} = ANY(s._sluice_keep) AND EXISTS (SELECT 1 {earlier});\n"
        ));
    }
    sql
}

/// The order of a stage's rows: as written, file by file.
const ORDER: &str = "_sluice_file_time, _sluice_file, _sluice_rec";

/// [`ORDER`] of the stage row `r`.
fn order_of(r: &str) -> String {
    format!("{r}._sluice_file_time, {r}._sluice_file, {r}._sluice_rec")
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
