//! A file's layout: which target columns its fields fill, in file order, and whether its
//! records start with DMS's `Op` field. Decided once per file, from the rules and the header or
//! the first record ([`layout_from_header`], [`layout_by_count`]; [`default_layout`] for a
//! file without a good data record), then announced to the loader, which makes its stage from
//! it ([`super::Layout`], one of the channel's types). Pure; no IO.
//!
//! Invariants:
//! - columns come from the rules' column list, the header's names, or every data column in
//!   ordinal order (DMS's timestamp column first where one is configured); a name matches a
//!   column by the rule `check` applies too ([`sluice_common::warehouse::match_column`]);
//! - every key column is among them (`missing_key_column`); a name that is no column is an
//!   error unless `new_columns = "ignore"` (left out) or `"add"` with names from the file
//!   itself (a header, a Parquet schema): then every such name is reported at once
//!   ([`WorkerError::NewColumns`]) after the key and timestamp checks, so the loader can add
//!   them and start again; a file without a header and more fields than the table cannot name
//!   them (`column_count`, saying so); the timestamp column, when configured, is
//!   among the fields (a version only when the target has no column of its name);
//! - `Op` is there by the header's first name, or by count (one more field than columns, and
//!   `I`, `U` or `D`);
//! - in document mode the document field stands for the columns it becomes
//!   ([`DocShape`]); a record has [`Layout::file_field_count`] fields before its expansion and
//!   [`Layout::field_count`] after.
//!
//! Must not: read values beyond the first record's field count and `Op`, or write rows.

use super::field::excerpt;
use super::{DocShape, EncodeSpec, Layout};
use crate::error::WorkerError;
use crate::read::csv::Record;
use crate::read::document::{DocColumn, DocumentPlan};
use crate::sql::evolve::NewColumn;
use crate::sql::TargetTable;
use sluice_common::rules::{Flatten, NewColumns};

pub(super) fn layout_from_header(
    spec: &EncodeSpec<'_>,
    header: &Record<'_>,
) -> Result<Layout, WorkerError> {
    if header.field_count() > header.len() {
        return Err(WorkerError::Csv {
            key: spec.key.to_owned(),
            reason: format!(
                "the header has {} fields, more than the {} a header may have",
                header.field_count(),
                header.len()
            ),
            record: None,
            line: Some(header.line()),
            class: "column_count",
        });
    }
    let mut names: Vec<String> = Vec::with_capacity(header.len());
    for (i, f) in header.iter().enumerate() {
        let name = std::str::from_utf8(f.value).map_err(|_| WorkerError::Csv {
            key: spec.key.to_owned(),
            reason: format!("header field {} is not valid UTF-8", i + 1),
            record: None,
            line: Some(header.line()),
            class: "header",
        })?;
        names.push(name.to_owned());
    }
    let has_op = names
        .first()
        .is_some_and(|n| n.eq_ignore_ascii_case("op") && find_column(spec.target, n).is_none());
    let data_names = if has_op { &names[1..] } else { &names[..] };
    match &spec.rules.columns {
        Some(list) => file_layout(spec, list, has_op),
        None => file_layout(spec, data_names, has_op),
    }
}

