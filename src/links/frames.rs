//! A link's frame layer: the transfer frames a station delivers (`framing = "tm-frames"` or
//! `"aos-frames"`) become the packets the link's [`Station`](super::station::Station) takes,
//! as if the station had sent the packets themselves.
//!
//! Extraction copies: a packet may span frames, so the packets of one read are gathered into a
//! chunk of their own, as KISS unescaping does. A read's counts reach the link's counters once,
//! with its packets, and bad frames are logged at most once a second: a station sending noise
//! costs its own frames, never the link.

use bytes::{Buf, Bytes, BytesMut};

use super::station::{Heard, Link, ReadPackets};
use crate::protocol::transfer_frames::{Extracted, TransferFrameReader, TransferFrameStream};

/// One connection's (or a UDP socket's) frames in, packets out.
pub(crate) struct Deframer {
    stream: TransferFrameStream,
    reader: TransferFrameReader,
    /// The packets and counts of the frames read since the last [`Deframer::packets`].
    out: Extracted,
}

impl Deframer {
    /// The link's frame layer, if its framing is one of frames.
    pub(crate) fn new(link: &Link) -> Option<Deframer> {
        let (stream, reader) = link.config.frame_reader()?;
        let out = Extracted::default();
        Some(Deframer {
            stream,
            reader,
            out,
        })
    }

    /// Takes the whole frames at the front of `buf` off it; bytes passed over before a marker
    /// are counted as a lost sync.
    pub(crate) fn read_stream(&mut self, link: &Link, buf: &mut BytesMut) {
        let cuts = self.stream.delimit(buf);
        link.lost_sync(cuts.skipped);
        for frame in cuts.frames {
            self.frame(link, &buf[frame]);
        }
        buf.advance(cuts.end);
    }

    /// Takes one datagram: one frame, after the marker if the link expects one.
    pub(crate) fn read_datagram(&mut self, link: &Link, datagram: &[u8]) {
        match self.stream.datagram(datagram) {
            Some(frame) => self.frame(link, frame),
            None => {
                self.out.tally.frames_dropped += 1;
                bad_frame(link, &"a datagram without the sync marker 1A CF FC 1D");
            }
        }
    }

    /// Takes one transfer frame, its marker off (a recording's, `super::backfill`).
    pub(crate) fn frame(&mut self, link: &Link, frame: &[u8]) {
        if let Err(err) = self.reader.take(frame, &mut self.out) {
            bad_frame(link, &err);
        }
    }

    /// The packets of the frames read since the last call, as one chunk, each with its virtual
    /// channel, and their counts added to the link's.
    pub(crate) fn packets(&mut self, link: &Link) -> ReadPackets {
        let out = std::mem::take(&mut self.out);
        let tally = &out.tally;
        link.counters.frames(tally);
        let lost = tally.vc_gaps + tally.packets_dropped_incomplete;
        if lost > 0 && link.may_log() {
            tracing::warn!(
                link = %link.config.name,
                frames_lost = tally.vc_gaps,
                packets_dropped = tally.packets_dropped_incomplete,
                "frames missing from a virtual channel's count: the packets in reassembly are dropped"
            );
        }
        let heard = (out.channels.iter())
            .map(|&vc| Heard {
                vc: Some(vc),
                ..Heard::default()
            })
            .collect();
        ReadPackets {
            chunk: Bytes::from(out.bytes),
            packets: out.packets,
            heard,
        }
    }

    /// The stream ended: packets in reassembly are dropped and counted.
    pub(crate) fn finish(&mut self, link: &Link) {
        self.reader.finish(&mut self.out);
        let _ = self.packets(link);
    }
}

fn bad_frame(link: &Link, why: &dyn std::fmt::Display) {
    if link.may_log() {
        tracing::warn!(link = %link.config.name, reason = %why, "transfer frame dropped");
    }
}
