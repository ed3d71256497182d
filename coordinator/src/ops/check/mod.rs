//! `check`: do the rules fit the tables? Before anything loads, every source table the rules
//! file configures (and, with `--source`, every table folder found in the lake) is resolved to
//! its target in the PostgreSQL catalog, and each rule that does not fit that table is reported
//! with the table and the rule.
//!
//! Three levels: an **error** is something a worker would refuse or fail on (a missing target,
//! no primary key, a listed column that is not a column, a key column the file does not carry, a
//! missing privilege, system columns the worker's role cannot add); a **warning** is likely to
//! fail some rows or lose data (a `NOT NULL` column without default that no file column fills,
//! `flatten = "auto"` with no column to take a field); a **note** says what Sluice will do that
//! may surprise (a version-only timestamp column, columns the worker adds on first use).
//!
//! With `--source`, [`drift`] also reads the columns each table's newest file names (a few
//! ranged GETs per table, bounded) and reports those its target lacks, by `new_columns`.
//!
//! Must not: change anything in PostgreSQL or the manifest; it only reads the catalog (and,
//! with `--source`, lists the lake).
//!
//! Invariants:
//! - the decision ([`check_table`]) is pure: rules and catalog facts in, findings out; the
//!   catalog read ([`catalog`]) is separate and only reads;
//! - names from the rules file and from S3 keys are only ever bound as parameters of catalog
//!   queries, never spliced into SQL; the SQL suggested in messages quotes every identifier;
//! - columns are matched as the worker matches them
//!   (`sluice_common::warehouse::match_column`): exact name first, then ASCII
//!   case-insensitive; `_sluice_*` columns, the soft-delete flag and generated columns are not
//!   data columns;
//! - the exit status is 1 exactly when some finding is an error (warnings and notes never
//!   fail); the report always ends with one summary line.

pub mod catalog;
pub mod drift;
mod format;
mod names;
mod table;

pub use format::format;
pub use names::closest;
pub use table::check_table;

use crate::error::CoordinatorError;
use serde::Serialize;
use sluice_common::config::SourceLocation;
use sluice_common::rules::{Rules, TableRules};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// How much a finding matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// A worker would refuse the table's files or fail on them: the check fails.
    Error,
    /// Some rows would likely fail, or data be dropped.
    Warning,
    /// Worth knowing; nothing fails.
    Note,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warning => "warning",
            Level::Note => "note",
        }
    }
}

/// One rule that does not fit its table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Source table, `schema.table` as in the key (and the rules file).
    pub table: String,
    /// Target `schema.table` in PostgreSQL.
    pub target: String,
    pub level: Level,
    /// The rule (or table property) at fault: `target`, `primary key`, `columns`,
    /// `timestamp_column`, `soft_delete`, `document.column`, `document.paths`,
    /// `document.rescue`, `document.flatten`, `privileges`, `system columns`, `lake`.
    pub rule: String,
    pub message: String,
}

/// A column as the catalog describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CatalogColumn {
    pub name: String,
    /// `format_type(atttypid, atttypmod)`, e.g. `numeric(12,2)`, `boolean`, `jsonb`.
    pub sql_type: String,
    pub not_null: bool,
    /// A default or an identity: an insert without the column does not leave it NULL.
    pub has_default: bool,
    /// A generated column: PostgreSQL computes it, nothing loads into it.
    pub generated: bool,
    /// Position in the primary key (1-based); 0 when not part of it.
    pub key_position: i32,
}

/// What the catalog says about a target table and the role that will load it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableFacts {
    /// Every column (system columns included) in ordinal order; dropped ones excluded.
    pub columns: Vec<CatalogColumn>,
    /// The role may use the table's schema (without it the worker cannot reach the table).
    pub schema_usage: bool,
    pub select: bool,
    pub insert: bool,
    pub update: bool,
    pub delete: bool,
    /// The role owns the table (or is a member of its owner, or a superuser): the worker can
    /// add the system columns and the soft-delete flag itself.
    pub can_alter: bool,
}

