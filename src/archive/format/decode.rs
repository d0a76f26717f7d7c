//! How a record is read back: one record at a byte offset, every byte checked (the CRC, the
//! lengths, the kind and priority bytes), and why it is bad when it is.

use std::sync::Arc;

use bytes::Bytes;

use super::record::*;
use crate::domain::clock::{ClockEvent, ClockEventKind};
use crate::domain::frame::{Priority, SourceKind};
use crate::domain::reception::{
    Ax25Addresses, Callsign, Delivery, Received, Reception, ReceptionFlags,
};

/// Why a record could not be decoded.
pub(super) enum Bad {
    /// The header or body runs past the end of the file.
    Incomplete(String),
    /// Complete but wrong: length out of range or CRC mismatch. A crash can cause this.
    Damaged(String),
    /// The CRC matches but the contents are impossible: only a bug or deliberate damage does this.
    Impossible(String),
}

impl Bad {
    /// Whether a crash's incomplete last write can look like this.
    pub(super) fn crash_can_explain(&self) -> bool {
        !matches!(self, Bad::Impossible(_))
    }

    pub(super) fn into_reason(self) -> String {
        match self {
            Bad::Incomplete(reason) | Bad::Damaged(reason) | Bad::Impossible(reason) => reason,
        }
    }
}

pub(super) fn be_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_be_bytes(a)
}

pub(super) fn be_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}

/// The body length in the header of the record at `pos`, which must hold a header: no record has
/// an empty body or one past [`MAX_BODY_LEN`].
pub(super) fn body_len(data: &[u8], pos: usize) -> Result<usize, Bad> {
    let len = be_u32(data, pos);
    if len == 0 || len > MAX_BODY_LEN {
        return Err(Bad::Damaged(format!(
            "body length {len} is outside 1..={MAX_BODY_LEN}"
        )));
    }
    Ok(len as usize)
}

/// Decodes the record at `pos` of a segment of format `version` into `out` (a FRAMES record gives
/// one entry per frame, all at `pos`); returns the offset right after it. On an error `out` is as
/// it was.
pub(super) fn decode_at(
    data: &Bytes,
    pos: usize,
    version: u8,
    out: &mut Vec<(u64, Entry)>,
) -> Result<usize, Bad> {
    let body_start = pos + RECORD_HEADER_LEN;
    let body = checked_body(data, pos)?;
    let len = body.len();
    if versions_of(body[0]).is_some_and(|versions| !versions.contains(&version)) {
        return Err(Bad::Impossible(format!(
            "record type {} in a version {version} segment",
            body[0]
        )));
    }
    let entry = match body[0] {
        TYPE_FRAME => Entry::Frame(decode_frame(data, body_start, body)?),
        TYPE_WATERMARK => decode_watermark(body)?,
        TYPE_STORED => decode_stored(body)?,
        TYPE_STORED_RUN => decode_stored_run(body)?,
        TYPE_CLOCK => Entry::Clock(decode_clock(body)?),
        TYPE_FRAMES | TYPE_RECEIVED_FRAMES => {
            let before = out.len();
            let decoded = decode_frames(data, body_start, len, pos, out);
            if decoded.is_err() {
                out.truncate(before);
            }
            decoded?;
            return Ok(body_start + len);
        }
        other => return Err(Bad::Impossible(format!("unknown record type {other}"))),
    };
    out.push((pos as u64, entry));
    Ok(body_start + len)
}

/// The body of the record at `pos`, whole and with its CRC matching.
fn checked_body(data: &Bytes, pos: usize) -> Result<&[u8], Bad> {
    let rest = data.len() - pos;
    if rest < RECORD_HEADER_LEN {
        return Err(Bad::Incomplete(format!(
            "record header cut short ({rest} of {RECORD_HEADER_LEN} bytes)"
        )));
    }
    let len = body_len(data, pos)?;
    let body_start = pos + RECORD_HEADER_LEN;
    if len > data.len() - body_start {
        return Err(Bad::Incomplete(format!(
            "record body cut short ({} of {len} bytes)",
            data.len() - body_start
        )));
    }
    let body = &data[body_start..body_start + len];
    let stored_crc = be_u32(data, pos + 4);
    let crc = crc32fast::hash(body);
    if crc != stored_crc {
        return Err(Bad::Damaged(format!(
            "CRC mismatch (stored {stored_crc:08x}, computed {crc:08x}) over a {len}-byte body"
        )));
    }
    Ok(body)
}

