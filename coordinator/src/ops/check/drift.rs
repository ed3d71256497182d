//! Schema drift in the lake, for `check --source`: the columns each table's newest file names
//! (a CSV header, a Parquet schema) that its target lacks, reported by what the table's
//! `new_columns` will do about them: fail the file (error), leave the values out (warning), or
//! add them (note; an error when the role cannot alter the table).
//!
//! Cost is bounded per table, whatever the lake holds: one ranged GET of at most
//! [`HEAD_BYTES`] for a CSV file (the header must be within them; a `.gz` file is inflated
//! only that far); for Parquet, a GET of the last [`HEAD_BYTES`] and, when the footer is
//! longer, one more of the footer alone, at most [`MAX_FOOTER_BYTES`]. A file without a header
//! (or read with a `columns` list, or in document mode) names nothing and is not read.
//!
//! Must not: download a whole object, or decide anything with IO: [`newest_files`],
//! [`first_record`], [`parquet_names`] and [`findings`] are pure; [`lake_columns`] reads.

use super::names::{find, is_system, same_name};
use super::{CatalogColumn, Finding, Level, TableFacts};
use crate::listing::Listed;
use sluice_common::mapping::{Compression, Format};
use sluice_common::rules::{NewColumns, TableRules};
use std::collections::BTreeMap;
use std::io::Read;

/// Bytes read from the start of a CSV file (or the end of a Parquet file).
pub const HEAD_BYTES: usize = 64 << 10;
/// The longest Parquet footer `check` reads.
pub const MAX_FOOTER_BYTES: usize = 4 << 20;

/// What the newest file of a table says about its columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LakeColumns {
    /// The file names its columns (after `Op`, as the worker reads them).
    Named { key: String, names: Vec<String> },
    /// It should, but could not be read: why.
    Unread { key: String, why: String },
    /// The file does not name its columns (no header, a `columns` list, document mode).
    Unnamed,
}

/// Each source table's newest file: the latest `LastModified` (then the greatest key).
pub fn newest_files(listing: &[Listed]) -> BTreeMap<String, &Listed> {
    let mut newest: BTreeMap<String, &Listed> = BTreeMap::new();
    for o in listing {
        let Some(table) = o.source_table() else {
            continue;
        };
        let newer = |n: &&Listed| (&o.last_modified, &o.key) > (&n.last_modified, &n.key);
        if newest.get(&table).is_none_or(newer) {
            newest.insert(table, o);
        }
    }
    newest
}

/// The fields of the first record of `bytes` (RFC 4180: quotes, doubled quotes, the table's
/// delimiters; CRLF ends a row too when the row delimiter is `\n`). None when no record ends
/// within `bytes` and `complete` (the whole object) is false.
pub fn first_record(
    bytes: &[u8],
    delimiter: u8,
    row_delimiter: u8,
    complete: bool,
) -> Option<Vec<Vec<u8>>> {
    let mut fields = Vec::new();
    let mut field = Vec::new();
    let (mut quoted, mut i) = (false, 0);
    while i < bytes.len() {
        let b = bytes[i];
        if quoted {
            if b == b'"' && bytes.get(i + 1) == Some(&b'"') {
                field.push(b'"');
                i += 1;
            } else if b == b'"' {
                quoted = false;
            } else {
                field.push(b);
            }
        } else if b == b'"' {
            quoted = true;
        } else if b == delimiter {
            fields.push(std::mem::take(&mut field));
        } else if b == row_delimiter {
            if row_delimiter == b'\n' && field.last() == Some(&b'\r') {
                field.pop();
            }
            fields.push(field);
            return Some(fields);
        } else {
            field.push(b);
        }
        i += 1;
    }
    (complete && !quoted && !(fields.is_empty() && field.is_empty())).then(|| {
        fields.push(field);
        fields
    })
}

