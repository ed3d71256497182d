//! The SQS message contract: one message per file, JSON, versioned by `v`.
//!
//! Invariants: a message names exactly one object version (`bucket`, `key`, `etag`); it carries
//! what the worker needs to claim the file without reading the manifest first, the typed
//! [`SourceFile`] the coordinator mapped from the key among it, so the worker never maps a key it
//! was given; a body that is not valid JSON, or of another version, is refused with
//! [`Error::BadMessage`], never guessed at.
//!
//! On the wire a file message keeps the top-level `schema` and `table` of earlier builds beside
//! `file`; a message without `file` (queued by an earlier coordinator) gets it from its `schema`,
//! `table` and the key's file name, once, when it is read.

use crate::error::Error;
use crate::mapping::{file_of, SourceFile};
use serde::{Deserialize, Serialize};

/// The only message version this build writes and reads.
pub const MESSAGE_VERSION: u32 = 1;

/// "Load this object version."
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMessage {
    /// Contract version; always [`MESSAGE_VERSION`] when written by this build.
    pub v: u32,
    pub bucket: String,
    pub key: String,
    /// ETag without surrounding quotes.
    pub etag: String,
    pub size: i64,
    /// RFC 3339, UTC.
    pub last_modified: String,
    /// What the key names, mapped once by the coordinator: schema and table folders verbatim
    /// (untrusted), file kind, format and compression.
    pub file: SourceFile,
}

/// A file message as JSON: the fields of earlier builds, and `file` (absent from messages an
/// earlier coordinator queued).
#[derive(Serialize, Deserialize)]
struct Wire {
    v: u32,
    bucket: String,
    key: String,
    etag: String,
    size: i64,
    last_modified: String,
    schema: String,
    table: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    file: Option<SourceFile>,
}

impl FileMessage {
    /// `schema.table` as written in the key: the manifest's table label and the rules' key.
    pub fn source_table(&self) -> String {
        self.file.source_table()
    }

    pub fn to_body(&self) -> String {
        let wire = Wire {
            v: self.v,
            bucket: self.bucket.clone(),
            key: self.key.clone(),
            etag: self.etag.clone(),
            size: self.size,
            last_modified: self.last_modified.clone(),
            schema: self.file.schema.clone(),
            table: self.file.table.clone(),
            file: Some(self.file.clone()),
        };
        serde_json::to_string(&wire).expect("a FileMessage always serializes")
    }

    /// Parses a body, refusing other versions and unknown shapes.
    pub fn from_body(message_id: &str, body: &str) -> Result<Self, Error> {
        let bad = |reason: String| Error::BadMessage {
            message_id: message_id.to_owned(),
            reason,
        };
        let value: serde_json::Value =
            serde_json::from_str(body).map_err(|e| bad(format!("body is not JSON: {e}")))?;
        match value.get("v").and_then(|v| v.as_u64()) {
            Some(v) if v == u64::from(MESSAGE_VERSION) => {}
            Some(v) => return Err(bad(format!("message version {v}, this build reads 1"))),
            None => return Err(bad("no message version field \"v\"".to_owned())),
        }
        let w: Wire = serde_json::from_value(value).map_err(|e| bad(format!("{e}")))?;
        if w.bucket.is_empty() || w.key.is_empty() || w.etag.is_empty() {
            return Err(bad("bucket, key and etag must not be empty".to_owned()));
        }
        let file = match w.file {
            Some(file) => file,
            None => {
                let name = w.key.rsplit('/').next().unwrap_or_default();
                file_of(&w.schema, &w.table, name)
                    .map_err(|e| bad(format!("key {}: {e}", w.key)))?
            }
        };
        Ok(FileMessage {
            v: w.v,
            bucket: w.bucket,
            key: w.key,
            etag: w.etag,
            size: w.size,
            last_modified: w.last_modified,
            file,
        })
    }
}

/// "A table's full-load generation is complete: remove the rows it did not contain." Sent by
/// the coordinator once every `LOAD` file of the generation is loaded and the generation has
/// been quiet for a while; `kind` is `"replace"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplaceMessage {
    pub v: u32,
    pub kind: String,
    pub bucket: String,
    /// Schema and table folders of the key, verbatim (untrusted).
    pub schema: String,
    pub table: String,
    /// Key prefix of the table's folder (`<prefix><schema>/<table>/`).
    pub folder: String,
    /// The generation's name: its start, or `refresh@<time>` for an operator's refresh.
    pub generation: String,
    /// RFC 3339: the generation's start. Rows last written by a file older than this, that the
    /// generation did not write again, are gone from the source.
    pub start: String,
    /// How many `LOAD` files (distinct keys) the generation has.
    pub files: u64,
    /// The generation's first file (`LOAD00000001`), whose manifest item records the outcome.
    pub head_key: String,
    pub head_etag: String,
}

impl ReplaceMessage {
    pub fn source_table(&self) -> String {
        format!("{}.{}", self.schema, self.table)
    }

    pub fn to_body(&self) -> String {
        serde_json::to_string(self).expect("a ReplaceMessage always serializes")
    }
}

/// Any message on the work queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    File(FileMessage),
    Replace(ReplaceMessage),
}

