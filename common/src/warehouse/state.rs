//! The state schema (`--state-schema`, default `sluice`): the ledger that makes each file's
//! effect happen once, the rejects, and the generations whose replacement ran. Its DDL and every
//! statement on it, for the worker that writes it and the coordinator that reads it. The ledger
//! is also the history of what wrote each target: an index by target table keeps a look at one
//! table's files from reading the others'.
//!
//! Invariants: the schema's name is always quoted; keys, ETags and every other value are bound
//! (`$n`), never spliced; the ledger's primary key is `(bucket, key, etag)`.

use super::quote_ident;

/// Whether the state schema is complete (`$1` its name): then a starting worker runs no DDL at
/// all, so it never waits for (or blocks) the loads of running workers.
pub const BOOTSTRAP_DONE: &str = "\
SELECT to_regclass(format('%I.generations', $1::text)) IS NOT NULL \
   AND EXISTS (SELECT 1 FROM pg_catalog.pg_attribute \
                WHERE attrelid = to_regclass(format('%I.ledger', $1::text)) \
                  AND attname = 'rows_superseded' AND NOT attisdropped) \
   AND to_regclass(format('%I.ledger_target', $1::text)) IS NOT NULL";

/// The state schema's tables. Run only when [`BOOTSTRAP_DONE`] says it is needed, under an
/// advisory lock for the schema: its `ALTER TABLE`s take the ledger's exclusive lock.
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
ALTER TABLE {s}.ledger ADD COLUMN IF NOT EXISTS file_id bigint GENERATED ALWAYS AS IDENTITY;
ALTER TABLE {s}.ledger ADD COLUMN IF NOT EXISTS file_time timestamptz;
ALTER TABLE {s}.ledger ADD COLUMN IF NOT EXISTS rows_superseded bigint NOT NULL DEFAULT 0;
CREATE UNIQUE INDEX IF NOT EXISTS ledger_file_id ON {s}.ledger (file_id);
CREATE INDEX IF NOT EXISTS ledger_target ON {s}.ledger (target_table, file_id);
CREATE TABLE IF NOT EXISTS {s}.rejects (
    bucket        text        NOT NULL,
    key           text        NOT NULL,
    etag          text        NOT NULL,
    record        bigint      NOT NULL,
    line          bigint,
    byte_offset   bigint,
    column_name   text,
    class         text        NOT NULL,
    reason        text        NOT NULL,
    raw           bytea       NOT NULL,
    target_table  text        NOT NULL,
    rejected_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (bucket, key, etag, record)
);
CREATE TABLE IF NOT EXISTS {s}.generations (
    target_table  text        NOT NULL,
    generation    text        NOT NULL,
    start         timestamptz NOT NULL,
    files         bigint      NOT NULL,
    rows_removed  bigint      NOT NULL DEFAULT 0,
    worker        text,
    replaced_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (target_table, generation)
);
COMMENT ON TABLE {s}.generations IS 'sluice: full-load generations whose replacement has run, once each';
COMMENT ON TABLE {s}.rejects IS 'sluice: records set aside by on_error = reject_rows, with their original bytes';
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

/// Claims a file inside the load transaction and returns its `file_id`; no row means it was
/// applied already. A concurrent claim of the same file waits here until the other
/// transaction ends. (`$1..$3` bucket, key, etag; `$4` target; `$5` worker; `$6` file time.)
pub fn ledger_claim_sql(state_schema: &str) -> String {
    format!(
        "INSERT INTO {}.ledger (bucket, key, etag, target_table, worker, file_time) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (bucket, key, etag) DO NOTHING RETURNING file_id",
        quote_ident(state_schema)
    )
}

/// The files applied to target `$1` (its label, as [`ledger_claim_sql`] records it) other than
/// file `$2`, oldest first, at most `$3` of them: `(bucket, key, file_id, file_time)`. None at
/// all when any of them is surely not a full-load file (its key has no `/LOAD`): then the
/// answer is already "not one generation", found at the first such row of the index rather
/// than after the table's whole history. Which of the rest are full-load files, and of which
/// generation, is for the caller to say by the key rule ([`crate::mapping::file_of`]). Rows of
/// loads not committed yet are not seen.
pub fn ledger_applied_sql(state_schema: &str) -> String {
    let s = quote_ident(state_schema);
    format!(
        "SELECT bucket, key, file_id, file_time FROM {s}.ledger \
         WHERE target_table = $1 AND file_id <> $2 \
           AND NOT EXISTS (SELECT 1 FROM {s}.ledger \
                            WHERE target_table = $1 AND file_id <> $2 AND strpos(key, '/LOAD') = 0) \
         ORDER BY file_id LIMIT $3"
    )
}

/// Records the counts in the ledger row (`$1` file_id; `$2..$6` read, inserted, updated,
/// deleted, superseded).
pub fn ledger_counts_sql(state_schema: &str) -> String {
    format!(
        "UPDATE {}.ledger SET rows_read = $2, rows_inserted = $3, rows_updated = $4, rows_deleted = $5, \
         rows_superseded = $6 WHERE file_id = $1",
        quote_ident(state_schema)
    )
}

/// The pairs among `$2` keys and `$3` ETags (arrays, aligned) that have a ledger row in bucket
/// `$1`.
pub fn ledger_present_sql(state_schema: &str) -> String {
    format!(
        "SELECT l.key, l.etag FROM {}.ledger l \
         JOIN unnest($2::text[], $3::text[]) AS p(key, etag) ON l.key = p.key AND l.etag = p.etag \
         WHERE l.bucket = $1",
        quote_ident(state_schema)
    )
}

