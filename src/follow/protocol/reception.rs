//! RECEPTION (version 4): who delivered a link's frames, and each frame's reception, sent before
//! their FRAMES. Each frame's flags say what follows them: an earth-receive time, AX.25
//! addresses; and whether it was played back. RECORDED RECEPTION (version 5) is RECEPTION with
//! the name of the recording a backfill read the frames from: a version 4 follower, which knows
//! no such message, gets RECEPTION without the name.

use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::decode_error::DecodeError;
use super::wire::{RECEPTION, RECORDED_RECEPTION};
use crate::domain::reception::{Ax25Addresses, Callsign, Delivery, Received, ReceptionFlags};

/// Who delivered a run's frames, and each one's reception.
pub(crate) type RunReception = (Arc<Delivery>, Vec<Received>);

/// Appends a RECEPTION message with its length prefix, RECORDED RECEPTION for a recording's
/// frames from `version` 5 on: the reception of each frame of the FRAMES message that follows it.
pub(super) fn encode_reception(
    delivery: &Delivery,
    received: &[Received],
    version: u8,
    dst: &mut BytesMut,
) {
    let start = dst.len();
    dst.put_u32(0);
    let recording = delivery.recording.as_deref().filter(|_| version >= 5);
    dst.put_u8(match recording {
        Some(_) => RECORDED_RECEPTION,
        None => RECEPTION,
    });
    for name in [Some(&*delivery.link), Some(&*delivery.station), recording] {
        name.into_iter().for_each(|name| put_name(dst, name));
    }
    dst.put_u32(received.len() as u32);
    for frame in received {
        dst.put_u8(frame.flags().byte());
        if let Some(time) = frame.earth_unix_ns {
            dst.put_u64(time);
        }
        if let Some(Ax25Addresses { from, to }) = frame.ax25 {
            put_name(dst, &from.to_string());
            put_name(dst, &to.to_string());
        }
    }
    let len = (dst.len() - start - 4) as u32;
    dst[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

/// A name: its length in bytes (at most 255, longer is cut), then its UTF-8.
fn put_name(dst: &mut BytesMut, name: &str) {
    let mut len = name.len().min(255);
    while !name.is_char_boundary(len) {
        len -= 1;
    }
    dst.put_u8(len as u8);
    dst.put_slice(&name.as_bytes()[..len]);
}

/// Decodes a RECEPTION body after its type byte, or a RECORDED RECEPTION's.
pub(super) fn decode_reception(
    mut body: Bytes,
    recorded: bool,
) -> Result<RunReception, DecodeError> {
    let link = get_name(&mut body, "link")?;
    let station = get_name(&mut body, "station")?;
    let recording = match recorded {
        true => Some(get_name(&mut body, "recording")?.into()),
        false => None,
    };
    let delivery = Arc::new(Delivery {
        link: link.into(),
        station: station.into(),
        recording,
    });
    let count = take(&mut body, 4, "its count")?.get_u32();
    let mut received = Vec::with_capacity((count as usize).min(body.len()));
    for index in 0..count {
        received.push(get_received(&mut body, index)?);
    }
    if !body.is_empty() {
        let left = body.len();
        return Err(DecodeError::Reception(format!(
            "{left} bytes left over after {count} frames"
        )));
    }
    Ok((delivery, received))
}

/// Frame `index`'s reception: its flags, and what they say follows them.
fn get_received(body: &mut Bytes, index: u32) -> Result<Received, DecodeError> {
    let byte = take(body, 1, "a frame's flags")?.get_u8();
    let flags = ReceptionFlags::from_byte(byte).map_err(|byte| {
        DecodeError::Reception(format!("frame {index} has undefined flags 0x{byte:02X}"))
    })?;
    let earth_unix_ns = match flags.earth_time() {
        false => None,
        true => Some(take(body, 8, "an earth-receive time")?.get_u64()),
    };
    let ax25 = match flags.ax25() {
        false => None,
        true => Some(Ax25Addresses {
            from: get_callsign(body, "an AX.25 source")?,
            to: get_callsign(body, "an AX.25 destination")?,
        }),
    };
    Ok(Received {
        earth_unix_ns,
        playback: flags.playback(),
        ax25,
    })
}

/// A callsign, as a name: its text, whatever the air gave.
fn get_callsign(body: &mut Bytes, what: &str) -> Result<Callsign, DecodeError> {
    let text = get_name(body, what)?;
    Callsign::from_shown(&text)
        .ok_or_else(|| DecodeError::Reception(format!("{text:?} is not a callsign")))
}

/// The first `n` bytes of `body`, or the error of a RECEPTION cut within `what`.
fn take(body: &mut Bytes, n: usize, what: &str) -> Result<Bytes, DecodeError> {
    match body.len() >= n {
        true => Ok(body.split_to(n)),
        false => Err(DecodeError::Reception(format!("cut within {what}"))),
    }
}

/// A name: a length byte, then that many bytes of UTF-8.
fn get_name(body: &mut Bytes, what: &str) -> Result<String, DecodeError> {
    let len = usize::from(take(body, 1, what)?.get_u8());
    let bytes = take(body, len, what)?;
    String::from_utf8(bytes.to_vec())
        .map_err(|_| DecodeError::Reception(format!("{what} is not UTF-8")))
}
