//! The framing keys read into the protocol's framings: a packet stream's delimiting, or a
//! transfer frame layer.

use super::{FramingName, LinkConfig};
use crate::protocol::ccsds::{Framing, LengthField};
use crate::protocol::transfer_frames::{
    TransferFrameFormat, TransferFrameKind, TransferFrameReader, TransferFrameStream,
};

impl LinkConfig {
    /// The framing the decoder uses (valid once [`validate`](super::validate) passed).
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

    /// The frames' format, with a frame framing (valid once [`validate`](super::validate) passed).
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
}
