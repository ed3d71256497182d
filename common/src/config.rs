//! Settings shared by both binaries, validated once at start-up.
//!
//! Values come from the environment (or equivalent flags, parsed by each binary). Validation
//! happens here, in constructors, so a bad setting stops the process with a message naming it.
//! Secrets (the database password) are never part of a `Display` or `Debug` text: see
//! [`redact_url`].

use crate::error::Error;
use aws_config::BehaviorVersion;
use std::fmt;

/// Where the lake is: `s3://bucket/prefix/`. The prefix may be empty; when it is not, it ends
/// with `/` so that `dms/` never matches `dms-old/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceLocation {
    pub bucket: String,
    pub prefix: String,
}

impl SourceLocation {
    /// Parses `s3://bucket[/prefix[/]]`.
    pub fn parse(s: &str) -> Result<Self, Error> {
        let bad = |reason: &str| Error::Config {
            setting: "SLUICE_SOURCE",
            reason: format!("{reason} (got {s:?}, want s3://bucket/prefix/)"),
        };
        let rest = s
            .strip_prefix("s3://")
            .ok_or_else(|| bad("must start with s3://"))?;
        let (bucket, prefix) = match rest.split_once('/') {
            Some((b, p)) => (b, p),
            None => (rest, ""),
        };
        if bucket.is_empty() {
            return Err(bad("bucket name is empty"));
        }
        if !bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        {
            return Err(bad("bucket name may hold only a-z, 0-9, '-' and '.'"));
        }
        let mut prefix = prefix.trim_start_matches('/').to_owned();
        if !prefix.is_empty() && !prefix.ends_with('/') {
            prefix.push('/');
        }
        Ok(SourceLocation {
            bucket: bucket.to_owned(),
            prefix,
        })
    }
}

impl fmt::Display for SourceLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.prefix)
    }
}

/// Returns `value` or a config error naming `setting`.
pub fn required(setting: &'static str, value: Option<String>) -> Result<String, Error> {
    match value {
        Some(v) if !v.trim().is_empty() => Ok(v),
        _ => Err(Error::Config {
            setting,
            reason: "is required".to_owned(),
        }),
    }
}

/// A connection URL with its password replaced by `***`, for logs and errors.
/// Handles `scheme://user:password@host/...` (and a `password=` query parameter) and
/// `password=...` key-value strings (quoted values included).
pub fn redact_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        // Over-redaction is fine, under-redaction is not: the credentials end at the last '@',
        // and a `password` parameter is redacted wherever it appears.
        let params = |s: &str| -> String {
            let mut out = String::new();
            for (i, part) in s.split('&').enumerate() {
                if i > 0 {
                    out.push('&');
                }
                let (lead, param) = match part.rfind('?') {
                    Some(q) => part.split_at(q + 1),
                    None => ("", part),
                };
                out.push_str(lead);
                match param.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => {
                        out.push_str(&format!("{k}=***"))
                    }
                    _ => out.push_str(param),
                }
            }
            out
        };
        return match rest.rsplit_once('@') {
            // An '@' after a '?': where the credentials end is ambiguous; hide it all.
            Some((creds, _)) if creds.contains('?') => format!("{scheme}://***"),
            Some((creds, tail)) => match creds.split_once(':') {
                Some((user, _)) => format!("{scheme}://{user}:***@{}", params(tail)),
                None => format!("{scheme}://{}@{}", params(creds), params(tail)),
            },
            None => format!("{scheme}://{}", params(rest)),
        };
    }
    // key=value pairs; a value may be quoted with '...' and contain spaces and \' escapes.
    let mut out = String::new();
    let mut rest = url;
    while let Some(eq) = rest.find('=') {
        let before = rest[..eq].trim_end();
        let key_start = before
            .rfind(char::is_whitespace)
            .map(|i| i + 1)
            .unwrap_or(0);
        let key = &before[key_start..];
        out.push_str(&rest[..=eq]);
        let value = rest[eq + 1..].trim_start();
        out.push_str(&rest[eq + 1..rest.len() - value.len()]);
        let end = if let Some(quoted) = value.strip_prefix('\'') {
            let mut i = 0;
            let bytes = quoted.as_bytes();
            while i < bytes.len() && bytes[i] != b'\'' {
                i += if bytes[i] == b'\\' { 2 } else { 1 };
            }
            (i + 2).min(value.len())
        } else {
            value.find(char::is_whitespace).unwrap_or(value.len())
        };
        if key.eq_ignore_ascii_case("password") {
            out.push_str("***");
        } else {
            out.push_str(&value[..end]);
        }
        rest = &value[end..];
    }
    out.push_str(rest);
    out
}

