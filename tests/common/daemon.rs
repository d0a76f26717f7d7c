//! The daemon under test: a [`Daemon`] running in-process with its listeners and links bound on
//! loopback, and the configs tests start from.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

pub use aggregator::archive::write::Archive as Shards;
use aggregator::archive::write::ArchiveSink;
use aggregator::config::SyncMode;
use aggregator::ingest::router::RouterHandle;
use aggregator::links::LinkSockets;
use aggregator::ops::frame_feed::FrameFeed;
use aggregator::{Config, Daemon, DrainReport, Listeners, SourceKind, Stats};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::PATIENCE;

/// The configuration most tests start from: both listeners on loopback port 0, a fast stats
/// publisher, everything else at its documented default.
pub fn test_config() -> Config {
    let mut config = Config::default();
    config.uplink.listen = "127.0.0.1:0".parse().unwrap();
    config.replay.listen = "127.0.0.1:0".parse().unwrap();
    config.dashboard.stats_interval = Duration::from_millis(10);
    // The test sinks keep nothing on disk: written is stored.
    config.archive.sync = SyncMode::Never;
    config
}

/// The test config with its archive in `dir`, synced every 20 ms as deployed, in one shard: for
/// tests that read one shard's stream back in archive order (followers, TM servers).
pub fn archive_config(dir: &Path) -> Config {
    let mut config = test_config();
    config.archive.dir = dir.to_path_buf();
    config.archive.sync = SyncMode::Interval;
    config.runtime.shards = 1;
    config
}

/// A config whose pipeline moves every frame on its own (`max_batch_frames = 1`), so that capacities
/// fill to exact, predictable frame counts.
pub fn unbatched_config(processor: usize, emergency: usize, archive: usize) -> Config {
    let mut config = test_config();
    config.pipeline.processor_capacity = processor;
    config.pipeline.emergency_capacity = emergency;
    config.pipeline.archive_capacity = archive;
    config.pipeline.max_batch_frames = 1;
    config
}

/// A daemon running in-process on loopback port 0.
pub struct TestDaemon {
    pub uplink: SocketAddr,
    pub replay: SocketAddr,
    /// Each bound link's address, by name (`[[links]]`).
    pub links: std::collections::HashMap<String, SocketAddr>,
    pub config: Config,
    pub stats: Stats,
    pub router: RouterHandle,
    pub token: CancellationToken,
    handle: Option<JoinHandle<DrainReport>>,
}

impl TestDaemon {
    /// Starts a daemon storing into `sinks`: one sink, or one per shard.
    pub async fn start(config: Config, sinks: impl Into<Shards>) -> TestDaemon {
        Self::start_with(config, sinks, |_| ()).await.0
    }

    /// Starts a daemon, letting `before_run` take handles (such as a frame feed) first.
    pub async fn start_with<T>(
        config: Config,
        sinks: impl Into<Shards>,
        before_run: impl FnOnce(&Daemon) -> T,
    ) -> (TestDaemon, T) {
        let sinks = sinks.into();
        Self::start_built(config, |config| Daemon::new(config, sinks), before_run).await
    }

    /// Starts the daemon `build` makes from the config (after binding its listeners), letting
    /// `before_run` take handles first.
    pub async fn start_built<T>(
        config: Config,
        build: impl FnOnce(Config) -> Daemon,
        before_run: impl FnOnce(&Daemon) -> T,
    ) -> (TestDaemon, T) {
        config.validate().expect("the test config is valid");
        let listeners = Listeners::bind(&config)
            .await
            .expect("bind loopback port 0");
        let uplink = listeners.uplink.local_addr().unwrap();
        let replay = listeners.replay.local_addr().unwrap();
        let sockets = LinkSockets::bind(&config.links)
            .await
            .expect("bind the links on loopback");
        let links = (config.links.iter())
            .filter_map(|l| Some((l.name.clone(), sockets.local_addr(&l.name)?)))
            .collect();
        let mut daemon = build(config.clone());
        daemon.serve_links(sockets);
        let taken = before_run(&daemon);
        let stats = daemon.stats();
        let router = daemon.router();
        let token = CancellationToken::new();
        let handle = tokio::spawn(daemon.run(listeners, token.clone().cancelled_owned()));
        let daemon = TestDaemon {
            uplink,
            replay,
            links,
            config,
            stats,
            router,
            token,
            handle: Some(handle),
        };
        (daemon, taken)
    }

    /// Starts a daemon and takes a lossy frame subscription named `name`, holding `capacity`
    /// batches, before it runs.
    pub async fn start_with_feed(
        config: Config,
        sink: Box<dyn ArchiveSink>,
        name: &'static str,
        capacity: usize,
    ) -> (TestDaemon, FrameFeed) {
        Self::start_with(config, sink, |daemon| {
            daemon.subscribe_frames(name, capacity)
        })
        .await
    }

    /// The listener address for sources of `kind`.
    pub fn addr(&self, kind: SourceKind) -> SocketAddr {
        match kind {
            SourceKind::LiveUplink => self.uplink,
            SourceKind::ArchivedReplay => self.replay,
        }
    }

    /// Starts the drain without waiting for it.
    pub fn begin_shutdown(&self) {
        self.token.cancel();
    }

    /// Waits for `run` to return (after [`Self::begin_shutdown`] or a call that cancels).
    pub async fn join(&mut self) -> DrainReport {
        let handle = self.handle.take().expect("joined once");
        tokio::time::timeout(PATIENCE, handle)
            .await
            .expect("the daemon finished its drain in time")
            .expect("the daemon task did not panic")
    }

    /// Cancels and waits for the drain report.
    pub async fn shutdown(mut self) -> DrainReport {
        self.begin_shutdown();
        self.join().await
    }

    /// Number of sources the router lists right now.
    pub async fn source_keys(&self) -> Vec<(SourceKind, u32)> {
        self.router
            .sources()
            .await
            .expect("router alive")
            .into_iter()
            .map(|s| (s.kind, s.id))
            .collect()
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        // A failed test must not leave the daemon serving.
        self.token.cancel();
    }
}
