//! Logging set-up shared by both binaries: `tracing` with text output on a terminal and JSON
//! lines otherwise (what CloudWatch Logs wants). Field names are fixed across the code base:
//! `bucket`, `key`, `etag`, `table`, `message_id`, `attempt`, `worker`, `error`.

use std::io::IsTerminal;
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
/// standard error so that standard output stays for command results (`--json`).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new("info,aws_config=warn,aws_smithy_runtime=warn,tokio_postgres=warn")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    // A second init (tests start several components in one process) keeps the first subscriber.
    let _ = result;
}
