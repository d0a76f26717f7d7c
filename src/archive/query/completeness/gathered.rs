//! What the segments gave of one source: its frames and sequences held, by bucket when there is a
//! timeline, and by station for a link's source; and its answer, once the reading is over.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;

use super::answer::{gaps, Gap, GapCause, SourceCompleteness};
use super::timeline::spread;
use super::timeline::{Bucket, Timeline};
use crate::archive::format::index::SourceSpan;
use crate::domain::frame::SourceKey;
use crate::domain::sequence_set::SequenceSet;

/// What lies around a source's frames in the window: the sequences retention deleted, and those
/// held but received outside the window.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Around<'a> {
    pub(super) pruned: Option<&'a SequenceSet>,
    pub(super) elsewhere: Option<&'a SequenceSet>,
}

/// What the segments gave of one source so far.
#[derive(Debug, Default)]
pub(super) struct Gathered {
    frames: u64,
    held: SequenceSet,
    /// With a timeline: frames by bucket.
    buckets: Vec<u64>,
    /// With a timeline: the last sequence of each run of sequences met, and its received time, to
    /// place the gap after it. A run ends at a sequence whose next one is not the next met.
    run_ends: Vec<(u64, u64)>,
    /// The sequence and received time of the frame last read, the end of the run being read.
    reading: Option<(u64, u64)>,
    /// A link's source: the sequences each station delivered.
    stations: BTreeMap<String, SequenceSet>,
}

impl Gathered {
    pub(super) fn new(timeline: Option<&Timeline>) -> Gathered {
        Gathered {
            buckets: vec![0; timeline.map_or(0, Timeline::len)],
            ..Gathered::default()
        }
    }

    /// Counts a frame read from its block: at its received time.
    pub(super) fn add_frame(&mut self, sequence: u64, received: u64, timeline: Option<&Timeline>) {
        self.frames += 1;
        self.held.insert_run(sequence, sequence);
        let Some(timeline) = timeline else { return };
        self.buckets[timeline.bucket(received)] += 1;
        match self.reading {
            Some((last, _)) if last.checked_add(1) == Some(sequence) => {}
            Some(end) => self.run_ends.push(end),
            None => {}
        }
        self.reading = Some((sequence, received));
    }

    /// Counts a segment's frames from its index, received from the oldest to the newest time of
    /// `received`: spread evenly over that span, each run of sequences ending at the newest.
    pub(super) fn add_indexed(
        &mut self,
        span: &SourceSpan,
        received: RangeInclusive<u64>,
        timeline: Option<&Timeline>,
    ) {
        self.frames += span.frames;
        span.sequences
            .runs()
            .for_each(|(a, b)| self.held.insert_run(a, b));
        let Some(timeline) = timeline else { return };
        let newest = *received.end();
        spread(&mut self.buckets, timeline, span.frames, received);
        self.run_ends
            .extend(span.sequences.runs().map(|(_, last)| (last, newest)));
    }

    /// Notes that `station` delivered these sequences.
    pub(super) fn add_station(
        &mut self,
        station: &str,
        runs: impl IntoIterator<Item = (u64, u64)>,
    ) {
        let held = match self.stations.get_mut(station) {
            Some(held) => held,
            None => self.stations.entry(station.to_owned()).or_default(),
        };
        runs.into_iter().for_each(|(a, b)| held.insert_run(a, b));
    }

    /// Takes as held the sequences of `elsewhere` between its first and last held: stamped
    /// outside the window, they are no gap in it. Returns how many ([`Gathered::finish`] counts
    /// them in the answer's `frames`; `self.frames` stays what the window's frames gave).
    fn take_elsewhere(&mut self, elsewhere: Option<&SequenceSet>) -> u64 {
        let (Some(first), Some(last), Some(elsewhere)) =
            (self.held.first(), self.held.last(), elsewhere)
        else {
            return 0;
        };
        let mut taken = 0;
        let within = elsewhere.runs().filter(|&(a, b)| a <= last && b >= first);
        for (a, b) in within.collect::<Vec<_>>() {
            for (x, y) in self.held.missing_in(a.max(first), b.min(last)) {
                self.held.insert_run(x, y);
                taken += y - x + 1;
            }
        }
        taken
    }

    /// The source's answer: its gaps (cut by what retention deleted) and its timeline, once what
    /// is held outside the window between its frames is taken as held. Those count in `frames`
    /// too, as in `held`, so that a source's `frames` is what it holds of the window, whatever
    /// clock stamped it; the timeline has them in no bucket (they were received in none).
    pub(super) fn finish(
        mut self,
        source: SourceKey,
        around: Around<'_>,
        timeline: Option<&Timeline>,
    ) -> SourceCompleteness {
        let outside_window = self.take_elsewhere(around.elsewhere);
        let never = match self.stations.is_empty() {
            true => GapCause::NotReceived,
            false => GapCause::SpaceLink,
        };
        let gaps = gaps(&self.held, around.pruned, never);
        let timeline = timeline.map(|timeline| self.buckets(&gaps, timeline));
        SourceCompleteness {
            source,
            frames: self.frames + outside_window,
            outside_window,
            held: self.held,
            gaps,
            timeline,
            stations: self.stations,
        }
    }

