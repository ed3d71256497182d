//! `sluice-worker run` and `sluice-worker health`: see the crate docs of `sluice_worker`.

use clap::{Args, Parser, Subcommand};
use sluice_common::config::AwsClients;
use sluice_common::telemetry::{self, LogFormat};
use sluice_worker::WorkerArgs;
use std::process::ExitCode;
use std::time::Duration;
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
    Run(Box<WorkerArgs>),
    /// Ask a running worker's /health endpoint; exit 0 when healthy, 1 otherwise (the
    /// container health check: the image has no curl).
    Health(HealthArgs),
}

#[derive(Args)]
struct HealthArgs {
    /// The worker's --health-addr (host:port).
    #[arg(long, env = "SLUICE_HEALTH_ADDR")]
    addr: String,
    /// Seconds to wait for the answer.
    #[arg(long, default_value = "5")]
    timeout: u64,
}

#[tokio::main]
async fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Run(args) => {
            telemetry::init(LogFormat::parse(&args.log_format).unwrap_or_else(LogFormat::auto));
            // Registered before anything can print it.
            sluice_common::postgres::register_password(&args.database_url);
            match run(*args).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    // Through the scrubber, like every log line: library texts may carry anything.
                    eprintln!("Error: {}", telemetry::scrub(&format!("{e:#}")));
                    ExitCode::FAILURE
                }
            }
        }
        Command::Health(h) => {
            let addr = h
                .addr
                .strip_prefix("0.0.0.0:")
                .map(|port| format!("127.0.0.1:{port}"))
                .unwrap_or(h.addr);
            match sluice_common::http::get(&addr, "/health", Duration::from_secs(h.timeout)).await {
                Ok((200, body)) => {
                    print!("{body}");
                    ExitCode::SUCCESS
                }
                Ok((status, body)) => {
                    println!("HTTP {status}: {}", body.trim_end());
                    ExitCode::FAILURE
                }
                Err(e) => {
                    println!("no answer from {addr}: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

async fn run(args: WorkerArgs) -> anyhow::Result<()> {
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
