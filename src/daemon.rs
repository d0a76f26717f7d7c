//! The daemon: wires the stages together, runs the listeners, and drains on shutdown.
//!
//! Like mini-redis's `server::run`, nothing here binds sockets from the config or reads signals:
//! the binary binds the [`Listeners`] and passes the shutdown future in, and tests do the same with
//! `127.0.0.1:0` and a future of their own. [`Daemon::new`] builds the pipeline, a chain per
//! shard ([`crate::pipeline::shard`]), so that handles (stats, router, subscriptions) can be taken
//! before [`Daemon::run`] starts the shards' threads and serves.
//!
//! The drain, in order, in every shard: the token is cancelled, so the accept loops stop and drop their listeners,
//! connections stop reading and admit what they had decoded, and the router drops its fan-in
//! handle. When the last handle is gone the fan-in closes; the processor empties it and drops the
//! fan-out; the archive stores what is queued and ends; connections send their final
//! acknowledgements. The deadline bounds the whole sequence. Followers of the archive
//! ([`crate::follow`]), its sinks ([`crate::sinks`]) and the TM outputs ([`crate::tm`]) finish
//! after the archive closes, within the same deadline, and are cut off at it: they never change
//! the drain's report.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::archive::query::completeness;
use crate::archive::query::last_seen::{links_last_seen, WantedLink};
use crate::archive::query::payload_crcs::payload_crcs;
use crate::archive::read::DurableEnds;
use crate::archive::retention::{ReadMarks, Retention, SealedFeed};
use crate::archive::write::{
    Archive, ArchiveConsumer, ArchiveSettings, ArchiveSink, ArchiveTime, SyncPolicy,
};
use crate::catalog::CatalogHandle;
use crate::config::{AckMode, Config, Identity, PipelineConfig, Protected};
use crate::domain::batch::Batch;
use crate::domain::frame::SourceKey;
use crate::domain::readers::{ReaderHold, Readers};
use crate::domain::replication::{FleetResume, Replication};
use crate::domain::sequence_set::SequenceSet;
use crate::follow::server::{FollowSettings, Followers};
use crate::ingest::connection::Services;
use crate::ingest::listener::{self, Listeners};
use crate::ingest::read_credit::ReadCredits;
use crate::ingest::router::RouterHandle;
use crate::links::{self, LinkServices, LinkSockets};
use crate::ops::frame_feed::FrameFeed;
use crate::ops::health::HealthProbe;
use crate::ops::monitor::MonitorState;
use crate::ops::{clock, stats_log};
use crate::pipeline::fan_in::{priority_fan_in, FanIn, Ingress};
use crate::pipeline::fan_out::{fan_out, FanOut, FanOutLane, Subscribe};
use crate::pipeline::processor::Processor;
use crate::pipeline::queue::{frame_queue, FrameReceiver, FrameSender};
use crate::pipeline::shard::ShardThreads;
use crate::sinks::fleet::StreamResume;
use crate::sinks::nats::NatsSink;
use crate::stats::{self, PipelineStats, Stats};
use crate::tls::ServerTls;
use crate::tm::{TmArchive, TmOutputs};

/// The archive's files, as a backfill asks what they hold ([`links::Holdings`]).
struct ArchiveHoldings {
    root: std::path::PathBuf,
    ends: DurableEnds,
}

impl links::Holdings for ArchiveHoldings {
    fn held(&self, sources: Vec<SourceKey>, window: links::Window) -> Result<SequenceSet, String> {
        completeness::held_together(&self.root, &self.ends, sources, window)
            .map_err(|e| e.to_string())
    }

