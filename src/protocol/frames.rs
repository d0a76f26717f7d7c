//! CCSDS transfer frames, TM (CCSDS 132.0-B) and AOS (CCSDS 732.0-B), as stations and
//! gr-satellites' deframers deliver them: fixed-length frames, each behind the attached sync
//! marker or back to back, that carry the spacecraft's space packets per virtual channel.
//! `docs/ground-segment.md` ("Transfer frames") is the spec.
//!
//! A station that sends frames has done the radio's work (sync, Viterbi, Reed-Solomon) but not
//! the packet layer's, so the daemon does that part as Yamcs does: undo the pseudo-randomiser
//! (CCSDS 131.0-B), check the frame error control field, pick the spacecraft's configured
//! virtual channels, and per channel cut the packet stream at the first header pointer.
//!
//! The one invariant the extractor keeps: a packet is handed on only if every byte of it came
//! from frames of its channel received in an unbroken run of frame counts. A jump in the count
//! (a frame lost, or dropped as bad here) drops the packet then in reassembly, and the channel
//! waits for the next first header pointer before it trusts a packet boundary again. So a packet
//! is never stored half, nor glued from the halves of two.
//!
//! Pure, no I/O: [`FrameReader`] takes one frame at a time, [`FrameStream`] finds frames in a
//! byte stream, and [`FrameWriter`] lays packets into frames (the tests' and a simulated
//! spacecraft's side).

use std::collections::VecDeque;
use std::ops::Range;

use crate::domain::frame_quality::FrameQuality;

use super::ccsds::{find_marker, PacketError, PrimaryHeader, ASM, MAX_APID, PRIMARY_HEADER};

/// The first header pointer that says no packet starts in the frame's data field.
pub const NO_PACKET_START: u16 = 0x7FF;
/// The first header pointer of a frame of idle data only (TM's OID frames).
pub const IDLE_DATA_ONLY: u16 = 0x7FE;
/// The AOS virtual channel of idle frames.
pub const AOS_IDLE_VC: u8 = 63;
/// The longest frame the daemon reads: TM's own limit, and the reach of an 11-bit pointer.
pub const MAX_FRAME: usize = 2048;

/// Which of the two frame formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// TM Space Data Link Protocol (132.0-B): 10-bit spacecraft id, 8 virtual channels.
    Tm,
    /// AOS Space Data Link Protocol (732.0-B): 8-bit spacecraft id, 64 virtual channels.
    Aos,
}

/// What a mission fixes for all its frames (a "managed parameter" in the standards).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameFormat {
    pub kind: FrameKind,
    /// The frame's length in bytes, the marker excluded.
    pub length: usize,
    pub spacecraft_id: u16,
    /// Frames arrive pseudo-randomised (the station did not undo it).
    pub randomized: bool,
    /// Every frame ends with the 2-byte frame error control field.
    pub fecf: bool,
    /// AOS frames carry the 4-byte operational control field; a TM frame's header says itself,
    /// so for TM this is only what [`FrameWriter`] writes.
    pub ocf: bool,
    /// AOS: the 2-byte frame header error control follows the primary header (not checked).
    pub header_error_control: bool,
    /// AOS: the insert zone's length, between the header and the data field (passed over).
    pub insert_zone: usize,
}

/// Why a frame was dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("a frame of {got} bytes, not the configured {expected}")]
    Length { got: usize, expected: usize },
    #[error("the frame error control field is {field:04X}, the frame's CRC {computed:04X}")]
    Fecf { field: u16, computed: u16 },
    #[error("transfer frame version {0}, not the link's format")]
    Version(u8),
    #[error("spacecraft id {got}, not the link's {expected}")]
    Spacecraft { got: u16, expected: u16 },
    #[error("virtual channel {0} is not configured")]
    VirtualChannel(u8),
    #[error("the frame's headers and trailer leave no data field")]
    NoDataField,
    #[error("a TM frame with the synchronisation flag set carries no packets")]
    NotPackets,
    #[error("first header pointer {pointer} is beyond the data field of {len} bytes")]
    FirstHeader { pointer: u16, len: usize },
}

/// Where the first packet header of a frame's data field lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstHeader {
    /// At this offset of the data field.
    At(usize),
    /// Nowhere: the data field continues a packet.
    NoStart,
    /// The frame holds idle data only.
    IdleOnly,
}

/// A frame's fields that packet extraction needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferFrame<'a> {
    pub vcid: u8,
    /// The virtual channel frame count.
    pub count: u32,
    pub first_header: FirstHeader,
    pub data: &'a [u8],
}

impl FrameFormat {
    /// The modulus of the virtual channel frame count: 8 bits in TM, 24 in AOS.
    pub fn count_modulus(&self) -> u32 {
        match self.kind {
            FrameKind::Tm => 1 << 8,
            FrameKind::Aos => 1 << 24,
        }
    }

    /// The largest spacecraft id the header holds.
    pub fn max_spacecraft_id(&self) -> u16 {
        match self.kind {
            FrameKind::Tm => 0x3FF,
            FrameKind::Aos => 0xFF,
        }
    }

    /// The largest virtual channel that carries packets (AOS' 63 is idle frames').
    pub fn max_vcid(&self) -> u8 {
        match self.kind {
            FrameKind::Tm => 7,
            FrameKind::Aos => AOS_IDLE_VC - 1,
        }
    }

    /// The bytes before the data field: the primary header, and for AOS the header error
    /// control, the insert zone and the M_PDU header (TM's secondary header is per frame).
    fn head_len(&self) -> usize {
        match self.kind {
            FrameKind::Tm => 6,
            FrameKind::Aos => 6 + 2 * usize::from(self.header_error_control) + self.insert_zone + 2,
        }
    }

    fn trailer_len(&self, ocf: bool) -> usize {
        4 * usize::from(ocf) + 2 * usize::from(self.fecf)
    }

