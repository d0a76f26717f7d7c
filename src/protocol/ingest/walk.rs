//! The ingest path's decoder: every complete message of a read buffer in one pass.

use std::ops::ControlFlow;

use super::error::ProtocolError;
use super::LENGTH_PREFIX;

/// Where [`walk_messages`] stopped.
#[derive(Debug)]
pub struct Walk {
    /// Offset just past the last message visited.
    pub end: usize,
    /// Set when the next message announces a length over the maximum: the stream cannot be
    /// resynchronised past it, so the connection must end once the visited messages are handled.
    pub oversize: Option<ProtocolError>,
}

/// Visits the complete messages at the front of `buf` in one pass over their length prefixes:
/// `visit(body_offset, body)` for each, until a partial message, an oversize length, or `visit`
/// breaks. The caller cuts `buf[..end]` off once, so the ingest path pays one buffer split per
/// socket read, not one per message.
pub fn walk_messages(
    buf: &[u8],
    max_frame_length: usize,
    mut visit: impl FnMut(usize, &[u8]) -> ControlFlow<()>,
) -> Walk {
    let mut end = 0;
    while let Some(prefix) = buf.get(end..end + LENGTH_PREFIX) {
        let length = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
        if length > max_frame_length {
            return Walk {
                end,
                oversize: Some(ProtocolError::FrameTooLarge {
                    length,
                    max: max_frame_length,
                }),
            };
        }
        let body_start = end + LENGTH_PREFIX;
        let Some(body) = buf.get(body_start..body_start + length) else {
            break;
        };
        end = body_start + length;
        if visit(body_start, body).is_break() {
            break;
        }
    }
    Walk {
        end,
        oversize: None,
    }
}