/// Every ledger row of bucket `$1` whose key starts with `$2`, in key order.
pub fn ledger_under_sql(state_schema: &str) -> String {
    format!(
        "SELECT key, etag FROM {}.ledger WHERE bucket = $1 AND starts_with(key, $2) ORDER BY key, etag",
        quote_ident(state_schema)
    )
}

/// Deletes the ledger rows of bucket `$1` for the pairs of `$2` keys and `$3` ETags.
pub fn ledger_delete_sql(state_schema: &str) -> String {
    format!(
        "DELETE FROM {}.ledger l USING unnest($2::text[], $3::text[]) AS p(key, etag) \
         WHERE l.bucket = $1 AND l.key = p.key AND l.etag = p.etag",
        quote_ident(state_schema)
    )
}

/// Loaded files and rows per source table of bucket `$1`: `schema.table` from the key after the
/// lake prefix `$2`, for keys under `$3`, with the files and rows loaded in the last `$4`
/// seconds and the newest load's time (RFC 3339, UTC).
pub fn ledger_table_stats_sql(state_schema: &str) -> String {
    // rest = the key after the lake prefix: <schema>/<table>/.../<file>
    format!(
        "WITH l AS (SELECT substr(key, char_length($2) + 1) AS rest, rows_read, \
                rows_inserted + rows_updated + rows_deleted AS merged, rows_superseded, loaded_at \
           FROM {}.ledger WHERE bucket = $1 AND starts_with(key, $3)) \
         SELECT split_part(rest, '/', 1) || '.' || split_part(rest, '/', 2) AS source_table, \
                count(*), coalesce(sum(rows_read), 0)::bigint, coalesce(sum(merged), 0)::bigint, \
                coalesce(sum(rows_superseded), 0)::bigint, \
                count(*) FILTER (WHERE loaded_at > now() - $4::float8 * interval '1 second'), \
                coalesce(sum(rows_read) FILTER (WHERE loaded_at > now() - $4::float8 * interval '1 second'), 0)::bigint, \
                to_char(max(loaded_at), 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') \
           FROM l GROUP BY 1 ORDER BY 1",
        quote_ident(state_schema)
    )
}

/// Removes a file's earlier rejects (`$1..$3` bucket, key, etag): a file loaded again replaces
/// them.
pub fn clear_rejects_sql(state_schema: &str) -> String {
    format!(
        "DELETE FROM {}.rejects WHERE bucket = $1 AND key = $2 AND etag = $3",
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
/// generation's members ([`crate::mapping::map_key`]).
pub fn count_full_loads<'a>(keys: impl IntoIterator<Item = &'a str>) -> i64 {
    keys.into_iter()
        .filter(|key| {
            matches!(
                crate::mapping::map_key("", key).map(|f| f.kind),
                Ok(crate::mapping::FileKind::FullLoad { .. })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_statement_quotes_the_state_schema() {
        let s = "st\"ate";
        for sql in [
            bootstrap_sql(s),
            ledger_exists_sql(s),
            ledger_claim_sql(s),
            ledger_counts_sql(s),
            ledger_present_sql(s),
            ledger_under_sql(s),
            ledger_delete_sql(s),
            ledger_table_stats_sql(s),
            ledger_applied_sql(s),
        ] {
            assert!(sql.contains("\"st\"\"ate\".ledger"), "{sql}");
            assert!(
                !sql.contains("st\"ate.") && !sql.contains(" st\"ate"),
                "{sql}"
            );
        }
    }

    #[test]
    fn values_are_bound() {
        let claim = ledger_claim_sql("s");
        assert!(claim.contains("VALUES ($1, $2, $3, $4, $5, $6)"));
        assert!(ledger_exists_sql("s").ends_with("bucket = $1 AND key = $2 AND etag = $3"));
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
        assert!(generation_files_sql("s").contains("starts_with(key, $2) AND file_time >= $3"));
        assert!(generation_files_sql("s").contains("strpos(key, '/LOAD') > 0"));
    }

    #[test]
    fn ledger_sql_uses_the_quoted_state_schema() {
        assert!(ledger_claim_sql("st\"x").starts_with("INSERT INTO \"st\"\"x\".ledger"));
        assert!(ledger_claim_sql("s").ends_with("RETURNING file_id"));
        assert!(bootstrap_sql("sluice").contains("PRIMARY KEY (bucket, key, etag)"));
    }

    #[test]
    fn a_target_s_files_are_read_by_its_index_and_the_question_stops_at_the_first_other_file() {
        let boot = bootstrap_sql("s");
        assert!(boot.contains(
            "CREATE INDEX IF NOT EXISTS ledger_target ON \"s\".ledger (target_table, file_id);"
        ));
        assert!(BOOTSTRAP_DONE.contains("format('%I.ledger_target', $1::text)) IS NOT NULL"));
        let sql = ledger_applied_sql("s");
        assert!(sql.starts_with("SELECT bucket, key, file_id, file_time FROM \"s\".ledger WHERE target_table = $1 AND file_id <> $2"), "{sql}");
        assert!(
            sql.contains("AND NOT EXISTS (SELECT 1 FROM \"s\".ledger"),
            "{sql}"
        );
        assert!(
            sql.contains("AND strpos(key, '/LOAD') = 0) ORDER BY file_id LIMIT $3"),
            "{sql}"
        );
    }
}
