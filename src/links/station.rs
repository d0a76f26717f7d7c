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

use super::merge::{CountKey, MergeGroup, PacketId, Verdict};
use crate::config::LinkConfig;
use crate::domain::batch::{ReadBatches, ReadFrame};
use crate::domain::clock::ArchiveClock;
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
    pub delivery: Arc<Delivery>,
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

impl Heard {
    /// Whose sequence counts its packet of `apid` counts in: its sender's own where
    /// `callsign_sources` placed it by the sender.
    fn counts_of(&self, apid: u16) -> CountKey {
        CountKey {
            sender: self.sender.and(self.ax25).map(|ax25| ax25.from),
            apid,
        }
    }
}

/// One read's packets: the chunk they lie in, where each lies in it, and what the framing heard
/// of each (nothing of those past the end of `heard`).
pub(crate) struct ReadPackets {
    pub chunk: Bytes,
    pub packets: Vec<Range<usize>>,
    pub heard: Vec<Heard>,
}

/// A packet of a read, mapped to a registered source: what the merge and its batch need of it.
struct Mapped {
    range: Range<usize>,
    key: CountKey,
    count: u16,
    crc: u32,
    source: u32,
    priority: Priority,
    received: Received,
}

impl Mapped {
    fn id(&self) -> PacketId {
        PacketId {
            key: self.key,
            count: self.count,
            crc: self.crc,
        }
    }
}

/// What a read's packets came to, for the link's counters.
#[derive(Debug, Clone, Copy, Default)]
struct Tally {
    /// Copies of packets the group took.
    copies: u64,
    /// Packets further behind the group than the merge window: taken for copies.
    behind: u64,
    /// Packets no rule maps (stored or not).
    unmatched: u64,
    /// Packets missing in the sequence counts.
    gaps: u64,
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

    /// The link as a backfill reads a recording through it: its rules and sources, counting
    /// what its checks refuse apart from the station's live input.
    pub(crate) fn for_recording(&self) -> Link {
        Link::new(
            self.config.clone(),
            Arc::new(self.counters.for_recording()),
            Arc::clone(&self.group),
            self.router.clone(),
            self.stats.clone(),
            self.max_batch,
            self.read_buffer,
        )
    }

    /// The source a packet of `apid` becomes, or `None` when none does; and whether a rule
    /// mapped it. One no rule maps is unmatched, whether `default_source` stores it or not.
    pub(crate) fn source_of(&self, apid: u16) -> (Option<u32>, bool) {
        match self.sources.get(usize::from(apid)).copied().flatten() {
            Some(id) => (Some(id), true),
            None => (self.config.unmatched_source(), false),
        }
    }

