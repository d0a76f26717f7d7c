//! Each ground-segment link's counters (`[[links]]`): bumped by its connection once per read,
//! read by the monitor (`/stats`' `links`, `/metrics`' `aggregator_link_*`).

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::{Mutex, PoisonError};

use crate::domain::transfer_frame_counts::TransferFrameCounts;

/// Where a ground-segment link stands with its station.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    /// Waiting for a station to connect (tcp-listen) or to send (udp).
    Listening,
    /// Dialling the station (tcp-connect).
    Connecting,
    /// A station is connected (tcp), or datagrams arrive (udp).
    Connected,
    /// Waiting before dialling again after a failure (tcp-connect).
    Backoff,
    /// Stopped by the drain.
    Stopped,
}

/// One link's counters: bumped by its connection once per read, read by the monitor.
#[derive(Debug)]
pub(crate) struct LinkCounters {
    pub name: String,
    pub transport: &'static str,
    state: AtomicU8,
    connections: AtomicU64,
    packets: AtomicU64,
    bytes: AtomicU64,
    copies: AtomicU64,
    gaps: AtomicU64,
    unmatched: AtomicU64,
    bad_input: AtomicU64,
    skipped_bytes: AtomicU64,
    trailing_bytes: AtomicU64,
    ax25_frames: AtomicU64,
    other_port_frames: AtomicU64,
    /// With a frame framing: added to once per read, under a lock so that a snapshot reads one
    /// read's counts together (a frame counted good and its packets extracted).
    frames: Option<Mutex<TransferFrameCounts>>,
    last_error: Mutex<Option<String>>,
}

/// One reading of a link's counters (`/stats`' `links`, `/metrics`' `aggregator_link_*`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LinkSnapshot {
    pub name: String,
    pub transport: &'static str,
    pub state: LinkState,
    /// Connections made (accepted or dialled) since the start.
    pub connections: u64,
    /// Packets stored: new ones, not copies.
    pub packets: u64,
    pub bytes: u64,
    /// Packets another link of the group (or this one) had delivered already: dropped.
    pub copies: u64,
    /// Packets missing from the link's own sequence counts, per APID.
    pub gaps: u64,
    /// Packets no rule maps to a source: dropped (`unmatched = "refuse"`) or stored as
    /// `default_source` (`unmatched = "default"`); and packets dropped because their source
    /// could not be registered (taken by another connection).
    pub unmatched: u64,
    /// Packets or connections refused as malformed: a bad version or length, a broken escape.
    pub bad_input: u64,
    /// Bytes passed over looking for a sync marker.
    pub skipped_bytes: u64,
    /// Bytes after the packet in a KISS data frame (a decoder's newline, padding): not stored.
    pub trailing_bytes: u64,
    /// AX.25 UI frames read (`kiss_payload = "ax25"`), whatever became of their packets.
    pub ax25_frames: u64,
    /// KISS data frames of a port other than `kiss_port`: passed over.
    pub other_port_frames: u64,
    /// With `framing = "tm-frames"` or `"aos-frames"`: the frames' quality, flattened into
    /// the link's object on `/stats`.
    #[serde(flatten)]
    pub frames: Option<TransferFrameCounts>,
    /// Why the last connection ended or the last dial failed.
    pub last_error: Option<String>,
}

impl LinkState {
    const ALL: [LinkState; 5] = [
        LinkState::Listening,
        LinkState::Connecting,
        LinkState::Connected,
        LinkState::Backoff,
        LinkState::Stopped,
    ];
}

impl LinkCounters {
    /// The counters of a new link, all zero; with `frames`, its frame quality too.
    pub(super) fn new(name: &str, transport: &'static str, frames: bool) -> LinkCounters {
        LinkCounters {
            name: name.to_owned(),
            transport,
            state: AtomicU8::new(0),
            connections: AtomicU64::new(0),
            packets: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            copies: AtomicU64::new(0),
            gaps: AtomicU64::new(0),
            unmatched: AtomicU64::new(0),
            bad_input: AtomicU64::new(0),
            skipped_bytes: AtomicU64::new(0),
            trailing_bytes: AtomicU64::new(0),
            ax25_frames: AtomicU64::new(0),
            other_port_frames: AtomicU64::new(0),
            frames: frames.then(Mutex::default),
            last_error: Mutex::new(None),
        }
    }

    pub(crate) fn set_state(&self, state: LinkState) {
        let index = LinkState::ALL.iter().position(|&s| s == state).unwrap_or(0);
        self.state.store(index as u8, Relaxed);
    }

    pub(crate) fn connected(&self) {
        self.connections.fetch_add(1, Relaxed);
        self.set_state(LinkState::Connected);
    }

    pub(crate) fn stored(&self, packets: u64, bytes: u64) {
        self.packets.fetch_add(packets, Relaxed);
        self.bytes.fetch_add(bytes, Relaxed);
    }

    pub(crate) fn copies(&self, packets: u64) {
        self.copies.fetch_add(packets, Relaxed);
    }

    pub(crate) fn gaps(&self, packets: u64) {
        self.gaps.fetch_add(packets, Relaxed);
    }

    pub(crate) fn unmatched(&self, packets: u64) {
        self.unmatched.fetch_add(packets, Relaxed);
    }

    pub(crate) fn bad_input(&self) {
        self.bad_input.fetch_add(1, Relaxed);
    }

    pub(crate) fn skipped(&self, bytes: u64) {
        self.skipped_bytes.fetch_add(bytes, Relaxed);
    }

    pub(crate) fn trailing(&self, bytes: u64) {
        self.trailing_bytes.fetch_add(bytes, Relaxed);
    }

    pub(crate) fn ax25_frame(&self) {
        self.ax25_frames.fetch_add(1, Relaxed);
    }

    pub(crate) fn other_port(&self) {
        self.other_port_frames.fetch_add(1, Relaxed);
    }

    /// Adds a read's frame counts (a link without frames keeps none); bad packets inside
    /// frames are the link's bad input.
    pub(crate) fn frames(&self, read: &TransferFrameCounts) {
        self.bad_input.fetch_add(read.bad_packets, Relaxed);
        if let Some(frames) = &self.frames {
            let mut frames = frames.lock().unwrap_or_else(PoisonError::into_inner);
            frames.add(read);
        }
    }

    pub(crate) fn failed(&self, why: String) {
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(why);
    }

    pub fn snapshot(&self) -> LinkSnapshot {
        let state = LinkState::ALL
            .get(self.state.load(Relaxed) as usize)
            .copied()
            .unwrap_or(LinkState::Listening);
        LinkSnapshot {
            name: self.name.clone(),
            transport: self.transport,
            state,
            connections: self.connections.load(Relaxed),
            packets: self.packets.load(Relaxed),
            bytes: self.bytes.load(Relaxed),
            copies: self.copies.load(Relaxed),
            gaps: self.gaps.load(Relaxed),
            unmatched: self.unmatched.load(Relaxed),
            bad_input: self.bad_input.load(Relaxed),
            skipped_bytes: self.skipped_bytes.load(Relaxed),
            trailing_bytes: self.trailing_bytes.load(Relaxed),
            ax25_frames: self.ax25_frames.load(Relaxed),
            other_port_frames: self.other_port_frames.load(Relaxed),
            frames: self.frames.as_ref().map(|frames| {
                let frames = frames.lock().unwrap_or_else(PoisonError::into_inner);
                frames.clone()
            }),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        }
    }
}
