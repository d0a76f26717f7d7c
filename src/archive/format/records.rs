//! Frames carried outside a segment as the segment's own frame records: the body of a NATS
//! message of layout `records/1` (`docs/scale-out.md`).
//!
//! Why the archive's records and not a format of the sink's: they are documented byte for byte
//! (`docs/archive-format.md`), a CRC covers each, one FRAMES record costs a frame 12 bytes of
//! fields, and every decoder of them already refuses short or damaged bytes with the reason.

use std::sync::Arc;

use bytes::Bytes;

use super::damage::DamageReason;
use super::decode::decode_at;
use super::record::*;
use crate::domain::frame::{Priority, SourceKind};
use crate::domain::reception::Delivery;

/// What the frames of one record share: consecutive frames that share it go in one record.
#[derive(Debug, Clone)]
struct RunKey {
    kind: SourceKind,
    priority: Priority,
    source_id: u32,
    received_unix_ns: u64,
    delivery: Option<Arc<Delivery>>,
}

impl RunKey {
    fn of(frame: &FrameRecord) -> RunKey {
        RunKey {
            kind: frame.kind,
            priority: frame.priority,
            source_id: frame.source_id,
            received_unix_ns: frame.received_unix_ns,
            delivery: frame.reception.as_ref().map(|r| Arc::clone(&r.delivery)),
        }
    }

    /// Whether `frame` goes in a record of this key.
    fn holds(&self, frame: &FrameRecord) -> bool {
        (
            self.kind,
            self.priority,
            self.source_id,
            self.received_unix_ns,
        ) == (
            frame.kind,
            frame.priority,
            frame.source_id,
            frame.received_unix_ns,
        ) && self.delivery.as_deref() == frame.reception.as_ref().map(|r| &*r.delivery)
    }
}

/// Bytes of the record `frame` opens before its first frame: the header and fields, and for a
/// link's frame the link's and the station's names (each at most 255 bytes, behind a length).
fn record_len(frame: &FrameRecord) -> usize {
    let names = (frame.reception.as_ref()).map_or(0, |r| {
        let (link, station) = (&r.delivery.link, &r.delivery.station);
        2 + link.len().min(255) + station.len().min(255)
    });
    RECORD_HEADER_LEN + FRAMES_BODY_FIXED + names
}

/// The length of frames' records as [`encode_frame_records`] writes them, counted a frame at a
/// time: what a batch may still take under a size limit.
#[derive(Debug, Default)]
pub struct RecordsLen {
    /// The key of the last record, open to the next frame.
    last: Option<RunKey>,
    len: usize,
}

impl RecordsLen {
    /// Counts `frame` if the length with it stays within `max`, or if nothing is counted yet (a
    /// frame alone may exceed it): whether it did.
    pub fn add_within(&mut self, frame: &FrameRecord, max: usize) -> bool {
        let opens = !self.last.as_ref().is_some_and(|key| key.holds(frame));
        let record = if opens { record_len(frame) } else { 0 };
        let received = (frame.reception.as_ref()).map_or(0, |r| received_len(&r.received));
        let len = self.len + record + FRAMES_ENTRY_FIXED + received + frame.payload.len();
        if self.len > 0 && len > max {
            return false;
        }
        self.len = len;
        if opens {
            self.last = Some(RunKey::of(frame));
        }
        true
    }
}

/// Appends `frames` as FRAMES records (RECEIVED FRAMES for a link's frames), a record for each
/// run of consecutive frames that share source, priority, received time and delivery.
pub fn encode_frame_records<'a>(
    out: &mut Vec<u8>,
    frames: impl IntoIterator<Item = &'a FrameRecord>,
) {
    let mut run: Vec<&FrameRecord> = Vec::new();
    let mut key: Option<RunKey> = None;
    for frame in frames {
        if !key.as_ref().is_some_and(|key| key.holds(frame)) {
            encode_run(out, &run);
            run.clear();
            key = Some(RunKey::of(frame));
        }
        run.push(frame);
    }
    encode_run(out, &run);
}

