//! Each ground-segment link's counters (`[[links]]`): bumped by its connection once per read,
//! read by the monitor (`/stats`' `links`, `/metrics`' `aggregator_link_*`).
//!
//! A link is a station, and an operator asks first whether the station is alive: the counters
//! outlive the link's connections, so the time of its last packet (`last_seen`) does too, and a
//! station that went away a day ago still says when it was last heard. The station's state is
//! derived when read, from the link's state and that time against `quiet_after_ms`, so the ingest
//! path pays one relaxed atomic max per read for it and never a timer. `last_seen` is a received time
//! on the archive clock (`crate::domain::clock`), never the station's own earth-received time:
//! stations whose clocks disagree, or that send no earth time at all, are judged by one clock.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use serde::Serializer;

use crate::domain::clock::ArchiveClock;
use crate::domain::display::unix_ns_to_rfc3339;
use crate::domain::transfer_frame_counts::TransferFrameCounts;

use super::backfill::{BackfillCounters, BackfillSnapshot};
use super::pass::{PassCounters, PassSnapshot};

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

/// Whether a link's station is alive, as an operator asks it: derived from the link's state and
/// the time of its last packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StationState {
    /// Connected, and a packet came within `quiet_after_ms`.
    Receiving,
    /// Connected, and no packet within `quiet_after_ms` (between passes, or a stalled decoder).
    Quiet,
    /// Not connected: no station connected or dialled (tcp), no datagram yet (udp), or stopped.
    Disconnected,
}

impl StationState {
    /// Every state, in the order `/metrics` lists them.
    pub const ALL: [StationState; 3] = [
        StationState::Receiving,
        StationState::Quiet,
        StationState::Disconnected,
    ];

    /// The state of a link in `state` whose last packet came at `last_seen_ns` (0: never), at
    /// `now_ns`, with packets at most `quiet_after_ns` apart while receiving. A packet stamped
    /// after `now_ns` (read between the two clock readings) is a packet just now.
    pub fn of(state: LinkState, last_seen_ns: u64, now_ns: u64, quiet_after_ns: u64) -> Self {
        let recent = last_seen_ns > 0 && now_ns.saturating_sub(last_seen_ns) <= quiet_after_ns;
        match (state, recent) {
            (LinkState::Connected, true) => StationState::Receiving,
            (LinkState::Connected, false) => StationState::Quiet,
            _ => StationState::Disconnected,
        }
    }

    /// Its name on `/stats` and in `/metrics`' `state` label.
    pub fn as_str(self) -> &'static str {
        match self {
            StationState::Receiving => "receiving",
            StationState::Quiet => "quiet",
            StationState::Disconnected => "disconnected",
        }
    }
}

/// What names a link where its counters are read: its `[[links]]` name, the station it belongs
/// to and the merge group of its sources, so that an operator sums links per station and per
/// group (`/metrics`' `aggregator_link_info`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkNames<'a> {
    pub name: &'a str,
    /// The link's `station`, or its name.
    pub station: &'a str,
    /// The link's `group`; `None` for a link of no group.
    pub group: Option<&'a str>,
}

impl<'a> LinkNames<'a> {
    /// A link that is its own station, of no group.
    pub fn alone(name: &'a str) -> LinkNames<'a> {
        LinkNames {
            name,
            station: name,
            group: None,
        }
    }
}

/// When a link's station is quiet (`quiet_after_ms`) and when its pass ends
/// (`archive.pass_gap_ms`): the silences that tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StationBounds {
    pub quiet_after: Duration,
    pub pass_gap: Duration,
}

/// One link's counters: bumped by its connection once per read, read by the monitor.
#[derive(Debug)]
pub(crate) struct LinkCounters {
    pub name: String,
    /// The link's station and merge group ([`LinkNames`]).
    station: String,
    group: Option<String>,
    pub transport: &'static str,
    state: AtomicU8,
    /// `quiet_after_ms`, in nanoseconds.
    quiet_after_ns: u64,
    /// The archive clock at the last read that held a packet; 0 before the first.
    last_seen_ns: AtomicU64,
    /// The received time of the newest frame of the link the archive held at the start; 0 for
    /// none. Apart from `last_seen_ns`, which only reads move: the time between the two is the
    /// daemon's downtime, not a silence of the station's.
    archived_last_seen_ns: AtomicU64,
    /// The longest time between two such reads, in nanoseconds.
    longest_silence_ns: AtomicU64,
    /// Its passes, as the station received them.
    pass: PassCounters,
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
    backfill: BackfillCounters,
}

