//! `[[links]]`: ground-segment inputs, each a named link that takes CCSDS space packets from a
//! station as the station sends them (`docs/ground-segment.md`): on a TCP connection it accepts
//! or dials, or in UDP datagrams; back to back, after a sync marker, behind a length field, or
//! KISS-framed (the packet alone or in an AX.25 UI frame), or inside CCSDS transfer frames (TM,
//! AOS). Which source a packet becomes and how urgent it is are rules on its APID, or on the
//! AX.25 sender's callsign.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use super::bounds::{self, Bound};
use super::de::{millis, parsed};
use super::error::{Invalid, Problem};
use crate::domain::frame::SourceKind;
use crate::domain::reception::{Callsign, Delivery};
use crate::protocol::ccsds::{Framing, LengthField, MAX_APID, MAX_PACKET};
use crate::protocol::transfer_frames::{
    TransferFrameFormat, TransferFrameKind, TransferFrameReader, TransferFrameStream,
    MAX_TRANSFER_FRAME,
};

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

/// Reed-Solomon check symbols after a frame at most: 32 a codeword, interleaved 8 deep.
const MAX_CHECK_SYMBOLS: usize = 256;

/// The most bytes of frame header a length field's `offset` or `strip` may reach past.
const MAX_FRAME_HEADER: usize = 65_536;

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
}

/// The longest link or station name: the archive keeps each behind a one-byte length.
const MAX_NAME: usize = 255;

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

impl LinkConfig {
    /// The framing the decoder uses (valid once [`validate`] passed).
    pub(crate) fn stream_framing(&self) -> Option<Framing> {
        match self.framing {
            FramingName::Ccsds => Some(Framing::Ccsds),
            FramingName::CcsdsAsm => Some(Framing::CcsdsAsm),
            FramingName::LengthPrefix => self.length.map(|l| {
                Framing::LengthPrefix(LengthField {
                    offset: l.offset,
                    size: l.size,
                    adjustment: l.adjustment,
                    strip: l.strip,
                })
            }),
            FramingName::Kiss | FramingName::TmFrames | FramingName::AosFrames => None,
        }
    }

    /// The frames' format, with a frame framing (valid once [`validate`] passed).
    pub(crate) fn frame_format(&self) -> Option<TransferFrameFormat> {
        let kind = match self.framing {
            FramingName::TmFrames => TransferFrameKind::Tm,
            FramingName::AosFrames => TransferFrameKind::Aos,
            _ => return None,
        };
        Some(TransferFrameFormat {
            kind,
            length: self.frame_length?,
            spacecraft_id: self.spacecraft_id?,
            randomized: self.derandomize,
            fecf: self.fecf,
            ocf: self.ocf,
            header_error_control: self.frame_header_error_control,
            insert_zone: self.insert_zone_length,
        })
    }

    /// How frames lie on the stream, and the reader of their packets: a connection's (or a UDP
    /// socket's) frame layer, with a frame framing.
    pub(crate) fn frame_reader(&self) -> Option<(TransferFrameStream, TransferFrameReader)> {
        let format = self.frame_format()?;
        let stream = TransferFrameStream {
            length: format.length,
            marker: self.frame_marker,
            check_symbols: self.rs_check_symbols_length,
        };
        let reader =
            TransferFrameReader::new(format, &self.virtual_channels, self.max_packet_bytes);
        Some((stream, reader))
    }

    /// The merge group: the link's `group`, or the link alone.
    pub(crate) fn group_name(&self) -> &str {
        self.group.as_deref().unwrap_or(&self.name)
    }

    /// The sources of AX.25 senders' callsigns (valid once [`validate`] passed).
    pub(crate) fn callsign_sources(&self) -> HashMap<Callsign, u32> {
        let parsed = self.callsign_sources.iter();
        parsed
            .filter_map(|(call, &id)| Some((call.parse().ok()?, id)))
            .collect()
    }

    /// The source a packet of `apid` becomes by the APID rules (`callsign_sources` go first), or
    /// `None` when no rule maps it: the packet is then unmatched
    /// ([`LinkConfig::unmatched_source`]).
    pub(crate) fn source_of(&self, apid: u16) -> Option<u32> {
        if let Some(id) = self.source_id {
            return Some(id);
        }
        if let Some(&id) = self.apid_sources.get(&apid.to_string()) {
            return Some(id);
        }
        if let Some(base) = self.apid_base {
            if (self.apids[0]..=self.apids[1]).contains(&apid) {
                return Some(base + u32::from(apid));
            }
        }
        None
    }

