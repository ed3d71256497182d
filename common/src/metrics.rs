//! Every metric Sluice emits, defined once: name, kind, unit, labels and meaning ([`ALL`]). The
//! README's table, the Prometheus exposition and the CloudWatch embedded-metric lines all come
//! from these definitions (a test checks that the README lists each of them).
//!
//! Two outputs, both optional and both fed by the same calls ([`inc`], [`set`], [`add`],
//! [`observe`]):
//! - **Prometheus**: a registry of the `prometheus-client` crate, rendered by [`render`] for the
//!   `/metrics` endpoint (see [`crate::http`]). Counters are cumulative since the process
//!   started.
//! - **CloudWatch embedded metric format (EMF)**: when [`emf_start`] was called, every
//!   interval (and once more at exit, [`emf_flush`]) JSON lines go to standard output, one line
//!   per set of dimension values, namespace `Sluice`. Counters there are the increase since the
//!   previous flush, gauges their current value, histograms the values observed since the
//!   previous flush (CloudWatch computes the statistics and percentiles).
//!
//! Names: the Prometheus family name is `sluice_<component>_<what>[_<unit>]` (counters get the
//! `_total` suffix in the exposition); the CloudWatch name is the same in CamelCase without
//! `sluice_` (`sluice_worker_files_loaded` -> `WorkerFilesLoaded`); a label `reason` is the
//! dimension `Reason`. Every CloudWatch metric also has the dimension `ManifestTable` (which
//! deployment). Labels carry bounded values only (reason classes, phases, statuses, table
//! names): never an S3 key.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

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

// One positional row per metric keeps the catalogue a table (infra/aws/test_template.py reads it).
#[allow(clippy::too_many_arguments)]
const fn def(
    name: &'static str,
    kind: Kind,
    unit: Unit,
    labels: &'static [&'static str],
    values: &'static str,
    component: Component,
    rollup: bool,
    help: &'static str,
) -> Def {
    Def {
        name,
        kind,
        unit,
        labels,
        values,
        help,
        component,
        rollup,
    }
}

use Component::{Coordinator as C, Shared as S, Worker as W};
use Kind::{Counter as CTR, Gauge as GAU, Histogram as HIS};

