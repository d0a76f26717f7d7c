//! Which sealed segments go: the policy alone, with no files, so that the daemon's retention and
//! `aggregator archive prune` decide alike and tests can try every case.
//!
//! Segments go whole and oldest first by their newest frame's received time, across shards; within
//! a shard always in index order, so that what a shard retains stays a run of segments without a
//! hole (followers, `verify` and a source's frames all rely on that). Each shard is a queue of its
//! sealed segments; the next deletion takes the head whose newest frame is oldest.
//!
//! - Over `max_bytes`, or short of `min_free_*`: the oldest head goes, protected or not, until the
//!   limit is kept or no sealed segment is left (then the plan says it falls short).
//! - Past `max_age`: the oldest head whose newest frame is older than the age goes, unless it is
//!   protected (a reader that must not skip it has not read it yet); a protected head holds back
//!   only its own shard.

use std::collections::VecDeque;
use std::time::Duration;

use crate::config::RetentionConfig;

/// A sealed segment retention may delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    pub segment: u64,
    /// Its bytes on disk, its index file's included.
    pub bytes: u64,
    /// Its newest frame's received time (nanoseconds since the Unix epoch); 0 without frames.
    pub newest: u64,
    /// A reader named in `retention.protect` has not read it yet.
    pub protected: bool,
}

/// The archive's use of its disk now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Every file of the archive, by the blocks allocated to it.
    pub bytes: u64,
    /// Free bytes on its file system for an unprivileged writer, and the file system's size;
    /// `None` when they cannot be read.
    pub free: Option<(u64, u64)>,
}

/// What a plan deletes, and whether that keeps the limits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// (queue, segment) in the order to delete them; each queue's are its first ones.
    pub delete: Vec<(usize, u64)>,
    /// The size limits still broken after every deletion the plan makes: what `/healthz` reports.
    pub short: Option<Shortfall>,
}

/// A size limit retention cannot keep: only segments it never deletes are left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shortfall {
    /// The archive holds more than `max_bytes`.
    Bytes { bytes: u64, max: u64 },
    /// Its file system has less free than `min_free_*` asks.
    Free { free: u64, least: u64 },
}

impl std::fmt::Display for Shortfall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Shortfall::Bytes { bytes, max } => write!(
                f,
                "the archive holds {bytes} bytes, above archive.retention.max_bytes ({max}), and \
                 every segment left is open, staged or the newest of its shard"
            ),
            Shortfall::Free { free, least } => write!(
                f,
                "its file system has {free} bytes free, below archive.retention.min_free ({least}), \
                 and every segment left is open, staged or the newest of its shard"
            ),
        }
    }
}

/// The least free bytes `limits` ask of a file system of `size` bytes.
pub(crate) fn least_free(limits: &RetentionConfig, size: u64) -> Option<u64> {
    let by_ratio = limits
        .min_free_ratio
        .map(|ratio| (ratio * size as f64).ceil() as u64);
    match (limits.min_free_bytes, by_ratio) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(0).max(b.unwrap_or(0))),
    }
}

/// The deletions that keep `limits` on an archive whose shards' sealed segments are `queues`
/// (each in index order), using its disk as `usage` says, at `now_ns`.
pub fn plan(
    queues: &[VecDeque<Candidate>],
    usage: Usage,
    limits: &RetentionConfig,
    now_ns: u64,
) -> Plan {
    let mut heads = vec![0usize; queues.len()];
    let (mut bytes, mut free) = (usage.bytes, usage.free);
    let least = free.and_then(|(_, size)| least_free(limits, size));
    let cutoff = limits.max_age.map(|age| now_ns.saturating_sub(nanos(age)));
    let mut plan = Plan::default();
    loop {
        let over = limits.max_bytes.filter(|&max| bytes > max);
        let short_free = least.zip(free).filter(|&(least, (avail, _))| avail < least);
        let next = if over.is_some() || short_free.is_some() {
            oldest_head(queues, &heads, |_| true)
        } else if let Some(cutoff) = cutoff {
            oldest_head(queues, &heads, |c| !c.protected && c.newest < cutoff)
        } else {
            None
        };
        let Some(queue) = next else {
            plan.short = match (over, short_free) {
                (Some(max), _) => Some(Shortfall::Bytes { bytes, max }),
                (None, Some((least, (avail, _)))) => Some(Shortfall::Free { free: avail, least }),
                (None, None) => None,
            };
            return plan;
        };
        let candidate = queues[queue][heads[queue]];
        heads[queue] += 1;
        bytes = bytes.saturating_sub(candidate.bytes);
        free = free.map(|(avail, size)| (avail.saturating_add(candidate.bytes), size));
        plan.delete.push((queue, candidate.segment));
    }
}