    /// The source of a packet no rule maps: `default_source` with `unmatched = "default"`, none
    /// when it is refused. Counted in `unmatched` either way.
    pub(crate) fn unmatched_source(&self) -> Option<u32> {
        match self.unmatched {
            Unmatched::Refuse => None,
            Unmatched::Default => self.default_source,
        }
    }

    /// Whether source `id` receives the packets of one APID only: then its sequence is that
    /// APID's extended count; otherwise its arrival count.
    pub(crate) fn carries_count(&self, id: u32) -> bool {
        let by_callsign = self.callsign_sources.values().any(|&s| s == id);
        if self.source_id.is_some() || self.default_source == Some(id) || by_callsign {
            return false;
        }
        let in_table = self.apid_sources.values().filter(|&&s| s == id).count();
        let from_base = self
            .apid_base
            .and_then(|base| id.checked_sub(base))
            .and_then(|apid| u16::try_from(apid).ok())
            .filter(|apid| (self.apids[0]..=self.apids[1]).contains(apid))
            .filter(|apid| !self.apid_sources.contains_key(&apid.to_string()))
            .is_some();
        in_table + usize::from(from_base) == 1
    }

    /// The sources of this link that carry one APID's count ([`Self::carries_count`]), with
    /// their APID: in a merge group, the stations' sources of one APID together hold the pass.
    pub fn count_sources(&self) -> Vec<(u16, u32)> {
        let table = self
            .apid_sources
            .iter()
            .filter_map(|(apid, &id)| Some((apid.parse().ok()?, id)));
        let mut sources: Vec<(u16, u32)> = table.collect();
        if let Some(base) = self.apid_base {
            sources
                .extend((self.apids[0]..=self.apids[1]).map(|apid| (apid, base + u32::from(apid))));
        }
        sources.retain(|&(_, id)| self.carries_count(id));
        sources.sort_unstable();
        sources.dedup();
        sources
    }

    /// The sources the link may register, as ranges of ids, for the overlap check.
    fn source_ranges(&self) -> Vec<(u32, u32)> {
        let mut ranges: Vec<_> = self.source_id.iter().map(|&id| (id, id)).collect();
        ranges.extend(self.apid_sources.values().map(|&id| (id, id)));
        ranges.extend(self.callsign_sources.values().map(|&id| (id, id)));
        if let Some(base) = self.apid_base {
            let (first, last) = (self.apids[0], self.apids[1]);
            ranges.push((base + u32::from(first), base + u32::from(last)));
        }
        ranges.extend(self.default_source.map(|id| (id, id)));
        ranges
    }

    /// The bind address of a tcp-listen or udp link.
    pub(crate) fn bind_address(&self) -> Option<SocketAddr> {
        self.address.parse().ok()
    }

    fn validate(&self) -> Result<(), Invalid> {
        self.validate_address()?;
        self.validate_length()?;
        self.validate_kiss()?;
        self.validate_frames()?;
        self.validate_sources()?;
        self.validate_reception()?;
        self.validate_earth_time()?;
        bounds::check(&[
            Bound::bytes(
                "links.max_packet_bytes",
                self.max_packet_bytes,
                7..=MAX_PACKET as u64,
            ),
            Bound::count("links.merge_window", self.merge_window, 1 << 16),
            Bound::millis("links.reconnect_min_ms", self.reconnect_min),
            Bound::millis("links.reconnect_max_ms", self.reconnect_max),
        ])
    }
}

impl LinkConfig {
    /// Who delivered the link's frames, as their reception metadata names it.
    pub(crate) fn delivery(&self) -> Delivery {
        let station = self.station.as_deref().unwrap_or(&self.name);
        Delivery {
            link: self.name.as_str().into(),
            station: station.into(),
        }
    }

    /// Whether a packet of virtual channel `vc` (none outside transfer frames) is playback.
    pub(crate) fn playback_of(&self, vc: Option<u8>) -> bool {
        self.playback || vc.is_some_and(|vc| self.playback_virtual_channels.contains(&vc))
    }