    /// The data field's length in a frame as [`FrameWriter`] writes it (0 when none is left).
    pub fn data_capacity(&self) -> usize {
        let around = self.head_len() + self.trailer_len(self.ocf);
        self.length.saturating_sub(around)
    }

    /// Reads one frame, derandomised. Checks, in order, the length, the FECF, the version, the
    /// spacecraft id and the first header pointer; the virtual channel is the reader's to check.
    pub fn parse<'a>(&self, frame: &'a [u8]) -> Result<TransferFrame<'a>, FrameError> {
        if frame.len() != self.length {
            let expected = self.length;
            return Err(FrameError::Length {
                got: frame.len(),
                expected,
            });
        }
        let body = match self.fecf {
            true => check_fecf(frame)?,
            false => frame,
        };
        if body.len() < self.head_len() {
            return Err(FrameError::NoDataField);
        }
        let word = u16::from_be_bytes([frame[0], frame[1]]);
        let version = (word >> 14) as u8;
        let (expected_version, spacecraft, vcid) = match self.kind {
            FrameKind::Tm => (0, (word >> 4) & 0x3FF, ((word >> 1) & 0x7) as u8),
            FrameKind::Aos => (1, (word >> 6) & 0xFF, (word & 0x3F) as u8),
        };
        if version != expected_version {
            return Err(FrameError::Version(version));
        }
        if spacecraft != self.spacecraft_id {
            let expected = self.spacecraft_id;
            return Err(FrameError::Spacecraft {
                got: spacecraft,
                expected,
            });
        }
        match self.kind {
            FrameKind::Tm => self.tm_fields(body, word & 1 == 1, vcid),
            FrameKind::Aos => self.aos_fields(body, vcid),
        }
    }

    fn tm_fields<'a>(
        &self,
        body: &'a [u8],
        ocf: bool,
        vcid: u8,
    ) -> Result<TransferFrame<'a>, FrameError> {
        let status = u16::from_be_bytes([body[4], body[5]]);
        if status & 0x4000 != 0 {
            return Err(FrameError::NotPackets);
        }
        // The secondary header's first byte holds its length minus one in its low six bits.
        let secondary = match status & 0x8000 != 0 {
            true => usize::from(body.get(6).ok_or(FrameError::NoDataField)? & 0x3F) + 1,
            false => 0,
        };
        let start = 6 + secondary;
        let end = body.len().checked_sub(4 * usize::from(ocf));
        let data = end
            .and_then(|end| body.get(start..end))
            .filter(|data| !data.is_empty())
            .ok_or(FrameError::NoDataField)?;
        let count = u32::from(body[3]);
        let first_header = first_header(status & 0x7FF, data.len())?;
        Ok(TransferFrame {
            vcid,
            count,
            first_header,
            data,
        })
    }

    fn aos_fields<'a>(&self, body: &'a [u8], vcid: u8) -> Result<TransferFrame<'a>, FrameError> {
        let count = u32::from_be_bytes([0, body[2], body[3], body[4]]);
        if vcid == AOS_IDLE_VC {
            let (first_header, data) = (FirstHeader::IdleOnly, &body[..0]);
            return Ok(TransferFrame {
                vcid,
                count,
                first_header,
                data,
            });
        }
        let start = self.head_len();
        let end = body.len().checked_sub(4 * usize::from(self.ocf));
        let data = end
            .and_then(|end| body.get(start..end))
            .filter(|data| !data.is_empty())
            .ok_or(FrameError::NoDataField)?;
        let pointer = u16::from_be_bytes([body[start - 2], body[start - 1]]) & 0x7FF;
        let first_header = first_header(pointer, data.len())?;
        Ok(TransferFrame {
            vcid,
            count,
            first_header,
            data,
        })
    }
}

fn first_header(pointer: u16, len: usize) -> Result<FirstHeader, FrameError> {
    match pointer {
        NO_PACKET_START => Ok(FirstHeader::NoStart),
        IDLE_DATA_ONLY => Ok(FirstHeader::IdleOnly),
        at if usize::from(at) < len => Ok(FirstHeader::At(usize::from(at))),
        pointer => Err(FrameError::FirstHeader { pointer, len }),
    }
}

/// The frame without its FECF, if the FECF is the CRC of the rest.
fn check_fecf(frame: &[u8]) -> Result<&[u8], FrameError> {
    let at = frame.len().checked_sub(2).ok_or(FrameError::NoDataField)?;
    let (body, field) = frame.split_at(at);
    let field = u16::from_be_bytes([field[0], field[1]]);
    let computed = crc16(body);
    match field == computed {
        true => Ok(body),
        false => Err(FrameError::Fecf { field, computed }),
    }
}

/// The FECF's CRC, sixteen bytes a step (the `crc` crate's slice-by-16 tables): a byte at a time
/// it took most of a `tm-frames` link's CPU (`docs/bench/links.md`).
const FECF: crc::Crc<u16, crc::Table<16>> =
    crc::Crc::<u16, crc::Table<16>>::new(&crc::CRC_16_IBM_3740);

/// CRC-16-CCITT as the FECF uses it: polynomial 0x1021, initial value 0xFFFF, not reflected
/// (the catalogue's CRC-16/IBM-3740).
pub fn crc16(bytes: &[u8]) -> u16 {
    FECF.checksum(bytes)
}

/// One period of the pseudo-randomiser's sequence, in bytes: h(x) = x^8+x^7+x^5+x^3+1 from all
/// ones, that is s[n+8] = s[n+7] ^ s[n+5] ^ s[n+3] ^ s[n], first bit the most significant. Its
/// period is 255 bits, so 255 bytes repeat.
const PSEUDO_RANDOM: [u8; 255] = {
    let mut out = [0u8; 255];
    // Bit 7 - k of `reg` is s[n + k].
    let mut reg: u8 = 0xFF;
    let mut i = 0;
    while i < 255 {
        let mut byte = 0u8;
        let mut bit = 0;
        while bit < 8 {
            let oldest = reg >> 7;
            byte = (byte << 1) | oldest;
            let next = (reg ^ (reg >> 2) ^ (reg >> 4) ^ oldest) & 1;
            reg = (reg << 1) | next;
            bit += 1;
        }
        out[i] = byte;
        i += 1;
    }
    out
};

