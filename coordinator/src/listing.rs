//! The lake as one listing: every object under the source prefix, each key mapped once to the
//! file it names (or why it names none). Every later step (the diff plan, the generations, the
//! messages, the operator's reports) reads that mapping from here; none maps a listed key
//! again.
//!
//! Must not: read or write the manifest, or decide anything about a file.

use crate::error::CoordinatorError;
use sluice_common::mapping::{map_key, SourceFile, Unmapped};
use sluice_common::message::bare_etag;
use sluice_common::timefmt;

/// One object from the listing, with what its key names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub key: String,
    /// Bare ETag (no quotes).
    pub etag: String,
    pub size: i64,
    /// RFC 3339, UTC.
    pub last_modified: String,
    /// The key under the lake's prefix, mapped once: the file it names, or why it names none.
    pub file: Result<SourceFile, Unmapped>,
}

impl Listed {
    /// An object of the lake whose prefix is `lake_prefix`; its key is mapped here.
    pub fn new(lake_prefix: &str, key: &str, etag: &str, size: i64, last_modified: &str) -> Self {
        Listed {
            key: key.to_owned(),
            etag: etag.to_owned(),
            size,
            last_modified: last_modified.to_owned(),
            file: map_key(lake_prefix, key),
        }
    }

    /// `schema.table` of the file, when the key names one.
    pub fn source_table(&self) -> Option<String> {
        self.file.as_ref().ok().map(SourceFile::source_table)
    }

    /// A folder marker (`.../`): never a file, never recorded.
    pub fn is_folder(&self) -> bool {
        self.key.ends_with('/')
    }
}

/// Lists every object of `bucket` under `prefix` (the lake's prefix or a narrower one),
/// paginated, each key mapped under `lake_prefix`.
pub async fn list_objects(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    lake_prefix: &str,
    prefix: &str,
) -> Result<Vec<Listed>, CoordinatorError> {
    let request = ListRequest {
        prefix,
        start_after: None,
        delimiter: false,
    };
    Ok(list_range(s3, bucket, lake_prefix, &request).await?.objects)
}

/// One listing: a prefix, optionally only the keys after `start_after`, optionally only one
/// level (`delimiter`: the sub-folders come back as `folders`, not their objects).
#[derive(Debug, Clone, Copy)]
pub struct ListRequest<'a> {
    pub prefix: &'a str,
    pub start_after: Option<&'a str>,
    pub delimiter: bool,
}

/// What a listing returned, and what it cost.
#[derive(Debug, Default)]
pub struct Listing {
    pub objects: Vec<Listed>,
    /// Sub-folders (`CommonPrefixes`), with a delimiter only.
    pub folders: Vec<String>,
    /// `ListObjectsV2` calls made.
    pub calls: usize,
}

/// Lists what `request` asks for, paginated, each key mapped under `lake_prefix`.
pub async fn list_range(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    lake_prefix: &str,
    request: &ListRequest<'_>,
) -> Result<Listing, CoordinatorError> {
    let prefix = request.prefix;
    let mut out = Listing::default();
    let mut token: Option<String> = None;
    loop {
        let page = s3
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_start_after(request.start_after.map(str::to_owned))
            .set_delimiter(request.delimiter.then(|| "/".to_owned()))
            .set_continuation_token(token.take())
            .send()
            .await
            .map_err(|e| CoordinatorError::List {
                bucket: bucket.to_owned(),
                prefix: prefix.to_owned(),
                message: sluice_common::error::sdk_error_text(&e),
                transient: sluice_common::error::sdk_error_is_transient(&e),
            })?;
        out.calls += 1;
        for o in page.contents() {
            let last_modified = o
                .last_modified()
                .and_then(|t| time::OffsetDateTime::from_unix_timestamp_nanos(t.as_nanos()).ok())
                .map(timefmt::format)
                .unwrap_or_default();
            out.objects.push(Listed::new(
                lake_prefix,
                o.key().unwrap_or_default(),
                &bare_etag(o.e_tag().unwrap_or_default()),
                o.size().unwrap_or(0),
                &last_modified,
            ));
        }
        out.folders.extend(
            page.common_prefixes()
                .iter()
                .filter_map(|p| p.prefix().map(str::to_owned)),
        );
        match page.next_continuation_token() {
            Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_owned()),
            _ => return Ok(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_common::mapping::FileKind;

    #[test]
    fn a_listed_key_is_mapped_once_under_the_lake_prefix() {
        let o = Listed::new("dms/", "dms/s/t/LOAD00000002.csv", "e", 1, "t");
        let f = o.file.as_ref().unwrap();
        assert_eq!(f.kind, FileKind::FullLoad { sequence: 2 });
        assert_eq!(o.source_table().as_deref(), Some("s.t"));
        let folder = Listed::new("dms/", "dms/s/", "", 0, "t");
        assert!(folder.is_folder());
        assert_eq!(folder.file, Err(Unmapped::Folder));
        assert_eq!(
            Listed::new("dms/", "dms/readme.txt", "x", 1, "t").source_table(),
            None
        );
    }
}
