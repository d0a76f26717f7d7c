//! What a written batch leaves behind until it is durable, and counting it as stored.
//!
//! Why a file of its own: the segment's sync and the emergency journal both store, and an
//! emergency batch durable in both counts once, whichever is first.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::domain::ledger::Span;
use crate::domain::source::Source;
use crate::stats::Stats;

/// An emergency batch durable in two places, the segment and the journal: whichever makes it
/// durable first stores it, once.
#[derive(Clone, Default)]
pub(super) struct Claim(Arc<AtomicBool>);

impl Claim {
    /// True the first time only.
    fn take(&self) -> bool {
        !self.0.swap(true, Ordering::Relaxed)
    }

    /// Whether the other durable copy stored its frames already.
    pub(super) fn is_taken(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// A written batch's source and span (the payload is gone), and the claim it shares with its
/// journal append, if it has one.
pub(super) type Written = (Arc<Source>, Span, Option<Claim>);

/// Frames counted as archived, and acknowledgeable to their sources (`acknowledge`; otherwise
/// their replica acknowledges them), unless the other durable copy got there first.
pub(super) fn store(stats: &Stats, spans: Vec<Written>, acknowledge: bool) {
    for (source, span, claim) in spans {
        if claim.is_none_or(|claim| claim.take()) {
            stats.archived(span.frames);
            match acknowledge || source.backfill {
                true => source.stored(span),
                false => source.stored_here(span),
            }
        }
    }
}
