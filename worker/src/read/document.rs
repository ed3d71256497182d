//! MongoDB document mode: DMS writes a collection as `_id` plus `_doc`, the whole document as
//! extended JSON. This module turns one document into the text values of the target columns the
//! table's `document` rule names. Pure; no IO.
//!
//! Values, as PostgreSQL's input functions then read them for the column's type:
//! - a missing path or JSON `null` is SQL NULL;
//! - strings and booleans are their text; a number is the text the document holds, digit for
//!   digit (`1.50`, `-0`, `18446744073709551617` stay as written; only an exponent is spelled
//!   `e+2`/`e-2`), so PostgreSQL's input function makes of it what it makes of the same CSV
//!   field;
//! - extended-JSON wrappers are unwrapped: `$oid` to its hex text, `$date` to an ISO 8601 UTC
//!   time (from its string, or from milliseconds since the epoch), `$numberLong`, `$numberInt`,
//!   `$numberDouble`, `$numberDecimal` to their digits (exact), `$binary` to bytea hex (`\x..`;
//!   subtype 4 to a UUID), `$uuid` to its text;
//! - other objects and arrays are JSON text (for `jsonb` columns), with the wrappers inside
//!   them in relaxed form: ids, dates and UUIDs as strings, numbers as JSON numbers with their
//!   exact digits.
//!
//! The rescue column takes the document minus every field a column took (and minus the
//! top-level fields the file carries in columns of its own, such as `_id`); objects left empty
//! by that are dropped; an empty remainder is NULL.
//!
//! Invariant: a value that cannot be cast is not detected here; PostgreSQL refuses it and the
//! table's error policy applies, as for any bad value. Only a document that is not a JSON object
//! is an error of this module.
//!
//! Invariant: no number goes through a binary float. The workspace builds `serde_json` with
//! `arbitrary_precision`, so a parsed `Number` keeps its text and `to_string` gives back the same
//! digits: an integer past 2^53 (or 2^64), a 30-digit decimal, a double that needs 17 digits and
//! `-0` reach the column unchanged, in flattened columns, `paths`, sub-documents and arrays
//! written as JSON text, and the rescue column. A number beyond a double's range (`1e400`) is no
//! longer a `bad_document`: a `numeric` column takes it, a `double precision` one refuses it as
//! a bad value. That feature was chosen over a number-keeping parser of our own because it is
//! serde_json's own answer to exactly this, and it changes nothing else this workspace relies
//! on: numbers that fit an `i64`, `u64` or a round-tripping `f64` still deserialize into typed
//! fields as before (message bodies, reports), floats still serialize with the same shortest
//! text (metrics, `--json` output), and the AWS SDK does not use `serde_json`. What differs is
//! that two `Value`s compare their numbers as text (`1.0` is not `1.00`), which no code here
//! does. The tests of this module fail without it.

use serde_json::{Map, Value};
use std::fmt::Write as _;

/// Why a document is not one: the only errors of this module (see the invariants above). The
/// encoder reports it as `WorkerError::BadDocument`, with this text as its reason.
#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    /// The column's text does not parse as JSON.
    #[error("not valid JSON: {0}")]
    NotJson(serde_json::Error),
    /// It parses, but to something other than an object.
    #[error("the document is not a JSON object")]
    NotObject,
}

/// One output column: the path of its value in the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocColumn {
    pub path: Vec<String>,
}

/// The columns one document becomes, in output order; the rescue column, if any, comes last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentPlan {
    pub columns: Vec<DocColumn>,
    pub rescue: bool,
    /// Top-level fields other columns of the file carry (such as `_id`): never rescued.
    pub elsewhere: Vec<String>,
}

impl DocumentPlan {
    /// Columns this plan produces.
    pub fn width(&self) -> usize {
        self.columns.len() + usize::from(self.rescue)
    }

