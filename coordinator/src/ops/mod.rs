//! The operator's side of the coordinator: questions about the lake, the manifest, the queues
//! and the ledger, and the moves that bring files back or set them aside. Every command here
//! starts from an [`Ops`] context and checks what it needs of it when it runs.
//!
//! - [`status`]: `status` (figures per table, queues, throughput, ETA, `--watch`);
//! - [`reconcile`]: `skipped` (S3 listing vs manifest vs ledger: what is not loaded, and why);
//! - [`report`]: `manifest list / show / summary`;
//! - [`moves`]: `retry`, `reload`, `skip`, and the selections they share;
//! - [`dlq`]: queue depths and `retry --dlq`;
//! - [`refresh`]: `refresh --table T`: re-apply a table's full load as a new generation;
//! - [`check`]: `check`: do the rules fit the target tables (catalog, privileges)?
//! - [`ledger`]: read (and, for `reload`, delete) access to the workers' ledger.
//!
//! Must not: list the lake for a pass or enqueue new files (that is [`crate::scan`]'s work);
//! move a manifest item without the conditional write of [`sluice_common::store`]; change
//! anything without `--yes`.

pub mod check;
pub mod dlq;
pub mod events_status;
pub mod ledger;
pub mod moves;
pub mod reconcile;
pub mod refresh;
pub mod report;
pub mod status;

use crate::error::CoordinatorError;
use crate::plan::Policy;
use ledger::Ledger;
use serde::Serialize;
use sluice_common::config::{AwsClients, SourceLocation};
use sluice_common::rules::Rules;
use sluice_common::store::ManifestStore;

/// What the operator commands may use; each command checks what it needs.
#[derive(Clone)]
pub struct Ops {
    pub aws: AwsClients,
    pub store: ManifestStore,
    pub source: Option<SourceLocation>,
    pub queue_url: Option<String>,
    /// The S3 events queue, when events are on.
    pub events_queue_url: Option<String>,
    pub ledger: Option<Ledger>,
    pub rules: Rules,
    pub policy: Policy,
    /// The workers' allowed target schemas (`--schemas`, `SLUICE_SCHEMAS`): their tables
    /// without any file are `never_seen`. Empty: only the rules file's tables are looked for.
    pub schemas: Vec<String>,
}

impl Ops {
    pub fn source(&self, command: &str) -> Result<&SourceLocation, CoordinatorError> {
        self.source.as_ref().ok_or_else(|| {
            CoordinatorError::Usage(format!(
                "{command} needs the lake: set SLUICE_SOURCE (or --source s3://bucket/prefix/)"
            ))
        })
    }

    pub fn queue_url(&self, command: &str) -> Result<&str, CoordinatorError> {
        self.queue_url.as_deref().ok_or_else(|| {
            CoordinatorError::Usage(format!(
                "{command} needs the work queue: set SLUICE_QUEUE_URL (or --queue-url)"
            ))
        })
    }

    pub fn ledger(&self, command: &str) -> Result<&Ledger, CoordinatorError> {
        self.ledger.as_ref().ok_or_else(|| {
            CoordinatorError::Usage(format!(
                "{command} reads the ledger in PostgreSQL: set SLUICE_DATABASE_URL (or --database-url), \
                 and SLUICE_STATE_SCHEMA (or --state-schema) if the workers use another schema than sluice"
            ))
        })
    }
}

/// Which part of the lake a report or a move is about.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Scope {
    /// Source table, `schema.table` as in the key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    /// Key prefix, as in S3 keys (including the lake's prefix).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

impl Scope {
    pub fn is_everything(&self) -> bool {
        self.table.is_none() && self.prefix.is_none()
    }

    /// The narrowest key prefix that holds every object in scope.
    pub fn key_prefix(&self, lake_prefix: &str) -> Result<String, CoordinatorError> {
        let table_prefix = match &self.table {
            Some(t) => Some(table_folder(lake_prefix, t)?),
            None => None,
        };
        if let Some(p) = &self.prefix {
            if !p.starts_with(lake_prefix) {
                return Err(CoordinatorError::Usage(format!(
                    "--prefix {p:?} is not under the lake's prefix {lake_prefix:?}: give a key prefix as in S3 keys"
                )));
            }
        }
        Ok(match (table_prefix, &self.prefix) {
            (None, None) => lake_prefix.to_owned(),
            (Some(t), None) => t,
            (None, Some(p)) => p.clone(),
            (Some(t), Some(p)) if p.starts_with(&t) => p.clone(),
            (Some(t), Some(p)) if t.starts_with(p.as_str()) => t,
            (Some(t), Some(p)) => {
                return Err(CoordinatorError::Usage(format!(
                    "--prefix {p:?} is outside the folder of --table ({t:?})"
                )))
            }
        })
    }