/// The catalog's answer for a target `schema.table`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Lookup {
    Table(TableFacts),
    /// A relation of that name that the worker cannot load into (a view, ...).
    NotATable {
        relkind: String,
    },
    /// No relation of that name.
    Missing {
        /// The schema exists.
        schema_exists: bool,
        /// With the schema: its tables; without: every schema (for the closest names).
        nearby: Vec<String>,
        /// `schema.table` of tables of the same name, ASCII case-insensitive, elsewhere.
        same_name: Vec<String>,
    },
}

/// What one source table resolved to, and what was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableReport {
    pub table: String,
    pub target: String,
    /// The rules file configures the table (else: found in the lake, default rules).
    pub configured: bool,
    pub errors: usize,
    pub warnings: usize,
    pub notes: usize,
}

/// The whole check (`--json` prints this).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The role whose privileges were checked.
    pub role: String,
    pub tables: Vec<TableReport>,
    pub findings: Vec<Finding>,
    pub errors: usize,
    pub warnings: usize,
    pub notes: usize,
}

/// The process's exit status: 1 when any finding is an error, else 0.
pub fn exit_code(report: &Report) -> i32 {
    i32::from(report.errors > 0)
}

/// The target of a source table: the rules' `target`, else the key's own `schema.table`
/// (split at the first dot, as the rules file and the manifest write it).
pub fn target_of(source: &str, rules: &TableRules) -> (String, String) {
    match &rules.target {
        Some((s, t)) => (s.clone(), t.clone()),
        None => match source.split_once('.') {
            Some((s, t)) => (s.to_owned(), t.to_owned()),
            None => (String::new(), source.to_owned()),
        },
    }
}

/// The tables to check: every table the rules configure, plus `lake_tables` (source tables
/// found in the listing) with the rules they get; in name order, each once. `true` marks a
/// configured table.
pub fn tables_to_check(rules: &Rules, lake_tables: &BTreeSet<String>) -> Vec<(String, bool)> {
    let configured: BTreeSet<&str> = rules.configured_tables().collect();
    let mut all: BTreeMap<String, bool> = lake_tables.iter().map(|t| (t.clone(), false)).collect();
    for t in &configured {
        all.insert((*t).to_owned(), true);
    }
    all.into_iter().collect()
}

/// Builds the report from each table's findings (the tables in check order).
pub fn report(role: &str, checked: Vec<(TableReport, Vec<Finding>)>) -> Report {
    let mut tables = Vec::new();
    let mut findings = Vec::new();
    for (mut t, f) in checked {
        t.errors = f.iter().filter(|f| f.level == Level::Error).count();
        t.warnings = f.iter().filter(|f| f.level == Level::Warning).count();
        t.notes = f.iter().filter(|f| f.level == Level::Note).count();
        tables.push(t);
        findings.extend(f);
    }
    let count = |l: Level| findings.iter().filter(|f| f.level == l).count();
    Report {
        role: role.to_owned(),
        errors: count(Level::Error),
        warnings: count(Level::Warning),
        notes: count(Level::Note),
        tables,
        findings,
    }
}