/// The queue whose next segment has the oldest newest frame among those `eligible` takes.
fn oldest_head(
    queues: &[VecDeque<Candidate>],
    heads: &[usize],
    eligible: impl Fn(&Candidate) -> bool,
) -> Option<usize> {
    (0..queues.len())
        .filter_map(|queue| Some((queue, queues[queue].get(heads[queue])?)))
        .filter(|(_, candidate)| eligible(candidate))
        .min_by_key(|(queue, candidate)| (candidate.newest, *queue))
        .map(|(queue, _)| queue)
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000_000;

    fn candidate(segment: u64, bytes: u64, newest_s: u64) -> Candidate {
        Candidate {
            segment,
            bytes,
            newest: newest_s * SECOND,
            protected: false,
        }
    }

    fn limits(edit: impl FnOnce(&mut RetentionConfig)) -> RetentionConfig {
        let mut limits = RetentionConfig::default();
        edit(&mut limits);
        limits
    }

    fn usage(bytes: u64) -> Usage {
        Usage {
            bytes,
            free: Some((1 << 40, 1 << 41)),
        }
    }

    #[test]
    fn without_limits_nothing_goes() {
        let queues = [VecDeque::from([candidate(1, 10, 1)])];
        let plan = plan(
            &queues,
            usage(10),
            &RetentionConfig::default(),
            100 * SECOND,
        );
        assert_eq!(plan, Plan::default());
    }

    #[test]
    fn over_max_bytes_the_oldest_go_across_shards_until_it_fits() {
        let queues = [
            VecDeque::from([candidate(1, 100, 10), candidate(2, 100, 30)]),
            VecDeque::from([candidate(5, 100, 20), candidate(6, 100, 40)]),
        ];
        let limits = limits(|l| l.max_bytes = Some(650));
        // 900 bytes: three segments must go, by their newest frame: 10 s, 20 s, 30 s.
        let plan = plan(&queues, usage(900), &limits, 50 * SECOND);
        assert_eq!(plan.delete, [(0, 1), (1, 5), (0, 2)]);
        assert_eq!(plan.short, None);
    }

    #[test]
    fn a_limit_that_cannot_be_kept_deletes_all_it_may_and_says_so() {
        let queues = [VecDeque::from([candidate(1, 100, 10)])];
        let limits = limits(|l| l.max_bytes = Some(100));
        let plan = plan(&queues, usage(500), &limits, 50 * SECOND);
        assert_eq!(plan.delete, [(0, 1)]);
        assert_eq!(
            plan.short,
            Some(Shortfall::Bytes {
                bytes: 400,
                max: 100
            })
        );
    }

    #[test]
    fn max_age_takes_what_is_older_and_spares_the_protected_shard_only() {
        let mut protected = candidate(1, 100, 10);
        protected.protected = true;
        let queues = [
            VecDeque::from([protected, candidate(2, 100, 15)]),
            VecDeque::from([candidate(7, 100, 12), candidate(8, 100, 45)]),
        ];
        let limits = limits(|l| l.max_age = Some(Duration::from_secs(30)));
        // At 50 s, frames older than 20 s go: shard 1's segment 7; shard 0's are held back by
        // the protected head, though segment 2 is old enough too.
        let plan = plan(&queues, usage(400), &limits, 50 * SECOND);
        assert_eq!(plan.delete, [(1, 7)]);
        assert_eq!(plan.short, None);
    }

    #[test]
    fn size_limits_override_protection() {
        let mut protected = candidate(1, 100, 10);
        protected.protected = true;
        let queues = [VecDeque::from([protected, candidate(2, 100, 20)])];
        let limits = limits(|l| l.max_bytes = Some(300));
        let plan = plan(&queues, usage(350), &limits, 50 * SECOND);
        assert_eq!(plan.delete, [(0, 1)]);
    }

    #[test]
    fn min_free_by_bytes_or_ratio_counts_what_each_deletion_frees() {
        let queues = [VecDeque::from([
            candidate(1, 100, 1),
            candidate(2, 100, 2),
            candidate(3, 100, 3),
        ])];
        let tight = Usage {
            bytes: 300,
            free: Some((50, 1000)),
        };
        let by_bytes = limits(|l| l.min_free_bytes = Some(200));
        assert_eq!(
            plan(&queues, tight, &by_bytes, 9 * SECOND).delete,
            [(0, 1), (0, 2)]
        );
        // A fifth of 1000 bytes is 200 as well.
        let by_ratio = limits(|l| l.min_free_ratio = Some(0.2));
        assert_eq!(
            plan(&queues, tight, &by_ratio, 9 * SECOND).delete,
            [(0, 1), (0, 2)]
        );
        let unknown = Usage {
            bytes: 300,
            free: None,
        };
        assert_eq!(
            plan(&queues, unknown, &by_bytes, 9 * SECOND),
            Plan::default()
        );
        let hopeless = Usage {
            bytes: 300,
            free: Some((0, 10_000)),
        };
        let most = limits(|l| l.min_free_bytes = Some(1000));
        let all = plan(&queues, hopeless, &most, 9 * SECOND);
        assert_eq!(all.delete.len(), 3);
        assert_eq!(
            all.short,
            Some(Shortfall::Free {
                free: 300,
                least: 1000
            })
        );
    }
}