/// A FRAME record's `body`, which starts at `body_start` of `data` (its payload shares `data`).
fn decode_frame(data: &Bytes, body_start: usize, body: &[u8]) -> Result<FrameRecord, Bad> {
    let len = body.len();
    if len < FRAME_BODY_FIXED {
        return Err(Bad::Impossible(format!(
            "frame record body of {len} bytes, shorter than {FRAME_BODY_FIXED}"
        )));
    }
    let priority = priority(body[2])?;
    Ok(FrameRecord {
        kind: kind(body[1])?,
        priority,
        source_id: be_u32(body, 3),
        sequence: be_u64(body, 7),
        received_unix_ns: be_u64(body, 15),
        payload: data.slice(body_start + FRAME_BODY_FIXED..body_start + len),
        reception: None,
    })
}

/// A WATERMARK record's body.
fn decode_watermark(body: &[u8]) -> Result<Entry, Bad> {
    let (kind, source_id, acked) = decode_mark(body)?;
    Ok(Entry::Watermark {
        kind,
        source_id,
        acked,
    })
}

/// A STORED record's body (versions 1 and 2): a run of one sequence.
fn decode_stored(body: &[u8]) -> Result<Entry, Bad> {
    let (kind, source_id, sequence) = decode_mark(body)?;
    Ok(Entry::Stored {
        kind,
        source_id,
        first: sequence,
        last: sequence,
    })
}

/// The source and the value of a WATERMARK or STORED record's body, which `encode_mark` wrote.
fn decode_mark(body: &[u8]) -> Result<(SourceKind, u32, u64), Bad> {
    if body.len() != MARK_BODY_LEN {
        return Err(Bad::Impossible(format!(
            "type {} record body of {} bytes, expected {MARK_BODY_LEN}",
            body[0],
            body.len()
        )));
    }
    Ok((kind(body[1])?, be_u32(body, 2), be_u64(body, 6)))
}

/// A STORED RUN record's body.
fn decode_stored_run(body: &[u8]) -> Result<Entry, Bad> {
    if body.len() != RUN_BODY_LEN {
        return Err(Bad::Impossible(format!(
            "type {TYPE_STORED_RUN} record body of {} bytes, expected {RUN_BODY_LEN}",
            body.len()
        )));
    }
    let (first, last) = (be_u64(body, 6), be_u64(body, 14));
    if first > last {
        return Err(Bad::Impossible(format!(
            "stored run from {first} down to {last}"
        )));
    }
    Ok(Entry::Stored {
        kind: kind(body[1])?,
        source_id: be_u32(body, 2),
        first,
        last,
    })
}

/// A CLOCK record's body.
fn decode_clock(body: &[u8]) -> Result<ClockEvent, Bad> {
    if body.len() != CLOCK_BODY_LEN {
        return Err(Bad::Impossible(format!(
            "type {TYPE_CLOCK} record body of {} bytes, expected {CLOCK_BODY_LEN}",
            body.len()
        )));
    }
    let kind = ClockEventKind::from_byte(body[1])
        .ok_or_else(|| Bad::Impossible(format!("undefined clock event {}", body[1])))?;
    Ok(ClockEvent {
        kind,
        archive_ns: be_u64(body, 2),
        wall_ns: be_u64(body, 10),
        jump_ns: be_u64(body, 18) as i64,
    })
}

/// A record's source kind byte, or why it is impossible.
fn kind(byte: u8) -> Result<SourceKind, Bad> {
    SourceKind::from_byte(byte)
        .ok_or_else(|| Bad::Impossible(format!("undefined source kind {byte}")))
}

/// A record's priority byte, or why it is impossible.
fn priority(byte: u8) -> Result<Priority, Bad> {
    Priority::from_byte(byte).ok_or_else(|| Bad::Impossible(format!("undefined priority {byte}")))
}

