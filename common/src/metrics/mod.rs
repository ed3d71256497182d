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
//!
//! # Layout
//!
//! - `catalog.rs`: every metric's definition ([`ALL`]), pure data; nothing records there;
//! - `mod.rs`: the registry: recording ([`inc`], [`set`], [`add`], [`set_all`], [`observe`]),
//!   the Prometheus exposition ([`render`]) and the EMF flush ([`emf_start`], [`emf_flush`]);
//! - `emf.rs`: the CloudWatch EMF documents of the values owed, pure.
//!
//! This folder must not know what the binaries do: they record through named events of their
//! own (`observe.rs` in each), and only the definitions here say what a metric means.

mod catalog;
mod emf;

// The catalogue is this module's public face: `metrics::FILES_LOADED`, `metrics::Def`, ...
pub use catalog::*;

use emf::{emf_documents, EmfValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

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
