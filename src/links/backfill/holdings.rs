//! What the link's group holds of an APID, asked of the archive, and the cycle a recording's
//! packets of the APID go in ([`super::place`]): the counts propose the cycles they meet, the
//! bytes of a few sampled packets decide between them; met nowhere, the recording's time places
//! it between what the group received before and after it.

use std::collections::{BTreeSet, HashMap};

use super::place::{self, DECIDING};
use crate::domain::frame::SourceKey;
use crate::domain::sequence_set::SequenceSet;

/// How many cycles the counts meet are checked by their bytes, the most met first.
const CONTENDERS: usize = 8;

/// How many packets of a cycle the counts meet are checked by their bytes.
const SAMPLES: usize = 16;

/// What the archive holds, as a backfill asks it; blocking. The daemon answers from the
/// archive's files (`archive::query`).
pub(crate) trait Holdings: Send + Sync {
    /// The sequences any of `sources` holds, together, of the frames received in `window`.
    fn held(&self, sources: Vec<SourceKey>, window: Window) -> Result<SequenceSet, String>;
    /// The CRC-32 of the bytes of each of `frames` the archive holds.
    fn payload_crcs(&self, frames: BTreeSet<FrameAt>) -> Crcs;
}

/// Received times from and to, either end open, in nanoseconds since the Unix epoch.
pub(crate) type Window = (Option<u64>, Option<u64>);

/// The CRC-32 of frames' bytes, by frame.
pub(crate) type Crcs = Result<HashMap<FrameAt, u32>, String>;

/// The highest count held received before a time and the lowest received after it.
type Around = (Option<u64>, Option<u64>);

/// A frame of the archive: its source and sequence.
pub(crate) type FrameAt = (SourceKey, u64);

/// An APID's first packets in a recording: each one's relative count and the CRC-32 of its
/// bytes; and when the recording says the first was received (its earth time, else the file's
/// modification time), in nanoseconds since the Unix epoch.
pub(super) struct FirstPackets {
    pub packets: Vec<(u64, u32)>,
    pub at_ns: u64,
}

/// What `sources` (the group's that carry an APID's count) hold together, and the shift that
/// places the recording's packets of the APID whose first are `first`; `None` when none can be
/// told (they would land on counts the group holds other packets at). Blocking.
pub(super) fn decide(
    holdings: &dyn Holdings,
    sources: Vec<SourceKey>,
    first: &FirstPackets,
) -> Result<(SequenceSet, Option<i128>), String> {
    if sources.is_empty() {
        let relative = first.packets.first().map_or(0, |&(r, _)| r);
        return Ok((
            SequenceSet::default(),
            place::between(relative, (None, None)),
        ));
    }
    let held = holdings.held(sources.clone(), (None, None))?;
    let relative: Vec<u64> = (first.packets.iter())
        .map(|&(r, _)| r)
        .take(DECIDING)
        .collect();
    if let Some(shift) = by_bytes(holdings, &sources, first, &relative, &held)? {
        return Ok((held, Some(shift)));
    }
    // Met nowhere by the same bytes: a stretch no station delivered, placed by its time.
    let around = around(holdings, sources, first.at_ns)?;
    let shift = relative.first().and_then(|&r| place::between(r, around));
    Ok((held, shift))
}

/// The cycle the counts meet where the archive holds the same bytes as the recording's sampled
/// packets, if any.
fn by_bytes(
    holdings: &dyn Holdings,
    sources: &[SourceKey],
    first: &FirstPackets,
    relative: &[u64],
    held: &SequenceSet,
) -> Result<Option<i128>, String> {
    let contenders: Vec<i128> = (place::meeting(relative, held).into_iter())
        .take(CONTENDERS)
        .map(|(shift, _)| shift)
        .collect();
    let mut wanted = BTreeSet::new();
    let mut samples: Vec<(i128, Vec<(u64, u32)>)> = Vec::new();
    for &shift in &contenders {
        let placed = (first.packets.iter())
            .filter_map(|&(r, crc)| Some((place::placed(r, shift)?, crc)))
            .filter(|&(at, _)| held.contains(at));
        let chosen: Vec<(u64, u32)> = spread(placed.collect(), SAMPLES);
        for &(at, _) in &chosen {
            wanted.extend(sources.iter().map(|&source| (source, at)));
        }
        samples.push((shift, chosen));
    }
    if wanted.is_empty() {
        return Ok(None);
    }
    let crcs = holdings.payload_crcs(wanted)?;
    let matches: Vec<(i128, usize)> = (samples.iter())
        .map(|(shift, chosen)| {
            let same = |&&(at, crc): &&(u64, u32)| {
                (sources.iter()).any(|&source| crcs.get(&(source, at)) == Some(&crc))
            };
            (*shift, chosen.iter().filter(same).count())
        })
        .collect();
    Ok(place::by_bytes(&matches))
}