/// XORs the pseudo-randomiser's sequence over a frame (everything after the marker): the
/// spacecraft's randomising and the ground's derandomising are this same step.
pub fn randomize(frame: &mut [u8]) {
    for (byte, random) in frame.iter_mut().zip(PSEUDO_RANDOM.iter().cycle()) {
        *byte ^= random;
    }
}

/// The packets a read's frames gave: their bytes in one buffer, and where each lies.
#[derive(Debug, Default)]
pub struct Extracted {
    pub bytes: Vec<u8>,
    pub packets: Vec<Range<usize>>,
    /// Each packet's virtual channel.
    pub channels: Vec<u8>,
    pub tally: FrameQuality,
}

impl Extracted {
    /// Appends a whole packet, unless it is an idle packet (APID 2047).
    fn packet(&mut self, packet: &[u8]) {
        if PrimaryHeader::parse(packet).is_some_and(|h| h.apid == MAX_APID) {
            return;
        }
        self.tally.packets_extracted += 1;
        let start = self.bytes.len();
        self.bytes.extend_from_slice(packet);
        self.packets.push(start..self.bytes.len());
    }
}

/// One virtual channel's packet extraction.
#[derive(Debug, Default)]
struct Channel {
    last_count: Option<u32>,
    /// The packet in reassembly (empty between two packets), or `None` while the channel waits
    /// for a first header pointer to find a packet boundary.
    partial: Option<Vec<u8>>,
}

impl Channel {
    fn frame(&mut self, frame: &TransferFrame, modulus: u32, max: usize, out: &mut Extracted) {
        if let Some(last) = self.last_count {
            let lost = (frame.count + modulus - last - 1) % modulus;
            if lost > 0 {
                out.tally.vc_gaps += u64::from(lost);
                self.lose_sync(out);
            }
        }
        self.last_count = Some(frame.count);
        match frame.first_header {
            FirstHeader::IdleOnly => {}
            FirstHeader::NoStart => self.continue_packet(frame.data, false, max, out),
            FirstHeader::At(at) => {
                self.continue_packet(&frame.data[..at], true, max, out);
                self.packets_from(&frame.data[at..], max, out);
            }
        }
    }

    /// Drops the packet in reassembly, counted, and waits for a first header pointer.
    fn lose_sync(&mut self, out: &mut Extracted) {
        if self.partial.take().is_some_and(|p| !p.is_empty()) {
            out.tally.packets_dropped_incomplete += 1;
        }
    }

    /// `bytes` continue the channel's packet stream; with `ends`, a packet header follows them,
    /// so they must end the packet in reassembly exactly.
    fn continue_packet(&mut self, bytes: &[u8], ends: bool, max: usize, out: &mut Extracted) {
        let Some(mut partial) = self.partial.take() else {
            return;
        };
        // Between two packets, the data field says a packet goes on: no boundary is certain.
        if partial.is_empty() && !bytes.is_empty() {
            return;
        }
        partial.extend_from_slice(bytes);
        match declared_len(&partial, max) {
            Err(_) => out.tally.bad_packets += 1,
            Ok(Some(len)) if len == partial.len() => {
                out.packet(&partial);
                partial.clear();
                self.partial = Some(partial);
            }
            Ok(Some(len)) if len > partial.len() && !ends => self.partial = Some(partial),
            Ok(None) if !ends || partial.is_empty() => self.partial = Some(partial),
            // The packet ends before the pointer says, or after: its bytes cannot be trusted.
            Ok(_) => out.tally.packets_dropped_incomplete += 1,
        }
    }

    /// The packets from a first header pointer to the data field's end; the last one may go on
    /// in the next frame.
    fn packets_from(&mut self, mut bytes: &[u8], max: usize, out: &mut Extracted) {
        loop {
            match declared_len(bytes, max) {
                Err(_) => {
                    out.tally.bad_packets += 1;
                    self.partial = None;
                    return;
                }
                Ok(Some(len)) if len <= bytes.len() => {
                    out.packet(&bytes[..len]);
                    bytes = &bytes[len..];
                }
                Ok(_) => {
                    self.partial = Some(bytes.to_vec());
                    return;
                }
            }
        }
    }
}

/// The length of the packet `bytes` start with, once its header is there: `None` before.
fn declared_len(bytes: &[u8], max: usize) -> Result<Option<usize>, PacketError> {
    let Some(header) = PrimaryHeader::parse(bytes) else {
        return Ok(None);
    };
    if header.version != 0 {
        return Err(PacketError::Version(header.version));
    }
    match header.packet_len() {
        length if length > max => Err(PacketError::TooLong { length, max }),
        length => Ok(Some(length)),
    }
}

/// A link's frame layer: frames in, the packets of its configured virtual channels out.
#[derive(Debug)]
pub struct FrameReader {
    format: FrameFormat,
    max_packet: usize,
    /// By virtual channel id; `None` for a channel not configured.
    channels: Vec<Option<Channel>>,
    /// The derandomised copy of the frame being read.
    scratch: Vec<u8>,
}

impl FrameReader {
    /// Reads `virtual_channels` of `format`, packets of at most `max_packet` bytes.
    pub fn new(format: FrameFormat, virtual_channels: &[u8], max_packet: usize) -> FrameReader {
        let mut channels: Vec<Option<Channel>> = (0..64).map(|_| None).collect();
        for &vc in virtual_channels {
            if let Some(slot) = channels.get_mut(usize::from(vc)) {
                *slot = Some(Channel::default());
            }
        }
        FrameReader {
            format,
            max_packet,
            channels,
            scratch: Vec::new(),
        }
    }

