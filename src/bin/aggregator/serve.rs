//! The daemon itself (`aggregator` without a subcommand): loads and checks the config, sets up
//! logging, registers the signals, binds every listener, and hands them to the library's
//! [`Daemon`].

use std::io::ErrorKind;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use aggregator::catalog::store::Store;
use aggregator::catalog::CatalogHandle;
use aggregator::config::{ConfigError, LogFormat};
use aggregator::domain::clock::ArchiveClock;
use aggregator::domain::display::unix_ns_to_rfc3339;
use aggregator::links::LinkSockets;
use aggregator::net::descriptors;
use aggregator::net::listen;
use aggregator::ops::access::Access;
use aggregator::ops::monitor;
use aggregator::tls::ServerTls;
use aggregator::{Config, Daemon, Listeners};
use sd_notify::NotifyState;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::cli::{Cli, DEFAULT_CONFIG};

/// What the daemon starts with, read and checked before anything binds (and by --check-config).
struct Loaded {
    config: Config,
    /// The files `[tls]` names, read.
    tls: Option<Arc<ServerTls>>,
    /// The monitor's token, where it has one.
    access: Option<Access>,
}

/// Runs the daemon with the command line's config, or only checks the config.
pub(crate) fn run(cli: &Cli) -> ExitCode {
    let mut loaded = match load(&cli.config) {
        Ok(loaded) => loaded,
        Err(status) => return status,
    };
    if cli.check_config {
        for setting in loaded.config.ineffective_settings() {
            eprintln!("warning: {setting}");
        }
        println!("{}: configuration is valid", cli.config.display());
        return ExitCode::SUCCESS;
    }
    if cli.log_json {
        loaded.config.log.format = LogFormat::Json;
    }
    aggregator::ops::logging::init(&loaded.config.log);
    raise_open_file_limit();
    let runtime = match loaded.config.runtime.build() {
        Ok(runtime) => runtime,
        Err(err) => {
            tracing::error!(error = %err, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(loaded)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(err) => {
            tracing::error!("startup failed: {err}");
            ExitCode::FAILURE
        }
    }
}

/// The config at `path`, the TLS files it names and the monitor's token; or, the reason said on
/// standard error, the exit status.
fn load(path: &Path) -> Result<Loaded, ExitCode> {
    let config = match Config::load(path) {
        Ok(config) => config,
        Err(ConfigError::Read { path, source }) if source.kind() == ErrorKind::NotFound => {
            eprintln!(
                "aggregator: no configuration file at {}: {source}; give its path with --config \
                 PATH (the default, {DEFAULT_CONFIG}, is relative to the working directory: the \
                 repository root has one)",
                path.display()
            );
            return Err(ExitCode::from(2));
        }
        Err(err) => {
            eprintln!("aggregator: invalid configuration: {err}");
            return Err(ExitCode::from(2));
        }
    };
    let invalid = |err: &dyn std::fmt::Display| {
        eprintln!(
            "aggregator: invalid configuration: {}: {err}",
            path.display()
        );
        ExitCode::from(2)
    };
    // The files `[tls]` names are read and checked before anything binds, and by --check-config.
    let tls = match config.tls.as_ref().map(ServerTls::load).transpose() {
        Ok(tls) => tls.map(Arc::new),
        Err(err) => return Err(invalid(&err)),
    };
    let monitor = &config.monitor;
    let access = match monitor.token_file.as_deref().filter(|_| monitor.enabled) {
        Some(token_file) => match Access::load(token_file, monitor.protect_all) {
            Ok(access) => Some(access),
            Err(err) => return Err(invalid(&err)),
        },
        None => None,
    };
    Ok(Loaded {
        config,
        tls,
        access,
    })
}

/// Raises the open-file limit as far as allowed, and logs it.
fn raise_open_file_limit() {
    match descriptors::raise_limit() {
        Ok(limits) => tracing::info!(
            inherited = limits.inherited,
            soft = limits.soft,
            hard = limits.hard,
            reserved_for_archive = descriptors::reserve(limits.soft),
            "open-file limit"
        ),
        Err(err) => tracing::warn!(error = %err, "cannot raise the open-file limit"),
    }
}

/// Runs the daemon; `Ok(clean)` tells whether the drain accounted for every accepted frame.
async fn serve(loaded: Loaded) -> std::io::Result<bool> {
    let Loaded {
        config,
        tls,
        access,
    } = loaded;
    // The wall clock, read once: every frame of this run is stamped on it, advanced by the
    // monotonic clock (docs/guarantees.md, "Time").
    let (_, started) = ArchiveClock::process().anchor();
    tracing::info!(at = %unix_ns_to_rfc3339(started), "archive clock started");
    // Registered before binding, so a failure is a startup error and not a lost signal later.
    let terminate = signal(SignalKind::terminate())?;
    let interrupt = signal(SignalKind::interrupt())?;
    let hangup = signal(SignalKind::hangup())?;
    for setting in config.ineffective_settings() {
        tracing::warn!("{setting}");
    }
    for warning in config.exposure_warnings() {
        tracing::warn!("{warning}");
    }
    // Every address is bound before the archive is opened: a start that fails on a port in use
    // must not leave segments behind, each holding its reserved disk. Nothing is accepted until
    // the daemon runs, after recovery, so sources that connect meanwhile wait in the backlog.
    let bound = Bound::bind(&config).await?;
    let archive = aggregator::archive::write::open(&config.archive, config.runtime.shards)?;
    // Next to the archive, whose directory lock keeps a second daemon from publishing into it.
    let catalog = CatalogHandle::open(Store::in_dir(&config.archive.dir), config.catalog.max_bytes)
        .map_err(std::io::Error::other)?;
    bound.log_listening(config.runtime.shards)?;
    let mut daemon = Daemon::new(config, archive).with_catalog(catalog);
    if let Some(tls) = &tls {
        daemon = daemon.with_tls(Arc::clone(tls));
    }
    tokio::spawn(reload_on_hangup(hangup, tls));
    let Bound {
        listeners,
        monitor_listener,
        follow_listener,
        links,
        tm_listeners,
    } = bound;
    if let Some(listener) = follow_listener {
        daemon.serve_followers(listener);
    }
    daemon.serve_links(links);
    for (name, listener) in tm_listeners {
        tracing::info!(name, address = %listener.local_addr()?, "tm server listening");
        daemon.serve_tm(&name, listener);
    }
    let monitor_stop = CancellationToken::new();
    let monitor =
        monitor_listener.map(|listener| serve_monitor(&daemon, listener, access, &monitor_stop));
    notify_systemd(NotifyState::Ready);
    let report = daemon.run(listeners, shutdown(terminate, interrupt)).await;
    monitor_stop.cancel();
    if let Some(monitor) = monitor {
        let _ = monitor.await;
    }
    Ok(report.is_clean())
}

/// Serves the monitor on `listener` until `stop` is cancelled.
fn serve_monitor(
    daemon: &Daemon,
    listener: TcpListener,
    access: Option<Access>,
    stop: &CancellationToken,
) -> JoinHandle<()> {
    let mut state = daemon.monitor_state();
    if let Some(access) = access {
        state = state.with_access(access);
    }
    tokio::spawn(monitor::serve(
        listener,
        state,
        stop.clone().cancelled_owned(),
    ))
}

/// Resolves at SIGTERM or SIGINT, once systemd is told the daemon is stopping.
async fn shutdown(mut terminate: Signal, mut interrupt: Signal) {
    let name = tokio::select! {
        _ = terminate.recv() => "SIGTERM",
        _ = interrupt.recv() => "SIGINT",
    };
    tracing::info!(signal = name, "shutdown requested");
    notify_systemd(NotifyState::Stopping);
}

/// Every socket of the daemon, bound.
struct Bound {
    listeners: Listeners,
    monitor_listener: Option<TcpListener>,
    follow_listener: Option<TcpListener>,
    links: LinkSockets,
    /// Each TM server's name and listener.
    tm_listeners: Vec<(String, TcpListener)>,
}

impl Bound {
    async fn bind(config: &Config) -> std::io::Result<Bound> {
        let listeners = Listeners::bind(config).await?;
        let (monitor, consumer) = (&config.monitor, &config.consumer);
        // A listener where it is enabled.
        let optional = |enabled, addr, max_connections, what| match enabled {
            true => listen(addr, max_connections, None, what).map(Some),
            false => Ok(None),
        };
        let monitor_listener = optional(
            monitor.enabled,
            monitor.listen,
            monitor.max_connections,
            "monitor",
        )?;
        let follow_listener = optional(
            consumer.enabled,
            consumer.listen,
            consumer.max_connections,
            "consumer",
        )?;
        let links = LinkSockets::bind(&config.links)
            .await
            .map_err(std::io::Error::other)?;
        let mut tm_listeners = Vec::with_capacity(config.tm_servers.len());
        for server in &config.tm_servers {
            let what = format!("TM server {}", server.name);
            let listener = listen(server.listen, server.max_connections, None, &what)?;
            tm_listeners.push((server.name.clone(), listener));
        }
        Ok(Bound {
            listeners,
            monitor_listener,
            follow_listener,
            links,
            tm_listeners,
        })
    }

    /// Logs the addresses bound: the sources', the monitor's and the followers'.
    fn log_listening(&self, shards: usize) -> std::io::Result<()> {
        let address = |listener: &Option<TcpListener>| {
            (listener.as_ref())
                .and_then(|l| l.local_addr().ok())
                .map_or("disabled".to_string(), |a| a.to_string())
        };
        tracing::info!(
            uplink = %self.listeners.uplink.local_addr()?,
            replay = %self.listeners.replay.local_addr()?,
            monitor = %address(&self.monitor_listener),
            consumer = %address(&self.follow_listener),
            shards,
            version = env!("CARGO_PKG_VERSION"),
            "aggregator listening"
        );
        Ok(())
    }
}

/// SIGHUP: reads `[tls]`'s certificate, key and client CA again; open connections keep theirs.
async fn reload_on_hangup(mut hangup: Signal, tls: Option<Arc<ServerTls>>) {
    while hangup.recv().await.is_some() {
        match &tls {
            None => tracing::info!("SIGHUP: no [tls] to reload"),
            Some(tls) => match tls.reload() {
                Ok(()) => tracing::info!("SIGHUP: TLS certificate, key and client CA reloaded"),
                Err(err) => {
                    tracing::error!(error = %err, "SIGHUP: TLS reload failed; the files loaded before stay in use")
                }
            },
        }
    }
}

/// Tells systemd about a state change when running under `Type=notify`; a no-op elsewhere.
fn notify_systemd(state: NotifyState) {
    if let Err(err) = sd_notify::notify(false, &[state]) {
        tracing::debug!(error = %err, "sd_notify failed");
    }
}
