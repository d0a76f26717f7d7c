//! The sequences below a source's routine mark that a `records/1` stream lacks, as runs
//! (`docs/scale-out.md`, "What holds").
//!
//! Why the gaps and not only the mark: a backfill fills gaps below what the stream holds of its
//! source (a station's recording of a pass it lost live), so "every frame up to the mark is
//! there" would take a filled frame for one the stream has. The runs travel in every message of
//! the subject with the mark, so its last message tells whichever writer comes next what the
//! stream lacks, whoever published the rest (another daemon of the fleet, or frames the
//! archive's retention has deleted since). They are bounded ([`MOST_RUNS`], the highest kept):
//! a header is read at every restart and fits in the room a message keeps for its headers.

use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;

/// The most runs a header names; the lowest go first.
pub(super) const MOST_RUNS: usize = 128;

/// Disjoint, non-adjacent runs of sequences, lowest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Gaps {
    runs: VecDeque<(u64, u64)>,
}

impl Gaps {
    pub(super) fn contains(&self, sequence: u64) -> bool {
        let at = self.runs.partition_point(|&(_, last)| last < sequence);
        self.runs
            .get(at)
            .is_some_and(|&(first, _)| first <= sequence)
    }

    /// Adds the run `first..=last`, joining the runs it touches or overlaps; past [`MOST_RUNS`]
    /// the lowest run goes.
    pub(super) fn open(&mut self, first: u64, last: u64) {
        let below = (self.runs).partition_point(|&(_, l)| l.saturating_add(1) < first);
        let above = (self.runs).partition_point(|&(f, _)| f <= last.saturating_add(1));
        let (mut first, mut last) = (first, last);
        if below < above {
            first = first.min(self.runs[below].0);
            last = last.max(self.runs[above - 1].1);
        }
        self.runs.drain(below..above);
        self.runs.insert(below, (first, last));
        while self.runs.len() > MOST_RUNS {
            self.runs.pop_front();
        }
    }

    /// Takes `sequence` out of its run, where one holds it.
    pub(super) fn close(&mut self, sequence: u64) {
        let at = self.runs.partition_point(|&(_, last)| last < sequence);
        let Some(&(first, last)) = self.runs.get(at).filter(|run| run.0 <= sequence) else {
            return;
        };
        self.runs.remove(at);
        if sequence < last {
            self.runs.insert(at, (sequence + 1, last));
        }
        if first < sequence {
            self.runs.insert(at, (first, sequence - 1));
        }
        while self.runs.len() > MOST_RUNS {
            self.runs.pop_front();
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }
}

/// The runs a header says: `FIRST-LAST` or `SEQUENCE`, separated by commas.
impl FromStr for Gaps {
    type Err = String;

    fn from_str(text: &str) -> Result<Gaps, String> {
        let number = |s: &str| s.trim().parse::<u64>().map_err(|_| format!("{s:?}"));
        let mut gaps = Gaps::default();
        for run in text.split(',').filter(|run| !run.trim().is_empty()) {
            let (first, last) = match run.split_once('-') {
                Some((first, last)) => (number(first)?, number(last)?),
                None => (number(run)?, number(run)?),
            };
            if first > last {
                return Err(format!("{run:?} runs backwards"));
            }
            gaps.open(first, last);
        }
        Ok(gaps)
    }
}

impl fmt::Display for Gaps {
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
    fn runs_open_close_and_read_back_as_written() {
        let mut gaps = Gaps::default();
        gaps.open(10, 20);
        gaps.open(30, 30);
        gaps.open(21, 22);
        gaps.open(4, 6);
        assert_eq!(gaps.to_string(), "4-6,10-22,30");
        gaps.close(15);
        gaps.close(10);
        gaps.close(22);
        gaps.close(30);
        gaps.close(8);
        assert_eq!(gaps.to_string(), "4-6,11-14,16-21");
        assert!(gaps.contains(11) && gaps.contains(4) && gaps.contains(21));
        assert!(!gaps.contains(15) && !gaps.contains(7) && !gaps.contains(22));
        assert_eq!(gaps.to_string().parse(), Ok(gaps.clone()));
        assert_eq!("3, 5-9,7-12".parse::<Gaps>(), "3,5-12".parse());
        assert_eq!("".parse(), Ok(Gaps::default()));
        assert_eq!("9-3".parse::<Gaps>(), Err("\"9-3\" runs backwards".into()));
        assert_eq!("1,x".parse::<Gaps>(), Err("\"x\"".into()));
        assert!("-".parse::<Gaps>().is_err() && "1--2".parse::<Gaps>().is_err());
        gaps.open(u64::MAX, u64::MAX);
        gaps.close(0);
        assert!(gaps.contains(u64::MAX) && !gaps.contains(u64::MAX - 1));
    }

    #[test]
    fn past_the_most_runs_the_lowest_go() {
        let mut gaps = Gaps::default();
        (0..=MOST_RUNS as u64).for_each(|run| gaps.open(run * 2, run * 2));
        assert!(!gaps.contains(0) && gaps.contains(2));
        let parsed = format!("0,{gaps}").parse::<Gaps>().unwrap();
        assert_eq!(parsed, gaps);
        let mut one = Gaps::default();
        one.open(0, 2 * MOST_RUNS as u64);
        (1..=MOST_RUNS as u64).for_each(|s| one.close(2 * s - 1));
        assert_eq!(
            one.runs.len(),
            MOST_RUNS,
            "split to the most, the lowest gone"
        );
        assert!(!one.contains(0) && one.contains(2 * MOST_RUNS as u64));
    }
}
