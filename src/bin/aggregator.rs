//! The `aggregator` daemon binary: parses the command line, loads the config, sets up logging,
//! registers the signals, binds the listeners, and hands everything to the library.

use std::path::PathBuf;
use std::process::ExitCode;

use aggregator::archive::CountingSink;
use aggregator::{Config, Daemon, Listeners};
use clap::Parser;
use tokio::signal::unix::{signal, SignalKind};

/// Telemetry aggregation daemon: priority fan-in, backpressure, fan-out and a lossless drain.
#[derive(Debug, Parser)]
#[command(name = "aggregator", version)]
struct Cli {
    /// Path of the configuration file.
    #[arg(long, default_value = "config/aggregator.toml")]
    config: PathBuf,
    /// Validate the configuration and exit: status 0 when valid, 2 when not.
    #[arg(long)]
    check_config: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(&cli.config) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("aggregator: invalid configuration: {err}");
            return ExitCode::from(2);
        }
    };
    if cli.check_config {
        println!("{}: configuration is valid", cli.config.display());
        return ExitCode::SUCCESS;
    }
    aggregator::logging::init(&config.log);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            tracing::error!(error = %err, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(config)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(err) => {
            tracing::error!("startup failed: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the daemon; `Ok(clean)` tells whether the drain accounted for every accepted frame.
async fn serve(config: Config) -> std::io::Result<bool> {
    // Registered before binding, so a failure is a startup error and not a lost signal later.
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let listeners = Listeners::bind(&config).await?;
    tracing::info!(
        uplink = %listeners.uplink.local_addr()?,
        replay = %listeners.replay.local_addr()?,
        version = env!("CARGO_PKG_VERSION"),
        "aggregator listening"
    );
    let daemon = Daemon::new(config, Box::new(CountingSink::default()));
    let shutdown = async move {
        let name = tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
        };
        tracing::info!(signal = name, "shutdown requested");
    };
    let report = daemon.run(listeners, shutdown).await;
    Ok(report.is_clean())
}