// ---- worker ---------------------------------------------------------------------------------
pub static FILES_LOADED: Def = def(
    "sluice_worker_files_loaded",
    CTR,
    Unit::Count,
    &[],
    "",
    W,
    false,
    "Files this worker committed to PostgreSQL",
);
pub static FILES_DUPLICATE: Def = def(
    "sluice_worker_files_duplicate",
    CTR,
    Unit::Count,
    &[],
    "",
    W,
    false,
    "Messages acknowledged without loading: the ledger or the manifest already had the file (or it is dead or skipped)",
);
pub static FILES_FAILED: Def = def(
    "sluice_worker_files_failed",
    CTR,
    Unit::Count,
    &["reason"],
    "the manifest's `error_class` (`bad_value`, `unknown_table`, `database_unavailable`, ... see *Bad input*), or `abandoned` at shutdown",
    W,
    true,
    "Load attempts that failed, by reason class",
);
pub static FILES_DEAD: Def = def(
    "sluice_worker_files_dead",
    CTR,
    Unit::Count,
    &[],
    "",
    W,
    false,
    "Files this worker marked dead: the attempt limit was reached",
);
pub static ROWS: Def = def(
    "sluice_worker_rows",
    CTR,
    Unit::Count,
    &["kind"],
    "`read` (records in the file), `merged` (inserted, updated or deleted), `rejected` (set aside), `superseded` (lost to a newer version), `removed` (by a generation's replacement)",
    W,
    false,
    "Rows of committed files and replacements, by kind",
);
pub static BYTES: Def = def(
    "sluice_worker_bytes",
    CTR,
    Unit::Bytes,
    &[],
    "",
    W,
    false,
    "Bytes of committed files as read from S3 (after gzip decompression)",
);
pub static PHASE_SECONDS: Def = def(
    "sluice_worker_phase_seconds",
    HIS,
    Unit::Seconds,
    &["phase"],
    "`copy` (download, decompression, parsing and `COPY` into staging, which run together, streamed), `merge` (version-guarded merge), `commit`",
    W,
    false,
    "Time of each phase of a committed file's transaction",
);
pub static FILE_SECONDS: Def = def(
    "sluice_worker_file_seconds",
    HIS,
    Unit::Seconds,
    &["outcome"],
    "`loaded`, `failed`, `duplicate`, `dead`, `abandoned`",
    W,
    false,
    "Time from a file's message received to its outcome, retries included",
);
pub static FILES_IN_FLIGHT: Def = def(
    "sluice_worker_files_in_flight",
    GAU,
    Unit::Count,
    &[],
    "",
    W,
    false,
    "Messages this worker holds now (files and replacements being handled)",
);
pub static VISIBILITY_EXTENSIONS: Def = def(
    "sluice_worker_visibility_extensions",
    CTR,
    Unit::Count,
    &["result"],
    "`ok`, `error`",
    W,
    false,
    "Visibility extensions of held messages (heartbeats while a file loads)",
);
pub static REPLACEMENTS: Def = def(
    "sluice_worker_replacements",
    CTR,
    Unit::Count,
    &["result"],
    "`replaced`, `already_done`, `merge_only`, `incomplete` (the coordinator asks again), `failed`",
    W,
    false,
    "Replace messages of full-load generations handled, by result",
);
// ---- both -----------------------------------------------------------------------------------
pub static RETRIES: Def = def(
    "sluice_retries",
    CTR,
    Unit::Count,
    &["operation"],
    "`load_file`, `replace`, `db_bootstrap`",
    S,
    true,
    "Transient errors retried by the retry layer (one per wait), by operation",
);
// ---- coordinator ----------------------------------------------------------------------------
pub static PASSES: Def = def(
    "sluice_coordinator_passes",
    CTR,
    Unit::Count,
    &["result"],
    "`ok`, `error`",
    C,
    false,
    "Coordinator passes, by result",
);
pub static PASS_SECONDS: Def = def(
    "sluice_coordinator_pass_seconds",
    HIS,
    Unit::Seconds,
    &[],
    "",
    C,
    false,
    "Duration of a coordinator pass",
);
pub static OBJECTS_LISTED: Def = def(
    "sluice_coordinator_objects_listed",
    GAU,
    Unit::Count,
    &[],
    "",
    C,
    false,
    "Objects under the source prefix at the last pass",
);
pub static FILES_NEW: Def = def(
    "sluice_coordinator_files_new",
    CTR,
    Unit::Count,
    &[],
    "",
    C,
    false,
    "New object versions found (keys never seen)",
);
pub static FILES_CHANGED: Def = def(
    "sluice_coordinator_files_changed",
    CTR,
    Unit::Count,
    &[],
    "",
    C,
    false,
    "Known keys found with a new ETag",
);
pub static FILES_REQUEUED: Def = def(
    "sluice_coordinator_files_requeued",
    CTR,
    Unit::Count,
    &[],
    "",
    C,
    false,
    "Open files enqueued again (stuck longer than --requeue-after, or failed transiently)",
);
pub static COORDINATOR_FILES_DEAD: Def = def(
    "sluice_coordinator_files_dead",
    CTR,
    Unit::Count,
    &["reason"],
    "`attempts_exhausted`, `unloadable_key`",
    C,
    true,
    "Files the coordinator marked dead",
);
pub static MESSAGES_SENT: Def = def(
    "sluice_coordinator_messages_sent",
    CTR,
    Unit::Count,
    &[],
    "",
    C,
    false,
    "File messages sent to the work queue",
);
pub static SEND_FAILURES: Def = def(
    "sluice_coordinator_send_failures",
    CTR,
    Unit::Count,
    &[],
    "",
    C,
    false,
    "File messages SQS refused (sent again by the next pass)",
);
pub static REPLACEMENTS_ASKED: Def = def(
    "sluice_coordinator_replacements_asked",
    CTR,
    Unit::Count,
    &[],
    "",
    C,
    false,
    "Replace messages sent for complete full-load generations",
);
pub static QUEUE_MESSAGES: Def = def(
    "sluice_coordinator_queue_messages",
    GAU,
    Unit::Count,
    &["queue", "state"],
    "queue `work` or `dead_letter` (with --dlq-url); state `visible` (waiting) or `in_flight` (received, not deleted)",
    C,
    false,
    "Messages in the queues at the last pass (SQS GetQueueAttributes, approximate)",
);
pub static MANIFEST_FILES: Def = def(
    "sluice_coordinator_manifest_files",
    GAU,
    Unit::Count,
    &["status"],
    "`discovered`, `queued`, `loading`, `failed`, `dead`, `skipped` (every status but `loaded`)",
    C,
    false,
    "Manifest items in each open status, as the last pass found them (open-index)",
);
pub static OLDEST_UNLOADED: Def = def(
    "sluice_coordinator_oldest_unloaded_seconds",
    GAU,
    Unit::Seconds,
    &["table"],
    "source table `schema.table`; a table with nothing waiting has no series",
    C,
    false,
    "Age (now minus S3 LastModified) of each table's oldest file not loaded yet (discovered, queued, loading or failed), as the last pass found them",
);

