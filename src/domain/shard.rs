//! Which shard serves a source. Ingest deals connections to shards by it, each shard's archive
//! writer keeps its own segments, and followers hold one position per shard.

use super::frame::SourceKey;
use super::frame::SourceKind;

/// The most shards a daemon runs (`runtime.shards`).
pub const MAX_SHARDS: usize = 64;

/// The shard that serves the source `key` among `shards`: sources with consecutive ids (the
/// usual numbering of a fleet) are dealt out in turn, and the kinds are offset from each other, so
/// that live source 0 and replay source 0 do not share a shard. Stable across restarts with the
/// same shard count.
pub fn shard_of(key: SourceKey, shards: usize) -> usize {
    let (kind, id) = key;
    let offset = match kind {
        SourceKind::LiveUplink => 0,
        SourceKind::ArchivedReplay => shards as u64 / 2,
    };
    ((u64::from(id) + offset) % shards.max(1) as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_ids_are_dealt_out_evenly_and_kinds_apart() {
        let mut per_shard = [0usize; 4];
        for id in 0..48 {
            per_shard[shard_of((SourceKind::LiveUplink, id), 4)] += 1;
        }
        assert_eq!(per_shard, [12; 4]);
        assert_ne!(
            shard_of((SourceKind::LiveUplink, 0), 4),
            shard_of((SourceKind::ArchivedReplay, 0), 4)
        );
        assert_eq!(shard_of((SourceKind::ArchivedReplay, 7), 1), 0);
    }
}
