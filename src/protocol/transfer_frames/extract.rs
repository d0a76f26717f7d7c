//! A link's frame layer: frames in, the packets of its configured virtual channels out, each
//! channel cut at its first header pointers, a packet handed on only if every byte of it came
//! from an unbroken run of frame counts.

use std::ops::Range;

use super::coding::randomize;
use super::format::{FirstHeader, TransferFrame, TransferFrameError, TransferFrameFormat};
use crate::domain::transfer_frame_counts::TransferFrameCounts;
use crate::protocol::ccsds::{PacketError, PrimaryHeader, MAX_APID};

/// The packets a read's frames gave: their bytes in one buffer, and where each lies.
#[derive(Debug, Default)]
pub struct Extracted {
    pub bytes: Vec<u8>,
    pub packets: Vec<Range<usize>>,
    /// Each packet's virtual channel.
    pub channels: Vec<u8>,
    pub tally: TransferFrameCounts,
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
pub struct TransferFrameReader {
    format: TransferFrameFormat,
    max_packet: usize,
    /// By virtual channel id; `None` for a channel not configured.
    channels: Vec<Option<Channel>>,
    /// The derandomised copy of the frame being read.
    scratch: Vec<u8>,
}

impl TransferFrameReader {
    /// Reads `virtual_channels` of `format`, packets of at most `max_packet` bytes.
    pub fn new(
        format: TransferFrameFormat,
        virtual_channels: &[u8],
        max_packet: usize,
    ) -> TransferFrameReader {
        let mut channels: Vec<Option<Channel>> = (0..64).map(|_| None).collect();
        for &vc in virtual_channels {
            if let Some(slot) = channels.get_mut(usize::from(vc)) {
                *slot = Some(Channel::default());
            }
        }
        TransferFrameReader {
            format,
            max_packet,
            channels,
            scratch: Vec::new(),
        }
    }

    /// Takes one frame (as received: randomised if the format says so, without the marker);
    /// its packets and counts go to `out`. An error says why the frame was dropped (counted).
    pub fn take(&mut self, frame: &[u8], out: &mut Extracted) -> Result<(), TransferFrameError> {
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
                    TransferFrameError::Fecf { .. } => out.tally.frames_bad_fecf += 1,
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
                return Err(TransferFrameError::VirtualChannel(parsed.vcid));
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
