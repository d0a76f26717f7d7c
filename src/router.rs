//! The router actor: the one owner of the table of connected sources.
//!
//! Connections register at runtime and the router answers with everything a source needs to feed
//! the pipeline: its shared [`Source`] record, its [`Ingress`] into the priority fan-in, and where to
//! resume. Frames themselves do not pass through the actor's mailbox: the router hands each source
//! its lane into the fan-in, so the data path has one hop less and the actor is never a bottleneck
//! or a place where frames queue outside the bounded lanes.
//!
//! The router keeps, per source, the last sequence stored by an earlier connection, so a source that
//! reconnects is told where to resume and its resent frames are recognised as duplicates. When the
//! drain starts it drops its own `Ingress` and refuses new registrations; the fan-in closes once the
//! last connection has admitted what it read.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::fan_in::Ingress;
use crate::frame::SourceKind;
use crate::sequence_set::SequenceSet;
use crate::source::{Source, SourceSnapshot};
use crate::stats::Stats;

/// Sources are told apart by kind and id: a replay of source 7 may run while source 7 is live.
pub type SourceKey = (SourceKind, u32);

/// Where a source resumes: what an earlier connection, or the archive before a restart, stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResumePoint {
    /// Every frame of the source up to this sequence is stored.
    pub after: Option<u64>,
    /// Frames above `after` that are stored too: emergencies that overtook routine frames before
    /// the connection ended. A resent copy of one is a duplicate.
    pub already_stored: Arc<SequenceSet>,
}

/// What a registered source receives.
#[derive(Debug)]
pub struct Registration {
    pub source: Arc<Source>,
    pub ingress: Ingress,
    /// Where the source resumes.
    pub resume: ResumePoint,
}

/// Why the router refused a registration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
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
        reply: oneshot::Sender<Result<Registration, RegisterError>>,
    },
    Deregister {
        key: SourceKey,
        reply: oneshot::Sender<()>,
    },
    List {
        reply: oneshot::Sender<Vec<SourceSnapshot>>,
    },
}

/// The cloneable handle every connection and monitor holds.
#[derive(Debug, Clone)]
pub struct RouterHandle {
    tx: mpsc::Sender<Command>,
}

struct Router {
    commands: mpsc::Receiver<Command>,
    sources: HashMap<SourceKey, Arc<Source>>,
    resume: HashMap<SourceKey, ResumePoint>,
    /// To the archive: sources whose acknowledgement may move with no batch of theirs stored.
    resumed: mpsc::Sender<Arc<Source>>,
    ingress: Option<Ingress>,
    drain: CancellationToken,
    stats: Stats,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Register { id, kind, .. } => write!(f, "Register({id}, {kind:?})"),
            Command::Deregister { key, .. } => write!(f, "Deregister({key:?})"),
            Command::List { .. } => f.write_str("List"),
        }
    }
}

/// The actor is gone: only possible once the daemon has finished.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the router has stopped")]
pub struct RouterGone;

