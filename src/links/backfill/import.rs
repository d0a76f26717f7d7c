//! One recording into its link: read a chunk of frames, place each packet in its source's counts
//! ([`super::place`]), leave out what the group holds already, stage the rest in the shard's
//! fan-in, and count it stored once the archive holds it. Two chunks are in flight: one is
//! staged while the one before is made durable, so reading and syncing overlap.
//!
//! Why a ledger of its own per chunk and source: a recording's packets lie below what the
//! source's live connection took, and a source's ledger takes only rising sequences. The
//! backfill's [`Source`] is marked as such: the archive acknowledges it locally and writes no
//! watermark from it (`crate::domain::source`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use super::super::station::{Link, ReadPackets};
use super::holdings::{decide, FirstPackets, Holdings};
use super::packets::Unframer;
use super::place::{self, Reading, DECIDING};
use crate::domain::batch::{ReadBatches, ReadFrame};
use crate::domain::frame::{Priority, SourceKey};
use crate::domain::ledger::Ledger;
use crate::domain::reception::{Delivery, Received};
use crate::domain::sequence_set::SequenceSet;
use crate::domain::source::Source;
use crate::links::recording::{Naming, RecordedItem, Recording, RecordingError};
use crate::pipeline::fan_in::Ingress;
use crate::protocol::ccsds::PrimaryHeader;
pub(crate) use crate::stats::BackfillProgress as Imported;

/// How many frames of a recording are read and staged at a time, at most.
const CHUNK_FRAMES: usize = 4096;

/// How many bytes of frames are read and staged at a time, at most: a chunk of large packets
/// costs no more memory than one of small ones.
const CHUNK_BYTES: usize = 8 << 20;

/// What a backfill reads besides the file: the archive, and the sources of the link's group.
#[derive(Clone)]
pub(crate) struct Backfill {
    pub holdings: Arc<dyn Holdings>,
    /// Every source of the link's merge group that carries an APID's count, by APID.
    pub group: Arc<HashMap<u16, Vec<SourceKey>>>,
    pub drain: CancellationToken,
    /// Held by the import of a file of any link of the group.
    pub group_turn: Arc<tokio::sync::Mutex<()>>,
}

/// Why an import did not finish.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ImportError {
    #[error(transparent)]
    Recording(#[from] RecordingError),
    /// Not the file's fault: it stays in the spool, and is read again at the next look.
    #[error("cannot read what the archive holds: {0}")]
    Archive(String),
    /// A defect of ours met reading the file: the file goes to `failed/`, the spool goes on.
    #[error("an internal error reading the file: {0}")]
    Internal(String),
    /// The drain: what was stored is stored; the file is read again at the next start.
    #[error("the daemon is stopping")]
    Stopped,
}

/// One APID of the file: its reading, its cycle once decided (`None` inside: none fits), and
/// what the group holds.
struct Apid {
    reading: Reading,
    shift: Option<Option<i128>>,
    held: SequenceSet,
}

/// Imports the recording at `path` into `link`; `progress` hears each chunk's counts.
pub(crate) async fn import(
    link: &Link,
    backfill: &Backfill,
    path: &Path,
    progress: &mut (dyn FnMut(&Imported) + Send),
) -> Result<Imported, ImportError> {
    let naming = Naming::of_link(&link.config);
    let owned = path.to_owned();
    let mut recording = blocking(move || Recording::open(&owned, &naming)).await??;
    // The link's checks count what they refuse in the file apart from the station's live input.
    let reading = link.for_recording();
    let mut unframer = Unframer::new(&reading, *recording.format());
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let mut file = File {
        link,
        delivery: Arc::new(link.delivery.from_recording(&name)),
        backfill,
        apids: HashMap::new(),
        modified_ns: modified_ns(path),
        lanes: HashMap::new(),
        in_flight: Vec::new(),
        imported: Imported::default(),
    };
    // Where the last damaged range (or piece of one) ended: a long range comes in pieces.
    let mut damage_end = None;
    loop {
        if backfill.drain.is_cancelled() {
            return Err(ImportError::Stopped);
        }
        let (back, chunk) = blocking(move || next_chunk(recording)).await?;
        recording = back;
        let Chunk { frames, ended } = chunk;
        let (mut read, mut failed) = (Vec::with_capacity(frames.len()), None);
        for item in frames {
            match item {
                Ok(RecordedItem::Frame(frame)) => read.push(frame),
                Ok(RecordedItem::Damage(damage)) => {
                    let range = &mut file.imported;
                    range.damaged_ranges += u64::from(damage_end != Some(damage.start));
                    range.damaged_bytes += damage.end - damage.start;
                    damage_end = Some(damage.end);
                }
                // The last item: the frames before it are stored, then the file fails.
                Err(err) => failed = Some(err),
            }
        }
        let packets = unframer.packets(&reading, &read);
        if let Err(err) = file.store(packets).await {
            // What is staged is made durable before the file is left for the next look, which
            // then finds it held: a retry must not store it again.
            if matches!(err, ImportError::Archive(_)) {
                let staged = std::mem::take(&mut file.in_flight);
                file.durable(staged).await?;
            }
            return Err(err);
        }
        file.imported.bytes = recording.bytes_read();
        file.imported.rejected = reading.counters.rejected();
        progress(&file.imported);
        if ended || failed.is_some() {
            unframer.finish(&reading);
            file.imported.rejected = reading.counters.rejected();
            let last = std::mem::take(&mut file.in_flight);
            file.durable(last).await?;
            progress(&file.imported);
            return match failed {
                Some(err) => Err(err.into()),
                None => Ok(file.imported),
            };
        }
    }
}

