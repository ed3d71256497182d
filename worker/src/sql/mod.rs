//! All SQL the worker runs on target tables, built in one place. Pure; unit-tested without a
//! database. The state schema's statements (ledger, rejects, generations) are the warehouse
//! contract's, in `sluice_common::warehouse::state`.
//!
//! - this module: target tables as the catalog describes them, their preparation, the merge
//!   lock;
//! - [`stage`]: the temporary stage, `COPY` into it or (direct path) into the target;
//! - [`merge`]: the version-guarded merge, the replacement of a generation, tombstone pruning;
//! - [`evolve`]: the columns `new_columns = "add"` adds (the one place a name read from a file
//!   reaches SQL text: checked by [`evolve::refusal`], then quoted).
//!
//! Must not: run anything (callers do), or take a name from anywhere but the catalog and the
//! operator's rules.
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

pub mod evolve;
mod merge;
mod stage;

pub use merge::{
    any_tombstone_sql, merge_sql, prune_tombstones_sql, replace_sql, Deletes, MergeSpec,
};
use sluice_common::warehouse::{quote_ident, quote_literal, SystemColumn, SYSTEM_COLUMNS};
pub use stage::{
    copy_stage_sql, create_stage_sql, direct_copy_sql, direct_guard_sql, resolve_partial_sql,
    save_staged_rejects_sql, stage_file_sql,
};

/// A target column as the catalog describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    /// `format_type(atttypid, atttypmod)`: a type name from the catalog, e.g. `numeric(12,2)`.
    pub sql_type: String,
    /// `NOT NULL` in the catalog.
    pub not_null: bool,
    /// An enum (`pg_type.typtype = 'e'`): its `sql_type` is the enum's own name.
    pub is_enum: bool,
    /// The type the binary format reads, when it is not the column's own type as `sql_type`
    /// and `is_enum` say: a domain's, an array's, or a type whose text input depends on a
    /// session setting. None: the column's own type, no array.
    pub base: Option<BaseType>,
}

/// A column's type under any domains (`pg_type.typbasetype`, followed down to a type that
/// is no domain), and for a one-dimensional array its element, also under any domains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseType {
    /// `format_type` of the type under the domains, with the type modifier that applies to it
    /// (the innermost domain's, or the column's).
    pub sql_type: String,
    pub is_enum: bool,
    /// An array's element.
    pub element: Option<Element>,
    /// The session setting the text input of the type (or of its element) depends on: for
    /// `money`, how the session writes -1234567.89 and 1234567.89 (its `lc_monetary`),
    /// space-separated; for `interval`, `IntervalStyle`.
    pub session: Option<String>,
}

/// The element of an array type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    /// The element type's oid, a domain's own where the element is a domain (`array_recv`
    /// refuses an array whose element oid is not the column's).
    pub oid: u32,
    /// `format_type` of the element's type under any domains, with its type modifier.
    pub sql_type: String,
    pub is_enum: bool,
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