    /// The names the archive keeps with each record (at most 255 bytes each), and playback
    /// channels among the channels read.
    fn validate_reception(&self) -> Result<(), Invalid> {
        if self.name.len() > MAX_NAME {
            let text = format!("{} bytes: at most {MAX_NAME}", self.name.len());
            return self.fail("links.name", text);
        }
        if let Some(station) = &self.station {
            if station.is_empty()
                || station.len() > MAX_NAME
                || station.chars().any(char::is_control)
            {
                let text = format!("{station:?}: 1 to {MAX_NAME} bytes without control characters");
                return self.fail("links.station", text);
            }
        }
        let frames = self.frame_format().is_some();
        let unread =
            (self.playback_virtual_channels.iter()).find(|vc| !self.virtual_channels.contains(vc));
        match (frames, unread) {
            (false, _) if !self.playback_virtual_channels.is_empty() => self.fail(
                "links.playback_virtual_channels",
                "is read only with framing = \"tm-frames\" or \"aos-frames\"".into(),
            ),
            (true, Some(vc)) => self.fail(
                "links.playback_virtual_channels",
                format!("{vc} is not in virtual_channels"),
            ),
            _ => Ok(()),
        }
    }

    /// The earth-receive time field: with `length-prefix` only, inside the bytes it strips.
    fn validate_earth_time(&self) -> Result<(), Invalid> {
        let Some(field) = self.earth_time else {
            return Ok(());
        };
        let length_prefix = self.framing == FramingName::LengthPrefix;
        match self.length.filter(|_| length_prefix) {
            None => self.fail(
                "links.earth_time",
                "is read only with framing = \"length-prefix\"".into(),
            ),
            Some(length) if field.offset.saturating_add(8) > length.strip => self.fail(
                "links.earth_time",
                format!(
                    "8 bytes at offset {} run past the {} header bytes the length field strips",
                    field.offset, length.strip
                ),
            ),
            Some(_) => Ok(()),
        }
    }

    /// A problem of this link's `key`.
    fn fail(&self, key: &'static str, problem: String) -> Result<(), Invalid> {
        let link = self.name.clone();
        Err(Invalid::new(key, Problem::InLink { link, problem }))
    }

    /// The name, the address for the transport, and a framing UDP can carry.
    fn validate_address(&self) -> Result<(), Invalid> {
        let fail = |key, problem| self.fail(key, problem);
        let name_ok = !self.name.is_empty()
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !name_ok {
            return Err(Invalid::new(
                "links.name",
                Problem::NotAName(self.name.clone()),
            ));
        }
        match self.transport {
            Transport::TcpListen | Transport::Udp if self.bind_address().is_none() => {
                let text = format!(
                    "{:?} is not an address to bind: expected IP:PORT, such as 0.0.0.0:7810",
                    self.address
                );
                return fail("links.address", text);
            }
            Transport::TcpConnect if !self.address.contains(':') => {
                let text = format!("{:?} is not HOST:PORT", self.address);
                return fail("links.address", text);
            }
            _ => {}
        }
        let frames = matches!(self.framing, FramingName::TmFrames | FramingName::AosFrames);
        if self.transport == Transport::Udp && self.framing != FramingName::Ccsds && !frames {
            let text = "a udp link takes one packet per datagram (framing = \"ccsds\") or one transfer frame (\"tm-frames\", \"aos-frames\")";
            return fail("links.framing", text.into());
        }
        Ok(())
    }

    /// The length field: with `length-prefix` only, and within its bounds.
    fn validate_length(&self) -> Result<(), Invalid> {
        let fail = |key, problem| self.fail(key, problem);
        match (self.framing, self.length) {
            (FramingName::LengthPrefix, None) => {
                return fail(
                    "links.length",
                    "length-prefix framing needs length = { offset, size, adjustment, strip }"
                        .into(),
                )
            }
            (FramingName::LengthPrefix, Some(l)) if !(1..=4).contains(&l.size) => {
                return fail(
                    "links.length",
                    format!("size {} is not 1, 2, 3 or 4 bytes", l.size),
                )
            }
            // Until the field has arrived the link keeps what it read: a frame header past 64 KiB
            // is a typo, and one near usize::MAX would overflow.
            (FramingName::LengthPrefix, Some(l)) if l.offset.max(l.strip) > MAX_FRAME_HEADER => {
                return fail(
                    "links.length",
                    format!(
                        "offset {} or strip {} is past {MAX_FRAME_HEADER} bytes of frame header",
                        l.offset, l.strip
                    ),
                )
            }
            (FramingName::LengthPrefix, Some(_)) => {}
            (_, Some(_)) => {
                return fail(
                    "links.length",
                    "is read only with framing = \"length-prefix\"".into(),
                )
            }
            (_, None) => {}
        }
        Ok(())
    }

