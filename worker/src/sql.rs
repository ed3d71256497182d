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

/// A target column as the catalog describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    /// `format_type(atttypid, atttypmod)`: a type name from the catalog, e.g. `numeric(12,2)`.
    pub sql_type: String,
}

/// A target table: its columns in ordinal order and its primary key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetTable {
    pub schema: String,
    pub name: String,
    pub columns: Vec<Column>,
    /// Indexes into `columns` of the primary key's columns, in key order.
    pub key: Vec<usize>,
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
}

/// Quotes an identifier for PostgreSQL: wraps it in double quotes, doubling any inside.
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// The staging table's name (temporary, dropped at commit).
pub const STAGE: &str = "sluice_stage";

/// Catalog lookup of a table's columns and key. Parameters: `$1` schema, `$2` table, compared
/// as `text` so that a name longer than PostgreSQL's 63-byte limit never matches a truncated one.
pub const CATALOG_COLUMNS: &str = "\
SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), \
       coalesce((SELECT k.ord FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) \
                  WHERE k.attnum = a.attnum), 0)::int4 AS key_position \
  FROM pg_catalog.pg_class c \
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
  JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
  LEFT JOIN pg_catalog.pg_index i ON i.indrelid = c.oid AND i.indisprimary \
 WHERE n.nspname::text = $1 AND c.relname::text = $2 AND c.relkind IN ('r', 'p') \
   AND a.attgenerated = '' \
 ORDER BY a.attnum";

/// The bookkeeping schema: the ledger that makes every file's effect happen exactly once.
pub fn bootstrap_sql(state_schema: &str) -> String {
    let s = quote_ident(state_schema);
    format!(
        "CREATE SCHEMA IF NOT EXISTS {s};
CREATE TABLE IF NOT EXISTS {s}.ledger (
    bucket        text        NOT NULL,
    key           text        NOT NULL,
    etag          text        NOT NULL,
    target_table  text        NOT NULL,
    rows_read     bigint      NOT NULL DEFAULT 0,
    rows_inserted bigint      NOT NULL DEFAULT 0,
    rows_updated  bigint      NOT NULL DEFAULT 0,
    rows_deleted  bigint      NOT NULL DEFAULT 0,
    worker        text,
    loaded_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (bucket, key, etag)
);
COMMENT ON TABLE {s}.ledger IS 'sluice: one row per applied S3 object version, committed with its data';"
    )
}

/// Whether a file's ledger row exists (`$1` bucket, `$2` key, `$3` etag).
pub fn ledger_exists_sql(state_schema: &str) -> String {
    format!(
        "SELECT 1 FROM {}.ledger WHERE bucket = $1 AND key = $2 AND etag = $3",
        quote_ident(state_schema)
    )
}

/// Claims a file inside the load transaction; 0 rows means it was applied already. A concurrent
/// claim of the same file waits here until the other transaction ends.
pub fn ledger_claim_sql(state_schema: &str) -> String {
    format!(
        "INSERT INTO {}.ledger (bucket, key, etag, target_table, worker) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (bucket, key, etag) DO NOTHING",
        quote_ident(state_schema)
    )
}

/// Records the counts in the ledger row (`$1..$3` bucket, key, etag; `$4..$7` counts).
pub fn ledger_counts_sql(state_schema: &str) -> String {
    format!(
        "UPDATE {}.ledger SET rows_read = $4, rows_inserted = $5, rows_updated = $6, rows_deleted = $7 \
         WHERE bucket = $1 AND key = $2 AND etag = $3",
        quote_ident(state_schema)
    )
}