    /// Takes one frame (as received: randomised if the format says so, without the marker);
    /// its packets and counts go to `out`. An error says why the frame was dropped (counted).
    pub fn take(&mut self, frame: &[u8], out: &mut Extracted) -> Result<(), FrameError> {
        let frame = match self.format.randomized {
            true => {
                self.scratch.clear();
                self.scratch.extend_from_slice(frame);
                randomize(&mut self.scratch);
                &self.scratch[..]
            }
            false => frame,
        };
        let parsed = match self.format.parse(frame) {
            Ok(parsed) => parsed,
            Err(err) => {
                match err {
                    FrameError::Fecf { .. } => out.tally.frames_bad_fecf += 1,
                    _ => out.tally.frames_dropped += 1,
                }
                return Err(err);
            }
        };
        // An idle frame of a channel not read (TM's often fill channel 7, AOS' fill 63) is
        // taken, not dropped: it is no fault of the station's.
        let idle = parsed.first_header == FirstHeader::IdleOnly;
        let channel = self.channels.get_mut(usize::from(parsed.vcid));
        match channel.and_then(Option::as_mut) {
            Some(channel) => {
                out.tally.frames_good += 1;
                let modulus = self.format.count_modulus();
                channel.frame(&parsed, modulus, self.max_packet, out);
                out.channels.resize(out.packets.len(), parsed.vcid);
            }
            None if idle => out.tally.frames_good += 1,
            None => {
                out.tally.frames_dropped += 1;
                return Err(FrameError::VirtualChannel(parsed.vcid));
            }
        }
        Ok(())
    }

    /// The stream ended: each packet in reassembly is dropped, counted, and the counts start
    /// afresh (another connection may start anywhere).
    pub fn finish(&mut self, out: &mut Extracted) {
        for channel in self.channels.iter_mut().flatten() {
            channel.lose_sync(out);
            channel.last_count = None;
        }
    }
}

/// How frames lie on a byte stream: each after the attached sync marker, or back to back, and
/// each perhaps followed by Reed-Solomon check symbols the station left in (passed over).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameStream {
    /// The frame's length, marker excluded.
    pub length: usize,
    pub marker: bool,
    /// Bytes after each frame that are not the frame's: RS check symbols not stripped.
    pub check_symbols: usize,
}

/// The frames at the front of a stream's buffer.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct FrameCuts {
    /// The bytes used up: frames, and bytes skipped looking for a marker.
    pub end: usize,
    /// Where each frame lies, marker excluded.
    pub frames: Vec<Range<usize>>,
    /// Bytes passed over before markers.
    pub skipped: usize,
}

impl FrameStream {
    /// The frame a datagram holds: after the marker (`None` without one, where one is
    /// expected), without the check symbols. Its length is the frame checks' to judge.
    pub fn datagram<'a>(&self, datagram: &'a [u8]) -> Option<&'a [u8]> {
        let frame = match self.marker {
            true => datagram.strip_prefix(&ASM[..])?,
            false => datagram,
        };
        let end = frame.len().saturating_sub(self.check_symbols);
        Some(&frame[..end])
    }

    /// Every whole frame at the front of `buf`. With markers, bytes before a marker are
    /// skipped; a frame is the `length` bytes after its marker, whatever they hold (the frame
    /// checks judge it), and the search for the next marker starts after it and its check
    /// symbols.
    pub fn delimit(&self, buf: &[u8]) -> FrameCuts {
        let mut cuts = FrameCuts::default();
        if self.length == 0 {
            return cuts;
        }
        let prefix = if self.marker { ASM.len() } else { 0 };
        loop {
            let rest = &buf[cuts.end..];
            let at = match self.marker {
                false => 0,
                true => match find_marker(rest) {
                    Some(at) => at,
                    None => {
                        // A marker may begin in the last three bytes.
                        let skip = rest.len().saturating_sub(ASM.len() - 1);
                        cuts.skipped += skip;
                        cuts.end += skip;
                        return cuts;
                    }
                },
            };
            cuts.skipped += at;
            cuts.end += at;
            let start = cuts.end + prefix;
            if buf.len() < start + self.length + self.check_symbols {
                return cuts;
            }
            cuts.frames.push(start..start + self.length);
            cuts.end = start + self.length + self.check_symbols;
        }
    }
}

/// Lays packets into the frames of one virtual channel, as a spacecraft does: the packets back
/// to back across frames, each frame's first header pointer at the first packet starting in it,
/// and an idle packet to fill the last frame. Frames come out neither randomised nor behind a
/// marker ([`randomize`], [`ASM`]). Frames are taken one at a time, so that idle frames can be
/// numbered between them.
#[derive(Debug)]
pub struct FrameWriter {
    format: FrameFormat,
    vcid: u8,
    count: u32,
    /// The packet stream not yet in a frame.
    pending: Vec<u8>,
    /// Where packets start in `pending`.
    starts: VecDeque<usize>,
}

impl FrameWriter {
    /// Frames of `vcid`, the first numbered `first_count`.
    pub fn new(format: FrameFormat, vcid: u8, first_count: u32) -> FrameWriter {
        FrameWriter {
            format,
            vcid,
            count: first_count % format.count_modulus(),
            pending: Vec::new(),
            starts: VecDeque::new(),
        }
    }

    /// Adds a packet to the stream.
    pub fn push(&mut self, packet: &[u8]) {
        self.starts.push_back(self.pending.len());
        self.pending.extend_from_slice(packet);
    }

    /// The next frame, once the stream fills one.
    pub fn next_frame(&mut self) -> Option<Vec<u8>> {
        let capacity = self.format.data_capacity();
        if capacity == 0 || self.pending.len() < capacity {
            return None;
        }
        let pointer = match self.starts.front() {
            Some(&start) if start < capacity => start as u16,
            _ => NO_PACKET_START,
        };
        let data: Vec<u8> = self.pending.drain(..capacity).collect();
        self.starts.retain(|&start| start >= capacity);
        self.starts.iter_mut().for_each(|start| *start -= capacity);
        let (vcid, count) = (self.vcid, self.next_count());
        Some(self.build(vcid, count, &data, pointer))
    }

