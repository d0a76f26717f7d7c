//! What a reading of the archive hands its reader: frames with their place in the files.
//!
//! A read keeps the frames of one record together ([`FrameRun`]): what they share (shard, source,
//! priority, reception time, the first one's position) once, each frame's sequence and payload
//! after it, as the archive stores them. A reader that wants the frames one by one takes them
//! apart ([`FrameRun::into_frames`]) into [`ArchivedFrame`]s.

use std::sync::Arc;

use bytes::Bytes;

use crate::archive::format::FrameRecord;
use crate::domain::frame::{Priority, SourceKind};
use crate::domain::position::{Position, ShardPosition};
use crate::domain::reception::{Delivery, Received, Reception};

/// A frame as a reader of the archive receives it: the archive's record of it and where it is
/// stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivedFrame {
    pub frame: FrameRecord,
    /// The shard whose segments hold it.
    pub shard: usize,
    /// Its position in that shard's segments.
    pub position: Position,
}

impl ArchivedFrame {
    /// Its shard and position, as `SHARD/SEGMENT:OFFSET:INDEX` prints.
    pub fn shard_position(&self) -> ShardPosition {
        ShardPosition {
            shard: self.shard,
            position: self.position,
        }
    }
}

/// Frames of one archive record with consecutive positions from `first` (a follower receives
/// each run as one FRAMES message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameRun {
    /// The shard whose segments hold the record.
    pub shard: usize,
    pub kind: SourceKind,
    pub priority: Priority,
    pub source_id: u32,
    pub received_unix_ns: u64,
    /// The first frame's position; the others follow it in the record, index by index.
    pub first: Position,
    /// Each frame's sequence and payload; never empty.
    pub frames: Vec<(u64, Bytes)>,
    /// A link's frames: who delivered them, and each one's reception, in frame order.
    pub reception: Option<(Arc<Delivery>, Vec<Received>)>,
}

impl FrameRun {
    /// A run starting with `archived`.
    pub fn starting_with(archived: ArchivedFrame) -> FrameRun {
        let f = archived.frame;
        FrameRun {
            shard: archived.shard,
            kind: f.kind,
            priority: f.priority,
            source_id: f.source_id,
            received_unix_ns: f.received_unix_ns,
            first: archived.position,
            frames: vec![(f.sequence, f.payload)],
            reception: f.reception.map(|r| (r.delivery, vec![r.received])),
        }
    }

    /// Adds `archived` if it is the next frame of the same record; gives it back otherwise.
    pub(crate) fn extend(&mut self, archived: ArchivedFrame) -> Result<(), ArchivedFrame> {
        let next = self.first.index as usize + self.frames.len();
        let p = archived.position;
        let same_record = archived.shard == self.shard
            && (p.segment, p.offset) == (self.first.segment, self.first.offset);
        if same_record && p.index as usize == next {
            let frame = archived.frame;
            if let (Some((_, all)), Some(reception)) = (&mut self.reception, frame.reception) {
                all.push(reception.received);
            }
            self.frames.push((frame.sequence, frame.payload));
            Ok(())
        } else {
            Err(archived)
        }
    }

    /// The frames one by one, each with its position.
    pub fn into_frames(self) -> impl Iterator<Item = ArchivedFrame> {
        let FrameRun {
            shard,
            kind,
            priority,
            source_id,
            received_unix_ns,
            first,
            frames,
            reception,
        } = self;
        let (delivery, received) = reception.unzip();
        let mut received = received.unwrap_or_default().into_iter();
        frames
            .into_iter()
            .zip(first.index..)
            .map(move |((sequence, payload), index)| ArchivedFrame {
                frame: FrameRecord {
                    kind,
                    priority,
                    source_id,
                    sequence,
                    received_unix_ns,
                    payload,
                    reception: delivery.as_ref().map(|delivery| {
                        Box::new(Reception {
                            delivery: Arc::clone(delivery),
                            received: received.next().unwrap_or_default(),
                        })
                    }),
                },
                shard,
                position: Position { index, ..first },
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_takes_only_the_next_frame_of_its_record_and_shard() {
        let frame = |shard, offset, index, sequence| ArchivedFrame {
            frame: FrameRecord {
                kind: SourceKind::LiveUplink,
                priority: Priority::Routine,
                source_id: 1,
                sequence,
                received_unix_ns: 0,
                payload: Bytes::new(),
                reception: None,
            },
            shard,
            position: Position {
                segment: 1,
                offset,
                index,
            },
        };
        let mut run = FrameRun::starting_with(frame(1, 8, 2, 20));
        assert!(run.extend(frame(1, 8, 3, 21)).is_ok());
        assert!(run.extend(frame(1, 8, 5, 23)).is_err(), "a frame skipped");
        assert!(run.extend(frame(1, 90, 4, 22)).is_err(), "another record");
        assert!(run.extend(frame(2, 8, 4, 22)).is_err(), "another shard");
        let frames: Vec<_> = run
            .into_frames()
            .map(|f| (f.shard, f.position.index))
            .collect();
        assert_eq!(frames, [(1, 2), (1, 3)]);
    }
}