    fn payload_crcs(&self, frames: BTreeSet<links::FrameAt>) -> links::Crcs {
        payload_crcs(&self.root, &self.ends, &frames).map_err(|e| e.to_string())
    }
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

/// The assembled pipeline, ready to serve.
pub struct Daemon {
    config: Arc<Config>,
    stats: Stats,
    router: RouterHandle,
    /// Shard `k`'s chain is `shards[k]`.
    shards: Vec<Chain>,
    fan_out: FanOut,
    subscribe: Subscribe,
    published: watch::Sender<PipelineStats>,
    /// Each shard directory's durable end, for followers (none when the archive keeps no files).
    durable: DurableEnds,
    /// The follow listener, when followers are served.
    followers: Option<TcpListener>,
    /// The ground-segment links' sockets (`[[links]]`).
    links: LinkSockets,
    /// Each TM server's listener, by its name in `[[tm_servers]]`.
    tm_listeners: Vec<(String, TcpListener)>,
    /// The followers reading the archive's files, for the archive to keep them cached.
    readers: Option<Arc<Readers>>,
    /// The archive's files, for retention; `None` when it keeps none.
    files: Option<SealedFeed>,
    /// Where the archive's received times stood at the start, and where steps of the wall clock
    /// go to be recorded.
    archive_time: ArchiveTime,
    drain: CancellationToken,
    tracker: TaskTracker,
    catalog: CatalogHandle,
    /// TLS on the source and consumer listeners (`[tls]`), reloadable while serving.
    tls: Option<Arc<ServerTls>>,
    /// With `sinks.nats.ack = "replicated"`: the gate between the archive and the NATS sink.
    replication: Option<Arc<Replication>>,
}

/// One shard's stages before they start: its fan-in, its archive's queue and its sink.
struct Chain {
    fan_in: FanIn,
    archive_tx: FrameSender<Arc<Batch>>,
    archive_rx: FrameReceiver<Arc<Batch>>,
    sink: Box<dyn ArchiveSink>,
}

/// The stats publisher, which runs until the drain is over so that the last figures go out, the
/// dashboard that logs them, and the clock's watcher.
struct StatsPublisher {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    dashboard: tokio::task::JoinHandle<()>,
    clock: tokio::task::JoinHandle<()>,
}

/// The NATS sink, and the hold that keeps the archive's files cached for it while it runs.
struct NatsOutput {
    sink: NatsSink,
    _reading: Option<ReaderHold>,
}

/// What reads the archive beside the pipeline while the daemon serves; each finishes after the
/// archive closes, within the drain's deadline.
struct Outputs {
    followers: Option<Followers>,
    nats: Option<NatsOutput>,
    tm: Option<TmOutputs>,
}

/// The daemon while it serves: what the drain cancels, waits for and stops, in order.
struct Running {
    config: Arc<Config>,
    stats: Stats,
    drain: CancellationToken,
    tracker: TaskTracker,
    /// `None` when the shards run on the main runtime.
    threads: Option<ShardThreads>,
    outputs: Outputs,
    publisher: StatsPublisher,
    /// Retention on the archive's files, when it keeps files.
    retention: Option<Retention>,
}

impl Daemon {
    /// Builds the pipeline, one shard per sink of `archive`, and starts the router. Must be called
    /// inside a Tokio runtime. The archive's resume points tell sources where to resume, and
    /// recognise their resent frames.
    pub fn new(config: Config, archive: impl Into<Archive>) -> Daemon {
        let Archive {
            sinks,
            retired,
            resume,
            readers,
            files,
            clock: archive_time,
            spans,
        } = archive.into();
        let tm_names = config.tm_servers.iter().map(|s| s.name.clone());
        let forward_names = config.tm_forwards.iter().map(|f| f.name.clone());
        let stats = Stats::sharded(sinks.len()).with_tm_outputs(tm_names.chain(forward_names));
        let mut durable = Vec::new();
        let mut ingress = Vec::with_capacity(sinks.len());
        let mut shards = Vec::with_capacity(sinks.len());
        for (shard, sink) in sinks.into_iter().enumerate() {
            durable.extend(sink.durable_end().map(|end| (shard, end)));
            let (lane, chain) = Chain::new(sink, &config.pipeline, stats.shard(shard));
            ingress.push(lane);
            shards.push(chain);
        }
        durable.extend(retired);
        let durable = DurableEnds::new(durable, spans);
        let (fan_out, subscribe) = fan_out(&stats, shards.len());
        let drain = CancellationToken::new();
        let tracker = TaskTracker::new();
        let router = RouterHandle::spawn(ingress, stats.clone(), drain.clone(), resume);
        let (published, _) = watch::channel(PipelineStats::default());
        let catalog = CatalogHandle::in_memory(config.catalog.max_bytes);
        Daemon {
            config: Arc::new(config),
            stats,
            router,
            shards,
            fan_out,
            subscribe,
            published,
            durable,
            followers: None,
            links: LinkSockets::default(),
            tm_listeners: Vec::new(),
            readers,
            files,
            archive_time,
            drain,
            tracker,
            catalog,
            tls: None,
            replication: None,
        }
        .with_replication()
    }