    /// The rules that give packets their sources, and the APIDs they name.
    fn validate_sources(&self) -> Result<(), Invalid> {
        let fail = |key, problem| self.fail(key, problem);
        let rules = [
            self.source_id.is_some(),
            self.apid_base.is_some(),
            !self.apid_sources.is_empty(),
            !self.callsign_sources.is_empty(),
        ];
        if !rules.contains(&true) {
            return fail("links.source_id", "a link needs source_id, apid_base, apid_sources or callsign_sources: which source its packets become".into());
        }
        if self.source_id.is_some() && rules[1..3].contains(&true) {
            return fail(
                "links.source_id",
                "source_id takes every packet: apid_base and apid_sources would never apply".into(),
            );
        }
        for apid in self.apid_sources.keys() {
            if !apid.parse::<u16>().is_ok_and(|a| a <= MAX_APID) {
                return fail(
                    "links.apid_sources",
                    format!("{apid:?} is not an APID (0 to 2047)"),
                );
            }
        }
        if self.apids[0] > self.apids[1] || self.apids[1] > MAX_APID {
            return fail(
                "links.apids",
                format!("{:?} is not [first, last] within 0 to 2047", self.apids),
            );
        }
        if self
            .apid_base
            .is_some_and(|base| base.checked_add(u32::from(self.apids[1])).is_none())
        {
            return fail(
                "links.apid_base",
                "apid_base + the last APID is beyond 4294967295".into(),
            );
        }
        if self.unmatched == Unmatched::Default && self.default_source.is_none() {
            return fail("links.unmatched", "\"default\" needs default_source".into());
        }
        if let Some(apid) = self.emergency_apids.iter().find(|&&a| a > MAX_APID) {
            return fail(
                "links.emergency_apids",
                format!("{apid} is not an APID (0 to 2047)"),
            );
        }
        Ok(())
    }
}

impl LinkConfig {
    /// The KISS keys: read only with KISS framing, AX.25 callsigns only with AX.25 frames.
    fn validate_kiss(&self) -> Result<(), Invalid> {
        let fail = |key, problem| self.fail(key, problem);
        let kiss = self.framing == FramingName::Kiss;
        if !kiss && self.kiss_payload != KissPayload::Packet {
            return fail(
                "links.kiss_payload",
                "is read only with framing = \"kiss\"".into(),
            );
        }
        match self.kiss_port {
            Some(_) if !kiss => {
                return fail(
                    "links.kiss_port",
                    "is read only with framing = \"kiss\"".into(),
                )
            }
            Some(port) if port > 15 => {
                return fail(
                    "links.kiss_port",
                    format!("{port} is not a KISS port (0 to 15)"),
                )
            }
            _ => {}
        }
        if !self.callsign_sources.is_empty() && self.kiss_payload != KissPayload::Ax25 {
            let text = "callsigns are read only with kiss_payload = \"ax25\"";
            return fail("links.callsign_sources", text.into());
        }
        let mut seen = HashSet::new();
        for call in self.callsign_sources.keys() {
            let parsed: Callsign = match call.parse() {
                Ok(parsed) => parsed,
                Err(err) => return fail("links.callsign_sources", err.to_string()),
            };
            // `N0CALL` and `N0CALL-0` are one station.
            if !seen.insert(parsed) {
                return fail(
                    "links.callsign_sources",
                    format!("{parsed} is listed twice"),
                );
            }
        }
        Ok(())
    }
}

