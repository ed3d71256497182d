//! The catalog read behind `check`: what PostgreSQL says about each target table and about the
//! role that will load it. Read-only.
//!
//! Invariants: every name (schema, table, role; from the rules file or from S3 keys) is bound
//! as a parameter and compared as `text`, exactly, as the worker's own lookup compares it;
//! nothing is spliced into SQL. Privileges are asked of PostgreSQL (`has_table_privilege`,
//! `has_schema_privilege`, `pg_has_role`) for the role named, so an operator connected as
//! another role can check the workers' role. The URL is never shown unredacted.

use super::{CatalogColumn, Lookup, TableFacts};
use crate::error::CoordinatorError;
use sluice_common::config::redact_url;
use sluice_common::postgres::error_text;

/// The relation of that name, with the role's privileges on it (`$1` schema, `$2` table,
/// `$3` role), found as the worker finds it (`sluice_worker::sql::CATALOG_COLUMNS`): through
/// `pg_class`'s name index (the names cast to `name`, which cuts them at 63 bytes), then
/// compared as `text`, so a longer name never matches a cut one. "Can alter" is ownership as PostgreSQL checks it for `ALTER TABLE`: the owner,
/// a member inheriting the owner's privileges, or a superuser.
const RELATION: &str = "\
SELECT c.oid, c.relkind::text, \
       has_schema_privilege($3::name, n.oid, 'USAGE'), \
       has_table_privilege($3::name, c.oid, 'SELECT'), \
       has_table_privilege($3::name, c.oid, 'INSERT'), \
       has_table_privilege($3::name, c.oid, 'UPDATE'), \
       has_table_privilege($3::name, c.oid, 'DELETE'), \
       pg_has_role($3::name, c.relowner, 'USAGE') \
  FROM pg_catalog.pg_class c \
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
 WHERE n.nspname = $1::text::name AND c.relname = $2::text::name \
   AND n.nspname::text = $1::text AND c.relname::text = $2::text";

/// A table's columns (`$1` its oid), in ordinal order, with their primary-key positions.
const COLUMNS: &str = "\
SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull, \
       (a.atthasdef OR a.attidentity <> ''), a.attgenerated <> '', \
       coalesce((SELECT k.ord FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) \
                  WHERE k.attnum = a.attnum), 0)::int4 \
  FROM pg_catalog.pg_attribute a \
  LEFT JOIN pg_catalog.pg_index i ON i.indrelid = a.attrelid AND i.indisprimary \
 WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped \
 ORDER BY a.attnum";

const SCHEMA_EXISTS: &str =
    "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname::text = $1)";

/// Tables of a schema (`$1`), for the closest names.
const TABLES_IN_SCHEMA: &str = "\
SELECT c.relname::text FROM pg_catalog.pg_class c \
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
 WHERE n.nspname::text = $1 AND c.relkind IN ('r', 'p') ORDER BY 1 LIMIT 10000";

/// Every schema but PostgreSQL's own, for the closest names.
const SCHEMAS: &str = "\
SELECT nspname::text FROM pg_catalog.pg_namespace \
 WHERE nspname !~ '^pg_' AND nspname <> 'information_schema' ORDER BY 1 LIMIT 10000";

/// Tables named like `$2` (case-insensitively) other than `$1.$2` itself.
const SAME_NAME: &str = "\
SELECT n.nspname::text || '.' || c.relname::text FROM pg_catalog.pg_class c \
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
 WHERE lower(c.relname::text) = lower($2) AND c.relkind IN ('r', 'p') \
   AND NOT (n.nspname::text = $1 AND c.relname::text = $2) \
 ORDER BY 1 LIMIT 20";

/// One connection to the target database.
pub struct Catalog {
    client: deadpool_postgres::Object,
    _pool: deadpool_postgres::Pool,
}

impl Catalog {
    pub async fn connect(url: &str) -> Result<Catalog, CoordinatorError> {
        let bad = |message: String| CoordinatorError::Database {
            operation: "connect",
            message: format!("{}: {message}", redact_url(url)),
        };
        let pool = sluice_common::postgres::pool(url, 1, "sluice-coordinator")
            .map_err(|e| bad(e.to_string()))?;
        let client = pool.get().await.map_err(|e| {
            bad(match e {
                deadpool_postgres::PoolError::Backend(pg) => error_text(&pg),
                other => other.to_string(),
            })
        })?;
        Ok(Catalog {
            client,
            _pool: pool,
        })
    }

    /// The role to check: `named` if it exists, else the connection's own role.
    pub async fn role(&self, named: Option<&str>) -> Result<String, CoordinatorError> {
        let Some(name) = named.filter(|n| !n.is_empty()) else {
            return Ok(self
                .client
                .query_one("SELECT current_user::text", &[])
                .await
                .map_err(read_error)?
                .get(0));
        };
        let roles: Vec<String> = self
            .client
            .query(
                "SELECT rolname::text FROM pg_catalog.pg_roles ORDER BY 1 LIMIT 10000",
                &[],
            )
            .await
            .map_err(read_error)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if roles.iter().any(|r| r == name) {
            return Ok(name.to_owned());
        }
        let names: Vec<&str> = roles
            .iter()
            .map(String::as_str)
            .filter(|r| !r.starts_with("pg_"))
            .collect();
        let near = super::closest(name, &names);
        Err(CoordinatorError::Usage(format!(
            "--role {name}: no such role{}",
            if near.is_empty() {
                String::new()
            } else {
                format!("; closest: {}", near.join(", "))
            }
        )))
    }

    /// What the catalog says about `schema.table` for `role`.
    pub async fn lookup(
        &self,
        schema: &str,
        table: &str,
        role: &str,
    ) -> Result<Lookup, CoordinatorError> {
        let c = &self.client;
        let rows = c
            .query(RELATION, &[&schema, &table, &role])
            .await
            .map_err(read_error)?;
        let Some(rel) = rows.first() else {
            let schema_exists: bool = c
                .query_one(SCHEMA_EXISTS, &[&schema])
                .await
                .map_err(read_error)?
                .get(0);
            let nearby = if schema_exists {
                c.query(TABLES_IN_SCHEMA, &[&schema]).await
            } else {
                c.query(SCHEMAS, &[]).await
            }
            .map_err(read_error)?
            .iter()
            .map(|r| r.get(0))
            .collect();
            let same_name = c
                .query(SAME_NAME, &[&schema, &table])
                .await
                .map_err(read_error)?
                .iter()
                .map(|r| r.get(0))
                .collect();
            return Ok(Lookup::Missing {
                schema_exists,
                nearby,
                same_name,
            });
        };
        let relkind: String = rel.get(1);
        if relkind != "r" && relkind != "p" {
            return Ok(Lookup::NotATable { relkind });
        }
        let oid: u32 = rel.get(0);
        let columns = c
            .query(COLUMNS, &[&oid])
            .await
            .map_err(read_error)?
            .iter()
            .map(|r| CatalogColumn {
                name: r.get(0),
                sql_type: r.get(1),
                not_null: r.get(2),
                has_default: r.get(3),
                generated: r.get(4),
                key_position: r.get(5),
            })
            .collect();
        Ok(Lookup::Table(TableFacts {
            columns,
            schema_usage: rel.get(2),
            select: rel.get(3),
            insert: rel.get(4),
            update: rel.get(5),
            delete: rel.get(6),
            can_alter: rel.get(7),
        }))
    }
}

fn read_error(e: tokio_postgres::Error) -> CoordinatorError {
    CoordinatorError::Database {
        operation: "catalog read",
        message: error_text(&e),
    }
}
