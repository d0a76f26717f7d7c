//! Reading every shard of the archive at once: a cursor per shard, each read up to its own
//! shard's durable end, for the follow server, the TM outputs and the sinks alike.
//!
//! Why per shard: each shard's writer appends a segment stream of its own
//! (`crate::archive::format`) and publishes how far it is durable on a watch of its own. There is
//! no order across shards to keep, only each shard's (and so each source's, since a source
//! belongs to one shard), so a reader reads the shards in turn, a bounded chunk at a time, and
//! frames of different shards interleave as they become durable: a busy shard never holds back
//! another's frames for longer than one chunk. A shard's watch that is closed (its writer
//! stopped, at a drain, or a retired shard of a daemon now run with fewer shards) means that
//! nothing more becomes durable there: once every shard is closed and read to its end, the
//! reader has everything.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;

use futures_util::future::select_all;
use tokio::sync::watch;
use tokio::task::JoinError;

use super::cursor::{self, Cursor};
use super::error::{DamagedRange, ReadError};
use super::gap::{GapWatch, OnGap, Skipped};
use super::run::FrameRun;
use super::start::Start;
use super::window::{self, Earliest, Window};
use crate::archive::format::index::SpanCache;
use crate::archive::format::{self, ArchiveError};
use crate::domain::filter::FrameFilter;
use crate::domain::position::DurableEnd;
use crate::stats::Stats;

/// Every shard of the archive, each with its durable end (shard 0 first, then by shard), and the
/// archive's span cache: what the daemon hands followers, TM outputs, sinks and queries. A closed
/// watch is a shard where nothing more becomes durable.
#[derive(Debug, Clone, Default)]
pub struct DurableEnds {
    shards: Vec<(usize, watch::Receiver<DurableEnd>)>,
    spans: SpanCache,
    /// Set when the client a query reads them for has gone: the query's reading stops.
    abandoned: Option<Arc<AtomicBool>>,
}

impl DurableEnds {
    pub fn new(shards: Vec<(usize, watch::Receiver<DurableEnd>)>, spans: SpanCache) -> Self {
        DurableEnds {
            shards,
            spans,
            abandoned: None,
        }
    }

    /// These ends, read for a client whose going sets `abandoned`: a reading of them (a query
    /// of completeness, passes or volume) stops then rather than answer no one.
    pub(crate) fn until_abandoned(self, abandoned: Arc<AtomicBool>) -> DurableEnds {
        DurableEnds {
            abandoned: Some(abandoned),
            ..self
        }
    }

    /// Whether the client these ends are read for has gone.
    pub(crate) fn is_abandoned(&self) -> bool {
        (self.abandoned.as_ref()).is_some_and(|gone| gone.load(Relaxed))
    }

    /// Each shard and its durable end.
    pub(crate) fn iter(&self) -> std::slice::Iter<'_, (usize, watch::Receiver<DurableEnd>)> {
        self.shards.iter()
    }

    pub(crate) fn len(&self) -> usize {
        self.shards.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.shards.is_empty()
    }

    /// The spans of the indexes read or written so far.
    pub(crate) fn spans(&self) -> &SpanCache {
        &self.spans
    }

    /// Every shard's durable end as it is now, never to move: what a query without `to` reads
    /// to, every frame stored by the time of the query, whatever its received time.
    pub(crate) fn frozen(&self) -> DurableEnds {
        let end = |(shard, end): &(usize, watch::Receiver<DurableEnd>)| {
            (*shard, watch::channel(*end.borrow()).1)
        };
        DurableEnds::new(self.iter().map(end).collect(), self.spans.clone())
    }
}

/// One shard as a reader reads it.
#[derive(Debug)]
struct Shard {
    index: usize,
    dir: PathBuf,
    durable: watch::Receiver<DurableEnd>,
    cursor: Cursor,
    /// Its watch is still open: more may become durable.
    open: bool,
    /// Its watch was closed when the reader found it: a retired shard (of a daemon now run with
    /// fewer shards), of which a window ends where it is read to its end.
    retired: bool,
    /// What it needs to count a skip, when the reader goes on past deleted segments.
    gap: Option<GapWatch>,
    /// The reader's received times, when it wants only some.
    window: Option<Window>,
}

impl Shard {
    /// No frame the reader wants can come any more here: its window ended.
    fn done(&self) -> bool {
        self.window.as_ref().is_some_and(|w| w.done)
    }
}