    /// Adds an idle packet that fills the stream's last frame, so that frames hold all of it.
    pub fn flush(&mut self) {
        let capacity = self.format.data_capacity();
        let rest = self.pending.len() % capacity.max(1);
        if rest == 0 {
            return;
        }
        let mut fill = capacity - rest;
        while fill <= PRIMARY_HEADER {
            fill += capacity;
        }
        let header = PrimaryHeader::telemetry(MAX_APID, 0, fill - PRIMARY_HEADER);
        let mut idle = header.encode().to_vec();
        idle.resize(fill, 0x55);
        self.push(&idle);
    }

    /// An idle frame: of this channel with "idle data only" in TM, of channel 63 in AOS.
    pub fn idle_frame(&mut self) -> Vec<u8> {
        let data = vec![0x55; self.format.data_capacity()];
        match self.format.kind {
            FrameKind::Tm => {
                let (vcid, count) = (self.vcid, self.next_count());
                self.build(vcid, count, &data, IDLE_DATA_ONLY)
            }
            FrameKind::Aos => self.build(AOS_IDLE_VC, 0, &data, IDLE_DATA_ONLY),
        }
    }

    fn next_count(&mut self) -> u32 {
        let count = self.count;
        self.count = (count + 1) % self.format.count_modulus();
        count
    }

