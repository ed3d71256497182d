//! Schema drift, pure: which of the columns a file names (`new_columns = "add"`) the target
//! still lacks, which names are refused, and the one `ALTER TABLE` that adds the rest.
//!
//! This is the one place where a name read from a file (a CSV header, a Parquet schema)
//! reaches SQL text: every such name passes [`refusal`] first and is quoted with
//! [`quote_ident`]; the types come from the worker's Parquet mapping or the operator's rules,
//! never from the file's text.
//!
//! Invariants: a column is only ever added (`ADD COLUMN IF NOT EXISTS`), never changed or
//! dropped; a name that matches a column the table already has (by the loader's own rule,
//! [`match_column`]) is never added again; a name that matches a column the worker does not
//! load into (a generated column, `_sluice_*`, the soft-delete flag) is refused, so the loader
//! cannot loop adding a column that is already there.

use super::TargetTable;
use sluice_common::warehouse::{is_system_column, match_column, quote_ident};

/// A column a file names that its target lacked when the file's layout was decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewColumn {
    pub name: String,
    /// The type the file's format gives it (Parquet); None: the rules' `new_column_type`, else
    /// `text`.
    pub sql_type: Option<String>,
}

/// A column added to a target, as the log, the metric and the manifest history report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddedColumn {
    pub name: String,
    pub sql_type: String,
}

/// The longest identifier PostgreSQL keeps (NAMEDATALEN - 1): a longer one is truncated, so
/// a longer name would not be the name the file gave.
pub const MAX_NAME_BYTES: usize = 63;

/// PostgreSQL's own system columns: `ADD COLUMN` refuses them.
const PG_SYSTEM_COLUMNS: [&str; 7] = ["tableoid", "cmax", "xmax", "cmin", "xmin", "ctid", "oid"];

/// Why a name from a file is never added as a column, or None when it may be.
pub fn refusal(name: &str, soft_delete: Option<&str>) -> Option<String> {
    if name.is_empty() {
        return Some("the name is empty".to_owned());
    }
    if name.len() > MAX_NAME_BYTES {
        return Some(format!(
            "the name is {} bytes long; PostgreSQL keeps at most {MAX_NAME_BYTES}",
            name.len()
        ));
    }
    if let Some(c) = name.chars().find(|c| c.is_control()) {
        return Some(format!(
            "the name holds the control character U+{:04X}",
            u32::from(c)
        ));
    }
    if is_system_column(name) || name.to_ascii_lowercase().starts_with("_sluice_") {
        return Some("_sluice_* names are sluice's system columns".to_owned());
    }
    if PG_SYSTEM_COLUMNS.contains(&name.to_ascii_lowercase().as_str()) {
        return Some("the name is one of postgresql's system columns".to_owned());
    }
    if soft_delete.is_some_and(|f| f.eq_ignore_ascii_case(name)) {
        return Some("the name is the table's soft_delete flag, which sluice sets".to_owned());
    }
    None
}

/// What to do with a file's new columns, decided under the table's merge lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Columns to add, each once, in file order.
    pub add: Vec<AddedColumn>,
    /// Columns someone added since the file's layout was decided: nothing to do.
    pub present: Vec<String>,
}

/// A name [`plan`] refuses, and the rule it breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub name: String,
    pub rule: String,
}

/// Decides which of `new` to add to `target` (as the catalog has it now, under the lock),
/// given `every` column name of the table (generated and system columns included); the first
/// refused name is the error.
pub fn plan(
    target: &TargetTable,
    every: &[String],
    new: &[NewColumn],
    soft_delete: Option<&str>,
    default_type: Option<&str>,
) -> Result<Plan, Refused> {
    let data: Vec<&str> = target.columns.iter().map(|c| c.name.as_str()).collect();
    let mut plan = Plan {
        add: Vec::new(),
        present: Vec::new(),
    };
    for c in new {
        let refused = |rule| Refused {
            name: c.name.clone(),
            rule,
        };
        if let Some(rule) = refusal(&c.name, soft_delete) {
            return Err(refused(rule));
        }
        if plan.add.iter().any(|a| a.name == c.name) {
            continue;
        }
        if match_column(data.iter().copied(), &c.name).is_some() {
            plan.present.push(c.name.clone());
            continue;
        }
        if let Some(i) = match_column(every.iter().map(String::as_str), &c.name) {
            let rule = format!(
                "{} already has a column {:?} that sluice does not load into (a generated \
                 column, or one of its own)",
                target.label(),
                every[i]
            );
            return Err(refused(rule));
        }
        let sql_type = c
            .sql_type
            .clone()
            .or_else(|| default_type.map(str::to_owned))
            .unwrap_or_else(|| "text".to_owned());
        plan.add.push(AddedColumn {
            name: c.name.clone(),
            sql_type,
        });
    }
    Ok(plan)
}

/// `ALTER TABLE ... ADD COLUMN IF NOT EXISTS ...` for each column (at least one), nullable
/// and without a default, so existing rows read NULL and no row is rewritten.
pub fn add_columns_sql(target: &TargetTable, add: &[AddedColumn]) -> String {
    let adds: Vec<String> = add
        .iter()
        .map(|c| {
            format!(
                "ADD COLUMN IF NOT EXISTS {} {}",
                quote_ident(&c.name),
                c.sql_type
            )
        })
        .collect();
    format!("ALTER TABLE {} {}", target.qualified(), adds.join(", "))
}