/// A reader's place in every shard, and the reads that move it.
#[derive(Debug)]
pub(crate) struct ShardCursors {
    shards: Vec<Shard>,
    /// The shard the next read tries first: the shards take turns.
    next: usize,
    /// The frames the reader wants.
    filter: Arc<FrameFilter>,
    /// Skips not yet taken ([`Self::take_skipped`]).
    skipped: Vec<Skipped>,
    /// What the start found deleted of the reader's window, not yet taken
    /// ([`Self::take_earliest`]).
    earliest: Vec<Earliest>,
    /// Damaged records are passed over (and listed here until taken) rather than an error.
    damage: Option<Vec<DamagedRange>>,
    /// What it read of sealed segments leaves the page cache ([`Self::uncaching`]).
    uncache: bool,
    /// The archive's span cache, which the windows' plans consult and fill.
    spans: SpanCache,
    /// Where a damaged record met is counted: a reader in the daemon ([`Self::counting_damage`]).
    damage_count: Option<Stats>,
}

impl ShardCursors {
    /// Finds where `start` lies in each shard of the archive at `root`, for a reader of the frames
    /// `filter` wants that does `on_gap` when its next frames were deleted (a start position
    /// already deleted included); an error names the shard it is about.
    pub(crate) async fn locate(
        root: &Path,
        durable: &DurableEnds,
        start: &Start,
        filter: Arc<FrameFilter>,
        on_gap: OnGap,
    ) -> Result<ShardCursors, ReadError> {
        check_shards(durable, start)?;
        let mut cursors = ShardCursors {
            shards: Vec::with_capacity(durable.len()),
            next: 0,
            filter,
            skipped: Vec::new(),
            earliest: Vec::new(),
            damage: None,
            uncache: false,
            spans: durable.spans().clone(),
            damage_count: None,
        };
        for (index, receiver) in durable.iter() {
            let (index, mut durable) = (*index, receiver.clone());
            let end = *durable.borrow_and_update();
            let dir = format::shard_dir(root, index);
            let (from, start, wanted) = (dir.clone(), start.clone(), Arc::clone(&cursors.filter));
            let spans = cursors.spans.clone();
            let located = tokio::task::spawn_blocking(move || {
                let shard = ShardStart {
                    index,
                    start: &start,
                    end,
                };
                locate_shard(&from, shard, &wanted, on_gap, &spans)
            })
            .await;
            let (cursor, gap, skipped, earliest) = joined(located)?;
            cursors.skipped.extend(skipped);
            cursors.earliest.extend(earliest);
            let retired = durable.has_changed().is_err();
            cursors.shards.push(Shard {
                index,
                dir,
                durable,
                cursor,
                open: !retired,
                retired,
                gap,
                window: Window::of(&cursors.filter),
            });
        }
        Ok(cursors)
    }

    /// Reads the next chunk of a shard not yet at its durable end, taking the shards in turn: its
    /// runs (none at a segment's end, or when the filter wants none of them). `None`: every shard
    /// is read to its durable end; [`Self::changed`] says when one moves. A reader that goes on
    /// past deleted segments finds what it skipped in [`Self::take_skipped`], before these runs.
    pub(crate) async fn read(&mut self) -> Result<Option<Vec<FrameRun>>, ReadError> {
        let count = self.shards.len();
        for turn in 0..count {
            let at = (self.next + turn) % count;
            let shard = &mut self.shards[at];
            let end = *shard.durable.borrow_and_update();
            if shard.done() {
                continue;
            }
            if shard.cursor.has_reached(end) {
                if let Some(window) = &mut shard.window {
                    window.reached_end(shard.open, shard.retired);
                }
                continue;
            }
            self.next = (at + 1) % count;
            return self.read_shard(at, end).await.map(Some);
        }
        Ok(None)
    }

    /// Reads the next chunk of shard `at` up to `end`, going on past deleted segments if the
    /// reader does.
    async fn read_shard(&mut self, at: usize, end: DurableEnd) -> Result<Vec<FrameRun>, ReadError> {
        let filter = Arc::clone(&self.filter);
        let chunk = self.read_chunk(at, end).await;
        let shard = &mut self.shards[at];
        let index = shard.index;
        match (chunk, shard.gap.take()) {
            (Ok((chunk, window)), gap) => {
                shard.gap = gap.map(|mut gap| {
                    gap.pass(chunk.passed);
                    gap
                });
                shard.window = window;
                shard.cursor = chunk.cursor;
                if let Some(range) = chunk.damaged {
                    tracing::warn!(%range, "archive reader: damaged records passed over");
                    self.damage.get_or_insert_with(Vec::new).push(range);
                }
                Ok(chunk.runs)
            }
            (Err(ReadError::SegmentDeleted { segment, .. }), Some(mut gap)) => {
                // The window went with the failed read: it starts over at the oldest segment left.
                shard.window = Window::of(&filter);
                let dir = shard.dir.clone();
                let skipping = tokio::task::spawn_blocking(move || {
                    let skip = gap.skip(&dir, index, segment, &filter);
                    skip.map(|skipped| (skipped, gap))
                })
                .await;
                let (skipped, gap) = joined(skipping)?;
                shard.cursor = Cursor::segment_start(skipped.resumed);
                shard.gap = Some(gap);
                self.skipped.push(skipped);
                Ok(Vec::new())
            }
            (Err(err), gap) => {
                shard.gap = gap;
                shard.window = Window::of(&filter);
                Err(err)
            }
        }
    }

