//! CloudWatch embedded metric format: the JSON documents of the values owed, grouped by
//! dimension values. Pure; the registry ([`super`]) decides what is owed and writes the lines.

use super::{camel, Def, ALL, BASE_DIMENSION, NAMESPACE};
use std::collections::{BTreeMap, HashMap};

/// CloudWatch accepts at most this many values per metric in one line.
const EMF_MAX_VALUES: usize = 100;

pub(super) enum EmfValue {
    One(f64),
    Many(Vec<f64>),
}

/// Groups series by their dimension values: one document per group (more when a histogram has
/// more values than CloudWatch takes in one).
pub(super) fn emf_documents(
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
    use crate::metrics::{index, FILES_FAILED, FILES_LOADED, PHASE_SECONDS};

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
}
