//! The frames the NATS sink has read and JetStream has not yet acknowledged, in each shard's
//! order: what its cursors may move past.
//!
//! Why apart from the publishing order: emergencies are published ahead of routine frames read
//! before them, so PubAcks come out of the files' order. A shard's cursor says "everything up to
//! here is in the stream" (a restart publishes again only what lies after it), so it moves only
//! over a prefix of the shard's frames that is acknowledged whole.

use std::collections::VecDeque;

use crate::domain::position::{Position, ShardPosition};

/// Per shard (by its number), each frame read and not yet passed by the cursor, in position
/// order (the order a shard is read in), with whether it is acknowledged.
#[derive(Debug, Default)]
pub(super) struct Unacked {
    shards: Vec<VecDeque<(Position, bool)>>,
}

impl Unacked {
    /// A frame read, at `at`, after every frame of its shard read before: the cursor stops before
    /// it until it is acknowledged.
    pub(super) fn read(&mut self, at: ShardPosition) {
        if self.shards.len() <= at.shard {
            self.shards.resize_with(at.shard + 1, VecDeque::new);
        }
        let frames = &mut self.shards[at.shard];
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

    /// The frames of a message, at `positions`, are acknowledged. Returns, for each shard whose
    /// cursor may now move, where to (the last frame of its acknowledged prefix).
    pub(super) fn acked(
        &mut self,
        positions: impl IntoIterator<Item = ShardPosition>,
    ) -> Vec<ShardPosition> {
        // Per shard touched, the index to look from: a message is one source's frames in the
        // order they were read, each found a few frames after the one before.
        let mut from: Vec<(usize, usize)> = Vec::new();
        for at in positions {
            let Some(frames) = self.shards.get_mut(at.shard) else {
                continue;
            };
            let slot = match from.iter().position(|(shard, _)| *shard == at.shard) {
                Some(slot) => slot,
                None => {
                    from.push((at.shard, 0));
                    from.len() - 1
                }
            };
            let found = seek(frames, from[slot].1, at.position);
            if let Some((_, acked)) = (frames.get_mut(found)).filter(|(p, _)| *p == at.position) {
                *acked = true;
                from[slot].1 = found + 1;
            }
        }
        (from.into_iter())
            .filter_map(|(shard, _)| {
                let frames = self.shards.get_mut(shard)?;
                let mut passed = None;
                while let Some((position, true)) = frames.front().copied() {
                    frames.pop_front();
                    passed = Some(position);
                }
                passed.map(|position| ShardPosition { shard, position })
            })
            .collect()
    }
}

/// The index of the first of `frames` at or after `target`, looking from `from` (each frame
/// before it lies before `target`, or it is ignored): steps that double, then halves.
fn seek(frames: &VecDeque<(Position, bool)>, from: usize, target: Position) -> usize {
    let before = |i: usize| frames[i].0 < target;
    let mut low = match from.checked_sub(1) {
        Some(last) if last < frames.len() && before(last) => from,
        _ => 0,
    };
    let (mut high, mut step) = (low, 1);
    while high < frames.len() && before(high) {
        low = high + 1;
        high += step;
        step *= 2;
    }
    let mut high = high.min(frames.len());
    while low < high {
        let middle = low + (high - low) / 2;
        match before(middle) {
            true => low = middle + 1,
            false => high = middle,
        }
    }
    low
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
        assert_eq!(unacked.acked([at(0, 20, 0)]), []);
        // Another shard's cursor goes its own way.
        assert_eq!(unacked.acked([at(1, 10, 0)]), [at(1, 10, 0)]);
        assert_eq!(unacked.acked([at(0, 10, 0)]), [at(0, 10, 0)]);
        // The last routine frame: the cursor passes it and the emergency after it.
        assert_eq!(unacked.acked([at(0, 10, 1)]), [at(0, 20, 0)]);
        assert_eq!(unacked.acked([at(0, 30, 0)]), [], "never read");
    }

    #[test]
    fn a_message_s_frames_are_found_among_other_sources_in_each_shard() {
        // Three sources' frames interleaved in two shards; a message holds one source's.
        let mut unacked = Unacked::default();
        let read: Vec<_> = (0..300).map(|i| at(i % 2, 100 + i as u64, 0)).collect();
        read.iter().for_each(|frame| unacked.read(*frame));
        let of = |source: usize| {
            let of_source = move |i: &usize| i / 2 % 3 == source;
            (0..read.len()).filter(of_source).map(|i| read[i])
        };
        assert_eq!(unacked.acked(of(1)), []);
        // Out of the reading order, and a position never read: found all the same.
        let mut third: Vec<_> = of(2).collect();
        third.reverse();
        third.push(at(0, 7, 0));
        assert_eq!(unacked.acked(third), []);
        // The first source's frames complete each shard's prefix: both cursors pass everything.
        let mut passed = unacked.acked(of(0));
        passed.sort_by_key(|p| p.shard);
        assert_eq!(passed, [read[298], read[299]]);
        assert_eq!(unacked.acked([read[0]]), []);
    }
}