    /// Reads shard `at`'s next chunk (within the reader's window, which comes back with it),
    /// counting a damaged record met where the reader counts them.
    async fn read_chunk(
        &mut self,
        at: usize,
        end: DurableEnd,
    ) -> Result<(cursor::Chunk, Option<Window>), ReadError> {
        let shard = &mut self.shards[at];
        let (dir, index, from) = (shard.dir.clone(), shard.index, shard.cursor);
        let (track, uncache) = (shard.gap.is_some(), self.uncache);
        let (wanted, mut window) = (Arc::clone(&self.filter), shard.window.take());
        let (spans, pass_damage) = (self.spans.clone(), self.damage.is_some());
        let chunk = tokio::task::spawn_blocking(move || {
            let (at, stop) = match &mut window {
                Some(window) => window.plan(&dir, from, end, &spans)?,
                None => (from, None),
            };
            let ask = cursor::ChunkRead {
                shard: index,
                cursor: at,
                end,
                stop,
                filter: &wanted,
                track,
                uncache,
                pass_damage,
            };
            cursor::read(&dir, &ask).map(|chunk| (chunk, window))
        })
        .await;
        let chunk = joined(chunk);
        let damaged = match &chunk {
            Ok((chunk, _)) => chunk.damaged.is_some(),
            Err(err) => matches!(err, ReadError::Damaged(_)),
        };
        if let (true, Some(stats)) = (damaged, &self.damage_count) {
            stats.archive_damage_found(1);
        }
        chunk
    }

    /// The same reader, passing over damaged records (each range listed by
    /// [`Self::take_damaged`]) instead of stopping at the first: for a query or an export, which
    /// serve the rest of their window.
    pub(crate) fn passing_damage(mut self) -> ShardCursors {
        self.damage = Some(Vec::new());
        self
    }

    /// The same reader, dropping from the page cache the parts of sealed segments it has read:
    /// for an export beside a running daemon, which reads hours the daemon has no more use for,
    /// once. Cached, they would push out the pages the daemon writes and its followers read, and
    /// the kernel would spend the daemon's time reclaiming them (docs/bench/queries.md measured
    /// ingest beside exports).
    pub(crate) fn uncaching(mut self) -> ShardCursors {
        self.uncache = true;
        self
    }

    /// The same reader, counting each damaged record it meets in `stats`' `archive_damage_found`:
    /// for the daemon's readers, so that an alert hears of damage a reader met.
    pub(crate) fn counting_damage(mut self, stats: &Stats) -> ShardCursors {
        self.damage_count = Some(stats.clone());
        self
    }