/// Catalog lookup of a table's columns and key: per column its name, type, key position, the
/// table's oid, `NOT NULL`, and whether its type is an enum; then the type under any domains
/// (`format_type`, enum), an array's element (its oid, the type under any domains, enum) and
/// the session setting the text input of `money` or `interval` depends on (see [`BaseType`]).
/// Parameters: `$1` schema, `$2` table. The names are found through the catalog's index on
/// `(relname, relnamespace)` (cast to `name`, which truncates at PostgreSQL's 63-byte limit) and
/// then compared as `text`, so that a longer name never matches a truncated one. Compared as
/// `text` alone the lookup reads all of `pg_class` for every file: 17 ms in a database of
/// 116,000 relations.
pub const CATALOG_COLUMNS: &str = "\
SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), \
       coalesce((SELECT k.ord FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) \
                  WHERE k.attnum = a.attnum), 0)::int4 AS key_position, c.oid, a.attnotnull, \
       t.typtype = 'e' AS is_enum, \
       format_type(b.typid, b.typmod), bt.typtype = 'e', e.elem, format_type(e.typid, e.typmod), \
       et.typtype = 'e', \
       CASE coalesce(e.typid, b.typid) \
            WHEN 'pg_catalog.money'::pg_catalog.regtype \
            THEN '-1234567.89'::numeric::money::text || ' ' || '1234567.89'::numeric::money::text \
            WHEN 'pg_catalog.interval'::pg_catalog.regtype THEN current_setting('IntervalStyle') END \
  FROM pg_catalog.pg_class c \
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
  JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
  JOIN pg_catalog.pg_type t ON t.oid = a.atttypid \
  CROSS JOIN LATERAL (WITH RECURSIVE d(typid, typmod, depth) AS ( \
         SELECT a.atttypid, a.atttypmod, 0 \
         UNION ALL \
         SELECT dt.typbasetype, dt.typtypmod, d.depth + 1 \
           FROM d JOIN pg_catalog.pg_type dt ON dt.oid = d.typid AND dt.typtype = 'd') \
       SELECT typid, typmod FROM d ORDER BY depth DESC LIMIT 1) b \
  JOIN pg_catalog.pg_type bt ON bt.oid = b.typid \
  LEFT JOIN LATERAL (WITH RECURSIVE d(typid, typmod, depth) AS ( \
         SELECT bt.typelem, b.typmod, 0 WHERE bt.typlen = -1 AND bt.typelem <> 0 \
         UNION ALL \
         SELECT dt.typbasetype, dt.typtypmod, d.depth + 1 \
           FROM d JOIN pg_catalog.pg_type dt ON dt.oid = d.typid AND dt.typtype = 'd') \
       SELECT bt.typelem AS elem, typid, typmod FROM d ORDER BY depth DESC LIMIT 1) e ON true \
  LEFT JOIN pg_catalog.pg_type et ON et.oid = e.typid \
  LEFT JOIN pg_catalog.pg_index i ON i.indrelid = c.oid AND i.indisprimary \
 WHERE n.nspname = $1::text::name AND c.relname = $2::text::name \
   AND n.nspname::text = $1::text AND c.relname::text = $2::text AND c.relkind IN ('r', 'p') \
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

/// Whether the target has no rows at all: the direct path's first condition (see
/// `load::direct::target_fits`). Rows other transactions have not committed are not seen; a clash with
/// them is a unique violation, after which the file loads by the staged path.
pub fn target_is_empty_sql(target: &TargetTable) -> String {
    format!("SELECT NOT EXISTS (SELECT 1 FROM {})", target.qualified())
}

