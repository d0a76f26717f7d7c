//! A registered source: its identity, its counters, and its acknowledgement ledger.
//!
//! The connection task admits frames and the archive task stores them. Counters are atomics, so the
//! router lists every source with plain loads. What is acknowledged lives in the source's
//! [`Ledger`], which outlives the connection (the router keeps it per source across
//! reconnections); the source records each read's runs in it, and the archive marks each stored
//! batch in it through the batch's source.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::clock::ArchiveClock;
use super::ledger::{AtomicSeq, Ledger, Run, Span};
use crate::domain::frame::{Priority, SourceKind};

/// One connected source, shared by its connection, the router's table and every batch it sent.
#[derive(Debug)]
pub struct Source {
    pub id: u32,
    pub kind: SourceKind,
    pub peer: SocketAddr,
    pub connected_at: SystemTime,
    /// For a ground-segment link's source: the link and the APID (`gs-north APID 100`).
    pub station: Option<Arc<str>>,
    /// A backfill's frames (a link's backfill): below what the source's live ledger
    /// took, so they keep a ledger of their own, acknowledged by the local archive alone and
    /// never written as the source's watermark.
    pub backfill: bool,
    frames: AtomicU64,
    emergency_frames: AtomicU64,
    bytes: AtomicU64,
    last_sequence: AtomicSeq,
    stored: AtomicU64,
    ledger: Arc<Ledger>,
    /// The connection was welcomed: it receives catalogs.
    takes_catalogs: AtomicBool,
    /// The newest catalog version the source acknowledged holding.
    catalog_version: AtomicSeq,
    /// The last emergency frame the archive handed to its emergency journal.
    journaled: AtomicSeq,
    /// When the connection last brought frames, and its longest silence.
    silence: Silence,
}

/// A source's counters at one moment, for listings and monitoring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceSnapshot {
    pub id: u32,
    pub kind: SourceKind,
    pub peer: SocketAddr,
    pub connected_at: SystemTime,
    /// The link and APID of a ground-segment link's source.
    pub station: Option<Arc<str>>,
    /// Frames admitted into the pipeline.
    pub frames: u64,
    pub emergency_frames: u64,
    pub bytes: u64,
    /// Highest sequence admitted.
    pub last_sequence: Option<u64>,
    /// Highest sequence stored along with everything the source sent before it: what its next
    /// ACK carries.
    pub last_acked: Option<u64>,
    /// Frames admitted and not yet stored.
    pub lag: u64,
    /// Whether the connection receives catalogs (once it is welcomed).
    pub takes_catalogs: bool,
    /// The newest catalog version the source acknowledged holding.
    pub catalog_version: Option<u64>,
    /// Since the connection's last frame (since it connected, before the first).
    pub silence: Duration,
    /// The longest the connection was silent before a frame came.
    pub longest_silence: Duration,
}

impl Source {
    /// A source connected now, continuing `ledger`: frames up to its acknowledgement are stored.
    pub fn new(id: u32, kind: SourceKind, peer: SocketAddr, ledger: Arc<Ledger>) -> Self {
        ledger.set_connected(true);
        Source {
            id,
            kind,
            peer,
            connected_at: SystemTime::now(),
            station: None,
            backfill: false,
            frames: AtomicU64::new(0),
            emergency_frames: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            last_sequence: AtomicSeq::new(ledger.accepted()),
            stored: AtomicU64::new(0),
            ledger,
            takes_catalogs: AtomicBool::new(false),
            catalog_version: AtomicSeq::new(None),
            journaled: AtomicSeq::new(None),
            silence: Silence::new(ArchiveClock::process().now()),
        }
    }