/// Runs the check: the tables the rules configure, plus (with `source`) every table folder in
/// the lake, each against the catalog, with `role`'s privileges (default: the connecting role).
pub async fn run(
    database_url: &str,
    role: Option<&str>,
    rules: &Rules,
    source: Option<(&aws_sdk_s3::Client, &SourceLocation)>,
) -> Result<Report, CoordinatorError> {
    let mut lake_tables = BTreeSet::new();
    let mut listing = Vec::new();
    if let Some((s3, loc)) = source {
        listing = crate::listing::list_objects(s3, &loc.bucket, &loc.prefix, &loc.prefix).await?;
        lake_tables.extend(listing.iter().filter_map(|o| o.source_table()));
    }
    let newest = drift::newest_files(&listing);
    let tables = tables_to_check(rules, &lake_tables);
    if tables.is_empty() {
        return Err(CoordinatorError::Usage(if source.is_some() {
            "nothing to check: the rules file configures no table and the lake holds no table \
             folder"
                .to_owned()
        } else {
            "nothing to check: give a rules file with tables (--config, SLUICE_CONFIG) or the \
             lake (--source, SLUICE_SOURCE)"
                .to_owned()
        }));
    }
    let catalog = catalog::Catalog::connect(database_url).await?;
    let role = catalog.role(role).await?;
    let mut looked_up: HashMap<(String, String), Lookup> = HashMap::new();
    let mut checked = Vec::new();
    for (source_table, configured) in tables {
        let rules = rules.for_table(&source_table);
        let (schema, table) = target_of(&source_table, &rules);
        let lookup = match looked_up.get(&(schema.clone(), table.clone())) {
            Some(l) => l.clone(),
            None => {
                let l = catalog.lookup(&schema, &table, &role).await?;
                looked_up.insert((schema.clone(), table.clone()), l.clone());
                l
            }
        };
        let mut findings = check_table(&source_table, &rules, (&schema, &table), &role, &lookup);
        if let Lookup::Table(facts) = &lookup {
            let target = format!("{schema}.{table}");
            let names = (source_table.as_str(), target.as_str());
            findings.extend(drift::ownership(names, &rules, &role, facts));
        }
        if let (Some((s3, loc)), Lookup::Table(facts)) = (source, &lookup) {
            if let Some(file) = newest.get(&source_table) {
                let lake = drift::lake_columns(s3, &loc.bucket, file, &rules).await;
                let target = format!("{schema}.{table}");
                let names = (source_table.as_str(), target.as_str());
                findings.extend(drift::findings(names, &rules, &role, facts, &lake));
                findings.sort_by_key(|f| f.level);
            }
        }
        if let Some((_, loc)) = source {
            if configured && !lake_tables.contains(&source_table) {
                findings.push(Finding {
                    table: source_table.clone(),
                    target: format!("{schema}.{table}"),
                    level: Level::Note,
                    rule: "lake".to_owned(),
                    message: format!(
                        "no file under {loc}{}/ yet",
                        source_table.replacen('.', "/", 1)
                    ),
                });
            }
        }
        checked.push((
            TableReport {
                table: source_table,
                target: format!("{schema}.{table}"),
                configured,
                errors: 0,
                warnings: 0,
                notes: 0,
            },
            findings,
        ));
    }
    Ok(report(&role, checked))
}

#[cfg(test)]
mod tests {
    use super::names::{distance, is_system};
    use super::*;
    use sluice_common::warehouse::SYSTEM_COLUMNS;

    fn col(name: &str, ty: &str) -> CatalogColumn {
        CatalogColumn {
            name: name.into(),
            sql_type: ty.into(),
            not_null: false,
            has_default: false,
            generated: false,
            key_position: 0,
        }
    }

    fn key(name: &str, ty: &str, pos: i32) -> CatalogColumn {
        CatalogColumn {
            not_null: true,
            key_position: pos,
            ..col(name, ty)
        }
    }

    fn system() -> Vec<CatalogColumn> {
        SYSTEM_COLUMNS
            .iter()
            .map(|c| col(c.name, c.catalog_type))
            .collect()
    }

    /// A table the role may load into, with its system columns, not owned by the role.
    fn facts(columns: Vec<CatalogColumn>) -> TableFacts {
        let mut columns = columns;
        columns.extend(system());
        TableFacts {
            columns,
            schema_usage: true,
            select: true,
            insert: true,
            update: true,
            delete: true,
            can_alter: false,
        }
    }

    fn orders() -> TableFacts {
        facts(vec![
            key("id", "integer", 1),
            col("customer", "text"),
            col("amount", "numeric(12,2)"),
        ])
    }

    fn rules(text: &str) -> TableRules {
        Rules::parse("t.toml", &format!("[tables.\"src.t\"]\n{text}"))
            .expect("rules")
            .for_table("src.t")
    }

    fn check(r: &TableRules, lookup: &Lookup) -> Vec<Finding> {
        check_table("src.t", r, ("wh", "t"), "loader", lookup)
    }

