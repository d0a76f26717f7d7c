//! The sequences of a source's backfilled frames that a `records/1` stream holds, as runs
//! (`docs/scale-out.md`, "Backfilled frames").
//!
//! Why runs and not the marks: a backfill fills gaps below what the stream holds of its source,
//! so "every frame up to the mark is there" says nothing of a recorded frame, and the sink reads
//! one again after a restart (from its cursor) or on the daemon that takes the source over. The
//! runs travel in every message of the subject, as the marks do, so its last message tells
//! whichever writer comes next. They are bounded ([`MOST_RUNS`] a priority, the highest kept):
//! a header is read at every restart and fits in the room a message keeps for its headers.

use std::fmt;
use std::str::FromStr;

/// The most runs a priority's header keeps; the lowest go first.
pub(super) const MOST_RUNS: usize = 64;

/// Disjoint, non-adjacent runs of sequences, lowest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Filled {
    runs: Vec<(u64, u64)>,
}

impl Filled {
    pub(super) fn contains(&self, sequence: u64) -> bool {
        let at = self.runs.partition_point(|&(_, last)| last < sequence);
        self.runs
            .get(at)
            .is_some_and(|&(first, _)| first <= sequence)
    }

    /// Adds `sequence`, joining the runs it touches; past [`MOST_RUNS`] the lowest run goes.
    pub(super) fn add(&mut self, sequence: u64) {
        self.add_run(sequence, sequence);
    }

    pub(super) fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// Adds the run `first..=last`, joining the runs it touches or overlaps.
    fn add_run(&mut self, first: u64, last: u64) {
        let below = self
            .runs
            .partition_point(|&(_, l)| l.saturating_add(1) < first);
        let above = self
            .runs
            .partition_point(|&(f, _)| f <= last.saturating_add(1));
        let (mut first, mut last) = (first, last);
        if below < above {
            first = first.min(self.runs[below].0);
            last = last.max(self.runs[above - 1].1);
        }
        self.runs.splice(below..above, [(first, last)]);
        if self.runs.len() > MOST_RUNS {
            self.runs.drain(..self.runs.len() - MOST_RUNS);
        }
    }
}

/// The runs a header says: `FIRST-LAST` or `SEQUENCE`, separated by commas.
impl FromStr for Filled {
    type Err = String;

    fn from_str(text: &str) -> Result<Filled, String> {
        let number = |s: &str| s.trim().parse::<u64>().map_err(|_| format!("{s:?}"));
        let mut filled = Filled::default();
        for run in text.split(',').filter(|run| !run.trim().is_empty()) {
            let (first, last) = match run.split_once('-') {
                Some((first, last)) => (number(first)?, number(last)?),
                None => (number(run)?, number(run)?),
            };
            if first > last {
                return Err(format!("{run:?} runs backwards"));
            }
            filled.add_run(first, last);
        }
        Ok(filled)
    }
}

impl fmt::Display for Filled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, &(first, last)) in self.runs.iter().enumerate() {
            let comma = if i == 0 { "" } else { "," };
            match first == last {
                true => write!(f, "{comma}{first}")?,
                false => write!(f, "{comma}{first}-{last}")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_join_and_read_back_as_written() {
        let mut filled = Filled::default();
        for sequence in [10, 12, 11, 20, 5, 6, 21, 4] {
            filled.add(sequence);
        }
        assert_eq!(filled.to_string(), "4-6,10-12,20-21");
        assert!(filled.contains(11) && filled.contains(4) && filled.contains(21));
        assert!(!filled.contains(7) && !filled.contains(13) && !filled.contains(22));
        assert_eq!(filled.to_string().parse(), Ok(filled.clone()));
        filled.add(7);
        filled.add(9);
        filled.add(8);
        assert_eq!(filled.to_string(), "4-12,20-21");
        assert_eq!("3, 5-9,7-12".parse::<Filled>(), "3,5-12".parse());
        assert_eq!("".parse(), Ok(Filled::default()));
        assert_eq!(
            "9-3".parse::<Filled>(),
            Err("\"9-3\" runs backwards".into())
        );
        assert_eq!("1,x".parse::<Filled>(), Err("\"x\"".into()));
        filled.add(u64::MAX);
        assert!(filled.contains(u64::MAX) && !filled.contains(u64::MAX - 1));
    }

    #[test]
    fn past_the_most_runs_the_lowest_go() {
        let mut filled = Filled::default();
        (0..=MOST_RUNS as u64).for_each(|run| filled.add(run * 2));
        assert!(!filled.contains(0) && filled.contains(2));
        let parsed = format!("0,{filled}").parse::<Filled>().unwrap();
        assert_eq!(parsed, filled);
    }
}
