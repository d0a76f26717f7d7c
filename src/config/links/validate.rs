//! A link's keys checked, each against the others, and the links against each other: everything
//! reported with the link's name and the key, before anything binds.

use std::collections::HashSet;

use super::{FramingName, KissPayload, LinkConfig, Transport, Unmatched};
use crate::config::bounds::{self, Bound};
use crate::config::error::{Invalid, Problem};
use crate::domain::reception::Callsign;
use crate::protocol::ccsds::{MAX_APID, MAX_PACKET};
use crate::protocol::transfer_frames::{TransferFrameKind, MAX_TRANSFER_FRAME};

/// Reed-Solomon check symbols after a frame at most: 32 a codeword, interleaved 8 deep.
const MAX_CHECK_SYMBOLS: usize = 256;

/// The most bytes of frame header a length field's `offset` or `strip` may reach past.
const MAX_FRAME_HEADER: usize = 65_536;

/// The longest link or station name: the archive keeps each behind a one-byte length.
const MAX_NAME: usize = 255;

impl LinkConfig {
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
            Bound::millis("links.quiet_after_ms", self.quiet_after),
        ])
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
        // Looked up as a packet's APID is written: "0100" or "+100" would match no packet.
        for apid in self.apid_sources.keys() {
            let written = |a: u16| a <= MAX_APID && a.to_string() == *apid;
            if !apid.parse::<u16>().is_ok_and(written) {
                return fail(
                    "links.apid_sources",
                    format!("{apid:?} is not an APID (0 to 2047, in decimal without a sign or a leading zero)"),
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
pub(in crate::config) fn validate(links: &[LinkConfig]) -> Result<(), Invalid> {
    let mut names = HashSet::new();
    let mut bound = HashSet::new();
    let mut spools = HashSet::new();
    for link in links {
        link.validate()?;
        if !names.insert(&link.name) {
            let problem = Problem::InLink {
                link: link.name.clone(),
                problem: "another link has this name".into(),
            };
            return Err(Invalid::new("links.name", problem));
        }
        if let Some(dir) = link.spool_dir.as_deref().filter(|dir| !spools.insert(*dir)) {
            let problem = Problem::InLink {
                link: link.name.clone(),
                problem: format!(
                    "{} is the spool_dir of another link: each link imports its own",
                    dir.display()
                ),
            };
            return Err(Invalid::new("links.spool_dir", problem));
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
