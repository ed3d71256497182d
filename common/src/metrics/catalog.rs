//! The catalogue: every metric's definition (name, kind, unit, labels and meaning), one struct
//! per metric, and [`ALL`] in the README's order. Pure data.
//!
//! Invariants (checked by the tests below): names are unique, `sluice_`-prefixed snake case,
//! durations end in `_seconds`; a label never carries an S3 key, and no CloudWatch metric name
//! collides with a dimension name.

/// Which process emits a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    Worker,
    Coordinator,
    /// Both (the retry layer).
    Shared,
}

impl Component {
    pub fn as_str(self) -> &'static str {
        match self {
            Component::Worker => "worker",
            Component::Coordinator => "coordinator",
            Component::Shared => "both",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Bytes,
    Seconds,
}

impl Unit {
    /// The CloudWatch unit.
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Bytes => "Bytes",
            Unit::Seconds => "Seconds",
        }
    }
}

/// One metric.
#[derive(Debug)]
pub struct Def {
    /// Prometheus family name.
    pub name: &'static str,
    pub kind: Kind,
    pub unit: Unit,
    /// Label names (Prometheus); as CloudWatch dimensions in CamelCase.
    pub labels: &'static [&'static str],
    /// What each label's values are.
    pub values: &'static str,
    pub help: &'static str,
    pub component: Component,
    /// CloudWatch: also publish the metric with `ManifestTable` alone, summed over the labels.
    pub rollup: bool,
}

impl Def {
    /// The name of the Prometheus series (`_total` for counters; histograms add `_bucket`,
    /// `_sum` and `_count`).
    pub fn series(&self) -> String {
        match self.kind {
            Kind::Counter => format!("{}_total", self.name),
            _ => self.name.to_owned(),
        }
    }

    /// The CloudWatch metric name.
    pub fn emf_name(&self) -> String {
        camel(self.name.strip_prefix("sluice_").unwrap_or(self.name))
    }
}

/// `files_loaded` -> `FilesLoaded`.
pub fn camel(snake: &str) -> String {
    snake
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
                None => String::new(),
            }
        })
        .collect()
}

/// The dimension every CloudWatch metric carries: the manifest table names the deployment.
pub const BASE_DIMENSION: &str = "ManifestTable";
/// CloudWatch namespace of every metric.
pub const NAMESPACE: &str = "Sluice";

// One struct per metric, fields in the same order, keeps the catalogue a table
// (infra/aws/test_template.py reads it).
use Component::{Coordinator as C, Shared as S, Worker as W};
use Kind::{Counter as CTR, Gauge as GAU, Histogram as HIS};