    /// Whether a manifest item is in scope.
    pub fn holds(&self, key: &str, table: &str) -> bool {
        self.table.as_deref().is_none_or(|t| t == table)
            && self.prefix.as_deref().is_none_or(|p| key.starts_with(p))
    }

    /// The source table that the scope's prefix lies in, if it names one (`<schema>/<table>/`).
    pub fn table_of_prefix(&self, lake_prefix: &str) -> Option<String> {
        if let Some(t) = &self.table {
            return Some(t.clone());
        }
        let rest = self.prefix.as_deref()?.strip_prefix(lake_prefix)?;
        let mut parts = rest.splitn(3, '/');
        let (schema, table) = (parts.next()?, parts.next()?);
        // the table folder must be complete: followed by '/'
        parts.next()?;
        (!schema.is_empty() && !table.is_empty()).then(|| format!("{schema}.{table}"))
    }
}

/// The rules file's tables in `scope` (whose key prefix is `prefix`).
pub fn configured_in_scope(
    ops: &Ops,
    scope: &Scope,
    lake_prefix: &str,
    prefix: &str,
) -> Vec<String> {
    ops.rules
        .configured_tables()
        .filter(|t| {
            let folder = table_folder(lake_prefix, t).unwrap_or_default();
            scope.table.as_deref().is_none_or(|s| s == *t)
                && (folder.starts_with(prefix) || prefix.starts_with(&folder))
        })
        .map(str::to_owned)
        .collect()
}

/// Source tables (`schema.table` as a key would spell them) of the tables in the allowed
/// schemas ([`Ops::schemas`]) that fall in `scope` (key prefix `prefix`): a table the rules
/// map another source table to is that source table.
pub async fn schema_tables_in_scope(
    ops: &Ops,
    scope: &Scope,
    lake_prefix: &str,
    prefix: &str,
) -> Result<Vec<String>, CoordinatorError> {
    if ops.schemas.is_empty() {
        return Ok(Vec::new());
    }
    let Some(ledger) = &ops.ledger else {
        return Ok(Vec::new());
    };
    let by_target: std::collections::HashMap<(String, String), String> = ops
        .rules
        .configured_tables()
        .filter_map(|src| Some((ops.rules.for_table(src).target?, src.to_owned())))
        .collect();
    Ok(ledger
        .tables_in(&ops.schemas)
        .await?
        .into_iter()
        .map(|st| {
            by_target
                .get(&st)
                .cloned()
                .unwrap_or_else(|| format!("{}.{}", st.0, st.1))
        })
        .filter(|t| {
            let folder = table_folder(lake_prefix, t).unwrap_or_default();
            scope.table.as_deref().is_none_or(|s| s == t)
                && (folder.starts_with(prefix) || prefix.starts_with(&folder))
        })
        .collect())
}

/// Freshness of the tables of a report (`status`, `skipped`): `lines` are the tables shown
/// (pseudo-tables in parentheses excepted); `open` the open items in scope.
pub async fn freshness_of(
    ops: &Ops,
    lake_prefix: &str,
    lines: impl IntoIterator<Item = String>,
    open: &[sluice_common::manifest::ManifestItem],
    now: time::OffsetDateTime,
) -> Result<Vec<crate::freshness::TableFreshness>, CoordinatorError> {
    let tables: std::collections::BTreeSet<String> = lines
        .into_iter()
        .filter(|t| !t.starts_with('(') && table_folder(lake_prefix, t).is_ok())
        .collect();
    let seen = crate::freshness::observe_tables(&ops.store, &tables, open).await?;
    Ok(crate::freshness::assess_all(&ops.rules, &seen, now))
}

/// `<lake prefix><schema>/<table>/` for `schema.table`.
pub fn table_folder(lake_prefix: &str, table: &str) -> Result<String, CoordinatorError> {
    match table.split_once('.') {
        Some((s, t)) if !s.is_empty() && !t.is_empty() => Ok(format!("{lake_prefix}{s}/{t}/")),
        _ => Err(CoordinatorError::Usage(format!(
            "--table {table:?} must be schema.table, as in the S3 key"
        ))),
    }
}

/// Human-readable byte count (1.5 MB, binary steps shown with decimal names as `ls -h` does).
pub fn human_bytes(n: i64) -> String {
    const UNITS: [&str; 6] = ["B", "KB", "MB", "GB", "TB", "PB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v.abs() >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// Human-readable duration: `45s`, `3m 20s`, `2h 5m`, `3d 4h`.
pub fn human_duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m {s}s")
    } else {
        format!("{s}s")
    }
}
