//! `[[links]]`: ground-segment inputs, each a named link that takes CCSDS space packets from a
//! station as the station sends them (`docs/ground-segment.md`): on a TCP connection it accepts
//! or dials, or in UDP datagrams; back to back, after a sync marker, behind a length field, or
//! KISS-framed (the packet alone or in an AX.25 UI frame), or inside CCSDS transfer frames (TM,
//! AOS). Which source a packet becomes and how urgent it is are rules on its APID, or on the
//! AX.25 sender's callsign.
//!
//! Layout: this file holds the keys (the struct, the values they take, their defaults);
//! `framing.rs` reads the framing keys into the protocol's framings and frame layer;
//! `sources.rs` the rules that say which source a packet becomes and what its reception metadata
//! names; `validate.rs` checks a link's keys, and the links against each other.

mod framing;
mod sources;
mod validate;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use super::de::{millis, parsed};
use crate::domain::frame::SourceKind;
use crate::protocol::ccsds::{MAX_APID, MAX_PACKET};

pub(super) use validate::validate;

/// How a link reaches its station.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Transport {
    /// Stations connect to `address`.
    TcpListen,
    /// The daemon dials `address` (a KISS TNC, a station's telemetry server), and again with
    /// backoff whenever the connection is lost.
    TcpConnect,
    /// Datagrams to `address`, one packet (or transfer frame) each.
    Udp,
}

impl Transport {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Transport::TcpListen => "tcp-listen",
            Transport::TcpConnect => "tcp-connect",
            Transport::Udp => "udp",
        }
    }
}

/// How packets are delimited on the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FramingName {
    Ccsds,
    CcsdsAsm,
    LengthPrefix,
    Kiss,
    /// TM transfer frames (CCSDS 132.0-B) of `frame_length` bytes, packets inside.
    TmFrames,
    /// AOS transfer frames (CCSDS 732.0-B), likewise.
    AosFrames,
}

/// What a KISS data frame holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KissPayload {
    /// The space packet alone (a KISS server of ours, kiss3).
    #[default]
    Packet,
    /// An AX.25 UI frame around it, as TNCs, Direwolf and SDR decoders send what they received.
    Ax25,
}

/// What happens to a packet whose APID no rule maps to a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Unmatched {
    /// Dropped and counted (`unmatched` on `/stats`).
    #[default]
    Refuse,
    /// Stored as `default_source`, and counted.
    Default,
}

/// The generic length field, as written (`length = { offset, size, adjustment, strip }`).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LengthFieldConfig {
    #[serde(default)]
    pub offset: usize,
    pub size: usize,
    #[serde(default)]
    pub adjustment: i64,
    #[serde(default)]
    pub strip: usize,
}

/// Where a length-prefixed frame's header holds the earth-receive time: 8 bytes, big-endian, at
/// `offset` from the frame's start, counting `unit`s since the Unix epoch
/// (`earth_time = { offset, unit }`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EarthTimeField {
    pub offset: usize,
    pub unit: TimeUnit,
}

/// What an earth-receive time field counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TimeUnit {
    S,
    Ms,
    Us,
    Ns,
}

impl EarthTimeField {
    /// The time in `header` (the frame's bytes before its packet) in nanoseconds since the Unix
    /// epoch; `None` when the header is too short or the time is past what nanoseconds hold.
    pub(crate) fn read(&self, header: &[u8]) -> Option<u64> {
        let bytes = header.get(self.offset..self.offset.checked_add(8)?)?;
        let count = u64::from_be_bytes(bytes.try_into().ok()?);
        let per = match self.unit {
            TimeUnit::S => 1_000_000_000,
            TimeUnit::Ms => 1_000_000,
            TimeUnit::Us => 1_000,
            TimeUnit::Ns => 1,
        };
        count.checked_mul(per)
    }
}

