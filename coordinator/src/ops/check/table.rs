//! One table's check, decided without IO: its rules and what the catalog says of its target in,
//! findings out. Errors first, then warnings, then notes; within a level, in the order of the
//! checks (privileges, primary key, columns, timestamp column, soft delete, document, system
//! columns).

use super::names::{closest, find, hint, is_system, same_name};
use super::{CatalogColumn, Finding, Level, Lookup, TableFacts};
use sluice_common::rules::{DocumentRules, Flatten, NewColumns, TableRules};
use sluice_common::warehouse::{quote_ident, SystemColumn, SYSTEM_COLUMNS};
use std::fmt::Write;

/// What a table's rules need from the catalog, decided without IO. Errors first, then
/// warnings, then notes; in the order of the checks within a level.
pub fn check_table(
    source: &str,
    rules: &TableRules,
    (schema, table): (&str, &str),
    role: &str,
    lookup: &Lookup,
) -> Vec<Finding> {
    let target = format!("{schema}.{table}");
    // Where the target's name came from, when it was not the rules' `target`.
    let whence = if rules.target.is_some() {
        ""
    } else {
        " (the key's own schema.table: set `target` in the rules to load elsewhere)"
    };
    let unusable = |message: String| {
        vec![Finding {
            table: source.to_owned(),
            target: target.clone(),
            level: Level::Error,
            rule: "target".to_owned(),
            message,
        }]
    };
    let facts = match lookup {
        Lookup::Table(f) => f,
        Lookup::NotATable { relkind } => {
            return unusable(format!(
                "target {target} is a {}, not a table: Sluice loads tables (plain or \
                 partitioned) only{whence}",
                relkind_name(relkind)
            ));
        }
        Lookup::Missing {
            schema_exists,
            nearby,
            same_name,
        } => {
            let near: Vec<&str> = nearby.iter().map(String::as_str).collect();
            let mut message = if *schema_exists {
                format!(
                    "target {target} does not exist{}",
                    hint(table, &near, &format!("tables in {schema}"))
                )
            } else {
                format!(
                    "target {target} does not exist: there is no schema {schema}{}",
                    hint(schema, &near, "schemas")
                )
            };
            if !same_name.is_empty() {
                let _ = write!(
                    message,
                    "; a table of that name exists as {}",
                    same_name.join(", ")
                );
            }
            message.push_str(whence);
            return unusable(message);
        }
    };
    let mut c = Checker::new(source, rules, (schema, table), role, facts);
    c.privileges();
    c.primary_key();
    c.columns();
    c.timestamp_column();
    c.soft_delete();
    c.document();
    c.system_columns();
    let mut out = c.out;
    out.sort_by_key(|f| f.level);
    out
}

/// A table that exists, its rules, and the findings so far.
struct Checker<'a> {
    source: &'a str,
    rules: &'a TableRules,
    schema: &'a str,
    table: &'a str,
    role: &'a str,
    facts: &'a TableFacts,
    target: String,
    soft: Option<&'a str>,
    doc: Option<&'a DocumentRules>,
    /// The worker's data columns: not _sluice_*, not the soft-delete flag, not generated.
    data: Vec<&'a CatalogColumn>,
    /// The primary key, in key order.
    key: Vec<&'a CatalogColumn>,
    out: Vec<Finding>,
}

impl<'a> Checker<'a> {
    fn new(
        source: &'a str,
        rules: &'a TableRules,
        (schema, table): (&'a str, &'a str),
        role: &'a str,
        facts: &'a TableFacts,
    ) -> Self {
        let soft = rules.soft_delete.as_deref();
        let data = facts
            .columns
            .iter()
            .filter(|c| !is_system(&c.name) && soft != Some(c.name.as_str()) && !c.generated)
            .collect();
        let mut key: Vec<&CatalogColumn> = facts
            .columns
            .iter()
            .filter(|c| c.key_position > 0)
            .collect();
        key.sort_by_key(|c| c.key_position);
        Checker {
            source,
            rules,
            schema,
            table,
            role,
            facts,
            target: format!("{schema}.{table}"),
            soft,
            doc: rules.document.as_ref(),
            data,
            key,
            out: Vec::new(),
        }
    }

    fn add(&mut self, level: Level, rule: &str, message: String) {
        self.out.push(Finding {
            table: self.source.to_owned(),
            target: self.target.clone(),
            level,
            rule: rule.to_owned(),
            message,
        })
    }