    fn build(&self, vcid: u8, count: u32, data: &[u8], pointer: u16) -> Vec<u8> {
        let f = &self.format;
        let mut frame = Vec::with_capacity(f.length);
        match f.kind {
            FrameKind::Tm => {
                let word =
                    (f.spacecraft_id & 0x3FF) << 4 | u16::from(vcid & 0x7) << 1 | u16::from(f.ocf);
                frame.extend_from_slice(&word.to_be_bytes());
                // One channel's writer numbers the master channel as its own.
                frame.extend_from_slice(&[count as u8, count as u8]);
                // Segment length identifier 11 (no segments), as the standard requires.
                frame.extend_from_slice(&(0x1800 | pointer).to_be_bytes());
            }
            FrameKind::Aos => {
                let word = 0x4000 | (f.spacecraft_id & 0xFF) << 6 | u16::from(vcid & 0x3F);
                frame.extend_from_slice(&word.to_be_bytes());
                frame.extend_from_slice(&count.to_be_bytes()[1..]);
                frame.push(0);
                let zeros = 2 * usize::from(f.header_error_control) + f.insert_zone;
                frame.resize(frame.len() + zeros, 0);
                frame.extend_from_slice(&pointer.to_be_bytes());
            }
        }
        frame.extend_from_slice(data);
        if f.ocf {
            frame.extend_from_slice(&[0; 4]);
        }
        if f.fecf {
            let crc = crc16(&frame);
            frame.extend_from_slice(&crc.to_be_bytes());
        }
        frame
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::any;
    use proptest::strategy::Strategy;

    use super::*;
    use crate::protocol::pieces;

    fn tm(length: usize) -> FrameFormat {
        FrameFormat {
            kind: FrameKind::Tm,
            length,
            spacecraft_id: 42,
            randomized: false,
            fecf: true,
            ocf: false,
            header_error_control: false,
            insert_zone: 0,
        }
    }

    fn aos(length: usize) -> FrameFormat {
        FrameFormat {
            kind: FrameKind::Aos,
            header_error_control: true,
            insert_zone: 2,
            ocf: true,
            ..tm(length)
        }
    }

    /// A telemetry packet whose data says which one it is.
    fn packet(apid: u16, count: u16, len: usize) -> Vec<u8> {
        let mut data = format!("{apid}/{count}:").into_bytes();
        data.resize(len.max(data.len()), b'.');
        let mut p = PrimaryHeader::telemetry(apid, count, data.len())
            .encode()
            .to_vec();
        p.extend_from_slice(&data);
        p
    }

    fn read(reader: &mut FrameReader, frames: &[Vec<u8>]) -> (Vec<Vec<u8>>, FrameQuality) {
        let mut out = Extracted::default();
        for frame in frames {
            let _ = reader.take(frame, &mut out);
        }
        let packets = out.packets.iter().map(|at| out.bytes[at.clone()].to_vec());
        (packets.collect(), out.tally)
    }

    /// Packets laid into frames of `format`'s channel 1, the last frame filled.
    fn frames_of(format: FrameFormat, packets: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let mut writer = FrameWriter::new(format, 1, 0);
        packets.iter().for_each(|p| writer.push(p));
        writer.flush();
        std::iter::from_fn(|| writer.next_frame()).collect()
    }

    #[test]
    fn the_fecf_is_crc_16_ccitt_from_all_ones() {
        assert_eq!(crc16(b"123456789"), 0x29B1);
        assert_eq!(crc16(b""), 0xFFFF);
    }

    /// The sequence's first 40 bits as CCSDS 131.0-B gives them, its period of 255 bits, and
    /// randomising twice giving the frame back.
    #[test]
    fn the_pseudo_randomiser_is_the_standard_sequence() {
        assert_eq!(PSEUDO_RANDOM[..5], [0xFF, 0x48, 0x0E, 0xC0, 0x9A]);
        let bit = |n: usize| PSEUDO_RANDOM[(n / 8) % 255] >> (7 - n % 8) & 1;
        assert!((0..255).all(|n| bit(n) == bit(n + 255)));
        assert!((1..255).all(|p| (0..255).any(|n| bit(n) != bit(n + p))));
        let mut frame: Vec<u8> = (0..600).map(|i| i as u8).collect();
        randomize(&mut frame);
        assert_eq!(frame[..2], [0xFF, 0x49]);
        randomize(&mut frame);
        assert!(frame.iter().enumerate().all(|(i, &b)| b == i as u8));
    }

    /// docs/ground-segment.md's example: a TM frame of 25 bytes, spacecraft 42, channel 1,
    /// count 0, holding the documented packet and a 7-byte idle packet, with its FECF.
    #[test]
    fn the_documented_tm_frame_example() {
        let documented = [
            0x02, 0xA2, 0x00, 0x00, 0x18, 0x00, // version 0, SCID 42, VC 1; counts; FHP 0
            0x00, 0x64, 0xC0, 0x05, 0x00, 0x03, 0xDE, 0xAD, 0xBE, 0xEF, // the packet
            0x07, 0xFF, 0xC0, 0x00, 0x00, 0x00, 0x55, // an idle packet
            0x6B, 0x10, // FECF
        ];
        let the_packet = [0x00, 0x64, 0xC0, 0x05, 0x00, 0x03, 0xDE, 0xAD, 0xBE, 0xEF];
        let frames = frames_of(tm(25), &[the_packet.to_vec()]);
        assert_eq!(frames, [documented.to_vec()]);
        let mut reader = FrameReader::new(tm(25), &[1], 100);
        let (packets, tally) = read(&mut reader, &frames);
        assert_eq!(packets, [the_packet.to_vec()]);
        assert_eq!((tally.frames_good, tally.packets_extracted), (1, 1));
    }

    /// A packet spanning three frames whose middle one is lost is dropped and counted; the
    /// packets after the next first header pointer are read.
    #[test]
    fn a_frame_count_jump_drops_the_packet_in_reassembly() {
        for format in [tm(40), aos(40)] {
            let sent = [packet(5, 0, 10), packet(5, 1, 60), packet(5, 2, 9)];
            let mut frames = frames_of(format, &sent);
            assert!(frames.len() >= 4, "the second packet spans three frames");
            frames.remove(1);
            let mut reader = FrameReader::new(format, &[1], 1000);
            let (packets, tally) = read(&mut reader, &frames);
            assert_eq!(packets, [sent[0].clone(), sent[2].clone()]);
            assert_eq!((tally.vc_gaps, tally.packets_dropped_incomplete), (1, 1));
        }
    }

    /// Each bad frame is dropped and counted where it belongs, and costs only itself: the
    /// channel's next frame after it is read (the dropped frame is a gap of its channel).
    #[test]
    fn bad_frames_are_dropped_and_counted() {
        let format = tm(30);
        let sent: Vec<_> = (0..6).map(|i| packet(9, i, 8)).collect();
        let good = frames_of(format, &sent);
        let mut reader = FrameReader::new(format, &[1], 1000);
        let mut out = Extracted::default();
        assert_eq!(reader.take(&good[0], &mut out), Ok(()));
        let mut bad_fecf = good[1].clone();
        bad_fecf[10] ^= 1;
        assert!(matches!(
            reader.take(&bad_fecf, &mut out),
            Err(FrameError::Fecf { .. })
        ));
        assert_eq!(
            reader.take(&good[1][..29], &mut out),
            Err(FrameError::Length {
                got: 29,
                expected: 30
            })
        );
        let other = FrameWriter::new(
            FrameFormat {
                spacecraft_id: 7,
                ..format
            },
            1,
            1,
        )
        .idle_frame();
        assert_eq!(
            reader.take(&other, &mut out),
            Err(FrameError::Spacecraft {
                got: 7,
                expected: 42
            })
        );
        let mut channel_2 = FrameWriter::new(format, 2, 0);
        channel_2.push(&packet(9, 9, 30));
        let other_vc = channel_2.next_frame().expect("a frame of channel 2");
        assert_eq!(
            reader.take(&other_vc, &mut out),
            Err(FrameError::VirtualChannel(2))
        );
        let mut beyond = good[1].clone();
        beyond[4..6].copy_from_slice(&(0x1800u16 | 22).to_be_bytes());
        let crc = crc16(&beyond[..28]);
        beyond[28..].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(
            reader.take(&beyond, &mut out),
            Err(FrameError::FirstHeader {
                pointer: 22,
                len: 22
            })
        );
        for frame in &good[2..] {
            assert_eq!(reader.take(frame, &mut out), Ok(()));
        }
        let t = &out.tally;
        assert_eq!(
            (t.frames_good, t.frames_bad_fecf, t.frames_dropped),
            (good.len() as u64 - 1, 1, 4)
        );
        assert_eq!(t.vc_gaps, 1);
        let read: Vec<_> = out
            .packets
            .iter()
            .map(|at| &out.bytes[at.clone()])
            .collect();
        assert_eq!(read.first(), Some(&&sent[0][..]));
        assert_eq!(read.last(), Some(&&sent[5][..]));
    }

    /// A spanning packet that the next first header pointer cuts short never completes: it is
    /// dropped and counted, and the packet at the pointer is read.
    #[test]
    fn a_spanning_packet_cut_short_by_the_pointer_is_dropped() {
        let format = tm(30);
        let mut frames = frames_of(format, &[packet(3, 0, 30), packet(3, 1, 10)]);
        // The first frame's packet claims 200 bytes of data.
        frames[0][6 + 4..6 + 6].copy_from_slice(&199u16.to_be_bytes());
        let crc = crc16(&frames[0][..28]);
        frames[0][28..].copy_from_slice(&crc.to_be_bytes());
        let mut reader = FrameReader::new(format, &[1], 1000);
        let (packets, tally) = read(&mut reader, &frames);
        assert_eq!(packets, [packet(3, 1, 10)]);
        assert_eq!((tally.packets_dropped_incomplete, tally.vc_gaps), (1, 0));
    }

    /// A TM frame's secondary header is passed over (its length in its first byte); a frame
    /// with the synchronisation flag set carries no packets and is dropped.
    #[test]
    fn a_tm_secondary_header_is_passed_over() {
        let the_packet = packet(100, 5, 4);
        let frame = |status: u16| {
            let mut f = vec![0x02, 0xA2, 0x00, 0x00];
            f.extend_from_slice(&status.to_be_bytes());
            f.extend_from_slice(&[0x01, 0xAA]); // a secondary header of 2 bytes
            f.extend_from_slice(&the_packet);
            let crc = crc16(&f);
            f.extend_from_slice(&crc.to_be_bytes());
            f
        };
        let format = tm(6 + 2 + the_packet.len() + 2);
        let mut reader = FrameReader::new(format, &[1], 100);
        let (packets, _) = read(&mut reader, &[frame(0x9800)]);
        assert_eq!(packets.len(), 1);
        assert_eq!(packets[0], the_packet);
        let mut out = Extracted::default();
        let not_packets = reader.take(&frame(0xD800), &mut out);
        assert_eq!(not_packets, Err(FrameError::NotPackets));
        assert_eq!(out.tally.frames_dropped, 1);
    }

    /// A packet still in reassembly when the stream ends is dropped and counted.
    #[test]
    fn a_packet_in_reassembly_at_the_end_is_dropped_and_counted() {
        let format = tm(30);
        let frames = frames_of(format, &[packet(2, 0, 60)]);
        let mut reader = FrameReader::new(format, &[1], 1000);
        let mut out = Extracted::default();
        assert_eq!(reader.take(&frames[0], &mut out), Ok(()));
        reader.finish(&mut out);
        assert!(out.packets.is_empty());
        assert_eq!(out.tally.packets_dropped_incomplete, 1);
        assert_eq!(reader.take(&frames[1], &mut out), Ok(()));
        assert_eq!(out.tally.vc_gaps, 0, "the counts start afresh");
    }

    /// Idle frames (TM's "idle data only", on the channel or another, AOS' channel 63) and
    /// idle packets carry nothing, and break no packet in reassembly.
    #[test]
    fn idle_frames_and_idle_packets_are_dropped() {
        for format in [tm(24), aos(32)] {
            let mut writer = FrameWriter::new(format, 1, 0);
            let sent = [packet(4, 0, 40), packet(4, 1, 3)];
            sent.iter().for_each(|p| writer.push(p));
            writer.flush();
            let mut frames = Vec::new();
            while let Some(frame) = writer.next_frame() {
                frames.push(frame);
                frames.push(writer.idle_frame());
            }
            // And an idle frame of a channel not read.
            frames.push(FrameWriter::new(format, 7, 0).idle_frame());
            let mut reader = FrameReader::new(format, &[1], 1000);
            let (packets, tally) = read(&mut reader, &frames);
            assert_eq!(packets, sent);
            assert_eq!(tally.frames_good, frames.len() as u64);
            assert_eq!((tally.vc_gaps, tally.frames_dropped), (0, 0));
        }
    }

    /// A packet of another version or over the link's largest is bad input; the channel finds
    /// its packets again at the next pointer.
    #[test]
    fn a_bad_packet_header_costs_the_frame_rest() {
        let format = tm(40);
        let sent = [packet(1, 0, 10), packet(1, 1, 200), packet(1, 2, 10)];
        let frames = frames_of(format, &sent);
        let mut reader = FrameReader::new(format, &[1], 100);
        let (packets, tally) = read(&mut reader, &frames);
        assert_eq!(packets, [sent[0].clone(), sent[2].clone()]);
        assert_eq!(tally.bad_packets, 1);
    }

    #[test]
    fn frames_are_found_after_markers_and_back_to_back() {
        let stream = FrameStream {
            length: 5,
            marker: true,
            check_symbols: 0,
        };
        let mut wire = vec![0x55, 0x1A];
        wire.extend_from_slice(&ASM);
        wire.extend_from_slice(&[1, 2, 3, 4, 5]);
        wire.extend_from_slice(&ASM);
        wire.extend_from_slice(&[6, 7]);
        let cuts = stream.delimit(&wire);
        assert_eq!(cuts.frames.first(), Some(&(6..11)));
        assert_eq!(cuts.frames.len(), 1);
        assert_eq!((cuts.end, cuts.skipped), (11, 2));
        let cuts = stream.delimit(&[9, 9, 9, 9, 0x1A, 0xCF]);
        assert_eq!((cuts.end, cuts.skipped, cuts.frames.len()), (3, 3, 0));
        let plain = FrameStream {
            length: 4,
            marker: false,
            check_symbols: 0,
        };
        let cuts = plain.delimit(&[0; 10]);
        assert_eq!((cuts.frames, cuts.end), (vec![0..4, 4..8], 8));
    }

    /// RS check symbols the station left after each frame are passed over, on a stream and in
    /// a datagram; a datagram without the marker expected holds no frame.
    #[test]
    fn check_symbols_after_frames_are_passed_over() {
        let stream = FrameStream {
            length: 3,
            marker: true,
            check_symbols: 2,
        };
        let mut wire = ASM.to_vec();
        wire.extend_from_slice(&[1, 2, 3, 0xC1, 0xC2]);
        wire.extend_from_slice(&ASM);
        wire.extend_from_slice(&[4, 5, 6, 0xC3]);
        let cuts = stream.delimit(&wire);
        let first = cuts.frames.first().cloned();
        assert_eq!((first, cuts.frames.len(), cuts.end), (Some(4..7), 1, 9));
        assert_eq!(stream.datagram(&wire[..9]), Some(&[1, 2, 3][..]));
        assert_eq!(stream.datagram(&wire[4..9]), None);
    }

    fn any_format() -> impl Strategy<Value = FrameFormat> {
        let flags = (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>());
        (any::<bool>(), 24usize..120, flags, 0usize..4).prop_map(
            |(is_aos, length, (randomized, fecf, ocf, hec), insert)| FrameFormat {
                kind: if is_aos {
                    FrameKind::Aos
                } else {
                    FrameKind::Tm
                },
                length,
                spacecraft_id: if is_aos { 0xAB } else { 0x2AB },
                randomized,
                fecf,
                ocf,
                header_error_control: hec && is_aos,
                insert_zone: if is_aos { insert } else { 0 },
            },
        )
    }

    /// What a spacecraft sent: frames in order of transmission, each with whether it reached
    /// the ground and whether it is of the packets' channel; and per packet the first and
    /// last frame it lies in.
    struct Downlink {
        frames: Vec<(Vec<u8>, bool, bool)>,
        spans: Vec<(usize, usize)>,
    }

    /// Lays `packets` into frames of channel 3 counted from `first`; `fates` say per data frame
    /// whether it is lost, and whether an idle frame follows it and is lost.
    fn downlink(format: FrameFormat, packets: &[Vec<u8>], first: u32, fates: &[u8]) -> Downlink {
        let mut writer = FrameWriter::new(format, 3, first);
        let capacity = format.data_capacity();
        let (mut frames, mut data_frames, mut offsets) = (Vec::new(), Vec::new(), Vec::new());
        let mut fates = fates.iter().cycle();
        let mut at = 0;
        let mut laid = |frames: &mut Vec<_>, writer: &mut FrameWriter| {
            while let Some(frame) = writer.next_frame() {
                let fate = fates.next().copied().unwrap_or(0);
                data_frames.push(frames.len());
                frames.push((frame, fate % 5 != 0, true));
                if fate % 7 == 0 {
                    let idle_channel = format.kind == FrameKind::Tm;
                    frames.push((writer.idle_frame(), fate % 3 != 0, idle_channel));
                }
            }
        };
        for p in packets {
            offsets.push((at, at + p.len()));
            at += p.len();
            writer.push(p);
            laid(&mut frames, &mut writer);
        }
        writer.flush();
        laid(&mut frames, &mut writer);
        let spans = offsets
            .iter()
            .map(|&(a, b)| (data_frames[a / capacity], data_frames[(b - 1) / capacity]))
            .collect();
        Downlink { frames, spans }
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(256))]

