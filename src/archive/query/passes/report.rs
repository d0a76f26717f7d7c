//! One pass's report, from its frames and the window's completeness: when, how much, what the
//! station delivered and what another filled, what is still missing, and how late it came.

use std::collections::{BTreeMap, BTreeSet};

use super::split::{self, Clipped};
use super::{sequences, Receives};
use crate::archive::query::completeness::{
    self, Completeness, Gap, MergeGroups, Pass, PassStation, SeenFrame,
};
use crate::domain::frame::SourceKey;
use crate::domain::sequence_set::SequenceSet;

/// Which clock a pass's times (AOS, LOS, the split) are on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeBasis {
    /// Every frame's earth-receive time, as the station gave it.
    EarthReceived,
    /// No frame had one: the daemon's received time.
    Received,
    /// Some had one: each frame's earth-receive time where it had one, else its received time.
    Mixed,
}

impl TimeBasis {
    /// `earth_received`, `received` or `mixed`, as the tools and the HTTP API print it.
    pub fn label(self) -> &'static str {
        match self {
            TimeBasis::EarthReceived => "earth_received",
            TimeBasis::Received => "received",
            TimeBasis::Mixed => "mixed",
        }
    }
}

/// How late a pass's frames reached the archive: from their earth-receive time to the time the
/// daemon received them (and stamped them for the archive), over the frames that have one.
/// Negative where the station's clock is ahead of the daemon's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Latency {
    /// The median (the lower one of an even count), in nanoseconds.
    pub p50_ns: i64,
    pub max_ns: i64,
}

/// One pass of one station.
#[derive(Debug, Clone, PartialEq)]
pub struct StationPass {
    pub station: String,
    /// The links whose frames it holds (one, unless two links name the same station).
    pub links: Vec<String>,
    pub receives: Receives,
    pub time_basis: TimeBasis,
    /// Acquisition and loss of signal: the pass's first and last frame's time, on `time_basis`,
    /// in nanoseconds since the Unix epoch.
    pub aos_ns: u64,
    pub los_ns: u64,
    /// The first and last received time (the daemon's) of its frames.
    pub first_received_ns: u64,
    pub last_received_ns: u64,
    pub clipped: Clipped,
    /// Frames stored of the pass: each the station delivered first.
    pub frames: u64,
    /// Their payload bytes.
    pub bytes: u64,
    /// Frames marked played back from the spacecraft's recorder, of `frames`.
    pub playback: u64,
    /// Frames with an earth-receive time, of `frames`.
    pub earth_time: u64,
    /// Over the frames with an earth-receive time; `None` without one.
    pub latency: Option<Latency>,
    /// Each source of the pass, by kind and id.
    pub sources: Vec<PassSource>,
}

impl StationPass {
    /// Sequences another station of the group filled within the pass's sources' spans.
    pub fn filled(&self) -> u64 {
        let runs = self.sources.iter().flat_map(|s| &s.filled);
        runs.map(|f| f.last - f.first + 1).sum()
    }

    /// Sequences still missing within the pass's sources' spans, whatever the cause.
    pub fn missing(&self) -> u64 {
        let gaps = self.sources.iter().flat_map(|s| &s.gaps);
        gaps.map(|g| g.last - g.first + 1).sum()
    }
}

/// One source of a pass: its sequences the station delivered, and within their span (from the
/// first to the last), what another station of its group filled and what is still missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassSource {
    pub source: SourceKey,
    /// The APID, for a merge group's source.
    pub apid: Option<u16>,
    pub held: SequenceSet,
    /// Runs another station delivered: `station` is the one that filled, `other` this pass's.
    pub filled: Vec<completeness::Filled>,
    /// The window's gaps (of the group, for a group's source) within the span: none filled them.
    pub gaps: Vec<Gap>,
}

/// What every pass of a window is reported with.
pub(super) struct Context<'a> {
    pub(super) read: &'a Completeness,
    /// The merge groups' passes of the window: who delivered what.
    pub(super) group_passes: Vec<Pass>,
    pub(super) groups: &'a MergeGroups,
    pub(super) window: (Option<u64>, Option<u64>),
    pub(super) gap_ns: u64,
}

/// A frame's pass time: its earth-receive time, else its received time.
pub(super) fn pass_time(frame: &SeenFrame) -> u64 {
    earth(frame).unwrap_or(frame.received_ns)
}

