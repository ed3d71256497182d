//! The coordinator's read (and, for `reload`, delete) access to the workers' ledger in
//! PostgreSQL: `<state schema>.ledger`, one row per applied object version, primary key
//! `(bucket, key, etag)`.
//!
//! Invariants: connections run with `TimeZone=UTC`, like the workers'; the URL is never shown
//! unredacted; the state schema is always quoted; keys and ETags are bound as arrays, never
//! spliced. A ledger that does not exist yet (no worker has started) reads as empty.
//!
//! Costs: lookups by `(key, etag)` use the primary key, in chunks; "rows under a key prefix" and
//! the per-table statistics read the bucket's ledger rows (PostgreSQL has no index on a key
//! prefix in every collation), which is a sequential read in PostgreSQL, never in DynamoDB.

use crate::error::CoordinatorError;
use deadpool_postgres::Pool;
use sluice_common::config::redact_url;
use sluice_common::warehouse::{quote_ident, state};
use std::collections::HashSet;

/// Pairs sent per lookup statement.
const CHUNK: usize = 5000;

/// The ledger, reached through a small pool.
#[derive(Clone)]
pub struct Ledger {
    pool: Pool,
    /// The state schema, as given (the statements quote it).
    schema_name: String,
    /// The URL with its password replaced, for messages.
    url: String,
}

/// One ledger row, as the coordinator reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerRow {
    pub key: String,
    pub etag: String,
}

/// Loaded files of one source table, from the ledger.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LedgerTableStats {
    /// `schema.table` as in the key.
    pub table: String,
    pub files: u64,
    pub rows_read: i64,
    /// Rows inserted, updated or deleted.
    pub rows_merged: i64,
    pub rows_superseded: i64,
    /// Files and rows loaded within the recent window.
    pub recent_files: u64,
    pub recent_rows: i64,
    /// RFC 3339 time of the newest load.
    pub last_loaded_at: Option<String>,
}

impl Ledger {
    /// Builds the pool (connects lazily). `url` is never shown unredacted.
    pub fn connect(url: &str, state_schema: &str) -> Result<Ledger, CoordinatorError> {
        let bad = |message: String| CoordinatorError::Database {
            operation: "connect",
            message: format!("database url {}: {message}", redact_url(url)),
        };
        let pool = sluice_common::postgres::pool(url, 2, "sluice-coordinator")
            .map_err(|e| bad(e.to_string()))?;
        Ok(Ledger {
            pool,
            schema_name: state_schema.to_owned(),
            url: redact_url(url),
        })
    }

