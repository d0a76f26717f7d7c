//! Playing an archive back: `uplink-sim --replay-archive DIR`.
//!
//! The archive stores frames in processing order, where an emergency frame may come before the
//! routine frames a source sent ahead of it; the daemon, though, requires every source's sequences
//! to increase. So the archive is read whole, each source's frames are sorted by sequence, and each
//! source becomes one simulated [`ArchivedReplay`](SourceKind::ArchivedReplay) source with the same
//! id, whose frames come from its [`Recording`] instead of the generator. Everything else (the
//! connection, acknowledgements, resending after a reconnection, the summary) is the ordinary
//! simulated source.
//!
//! A damaged archive is played as far as it can be: the scan resumes after each damaged range, so
//! every valid record is sent, and the damaged ranges are listed for the caller to warn about and
//! to turn into an exit status of its own. Refusing the whole archive for one bad record would
//! leave an operator nothing to play.
//!
//! Every shard of the archive is read (`archive::layout`), and a source's frames are merged across
//! them: a daemon whose `runtime.shards` changed between runs stored a source's frames in more
//! than one shard, and the replay must still send each sequence once, in order.
//!
//! The emergency journals are read too, after every segment: after a power cut, and before the
//! next start, an acknowledged emergency may be in a journal alone, and it is part of what the
//! archive holds (the next start stores it). Only the journal frames no segment holds are taken
//! ([`tools::journals`](crate::archive::tools::journals), the test `archive verify` and
//! `inspect` apply), and they are sorted in with their source's other frames: a journal also holds
//! most of its frames a second time, which would otherwise count as duplicates.

use std::collections::BTreeMap;
use std::io;
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::archive::format::{Entry, FrameRecord, ScanEnd, SegmentScan};
use crate::archive::tools::journals::{self, FileKind};
use crate::domain::frame::{Priority, SourceKind};

use super::{Amount, EmergencyMix, Rate, SourceSpec};

/// How fast a recording is played.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// As fast as the daemon accepts.
    Max,
    /// Frames keep the gaps between their receive times, divided by the factor (1.0 = as recorded,
    /// 2.0 = twice as fast).
    Recorded(f64),
}

/// Text that names no [`Pace`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not max, recorded, or a positive speed factor")]
pub struct BadPace(pub String);

impl std::str::FromStr for Pace {
    type Err = BadPace;

    fn from_str(text: &str) -> Result<Pace, BadPace> {
        match text {
            "max" => Ok(Pace::Max),
            "recorded" => Ok(Pace::Recorded(1.0)),
            other => match other.parse::<f64>() {
                Ok(f) if f.is_finite() && f > 0.0 => Ok(Pace::Recorded(f)),
                _ => Err(BadPace(other.into())),
            },
        }
    }
}

/// One archived frame, as a replay source sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedFrame {
    pub sequence: u64,
    pub priority: Priority,
    pub received_unix_ns: u64,
    pub payload: Bytes,
}

/// The frames one replay source plays, in increasing sequence order, and how fast.
#[derive(Debug, Clone, PartialEq)]
pub struct Recording {
    /// The kind the frames were archived under (the replay itself is always `ArchivedReplay`).
    pub archived_kind: SourceKind,
    pub frames: Vec<RecordedFrame>,
    pub pace: Pace,
}

impl Recording {
    /// When frame `index` falls due, counted from the start of the replay; `None` at [`Pace::Max`].
    pub fn due(&self, index: usize) -> Option<Duration> {
        let Pace::Recorded(factor) = self.pace else {
            return None;
        };
        let first = self.frames.first()?.received_unix_ns;
        let at = self
            .frames
            .get(index)?
            .received_unix_ns
            .saturating_sub(first);
        Some(Duration::from_nanos(at).div_f64(factor))
    }

    /// The position of the last frame with a sequence at or below `sequence`.
    pub fn position_of(&self, sequence: u64) -> Option<u64> {
        let after = self.frames.partition_point(|f| f.sequence <= sequence);
        (after as u64).checked_sub(1)
    }
}

/// What loading an archive found.
#[derive(Debug, Clone, Default)]
pub struct LoadedArchive {
    /// One recording per source id, by id.
    pub sources: Vec<(u32, Recording)>,
    pub segments: u64,
    /// Frame records dropped because their sequence was already loaded for the source.
    pub duplicates: u64,
    /// Torn tails whose valid records were used (a daemon that crashed, not yet restarted).
    pub torn: Vec<String>,
    /// The damaged ranges of corrupt segments, which were skipped (`PATH: bytes START..END (N
    /// bytes): REASON`): frames in them are not replayed.
    pub skipped: Vec<String>,
}