/// Every metric, in the README's order.
pub static ALL: &[&Def] = &[
    &FILES_LOADED,
    &FILES_DUPLICATE,
    &FILES_FAILED,
    &FILES_DEAD,
    &ROWS,
    &BYTES,
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
];

/// Bucket bounds of every duration histogram, in seconds.
pub const SECONDS_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0,
    3600.0,
];

/// CloudWatch accepts at most this many values per metric in one line.
const EMF_MAX_VALUES: usize = 100;

type Labels = Vec<(&'static str, String)>;

#[derive(Clone)]
struct Buckets;

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(SECONDS_BUCKETS.iter().copied())
    }
}

enum Fam {
    Counter(Family<Labels, Counter>),
    Gauge(Family<Labels, Gauge<f64, AtomicU64>>),
    Histogram(Family<Labels, Histogram, Buckets>),
}

/// What the EMF output owes CloudWatch for one series.
#[derive(Debug, Clone, PartialEq)]
enum Acc {
    /// Increase since the last flush.
    Delta(u64),
    Value(f64),
    /// Observations since the last flush (kept only while EMF is on).
    Values(Vec<f64>),
}

struct Metrics {
    registry: Registry,
    /// By index in [`ALL`]; None: not this process's metric.
    families: Vec<Option<Fam>>,
    /// Every series seen, for EMF and for replacing a gauge's series.
    series: Mutex<BTreeMap<(usize, Vec<String>), Acc>>,
    emf: AtomicBool,
    base: Vec<(String, String)>,
}

static METRICS: OnceLock<Metrics> = OnceLock::new();

/// Sets up the registry for `component` (its metrics and the shared ones), with the value of
/// the `ManifestTable` dimension. The first call wins; recording before any call sets up every
/// metric (tests that run components in one process).
pub fn init(component: Component, manifest_table: &str) {
    let _ = METRICS.get_or_init(|| build(Some(component), manifest_table));
}

fn get() -> &'static Metrics {
    METRICS.get_or_init(|| build(None, ""))
}

