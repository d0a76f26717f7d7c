//! The emergencies the archive hands over from its journal (`crate::domain::handover`), with
//! `ack = "replicated"` and layout `records/1`: which may be published now, ahead of the files,
//! and which the files' copies of were published that way.
//!
//! Why the rules: a source's emergencies reach the stream in sequence order, or a restarted sink
//! (which leaves out what lies at or below its subject's marks) would skip the ones overtaken. So
//! a batch goes only once the stream's marks reach the emergency written before it (or, for a
//! source's first of this run, once every frame earlier runs archived is published), and never
//! once the files gave it: then it is the files' to publish, emergencies first as ever.

use std::collections::{HashMap, HashSet, VecDeque};

use async_nats::jetstream::context::PublishError;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::publish::PublishAck;

use super::message::{Naming, Through};
use super::series::Series;
use super::stream::{NatsError, SinkStream};
use super::window::InFlight;
use crate::archive::format::{decode_frame_records, FrameRecord};
use crate::domain::frame::{Priority, SourceKey};
use crate::domain::handover::Journaled;
use crate::domain::replication::Replication;
use crate::stats::Stats;

/// Handed-over batches not yet published, and what was published of them.
#[derive(Default)]
pub(super) struct Urgent {
    /// Each source's batches, in their order.
    waiting: HashMap<SourceKey, VecDeque<Journaled>>,
    /// Each source's emergencies published from here and acknowledged, as `(first, last)` in
    /// sequence order, until the files pass them.
    acked: HashMap<SourceKey, VecDeque<(u64, u64)>>,
}

impl Urgent {
    pub(super) fn add(&mut self, batches: Vec<Journaled>) {
        for batch in batches {
            self.waiting.entry(batch.key).or_default().push_back(batch);
        }
    }

    /// The sources with a batch waiting and no message in flight (`busy`), once the batches
    /// the files gave already (`read`: a source's last emergency read from them) are dropped.
    pub(super) fn ready(
        &mut self,
        busy: &HashSet<SourceKey>,
        read: impl Fn(SourceKey) -> Option<u64>,
    ) -> Vec<SourceKey> {
        if self.waiting.is_empty() {
            return Vec::new();
        }
        self.waiting.retain(|key, batches| {
            let read = read(*key);
            while batches
                .front()
                .is_some_and(|b| read.is_some_and(|r| b.first <= r))
            {
                batches.pop_front();
            }
            !batches.is_empty()
        });
        let ready = self.waiting.keys().filter(|key| !busy.contains(key));
        ready.copied().collect()
    }

    /// Source `key`'s next batch as frames, if it may go now: the stream reaches (`through`) the
    /// emergency written before it, or it is the source's first of this run and every frame
    /// earlier runs archived is published (`earlier_done`). One the stream holds already, of more
    /// than `max_bytes` of records, or whose records do not read back, is dropped: the files
    /// publish it.
    pub(super) fn take(
        &mut self,
        key: SourceKey,
        through: &Through,
        earlier_done: bool,
        max_bytes: usize,
    ) -> Option<Vec<FrameRecord>> {
        let batches = self.waiting.get_mut(&key)?;
        let in_stream = |sequence: u64| through.emergency.is_some_and(|e| sequence <= e);
        let mut taken = None;
        // Past the batches dropped, to the first that goes or waits.
        while let Some(batch) = batches.front().filter(|_| taken.is_none()) {
            let goes = !in_stream(batch.first) && batch.records.len() <= max_bytes;
            let may = match batch.after {
                None => earlier_done,
                Some(after) => in_stream(after),
            };
            if goes && !may {
                break;
            }
            let batch = batches.pop_front()?;
            taken = (goes.then(|| decode_frame_records(&batch.records).ok())).flatten();
        }
        if batches.is_empty() {
            self.waiting.remove(&key);
        }
        taken
    }

