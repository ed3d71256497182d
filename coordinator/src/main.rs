//! `sluice-coordinator`: see the crate docs of `sluice_coordinator`.

use clap::Parser;
use sluice_common::config::AwsClients;
use sluice_common::telemetry::{self, LogFormat};
use sluice_coordinator::cli::{execute, Cli};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    telemetry::init(LogFormat::parse(&cli.common.log_format).unwrap_or_else(LogFormat::auto));
    let aws = AwsClients::from_env().await;
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("can install a SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        token.cancel();
    });
    match execute(cli, aws, shutdown).await {
        Ok(code) => std::process::ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            // Through the scrubber, like every log line: library texts may carry anything.
            eprintln!("Error: {}", telemetry::scrub(&e.to_string()));
            std::process::ExitCode::FAILURE
        }
    }
}
