//! The spacecraft's side of the frame layer: packets laid into frames (the tests', the
//! benchmarks' and a simulated spacecraft's).

use std::collections::VecDeque;

use super::coding::crc16;
use super::format::{
    TransferFrameFormat, TransferFrameKind, AOS_IDLE_VC, IDLE_DATA_ONLY, NO_PACKET_START,
};
use crate::protocol::ccsds::{PrimaryHeader, MAX_APID, PRIMARY_HEADER};

/// Lays packets into the frames of one virtual channel, as a spacecraft does: the packets back
/// to back across frames, each frame's first header pointer at the first packet starting in it,
/// and an idle packet to fill the last frame. Frames come out neither randomised nor behind a
/// marker ([`randomize`](super::randomize), [`ASM`](crate::protocol::ccsds::ASM)). Frames are
/// taken one at a time, so that idle frames can be numbered between them.
#[derive(Debug)]
pub struct TransferFrameWriter {
    format: TransferFrameFormat,
    vcid: u8,
    count: u32,
    /// The packet stream not yet in a frame.
    pending: Vec<u8>,
    /// Where packets start in `pending`.
    starts: VecDeque<usize>,
}

impl TransferFrameWriter {
    /// Frames of `vcid`, the first numbered `first_count`.
    pub fn new(format: TransferFrameFormat, vcid: u8, first_count: u32) -> TransferFrameWriter {
        TransferFrameWriter {
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
            TransferFrameKind::Tm => {
                let (vcid, count) = (self.vcid, self.next_count());
                self.build(vcid, count, &data, IDLE_DATA_ONLY)
            }
            TransferFrameKind::Aos => self.build(AOS_IDLE_VC, 0, &data, IDLE_DATA_ONLY),
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
            TransferFrameKind::Tm => {
                let word =
                    (f.spacecraft_id & 0x3FF) << 4 | u16::from(vcid & 0x7) << 1 | u16::from(f.ocf);
                frame.extend_from_slice(&word.to_be_bytes());
                // One channel's writer numbers the master channel as its own.
                frame.extend_from_slice(&[count as u8, count as u8]);
                // Segment length identifier 11 (no segments), as the standard requires.
                frame.extend_from_slice(&(0x1800 | pointer).to_be_bytes());
            }
            TransferFrameKind::Aos => {
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