fn earth(frame: &SeenFrame) -> Option<u64> {
    frame.reception.as_ref()?.received.earth_unix_ns
}

impl Context<'_> {
    /// The report of the pass of `station` receiving `receives` made of `frames` (sorted by
    /// their pass time, at least one).
    pub(super) fn pass(
        &self,
        station: &str,
        receives: &Receives,
        frames: &[SeenFrame],
    ) -> StationPass {
        let (first_received, last_received) = frames.iter().fold((u64::MAX, 0), |(a, b), f| {
            (a.min(f.received_ns), b.max(f.received_ns))
        });
        let earth_time = frames.iter().filter(|f| earth(f).is_some()).count() as u64;
        let links: BTreeSet<String> = (frames.iter())
            .filter_map(|f| Some(f.reception.as_ref()?.delivery.link.to_string()))
            .collect();
        let mut by_source: BTreeMap<SourceKey, Vec<&SeenFrame>> = BTreeMap::new();
        frames
            .iter()
            .for_each(|f| by_source.entry(f.source).or_default().push(f));
        let sources = (by_source.into_iter())
            .map(|(source, frames)| self.source(station, source, sequences(frames)))
            .collect();
        StationPass {
            station: station.to_owned(),
            links: links.into_iter().collect(),
            receives: receives.clone(),
            time_basis: match earth_time {
                0 => TimeBasis::Received,
                n if n == frames.len() as u64 => TimeBasis::EarthReceived,
                _ => TimeBasis::Mixed,
            },
            aos_ns: frames.first().map_or(0, pass_time),
            los_ns: frames.last().map_or(0, pass_time),
            first_received_ns: first_received,
            last_received_ns: last_received,
            clipped: split::clipped(first_received, last_received, self.window, self.gap_ns),
            frames: frames.len() as u64,
            bytes: frames.iter().map(|f| f.bytes).sum(),
            playback: (frames.iter())
                .filter(|f| f.reception.as_ref().is_some_and(|r| r.received.playback))
                .count() as u64,
            earth_time,
            latency: latency(frames),
            sources,
        }
    }

    /// A source of `station`'s pass that holds `held`: its group's fills and gaps within the
    /// span, or its own gaps there.
    fn source(&self, station: &str, source: SourceKey, held: SequenceSet) -> PassSource {
        let span = (held.first().unwrap_or(0), held.last().unwrap_or(0));
        let apid = self.groups.get(&source).map(|(_, apid)| *apid);
        let group_pass = self.groups.get(&source).and_then(|(group, apid)| {
            (self.group_passes.iter()).find(|p| (&p.group, p.apid) == (group, *apid))
        });
        let (filled, gaps) = match group_pass {
            Some(pass) => {
                let mine = PassStation {
                    station: station.to_owned(),
                    source,
                    held: held.clone(),
                };
                let others = (pass.stations.iter()).filter(|s| s.station != station);
                let stations: Vec<PassStation> =
                    std::iter::once(mine).chain(others.cloned()).collect();
                let filled = completeness::filled(&stations);
                let for_me = filled.into_iter().filter(|f| f.other == station);
                (for_me.collect(), within(&pass.gaps, span))
            }
            None => {
                let own = (self.read.sources.iter()).find(|s| s.source == source);
                (
                    Vec::new(),
                    own.map_or_else(Vec::new, |s| within(&s.gaps, span)),
                )
            }
        };
        PassSource {
            source,
            apid,
            held,
            filled,
            gaps,
        }
    }
}

/// The parts of `gaps` within `first..=last`.
fn within(gaps: &[Gap], (first, last): (u64, u64)) -> Vec<Gap> {
    let meets = gaps.iter().filter(|g| g.first <= last && g.last >= first);
    meets
        .map(|g| Gap {
            first: g.first.max(first),
            last: g.last.min(last),
            cause: g.cause,
        })
        .collect()
}

/// The latency of the frames with an earth-receive time.
fn latency(frames: &[SeenFrame]) -> Option<Latency> {
    let mut late: Vec<i64> = (frames.iter())
        .filter_map(|f| {
            let late = i128::from(f.received_ns) - i128::from(earth(f)?);
            Some(late.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64)
        })
        .collect();
    late.sort_unstable();
    Some(Latency {
        p50_ns: *late.get((late.len().checked_sub(1)?) / 2)?,
        max_ns: *late.last()?,
    })
}
