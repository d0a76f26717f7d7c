//! Reading by received time (`window`), on archives of records received out of order
//! ([`super::test_archives`]): what a scan of every frame finds, no more, and an end.

use std::fs;
use std::sync::Arc;
use std::time::Duration;

use super::window::*;
use crate::archive::format;
use crate::archive::format::index::{self, SegmentIndex, TIME_BLOCK_BYTES};
use crate::archive::format::retention_file::{Deleted, ShardState};
use crate::archive::read::test_archives::*;
use crate::archive::read::{OnGap, ShardCursors, Start};
use crate::domain::clock::ArchiveClock;
use crate::domain::filter::FrameFilter;
use crate::domain::frame::SourceKind;

#[tokio::test]
async fn a_window_reads_exactly_what_a_scan_of_every_frame_finds() {
    let (root, ends) = archive("exact");
    let first = 1_000_000_000_000;
    let last = first + SEGMENTS * RECORDS * STEP;
    let mut rng = Rng(7);
    let mut windows = vec![
        (None, None),
        (Some(first - 90_000_000_000), None),
        (None, Some(first - 90_000_000_000)),
        (Some(last + JITTER + 1), None),
        (
            Some(first + 2 * RECORDS * STEP + 17),
            Some(first + 2 * RECORDS * STEP + 17),
        ),
    ];
    for _ in 0..20 {
        let since = first + rng.below(last - first);
        let until = since + rng.below(3 * RECORDS * STEP);
        windows.push((Some(since), Some(until)));
    }
    for (since, until) in windows {
        for sources in [vec![], vec![(SourceKind::LiveUplink, 11)]] {
            let filter = FrameFilter {
                sources,
                priority: None,
                since,
                until,
                ..FrameFilter::default()
            };
            let (frames, finished, earliest) = followed(&root, &ends, &filter).await;
            let expected = scanned(&root, &filter);
            assert_eq!(frames, expected, "{since:?}..{until:?}");
            assert_eq!(finished, until.is_some(), "{since:?}..{until:?}");
            assert_eq!(earliest, [], "nothing was deleted");
        }
    }
    // The damaged index was built again.
    let dir = format::shard_dir(&root, 1);
    let path = dir.join(format::segment_name(2));
    let rebuilt = fs::read(index::index_path(&dir, 2)).unwrap();
    assert_eq!(rebuilt, {
        let index = SegmentIndex::build(&path).unwrap();
        let mut bytes = Vec::new();
        index.write(&root.join("expected.index")).unwrap();
        bytes.extend(fs::read(root.join("expected.index")).unwrap());
        assert!(
            index.times.len() > 2,
            "{} blocks of {TIME_BLOCK_BYTES}",
            index.times.len()
        );
        bytes
    });
    fs::remove_dir_all(&root).unwrap();
}

#[test]
fn a_live_shard_is_done_with_a_window_once_its_end_has_settled() {
    let now = ArchiveClock::process().now();
    let window = |until| {
        Window::of(&FrameFilter {
            until: Some(until),
            ..FrameFilter::default()
        })
        .unwrap()
    };
    // A window ending a minute from now by the archive clock: its frames may still come,
    // whatever the stamps already stored say (a start with the clock stepped back writes
    // stamps below those of the run before).
    let mut ahead = window(now + 60_000_000_000);
    ahead.reached_end(true, false);
    assert!(!ahead.done);
    let wait = ahead.settles_in().unwrap();
    assert!(
        wait > Duration::from_secs(60) && wait <= Duration::from_secs(66),
        "{wait:?}"
    );
    // A stopped writer ends it, cut short: a restart may bring more.
    let mut stopped = window(now + 60_000_000_000);
    stopped.reached_end(false, false);
    assert!(
        stopped.done && stopped.cut_short,
        "a restart may bring more"
    );
    // A retired shard, where nothing is written any more: done, not cut short.
    let mut retired = window(now + 60_000_000_000);
    retired.reached_end(false, true);
    assert!(retired.done && !retired.cut_short);
    // A writer that stopped after the window's end leaves nothing of it to come.
    let mut ended = window(now - 1_000_000_000);
    ended.reached_end(false, false);
    assert!(ended.done && !ended.cut_short);
    // A window that ended a minute ago: done once everything durable is read.
    let mut past = window(now - 60_000_000_000);
    assert!(!past.done);
    past.reached_end(true, false);
    assert!(past.done);
    assert_eq!(past.settles_in(), None);
    // Without an end, never.
    let mut open = Window::of(&FrameFilter {
        since: Some(1),
        ..FrameFilter::default()
    })
    .unwrap();
    open.reached_end(false, false);
    assert!(!open.done && open.settles_in().is_none());
}

