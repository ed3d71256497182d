//! Per-table rules from `sluice.toml`.
//!
//! With no rules file, DMS's conventions apply to every table: no header row, CSV columns by
//! position in the target's ordinal order, unquoted `NULL` is SQL NULL, an empty quoted field is
//! the empty string, and the target is the table named by the key's folders.
//!
//! ```toml
//! [defaults]
//! null = "NULL"          # DMS CsvNullValue
//! header = false         # DMS AddColumnName
//!
//! [tables."dms_schema.orders"]      # schema.table as in the S3 key
//! target = "warehouse.orders"       # schema.table in PostgreSQL
//! columns = ["id", "customer", "amount"]
//! null = ""
//! header = true
//! ```
//!
//! Invariant: every table gets a complete [`TableRules`]; a table's own values override the
//! defaults field by field. Unknown fields are errors, so a typo does not pass silently.

use crate::error::Error;
use serde::Deserialize;
use std::collections::BTreeMap;

/// Effective rules for one source table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRules {
    /// Target `(schema, table)` in PostgreSQL; None means the key's own folder names.
    pub target: Option<(String, String)>,
    /// CSV columns in file order (after the Op column, if any); None means the target's
    /// columns in ordinal order.
    pub columns: Option<Vec<String>>,
    /// The unquoted text that means SQL NULL.
    pub null: String,
    /// Whether each file starts with a header row naming its columns.
    pub header: bool,
    /// Field delimiter.
    pub delimiter: u8,
}

impl Default for TableRules {
    fn default() -> Self {
        TableRules {
            target: None,
            columns: None,
            null: "NULL".to_owned(),
            header: false,
            delimiter: b',',
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRules {
    #[serde(default)]
    defaults: RawTable,
    #[serde(default)]
    tables: BTreeMap<String, RawTable>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTable {
    target: Option<String>,
    columns: Option<Vec<String>>,
    null: Option<String>,
    header: Option<bool>,
    delimiter: Option<String>,
}

/// All rules: defaults plus per-table overrides, keyed by `schema.table` as in S3 keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    defaults: TableRules,
    tables: BTreeMap<String, TableRules>,
}

impl Rules {
    /// Reads and validates a rules file.
    pub fn load(path: &str) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Rules {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        Self::parse(path, &text)
    }

    /// Parses rules text; `path` only labels errors.
    pub fn parse(path: &str, text: &str) -> Result<Self, Error> {
        let err = |reason: String| Error::Rules {
            path: path.to_owned(),
            reason,
        };
        let raw: RawRules = toml::from_str(text).map_err(|e| err(e.to_string()))?;
        let defaults = apply(&TableRules::default(), &raw.defaults, "defaults").map_err(err)?;
        if raw.defaults.target.is_some() || raw.defaults.columns.is_some() {
            return Err(err("[defaults] cannot set target or columns".to_owned()));
        }
        let mut tables = BTreeMap::new();
        for (name, table) in &raw.tables {
            if split_table(name).is_none() {
                return Err(err(format!(
                    "table key {name:?} must be schema.table, as in the S3 key"
                )));
            }
            tables.insert(name.clone(), apply(&defaults, table, name).map_err(err)?);
        }
        Ok(Rules { defaults, tables })
    }

    /// Rules for a source table (`schema.table` as in the key).
    pub fn for_table(&self, source_table: &str) -> TableRules {
        self.tables
            .get(source_table)
            .cloned()
            .unwrap_or_else(|| self.defaults.clone())
    }

    /// Source tables the rules file names explicitly.
    pub fn configured_tables(&self) -> impl Iterator<Item = &str> {
        self.tables.keys().map(String::as_str)
    }
}

fn apply(base: &TableRules, raw: &RawTable, name: &str) -> Result<TableRules, String> {
    let mut rules = base.clone();
    if let Some(target) = &raw.target {
        let (s, t) = split_table(target)
            .ok_or_else(|| format!("{name}: target {target:?} must be schema.table"))?;
        rules.target = Some((s.to_owned(), t.to_owned()));
    }
    if let Some(columns) = &raw.columns {
        if columns.is_empty() {
            return Err(format!("{name}: columns must not be empty"));
        }
        rules.columns = Some(columns.clone());
    }
    if let Some(null) = &raw.null {
        rules.null = null.clone();
    }
    if let Some(header) = raw.header {
        rules.header = header;
    }
    if let Some(d) = &raw.delimiter {
        let bytes = d.as_bytes();
        if bytes.len() != 1 || bytes[0] == b'"' || bytes[0] == b'\n' || bytes[0] == b'\r' {
            return Err(format!(
                "{name}: delimiter must be one ASCII character other than quote and newline"
            ));
        }
        rules.delimiter = bytes[0];
    }
    Ok(rules)
}

/// Splits `schema.table` at the first dot; both parts non-empty.
fn split_table(s: &str) -> Option<(&str, &str)> {
    let (a, b) = s.split_once('.')?;
    (!a.is_empty() && !b.is_empty()).then_some((a, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_rules_means_dms_defaults() {
        let r = Rules::default().for_table("public.orders");
        assert_eq!(r, TableRules::default());
        assert_eq!(r.null, "NULL");
        assert!(!r.header);
    }

    #[test]
    fn table_overrides_defaults_field_by_field() {
        let rules = Rules::parse(
            "t.toml",
            r#"
            [defaults]
            null = ""
            [tables."src.orders"]
            target = "wh.orders"
            columns = ["id", "name"]
            header = true
            delimiter = "|"
            "#,
        )
        .unwrap();
        let o = rules.for_table("src.orders");
        assert_eq!(o.target, Some(("wh".into(), "orders".into())));
        assert_eq!(
            o.columns.as_deref(),
            Some(&["id".to_string(), "name".to_string()][..])
        );
        assert_eq!(o.null, "");
        assert!(o.header);
        assert_eq!(o.delimiter, b'|');
        let other = rules.for_table("src.other");
        assert_eq!(other.null, "");
        assert!(!other.header);
        assert_eq!(
            rules.configured_tables().collect::<Vec<_>>(),
            vec!["src.orders"]
        );
    }

    #[test]
    fn mistakes_are_errors_naming_the_file() {
        for text in [
            "[tables.orders]\nnull = \"\"",
            "[tables.\"a.b\"]\ntarget = \"nodot\"",
            "[tables.\"a.b\"]\nnul = \"\"",
            "[defaults]\ntarget = \"a.b\"",
            "[tables.\"a.b\"]\ndelimiter = \"||\"",
            "[tables.\"a.b\"]\ncolumns = []",
        ] {
            let e = Rules::parse("x.toml", text).unwrap_err().to_string();
            assert!(e.starts_with("rules file x.toml"), "{e}");
        }
    }
}
