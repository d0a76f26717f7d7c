//! FRAMES: the frames of one archive record, what they share and the first one's position once,
//! then each frame's sequence, length and payload, as the archive stores them.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::decode_error::DecodeError;
use super::reception::encode_reception;
use super::wire::{get_position, put_position, FRAMES, FRAMES_HEADER_LEN, FRAME_ENTRY_LEN};
use crate::archive::read::FrameRun;
use crate::domain::frame::{Priority, SourceKind};
use crate::domain::shard::MAX_SHARDS;

/// Appends `run`'s FRAMES message with its length prefix, after its RECEPTION when it has one and
/// `version` carries it.
pub(crate) fn encode_frames(run: &FrameRun, version: u8, dst: &mut BytesMut) {
    if let Some((delivery, received)) = run.reception.as_ref().filter(|_| version >= 4) {
        encode_reception(delivery, received, version, dst);
    }
    let payloads: usize = run.frames.iter().map(|(_, p)| p.len()).sum();
    let len = FRAMES_HEADER_LEN + FRAME_ENTRY_LEN * run.frames.len() + payloads;
    dst.reserve(4 + len);
    dst.put_u32(len as u32);
    dst.put_u8(FRAMES);
    dst.put_u8(run.kind.to_byte());
    dst.put_u8(run.priority.to_byte());
    dst.put_u32(run.source_id);
    dst.put_u64(run.received_unix_ns);
    dst.put_u8(run.shard as u8);
    put_position(dst, run.first);
    dst.put_u32(run.frames.len() as u32);
    for (sequence, payload) in &run.frames {
        dst.put_u64(*sequence);
        dst.put_u32(payload.len() as u32);
        dst.put_slice(payload);
    }
}

/// Decodes a FRAMES body after its type byte (`len` bytes with it).
pub(super) fn decode_frames(mut body: Bytes, len: usize) -> Result<FrameRun, DecodeError> {
    let header = FRAMES_HEADER_LEN;
    if len < header {
        return Err(DecodeError::Short {
            what: "FRAMES",
            len,
            least: header,
        });
    }
    let (kind_byte, priority_byte) = (body.get_u8(), body.get_u8());
    let kind = SourceKind::from_byte(kind_byte).ok_or(DecodeError::UndefinedKind(kind_byte))?;
    let priority =
        Priority::from_byte(priority_byte).ok_or(DecodeError::UndefinedPriority(priority_byte))?;
    let source_id = body.get_u32();
    let received_unix_ns = body.get_u64();
    let shard = usize::from(body.get_u8());
    if shard >= MAX_SHARDS {
        return Err(DecodeError::Shard(shard));
    }
    let first = get_position(&mut body);
    let count = body.get_u32();
    Ok(FrameRun {
        shard,
        kind,
        priority,
        source_id,
        received_unix_ns,
        first,
        frames: get_frames(body, count)?,
        reception: None,
    })
}

/// FRAMES' `count` frames, which must be all that is left of `body`, and at least one.
fn get_frames(mut body: Bytes, count: u32) -> Result<Vec<(u64, Bytes)>, DecodeError> {
    let mut frames = Vec::with_capacity((count as usize).min(body.len() / FRAME_ENTRY_LEN));
    for index in 0..count {
        if body.len() < FRAME_ENTRY_LEN {
            return Err(DecodeError::EndsInFrame { count, index });
        }
        let sequence = body.get_u64();
        let payload_len = body.get_u32() as usize;
        if payload_len > body.len() {
            return Err(DecodeError::Payload {
                index,
                len: payload_len,
                left: body.len(),
            });
        }
        frames.push((sequence, body.split_to(payload_len)));
    }
    if count == 0 || !body.is_empty() {
        return Err(DecodeError::LeftOver {
            count,
            left: body.len(),
        });
    }
    Ok(frames)
}
