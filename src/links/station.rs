//! A station's packets into the pipeline: each packet becomes a frame of the source its AX.25
//! sender's callsign or else its APID maps to, in the lane its priority rule gives, with the sequence the merge gives it.
//!
//! The source's ledger and the archive work as for the ingest protocol's sources: the packets of
//! one read go into batches by source and lane, recorded in arrival order as runs, staged in the
//! shard's fan-in, and the connection reads again only once they are admitted: a full pipeline
//! slows the station's socket, and nothing is dropped for it. Sources are registered at the first
//! packet that maps to them and deregistered when the connection ends.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::merge::{MergeGroup, Verdict};
use crate::config::LinkConfig;
use crate::domain::batch::ReadBatches;
use crate::domain::frame::Priority;
use crate::domain::reception::{Ax25Addresses, Callsign, Delivery, Received};
use crate::domain::sequence_set::SequenceSet;
use crate::domain::source::Source;
use crate::ingest::router::{RegisterError, RouterHandle};
use crate::pipeline::fan_in::{Closed, Ingress};
use crate::protocol::ccsds::{PrimaryHeader, MAX_APID, SEQUENCE_COUNT_MODULUS};
use crate::stats::{LinkCounters, Stats};

/// What every connection of one link shares.
#[derive(Debug)]
pub(crate) struct Link {
    pub config: LinkConfig,
    pub counters: Arc<LinkCounters>,
    pub group: Arc<MergeGroup>,
    pub router: RouterHandle,
    pub stats: Stats,
    pub max_batch: usize,
    pub read_buffer: usize,
    /// One connection feeds the link at a time: a newer one waits for the older to finish.
    pub turn: tokio::sync::Mutex<()>,
    /// Bad input and gaps, logged at most once a second.
    log: std::sync::Mutex<Option<Instant>>,
    /// The source the rules map each APID to, by APID: resolved once.
    sources: Vec<Option<u32>>,
    /// The source of each AX.25 sender listed in `callsign_sources`.
    callsigns: HashMap<Callsign, u32>,
    /// The link and station its frames' reception names.
    delivery: Arc<Delivery>,
}

/// What a framing knew of a packet besides its bytes (nothing, by default).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Heard {
    /// The source its AX.25 sender maps to by `callsign_sources`.
    pub sender: Option<u32>,
    /// The AX.25 frame's addresses.
    pub ax25: Option<Ax25Addresses>,
    /// The virtual channel of the transfer frames it came in.
    pub vc: Option<u8>,
    /// The earth-receive time the station gave, in nanoseconds since the Unix epoch.
    pub earth_unix_ns: Option<u64>,
}

impl Link {
    pub(crate) fn new(
        config: LinkConfig,
        counters: Arc<LinkCounters>,
        group: Arc<MergeGroup>,
        router: RouterHandle,
        stats: Stats,
        max_batch: usize,
        read_buffer: usize,
    ) -> Link {
        Link {
            counters,
            group,
            router,
            stats,
            max_batch,
            read_buffer,
            turn: tokio::sync::Mutex::new(()),
            log: std::sync::Mutex::new(None),
            sources: (0..=MAX_APID).map(|apid| config.source_of(apid)).collect(),
            callsigns: config.callsign_sources(),
            delivery: Arc::new(config.delivery()),
            config,
        }
    }

    /// The source a packet of `apid` becomes, or `None` when none does; and whether a rule
    /// mapped it. One no rule maps is unmatched, whether `default_source` stores it or not.
    fn source_of(&self, apid: u16) -> (Option<u32>, bool) {
        match self.sources.get(usize::from(apid)).copied().flatten() {
            Some(id) => (Some(id), true),
            None => (self.config.unmatched_source(), false),
        }
    }

    /// The source the packets an AX.25 station sends become, when `callsign_sources` lists it.
    pub(crate) fn source_of_sender(&self, sender: &Callsign) -> Option<u32> {
        self.callsigns.get(sender).copied()
    }

    /// Whether a warning about the link's input may be logged now: at most one a second.
    pub(crate) fn may_log(&self) -> bool {
        let mut last = self.log.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < Duration::from_secs(1)) {
            return false;
        }
        *last = Some(now);
        true
    }

    /// Counts the bytes passed over looking for a sync marker, and logs it within the rate.
    pub(crate) fn lost_sync(&self, skipped: usize) {
        if skipped == 0 {
            return;
        }
        self.counters.skipped(skipped as u64);
        if self.may_log() {
            tracing::warn!(link = %self.config.name, skipped, "sync marker lost: bytes skipped to the next marker");
        }
    }

    /// Counts a packet refused as malformed, and logs it within the rate.
    pub(crate) fn bad_packet(&self, why: &dyn std::fmt::Display) {
        self.counters.bad_input();
        if self.may_log() {
            tracing::warn!(link = %self.config.name, reason = %why, "packet refused");
        }
    }
}