    fn data_names(&self) -> Vec<&'a str> {
        self.data.iter().map(|c| c.name.as_str()).collect()
    }

    fn column_hint(&self, name: &str) -> String {
        hint(
            name,
            &self.data_names(),
            &format!("columns of {}", self.target),
        )
    }

    fn near_hint(&self, name: &str) -> String {
        let names = self.data_names();
        let near = closest(name, &names);
        if near.is_empty() {
            String::new()
        } else {
            format!(" (closest: {})", near.join(", "))
        }
    }

    fn by_name(&self, name: &str) -> Option<&'a CatalogColumn> {
        self.facts.columns.iter().find(|c| c.name == name)
    }

    /// The role must reach the table at all.
    fn privileges(&mut self) {
        let (schema, table, role, target) = (self.schema, self.table, self.role, &self.target);
        if !self.facts.schema_usage {
            let message = format!(
                "role {role} has no USAGE on schema {schema}: the worker cannot reach {target} \
                 (GRANT USAGE ON SCHEMA {} TO {})",
                quote_ident(schema),
                quote_ident(role)
            );
            self.add(Level::Error, "privileges", message);
        }
        let f = self.facts;
        let missing: Vec<&str> = [
            ("SELECT", f.select),
            ("INSERT", f.insert),
            ("UPDATE", f.update),
            ("DELETE", f.delete),
        ]
        .iter()
        .filter(|(_, has)| !has)
        .map(|(p, _)| *p)
        .collect();
        if !missing.is_empty() {
            let message = format!(
                "role {role} lacks {} on {}; the worker needs SELECT, INSERT, UPDATE and \
                 DELETE (GRANT SELECT, INSERT, UPDATE, DELETE ON {}.{} TO {})",
                missing.join(", "),
                self.target,
                quote_ident(schema),
                quote_ident(table),
                quote_ident(role)
            );
            self.add(Level::Error, "privileges", message);
        }
    }

    /// The primary key: what the merge matches on.
    fn primary_key(&mut self) {
        if self.key.is_empty() {
            let message = format!(
                "{} has no primary key: Sluice merges each file into its table by primary \
                 key (ALTER TABLE {}.{} ADD PRIMARY KEY (...))",
                self.target,
                quote_ident(self.schema),
                quote_ident(self.table)
            );
            self.add(Level::Error, "primary key", message);
        }
        for k in self.key.clone() {
            if is_system(&k.name) || self.soft == Some(k.name.as_str()) {
                let message = format!(
                    "column {} is part of {}'s primary key, but _sluice_* columns and the \
                     soft-delete flag are Sluice's own",
                    k.name, self.target
                );
                self.add(Level::Error, "primary key", message);
            }
        }
    }

    /// Columns the files fill: the list, or (without one) every data column; in document mode
    /// also the columns the document fills.
    fn columns(&mut self) {
        let Some(list) = &self.rules.columns else {
            return;
        };
        self.listed_columns(list);
        let doc = self.doc;
        let doc_paths: Vec<&str> = doc
            .filter(|d| d.flatten == Flatten::Paths)
            .map(|d| d.paths.keys().map(String::as_str).collect())
            .unwrap_or_default();
        let auto = doc.is_some_and(|d| d.flatten == Flatten::Auto);
        let listed = |c: &CatalogColumn| list.iter().any(|n| same_name(n, &c.name));
        let from_doc = |c: &CatalogColumn| {
            doc_paths.iter().any(|p| same_name(p, &c.name))
                || doc
                    .and_then(|d| d.rescue.as_deref())
                    .is_some_and(|r| same_name(r, &c.name))
        };
        for k in self.key.clone() {
            if is_system(&k.name) || self.soft == Some(k.name.as_str()) || listed(k) || from_doc(k)
            {
                continue;
            }
            if auto {
                let message = format!(
                    "primary key column {} is not in columns: every document must carry a \
                     top-level field {} (flatten = \"auto\")",
                    k.name, k.name
                );
                self.add(Level::Note, "columns", message);
            } else {
                let message = format!(
                    "primary key column {} is not in columns ({}): every file must carry \
                     the key",
                    k.name,
                    list.join(", ")
                );
                self.add(Level::Error, "columns", message);
            }
        }
        if auto {
            return;
        }
        for c in self.data.clone() {
            if c.not_null && !c.has_default && c.key_position == 0 && !listed(c) && !from_doc(c) {
                let message = format!(
                    "{} is NOT NULL without a default and not in columns: inserting a \
                     new row fails (null_not_allowed)",
                    c.name
                );
                self.add(Level::Warning, "columns", message);
            }
        }
    }

    /// Each name of the rules' column list: listed once, and a data column of the target.
    fn listed_columns(&mut self, list: &[String]) {
        let ts = self.rules.timestamp_column.as_deref();
        let target = self.target.clone();
        let mut seen: Vec<&str> = Vec::new();
        for name in list {
            if let Some(first) = seen.iter().find(|s| same_name(s, name)) {
                let message = format!("{name:?} is listed twice in columns (also as {first:?})");
                self.add(Level::Error, "columns", message);
                continue;
            }
            seen.push(name);
            if ts.is_some_and(|t| same_name(t, name)) || self.doc.is_some_and(|d| d.column == *name)
            {
                continue; // checked with the timestamp column and the document
            }
            if find(&self.data, name).is_some() {
                continue;
            }
            let message = if is_system(name) {
                format!(
                    "{name:?} in columns: _sluice_* columns are Sluice's own, never file columns"
                )
            } else if self.soft == Some(name.as_str()) {
                format!(
                    "{name:?} in columns is the soft_delete flag, which Sluice sets itself; it \
                     cannot be a file column"
                )
            } else if self.by_name(name).is_some_and(|c| c.generated) {
                format!(
                    "{name:?} in columns is a generated column of {target}: nothing loads into it"
                )
            } else if self.rules.new_columns == NewColumns::Ignore {
                // The worker leaves the field out: worth knowing, not an error.
                let message = format!(
                    "{name:?} in columns is not a column of {target}{}; its values are \
                     left out (new_columns = \"ignore\")",
                    self.column_hint(name)
                );
                self.add(Level::Warning, "columns", message);
                continue;
            } else {
                format!(
                    "{name:?} in columns is not a column of {target}{}",
                    self.column_hint(name)
                )
            };
            self.add(Level::Error, "columns", message);
        }
    }

    /// The version column.
    fn timestamp_column(&mut self) {
        let Some(ts) = self.rules.timestamp_column.as_deref() else {
            return;
        };
        let target = &self.target;
        let own = find(&self.data, ts);
        let (level, message) = match (&self.rules.columns, own) {
            (Some(list), _) if !list.iter().any(|n| same_name(n, ts)) => (
                Level::Error,
                format!(
                    "timestamp_column {ts:?} is not among columns ({}): list it where DMS \
                     writes it (first, after Op)",
                    list.join(", ")
                ),
            ),
            (_, Some(_)) => return,
            (Some(_), None) => (
                Level::Note,
                format!(
                    "timestamp_column {ts:?} is not a column of {target}: it versions each row \
                     and is not loaded{}",
                    self.near_hint(ts)
                ),
            ),
            (None, None) => (
                Level::Note,
                format!(
                    "timestamp_column {ts:?} is not a column of {target}: it versions each row \
                     and is not loaded; {}{}",
                    if self.rules.header {
                        "each file's header must name it"
                    } else {
                        "DMS writes it as the first field after Op"
                    },
                    self.near_hint(ts)
                ),
            ),
        };
        self.add(level, "timestamp_column", message);
    }

    /// The soft-delete flag.
    fn soft_delete(&mut self) {
        let Some(flag) = self.soft else {
            return;
        };
        let (target, role) = (&self.target, self.role);
        let (level, message) = match self.by_name(flag) {
            Some(c) if c.sql_type != "boolean" => (
                Level::Error,
                format!(
                    "soft_delete column {flag} of {target} is {}, not boolean",
                    c.sql_type
                ),
            ),
            Some(_) => return,
            None if self.facts.can_alter => (
                Level::Note,
                format!(
                    "{target} has no column {flag}: the worker adds it (boolean NOT NULL \
                     DEFAULT false) on first use{}",
                    self.near_hint(flag)
                ),
            ),
            None => (
                Level::Error,
                format!(
                    "{target} has no column {flag} and role {role} does not own it, so the \
                     worker cannot add it: as its owner, ALTER TABLE {}.{} ADD COLUMN {} boolean \
                     NOT NULL DEFAULT false{}",
                    quote_ident(self.schema),
                    quote_ident(self.table),
                    quote_ident(flag),
                    self.near_hint(flag)
                ),
            ),
        };
        self.add(level, "soft_delete", message);
    }

    /// Document mode (`[tables."s.t".document]`): the paths' columns, the rescue column, the
    /// document column, and whether `flatten = "auto"` has any column to fill.
    fn document(&mut self) {
        let Some(d) = self.doc else {
            return;
        };
        let target = self.target.clone();
        if let Some(list) = &self.rules.columns {
            if !list.contains(&d.column) {
                let message = format!(
                    "document column {:?} is not among columns ({}): list it where the file has it",
                    d.column,
                    list.join(", ")
                );
                self.add(Level::Error, "document.column", message);
            }
        }
        if d.flatten == Flatten::Paths && find(&self.data, &d.column).is_some() {
            let message = format!(
                "document column {:?} is also a column of {target}: with flatten = \"paths\" the \
                 document goes to the paths' columns (and the rescue column), not to a column of \
                 its own name",
                d.column
            );
            self.add(Level::Warning, "document.column", message);
        }
        for (col, path) in &d.paths {
            if find(&self.data, col).is_none() {
                let message = format!(
                    "paths: {col:?} (from {path:?}) is not a column of {target}{}",
                    self.column_hint(col)
                );
                self.add(Level::Error, "document.paths", message);
            }
        }
        if let Some(r) = &d.rescue {
            let message = match find(&self.data, r) {
                None => format!(
                    "rescue column {r:?} is not a column of {target}{}",
                    self.column_hint(r)
                ),
                Some(c) if c.sql_type != "jsonb" => format!(
                    "rescue column {} of {target} is {}, not jsonb",
                    c.name, c.sql_type
                ),
                Some(_) => String::new(),
            };
            if !message.is_empty() {
                self.add(Level::Error, "document.rescue", message);
            }
        }
        if d.flatten == Flatten::Auto {
            self.flatten_auto(d);
        }
    }

    /// `flatten = "auto"` needs a column besides the file's own to take a document field.
    fn flatten_auto(&mut self, d: &DocumentRules) {
        // The file's own columns: the list, or DMS's `_id` and the document column.
        let own: Vec<&str> = match &self.rules.columns {
            Some(list) => list.iter().map(String::as_str).collect(),
            None => vec!["_id", d.column.as_str()],
        };
        let ts = self.rules.timestamp_column.as_deref();
        let takers = self.data.iter().any(|c| {
            !own.iter().any(|o| same_name(o, &c.name))
                && d.rescue.as_deref().is_none_or(|r| !same_name(r, &c.name))
                && ts.is_none_or(|t| !same_name(t, &c.name))
        });
        if takers {
            return;
        }
        let keys: Vec<&str> = self.key.iter().map(|c| c.name.as_str()).collect();
        let message = format!(
            "flatten = \"auto\", but no column of {} besides the file's own ({}) \
             can take a document field{}: every field {}",
            self.target,
            own.join(", "),
            if keys.is_empty() {
                String::new()
            } else {
                format!(" (key: {})", keys.join(", "))
            },
            if d.rescue.is_some() {
                "goes to the rescue column"
            } else {
                "is dropped"
            }
        );
        self.add(Level::Warning, "document.flatten", message);
    }

    /// Sluice's own columns: there with the right types, or addable by the worker's role.
    fn system_columns(&mut self) {
        let (target, role) = (self.target.clone(), self.role);
        let mut missing = Vec::new();
        for SystemColumn {
            name,
            catalog_type: ty,
            ..
        } in SYSTEM_COLUMNS
        {
            match self.by_name(name) {
                None => missing.push(name),
                Some(c) if c.sql_type != ty => {
                    let message = format!(
                        "{name} of {target} is {}; Sluice needs {ty} (drop it and let the worker, \
                         or the table's owner, add it again)",
                        c.sql_type
                    );
                    self.add(Level::Error, "system columns", message);
                }
                Some(_) => {}
            }
        }
        if missing.is_empty() {
            return;
        }
        if self.facts.can_alter {
            let message = format!(
                "{target} lacks {}: the worker adds them on first use (role {role} owns it)",
                missing.join(", ")
            );
            self.add(Level::Note, "system columns", message);
            return;
        }
        let adds: Vec<String> = SYSTEM_COLUMNS
            .iter()
            .filter(|c| missing.contains(&c.name))
            .map(|c| format!("ADD COLUMN {} {}", c.name, c.ddl_type))
            .collect();
        let message = format!(
            "{target} lacks {} and role {role} does not own it, so the worker cannot add \
             them: as its owner, ALTER TABLE {}.{} {}",
            missing.join(", "),
            quote_ident(self.schema),
            quote_ident(self.table),
            adds.join(", ")
        );
        self.add(Level::Error, "system columns", message);
    }
}

fn relkind_name(relkind: &str) -> &'static str {
    match relkind {
        "v" => "view",
        "m" => "materialized view",
        "f" => "foreign table",
        "S" => "sequence",
        "i" | "I" => "index",
        "c" => "composite type",
        "t" => "TOAST table",
        _ => "relation of another kind",
    }
}