/// `CREATE TEMP TABLE sluice_stage (...)` for the file's columns (indexes into the target).
pub fn create_stage_sql(target: &TargetTable, file_columns: &[usize]) -> String {
    let mut cols = vec![
        "_sluice_rec bigint NOT NULL".to_owned(),
        "_sluice_op \"char\" NOT NULL".to_owned(),
    ];
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
pub fn copy_stage_sql(target: &TargetTable, file_columns: &[usize]) -> String {
    let mut cols = vec!["_sluice_rec".to_owned(), "_sluice_op".to_owned()];
    cols.extend(
        file_columns
            .iter()
            .map(|&i| quote_ident(&target.columns[i].name)),
    );
    format!("COPY pg_temp.{STAGE} ({}) FROM STDIN", cols.join(", "))
}

/// The set-based merge of the staged file into the target. Returns one row:
/// `(inserted bigint, updated bigint, deleted bigint)`.
pub fn merge_sql(target: &TargetTable, file_columns: &[usize]) -> String {
    let t = target.qualified();
    let q = |i: usize| quote_ident(&target.columns[i].name);
    let key: Vec<String> = target.key.iter().map(|&i| q(i)).collect();
    let key_list = key.join(", ");
    let cols: Vec<String> = file_columns.iter().map(|&i| q(i)).collect();
    let col_list = cols.join(", ");
    let key_match = key
        .iter()
        .map(|k| format!("t.{k} = s.{k}"))
        .collect::<Vec<_>>()
        .join(" AND ");
    let updates: Vec<String> = file_columns
        .iter()
        .filter(|i| !target.key.contains(i))
        .map(|&i| format!("{c} = EXCLUDED.{c}", c = q(i)))
        .collect();
    let on_conflict = if updates.is_empty() {
        "DO NOTHING".to_owned()
    } else {
        format!("DO UPDATE SET {}", updates.join(", "))
    };
    format!(
        "WITH last AS MATERIALIZED (
    SELECT DISTINCT ON ({key_list}) * FROM pg_temp.{STAGE} ORDER BY {key_list}, _sluice_rec DESC
), deleted AS (
    DELETE FROM {t} AS t USING last AS s WHERE s._sluice_op = 'D' AND {key_match} RETURNING 1
), upserted AS (
    INSERT INTO {t} AS t ({col_list})
    SELECT {col_list} FROM last WHERE _sluice_op <> 'D' ORDER BY {key_list}
    ON CONFLICT ({key_list}) {on_conflict}
    RETURNING (xmax = 0) AS inserted
)
SELECT (SELECT count(*) FROM upserted WHERE inserted),
       (SELECT count(*) FROM upserted WHERE NOT inserted),
       (SELECT count(*) FROM deleted)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn orders() -> TargetTable {
        TargetTable {
            schema: "wh".into(),
            name: "or\"ders".into(),
            columns: vec![
                Column {
                    name: "id".into(),
                    sql_type: "integer".into(),
                },
                Column {
                    name: "note".into(),
                    sql_type: "text".into(),
                },
                Column {
                    name: "amount".into(),
                    sql_type: "numeric(12,2)".into(),
                },
            ],
            key: vec![0],
        }
    }

    #[test]
    fn identifiers_are_quoted_and_inner_quotes_doubled() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_ident("x; drop table y"), "\"x; drop table y\"");
        assert_eq!(orders().qualified(), "\"wh\".\"or\"\"ders\"");
    }

    #[test]
    fn stage_is_typed_like_the_target() {
        let sql = create_stage_sql(&orders(), &[0, 2]);
        assert_eq!(
            sql,
            "CREATE TEMP TABLE sluice_stage (_sluice_rec bigint NOT NULL, _sluice_op \"char\" NOT NULL, \"id\" integer, \"amount\" numeric(12,2)) ON COMMIT DROP"
        );
        assert_eq!(
            copy_stage_sql(&orders(), &[0, 2]),
            "COPY pg_temp.sluice_stage (_sluice_rec, _sluice_op, \"id\", \"amount\") FROM STDIN"
        );
    }

    #[test]
    fn merge_keeps_last_op_per_key_and_updates_only_file_columns() {
        let sql = merge_sql(&orders(), &[0, 2]);
        assert!(sql.contains("SELECT DISTINCT ON (\"id\") * FROM pg_temp.sluice_stage ORDER BY \"id\", _sluice_rec DESC"), "{sql}");
        assert!(sql.contains("DELETE FROM \"wh\".\"or\"\"ders\" AS t USING last AS s WHERE s._sluice_op = 'D' AND t.\"id\" = s.\"id\""), "{sql}");
        assert!(
            sql.contains("ON CONFLICT (\"id\") DO UPDATE SET \"amount\" = EXCLUDED.\"amount\""),
            "{sql}"
        );
        assert!(
            !sql.contains("\"note\""),
            "columns not in the file stay untouched: {sql}"
        );
    }

    #[test]
    fn merge_with_composite_key_and_only_key_columns() {
        let mut t = orders();
        t.key = vec![0, 1];
        let sql = merge_sql(&t, &[0, 1]);
        assert!(sql.contains("DISTINCT ON (\"id\", \"note\")"), "{sql}");
        assert!(
            sql.contains("t.\"id\" = s.\"id\" AND t.\"note\" = s.\"note\""),
            "{sql}"
        );
        assert!(
            sql.contains("ON CONFLICT (\"id\", \"note\") DO NOTHING"),
            "{sql}"
        );
    }

    #[test]
    fn catalog_lookup_binds_names() {
        assert!(CATALOG_COLUMNS.contains("n.nspname::text = $1 AND c.relname::text = $2"));
    }

    #[test]
    fn ledger_sql_uses_the_quoted_state_schema() {
        assert!(ledger_claim_sql("st\"x").starts_with("INSERT INTO \"st\"\"x\".ledger"));
        assert!(bootstrap_sql("sluice").contains("PRIMARY KEY (bucket, key, etag)"));
    }
}
