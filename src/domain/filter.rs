//! Which frames a reader wants: its sources and their kind, its priority, the APID of its
//! packets, a range of sequences and the times they were received in.
//!
//! One filter for every reader, live or stored, so that a question means the same wherever it is
//! asked: the live feed's subscribers (by what a batch has in common: [`FrameFilter::wants_batch`]),
//! a follower's SUBSCRIBE, a TM output, the NATS sink, `GET /archive/frames`, `aggregator archive
//! export` and `inspect`. It lives below every stage that asks; the archive's read side, which
//! checks it against stored records, adds those checks (`archive::read::filter`). And one check
//! of a window's ends ([`FrameFilter::is_backwards`]) for every front end.

use super::batch::Batch;
use super::frame::{Priority, SourceKey, SourceKind};

/// The frames a reader wants; the default wants every frame.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FrameFilter {
    /// Only frames of these sources; every source when empty.
    pub sources: Vec<SourceKey>,
    /// Only frames of sources of this kind.
    pub kind: Option<SourceKind>,
    /// Only frames of this priority; both when `None`.
    pub priority: Option<Priority>,
    /// Only frames that are one space packet of this APID.
    pub apid: Option<u16>,
    /// Only sequences at or above this.
    pub first_sequence: Option<u64>,
    /// Only sequences at or below this.
    pub last_sequence: Option<u64>,
    /// Only frames received at or after this time (nanoseconds since the Unix epoch).
    pub since: Option<u64>,
    /// Only frames received at or before this time; the reading ends once no more can come.
    pub until: Option<u64>,
}

impl FrameFilter {
    /// Whether it wants frames of `source` (of any priority, received at any time).
    pub fn wants_source_key(&self, source: SourceKey) -> bool {
        (self.sources.is_empty() || self.sources.contains(&source))
            && self.kind.is_none_or(|kind| kind == source.0)
    }

    /// Whether it wants frames of this priority.
    pub fn wants_priority(&self, priority: Priority) -> bool {
        self.priority.is_none_or(|p| p == priority)
    }

    /// Whether it wants a live batch, by what its frames have in common: their source and
    /// priority. The live feed takes no other condition.
    pub fn wants_batch(&self, batch: &Batch) -> bool {
        self.wants_priority(batch.priority)
            && self.wants_source_key((batch.source.kind, batch.source.id))
    }

    /// Whether any of the sequences `first..=last` is in its range.
    pub fn wants_sequences(&self, first: u64, last: u64) -> bool {
        self.first_sequence.is_none_or(|from| last >= from)
            && self.last_sequence.is_none_or(|to| first <= to)
    }

    /// The received times it wants: every time unless it says otherwise.
    pub fn received(&self) -> std::ops::RangeInclusive<u64> {
        self.since.unwrap_or(0)..=self.until.unwrap_or(u64::MAX)
    }

    /// Whether it wants only some received times.
    pub fn has_window(&self) -> bool {
        self.since.is_some() || self.until.is_some()
    }

    /// Whether its window is backwards, holding no time at all, as every front end checks
    /// before reading: `since` is after `until`, or, without `until`, after `open_end` when one
    /// is given (an HTTP query's open end is the time of the query; the command line's is open).
    pub fn is_backwards(&self, open_end: Option<u64>) -> bool {
        let until = self.until.or(open_end);
        self.since
            .zip(until)
            .is_some_and(|(since, until)| since > until)
    }

    /// The sources of every kind with this id: what `--source ID` asks for where the kind is
    /// given apart (`archive inspect`).
    pub fn every_kind(id: u32) -> Vec<SourceKey> {
        (0..=u8::MAX)
            .filter_map(SourceKind::from_byte)
            .map(|kind| (kind, id))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_is_backwards_when_its_start_is_after_its_end_or_the_open_end() {
        let window = |since, until| FrameFilter {
            since,
            until,
            ..FrameFilter::default()
        };
        assert!(window(Some(5), Some(4)).is_backwards(None));
        assert!(!window(Some(5), Some(5)).is_backwards(None));
        assert!(!window(Some(5), None).is_backwards(None));
        assert!(window(Some(5), None).is_backwards(Some(4)));
        assert!(!window(Some(5), Some(6)).is_backwards(Some(4)));
    }

    #[test]
    fn a_source_passes_by_its_key_and_its_kind() {
        let live = (SourceKind::LiveUplink, 7);
        let replay = (SourceKind::ArchivedReplay, 7);
        let of_id = FrameFilter {
            sources: FrameFilter::every_kind(7),
            ..FrameFilter::default()
        };
        assert!(of_id.wants_source_key(live) && of_id.wants_source_key(replay));
        let of_kind = FrameFilter {
            kind: Some(SourceKind::ArchivedReplay),
            ..of_id
        };
        assert!(!of_kind.wants_source_key(live) && of_kind.wants_source_key(replay));
        assert!(!of_kind.wants_source_key((SourceKind::ArchivedReplay, 8)));
    }
}