    /// The gate that holds acknowledgements until JetStream has the frames, when the config asks
    /// for it and there is a sink to replicate them.
    fn with_replication(mut self) -> Daemon {
        let Some(nats) = &self.config.sinks.nats else {
            return self;
        };
        if nats.ack == AckMode::Replicated && !self.durable.is_empty() {
            // The sink's window a few times over: what it needs ready to keep its window full.
            let floor = 4 * nats.window as u64;
            let (bound, pace) = (nats.max_unreplicated_frames, nats.emergency_wait);
            self.replication = Some(Replication::new(bound, floor, pace));
        }
        self
    }

    /// Serves `catalog` (a stored one: the binary opens it next to the archive) instead of one
    /// kept in memory.
    pub fn with_catalog(mut self, catalog: CatalogHandle) -> Daemon {
        self.catalog = catalog;
        self
    }

    /// Serves the source listeners (and the follow listener) over TLS: the binary loads it from
    /// `[tls]`, and reloads it through the same handle on SIGHUP ([`ServerTls::reload`]).
    pub fn with_tls(mut self, tls: Arc<ServerTls>) -> Daemon {
        self.tls = Some(tls);
        self
    }

    /// The TLS of the listeners, if any (the monitor serves the same certificate).
    pub(crate) fn tls(&self) -> Option<Arc<ServerTls>> {
        self.tls.clone()
    }

    /// The catalog: publish to it (`PUT /catalog`), or watch it.
    pub fn catalog(&self) -> CatalogHandle {
        self.catalog.clone()
    }

    /// Serves followers of the archive on `listener` (`consumer.listen`) while the daemon runs.
    pub fn serve_followers(&mut self, listener: TcpListener) {
        self.followers = Some(listener);
    }

    /// Serves the ground-segment links bound to `sockets` while the daemon runs.
    pub fn serve_links(&mut self, sockets: LinkSockets) {
        self.links = sockets;
    }

    /// Serves the `[[tm_servers]]` entry `name` on `listener` while the daemon runs.
    pub fn serve_tm(&mut self, name: &str, listener: TcpListener) {
        self.tm_listeners.push((name.to_string(), listener));
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
        HealthProbe::new(self.drain.clone(), self.stats.clone())
    }

    /// The monitor's handles to this daemon; take them before [`Daemon::run`].
    pub fn monitor_state(&self) -> MonitorState {
        MonitorState::new(
            self.stats(),
            self.router(),
            self.health(),
            self.frames(),
            self.catalog(),
            self.archive_ends(),
            &self.config,
        )
        .with_tls(self.tls())
    }

    /// Every shard's durable end, for readers of the archive's files; `None` when it keeps none.
    fn archive_ends(&self) -> Option<DurableEnds> {
        (!self.durable.is_empty()).then(|| self.durable.clone())
    }

    /// Snapshots published every stats interval.
    pub fn subscribe_stats(&self) -> watch::Receiver<PipelineStats> {
        self.published.subscribe()
    }