/// When `path` was last written, in nanoseconds since the Unix epoch; now when it cannot be
/// told.
fn modified_ns(path: &Path) -> u64 {
    let modified = std::fs::metadata(path).and_then(|meta| meta.modified());
    let at = modified.unwrap_or_else(|_| std::time::SystemTime::now());
    crate::domain::units::unix_ns(at).unwrap_or_default()
}

/// A chunk of a recording's items, and whether the file ended with it.
struct Chunk {
    frames: Vec<Result<RecordedItem, RecordingError>>,
    ended: bool,
}

fn next_chunk(mut recording: Recording) -> (Recording, Chunk) {
    let (mut frames, mut bytes) = (Vec::new(), 0);
    while frames.len() < CHUNK_FRAMES && bytes < CHUNK_BYTES {
        let Some(item) = recording.next() else {
            return (
                recording,
                Chunk {
                    frames,
                    ended: true,
                },
            );
        };
        if let Ok(RecordedItem::Frame(frame)) = &item {
            bytes += frame.payload.len();
        }
        frames.push(item);
    }
    (
        recording,
        Chunk {
            frames,
            ended: false,
        },
    )
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ImportError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| match err.is_panic() {
            true => ImportError::Internal(err.to_string()),
            false => ImportError::Stopped,
        })
}

/// A packet placed in its source, new to the group.
struct New {
    sequence: u64,
    packet: std::ops::Range<usize>,
    received: Received,
}

/// The state of one file's import.
struct File<'a> {
    link: &'a Link,
    /// The link's, naming the recording.
    delivery: Arc<Delivery>,
    backfill: &'a Backfill,
    apids: HashMap<u16, Apid>,
    /// When the file was last written, in nanoseconds since the Unix epoch: the time of a
    /// recording that gives none of its own.
    modified_ns: u64,
    /// Each source's shard and lane into its fan-in, once lent.
    lanes: HashMap<u32, (usize, Ingress)>,
    /// The last chunk's sources, staged and not yet known durable, with their packets.
    in_flight: Vec<(Arc<Source>, u64)>,
    imported: Imported,
}