        /// Every packet lying wholly in received frames of its channel is extracted exactly
        /// once and in order, and none spanning a lost frame; the counts say what was lost
        /// between the first and the last frame received.
        #[test]
        fn packets_in_received_frames_are_extracted_once_in_order(
            format in any_format(),
            lengths in proptest::collection::vec((0u16..MAX_APID, 1usize..150), 1..40),
            before_wrap in 0u32..6,
            fates in proptest::collection::vec(any::<u8>(), 1..64),
        ) {
            let packets: Vec<_> = lengths
                .iter()
                .enumerate()
                .map(|(i, &(apid, len))| packet(apid, i as u16, len))
                .collect();
            let first = format.count_modulus() - before_wrap;
            let sent = downlink(format, &packets, first, &fates);
            let whole = |&(a, b): &(usize, usize)| {
                sent.frames[a..=b].iter().all(|(_, received, of_channel)| *received || !of_channel)
            };
            let expected: Vec<_> = packets
                .iter()
                .zip(&sent.spans)
                .filter(|(_, span)| whole(span))
                .map(|(p, _)| p.clone())
                .collect();
            let mut reader = FrameReader::new(format, &[3], 4096);
            let mut out = Extracted::default();
            let last_received = sent.frames.iter().rposition(|(_, r, c)| *r && *c).unwrap_or(0);
            let mut received = 0;
            for (frame, _, _) in sent.frames.iter().filter(|(_, r, _)| *r) {
                let mut wire = frame.clone();
                if format.randomized {
                    randomize(&mut wire);
                }
                proptest::prop_assert_eq!(reader.take(&wire, &mut out), Ok(()));
                received += 1;
            }
            reader.finish(&mut out);
            let read: Vec<_> = out.packets.iter().map(|at| out.bytes[at.clone()].to_vec()).collect();
            proptest::prop_assert_eq!(&read, &expected);
            let first_received = sent.frames.iter().position(|(_, r, c)| *r && *c).unwrap_or(0);
            let lost = sent.frames[first_received..last_received]
                .iter()
                .filter(|(_, r, c)| !*r && *c)
                .count() as u64;
            let t = &out.tally;
            proptest::prop_assert_eq!(t.vc_gaps, lost);
            proptest::prop_assert_eq!(t.packets_extracted, expected.len() as u64);
            proptest::prop_assert_eq!((t.frames_good, t.frames_dropped, t.bad_packets), (received, 0, 0));
            proptest::prop_assert!(t.packets_dropped_incomplete <= lost + 1);
        }