impl LinkConfig {
    /// The transfer frame keys: read only with a frame framing, within what the format holds.
    fn validate_frames(&self) -> Result<(), Invalid> {
        let fail = |key, problem| self.fail(key, problem);
        let Some(format) = self.frame_format() else {
            return self.validate_no_frame_keys();
        };
        let aos = format.kind == TransferFrameKind::Aos;
        if !aos && (self.ocf || self.frame_header_error_control || self.insert_zone_length > 0) {
            let text = "ocf, frame_header_error_control and insert_zone_length are AOS keys (a TM frame's header says whether it has an OCF)";
            return fail("links.ocf", text.into());
        }
        if format.spacecraft_id > format.max_spacecraft_id() {
            let text = format!(
                "{} is beyond the frame header's {}",
                format.spacecraft_id,
                format.max_spacecraft_id()
            );
            return fail("links.spacecraft_id", text);
        }
        if self.virtual_channels.is_empty() {
            return fail(
                "links.virtual_channels",
                "list the virtual channels whose packets the link reads".into(),
            );
        }
        if let Some(vc) = self
            .virtual_channels
            .iter()
            .find(|&&vc| vc > format.max_vcid())
        {
            let text = format!(
                "{vc} is not a virtual channel of packets (0 to {})",
                format.max_vcid()
            );
            return fail("links.virtual_channels", text);
        }
        if self.rs_check_symbols_length > MAX_CHECK_SYMBOLS {
            let text = format!(
                "{} bytes: RS(255,223) interleaved 8 deep has {MAX_CHECK_SYMBOLS} bytes of check symbols",
                self.rs_check_symbols_length
            );
            return fail("links.rs_check_symbols_length", text);
        }
        if format.length > MAX_TRANSFER_FRAME || format.data_capacity() < 1 {
            let text = format!(
                "{} bytes: a frame is at most {MAX_TRANSFER_FRAME} bytes and its headers and trailer must leave a data field",
                format.length
            );
            return fail("links.frame_length", text);
        }
        Ok(())
    }

    /// Without a frame framing, the frame keys are a mistake: said so rather than ignored.
    fn validate_no_frame_keys(&self) -> Result<(), Invalid> {
        let frames = matches!(self.framing, FramingName::TmFrames | FramingName::AosFrames);
        let missing = match (self.frame_length, self.spacecraft_id) {
            (None, _) => "links.frame_length",
            (_, None) => "links.spacecraft_id",
            _ => "",
        };
        let (key, problem) = if frames {
            (missing, "is needed with a frame framing".to_string())
        } else if self.frame_length.is_some()
            || self.spacecraft_id.is_some()
            || !self.virtual_channels.is_empty()
            || self.derandomize
            || self.fecf
            || self.ocf
            || self.frame_header_error_control
            || self.insert_zone_length > 0
            || self.rs_check_symbols_length > 0
            || !self.frame_marker
        {
            let text = "frame keys are read only with framing = \"tm-frames\" or \"aos-frames\"";
            ("links.frame_length", text.to_string())
        } else {
            return Ok(());
        };
        let link = self.name.clone();
        Err(Invalid::new(key, Problem::InLink { link, problem }))
    }
}

/// Every link's own rules, then those between links: unique names, no shared bind address, and
/// no source id two links (or a link and a group other than its own) could both register.
pub(super) fn validate(links: &[LinkConfig]) -> Result<(), Invalid> {
    let mut names = HashSet::new();
    let mut bound = HashSet::new();
    for link in links {
        link.validate()?;
        if !names.insert(&link.name) {
            let problem = Problem::InLink {
                link: link.name.clone(),
                problem: "another link has this name".into(),
            };
            return Err(Invalid::new("links.name", problem));
        }
        let bind = link
            .bind_address()
            .filter(|_| link.transport != Transport::TcpConnect);
        if let Some(addr) = bind.filter(|a| a.port() != 0) {
            if !bound.insert((addr, link.transport == Transport::Udp)) {
                let problem = Problem::InLink {
                    link: link.name.clone(),
                    problem: format!("{addr} is bound by another link"),
                };
                return Err(Invalid::new("links.address", problem));
            }
        }
    }
    for (i, a) in links.iter().enumerate() {
        for b in &links[i + 1..] {
            let overlap = a.source_ranges().into_iter().find_map(|(a0, a1)| {
                b.source_ranges()
                    .into_iter()
                    .find(|&(b0, b1)| a0 <= b1 && b0 <= a1)
                    .map(|(b0, b1)| a0.max(b0).min(a1.min(b1)))
            });
            if let Some(id) = overlap.filter(|_| a.kind == b.kind) {
                let problem = Problem::InLink {
                    link: b.name.clone(),
                    problem: format!(
                        "source {}:{id} is also a source of the link {:?}: each link's sources must be its own",
                        b.kind, a.name
                    ),
                };
                return Err(Invalid::new("links.apid_base", problem));
            }
        }
    }
    Ok(())
}
