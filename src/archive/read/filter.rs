//! The stored records a reader wants: the checks of [`FrameFilter`] (the domain's filter, which
//! every reader shares) against the archive's records, which only the read side sees. The reader
//! applies them as it reads the records, so frames it does not want never leave the read; the
//! received times also tell it which parts of the files to read at all ([`super::window`]).

use crate::archive::format::{Entry, FrameRecord};
use crate::domain::filter::FrameFilter;
use crate::protocol::ccsds::apid_of_packet;

impl FrameFilter {
    /// Whether the reader wants this frame.
    pub fn wants(&self, frame: &FrameRecord) -> bool {
        self.wants_priority(frame.priority)
            && self.wants_source(frame)
            && self.wants_sequences(frame.sequence, frame.sequence)
            && self.received().contains(&frame.received_unix_ns)
            && (self.apid).is_none_or(|apid| apid_of_packet(&frame.payload) == Some(apid))
    }

    /// Whether the reader wants frames of this frame's source (of its priority or not).
    pub(crate) fn wants_source(&self, frame: &FrameRecord) -> bool {
        self.wants_source_key((frame.kind, frame.source_id))
    }

    /// Whether a record of any kind passes, as `archive inspect` lists them: a frame as
    /// [`wants`](Self::wants) says; a WATERMARK (its acknowledged sequence) or a STORED record
    /// (its sequences) by its source and sequences; a CLOCK record, which has no source, only
    /// when no source or kind is asked for (a listing of one source is that source's records).
    /// A record other than a frame passes only when nothing only a frame has is asked for: a
    /// priority, an APID or received times.
    pub fn wants_record(&self, entry: &Entry) -> bool {
        let (source, first, last) = match entry {
            Entry::Frame(frame) => return self.wants(frame),
            _ if self.priority.is_some() || self.apid.is_some() || self.has_window() => {
                return false
            }
            Entry::Clock(_) => return self.sources.is_empty() && self.kind.is_none(),
            Entry::Watermark {
                kind,
                source_id,
                acked,
            } => ((*kind, *source_id), *acked, *acked),
            Entry::Stored {
                kind,
                source_id,
                first,
                last,
            } => ((*kind, *source_id), *first, *last),
        };
        self.wants_source_key(source) && self.wants_sequences(first, last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::clock::{ClockEvent, ClockEventKind};
    use crate::domain::frame::{Priority, SourceKind};

    fn frame(kind: SourceKind, id: u32, sequence: u64, payload: &[u8]) -> FrameRecord {
        FrameRecord {
            kind,
            source_id: id,
            sequence,
            priority: Priority::Routine,
            received_unix_ns: 1_000,
            reception: None,
            payload: bytes::Bytes::copy_from_slice(payload),
        }
    }

    #[test]
    fn a_frame_passes_when_every_condition_given_holds() {
        let live = SourceKind::LiveUplink;
        // A space packet of APID 0x123 with a one-byte data field.
        let packet = [0x01, 0x23, 0xc0, 0x00, 0x00, 0x00, 0xaa];
        let f = frame(live, 7, 10, &packet);
        let everything = FrameFilter::default();
        assert!(everything.wants(&f));
        let cases = [
            (
                FrameFilter {
                    apid: Some(0x123),
                    ..FrameFilter::default()
                },
                true,
            ),
            (
                FrameFilter {
                    apid: Some(0x124),
                    ..FrameFilter::default()
                },
                false,
            ),
            (
                FrameFilter {
                    kind: Some(SourceKind::ArchivedReplay),
                    ..FrameFilter::default()
                },
                false,
            ),
            (
                FrameFilter {
                    sources: FrameFilter::every_kind(7),
                    ..FrameFilter::default()
                },
                true,
            ),
            (
                FrameFilter {
                    first_sequence: Some(11),
                    ..FrameFilter::default()
                },
                false,
            ),
            (
                FrameFilter {
                    last_sequence: Some(10),
                    ..FrameFilter::default()
                },
                true,
            ),
            (
                FrameFilter {
                    until: Some(999),
                    ..FrameFilter::default()
                },
                false,
            ),
        ];
        for (filter, wanted) in cases {
            assert_eq!(filter.wants(&f), wanted, "{filter:?}");
            assert_eq!(filter.wants_record(&Entry::Frame(f.clone())), wanted);
        }
        let text = frame(live, 7, 10, b"not a packet");
        assert!(!FrameFilter {
            apid: Some(0x123),
            ..FrameFilter::default()
        }
        .wants(&text));
    }

    #[test]
    fn other_records_pass_by_source_and_sequences_unless_a_frame_s_condition_is_asked() {
        let stored = Entry::Stored {
            kind: SourceKind::LiveUplink,
            source_id: 3,
            first: 5,
            last: 9,
        };
        let clock = Entry::Clock(ClockEvent {
            kind: ClockEventKind::Start,
            archive_ns: 1,
            wall_ns: 1,
            jump_ns: 0,
        });
        let from = |first| FrameFilter {
            first_sequence: Some(first),
            ..FrameFilter::default()
        };
        assert!(from(9).wants_record(&stored) && !from(10).wants_record(&stored));
        assert!(
            from(10).wants_record(&clock),
            "a CLOCK record is about every sequence"
        );
        let of_source = FrameFilter {
            sources: FrameFilter::every_kind(3),
            ..FrameFilter::default()
        };
        let of_kind = FrameFilter {
            kind: Some(SourceKind::LiveUplink),
            ..FrameFilter::default()
        };
        assert!(of_source.wants_record(&stored) && of_kind.wants_record(&stored));
        assert!(
            !of_source.wants_record(&clock) && !of_kind.wants_record(&clock),
            "a CLOCK record has no source"
        );
        let routine = FrameFilter {
            priority: Some(Priority::Routine),
            ..FrameFilter::default()
        };
        assert!(!routine.wants_record(&stored) && !routine.wants_record(&clock));
    }
}
