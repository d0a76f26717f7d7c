//! How a record is read back: one record at a byte offset, every byte checked (the CRC, the
//! lengths, the kind and priority bytes), and why it is bad when it is (a [`DamageReason`]).

use std::sync::Arc;

use bytes::Bytes;

use super::damage::{DamageReason, DeliveryName, FrameFault};
use super::input::Input;
use super::record::*;
use crate::domain::clock::{ClockEvent, ClockEventKind};
use crate::domain::frame::{Priority, SourceKind};
use crate::domain::reception::{
    Ax25Addresses, Callsign, Delivery, Received, Reception, ReceptionFlags,
};

/// The body length and the CRC of a record header, read from `input`; `None` when it is cut
/// short.
pub(super) fn record_header(input: &mut Input) -> Option<(u32, u32)> {
    Some((input.u32()?, input.u32()?))
}

/// A record header's body length `len`, checked: no record has an empty body or one past
/// [`MAX_BODY_LEN`].
pub(super) fn body_len(len: u32) -> Result<usize, DamageReason> {
    match len {
        1..=MAX_BODY_LEN => Ok(len as usize),
        _ => Err(DamageReason::LengthOutside { len }),
    }
}

/// Decodes the record at `pos` of a segment of format `version` into `out` (a FRAMES record gives
/// one entry per frame, all at `pos`); returns the offset right after it. On an error `out` is as
/// it was.
pub(super) fn decode_at(
    data: &Bytes,
    pos: usize,
    version: u8,
    out: &mut Vec<(u64, Entry)>,
) -> Result<usize, DamageReason> {
    let (record_type, body) = checked_body(data, pos)?;
    let next = pos + RECORD_HEADER_LEN + body.len();
    if versions_of(record_type).is_some_and(|versions| !versions.contains(&version)) {
        return Err(DamageReason::TypeOfOtherVersion {
            record_type,
            version,
        });
    }
    let entry = match record_type {
        TYPE_FRAME => Entry::Frame(decode_frame(data, body)?),
        TYPE_WATERMARK => decode_watermark(body)?,
        TYPE_STORED => decode_stored(body)?,
        TYPE_STORED_RUN => decode_stored_run(body)?,
        TYPE_CLOCK => Entry::Clock(decode_clock(body)?),
        TYPE_FRAMES | TYPE_RECEIVED_FRAMES | TYPE_RECORDED_FRAMES => {
            let before = out.len();
            let decoded = decode_frames(data, body, pos, out);
            if decoded.is_err() {
                out.truncate(before);
            }
            decoded?;
            return Ok(next);
        }
        other => return Err(DamageReason::UnknownRecordType(other)),
    };
    out.push((pos as u64, entry));
    Ok(next)
}

/// The type and the body of the record at `pos`, whole and with its CRC matching.
fn checked_body(data: &Bytes, pos: usize) -> Result<(u8, &[u8]), DamageReason> {
    let mut input = Input::new(data.get(pos..).unwrap_or_default());
    let rest = input.len();
    let Some((len, stored_crc)) = record_header(&mut input) else {
        return Err(DamageReason::HeaderCutShort { held: rest });
    };
    let len = body_len(len)?;
    let Some(body) = input.bytes(len) else {
        let held = input.len();
        return Err(DamageReason::BodyCutShort { held, len });
    };
    let crc = crc32fast::hash(body);
    if crc != stored_crc {
        return Err(DamageReason::CrcMismatch {
            stored: stored_crc,
            computed: crc,
            len,
        });
    }
    // `body_len` refused an empty body.
    let record_type = Input::new(body)
        .u8()
        .ok_or(DamageReason::LengthOutside { len: 0 })?;
    Ok((record_type, body))
}

/// A FRAME record's `body`, a part of `data` (its payload shares `data`).
fn decode_frame(data: &Bytes, body: &[u8]) -> Result<FrameRecord, DamageReason> {
    let mut input = Input::new(body);
    let head = |input: &mut Input| Some((input.take()?, input.u32()?, input.u64()?, input.u64()?));
    let Some(([_, kind_byte, priority_byte], source_id, sequence, received)) = head(&mut input)
    else {
        return Err(DamageReason::FrameBodyShort { len: body.len() });
    };
    let priority = priority(priority_byte)?;
    Ok(FrameRecord {
        kind: kind(kind_byte)?,
        priority,
        source_id,
        sequence,
        received_unix_ns: received,
        payload: data.slice_ref(input.rest()),
        reception: None,
    })
}