/// Without a header: the rules' column list, or the target's data columns in ordinal order
/// (DMS's timestamp column first, where one is configured); `Op` by count.
pub(super) fn layout_by_count(
    spec: &EncodeSpec<'_>,
    first: &Record<'_>,
    record: u64,
    line: u64,
) -> Result<Layout, WorkerError> {
    let layout = match (&spec.rules.columns, &spec.rules.document) {
        (Some(list), _) => file_layout(spec, list, false)?,
        (None, Some(_)) => file_layout(spec, &document_file_columns(spec), false)?,
        (None, None) => {
            let mut columns: Vec<usize> = (0..spec.target.columns.len()).collect();
            check_key_columns(spec, &columns)?;
            match spec.rules.timestamp_column.as_deref() {
                None => Layout::plain(columns, false),
                Some(ts) => {
                    let own = find_column(spec.target, ts);
                    if let Some(idx) = own {
                        columns.retain(|&c| c != idx);
                        columns.insert(0, idx);
                    }
                    Layout {
                        columns,
                        has_op: false,
                        version_field: Some(0),
                        version_only: own.is_none(),
                        ignored: Vec::new(),
                        document: None,
                        binary: None,
                    }
                }
            }
        }
    };
    let n = layout.file_field_count();
    let found = first.field_count();
    if found == n {
        return Ok(layout);
    }
    let op = first.get(0).map(|f| f.value).unwrap_or_default();
    let is_op = matches!(op, b"I" | b"U" | b"D");
    if found == n + 1 && is_op {
        return Ok(Layout {
            has_op: true,
            ..layout
        });
    }
    if spec.rules.new_columns == NewColumns::Add && found > n {
        // The file fails as a whole (not a record to set aside): its columns cannot be named.
        return Err(WorkerError::Csv {
            key: spec.key.to_owned(),
            reason: format!(
                "record {record} at line {line} has {found} fields, table {} expects {n}: the \
                 file has no header, so the names of the columns the table lacks are unknown \
                 and new_columns = \"add\" cannot add them (have DMS write a header, \
                 AddColumnName=true, with header = true in the rules, or add the columns to \
                 the table by hand): {}",
                spec.target.label(),
                excerpt(first.raw())
            ),
            record: Some(record),
            line: Some(line),
            class: "column_count",
        });
    }
    if found == n + 1 {
        return Err(WorkerError::BadOperation {
            key: spec.key.to_owned(),
            record,
            line,
            value: excerpt(op),
        });
    }
    Err(WorkerError::ColumnCount {
        key: spec.key.to_owned(),
        table: spec.target.label(),
        record,
        line,
        expected: n,
        found,
        value: excerpt(first.raw()),
    })
}

/// Every data column in ordinal order (used for files with no records and no header).
pub(super) fn default_layout(spec: &EncodeSpec<'_>) -> Layout {
    let plain = || Layout::plain((0..spec.target.columns.len()).collect(), false);
    match (&spec.rules.columns, &spec.rules.document) {
        (Some(list), _) => file_layout(spec, list, false).unwrap_or_else(|_| plain()),
        (None, Some(_)) => {
            file_layout(spec, &document_file_columns(spec), false).unwrap_or_else(|_| plain())
        }
        (None, None) => plain(),
    }
}

/// The most fields a data record of the file may have: the header's layout's count, else the
/// columns of the rules' list, of document mode or of the table (and DMS's timestamp field),
/// plus `Op`. The reader keeps the positions of no more (see `csv::Record::field_count`); a
/// record with more is a `column_count` error, whatever the layout turns out to be.
pub(super) fn max_file_fields(spec: &EncodeSpec<'_>, header: Option<&Layout>) -> usize {
    if let Some(l) = header {
        return l.file_field_count();
    }
    let columns = match (&spec.rules.columns, &spec.rules.document) {
        (Some(list), _) => list.len(),
        (None, Some(_)) => document_file_columns(spec).len(),
        (None, None) => {
            spec.target.columns.len() + usize::from(spec.rules.timestamp_column.is_some())
        }
    };
    columns + 1
}

/// The fields of a document-mode file without a header or column list: DMS's timestamp
/// column (when configured), `_id`, then the document.
fn document_file_columns(spec: &EncodeSpec<'_>) -> Vec<String> {
    let doc = spec.rules.document.as_ref().expect("document mode");
    let mut names: Vec<String> = spec.rules.timestamp_column.iter().cloned().collect();
    names.push("_id".to_owned());
    names.push(doc.column.clone());
    names
}