fn build(component: Option<Component>, manifest_table: &str) -> Metrics {
    let mut registry = Registry::default();
    let mut families = Vec::new();
    let mut series = BTreeMap::new();
    for (i, d) in ALL.iter().enumerate() {
        let ours = match component {
            None => true,
            Some(c) => d.component == c || d.component == Component::Shared,
        };
        if !ours {
            families.push(None);
            continue;
        }
        let fam = match d.kind {
            Kind::Counter => {
                let f = Family::<Labels, Counter>::default();
                registry.register(d.name, d.help, f.clone());
                Fam::Counter(f)
            }
            Kind::Gauge => {
                let f = Family::<Labels, Gauge<f64, AtomicU64>>::default();
                registry.register(d.name, d.help, f.clone());
                Fam::Gauge(f)
            }
            Kind::Histogram => {
                let f = Family::<Labels, Histogram, Buckets>::new_with_constructor(Buckets);
                registry.register(d.name, d.help, f.clone());
                Fam::Histogram(f)
            }
        };
        // Unlabelled counters and gauges exist from the start, at zero.
        if d.labels.is_empty() && d.kind != Kind::Histogram && component.is_some() {
            match &fam {
                Fam::Counter(f) => {
                    let _ = f.get_or_create(&Vec::new());
                    series.insert((i, Vec::new()), Acc::Delta(0));
                }
                Fam::Gauge(f) => {
                    let _ = f.get_or_create(&Vec::new());
                    series.insert((i, Vec::new()), Acc::Value(0.0));
                }
                Fam::Histogram(_) => {}
            }
        }
        families.push(Some(fam));
    }
    Metrics {
        registry,
        families,
        series: Mutex::new(series),
        emf: AtomicBool::new(false),
        base: vec![(BASE_DIMENSION.to_owned(), manifest_table.to_owned())],
    }
}

fn index(def: &Def) -> usize {
    ALL.iter()
        .position(|d| d.name == def.name)
        .expect("every metric is in ALL")
}

fn labels(def: &Def, values: &[&str]) -> Labels {
    debug_assert_eq!(def.labels.len(), values.len(), "labels of {}", def.name);
    def.labels
        .iter()
        .zip(values)
        .map(|(k, v)| (*k, (*v).to_owned()))
        .collect()
}

fn owned(values: &[&str]) -> Vec<String> {
    values.iter().map(|v| (*v).to_owned()).collect()
}

/// Adds `n` to a counter.
pub fn inc(def: &Def, values: &[&str], n: u64) {
    let m = get();
    let i = index(def);
    let Some(Some(Fam::Counter(f))) = m.families.get(i) else {
        return;
    };
    f.get_or_create(&labels(def, values)).inc_by(n);
    let mut series = m.series.lock().expect("metrics lock");
    match series.entry((i, owned(values))).or_insert(Acc::Delta(0)) {
        Acc::Delta(d) => *d += n,
        other => *other = Acc::Delta(n),
    }
}

/// Sets a gauge.
pub fn set(def: &Def, values: &[&str], v: f64) {
    let m = get();
    let i = index(def);
    let Some(Some(Fam::Gauge(f))) = m.families.get(i) else {
        return;
    };
    f.get_or_create(&labels(def, values)).set(v);
    m.series
        .lock()
        .expect("metrics lock")
        .insert((i, owned(values)), Acc::Value(v));
}

/// Adds `delta` (may be negative) to a gauge.
pub fn add(def: &Def, values: &[&str], delta: f64) {
    let m = get();
    let i = index(def);
    let Some(Some(Fam::Gauge(f))) = m.families.get(i) else {
        return;
    };
    let now = f.get_or_create(&labels(def, values)).inc_by(delta) + delta;
    m.series
        .lock()
        .expect("metrics lock")
        .insert((i, owned(values)), Acc::Value(now));
}

/// Replaces every series of a gauge: `values` are set, series not among them removed.
pub fn set_all(def: &Def, values: &[(Vec<String>, f64)]) {
    let m = get();
    let i = index(def);
    let Some(Some(Fam::Gauge(f))) = m.families.get(i) else {
        return;
    };
    let mut series = m.series.lock().expect("metrics lock");
    for (vals, v) in values {
        let refs: Vec<&str> = vals.iter().map(String::as_str).collect();
        f.get_or_create(&labels(def, &refs)).set(*v);
        series.insert((i, vals.clone()), Acc::Value(*v));
    }
    let stale: Vec<Vec<String>> = series
        .keys()
        .filter(|(j, vals)| *j == i && !values.iter().any(|(v, _)| v == vals))
        .map(|(_, vals)| vals.clone())
        .collect();
    for vals in stale {
        let refs: Vec<&str> = vals.iter().map(String::as_str).collect();
        f.remove(&labels(def, &refs));
        series.remove(&(i, vals));
    }
}