impl File<'_> {
    /// Places, stores and waits for one chunk's packets.
    async fn store(&mut self, read: ReadPackets) -> Result<(), ImportError> {
        let decoded_at = Instant::now();
        let relative = self.read_counts(&read);
        self.decide_cycles(&read, &relative).await?;
        let mut new: HashMap<u32, Vec<New>> = HashMap::new();
        for (i, (apid, source, relative)) in relative.into_iter().enumerate() {
            self.imported.packets += 1;
            let state = self.apids.get_mut(&apid);
            let placed = state
                .as_ref()
                .and_then(|s| place::placed(relative?, s.shift??));
            let (Some(state), Some(source), Some(sequence)) = (state, source, placed) else {
                self.imported.unplaced += 1;
                continue;
            };
            if state.held.contains(sequence) {
                self.imported.held += 1;
                continue;
            }
            state.held.insert_run(sequence, sequence);
            let range = read.packets[i].clone();
            let heard = read.heard.get(i).copied().unwrap_or_default();
            new.entry(source).or_default().push(New {
                sequence,
                packet: range,
                received: Received {
                    earth_unix_ns: heard.earth_unix_ns,
                    playback: true,
                    ax25: heard.ax25,
                },
            });
        }
        let mut staged = Vec::with_capacity(new.len());
        for (source, packets) in new {
            staged.push(self.stage(source, packets, &read, decoded_at).await?);
        }
        // This chunk's packets go into the fan-in while the one before is being made durable:
        // two in flight, the reading and the syncing overlap.
        let before = std::mem::replace(&mut self.in_flight, staged);
        self.durable(before).await
    }

    /// Completes once the archive holds every packet `staged` (one chunk's sources), counted as
    /// stored then; or at the drain.
    async fn durable(&mut self, staged: Vec<(Arc<Source>, u64)>) -> Result<(), ImportError> {
        for (source, stored) in staged {
            self.settled(&source).await?;
            self.imported.stored += stored;
        }
        Ok(())
    }

    /// Each packet's APID, the source that carries its count (if any), and its relative count.
    fn read_counts(&mut self, read: &ReadPackets) -> Vec<(u16, Option<u32>, Option<u64>)> {
        let config = &self.link.config;
        (read.packets.iter().enumerate())
            .map(|(i, range)| {
                let Some(header) = PrimaryHeader::parse(&read.chunk[range.clone()]) else {
                    return (0, None, None);
                };
                let sender = read.heard.get(i).and_then(|h| h.sender);
                let source = sender.or(self.link.source_of(header.apid).0);
                let source = source.filter(|&id| config.carries_count(id));
                let apid = self.apids.entry(header.apid).or_insert_with(|| Apid {
                    reading: Reading::default(),
                    shift: None,
                    held: SequenceSet::default(),
                });
                let relative = source.map(|_| apid.reading.next(header.sequence_count));
                (header.apid, source, relative)
            })
            .collect()
    }

    /// The cycle of each APID met for the first time, from what the group holds of it.
    async fn decide_cycles(
        &mut self,
        read: &ReadPackets,
        relative: &[(u16, Option<u32>, Option<u64>)],
    ) -> Result<(), ImportError> {
        let mut first: HashMap<u16, FirstPackets> = HashMap::new();
        for (i, &(apid, _, relative)) in relative.iter().enumerate() {
            let undecided = self.apids.get(&apid).is_some_and(|a| a.shift.is_none());
            let (true, Some(relative)) = (undecided, relative) else {
                continue;
            };
            let earth = read.heard.get(i).and_then(|heard| heard.earth_unix_ns);
            let at_ns = earth.unwrap_or(self.modified_ns);
            let first = first.entry(apid).or_insert_with(|| FirstPackets {
                packets: Vec::new(),
                at_ns,
            });
            if first.packets.len() < DECIDING {
                let crc = crc32fast::hash(&read.chunk[read.packets[i].clone()]);
                first.packets.push((relative, crc));
            }
        }
        for (apid, first) in first {
            let sources = self.backfill.group.get(&apid).cloned().unwrap_or_default();
            let holdings = Arc::clone(&self.backfill.holdings);
            let asked = blocking(move || decide(holdings.as_ref(), sources, &first));
            let (held, shift) = tokio::select! {
                decided = asked => decided?.map_err(ImportError::Archive)?,
                // The drain does not wait for the archive's answer.
                _ = self.backfill.drain.cancelled() => return Err(ImportError::Stopped),
            };
            if shift.is_none() {
                tracing::warn!(link = %self.link.config.name, apid, "backfill: the recording's packets of this APID fit nowhere between what the group received before and after them: not stored (unplaced)");
            }
            if let Some(state) = self.apids.get_mut(&apid) {
                state.shift = Some(shift);
                state.held = held;
            }
        }
        Ok(())
    }
}

/// Where a backfill's sources say they come from: nowhere on the network.
const NO_PEER: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::UNSPECIFIED,
    0,
));

impl File<'_> {
    /// Stages `packets`, new to source `id`, in its shard's fan-in under a ledger of their own;
    /// the source they are staged as, and how many.
    async fn stage(
        &mut self,
        id: u32,
        mut packets: Vec<New>,
        read: &ReadPackets,
        decoded_at: Instant,
    ) -> Result<(Arc<Source>, u64), ImportError> {
        let link = self.link;
        if self.backfill.drain.is_cancelled() {
            return Err(ImportError::Stopped);
        }
        let key = (link.config.kind, id);
        let (shard, ingress) = match self.lanes.get(&id) {
            Some(lane) => lane.clone(),
            None => {
                let lane = link.router.lend(key).await.ok_or(ImportError::Stopped)?;
                self.lanes.insert(id, lane.clone());
                lane
            }
        };
        // A ledger takes rising sequences.
        packets.sort_unstable_by_key(|p| p.sequence);
        let mut source = Source::new(id, key.0, NO_PEER, Arc::new(Ledger::new(None)));
        source.station = Some(format!("{} backfill", link.config.name).into());
        source.backfill = true;
        let source = Arc::new(source);
        let mut batches = ReadBatches::default();
        for new in packets {
            // Live first: a recording's packets are hours old, and take the routine lane.
            let frame = ReadFrame {
                priority: Priority::Routine,
                sequence: new.sequence,
                payload: new.packet,
            };
            let reception = Some((&self.delivery, new.received));
            batches.push(&source, link.max_batch, decoded_at, frame, reception);
        }
        let stored = batches.accepted;
        source.record(&batches.runs);
        link.stats.shard(shard).accepted(stored);
        let chunk = read.chunk.clone();
        let staged = ingress.stage(batches.into_batches().map(|mut batch| {
            batch.attach(chunk.clone());
            batch
        }));
        staged.map_err(|_| ImportError::Stopped)?;
        Ok((source, stored))
    }

    /// Completes once the archive holds every frame of `source`, or at the drain.
    async fn settled(&self, source: &Source) -> Result<(), ImportError> {
        loop {
            let changed = source.ledger().changed();
            if source.is_settled() {
                return Ok(());
            }
            tokio::select! {
                _ = changed => {}
                _ = self.backfill.drain.cancelled() => return Err(ImportError::Stopped),
            }
        }
    }
}