/// The layout of a file whose fields (after `Op`) are `names`: [`named_layout`], after
/// replacing the document field (in document mode) with the columns it becomes.
fn file_layout(
    spec: &EncodeSpec<'_>,
    names: &[String],
    has_op: bool,
) -> Result<Layout, WorkerError> {
    let Some(rules) = &spec.rules.document else {
        return named_layout(spec, names, has_op);
    };
    let rules_error = |message: String| WorkerError::Rules {
        key: spec.key.to_owned(),
        message,
    };
    let field = names
        .iter()
        .position(|n| n == &rules.column)
        .or_else(|| {
            names
                .iter()
                .position(|n| n.eq_ignore_ascii_case(&rules.column))
        })
        .ok_or_else(|| {
            rules_error(format!(
                "document column {:?} is not among the file's columns ({})",
                rules.column,
                names.join(", ")
            ))
        })?;
    let elsewhere: Vec<String> = names
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != field)
        .map(|(_, n)| n.clone())
        .collect();
    let (columns, mut doc_names): (Vec<DocColumn>, Vec<String>) = match rules.flatten {
        Flatten::Paths => rules
            .paths
            .iter()
            .map(|(col, path)| {
                let path = path.split('.').map(str::to_owned).collect();
                (DocColumn { path }, col.clone())
            })
            .unzip(),
        Flatten::Auto => spec
            .target
            .columns
            .iter()
            .map(|c| &c.name)
            .filter(|n| {
                !n.starts_with("_sluice_")
                    && !elsewhere.iter().any(|e| e.eq_ignore_ascii_case(n))
                    && rules.rescue.as_deref() != Some(n.as_str())
                    && spec.rules.soft_delete.as_deref() != Some(n.as_str())
            })
            .map(|n| {
                (
                    DocColumn {
                        path: vec![n.clone()],
                    },
                    n.clone(),
                )
            })
            .unzip(),
    };
    if let Some(r) = &rules.rescue {
        doc_names.push(r.clone());
    }
    if doc_names.is_empty() {
        return Err(rules_error(format!(
            "document column {:?} maps to no column of {}",
            rules.column,
            spec.target.label()
        )));
    }
    let mut expanded: Vec<String> = names[..field].to_vec();
    expanded.extend(doc_names);
    expanded.extend_from_slice(&names[field + 1..]);
    let layout = named_layout(spec, &expanded, has_op)?;
    Ok(Layout {
        document: Some(DocShape {
            field,
            name: rules.column.clone(),
            plan: DocumentPlan {
                columns,
                rescue: rules.rescue.is_some(),
                elsewhere,
            },
        }),
        ..layout
    })
}

/// The layout of a file whose fields (after `Op`) are `names`, in order: each is a target
/// column, except the timestamp column, which may be a version only.
fn named_layout(
    spec: &EncodeSpec<'_>,
    names: &[String],
    has_op: bool,
) -> Result<Layout, WorkerError> {
    let ts = spec.rules.timestamp_column.as_deref();
    let mut columns = Vec::with_capacity(names.len());
    let mut version_field = None;
    let mut version_only = false;
    let mut ignored = Vec::new();
    let mut new = Vec::new();
    // Only names the file gives itself are added: not a column list's, nor a document's.
    let adds = spec.rules.new_columns == NewColumns::Add
        && spec.rules.columns.is_none()
        && spec.rules.document.is_none();
    for (j, name) in names.iter().enumerate() {
        let is_ts = ts.is_some_and(|t| t == name || t.eq_ignore_ascii_case(name));
        if is_ts && version_field.is_none() {
            version_field = Some(j);
        }
        match find_column(spec.target, name) {
            Some(idx) => columns.push(idx),
            None if is_ts => version_only = true,
            None if spec.rules.new_columns == NewColumns::Ignore => ignored.push(j),
            None if adds => new.push(NewColumn {
                name: name.clone(),
                sql_type: None,
            }),
            None => {
                return Err(WorkerError::UnknownColumn {
                    key: spec.key.to_owned(),
                    table: spec.target.label(),
                    column: name.clone(),
                })
            }
        }
    }
    if let (Some(ts), None) = (ts, version_field) {
        return Err(WorkerError::Rules {
            key: spec.key.to_owned(),
            message: format!(
                "timestamp column {ts:?} is not among the file's columns ({})",
                names.join(", ")
            ),
        });
    }
    check_key_columns(spec, &columns)?;
    if !new.is_empty() {
        return Err(WorkerError::NewColumns {
            key: spec.key.to_owned(),
            table: spec.target.label(),
            columns: new,
        });
    }
    Ok(Layout {
        columns,
        has_op,
        version_field,
        version_only,
        ignored,
        document: None,
        binary: None,
    })
}

fn check_key_columns(spec: &EncodeSpec<'_>, columns: &[usize]) -> Result<(), WorkerError> {
    for &k in &spec.target.key {
        if !columns.contains(&k) {
            return Err(WorkerError::MissingKeyColumn {
                key: spec.key.to_owned(),
                table: spec.target.label(),
                column: spec.target.columns[k].name.clone(),
            });
        }
    }
    Ok(())
}

/// The target column a file's column `name` fills (the shared matching rule of
/// [`sluice_common::warehouse::match_column`], which `check` applies too).
fn find_column(target: &TargetTable, name: &str) -> Option<usize> {
    sluice_common::warehouse::match_column(target.columns.iter().map(|c| c.name.as_str()), name)
}