impl RouterHandle {
    /// Spawns the router with the resume points recovered from the archive. It stops admitting at
    /// `drain` and exits when every handle is dropped.
    ///
    /// It is not part of the drain's task set on purpose: connections deregister as the last step
    /// of the drain, and a monitor may still hold a handle, so the router outlives the drain.
    ///
    /// A source that registers with frames stored above its resume point is also sent on
    /// `resumed`, to the archive ([`crate::archive::ArchiveSink::resumed`]).
    pub fn spawn(
        ingress: Ingress,
        stats: Stats,
        drain: CancellationToken,
        resume: HashMap<SourceKey, ResumePoint>,
        resumed: mpsc::Sender<Arc<Source>>,
    ) -> RouterHandle {
        let (tx, commands) = mpsc::channel(256);
        let router = Router {
            commands,
            sources: HashMap::new(),
            resume,
            resumed,
            ingress: Some(ingress),
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
    pub async fn register(
        &self,
        id: u32,
        kind: SourceKind,
        peer: SocketAddr,
    ) -> Result<Registration, RegisterError> {
        self.request(|reply| Command::Register {
            id,
            kind,
            peer,
            reply,
        })
        .await
        .unwrap_or(Err(RegisterError::ShuttingDown))
    }

    /// Removes a source once its connection is finished with it. Its last acknowledged sequence is
    /// kept for the next connection with the same key.
    pub async fn deregister(&self, key: SourceKey) -> Result<(), RouterGone> {
        self.request(|reply| Command::Deregister { key, reply })
            .await
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
                _ = self.drain.cancelled(), if self.ingress.is_some() => {
                    tracing::debug!("router: drain started, refusing new sources");
                    self.ingress = None;
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
                reply,
            } => {
                let _ = reply.send(self.register(id, kind, peer));
            }
            Command::Deregister { key, reply } => {
                if let Some(source) = self.sources.remove(&key) {
                    // The connection waited for everything it accepted to be stored, so its
                    // acknowledgement covers all of that. What was stored before it (by an earlier
                    // connection, or before a restart) and lies above the acknowledgement is still
                    // stored: a connection that ends before its source resent those frames must
                    // not make the next one take them again.
                    let after = source.last_acked();
                    let mut already_stored = self
                        .resume
                        .remove(&key)
                        .map(|earlier| Arc::unwrap_or_clone(earlier.already_stored))
                        .unwrap_or_default();
                    if let Some(acked) = after {
                        already_stored.remove_through(acked);
                    }
                    let point = ResumePoint {
                        after,
                        already_stored: Arc::new(already_stored),
                    };
                    self.resume.insert(key, point);
                    self.stats.source_deregistered();
                    tracing::info!(
                        source_id = key.1,
                        kind = key.0.as_str(),
                        "source deregistered"
                    );
                }
                let _ = reply.send(());
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
    ) -> Result<Registration, RegisterError> {
        let Some(ingress) = &self.ingress else {
            return Err(RegisterError::ShuttingDown);
        };
        let key = (kind, id);
        if let Some(existing) = self.sources.get(&key) {
            return Err(RegisterError::Duplicate {
                id,
                kind,
                peer: existing.peer,
            });
        }
        let resume = self.resume.get(&key).cloned().unwrap_or_default();
        let source = Arc::new(Source::new(id, kind, peer, resume.after));
        self.sources.insert(key, Arc::clone(&source));
        self.stats.source_registered();
        tracing::info!(
            source_id = id,
            kind = kind.as_str(),
            %peer,
            resume_after = ?resume.after,
            stored_above = resume.already_stored.len(),
            "source registered"
        );
        if !resume.already_stored.is_empty() {
            // Full only if the archive is over a thousand registrations behind. The loss then is
            // that this source, if it resends nothing new, resends the same frames after the next
            // restart, where they are dropped again.
            if let Err(mpsc::error::TrySendError::Full(_)) =
                self.resumed.try_send(Arc::clone(&source))
            {
                tracing::debug!(
                    source_id = id,
                    "archive behind on registrations; this source's acknowledgement is recorded once it sends a new frame"
                );
            }
        }
        Ok(Registration {
            source,
            ingress: ingress.clone(),
            resume,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fan_in::priority_fan_in;
    use crate::frame::Priority;
    use crate::source::Run;

    /// A router whose archive recovered live uplink 7 with nothing acknowledged and frames 0..=9
    /// stored (what a drain leaves for the frames of its last sync).
    fn recovered_router() -> RouterHandle {
        recovered_router_and_archive().0
    }

    /// The same, with what the router sends the archive.
    fn recovered_router_and_archive() -> (RouterHandle, mpsc::Receiver<Arc<Source>>) {
        let (ingress, _fan_in) = priority_fan_in(64, 64, 256, Stats::new());
        let mut stored = SequenceSet::default();
        stored.insert_run(0, 9);
        let point = ResumePoint {
            after: None,
            already_stored: Arc::new(stored),
        };
        let resume = HashMap::from([((SourceKind::LiveUplink, 7), point)]);
        let (resumed, archive) = mpsc::channel(1);
        let router = RouterHandle::spawn(
            ingress,
            Stats::new(),
            CancellationToken::new(),
            resume,
            resumed,
        );
        (router, archive)
    }

    /// Live uplink 7 connects.
    async fn connect(router: &RouterHandle) -> Registration {
        let peer = "127.0.0.1:1".parse().unwrap();
        router
            .register(7, SourceKind::LiveUplink, peer)
            .await
            .unwrap()
    }

    /// Its connection ends, everything it accepted stored.
    async fn disconnect(router: &RouterHandle, registration: Registration) {
        drop(registration);
        router
            .deregister((SourceKind::LiveUplink, 7))
            .await
            .unwrap();
    }

    fn stored_above(registration: &Registration) -> Vec<(u64, u64)> {
        registration.resume.already_stored.runs().collect()
    }

    #[tokio::test]
    async fn a_connection_that_stores_nothing_keeps_what_was_stored_before_it() {
        let router = recovered_router();
        let first = connect(&router).await;
        assert_eq!(stored_above(&first), [(0, 9)]);
        disconnect(&router, first).await;

        let second = connect(&router).await;
        assert_eq!(second.resume.after, None);
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
        // The source resends nothing it knows stored and sends 10 and 11, which are stored.
        first.source.record(&[Run {
            priority: Priority::Routine,
            frames: 2,
            last_sequence: 11,
        }]);
        first.source.stored(Priority::Routine, 2);
        assert_eq!(first.source.last_acked(), Some(11));
        disconnect(&router, first).await;

        let second = connect(&router).await;
        assert_eq!(second.resume.after, Some(11));
        assert!(stored_above(&second).is_empty());
    }

    /// Only a source with frames stored above its resume point can be acknowledged without a
    /// batch reaching the archive (its resent copies are dropped): the archive hears of that one,
    /// and of no other.
    #[tokio::test]
    async fn the_archive_hears_of_a_source_that_resumes_below_stored_frames() {
        let (router, mut archive) = recovered_router_and_archive();
        let first = connect(&router).await;
        let told = archive.try_recv().expect("the archive is told");
        assert!(Arc::ptr_eq(&told, &first.source));

        let peer = "127.0.0.1:2".parse().unwrap();
        let other = router.register(8, SourceKind::LiveUplink, peer).await;
        assert!(other.unwrap().resume.already_stored.is_empty());
        assert!(archive.try_recv().is_err(), "nothing stored above uplink 8");
    }
}
