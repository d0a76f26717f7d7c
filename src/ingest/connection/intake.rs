//! The intake: a socket read's frames become batches by lane and runs in the source's ledger.
//!
//! A read's frames go into batches by lane: its emergencies into emergency batches, its routine
//! frames into routine batches, each up to `max_batch` frames. Batching only runs of consecutive
//! frames of one priority would cut the routine frames at every emergency among them: at 1 %
//! emergencies, twice the batches, and every batch costs a pass through the fan-in, the processor
//! and the archive. Arrival order is what acknowledgements need, and the ledger keeps it: one
//! [`Run`] per stretch of one priority within one batch.
//!
//! A frame at or below the highest sequence the source ever had accepted is a duplicate, and so is
//! one the archive held above the resume point at start-up: both are dropped and counted, and the
//! second kind is recorded where it arrived, so that the acknowledgement passes it.

use std::ops::{ControlFlow, Range};
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use super::ending::Ending;
use super::services::Services;
use crate::domain::batch::{ReadBatches, ReadFrame};
use crate::domain::frame::Priority;
use crate::domain::ledger::Run;
use crate::domain::sequence_set::SequenceSet;
use crate::domain::source::Source;
use crate::pipeline::fan_in::Ingress;
use crate::protocol::ingest::{walk_messages, ClientMessage, MessageView, DATA_HEADER};
use crate::stats::Stats;

/// One connection's intake.
pub(super) struct Intake {
    pub(super) source: Arc<Source>,
    pub(super) stats: Stats,
    pub(super) max_batch: usize,
    /// The highest sequence accepted (by this connection or an earlier one of the source) or
    /// resumed after: a frame at or below it is a duplicate.
    pub(super) last_sequence: Option<u64>,
    /// Stored above the resume point before the restart (see
    /// [`crate::domain::ledger::ResumePoint`]); emptied once the source is past the highest of them.
    pub(super) already_stored: Arc<SequenceSet>,
    /// The token of the last PING read, until its PONG is sent (one answers a burst of them).
    pub(super) pong: Option<u64>,
    /// The highest version named by the CATALOG_ACKs read, until the connection checks it.
    pub(super) catalog_ack: Option<u64>,
}

/// What a connection knows of a sequence it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    New,
    /// At or below what was accepted or resumed after: a duplicate the acknowledgement already
    /// covers, or will once what came before it is stored.
    Acked,
    /// Above that, and stored before the restart.
    Stored,
}

impl Intake {
    /// The intake of a connection of `source`, served by shard `shard`.
    pub(super) fn new(
        source: &Arc<Source>,
        services: &Services,
        shard: usize,
        already_stored: Arc<SequenceSet>,
    ) -> Intake {
        Intake {
            source: Arc::clone(source),
            stats: services.stats.shard(shard),
            max_batch: services.config.pipeline.max_batch_frames,
            // Frames of an earlier connection may still be on their way to the archive: their
            // resent copies are duplicates too.
            last_sequence: source.ledger().accepted(),
            already_stored,
            pong: None,
            catalog_ack: None,
        }
    }

    /// Accepts every complete frame at the front of `buf` up to the first bad message, whose
    /// error is returned, cuts them off the buffer in one piece that their batches share, and
    /// stages the batches in the fan-in, emergencies first.
    pub(super) fn take(
        &mut self,
        buf: &mut BytesMut,
        max_frame_length: usize,
        ingress: &Ingress,
    ) -> Result<(), Ending> {
        let mut read = Read::new();
        let mut failure = None;
        let walk = walk_messages(buf, max_frame_length, |offset, body| {
            match self.message(&mut read, offset, body) {
                Ok(()) => ControlFlow::Continue(()),
                Err(ending) => {
                    failure = Some(ending);
                    ControlFlow::Break(())
                }
            }
        });
        self.stage(read, buf.split_to(walk.end).freeze(), ingress)?;
        match failure.or(walk.oversize.map(Ending::Protocol)) {
            Some(ending) => Err(ending),
            None => Ok(()),
        }
    }

    /// One message of a read at `offset`: a frame accepted or a duplicate dropped, or why the
    /// connection ends.
    fn message(&mut self, read: &mut Read, offset: usize, body: &[u8]) -> Result<(), Ending> {
        let (priority, sequence) = match ClientMessage::view(body) {
            Ok(MessageView::Data { priority, sequence }) => (priority, sequence),
            Ok(MessageView::Ping(token)) => {
                self.pong = Some(token);
                return Ok(());
            }
            Ok(MessageView::CatalogAck(version)) => {
                self.catalog_ack = self.catalog_ack.max(Some(version));
                return Ok(());
            }
            // A second HELLO, of whatever version or length.
            Ok(MessageView::Hello(_)) => return Err(Ending::UnexpectedHello),
            Err(_) if ClientMessage::is_hello(body) => return Err(Ending::UnexpectedHello),
            Err(err) => return Err(Ending::Protocol(err)),
        };
        let seen = self.seen(sequence);
        self.last_sequence = self.last_sequence.max(Some(sequence));
        match seen {
            Seen::New => {
                let payload = offset + DATA_HEADER..offset + body.len();
                read.accept(&self.source, self.max_batch, priority, sequence, payload);
            }
            Seen::Acked => read.duplicates += 1,
            Seen::Stored => read.stored_duplicate(priority, sequence),
        }
        Ok(())
    }