impl Message {
    /// Parses a body: a file message (no `kind`, or `"file"`) or a replace message.
    pub fn from_body(message_id: &str, body: &str) -> Result<Self, Error> {
        let bad = |reason: String| Error::BadMessage {
            message_id: message_id.to_owned(),
            reason,
        };
        let value: serde_json::Value =
            serde_json::from_str(body).map_err(|e| bad(format!("body is not JSON: {e}")))?;
        match value.get("kind").and_then(|k| k.as_str()) {
            None | Some("file") => FileMessage::from_body(message_id, body).map(Message::File),
            Some("replace") => {
                match value.get("v").and_then(|v| v.as_u64()) {
                    Some(v) if v == u64::from(MESSAGE_VERSION) => {}
                    other => {
                        return Err(bad(format!(
                            "message version {other:?}, this build reads 1"
                        )))
                    }
                }
                let m: ReplaceMessage =
                    serde_json::from_value(value).map_err(|e| bad(e.to_string()))?;
                if m.bucket.is_empty() || m.folder.is_empty() || m.head_key.is_empty() {
                    return Err(bad(
                        "bucket, folder and head_key must not be empty".to_owned()
                    ));
                }
                Ok(Message::Replace(m))
            }
            Some(other) => Err(bad(format!("unknown message kind {other:?}"))),
        }
    }
}

/// S3 returns ETags wrapped in double quotes; the manifest and messages store them bare.
pub fn bare_etag(etag: &str) -> String {
    etag.trim_matches('"').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> FileMessage {
        FileMessage {
            v: MESSAGE_VERSION,
            bucket: "lake".into(),
            key: "dms/public/orders/LOAD00000001.csv".into(),
            etag: "abc".into(),
            size: 10,
            last_modified: "2024-10-29T11:34:01.000Z".into(),
            file: crate::mapping::map_key("dms/", "dms/public/orders/LOAD00000001.csv").unwrap(),
        }
    }

    #[test]
    fn round_trip() {
        let m = sample();
        assert_eq!(FileMessage::from_body("m1", &m.to_body()).unwrap(), m);
    }

    #[test]
    fn the_typed_file_travels_and_earlier_messages_get_it_from_their_key() {
        let body: serde_json::Value = serde_json::from_str(&sample().to_body()).unwrap();
        // Earlier builds read these.
        assert_eq!(body["schema"], "public");
        assert_eq!(body["table"], "orders");
        assert_eq!(body["file"]["kind"], "full_load");
        assert_eq!(body["file"]["sequence"], 1);
        assert_eq!(body["file"]["format"], "csv");
        assert_eq!(body["file"]["compression"], "none");
        // A message of an earlier coordinator, without `file`.
        let earlier = r#"{"v":1,"bucket":"lake","key":"dms/hr/emp/2024/10/29/20241029-113401000.csv.gz",
            "etag":"e","size":1,"last_modified":"2024-10-29T11:34:01.000Z","schema":"hr","table":"emp"}"#;
        let m = FileMessage::from_body("m", earlier).unwrap();
        assert_eq!(m.source_table(), "hr.emp");
        assert_eq!(
            m.file.kind,
            crate::mapping::FileKind::Cdc {
                timestamp_ms: 1_730_201_641_000
            }
        );
        assert_eq!(m.file.compression, crate::mapping::Compression::Gzip);
        let unloadable = earlier.replace("000.csv.gz", "000.orc");
        let e = FileMessage::from_body("m", &unloadable).unwrap_err();
        assert!(e.to_string().contains(".orc"), "{e}");
    }

    #[test]
    fn refuses_garbage_and_other_versions() {
        let e = FileMessage::from_body("m1", "hello")
            .unwrap_err()
            .to_string();
        assert!(e.contains("m1") && e.contains("not JSON"), "{e}");
        let mut v: serde_json::Value = serde_json::from_str(&sample().to_body()).unwrap();
        v["v"] = 2.into();
        let e = FileMessage::from_body("m2", &v.to_string())
            .unwrap_err()
            .to_string();
        assert!(e.contains("version 2"), "{e}");
        let e = FileMessage::from_body("m3", "{\"v\":1}")
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing field"), "{e}");
        assert!(!FileMessage::from_body("m4", "{}")
            .unwrap_err()
            .is_transient());
    }

    #[test]
    fn messages_of_both_kinds_parse_and_unknown_kinds_are_refused() {
        let file = sample();
        assert_eq!(
            Message::from_body("m", &file.to_body()).unwrap(),
            Message::File(file)
        );
        let replace = ReplaceMessage {
            v: 1,
            kind: "replace".into(),
            bucket: "lake".into(),
            schema: "public".into(),
            table: "orders".into(),
            folder: "dms/public/orders/".into(),
            generation: "2024-10-29T11:00:00.000Z".into(),
            start: "2024-10-29T11:00:00.000Z".into(),
            files: 3,
            head_key: "dms/public/orders/LOAD00000001.csv".into(),
            head_etag: "e".into(),
        };
        assert_eq!(
            Message::from_body("m", &replace.to_body()).unwrap(),
            Message::Replace(replace)
        );
        let e = Message::from_body("m", "{\"v\":1,\"kind\":\"drop\"}").unwrap_err();
        assert!(e.to_string().contains("unknown message kind"), "{e}");
        let e = Message::from_body("m", "{\"v\":2,\"kind\":\"replace\"}").unwrap_err();
        assert!(e.to_string().contains("version"), "{e}");
    }

    #[test]
    fn etags_are_stored_bare() {
        assert_eq!(
            bare_etag("\"d41d8cd98f00b204e9800998ecf8427e\""),
            "d41d8cd98f00b204e9800998ecf8427e"
        );
        assert_eq!(bare_etag("abc-2"), "abc-2");
    }
}
