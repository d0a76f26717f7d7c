//! The load client's view of the daemon's acknowledgements, for the throttle run: how many frames
//! they cover, and how long after its send each frame was covered.
//!
//! A source may forget a frame only once an ACK covers it, so what the daemon's backpressure is
//! worth to a source shows here, not in the daemon's own counters: frames taken in and never
//! acknowledged only move the wait from the socket to the page cache.
//!
//! An uplink writes a chunk of frames at a time; once the socket has taken its last byte, the
//! chunk's frames are in its socket, and that instant is their send time. [`Unacked`] keeps (the
//! chunk's last sequence, that instant) per chunk. An ACK of sequence `s` covers every frame up to
//! `s`, so each chunk whose last frame it covers leaves the record, with the time since its send
//! as the latency of each of its frames.
//!
//! Each source's highest acknowledged sequence is kept too: the replication run reads the stream
//! back and looks for every frame up to it there (`stream_check`).

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use aggregator::protocol::ingest::{ClientCodec, ServerMessage};
use bytes::BytesMut;
use tokio::io::AsyncReadExt;
use tokio::net::tcp::OwnedReadHalf;
use tokio_util::codec::Decoder;

use crate::control::{AckCounts, LatencySummary, Samples};

/// Every uplink's acknowledgements, summed; latencies only between `START` and `END`.
#[derive(Debug)]
pub struct Acks {
    started: Instant,
    recording: AtomicBool,
    sent: AtomicU64,
    acked: AtomicU64,
    latency: Samples,
    /// Each source's highest acknowledged sequence, by source id.
    through: Mutex<BTreeMap<u32, u64>>,
}

impl Acks {
    pub fn new() -> Acks {
        Acks {
            started: Instant::now(),
            recording: AtomicBool::new(false),
            sent: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            latency: Samples::default(),
            through: Mutex::default(),
        }
    }

    /// (source id, highest acknowledged sequence) of each source an ACK came for, by id.
    pub fn through(&self) -> Vec<(u32, u64)> {
        let through = self.through.lock().unwrap_or_else(|e| e.into_inner());
        through
            .iter()
            .map(|(&id, &sequence)| (id, sequence))
            .collect()
    }

    /// The parent's `START`: the counts now, and latencies from here on.
    pub fn start(&self) -> AckCounts {
        self.recording.store(true, Relaxed);
        self.counts(None)
    }

    /// The parent's `END`: the counts now, and the latencies since `START`.
    pub fn end(&self) -> AckCounts {
        self.recording.store(false, Relaxed);
        self.counts(Some(self.latency.take()))
    }

    fn counts(&self, latency: Option<LatencySummary>) -> AckCounts {
        AckCounts {
            at_ns: self.started.elapsed().as_nanos() as u64,
            frames_sent: self.sent.load(Relaxed),
            frames_acked: self.acked.load(Relaxed),
            latency,
            samples_dropped: self.latency.dropped(),
        }
    }
}

/// One uplink's chunks written and not yet acknowledged in full.
#[derive(Debug)]
pub struct Unacked {
    acks: Arc<Acks>,
    source_id: u32,
    frames_per_chunk: u64,
    state: Mutex<UplinkState>,
}

#[derive(Debug, Default)]
struct UplinkState {
    /// (last sequence, send time) of each chunk not yet covered, oldest first.
    chunks: VecDeque<(u64, Instant)>,
    /// The highest sequence acknowledged so far.
    acked: u64,
}

impl Unacked {
    pub fn new(acks: Arc<Acks>, source_id: u32, frames_per_chunk: u64) -> Unacked {
        Unacked {
            acks,
            source_id,
            frames_per_chunk,
            state: Mutex::default(),
        }
    }

    /// A chunk ending at `last_sequence` is in the socket now.
    pub fn sent(&self, last_sequence: u64) {
        self.acks.sent.fetch_add(self.frames_per_chunk, Relaxed);
        if let Ok(mut state) = self.state.lock() {
            state.chunks.push_back((last_sequence, Instant::now()));
        }
    }

    /// The daemon acknowledged every frame up to `sequence`.
    fn acknowledged(&self, sequence: u64) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        self.acks
            .acked
            .fetch_add(sequence.saturating_sub(state.acked), Relaxed);
        state.acked = state.acked.max(sequence);
        if let Ok(mut through) = self.acks.through.lock() {
            through.insert(self.source_id, state.acked);
        }
        let now = Instant::now();
        let recording = self.acks.recording.load(Relaxed);
        while let Some(&(_, sent_at)) = state.chunks.front().filter(|c| c.0 <= sequence) {
            state.chunks.pop_front();
            if recording {
                let latency = now.duration_since(sent_at).as_nanos() as u64;
                self.acks.latency.push(latency, self.frames_per_chunk);
            }
        }
    }
}

/// Reads an uplink's messages until its connection ends, settling its chunks at each ACK.
pub async fn read_acks(mut reader: OwnedReadHalf, unacked: Arc<Unacked>) {
    let mut codec = ClientCodec::default();
    let mut buf = BytesMut::with_capacity(4096);
    loop {
        match codec.decode(&mut buf) {
            Ok(Some(ServerMessage::Ack { sequence })) => unacked.acknowledged(sequence),
            Ok(Some(ServerMessage::Close { .. } | ServerMessage::Refused { .. })) | Err(_) => {
                return
            }
            Ok(Some(
                ServerMessage::Welcome { .. }
                | ServerMessage::Pong(_)
                | ServerMessage::Catalog { .. },
            )) => {}
            Ok(None) => match reader.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            },
        }
    }
}
