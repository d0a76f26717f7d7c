//! Opening the archive: every shard's directory found, its newest segment recovered, and the
//! [`Archive`] a daemon runs with, or counting sinks that remember nothing.

use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};

use tokio::sync::watch;

use super::journal::{self, Gate, Leftover};
use super::recovery::{self, Recovered};
use super::sink::{Archive, ArchiveSink, ArchiveTime, CountingSink};
use super::writer::{create_dir, SegmentSink, ShardDir, Shared};
use crate::archive::format::index::{OpenSpan, SpanCache};
use crate::archive::format::{self, shard_dir, ArchiveError};
use crate::archive::retention::{SealedFeed, ShardStart};
use crate::config::{ArchiveConfig, ArchiveKind};
use crate::domain::clock::ArchiveClock;
use crate::domain::position::DurableEnd;
use crate::domain::readers::Readers;

/// Opens the archive the config names for `shards` shards: the durable segment archive, each
/// shard recovered from its newest segment, with every source's resume point; or counting sinks,
/// which remember nothing.
pub fn open(config: &ArchiveConfig, shards: usize) -> Result<Archive, ArchiveError> {
    match config.kind {
        ArchiveKind::Segments => open_shards(config, shards),
        ArchiveKind::Count => Ok(Archive::from(
            (0..shards)
                .map(|_| Box::new(CountingSink::default()) as Box<dyn ArchiveSink>)
                .collect::<Vec<_>>(),
        )),
    }
}

/// Opens the archive of `shards` shards in `config.dir` ([`format::shard_dir`]): locks it,
/// recovers every shard directory in parallel (also those of shards beyond `shards`, left by a
/// daemon that ran more, whose frames still count), merges each source's resume point over all of
/// them, and starts a sink for each of the first `shards`. The others are retired: read, never
/// written.
pub(super) fn open_shards(config: &ArchiveConfig, count: usize) -> Result<Archive, ArchiveError> {
    let root = config.dir.clone();
    create_dir(&root)?;
    // Taken before any shard is touched: recovery deletes files a crash left unnamed.
    let root_lock = format::lock_directory(&root)?;
    let dirs = shard_dirs(&root, count)?;
    let spans = SpanCache::default();
    let mut recovered = recover_all(&dirs, &spans)?;
    retire_journals(&mut recovered, count);
    let mut sources: Vec<_> = recovered
        .iter_mut()
        .map(|r| std::mem::take(&mut r.sources))
        .collect();
    let resume = recovery::resume_points(&mut sources);
    for (shard, sources) in recovered.iter_mut().zip(sources) {
        shard.sources = sources;
    }
    // Where each shard's received times stood when the last run stopped.
    let shard_starts: Vec<ShardStart> = (dirs.iter().zip(&recovered))
        .map(|((shard, _), r)| ShardStart::before(*shard, r.start.newest_received))
        .collect();
    let (sealed, sealed_rx) = mpsc::channel();
    let shared = Shared {
        gate: Arc::new(Gate::new(&root)),
        readers: Arc::new(Readers::default()),
        sealed: Some(sealed),
        span: Arc::default(),
        spans: spans.clone(),
        steps: Arc::default(),
        started: ArchiveClock::process().now(),
    };
    let mut archive = Archive {
        sinks: Vec::new(),
        retired: Vec::new(),
        resume,
        readers: Some(Arc::clone(&shared.readers)),
        files: None,
        clock: ArchiveTime {
            steps: Arc::clone(&shared.steps),
            newest_at_start: shard_starts.iter().filter_map(|s| s.newest).max(),
        },
        spans: spans.clone(),
    };
    let mut feed = SealedFeed {
        root: root.clone(),
        sealed: sealed_rx,
        open: Vec::new(),
        start: shard_starts,
        spans: spans.clone(),
    };
    let mut shards: Vec<_> = dirs.into_iter().zip(recovered).collect();
    let retired = shards.split_off(shards.len().min(count));
    let sinks = start_sinks(config, &mut feed, shards, root_lock, shared)?;
    archive.sinks = sinks;
    archive.files = Some(feed);
    for ((shard, _), recovered) in retired {
        // A retired shard: all of its files, which nothing writes any more, as far as recovery
        // found whole records. The receiver's sender is gone, which tells followers so.
        let end = recovered
            .start
            .newest
            .map_or(DurableEnd { segment: 0, len: 0 }, |newest| DurableEnd {
                segment: newest.index,
                len: newest.len,
            });
        archive.retired.push((shard, watch::channel(end).1));
    }
    Ok(archive)
}

/// The frames a retired shard's journal holds that its segments lost, given to shard 0 to store.
fn retire_journals(recovered: &mut [Recovered], shards: usize) {
    let retired: Vec<Leftover> = recovered[shards..]
        .iter_mut()
        .map(|r| std::mem::take(&mut r.leftover))
        .collect();
    let first = &mut recovered[0];
    for leftover in retired {
        first.leftover.absorb(leftover, &mut first.sources);
    }
}

/// A sink started for each of `shards`, with what recovery read of it (the first with the
/// archive directory's lock, `root_lock`), each told to retention's `feed`.
fn start_sinks(
    config: &ArchiveConfig,
    feed: &mut SealedFeed,
    shards: Vec<((usize, PathBuf), Recovered)>,
    root_lock: std::fs::File,
    shared: Shared,
) -> Result<Vec<Box<dyn ArchiveSink>>, ArchiveError> {
    let mut sinks: Vec<Box<dyn ArchiveSink>> = Vec::with_capacity(shards.len());
    let mut lock = Some(root_lock);
    for ((shard, dir), recovered) in shards {
        let lock = match lock.take() {
            Some(root_lock) => root_lock,
            None => format::lock_directory(&dir)?,
        };
        let span = Arc::new(OpenSpan::default());
        feed.open.push((shard, Arc::clone(&span)));
        let shared = Shared {
            span,
            ..shared.clone()
        };
        let sink = SegmentSink::start(config, ShardDir { dir, shard, lock }, recovered, shared)?;
        feed.start[shard].began_in = sink.segment_index();
        sinks.push(Box::new(sink));
    }
    Ok(sinks)
}

/// The shard directories of the archive at `root` for `shards` shards, created, then those beyond
/// them a daemon that ran more left, by shard.
fn shard_dirs(root: &Path, shards: usize) -> Result<Vec<(usize, PathBuf)>, ArchiveError> {
    let mut dirs: Vec<(usize, PathBuf)> = (0..shards).map(|k| (k, shard_dir(root, k))).collect();
    for (shard, dir) in format::list_shards(root)? {
        if shard >= shards {
            dirs.push((shard, dir));
        }
    }
    for (_, dir) in &dirs[..shards] {
        create_dir(dir)?;
    }
    Ok(dirs)
}

/// Recovers each shard directory of `dirs`, in parallel.
fn recover_all(
    dirs: &[(usize, PathBuf)],
    spans: &SpanCache,
) -> Result<Vec<Recovered>, ArchiveError> {
    std::thread::scope(|scope| {
        let reading: Vec<_> = dirs
            .iter()
            .map(|(_, dir)| {
                scope.spawn(|| {
                    let (mut sources, start) = recovery::recover(dir, spans)?;
                    let leftover = journal::recover(dir, &mut sources)?;
                    Ok(Recovered {
                        sources,
                        start,
                        leftover,
                    })
                })
            })
            .collect();
        reading
            .into_iter()
            .map(|thread| {
                thread
                    .join()
                    .unwrap_or_else(|_| Err(ArchiveError::broken("recovery panicked")))
            })
            .collect()
    })
}