    /// (level, rule, message) of each finding.
    fn found(f: &[Finding]) -> Vec<(Level, &str, &str)> {
        f.iter()
            .map(|f| (f.level, f.rule.as_str(), f.message.as_str()))
            .collect()
    }

    #[test]
    fn fitting_rules_find_nothing() {
        let t = Lookup::Table(orders());
        assert_eq!(check(&TableRules::default(), &t), vec![]);
        assert_eq!(
            check(&rules("columns = [\"customer\", \"ID\", \"amount\"]"), &t),
            vec![]
        );
        assert_eq!(
            check(
                &rules("columns = [\"dms_ts\", \"id\", \"customer\", \"amount\"]\ntimestamp_column = \"DMS_TS\""),
                &t
            )
            .len(),
            1,
            "only the version-only note"
        );
    }

    #[test]
    fn a_missing_target_names_what_exists() {
        let missing = Lookup::Missing {
            schema_exists: true,
            nearby: vec!["orders".into(), "order_lines".into(), "people".into()],
            same_name: vec!["public.ordrs".into()],
        };
        let f = check_table(
            "src.ordrs",
            &TableRules::default(),
            ("wh", "ordrs"),
            "r",
            &missing,
        );
        assert_eq!(f.len(), 1);
        assert_eq!((f[0].level, f[0].rule.as_str()), (Level::Error, "target"));
        assert!(
            f[0].message
                .contains("wh.ordrs does not exist; closest: orders"),
            "{}",
            f[0].message
        );
        assert!(f[0].message.contains("key's own"), "{}", f[0].message);
        assert!(
            f[0].message.contains("exists as public.ordrs"),
            "{}",
            f[0].message
        );
        let no_schema = Lookup::Missing {
            schema_exists: false,
            nearby: vec!["warehouse".into(), "public".into()],
            same_name: vec![],
        };
        let f = check_table(
            "src.t",
            &rules("target = \"warehose.t\""),
            ("warehose", "t"),
            "r",
            &no_schema,
        );
        assert!(!f[0].message.contains("key's own"), "{}", f[0].message);
        assert!(
            f[0].message
                .contains("no schema warehose; closest: warehouse"),
            "{}",
            f[0].message
        );
        let view = Lookup::NotATable {
            relkind: "v".into(),
        };
        assert!(check(&TableRules::default(), &view)[0]
            .message
            .contains("is a view"));
    }

    #[test]
    fn unknown_list_columns_only_warn_when_ignored() {
        let t = Lookup::Table(facts(vec![
            key("id", "integer", 1),
            col("amount", "numeric"),
        ]));
        let f = check(
            &rules("columns = [\"id\", \"legacy\", \"amount\"]\nunknown_columns = \"ignore\""),
            &t,
        );
        let f = found(&f);
        assert_eq!(f.len(), 1, "{f:#?}");
        assert_eq!((f[0].0, f[0].1), (Level::Warning, "columns"));
        assert!(f[0].2.contains("\"legacy\" in columns") && f[0].2.contains("left out"));
    }

    #[test]
    fn columns_that_do_not_fit() {
        let t = Lookup::Table(facts(vec![
            key("id", "integer", 1),
            key("line", "integer", 2),
            CatalogColumn {
                not_null: true,
                ..col("customer", "text")
            },
            CatalogColumn {
                not_null: true,
                has_default: true,
                ..col("created", "timestamptz")
            },
            col("amount", "numeric"),
            CatalogColumn {
                generated: true,
                ..col("total", "numeric")
            },
        ]));
        let f = check(
            &rules("columns = [\"id\", \"amout\", \"total\", \"_sluice_file\", \"amount\", \"AMOUNT\"]"),
            &t,
        );
        let f = found(&f);
        assert_eq!(f.len(), 6, "{f:#?}");
        assert_eq!((f[0].0, f[0].1), (Level::Error, "columns"));
        assert!(
            f[0].2
                .contains("\"amout\" in columns is not a column of wh.t; closest: amount"),
            "{}",
            f[0].2
        );
        assert!(f[1].2.contains("generated column"), "{}", f[1].2);
        assert!(f[2].2.contains("Sluice's own"), "{}", f[2].2);
        assert!(f[3].2.contains("listed twice"), "{}", f[3].2);
        assert_eq!((f[4].0, f[4].1), (Level::Error, "columns"));
        assert!(
            f[4].2
                .starts_with("primary key column line is not in columns"),
            "{}",
            f[4].2
        );
        // NOT NULL without default: a warning; with a default: nothing.
        assert_eq!(f[5].0, Level::Warning);
        assert!(
            f[5].2.starts_with("customer is NOT NULL without a default"),
            "{}",
            f[5].2
        );
    }

