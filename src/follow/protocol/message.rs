//! What the daemon sends a follower ([`DaemonMessage`]), each message encoded and decoded: the
//! short ones here (SUBSCRIBED, REFUSED, END, CATALOG, SKIPPED, EARLIEST), FRAMES and RECEPTION
//! in their own files.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::decode_error::DecodeError;
use super::end::{End, EndReason};
use super::frames::{decode_frames, encode_frames};
use super::reception::{decode_reception, encode_reception, RunReception};
use super::refusal::{Refusal, RefuseReason};
use super::wire::{CATALOG, EARLIEST, END, FRAMES, RECEPTION, RECORDED_RECEPTION};
use super::wire::{REFUSED, SKIPPED, SUBSCRIBED};
use super::wire::{SKIPPED_FIXED_LEN, SKIPPED_SOURCE_LEN, VERSION};
use crate::archive::read::{Earliest, FrameRun, Skipped};
use crate::domain::frame::SourceKind;

/// What the daemon sends a follower.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DaemonMessage {
    Subscribed {
        version: u8,
    },
    Refused {
        reason: RefuseReason,
        detail: String,
    },
    /// FRAMES (0x96).
    Frames(FrameRun),
    End {
        reason: EndReason,
        detail: String,
    },
    /// A catalog version was published: sent after SUBSCRIBED when one exists, and
    /// at each publication.
    Catalog {
        version: u64,
    },
    /// SKIPPED (0x97): segments the subscription needed were deleted, and it goes on at the
    /// oldest one left (only to a SUBSCRIBE that asked for it).
    Skipped(Skipped),
    /// EARLIEST (0x98): a shard holds no frame received before this time any more (retention
    /// deleted its older segments), and the subscription's window starts before it.
    Earliest(Earliest),
    /// RECEPTION (0x99): the reception of each frame of the FRAMES that follows (version 4);
    /// RECORDED RECEPTION (0x9A) when they were read from a recording (version 5).
    Reception(RunReception),
}

/// REFUSED, with the refusal's code and text.
impl From<&Refusal> for DaemonMessage {
    fn from(refusal: &Refusal) -> DaemonMessage {
        DaemonMessage::Refused {
            reason: refusal.reason(),
            detail: refusal.to_string(),
        }
    }
}

/// END, with the ending's code and text.
impl From<&End> for DaemonMessage {
    fn from(end: &End) -> DaemonMessage {
        DaemonMessage::End {
            reason: end.reason(),
            detail: end.to_string(),
        }
    }
}

impl DaemonMessage {
    /// Appends the message with its length prefix.
    pub fn encode(&self, dst: &mut BytesMut) {
        let (kind, code, detail) = match self {
            DaemonMessage::Subscribed { version } => {
                dst.put_u32(2);
                dst.put_u8(SUBSCRIBED);
                dst.put_u8(*version);
                return;
            }
            DaemonMessage::Frames(run) => return encode_frames(run, VERSION, dst),
            DaemonMessage::Reception((delivery, received)) => {
                return encode_reception(delivery, received, VERSION, dst)
            }
            DaemonMessage::Catalog { version } => {
                dst.put_u32(9);
                dst.put_u8(CATALOG);
                dst.put_u64(*version);
                return;
            }
            DaemonMessage::Skipped(skipped) => return encode_skipped(skipped, dst),
            DaemonMessage::Earliest(earliest) => {
                dst.put_u32(10);
                dst.put_u8(EARLIEST);
                dst.put_u8(earliest.shard as u8);
                dst.put_u64(earliest.oldest);
                return;
            }
            DaemonMessage::Refused { reason, detail } => (REFUSED, *reason as u8, detail),
            DaemonMessage::End { reason, detail } => (END, *reason as u8, detail),
        };
        dst.put_u32((2 + detail.len()) as u32);
        dst.put_u8(kind);
        dst.put_u8(code);
        dst.put_slice(detail.as_bytes());
    }

