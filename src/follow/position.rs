//! A frame's place in the archive, the bookmark a follower keeps.
//!
//! It names the bytes on disk, not a counter in memory: the segment's index, the offset of the
//! record that holds the frame, and the frame's index within that record (a FRAMES record holds a
//! batch). Segments are only appended to and never rewritten while they have a name, and a
//! follower is only ever handed durable frames, so a position stays valid across restarts of the
//! daemon (even after SIGKILL) for as long as its segment is kept. The text form,
//! `SEGMENT:OFFSET:INDEX`, is what `aggregator tail` prints and `--from` takes.

use std::fmt;
use std::str::FromStr;

/// Where a frame is stored: segment `segment`, the record at byte `offset`, its `index`th frame.
/// Ordered as the archive is: a later position is a later frame.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    pub segment: u64,
    pub offset: u64,
    pub index: u32,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.segment, self.offset, self.index)
    }
}

impl FromStr for Position {
    type Err = String;

    /// Parses `SEGMENT:OFFSET:INDEX`, three decimal numbers.
    fn from_str(text: &str) -> Result<Position, String> {
        let bad =
            || format!("{text:?} is not a position: expected SEGMENT:OFFSET:INDEX, such as 1:8:0");
        let mut parts = text.split(':');
        let (Some(segment), Some(offset), Some(index), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        Ok(Position {
            segment: segment.parse().map_err(|_| bad())?,
            offset: offset.parse().map_err(|_| bad())?,
            index: index.parse().map_err(|_| bad())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_form_round_trips_and_rejects_what_is_not_one() {
        let position = Position {
            segment: 12,
            offset: 4096,
            index: 3,
        };
        assert_eq!(position.to_string(), "12:4096:3");
        assert_eq!("12:4096:3".parse(), Ok(position));
        for bad in [
            "",
            "12:4096",
            "12:4096:3:1",
            "a:1:2",
            "1:-8:0",
            "1:8:4294967296",
        ] {
            assert!(bad.parse::<Position>().is_err(), "{bad:?} parsed");
        }
    }
}
