//! The merge of redundant stations: links of one group receive the same spacecraft, and each
//! packet is stored once, whichever link delivers it first.
//!
//! A packet is known by its APID, its sequence count extended to 64 bits, and a CRC-32 of its
//! bytes. The count wraps at 16,384, so the extension takes the reading nearest the highest count
//! seen: up to half the modulus ahead is new, and behind it is a packet the window may remember.
//! The window remembers the last `merge_window` counts of each APID and each one's CRC: a count in
//! it with the same CRC is a copy; one it does not hold is a packet the other station lost and
//! this one delivers late, stored with its own count; one with another CRC is a new packet
//! (the spacecraft restarted its counter). Behind the window, or further ahead than half the
//! modulus, the count jumps forward: a gap, or a restart.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::protocol::ccsds::SEQUENCE_COUNT_MODULUS;

const MODULUS: u64 = SEQUENCE_COUNT_MODULUS as u64;

/// What the merge makes of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// New: its extended count.
    New(u64),
    /// A copy of a packet already taken.
    Copy,
}

/// One group's memory of the packets it took, per APID.
#[derive(Debug)]
pub(crate) struct MergeGroup {
    window: usize,
    apids: Mutex<HashMap<u16, Window>>,
}

/// One APID's highest extended count, and the last `window` counts taken with their CRCs.
#[derive(Debug)]
struct Window {
    high: Option<u64>,
    /// `(extended count + 1, crc)` at `extended % len`; 0 is empty.
    slots: Vec<(u64, u32)>,
}

impl MergeGroup {
    pub(crate) fn new(window: usize) -> MergeGroup {
        MergeGroup {
            window: window.max(1),
            apids: Mutex::default(),
        }
    }

    /// The group's memory, held for one read's packets.
    pub(crate) fn lock(&self) -> Merging<'_> {
        Merging {
            window: self.window,
            apids: self.apids.lock().unwrap_or_else(PoisonError::into_inner),
        }
    }
}

/// A group's memory, locked.
pub(crate) struct Merging<'a> {
    window: usize,
    apids: MutexGuard<'a, HashMap<u16, Window>>,
}

impl Merging<'_> {
    /// Takes a packet of `apid` with sequence `count` and bytes of `crc`, if new and if `accept`
    /// takes its extended count (the source may refuse it as at or below what it stored). `seed`
    /// is the highest extended count stored for the APID before, read when the APID is first seen.
    pub(crate) fn admit(
        &mut self,
        apid: u16,
        count: u16,
        crc: u32,
        seed: impl FnOnce() -> Option<u64>,
        accept: impl FnOnce(u64) -> bool,
    ) -> Verdict {
        let window = self.apids.entry(apid).or_insert_with(|| Window {
            high: seed(),
            slots: vec![(0, 0); self.window],
        });
        let extended = match window.place(u64::from(count), crc) {
            Placed::Copy => return Verdict::Copy,
            Placed::At(extended) => extended,
        };
        if !accept(extended) {
            return Verdict::Copy;
        }
        window.take(extended, crc);
        Verdict::New(extended)
    }
}

enum Placed {
    Copy,
    At(u64),
}

impl Window {
    /// Where a packet of `count` with `crc` belongs.
    fn place(&self, count: u64, crc: u32) -> Placed {
        let Some(high) = self.high else {
            return Placed::At(count);
        };
        let ahead = (count + MODULUS - high % MODULUS) % MODULUS;
        if (1..MODULUS / 2).contains(&ahead) {
            return Placed::At(high + ahead);
        }
        let jump = Placed::At(high + if ahead == 0 { MODULUS } else { ahead });
        let behind = (MODULUS - ahead) % MODULUS;
        if behind >= self.slots.len() as u64 || behind > high {
            return jump;
        }
        let extended = high - behind;
        match self.slots[self.index(extended)] {
            (e, c) if e == extended + 1 && c == crc => Placed::Copy,
            (e, _) if e == extended + 1 => jump,
            _ => Placed::At(extended),
        }
    }

    fn index(&self, extended: u64) -> usize {
        (extended % self.slots.len() as u64) as usize
    }

    fn take(&mut self, extended: u64, crc: u32) {
        let index = self.index(extended);
        self.slots[index] = (extended + 1, crc);
        self.high = Some(self.high.map_or(extended, |high| high.max(extended)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admit(group: &MergeGroup, count: u16, crc: u32) -> Verdict {
        group.lock().admit(1, count, crc, || None, |_| true)
    }

    #[test]
    fn counts_extend_across_wraps() {
        let group = MergeGroup::new(64);
        assert_eq!(admit(&group, 16_382, 1), Verdict::New(16_382));
        assert_eq!(admit(&group, 16_383, 2), Verdict::New(16_383));
        assert_eq!(admit(&group, 0, 3), Verdict::New(16_384));
        assert_eq!(admit(&group, 5, 4), Verdict::New(16_389), "a gap of four");
    }

    /// Two stations, each with losses: the union, each packet once, a late one with its own count.
    #[test]
    fn two_stations_give_the_union_once() {
        let group = MergeGroup::new(64);
        let north = [0u16, 1, 2, 4, 5];
        let south = [0u16, 2, 3, 5, 6];
        let mut taken = Vec::new();
        for count in north {
            if let Verdict::New(e) = admit(&group, count, u32::from(count)) {
                taken.push(e);
            }
        }
        for count in south {
            if let Verdict::New(e) = admit(&group, count, u32::from(count)) {
                taken.push(e);
            }
        }
        taken.sort();
        assert_eq!(taken, [0, 1, 2, 3, 4, 5, 6]);
    }

    /// The same count with other bytes is a new packet (the spacecraft restarted its counter).
    #[test]
    fn a_count_seen_with_other_bytes_is_new() {
        let group = MergeGroup::new(64);
        for count in 0..10 {
            admit(&group, count, 7);
        }
        assert_eq!(admit(&group, 3, 7), Verdict::Copy);
        assert_eq!(admit(&group, 3, 8), Verdict::New(16_387));
    }

    /// A seed from the archive continues the extension where the last run left it.
    #[test]
    fn a_seed_continues_after_a_restart_and_the_source_may_refuse() {
        let group = MergeGroup::new(64);
        let seeded = group
            .lock()
            .admit(1, 2, 0, || Some(3 * 16_384 + 1), |_| true);
        assert_eq!(seeded, Verdict::New(3 * 16_384 + 2));
        assert_eq!(
            group.lock().admit(1, 3, 0, || None, |_| false),
            Verdict::Copy
        );
        assert_eq!(admit(&group, 3, 0), Verdict::New(3 * 16_384 + 3));
    }
}
