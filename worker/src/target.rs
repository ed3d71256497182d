//! Resolves a file's target table from the catalog.
//!
//! Invariant: names taken from S3 keys (or the rules file) are only ever bound as parameters of
//! the catalog query; the names used in SQL afterwards are the catalog's own, quoted.

use crate::error::LoadError;
use crate::sql::{Column, TargetTable, CATALOG_COLUMNS};
use deadpool_postgres::GenericClient;

/// Looks the table up; `key` only labels errors.
pub async fn resolve<C: GenericClient>(
    client: &C,
    schema: &str,
    table: &str,
    key: &str,
) -> Result<TargetTable, LoadError> {
    let rows = client
        .query(CATALOG_COLUMNS, &[&schema, &table])
        .await
        .map_err(|e| crate::db::db_error(e, key, &format!("{schema}.{table}"), None))?;
    if rows.is_empty() {
        return Err(LoadError::UnknownTable {
            key: key.to_owned(),
            schema: schema.to_owned(),
            table: table.to_owned(),
        });
    }
    let mut columns = Vec::with_capacity(rows.len());
    let mut key_cols: Vec<(i32, usize)> = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        columns.push(Column {
            name: row.get(0),
            sql_type: row.get(1),
        });
        let pos: i32 = row.get(2);
        if pos > 0 {
            key_cols.push((pos, i));
        }
    }
    if key_cols.is_empty() {
        return Err(LoadError::NoPrimaryKey {
            table: format!("{schema}.{table}"),
        });
    }
    key_cols.sort();
    Ok(TargetTable {
        schema: schema.to_owned(),
        name: table.to_owned(),
        columns,
        key: key_cols.into_iter().map(|(_, i)| i).collect(),
    })
}