    /// Records the read's runs in the ledger, then stages its batches, emergencies first, with
    /// the payloads in `chunk`.
    fn stage(&mut self, read: Read, chunk: Bytes, ingress: &Ingress) -> Result<(), Ending> {
        // In the ledger before the fan-in: the archive may store them as soon as they are admitted.
        if !read.batches.runs.is_empty() {
            self.source.record(&read.batches.runs);
        }
        if read.batches.accepted > 0 {
            self.source.heard(read.decoded_at);
        }
        self.stats.accepted(read.batches.accepted);
        if read.duplicates > 0 {
            self.stats.duplicates(read.duplicates);
            tracing::debug!(
                duplicates = read.duplicates,
                "dropped frames at or below an accepted sequence"
            );
        }
        let batches = read.batches.into_batches().map(|mut batch| {
            batch.attach(chunk.clone());
            batch
        });
        ingress.stage(batches).map_err(|_| Ending::PipelineClosed)
    }

    /// Whether `sequence` is new, at or below a sequence already accepted (or acknowledged), or
    /// above those and stored before the restart.
    fn seen(&mut self, sequence: u64) -> Seen {
        if self.last_sequence.is_some_and(|last| sequence <= last) {
            return Seen::Acked;
        }
        match self.already_stored.last() {
            None => Seen::New,
            Some(highest) if sequence > highest => {
                self.already_stored = Arc::default();
                Seen::New
            }
            Some(_) if self.already_stored.contains(sequence) => Seen::Stored,
            Some(_) => Seen::New,
        }
    }
}

/// What one socket read's frames become. Per read, not kept in the intake: with 10,000
/// connections, the room each would keep adds up to tens of megabytes.
struct Read {
    decoded_at: Instant,
    batches: ReadBatches,
    duplicates: u64,
}

impl Read {
    fn new() -> Read {
        Read {
            decoded_at: Instant::now(),
            batches: ReadBatches::default(),
            duplicates: 0,
        }
    }

    /// A new frame: into its lane's batch, and into the runs.
    fn accept(
        &mut self,
        source: &Arc<Source>,
        max_batch: usize,
        priority: Priority,
        sequence: u64,
        payload: Range<usize>,
    ) {
        let decoded_at = self.decoded_at;
        let frame = ReadFrame {
            priority,
            sequence,
            payload,
        };
        (self.batches).push(source, max_batch, decoded_at, frame, None);
    }