/// The top-level column names of a Parquet file from its last bytes (`tail`, ending with the
/// footer). `Err(Some(n))`: the footer needs the last `n` bytes; `Err(None)`: not Parquet.
pub fn parquet_names(tail: &[u8]) -> Result<Vec<String>, Option<usize>> {
    let n = tail.len();
    if n < 8 || &tail[n - 4..] != b"PAR1" {
        return Err(None);
    }
    let len = u32::from_le_bytes(tail[n - 8..n - 4].try_into().expect("4 bytes")) as usize;
    if len + 8 > n {
        return Err(Some(len + 8));
    }
    let meta =
        parquet::file::metadata::ParquetMetaDataReader::decode_metadata(&tail[n - 8 - len..n - 8])
            .map_err(|_| None)?;
    let root = meta.file_metadata().schema_descr().root_schema().clone();
    Ok(root
        .get_fields()
        .iter()
        .map(|f| f.name().to_owned())
        .collect())
}

/// Reads the column names of a table's newest file, at most a few ranged GETs.
pub async fn lake_columns(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    file: &Listed,
    rules: &TableRules,
) -> LakeColumns {
    let Ok(source) = &file.file else {
        return LakeColumns::Unnamed;
    };
    let key = file.key.clone();
    let unread = |why: String| LakeColumns::Unread {
        key: file.key.clone(),
        why,
    };
    let size = usize::try_from(file.size).unwrap_or(usize::MAX);
    match source.format {
        Format::Parquet if rules.document.is_none() => {
            let tail = match get_range(s3, bucket, file, format!("bytes=-{HEAD_BYTES}")).await {
                Ok(t) => t,
                Err(why) => return unread(why),
            };
            let names = match parquet_names(&tail) {
                Err(Some(need)) if need <= MAX_FOOTER_BYTES && need <= size => {
                    match get_range(s3, bucket, file, format!("bytes=-{need}")).await {
                        Ok(t) => parquet_names(&t),
                        Err(why) => return unread(why),
                    }
                }
                other => other,
            };
            match names {
                Ok(names) => LakeColumns::Named { key, names },
                Err(Some(need)) => unread(format!(
                    "its Parquet footer is {need} bytes, more than check reads \
                     ({MAX_FOOTER_BYTES})"
                )),
                Err(None) => unread("it is not a Parquet file".to_owned()),
            }
        }
        Format::Csv if rules.header && rules.columns.is_none() && rules.document.is_none() => {
            let range = format!("bytes=0-{}", HEAD_BYTES - 1);
            let head = match get_range(s3, bucket, file, range).await {
                Ok(h) => h,
                Err(why) => return unread(why),
            };
            let (text, complete) = match source.compression {
                Compression::None => (head.clone(), head.len() >= size),
                Compression::Gzip => {
                    let mut out = Vec::new();
                    let mut gz = flate2::read::MultiGzDecoder::new(&head[..]);
                    // A cut stream ends in an error; what came before it is the file's start.
                    let done = gz.read_to_end(&mut out).is_ok() && head.len() >= size;
                    (out, done)
                }
            };
            match first_record(&text, rules.delimiter, rules.row_delimiter, complete) {
                None => unread(format!(
                    "its header does not end within its first {HEAD_BYTES} bytes"
                )),
                Some(fields) => LakeColumns::Named {
                    key,
                    names: fields
                        .iter()
                        .map(|f| String::from_utf8_lossy(f).into_owned())
                        .collect(),
                },
            }
        }
        _ => LakeColumns::Unnamed,
    }
}

/// One ranged GET of exactly the listed version (`If-Match`), as bytes; Err: why not.
async fn get_range(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    file: &Listed,
    range: String,
) -> Result<Vec<u8>, String> {
    let out = s3
        .get_object()
        .bucket(bucket)
        .key(&file.key)
        .if_match(format!("\"{}\"", file.etag))
        .range(range)
        .send()
        .await
        .map_err(|e| sluice_common::error::sdk_error_text(&e))?;
    let body = out.body.collect().await.map_err(|e| e.to_string())?;
    Ok(body.into_bytes().to_vec())
}

