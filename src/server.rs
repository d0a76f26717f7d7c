//! The daemon: wires the stages together, runs the listeners, and drains on shutdown.
//!
//! Like mini-redis's `server::run`, nothing here binds sockets from the config or reads signals:
//! the binary binds the [`Listeners`] and passes the shutdown future in, and tests do the same with
//! `127.0.0.1:0` and a future of their own. [`Daemon::new`] builds the pipeline so that handles
//! (stats, router, subscriptions) can be taken before [`Daemon::run`] starts serving.
//!
//! The drain, in order: the token is cancelled, so the accept loops stop and drop their listeners,
//! connections stop reading and admit what they had decoded, and the router drops its fan-in
//! handle. When the last handle is gone the fan-in closes; the processor empties it and drops the
//! fan-out; the archive stores what is queued and ends; connections send their final
//! acknowledgements. The deadline bounds the whole sequence.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{broadcast, watch, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::archive::{ArchiveConsumer, ArchiveSettings, ArchiveSink};
use crate::config::Config;
use crate::connection::{self, Shared};
use crate::dashboard::{self, FrameFeed};
use crate::fan_in::{priority_fan_in, FanIn};
use crate::frame::{Batch, SourceKind};
use crate::ledger::{ResumePoint, SourceKey};
use crate::processor::Processor;
use crate::queue::{frame_queue, FrameReceiver, FrameSender};
use crate::read_credit::ReadCredits;
use crate::router::RouterHandle;
use crate::stats::{self, PipelineStats, Stats};

/// The two bound listeners.
#[derive(Debug)]
pub struct Listeners {
    pub uplink: TcpListener,
    pub replay: TcpListener,
}

impl Listeners {
    /// Binds both configured addresses; the error names the one that failed.
    pub async fn bind(config: &Config) -> std::io::Result<Listeners> {
        let bind = |addr: SocketAddr, max_connections: usize, what: &'static str| {
            listen(addr, accept_queue(max_connections)).map_err(|err| {
                std::io::Error::new(
                    err.kind(),
                    format!("cannot bind the {what} listener on {addr}: {err}"),
                )
            })
        };
        Ok(Listeners {
            uplink: bind(
                config.uplink.listen,
                config.uplink.max_connections,
                "uplink",
            )?,
            replay: bind(
                config.replay.listen,
                config.replay.max_connections,
                "replay",
            )?,
        })
    }
}

/// How many connections the kernel may hold for the accept loop: all a listener allows, at least
/// 1,024, so that a whole fleet reconnecting at once (after a restart or a network failure) waits
/// in the queue. `TcpListener::bind` asks for 128: past that the kernel drops the handshakes, and
/// each dropped source waits out SYN retransmissions of 1, 3, 7, 15 s and more (in the benchmark,
/// 59 of 1,001 sources were still not connected after 30 s). The kernel caps the queue at
/// `net.core.somaxconn` (4,096 by default since Linux 5.4).
fn accept_queue(max_connections: usize) -> u32 {
    u32::try_from(max_connections.max(1024)).unwrap_or(u32::MAX)
}

/// Binds `addr` with room for `backlog` connections waiting to be accepted.
fn listen(addr: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // As `TcpListener::bind` does: a restart may bind while old connections are in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// How the drain went; the binary logs it and picks its exit status from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainReport {
    /// Every task finished within the deadline.
    pub completed: bool,
    pub elapsed: Duration,
    pub accepted: u64,
    pub processed: u64,
    pub archived: u64,
    /// Accepted and not stored, so never acknowledged: their sources still hold them and send them
    /// again. Zero after a clean drain.
    pub unacknowledged: u64,
    pub duplicates: u64,
}

/// What a load balancer or orchestrator should make of the daemon right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Accepting and storing frames.
    Ready,
    /// Shutting down: finishing what it accepted, accepting nothing new.
    Draining,
    /// Running, but the archive is failing: from its first failed write until every frame that
    /// write held is stored, frames are not being acknowledged.
    Degraded,
}

/// Reads the daemon's health without touching the pipeline: a token check and an atomic load.
#[derive(Debug, Clone)]
pub struct HealthProbe {
    drain: CancellationToken,
    stats: Stats,
}

impl HealthProbe {
    pub fn health(&self) -> Health {
        if self.drain.is_cancelled() {
            Health::Draining
        } else if self.stats.snapshot().archive_failing != 0 {
            Health::Degraded
        } else {
            Health::Ready
        }
    }
}