/// Appends frames that share a [`RunKey`] as one record (more past [`MAX_BODY_LEN`]).
fn encode_run(out: &mut Vec<u8>, run: &[&FrameRecord]) {
    let Some(first) = run.first() else {
        return;
    };
    let head = FramesHead {
        kind: first.kind,
        priority: first.priority,
        source_id: first.source_id,
        received_unix_ns: first.received_unix_ns,
    };
    // Layout records/1 is FRAMES and RECEIVED FRAMES records: a recording's name stays home.
    let delivery = (first.reception.as_ref()).map(|r| match r.delivery.recording {
        Some(_) => std::borrow::Cow::Owned(Delivery {
            recording: None,
            ..(*r.delivery).clone()
        }),
        None => std::borrow::Cow::Borrowed(&*r.delivery),
    });
    let frames = run.iter().map(|f| {
        let received = f.reception.as_ref().map(|r| r.received).unwrap_or_default();
        (f.sequence, &f.payload[..], received)
    });
    encode_frames_within(
        out,
        MAX_BODY_LEN as usize,
        head,
        delivery.as_deref(),
        frames,
    );
}

/// Why bytes are not frame records back to back: the record at byte `at` is damaged, or is of
/// another type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotFrameRecords {
    #[error("record at byte {at}: {reason}")]
    Damaged { at: u64, reason: DamageReason },
    #[error("record at byte {at}: type {rtype}, not a frame record taken here")]
    OtherType { at: u64, rtype: u8 },
}

/// The frames of `data`, frame records back to back; why not, naming the offset of the record
/// at fault. A record of another type (a watermark, a clock) is refused: only frames travel.
pub fn decode_frame_records(data: &Bytes) -> Result<Vec<FrameRecord>, NotFrameRecords> {
    decode_records(data, |_| true)
}

/// The frames of a message's body in layout `records/1` (`docs/scale-out.md`): as
/// [`decode_frame_records`], of the two types [`encode_frame_records`] writes only, FRAMES and
/// RECEIVED FRAMES, as every reader of the layout takes them.
pub fn decode_message_records(data: &Bytes) -> Result<Vec<FrameRecord>, NotFrameRecords> {
    decode_records(data, |rtype| {
        matches!(rtype, TYPE_FRAMES | TYPE_RECEIVED_FRAMES)
    })
}