    /// A packet at `range` of a read, with its `header`, mapped to `source`, heard as `heard`.
    fn mapped(
        &self,
        range: &Range<usize>,
        header: &PrimaryHeader,
        source: u32,
        heard: &Heard,
        packet: &[u8],
    ) -> Mapped {
        Mapped {
            range: range.clone(),
            key: heard.counts_of(header.apid),
            count: header.sequence_count,
            crc: crc32fast::hash(packet),
            source,
            priority: priority(&self.config, header.apid, packet),
            received: Received {
                earth_unix_ns: heard.earth_unix_ns,
                playback: self.config.playback_of(heard.vc),
                ax25: heard.ax25,
            },
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
    /// The last count per [`CountKey`] in the station's current pass, for the link's own gaps.
    counts: HashMap<CountKey, u16>,
    /// The extended count of the connection's last packet per [`CountKey`] (see
    /// [`super::merge`]).
    own: HashMap<CountKey, u64>,
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

    /// Takes a read's packets (each a whole, checked space packet), sent by `peer`, and stages
    /// them; returns once the pipeline admitted them. A packet becomes the source of its AX.25
    /// sender when `callsign_sources` names one, otherwise the one its APID maps to, and is
    /// stored with its reception.
    pub(crate) async fn take(&mut self, peer: SocketAddr, read: ReadPackets) -> Result<(), Closed> {
        let decoded_at = Instant::now();
        let heard = || (self.link.counters).seen(ArchiveClock::process().at(decoded_at));
        if !read.packets.is_empty() && heard() {
            // A pass begins: the counts the spacecraft went on through while out of view are
            // not the station's gaps.
            self.counts.clear();
        }
        let mut tally = Tally::default();
        // First the sources, registered at their first packet (the router answers): the merge
        // then takes the whole read under one lock.
        let mapped = self.map(peer, &read, &mut tally).await;
        self.merge(mapped, decoded_at, &mut tally);
        self.count(&tally);
        self.stage(&read.chunk, decoded_at).await
    }

    /// The read's packets that map to a source the router took, each registered at its first
    /// packet; the others are counted as unmatched, and the gaps in the counts are counted.
    async fn map(
        &mut self,
        peer: SocketAddr,
        read: &ReadPackets,
        tally: &mut Tally,
    ) -> Vec<Mapped> {
        let mut mapped = Vec::with_capacity(read.packets.len());
        for (i, range) in read.packets.iter().enumerate() {
            let packet = &read.chunk[range.clone()];
            let Some(header) = PrimaryHeader::parse(packet) else {
                continue;
            };
            let heard = read.heard.get(i).copied().unwrap_or_default();
            tally.gaps += self.gap(heard.counts_of(header.apid), header.sequence_count);
            let (id, matched) = match heard.sender {
                Some(id) => (Some(id), true),
                None => self.link.source_of(header.apid),
            };
            match self.registered(id, header.apid, peer).await {
                Some(source) => {
                    tally.unmatched += u64::from(!matched);
                    mapped.push(self.link.mapped(range, &header, source, &heard, packet));
                }
                None => tally.unmatched += 1,
            }
        }
        mapped
    }

    /// `id`, registered at its first packet (one of `apid`), if the router took it.
    async fn registered(&mut self, id: Option<u32>, apid: u16, peer: SocketAddr) -> Option<u32> {
        let id = id?;
        if !self.sources.contains_key(&id) {
            let slot = self.register(id, apid, peer).await;
            self.sources.insert(id, slot);
        }
        self.sources.get(&id)?.as_ref().map(|_| id)
    }

    /// Takes the mapped packets through the link group's merge, under one lock: a new one goes
    /// into its source's batches with the sequence the source gives it; copies, and packets
    /// further behind the group than the window, are counted.
    fn merge(&mut self, mapped: Vec<Mapped>, decoded_at: Instant, tally: &mut Tally) {
        let link = &self.link;
        let mut merging = link.group.lock();
        for packet in mapped {
            let Some(slot) = self
                .sources
                .get_mut(&packet.source)
                .and_then(Option::as_mut)
            else {
                continue;
            };
            let own = self.own.get(&packet.key).copied();
            let mut sequence = None;
            let verdict = merging.admit(
                packet.id(),
                own,
                || slot.seed(),
                |extended| {
                    sequence = slot.sequence_of(extended);
                    sequence.is_some()
                },
            );
            read_on(&mut self.own, packet.key, verdict);
            match (verdict, sequence) {
                (Verdict::New(_), Some(sequence)) => slot.push(link, decoded_at, sequence, packet),
                (Verdict::Behind(_), _) => tally.behind += 1,
                _ => tally.copies += 1,
            }
        }
    }

    /// Counts what a read's packets came to, and logs a lag past the window and a gap in the
    /// counts at most once a second.
    fn count(&self, tally: &Tally) {
        let Tally {
            copies,
            behind,
            unmatched,
            gaps,
        } = *tally;
        let counters = &self.link.counters;
        counters.copies(copies + behind);
        if behind > 0 && self.link.may_log() {
            tracing::warn!(
                link = %self.link.config.name,
                packets = behind,
                window = self.link.group.window(),
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

    /// Hands each source's packets of the read (`chunk`, decoded at `decoded_at`) to the fan-in,
    /// and waits until they are taken.
    async fn stage(&mut self, chunk: &Bytes, decoded_at: Instant) -> Result<(), Closed> {
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
            slot.source.heard(decoded_at);
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

    /// Packets missing between the last count of `key` and `count`.
    fn gap(&mut self, key: CountKey, count: u16) -> u64 {
        let modulus = SEQUENCE_COUNT_MODULUS;
        let before = self.counts.insert(key, count);
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
    /// The merge's seed for an APID it has not seen: the highest sequence stored, when the
    /// source's sequences are the APID's extended counts.
    fn seed(&self) -> Option<u64> {
        self.carries_count.then_some(self.last).flatten()
    }

    /// The sequence a new packet of extended count `extended` gets in this source: that count
    /// when the source carries it, else the next after the last; `None` when it is at or below
    /// what the source accepted or stored.
    fn sequence_of(&self, extended: u64) -> Option<u64> {
        let next = match self.carries_count {
            true => extended,
            false => self.last.map_or(0, |l| l + 1),
        };
        let new = self.last.is_none_or(|l| next > l) && !self.already_stored.contains(next);
        new.then_some(next)
    }

    /// Adds `packet`, new at `sequence`, to this read's batches.
    fn push(&mut self, link: &Link, decoded_at: Instant, sequence: u64, packet: Mapped) {
        self.last = Some(sequence);
        self.read.bytes += packet.range.len() as u64;
        (self.read.batches).push(
            &self.source,
            link.max_batch,
            decoded_at,
            ReadFrame {
                priority: packet.priority,
                sequence,
                payload: packet.range,
            },
            Some((&link.delivery, packet.received)),
        );
    }
}

/// Moves where the connection reads `key`'s counts on from: a connection reads on from each
/// packet it placed; one it could not place yet (behind, its wrap unknown) leaves it unplaced.
fn read_on(own: &mut HashMap<CountKey, u64>, key: CountKey, verdict: Verdict) {
    match verdict {
        Verdict::New(e) | Verdict::Copy(e) => drop(own.insert(key, e)),
        Verdict::Behind(e) => {
            if let Some(placed) = own.get_mut(&key) {
                *placed = e;
            }
        }
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