/// A window's reader that goes on past deleted segments still ends with its window.
#[tokio::test]
async fn a_window_that_goes_on_past_deleted_segments_still_ends() {
    let (root, ends) = archive("gone");
    let durable = durable_ends(&ends);
    let filter = FrameFilter {
        until: Some(1_000_000_000_000 + SEGMENTS * RECORDS * STEP),
        ..FrameFilter::default()
    };
    let (wanted, on_gap) = (Arc::new(filter), OnGap::Oldest);
    let mut cursors = ShardCursors::locate(&root, &durable, &Start::Oldest, wanted, on_gap)
        .await
        .unwrap();
    // Segments 0 to 2 of shard 0 go before the reader reads them.
    let dir = format::shard_dir(&root, 0);
    let mut state = ShardState::read(&dir).unwrap();
    let deleted: Vec<Deleted> = (0..3)
        .map(|segment| {
            let path = dir.join(format::segment_name(segment));
            let contents = SegmentIndex::build(&path).unwrap();
            Deleted {
                segment,
                bytes: 1,
                contents,
            }
        })
        .collect();
    state.delete(&dir, &deleted, 1).unwrap();
    let read_to_the_end = async {
        loop {
            let closed = !cursors.is_open();
            match cursors.read().await.unwrap() {
                Some(_) => {}
                None if cursors.is_finished() => return,
                None if closed => panic!("every shard read, and the window never ended"),
                None => cursors.changed().await,
            }
        }
    };
    let ended = tokio::time::timeout(Duration::from_secs(30), read_to_the_end).await;
    assert!(ended.is_ok(), "the window never said it ended");
    assert_eq!(cursors.take_skipped().len(), 1, "one skip, in shard 0");
    fs::remove_dir_all(&root).unwrap();
}

#[tokio::test]
async fn a_window_starting_before_what_retention_left_says_so() {
    let (root, ends) = archive("earliest");
    let dir = format::shard_dir(&root, 2);
    let mut state = ShardState::read(&dir).unwrap();
    let deleted: Vec<Deleted> = (0..2)
        .map(|segment| {
            let path = dir.join(format::segment_name(segment));
            Deleted {
                segment,
                bytes: fs::metadata(&path).unwrap().len(),
                contents: SegmentIndex::build(&path).unwrap(),
            }
        })
        .collect();
    state.delete(&dir, &deleted, 1).unwrap();
    let oldest = SegmentIndex::build(&dir.join(format::segment_name(2)))
        .unwrap()
        .received
        .unwrap()
        .0;
    let window = |since| FrameFilter {
        since: Some(since),
        ..FrameFilter::default()
    };
    let (frames, _, earliest) = followed(&root, &ends, &window(oldest - 1)).await;
    assert_eq!(earliest, [Earliest { shard: 2, oldest }]);
    assert_eq!(frames, scanned(&root, &window(oldest - 1)));
    let (_, _, earliest) = followed(&root, &ends, &window(oldest)).await;
    assert_eq!(earliest, [], "nothing of the window was deleted");
    fs::remove_dir_all(&root).unwrap();
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Received times out of order within and across segments and shards (runs of daemons
    /// whose clocks stood apart, sources moving between shards from run to run): a window
    /// reads each frame received in it once, as a scan of every frame finds them.
    #[test]
    fn out_of_order_stamps_are_read_once(case in any_case()) {
        let (root, ends_written, _, window) = case_archive(&case);
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        for filter in [window, FrameFilter::default()] {
            let (frames, _, _) = runtime.block_on(followed(&root, &ends_written, &filter));
            proptest::prop_assert_eq!(frames, scanned(&root, &filter));
        }
        fs::remove_dir_all(&root).unwrap();
    }
}
