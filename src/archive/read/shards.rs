//! Reading every shard of the archive at once: a cursor per shard, each read up to its own
//! shard's durable end, for the follow server, the TM outputs and the sinks alike.
//!
//! Why per shard: each shard's writer appends a segment stream of its own
//! (`crate::archive::layout`) and publishes how far it is durable on a watch of its own. There is
//! no order across shards to keep, only each shard's (and so each source's, since a source
//! belongs to one shard), so a reader reads the shards in turn, a bounded chunk at a time, and
//! frames of different shards interleave as they become durable: a busy shard never holds back
//! another's frames for longer than one chunk. A shard's watch that is closed (its writer
//! stopped, at a drain, or a retired shard of a daemon now run with fewer shards) means that
//! nothing more becomes durable there: once every shard is closed and read to its end, the
//! reader has everything.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::future::select_all;
use tokio::sync::watch;
use tokio::task::JoinError;

use super::cursor::{self, Cursor};
use super::error::ReadError;
use super::filter::FrameFilter;
use super::run::FrameRun;
use super::start::Start;
use crate::archive::{layout, DurableEnd};

/// Every shard of the archive, each with its durable end: what the daemon hands followers, TM
/// outputs and sinks (shard 0 first, then by shard). A closed watch is a shard where nothing more
/// becomes durable.
pub(crate) type DurableEnds = Vec<(usize, watch::Receiver<DurableEnd>)>;

/// One shard as a reader reads it.
#[derive(Debug)]
struct Shard {
    index: usize,
    dir: PathBuf,
    durable: watch::Receiver<DurableEnd>,
    cursor: Cursor,
    /// Its watch is still open: more may become durable.
    open: bool,
}

/// A reader's place in every shard, and the reads that move it.
#[derive(Debug)]
pub(crate) struct ShardCursors {
    shards: Vec<Shard>,
    /// The shard the next read tries first: the shards take turns.
    next: usize,
}

impl ShardCursors {
    /// Finds where `start` lies in each shard of the archive at `root`; an error names the shard
    /// it is about.
    pub(crate) async fn locate(
        root: &Path,
        durable: &DurableEnds,
        start: &Start,
    ) -> Result<ShardCursors, ReadError> {
        check_shards(durable, start)?;
        let mut shards = Vec::with_capacity(durable.len());
        for (index, receiver) in durable {
            let (index, mut durable) = (*index, receiver.clone());
            let end = *durable.borrow_and_update();
            let dir = layout::shard_dir(root, index);
            let (from, start) = (dir.clone(), start.clone());
            let located =
                tokio::task::spawn_blocking(move || cursor::locate(&from, index, &start, end))
                    .await;
            shards.push(Shard {
                index,
                dir,
                durable,
                cursor: joined(located)?,
                open: true,
            });
        }
        Ok(ShardCursors { shards, next: 0 })
    }

    /// Reads the next chunk of a shard not yet at its durable end, taking the shards in turn: its
    /// runs (none at a segment's end, or when `filter` wants none of them). `None`: every shard is
    /// read to its durable end; [`Self::changed`] says when one moves.
    pub(crate) async fn read(
        &mut self,
        filter: &Arc<FrameFilter>,
    ) -> Result<Option<Vec<FrameRun>>, ReadError> {
        let count = self.shards.len();
        for turn in 0..count {
            let at = (self.next + turn) % count;
            let shard = &mut self.shards[at];
            let end = *shard.durable.borrow_and_update();
            if shard.cursor.has_reached(end) {
                continue;
            }
            self.next = (at + 1) % count;
            let (dir, index, from) = (shard.dir.clone(), shard.index, shard.cursor);
            let wanted = Arc::clone(filter);
            let chunk =
                tokio::task::spawn_blocking(move || cursor::read(&dir, index, from, end, &wanted))
                    .await;
            let chunk = joined(chunk)?;
            shard.cursor = chunk.cursor;
            return Ok(Some(chunk.runs));
        }
        Ok(None)
    }

    /// Whether a shard's watch is open: more may become durable.
    pub(crate) fn is_open(&self) -> bool {
        self.shards.iter().any(|shard| shard.open)
    }

    /// Waits until a shard's durable end moves or its watch closes (read again then); at once
    /// when no watch is open. Cancel-safe: nothing changes until it returns.
    pub(crate) async fn changed(&mut self) {
        let waits: Vec<_> = self
            .shards
            .iter_mut()
            .filter(|shard| shard.open)
            .map(|shard| {
                Box::pin(async move {
                    if shard.durable.changed().await.is_err() {
                        shard.open = false;
                    }
                })
            })
            .collect();
        if !waits.is_empty() {
            select_all(waits).await;
        }
    }
}

/// Checks that every position of `start` names a shard of the archive.
fn check_shards(durable: &DurableEnds, start: &Start) -> Result<(), ReadError> {
    let Start::After(positions) = start else {
        return Ok(());
    };
    let known = |shard| durable.iter().any(|(k, _)| *k == shard);
    match positions.iter().find(|at| !known(at.shard)) {
        Some(at) => Err(ReadError::UnknownShard {
            at,
            shards: durable.iter().map(|(k, _)| *k).collect(),
        }),
        None => Ok(()),
    }
}

/// What a blocking read returned; a read task that failed (it panicked) is an unreadable archive.
fn joined<T>(result: Result<Result<T, ReadError>, JoinError>) -> Result<T, ReadError> {
    result.map_err(|err| ReadError::Unreadable(std::io::Error::other(err)))?
}
