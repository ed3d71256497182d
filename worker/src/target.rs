//! Resolves a file's target table from the catalog.
//!
//! Invariants: names taken from S3 keys (or the rules file) are only ever bound as parameters of
//! the catalog query; the names used in SQL afterwards are the catalog's own, quoted. A target
//! in a reserved schema (Sluice's state schema, PostgreSQL's own: see
//! `sluice_common::mapping::reserved_schema`) is refused by [`refuse_reserved`] before any SQL
//! runs for the file, whatever `--schemas` allows.

use crate::error::WorkerError;
use crate::sql::{BaseType, Column, Element, TargetTable, CATALOG_COLUMNS};
use deadpool_postgres::GenericClient;
use sluice_common::warehouse::is_system_column;

/// Refuses a final target (after the rules' `target`) in a reserved schema, as the permanent
/// `reserved_schema` error naming the key and the schema.
pub fn refuse_reserved(
    key: &str,
    schema: &str,
    table: &str,
    state_schema: &str,
) -> Result<(), WorkerError> {
    match sluice_common::mapping::reserved_schema(schema, state_schema) {
        Some(reason) => Err(WorkerError::ReservedSchema {
            key: key.to_owned(),
            schema: schema.to_owned(),
            table: table.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// Looks the table up; `key` only labels errors. Sluice's system columns (`_sluice_*`) and the
/// soft-delete flag are not data columns: they are listed in `present` instead.
pub async fn resolve<C: GenericClient>(
    client: &C,
    schema: &str,
    table: &str,
    soft_delete: Option<&str>,
    key: &str,
) -> Result<TargetTable, WorkerError> {
    // Prepared once per connection, as every load looks its table up: sent as text each time
    // it is parsed and planned again (1.3 ms a lookup once the connection's catalog caches are
    // warm); reused, it takes PostgreSQL's generic plan after five lookups (0.3 ms).
    let db_error = |e| crate::db::db_error(e, key, &format!("{schema}.{table}"), None);
    let statement = client
        .prepare_cached(CATALOG_COLUMNS)
        .await
        .map_err(db_error)?;
    let rows = client
        .query(&statement, &[&schema, &table])
        .await
        .map_err(db_error)?;
    if rows.is_empty() {
        return Err(WorkerError::UnknownTable {
            key: key.to_owned(),
            schema: schema.to_owned(),
            table: table.to_owned(),
        });
    }
    let mut columns = Vec::with_capacity(rows.len());
    let mut present = Vec::new();
    let mut key_cols: Vec<(i32, usize)> = Vec::new();
    let oid: u32 = rows[0].get(3);
    for row in &rows {
        let name: String = row.get(0);
        let pos: i32 = row.get(2);
        if is_system_column(&name) || soft_delete == Some(name.as_str()) {
            if pos > 0 {
                return Err(WorkerError::Rules {
                    key: key.to_owned(),
                    message: format!(
                        "column {name:?} of {schema}.{table} is part of the primary key; \
                         _sluice_* columns and the soft-delete flag are sluice's own"
                    ),
                });
            }
            present.push(name);
            continue;
        }
        if pos > 0 {
            key_cols.push((pos, columns.len()));
        }
        columns.push(Column {
            name,
            sql_type: row.get(1),
            not_null: row.get(4),
            is_enum: row.get(5),
            base: base_type(row),
        });
    }
    if key_cols.is_empty() {
        return Err(WorkerError::NoPrimaryKey {
            table: format!("{schema}.{table}"),
        });
    }
    key_cols.sort();
    Ok(TargetTable {
        schema: schema.to_owned(),
        name: table.to_owned(),
        oid,
        columns,
        key: key_cols.into_iter().map(|(_, i)| i).collect(),
        present,
    })
}

/// The type under the column's domains, its element if it is an array, and the session
/// setting its input depends on ([`CATALOG_COLUMNS`]'s last six columns); None when that is
/// the column's own type, not an array, with no such setting.
fn base_type(row: &tokio_postgres::Row) -> Option<BaseType> {
    let own: String = row.get(1);
    let sql_type: String = row.get(6);
    let element = match (row.get::<_, Option<u32>>(8), row.get(9), row.get(10)) {
        (Some(oid), Some(sql_type), Some(is_enum)) => Some(Element {
            oid,
            sql_type,
            is_enum,
        }),
        _ => None,
    };
    let session: Option<String> = row.get(11);
    (sql_type != own || element.is_some() || session.is_some()).then(|| BaseType {
        sql_type,
        is_enum: row.get(7),
        element,
        session,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_targets_are_refused_permanently_with_their_own_class() {
        let e = refuse_reserved(
            "dms/sluice/generations/LOAD00000001.csv",
            "sluice",
            "generations",
            "sluice",
        )
        .unwrap_err();
        assert_eq!(e.class(), "reserved_schema");
        assert!(!e.is_transient());
        let text = e.to_string();
        assert!(
            text.contains("dms/sluice/generations/LOAD00000001.csv"),
            "{text}"
        );
        assert!(
            text.contains("sluice.generations, in sluice's state schema"),
            "{text}"
        );
        let e = refuse_reserved("k", "pg_catalog", "pg_class", "sluice").unwrap_err();
        assert!(e.to_string().contains("a postgresql system schema"), "{e}");
        assert!(refuse_reserved("k", "public", "t", "sluice").is_ok());
        assert!(refuse_reserved("k", "sluice", "t", "elsewhere").is_ok());
    }
}
