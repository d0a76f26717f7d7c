//! The frames the NATS sink has read and JetStream has not yet acknowledged, in each shard's
//! order: what its cursors may move past.
//!
//! Why apart from the publishing order: emergencies are published ahead of routine frames read
//! before them, so PubAcks come out of the files' order. A shard's cursor says "everything up to
//! here is in the stream" (a restart publishes again only what lies after it), so it moves only
//! over a prefix of the shard's frames that is acknowledged whole.

use std::collections::{HashMap, VecDeque};

use crate::domain::position::{Position, ShardPosition};

/// Per shard, each frame read and not yet passed by the cursor, in position order (the order a
/// shard is read in), with whether it is acknowledged.
#[derive(Debug, Default)]
pub(super) struct Unacked {
    shards: HashMap<usize, VecDeque<(Position, bool)>>,
}

impl Unacked {
    /// A frame read, at `at`, after every frame of its shard read before: the cursor stops before
    /// it until it is acknowledged.
    pub(super) fn read(&mut self, at: ShardPosition) {
        let frames = self.shards.entry(at.shard).or_default();
        match frames.back() {
            Some((last, _)) if *last >= at.position => {
                // Read again (a session after a failure reads on where it was, so only a bug):
                // kept in order all the same.
                let at_or_after = frames.partition_point(|(p, _)| *p < at.position);
                if frames.get(at_or_after).map(|(p, _)| *p) != Some(at.position) {
                    frames.insert(at_or_after, (at.position, false));
                }
            }
            _ => frames.push_back((at.position, false)),
        }
    }

    /// The frame at `at` is acknowledged. Returns where its shard's cursor may now move (the last
    /// frame of the acknowledged prefix), if anywhere.
    pub(super) fn acked(&mut self, at: ShardPosition) -> Option<ShardPosition> {
        let frames = self.shards.get_mut(&at.shard)?;
        let found = frames.binary_search_by(|(p, _)| p.cmp(&at.position));
        if let Some((_, acked)) = found.ok().and_then(|i| frames.get_mut(i)) {
            *acked = true;
        }
        let mut passed = None;
        while let Some((position, true)) = frames.front().copied() {
            frames.pop_front();
            passed = Some(position);
        }
        passed.map(|position| ShardPosition {
            shard: at.shard,
            position,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(shard: usize, offset: u64, index: u32) -> ShardPosition {
        let position = Position {
            segment: 1,
            offset,
            index,
        };
        ShardPosition { shard, position }
    }

    #[test]
    fn a_cursor_moves_only_over_frames_acknowledged_whole_in_its_shard() {
        let mut unacked = Unacked::default();
        for frame in [at(0, 10, 0), at(0, 10, 1), at(0, 20, 0), at(1, 10, 0)] {
            unacked.read(frame);
        }
        // An emergency at 0/1:20:0, acknowledged first: the routine frames before it are not.
        assert_eq!(unacked.acked(at(0, 20, 0)), None);
        // Another shard's cursor goes its own way.
        assert_eq!(unacked.acked(at(1, 10, 0)), Some(at(1, 10, 0)));
        assert_eq!(unacked.acked(at(0, 10, 0)), Some(at(0, 10, 0)));
        // The last routine frame: the cursor passes it and the emergency after it.
        assert_eq!(unacked.acked(at(0, 10, 1)), Some(at(0, 20, 0)));
        assert_eq!(unacked.acked(at(0, 30, 0)), None, "never read");
    }
}
