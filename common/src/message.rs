//! The SQS message contract: one message per file, JSON, versioned by `v`.
//!
//! Invariants: a message names exactly one object version (`bucket`, `key`, `etag`); it carries
//! what the worker needs to claim the file without reading the manifest first; a body that is
//! not valid JSON, or of another version, is refused with [`Error::BadMessage`], never guessed at.

use crate::error::Error;
use serde::{Deserialize, Serialize};

/// The only message version this build writes and reads.
pub const MESSAGE_VERSION: u32 = 1;

/// "Load this object version."
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Schema folder of the key, verbatim (untrusted).
    pub schema: String,
    /// Table folder of the key, verbatim (untrusted).
    pub table: String,
}

impl FileMessage {
    /// `schema.table` as written in the key: the manifest's table label and the rules' key.
    pub fn source_table(&self) -> String {
        format!("{}.{}", self.schema, self.table)
    }

    pub fn to_body(&self) -> String {
        serde_json::to_string(self).expect("a FileMessage always serializes")
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
        let message: FileMessage =
            serde_json::from_value(value).map_err(|e| bad(format!("{e}")))?;
        if message.bucket.is_empty() || message.key.is_empty() || message.etag.is_empty() {
            return Err(bad("bucket, key and etag must not be empty".to_owned()));
        }
        Ok(message)
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
            schema: "public".into(),
            table: "orders".into(),
        }
    }

    #[test]
    fn round_trip() {
        let m = sample();
        assert_eq!(FileMessage::from_body("m1", &m.to_body()).unwrap(), m);
    }

    #[test]
    fn refuses_garbage_and_other_versions() {
        let e = FileMessage::from_body("m1", "hello")
            .unwrap_err()
            .to_string();
        assert!(e.contains("m1") && e.contains("not JSON"), "{e}");
        let mut v: serde_json::Value = serde_json::to_value(sample()).unwrap();
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