/// Records one observation of a histogram.
pub fn observe(def: &Def, values: &[&str], v: f64) {
    let m = get();
    let i = index(def);
    let Some(Some(Fam::Histogram(f))) = m.families.get(i) else {
        return;
    };
    f.get_or_create(&labels(def, values)).observe(v);
    if m.emf.load(Ordering::Relaxed) {
        let mut series = m.series.lock().expect("metrics lock");
        match series
            .entry((i, owned(values)))
            .or_insert(Acc::Values(Vec::new()))
        {
            Acc::Values(list) => list.push(v),
            other => *other = Acc::Values(vec![v]),
        }
    }
}

/// [`observe`] of a duration, in seconds.
pub fn observe_duration(def: &Def, values: &[&str], d: Duration) {
    observe(def, values, d.as_secs_f64());
}

/// The Prometheus exposition (OpenMetrics text) of everything recorded.
pub fn render() -> String {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &get().registry)
        .expect("writing to a String cannot fail");
    out
}

/// Content type of [`render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Turns on the EMF output: a task writes the lines every `interval` (call [`emf_flush`] once
/// more at exit). Needs a tokio runtime.
pub fn emf_start(interval: Duration) -> tokio::task::JoinHandle<()> {
    get().emf.store(true, Ordering::Relaxed);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            emf_flush();
        }
    })
}