    /// The values of one document, in output order (None is SQL NULL). `doc` is the document
    /// column's text.
    pub fn expand(&self, doc: &[u8], out: &mut Vec<Option<String>>) -> Result<(), DocumentError> {
        out.clear();
        let value: Value = serde_json::from_slice(doc).map_err(DocumentError::NotJson)?;
        let Value::Object(mut root) = value else {
            return Err(DocumentError::NotObject);
        };
        for c in &self.columns {
            out.push(lookup(&root, &c.path).and_then(column_text));
        }
        if self.rescue {
            for c in &self.columns {
                remove_path(&mut root, &c.path);
            }
            for name in &self.elsewhere {
                root.remove(name);
            }
            out.push(if root.is_empty() {
                None
            } else {
                let mut s = String::new();
                write_object(&root, &mut s);
                Some(s)
            });
        }
        Ok(())
    }
}

/// The key of `map` that `name` means: itself, else the one equal ignoring ASCII case.
fn find_key<'m>(map: &'m Map<String, Value>, name: &str) -> Option<&'m String> {
    map.get_key_value(name)
        .map(|(k, _)| k)
        .or_else(|| map.keys().find(|k| k.eq_ignore_ascii_case(name)))
}

fn lookup<'v>(root: &'v Map<String, Value>, path: &[String]) -> Option<&'v Value> {
    let (first, rest) = path.split_first()?;
    let mut v = root.get(find_key(root, first)?)?;
    for seg in rest {
        v = match v {
            Value::Object(m) if !is_wrapper(m) => m.get(find_key(m, seg)?)?,
            Value::Array(a) => a.get(seg.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(v)
}

/// Removes the field at `path`, then the objects on the way that it left empty.
fn remove_path(map: &mut Map<String, Value>, path: &[String]) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    let Some(key) = find_key(map, first).cloned() else {
        return;
    };
    if rest.is_empty() {
        map.remove(&key);
        return;
    }
    if let Some(Value::Object(child)) = map.get_mut(&key) {
        if is_wrapper(child) {
            return;
        }
        remove_path(child, rest);
        if child.is_empty() {
            map.remove(&key);
        }
    }
}

/// Whether an object is an extended-JSON wrapper (`{"$oid": ...}` and the like).
fn is_wrapper(m: &Map<String, Value>) -> bool {
    matches!(m.keys().next(), Some(k) if k.starts_with('$'))
        && matches!(
            m.keys().next().map(String::as_str),
            Some(
                "$oid"
                    | "$date"
                    | "$numberLong"
                    | "$numberInt"
                    | "$numberDouble"
                    | "$numberDecimal"
                    | "$binary"
                    | "$uuid"
                    | "$timestamp"
                    | "$regularExpression"
                    | "$symbol"
                    | "$code"
                    | "$minKey"
                    | "$maxKey"
                    | "$undefined"
                    | "$dbPointer"
            )
        )
}

/// A value as column text.
fn column_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(s.clone()),
        Value::Object(m) if is_wrapper(m) => match scalar_of_wrapper(m) {
            Some(Scalar::Text(s)) | Some(Scalar::Number(s)) => Some(s),
            Some(Scalar::Bytes(b)) => Some(bytea_hex(&b)),
            None => {
                let mut s = String::new();
                write_object(m, &mut s);
                Some(s)
            }
        },
        Value::Object(m) => {
            let mut s = String::new();
            write_object(m, &mut s);
            Some(s)
        }
        Value::Array(_) => {
            let mut s = String::new();
            write_json(v, &mut s);
            Some(s)
        }
    }
}

/// What a wrapper stands for.
enum Scalar {
    Text(String),
    /// Exact digits (or PostgreSQL's `NaN`, `Infinity`, `-Infinity`).
    Number(String),
    Bytes(Vec<u8>),
}

