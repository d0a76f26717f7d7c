//! The emergencies the archive hands over from its journal (`crate::domain::handover`), with
//! `ack = "replicated"` and layout `records/1`: which may be published now, ahead of the files,
//! and which the files' copies of were published that way.
//!
//! Why the rules: a source's emergencies reach the stream in sequence order, or a restarted sink
//! (which leaves out what lies at or below its subject's marks) would skip the ones overtaken. So
//! a batch goes only once the stream's marks reach the emergency written before it (or, for a
//! source's first of this run, once every frame earlier runs archived is published), with every
//! batch after it that may go too: a source has one message in flight, so one left out would wait
//! a PubAck. A batch the stream holds (the files published it, as they do one that waits for an
//! emergency they publish) is dropped. A batch is not dropped because the files read it: the files
//! read a segment soon after its sync, and one dropped then would leave every later emergency of
//! its source waiting for the files' pace, as it waits for the one before it.
//!
//! A batch is handed over as the journal starts its append, so its PubAck may come first: its
//! replica counts (moves its source's ACK) once the append is durable, or, if the append failed,
//! when the files meet its frames, which they read only once their segment's sync made them so.
//! Whichever comes first counts it, once.

use std::collections::{HashMap, HashSet, VecDeque};

use async_nats::jetstream::context::PublishError;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::publish::PublishAck;

use super::message::{Naming, Through};
use super::pack::Packer;
use super::series::Series;
use super::stream::{NatsError, SinkStream};
use super::window::InFlight;
use crate::archive::format::{decode_frame_records, FrameRecord};
use crate::domain::frame::{Priority, SourceKey};
use crate::domain::handover::{Durable, Journaled};
use crate::domain::replication::Replication;
use crate::stats::Stats;

/// Handed-over batches not yet published, and what was published of them.
#[derive(Default)]
pub(super) struct Urgent {
    /// Each source's batches, in their order.
    waiting: HashMap<SourceKey, VecDeque<Journaled>>,
    /// Emergencies published from here and acknowledged, not counted yet, in PubAck order.
    uncounted: VecDeque<(SourceKey, Replica)>,
    /// Each source's emergencies published from here and counted, as `(first, last)` in sequence
    /// order, until the files pass them.
    counted: HashMap<SourceKey, VecDeque<(u64, u64)>>,
}

/// A message's emergencies, in the stream: `first` to `last` of its source, `frames` of them.
struct Replica {
    first: u64,
    last: u64,
    frames: u64,
    /// Whether the journal's appends of them are durable: they count only once each is.
    durable: Vec<Durable>,
}

impl Urgent {
    pub(super) fn add(&mut self, batches: Vec<Journaled>) {
        for batch in batches {
            self.waiting.entry(batch.key).or_default().push_back(batch);
        }
    }

    /// The sources with a batch waiting and no message in flight (`busy`).
    pub(super) fn ready(&self, busy: &HashSet<SourceKey>) -> Vec<SourceKey> {
        let ready = self.waiting.keys().filter(|key| !busy.contains(key));
        ready.copied().collect()
    }