/// A WATERMARK record's body.
fn decode_watermark(body: &[u8]) -> Result<Entry, DamageReason> {
    let (kind, source_id, acked) = decode_mark(body)?;
    Ok(Entry::Watermark {
        kind,
        source_id,
        acked,
    })
}

/// A STORED record's body (versions 1 and 2): a run of one sequence.
fn decode_stored(body: &[u8]) -> Result<Entry, DamageReason> {
    let (kind, source_id, sequence) = decode_mark(body)?;
    Ok(Entry::Stored {
        kind,
        source_id,
        first: sequence,
        last: sequence,
    })
}

/// The source and the value of a WATERMARK or STORED record's body, which `encode_mark` wrote.
fn decode_mark(body: &[u8]) -> Result<(SourceKind, u32, u64), DamageReason> {
    let ([_, kind_byte], source_id, value) = whole(body, MARK_BODY_LEN, |input| {
        Some((input.take()?, input.u32()?, input.u64()?))
    })?;
    Ok((kind(kind_byte)?, source_id, value))
}

/// A STORED RUN record's body.
fn decode_stored_run(body: &[u8]) -> Result<Entry, DamageReason> {
    let ([_, kind_byte], source_id, first, last) = whole(body, RUN_BODY_LEN, |input| {
        Some((input.take()?, input.u32()?, input.u64()?, input.u64()?))
    })?;
    if first > last {
        return Err(DamageReason::StoredRunBackwards { first, last });
    }
    Ok(Entry::Stored {
        kind: kind(kind_byte)?,
        source_id,
        first,
        last,
    })
}

/// A CLOCK record's body.
fn decode_clock(body: &[u8]) -> Result<ClockEvent, DamageReason> {
    let ([_, event], archive_ns, wall_ns, jump_ns) = whole(body, CLOCK_BODY_LEN, |input| {
        Some((input.take()?, input.u64()?, input.u64()?, input.u64()?))
    })?;
    let kind = ClockEventKind::from_byte(event).ok_or(DamageReason::UndefinedClockEvent(event))?;
    Ok(ClockEvent {
        kind,
        archive_ns,
        wall_ns,
        jump_ns: jump_ns as i64,
    })
}

/// The fields `read` takes from the `body` of a record type whose bodies are `expected` bytes,
/// when they are the whole body; why it is impossible when it is of another length.
fn whole<T>(
    body: &[u8],
    expected: usize,
    read: impl FnOnce(&mut Input) -> Option<T>,
) -> Result<T, DamageReason> {
    let mut input = Input::new(body);
    match read(&mut input) {
        Some(fields) if input.is_empty() => Ok(fields),
        _ => {
            let record_type = Input::new(body).u8().unwrap_or_default();
            Err(DamageReason::BodyLength {
                record_type,
                len: body.len(),
                expected,
            })
        }
    }
}

/// A record's source kind byte, or why it is impossible.
fn kind(byte: u8) -> Result<SourceKind, DamageReason> {
    SourceKind::from_byte(byte).ok_or(DamageReason::UndefinedSourceKind(byte))
}

/// A record's priority byte, or why it is impossible.
fn priority(byte: u8) -> Result<Priority, DamageReason> {
    Priority::from_byte(byte).ok_or(DamageReason::UndefinedPriority(byte))
}

/// The fields a FRAMES or RECEIVED FRAMES record gives each of its frames.
struct Batch {
    kind: SourceKind,
    priority: Priority,
    source_id: u32,
    received_unix_ns: u64,
    /// The link's and the station's names, of a RECEIVED FRAMES record.
    delivery: Option<Arc<Delivery>>,
}