fn scalar_of_wrapper(m: &Map<String, Value>) -> Option<Scalar> {
    let (k, v) = m.iter().next()?;
    match (k.as_str(), v) {
        ("$oid", Value::String(s))
        | ("$uuid", Value::String(s))
        | ("$symbol", Value::String(s)) => Some(Scalar::Text(s.clone())),
        ("$date", Value::String(s)) => Some(Scalar::Text(s.clone())),
        ("$date", Value::Number(n)) => n.as_i64().and_then(millis_text).map(Scalar::Text),
        ("$date", Value::Object(inner)) => match inner.get("$numberLong") {
            Some(Value::String(s)) => s.parse().ok().and_then(millis_text).map(Scalar::Text),
            _ => None,
        },
        ("$numberLong" | "$numberInt" | "$numberDecimal" | "$numberDouble", Value::String(s)) => {
            Some(Scalar::Number(match s.as_str() {
                "Infinity" | "+Infinity" => "Infinity".to_owned(),
                "-Infinity" => "-Infinity".to_owned(),
                "NaN" | "-NaN" => "NaN".to_owned(),
                _ => s.clone(),
            }))
        }
        ("$numberLong" | "$numberInt" | "$numberDouble" | "$numberDecimal", Value::Number(n)) => {
            Some(Scalar::Number(n.to_string()))
        }
        ("$binary", Value::Object(b)) => {
            let data = decode_base64(b.get("base64")?.as_str()?)?;
            let subtype = b.get("subType").and_then(Value::as_str).unwrap_or("00");
            Some(binary(data, subtype))
        }
        // Legacy form: {"$binary": "<base64>", "$type": "00"}.
        ("$binary", Value::String(s)) => {
            let data = decode_base64(s)?;
            let subtype = m.get("$type").and_then(Value::as_str).unwrap_or("00");
            Some(binary(data, subtype))
        }
        _ => None,
    }
}

fn binary(data: Vec<u8>, subtype: &str) -> Scalar {
    if matches!(subtype, "04" | "4" | "03" | "3") && data.len() == 16 {
        Scalar::Text(uuid_text(&data))
    } else {
        Scalar::Bytes(data)
    }
}

fn decode_base64(s: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}

fn uuid_text(b: &[u8]) -> String {
    let mut s = String::with_capacity(36);
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        let _ = write!(s, "{byte:02x}");
    }
    s
}

fn bytea_hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(2 + 2 * b.len());
    s.push_str("\\x");
    for byte in b {
        let _ = write!(s, "{byte:02x}");
    }
    s
}

/// Milliseconds since the epoch as ISO 8601 UTC (`2024-01-02T03:04:05.678Z`).
fn millis_text(ms: i64) -> Option<String> {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()?;
    Some(sluice_common::timefmt::format(t))
}

/// Writes JSON text, with extended-JSON wrappers in relaxed form.
fn write_json(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => write_object(m, out),
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

fn write_object(m: &Map<String, Value>, out: &mut String) {
    if is_wrapper(m) {
        match scalar_of_wrapper(m) {
            Some(Scalar::Text(s)) => return out.push_str(&Value::String(s).to_string()),
            Some(Scalar::Number(s)) if is_json_number(&s) => return out.push_str(&s),
            Some(Scalar::Number(s)) => return out.push_str(&Value::String(s).to_string()),
            Some(Scalar::Bytes(b)) => {
                return out.push_str(&Value::String(bytea_hex(&b)).to_string())
            }
            None => {}
        }
    }
    out.push('{');
    for (i, (k, v)) in m.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&Value::String(k.clone()).to_string());
        out.push(':');
        write_json(v, out);
    }
    out.push('}');
}

