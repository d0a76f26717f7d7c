//! Who reads the archive's files while the daemon writes them, counted: a follower reads what was
//! written a moment ago, so while one reads, the writer leaves synced segments in the page cache
//! (the archive's writer). Here, below the writer and the readers alike (the follow listener,
//! the TM outputs), each of which holds a place while it reads.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

/// The followers of the archive reading its files right now, counted by the [`ReaderHold`]s they
/// keep while they follow: while there is one, synced segments stay in the page cache.
#[derive(Debug, Default)]
pub struct Readers(AtomicUsize);

/// A follower's place among the [`Readers`], for as long as it is kept.
#[derive(Debug)]
pub(crate) struct ReaderHold(Arc<Readers>);

impl Readers {
    /// Counts a follower until the hold is dropped.
    pub(crate) fn hold(self: &Arc<Self>) -> ReaderHold {
        self.0.fetch_add(1, Relaxed);
        ReaderHold(Arc::clone(self))
    }

    /// Whether a follower reads now.
    pub(crate) fn any(&self) -> bool {
        self.0.load(Relaxed) > 0
    }
}

impl Drop for ReaderHold {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, Relaxed);
    }
}
