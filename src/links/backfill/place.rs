//! Where a recording's packets of one APID belong: the 64-bit count each gets in its source.
//!
//! A recording holds 14-bit counts, and the archive the group's counts extended to 64 bits. The
//! recording is read as a station's connection is (each count nearest the last: a station's
//! stream is in order), which fixes the counts relative to each other; the cycle of 16,384 they
//! lie in is the one where they meet most what the group holds of the APID (a pass delivered in
//! part, or the same file imported before), told from the first packets. A recording that meets
//! nothing the group holds is placed after the highest count held, as a live station's first
//! packet is: what no station delivered is stored, once; its cycle may then differ from the
//! spacecraft's, which only `archive verify`'s count jumps show.

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

/// The shift (a whole number of cycles, possibly below zero) from relative counts to the
/// group's: the one under which the most of `first` (the first relative counts of the
/// recording) are in `held`, the later on a tie; with none, the one that puts the first packet
/// just after the highest count held (or, with nothing held, leaves it one cycle up).
///
/// Cycles that tie because one run of `held` meets the first counts in each are one pass held
/// across wraps (a live pass, or this recording imported in part before a crash): the
/// recording begins where the pass does, in the earliest of them. The later one would store
/// the pass again, cycles up.
pub(super) fn shift(first: &[u64], held: &SequenceSet) -> i128 {
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
    let best = hits.iter().max_by_key(|&(&cycle, &n)| (n, cycle));
    if let Some((&latest, &most)) = best {
        let mut cycle = latest;
        while hits.get(&(cycle - 1)) == Some(&most) && one_run(first, cycle - 1, held) {
            cycle -= 1;
        }
        return cycle * modulus;
    }
    match (held.last(), first.first()) {
        (Some(highest), Some(&relative)) => {
            let above = i128::from(highest) + 1 - i128::from(relative);
            above.div_euclid(modulus) * modulus
                + modulus * i128::from(above.rem_euclid(modulus) != 0)
        }
        _ => 0,
    }
}

/// Whether `held` holds every count from the first packet placed in `cycle` to it placed in
/// the next: one run through the wrap.
fn one_run(first: &[u64], cycle: i128, held: &SequenceSet) -> bool {
    let modulus = i128::from(MODULUS);
    let Some(&relative) = first.first() else {
        return false;
    };
    let from = placed(relative, cycle * modulus);
    let to = placed(relative, (cycle + 1) * modulus);
    from.zip(to)
        .is_some_and(|(from, to)| held.missing_in(from, to).is_empty())
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

    /// A pass the group holds in part: the recording lands where its counts meet it, however
    /// many cycles up.
    #[test]
    fn the_cycle_is_the_one_the_group_holds_the_pass_in() {
        let cycle = 40 * MODULUS;
        let group = held(&[(cycle + 100, cycle + 199), (cycle + 300, cycle + 399)]);
        let relative = read(&(100..400).collect::<Vec<u16>>());
        let shift = shift(&relative[..DECIDING], &group);
        assert_eq!(placed(relative[0], shift), Some(cycle + 100));
        assert_eq!(placed(relative[250], shift), Some(cycle + 350));
    }

    /// The same counts in two cycles: the one held more wins, the later on a tie.
    #[test]
    fn the_cycle_held_most_wins_and_the_later_on_a_tie() {
        let (early, late) = (3 * MODULUS, 9 * MODULUS);
        let relative = read(&[10, 11, 12, 13]);
        let more_early = held(&[(early + 10, early + 13), (late + 10, late + 10)]);
        assert_eq!(
            placed(relative[0], shift(&relative, &more_early)),
            Some(early + 10)
        );
        let tie = held(&[(early + 10, early + 11), (late + 12, late + 13)]);
        assert_eq!(placed(relative[0], shift(&relative, &tie)), Some(late + 10));
    }

    /// A recording whose first counts one held run meets in three cycles (the same file,
    /// imported in part before a crash): placed where the run begins, not two cycles up.
    #[test]
    fn a_pass_held_across_wraps_places_the_recording_at_its_start() {
        let relative = read(&(0..DECIDING as u16).collect::<Vec<u16>>());
        let first_import = held(&[(MODULUS, MODULUS + 2 * MODULUS + 4095)]);
        assert_eq!(
            placed(relative[0], shift(&relative, &first_import)),
            Some(MODULUS)
        );
        // Two passes apart still tie to the later one.
        let two = held(&[(MODULUS, MODULUS + 300), (5 * MODULUS, 5 * MODULUS + 300)]);
        assert_eq!(
            placed(relative[0], shift(&relative, &two)),
            Some(5 * MODULUS)
        );
    }

    /// Nothing of the recording held: after the highest count, as a live station's first
    /// packet; nothing held at all: one cycle up.
    #[test]
    fn a_recording_the_group_never_saw_goes_after_the_highest() {
        let relative = read(&[5, 6]);
        let group = held(&[(2 * MODULUS + 100, 2 * MODULUS + 200)]);
        assert_eq!(
            placed(relative[0], shift(&relative, &group)),
            Some(3 * MODULUS + 5)
        );
        let empty = SequenceSet::default();
        assert_eq!(
            placed(relative[0], shift(&relative, &empty)),
            Some(MODULUS + 5)
        );
    }
}