/// Of what `sources` hold together, the highest count received before `at_ns` and the lowest
/// received after it.
fn around(holdings: &dyn Holdings, sources: Vec<SourceKey>, at_ns: u64) -> Result<Around, String> {
    let before = holdings.held(sources.clone(), (None, Some(at_ns)))?.last();
    Ok((before, holdings.held(sources, (Some(at_ns), None))?.first()))
}

/// At most `most` of `items`, spread evenly over them.
fn spread<T: Copy>(items: Vec<T>, most: usize) -> Vec<T> {
    if items.len() <= most {
        return items;
    }
    (0..most).map(|i| items[i * items.len() / most]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::frame::SourceKind;
    use crate::links::backfill::place::Reading;

    const MODULUS: u64 = 16_384;
    const SOURCE: SourceKey = (SourceKind::LiveUplink, 10_007);

    /// An archive whose source holds `held`, each frame's bytes told by its sequence, and
    /// `around` what it received before and after any time.
    struct Archive {
        held: SequenceSet,
        around: Around,
    }

    fn crc_of(sequence: u64) -> u32 {
        crc32fast::hash(&sequence.to_be_bytes())
    }

    impl Holdings for Archive {
        fn held(&self, _: Vec<SourceKey>, window: Window) -> Result<SequenceSet, String> {
            let one = |at: Option<u64>| {
                SequenceSet::of_runs(&at.map(|a| (a, a)).into_iter().collect::<Vec<_>>())
            };
            Ok(match window {
                (None, None) => self.held.clone(),
                (None, Some(_)) => one(self.around.0),
                (Some(_), _) => one(self.around.1),
            })
        }

        fn payload_crcs(&self, frames: BTreeSet<FrameAt>) -> Crcs {
            let held = frames.into_iter().filter(|&(_, at)| self.held.contains(at));
            Ok(held.map(|frame| (frame, crc_of(frame.1))).collect())
        }
    }

    /// The recording of the spacecraft's sequences `sequences`: relative counts, and bytes.
    fn recording(sequences: std::ops::Range<u64>) -> FirstPackets {
        let mut reading = Reading::default();
        let count = |s: u64| (s % MODULUS) as u16;
        let packets = sequences.map(|s| (reading.next(count(s)), crc_of(s)));
        FirstPackets {
            packets: packets.collect(),
            at_ns: 0,
        }
    }

    /// Where `first`'s first packet goes in `archive`.
    fn first_at(archive: &Archive, first: &FirstPackets) -> Option<u64> {
        let (_, shift) = decide(archive, vec![SOURCE], first).unwrap();
        place::placed(first.packets[0].0, shift?)
    }

    /// A pass held across three cycles: a recording of its last cycle, running on past it,
    /// meets the first counts in all three alike; its bytes are the last cycle's.
    #[test]
    fn the_bytes_place_a_recording_in_the_cycle_its_packets_are_held_in() {
        let held = SequenceSet::of_runs(&[(MODULUS, 4 * MODULUS - 1)]);
        let archive = Archive {
            held,
            around: (None, None),
        };
        let start = 3 * MODULUS + 100;
        assert_eq!(
            first_at(&archive, &recording(start..start + DECIDING as u64)),
            Some(start)
        );
    }

    /// A stretch no station delivered, from before what the live station delivered next (the
    /// cycle before, other bytes at the counts it meets): below the live counts, never on them.
    #[test]
    fn a_stretch_before_the_live_counts_goes_below_them() {
        let held = SequenceSet::of_runs(&[(MODULUS, MODULUS + 99)]);
        let archive = Archive {
            held,
            around: (None, Some(MODULUS)),
        };
        assert_eq!(first_at(&archive, &recording(5000..5100)), Some(5000));
        // The same with the counts it meets held by other bytes (the cycle before, 0..=99).
        assert_eq!(first_at(&archive, &recording(50..150)), Some(50));
    }

    /// The counts met, but the bytes there are other packets (the counter restarted), received
    /// after everything held: after the highest count; and nowhere when no count fits.
    #[test]
    fn a_restarted_counter_goes_after_what_came_before_or_nowhere() {
        let held = SequenceSet::of_runs(&[(MODULUS, MODULUS + 999)]);
        let mut restarted = recording(MODULUS..MODULUS + 100);
        restarted
            .packets
            .iter_mut()
            .for_each(|(_, crc)| *crc = !*crc);
        let after = Archive {
            held: held.clone(),
            around: (Some(MODULUS + 999), None),
        };
        assert_eq!(first_at(&after, &restarted), Some(2 * MODULUS));
        let narrow = Archive {
            held,
            around: (Some(MODULUS + 999), Some(MODULUS + 1500)),
        };
        assert_eq!(first_at(&narrow, &restarted), None);
    }
}
