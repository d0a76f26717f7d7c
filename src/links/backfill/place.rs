//! Where a recording's packets of one APID belong: the 64-bit count each gets in its source.
//!
//! A recording holds 14-bit counts, and the archive the group's counts extended to 64 bits. The
//! recording is read as a station's connection is (each count nearest the last: a station's
//! stream is in order), which fixes the counts relative to each other; the cycle of 16,384 they
//! lie in is one where its first packets meet what the group holds of the APID (a pass delivered
//! in part, or the same file imported before). The counts alone may meet several cycles alike
//! (a pass held across wraps meets the first counts in each it spans), so the bytes decide: the
//! cycle under which the archive holds the same bytes at the same counts as the recording's
//! sampled packets. A recording that meets nothing the group holds, or meets only other bytes (a
//! counter restart), is a stretch no station delivered: its time places it, just after the
//! highest count the group received before it and below the lowest received after it, so that
//! it never takes counts the live stations go on with.

use crate::domain::sequence_set::SequenceSet;
use crate::protocol::ccsds::SEQUENCE_COUNT_MODULUS;

const MODULUS: u64 = SEQUENCE_COUNT_MODULUS as u64;

/// How many of a recording's first packets of an APID decide its cycle.
pub(super) const DECIDING: usize = 256;

/// One APID of a recording, read in order.
#[derive(Debug, Default)]
pub(super) struct Reading {
    /// The relative count of the last packet: the first is read one cycle up, so that one
    /// before a wrap just behind it stays above zero.
    last: Option<u64>,
}

impl Reading {
    /// The relative count of the next packet, of 14-bit `count`: nearest the last.
    pub(super) fn next(&mut self, count: u16) -> u64 {
        let count = u64::from(count) % MODULUS;
        let relative = match self.last {
            None => MODULUS + count,
            Some(last) => nearest(last, count),
        };
        self.last = Some(relative);
        relative
    }
}

/// The count `≡ count (mod 16,384)` nearest `last` (up to 8,191 ahead, or behind), never below
/// zero.
fn nearest(last: u64, count: u64) -> u64 {
    let ahead = (count + MODULUS - last % MODULUS) % MODULUS;
    match ahead < MODULUS / 2 {
        true => last + ahead,
        false => (last + ahead).saturating_sub(MODULUS),
    }
}

/// The shifts (whole numbers of cycles, possibly below zero) from relative counts to the
/// group's under which some of `first` (the first relative counts of the recording) are in
/// `held`, with how many: the most first, the earliest first among equals.
pub(super) fn meeting(first: &[u64], held: &SequenceSet) -> Vec<(i128, usize)> {
    let modulus = i128::from(MODULUS);
    let mut hits: std::collections::BTreeMap<i128, usize> = Default::default();
    for &relative in first {
        let relative = i128::from(relative);
        for (low, high) in held.runs() {
            // The cycles j with low <= relative + j * M <= high.
            let from = (i128::from(low) - relative).div_euclid(modulus)
                + i128::from((i128::from(low) - relative).rem_euclid(modulus) != 0);
            let to = (i128::from(high) - relative).div_euclid(modulus);
            for cycle in from..=to {
                *hits.entry(cycle).or_default() += 1;
            }
        }
    }
    let mut meeting: Vec<(i128, usize)> = (hits.into_iter())
        .map(|(cycle, n)| (cycle * modulus, n))
        .collect();
    meeting.sort_by_key(|&(shift, n)| (std::cmp::Reverse(n), shift));
    meeting
}

/// Of shifts with how many sampled packets' bytes the archive holds under each, the one with
/// the most, the earliest among equals; `None` when no bytes match (the counts the group holds
/// there are other packets: the spacecraft restarted its counter).
pub(super) fn by_bytes(matches: &[(i128, usize)]) -> Option<i128> {
    (matches.iter())
        .filter(|&&(_, n)| n > 0)
        .max_by_key(|&&(shift, n)| (n, std::cmp::Reverse(shift)))
        .map(|&(shift, _)| shift)
}

/// The shift that puts the first packet (relative count `first`) just after `before` (the
/// highest count the group received before the recording's time) and below `after` (the lowest
/// it received after): with nothing before, the highest below `after`; with neither, it stays
/// one cycle up, as a live station's first packet. `None` when no count of the packet's fits
/// between them: the stretch the recording would fill is narrower than its place in the cycle.
pub(super) fn between(first: u64, (before, after): (Option<u64>, Option<u64>)) -> Option<i128> {
    let (modulus, first) = (i128::from(MODULUS), i128::from(first));
    let shift = match (before, after) {
        (Some(before), _) => {
            let above = i128::from(before) + 1 - first;
            above.div_euclid(modulus) * modulus
                + modulus * i128::from(above.rem_euclid(modulus) != 0)
        }
        (None, Some(after)) => (i128::from(after) - 1 - first).div_euclid(modulus) * modulus,
        (None, None) => 0,
    };
    let at = first + shift;
    let fits = at >= 0 && after.is_none_or(|after| at < i128::from(after));
    fits.then_some(shift)
}