    #[test]
    fn nothing_close_lists_the_columns() {
        let t = Lookup::Table(orders());
        let f = check(&rules("columns = [\"id\", \"zzzzzz\"]"), &t);
        assert!(
            f[0].message
                .ends_with("; columns of wh.t: id, customer, amount"),
            "{}",
            f[0].message
        );
    }

    #[test]
    fn no_primary_key_and_a_key_on_sluices_columns() {
        let t = Lookup::Table(facts(vec![col("id", "integer"), col("v", "text")]));
        let f = check(&TableRules::default(), &t);
        assert_eq!(found(&f)[0].0, Level::Error);
        assert_eq!(f[0].rule, "primary key");
        assert!(f[0].message.contains("has no primary key"));
        let t = Lookup::Table(facts(vec![
            key("id", "integer", 1),
            key("gone", "boolean", 2),
        ]));
        let f = check(&rules("soft_delete = \"gone\""), &t);
        assert_eq!(f.len(), 1);
        assert!(f[0]
            .message
            .contains("column gone is part of wh.t's primary key"));
    }

    #[test]
    fn the_timestamp_column_must_be_listed_and_may_be_version_only() {
        let t = Lookup::Table(orders());
        let f = check(
            &rules("columns = [\"id\", \"customer\"]\ntimestamp_column = \"ts\""),
            &t,
        );
        assert_eq!(
            found(&f),
            vec![(Level::Error, "timestamp_column", f[0].message.as_str())]
        );
        assert!(f[0]
            .message
            .contains("\"ts\" is not among columns (id, customer)"));
        let f = check(&rules("timestamp_column = \"dms_ts\""), &t);
        assert_eq!(
            (f[0].level, f[0].rule.as_str()),
            (Level::Note, "timestamp_column")
        );
        assert!(
            f[0].message.contains("first field after Op"),
            "{}",
            f[0].message
        );
        let f = check(&rules("timestamp_column = \"dms_ts\"\nheader = true"), &t);
        assert!(
            f[0].message.contains("header must name it"),
            "{}",
            f[0].message
        );
        assert_eq!(check(&rules("timestamp_column = \"amount\""), &t), vec![]);
    }

    #[test]
    fn the_soft_delete_flag() {
        let mut owned = orders();
        owned.can_alter = true;
        let f = check(
            &rules("soft_delete = \"is_deleted\""),
            &Lookup::Table(owned),
        );
        assert_eq!(
            found(&f),
            vec![(Level::Note, "soft_delete", f[0].message.as_str())]
        );
        assert!(f[0].message.contains("the worker adds it"));
        let f = check(
            &rules("soft_delete = \"is_deleted\""),
            &Lookup::Table(orders()),
        );
        assert_eq!(f[0].level, Level::Error);
        assert!(f[0].message.contains("does not own it"), "{}", f[0].message);
        assert!(f[0]
            .message
            .contains("ADD COLUMN \"is_deleted\" boolean NOT NULL DEFAULT false"));
        let mut t = orders();
        t.columns.push(col("deleted", "text"));
        let f = check(
            &rules("soft_delete = \"deleted\""),
            &Lookup::Table(t.clone()),
        );
        assert_eq!(
            found(&f),
            vec![(
                Level::Error,
                "soft_delete",
                "soft_delete column deleted of wh.t is text, not boolean"
            )]
        );
        t.columns.last_mut().unwrap().sql_type = "boolean".into();
        assert_eq!(
            check(&rules("soft_delete = \"deleted\""), &Lookup::Table(t)),
            vec![]
        );
    }