/// Decodes the frames of the FRAMES or RECEIVED FRAMES record whose `len`-byte body starts at
/// `body_start`, appending one entry per frame at `pos`. On an error some may have been
/// appended: the caller takes them back.
fn decode_frames(
    data: &Bytes,
    body_start: usize,
    len: usize,
    pos: usize,
    out: &mut Vec<(u64, Entry)>,
) -> Result<(), Bad> {
    let body = &data[body_start..body_start + len];
    if len < FRAMES_BODY_FIXED {
        return Err(Bad::Impossible(format!(
            "FRAMES record body of {len} bytes, shorter than {FRAMES_BODY_FIXED}"
        )));
    }
    let (kind, priority) = (kind(body[1])?, priority(body[2])?);
    let source_id = be_u32(body, 3);
    let received_unix_ns = be_u64(body, 7);
    let count = be_u32(body, 15);
    let mut at = FRAMES_BODY_FIXED;
    let delivery = match body[0] {
        TYPE_RECEIVED_FRAMES => Some(Arc::new(decode_delivery(body, &mut at)?)),
        _ => None,
    };
    for index in 0..count {
        let bad = |what: String| {
            Bad::Impossible(format!(
                "FRAMES record of {count} frames: frame {index} {what}"
            ))
        };
        if len - at < FRAMES_ENTRY_FIXED {
            return Err(bad(format!("header runs past the {len}-byte body")));
        }
        let sequence = be_u64(body, at);
        let payload_len = be_u32(body, at + 8) as usize;
        at += FRAMES_ENTRY_FIXED;
        let reception = match &delivery {
            Some(delivery) => Some(Box::new(Reception {
                delivery: Arc::clone(delivery),
                received: decode_received(body, &mut at).map_err(bad)?,
            })),
            None => None,
        };
        if payload_len > len - at {
            return Err(bad(format!(
                "payload of {payload_len} bytes runs past the {len}-byte body"
            )));
        }
        out.push((
            pos as u64,
            Entry::Frame(FrameRecord {
                kind,
                priority,
                source_id,
                sequence,
                received_unix_ns,
                payload: data.slice(body_start + at..body_start + at + payload_len),
                reception,
            }),
        ));
        at += payload_len;
    }
    if count == 0 || at != len {
        return Err(Bad::Impossible(format!(
            "FRAMES record of {count} frames leaves {} of its {len} body bytes unused",
            len - at
        )));
    }
    Ok(())
}

/// The link's and the station's names of a RECEIVED FRAMES record, from `body[*at..]`.
fn decode_delivery(body: &[u8], at: &mut usize) -> Result<Delivery, Bad> {
    let mut name = |what: &str| {
        let len = usize::from(*body.get(*at).ok_or_else(|| {
            Bad::Impossible(format!("RECEIVED FRAMES record cut within its {what} name"))
        })?);
        let bytes = body.get(*at + 1..*at + 1 + len).ok_or_else(|| {
            Bad::Impossible(format!("RECEIVED FRAMES record cut within its {what} name"))
        })?;
        *at += 1 + len;
        std::str::from_utf8(bytes).map(Arc::from).map_err(|_| {
            Bad::Impossible(format!(
                "RECEIVED FRAMES record: its {what} name is not UTF-8"
            ))
        })
    };
    let link = name("link")?;
    let station = name("station")?;
    Ok(Delivery { link, station })
}

/// A received frame's flags and the fields they announce, from `body[*at..]`.
fn decode_received(body: &[u8], at: &mut usize) -> Result<Received, String> {
    let cut = || format!("reception runs past the {}-byte body", body.len());
    let flags = ReceptionFlags::from_byte(*body.get(*at).ok_or_else(cut)?)
        .map_err(|byte| format!("has undefined reception flags 0x{byte:02X}"))?;
    *at += 1;
    let mut take = |n: usize| {
        let bytes = body.get(*at..*at + n).ok_or_else(cut)?;
        *at += n;
        Ok::<_, String>(bytes)
    };
    let earth_unix_ns = match flags.earth_time() {
        false => None,
        true => Some(be_u64(take(8)?, 0)),
    };
    let ax25 = match flags.ax25() {
        false => None,
        true => {
            let bytes = take(2 * CALLSIGN_LEN)?;
            let callsign = |b: &[u8]| {
                let mut call = [0; 6];
                call.copy_from_slice(&b[..6]);
                Callsign::from_parts(call, b[6])
            };
            Some(Ax25Addresses {
                from: callsign(&bytes[..CALLSIGN_LEN]),
                to: callsign(&bytes[CALLSIGN_LEN..]),
            })
        }
    };
    Ok(Received {
        earth_unix_ns,
        playback: flags.playback(),
        ax25,
    })
}
