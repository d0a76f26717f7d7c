//! An archive of several shards, each shard's segment stream written by a daemon of its own.

use std::path::{Path, PathBuf};

use aggregator::archive::format;
use aggregator::archive::read::DurableEnds;
use aggregator::archive::write::{ArchiveSink, SegmentSink};
use aggregator::domain::position::DurableEnd;
use aggregator::{Config, Daemon, Priority, SourceKind};
use tokio::sync::watch;

use super::{Shards, TestDaemon};

/// An archive of several shards as a sharded daemon lays it out: shard `k`'s frames come through
/// a daemon of its own whose segment sink writes in `format::shard_dir(root, k)`, so each shard
/// has its own segment stream and its own durable end, as each shard's writer has. The test
/// starts followers or sinks on [`Self::durable`].
pub struct ShardedArchive {
    pub root: PathBuf,
    /// The running shards' daemons.
    daemons: Vec<(usize, TestDaemon)>,
    /// Every shard's durable end, by shard; closed for a stopped (retired) shard.
    pub durable: Vec<(usize, watch::Receiver<DurableEnd>)>,
    config: Config,
}

impl ShardedArchive {
    /// Starts a daemon for each of `shards` on `root`, from `config` (its archive directory
    /// replaced by the shard's).
    pub async fn start(root: &Path, shards: &[usize], config: &Config) -> ShardedArchive {
        let mut archive = ShardedArchive {
            root: root.to_path_buf(),
            daemons: Vec::new(),
            durable: Vec::new(),
            config: config.clone(),
        };
        for &shard in shards {
            archive.start_shard(shard).await;
        }
        archive
    }

    /// Every shard's durable end, as the daemon hands its readers (with a span cache of their own).
    pub fn durable_ends(&self) -> DurableEnds {
        DurableEnds::new(self.durable.clone(), Default::default())
    }

    /// Starts shard `shard`'s daemon (again) on its directory, with a new durable end.
    pub async fn start_shard(&mut self, shard: usize) {
        let mut config = self.config.clone();
        config.archive.dir = format::shard_dir(&self.root, shard);
        let (sink, resume) = SegmentSink::open(&config.archive).expect("open the shard's archive");
        let durable = sink
            .durable_end()
            .expect("a segment sink has a durable end");
        let shards = Shards {
            sinks: vec![Box::new(sink)],
            retired: Vec::new(),
            resume,
            readers: None,
            files: None,
            clock: Default::default(),
            spans: Default::default(),
        };
        let build = |config| Daemon::new(config, shards);
        let (daemon, ()) = TestDaemon::start_built(config, build, |_| ()).await;
        self.durable.retain(|(k, _)| *k != shard);
        self.durable.push((shard, durable));
        self.durable.sort_by_key(|(k, _)| *k);
        self.daemons.push((shard, daemon));
    }

    /// Shard `shard`'s running daemon.
    pub fn daemon(&self, shard: usize) -> &TestDaemon {
        let found = self.daemons.iter().find(|(k, _)| *k == shard);
        &found.unwrap_or_else(|| panic!("shard {shard} runs")).1
    }

    /// Sends `frames` (priority, sequence) as source `kind:id` to shard `shard`, on a connection
    /// of its own, and closes it once every frame is stored.
    pub async fn send(
        &self,
        shard: usize,
        kind: SourceKind,
        id: u32,
        frames: impl IntoIterator<Item = (Priority, u64)>,
    ) {
        self.daemon(shard).send(kind, id, frames).await;
    }

    /// Drains shard `shard`'s daemon: its segment sink closes, and its durable end with it.
    pub async fn stop_shard(&mut self, shard: usize) {
        let at = self.daemons.iter().position(|(k, _)| *k == shard);
        let (_, daemon) = self
            .daemons
            .remove(at.unwrap_or_else(|| panic!("shard {shard} runs")));
        let report = daemon.shutdown().await;
        assert!(report.is_clean(), "shard {shard}: {report:?}");
    }

    /// Drains every shard still running.
    pub async fn stop(&mut self) {
        while let Some((shard, _)) = self.daemons.first() {
            self.stop_shard(*shard).await;
        }
    }
}