    /// The source's timeline: its frames by bucket, and each of `gaps` where the frame before it
    /// was received.
    fn buckets(&mut self, gaps: &[Gap], timeline: &Timeline) -> Vec<Bucket> {
        let mut buckets: Vec<Bucket> = (self.buckets.iter())
            .map(|&frames| Bucket { frames, missing: 0 })
            .collect();
        self.run_ends.extend(self.reading.take());
        self.run_ends.sort_unstable();
        // A hole between two runs held may be cut into gaps of both causes: all of it counts
        // where the frame before it was received.
        let mut hole: Option<(u64, usize)> = None;
        for gap in gaps {
            let bucket = match hole {
                Some((last, bucket)) if last + 1 == gap.first => Some(bucket),
                _ => self.received(gap.first - 1).map(|t| timeline.bucket(t)),
            };
            if let Some(bucket) = bucket {
                buckets[bucket].missing += gap.last - gap.first + 1;
                hole = Some((gap.last, bucket));
            }
        }
        buckets
    }

    /// When the frame of `sequence` that ends a run was received (the newest time when it was met
    /// twice), from the sorted run ends; for a sequence held outside the window, when the last
    /// run in it before `sequence` ended.
    fn received(&self, sequence: u64) -> Option<u64> {
        let at = self.run_ends.partition_point(|&(s, _)| s <= sequence);
        let end = at.checked_sub(1).map(|i| self.run_ends[i]);
        end.map(|(_, time)| time)
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use super::super::answer::gap;
    use super::*;
    use crate::domain::frame::SourceKind;

    fn set(runs: &[(u64, u64)]) -> SequenceSet {
        SequenceSet::of_runs(runs)
    }

    /// Ten buckets of 100 ns from 1000 to 1999.
    fn timeline() -> Timeline {
        Timeline::new(1000, 1999, NonZeroU32::new(10).unwrap())
    }

    fn frames(timeline: &[Bucket]) -> Vec<u64> {
        timeline.iter().map(|b| b.frames).collect()
    }

    fn missing(timeline: &[Bucket]) -> Vec<u64> {
        timeline.iter().map(|b| b.missing).collect()
    }

    const LIVE_7: SourceKey = (SourceKind::LiveUplink, 7);

    #[test]
    fn frames_read_count_at_their_received_time_and_a_gap_after_the_frame_before_it() {
        let t = timeline();
        let mut source = Gathered::new(Some(&t));
        // 0..=2, then 3..=5 never came, then 6 and 7; the last bucket ends the window.
        for (sequence, received) in [(0, 1000), (1, 1150), (2, 1199), (6, 1500), (7, 1999)] {
            source.add_frame(sequence, received, Some(&t));
        }
        let answer = source.finish(LIVE_7, Around::default(), Some(&t));
        assert_eq!(answer.frames, 5);
        assert_eq!(answer.gaps, [gap(3, 5, GapCause::NotReceived)]);
        let buckets = answer.timeline.unwrap();
        assert_eq!(frames(&buckets), [1, 2, 0, 0, 0, 1, 0, 0, 0, 1]);
        assert_eq!(missing(&buckets), [0, 3, 0, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn an_indexed_segment_spreads_its_frames_over_its_span_and_ends_its_runs_at_its_newest() {
        let t = timeline();
        let mut source = Gathered::new(Some(&t));
        // Ten frames received from 1000 to 1499: two a bucket.
        let span = SourceSpan {
            frames: 10,
            sequences: set(&[(0, 9)]),
        };
        source.add_indexed(&span, 1000..=1499, Some(&t));
        // Four more from 1550 to 1749, half a bucket, a bucket and half a bucket; 14..=19 lost.
        let span = SourceSpan {
            frames: 4,
            sequences: set(&[(10, 13)]),
        };
        source.add_indexed(&span, 1550..=1749, Some(&t));
        // Then 20 read, at 1900.
        source.add_frame(20, 1900, Some(&t));
        let answer = source.finish(LIVE_7, Around::default(), Some(&t));
        assert_eq!(answer.frames, 15);
        let buckets = answer.timeline.unwrap();
        assert_eq!(frames(&buckets), [2, 2, 2, 2, 2, 1, 2, 1, 0, 1]);
        // The gap after 13 is at its segment's newest time, 1749.
        assert_eq!(missing(&buckets), [0, 0, 0, 0, 0, 0, 0, 6, 0, 0]);
    }

    #[test]
    fn a_hole_cut_by_retention_counts_whole_after_the_frame_before_it() {
        let t = timeline();
        let mut source = Gathered::new(Some(&t));
        for (sequence, received) in [(0, 1000), (1, 1250), (20, 1900)] {
            source.add_frame(sequence, received, Some(&t));
        }
        // Retention deleted 5..=9: 2..=4 and 10..=19 never came.
        let answer = source.finish(
            LIVE_7,
            Around {
                pruned: Some(&set(&[(5, 9)])),
                elsewhere: None,
            },
            Some(&t),
        );
        assert_eq!(answer.gaps.len(), 3);
        let buckets = answer.timeline.unwrap();
        assert_eq!(missing(&buckets), [0, 0, 18, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn without_a_timeline_nothing_is_kept_for_one() {
        let mut source = Gathered::new(None);
        source.add_frame(0, 1000, None);
        source.add_frame(5, 1001, None);
        assert!(source.run_ends.is_empty() && source.buckets.is_empty());
        let answer = source.finish(LIVE_7, Around::default(), None);
        assert_eq!((answer.frames, answer.timeline), (2, None));
        assert_eq!(answer.gaps, [gap(1, 4, GapCause::NotReceived)]);
    }
}
