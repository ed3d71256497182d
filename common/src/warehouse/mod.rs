//! The warehouse contract: what Sluice keeps in PostgreSQL and how it names things there,
//! shared by the worker (which writes it) and the coordinator (which reads and checks it).
//! Pure: SQL text and names, no connections (those are [`crate::postgres`]).
//!
//! - [`quote_ident`], [`quote_literal`]: the only way an identifier or a literal reaches SQL
//!   text. Identifiers come from the catalog or the operator's rules, never from an S3 key.
//! - [`SYSTEM_COLUMNS`]: the four `_sluice_*` columns of every target table (README, "System
//!   columns"); `_sluice_*` names are never data columns ([`is_system_column`]).
//! - [`match_column`]: how a file's column name finds a table's column (exact, then ASCII
//!   case-insensitive), the same for the loader and for `check`.
//! - [`state`]: the state schema (ledger, rejects, generations) and the statements on it.
//!
//! Must not: connect, hold state, or know about S3 or the manifest.

pub mod state;

/// One of Sluice's columns in a target table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SystemColumn {
    pub name: &'static str,
    /// The type as DDL writes it.
    pub ddl_type: &'static str,
    /// The type as the catalog's `format_type` shows it (what `check` compares).
    pub catalog_type: &'static str,
    /// The column's comment in the target table.
    pub comment: &'static str,
}

/// The columns Sluice keeps in every target table, in this order. Documented in the README.
pub const SYSTEM_COLUMNS: [SystemColumn; 4] = [
    SystemColumn {
        name: "_sluice_version",
        ddl_type: "timestamptz",
        catalog_type: "timestamp with time zone",
        comment: "sluice: version of the last operation applied to this row (DMS timestamp column, or the file's time)",
    },
    SystemColumn {
        name: "_sluice_file_time",
        ddl_type: "timestamptz",
        catalog_type: "timestamp with time zone",
        comment: "sluice: time of the file that last wrote this row (CDC file name, or LastModified); breaks version ties",
    },
    SystemColumn {
        name: "_sluice_record",
        ddl_type: "bigint",
        catalog_type: "bigint",
        comment: "sluice: record number, in that file, of the operation that last wrote this row; breaks ties",
    },
    SystemColumn {
        name: "_sluice_file",
        ddl_type: "bigint",
        catalog_type: "bigint",
        comment: "sluice: file_id in the ledger of the file that last wrote this row",
    },
];

/// Whether a column name is reserved for Sluice's own columns.
pub fn is_system_column(name: &str) -> bool {
    name.starts_with("_sluice_")
}

/// Quotes an identifier for PostgreSQL: wraps it in double quotes, doubling any inside.
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Quotes a string literal for PostgreSQL (standard strings: only `'` needs doubling).
pub fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The position, among `columns`, of the column a file's `name` fills: the exact name first,
/// else the one equal to it ignoring ASCII case (DMS may change the case of names; other
/// characters are compared as they are).
pub fn match_column<'a, I>(columns: I, name: &str) -> Option<usize>
where
    I: IntoIterator<Item = &'a str>,
    I::IntoIter: Clone,
{
    let columns = columns.into_iter();
    columns
        .clone()
        .position(|c| c == name)
        .or_else(|| columns.clone().position(|c| c.eq_ignore_ascii_case(name)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote_ident("sluice"), "\"sluice\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_ident("Robert'); DROP"), "\"Robert'); DROP\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
    }

    #[test]
    fn columns_match_exactly_first_then_ignoring_ascii_case() {
        let cols = ["id", "Name", "name", "Ünit"];
        assert_eq!(match_column(cols, "name"), Some(2));
        assert_eq!(match_column(cols, "Name"), Some(1));
        assert_eq!(match_column(cols, "NAME"), Some(1));
        assert_eq!(match_column(cols, "ID"), Some(0));
        // Only ASCII letters fold.
        assert_eq!(match_column(cols, "üNIT"), None);
        assert_eq!(match_column(cols, "missing"), None);
    }

    #[test]
    fn system_columns_are_reserved() {
        assert!(SYSTEM_COLUMNS.iter().all(|c| is_system_column(c.name)));
        assert!(is_system_column("_sluice_anything"));
        assert!(!is_system_column("sluice_version"));
    }
}