/// The findings of a table's drift: the columns its newest file names that the target lacks.
pub fn findings(
    (source, target): (&str, &str),
    rules: &TableRules,
    role: &str,
    facts: &TableFacts,
    lake: &LakeColumns,
) -> Vec<Finding> {
    let finding = |level, message| Finding {
        table: source.to_owned(),
        target: target.to_owned(),
        level,
        rule: "new_columns".to_owned(),
        message,
    };
    let (key, names) = match lake {
        LakeColumns::Unnamed => return Vec::new(),
        LakeColumns::Unread { key, why } => {
            let message = format!("the columns of the newest file {key} were not read: {why}");
            return vec![finding(Level::Note, message)];
        }
        LakeColumns::Named { key, names } => (key, names),
    };
    let lacking = lacking(rules, &facts.columns, names);
    if lacking.is_empty() {
        return Vec::new();
    }
    let list = lacking
        .iter()
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let has = format!("the newest file {key} has columns {target} lacks: {list}");
    let (level, message) = match rules.new_columns {
        NewColumns::Fail => (
            Level::Error,
            format!(
                "{has}; files like it fail (unknown_column): add them to {target}, or set \
                 new_columns = \"add\" (or \"ignore\")"
            ),
        ),
        NewColumns::Ignore => (
            Level::Warning,
            format!("{has}; their values are left out (new_columns = \"ignore\")"),
        ),
        NewColumns::Add if !facts.can_alter => (
            Level::Error,
            format!(
                "{has}; new_columns = \"add\" cannot add them: role {role} does not own \
                 {target}"
            ),
        ),
        NewColumns::Add => (
            Level::Note,
            format!(
                "{has}; the worker adds them when it loads such a file (new_columns = \"add\")"
            ),
        ),
    };
    vec![finding(level, message)]
}

/// A table that opts in to `new_columns = "add"` whose target the role does not own: the
/// worker could not add a column (a warning: only a file with a new column fails).
pub fn ownership(
    (source, target): (&str, &str),
    rules: &TableRules,
    role: &str,
    facts: &TableFacts,
) -> Option<Finding> {
    (rules.new_columns == NewColumns::Add && !facts.can_alter).then(|| Finding {
        table: source.to_owned(),
        target: target.to_owned(),
        level: Level::Warning,
        rule: "new_columns".to_owned(),
        message: format!(
            "new_columns = \"add\" needs role {role} to own {target} (ALTER TABLE ... OWNER TO \
             {role}): a file with a new column fails (permission_denied)"
        ),
    })
}