/// Every column of a table by its oid, dropped ones excluded: the names a new column must not
/// take.
pub const EVERY_COLUMN_SQL: &str = "SELECT attname::text FROM pg_catalog.pg_attribute \
     WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped ORDER BY attnum";

/// Names for messages: `"a", "b"`.
pub fn names(columns: &[NewColumn]) -> String {
    let quoted: Vec<String> = columns.iter().map(|c| format!("{:?}", c.name)).collect();
    quoted.join(", ")
}

/// Added columns for the log and the manifest history: `"a" text, "b" bigint`.
pub fn describe(added: &[AddedColumn]) -> String {
    let parts: Vec<String> = added
        .iter()
        .map(|c| format!("{:?} {}", c.name, c.sql_type))
        .collect();
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::Column;

    fn target() -> TargetTable {
        let col = |n: &str| Column {
            name: n.to_owned(),
            sql_type: "text".to_owned(),
            not_null: false,
            is_enum: false,
            base: None,
        };
        TargetTable {
            schema: "s".to_owned(),
            name: "t".to_owned(),
            oid: 1,
            columns: vec![col("id"), col("Name")],
            key: vec![0],
            present: vec!["_sluice_version".to_owned(), "gone".to_owned()],
        }
    }

    fn new(name: &str, ty: Option<&str>) -> NewColumn {
        NewColumn {
            name: name.to_owned(),
            sql_type: ty.map(str::to_owned),
        }
    }

    #[test]
    fn hostile_names_are_refused_saying_which_rule() {
        let soft = Some("gone");
        assert_eq!(refusal("email", soft), None);
        assert_eq!(refusal("Ünïcode name; with \"quotes\"", soft), None);
        assert_eq!(refusal(&"a".repeat(63), soft), None);
        let why = |n: &str| refusal(n, soft).unwrap();
        assert!(why("").contains("empty"));
        assert!(why(&"a".repeat(64)).contains("64 bytes"));
        // Multi-byte: 22 three-byte characters are 66 bytes.
        assert!(why(&"表".repeat(22)).contains("66 bytes"));
        assert!(why("a\nb").contains("U+000A"));
        assert!(why("a\u{0}b").contains("U+0000"));
        assert!(why("tab\there").contains("U+0009"));
        assert!(why("_sluice_version").contains("system columns"));
        assert!(why("_SLUICE_x").contains("system columns"));
        assert!(why("xmin").contains("postgresql's system columns"));
        assert!(why("CTID").contains("postgresql's system columns"));
        assert!(why("GONE").contains("soft_delete"));
    }

    #[test]
    fn plan_adds_only_what_is_missing_each_once() {
        let every: Vec<String> = ["id", "Name", "_sluice_version", "gone", "total"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let p = plan(
            &target(),
            &every,
            &[
                new("email", None),
                new("score", Some("bigint")),
                new("email", None),
                new("name", None),
            ],
            Some("gone"),
            None,
        )
        .unwrap();
        assert_eq!(
            p.add,
            vec![
                AddedColumn {
                    name: "email".into(),
                    sql_type: "text".into()
                },
                AddedColumn {
                    name: "score".into(),
                    sql_type: "bigint".into()
                },
            ]
        );
        assert_eq!(p.present, vec!["name".to_owned()]);
        let p = plan(
            &target(),
            &every,
            &[new("email", None)],
            None,
            Some("varchar(200)"),
        )
        .unwrap();
        assert_eq!(p.add[0].sql_type, "varchar(200)");
        // A generated column of that name: refused, not added again and again.
        let r = plan(&target(), &every, &[new("TOTAL", None)], None, None).unwrap_err();
        assert_eq!(r.name, "TOTAL");
        assert!(r.rule.contains("\"total\""), "{}", r.rule);
        let r = plan(&target(), &every, &[new("_sluice_x", None)], None, None).unwrap_err();
        assert_eq!(r.name, "_sluice_x");
    }

    #[test]
    fn the_statement_quotes_every_name_and_only_adds() {
        let sql = add_columns_sql(
            &target(),
            &[
                AddedColumn {
                    name: "a\"; DROP TABLE x; --".into(),
                    sql_type: "text".into(),
                },
                AddedColumn {
                    name: "Score".into(),
                    sql_type: "bigint".into(),
                },
            ],
        );
        assert_eq!(
            sql,
            "ALTER TABLE \"s\".\"t\" ADD COLUMN IF NOT EXISTS \"a\"\"; DROP TABLE x; --\" text, \
             ADD COLUMN IF NOT EXISTS \"Score\" bigint"
        );
        assert!(!sql.contains("DROP COLUMN") && !sql.contains("ALTER COLUMN"));
        assert_eq!(
            describe(&[AddedColumn {
                name: "a".into(),
                sql_type: "text".into()
            }]),
            "\"a\" text"
        );
        assert!(EVERY_COLUMN_SQL.contains("attrelid = $1"));
    }
}
