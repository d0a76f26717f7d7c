//! Completeness against what reading finds, on archives of records received out of order
//! (`crate::archive::read::test_archives`).

use std::collections::BTreeMap;
use std::fs;
use std::num::NonZeroU32;
use std::sync::Arc;

use super::{completeness, with_frames, Timeline};
use crate::archive::format;
use crate::archive::format::index::{SegmentIndex, SpanCache};
use crate::archive::read::test_archives::*;
use crate::archive::read::{OnGap, ShardCursors, Start};
use crate::domain::filter::FrameFilter;
use crate::domain::sequence_set::SequenceSet;

/// A damaged record where a window's part starts, in a sealed segment: a reader of the window
/// and the window's completeness name the same damaged bytes, in the segment that holds them.
#[tokio::test]
async fn a_window_reader_and_completeness_name_the_same_damage() {
    let (root, ends) = archive("damage");
    let dir = format::shard_dir(&root, 0);
    let path = dir.join(format::segment_name(2));
    let spans = SpanCache::default();
    let index = SegmentIndex::read_or_rebuild(&dir, 2, &path, &spans).unwrap();
    // A window whose first part in the segment starts after its first block.
    let (filter, start) = (index.times.iter().rev())
        .find_map(|block| {
            let filter = FrameFilter {
                since: Some(block.newest),
                until: Some(block.newest),
                ..FrameFilter::default()
            };
            let ranges = index.ranges_between(block.newest, block.newest, u64::MAX);
            let start = ranges.first()?.0;
            (start > format::MAGIC.len() as u64).then_some((filter, start))
        })
        .expect("a part that starts after the first block");
    let mut bytes = fs::read(&path).unwrap();
    bytes[start as usize + 8 + 23] ^= 0xff;
    fs::write(&path, bytes).unwrap();
    let durable = durable_ends(&ends);
    let (wanted, on_gap) = (Arc::new(filter.clone()), OnGap::End);
    let cursors = ShardCursors::locate(&root, &durable, &Start::Oldest, wanted, on_gap).await;
    let mut cursors = cursors.unwrap().passing_damage();
    while cursors.next_runs().await.unwrap().is_some() {}
    let read = cursors.take_damaged();
    assert_eq!(read.len(), 1, "{read:?}");
    assert_eq!(
        (read[0].shard, read[0].segment, read[0].bytes.start),
        (0, 2, start)
    );
    let answer = completeness(&root, &durable, &filter, None).unwrap();
    assert_eq!(answer.damaged, read);
    fs::remove_dir_all(&root).unwrap();
}

/// A reading whose client has gone stops: it reads no segment once it is abandoned.
#[test]
fn a_reading_abandoned_reads_no_further() {
    let (root, ends) = archive("abandoned");
    let durable = durable_ends(&ends);
    let whole = completeness(&root, &durable, &FrameFilter::default(), None).unwrap();
    assert!(!whole.sources.is_empty());
    let gone = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let abandoned = durable.until_abandoned(gone);
    let answer = completeness(&root, &abandoned, &FrameFilter::default(), None).unwrap();
    assert!(answer.sources.is_empty(), "{:?}", answer.sources);
    fs::remove_dir_all(&root).unwrap();
}

/// What completeness must answer of `written` for `window`, found by brute force: each
/// source's sequences received in the window, and those held in a shard's segments from the
/// first to the last that holds a frame of the window, between the source's first and last
/// in the window; with how many of them were received outside it.
fn model(written: &Written, window: &FrameFilter) -> BTreeMap<u32, (SequenceSet, u64)> {
    let inside = |received: &u64| window.received().contains(received);
    let (mut held, mut elsewhere) = (BTreeMap::<u32, SequenceSet>::new(), BTreeMap::new());
    for segments in written {
        let meets = |frames: &&Vec<(u32, u64, u64)>| frames.iter().any(|f| inside(&f.2));
        let first = segments.iter().position(|s| meets(&s));
        let last = segments.iter().rposition(|s| meets(&s));
        for (index, frames) in segments.iter().enumerate() {
            let among = first
                .zip(last)
                .is_some_and(|(a, b)| (a..=b).contains(&index));
            for &(source, sequence, received) in frames {
                let set = match inside(&received) {
                    true => held.entry(source).or_default(),
                    false if among && window.has_window() => elsewhere.entry(source).or_default(),
                    false => continue,
                };
                set.insert_run(sequence, sequence);
            }
        }
    }
    let empty = SequenceSet::default();
    (held.into_iter())
        .map(|(source, mut set)| {
            let (first, last) = (set.first().unwrap(), set.last().unwrap());
            let before = set.len();
            let extra = elsewhere.get(&source).unwrap_or(&empty);
            for sequence in first..=last {
                if extra.contains(sequence) {
                    set.insert_run(sequence, sequence);
                }
            }
            let outside = set.len() - before;
            (source, (set, outside))
        })
        .collect()
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Received times out of order within and across segments and shards (runs of daemons whose
    /// clocks stood apart, sources moving between shards from run to run): completeness counts
    /// every sequence the model does, none missing that is held between the window's frames.
    #[test]
    fn out_of_order_stamps_are_never_missing(case in any_case()) {
        let (root, ends_written, written, window) = case_archive(&case);
        for filter in [window, FrameFilter::default()] {
            let durable = durable_ends(&ends_written);
            let timeline = (filter.since.zip(filter.until))
                .map(|(from, to)| Timeline::new(from, to, NonZeroU32::MIN.saturating_add(6)));
            let answer = completeness(&root, &durable, &filter, timeline.as_ref()).unwrap();
            let got: BTreeMap<u32, (SequenceSet, u64)> = (answer.sources.iter())
                .map(|s| (s.source.1, (s.held.clone(), s.outside_window)))
                .collect();
            let expected = model(&written, &filter);
            proptest::prop_assert_eq!(&got, &expected);
            // Read frame by frame for passes: the same answer, and each frame of the window once.
            let mut frames = Vec::new();
            let read = with_frames(&root, &durable, &filter, &mut |f| frames.push(f)).unwrap();
            let plain = completeness(&root, &durable, &filter, None).unwrap();
            proptest::prop_assert_eq!(&read, &plain);
            for source in &read.sources {
                let seen = frames.iter().filter(|f| f.source == source.source).count() as u64;
                proptest::prop_assert_eq!(seen, source.frames - source.outside_window);
            }
            proptest::prop_assert!(frames.iter().all(|f| filter.received().contains(&f.received_ns)));
            for source in &answer.sources {
                proptest::prop_assert_eq!(source.frames, source.held.len());
                let holes = source.held.runs().count().saturating_sub(1);
                proptest::prop_assert_eq!(source.gaps.len(), holes);
                // The timeline counts every frame received in the window (not those held
                // outside it), and every sequence missing, in some bucket.
                if let Some(buckets) = &source.timeline {
                    let frames: u64 = buckets.iter().map(|b| b.frames).sum();
                    let missing: u64 = buckets.iter().map(|b| b.missing).sum();
                    let gaps: u64 = source.gaps.iter().map(|g| g.last - g.first + 1).sum();
                    let received = source.frames - source.outside_window;
                    proptest::prop_assert_eq!((frames, missing), (received, gaps));
                }
            }
        }
        fs::remove_dir_all(&root).unwrap();
    }
}