        /// Frames behind markers, with noise between them, read in any pieces, are the frames
        /// sent, the noise counted.
        #[test]
        fn frames_behind_markers_are_found_across_any_reads(
            frames in proptest::collection::vec(
                (proptest::collection::vec(any::<u8>().prop_filter("no marker", |b| *b != ASM[0]), 0..8),
                 proptest::collection::vec(any::<u8>(), 12)),
                0..10,
            ),
            sizes in pieces::read_sizes(),
        ) {
            let stream = FrameStream { length: 12, marker: true, check_symbols: 0 };
            let mut wire = Vec::new();
            for (noise, frame) in &frames {
                wire.extend_from_slice(noise);
                wire.extend_from_slice(&ASM);
                wire.extend_from_slice(frame);
            }
            let (mut buf, mut read, mut skipped) = (Vec::new(), Vec::new(), 0);
            for piece in pieces::cut(&wire, &sizes) {
                buf.extend_from_slice(piece);
                let cuts = stream.delimit(&buf);
                read.extend(cuts.frames.iter().map(|at| buf[at.clone()].to_vec()));
                skipped += cuts.skipped;
                buf.drain(..cuts.end);
            }
            let sent: Vec<_> = frames.iter().map(|(_, f)| f.clone()).collect();
            let noise: usize = frames.iter().map(|(n, _)| n.len()).sum();
            proptest::prop_assert_eq!(read, sent);
            proptest::prop_assert_eq!((buf.len(), skipped), (0, noise));
        }
    }
}