// ---- worker ---------------------------------------------------------------------------------
pub static FILES_LOADED: Def = Def {
    name: "sluice_worker_files_loaded",
    kind: CTR,
    unit: Unit::Count,
    labels: &[],
    values: "",
    component: W,
    rollup: false,
    help: "Files this worker committed to PostgreSQL",
};
pub static FILES_DUPLICATE: Def = Def {
    name: "sluice_worker_files_duplicate",
    kind: CTR,
    unit: Unit::Count,
    labels: &[],
    values: "",
    component: W,
    rollup: false,
    help: "Messages acknowledged without loading: the ledger or the manifest already had the file (or it is dead or skipped)",
};
pub static FILES_FAILED: Def = Def {
    name: "sluice_worker_files_failed",
    kind: CTR,
    unit: Unit::Count,
    labels: &["reason"],
    values: "the manifest's `error_class` (`bad_value`, `unknown_table`, `database_unavailable`, ... see *Bad input*), or `abandoned` at shutdown",
    component: W,
    rollup: true,
    help: "Load attempts that failed, by reason class",
};
pub static FILES_DEAD: Def = Def {
    name: "sluice_worker_files_dead",
    kind: CTR,
    unit: Unit::Count,
    labels: &[],
    values: "",
    component: W,
    rollup: false,
    help: "Files this worker marked dead: the attempt limit was reached",
};
pub static ROWS: Def = Def {
    name: "sluice_worker_rows",
    kind: CTR,
    unit: Unit::Count,
    labels: &["kind"],
    values: "`read` (records in the file), `merged` (inserted, updated or deleted), `rejected` (set aside), `superseded` (lost to a newer version), `removed` (by a generation's replacement)",
    component: W,
    rollup: false,
    help: "Rows of committed files and replacements, by kind",
};
pub static BYTES: Def = Def {
    name: "sluice_worker_bytes",
    kind: CTR,
    unit: Unit::Bytes,
    labels: &[],
    values: "",
    component: W,
    rollup: false,
    help: "Bytes of committed files as read from S3 (after gzip decompression)",
};
pub static COLUMNS_ADDED: Def = Def {
    name: "sluice_worker_columns_added",
    kind: CTR,
    unit: Unit::Count,
    labels: &[],
    values: "",
    component: W,
    rollup: false,
    help:
        "Columns this worker added to target tables (new_columns = \"add\"): a source table changed",
};
pub static PHASE_SECONDS: Def = Def {
    name: "sluice_worker_phase_seconds",
    kind: HIS,
    unit: Unit::Seconds,
    labels: &["phase"],
    values: "`copy` (download, decompression, parsing and `COPY` into staging, which run together, streamed), `merge` (version-guarded merge), `commit`",
    component: W,
    rollup: false,
    help: "Time of each phase of a committed file's transaction",
};
pub static FILE_SECONDS: Def = Def {
    name: "sluice_worker_file_seconds",
    kind: HIS,
    unit: Unit::Seconds,
    labels: &["outcome"],
    values: "`loaded`, `failed`, `duplicate`, `dead`, `abandoned`",
    component: W,
    rollup: false,
    help: "Time from a file's message received to its outcome, retries included",
};
pub static FILES_IN_FLIGHT: Def = Def {
    name: "sluice_worker_files_in_flight",
    kind: GAU,
    unit: Unit::Count,
    labels: &[],
    values: "",
    component: W,
    rollup: false,
    help: "Messages this worker holds now (files and replacements being handled)",
};
pub static VISIBILITY_EXTENSIONS: Def = Def {
    name: "sluice_worker_visibility_extensions",
    kind: CTR,
    unit: Unit::Count,
    labels: &["result"],
    values: "`ok`, `error`",
    component: W,
    rollup: false,
    help: "Visibility extensions of held messages (heartbeats while a file loads)",
};
pub static REPLACEMENTS: Def = Def {
    name: "sluice_worker_replacements",
    kind: CTR,
    unit: Unit::Count,
    labels: &["result"],
    values: "`replaced`, `already_done`, `merge_only`, `incomplete` (the coordinator asks again), `failed`",
    component: W,
    rollup: false,
    help: "Replace messages of full-load generations handled, by result",
};
// ---- both -----------------------------------------------------------------------------------
pub static RETRIES: Def = Def {
    name: "sluice_retries",
    kind: CTR,
    unit: Unit::Count,
    labels: &["operation"],
    values: "`load_file`, `replace`, `db_bootstrap`",
    component: S,
    rollup: true,
    help: "Transient errors retried by the retry layer (one per wait), by operation",
};
// ---- coordinator ----------------------------------------------------------------------------
pub static PASSES: Def = Def {
    name: "sluice_coordinator_passes",
    kind: CTR,
    unit: Unit::Count,
    labels: &["result"],
    values: "`ok`, `error`",
    component: C,
    rollup: false,
    help: "Coordinator passes, by result",
};
pub static PASS_SECONDS: Def = Def {
    name: "sluice_coordinator_pass_seconds",
    kind: HIS,
    unit: Unit::Seconds,
    labels: &[],
    values: "",
    component: C,
    rollup: false,
    help: "Duration of a coordinator pass",
};
pub static OBJECTS_LISTED: Def = Def {
    name: "sluice_coordinator_objects_listed",
    kind: GAU,
    unit: Unit::Count,
    labels: &[],
    values: "",
    component: C,
    rollup: false,
    help: "Objects the last pass listed: every one under the source prefix on a full listing, those after each table's checkpoints on a tail listing",
};
pub static FILES_NEW: Def = Def {
    name: "sluice_coordinator_files_new",
    kind: CTR,
    unit: Unit::Count,
    labels: &[],
    values: "",
    component: C,
    rollup: false,
    help: "New object versions found (keys never seen)",
};
pub static FILES_CHANGED: Def = Def {
    name: "sluice_coordinator_files_changed",
    kind: CTR,
    unit: Unit::Count,
    labels: &[],
    values: "",
    component: C,
    rollup: false,
    help: "Known keys found with a new ETag",
};
pub static FILES_REQUEUED: Def = Def {
    name: "sluice_coordinator_files_requeued",
    kind: CTR,
    unit: Unit::Count,
    labels: &[],
    values: "",
    component: C,
    rollup: false,
    help: "Open files enqueued again (stuck longer than --requeue-after, or failed transiently)",
};
pub static COORDINATOR_FILES_DEAD: Def = Def {
    name: "sluice_coordinator_files_dead",
    kind: CTR,
    unit: Unit::Count,
    labels: &["reason"],
    values: "`attempts_exhausted`, `unloadable_key`",
    component: C,
    rollup: true,
    help: "Files the coordinator marked dead",
};
pub static MESSAGES_SENT: Def = Def {
    name: "sluice_coordinator_messages_sent",
    kind: CTR,
    unit: Unit::Count,
    labels: &[],
    values: "",
    component: C,
    rollup: false,
    help: "File messages sent to the work queue",
};
pub static SEND_FAILURES: Def = Def {
    name: "sluice_coordinator_send_failures",
    kind: CTR,
    unit: Unit::Count,
    labels: &[],
    values: "",
    component: C,
    rollup: false,
    help: "File messages SQS refused (sent again by the next pass)",
};
pub static REPLACEMENTS_ASKED: Def = Def {
    name: "sluice_coordinator_replacements_asked",
    kind: CTR,
    unit: Unit::Count,
    labels: &[],
    values: "",
    component: C,
    rollup: false,
    help: "Replace messages sent for complete full-load generations",
};
pub static QUEUE_MESSAGES: Def = Def {
    name: "sluice_coordinator_queue_messages",
    kind: GAU,
    unit: Unit::Count,
    labels: &["queue", "state"],
    values: "queue `work` or `dead_letter` (with --dlq-url); state `visible` (waiting) or `in_flight` (received, not deleted)",
    component: C,
    rollup: false,
    help: "Messages in the queues at the last pass (SQS GetQueueAttributes, approximate)",
};
pub static MANIFEST_FILES: Def = Def {
    name: "sluice_coordinator_manifest_files",
    kind: GAU,
    unit: Unit::Count,
    labels: &["status"],
    values:
        "`discovered`, `queued`, `loading`, `failed`, `dead`, `skipped` (every status but `loaded`)",
    component: C,
    rollup: false,
    help: "Manifest items in each open status, as the last pass found them (open-index)",
};
pub static OLDEST_UNLOADED: Def = Def {
    name: "sluice_coordinator_oldest_unloaded_seconds",
    kind: GAU,
    unit: Unit::Seconds,
    labels: &["table"],
    values: "source table `schema.table`; a table with nothing waiting has no series",
    component: C,
    rollup: false,
    help: "Age (now minus S3 LastModified) of each table's oldest file not loaded yet (discovered, queued, loading or failed), as the last pass found them",
};
// ---- coordinator: S3 events ----------------------------------------------------------------
pub static EVENTS: Def = Def {
    name: "sluice_coordinator_events",
    kind: CTR,
    unit: Unit::Count,
    labels: &["outcome"],
    values: "`received` (event messages), `enqueued` (files recorded and sent), `duplicate` (already in the manifest: a repeated or late event, or a pass came first), `dropped` (another bucket, outside the prefix, a folder marker, not a creation), `unparseable` (left for the events dead-letter queue), `missed` (a new file a listing pass found although events are on, landed over a minute before)",
    component: C,
    rollup: false,
    help: "S3 event notifications read from the events queue, and what became of the objects they name",
};
pub static NEWEST_EVENT_AGE: Def = Def {
    name: "sluice_coordinator_newest_event_age_seconds",
    kind: GAU,
    unit: Unit::Seconds,
    labels: &[],
    values: "",
    component: C,
    rollup: false,
    help: "Time the newest event received had spent in the events queue when it was received",
};