/// The three AWS clients, built from the standard chain (`AWS_REGION`, credentials,
/// `AWS_ENDPOINT_URL`). S3 uses path-style addressing when an endpoint override is set, which is
/// what local emulators need.
#[derive(Clone, Debug)]
pub struct AwsClients {
    pub s3: aws_sdk_s3::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
}

impl AwsClients {
    pub async fn from_env() -> Self {
        let shared = aws_config::defaults(BehaviorVersion::latest()).load().await;
        let endpoint_override = std::env::var("AWS_ENDPOINT_URL")
            .map(|v| !v.is_empty())
            .unwrap_or(false);
        let s3_config = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(endpoint_override)
            .build();
        AwsClients {
            s3: aws_sdk_s3::Client::from_conf(s3_config),
            sqs: aws_sdk_sqs::Client::new(&shared),
            dynamodb: aws_sdk_dynamodb::Client::new(&shared),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_with_prefix_gets_trailing_slash() {
        let s = SourceLocation::parse("s3://lake/dms").unwrap();
        assert_eq!(s.bucket, "lake");
        assert_eq!(s.prefix, "dms/");
        assert_eq!(s.to_string(), "s3://lake/dms/");
    }

    #[test]
    fn source_without_prefix() {
        for input in ["s3://lake", "s3://lake/"] {
            let s = SourceLocation::parse(input).unwrap();
            assert_eq!((s.bucket.as_str(), s.prefix.as_str()), ("lake", ""));
        }
    }

    #[test]
    fn source_errors_name_the_setting() {
        for input in ["lake/dms", "s3:///dms", "s3://Lake_X/"] {
            let err = SourceLocation::parse(input).unwrap_err().to_string();
            assert!(err.contains("SLUICE_SOURCE"), "{err}");
        }
    }

    #[test]
    fn required_rejects_blank() {
        assert!(required("SLUICE_QUEUE_URL", Some("  ".into())).is_err());
        assert!(required("SLUICE_QUEUE_URL", None)
            .unwrap_err()
            .to_string()
            .contains("bad setting SLUICE_QUEUE_URL: is required"));
        assert_eq!(required("X", Some("v".into())).unwrap(), "v");
    }

    #[test]
    fn redaction_hides_passwords() {
        assert_eq!(
            redact_url("postgres://u:s3cret@h:5432/db?sslmode=require"),
            "postgres://u:***@h:5432/db?sslmode=require"
        );
        assert_eq!(
            redact_url("host=h user=u password=s3cret dbname=d"),
            "host=h user=u password=*** dbname=d"
        );
        assert_eq!(redact_url("postgres://h/db"), "postgres://h/db");
        assert!(!redact_url("postgres://u:p@ss@h/db").contains("p@ss"));
        assert_eq!(
            redact_url("postgres://u@h/db?sslmode=disable&password=s3cret&x=1"),
            "postgres://u@h/db?sslmode=disable&password=***&x=1"
        );
        assert_eq!(
            redact_url("host=h password='a b\\' c' user=u"),
            "host=h password=*** user=u"
        );
        assert_eq!(
            redact_url("password = s3cret host=h"),
            "password = *** host=h"
        );
        assert!(!redact_url("postgres://u:pa?ss@h/db").contains("ss"));
        assert!(!redact_url("postgres://h/db?password=x@yz").contains("yz"));
        assert!(!redact_url("postgres://u:a&b:c@h/db").contains("b:c"));
    }
}