/// A header field that marks an emergency: the byte at `offset` of the packet, masked, equals
/// `value`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldRule {
    pub offset: usize,
    #[serde(default = "all_bits")]
    pub mask: u8,
    pub value: u8,
}

fn all_bits() -> u8 {
    0xFF
}

/// One ground-segment link.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkConfig {
    /// Names the link in logs, `/stats`, `/metrics` and the dashboard.
    pub name: String,
    pub transport: Transport,
    /// Bound (tcp-listen, udp) or dialled (tcp-connect, `HOST:PORT`, looked up at each dial).
    pub address: String,
    pub framing: FramingName,
    /// The generic length field (`framing = "length-prefix"` only).
    #[serde(default)]
    pub length: Option<LengthFieldConfig>,
    /// What a KISS data frame holds (`framing = "kiss"` only).
    #[serde(default)]
    pub kiss_payload: KissPayload,
    /// Only the KISS data frames of this port (0 to 15) are taken; every port's by default.
    #[serde(default)]
    pub kiss_port: Option<u8>,
    /// AX.25 source callsign (`N0CALL-1`) to source id, tried before the APID rules
    /// (`kiss_payload = "ax25"` only).
    #[serde(default)]
    pub callsign_sources: BTreeMap<String, u32>,
    /// The transfer frames' length, marker excluded (frame framings only).
    #[serde(default)]
    pub frame_length: Option<usize>,
    /// Each frame follows the attached sync marker `1A CF FC 1D` (a CADU); else back to back.
    #[serde(default = "yes")]
    pub frame_marker: bool,
    /// Frames arrive pseudo-randomised (CCSDS 131.0-B): the link removes it.
    #[serde(default)]
    pub derandomize: bool,
    /// Frames end with the frame error control field (CRC-16), checked.
    #[serde(default)]
    pub fecf: bool,
    /// AOS frames carry the operational control field (a TM frame's header says itself).
    #[serde(default)]
    pub ocf: bool,
    /// The spacecraft whose frames are read; others' are dropped and counted.
    #[serde(default)]
    pub spacecraft_id: Option<u16>,
    /// The virtual channels whose packets are read; others' frames are dropped and counted.
    #[serde(default)]
    pub virtual_channels: Vec<u8>,
    /// AOS: the frame header error control field follows the header (passed over).
    #[serde(default)]
    pub frame_header_error_control: bool,
    /// AOS: the insert zone's length in bytes (passed over).
    #[serde(default)]
    pub insert_zone_length: usize,
    /// Bytes of Reed-Solomon check symbols after each frame, left in by the station (passed
    /// over, not decoded).
    #[serde(default)]
    pub rs_check_symbols_length: usize,
    /// A longer packet closes the connection (or drops the datagram).
    #[serde(default = "max_packet_bytes")]
    pub max_packet_bytes: usize,
    /// The kind of the link's sources.
    #[serde(default = "live", deserialize_with = "parsed")]
    pub kind: SourceKind,
    /// The earth-receive time in a length-prefixed frame's header (`length-prefix` only).
    #[serde(default)]
    pub earth_time: Option<EarthTimeField>,
    /// The ground station the link belongs to, in its frames' reception metadata (the link's name
    /// by default).
    #[serde(default)]
    pub station: Option<String>,
    /// The link carries playback of the spacecraft's recorder, not realtime telemetry.
    #[serde(default)]
    pub playback: bool,
    /// Of `virtual_channels`, those that carry playback (frame framings only).
    #[serde(default)]
    pub playback_virtual_channels: Vec<u8>,
    /// Links of one group are redundant stations of one spacecraft: each packet is stored once.
    #[serde(default)]
    pub group: Option<String>,
    /// Packets per APID the merge remembers, to know a copy from a new packet.
    #[serde(default = "merge_window")]
    pub merge_window: usize,
    /// Every packet of the link is this source.
    #[serde(default)]
    pub source_id: Option<u32>,
    /// One source per APID: `apid_base + APID`, for the APIDs in `apids`.
    #[serde(default)]
    pub apid_base: Option<u32>,
    /// The APIDs `apid_base` covers, first and last (all by default).
    #[serde(default = "all_apids")]
    pub apids: [u16; 2],
    /// APID to source id, tried before `apid_base`.
    #[serde(default)]
    pub apid_sources: BTreeMap<String, u32>,
    #[serde(default)]
    pub unmatched: Unmatched,
    /// The source of unmatched packets, with `unmatched = "default"`.
    #[serde(default)]
    pub default_source: Option<u32>,
    /// Packets of these APIDs take the emergency lane.
    #[serde(default)]
    pub emergency_apids: Vec<u16>,
    /// Or packets whose header byte matches.
    #[serde(default)]
    pub emergency_field: Option<FieldRule>,
    /// The first wait before a tcp-connect link dials again; it doubles up to the next key.
    #[serde(
        default = "reconnect_min",
        rename = "reconnect_min_ms",
        deserialize_with = "millis"
    )]
    pub reconnect_min: Duration,
    #[serde(
        default = "reconnect_max",
        rename = "reconnect_max_ms",
        deserialize_with = "millis"
    )]
    pub reconnect_max: Duration,
    /// A connected station that sent no packet for this long is `quiet`, no longer `receiving`
    /// (`/stats`' `station_state`, `/metrics`' `aggregator_link_station_state`).
    #[serde(
        default = "quiet_after",
        rename = "quiet_after_ms",
        deserialize_with = "millis"
    )]
    pub quiet_after: Duration,
    /// A directory the daemon watches for the station's recordings to backfill
    /// (`docs/ground-segment.md`, "Backfill"); none by default.
    #[serde(default)]
    pub spool_dir: Option<std::path::PathBuf>,
}

