//! Where each shard of an archive no daemon writes to (or one read beside it) ends: what a reading
//! of the files alone may read.

use std::path::Path;

use tokio::sync::watch;

use super::shards::DurableEnds;
use crate::archive::format::index::SpanCache;
use crate::archive::format::{self, ArchiveError};

/// Each shard's end for a reading of the archive at `root` as its files are now: the newest
/// segment's last whole record (a daemon may be appending one; a crash may have torn one). Their
/// watches are closed: nothing more becomes durable for this reading, which has a span cache of
/// its own. Blocking: it reads each shard's newest segment once.
pub(crate) fn stopped_ends(root: &Path) -> Result<DurableEnds, ArchiveError> {
    let mut ends = Vec::new();
    for (shard, dir) in format::list_shards(root)? {
        ends.push((shard, watch::channel(format::stopped_end(&dir)?).1));
    }
    Ok(DurableEnds::new(ends, SpanCache::default()))
}
