//! `sluice-worker run`: see the crate docs of `sluice_worker`.

use clap::{Parser, Subcommand};
use sluice_common::config::AwsClients;
use sluice_common::telemetry::{self, LogFormat};
use sluice_worker::WorkerArgs;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "sluice-worker",
    version,
    about = "Loads files from the queue into PostgreSQL, exactly once"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Receive and load files until SIGTERM (or until idle, with --exit-when-idle).
    Run(WorkerArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Command::Run(args) = Cli::parse().command;
    telemetry::init(LogFormat::parse(&args.log_format).unwrap_or_else(LogFormat::auto));
    let config = args.validate()?;
    let aws = AwsClients::from_env().await;
    let shutdown = CancellationToken::new();
    tokio::spawn(signal_shutdown(shutdown.clone()));
    sluice_worker::run(config, aws, shutdown).await?;
    Ok(())
}

/// SIGTERM (ECS scale-in) or Ctrl-C: stop receiving and drain.
async fn signal_shutdown(token: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("can install a SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("shutdown signal received");
    token.cancel();
}