pub static SINCE_LANDED: Def = Def {
    name: "sluice_coordinator_since_landed_seconds",
    kind: GAU,
    unit: Unit::Seconds,
    labels: &["table"],
    values: "source table `schema.table` (in the listing, or named by the rules file); a table with no file has no series",
    component: C,
    rollup: false,
    help: "Seconds since each table's newest file landed in S3 (its LastModified), as the last pass listed them",
};
pub static SINCE_LOADED: Def = Def {
    name: "sluice_coordinator_since_loaded_seconds",
    kind: GAU,
    unit: Unit::Seconds,
    labels: &["table"],
    values: "source table `schema.table`; a table with no loaded file has no series",
    component: C,
    rollup: false,
    help: "Seconds since a file of each table was last loaded (its newest loaded manifest item), at the last pass",
};
pub static TABLES: Def = Def {
    name: "sluice_coordinator_tables",
    kind: GAU,
    unit: Unit::Count,
    labels: &["state"],
    values: "`fresh`, `unknown` (no expectation), `late`, `silent`, `never_seen` (a table of the rules file with no file)",
    component: C,
    rollup: false,
    help: "Tables by freshness against their expectation (expect_every, or the learned cadence), at the last pass",
};

/// Every metric, in the README's order.
pub static ALL: &[&Def] = &[
    &FILES_LOADED,
    &FILES_DUPLICATE,
    &FILES_FAILED,
    &FILES_DEAD,
    &ROWS,
    &BYTES,
    &COLUMNS_ADDED,
    &PHASE_SECONDS,
    &FILE_SECONDS,
    &FILES_IN_FLIGHT,
    &VISIBILITY_EXTENSIONS,
    &REPLACEMENTS,
    &RETRIES,
    &PASSES,
    &PASS_SECONDS,
    &OBJECTS_LISTED,
    &FILES_NEW,
    &FILES_CHANGED,
    &FILES_REQUEUED,
    &COORDINATOR_FILES_DEAD,
    &MESSAGES_SENT,
    &SEND_FAILURES,
    &REPLACEMENTS_ASKED,
    &QUEUE_MESSAGES,
    &MANIFEST_FILES,
    &OLDEST_UNLOADED,
    &SINCE_LANDED,
    &SINCE_LOADED,
    &TABLES,
    &EVENTS,
    &NEWEST_EVENT_AGE,
];