/// The ledger ids (`_sluice_file`) of the files that last wrote the target's first and last
/// rows by primary key: two probes of the key's index, whatever the table's size. NULL where
/// there is no row, or where no file wrote the row (a row written by hand).
pub fn target_ends_sql(target: &TargetTable) -> String {
    let t = target.qualified();
    let desc = target
        .key
        .iter()
        .map(|&i| format!("{} DESC", quote_ident(&target.columns[i].name)))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "SELECT (SELECT _sluice_file FROM {t} ORDER BY {} LIMIT 1), \
                (SELECT _sluice_file FROM {t} ORDER BY {desc} LIMIT 1)",
        key_list(target)
    )
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
                    is_enum: false,
                    base: None,
                },
                Column {
                    name: "note".into(),
                    sql_type: "text".into(),
                    not_null: false,
                    is_enum: false,
                    base: None,
                },
                Column {
                    name: "amount".into(),
                    sql_type: "numeric(12,2)".into(),
                    not_null: false,
                    is_enum: false,
                    base: None,
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
            "CREATE TEMP TABLE sluice_stage (_sluice_rec bigint NOT NULL, _sluice_op \"char\" NOT NULL, _sluice_version timestamptz, _sluice_keep int2[], _sluice_file_time timestamptz NOT NULL, _sluice_file bigint NOT NULL, \"id\" integer, \"amount\" numeric(12,2)) ON COMMIT DROP"
        );
        assert_eq!(
            copy_stage_sql(&orders(), &[0, 2], false, false),
            "COPY pg_temp.sluice_stage (_sluice_rec, _sluice_op, _sluice_version, _sluice_keep, \"id\", \"amount\") FROM STDIN"
        );
        let with_rejects = create_stage_sql(&orders(), &[0], true);
        assert!(with_rejects.contains("_sluice_file bigint NOT NULL, _sluice_reject text, _sluice_class text, _sluice_column text, _sluice_line bigint, _sluice_offset bigint, _sluice_raw bytea, \"id\" integer"), "{with_rejects}");
        assert!(copy_stage_sql(&orders(), &[0], true, false).contains("_sluice_keep, _sluice_reject, _sluice_class, _sluice_column, _sluice_line, _sluice_offset, _sluice_raw, \"id\")"));
    }

    #[test]
    fn merge_keeps_the_newest_op_per_key_and_guards_every_write_by_version() {
        let t = orders();
        let sql = merge_sql(&MergeSpec {
            target: &t,
            file_columns: &[0, 2],
            deletes: hard(),
            partial: false,
            no_tombstones: false,
        });
        assert!(sql.contains("SELECT DISTINCT ON (\"id\") s._sluice_rec, s._sluice_op, s._sluice_keep, s._sluice_file_time, s._sluice_file,\n           s.\"id\", s.\"amount\", coalesce(s._sluice_version, s._sluice_file_time) AS _v"), "{sql}");
        assert!(sql.contains("ORDER BY \"id\", coalesce(s._sluice_version, s._sluice_file_time) DESC,\n              s._sluice_file_time DESC, s._sluice_file DESC, s._sluice_rec DESC"), "{sql}");
        assert!(
            !sql.contains('$'),
            "no parameters: each staged row carries its file: {sql}"
        );
        assert!(sql.contains("GROUP BY file"), "counts per file: {sql}");
        assert!(
            sql.contains("WHERE s._sluice_op <> 'R'"),
            "rejects never merge: {sql}"
        );
        // Upsert: only newer than the row, and never over a newer tombstone.
        assert!(sql.contains("ON CONFLICT (\"id\") DO UPDATE SET \"amount\" = EXCLUDED.\"amount\", _sluice_version = EXCLUDED._sluice_version"), "{sql}");
        assert!(sql.contains("WHERE (t._sluice_version IS NULL OR (t._sluice_version, t._sluice_file_time, t._sluice_record) <= (EXCLUDED._sluice_version, EXCLUDED._sluice_file_time, EXCLUDED._sluice_record))"), "{sql}");
        assert!(sql.contains("NOT EXISTS (SELECT 1 FROM \"st\".tombstones_16384 AS x WHERE x.\"id\" = s.\"id\" AND (x._sluice_version, x._sluice_file_time, x._sluice_record) >= (s._v, s._sluice_file_time, s._sluice_rec))"), "{sql}");
        // Delete: only an older row; the tombstone only where no newer row exists.
        assert!(sql.contains("t.ctid IS NOT NULL AND (t._sluice_version IS NULL OR (t._sluice_version, t._sluice_file_time, t._sluice_record) <= (s._v, s._sluice_file_time, s._sluice_rec)) AS _older,\n           NOT coalesce((t._sluice_version, t._sluice_file_time, t._sluice_record) > (s._v, s._sluice_file_time, s._sluice_rec), false) AS _bury\n      FROM last AS s LEFT JOIN \"wh\".\"or\"\"ders\" AS t ON t.\"id\" = s.\"id\"\n     WHERE s._sluice_op = 'D'"), "{sql}");
        assert!(sql.contains("DELETE FROM \"wh\".\"or\"\"ders\" AS t USING dels AS s\n     WHERE s._older AND t.ctid = s._tid AND t.\"id\" = s.\"id\""), "{sql}");
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
    fn with_no_tombstones_the_merge_never_reads_the_tombstone_table() {
        let t = orders();
        let spec = |no_tombstones| MergeSpec {
            target: &t,
            file_columns: &[0, 1, 2],
            deletes: hard(),
            partial: true,
            no_tombstones,
        };
        let with = merge_sql(&spec(false));
        let without = merge_sql(&spec(true));
        for sql in [&with, &without] {
            assert!(
                !sql.contains("ORDER BY s."),
                "`last` is already in key order: {sql}"
            );
        }
        assert!(with.contains("unburied AS ("), "{with}");
        assert!(
            with.matches("NOT EXISTS (SELECT 1 FROM \"st\".tombstones_16384 AS x")
                .count()
                == 2,
            "the upsert and the partial insert: {with}"
        );
        assert!(
            with.contains("ON CONFLICT (\"id\") DO UPDATE SET _sluice_version"),
            "{with}"
        );
        // Without tombstones: the tombstones of this merge's deletes are its only writes there.
        assert!(!without.contains("unburied"), "{without}");
        assert_eq!(without.matches("tombstones_16384").count(), 1, "{without}");
        assert!(without.contains("INSERT INTO \"st\".tombstones_16384 AS x (\"id\", _sluice_version, _sluice_file_time, _sluice_record, _sluice_file)\n    SELECT s.\"id\", s._v, s._sluice_file_time, s._sluice_rec, s._sluice_file FROM dels AS s\n     WHERE s._bury\n    RETURNING x._sluice_file AS file"), "{without}");
        assert!(
            without.contains(
                "WHERE s._sluice_op <> 'D' AND s._full\n    ON CONFLICT (\"id\") DO UPDATE"
            ),
            "{without}"
        );
        assert_eq!(
            any_tombstone_sql("\"st\".tombstones_16384"),
            "SELECT EXISTS (SELECT 1 FROM \"st\".tombstones_16384)"
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
            no_tombstones: false,
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
            no_tombstones: false,
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
    fn partial_images_are_filled_from_earlier_records_of_the_stage() {
        let sql = resolve_partial_sql(&orders(), &[0, 1, 2]);
        assert!(
            sql.starts_with("CREATE INDEX ON pg_temp.sluice_stage (\"id\", _sluice_file_time, _sluice_file, _sluice_rec);"),
            "{sql}"
        );
        assert!(sql.contains("SET \"note\" = (SELECT p.\"note\" FROM pg_temp.sluice_stage p WHERE p.\"id\" = s.\"id\" AND (p._sluice_file_time, p._sluice_file, p._sluice_rec) < (s._sluice_file_time, s._sluice_file, s._sluice_rec) AND p._sluice_op <> 'R' AND NOT (2 = ANY(coalesce(p._sluice_keep, '{}'))) ORDER BY p._sluice_file_time DESC, p._sluice_file DESC, p._sluice_rec DESC LIMIT 1)"), "{sql}");
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
    fn the_ends_of_a_table_are_read_through_its_key() {
        let mut t = orders();
        t.key = vec![0, 1];
        assert_eq!(
            target_ends_sql(&t),
            "SELECT (SELECT _sluice_file FROM \"wh\".\"or\"\"ders\" ORDER BY \"id\", \"note\" LIMIT 1), \
             (SELECT _sluice_file FROM \"wh\".\"or\"\"ders\" ORDER BY \"id\" DESC, \"note\" DESC LIMIT 1)"
        );
    }

    #[test]
    fn catalog_lookup_binds_names() {
        assert!(
            CATALOG_COLUMNS.contains("n.nspname::text = $1::text AND c.relname::text = $2::text")
        );
        assert!(CATALOG_COLUMNS.contains("c.relname = $2::text::name"));
        assert!(CATALOG_COLUMNS.contains("a.attnotnull, t.typtype = 'e' AS is_enum,"));
    }
}
