//! The router actor: the one owner of the table of connected sources.
//!
//! Connections register at runtime and the router answers with everything a source needs to feed
//! the pipeline: its shared [`Source`] record, its [`Ingress`] into the priority fan-in, and where to
//! resume. Frames themselves do not pass through the actor's mailbox: the router hands each source
//! its lane into the fan-in, so the data path has one hop less and the actor is never a bottleneck
//! or a place where frames queue outside the bounded lanes.
//!
//! The router keeps every source's [`Ledger`] across its connections (recovered from the archive at
//! start, or begun at its first connection), so a source that reconnects is told where to resume,
//! and its resent frames are recognised as duplicates, also those still on their way to the archive
//! from its last connection. When the drain starts it drops its own `Ingress` and refuses new
//! registrations; the fan-in closes once the last connection has admitted what it read.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::domain::frame::SourceKey;
use crate::domain::frame::SourceKind;
use crate::domain::ledger::{Ledger, ResumePoint};
use crate::domain::sequence_set::SequenceSet;
use crate::domain::shard::shard_of;
use crate::domain::source::{Source, SourceSnapshot};
use crate::pipeline::fan_in::Ingress;
use crate::stats::Stats;

/// What a registered source receives.
#[derive(Debug)]
pub(crate) struct Registration {
    pub source: Arc<Source>,
    /// The shard that serves the source ([`shard_of`]).
    pub shard: usize,
    /// Its lane into that shard's fan-in.
    pub ingress: Ingress,
    /// Frames above the acknowledgement stored before the restart: a resent copy of one is a
    /// duplicate.
    pub already_stored: Arc<SequenceSet>,
    /// Recovery found frames of the source above the acknowledgement it recorded
    /// ([`ResumePoint::held_above`]).
    pub held_above: bool,
}

/// Why the router refused a registration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RegisterError {
    #[error("source {id} ({}) is already connected from {peer}", kind.as_str())]
    Duplicate {
        id: u32,
        kind: SourceKind,
        peer: SocketAddr,
    },
    #[error("the daemon is shutting down")]
    ShuttingDown,
}

enum Command {
    Register {
        id: u32,
        kind: SourceKind,
        peer: SocketAddr,
        station: Option<Arc<str>>,
        reply: oneshot::Sender<Result<Registration, RegisterError>>,
    },
    Deregister {
        key: SourceKey,
        reply: oneshot::Sender<()>,
    },
    List {
        reply: oneshot::Sender<Vec<SourceSnapshot>>,
    },
    Lend {
        key: SourceKey,
        reply: oneshot::Sender<Option<(usize, Ingress)>>,
    },
}

/// The cloneable handle every connection and monitor holds.
#[derive(Debug, Clone)]
pub struct RouterHandle {
    tx: mpsc::Sender<Command>,
}

struct Router {
    commands: mpsc::Receiver<Command>,
    /// The sources connected now.
    sources: HashMap<SourceKey, Arc<Source>>,
    /// Every source ever seen, connected or not.
    known: HashMap<SourceKey, ResumePoint>,
    /// Shared by every source with nothing stored above its acknowledgement, so that such a
    /// source costs no allocation of its own.
    nothing_stored: Arc<SequenceSet>,
    /// Each shard's fan-in, by shard; empty once the drain has started.
    ingress: Vec<Ingress>,
    drain: CancellationToken,
    stats: Stats,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Register { id, kind, .. } => write!(f, "Register({id}, {kind:?})"),
            Command::Deregister { key, .. } => write!(f, "Deregister({key:?})"),
            Command::List { .. } => f.write_str("List"),
            Command::Lend { key, .. } => write!(f, "Lend({key:?})"),
        }
    }
}

/// The actor is gone: only possible once the daemon has finished.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the router has stopped")]
pub struct RouterGone;

impl RouterHandle {
    /// Spawns the router with each shard's fan-in (`ingress[k]` is shard `k`'s) and the resume
    /// points recovered from the archive. It stops admitting at `drain` and exits when every handle
    /// is dropped.
    ///
    /// It is not part of the drain's task set on purpose: connections deregister as the last step
    /// of the drain, and a monitor may still hold a handle, so the router outlives the drain.
    pub(crate) fn spawn(
        ingress: Vec<Ingress>,
        stats: Stats,
        drain: CancellationToken,
        recovered: HashMap<SourceKey, ResumePoint>,
    ) -> RouterHandle {
        let (tx, commands) = mpsc::channel(256);
        let nothing_stored = Arc::new(SequenceSet::default());
        let known = recovered
            .into_iter()
            .map(|(key, point)| {
                let already_stored = match point.already_stored.is_empty() {
                    true => Arc::clone(&nothing_stored),
                    false => point.already_stored,
                };
                let point = ResumePoint {
                    already_stored,
                    ..point
                };
                (key, point)
            })
            .collect();
        let router = Router {
            commands,
            sources: HashMap::new(),
            known,
            nothing_stored,
            ingress,
            drain,
            stats,
        };
        tokio::spawn(router.run());
        RouterHandle { tx }
    }