/// Reads every segment of every shard of the archive at `dir` (shard 0 first), then the frames of
/// every shard's emergency journals that no segment holds ([`journals::read_archive`]), and groups
/// the frames by source, each sorted by sequence.
///
/// A source's frames are merged across the shards: a change of `runtime.shards` between runs can
/// leave its older frames in one shard and its newer ones in another. A sequence already loaded
/// (from this shard or another) is dropped and counted in [`LoadedArchive::duplicates`]. Every
/// valid record is used, those after damage too. A corrupt segment's damaged ranges are listed in
/// [`LoadedArchive::skipped`]; a torn tail (nothing valid after it: what a crash leaves) in
/// [`LoadedArchive::torn`]. Two sources with the same id and different kinds would become the
/// same replay source, which is an error.
pub fn load_archive(dir: &Path, pace: Pace) -> io::Result<LoadedArchive> {
    let mut loaded = LoadedArchive::default();
    let mut by_source: BTreeMap<u32, Recording> = BTreeMap::new();
    journals::read_archive(dir, |kind, path, scan| {
        loaded.segments += u64::from(kind == FileKind::Segment);
        loaded.note_damage(path, &scan);
        for (_, entry) in scan.entries {
            if let Entry::Frame(frame) = entry {
                add_frame(&mut by_source, frame, pace)?;
            }
        }
        Ok(ControlFlow::Continue(()))
    })?;
    for (id, mut recording) in by_source {
        // Stable: of two copies of a sequence, the first read (shard 0 first) is kept.
        recording.frames.sort_by_key(|f| f.sequence);
        let before = recording.frames.len();
        recording.frames.dedup_by_key(|f| f.sequence);
        loaded.duplicates += (before - recording.frames.len()) as u64;
        loaded.sources.push((id, recording));
    }
    Ok(loaded)
}

/// Adds an archived frame to its source's recording.
fn add_frame(
    by_source: &mut BTreeMap<u32, Recording>,
    frame: FrameRecord,
    pace: Pace,
) -> io::Result<()> {
    let recording = by_source
        .entry(frame.source_id)
        .or_insert_with(|| Recording {
            archived_kind: frame.kind,
            frames: Vec::new(),
            pace,
        });
    if recording.archived_kind != frame.kind {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "the archive holds source {} as both {} and {}; both would replay as the same source",
                frame.source_id,
                recording.archived_kind.as_str(),
                frame.kind.as_str()
            ),
        ));
    }
    recording.frames.push(RecordedFrame {
        sequence: frame.sequence,
        priority: frame.priority,
        received_unix_ns: frame.received_unix_ns,
        payload: frame.payload,
    });
    Ok(())
}

impl LoadedArchive {
    /// Lists the torn tail or the damaged ranges of the segment at `path`, if it has any.
    fn note_damage(&mut self, path: &Path, scan: &SegmentScan) {
        match &scan.end {
            ScanEnd::Clean => {}
            ScanEnd::Torn { .. } => self.torn.push(format!("{}: {}", path.display(), scan.end)),
            ScanEnd::Corrupt { .. } => self.skipped.extend(
                scan.damaged
                    .iter()
                    .map(|damage| format!("{}: {damage}", path.display())),
            ),
        }
    }

    /// One `ArchivedReplay` source spec per recording, writing up to `batch` frames at a time.
    pub fn specs(&self, batch: u32) -> Vec<SourceSpec> {
        self.sources
            .iter()
            .map(|(id, recording)| SourceSpec {
                kind: SourceKind::ArchivedReplay,
                id: *id,
                rate: Rate::Max,
                jitter: 0.0,
                payload: 0,
                amount: Amount::Frames(recording.frames.len() as u64),
                batch: batch.max(1),
                emergency: EmergencyMix::Share(0.0),
                seed: 0,
                recording: Some(Arc::new(recording.clone())),
            })
            .collect()
    }

    /// Frames to replay.
    pub fn frames(&self) -> u64 {
        self.sources
            .iter()
            .map(|(_, r)| r.frames.len() as u64)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recording(times: &[u64], pace: Pace) -> Recording {
        Recording {
            archived_kind: SourceKind::LiveUplink,
            frames: times
                .iter()
                .enumerate()
                .map(|(i, &t)| RecordedFrame {
                    sequence: i as u64 * 2,
                    priority: Priority::Routine,
                    received_unix_ns: t,
                    payload: Bytes::new(),
                })
                .collect(),
            pace,
        }
    }

    #[test]
    fn pace_parses_and_scales_the_recorded_gaps() {
        assert_eq!("max".parse::<Pace>(), Ok(Pace::Max));
        assert_eq!("recorded".parse::<Pace>(), Ok(Pace::Recorded(1.0)));
        assert_eq!("4".parse::<Pace>(), Ok(Pace::Recorded(4.0)));
        assert!("0".parse::<Pace>().is_err());
        assert!("fast".parse::<Pace>().is_err());
        let r = recording(&[1_000, 5_000, 9_000], Pace::Recorded(2.0));
        assert_eq!(r.due(0), Some(Duration::ZERO));
        assert_eq!(r.due(2), Some(Duration::from_nanos(4_000)));
        assert_eq!(recording(&[1, 2], Pace::Max).due(1), None);
    }

    #[test]
    fn positions_follow_sequences_with_gaps() {
        let r = recording(&[0, 0, 0], Pace::Max); // sequences 0, 2, 4
        assert_eq!(r.position_of(0), Some(0));
        assert_eq!(r.position_of(3), Some(1));
        assert_eq!(r.position_of(99), Some(2));
        let mut later = r.clone();
        later.frames.iter_mut().for_each(|f| f.sequence += 10);
        assert_eq!(later.position_of(5), None);
    }
}