    /// Live uplink `id`, connected from loopback with a fresh ledger: for tests of the stages.
    #[cfg(test)]
    pub(crate) fn for_test(id: u32) -> Arc<Source> {
        let peer = SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, 1));
        Arc::new(Source::new(
            id,
            SourceKind::LiveUplink,
            peer,
            Default::default(),
        ))
    }

    /// Called by the connection once it is welcomed: from then on it receives catalogs.
    pub(crate) fn takes_catalogs(&self) {
        self.takes_catalogs.store(true, Relaxed);
    }

    /// Called by the connection for each CATALOG_ACK that names a version it sent.
    pub(crate) fn holds_catalog(&self, version: u64) {
        self.catalog_version.raise(Some(version));
    }

    /// Called when a batch of the source (its frames' `span`) enters the fan-in.
    pub(crate) fn admitted(&self, span: Span, payload_bytes: u64) {
        self.frames.fetch_add(span.frames, Relaxed);
        if span.priority == Priority::Emergency {
            self.emergency_frames.fetch_add(span.frames, Relaxed);
        }
        self.bytes.fetch_add(payload_bytes, Relaxed);
        // A read's emergencies are admitted before its routine frames, which may be older.
        self.last_sequence.raise(Some(span.last));
    }

    /// Called by the connection with each read's runs, in arrival order, before their batches are
    /// admitted.
    pub(crate) fn record(&self, runs: &[Run]) {
        self.ledger.record(runs);
    }

    /// Called by the connection with each read that brought frames: when it was decoded.
    pub(crate) fn heard(&self, at: Instant) {
        self.silence.heard(ArchiveClock::process().at(at));
    }

    /// Called by the archive once a batch of this source is stored: moves the acknowledgement.
    pub(crate) fn stored(&self, span: Span) {
        self.stored.fetch_add(span.frames, Relaxed);
        self.ledger.stored(span.priority, span.first, span.last);
    }

    /// Called by the archive once a batch of this source is stored, when its acknowledgement waits
    /// for a replica ([`crate::domain::replication`]): counted, the acknowledgement left alone.
    pub(crate) fn stored_here(&self, span: Span) {
        self.stored.fetch_add(span.frames, Relaxed);
    }

    /// Whether an emergency batch from sequence `first` on, once stored by itself, would move the
    /// acknowledgement: every frame before it is stored, or in the archive's emergency journal.
    /// Only then is the journal's sync worth its cost: an emergency behind routine frames not yet
    /// stored is acknowledged with them in any case.
    pub(crate) fn acknowledged_by_journal(&self, first: u64) -> bool {
        self.ledger.settled_before(first, self.journaled.load())
    }

    /// Called by the archive when it hands emergency frames up to `last` to its journal.
    pub(crate) fn journaled(&self, last: u64) {
        self.journaled.raise(Some(last));
    }

    /// Whether every frame recorded so far is stored.
    pub(crate) fn is_settled(&self) -> bool {
        self.ledger.is_settled()
    }

    /// The source's ledger, which outlives this connection.
    pub(crate) fn ledger(&self) -> &Arc<Ledger> {
        &self.ledger
    }

    /// The highest sequence such that it and every frame the source sent before it are stored:
    /// what the connection acknowledges and a reconnecting source resumes after.
    pub(crate) fn last_acked(&self) -> Option<u64> {
        self.ledger.acked()
    }

    pub fn snapshot(&self) -> SourceSnapshot {
        let frames = self.frames.load(Relaxed);
        let (silence, longest_silence) = self.silence.at(ArchiveClock::process().now());
        SourceSnapshot {
            id: self.id,
            kind: self.kind,
            peer: self.peer,
            connected_at: self.connected_at,
            station: self.station.clone(),
            frames,
            emergency_frames: self.emergency_frames.load(Relaxed),
            bytes: self.bytes.load(Relaxed),
            last_sequence: self.last_sequence.load(),
            last_acked: self.last_acked(),
            lag: frames.saturating_sub(self.stored.load(Relaxed)),
            takes_catalogs: self.takes_catalogs.load(Relaxed),
            catalog_version: self.catalog_version.load(),
            silence,
            longest_silence,
        }
    }
}

/// How long a connection's source has been silent, for an alert on a source quiet for longer
/// than it usually is (`/metrics`' `aggregator_source_silence_seconds` against the history of
/// `aggregator_source_longest_silence_seconds`). Nanoseconds on the process's archive clock,
/// which only moves forward within a run: a step of the wall clock changes neither figure.
/// Atomics, as the other counters, so the connection never waits for the monitor.
#[derive(Debug)]
struct Silence {
    /// When the last frames came; the connection's start before the first.
    last_ns: AtomicU64,
    /// The longest time between two of those that a frame ended.
    longest_ns: AtomicU64,
}

impl Silence {
    fn new(now_ns: u64) -> Silence {
        Silence {
            last_ns: AtomicU64::new(now_ns),
            longest_ns: AtomicU64::new(0),
        }
    }

    /// Frames came at `at_ns`. The raise keeps the latest time when two station tasks of a
    /// link report reads decoded out of order.
    fn heard(&self, at_ns: u64) {
        let last = self.last_ns.fetch_max(at_ns, Relaxed);
        self.longest_ns
            .fetch_max(at_ns.saturating_sub(last), Relaxed);
    }

    /// The silence at `now_ns`, and the longest before it.
    fn at(&self, now_ns: u64) -> (Duration, Duration) {
        let since = now_ns.saturating_sub(self.last_ns.load(Relaxed));
        let longest = self.longest_ns.load(Relaxed);
        (Duration::from_nanos(since), Duration::from_nanos(longest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000_000;

    /// The silence runs from the start, then from each read's frames; the longest is the longest
    /// that frames ended, not the one still running, and a read reported late changes nothing.
    #[test]
    fn silence_runs_from_the_last_frames_and_the_longest_is_one_that_ended() {
        let silence = Silence::new(100 * SECOND);
        assert_eq!(silence.at(103 * SECOND).0, Duration::from_secs(3));
        silence.heard(102 * SECOND);
        silence.heard(112 * SECOND);
        silence.heard(113 * SECOND);
        silence.heard(111 * SECOND);
        let (since, longest) = silence.at(143 * SECOND);
        assert_eq!(since, Duration::from_secs(30));
        assert_eq!(longest, Duration::from_secs(10));
    }
}
