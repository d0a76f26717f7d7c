//! The counters of each TM server and forward (`[[tm_servers]]`, `[[tm_forwards]]`): a set per
//! output, fixed from the config before anything runs, so read without a lock.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

/// One TM output's counters; its tasks count into them through a [`TmOutput`].
#[derive(Debug, Default)]
pub(super) struct TmCounters {
    pub(super) name: String,
    connections: AtomicU64,
    packets_sent: AtomicU64,
    bytes_sent: AtomicU64,
    frames_not_packets: AtomicU64,
    frames_skipped: AtomicU64,
    connections_refused: AtomicU64,
    send_errors: AtomicU64,
}

impl TmCounters {
    /// The counters of the output `name`, all zero.
    pub(super) fn named(name: String) -> Arc<TmCounters> {
        Arc::new(TmCounters {
            name,
            ..TmCounters::default()
        })
    }

    /// A reading of the counters (atomic loads).
    pub(super) fn snapshot(&self) -> TmStats {
        TmStats {
            name: self.name.clone(),
            connections: self.connections.load(Relaxed),
            packets_sent: self.packets_sent.load(Relaxed),
            bytes_sent: self.bytes_sent.load(Relaxed),
            frames_not_packets: self.frames_not_packets.load(Relaxed),
            frames_skipped: self.frames_skipped.load(Relaxed),
            connections_refused: self.connections_refused.load(Relaxed),
            send_errors: self.send_errors.load(Relaxed),
        }
    }
}

/// One reading of a TM output's counters (`[[tm_servers]]`, `[[tm_forwards]]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct TmStats {
    pub name: String,
    /// Connections open now (a server's).
    pub connections: u64,
    /// Space packets written to connections or sent as datagrams.
    pub packets_sent: u64,
    /// Bytes of them, the framing included.
    pub bytes_sent: u64,
    /// Frames of the served kinds, sources and APIDs skipped for not being one whole space packet
    /// (each connection counts its own).
    pub frames_not_packets: u64,
    /// Frames of its sources it skipped because retention deleted them before it read them
    /// (with `from_oldest_on_gap`; each connection counts its own).
    pub frames_skipped: u64,
    /// Connections closed at once: the server was at its `max_connections`.
    pub connections_refused: u64,
    /// Datagrams that could not be sent (a forward's; a refusal from an ICMP among them).
    pub send_errors: u64,
}

/// A TM output's handle to its counters.
#[derive(Debug, Clone)]
pub(crate) struct TmOutput(pub(super) Arc<TmCounters>);

impl TmOutput {
    pub(crate) fn connection_opened(&self) {
        self.0.connections.fetch_add(1, Relaxed);
    }

    pub(crate) fn connection_closed(&self) {
        self.0.connections.fetch_sub(1, Relaxed);
    }

    pub(crate) fn sent(&self, packets: u64, bytes: u64) {
        self.0.packets_sent.fetch_add(packets, Relaxed);
        self.0.bytes_sent.fetch_add(bytes, Relaxed);
    }

    pub(crate) fn not_packets(&self, frames: u64) {
        self.0.frames_not_packets.fetch_add(frames, Relaxed);
    }

    pub(crate) fn skipped(&self, frames: u64) {
        self.0.frames_skipped.fetch_add(frames, Relaxed);
    }

    pub(crate) fn refused(&self) {
        self.0.connections_refused.fetch_add(1, Relaxed);
    }

    pub(crate) fn send_error(&self) {
        self.0.send_errors.fetch_add(1, Relaxed);
    }
}