fn max_packet_bytes() -> usize {
    MAX_PACKET
}

fn yes() -> bool {
    true
}

fn live() -> SourceKind {
    SourceKind::LiveUplink
}

fn merge_window() -> usize {
    4096
}

fn all_apids() -> [u16; 2] {
    [0, MAX_APID]
}

fn reconnect_min() -> Duration {
    Duration::from_millis(100)
}

fn reconnect_max() -> Duration {
    Duration::from_secs(5)
}

fn quiet_after() -> Duration {
    Duration::from_secs(60)
}

impl LinkConfig {
    /// The bind address of a tcp-listen or udp link.
    pub(crate) fn bind_address(&self) -> Option<SocketAddr> {
        self.address.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use crate::config::Config;

    fn quiet_after(key: &str) -> Result<Duration, String> {
        let toml = format!(
            "[[links]]\nname = \"gs\"\ntransport = \"tcp-listen\"\naddress = \"127.0.0.1:0\"\n\
             framing = \"ccsds\"\nsource_id = 1\n{key}\n"
        );
        let config = Config::parse(&toml, Path::new("links.toml")).map_err(|e| e.to_string())?;
        Ok(config.links[0].quiet_after)
    }

    /// A station is quiet after a minute without packets unless `quiet_after_ms` says otherwise;
    /// zero or a negative count is refused, naming the key.
    #[test]
    fn quiet_after_ms_defaults_to_a_minute_and_refuses_zero() {
        assert_eq!(quiet_after(""), Ok(Duration::from_secs(60)));
        assert_eq!(
            quiet_after("quiet_after_ms = 300000"),
            Ok(Duration::from_secs(300))
        );
        let refused = quiet_after("quiet_after_ms = 0").expect_err("0 ms is refused");
        assert!(
            refused.contains("links.quiet_after_ms: must be at least 1 ms"),
            "{refused}"
        );
        let negative = quiet_after("quiet_after_ms = -1").expect_err("-1 ms is refused");
        assert!(negative.contains("quiet_after_ms"), "{negative}");
    }
}
