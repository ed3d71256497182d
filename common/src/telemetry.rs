//! Logging set-up shared by both binaries: `tracing` with text output on a terminal and JSON
//! lines otherwise (what CloudWatch Logs wants). Field names are fixed across the code base:
//! `bucket`, `key`, `etag`, `table`, `message_id`, `attempt`, `worker`, `error`.
//!
//! Secrets never reach the output: besides the redaction at the source (connection URLs are
//! logged through [`crate::config::redact_url`]), every secret the process holds (the database
//! password, the AWS secret key and session token) is registered with [`add_secret`], and every
//! log line, panic message and manifest error text passes through [`scrub`], which replaces them
//! with `***`, whatever library produced the text.

use std::io::{IsTerminal, Write};
use std::sync::RwLock;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// Output format of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    /// JSON unless standard error is a terminal.
    pub fn auto() -> Self {
        if std::io::stderr().is_terminal() {
            LogFormat::Text
        } else {
            LogFormat::Json
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "text" => Some(LogFormat::Text),
            "json" => Some(LogFormat::Json),
            "auto" => Some(LogFormat::auto()),
            _ => None,
        }
    }
}

/// Installs the global subscriber; `RUST_LOG` overrides the default `info` level. Logs go to
/// standard error so that standard output stays for command results (`--json`) and metric
/// lines (`--metrics-emf`). Registers the AWS secrets of the environment for [`scrub`] and
/// installs a panic hook that scrubs too.
pub fn init(format: LogFormat) {
    for var in [
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "SLUICE_DB_PASSWORD",
    ] {
        if let Ok(v) = std::env::var(var) {
            add_secret(&v);
        }
    }
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new("info,aws_config=warn,aws_smithy_runtime=warn,tokio_postgres=warn")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(ScrubbedStderr);
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    // A second init (tests start several components in one process) keeps the first subscriber.
    if result.is_ok() {
        std::panic::set_hook(Box::new(|info| {
            let text = scrub(&info.to_string());
            let _ = writeln!(std::io::stderr(), "{text}");
        }));
    }
}

/// Secrets shorter than this are not scrubbed (they would mangle every line); no real password
/// or key is that short.
const MIN_SECRET_LEN: usize = 4;

static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Registers a secret: from now on [`scrub`] replaces it (and its JSON-escaped and
/// percent-encoded forms) with `***`.
pub fn add_secret(secret: &str) {
    if secret.chars().count() < MIN_SECRET_LEN {
        return;
    }
    let mut forms = vec![secret.to_owned()];
    let json = serde_json::to_string(secret).expect("a string serializes");
    forms.push(json[1..json.len() - 1].to_owned());
    forms.push(format!("{secret:?}").trim_matches('"').to_owned());
    forms.push(percent_encode(secret, false));
    forms.push(percent_encode(secret, true));
    let mut list = SECRETS.write().expect("secrets lock");
    for f in forms {
        if !list.contains(&f) {
            list.push(f);
        }
    }
    // Longest first, so a form that contains another is replaced whole.
    list.sort_by_key(|s| std::cmp::Reverse(s.len()));
}

/// `text` with every registered secret replaced by `***`.
pub fn scrub(text: &str) -> String {
    let list = SECRETS.read().expect("secrets lock");
    let mut out = text.to_owned();
    for s in list.iter() {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), "***");
        }
    }
    out
}

/// Percent-encodes all but RFC 3986's unreserved characters (as the image's entrypoint does).
fn percent_encode(s: &str, lower: bool) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else if lower {
            out.push_str(&format!("%{b:02x}"));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Standard error, one scrubbed write per log event.
struct ScrubbedStderr;

impl<'a> MakeWriter<'a> for ScrubbedStderr {
    type Writer = EventBuffer;
    fn make_writer(&'a self) -> Self::Writer {
        EventBuffer(Vec::with_capacity(256))
    }
}

/// Collects one event's text; scrubs and writes it when dropped.
struct EventBuffer(Vec<u8>);

impl Write for EventBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for EventBuffer {
    fn drop(&mut self) {
        if self.0.is_empty() {
            return;
        }
        let text = scrub(&String::from_utf8_lossy(&self.0));
        let _ = std::io::stderr().lock().write_all(text.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_replaces_every_form_of_a_secret() {
        add_secret("p@ss\"word/42");
        add_secret("abc"); // too short: ignored
        let line =
            r#"url postgres://u:p%40ss%22word%2F42@h json "p@ss\"word/42" raw p@ss"word/42 abc"#;
        let out = scrub(line);
        assert!(!out.contains("word"), "{out}");
        assert!(out.ends_with("abc"), "{out}");
        assert_eq!(out.matches("***").count(), 3, "{out}");
    }
}
