//! Archives the tests of reading make, and the tests of what reads (`crate::archive::query`):
//! shards of segments with records received out of order, and a reading of them whole.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use tokio::sync::watch;

use super::{DurableEnds, Earliest, OnGap, ShardCursors, Start};
use crate::archive::format;
use crate::archive::format::index::{self, SegmentIndex, SpanCache};
use crate::archive::format::{Entry, FrameRecord};
use crate::domain::filter::FrameFilter;
use crate::domain::frame::{Priority, SourceKind};
use crate::domain::position::DurableEnd;

/// Closed watches at `ends`, one per shard, with a span cache of their own.
pub(crate) fn durable_ends(ends: &[DurableEnd]) -> DurableEnds {
    let shards = (ends.iter().enumerate())
        .map(|(shard, end)| (shard, watch::channel(*end).1))
        .collect();
    DurableEnds::new(shards, SpanCache::default())
}

pub(crate) const SHARDS: usize = 3;
pub(crate) const SEGMENTS: u64 = 6;
pub(crate) const RECORDS: u64 = 150;
/// Received times step by this per record, give or take [`JITTER`].
pub(crate) const STEP: u64 = 1_000_000;
pub(crate) const JITTER: u64 = 40_000_000;

/// xorshift64*: random enough, and the same every run.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// An archive of `SHARDS` shards of `SEGMENTS` segments, records of random sources,
/// priorities and sizes, received out of order (jitter, and now and then a frame a minute
/// old, as a journal's), the newest segment of each shard without an index and one index
/// damaged. Returns the root and each shard's durable end.
pub(crate) fn archive(name: &str) -> (PathBuf, Vec<DurableEnd>) {
    let root = std::env::temp_dir().join(format!("window-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&root);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut sequences: BTreeMap<u32, u64> = BTreeMap::new();
    let mut ends = Vec::new();
    for shard in 0..SHARDS {
        let dir = format::shard_dir(&root, shard);
        fs::create_dir_all(&dir).unwrap();
        let mut len = 0;
        for segment in 0..SEGMENTS {
            let mut bytes = format::MAGIC.to_vec();
            for record in 0..RECORDS {
                let at = (segment * RECORDS + record) * STEP;
                let received = match rng.below(50) {
                    0 => 1_000_000_000_000 + at.saturating_sub(60_000_000_000),
                    _ => 1_000_000_000_000 + at + rng.below(2 * JITTER) - JITTER,
                };
                let source = shard as u32 * 10 + rng.below(4) as u32;
                let priority = match rng.below(5) {
                    0 => Priority::Emergency,
                    _ => Priority::Routine,
                };
                let payloads: Vec<Vec<u8>> = (0..1 + rng.below(4))
                    .map(|_| vec![record as u8; rng.below(1500) as usize])
                    .collect();
                let next = sequences.entry(source).or_default();
                let frames: Vec<(u64, &[u8])> = payloads
                    .iter()
                    .map(|p| {
                        *next += 1;
                        (*next, p.as_slice())
                    })
                    .collect();
                let kind = SourceKind::LiveUplink;
                format::encode_frames(&mut bytes, kind, priority, source, received, frames);
            }
            fs::write(dir.join(format::segment_name(segment)), &bytes).unwrap();
            len = bytes.len() as u64;
        }
        // Segment 2 of shard 1 has a damaged index, which is built again.
        if shard == 1 {
            let path = dir.join(format::segment_name(2));
            SegmentIndex::read_or_rebuild(&dir, 2, &path, &SpanCache::default()).unwrap();
            let file = index::index_path(&dir, 2);
            let mut bytes = fs::read(&file).unwrap();
            bytes[30] ^= 0xff;
            fs::write(&file, bytes).unwrap();
        }
        ends.push(DurableEnd {
            segment: SEGMENTS - 1,
            len,
        });
    }
    (root, ends)
}

/// Each shard's frames `filter` wants, read whole.
pub(crate) fn scanned(root: &Path, filter: &FrameFilter) -> Vec<Vec<FrameRecord>> {
    (0..SHARDS)
        .map(|shard| {
            let dir = format::shard_dir(root, shard);
            let mut frames = Vec::new();
            for (_, path) in format::list_segments(&dir).unwrap() {
                for (_, entry) in format::read_segment(&path).unwrap().entries {
                    match entry {
                        Entry::Frame(frame) if filter.wants(&frame) => frames.push(frame),
                        _ => {}
                    }
                }
            }
            frames
        })
        .collect()
}

/// Each shard's frames a reader with `filter` reads from the oldest, the daemon stopped (every
/// shard closed), and whether it ended by its window; with the notices of its start.
pub(crate) async fn followed(
    root: &Path,
    ends: &[DurableEnd],
    filter: &FrameFilter,
) -> (Vec<Vec<FrameRecord>>, bool, Vec<Earliest>) {
    let durable = durable_ends(ends);
    let (wanted, on_gap) = (Arc::new(filter.clone()), OnGap::End);
    let mut cursors = ShardCursors::locate(root, &durable, &Start::Oldest, wanted, on_gap)
        .await
        .unwrap();
    let earliest = cursors.take_earliest();
    let mut frames = vec![Vec::new(); SHARDS];
    loop {
        let closed = !cursors.is_open();
        match cursors.read().await.unwrap() {
            Some(runs) => {
                for frame in runs.into_iter().flat_map(|run| run.into_frames()) {
                    frames[frame.shard].push(frame.frame);
                }
            }
            None if cursors.is_finished() => return (frames, true, earliest),
            None if closed => return (frames, false, earliest),
            None => cursors.changed().await,
        }
    }
}

/// A daemon's run in [`any_archive`]: how far its clock stood from the true time (in steps
/// of [`STEP`], negative: behind, as after a restart with the clock stepped back), the shard
/// each of 4 sources stored in, and its records, each (source, frames).
pub(crate) type Run = (i64, [usize; 4], Vec<(usize, u64)>);

/// Each shard's segments, each segment's frames as (source, sequence, received), in file
/// order: the runs written one after the other, a segment rolling every `per_segment`
/// records of its shard.
pub(crate) type Written = Vec<Vec<Vec<(u32, u64, u64)>>>;

/// Writes `runs` as an archive of [`SHARDS`] shards in a new directory (each shard's newest
/// segment without an index, as the daemon leaves it); returns it, each shard's durable end,
/// and what it holds.
pub(crate) fn any_archive(
    name: &str,
    runs: &[Run],
    per_segment: usize,
) -> (PathBuf, Vec<DurableEnd>, Written) {
    let root = std::env::temp_dir().join(format!("window-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&root);
    let mut written: Written = vec![vec![Vec::new()]; SHARDS];
    let mut records = [0; SHARDS];
    let (mut t, mut next) = (0i64, [0u64; 4]);
    for (offset, shards, run) in runs {
        for &(source, frames) in run {
            t += 1;
            let shard = shards[source];
            if records[shard] == per_segment {
                written[shard].push(Vec::new());
                records[shard] = 0;
            }
            records[shard] += 1;
            let received = (1_000_000 + t + offset) as u64 * STEP;
            let segment = written[shard].last_mut().unwrap();
            for _ in 0..frames {
                segment.push((source as u32, next[source], received));
                next[source] += 1;
            }
        }
    }
    let mut ends = Vec::new();
    for (shard, segments) in written.iter().enumerate() {
        let dir = format::shard_dir(&root, shard);
        fs::create_dir_all(&dir).unwrap();
        let mut end = DurableEnd { segment: 0, len: 0 };
        for (index, frames) in (1..).zip(segments) {
            let mut bytes = format::MAGIC.to_vec();
            for &(source, sequence, received) in frames {
                let kind = SourceKind::LiveUplink;
                let frame = [(sequence, &b"x"[..])];
                format::encode_frames(&mut bytes, kind, Priority::Routine, source, received, frame);
            }
            fs::write(dir.join(format::segment_name(index)), &bytes).unwrap();
            end = DurableEnd {
                segment: index,
                len: bytes.len() as u64,
            };
        }
        ends.push(end);
    }
    (root, ends, written)
}

pub(crate) fn any_run() -> impl proptest::strategy::Strategy<Value = Run> {
    let records = proptest::collection::vec((0usize..4, 1u64..3), 1..12);
    (
        -30i64..30,
        [0usize..SHARDS, 0..SHARDS, 0..SHARDS, 0..SHARDS],
        records,
    )
}

/// A property's case: the runs of an archive, records a segment, and a window's ends.
pub(crate) type Case = (Vec<Run>, usize, (i64, i64));

pub(crate) fn any_case() -> impl proptest::strategy::Strategy<Value = Case> {
    let runs = proptest::collection::vec(any_run(), 1..4);
    (runs, 1usize..6, (0i64..120, 0i64..120))
}

/// `case`'s archive, in a directory of its own (the spans of indexes read are kept by path), and
/// its window, in steps from 30 before the runs' first.
pub(crate) fn case_archive(case: &Case) -> (PathBuf, Vec<DurableEnd>, Written, FrameFilter) {
    static CASE: AtomicU64 = AtomicU64::new(0);
    let (runs, per_segment, ends) = case;
    let name = format!("prop-{}", CASE.fetch_add(1, Relaxed));
    let (root, ends_written, written) = any_archive(&name, runs, *per_segment);
    let at = |t: i64| (1_000_000 + t - 30) as u64 * STEP;
    let window = FrameFilter {
        since: Some(at(ends.0.min(ends.1))),
        until: Some(at(ends.0.max(ends.1))),
        ..FrameFilter::default()
    };
    (root, ends_written, written, window)
}