/// One connection's (or a UDP socket's) sources and what it knows of each.
pub(crate) struct Station {
    link: Arc<Link>,
    /// By source id; `None` for a source the router refused (already connected elsewhere).
    sources: HashMap<u32, Option<Slot>>,
    /// The last count per APID, for the link's own gaps.
    counts: HashMap<u16, u16>,
    /// The extended count of the connection's last packet per APID (see [`super::merge`]).
    own: HashMap<u16, u64>,
}

/// A registered source with what this read added to it.
struct Slot {
    source: Arc<Source>,
    ingress: Ingress,
    stats: Stats,
    /// Its sequence is its APID's extended count (it takes one APID), or else its arrival count.
    carries_count: bool,
    /// The highest sequence accepted or stored.
    last: Option<u64>,
    already_stored: Arc<SequenceSet>,
    read: Pending,
}

/// One read's frames of one source.
#[derive(Default)]
struct Pending {
    batches: ReadBatches,
    bytes: u64,
}

impl Station {
    pub(crate) fn new(link: Arc<Link>) -> Station {
        Station {
            link,
            sources: HashMap::new(),
            counts: HashMap::new(),
            own: HashMap::new(),
        }
    }

    /// Takes the packets at `packets` of `chunk` (each a whole, checked space packet), sent by
    /// `peer`, and stages them; returns once the pipeline admitted them. The framing heard of
    /// the `i`th packet what `heard[i]` says (nothing when `heard` is shorter): it becomes the source of its AX.25 sender when `callsign_sources` names one, otherwise the
    /// one its APID maps to, and is stored with its reception.
    pub(crate) async fn take(
        &mut self,
        peer: SocketAddr,
        chunk: Bytes,
        packets: &[Range<usize>],
        heard: &[Heard],
    ) -> Result<(), Closed> {
        let decoded_at = Instant::now();
        let link = Arc::clone(&self.link);
        let (mut copies, mut behind, mut unmatched, mut gaps) = (0, 0, 0, 0);
        // First the sources, registered at their first packet (the router answers): the merge
        // then takes the whole read under one lock.
        let mut mapped = Vec::with_capacity(packets.len());
        for (i, range) in packets.iter().enumerate() {
            let Some(header) = PrimaryHeader::parse(&chunk[range.clone()]) else {
                continue;
            };
            gaps += self.gap(header.apid, header.sequence_count);
            let heard = heard.get(i).copied().unwrap_or_default();
            let (id, matched) = match heard.sender {
                Some(id) => (Some(id), true),
                None => link.source_of(header.apid),
            };
            if let Some(id) = id {
                if !self.sources.contains_key(&id) {
                    let slot = self.register(id, header.apid, peer).await;
                    self.sources.insert(id, slot);
                }
            }
            let packet = &chunk[range.clone()];
            match id.and_then(|id| self.sources.get(&id)?.as_ref().map(|_| id)) {
                Some(id) => {
                    unmatched += u64::from(!matched);
                    let priority = priority(&link.config, header.apid, packet);
                    let received = Received {
                        earth_unix_ns: heard.earth_unix_ns,
                        playback: link.config.playback_of(heard.vc),
                        ax25: heard.ax25,
                    };
                    let crc = crc32fast::hash(packet);
                    mapped.push((range, header, id, priority, crc, received));
                }
                None => unmatched += 1,
            }
        }
        {
            let mut merging = link.group.lock();
            for (range, header, id, priority, crc, received) in mapped {
                let Some(slot) = self.sources.get_mut(&id).and_then(Option::as_mut) else {
                    continue;
                };
                let (carries, last) = (slot.carries_count, slot.last);
                let stored_before = &slot.already_stored;
                let mut sequence = None;
                let own = self.own.get(&header.apid).copied();
                let verdict = merging.admit(
                    header.apid,
                    (header.sequence_count, crc),
                    own,
                    || carries.then_some(last).flatten(),
                    |extended| {
                        let next = match carries {
                            true => extended,
                            false => last.map_or(0, |l| l + 1),
                        };
                        let new = last.is_none_or(|l| next > l) && !stored_before.contains(next);
                        sequence = new.then_some(next);
                        new
                    },
                );
                // A connection reads on from each packet it placed; one it could not place yet
                // (behind, its wrap unknown) leaves it unplaced.
                match verdict {
                    Verdict::New(e) | Verdict::Copy(e) => drop(self.own.insert(header.apid, e)),
                    Verdict::Behind(e) if own.is_some() => drop(self.own.insert(header.apid, e)),
                    Verdict::Behind(_) => {}
                }
                match (verdict, sequence) {
                    (Verdict::New(_), Some(sequence)) => {
                        let reception = (&link.delivery, received);
                        slot.push(
                            link.max_batch,
                            decoded_at,
                            priority,
                            sequence,
                            range,
                            reception,
                        )
                    }
                    (Verdict::Behind(_), _) => behind += 1,
                    _ => copies += 1,
                }
            }
        }
        self.count(copies, behind, unmatched, gaps);
        self.stage(&chunk).await
    }