/// `relative` under `shift`: the group's count, if not below zero.
pub(super) fn placed(relative: u64, shift: i128) -> Option<u64> {
    u64::try_from(i128::from(relative) + shift).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(runs: &[(u64, u64)]) -> SequenceSet {
        SequenceSet::of_runs(runs)
    }

    fn read(counts: &[u16]) -> Vec<u64> {
        let mut reading = Reading::default();
        counts.iter().map(|&c| reading.next(c)).collect()
    }

    #[test]
    fn a_recording_reads_on_through_the_wrap_and_back() {
        assert_eq!(
            read(&[16_382, 16_383, 0, 1]),
            [32_766, 32_767, 32_768, 32_769]
        );
        assert_eq!(read(&[1, 0, 16_383]), [16_385, 16_384, 16_383]);
    }

    /// A pass the group holds in part: the recording's counts meet it, however many cycles up.
    #[test]
    fn the_counts_meet_the_cycle_the_group_holds_the_pass_in() {
        let cycle = 40 * MODULUS;
        let group = held(&[(cycle + 100, cycle + 199), (cycle + 300, cycle + 399)]);
        let relative = read(&(100..400).collect::<Vec<u16>>());
        let meeting = meeting(&relative[..DECIDING], &group);
        assert_eq!(meeting.len(), 1);
        let (shift, hits) = meeting[0];
        assert_eq!(hits, 100 + (DECIDING - 200));
        assert_eq!(placed(relative[0], shift), Some(cycle + 100));
        assert_eq!(placed(relative[250], shift), Some(cycle + 350));
    }

    /// The same counts in two cycles: the one met most first, the earlier first on a tie.
    #[test]
    fn the_cycles_met_come_most_first_and_earliest_among_equals() {
        let (early, late) = (3 * MODULUS, 9 * MODULUS);
        let relative = read(&[10, 11, 12, 13]);
        let more_late = held(&[(early + 10, early + 10), (late + 10, late + 13)]);
        let placements: Vec<_> = (meeting(&relative, &more_late).iter())
            .map(|&(shift, n)| (placed(relative[0], shift), n))
            .collect();
        assert_eq!(placements, [(Some(late + 10), 4), (Some(early + 10), 1)]);
        let tie = held(&[(early + 10, early + 11), (late + 12, late + 13)]);
        let first = meeting(&relative, &tie)[0].0;
        assert_eq!(placed(relative[0], first), Some(early + 10));
    }

    /// A pass held across wraps meets the first counts in every cycle it spans: the bytes
    /// decide, the most matches first, the earliest among equals, none when nothing matches.
    #[test]
    fn the_bytes_decide_between_cycles_the_counts_meet_alike() {
        let relative = read(&(0..DECIDING as u16).collect::<Vec<u16>>());
        let across = held(&[(MODULUS, 3 * MODULUS + 4095)]);
        let meeting = meeting(&relative, &across);
        assert_eq!(meeting.len(), 3);
        assert!(meeting.iter().all(|&(_, n)| n == DECIDING));
        let shifts: Vec<i128> = meeting.iter().map(|&(shift, _)| shift).collect();
        assert_eq!(
            by_bytes(&[(shifts[0], 0), (shifts[1], 16), (shifts[2], 3)]),
            Some(shifts[1])
        );
        assert_eq!(
            by_bytes(&[(shifts[2], 16), (shifts[1], 16)]),
            Some(shifts[1])
        );
        assert_eq!(by_bytes(&[(shifts[0], 0), (shifts[1], 0)]), None);
    }

    /// Nothing of the recording held: just after what the group received before it, below what
    /// it received after; before everything, below the lowest; with nothing, one cycle up.
    #[test]
    fn a_stretch_no_station_delivered_goes_between_what_came_before_and_after() {
        let relative = read(&[5, 6]);
        let place = |around| between(relative[0], around).map(|s| placed(relative[0], s));
        let (before, after) = (2 * MODULUS + 100, 5 * MODULUS);
        assert_eq!(place((Some(before), None)), Some(Some(3 * MODULUS + 5)));
        assert_eq!(
            place((Some(before), Some(after))),
            Some(Some(3 * MODULUS + 5))
        );
        assert_eq!(place((None, Some(after))), Some(Some(4 * MODULUS + 5)));
        assert_eq!(place((None, Some(3))), None, "no count 5 below 3");
        assert_eq!(
            place((Some(before), Some(2 * MODULUS + 200))),
            None,
            "too narrow"
        );
        assert_eq!(place((None, None)), Some(Some(MODULUS + 5)));
    }
}