/// One reading of a link's counters (`/stats`' `links`, `/metrics`' `aggregator_link_*`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LinkSnapshot {
    pub name: String,
    /// The link's `station`, or its name.
    pub station: String,
    /// The link's merge group (`group`); `null` on `/stats` for a link of no group.
    pub group: Option<String>,
    pub transport: &'static str,
    pub state: LinkState,
    /// Whether the station is alive: from `state`, `last_seen` and `quiet_after_ms`.
    pub station_state: StationState,
    /// The archive clock when the link last read a whole packet (stored, a copy or unmatched),
    /// in nanoseconds since the Unix epoch; RFC 3339 on `/stats`, `null` before the first.
    #[serde(serialize_with = "rfc3339")]
    pub last_seen: Option<u64>,
    /// The longest time between two reads that held packets, in nanoseconds (seconds on
    /// `/stats`): what the station's normal silence between passes is.
    #[serde(rename = "longest_silence_seconds", serialize_with = "seconds")]
    pub longest_silence_ns: u64,
    /// Its passes since the start, and what it received of the current or last one.
    pub pass: PassSnapshot,
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
    /// What the station's recordings brought through the spool directory.
    pub backfill: BackfillSnapshot,
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

fn rfc3339<S: Serializer>(ns: &Option<u64>, serializer: S) -> Result<S::Ok, S::Error> {
    match ns {
        Some(ns) => serializer.serialize_str(&unix_ns_to_rfc3339(*ns)),
        None => serializer.serialize_none(),
    }
}

fn seconds<S: Serializer>(ns: &u64, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(Duration::from_nanos(*ns).as_secs_f64())
}

impl LinkCounters {
    /// The counters of a new link, all zero; with `frames`, its frame quality too. Its station
    /// is quiet once no packet came for `quiet_after`, and a silence past `pass_gap` ends a pass.
    pub(super) fn new(
        names: LinkNames<'_>,
        transport: &'static str,
        frames: bool,
        bounds: StationBounds,
    ) -> LinkCounters {
        let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        LinkCounters {
            name: names.name.to_owned(),
            station: names.station.to_owned(),
            group: names.group.map(str::to_owned),
            transport,
            state: AtomicU8::new(0),
            quiet_after_ns: nanos(bounds.quiet_after),
            last_seen_ns: AtomicU64::new(0),
            archived_last_seen_ns: AtomicU64::new(0),
            longest_silence_ns: AtomicU64::new(0),
            pass: PassCounters::new(nanos(bounds.pass_gap)),
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
            backfill: BackfillCounters::default(),
        }
    }

    /// Fresh counters of the same link, for a backfill's reading of a recording: what the link's
    /// checks refuse in a file is the file's, not the station's live input.
    pub(crate) fn for_recording(&self) -> LinkCounters {
        let names = LinkNames {
            name: &self.name,
            station: &self.station,
            group: self.group.as_deref(),
        };
        let bounds = StationBounds {
            quiet_after: Duration::from_nanos(self.quiet_after_ns),
            pass_gap: Duration::MAX,
        };
        LinkCounters::new(names, self.transport, self.frames.is_some(), bounds)
    }

    /// Frames the link's checks refused: bad input, other KISS ports' frames, transfer frames
    /// dropped or with a bad FECF, packets dropped incomplete.
    pub(crate) fn rejected(&self) -> u64 {
        let frames = (self.frames.as_ref()).map_or(0, |frames| {
            let f = frames.lock().unwrap_or_else(PoisonError::into_inner);
            f.frames_bad_fecf + f.frames_dropped + f.packets_dropped_incomplete
        });
        self.bad_input.load(Relaxed) + self.other_port_frames.load(Relaxed) + frames
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
        self.pass.received(packets);
    }

    /// A read held whole packets at `at_ns` (the archive clock): the station was heard. Once
    /// per read, not per packet. The newest time wins: two connections of one link (a station
    /// reconnecting before its old connection is closed) never move it back.
    /// Returns whether the read began a pass (the first, or one after a silence longer than
    /// `archive.pass_gap_ms`).
    pub(crate) fn seen(&self, at_ns: u64) -> bool {
        let before = self.last_seen_ns.fetch_max(at_ns, SeqCst);
        let began = self.pass.heard(at_ns, before);
        let silence = at_ns.saturating_sub(before);
        if before > 0 && silence > self.longest_silence_ns.load(Relaxed) {
            self.longest_silence_ns.fetch_max(silence, Relaxed);
        }
        began
    }

    /// The archive holds a packet the station delivered at `at_ns` before the daemon started
    /// (the archive's query `last_seen`): `last_seen` starts there. Not a silence: the
    /// time since then includes the daemon's own downtime.
    pub(crate) fn heard_before(&self, at_ns: u64) {
        self.archived_last_seen_ns.fetch_max(at_ns, Relaxed);
    }

    pub(crate) fn copies(&self, packets: u64) {
        self.copies.fetch_add(packets, Relaxed);
        self.pass.received(packets);
    }

