//! The archive's files, read independently of the daemon.

use std::path::Path;

use aggregator::archive::format::{self, Entry, FrameRecord};
use aggregator::domain::position::Position;

/// Every frame stored in the segments of the shard directory `dir`, in file order, each with its
/// position: its segment, its record's offset and its index in the record. A segment that a
/// running daemon's retention deletes between the listing and the reading is passed over.
pub fn stored_frames(dir: &Path) -> Vec<(Position, FrameRecord)> {
    let mut frames = Vec::new();
    for (index, path) in format::list_segments(dir).unwrap() {
        let segment = match format::read_segment(&path) {
            Err(err) if err.is_gone() => continue,
            read => read.unwrap(),
        };
        let mut last = (u64::MAX, 0);
        for (offset, entry) in segment.entries {
            let Entry::Frame(frame) = entry else { continue };
            last = match last {
                (at, i) if at == offset => (at, i + 1),
                _ => (offset, 0),
            };
            let position = Position {
                segment: index,
                offset,
                index: last.1,
            };
            frames.push((position, frame));
        }
    }
    frames
}