    #[test]
    fn privileges_and_system_columns() {
        let mut t = orders();
        t.schema_usage = false;
        t.insert = false;
        t.delete = false;
        t.columns
            .retain(|c| c.name != "_sluice_record" && c.name != "_sluice_file");
        t.columns.retain(|c| c.name != "_sluice_version");
        t.columns
            .push(col("_sluice_version", "timestamp without time zone"));
        let f = check(&TableRules::default(), &Lookup::Table(t.clone()));
        let rules_found: Vec<(Level, &str)> =
            f.iter().map(|f| (f.level, f.rule.as_str())).collect();
        assert_eq!(
            rules_found,
            vec![
                (Level::Error, "privileges"),
                (Level::Error, "privileges"),
                (Level::Error, "system columns"),
                (Level::Error, "system columns"),
            ]
        );
        assert!(
            f[0].message.contains("no USAGE on schema wh"),
            "{}",
            f[0].message
        );
        assert!(
            f[1].message.contains("lacks INSERT, DELETE on wh.t"),
            "{}",
            f[1].message
        );
        assert!(
            f[2].message
                .contains("_sluice_version of wh.t is timestamp without time zone"),
            "{}",
            f[2].message
        );
        assert!(
            f[3].message
                .contains("lacks _sluice_record, _sluice_file and role loader does not own it"),
            "{}",
            f[3].message
        );
        assert!(
            f[3].message
                .contains("ADD COLUMN _sluice_record bigint, ADD COLUMN _sluice_file bigint"),
            "{}",
            f[3].message
        );
        // The owner's worker adds them itself.
        t.can_alter = true;
        t.columns.retain(|c| !is_system(&c.name));
        let f = check(&TableRules::default(), &Lookup::Table(t));
        assert_eq!(f.last().unwrap().level, Level::Note);
        assert!(f
            .last()
            .unwrap()
            .message
            .contains("the worker adds them on first use"));
    }

    #[test]
    fn document_paths_and_rescue() {
        let t = Lookup::Table(facts(vec![
            key("_id", "text", 1),
            col("_doc", "jsonb"),
            col("city", "text"),
            col("extra", "json"),
        ]));
        let r = rules(
            "columns = [\"_id\", \"_doc\"]\n[tables.\"src.t\".document]\n\
             paths = { city = \"address.city\", zip = \"address.zip\" }\nrescue = \"extra\"",
        );
        let f = check(&r, &t);
        assert_eq!(
            f.iter()
                .map(|f| (f.level, f.rule.as_str()))
                .collect::<Vec<_>>(),
            vec![
                (Level::Error, "document.paths"),
                (Level::Error, "document.rescue"),
                (Level::Warning, "document.column"),
            ],
            "{f:#?}"
        );
        assert!(
            f[0].message
                .contains("\"zip\" (from \"address.zip\") is not a column"),
            "{}",
            f[0].message
        );
        assert!(
            f[1].message
                .contains("rescue column extra of wh.t is json, not jsonb"),
            "{}",
            f[1].message
        );
        // The document column must be among the listed columns; a missing rescue column is named.
        let r = rules(
            "columns = [\"_id\", \"doc\"]\n[tables.\"src.t\".document]\n\
             paths = { city = \"address.city\" }\nrescue = \"rest\"",
        );
        let f = check(&r, &t);
        assert!(f.iter().any(|f| f.rule == "document.column"
            && f.message
                .contains("document column \"_doc\" is not among columns")));
        // "doc" is not a column either.
        assert!(f
            .iter()
            .any(|f| f.rule == "columns" && f.message.contains("\"doc\" in columns")));
        assert!(
            f.iter()
                .any(|f| f.rule == "document.rescue"
                    && f.message.contains("\"rest\" is not a column"))
        );
    }

