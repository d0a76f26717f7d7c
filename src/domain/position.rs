//! A frame's place in the archive, the bookmark a follower keeps.
//!
//! It names the bytes on disk, not a counter in memory: the shard whose segment stream holds the
//! frame (the archive's layout), the segment's index, the offset of the record that holds the
//! frame, and the frame's index within that record (a FRAMES record holds a batch). Segments are
//! only appended to and never rewritten while they have a name, and a follower is only ever
//! handed durable frames, so a position stays valid across restarts of the daemon (even after
//! SIGKILL) for as long as its segment is kept.
//!
//! Each shard writes a segment stream of its own, with its own segment indices, and shards store
//! frames concurrently: there is no order across shards, only within one. So a follower resumes
//! with one position per shard, [`Positions`], and no single position can stand for "how far".
//! The text forms are what `aggregator tail` prints and `--from` takes: a [`Position`] within its
//! shard is `SEGMENT:OFFSET:INDEX`, a frame's [`ShardPosition`] is `SHARD/SEGMENT:OFFSET:INDEX`,
//! and [`Positions`] are those joined by commas (`0/12:4096:3,2/7:8:0`).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::domain::shard::MAX_SHARDS;

/// Where a frame is stored within its shard: segment `segment`, the record at byte `offset`, its
/// `index`th frame. Ordered as the shard's segment stream is: a later position is a later frame.
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

/// Why text is not a [`Position`], a [`ShardPosition`] or [`Positions`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PositionError {
    #[error("{0:?} is not a position: expected SEGMENT:OFFSET:INDEX, such as 1:8:0")]
    NotAPosition(String),
    #[error("{text:?}: {shard:?} is not a shard: expected a number below {MAX_SHARDS}")]
    NotAShard { text: String, shard: String },
    #[error("{text:?} holds two positions of shard {shard}")]
    TwoOfOneShard { text: String, shard: usize },
}

impl FromStr for Position {
    type Err = PositionError;

    /// Parses `SEGMENT:OFFSET:INDEX`, three decimal numbers.
    fn from_str(text: &str) -> Result<Position, PositionError> {
        let bad = || PositionError::NotAPosition(text.into());
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

/// A frame's place in the whole archive: its shard and its position there (`SHARD/SEG:OFF:IDX`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ShardPosition {
    pub shard: usize,
    pub position: Position,
}

impl fmt::Display for ShardPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.shard, self.position)
    }
}

impl FromStr for ShardPosition {
    type Err = PositionError;

    /// Parses `SHARD/SEGMENT:OFFSET:INDEX`, or `SEGMENT:OFFSET:INDEX` for shard 0 (what this
    /// daemon printed before it had shards, and still names the same frame).
    fn from_str(text: &str) -> Result<ShardPosition, PositionError> {
        let Some((shard, position)) = text.split_once('/') else {
            let position = text.parse()?;
            return Ok(ShardPosition { shard: 0, position });
        };
        let shard = shard
            .parse()
            .ok()
            .filter(|shard| *shard < MAX_SHARDS)
            .ok_or_else(|| PositionError::NotAShard {
                text: text.into(),
                shard: shard.into(),
            })?;
        Ok(ShardPosition {
            shard,
            position: position.parse()?,
        })
    }
}

/// The position of the last frame a follower handled in each shard it has heard from: where it
/// resumes. A shard it holds no position for is read from its oldest frame.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Positions(BTreeMap<usize, Position>);

impl Positions {
    /// No position: every shard from its oldest frame.
    pub fn new() -> Positions {
        Positions::default()
    }

    /// The position held for `shard`.
    pub(crate) fn get(&self, shard: usize) -> Option<Position> {
        self.0.get(&shard).copied()
    }

    /// Holds `at` as its shard's position, replacing the one before.
    pub fn set(&mut self, at: ShardPosition) {
        self.0.insert(at.shard, at.position);
    }