    pub(crate) fn gaps(&self, packets: u64) {
        self.gaps.fetch_add(packets, Relaxed);
        self.pass.missed(packets);
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

    /// The counters now, the station's state judged by the archive clock.
    pub fn snapshot(&self) -> LinkSnapshot {
        self.snapshot_at(ArchiveClock::process().now())
    }

    /// The counters, the station's state judged at `now_ns`.
    fn snapshot_at(&self, now_ns: u64) -> LinkSnapshot {
        let state = LinkState::ALL
            .get(self.state.load(Relaxed) as usize)
            .copied()
            .unwrap_or(LinkState::Listening);
        let live = self.last_seen_ns.load(SeqCst);
        let last_seen_ns = live.max(self.archived_last_seen_ns.load(Relaxed));
        LinkSnapshot {
            name: self.name.clone(),
            station: self.station.clone(),
            group: self.group.clone(),
            transport: self.transport,
            state,
            station_state: StationState::of(state, last_seen_ns, now_ns, self.quiet_after_ns),
            last_seen: (last_seen_ns > 0).then_some(last_seen_ns),
            longest_silence_ns: self.longest_silence_ns.load(Relaxed),
            pass: self.pass.snapshot(&self.last_seen_ns, now_ns),
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
            backfill: self.backfill.snapshot(),
        }
    }

    /// The link's backfill counters.
    pub(crate) fn backfill(&self) -> &BackfillCounters {
        &self.backfill
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000_000;
    const T0: u64 = 1_700_000_000 * SECOND;

    fn link() -> LinkCounters {
        LinkCounters::new(
            LinkNames::alone("gs"),
            "tcp-listen",
            false,
            StationBounds {
                quiet_after: Duration::from_secs(60),
                pass_gap: Duration::from_secs(60),
            },
        )
    }

    /// Connected, a station receives while its packets come within the bound (inclusive), is
    /// quiet past it, and is disconnected whenever the link is not connected, however recent
    /// its last packet.
    #[test]
    fn the_station_state_follows_the_link_and_the_last_packet() {
        let link = link();
        let state = |now| link.snapshot_at(now).station_state;
        assert_eq!(state(T0), StationState::Disconnected, "never connected");
        link.connected();
        assert_eq!(state(T0), StationState::Quiet, "connected, nothing sent");
        link.seen(T0);
        assert_eq!(state(T0), StationState::Receiving);
        assert_eq!(
            state(T0 + 60 * SECOND),
            StationState::Receiving,
            "one a minute"
        );
        assert_eq!(state(T0 + 60 * SECOND + 1), StationState::Quiet);
        assert_eq!(
            state(T0 - SECOND),
            StationState::Receiving,
            "stamped after now"
        );
        link.set_state(LinkState::Listening);
        assert_eq!(state(T0), StationState::Disconnected);
        link.set_state(LinkState::Stopped);
        assert_eq!(state(T0), StationState::Disconnected);
    }

    /// `last_seen` outlives the connection and never goes back; the longest silence counts only
    /// between packets, never from the start to the first.
    #[test]
    fn last_seen_outlives_the_connection_and_the_longest_silence_is_kept() {
        let link = link();
        assert_eq!(link.snapshot_at(T0).last_seen, None);
        link.connected();
        link.seen(T0);
        assert_eq!(link.snapshot_at(T0).longest_silence_ns, 0, "the first");
        link.seen(T0 + 600 * SECOND);
        link.seen(T0 + 610 * SECOND);
        link.seen(T0 + 5 * SECOND); // an older connection's read, late: not back in time
        link.set_state(LinkState::Listening);
        let snapshot = link.snapshot_at(T0 + 3600 * SECOND);
        assert_eq!(snapshot.last_seen, Some(T0 + 610 * SECOND));
        assert_eq!(snapshot.longest_silence_ns, 600 * SECOND);
        assert_eq!(snapshot.station_state, StationState::Disconnected);
    }

    /// `/stats` shows `last_seen` in RFC 3339 (`null` before the first packet) and the longest
    /// silence in seconds.
    #[test]
    fn stats_show_last_seen_in_rfc3339_and_the_silence_in_seconds() {
        let link = link();
        let json = serde_json::to_value(link.snapshot_at(T0)).unwrap();
        assert_eq!(json["last_seen"], serde_json::Value::Null);
        assert_eq!(json["station_state"], "disconnected");
        link.connected();
        link.seen(T0);
        link.seen(T0 + 1_500_000_000);
        let json = serde_json::to_value(link.snapshot_at(T0 + 2 * SECOND)).unwrap();
        assert_eq!(json["last_seen"], unix_ns_to_rfc3339(T0 + 1_500_000_000));
        assert_eq!(json["longest_silence_seconds"], 1.5);
        assert_eq!(json["station_state"], "receiving");
    }
}
