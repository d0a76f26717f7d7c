//! A completeness answer's timeline: its window divided into equal buckets of received time, and
//! how frames whose times the index does not give are spread over them.

use std::num::NonZeroU32;
use std::ops::RangeInclusive;

/// A window divided into equal spans of received time, the buckets, for a picture of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeline {
    /// The window's first and last nanosecond (since the Unix epoch), both inside it.
    from: u64,
    to: u64,
    buckets: u32,
}

/// One bucket of a source's timeline.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bucket {
    /// Frames received in the bucket's span.
    pub frames: u64,
    /// Sequences missing after a frame received in it (the gap that follows it).
    pub missing: u64,
}

impl Timeline {
    /// How many buckets it has.
    pub(super) fn len(&self) -> usize {
        self.buckets as usize
    }

    /// `buckets` over the window from `from` to `to` (nanoseconds since the Unix epoch, both
    /// inside; a `to` before `from` is taken as `from`).
    pub fn new(from: u64, to: u64, buckets: NonZeroU32) -> Timeline {
        Timeline {
            from,
            to: to.max(from),
            buckets: buckets.get(),
        }
    }

    /// The window's length in nanoseconds, both ends counted.
    fn span(&self) -> u128 {
        u128::from(self.to - self.from) + 1
    }

    /// The bucket a frame received at `time` falls in (the first or the last, outside).
    pub(super) fn bucket(&self, time: u64) -> usize {
        let at = u128::from(time.clamp(self.from, self.to) - self.from);
        (at * u128::from(self.buckets) / self.span()) as usize
    }

    /// The first nanosecond of bucket `bucket` (`buckets` gives the one after the window).
    fn start(&self, bucket: usize) -> u128 {
        let buckets = u128::from(self.buckets);
        u128::from(self.from) + (bucket as u128 * self.span()).div_ceil(buckets)
    }
}

/// Adds `frames` received evenly over `received` (from the oldest to the newest) to `buckets`: to
/// each bucket the frames of the part of the span it covers, rounded so that the buckets get
/// `frames` in all.
pub(super) fn spread(
    buckets: &mut [u64],
    timeline: &Timeline,
    frames: u64,
    received: RangeInclusive<u64>,
) {
    let oldest = (*received.start()).max(timeline.from);
    let newest = (*received.end()).min(timeline.to);
    if oldest > newest {
        return;
    }
    let len = u128::from(newest - oldest) + 1;
    // The frames received before `time`, from `oldest` to one past `newest`.
    let before = |time: u128| {
        let time = time.clamp(u128::from(oldest), u128::from(newest) + 1);
        (u128::from(frames) * (time - u128::from(oldest)) / len) as u64
    };
    let (first, last) = (timeline.bucket(oldest), timeline.bucket(newest));
    for (bucket, count) in buckets.iter_mut().enumerate().take(last + 1).skip(first) {
        *count += before(timeline.start(bucket + 1)) - before(timeline.start(bucket));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spread_rounds_to_the_segments_frames_and_one_instant_fills_one_bucket() {
        // Ten buckets of 100 ns from 1000 to 1999.
        let t = Timeline::new(1000, 1999, NonZeroU32::new(10).unwrap());
        for (count, span) in [(7, 1003..=1998), (1000, 1001..=1002), (3, 1234..=1234)] {
            let mut buckets = vec![0; 10];
            spread(&mut buckets, &t, count, span.clone());
            assert_eq!(buckets.iter().sum::<u64>(), count, "{span:?}");
            let used: Vec<usize> = (0..10).filter(|&b| buckets[b] > 0).collect();
            assert!(
                used.iter()
                    .all(|&b| b >= t.bucket(*span.start()) && b <= t.bucket(*span.end())),
                "{span:?}: {buckets:?}"
            );
        }
        let mut buckets = vec![0; 10];
        spread(&mut buckets, &t, 3, 1234..=1234);
        assert_eq!(buckets[2], 3);
        // Bucket edges: the last nanosecond of one, the first of the next, and the window's ends.
        assert_eq!(
            [1000, 1099, 1100, 1999, 0, u64::MAX].map(|time| t.bucket(time)),
            [0, 0, 1, 9, 0, 9]
        );
        let odd = Timeline::new(0, 9, NonZeroU32::new(3).unwrap());
        assert_eq!(
            (0..10).map(|time| odd.bucket(time)).collect::<Vec<_>>(),
            [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
        );
        assert_eq!(
            (0..=3).map(|b| odd.start(b)).collect::<Vec<_>>(),
            [0, 4, 7, 10]
        );
    }
}
