//! What the link's group holds of an APID, asked of the archive, and the cycle a recording's
//! packets of the APID go in ([`super::place`]): the counts propose the cycles they meet, the
//! bytes of a few sampled packets decide between them.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

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
    /// The sequences any of `sources` holds, together.
    fn held(&self, sources: Vec<SourceKey>) -> Result<SequenceSet, String>;
    /// The CRC-32 of the bytes of each of `frames` the archive holds.
    fn payload_crcs(&self, frames: BTreeSet<FrameAt>) -> Result<HashMap<FrameAt, u32>, String>;
}

/// A frame of the archive: its source and sequence.
pub(crate) type FrameAt = (SourceKey, u64);

/// An APID's first packets in a recording: each one's relative count and the CRC-32 of its
/// bytes.
pub(super) type FirstPackets = Vec<(u64, u32)>;

/// What `sources` (the group's that carry an APID's count) hold together, and the shift that
/// places the recording's packets of the APID whose first are `first`.
pub(super) async fn decide(
    holdings: &Arc<dyn Holdings>,
    sources: Vec<SourceKey>,
    first: FirstPackets,
) -> Result<(SequenceSet, i128), String> {
    let held = match sources.is_empty() {
        true => SequenceSet::default(),
        false => {
            let asked = sources.clone();
            ask(holdings, move |h| h.held(asked)).await?
        }
    };
    let relative: Vec<u64> = first.iter().map(|&(r, _)| r).take(DECIDING).collect();
    let contenders: Vec<i128> = (place::meeting(&relative, &held).into_iter())
        .take(CONTENDERS)
        .map(|(shift, _)| shift)
        .collect();
    let mut wanted = BTreeSet::new();
    let mut samples: Vec<(i128, Vec<(u64, u32)>)> = Vec::new();
    for &shift in &contenders {
        let placed = (first.iter())
            .filter_map(|&(r, crc)| Some((place::placed(r, shift)?, crc)))
            .filter(|&(at, _)| held.contains(at));
        let chosen: Vec<(u64, u32)> = spread(placed.collect(), SAMPLES);
        for &(at, _) in &chosen {
            wanted.extend(sources.iter().map(|&source| (source, at)));
        }
        samples.push((shift, chosen));
    }
    let crcs = match wanted.is_empty() {
        true => HashMap::new(),
        false => ask(holdings, move |h| h.payload_crcs(wanted)).await?,
    };
    let matches: Vec<(i128, usize)> = (samples.iter())
        .map(|(shift, chosen)| {
            let same = |&&(at, crc): &&(u64, u32)| {
                sources
                    .iter()
                    .any(|&source| crcs.get(&(source, at)) == Some(&crc))
            };
            (*shift, chosen.iter().filter(same).count())
        })
        .collect();
    let shift = place::by_bytes(&matches).unwrap_or_else(|| place::after_highest(&relative, &held));
    Ok((held, shift))
}

/// At most `most` of `items`, spread evenly over them.
fn spread<T: Copy>(items: Vec<T>, most: usize) -> Vec<T> {
    if items.len() <= most {
        return items;
    }
    (0..most).map(|i| items[i * items.len() / most]).collect()
}

/// Asks the archive, off the runtime's threads.
async fn ask<T: Send + 'static>(
    holdings: &Arc<dyn Holdings>,
    question: impl FnOnce(&dyn Holdings) -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    let holdings = Arc::clone(holdings);
    (tokio::task::spawn_blocking(move || question(holdings.as_ref())).await)
        .map_err(|err| err.to_string())?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::frame::SourceKind;
    use crate::links::backfill::place::Reading;

    const MODULUS: u64 = 16_384;
    const SOURCE: SourceKey = (SourceKind::LiveUplink, 10_007);

    /// An archive whose source holds `held`, each frame's bytes told by its sequence.
    struct Archive {
        held: SequenceSet,
    }

    fn crc_of(sequence: u64) -> u32 {
        crc32fast::hash(&sequence.to_be_bytes())
    }

    impl Holdings for Archive {
        fn held(&self, _: Vec<SourceKey>) -> Result<SequenceSet, String> {
            Ok(self.held.clone())
        }

        fn payload_crcs(&self, frames: BTreeSet<FrameAt>) -> Result<HashMap<FrameAt, u32>, String> {
            let held = frames.into_iter().filter(|&(_, at)| self.held.contains(at));
            Ok(held.map(|frame| (frame, crc_of(frame.1))).collect())
        }
    }

    /// The recording of the spacecraft's sequences `sequences`: relative counts, and bytes.
    fn recording(sequences: std::ops::Range<u64>) -> FirstPackets {
        let mut reading = Reading::default();
        let count = |s: u64| (s % MODULUS) as u16;
        sequences
            .map(|s| (reading.next(count(s)), crc_of(s)))
            .collect()
    }

    /// A pass held across three cycles: a recording of its last cycle, running on past it,
    /// meets the first counts in all three alike; its bytes are the last cycle's.
    #[tokio::test]
    async fn the_bytes_place_a_recording_in_the_cycle_its_packets_are_held_in() {
        let held = SequenceSet::of_runs(&[(MODULUS, 4 * MODULUS - 1)]);
        let archive: Arc<dyn Holdings> = Arc::new(Archive { held });
        let start = 3 * MODULUS + 100;
        let first = recording(start..start + DECIDING as u64);
        let (_, shift) = decide(&archive, vec![SOURCE], first.clone()).await.unwrap();
        assert_eq!(place::placed(first[0].0, shift), Some(start));
    }

    /// The counts met, but the bytes there are other packets (the counter restarted): after the
    /// highest count held.
    #[tokio::test]
    async fn other_bytes_at_the_counts_met_go_after_the_highest() {
        let held = SequenceSet::of_runs(&[(MODULUS, MODULUS + 999)]);
        let archive: Arc<dyn Holdings> = Arc::new(Archive { held });
        let restarted: FirstPackets = recording(MODULUS..MODULUS + 100)
            .into_iter()
            .map(|(relative, crc)| (relative, !crc))
            .collect();
        let (_, shift) = decide(&archive, vec![SOURCE], restarted.clone())
            .await
            .unwrap();
        assert_eq!(place::placed(restarted[0].0, shift), Some(2 * MODULUS));
    }
}
