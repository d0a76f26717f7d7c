//! The `aggregator` daemon binary: parses the command line, loads the config, sets up logging,
//! registers the signals, binds the listeners, and hands everything to the library.

use std::path::PathBuf;
use std::process::ExitCode;

use aggregator::archive::CountingSink;
use aggregator::config::LogFormat;
use aggregator::monitor::{self, MonitorState};
use aggregator::{Config, Daemon, Listeners};
use clap::Parser;
use sd_notify::NotifyState;
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
    /// Log one JSON object per line (for journald and Docker), whatever `log.format` says.
    #[arg(long)]
    log_json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut config = match Config::load(&cli.config) {
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
    if cli.log_json {
        config.log.format = LogFormat::Json;
    }
    aggregator::logging::init(&config.log);
    let runtime = match config.runtime.build() {
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
    let monitor_listener = match config.monitor.enabled {
        true => Some(bind_monitor(&config).await?),
        false => None,
    };
    tracing::info!(
        uplink = %listeners.uplink.local_addr()?,
        replay = %listeners.replay.local_addr()?,
        monitor = %monitor_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
            .map_or("disabled".to_string(), |a| a.to_string()),
        version = env!("CARGO_PKG_VERSION"),
        "aggregator listening"
    );
    let daemon = Daemon::new(config, Box::new(CountingSink::default()));
    let monitor_stop = tokio_util::sync::CancellationToken::new();
    let monitor = monitor_listener.map(|listener| {
        let state = MonitorState::new(daemon.stats(), daemon.router(), daemon.health());
        tokio::spawn(monitor::serve(
            listener,
            state,
            monitor_stop.clone().cancelled_owned(),
        ))
    });
    notify_systemd(NotifyState::Ready);
    let shutdown = async move {
        let name = tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
        };
        tracing::info!(signal = name, "shutdown requested");
        notify_systemd(NotifyState::Stopping);
    };
    let report = daemon.run(listeners, shutdown).await;
    monitor_stop.cancel();
    if let Some(monitor) = monitor {
        if let Ok(Err(err)) = monitor.await {
            tracing::warn!(error = %err, "monitoring endpoint ended with an error");
        }
    }
    Ok(report.is_clean())
}

async fn bind_monitor(config: &Config) -> std::io::Result<tokio::net::TcpListener> {
    let addr = config.monitor.listen;
    tokio::net::TcpListener::bind(addr).await.map_err(|err| {
        std::io::Error::new(
            err.kind(),
            format!("cannot bind the monitor listener on {addr}: {err}"),
        )
    })
}

/// Tells systemd about a state change when running under `Type=notify`; a no-op elsewhere.
fn notify_systemd(state: NotifyState) {
    if let Err(err) = sd_notify::notify(false, &[state]) {
        tracing::debug!(error = %err, "sd_notify failed");
    }
}
