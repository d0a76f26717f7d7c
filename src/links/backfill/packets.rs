//! A recording's frames as the packets a link takes: a KISS data frame, a transfer frame or a
//! space packet of a file goes through the same checks and extraction as one of a connection
//! (`super::super::stream`, `super::super::frames`), so a file and a connection of one station
//! store the same packets.

use bytes::Bytes;

use super::super::frames::Deframer;
use super::super::station::{Heard, Link, ReadPackets};
use super::super::stream::{kiss_packets, takes_frame};
use crate::links::recording::{RecordedFrame, RecordingFormat};

/// One file's frame layer: the transfer frames' reassembly lasts the whole file.
pub(super) struct Unframer {
    format: RecordingFormat,
    deframer: Option<Deframer>,
}

impl Unframer {
    pub(super) fn new(link: &Link, format: RecordingFormat) -> Unframer {
        Unframer {
            deframer: Deframer::new(link),
            format,
        }
    }

    /// The packets of `frames`, in order.
    pub(super) fn packets(&mut self, link: &Link, frames: &[RecordedFrame]) -> ReadPackets {
        match (&self.format, &mut self.deframer) {
            (RecordingFormat::Kiss, _) => kiss_packets(
                link,
                (frames.iter())
                    .map(|f| (f.kiss_port.unwrap_or(0), &f.payload[..], f.earth_unix_ns)),
            ),
            (RecordingFormat::Frames { .. }, Some(deframer)) => {
                frames.iter().for_each(|f| deframer.frame(link, &f.payload));
                deframer.packets(link)
            }
            _ => whole_packets(link, frames),
        }
    }

    /// The file ended: packets in reassembly are dropped and counted.
    pub(super) fn finish(&mut self, link: &Link) {
        if let Some(deframer) = &mut self.deframer {
            deframer.finish(link);
        }
    }
}

/// Frames that each hold one space packet (a packet stream's, a length-prefixed file's): those
/// that are one whole packet, with their earth-receive times (a length-prefixed frame's from its
/// header, with the link's `earth_time`).
fn whole_packets(link: &Link, frames: &[RecordedFrame]) -> ReadPackets {
    let mut chunk = Vec::with_capacity(frames.iter().map(|f| f.payload.len()).sum());
    let (mut packets, mut heard) = (Vec::new(), Vec::new());
    for frame in frames.iter().filter(|f| takes_frame(link, &f.payload)) {
        packets.push(chunk.len()..chunk.len() + frame.payload.len());
        chunk.extend_from_slice(&frame.payload);
        // A length-prefixed frame's header gives its time as the link's connections' do.
        let field = link.config.earth_time;
        let earth = frame.earth_unix_ns.or_else(|| field?.read(&frame.header));
        heard.push(Heard {
            earth_unix_ns: earth,
            ..Heard::default()
        });
    }
    ReadPackets {
        chunk: Bytes::from(chunk),
        packets,
        heard,
    }
}
