//! The server role: runs one variant, answers the parent's `COUNTS`/`START`/`END` on stdin with its
//! counters, and stops on `STOP`, the end of stdin or SIGTERM (the drain run), reporting last.

use std::process::ExitCode;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio_util::sync::CancellationToken;

use crate::control::{self, emit, ChildMsg, Counts, FinalReport};
use crate::external::{self, External};
use crate::results::{process_cpu_ns, threads_cpu_ns, threads_runqueue_ns};
use crate::serving::{Running, Shared};
use crate::{daemon, floor, Variant};

/// Runs the server role until it is told to stop; `limit` bounds its life in any case.
pub fn run(
    variant: Variant,
    config: aggregator::Config,
    max_connections: Option<usize>,
    external: Option<External>,
    limit: Duration,
) -> ExitCode {
    control::raise_nofile_limit();
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        eprintln!("aggregator-bench server: time limit of {limit:?} reached; exiting");
        std::process::exit(3);
    });
    // The daemon runs on the runtime its config builds, exactly as the binary does; the floor
    // gets every core the machine has.
    let runtime = match variant {
        Variant::Daemon | Variant::Pipeline | Variant::Watched => config.runtime.build(),
        Variant::Floor => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build(),
    };
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("aggregator-bench server: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(serve(variant, config, max_connections, external));
    // Connection tasks of the floor may still run: do not wait for them.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("aggregator-bench server ({variant:?}): {err}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(
    variant: Variant,
    config: aggregator::Config,
    max_connections: Option<usize>,
    external: Option<External>,
) -> Result<(), String> {
    let started = Instant::now();
    // Registered before listening, so that a SIGTERM is never missed.
    let mut terminate =
        signal(SignalKind::terminate()).map_err(|e| format!("cannot register SIGTERM: {e}"))?;
    let shared = Arc::new(Shared::default());
    let stop = CancellationToken::new();
    let shards = variant.is_daemon().then_some(config.runtime.shards);
    let running = start(variant, config, max_connections, external, &shared, &stop)
        .await
        .map_err(|e| format!("cannot start: {e}"))?;
    // The serving process: this one, or the daemon binary's.
    let pid = running.pid;
    let serving = pid.map_or(std::process::id() as i32, |pid| pid as i32);
    let counts = || Counts {
        at_ns: started.elapsed().as_nanos() as u64,
        cpu_ns: match pid {
            Some(pid) => process_cpu_ns(pid as i32).unwrap_or(0),
            None => control::process_cpu_ns(),
        },
        rss_kib: match pid {
            Some(pid) => external::memory_kib(pid, "VmRSS:"),
            None => control::rss_kib(),
        },
        // The thread's name as the kernel keeps it: its first 15 bytes.
        retention_cpu_ns: threads_cpu_ns(serving, "archive-retenti").unwrap_or(0),
        sink_cpu_ns: threads_cpu_ns(serving, "nats-sink").unwrap_or(0),
        sink_runqueue_ns: threads_runqueue_ns(serving, "nats-sink").unwrap_or(0),
        ..(running.counts)()
    };
    let peak_rss_kib = || match pid {
        Some(pid) => external::memory_kib(pid, "VmHWM:"),
        None => control::peak_rss_kib(),
    };
    emit(&ChildMsg::Listening {
        addr: running.addr,
        monitor: running.monitor,
        follow: running.follow,
        shards,
    });

    answer(&mut terminate, &shared, &counts).await;
    // The daemon binary's peak, while it still runs.
    let peak = peak_rss_kib();
    stop.cancel();
    let drain = running
        .done
        .await
        .map_err(|e| format!("the server task failed: {e}"))?;
    let (probe, stream, samples_dropped) = shared.recorder.summaries();
    let first_error = shared.first_error.lock().ok().and_then(|e| e.clone());
    emit(&ChildMsg::Final(Box::new(FinalReport {
        counts: counts(),
        probe,
        stream,
        samples_dropped,
        peak_rss_kib: peak.max(peak_rss_kib()),
        connection_errors: shared.errors.load(Relaxed),
        first_error,
        drain,
    })));
    Ok(())
}

/// Starts the server of `variant`: the floor, an outside server, or the daemon in this process.
async fn start(
    variant: Variant,
    config: aggregator::Config,
    max_connections: Option<usize>,
    external: Option<External>,
    shared: &Arc<Shared>,
    stop: &CancellationToken,
) -> std::io::Result<Running> {
    match (variant, external) {
        (Variant::Floor, _) => floor::start(Arc::clone(shared), stop.clone()).await,
        (_, Some(external)) => {
            external::start(external, stop.clone(), max_connections, variant).await
        }
        (Variant::Daemon | Variant::Pipeline | Variant::Watched, None) => {
            let shared = Arc::clone(shared);
            daemon::start(shared, stop.clone(), config, max_connections, variant).await
        }
    }
}

/// Answers the parent's commands until `STOP`, a SIGTERM or the end of stdin (the parent is
/// gone): `START` and `END` open and close the window, and each, like `COUNTS`, sends the counts.
async fn answer(terminate: &mut Signal, shared: &Shared, counts: &dyn Fn() -> Counts) {
    let mut lines = control::stdin_lines(|| {});
    loop {
        tokio::select! {
            _ = terminate.recv() => break,
            line = lines.recv() => match line {
                Some(line) => match line.trim() {
                    "START" => {
                        shared.recorder.start();
                        emit(&ChildMsg::Counts(Box::new(counts())));
                    }
                    "END" => {
                        shared.recorder.stop();
                        emit(&ChildMsg::Counts(Box::new(counts())));
                    }
                    "COUNTS" => emit(&ChildMsg::Counts(Box::new(counts()))),
                    "STOP" => break,
                    other => eprintln!("aggregator-bench server: unknown command {other:?}"),
                },
                None => break,
            },
        }
    }
}