    /// Source `key`'s next batches that may go now, as the frames of one message of at most
    /// `max_bytes` of records, with their journal appends' states: a batch may go once the stream
    /// reaches (`through`) the emergency written before it, or the message holds it, or it is the
    /// source's first of this run and every frame earlier runs archived is published
    /// (`earlier_done`). Every batch waiting that may go goes in one message: a source's next
    /// message waits for its last one's PubAck, so a batch a message would leave waits a round
    /// trip. One the stream holds already, of more than `max_bytes`, or whose records do not read
    /// back, is dropped: the files publish it.
    pub(super) fn take(
        &mut self,
        key: SourceKey,
        through: &Through,
        earlier_done: bool,
        max_bytes: usize,
    ) -> Option<(Vec<FrameRecord>, Vec<Durable>)> {
        let batches = self.waiting.get_mut(&key)?;
        let in_stream = |sequence: u64| through.emergency.is_some_and(|e| sequence <= e);
        let (mut frames, mut durable, mut bytes) = (Vec::new(), Vec::new(), 0);
        // Past the batches dropped, up to the first that waits or would not fit.
        while let Some(batch) = batches.front() {
            let goes = !in_stream(batch.first) && batch.records.len() <= max_bytes;
            let may = match batch.after {
                None => earlier_done,
                Some(after) => {
                    in_stream(after)
                        || frames.last().map(|f: &FrameRecord| f.sequence) == Some(after)
                }
            };
            if goes && (!may || bytes + batch.records.len() > max_bytes) {
                break;
            }
            let batch = batches.pop_front()?;
            let decoded = goes.then(|| decode_frame_records(&batch.records).ok());
            if let Some(mut decoded) = decoded.flatten() {
                bytes += batch.records.len();
                frames.append(&mut decoded);
                durable.push(batch.durable);
            }
        }
        if batches.is_empty() {
            self.waiting.remove(&key);
        }
        (!frames.is_empty()).then_some((frames, durable))
    }

    /// Takes the PubAck of a message published from here: its source's series in `stream` moves,
    /// and its frames count ([`Urgent::count_durable`]) once their journal append is durable.
    /// How many frames counted.
    pub(super) fn acked_message(
        &mut self,
        published: &InFlight,
        ack: Result<PublishAck, PublishError>,
        stream: &mut SinkStream,
        (replication, stats): (Option<&Replication>, &Stats),
    ) -> Result<u64, NatsError> {
        let frames = &published.journaled;
        let (Some((key, through)), Some(first), Some(last)) =
            (published.series.clone(), frames.first(), frames.last())
        else {
            return Ok(0);
        };
        let (first, last) = (first.sequence, last.sequence);
        let ack = ack.map_err(|source| {
            let (kind, id) = key;
            NatsError::NoJournaledAck {
                kind,
                id,
                first,
                last,
                source,
            }
        })?;
        let ack = stream.ours(ack)?;
        stream.published(
            key,
            Series {
                last: ack.sequence,
                through,
            },
        );
        let durable = published.durable.clone();
        self.replica_acked(key, (first, last, frames.len() as u64), durable);
        Ok(self.count_durable((replication, stats)))
    }

    /// JetStream acknowledged `frames` emergencies of source `key`, `first` to `last`, their
    /// journal appends' states `durable`: they count once each is durable.
    fn replica_acked(
        &mut self,
        key: SourceKey,
        (first, last, frames): (u64, u64, u64),
        durable: Vec<Durable>,
    ) {
        let replica = Replica {
            first,
            last,
            frames,
            durable,
        };
        self.uncounted.push_back((key, replica));
    }

    /// Counts the emergencies published from here, acknowledged and now durable in the journal:
    /// their counters in `stats` and then their sources' acknowledgements through `replication`
    /// move (in that order: whoever is told of an ACK finds them counted). How many frames.
    pub(super) fn count_durable(
        &mut self,
        (replication, stats): (Option<&Replication>, &Stats),
    ) -> u64 {
        let mut counted = 0;
        for (key, replica) in std::mem::take(&mut self.uncounted) {
            if !replica.durable.iter().all(Durable::is_durable) {
                self.uncounted.push_back((key, replica));
                continue;
            }
            counted += replica.frames;
            stats.nats_acked_from_journal(replica.frames);
            if let Some(replication) = replication {
                let sequences = replica.first..=replica.last;
                replication.replicated(key, Priority::Emergency, sequences, replica.frames);
            }
            // In sequence order, whichever of a source's replicas became durable first.
            let ranges = self.counted.entry(key).or_default();
            let at = ranges.partition_point(|&(first, _)| first < replica.first);
            ranges.insert(at, (replica.first, replica.last));
        }
        counted
    }