    #[test]
    fn flatten_auto_needs_a_column_to_fill() {
        let bare = Lookup::Table(facts(vec![key("_id", "text", 1), col("rest", "jsonb")]));
        let r = rules("[tables.\"src.t\".document]\nrescue = \"rest\"");
        let f = check(&r, &bare);
        assert_eq!(found(&f).len(), 1, "{f:#?}");
        assert_eq!(
            (f[0].level, f[0].rule.as_str()),
            (Level::Warning, "document.flatten")
        );
        assert!(
            f[0].message.contains("goes to the rescue column"),
            "{}",
            f[0].message
        );
        let wide = Lookup::Table(facts(vec![
            key("_id", "text", 1),
            col("name", "text"),
            col("rest", "jsonb"),
        ]));
        assert_eq!(check(&r, &wide), vec![]);
        // A key column the documents fill is a note, not an error, in auto mode.
        let f = check(
            &rules("columns = [\"_doc\"]\n[tables.\"src.t\".document]\nflatten = \"auto\""),
            &wide,
        );
        assert_eq!(
            found(&f),
            vec![(Level::Note, "columns", f[0].message.as_str())]
        );
    }

    #[test]
    fn closest_names() {
        let c = ["amount", "customer", "id", "created_at", "amount_cents"];
        assert_eq!(closest("amout", &c), vec!["amount"]);
        assert_eq!(closest("amount", &c), vec!["amount", "amount_cents"]);
        assert_eq!(closest("Customer", &c), vec!["customer"]);
        assert_eq!(closest("created", &c), vec!["created_at"]);
        assert!(closest("zzz", &c).is_empty());
        assert_eq!(distance("kitten", "sitting"), 3);
    }

    #[test]
    fn tables_from_the_rules_and_the_lake() {
        let r = Rules::parse(
            "t.toml",
            "[tables.\"a.x\"]\nnull = \"\"\n[tables.\"b.y\"]\nnull = \"\"",
        )
        .unwrap();
        let lake: BTreeSet<String> = ["a.x".to_owned(), "c.z".to_owned()].into();
        assert_eq!(
            tables_to_check(&r, &lake),
            vec![
                ("a.x".into(), true),
                ("b.y".into(), true),
                ("c.z".into(), false)
            ]
        );
        assert_eq!(
            target_of("c.z", &r.for_table("c.z")),
            ("c".into(), "z".into())
        );
    }

    #[test]
    fn report_exit_code_and_format() {
        let t = Lookup::Table(orders());
        let good = check(&TableRules::default(), &t);
        let bad = check(&rules("columns = [\"id\", \"nope\\u001b[2J\"]"), &t);
        let r = report(
            "loader",
            vec![
                (
                    TableReport {
                        table: "src.a".into(),
                        target: "wh.t".into(),
                        configured: true,
                        errors: 0,
                        warnings: 0,
                        notes: 0,
                    },
                    good,
                ),
                (
                    TableReport {
                        table: "src.t".into(),
                        target: "wh.t".into(),
                        configured: true,
                        errors: 0,
                        warnings: 0,
                        notes: 0,
                    },
                    bad,
                ),
            ],
        );
        assert_eq!((r.errors, r.warnings, r.notes), (1, 0, 0));
        assert_eq!(r.tables[1].errors, 1);
        assert_eq!(exit_code(&r), 1);
        let text = format(&r);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("TABLE  TARGET  LEVEL  RULE     MESSAGE"),
            "{text}"
        );
        assert!(
            lines[1].starts_with("src.a  wh.t    ok     -        the rules fit"),
            "{text}"
        );
        assert!(
            lines[2].starts_with("src.t  wh.t    error  columns  "),
            "{text}"
        );
        assert!(
            !text.contains('\u{1b}'),
            "control characters are escaped: {text}"
        );
        assert_eq!(
            *lines.last().unwrap(),
            "checked 2 tables as role loader: 1 fit; 1 error, 0 warnings, 0 notes"
        );
        let clean = report("loader", vec![]);
        assert_eq!(exit_code(&clean), 0);
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["findings"][0]["level"], "error");
        assert_eq!(json["findings"][0]["rule"], "columns");
    }
}
