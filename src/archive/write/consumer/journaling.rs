//! The consumer's emergency journal: which batches go to it, the appends under way, and with
//! `ack = "replicated"` what the NATS sink is handed as an append starts.
//!
//! Why apart from the consumer's writes and syncs: an append ends on its own schedule, and its
//! batches count as stored (and their replicas as durable) when it ends, whatever the segment's
//! sync is doing.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;

use super::{store, ArchiveConsumer, Claim, Written};
use crate::archive::format::ArchiveError;
use crate::archive::write::sink::{BoxFuture, SyncPolicy};
use crate::domain::batch::Batch;
use crate::domain::frame::{Priority, SourceKey};
use crate::domain::handover::{Durable, Journaled};
use crate::pipeline::queue::Admitted;

/// Emergency appends to the journal under way, in the order they end: each with its batches'
/// spans, and with `ack = "replicated"` what tells the sink that the batches it was handed as the
/// append started are durable.
pub(super) type Journaling = VecDeque<(Appending, Vec<Written>, Option<Durable>)>;

/// An append to the journal, until durable.
type Appending = BoxFuture<'static, Result<(), ArchiveError>>;

/// An emergency batch for the sink, less its records: its source, the last sequence of that
/// source's emergency written before it, and its first sequence.
type Handing = (SourceKey, Option<u64>, u64);

impl ArchiveConsumer {
    /// Hands the group's emergency batches whose acknowledgement it would move to the sink's
    /// journal (with `ack = "replicated"`, and on to the NATS sink, whose replicas of them count
    /// once the journal made them durable); for each batch, the claim it shares with its journal
    /// append, if it has one.
    pub(super) fn journal(&mut self, group: &[Admitted<Arc<Batch>>]) -> Vec<Option<Claim>> {
        let none = || vec![None; group.len()];
        if self.settings.policy == SyncPolicy::Never {
            return none();
        }
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
        let Some(appended) = self.sink.journal(&emergencies) else {
            return none();
        };
        // While the journal fails, its emergencies are the files' to publish.
        let durable = (!self.journal_failing)
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
        self.journaling
            .push_back((appended.durable, spans, durable));
        claims
    }

    /// With `ack = "replicated"`: hands the batches the journal is appending (`handing`, their
    /// `records`) to the sink; what tells it once they are durable.
    fn hand_over(&self, handing: Vec<Handing>, records: Vec<Bytes>) -> Option<Durable> {
        let replication = self.settings.replication.as_ref()?;
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
        let Some(replication) = &self.settings.replication else {
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

    /// The oldest journal append ended: its emergencies are stored, unless their segment's sync
    /// stored them first, and with `ack = "replicated"` the sink is told. A failed append leaves
    /// them to that sync.
    pub(super) fn journaled(&mut self, result: Result<(), ArchiveError>) {
        let Some((_, spans, durable)) = self.journaling.pop_front() else {
            return;
        };
        match result {
            Ok(()) => {
                self.journal_failing = false;
                store(&self.stats, spans, self.acknowledges());
                if let (Some(replication), Some(durable)) = (&self.settings.replication, durable) {
                    replication.handover().made_durable(&durable);
                }
            }
            Err(err) => {
                if !self.journal_failing {
                    tracing::warn!(
                        error = %err,
                        "emergency journal append failed; emergencies are acknowledged with the segment's sync until it works again"
                    );
                }
                self.journal_failing = true;
                // With `ack = "replicated"` the files publish them: their sync starts now.
                if self.settings.replication.is_some() {
                    self.start_sync();
                }
            }
        }
    }
}

/// The oldest journal append under way, or never, when there is none.
pub(super) async fn journal_front(journaling: &mut Journaling) -> Result<(), ArchiveError> {
    match journaling.front_mut() {
        Some((pending, _, _)) => pending.await,
        None => std::future::pending().await,
    }
}