/// Decodes the frames of the FRAMES or RECEIVED FRAMES record `body` (a part of `data`, at
/// `pos`), appending one entry per frame at `pos`. On an error some may have been appended: the
/// caller takes them back.
fn decode_frames(
    data: &Bytes,
    body: &[u8],
    pos: usize,
    out: &mut Vec<(u64, Entry)>,
) -> Result<(), DamageReason> {
    let len = body.len();
    let mut input = Input::new(body);
    let (batch, count) = decode_batch(&mut input, len)?;
    for index in 0..count {
        let bad = |fault| DamageReason::BadFrame {
            count,
            index,
            fault,
        };
        let (Some(sequence), Some(payload_len)) = (input.u64(), input.u32()) else {
            return Err(bad(FrameFault::HeaderPastBody { len }));
        };
        let reception = match &batch.delivery {
            Some(delivery) => Some(Box::new(Reception {
                delivery: Arc::clone(delivery),
                received: decode_received(&mut input, len).map_err(bad)?,
            })),
            None => None,
        };
        let Some(payload) = input.bytes(payload_len as usize) else {
            return Err(bad(FrameFault::PayloadPastBody { payload_len, len }));
        };
        let frame = FrameRecord {
            kind: batch.kind,
            priority: batch.priority,
            source_id: batch.source_id,
            sequence,
            received_unix_ns: batch.received_unix_ns,
            payload: data.slice_ref(payload),
            reception,
        };
        out.push((pos as u64, Entry::Frame(frame)));
    }
    if count == 0 || !input.is_empty() {
        return Err(DamageReason::FramesBytesUnused {
            count,
            unused: input.len(),
            len,
        });
    }
    Ok(())
}

/// The fields before the first frame of a FRAMES or RECEIVED FRAMES record of a `len`-byte body,
/// from `input`, and the count of its frames.
fn decode_batch(input: &mut Input, len: usize) -> Result<(Batch, u32), DamageReason> {
    let head = |input: &mut Input| Some((input.take()?, input.u32()?, input.u64()?, input.u32()?));
    let Some(([record_type, kind_byte, priority_byte], source_id, received, count)) = head(input)
    else {
        return Err(DamageReason::FramesBodyShort { len });
    };
    let (kind, priority) = (kind(kind_byte)?, priority(priority_byte)?);
    let delivery = match record_type {
        TYPE_RECEIVED_FRAMES => Some(Arc::new(decode_delivery(input, false)?)),
        TYPE_RECORDED_FRAMES => Some(Arc::new(decode_delivery(input, true)?)),
        _ => None,
    };
    let batch = Batch {
        kind,
        priority,
        source_id,
        received_unix_ns: received,
        delivery,
    };
    Ok((batch, count))
}

/// The link's and the station's names of a RECEIVED FRAMES record, from `input`, and the
/// recording's of a RECORDED FRAMES record.
fn decode_delivery(input: &mut Input, recorded: bool) -> Result<Delivery, DamageReason> {
    let mut name = |which| {
        let cut = DamageReason::NameCut(which);
        let len = input.u8().ok_or(cut.clone())?;
        let bytes = input.bytes(usize::from(len)).ok_or(cut)?;
        std::str::from_utf8(bytes)
            .map(Arc::from)
            .map_err(|_| DamageReason::NameNotUtf8(which))
    };
    let link = name(DeliveryName::Link)?;
    let station = name(DeliveryName::Station)?;
    let recording = match recorded {
        true => Some(name(DeliveryName::Recording)?),
        false => None,
    };
    Ok(Delivery {
        link,
        station,
        recording,
    })
}

/// A received frame's flags and the fields they announce, from `input`, in a `len`-byte body.
fn decode_received(input: &mut Input, len: usize) -> Result<Received, FrameFault> {
    let cut = || FrameFault::ReceptionPastBody { len };
    let flags = ReceptionFlags::from_byte(input.u8().ok_or_else(cut)?)
        .map_err(FrameFault::UndefinedReceptionFlags)?;
    let earth_unix_ns = match flags.earth_time() {
        false => None,
        true => Some(input.u64().ok_or_else(cut)?),
    };
    let ax25 = match flags.ax25() {
        false => None,
        true => {
            let mut callsign = || {
                let (call, ssid) = input.take().zip(input.u8()).ok_or_else(cut)?;
                match ssid {
                    0..=15 => Ok(Callsign::from_parts(call, ssid)),
                    _ => Err(FrameFault::SsidOutOfRange(ssid)),
                }
            };
            let from = callsign()?;
            let to = callsign()?;
            Some(Ax25Addresses { from, to })
        }
    };
    Ok(Received {
        earth_unix_ns,
        playback: flags.playback(),
        ax25,
    })
}