    /// The damaged ranges passed over since the last call.
    pub(crate) fn take_damaged(&mut self) -> Vec<DamagedRange> {
        self.damage.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// The next frames, waiting for them as long as more can come: `None` once every shard's
    /// writer has stopped and everything durable is read, or the window has ended. For readers
    /// that wait for nothing else (an export, an HTTP query); skips and notices are left to take.
    pub(crate) async fn next_runs(&mut self) -> Result<Option<Vec<FrameRun>>, ReadError> {
        loop {
            let closed = !self.is_open();
            match self.read().await? {
                Some(runs) if runs.is_empty() => {}
                Some(runs) => return Ok(Some(runs)),
                None if closed || self.is_finished() => return Ok(None),
                None => self.changed().await,
            }
        }
    }

    /// What the start found deleted of the reader's window, a notice per shard; once.
    pub(crate) fn take_earliest(&mut self) -> Vec<Earliest> {
        std::mem::take(&mut self.earliest)
    }

    /// The skips past deleted segments since the last call, oldest first.
    pub(crate) fn take_skipped(&mut self) -> Vec<Skipped> {
        std::mem::take(&mut self.skipped)
    }

    /// Whether the reading has passed `ends` in every shard they name: it has read everything
    /// those shards held up to there.
    pub(crate) fn has_passed(&self, ends: &HashMap<usize, DurableEnd>) -> bool {
        (self.shards.iter())
            .all(|shard| (ends.get(&shard.index)).is_none_or(|end| shard.cursor.has_reached(*end)))
    }

    /// Whether a shard's watch is open: more may become durable.
    pub(crate) fn is_open(&self) -> bool {
        self.shards.iter().any(|shard| shard.open)
    }

    /// Whether the reader's window has ended in every shard: nothing it wants can come any more.
    pub(crate) fn is_finished(&self) -> bool {
        self.filter.until.is_some() && self.shards.iter().all(Shard::done) && !self.is_cut_short()
    }

    /// Whether a shard's writer stopped (the daemon drained) before the window's end: the
    /// reading is over, but frames received after a restart may still belong to the window.
    pub(crate) fn is_cut_short(&self) -> bool {
        let cut = |shard: &Shard| shard.window.as_ref().is_some_and(|w| w.cut_short);
        self.shards.iter().any(cut)
    }

    /// Waits until a shard's durable end moves or its watch closes (read again then), or until a
    /// window's end has settled; at once when no watch is open. Cancel-safe: nothing changes
    /// until it returns.
    pub(crate) async fn changed(&mut self) {
        let settles = (self.shards.iter())
            .filter_map(|shard| shard.window.as_ref()?.settles_in())
            .min();
        // Every open shard's window ended but the reading was cut short elsewhere (a drain):
        // the wait is for their close.
        let undone = |shard: &Shard| shard.open && !shard.done();
        let all_done = !self.shards.iter().any(undone);
        let waits: Vec<_> = self
            .shards
            .iter_mut()
            .filter(|shard| shard.open && (all_done || !shard.done()))
            .map(|shard| {
                Box::pin(async move {
                    if shard.durable.changed().await.is_err() {
                        shard.open = false;
                    }
                })
            })
            .collect();
        if waits.is_empty() {
            return;
        }
        match settles {
            Some(wait) => {
                tokio::select! {
                    _ = select_all(waits) => {}
                    () = tokio::time::sleep(wait) => {}
                }
            }
            None => {
                select_all(waits).await;
            }
        }
    }
}

/// What [`locate_shard`] finds: the cursor, what counts a later skip, the skip a start position
/// already deleted makes, and what the start found deleted of the window.
type Located = (Cursor, Option<GapWatch>, Option<Skipped>, Option<Earliest>);

/// A shard to locate a reading in: its index, where the reading starts, and its durable end.
#[derive(Clone, Copy)]
struct ShardStart<'a> {
    index: usize,
    start: &'a Start,
    end: DurableEnd,
}

/// Where a reading from `shard.start` begins in the shard (in `dir`): the cursor, what counts a
/// later skip (with [`OnGap::Oldest`]), the skip a start position already deleted makes, and,
/// for a window starting at the oldest frame, whether retention deleted part of it. Blocking.
fn locate_shard(
    dir: &Path,
    shard: ShardStart,
    filter: &FrameFilter,
    on_gap: OnGap,
    spans: &SpanCache,
) -> Result<Located, ReadError> {
    let ShardStart { index, start, .. } = shard;
    let earliest = match (start, filter.since) {
        (Start::Oldest, Some(since)) => window::earliest(dir, index, since, spans)?,
        _ => None,
    };
    let (cursor, gap, skipped) = locate_gap(dir, shard, filter, on_gap)?;
    Ok((cursor, gap, skipped, earliest))
}

/// [`locate_shard`]'s cursor, skip watch and first skip.
fn locate_gap(
    dir: &Path,
    ShardStart { index, start, end }: ShardStart,
    filter: &FrameFilter,
    on_gap: OnGap,
) -> Result<(Cursor, Option<GapWatch>, Option<Skipped>), ReadError> {
    let located = cursor::locate(dir, index, start, end);
    match (located, on_gap) {
        (Ok(cursor), OnGap::End) => Ok((cursor, None, None)),
        (Ok(cursor), OnGap::Oldest) => Ok((cursor, Some(GapWatch::starting(dir)?), None)),
        (Err(ReadError::PositionDeleted { at }), OnGap::Oldest) => {
            // Which deleted frames came before the position is no longer known: all count.
            let mut gap = GapWatch::default();
            let skipped = gap.skip(dir, index, at.position.segment, filter)?;
            let cursor = Cursor::segment_start(skipped.resumed);
            Ok((cursor, Some(gap), Some(skipped)))
        }
        (Err(err), _) => Err(err),
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
    result.map_err(|err| ReadError::Unreadable(ArchiveError::broken(err.to_string())))?
}
