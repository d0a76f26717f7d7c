//! The rule that cuts one station's frames of one thing it receives into passes, and the rule
//! that says where a window cut a pass. Both are small and pure, so they are tested here apart
//! from any archive.
//!
//! Why on the earth-receive time when the station gives it: a recording imported later (a
//! backfill) is received by the daemon within seconds, though the spacecraft flew over the
//! station hours apart; the station's own time keeps its passes apart. Why a frame without one
//! falls back to its received time rather than being left out: no frame is hidden, and a station
//! that never gives the time is split on the daemon's clock. Why the window's clipping is judged
//! on received times: the window is of received times (every archive query's is).

use std::ops::Range;

/// Sorts `frames` by their pass time (`at`; frames of one time stay in the order given) and cuts
/// them where two that follow each other lie more than `gap_ns` apart: each range of the sorted
/// slice is one pass. A silence of exactly `gap_ns` stays inside a pass.
pub(super) fn split<T>(frames: &mut [T], at: impl Fn(&T) -> u64, gap_ns: u64) -> Vec<Range<usize>> {
    frames.sort_by_key(&at);
    let mut passes = Vec::new();
    let mut start = 0;
    for i in 1..frames.len() {
        if at(&frames[i]).saturating_sub(at(&frames[i - 1])) > gap_ns {
            passes.push(start..i);
            start = i;
        }
    }
    if !frames.is_empty() {
        passes.push(start..frames.len());
    }
    passes
}

/// Where a window may have cut a pass: at its start, at its end.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Clipped {
    /// The pass's first frame was received less than the gap after the window's `from`: a frame
    /// received before the window may belong to it.
    pub at_from: bool,
    /// Its last frame was received less than the gap before the window's `to` (the time of the
    /// query without one): a frame received after it, or still to come, may belong to it.
    pub at_to: bool,
}

/// Where the window `from..=to` (received times, `None` for an open end) may have cut a pass
/// whose frames were received from `first` to `last`, with passes cut at silences over `gap_ns`.
pub(super) fn clipped(
    first: u64,
    last: u64,
    window: (Option<u64>, Option<u64>),
    gap_ns: u64,
) -> Clipped {
    let (from, to) = window;
    Clipped {
        at_from: from.is_some_and(|from| first.saturating_sub(from) <= gap_ns),
        at_to: to.is_some_and(|to| to.saturating_sub(last) <= gap_ns),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: u64 = 60_000_000_000;

    fn cut(times: &[u64], gap: u64) -> Vec<Vec<u64>> {
        let mut frames = times.to_vec();
        let ranges = split(&mut frames, |&t| t, gap);
        ranges.into_iter().map(|r| frames[r].to_vec()).collect()
    }

    #[test]
    fn a_silence_of_exactly_the_gap_stays_in_the_pass_and_one_nanosecond_more_ends_it() {
        let gap = 10 * MINUTE;
        assert_eq!(cut(&[0, gap, 2 * gap], gap), [vec![0, gap, 2 * gap]]);
        assert_eq!(
            cut(&[0, gap + 1, 2 * gap + 1], gap),
            [vec![0], vec![gap + 1, 2 * gap + 1]]
        );
        assert!(cut(&[], gap).is_empty());
        assert_eq!(cut(&[5], gap), [vec![5]]);
    }

    #[test]
    fn frames_out_of_order_are_sorted_before_the_cut() {
        // A station's frames come back as stored: two passes interleaved by a late recording.
        let gap = MINUTE;
        let times = [90 * MINUTE, 0, 91 * MINUTE, MINUTE / 2];
        assert_eq!(
            cut(&times, gap),
            [vec![0, MINUTE / 2], vec![90 * MINUTE, 91 * MINUTE]]
        );
    }

    #[test]
    fn one_frame_a_minute_is_one_pass_as_long_as_it_goes_on() {
        let times: Vec<u64> = (0..600).map(|m| m * MINUTE).collect();
        assert_eq!(cut(&times, 10 * MINUTE).len(), 1);
        assert_eq!(cut(&times, MINUTE - 1).len(), 600);
    }

    #[test]
    fn a_pass_near_an_end_of_the_window_is_clipped_there() {
        let gap = 10 * MINUTE;
        let window = (Some(100 * MINUTE), Some(200 * MINUTE));
        let at = |first, last| clipped(first * MINUTE, last * MINUTE, window, gap);
        assert_eq!(at(150, 160), Clipped::default());
        assert_eq!(
            at(110, 160),
            Clipped {
                at_from: true,
                at_to: false
            }
        );
        assert_eq!(
            at(111, 190),
            Clipped {
                at_from: false,
                at_to: true
            }
        );
        assert_eq!(
            at(100, 200),
            Clipped {
                at_from: true,
                at_to: true
            }
        );
        // An open end cuts nothing.
        let open = clipped(100 * MINUTE, 200 * MINUTE, (None, None), gap);
        assert_eq!(open, Clipped::default());
    }
}