/// The assembled pipeline, ready to serve.
pub struct Daemon {
    config: Arc<Config>,
    stats: Stats,
    router: RouterHandle,
    fan_in: FanIn,
    archive_tx: FrameSender<Arc<Batch>>,
    archive_rx: FrameReceiver<Arc<Batch>>,
    subscribers: broadcast::Sender<Arc<Batch>>,
    published: watch::Sender<PipelineStats>,
    sink: Box<dyn ArchiveSink>,
    drain: CancellationToken,
    tracker: TaskTracker,
}

impl Daemon {
    /// Builds the pipeline and starts the router. Must be called inside a Tokio runtime.
    pub fn new(config: Config, sink: Box<dyn ArchiveSink>) -> Daemon {
        Self::with_resume(config, sink, HashMap::new())
    }

    /// Like [`Daemon::new`], with the resume points the archive recovered at start-up, so that
    /// sources resume where the previous run stored them and their resent frames are recognised.
    pub fn with_resume(
        config: Config,
        sink: Box<dyn ArchiveSink>,
        resume: HashMap<SourceKey, ResumePoint>,
    ) -> Daemon {
        let p = &config.pipeline;
        let stats = Stats::new();
        let (ingress, fan_in) = priority_fan_in(
            p.processor_capacity,
            p.emergency_capacity,
            p.emergency_streak,
            stats.clone(),
        );
        let (archive_tx, archive_rx) = frame_queue(p.archive_capacity);
        let (subscribers, _) = broadcast::channel(p.dashboard_capacity);
        let drain = CancellationToken::new();
        let tracker = TaskTracker::new();
        let router = RouterHandle::spawn(ingress, stats.clone(), drain.clone(), resume);
        let (published, _) = watch::channel(PipelineStats::default());
        Daemon {
            config: Arc::new(config),
            stats,
            router,
            fan_in,
            archive_tx,
            archive_rx,
            subscribers,
            published,
            sink,
            drain,
            tracker,
        }
    }

    /// The live counters (lock-free reads).
    pub fn stats(&self) -> Stats {
        self.stats.clone()
    }

    /// The router, for listing sources.
    pub fn router(&self) -> RouterHandle {
        self.router.clone()
    }

    /// Ready, draining or degraded, for the monitoring endpoint.
    pub fn health(&self) -> HealthProbe {
        HealthProbe {
            drain: self.drain.clone(),
            stats: self.stats.clone(),
        }
    }

    /// Snapshots published every stats interval.
    pub fn subscribe_stats(&self) -> watch::Receiver<PipelineStats> {
        self.published.subscribe()
    }

    /// A lossy subscription to every processed batch, like the dashboard's. Take it before `run`.
    pub fn subscribe_frames(&self, name: &'static str) -> FrameFeed {
        FrameFeed::new(self.subscribers.subscribe(), self.stats.clone(), name)
    }

    /// Serves until `shutdown` resolves, then drains within the configured deadline.
    pub async fn run(
        self,
        listeners: Listeners,
        shutdown: impl Future<Output = ()>,
    ) -> DrainReport {
        let Daemon {
            config,
            stats,
            router,
            fan_in,
            archive_tx,
            archive_rx,
            subscribers,
            published,
            sink,
            drain,
            tracker,
        } = self;

        let dashboard_feed = FrameFeed::new(subscribers.subscribe(), stats.clone(), "dashboard");
        tracker.spawn(dashboard::run(dashboard_feed, published.subscribe()));
        tracker.spawn(
            Processor {
                fan_in,
                archive_emergency: archive_tx.with_own_bound(config.pipeline.emergency_capacity),
                archive: archive_tx,
                subscribers,
                stats: stats.clone(),
            }
            .run(),
        );
        let storage_lost = CancellationToken::new();
        let settings = ArchiveSettings {
            policy: config.archive.policy(),
            max_unsynced_bytes: config.archive.max_unsynced_bytes,
            drain: drain.clone(),
            storage_lost: storage_lost.clone(),
        };
        tracker.spawn(ArchiveConsumer::new(archive_rx, sink, settings, stats.clone()).run());
        let publisher_stop = CancellationToken::new();
        let publisher = tokio::spawn(stats::publish(
            stats.clone(),
            published,
            config.dashboard.stats_interval,
            publisher_stop.clone(),
        ));

        let shared = Arc::new(Shared {
            config: Arc::clone(&config),
            router,
            stats: stats.clone(),
            drain: drain.clone(),
            storage_lost,
            read_credits: ReadCredits::new(config.read_credits(), config.connection.read_buffer),
        });
        for (listener, kind, limit) in [
            (
                listeners.uplink,
                SourceKind::LiveUplink,
                config.uplink.max_connections,
            ),
            (
                listeners.replay,
                SourceKind::ArchivedReplay,
                config.replay.max_connections,
            ),
        ] {
            let accept = accept_loop(listener, kind, limit, Arc::clone(&shared), tracker.clone());
            tracker.spawn(accept);
        }
        drop(shared);

        tokio::select! {
            _ = shutdown => {}
            _ = drain.cancelled() => {}
        }
        let started = Instant::now();
        tracing::info!(
            deadline_ms = config.shutdown.drain_deadline.as_millis() as u64,
            "drain started: no new connections or frames; finishing everything accepted"
        );
        drain.cancel();
        tracker.close();
        let completed = tokio::time::timeout(config.shutdown.drain_deadline, tracker.wait())
            .await
            .is_ok();
        publisher_stop.cancel();
        let _ = publisher.await;

        let s = stats.snapshot();
        let report = DrainReport {
            completed,
            elapsed: started.elapsed(),
            accepted: s.frames_accepted,
            processed: s.frames_processed,
            archived: s.frames_archived,
            unacknowledged: s.in_flight(),
            duplicates: s.duplicates_dropped,
        };
        report.log();
        report
    }
}