/// Bucket bounds of every duration histogram, in seconds.
pub const SECONDS_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0,
    3600.0,
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn names_are_unique_and_well_formed() {
        let mut names = HashSet::new();
        let mut emf = HashSet::new();
        for d in ALL {
            assert!(names.insert(d.name), "{}", d.name);
            assert!(emf.insert(d.emf_name()), "{}", d.emf_name());
            assert!(d.name.starts_with("sluice_"), "{}", d.name);
            assert!(!d.name.ends_with("_total"), "{}", d.name);
            assert!(
                d.name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_' || b.is_ascii_digit()),
                "{}",
                d.name
            );
            if d.unit == Unit::Seconds {
                assert!(d.name.ends_with("_seconds"), "{}", d.name);
            }
            assert!(
                !d.help.ends_with('.'),
                "the registry adds the period: {}",
                d.name
            );
            assert_eq!(d.labels.is_empty(), d.values.is_empty(), "{}", d.name);
            for l in d.labels {
                assert!(
                    !l.contains("key"),
                    "labels never carry an S3 key: {}",
                    d.name
                );
                assert_ne!(camel(l), BASE_DIMENSION);
            }
            // A metric's CloudWatch name never collides with a dimension name.
            assert!(
                ALL.iter()
                    .all(|o| o.labels.iter().all(|l| camel(l) != d.emf_name())),
                "{}",
                d.name
            );
        }
        assert_eq!(FILES_LOADED.emf_name(), "WorkerFilesLoaded");
        assert_eq!(MANIFEST_FILES.emf_name(), "CoordinatorManifestFiles");
        assert_eq!(RETRIES.series(), "sluice_retries_total");
    }

    #[test]
    fn camel_case() {
        assert_eq!(camel("dead_letter"), "DeadLetter");
        assert_eq!(camel("reason"), "Reason");
    }
}