    async fn request<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, RouterGone> {
        let (reply, response) = oneshot::channel();
        self.tx.send(make(reply)).await.map_err(|_| RouterGone)?;
        response.await.map_err(|_| RouterGone)
    }

    /// Registers a connected source.
    pub(crate) async fn register(
        &self,
        id: u32,
        kind: SourceKind,
        peer: SocketAddr,
    ) -> Result<Registration, RegisterError> {
        self.register_as(id, kind, peer, None).await
    }

    /// Registers a source fed by a ground-segment link, named by its `station` (link and APID).
    pub(crate) async fn register_as(
        &self,
        id: u32,
        kind: SourceKind,
        peer: SocketAddr,
        station: Option<Arc<str>>,
    ) -> Result<Registration, RegisterError> {
        self.request(|reply| Command::Register {
            id,
            kind,
            peer,
            station,
            reply,
        })
        .await
        .unwrap_or(Err(RegisterError::ShuttingDown))
    }

    /// Removes a source once its connection is finished with it. Its ledger is kept for the next
    /// connection with the same key.
    pub(crate) async fn deregister(&self, key: SourceKey) -> Result<(), RouterGone> {
        self.request(|reply| Command::Deregister { key, reply })
            .await
    }

    /// The shard of source `key` and a lane into its fan-in, for frames that do not go through
    /// the source's registration (a link's backfill); `None` once the
    /// drain has started.
    pub(crate) async fn lend(&self, key: SourceKey) -> Option<(usize, Ingress)> {
        self.request(|reply| Command::Lend { key, reply })
            .await
            .ok()
            .flatten()
    }

    /// Every connected source with its counters, ordered by kind and id.
    pub async fn sources(&self) -> Result<Vec<SourceSnapshot>, RouterGone> {
        self.request(|reply| Command::List { reply }).await
    }
}

impl Router {
    async fn run(mut self) {
        loop {
            tokio::select! {
                _ = self.drain.cancelled(), if !self.ingress.is_empty() => {
                    tracing::debug!("router: drain started, refusing new sources");
                    self.ingress.clear();
                }
                command = self.commands.recv() => match command {
                    Some(command) => self.handle(command),
                    None => break,
                },
            }
        }
        tracing::debug!("router: every handle dropped, stopping");
    }

    fn handle(&mut self, command: Command) {
        match command {
            Command::Register {
                id,
                kind,
                peer,
                station,
                reply,
            } => {
                let _ = reply.send(self.register(id, kind, peer, station));
            }
            Command::Deregister { key, reply } => {
                if let Some(source) = self.sources.remove(&key) {
                    source.ledger().set_connected(false);
                    self.forget_acknowledged(key);
                    self.stats.source_deregistered();
                    tracing::info!(
                        source_id = key.1,
                        kind = key.0.as_str(),
                        acked = source.last_acked(),
                        "source deregistered"
                    );
                }
                let _ = reply.send(());
            }
            Command::Lend { key, reply } => {
                let shard = shard_of(key, self.ingress.len());
                let lent = self
                    .ingress
                    .get(shard)
                    .map(|ingress| (shard, ingress.clone()));
                let _ = reply.send(lent);
            }
            Command::List { reply } => {
                let mut list: Vec<_> = self.sources.values().map(|s| s.snapshot()).collect();
                list.sort_by_key(|s| (s.kind.to_byte(), s.id));
                let _ = reply.send(list);
            }
        }
    }

    fn register(
        &mut self,
        id: u32,
        kind: SourceKind,
        peer: SocketAddr,
        station: Option<Arc<str>>,
    ) -> Result<Registration, RegisterError> {
        let key = (kind, id);
        let shard = shard_of(key, self.ingress.len());
        let Some(ingress) = self.ingress.get(shard) else {
            return Err(RegisterError::ShuttingDown);
        };
        if let Some(existing) = self.sources.get(&key) {
            return Err(RegisterError::Duplicate {
                id,
                kind,
                peer: existing.peer,
            });
        }
        let point = self.known.entry(key).or_insert_with(|| ResumePoint {
            ledger: Arc::new(Ledger::new(None)),
            already_stored: Arc::clone(&self.nothing_stored),
            held_above: false,
        });
        let mut source = Source::new(id, kind, peer, Arc::clone(&point.ledger));
        source.station = station;
        let source = Arc::new(source);
        let (already_stored, held_above) = (Arc::clone(&point.already_stored), point.held_above);
        self.sources.insert(key, Arc::clone(&source));
        self.stats.source_registered();
        tracing::info!(
            source_id = id,
            kind = kind.as_str(),
            %peer,
            shard,
            resume_after = source.last_acked(),
            accepted = source.ledger().accepted(),
            stored_above = already_stored.len(),
            "source registered"
        );
        Ok(Registration {
            source,
            shard,
            ingress: ingress.clone(),
            already_stored,
            held_above,
        })
    }