/// The frames of `data`, frame records of the types `takes` back to back.
fn decode_records(
    data: &Bytes,
    takes: impl Fn(u8) -> bool,
) -> Result<Vec<FrameRecord>, NotFrameRecords> {
    let mut entries = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        pos = decode_at(data, pos, FORMAT_VERSION, &mut entries).map_err(|reason| {
            let at = pos as u64;
            NotFrameRecords::Damaged { at, reason }
        })?;
    }
    // Each record decoded whole: its type is its body's first byte.
    let rtype = |at: u64| (data.get(at as usize + RECORD_HEADER_LEN).copied()).unwrap_or(0);
    (entries.into_iter())
        .map(|(at, entry)| match entry {
            Entry::Frame(frame) if takes(rtype(at)) => Ok(frame),
            _ => Err(NotFrameRecords::OtherType {
                at,
                rtype: rtype(at),
            }),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::domain::reception::{Received, Reception};

    fn frame(priority: Priority, sequence: u64, received_unix_ns: u64) -> FrameRecord {
        FrameRecord {
            kind: SourceKind::LiveUplink,
            priority,
            source_id: 7,
            sequence,
            received_unix_ns,
            payload: Bytes::from(vec![sequence as u8; 5]),
            reception: None,
        }
    }

    #[test]
    fn frames_come_back_in_their_order_and_their_length_is_counted_exactly() {
        let mut link = frame(Priority::Routine, 5, 20);
        link.reception = Some(Box::new(Reception {
            delivery: Arc::new(Delivery::live("uhf", "Kiruna")),
            received: Received {
                earth_unix_ns: Some(3),
                playback: true,
                ax25: None,
            },
        }));
        let mut frames = vec![
            frame(Priority::Routine, 1, 10),
            frame(Priority::Routine, 2, 10),
            frame(Priority::Emergency, 4, 10),
            frame(Priority::Routine, 3, 20),
            link,
        ];
        let mut len = RecordsLen::default();
        frames
            .iter()
            .for_each(|f| assert!(len.add_within(f, usize::MAX)));
        let mut out = Vec::new();
        encode_frame_records(&mut out, &frames);
        assert_eq!(len.len, out.len());
        let read = decode_frame_records(&Bytes::from(out.clone())).unwrap();
        assert_eq!(read, frames);
        // Four records: a run of two, then one for each change of priority, time or delivery.
        assert_eq!(out.len(), 4 * (8 + 19) + 2 + 3 + 6 + 5 * 12 + 9 + 5 * 5);
        out[20] ^= 1;
        let damaged = decode_frame_records(&Bytes::from(out)).unwrap_err();
        assert!(
            matches!(
                damaged,
                NotFrameRecords::Damaged {
                    at: 0,
                    reason: DamageReason::CrcMismatch { .. }
                }
            ),
            "{damaged}"
        );
        assert!(
            damaged
                .to_string()
                .starts_with("record at byte 0: CRC mismatch"),
            "{damaged}"
        );
        // A recording's frame travels as a RECEIVED FRAMES record, without the recording's name.
        let reception = frames[4].reception.as_mut().unwrap();
        let recorded = reception.delivery.from_recording("p.kiss");
        reception.delivery = Arc::new(recorded);
        let mut out = Vec::new();
        encode_frame_records(&mut out, &frames[4..]);
        let mut alone = RecordsLen::default();
        assert!(
            alone.add_within(&frames[4], 0),
            "a first frame is counted whatever its length"
        );
        assert_eq!(alone.len, out.len());
        assert_eq!(out[8], TYPE_RECEIVED_FRAMES);
        let read = decode_frame_records(&Bytes::from(out)).unwrap();
        let delivery = &read[0].reception.as_ref().unwrap().delivery;
        assert_eq!(**delivery, Delivery::live("uhf", "Kiruna"));
    }

    /// A message's body holds FRAMES and RECEIVED FRAMES records only: a FRAME record (type 1)
    /// or a RECORDED FRAMES one (type 8), which an archive holds, is refused there, as the
    /// Python example refuses it, and taken from an archive's journal.
    #[test]
    fn a_message_s_body_holds_frames_and_received_frames_records_only() {
        let frames = [
            frame(Priority::Routine, 1, 10),
            frame(Priority::Routine, 2, 10),
        ];
        let mut sent = Vec::new();
        encode_frame_records(&mut sent, &frames);
        assert_eq!(
            decode_message_records(&Bytes::from(sent.clone())).unwrap(),
            frames
        );
        let mut single = Vec::new();
        let f = &frames[0];
        encode_frame(&mut single, f.kind, f.priority, 7, 3, 10, &f.payload);
        let head = FramesHead {
            kind: f.kind,
            priority: f.priority,
            source_id: 7,
            received_unix_ns: 10,
        };
        let recording = Delivery::live("uhf", "Kiruna").from_recording("p.kiss");
        let mut recorded = Vec::new();
        let entry = (3, &f.payload[..], Received::default());
        encode_received_frames(&mut recorded, head, &recording, [entry]);
        assert_eq!(recorded[8], TYPE_RECORDED_FRAMES);
        for other in [single, recorded] {
            let mut body = sent.clone();
            body.extend_from_slice(&other);
            let body = Bytes::from(body);
            assert_eq!(decode_frame_records(&body).unwrap().len(), 3);
            let refused = decode_message_records(&body).unwrap_err();
            let at = sent.len() as u64;
            assert!(matches!(refused, NotFrameRecords::OtherType { at: a, .. } if a == at));
        }
    }

    #[test]
    fn a_record_that_is_no_frame_is_refused() {
        let mut out = Vec::new();
        encode_watermark(&mut out, SourceKind::LiveUplink, 7, 9);
        let refused = decode_frame_records(&Bytes::from(out)).unwrap_err();
        assert_eq!(refused, NotFrameRecords::OtherType { at: 0, rtype: 2 });
        let why = "record at byte 0: type 2, not a frame record taken here";
        assert_eq!(refused.to_string(), why);
    }
}