    /// Forgets shard `shard`'s position: its reading starts at its oldest frame.
    pub fn remove(&mut self, shard: usize) {
        self.0.remove(&shard);
    }

    /// Each shard's position, by shard.
    pub(crate) fn iter(&self) -> impl ExactSizeIterator<Item = ShardPosition> + '_ {
        self.0
            .iter()
            .map(|(&shard, &position)| ShardPosition { shard, position })
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }
}

impl FromIterator<ShardPosition> for Positions {
    fn from_iter<I: IntoIterator<Item = ShardPosition>>(positions: I) -> Positions {
        let mut all = Positions::new();
        positions.into_iter().for_each(|at| all.set(at));
        all
    }
}

impl fmt::Display for Positions {
    /// `SHARD/SEGMENT:OFFSET:INDEX` for each shard, by shard, separated by commas.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, at) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{at}")?;
        }
        Ok(())
    }
}

impl FromStr for Positions {
    type Err = PositionError;

    /// Parses positions separated by commas, at most one per shard; a position without a shard is
    /// shard 0's.
    fn from_str(text: &str) -> Result<Positions, PositionError> {
        let mut all = Positions::new();
        for part in text.split(',') {
            let at: ShardPosition = part.trim().parse()?;
            if all.get(at.shard).is_some() {
                return Err(PositionError::TwoOfOneShard {
                    text: text.into(),
                    shard: at.shard,
                });
            }
            all.set(at);
        }
        Ok(all)
    }
}

/// How far the segment files are durable: every record of the segments before `segment`, and
/// the first `len` bytes (whole records) of segment `segment`, are stored under the sync policy.
/// It only moves forward. A follower that reads no further than this never hands out a frame
/// that a crash could take back, so a position it gave stays valid across restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct DurableEnd {
    /// The segment index (as in its file name).
    pub segment: u64,
    /// Bytes of that segment, from the start of the file.
    pub len: u64,
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

    #[test]
    fn positions_of_several_shards_round_trip_and_a_bare_position_is_shard_0() {
        let text = "0/12:4096:3,2/7:8:0,63/1:8:1";
        let positions: Positions = text.parse().unwrap();
        assert_eq!(positions.len(), 3);
        assert_eq!(
            positions.get(2),
            Some(Position {
                segment: 7,
                offset: 8,
                index: 0
            })
        );
        assert_eq!(positions.to_string(), text);
        let unordered: Positions = "2/7:8:0,0/12:4096:3,63/1:8:1".parse().unwrap();
        assert_eq!(unordered, positions);
        let bare: Positions = "12:4096:3".parse().unwrap();
        assert_eq!(bare.to_string(), "0/12:4096:3");
        for bad in [
            "",
            "0/1:8:0,",
            "64/1:8:0",
            "x/1:8:0",
            "0/1:8:0,0/2:8:0",
            "1:8:0,0/2:8:0",
            "1/2/1:8:0",
        ] {
            assert!(bad.parse::<Positions>().is_err(), "{bad:?} parsed");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(128))]

        /// Any positions, of any shards, read back from their text form (what a sink's cursor
        /// file and `tail --from` hold), each alone and all together.
        #[test]
        fn any_positions_read_back_from_their_text(
            shards in proptest::collection::btree_map(
                0..MAX_SHARDS,
                proptest::prelude::any::<(u64, u64, u32)>(),
                1..8,
            ),
        ) {
            let positions: Positions = shards
                .into_iter()
                .map(|(shard, (segment, offset, index))| ShardPosition {
                    shard,
                    position: Position { segment, offset, index },
                })
                .collect();
            for at in positions.iter() {
                proptest::prop_assert_eq!(at.position.to_string().parse(), Ok(at.position));
                proptest::prop_assert_eq!(at.to_string().parse(), Ok(at));
            }
            proptest::prop_assert_eq!(positions.to_string().parse(), Ok(positions));
        }
    }
}
