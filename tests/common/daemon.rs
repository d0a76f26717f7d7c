//! The daemon under test: a [`Daemon`] running in-process with every listener its config asks for
//! bound on loopback (sources, links, followers, TM servers), and the configs tests start from.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

pub use aggregator::archive::write::Archive as Shards;
use aggregator::archive::write::ArchiveSink;
use aggregator::catalog::CatalogHandle;
use aggregator::config::SyncMode;
use aggregator::ingest::router::RouterHandle;
use aggregator::links::LinkSockets;
use aggregator::ops::frame_feed::FrameFeed;
use aggregator::{Config, Daemon, DrainReport, Listeners, Priority, SourceKind, Stats};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{wait_until, Client, PATIENCE};

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

/// `config` with its follow listener on (`consumer.enabled`), on loopback port 0: the daemon
/// under test then serves followers of its archive, as the binary does.
pub fn with_followers(mut config: Config) -> Config {
    config.consumer.enabled = true;
    config.consumer.listen = "127.0.0.1:0".parse().unwrap();
    config
}

/// A daemon running in-process on loopback port 0.
pub struct TestDaemon {
    pub uplink: SocketAddr,
    pub replay: SocketAddr,
    /// Each bound link's address, by name (`[[links]]`).
    pub links: HashMap<String, SocketAddr>,
    /// The follow listener's address, where the config enables it ([`with_followers`]).
    follow: Option<SocketAddr>,
    /// Each TM server's address, by name (`[[tm_servers]]`).
    pub tm_servers: HashMap<String, SocketAddr>,
    pub config: Config,
    pub stats: Stats,
    pub router: RouterHandle,
    /// The catalog the daemon announces to sources and followers.
    pub catalog: CatalogHandle,
    pub token: CancellationToken,
    handle: Option<JoinHandle<DrainReport>>,
}

impl TestDaemon {
    /// Starts a daemon storing into `sinks`: one sink, or one per shard.
    pub async fn start(config: Config, sinks: impl Into<Shards>) -> TestDaemon {
        Self::start_with(config, sinks, |_| ()).await.0
    }

    /// Opens the archive the config names (`archive`, `runtime.shards`) as the binary opens it,
    /// and starts a daemon storing into it.
    pub async fn open(config: Config) -> TestDaemon {
        let archive = aggregator::archive::write::open(&config.archive, config.runtime.shards)
            .expect("open the archive");
        Self::start(config, archive).await
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
        let served = Served::bind(&config).await;
        let uplink = listeners.uplink.local_addr().unwrap();
        let replay = listeners.replay.local_addr().unwrap();
        let (links, follow) = (served.link_addrs(&config), served.follow_addr());
        let tm_servers = served.tm_addrs();
        let mut daemon = build(config.clone());
        served.hand_to(&mut daemon);
        let taken = before_run(&daemon);
        let token = CancellationToken::new();
        let test = TestDaemon {
            uplink,
            replay,
            links,
            follow,
            tm_servers,
            config,
            stats: daemon.stats(),
            router: daemon.router(),
            catalog: daemon.catalog(),
            token: token.clone(),
            handle: Some(tokio::spawn(daemon.run(listeners, token.cancelled_owned()))),
        };
        (test, taken)
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

    /// The follow listener's address; the config must enable it ([`with_followers`]).
    pub fn follow(&self) -> SocketAddr {
        self.follow
            .expect("the daemon serves followers: start it on with_followers(config)")
    }

    /// TM server `name`'s address.
    pub fn tm_server(&self, name: &str) -> SocketAddr {
        *(self.tm_servers.get(name)).unwrap_or_else(|| panic!("no TM server {name:?}"))
    }

    /// Sends `frames` (priority, sequence) as source `kind:id` on a connection of its own, and
    /// closes it once the daemon has handled them all (acknowledged and closed).
    pub async fn send(
        &self,
        kind: SourceKind,
        id: u32,
        frames: impl IntoIterator<Item = (Priority, u64)>,
    ) {
        let mut client = Client::source(self.addr(kind), kind, id).await;
        client.send_frames(frames).await;
        client.finish_sending().await;
        client.read_to_close().await;
    }

    /// Waits until the archive has stored exactly `frames` frames since the daemon started.
    pub async fn wait_archived(&self, frames: u64) {
        wait_until(&format!("{frames} frames archived"), PATIENCE, || {
            self.stats.snapshot().frames_archived == frames
        })
        .await;
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

    /// Cancels, waits for the drain report and fails the test unless the drain was clean.
    pub async fn shutdown_clean(self) -> DrainReport {
        let report = self.shutdown().await;
        assert!(report.is_clean(), "{report:?}");
        report
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

/// What the daemon serves besides its source listeners, bound before it runs as the binary binds
/// it: its links, its follow listener and its TM servers.
struct Served {
    links: LinkSockets,
    follow: Option<TcpListener>,
    tm_servers: Vec<(String, TcpListener)>,
}

impl Served {
    async fn bind(config: &Config) -> Served {
        let links = LinkSockets::bind(&config.links)
            .await
            .expect("bind the links on loopback");
        let follow = if config.consumer.enabled {
            Some(bind(config.consumer.listen, "the follow listener").await)
        } else {
            None
        };
        let mut tm_servers = Vec::new();
        for server in &config.tm_servers {
            let listener = bind(server.listen, "a TM server").await;
            tm_servers.push((server.name.clone(), listener));
        }
        Served {
            links,
            follow,
            tm_servers,
        }
    }

    /// Each link's address, by name.
    fn link_addrs(&self, config: &Config) -> HashMap<String, SocketAddr> {
        (config.links.iter())
            .filter_map(|l| Some((l.name.clone(), self.links.local_addr(&l.name)?)))
            .collect()
    }

    fn follow_addr(&self) -> Option<SocketAddr> {
        (self.follow.as_ref()).map(|l| l.local_addr().unwrap())
    }

    /// Each TM server's address, by name.
    fn tm_addrs(&self) -> HashMap<String, SocketAddr> {
        (self.tm_servers.iter())
            .map(|(name, l)| (name.clone(), l.local_addr().unwrap()))
            .collect()
    }

    /// Hands every listener to `daemon`, to serve once it runs.
    fn hand_to(self, daemon: &mut Daemon) {
        daemon.serve_links(self.links);
        if let Some(listener) = self.follow {
            daemon.serve_followers(listener);
        }
        for (name, listener) in self.tm_servers {
            daemon.serve_tm(&name, listener);
        }
    }
}

async fn bind(addr: SocketAddr, what: &str) -> TcpListener {
    (TcpListener::bind(addr).await).unwrap_or_else(|err| panic!("bind {what} on {addr}: {err}"))
}