impl DrainReport {
    /// Everything accepted was archived within the deadline.
    pub fn is_clean(&self) -> bool {
        self.completed && self.unacknowledged == 0
    }

    fn log(&self) {
        let elapsed_ms = self.elapsed.as_millis() as u64;
        if self.is_clean() {
            tracing::info!(
                accepted = self.accepted,
                processed = self.processed,
                archived = self.archived,
                unacknowledged = self.unacknowledged,
                duplicates = self.duplicates,
                elapsed_ms,
                "drain complete"
            );
        } else {
            tracing::error!(
                accepted = self.accepted,
                processed = self.processed,
                archived = self.archived,
                unacknowledged = self.unacknowledged,
                duplicates = self.duplicates,
                elapsed_ms,
                completed = self.completed,
                "drain incomplete: {} accepted frames were not stored; they were never acknowledged, so their sources still hold them and will send them again",
                self.unacknowledged
            );
        }
    }
}

/// Accepts connections until the drain starts. Beyond `limit` open connections a new one is
/// refused at once, with a reason, rather than left waiting in the backlog.
#[tracing::instrument(name = "listener", skip_all, fields(kind = kind.as_str()))]
async fn accept_loop(
    listener: TcpListener,
    kind: SourceKind,
    limit: usize,
    shared: Arc<Shared>,
    tracker: TaskTracker,
) {
    let slots = Arc::new(Semaphore::new(limit));
    let mut backoff = Duration::from_millis(10);
    loop {
        let accepted = tokio::select! {
            _ = shared.drain.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => {
                backoff = Duration::from_millis(10);
                pair
            }
            Err(err) => {
                // Typically out of file descriptors: wait for connections to close.
                tracing::warn!(error = %err, backoff_ms = backoff.as_millis() as u64, "accept failed");
                tokio::select! {
                    _ = shared.drain.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        match Arc::clone(&slots).try_acquire_owned() {
            Ok(slot) => {
                let shared = Arc::clone(&shared);
                tracker.spawn(async move {
                    connection::serve(stream, peer, kind, shared).await;
                    drop(slot);
                });
            }
            Err(_) => {
                let refusal =
                    connection::refuse_over_limit(stream, peer, kind, limit, Arc::clone(&shared));
                tracker.spawn(refusal);
            }
        }
    }
    tracing::debug!("stopped accepting");
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpStream;

    /// A fleet that reconnects at once waits in the kernel's queue until the accept loop takes it.
    /// With `TcpListener::bind`'s queue of 128, the kernel drops the handshakes past it and those
    /// sources wait a second or more for their SYN to be sent again.
    #[tokio::test]
    async fn the_accept_queue_holds_a_fleet_reconnecting_at_once() {
        let mut config = Config::default();
        config.uplink.listen = "127.0.0.1:0".parse().unwrap();
        config.replay.listen = "127.0.0.1:0".parse().unwrap();
        let listeners = Listeners::bind(&config).await.unwrap();
        let addr = listeners.uplink.local_addr().unwrap();
        // Nothing accepts: every connection stays in the queue.
        let wave = 300;
        let mut fleet = Vec::with_capacity(wave);
        for i in 0..wave {
            let connect = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr));
            match connect.await {
                Ok(Ok(stream)) => fleet.push(stream),
                Ok(Err(err)) => panic!("connection {i} of {wave} failed: {err}"),
                Err(_) => panic!("connection {i} of {wave} found the accept queue full"),
            }
        }
        assert_eq!(fleet.len(), wave);
    }
}
