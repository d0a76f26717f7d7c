//! Following every shard of the archive at once: a cursor per shard, each read up to its own
//! shard's durable end, for the follow server and the sinks alike.
//!
//! Why per shard: each shard's writer appends a segment stream of its own
//! (`crate::archive::layout`) and publishes how far it is durable on a watch of its own. There is
//! no order across shards to keep, only each shard's (and so each source's, since a source
//! belongs to one shard), so a follower reads the shards in turn, a bounded chunk at a time, and
//! frames of different shards interleave as they become durable: a busy shard never holds back
//! another's frames for longer than one chunk. A shard's watch that is closed (its writer
//! stopped, at a drain, or a retired shard of a daemon now run with fewer shards) means that
//! nothing more becomes durable there: once every shard is closed and read to its end, the
//! follower has everything.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::future::select_all;
use tokio::sync::watch;

use super::protocol::{EndReason, FrameRun, RefuseReason, Start, Subscription};
use super::reader::{self, Cursor, ReadError};
use crate::archive::{layout, DurableEnd};

/// Every shard of the archive, each with its durable end: what the daemon hands followers and
/// sinks (shard 0 first, then by shard). A closed watch is a shard where nothing more becomes
/// durable.
pub(crate) type DurableEnds = Vec<(usize, watch::Receiver<DurableEnd>)>;

/// One shard as a follower reads it.
#[derive(Debug)]
struct Shard {
    index: usize,
    dir: PathBuf,
    durable: watch::Receiver<DurableEnd>,
    cursor: Cursor,
    /// Its watch is still open: more may become durable.
    open: bool,
}

/// A follower's place in every shard, and the reads that move it.
#[derive(Debug)]
pub(crate) struct ShardCursors {
    shards: Vec<Shard>,
    /// The shard the next read tries first: the shards take turns.
    next: usize,
}

impl ShardCursors {
    /// Finds where `subscription` starts in each shard of the archive at `root`; a refusal
    /// names the shard it is about.
    pub(crate) async fn locate(
        root: &Path,
        durable: &DurableEnds,
        start: &Start,
    ) -> Result<ShardCursors, (RefuseReason, String)> {
        if let Start::After(positions) = start {
            if let Some(at) = positions
                .iter()
                .find(|at| !durable.iter().any(|(shard, _)| *shard == at.shard))
            {
                let shards: Vec<String> = durable.iter().map(|(k, _)| k.to_string()).collect();
                return Err((
                    RefuseReason::UnknownPosition,
                    format!(
                        "{at}: this archive has no shard {} (its shards: {})",
                        at.shard,
                        shards.join(", ")
                    ),
                ));
            }
        }
        let mut shards = Vec::with_capacity(durable.len());
        for (index, receiver) in durable {
            let (index, mut durable) = (*index, receiver.clone());
            let end = *durable.borrow_and_update();
            let dir = layout::shard_dir(root, index);
            let (from, start) = (dir.clone(), start.clone());
            let located =
                tokio::task::spawn_blocking(move || reader::locate(&from, index, &start, end))
                    .await
                    .map_err(|err| (RefuseReason::ArchiveUnreadable, err.to_string()))?;
            shards.push(Shard {
                index,
                dir,
                durable,
                cursor: located?,
                open: true,
            });
        }
        Ok(ShardCursors { shards, next: 0 })
    }

    /// Reads the next chunk of a shard not yet at its durable end, taking the shards in turn: its
    /// runs (none at a segment's end, or when the subscription wants none of them). `None`: every
    /// shard is read to its durable end; [`Self::changed`] says when one moves.
    pub(crate) async fn read(
        &mut self,
        subscription: &Arc<Subscription>,
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
            let (dir, index, cursor) = (shard.dir.clone(), shard.index, shard.cursor);
            let wanted = Arc::clone(subscription);
            let chunk = tokio::task::spawn_blocking(move || {
                reader::read(&dir, index, cursor, end, &wanted)
            })
            .await
            .map_err(|err| (EndReason::ArchiveUnreadable, err.to_string()))??;
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
