//! Opening the archive: every shard's directory found, its newest segment recovered, and the
//! [`Archive`] a daemon runs with, or counting sinks that remember nothing.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};

use tokio::sync::watch;

use super::disk::Readers;
use super::journal::{self, Gate, Leftover};
use super::recovery::{self, Start};
use super::sink::{Archive, ArchiveSink, ArchiveTime, CountingSink};
use super::tracked::Tracked;
use super::writer::{create_dir, SegmentSink, Shared};
use crate::archive::format::index::OpenSpan;
use crate::archive::format::{self, shard_dir};
use crate::archive::retention::{SealedFeed, ShardStart};
use crate::config::{ArchiveConfig, ArchiveKind};
use crate::domain::clock::ArchiveClock;
use crate::domain::frame::SourceKey;

/// Opens the archive the config names for `shards` shards: the durable segment archive, each
/// shard recovered from its newest segment, with every source's resume point; or counting sinks,
/// which remember nothing.
pub fn open(config: &ArchiveConfig, shards: usize) -> io::Result<Archive> {
    match config.kind {
        ArchiveKind::Segments => open_shards(config, shards),
        ArchiveKind::Count => Ok(Archive::from(
            (0..shards)
                .map(|_| Box::new(CountingSink::default()) as Box<dyn ArchiveSink>)
                .collect::<Vec<_>>(),
        )),
    }
}

/// Opens the archive of `shards` shards in `config.dir` ([`super::layout`]): locks it, recovers
/// every shard directory in parallel (also those of shards beyond `shards`, left by a daemon that
/// ran more, whose frames still count), merges each source's resume point over all of them, and
/// starts a sink for each of the first `shards`. The others are retired: read, never written.
pub(super) fn open_shards(config: &ArchiveConfig, shards: usize) -> io::Result<Archive> {
    let root = config.dir.clone();
    create_dir(&root)?;
    // Taken before any shard is touched: recovery deletes files a crash left unnamed.
    let root_lock = format::lock_directory(&root)?;
    let dirs = shard_dirs(&root, shards)?;
    let (mut sources, mut starts): (Vec<_>, Vec<_>) = recover_all(&dirs)?.into_iter().unzip();
    // The frames a retired shard's journal holds that its segments lost are stored by shard 0.
    let retired: Vec<Leftover> = starts[shards..]
        .iter_mut()
        .map(|(_, leftover)| std::mem::take(leftover))
        .collect();
    for leftover in retired {
        starts[0].1.absorb(leftover, &mut sources[0]);
    }
    let resume = recovery::resume_points(&mut sources);
    // Where each shard's received times stood when the last run stopped.
    let mut shard_starts: Vec<ShardStart> = (dirs.iter().zip(&starts))
        .map(|((shard, _), (start, _))| ShardStart::before(*shard, start.newest_received))
        .collect();
    let (sealed, sealed_rx) = mpsc::channel();
    let shared = Shared {
        gate: Arc::new(Gate::new(&root)),
        readers: Arc::new(Readers::default()),
        sealed: Some(sealed),
        span: Arc::default(),
        steps: Arc::default(),
        started: ArchiveClock::process().now(),
    };
    let mut archive = Archive {
        sinks: Vec::with_capacity(shards),
        retired: Vec::new(),
        resume,
        readers: Some(Arc::clone(&shared.readers)),
        files: Some(SealedFeed {
            root: root.clone(),
            sealed: sealed_rx,
            open: Vec::new(),
            start: Vec::new(),
        }),
        clock: ArchiveTime {
            steps: Arc::clone(&shared.steps),
            newest_at_start: shard_starts.iter().filter_map(|s| s.newest).max(),
        },
    };
    let mut lock = Some(root_lock);
    for (((shard, dir), sources), (start, leftover)) in dirs.into_iter().zip(sources).zip(starts) {
        if shard >= shards {
            // A retired shard: all of its files, which nothing writes any more. The
            // receiver's sender is gone, which tells followers so.
            let end = format::stopped_end(&dir)?;
            archive.retired.push((shard, watch::channel(end).1));
            continue;
        }
        let lock = match lock.take() {
            Some(root_lock) => root_lock,
            None => format::lock_directory(&dir)?,
        };
        let span = Arc::new(OpenSpan::default());
        if let Some(files) = &mut archive.files {
            files.open.push((shard, Arc::clone(&span)));
        }
        let sink = SegmentSink::start(
            config,
            (dir, shard, lock),
            (sources, start),
            leftover,
            Shared {
                span,
                ..shared.clone()
            },
        )?;
        shard_starts[shard].began_in = sink.segment_index();
        archive.sinks.push(Box::new(sink));
    }
    if let Some(files) = &mut archive.files {
        files.start = shard_starts;
    }
    Ok(archive)
}

/// The shard directories of the archive at `root` for `shards` shards, created, then those beyond
/// them a daemon that ran more left, by shard.
fn shard_dirs(root: &Path, shards: usize) -> io::Result<Vec<(usize, PathBuf)>> {
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

/// A shard directory recovered: its sources, where its writer starts, and what its journals hold
/// that its segments lost.
type Recovered = (HashMap<SourceKey, Tracked>, (Start, Leftover));

/// Recovers each shard directory of `dirs`, in parallel.
fn recover_all(dirs: &[(usize, PathBuf)]) -> io::Result<Vec<Recovered>> {
    std::thread::scope(|scope| {
        let reading: Vec<_> = dirs
            .iter()
            .map(|(_, dir)| {
                scope.spawn(|| {
                    let (mut sources, start) = recovery::recover(dir)?;
                    let leftover = journal::recover(dir, &mut sources)?;
                    Ok((sources, (start, leftover)))
                })
            })
            .collect();
        reading
            .into_iter()
            .map(|thread| {
                thread
                    .join()
                    .unwrap_or_else(|_| Err(io::Error::other("recovery panicked")))
            })
            .collect()
    })
}