    /// Whether the files' copy of `frame` was published from here and counted: not again then.
    /// One published and not counted yet (its journal append failed, or is not durable yet) the
    /// files count, and it no longer counts here. The files meet a source's emergencies in
    /// sequence order, so what lies below it is passed for good. Not a mark: a batch the stream
    /// held already (another daemon's) was dropped here, and its copy is the files' to count.
    pub(super) fn published(&mut self, frame: &FrameRecord) -> bool {
        let key = (frame.kind, frame.source_id);
        if frame.priority != Priority::Emergency {
            return false;
        }
        let sequence = frame.sequence;
        let holds =
            |(k, r): &(SourceKey, Replica)| *k == key && (r.first..=r.last).contains(&sequence);
        if let Some(at) = self.uncounted.iter().position(holds) {
            self.uncounted.remove(at);
            return false;
        }
        let Some(ranges) = self.counted.get_mut(&key) else {
            return false;
        };
        while ranges.front().is_some_and(|&(_, last)| last < sequence) {
            ranges.pop_front();
        }
        let published = (ranges.front()).is_some_and(|&(first, _)| first <= sequence);
        if ranges.is_empty() {
            self.counted.remove(&key);
        }
        published
    }
}

/// The message of `frames`, emergencies of source `key` handed over from the journal (`durable`
/// once their appends are), after its `series` in the stream, and the subject to publish it to.
pub(super) fn message(
    (naming, packer): (&Naming, &mut Packer),
    key: SourceKey,
    series: Series,
    (frames, durable): (Vec<FrameRecord>, Vec<Durable>),
    replicated_through: Option<u64>,
) -> (InFlight, String, PublishMessage) {
    let through = series.with(&frames);
    let (subject, message) = naming.build_records(
        key,
        &frames,
        &through,
        replicated_through,
        series.last,
        packer,
    );
    let mut in_flight = InFlight::journaled(frames, durable);
    in_flight.series = Some((key, through));
    (in_flight, subject, message)
}

