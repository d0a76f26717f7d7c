//! What a packet of the link becomes: the source its rules pick, the merge group it joins, and
//! the reception metadata it carries.

use std::collections::HashMap;

use super::{LinkConfig, Unmatched};
use crate::domain::reception::{Callsign, Delivery};

impl LinkConfig {
    /// The merge group: the link's `group`, or the link alone.
    pub(crate) fn group_name(&self) -> &str {
        self.group.as_deref().unwrap_or(&self.name)
    }

    /// The sources of AX.25 senders' callsigns (valid once [`validate`](super::validate) passed).
    pub(crate) fn callsign_sources(&self) -> HashMap<Callsign, u32> {
        let parsed = self.callsign_sources.iter();
        parsed
            .filter_map(|(call, &id)| Some((call.parse().ok()?, id)))
            .collect()
    }

    /// The source a packet of `apid` becomes by the APID rules (`callsign_sources` go first), or
    /// `None` when no rule maps it: the packet is then unmatched
    /// ([`LinkConfig::unmatched_source`]).
    pub(crate) fn source_of(&self, apid: u16) -> Option<u32> {
        if let Some(id) = self.source_id {
            return Some(id);
        }
        if let Some(&id) = self.apid_sources.get(&apid.to_string()) {
            return Some(id);
        }
        if let Some(base) = self.apid_base {
            if (self.apids[0]..=self.apids[1]).contains(&apid) {
                return Some(base + u32::from(apid));
            }
        }
        None
    }

    /// The source of a packet no rule maps: `default_source` with `unmatched = "default"`, none
    /// when it is refused. Counted in `unmatched` either way.
    pub(crate) fn unmatched_source(&self) -> Option<u32> {
        match self.unmatched {
            Unmatched::Refuse => None,
            Unmatched::Default => self.default_source,
        }
    }

    /// Whether source `id` receives the packets of one APID only: then its sequence is that
    /// APID's extended count; otherwise its arrival count.
    pub(crate) fn carries_count(&self, id: u32) -> bool {
        let by_callsign = self.callsign_sources.values().any(|&s| s == id);
        if self.source_id.is_some() || self.default_source == Some(id) || by_callsign {
            return false;
        }
        let in_table = self.apid_sources.values().filter(|&&s| s == id).count();
        let from_base = self
            .apid_base
            .and_then(|base| id.checked_sub(base))
            .and_then(|apid| u16::try_from(apid).ok())
            .filter(|apid| (self.apids[0]..=self.apids[1]).contains(apid))
            .filter(|apid| !self.apid_sources.contains_key(&apid.to_string()))
            .is_some();
        in_table + usize::from(from_base) == 1
    }

    /// The sources of this link that carry one APID's count ([`Self::carries_count`]), with
    /// their APID: in a merge group, the stations' sources of one APID together hold the pass.
    pub fn count_sources(&self) -> Vec<(u16, u32)> {
        let table = self
            .apid_sources
            .iter()
            .filter_map(|(apid, &id)| Some((apid.parse().ok()?, id)));
        let mut sources: Vec<(u16, u32)> = table.collect();
        if let Some(base) = self.apid_base {
            sources
                .extend((self.apids[0]..=self.apids[1]).map(|apid| (apid, base + u32::from(apid))));
        }
        sources.retain(|&(_, id)| self.carries_count(id));
        sources.sort_unstable();
        sources.dedup();
        sources
    }

    /// The sources the link may register, as ranges of ids, for the overlap check.
    pub(super) fn source_ranges(&self) -> Vec<(u32, u32)> {
        let mut ranges: Vec<_> = self.source_id.iter().map(|&id| (id, id)).collect();
        ranges.extend(self.apid_sources.values().map(|&id| (id, id)));
        ranges.extend(self.callsign_sources.values().map(|&id| (id, id)));
        if let Some(base) = self.apid_base {
            let (first, last) = (self.apids[0], self.apids[1]);
            ranges.push((base + u32::from(first), base + u32::from(last)));
        }
        ranges.extend(self.default_source.map(|id| (id, id)));
        ranges
    }

    /// The ground station the link belongs to: its `station`, or its name.
    pub(crate) fn station_name(&self) -> &str {
        self.station.as_deref().unwrap_or(&self.name)
    }

    /// Who delivered the link's frames, as their reception metadata names it.
    pub(crate) fn delivery(&self) -> Delivery {
        Delivery::live(&self.name, self.station_name())
    }

    /// Whether a packet of virtual channel `vc` (none outside transfer frames) is playback.
    pub(crate) fn playback_of(&self, vc: Option<u8>) -> bool {
        self.playback || vc.is_some_and(|vc| self.playback_virtual_channels.contains(&vc))
    }
}