    /// Drops what the source's acknowledgement now covers from the frames recovery found stored
    /// above it: a connection that ends before its source resent those frames leaves the rest
    /// for the next one.
    fn forget_acknowledged(&mut self, key: SourceKey) {
        let Some(point) = self.known.get_mut(&key) else {
            return;
        };
        let Some(acked) = point.ledger.acked() else {
            return;
        };
        if point
            .already_stored
            .first()
            .is_some_and(|first| first <= acked)
        {
            let mut rest = Arc::unwrap_or_clone(std::mem::take(&mut point.already_stored));
            rest.remove_through(acked);
            point.already_stored = match rest.is_empty() {
                true => Arc::clone(&self.nothing_stored),
                false => Arc::new(rest),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::batch::Batch;
    use crate::domain::frame::Priority;
    use crate::domain::ledger::Run;
    use crate::pipeline::fan_in::priority_fan_in;

    /// A router whose archive recovered live uplink 7 with nothing acknowledged and frames 0..=9
    /// stored (what a drain leaves for the frames of its last sync).
    fn recovered_router() -> RouterHandle {
        let (ingress, _fan_in) = priority_fan_in(64, 64, 256, Stats::new());
        let mut stored = SequenceSet::default();
        stored.insert_run(0, 9);
        let point = ResumePoint::recovered(None, stored, true);
        let recovered = HashMap::from([((SourceKind::LiveUplink, 7), point)]);
        RouterHandle::spawn(
            vec![ingress],
            Stats::new(),
            CancellationToken::new(),
            recovered,
        )
    }

    /// Live uplink 7 connects.
    async fn connect(router: &RouterHandle) -> Registration {
        let peer = "127.0.0.1:1".parse().unwrap();
        router
            .register(7, SourceKind::LiveUplink, peer)
            .await
            .unwrap()
    }

    /// Its connection ends.
    async fn disconnect(router: &RouterHandle, registration: Registration) {
        drop(registration);
        router
            .deregister((SourceKind::LiveUplink, 7))
            .await
            .unwrap();
    }

    fn stored_above(registration: &Registration) -> Vec<(u64, u64)> {
        registration.already_stored.runs().collect()
    }

    /// A routine batch of `source` holding `sequences`.
    fn batch(source: &Arc<Source>, sequences: std::ops::Range<u64>) -> Batch {
        let now = std::time::Instant::now();
        let mut batch = Batch::new(Arc::clone(source), Priority::Routine, now, 8);
        for sequence in sequences {
            batch.push(sequence, 0..0);
        }
        batch
    }

    #[tokio::test]
    async fn a_connection_that_stores_nothing_keeps_what_was_stored_before_it() {
        let router = recovered_router();
        let first = connect(&router).await;
        assert_eq!(stored_above(&first), [(0, 9)]);
        disconnect(&router, first).await;

        let second = connect(&router).await;
        assert_eq!(second.source.last_acked(), None);
        assert_eq!(
            stored_above(&second),
            [(0, 9)],
            "frames 0..=9 are in the archive: a resend of them is a duplicate"
        );
    }

    #[tokio::test]
    async fn what_the_acknowledgement_covers_leaves_the_stored_set() {
        let router = recovered_router();
        let first = connect(&router).await;
        // The source resends 0..=9 (duplicates) and sends 10 and 11, which are stored.
        first.source.record(&[
            Run {
                priority: Priority::Routine,
                frames: 0,
                last_sequence: 9,
            },
            Run {
                priority: Priority::Routine,
                frames: 2,
                last_sequence: 11,
            },
        ]);
        first
            .source
            .stored(batch(&first.source, 10..12).span().unwrap());
        assert_eq!(first.source.last_acked(), Some(11));
        disconnect(&router, first).await;

        let second = connect(&router).await;
        assert_eq!(second.source.last_acked(), Some(11));
        assert!(stored_above(&second).is_empty());
    }

    /// A source that reconnects while frames of its last connection are still on their way to
    /// the archive continues that connection's ledger: its resent copies are duplicates, and the
    /// acknowledgement passes them once the originals are stored.
    #[tokio::test]
    async fn a_reconnection_continues_the_ledger_of_frames_still_in_flight() {
        let router = recovered_router();
        let first = connect(&router).await;
        first.source.record(&[Run {
            priority: Priority::Routine,
            frames: 5,
            last_sequence: 14,
        }]);
        let in_flight = batch(&first.source, 10..15);
        disconnect(&router, first).await;

        let second = connect(&router).await;
        assert_eq!(second.source.last_acked(), None);
        assert_eq!(second.source.ledger().accepted(), Some(14));
        assert!(!second.source.is_settled());
        in_flight.source.stored(in_flight.span().unwrap());
        assert_eq!(second.source.last_acked(), Some(14));
        assert!(second.source.is_settled());
    }
}