    /// A lossy subscription to every processed batch, holding at most `capacity` batches (shared
    /// out among the shards, at least one each) and warning as `name` when it falls behind. Take
    /// it before `run`, to see every frame.
    pub fn subscribe_frames(&self, name: &'static str, capacity: usize) -> FrameFeed {
        FrameFeed::new(&self.subscribe, capacity, name)
    }

    /// Subscribes to processed batches at any time, with a filter and a bound of your own (the
    /// monitor's `/feed`).
    pub(crate) fn frames(&self) -> Subscribe {
        self.subscribe.clone()
    }

    /// Serves until `shutdown` resolves, then drains within the configured deadline.
    pub async fn run(
        self,
        listeners: Listeners,
        shutdown: impl Future<Output = ()>,
    ) -> DrainReport {
        let running = self.start(listeners);
        tokio::select! {
            _ = shutdown => {}
            _ = running.drain.cancelled() => {}
        }
        running.finish().await
    }

    /// Starts the shards' threads, every stage, the outputs that read the archive, and the
    /// listeners: the daemon serves.
    fn start(mut self, listeners: Listeners) -> Running {
        // Each shard's: one shard's outage does not end another's waits.
        let storage_lost: Vec<_> = (self.shards.iter())
            .map(|_| CancellationToken::new())
            .collect();
        let threads = self.start_threads();
        let services = self.services(&storage_lost, threads.as_ref());
        let durable = std::mem::take(&mut self.durable);
        let stats = self.stats.clone();
        let (retention, nats) = self.start_retention_and_sink(&durable, &stats);
        let followers = self.start_followers(&durable, &stats);
        let link_services = self.link_services(&durable);
        let link_sockets = std::mem::take(&mut self.links);
        let tm = self.start_tm(&durable, &stats);
        let last_seen = self.last_seen_reader(&durable);
        let config = Arc::clone(&self.config);
        let (drain, tracker) = (self.drain.clone(), self.tracker.clone());
        let publisher = self.start_stages(storage_lost, threads.as_ref());
        listener::serve(listeners, &config, services, &tracker);
        links::serve(link_sockets, link_services, &tracker);
        // Once the links' counters are listed, so that it finds them.
        if let Some(read) = last_seen {
            tracker.spawn_blocking(read);
        }
        Running {
            config,
            stats,
            drain,
            tracker,
            threads,
            outputs: Outputs {
                followers,
                nats,
                tm,
            },
            publisher,
            retention,
        }
    }

    /// What reads when each link was last heard from the archive, beside the start: a station
    /// silent since before it still says when it was heard
    /// ([`crate::archive::query::last_seen`]). `None` without links or archive files.
    fn last_seen_reader(&self, durable: &DurableEnds) -> Option<impl FnOnce() + Send + 'static> {
        if durable.is_empty() || self.config.links.is_empty() {
            return None;
        }
        let wanted: Vec<WantedLink> = (self.config.links.iter())
            .map(|link| {
                let delivery = link.delivery();
                WantedLink {
                    link: delivery.link.to_string(),
                    station: delivery.station.to_string(),
                }
            })
            .collect();
        let (root, durable) = (self.config.archive.dir.clone(), durable.clone());
        let (stats, drain) = (self.stats.clone(), self.drain.clone());
        let stop = move || drain.is_cancelled();
        Some(
            move || match links_last_seen(&root, &durable, &wanted, &stop) {
                Ok(seen) => seen
                    .iter()
                    .for_each(|(link, &at)| stats.link_heard_before(link, at)),
                Err(err) => {
                    tracing::warn!(error = %err, "archive: cannot read when each link was last heard")
                }
            },
        )
    }

    /// The shards' threads; `None` when the system refused them: the shards run on this runtime.
    fn start_threads(&self) -> Option<ShardThreads> {
        ShardThreads::start(self.shards.len(), self.config.runtime.event_interval)
            .inspect_err(|err| {
                tracing::error!(error = %err, "cannot start the shards' threads; they share the main runtime")
            })
            .ok()
    }

