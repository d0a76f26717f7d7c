//! The consumer's emergency journal: which batches go to it, the appends under way, and with
//! `ack = "replicated"` what the NATS sink is handed as an append starts.
//!
//! Why apart from the consumer's writes and syncs: an append ends on its own schedule, and its
//! batches count as stored (and their replicas as durable) when it ends, whatever the segment's
//! sync is doing.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;

use super::stored::{store, Claim, Written};
use crate::archive::format::ArchiveError;
use crate::archive::write::sink::{ArchiveSink, BoxFuture};
use crate::domain::batch::Batch;
use crate::domain::frame::{Priority, SourceKey};
use crate::domain::handover::{Durable, Journaled};
use crate::domain::replication::Replication;
use crate::pipeline::queue::Admitted;
use crate::stats::Stats;

/// An append to the journal, until durable.
type Appending = BoxFuture<'static, Result<(), ArchiveError>>;

/// An emergency batch for the sink, less its records: its source, the last sequence of that
/// source's emergency written before it, and its first sequence.
type Handing = (SourceKey, Option<u64>, u64);

/// The emergency appends under way and whether the last one failed.
pub(super) struct Journal {
    /// In the order they end: each with its batches' spans, and with `ack = "replicated"` what
    /// tells the sink that the batches it was handed as the append started are durable.
    appends: VecDeque<(Appending, Vec<Written>, Option<Durable>)>,
    /// The last append failed: said once, until one succeeds.
    failing: bool,
    /// With `ack = "replicated"`: where the sink is handed the batches and told they are durable.
    replication: Option<Arc<Replication>>,
}

impl Journal {
    pub(super) fn new(replication: Option<Arc<Replication>>) -> Self {
        Journal {
            appends: VecDeque::new(),
            failing: false,
            replication,
        }
    }

    /// The last append failed, and none has succeeded since.
    pub(super) fn is_failing(&self) -> bool {
        self.failing
    }

    pub(super) fn is_empty(&self) -> bool {
        self.appends.is_empty()
    }

    /// Hands the group's emergency batches whose acknowledgement it would move to `sink`'s
    /// journal (with `ack = "replicated"`, and on to the NATS sink, whose replicas of them count
    /// once the journal made them durable); for each batch, the claim it shares with its journal
    /// append, if it has one.
    pub(super) fn append(
        &mut self,
        group: &[Admitted<Arc<Batch>>],
        sink: &mut dyn ArchiveSink,
    ) -> Vec<Option<Claim>> {
        let none = || vec![None; group.len()];
        // In order, so that a batch journaled counts for the next one of its source.
        let chosen: Vec<bool> = group.iter().map(|a| self.journals(&a.item)).collect();
        let handing = self.handing(group, &chosen);
        let emergencies: Vec<Arc<Batch>> = group
            .iter()
            .zip(&chosen)
            .filter(|(_, &chosen)| chosen)
            .map(|(admitted, _)| Arc::clone(&admitted.item))
            .collect();
        if emergencies.is_empty() {
            return none();
        }
        let Some(appended) = sink.journal(&emergencies) else {
            return none();
        };
        // While the journal fails, its emergencies are the files' to publish.
        let durable = (!self.failing)
            .then(|| self.hand_over(handing, appended.records))
            .flatten();
        let claims: Vec<Option<Claim>> = chosen
            .iter()
            .map(|&chosen| chosen.then(Claim::default))
            .collect();
        let spans = group
            .iter()
            .zip(&claims)
            .filter_map(|(admitted, claim)| {
                let span = admitted.item.span()?;
                Some((
                    Arc::clone(&admitted.item.source),
                    span,
                    claim.clone()?.into(),
                ))
            })
            .collect();
        self.appends.push_back((appended.durable, spans, durable));
        claims
    }

    /// With `ack = "replicated"`: hands the batches the journal is appending (`handing`, their
    /// `records`) to the sink; what tells it once they are durable.
    fn hand_over(&self, handing: Vec<Handing>, records: Vec<Bytes>) -> Option<Durable> {
        let replication = self.replication.as_ref()?;
        let durable = Durable::default();
        let batches = handing.into_iter().zip(records);
        let journaled = batches.map(|((key, after, first), records)| Journaled {
            key,
            after,
            first,
            records,
            durable: durable.clone(),
        });
        replication.handover().hand(journaled);
        Some(durable)
    }

    /// Whether `batch` goes to the journal: an emergency batch that would move its source's
    /// acknowledgement (with `ack = "replicated"`, once its replica is there: one behind routine
    /// frames JetStream does not have yet would not, and goes with the files).
    fn journals(&self, batch: &Batch) -> bool {
        let (Some(first), Some(last)) = (batch.first_sequence(), batch.last_sequence()) else {
            return false;
        };
        if batch.priority != Priority::Emergency {
            return false;
        }
        let moves = batch.source.acknowledged_by_journal(first);
        if moves {
            batch.source.journaled(last);
        }
        moves
    }

    /// With `ack = "replicated"`: what the sink is handed of the `chosen` batches of `group` as
    /// the journal starts appending them, each naming its source's emergency written before it,
    /// journaled or not.
    fn handing(&self, group: &[Admitted<Arc<Batch>>], chosen: &[bool]) -> Vec<Handing> {
        let Some(replication) = &self.replication else {
            return Vec::new();
        };
        let handover = replication.handover();
        let each = group.iter().zip(chosen).filter_map(|(admitted, &chosen)| {
            let batch = &admitted.item;
            let (first, last) = (batch.first_sequence()?, batch.last_sequence()?);
            let key = (batch.source.kind, batch.source.id);
            let after =
                (batch.priority == Priority::Emergency).then(|| handover.written(key, last));
            Some((key, after?, first)).filter(|_| chosen)
        });
        each.collect()
    }

    /// The oldest append ended: its emergencies are stored, unless their segment's sync stored
    /// them first, and with `ack = "replicated"` the sink is told. A failed append leaves them to
    /// that sync: true when it did.
    pub(super) fn ended(&mut self, result: Result<(), ArchiveError>, stats: &Stats) -> bool {
        let Some((_, spans, durable)) = self.appends.pop_front() else {
            return false;
        };
        match result {
            Ok(()) => {
                self.failing = false;
                store(stats, spans, self.replication.is_none());
                if let (Some(replication), Some(durable)) = (&self.replication, durable) {
                    replication.handover().made_durable(&durable);
                }
                false
            }
            Err(err) => {
                if !self.failing {
                    tracing::warn!(
                        error = %err,
                        "emergency journal append failed; emergencies are acknowledged with the segment's sync until it works again"
                    );
                }
                self.failing = true;
                true
            }
        }
    }

    /// The oldest append under way, or never, when there is none.
    pub(super) async fn front(&mut self) -> Result<(), ArchiveError> {
        match self.appends.front_mut() {
            Some((pending, _, _)) => pending.await,
            None => std::future::pending().await,
        }
    }
}