    /// Counts what a read's packets came to, and logs a lag past the window and a gap in the
    /// counts at most once a second.
    fn count(&self, copies: u64, behind: u64, unmatched: u64, gaps: u64) {
        let counters = &self.link.counters;
        counters.copies(copies + behind);
        if behind > 0 && self.link.may_log() {
            tracing::warn!(
                link = %self.link.config.name,
                packets = behind,
                window = self.link.config.merge_window,
                "the station lags its group by more than links.merge_window: its packets there are taken for copies"
            );
        }
        counters.unmatched(unmatched);
        if gaps > 0 {
            counters.gaps(gaps);
            if self.link.may_log() {
                tracing::warn!(link = %self.link.config.name, missing = gaps, "gap in the sequence counts");
            }
        }
    }

    /// Hands each source's packets of the read (`chunk`) to the fan-in, and waits until they are
    /// taken.
    async fn stage(&mut self, chunk: &Bytes) -> Result<(), Closed> {
        let counters = &self.link.counters;
        let mut staged = Vec::new();
        for slot in self.sources.values_mut().flatten() {
            let read = std::mem::take(&mut slot.read);
            let accepted = read.batches.accepted;
            if accepted == 0 {
                continue;
            }
            // In the ledger before the fan-in: the archive may store them once admitted.
            slot.source.record(&read.batches.runs);
            slot.stats.accepted(accepted);
            counters.stored(accepted, read.bytes);
            let batches = read.batches.into_batches();
            slot.ingress.stage(batches.map(|mut batch| {
                batch.attach(chunk.clone());
                batch
            }))?;
            staged.push(slot.ingress.clone());
        }
        for ingress in &staged {
            ingress.drained().await;
        }
        Ok(())
    }

    /// Packets missing between the last count of `apid` and `count`.
    fn gap(&mut self, apid: u16, count: u16) -> u64 {
        let modulus = SEQUENCE_COUNT_MODULUS;
        let before = self.counts.insert(apid, count);
        let Some(before) = before else { return 0 };
        let missing = (u32::from(count) + modulus - u32::from(before) - 1) % modulus;
        // Far behind is a copy or a restart, not a gap.
        match missing < modulus / 2 {
            true => u64::from(missing),
            false => 0,
        }
    }

    async fn register(&self, id: u32, apid: u16, peer: SocketAddr) -> Option<Slot> {
        let config = &self.link.config;
        let carries_count = config.carries_count(id);
        let station: Arc<str> = match carries_count {
            true => format!("{} APID {apid}", config.name).into(),
            false => config.name.as_str().into(),
        };
        let registered = self
            .link
            .router
            .register_as(id, config.kind, peer, Some(station))
            .await;
        match registered {
            Ok(registration) => {
                let source = registration.source;
                let last = source
                    .ledger()
                    .accepted()
                    .max(registration.already_stored.last());
                Some(Slot {
                    stats: self.link.stats.shard(registration.shard),
                    ingress: registration.ingress,
                    carries_count,
                    last,
                    already_stored: registration.already_stored,
                    source,
                    read: Pending::default(),
                })
            }
            Err(err) => {
                if !matches!(err, RegisterError::ShuttingDown) {
                    tracing::warn!(link = %config.name, apid, error = %err, "packets of this APID are dropped while the source is taken");
                }
                None
            }
        }
    }

    /// Deregisters the connection's sources.
    pub(crate) async fn finish(self) {
        for slot in self.sources.into_values().flatten() {
            let key = (slot.source.kind, slot.source.id);
            drop(slot.ingress);
            let _ = self.link.router.deregister(key).await;
        }
    }
}

impl Slot {
    fn push(
        &mut self,
        max_batch: usize,
        decoded_at: Instant,
        priority: Priority,
        sequence: u64,
        payload: &Range<usize>,
        reception: (&Arc<Delivery>, Received),
    ) {
        self.last = Some(sequence);
        self.read.bytes += payload.len() as u64;
        let source = &self.source;
        (self.read.batches).push(
            source,
            max_batch,
            decoded_at,
            (priority, sequence),
            payload.clone(),
            Some(reception),
        );
    }
}

/// The lane of a packet: emergency when its APID is listed or its header byte matches the rule.
fn priority(config: &LinkConfig, apid: u16, packet: &[u8]) -> Priority {
    let by_field = config.emergency_field.is_some_and(|rule| {
        packet
            .get(rule.offset)
            .is_some_and(|&byte| byte & rule.mask == rule.value)
    });
    match by_field || config.emergency_apids.contains(&apid) {
        true => Priority::Emergency,
        false => Priority::Routine,
    }
}