    /// A duplicate of a frame stored before the restart: where it arrived, the acknowledgement may
    /// pass it without waiting, or a source whose last frames were stored but not acknowledged
    /// would never hear that they were.
    fn stored_duplicate(&mut self, priority: Priority, sequence: u64) {
        self.duplicates += 1;
        match self.batches.runs.last_mut() {
            Some(run) if run.frames == 0 => run.last_sequence = sequence,
            _ => self.batches.runs.push(Run {
                priority,
                frames: 0,
                last_sequence: sequence,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::batch::Batch;
    use crate::domain::frame::SourceKind;
    use crate::pipeline::fan_in::priority_fan_in;

    /// A read's frames go into one batch per lane, not one per run of a priority, and the
    /// acknowledgement still follows arrival order.
    #[tokio::test]
    async fn a_read_is_batched_by_lane_and_acknowledged_in_arrival_order() {
        use crate::protocol::ingest::encode_data;
        let source = uplink(None);
        let (ingress, mut fan_in) = priority_fan_in(64, 64, 256, Stats::new());
        let mut intake = intake(&source, 64);
        let (e, r) = (Priority::Emergency, Priority::Routine);
        let mut buf = BytesMut::new();
        for (sequence, priority) in [r, r, e, r, r, e, r].into_iter().enumerate() {
            encode_data(&mut buf, priority, sequence as u64, b"x");
        }
        assert!(intake.take(&mut buf, 1024, &ingress).is_ok());
        assert!(buf.is_empty());

        let emergency = fan_in.next().await.unwrap();
        let routine = fan_in.next().await.unwrap();
        let sequences = |batch: &Batch| batch.payloads().map(|(s, _)| s).collect::<Vec<_>>();
        assert_eq!(emergency.item.priority, e);
        assert_eq!(sequences(&emergency.item), [2, 5]);
        assert_eq!(routine.item.priority, r);
        assert_eq!(sequences(&routine.item), [0, 1, 3, 4, 6]);

        source.stored(routine.item.span().unwrap());
        assert_eq!(
            source.last_acked(),
            Some(1),
            "2 (an emergency) is not stored"
        );
        source.stored(emergency.item.span().unwrap());
        assert_eq!(source.last_acked(), Some(6));
        assert!(source.is_settled());
    }

    /// Frames stored before the connection (above its resume point) that the source resends are
    /// dropped, and the acknowledgement passes them where they arrived: at once when nothing
    /// unstored comes before them, or else once that is stored.
    #[tokio::test]
    async fn resent_frames_stored_before_are_dropped_and_acknowledged() {
        use crate::protocol::ingest::encode_data;
        let source = uplink(Some(2));
        let (ingress, mut fan_in) = priority_fan_in(64, 64, 256, Stats::new());
        let mut stored = SequenceSet::default();
        stored.insert_run(3, 4);
        stored.insert_run(6, 6);
        let mut intake = intake(&source, 64);
        intake.already_stored = Arc::new(stored);
        let r = Priority::Routine;
        let mut read = |sequences: &[u64]| {
            let mut buf = BytesMut::new();
            for &sequence in sequences {
                encode_data(&mut buf, r, sequence, b"x");
            }
            assert!(intake.take(&mut buf, 1024, &ingress).is_ok());
        };

        read(&[3, 4]);
        assert_eq!(source.last_acked(), Some(4), "nothing to wait for");
        assert!(source.is_settled());

        read(&[5, 6, 7]);
        let batch = fan_in.next().await.unwrap();
        let sequences: Vec<_> = batch.item.payloads().map(|(s, _)| s).collect();
        assert_eq!(sequences, [5, 7], "6 was stored before");
        assert_eq!(source.last_acked(), Some(4), "5 is not stored yet");
        source.stored(batch.item.span().unwrap());
        assert_eq!(source.last_acked(), Some(7));
        assert!(source.is_settled());
    }

    /// A CATALOG_ACK between frames is taken, and one of the wrong length ends the connection
    /// after the frames read before it.
    #[tokio::test]
    async fn a_catalog_ack_between_frames_is_taken_and_a_bad_one_ends_the_connection() {
        use crate::protocol::ingest::{encode_data, ProtocolError};
        for ack_body in [5, 9] {
            let source = uplink(None);
            let (ingress, mut fan_in) = priority_fan_in(64, 64, 256, Stats::new());
            let mut intake = intake(&source, 64);
            let mut buf = BytesMut::new();
            encode_data(&mut buf, Priority::Routine, 0, b"x");
            buf.extend_from_slice(&(ack_body as u32).to_be_bytes());
            buf.extend_from_slice(&[0x04]);
            buf.extend_from_slice(&vec![0; ack_body - 1]);
            encode_data(&mut buf, Priority::Routine, 1, b"y");
            let taken = intake.take(&mut buf, 1024, &ingress);
            let batch = fan_in.next().await.unwrap();
            let sequences: Vec<_> = batch.item.payloads().map(|(s, _)| s).collect();
            if ack_body != 9 {
                assert!(
                    matches!(
                        taken,
                        Err(Ending::Protocol(ProtocolError::BadLength { .. }))
                    ),
                    "a body of {ack_body}: {taken:?}"
                );
                assert_eq!(sequences, [0], "what came before it is accepted");
            } else {
                assert!(taken.is_ok(), "{taken:?}");
                assert_eq!(intake.catalog_ack, Some(0));
                assert_eq!(sequences, [0, 1]);
            }
        }
    }

    /// A connection's intake for `source`, in batches of up to `max_batch` frames.
    fn intake(source: &Arc<Source>, max_batch: usize) -> Intake {
        Intake {
            source: Arc::clone(source),
            stats: Stats::new(),
            max_batch,
            last_sequence: source.ledger().accepted(),
            already_stored: Arc::default(),
            pong: None,
            catalog_ack: None,
        }
    }

    /// Live uplink 7, connected, with every frame up to `acked` stored.
    fn uplink(acked: Option<u64>) -> Arc<Source> {
        let peer = "127.0.0.1:1".parse().unwrap();
        let ledger = Arc::new(crate::domain::ledger::Ledger::new(acked));
        Arc::new(Source::new(7, SourceKind::LiveUplink, peer, ledger))
    }

    /// A lane's frames beyond one batch go into the next, and the runs follow the batches: a
    /// stored batch moves the acknowledgement over exactly its own frames.
    #[tokio::test]
    async fn runs_never_span_two_batches() {
        use crate::protocol::ingest::encode_data;
        let source = uplink(None);
        let (ingress, mut fan_in) = priority_fan_in(64, 64, 256, Stats::new());
        let mut intake = intake(&source, 4);
        let mut buf = BytesMut::new();
        for sequence in 0..8 {
            encode_data(&mut buf, Priority::Routine, sequence, b"x");
        }
        assert!(intake.take(&mut buf, 1024, &ingress).is_ok());
        let first = fan_in.next().await.unwrap();
        let second = fan_in.next().await.unwrap();
        source.stored(second.item.span().unwrap());
        assert_eq!(source.last_acked(), None, "0..=3 are not stored");
        source.stored(first.item.span().unwrap());
        assert_eq!(source.last_acked(), Some(7));
    }
}
