//! A set of frame sequences kept as runs: what a source has stored above its acknowledgement.
//!
//! Between two acknowledgements a saturating source stores hundreds of thousands of frames, and
//! emergencies overtaking routine frames leave gaps in what is stored. One entry per sequence cost
//! the archive's writer milliseconds of the runtime thread at every new segment, whose checkpoint
//! listed them one record each. As runs, the same set is a few entries per source: sequences arrive mostly in order, and a gap closes once the frames
//! behind the emergency are stored.

/// Sequences as sorted, disjoint, non-adjacent inclusive runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SequenceSet {
    runs: Vec<(u64, u64)>,
}

impl SequenceSet {
    /// Adds `first..=last` (`first <= last`), merging it with the runs it touches.
    pub(crate) fn insert_run(&mut self, first: u64, last: u64) {
        debug_assert!(first <= last);
        match self.runs.last_mut() {
            None => return self.runs.push((first, last)),
            // Sequences mostly arrive in order: after the last run, or extending it.
            Some(&mut (_, end)) if first > end.saturating_add(1) => {
                return self.runs.push((first, last))
            }
            Some((start, end)) if first >= *start => {
                *end = (*end).max(last);
                return;
            }
            Some(_) => {}
        }
        // The runs that touch or overlap `first..=last` are `from..to`.
        let from = self
            .runs
            .partition_point(|&(_, end)| end.saturating_add(1) < first);
        let to = self
            .runs
            .partition_point(|&(start, _)| start <= last.saturating_add(1));
        if from == to {
            self.runs.insert(from, (first, last));
            return;
        }
        let merged = (first.min(self.runs[from].0), last.max(self.runs[to - 1].1));
        self.runs.splice(from..to, [merged]);
    }

    /// The set of these runs (`first <= last` each).
    #[cfg(test)]
    pub(crate) fn of_runs(runs: &[(u64, u64)]) -> SequenceSet {
        let mut set = SequenceSet::default();
        runs.iter()
            .for_each(|&(first, last)| set.insert_run(first, last));
        set
    }

    /// Adds every sequence of `sequences`; consecutive ones go in as one run.
    pub(crate) fn extend(&mut self, sequences: impl IntoIterator<Item = u64>) {
        let mut run: Option<(u64, u64)> = None;
        for sequence in sequences {
            run = match run {
                Some((first, last)) if last.checked_add(1) == Some(sequence) => {
                    Some((first, sequence))
                }
                Some((first, last)) => {
                    self.insert_run(first, last);
                    Some((sequence, sequence))
                }
                None => Some((sequence, sequence)),
            };
        }
        if let Some((first, last)) = run {
            self.insert_run(first, last);
        }
    }

    /// Merges the two lowest runs, and the sequences between them, until at most `most` runs are
    /// left: a bound on the set's size that gives up only its oldest gaps.
    pub(crate) fn merge_oldest_past(&mut self, most: usize) {
        while self.runs.len() > most.max(1) {
            let (first, _) = self.runs.remove(0);
            self.runs[0].0 = first;
        }
    }

    /// Drops every sequence up to and including `acked`.
    pub(crate) fn remove_through(&mut self, acked: u64) {
        let gone = self.runs.partition_point(|&(_, end)| end <= acked);
        self.runs.drain(..gone);
        if let Some((start, _)) = self.runs.first_mut() {
            *start = (*start).max(acked.saturating_add(1));
        }
        // 10,000 sources each keeping the room of their busiest moment would add up, and a source
        // that has gone keeps none.
        if self.runs.is_empty() {
            self.runs = Vec::new();
        } else if self.runs.capacity() > 2 * self.runs.len() + 16 {
            self.runs.shrink_to_fit();
        }
    }

    pub fn contains(&self, sequence: u64) -> bool {
        let at = self.runs.partition_point(|&(_, end)| end < sequence);
        self.runs
            .get(at)
            .is_some_and(|&(start, _)| start <= sequence)
    }

    /// The highest sequence in the set.
    pub(crate) fn first(&self) -> Option<u64> {
        self.runs.first().map(|&(first, _)| first)
    }

    pub(crate) fn last(&self) -> Option<u64> {
        self.runs.last().map(|&(_, end)| end)
    }

    /// How many sequences the set holds.
    pub fn len(&self) -> u64 {
        self.runs.iter().fold(0u64, |n, &(start, end)| {
            n.saturating_add((end - start).saturating_add(1))
        })
    }

    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// The runs, lowest first, as `(first, last)`.
    pub fn runs(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.runs.iter().copied()
    }