/// Completes once the archive's consumer handed emergencies over from its journal; never
/// without the gate (`ack = "local"`).
pub(super) async fn handed_over(replication: Option<&Replication>) {
    match replication {
        Some(replication) => replication.handover().ready().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::format::encode_frame_records;
    use crate::domain::frame::SourceKind;
    use crate::domain::handover::Handover;
    use crate::domain::ledger::Run;
    use crate::domain::source::Source;
    use std::sync::Arc;
    use std::time::Duration;

    const KEY: SourceKey = (SourceKind::LiveUplink, 3);
    const MOST: usize = 1 << 20;

    fn frame(sequence: u64) -> FrameRecord {
        FrameRecord {
            kind: KEY.0,
            priority: Priority::Emergency,
            source_id: KEY.1,
            sequence,
            received_unix_ns: 1_000 + sequence,
            payload: bytes::Bytes::from_static(b"SAFE_MODE"),
            reception: None,
        }
    }

    fn batch(first: u64, last: u64, after: Option<u64>) -> Journaled {
        let mut records = Vec::new();
        let frames: Vec<FrameRecord> = (first..=last).map(frame).collect();
        encode_frame_records(&mut records, frames.iter());
        Journaled {
            key: KEY,
            after,
            first,
            records: records.into(),
            durable: Durable::default(),
        }
    }

    fn through(emergency: Option<u64>) -> Through {
        Through {
            emergency,
            ..Through::default()
        }
    }

    #[test]
    fn a_batch_goes_once_the_stream_reaches_the_emergency_before_it() {
        let mut urgent = Urgent::default();
        urgent.add(vec![batch(5, 6, Some(2))]);
        assert_eq!(urgent.ready(&HashSet::new()), vec![KEY]);
        assert!(
            urgent.take(KEY, &through(Some(1)), true, MOST).is_none(),
            "2 not in"
        );
        let (frames, _) = urgent
            .take(KEY, &through(Some(2)), true, MOST)
            .expect("2 is in");
        assert_eq!(frames, vec![frame(5), frame(6)]);
        assert!(urgent.ready(&HashSet::new()).is_empty());
    }

    #[test]
    fn the_batches_that_may_go_go_in_one_message_within_its_bytes() {
        let mut urgent = Urgent::default();
        // 7 went with the files (it was not journaled): 8 waits for the stream to hold it.
        let waiting = [(5, 5, None), (6, 6, Some(5)), (8, 8, Some(7))];
        urgent.add(
            waiting
                .map(|(first, last, after)| batch(first, last, after))
                .to_vec(),
        );
        let (frames, durable) = urgent
            .take(KEY, &through(None), true, MOST)
            .expect("5 and 6");
        assert_eq!((frames, durable.len()), (vec![frame(5), frame(6)], 2));
        assert!(
            urgent.take(KEY, &through(Some(6)), true, MOST).is_none(),
            "7 not in"
        );
        assert!(urgent.take(KEY, &through(Some(7)), true, MOST).is_some());

        let one = batch(5, 5, None).records.len();
        urgent.add(vec![
            batch(5, 5, None),
            batch(6, 6, Some(5)),
            batch(7, 7, Some(6)),
        ]);
        let taken = urgent.take(KEY, &through(None), true, 2 * one);
        assert_eq!(
            taken.map(|(frames, _)| frames),
            Some(vec![frame(5), frame(6)])
        );
        let taken = urgent.take(KEY, &through(Some(6)), true, 2 * one);
        assert_eq!(
            taken.map(|(frames, _)| frames),
            Some(vec![frame(7)]),
            "left, not dropped"
        );
    }

    #[test]
    fn a_source_s_first_waits_for_what_earlier_runs_archived() {
        let mut urgent = Urgent::default();
        urgent.add(vec![batch(5, 5, None)]);
        assert!(urgent.take(KEY, &through(None), false, MOST).is_none());
        assert!(urgent.take(KEY, &through(None), true, MOST).is_some());
    }

    #[test]
    fn a_batch_the_stream_holds_is_passed_to_the_next_that_may_go() {
        let mut urgent = Urgent::default();
        urgent.add(vec![batch(5, 5, None), batch(7, 7, Some(5))]);
        let taken = urgent.take(KEY, &through(Some(5)), true, MOST);
        assert_eq!(taken.map(|(frames, _)| frames), Some(vec![frame(7)]));
    }

    #[test]
    fn a_batch_larger_than_a_message_is_left_to_the_files() {
        let mut urgent = Urgent::default();
        urgent.add(vec![batch(5, 5, None)]);
        assert!(urgent.take(KEY, &through(None), true, 10).is_none());
        assert!(urgent.ready(&HashSet::new()).is_empty(), "dropped");
    }

    #[test]
    fn what_the_stream_holds_is_dropped() {
        let mut urgent = Urgent::default();
        urgent.add(vec![batch(5, 5, None), batch(7, 7, Some(5))]);
        assert!(urgent.ready(&HashSet::from([KEY])).is_empty(), "busy");
        assert_eq!(urgent.ready(&HashSet::new()), vec![KEY]);
        // The files published both while 5 waited for what they published before it.
        assert!(
            urgent.take(KEY, &through(Some(7)), true, MOST).is_none(),
            "held"
        );
        assert!(urgent.ready(&HashSet::new()).is_empty());
    }

    /// A durable append's state.
    fn durable() -> Durable {
        let durable = Durable::default();
        Handover::default().made_durable(&durable);
        durable
    }

    #[test]
    fn the_files_copies_of_what_was_acknowledged_count_once() {
        let mut urgent = Urgent::default();
        // 4 was in the stream already (dropped here), 5-6 and 9 published from here.
        urgent.replica_acked(KEY, (5, 6, 2), vec![durable()]);
        urgent.replica_acked(KEY, (9, 9, 1), vec![durable()]);
        assert_eq!(urgent.count_durable((None, &Stats::new())), 3);
        assert!(!urgent.published(&frame(4)));
        assert!(urgent.published(&frame(6)));
        assert!(!urgent.published(&frame(7)));
        assert!(urgent.published(&frame(9)));
        assert!(!urgent.published(&frame(10)));
        let routine = FrameRecord {
            priority: Priority::Routine,
            ..frame(4)
        };
        assert!(!urgent.published(&routine));
    }

    /// A gate whose source `KEY` sent emergencies 5 and 6, written: what moves its ACK.
    fn gate_of_5_and_6() -> (Arc<Replication>, Arc<Source>) {
        let gate = Replication::new(100, 100, Duration::from_millis(10));
        let source = Source::for_test(KEY.1);
        source.record(&[Run::of(Priority::Emergency, 2, 6)]);
        gate.writing(&source);
        gate.written(2);
        (gate, source)
    }

    #[test]
    fn a_replica_moves_the_ack_only_once_its_journal_append_is_durable() {
        let (gate, source) = gate_of_5_and_6();
        let (stats, handover) = (Stats::new(), Handover::default());
        let mut urgent = Urgent::default();
        // 5 and 6 came in two appends, and went in one message.
        let appending = [Durable::default(), Durable::default()];
        urgent.replica_acked(KEY, (5, 6, 2), appending.to_vec());
        assert_eq!(urgent.count_durable((Some(&gate), &stats)), 0);
        assert_eq!(
            source.last_acked(),
            None,
            "the PubAck came before the journal's sync"
        );
        handover.made_durable(&appending[0]);
        assert_eq!(
            urgent.count_durable((Some(&gate), &stats)),
            0,
            "6 is not durable"
        );
        handover.made_durable(&appending[1]);
        assert_eq!(urgent.count_durable((Some(&gate), &stats)), 2);
        assert_eq!(source.last_acked(), Some(6));
        assert_eq!(stats.snapshot().nats_published_from_journal, 2);
        assert_eq!(urgent.count_durable((Some(&gate), &stats)), 0, "once");
        assert!(urgent.published(&frame(5)) && urgent.published(&frame(6)));
    }

    #[test]
    fn replicas_count_as_their_appends_end_and_are_passed_in_sequence_order() {
        let (stats, handover) = (Stats::new(), Handover::default());
        let mut urgent = Urgent::default();
        let (five, six) = (Durable::default(), Durable::default());
        urgent.replica_acked(KEY, (5, 5, 1), vec![five.clone()]);
        urgent.replica_acked(KEY, (6, 6, 1), vec![six.clone()]);
        handover.made_durable(&six);
        assert_eq!(urgent.count_durable((None, &stats)), 1, "6");
        handover.made_durable(&five);
        assert_eq!(urgent.count_durable((None, &stats)), 1, "5");
        assert!(urgent.published(&frame(5)) && urgent.published(&frame(6)));
        assert!(!urgent.published(&frame(7)));
    }

    #[test]
    fn a_replica_whose_append_failed_is_the_files_to_count() {
        let (gate, source) = gate_of_5_and_6();
        let stats = Stats::new();
        let mut urgent = Urgent::default();
        let failed = Durable::default();
        urgent.replica_acked(KEY, (5, 6, 2), vec![failed.clone()]);
        assert_eq!(urgent.count_durable((Some(&gate), &stats)), 0);
        // The files meet them after their segment's sync, in the stream: they count them.
        assert!(!urgent.published(&frame(5)));
        assert!(!urgent.published(&frame(6)));
        Handover::default().made_durable(&failed);
        assert_eq!(urgent.count_durable((Some(&gate), &stats)), 0, "not twice");
        assert_eq!(source.last_acked(), None, "nothing counted here");
        assert_eq!(stats.snapshot().nats_published_from_journal, 0);
    }
}