    /// Takes the PubAck of a message published from here: its source's series in `stream`, its
    /// counters in `stats` and then its acknowledgement through `replication` move (in that
    /// order: whoever is told of the ACK finds them counted), and the files' copies of its frames
    /// will count for nothing more. How many frames it acknowledged.
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
        stream.published(
            key,
            Series {
                last: ack.sequence,
                through,
            },
        );
        self.acked.entry(key).or_default().push_back((first, last));
        let count = frames.len() as u64;
        stats.nats_acked_from_journal(count);
        if let Some(replication) = replication {
            replication.replicated(key, Priority::Emergency, first..=last, count);
        }
        Ok(count)
    }

    /// Whether the files' copy of `frame` was published from here and acknowledged: counted
    /// then, and not again. The files meet a source's emergencies in sequence order, so what
    /// lies below it is passed for good. Not a mark: a batch the stream held already (another
    /// daemon's) was dropped here, and its copy is the files' to count.
    pub(super) fn published(&mut self, frame: &FrameRecord) -> bool {
        let key = (frame.kind, frame.source_id);
        if frame.priority != Priority::Emergency {
            return false;
        }
        let Some(ranges) = self.acked.get_mut(&key) else {
            return false;
        };
        while ranges
            .front()
            .is_some_and(|&(_, last)| last < frame.sequence)
        {
            ranges.pop_front();
        }
        let published = (ranges.front()).is_some_and(|&(first, _)| first <= frame.sequence);
        if ranges.is_empty() {
            self.acked.remove(&key);
        }
        published
    }
}

/// The message of `frames`, emergencies of source `key` handed over from the journal, after its
/// `series` in the stream, and the subject to publish it to.
pub(super) fn message(
    naming: &Naming,
    key: SourceKey,
    series: Series,
    frames: Vec<FrameRecord>,
    replicated_through: Option<u64>,
) -> (InFlight, String, PublishMessage) {
    let through = series.with(&frames);
    let (subject, message) =
        naming.build_records(key, &frames, &through, replicated_through, series.last);
    let mut in_flight = InFlight::journaled(frames);
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
        assert_eq!(urgent.ready(&HashSet::new(), |_| None), vec![KEY]);
        assert!(
            urgent.take(KEY, &through(Some(1)), true, MOST).is_none(),
            "2 not in"
        );
        let frames = urgent
            .take(KEY, &through(Some(2)), true, MOST)
            .expect("2 is in");
        assert_eq!(frames, vec![frame(5), frame(6)]);
        assert!(urgent.ready(&HashSet::new(), |_| None).is_empty());
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
        let frames = urgent.take(KEY, &through(Some(5)), true, MOST);
        assert_eq!(frames, Some(vec![frame(7)]));
    }

    #[test]
    fn a_batch_larger_than_a_message_is_left_to_the_files() {
        let mut urgent = Urgent::default();
        urgent.add(vec![batch(5, 5, None)]);
        assert!(urgent.take(KEY, &through(None), true, 10).is_none());
        assert!(
            urgent.ready(&HashSet::new(), |_| None).is_empty(),
            "dropped"
        );
    }

    #[test]
    fn what_the_files_or_the_stream_gave_is_dropped() {
        let mut urgent = Urgent::default();
        urgent.add(vec![batch(5, 5, None), batch(7, 7, Some(5))]);
        assert!(
            urgent.ready(&HashSet::from([KEY]), |_| None).is_empty(),
            "busy"
        );
        assert_eq!(urgent.ready(&HashSet::new(), |_| Some(5)), vec![KEY]);
        assert!(
            urgent.take(KEY, &through(Some(7)), true, MOST).is_none(),
            "held"
        );
        assert!(urgent.ready(&HashSet::new(), |_| None).is_empty());
    }

    #[test]
    fn the_files_copies_of_what_was_acknowledged_count_once() {
        let mut urgent = Urgent::default();
        // 4 was in the stream already (dropped here), 5-6 and 9 published from here.
        urgent.acked.insert(KEY, VecDeque::from([(5, 6), (9, 9)]));
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
}