    /// What the source listeners' connections need of the daemon.
    fn services(
        &self,
        storage_lost: &[CancellationToken],
        threads: Option<&ShardThreads>,
    ) -> Arc<Services> {
        let config = &self.config;
        Arc::new(Services {
            config: Arc::clone(config),
            router: self.router.clone(),
            stats: self.stats.clone(),
            drain: self.drain.clone(),
            storage_lost: storage_lost.to_vec(),
            read_credits: ReadCredits::per_shard(
                config.read_credits(),
                self.shards.len(),
                config.connection.read_buffer,
            ),
            catalog: self.catalog.clone(),
            tls: self.tls.clone(),
            shards: threads.map_or_else(Vec::new, |threads| threads.handles().to_vec()),
            fleet: self.fleet_resume(),
            replication: self.replication.clone(),
        })
    }

    /// Where a registering source stands in the fleet's stream, when sources fail over between
    /// daemons (`identity = "fleet"`, `ack = "replicated"`).
    fn fleet_resume(&self) -> Option<Arc<dyn FleetResume>> {
        let nats = self.config.sinks.nats.as_ref()?;
        let fleet = nats.identity == Identity::Fleet && self.replication.is_some();
        fleet.then(|| Arc::new(StreamResume::new(nats.clone())) as Arc<dyn FleetResume>)
    }

    /// What the ground-segment links need of the daemon.
    fn link_services(&self, durable: &DurableEnds) -> LinkServices {
        let files = !durable.is_empty();
        LinkServices {
            router: self.router.clone(),
            stats: self.stats.clone(),
            max_batch: self.config.pipeline.max_batch_frames,
            read_buffer: self.config.connection.read_buffer,
            pass_gap: self.config.archive.pass_gap,
            drain: self.drain.clone(),
            holdings: files.then(|| {
                let (root, ends) = (self.config.archive.dir.clone(), durable.clone());
                Arc::new(ArchiveHoldings { root, ends }) as Arc<dyn links::Holdings>
            }),
        }
    }

    /// Starts retention on the archive's files, and the NATS sink (with the hold that keeps the
    /// files cached for it), which retention protects with `protect = ["nats"]`; each `None`
    /// when the archive keeps no files or the config has none.
    fn start_retention_and_sink(
        &mut self,
        durable: &DurableEnds,
        stats: &Stats,
    ) -> (Option<Retention>, Option<NatsOutput>) {
        let config = Arc::clone(&self.config);
        let protect_nats = config.archive.retention.protect.contains(&Protected::Nats);
        let marks = protect_nats.then(|| Arc::new(ReadMarks::default()));
        let retention = self.files.take().map(|files| {
            let (limits, grace) = (config.archive.retention.clone(), config.clock.start_grace);
            Retention::start(files, limits, grace, stats.clone(), marks.clone())
        });
        let nats = config.sinks.nats.clone().and_then(|nats| {
            if durable.is_empty() {
                tracing::error!(
                    "sinks.nats needs an archive that keeps files; nothing is published"
                );
                return None;
            }
            let dir = config.archive.dir.clone();
            // The sink follows the archive's files as a follower does: they stay cached for it.
            let _reading = self.readers.as_ref().map(Readers::hold);
            let replication = self.replication.clone();
            let (durable, stats) = (durable.clone(), stats.clone());
            let sink = NatsSink::start(nats, dir, durable, stats, marks, replication);
            Some(NatsOutput { sink, _reading })
        });
        (retention, nats)
    }