    /// The parts of `first..=last` the set does not hold, as runs, lowest first.
    pub(crate) fn missing_in(&self, first: u64, last: u64) -> Vec<(u64, u64)> {
        let mut missing = Vec::new();
        let mut next = Some(first);
        let from = self.runs.partition_point(|&(_, end)| end < first);
        for &(start, end) in &self.runs[from..] {
            let Some(at) = next.filter(|&at| at <= last) else {
                break;
            };
            if start > at {
                missing.push((at, (start - 1).min(last)));
            }
            next = end.checked_add(1);
        }
        if let Some(at) = next.filter(|&at| at <= last) {
            missing.push((at, last));
        }
        missing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The set as one sorted list, to compare with a plain model.
    fn members(set: &SequenceSet) -> Vec<u64> {
        set.runs().flat_map(|(first, last)| first..=last).collect()
    }

    proptest::proptest! {
        /// Whatever the order runs come in, the set holds what a plain set of them holds, as
        /// sorted, disjoint, non-adjacent runs, and what is missing is the rest.
        #[test]
        fn runs_hold_what_a_plain_set_holds(
            runs in proptest::collection::vec((0u64..300, 0u64..8), 0..40),
            (from, span) in (0u64..300, 0u64..60),
        ) {
            let mut set = SequenceSet::default();
            let mut model = std::collections::BTreeSet::new();
            for (first, len) in runs {
                set.insert_run(first, first + len);
                model.extend(first..=first + len);
            }
            proptest::prop_assert_eq!(members(&set), model.iter().copied().collect::<Vec<_>>());
            let runs: Vec<(u64, u64)> = set.runs().collect();
            proptest::prop_assert!(runs.windows(2).all(|w| w[0].1 + 1 < w[1].0));
            let missing: Vec<u64> = (set.missing_in(from, from + span).into_iter())
                .flat_map(|(a, b)| a..=b)
                .collect();
            let expected: Vec<u64> = (from..=from + span).filter(|s| !model.contains(s)).collect();
            proptest::prop_assert_eq!(missing, expected);
        }
    }

    #[test]
    fn what_is_missing_in_a_range_is_what_no_run_covers() {
        let mut set = SequenceSet::default();
        set.extend([3, 4, 5, 9, 10, 20]);
        assert_eq!(set.missing_in(0, 25), [(0, 2), (6, 8), (11, 19), (21, 25)]);
        assert_eq!(set.missing_in(4, 9), [(6, 8)]);
        assert_eq!(set.missing_in(3, 5), []);
        assert_eq!(set.missing_in(12, 14), [(12, 14)]);
        assert_eq!(SequenceSet::default().missing_in(1, 2), [(1, 2)]);
        set.insert_run(u64::MAX - 1, u64::MAX);
        assert_eq!(
            set.missing_in(u64::MAX - 3, u64::MAX),
            [(u64::MAX - 3, u64::MAX - 2)]
        );
    }

    #[test]
    fn runs_merge_when_they_touch_and_stay_apart_when_they_do_not() {
        let mut set = SequenceSet::default();
        set.extend([5, 6, 7, 10, 11, 3]);
        assert_eq!(set.runs().collect::<Vec<_>>(), [(3, 3), (5, 7), (10, 11)]);
        set.insert_run(4, 4);
        assert_eq!(set.runs().collect::<Vec<_>>(), [(3, 7), (10, 11)]);
        set.insert_run(8, 9);
        assert_eq!(set.runs().collect::<Vec<_>>(), [(3, 11)]);
        set.insert_run(0, 20);
        assert_eq!(set.runs().collect::<Vec<_>>(), [(0, 20)]);
        assert_eq!(set.len(), 21);
        set.insert_run(u64::MAX - 1, u64::MAX);
        assert_eq!(set.last(), Some(u64::MAX));
        assert!(set.contains(u64::MAX) && set.contains(20) && !set.contains(21));
    }

    /// Against a plain sorted list, over inserts in a scrambled order and removals.
    #[test]
    fn it_holds_what_a_plain_set_holds() {
        let mut set = SequenceSet::default();
        let mut model = std::collections::BTreeSet::new();
        // A fixed scramble of 0..600: emergencies overtaking routine frames, in batches.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        for round in 0..200u64 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let first = state % 600;
            let count = 1 + (state >> 32) % 8;
            let batch: Vec<u64> = (first..first + count).collect();
            set.extend(batch.iter().copied());
            model.extend(batch);
            if round % 50 == 49 {
                let acked = round * 2;
                set.remove_through(acked);
                model.retain(|&s| s > acked);
            }
            assert_eq!(members(&set), model.iter().copied().collect::<Vec<_>>());
            assert_eq!(set.len(), model.len() as u64);
            assert_eq!(set.last(), model.last().copied());
            for probe in [first, first + count, first.saturating_sub(1)] {
                assert_eq!(set.contains(probe), model.contains(&probe), "{probe}");
            }
        }
        let runs: Vec<_> = set.runs().collect();
        assert!(
            runs.windows(2).all(|w| w[0].1 + 1 < w[1].0),
            "sorted, apart: {runs:?}"
        );
    }

    #[test]
    fn removal_cuts_into_a_run() {
        let mut set = SequenceSet::default();
        set.extend([1, 2, 3, 7, 8, 9]);
        set.remove_through(8);
        assert_eq!(set.runs().collect::<Vec<_>>(), [(9, 9)]);
        set.remove_through(9);
        assert!(set.is_empty());
        assert_eq!(set.last(), None);
    }
}
