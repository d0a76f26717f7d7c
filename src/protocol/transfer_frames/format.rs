//! A mission's frame format, and one frame's headers read by it: which frames are the link's,
//! and where their data field and first packet header lie.

use super::coding::crc16;

/// The first header pointer that says no packet starts in the frame's data field.
pub(crate) const NO_PACKET_START: u16 = 0x7FF;
/// The first header pointer of a frame of idle data only (TM's OID frames).
pub(crate) const IDLE_DATA_ONLY: u16 = 0x7FE;
/// The AOS virtual channel of idle frames.
pub(crate) const AOS_IDLE_VC: u8 = 63;
/// The longest frame the daemon reads: TM's own limit, and the reach of an 11-bit pointer.
pub(crate) const MAX_TRANSFER_FRAME: usize = 2048;

/// Which of the two frame formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferFrameKind {
    /// TM Space Data Link Protocol (132.0-B): 10-bit spacecraft id, 8 virtual channels.
    Tm,
    /// AOS Space Data Link Protocol (732.0-B): 8-bit spacecraft id, 64 virtual channels.
    Aos,
}

/// What a mission fixes for all its frames (a "managed parameter" in the standards).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransferFrameFormat {
    pub kind: TransferFrameKind,
    /// The frame's length in bytes, the marker excluded.
    pub length: usize,
    pub spacecraft_id: u16,
    /// Frames arrive pseudo-randomised (the station did not undo it).
    pub randomized: bool,
    /// Every frame ends with the 2-byte frame error control field.
    pub fecf: bool,
    /// AOS frames carry the 4-byte operational control field; a TM frame's header says itself,
    /// so for TM this is only what [`TransferFrameWriter`](super::TransferFrameWriter) writes.
    pub ocf: bool,
    /// AOS: the 2-byte frame header error control follows the primary header (not checked).
    pub header_error_control: bool,
    /// AOS: the insert zone's length, between the header and the data field (passed over).
    pub insert_zone: usize,
}

/// Why a frame was dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransferFrameError {
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

impl TransferFrameFormat {
    /// The modulus of the virtual channel frame count: 8 bits in TM, 24 in AOS.
    pub fn count_modulus(&self) -> u32 {
        match self.kind {
            TransferFrameKind::Tm => 1 << 8,
            TransferFrameKind::Aos => 1 << 24,
        }
    }

    /// The largest spacecraft id the header holds.
    pub fn max_spacecraft_id(&self) -> u16 {
        match self.kind {
            TransferFrameKind::Tm => 0x3FF,
            TransferFrameKind::Aos => 0xFF,
        }
    }

    /// The largest virtual channel that carries packets (AOS' 63 is idle frames').
    pub fn max_vcid(&self) -> u8 {
        match self.kind {
            TransferFrameKind::Tm => 7,
            TransferFrameKind::Aos => AOS_IDLE_VC - 1,
        }
    }

    /// The bytes before the data field: the primary header, and for AOS the header error
    /// control, the insert zone and the M_PDU header (TM's secondary header is per frame).
    fn head_len(&self) -> usize {
        match self.kind {
            TransferFrameKind::Tm => 6,
            TransferFrameKind::Aos => {
                6 + 2 * usize::from(self.header_error_control) + self.insert_zone + 2
            }
        }
    }

    fn trailer_len(&self, ocf: bool) -> usize {
        4 * usize::from(ocf) + 2 * usize::from(self.fecf)
    }

    /// The data field's length in a frame as [`TransferFrameWriter`](super::TransferFrameWriter)
    /// writes it (0 when none is left).
    pub fn data_capacity(&self) -> usize {
        let around = self.head_len() + self.trailer_len(self.ocf);
        self.length.saturating_sub(around)
    }

    /// Reads one frame, derandomised. Checks, in order, the length, the FECF, the version, the
    /// spacecraft id and the first header pointer; the virtual channel is the reader's to check.
    pub fn parse<'a>(&self, frame: &'a [u8]) -> Result<TransferFrame<'a>, TransferFrameError> {
        if frame.len() != self.length {
            let expected = self.length;
            return Err(TransferFrameError::Length {
                got: frame.len(),
                expected,
            });
        }
        let body = match self.fecf {
            true => check_fecf(frame)?,
            false => frame,
        };
        if body.len() < self.head_len() {
            return Err(TransferFrameError::NoDataField);
        }
        let word = u16::from_be_bytes([frame[0], frame[1]]);
        let version = (word >> 14) as u8;
        let (expected_version, spacecraft, vcid) = match self.kind {
            TransferFrameKind::Tm => (0, (word >> 4) & 0x3FF, ((word >> 1) & 0x7) as u8),
            TransferFrameKind::Aos => (1, (word >> 6) & 0xFF, (word & 0x3F) as u8),
        };
        if version != expected_version {
            return Err(TransferFrameError::Version(version));
        }
        if spacecraft != self.spacecraft_id {
            let expected = self.spacecraft_id;
            return Err(TransferFrameError::Spacecraft {
                got: spacecraft,
                expected,
            });
        }
        match self.kind {
            TransferFrameKind::Tm => self.tm_fields(body, word & 1 == 1, vcid),
            TransferFrameKind::Aos => self.aos_fields(body, vcid),
        }
    }

    fn tm_fields<'a>(
        &self,
        body: &'a [u8],
        ocf: bool,
        vcid: u8,
    ) -> Result<TransferFrame<'a>, TransferFrameError> {
        let status = u16::from_be_bytes([body[4], body[5]]);
        if status & 0x4000 != 0 {
            return Err(TransferFrameError::NotPackets);
        }
        // The secondary header's first byte holds its length minus one in its low six bits.
        let secondary = match status & 0x8000 != 0 {
            true => usize::from(body.get(6).ok_or(TransferFrameError::NoDataField)? & 0x3F) + 1,
            false => 0,
        };
        let start = 6 + secondary;
        let end = body.len().checked_sub(4 * usize::from(ocf));
        let data = end
            .and_then(|end| body.get(start..end))
            .filter(|data| !data.is_empty())
            .ok_or(TransferFrameError::NoDataField)?;
        let count = u32::from(body[3]);
        let first_header = first_header(status & 0x7FF, data.len())?;
        Ok(TransferFrame {
            vcid,
            count,
            first_header,
            data,
        })
    }

    fn aos_fields<'a>(
        &self,
        body: &'a [u8],
        vcid: u8,
    ) -> Result<TransferFrame<'a>, TransferFrameError> {
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
            .ok_or(TransferFrameError::NoDataField)?;
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

fn first_header(pointer: u16, len: usize) -> Result<FirstHeader, TransferFrameError> {
    match pointer {
        NO_PACKET_START => Ok(FirstHeader::NoStart),
        IDLE_DATA_ONLY => Ok(FirstHeader::IdleOnly),
        at if usize::from(at) < len => Ok(FirstHeader::At(usize::from(at))),
        pointer => Err(TransferFrameError::FirstHeader { pointer, len }),
    }
}

/// The frame without its FECF, if the FECF is the CRC of the rest.
fn check_fecf(frame: &[u8]) -> Result<&[u8], TransferFrameError> {
    let at = frame
        .len()
        .checked_sub(2)
        .ok_or(TransferFrameError::NoDataField)?;
    let (body, field) = frame.split_at(at);
    let field = u16::from_be_bytes([field[0], field[1]]);
    let computed = crc16(body);
    match field == computed {
        true => Ok(body),
        false => Err(TransferFrameError::Fecf { field, computed }),
    }
}