    /// Starts serving followers on the listener handed to [`Daemon::serve_followers`], if any.
    fn start_followers(&mut self, durable: &DurableEnds, stats: &Stats) -> Option<Followers> {
        let listener = self.followers.take()?;
        let config = &self.config;
        let settings = FollowSettings {
            dir: config.archive.dir.clone(),
            limits: config.consumer.limits(),
            handshake_timeout: config.connection.handshake_timeout,
            tls: self.tls.clone(),
            readers: self.readers.clone(),
            stats: stats.clone(),
        };
        let (catalog, drain) = (self.catalog.clone(), self.drain.clone());
        Some(Followers::start(
            listener,
            settings,
            durable.clone(),
            catalog,
            drain,
        ))
    }

    /// Starts the TM servers (each on the listener handed to [`Daemon::serve_tm`]) and forwards;
    /// `None` when there are none, or the archive keeps no files for them to read.
    fn start_tm(&mut self, durable: &DurableEnds, stats: &Stats) -> Option<TmOutputs> {
        let config = Arc::clone(&self.config);
        let mut servers = Vec::new();
        for (name, listener) in std::mem::take(&mut self.tm_listeners) {
            match config.tm_servers.iter().find(|s| s.name == name) {
                Some(server) => servers.push((server.clone(), listener)),
                None => tracing::error!(name, "no [[tm_servers]] entry has this name; not served"),
            }
        }
        if servers.is_empty() && config.tm_forwards.is_empty() {
            return None;
        }
        if durable.is_empty() {
            tracing::error!("TM servers and forwards need an archive that keeps files; none runs");
            return None;
        }
        let archive = TmArchive {
            dir: config.archive.dir.clone(),
            durable: durable.clone(),
            readers: self.readers.clone(),
            stats: stats.clone(),
            drain: self.drain.clone(),
        };
        Some(TmOutputs::start(servers, &config.tm_forwards, &archive))
    }

    /// Starts the stats publisher and the dashboard, and each shard's processor and archive
    /// consumer on the shard's thread (on this runtime without `threads`): every stage behind
    /// the fan-in.
    fn start_stages(
        self,
        storage_lost: Vec<CancellationToken>,
        threads: Option<&ShardThreads>,
    ) -> StatsPublisher {
        let Daemon {
            config,
            stats,
            shards,
            fan_out,
            published,
            drain,
            tracker,
            archive_time,
            replication,
            ..
        } = self;
        // Closes every subscription once the last shard's processor has finished.
        let publishers = fan_out.into_publishers();
        let shards = shards.into_iter().zip(storage_lost).enumerate();
        for ((shard, (chain, storage_lost)), publisher) in shards.zip(publishers) {
            let settings = ArchiveSettings {
                policy: SyncPolicy::of(&config.archive),
                max_unsynced_bytes: config.archive.max_unsynced_bytes,
                drain: drain.clone(),
                storage_lost,
                replication: replication.clone(),
            };
            let stages = chain.stages(publisher, &config.pipeline, settings, stats.shard(shard));
            for stage in stages.map(|stage| tracker.track_future(stage)) {
                match threads {
                    Some(threads) => drop(threads.spawn(shard, stage)),
                    None => drop(tokio::spawn(stage)),
                }
            }
        }
        StatsPublisher::start(&config, stats, published, archive_time)
    }
}

impl Chain {
    /// A shard's chain before it starts, and the fan-in's ingress, which the router hands the
    /// shard's sources.
    fn new(sink: Box<dyn ArchiveSink>, p: &PipelineConfig, stats: Stats) -> (Ingress, Chain) {
        let (lane, fan_in) = priority_fan_in(
            p.processor_capacity,
            p.emergency_capacity,
            p.emergency_streak,
            stats,
        );
        let (archive_tx, archive_rx) = frame_queue(p.archive_capacity);
        let chain = Chain {
            fan_in,
            archive_tx,
            archive_rx,
            sink,
        };
        (lane, chain)
    }