/// Whether `s` is a JSON number literal (so it can be written as one, digits kept).
fn is_json_number(s: &str) -> bool {
    serde_json::from_str::<serde_json::Number>(s).is_ok() && !s.starts_with('+')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(paths: &[&str], rescue: bool, elsewhere: &[&str]) -> DocumentPlan {
        DocumentPlan {
            columns: paths
                .iter()
                .map(|p| DocColumn {
                    path: p.split('.').map(str::to_owned).collect(),
                })
                .collect(),
            rescue,
            elsewhere: elsewhere.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    fn expand(p: &DocumentPlan, doc: &str) -> Vec<Option<String>> {
        let mut out = Vec::new();
        p.expand(doc.as_bytes(), &mut out).unwrap();
        assert_eq!(out.len(), p.width());
        out
    }

    fn s(v: &str) -> Option<String> {
        Some(v.to_owned())
    }

    #[test]
    fn every_wrapper_is_unwrapped_exactly() {
        let p = plan(
            &[
                "_id", "when", "whenms", "whenlong", "big", "int", "dec", "dbl", "inf", "bin",
                "uuid", "plain", "flag", "n", "missing", "nul",
            ],
            false,
            &[],
        );
        let doc = r#"{"_id":{"$oid":"5f1b2c3d4e5f601234567890"},
            "when":{"$date":"2024-03-01T12:00:00.123Z"},
            "whenms":{"$date":1709294400123},
            "whenlong":{"$date":{"$numberLong":"-86400000"}},
            "big":{"$numberLong":"9223372036854775807"},
            "int":{"$numberInt":"-7"},
            "dec":{"$numberDecimal":"12345678901234567890.000000000001"},
            "dbl":{"$numberDouble":"0.1"},
            "inf":{"$numberDouble":"-Infinity"},
            "bin":{"$binary":{"base64":"3q2+7w==","subType":"00"}},
            "uuid":{"$binary":{"base64":"ASNFZ4mrze8BI0VniavN7w==","subType":"04"}},
            "plain":"a \"quoted\"\ttab","flag":true,"n":42,"nul":null}"#;
        assert_eq!(
            expand(&p, doc),
            vec![
                s("5f1b2c3d4e5f601234567890"),
                s("2024-03-01T12:00:00.123Z"),
                s("2024-03-01T12:00:00.123Z"),
                s("1969-12-31T00:00:00.000Z"),
                s("9223372036854775807"),
                s("-7"),
                s("12345678901234567890.000000000001"),
                s("0.1"),
                s("-Infinity"),
                s("\\xdeadbeef"),
                s("01234567-89ab-cdef-0123-456789abcdef"),
                s("a \"quoted\"\ttab"),
                s("true"),
                s("42"),
                None,
                None,
            ]
        );
    }

    /// Numbers as relaxed extended JSON and most producers write them (bare, no wrapper), and
    /// the text each becomes: the same digits, the exponent spelled `e+`/`e-`.
    const NUMBERS: [(&str, &str); 12] = [
        ("18446744073709551617", "18446744073709551617"),
        (
            "-340282366920938463463374607431768211457",
            "-340282366920938463463374607431768211457",
        ),
        (
            "123456789012345.678901234567890123",
            "123456789012345.678901234567890123",
        ),
        ("0.30000000000000004", "0.30000000000000004"),
        ("2.2250738585072014e-308", "2.2250738585072014e-308"),
        ("1.7976931348623157e308", "1.7976931348623157e+308"),
        ("9007199254740993", "9007199254740993"),
        ("-0", "-0"),
        ("-0.0", "-0.0"),
        ("1.50", "1.50"),
        ("1E2", "1e+2"),
        ("4.9E-324", "4.9e-324"),
    ];

    /// `"n0":<number>,"n1":...` with the written or the loaded numbers.
    fn fields(loaded: bool) -> String {
        let mut v: Vec<(String, &str)> = NUMBERS
            .iter()
            .enumerate()
            .map(|(i, (w, l))| (format!("n{i}"), if loaded { *l } else { *w }))
            .collect();
        v.sort();
        let v: Vec<String> = v.iter().map(|(k, n)| format!("\"{k}\":{n}")).collect();
        v.join(",")
    }

    fn list(loaded: bool) -> String {
        let v: Vec<&str> = NUMBERS
            .iter()
            .map(|(w, l)| if loaded { *l } else { *w })
            .collect();
        format!("[{}]", v.join(","))
    }

    #[test]
    fn plain_numbers_keep_their_digits_in_columns_subdocuments_arrays_and_rescue() {
        let doc = format!(
            r#"{{{},"sub":{{{}}},"list":{},"wrapped":{{"$numberDecimal":1.50}}}}"#,
            fields(false),
            fields(false),
            list(false)
        );
        let n = NUMBERS.len();
        let mut paths: Vec<String> = (0..n).map(|i| format!("n{i}")).collect();
        paths.extend((0..n).map(|i| format!("sub.n{i}")));
        paths.extend((0..n).map(|i| format!("list.{i}")));
        paths.extend(["sub", "list", "wrapped"].map(str::to_owned));
        let paths: Vec<&str> = paths.iter().map(String::as_str).collect();

        let mut want: Vec<Option<String>> = Vec::new();
        for _ in 0..3 {
            want.extend(NUMBERS.iter().map(|(_, l)| s(l)));
        }
        want.push(Some(format!("{{{}}}", fields(true))));
        want.push(Some(list(true)));
        want.push(s("1.50"));
        assert_eq!(expand(&plan(&paths, false, &[]), &doc), want);

        // Beyond a double's range: PostgreSQL judges it, as it judges a CSV field.
        assert_eq!(
            expand(&plan(&["x"], false, &[]), r#"{"x":-1E400}"#),
            vec![s("-1e+400")]
        );

        // The rescue column: what no column took, numbers as written.
        let out = expand(&plan(&["wrapped"], true, &[]), &doc);
        assert_eq!(
            out[1],
            Some(format!(
                r#"{{"list":{},{},"sub":{{{}}}}}"#,
                list(true),
                fields(true),
                fields(true)
            ))
        );
    }

    #[test]
    fn nested_paths_arrays_and_subdocuments() {
        let p = plan(&["a.b.c", "tags", "tags.1", "sub", "a.b.c.d"], false, &[]);
        let doc = r#"{"a":{"b":{"c":"deep"}},"tags":["x",{"$numberLong":"5"}],
            "sub":{"when":{"$date":{"$numberLong":"0"}},"d":{"$numberDecimal":"1.50"},
                   "id":{"$oid":"ab"},"nan":{"$numberDecimal":"NaN"}}}"#;
        assert_eq!(
            expand(&p, doc),
            vec![
                s("deep"),
                s(r#"["x",5]"#),
                s("5"),
                s(r#"{"d":1.50,"id":"ab","nan":"NaN","when":"1970-01-01T00:00:00.000Z"}"#),
                None,
            ]
        );
    }

    #[test]
    fn rescue_keeps_what_no_column_took() {
        let p = plan(&["name", "address.city"], true, &["_id"]);
        let doc = r#"{"_id":{"$oid":"ab"},"name":"n","address":{"city":"c","zip":"z"},
            "extra":[1,2]}"#;
        assert_eq!(
            expand(&p, doc),
            vec![
                s("n"),
                s("c"),
                s(r#"{"address":{"zip":"z"},"extra":[1,2]}"#)
            ]
        );
        // Nothing left: NULL; an object emptied by the columns is dropped.
        let doc = r#"{"_id":"x","name":"n","address":{"city":"c"}}"#;
        assert_eq!(expand(&p, doc), vec![s("n"), s("c"), None]);
    }

    #[test]
    fn names_match_exactly_first_then_ignoring_case() {
        let p = plan(&["Name", "city"], false, &[]);
        assert_eq!(
            expand(&p, r#"{"name":"low","Name":"exact","CITY":"up"}"#),
            vec![s("exact"), s("up")]
        );
    }

    #[test]
    fn documents_that_are_not_objects_are_errors() {
        let p = plan(&["a"], false, &[]);
        let mut out = Vec::new();
        let e = p.expand(b"[1]", &mut out).unwrap_err();
        assert!(matches!(e, DocumentError::NotObject), "{e}");
        assert_eq!(e.to_string(), "the document is not a JSON object");
        let e = p.expand(b"{\"a\":", &mut out).unwrap_err();
        assert!(matches!(e, DocumentError::NotJson(_)), "{e}");
        assert!(
            e.to_string()
                .starts_with("not valid JSON: EOF while parsing"),
            "{e}"
        );
    }
}