/// Writes the EMF lines owed now to standard output (nothing when EMF is off).
pub fn emf_flush() {
    let m = get();
    if !m.emf.load(Ordering::Relaxed) {
        return;
    }
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let lines = emf_lines(now_ms);
    if lines.is_empty() {
        return;
    }
    let mut text = String::new();
    for line in lines {
        text.push_str(&line);
        text.push('\n');
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// The EMF documents owed now, one JSON text each; resets counters' increases and drains
/// histograms.
pub fn emf_lines(now_ms: u64) -> Vec<String> {
    let m = get();
    let mut owed: Vec<(usize, Vec<String>, EmfValue)> = Vec::new();
    {
        let mut series = m.series.lock().expect("metrics lock");
        for ((i, vals), acc) in series.iter_mut() {
            match acc {
                Acc::Delta(d) => {
                    owed.push((*i, vals.clone(), EmfValue::One(*d as f64)));
                    *d = 0;
                }
                Acc::Value(v) => owed.push((*i, vals.clone(), EmfValue::One(*v))),
                Acc::Values(list) if !list.is_empty() => {
                    owed.push((*i, vals.clone(), EmfValue::Many(std::mem::take(list))))
                }
                Acc::Values(_) => {}
            }
        }
    }
    emf_documents(&m.base, &owed, now_ms)
}

enum EmfValue {
    One(f64),
    Many(Vec<f64>),
}

/// Groups series by their dimension values: one document per group (more when a histogram has
/// more values than CloudWatch takes in one).
fn emf_documents(
    base: &[(String, String)],
    owed: &[(usize, Vec<String>, EmfValue)],
    now_ms: u64,
) -> Vec<String> {
    use serde_json::{json, Map, Value};
    // dimension values -> [(def, chunk of values)]
    type Group<'a> = Vec<(&'a Def, Value)>;
    let mut groups: BTreeMap<Vec<(String, String)>, Vec<Group>> = BTreeMap::new();
    for (i, vals, value) in owed {
        let d = ALL[*i];
        let mut dims: Vec<(String, String)> = base.to_vec();
        dims.extend(
            d.labels
                .iter()
                .zip(vals)
                .map(|(k, v)| (camel(k), v.clone())),
        );
        let docs = groups.entry(dims).or_default();
        let chunks: Vec<Value> = match value {
            EmfValue::One(v) => vec![json!(v)],
            EmfValue::Many(list) => list.chunks(EMF_MAX_VALUES).map(|c| json!(c)).collect(),
        };
        for (n, chunk) in chunks.into_iter().enumerate() {
            if docs.len() <= n {
                docs.push(Vec::new());
            }
            docs[n].push((d, chunk));
        }
    }
    let mut out = Vec::new();
    for (dims, docs) in groups {
        let names: Vec<String> = dims.iter().map(|(k, _)| k.clone()).collect();
        for metrics in docs {
            let mut root = Map::new();
            for (k, v) in &dims {
                root.insert(k.clone(), json!(v));
            }
            // One directive per dimension-set choice (with or without the rollup).
            let mut by_sets: HashMap<bool, Vec<Value>> = HashMap::new();
            for (d, value) in &metrics {
                root.insert(d.emf_name(), value.clone());
                let rollup = d.rollup && names.len() > 1;
                by_sets
                    .entry(rollup)
                    .or_default()
                    .push(json!({"Name": d.emf_name(), "Unit": d.unit.as_str()}));
            }
            let mut directives = Vec::new();
            for rollup in [false, true] {
                if let Some(ms) = by_sets.remove(&rollup) {
                    let mut sets = vec![json!(names)];
                    if rollup {
                        sets.push(json!([BASE_DIMENSION]));
                    }
                    directives.push(json!({
                        "Namespace": NAMESPACE,
                        "Dimensions": sets,
                        "Metrics": ms,
                    }));
                }
            }
            root.insert(
                "_aws".to_owned(),
                json!({"Timestamp": now_ms, "CloudWatchMetrics": directives}),
            );
            out.push(Value::Object(root).to_string());
        }
    }
    out
}

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
    fn emf_documents_group_by_dimension_values() {
        let base = vec![(BASE_DIMENSION.to_owned(), "m".to_owned())];
        let i = |d: &Def| index(d);
        let owed = vec![
            (i(&FILES_LOADED), vec![], EmfValue::One(2.0)),
            (
                i(&FILES_FAILED),
                vec!["bad_value".into()],
                EmfValue::One(1.0),
            ),
            (
                i(&FILES_FAILED),
                vec!["unknown_table".into()],
                EmfValue::One(3.0),
            ),
            (
                i(&PHASE_SECONDS),
                vec!["copy".into()],
                EmfValue::Many((0..150).map(f64::from).collect()),
            ),
        ];
        let docs: Vec<serde_json::Value> = emf_documents(&base, &owed, 1_700_000_000_000)
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        // base only; reason x2; phase: two chunks (150 values > 100)
        assert_eq!(docs.len(), 5, "{docs:#?}");
        for d in &docs {
            assert_eq!(d["ManifestTable"], "m");
            assert_eq!(d["_aws"]["Timestamp"], 1_700_000_000_000u64);
            for dir in d["_aws"]["CloudWatchMetrics"].as_array().unwrap() {
                assert_eq!(dir["Namespace"], "Sluice");
                for m in dir["Metrics"].as_array().unwrap() {
                    assert!(d.get(m["Name"].as_str().unwrap()).is_some());
                }
                for set in dir["Dimensions"].as_array().unwrap() {
                    for dim in set.as_array().unwrap() {
                        assert!(d.get(dim.as_str().unwrap()).is_some());
                    }
                }
            }
        }
        let failed: Vec<_> = docs
            .iter()
            .filter(|d| d.get("WorkerFilesFailed").is_some())
            .collect();
        assert_eq!(failed.len(), 2);
        let bad = failed.iter().find(|d| d["Reason"] == "bad_value").unwrap();
        assert_eq!(bad["WorkerFilesFailed"], 1.0);
        assert_eq!(
            bad["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            serde_json::json!([["ManifestTable", "Reason"], ["ManifestTable"]])
        );
        let copies: Vec<usize> = docs
            .iter()
            .filter_map(|d| d.get("WorkerPhaseSeconds"))
            .map(|v| v.as_array().unwrap().len())
            .collect();
        assert_eq!(copies, vec![100, 50]);
    }

    #[test]
    fn camel_case() {
        assert_eq!(camel("dead_letter"), "DeadLetter");
        assert_eq!(camel("reason"), "Reason");
    }
}