    /// The shard's processor, which takes from the fan-in into the archive's queue and the
    /// fan-out lane `subscribers`, and its archive consumer: to run on the shard's thread.
    fn stages(
        self,
        subscribers: FanOutLane,
        p: &PipelineConfig,
        settings: ArchiveSettings,
        stats: Stats,
    ) -> [BoxFuture<'static, ()>; 2] {
        let processor = Processor {
            fan_in: self.fan_in,
            archive_emergency: self.archive_tx.with_own_bound(p.emergency_capacity),
            archive: self.archive_tx,
            subscribers,
            stats: stats.clone(),
        };
        let consumer = ArchiveConsumer::new(self.archive_rx, self.sink, settings, stats);
        [processor.run().boxed(), consumer.run().boxed()]
    }
}

impl StatsPublisher {
    /// Starts the stats publisher, the dashboard that logs its figures, and the clock's watcher.
    fn start(
        config: &Config,
        stats: Stats,
        published: watch::Sender<PipelineStats>,
        archive_time: ArchiveTime,
    ) -> StatsPublisher {
        let stop = CancellationToken::new();
        let interval = config.dashboard.stats_interval;
        let dashboard = tokio::spawn(stats_log::run(published.subscribe()));
        let (clock_config, max_age) = (config.clock.clone(), config.archive.retention.max_age);
        let watch = clock::watch(
            clock_config,
            max_age,
            archive_time,
            stats.clone(),
            stop.clone(),
        );
        let clock = tokio::spawn(watch);
        let task = tokio::spawn(stats::publish(stats, published, interval, stop.clone()));
        StatsPublisher {
            stop,
            task,
            dashboard,
            clock,
        }
    }

    /// Stops the publisher, once the drain is over so that its last figures go out, and waits
    /// for it, the dashboard and the clock's watcher.
    async fn finish(self) {
        self.stop.cancel();
        let _ = self.task.await;
        let _ = self.dashboard.await;
        let _ = self.clock.await;
    }
}

impl Outputs {
    /// Waits for each output to finish what the archive made durable, until `deadline`, and
    /// cuts it off there.
    async fn finish(self, deadline: Instant) {
        if let Some(followers) = self.followers {
            followers.finish(deadline).await;
        }
        if let Some(NatsOutput { sink, _reading }) = self.nats {
            sink.finish(deadline).await;
        }
        if let Some(tm) = self.tm {
            tm.finish(deadline).await;
        }
    }
}

impl Running {
    /// Drains within the configured deadline: the connections and the stages first, every shard
    /// in order (the module's doc), then the outputs, the stats publisher, the shards' threads
    /// and retention; and reports.
    async fn finish(self) -> DrainReport {
        let started = Instant::now();
        let drain_deadline = self.config.shutdown.drain_deadline;
        tracing::info!(
            deadline_ms = drain_deadline.as_millis() as u64,
            "drain started: no new connections or frames; finishing everything accepted"
        );
        self.drain.cancel();
        self.tracker.close();
        let deadline = started + drain_deadline;
        let completed = tokio::time::timeout_at(deadline, self.tracker.wait())
            .await
            .is_ok();
        self.outputs.finish(deadline).await;
        self.publisher.finish().await;
        if let Some(threads) = self.threads {
            // Blocks while a task the deadline cut off is dropped: off the runtime's thread.
            let _ = tokio::task::spawn_blocking(move || threads.stop()).await;
        }
        if let Some(retention) = self.retention {
            // Ends once the archive's writers have: after the shards.
            let _ = tokio::task::spawn_blocking(move || retention.finish()).await;
        }
        let report = DrainReport::of(&self.stats.snapshot(), completed, started.elapsed());
        report.log();
        report
    }
}

impl DrainReport {
    /// The drain as the counters tell it once it ended (or its deadline passed).
    fn of(s: &PipelineStats, completed: bool, elapsed: Duration) -> DrainReport {
        DrainReport {
            completed,
            elapsed,
            accepted: s.frames_accepted,
            processed: s.frames_processed,
            archived: s.frames_archived,
            unacknowledged: s.in_flight(),
            duplicates: s.duplicates_dropped,
        }
    }

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