    /// Decodes one body (the bytes after the length prefix); an unknown type or code is an error.
    pub fn decode(mut body: Bytes) -> Result<DaemonMessage, DecodeError> {
        let len = body.len();
        let Some(&kind) = body.first() else {
            return Err(DecodeError::Empty);
        };
        let length = |what, expected| DecodeError::Length {
            what,
            len,
            expected,
        };
        body.advance(1);
        match kind {
            SUBSCRIBED if len == 2 => Ok(DaemonMessage::Subscribed {
                version: body.get_u8(),
            }),
            SUBSCRIBED => Err(length("SUBSCRIBED", 2)),
            FRAMES => decode_frames(body, len).map(DaemonMessage::Frames),
            CATALOG if len == 9 => Ok(DaemonMessage::Catalog {
                version: body.get_u64(),
            }),
            CATALOG => Err(length("CATALOG", 9)),
            SKIPPED => decode_skipped(body, len).map(DaemonMessage::Skipped),
            EARLIEST if len == 10 => Ok(DaemonMessage::Earliest(Earliest {
                shard: usize::from(body.get_u8()),
                oldest: body.get_u64(),
            })),
            EARLIEST => Err(length("EARLIEST", 10)),
            RECEPTION => decode_reception(body, false).map(DaemonMessage::Reception),
            RECORDED_RECEPTION => decode_reception(body, true).map(DaemonMessage::Reception),
            REFUSED | END if len < 2 => Err(DecodeError::Short {
                what: "REFUSED or END",
                len,
                least: 2,
            }),
            REFUSED | END => decode_refused_or_end(kind, body),
            other => Err(DecodeError::Type(other)),
        }
    }
}

/// A REFUSED or END body after its type: its code, then its text.
fn decode_refused_or_end(kind: u8, mut body: Bytes) -> Result<DaemonMessage, DecodeError> {
    let code = body.get_u8();
    let detail = String::from_utf8_lossy(&body).into_owned();
    let what = match kind {
        REFUSED => match RefuseReason::from_code(code) {
            Some(reason) => return Ok(DaemonMessage::Refused { reason, detail }),
            None => "REFUSED",
        },
        _ => match EndReason::from_code(code) {
            Some(reason) => return Ok(DaemonMessage::End { reason, detail }),
            None => "END",
        },
    };
    Err(DecodeError::UnknownReason { what, code, detail })
}

/// Appends a SKIPPED message with its length prefix.
fn encode_skipped(skipped: &Skipped, dst: &mut BytesMut) {
    let len = SKIPPED_FIXED_LEN + SKIPPED_SOURCE_LEN * skipped.sources.len();
    dst.reserve(4 + len);
    dst.put_u32(len as u32);
    dst.put_u8(SKIPPED);
    dst.put_u8(skipped.shard as u8);
    dst.put_u64(skipped.deleted);
    dst.put_u64(skipped.resumed);
    dst.put_u32(skipped.sources.len() as u32);
    for &((kind, id), frames) in &skipped.sources {
        dst.put_u8(kind.to_byte());
        dst.put_u32(id);
        dst.put_u64(frames);
    }
}

/// A SKIPPED body after its type, `len` bytes in all with the type.
fn decode_skipped(mut body: Bytes, len: usize) -> Result<Skipped, DecodeError> {
    if len < SKIPPED_FIXED_LEN {
        let least = SKIPPED_FIXED_LEN;
        return Err(DecodeError::Short {
            what: "SKIPPED",
            len,
            least,
        });
    }
    let (shard, deleted, resumed) = (body.get_u8(), body.get_u64(), body.get_u64());
    let count = body.get_u32() as usize;
    let expected = count
        .checked_mul(SKIPPED_SOURCE_LEN)
        .and_then(|n| n.checked_add(SKIPPED_FIXED_LEN));
    if expected != Some(len) {
        let expected = expected.unwrap_or(usize::MAX);
        return Err(DecodeError::Length {
            what: "SKIPPED",
            len,
            expected,
        });
    }
    let mut sources = Vec::with_capacity(count);
    for _ in 0..count {
        let byte = body.get_u8();
        let kind = SourceKind::from_byte(byte).ok_or(DecodeError::SourceKind(byte))?;
        sources.push(((kind, body.get_u32()), body.get_u64()));
    }
    Ok(Skipped {
        shard: usize::from(shard),
        deleted,
        resumed,
        sources,
    })
}