    pub fn schema_name(&self) -> &str {
        &self.schema_name
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, CoordinatorError> {
        self.pool
            .get()
            .await
            .map_err(|e| CoordinatorError::Database {
                operation: "connect",
                message: format!(
                    "{}: {}",
                    self.url,
                    match e {
                        deadpool_postgres::PoolError::Backend(pg) => pg_text(&pg),
                        other => other.to_string(),
                    }
                ),
            })
    }

    /// The pairs among `pairs` that have a ledger row in `bucket`.
    pub async fn present(
        &self,
        bucket: &str,
        pairs: &[(String, String)],
    ) -> Result<HashSet<(String, String)>, CoordinatorError> {
        let mut found = HashSet::new();
        if pairs.is_empty() {
            return Ok(found);
        }
        let client = self.client().await?;
        let sql = state::ledger_present_sql(&self.schema_name);
        for chunk in pairs.chunks(CHUNK) {
            let keys: Vec<&str> = chunk.iter().map(|(k, _)| k.as_str()).collect();
            let etags: Vec<&str> = chunk.iter().map(|(_, e)| e.as_str()).collect();
            match client.query(&sql, &[&bucket, &keys, &etags]).await {
                Ok(rows) => {
                    for r in rows {
                        found.insert((r.get(0), r.get(1)));
                    }
                }
                Err(e) if missing_ledger(&e) => return Ok(found),
                Err(e) => return Err(self.error("lookup", &e)),
            }
        }
        Ok(found)
    }

    /// Every ledger row of `bucket` whose key starts with `prefix`, in key order.
    pub async fn under(
        &self,
        bucket: &str,
        prefix: &str,
    ) -> Result<Vec<LedgerRow>, CoordinatorError> {
        let client = self.client().await?;
        let sql = state::ledger_under_sql(&self.schema_name);
        match client.query(&sql, &[&bucket, &prefix]).await {
            Ok(rows) => Ok(rows
                .into_iter()
                .map(|r| LedgerRow {
                    key: r.get(0),
                    etag: r.get(1),
                })
                .collect()),
            Err(e) if missing_ledger(&e) => Ok(Vec::new()),
            Err(e) => Err(self.error("list", &e)),
        }
    }

    /// Deletes the ledger rows of `pairs` in one transaction; returns how many existed.
    pub async fn delete(
        &self,
        bucket: &str,
        pairs: &[(String, String)],
    ) -> Result<u64, CoordinatorError> {
        if pairs.is_empty() {
            return Ok(0);
        }
        let mut client = self.client().await?;
        let keys: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
        let etags: Vec<&str> = pairs.iter().map(|(_, e)| e.as_str()).collect();
        let sql = state::ledger_delete_sql(&self.schema_name);
        let txn = client
            .transaction()
            .await
            .map_err(|e| self.error("delete", &e))?;
        let n = match txn.execute(&sql, &[&bucket, &keys, &etags]).await {
            Ok(n) => n,
            Err(e) if missing_ledger(&e) => return Ok(0),
            Err(e) => return Err(self.error("delete", &e)),
        };
        txn.commit().await.map_err(|e| self.error("delete", &e))?;
        Ok(n)
    }

    /// Rows in a target table now (names quoted; `None` when the table does not exist).
    pub async fn count_rows(
        &self,
        schema: &str,
        table: &str,
    ) -> Result<Option<i64>, CoordinatorError> {
        let client = self.client().await?;
        let exists: bool = client
            .query_one(
                "SELECT to_regclass(format('%I.%I', $1::text, $2::text)) IS NOT NULL",
                &[&schema, &table],
            )
            .await
            .map_err(|e| CoordinatorError::Database {
                operation: "count rows",
                message: pg_text(&e),
            })?
            .get(0);
        if !exists {
            return Ok(None);
        }
        let sql = format!(
            "SELECT count(*) FROM {}.{}",
            quote_ident(schema),
            quote_ident(table)
        );
        let n: i64 = client
            .query_one(&sql, &[])
            .await
            .map_err(|e| CoordinatorError::Database {
                operation: "count rows",
                message: pg_text(&e),
            })?
            .get(0);
        Ok(Some(n))
    }

    /// Tables (ordinary or partitioned, not partitions) of the given schemas, as `(schema,
    /// table)`, the state schema and PostgreSQL's own excepted: the tables `never_seen` looks
    /// for. The names are bound, never spliced.
    pub async fn tables_in(
        &self,
        schemas: &[String],
    ) -> Result<Vec<(String, String)>, CoordinatorError> {
        let schemas: Vec<&str> = schemas
            .iter()
            .map(String::as_str)
            .filter(|s| sluice_common::mapping::reserved_schema(s, &self.schema_name).is_none())
            .collect();
        if schemas.is_empty() {
            return Ok(Vec::new());
        }
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT n.nspname::text, c.relname::text FROM pg_catalog.pg_class c \
                   JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                  WHERE n.nspname = ANY($1::text[]) AND c.relkind IN ('r', 'p') \
                    AND NOT c.relispartition ORDER BY 1, 2",
                &[&schemas],
            )
            .await
            .map_err(|e| self.error("tables of the allowed schemas", &e))?;
        Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// Loaded files and rows per source table (`schema.table` from keys under `prefix`, the
    /// lake's prefix or a narrower one), with the files and rows loaded in the last
    /// `window_secs` seconds.
    pub async fn table_stats(
        &self,
        bucket: &str,
        lake_prefix: &str,
        prefix: &str,
        window_secs: f64,
    ) -> Result<Vec<LedgerTableStats>, CoordinatorError> {
        let client = self.client().await?;
        let sql = state::ledger_table_stats_sql(&self.schema_name);
        let prefix = if prefix.starts_with(lake_prefix) {
            prefix
        } else {
            lake_prefix
        };
        match client
            .query(&sql, &[&bucket, &lake_prefix, &prefix, &window_secs])
            .await
        {
            Ok(rows) => Ok(rows
                .into_iter()
                .map(|r| LedgerTableStats {
                    table: r.get(0),
                    files: r.get::<_, i64>(1) as u64,
                    rows_read: r.get(2),
                    rows_merged: r.get(3),
                    rows_superseded: r.get(4),
                    recent_files: r.get::<_, i64>(5) as u64,
                    recent_rows: r.get(6),
                    last_loaded_at: r.get(7),
                })
                .collect()),
            Err(e) if missing_ledger(&e) => Ok(Vec::new()),
            Err(e) => Err(self.error("statistics", &e)),
        }
    }

    fn error(&self, operation: &'static str, e: &tokio_postgres::Error) -> CoordinatorError {
        CoordinatorError::Database {
            operation,
            message: format!("ledger {}.ledger: {}", self.schema_name, pg_text(e)),
        }
    }
}

/// The ledger (or its schema) does not exist yet: no worker has started.
fn missing_ledger(e: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    e.code()
        .is_some_and(|c| *c == SqlState::UNDEFINED_TABLE || *c == SqlState::INVALID_SCHEMA_NAME)
}

use sluice_common::postgres::error_text as pg_text;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_url_is_reported_without_its_password() {
        let e = Ledger::connect("postgres://u:s3cret@h:notaport/db", "sluice")
            .err()
            .expect("bad port")
            .to_string();
        assert!(!e.contains("s3cret"), "{e}");
        assert!(e.contains("u:***@h"), "{e}");
    }
}