/// The file's names (after a leading `Op`) that no data column takes, as the worker matches
/// them; the timestamp column may be a version only and is never lacking.
fn lacking(rules: &TableRules, columns: &[CatalogColumn], names: &[String]) -> Vec<String> {
    let soft = rules.soft_delete.as_deref();
    let data: Vec<&CatalogColumn> = columns
        .iter()
        .filter(|c| !is_system(&c.name) && soft != Some(c.name.as_str()) && !c.generated)
        .collect();
    let has_op = names
        .first()
        .is_some_and(|n| n.eq_ignore_ascii_case("op") && find(&data, n).is_none());
    let ts = rules.timestamp_column.as_deref();
    let mut out: Vec<String> = Vec::new();
    for n in &names[usize::from(has_op)..] {
        if find(&data, n).is_none() && !ts.is_some_and(|t| same_name(t, n)) && !out.contains(n) {
            out.push(n.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, generated: bool) -> CatalogColumn {
        CatalogColumn {
            name: name.to_owned(),
            sql_type: "text".to_owned(),
            not_null: false,
            has_default: false,
            generated,
            key_position: i32::from(name == "id"),
        }
    }

    fn facts(can_alter: bool) -> TableFacts {
        TableFacts {
            columns: vec![
                col("id", false),
                col("Name", false),
                col("total", true),
                col("_sluice_version", false),
            ],
            schema_usage: true,
            select: true,
            insert: true,
            update: true,
            delete: true,
            can_alter,
        }
    }

    fn named(names: &[&str]) -> LakeColumns {
        LakeColumns::Named {
            key: "dms/s/t/LOAD2.csv".to_owned(),
            names: names.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn the_first_record_is_read_as_the_worker_reads_it() {
        let rec = |b: &[u8], complete| first_record(b, b',', b'\n', complete);
        let s = |v: Option<Vec<Vec<u8>>>| {
            v.map(|f| {
                f.into_iter()
                    .map(|x| String::from_utf8(x).unwrap())
                    .collect::<Vec<_>>()
            })
        };
        assert_eq!(
            s(rec(b"Op,id,\"a,\"\"b\"\"\nc\",x\r\n1,2", false)),
            Some(vec![
                "Op".into(),
                "id".into(),
                "a,\"b\"\nc".into(),
                "x".into()
            ])
        );
        assert_eq!(s(rec(b"id,na", false)), None);
        assert_eq!(s(rec(b"id,na", true)), Some(vec!["id".into(), "na".into()]));
        assert_eq!(s(rec(b"", true)), None);
        assert_eq!(
            s(first_record(b"a|b~c", b'|', b'~', false)),
            Some(vec!["a".into(), "b".into()])
        );
    }

    #[test]
    fn newest_file_per_table() {
        let l = |key: &str, at: &str| Listed::new("dms/", key, "e", 1, at);
        let listing = vec![
            l("dms/s/t/LOAD00000001.csv", "2024-01-02T00:00:00Z"),
            l("dms/s/t/20240101-000000000.csv", "2024-01-03T00:00:00Z"),
            l("dms/s/u/LOAD00000001.parquet", "2024-01-01T00:00:00Z"),
            l("dms/s/t/", "2024-02-01T00:00:00Z"),
        ];
        let n = newest_files(&listing);
        assert_eq!(n["s.t"].key, "dms/s/t/20240101-000000000.csv");
        assert_eq!(n["s.u"].key, "dms/s/u/LOAD00000001.parquet");
        assert_eq!(n.len(), 2);
    }

    #[test]
    fn lacking_columns_by_the_table_s_new_columns_rule() {
        let mut rules = TableRules {
            timestamp_column: Some("dms_ts".to_owned()),
            ..TableRules::default()
        };
        let lake = named(&["Op", "dms_ts", "id", "NAME", "email", "total", "email"]);
        let f = findings(("s.t", "w.t"), &rules, "r", &facts(true), &lake);
        assert_eq!(f.len(), 1);
        assert_eq!(
            (f[0].level, f[0].rule.as_str()),
            (Level::Error, "new_columns")
        );
        assert!(
            f[0].message
                .contains("lacks: \"email\", \"total\"; files like it fail"),
            "{}",
            f[0].message
        );
        rules.new_columns = NewColumns::Ignore;
        let f = findings(("s.t", "w.t"), &rules, "r", &facts(true), &lake);
        assert_eq!(f[0].level, Level::Warning);
        rules.new_columns = NewColumns::Add;
        let f = findings(("s.t", "w.t"), &rules, "r", &facts(true), &lake);
        assert_eq!(f[0].level, Level::Note);
        let f = findings(("s.t", "w.t"), &rules, "r", &facts(false), &lake);
        assert_eq!(f[0].level, Level::Error);
        assert!(f[0].message.contains("role r does not own w.t"));
        let o = ownership(("s.t", "w.t"), &rules, "r", &facts(false)).unwrap();
        assert_eq!(o.level, Level::Warning);
        assert!(ownership(("s.t", "w.t"), &rules, "r", &facts(true)).is_none());
        // Nothing lacking, nothing named, or unread.
        let fits = named(&["id", "name"]);
        assert!(findings(("s.t", "w.t"), &rules, "r", &facts(true), &fits).is_empty());
        assert!(findings(
            ("s.t", "w.t"),
            &rules,
            "r",
            &facts(true),
            &LakeColumns::Unnamed
        )
        .is_empty());
        let unread = LakeColumns::Unread {
            key: "k".into(),
            why: "AccessDenied".into(),
        };
        let f = findings(("s.t", "w.t"), &rules, "r", &facts(true), &unread);
        assert_eq!(f[0].level, Level::Note);
    }

    #[test]
    fn parquet_footers_are_found_from_the_tail() {
        assert_eq!(parquet_names(b"not parquet"), Err(None));
        let mut tail = vec![0u8; 4];
        tail.extend_from_slice(&100u32.to_le_bytes());
        tail.extend_from_slice(b"PAR1");
        assert_eq!(parquet_names(&tail), Err(Some(108)));
    }
}
