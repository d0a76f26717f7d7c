//! The NATS sink: the archive published into a JetStream stream, every frame exactly once
//! (`docs/scale-out.md`).
//!
//! Why a follower of the files and not a subscriber of the pipeline: JetStream may be away for
//! minutes, and a daemon may be killed at any moment. Reading the segment files from a durable
//! cursor ([`SavedCursors`]) with the archive's read side makes both cheap: while NATS is down the
//! sink only falls behind in the files (ingest, the archive and the drain never wait for it, and it
//! runs on a thread of its own at a lower priority), and after any restart it resumes at its
//! cursor. With `ack = "replicated"` the acknowledgements do wait for it ([`Replication`]): it runs
//! at the daemon's priority, tells the gate how fast it publishes, and publishes the emergencies
//! the archive hands over from its journal ahead of the files ([`Urgent`]).
//!
//! Every shard of the archive is read ([`ShardCursors`], in turns, each up to its own durable
//! end), and each has a cursor of its own, since a position only means something within its
//! shard's segments: shard 0's file keeps the name it had before shards, so an upgraded
//! deployment resumes where it was.
//!
//! Emergencies first: the sink reads up to [`READ_AHEAD`] frames ahead of what it publishes and
//! publishes the emergencies among them before the routine frames read before them (each
//! priority in the files' order).
//!
//! Exactly once: many publishes are in flight (`sinks.nats.window`), and each shard's cursor is
//! the position up to which JetStream acknowledged everything of that shard ([`Unacked`]), saved a
//! few times a second. After a failure or a restart the sink publishes again from its cursor, and
//! what the stream holds already is left out: in layout `records/1` by its subject's marks
//! ([`Series`]), in `frame/1` by the duplicate window (the same `Nats-Msg-Id`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::context::PublishError;
use async_nats::jetstream::publish::PublishAck;
use async_nats::Client;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::backlog::{Backlog, ReadAhead};
use super::client::connect_on;
use super::cursor::{SavedCursors, SAVE_INTERVAL};
use super::fleet::EarlierFrames;
use super::leader::{context_of, Publishing};
use super::message::{Layout, Naming};
use super::pack::Packer;
use super::progress::{report, Progress};
use super::series::Series;
use super::size::{self, RoutineSize};
use super::stream::{NatsError, SinkStream};
use super::unacked::Unacked;
use super::urgent::{self, Urgent};
use super::window::{InFlight, Window};
use crate::archive::read::{spawn_reader, ArchivedFrame, DurableEnds};
use crate::archive::read::{FrameRun, OnGap, ReadError, ShardCursors, Start};
use crate::archive::retention::ReadMarks;
use crate::config::{Identity, NatsConfig};
use crate::domain::filter::FrameFilter;
use crate::domain::frame::{Priority, SourceKey};
use crate::domain::position::DurableEnd;
use crate::domain::position::Positions;
use crate::domain::replication::Replication;
use crate::stats::Stats;

/// How many frames, and payload bytes, the sink reads ahead of what it publishes, at most, in
/// each layout: an emergency among them is published before the routine frames ahead of it. More
/// than JetStream takes in [`crate::domain::replication::MOST_PACE`] on the reference machine, so
/// that with `ack = "replicated"` an emergency is found as soon as it is durable.
const READ_AHEAD: ReadAhead = ReadAhead {
    frames: 16_384,
    bytes: usize::MAX,
};
const READ_AHEAD_RECORDS: ReadAhead = ReadAhead {
    frames: 262_144,
    bytes: 128 << 20,
};

/// The wait after a failed session, doubled after each failure in a row up to the maximum.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// The running sink, for the daemon's drain.
pub struct NatsSink {
    /// Cancelled when the sink's thread has ended.
    done: CancellationToken,
    /// Cancelled at the drain deadline: the sink saves its cursor and stops.
    cut_off: CancellationToken,
}

impl NatsSink {
    /// Starts publishing the archive in `archive`, every shard up to its durable end, on a thread
    /// of its own. `durable` has every shard directory of the archive with its durable end (a
    /// closed watch for a shard no writer appends to).
    /// With `marks`, retention keeps the segments the sink has not published from `max_age`
    /// (`archive.retention.protect = ["nats"]`): the sink says where its saved cursors are.
    /// With `replication` (`ack = "replicated"`), each frame JetStream acknowledges moves its
    /// source's acknowledgement.
    pub fn start(
        config: NatsConfig,
        archive: PathBuf,
        durable: DurableEnds,
        stats: Stats,
        marks: Option<Arc<ReadMarks>>,
        replication: Option<Arc<Replication>>,
    ) -> NatsSink {
        let sink = NatsSink {
            done: CancellationToken::new(),
            cut_off: CancellationToken::new(),
        };
        let (done, cut_off) = (sink.done.clone().drop_guard(), sink.cut_off.clone());
        // Before anything of this run is written: frames from these ends on are new.
        let start_ends = (durable.iter())
            .map(|(shard, end)| (*shard, *end.borrow()))
            .collect();
        // With `ack = "replicated"` the senders' acknowledgements wait for the sink.
        let lowered = replication.is_none();
        // The connection's own task runs on the caller's runtime, not on the sink's thread: a
        // PubAck is read while the sink reads, encodes and counts.
        let io = tokio::runtime::Handle::try_current().ok();
        stats.nats_sink_started(replication.is_some());
        let health = stats.clone();
        let started = spawn_reader("nats-sink", lowered, move || async move {
            let _done = done;
            let files = ArchiveFiles {
                dir: archive,
                durable,
                start_ends,
                replication,
            };
            run(config, files, marks, stats, cut_off, io).await;
        });
        if let Err(err) = started {
            tracing::error!(error = %err, "cannot start the NATS sink's thread; nothing is published");
            health.nats_state(false, true, 0, Duration::ZERO);
        }
        sink
    }

    /// Waits for the sink to publish what the archive made durable before it closed, until
    /// `deadline`; then cuts it off (its cursor is saved either way).
    pub async fn finish(self, deadline: Instant) {
        if tokio::time::timeout_at(deadline, self.done.cancelled())
            .await
            .is_err()
        {
            self.cut_off.cancel();
            self.done.cancelled().await;
        }
    }
}

/// The archive the sink publishes.
struct ArchiveFiles {
    /// The archive directory.
    dir: PathBuf,
    /// Every shard of the archive, with its durable end.
    durable: DurableEnds,
    /// Each shard's durable end when the daemon started: frames from it on were archived by
    /// this run.
    start_ends: HashMap<usize, DurableEnd>,
    /// Where acknowledged frames are marked, with `ack = "replicated"`.
    replication: Option<Arc<Replication>>,
}

/// The sink's life: connect, then sessions until the archive closes, a fatal problem, or the
/// cut-off; the cursors are saved at the end. With `marks`, retention protection is told where
/// the saved cursors are.
async fn run(
    config: NatsConfig,
    files: ArchiveFiles,
    marks: Option<Arc<ReadMarks>>,
    stats: Stats,
    cut_off: CancellationToken,
    io: Option<tokio::runtime::Handle>,
) {
    // Connects (the client goes on trying in the background), and loads every saved cursor.
    let started = async {
        let client = connect_on(&config, io.as_ref()).await?;
        let shards = files.durable.iter().map(|(shard, _)| *shard);
        let cursors = SavedCursors::load(&files.dir, shards, marks).map_err(NatsError::Cursor)?;
        Ok::<_, NatsError>((client, cursors))
    };
    let (client, cursors) = match started.await {
        Ok(started) => started,
        Err(err) => {
            tracing::error!(error = %err, "the NATS sink cannot start; nothing is published");
            stats.nats_state(false, true, 0, Duration::ZERO);
            return;
        }
    };
    let acked = cursors.saved().clone();
    if let Some(position) = acked.get(0) {
        stats.nats_cursor(position);
    }
    tracing::info!(stream = config.stream, site = config.site, cursors = %acked, "NATS sink started");
    let progress = Arc::new(Progress::default());
    let reporter = tokio::spawn(report(
        client.clone(),
        stats.clone(),
        Arc::clone(&progress),
        config.max_lag,
        files.replication.clone(),
    ));
    let context = context_of(client.clone());
    let publishing = Publishing::start(context.clone(), &config, io.as_ref(), stats.clone());
    let mut publisher = JetStreamWriter {
        message: Naming::new(&config),
        earlier: (config.identity == Identity::Fleet)
            .then(|| EarlierFrames::new(context.clone(), &config)),
        stream: SinkStream::new(context, publishing, config.clone()),
        layout: Layout::Frame,
        packer: Packer::new(false, stats.clone()),
        client: client.clone(),
        new_from: NewFrom::new(&files.start_ends),
        files,
        config,
        cursors,
        stats,
        progress,
        acked,
        backlog: None,
        earlier_left: 0,
        earlier_done: false,
        urgent: Urgent::default(),
        routine_size: RoutineSize::new(size::most(0)),
        io,
    };
    let fatal = publisher.sessions(&cut_off).await;
    publisher.save().await;
    reporter.abort();
    if fatal {
        publisher.stats.nats_state(false, true, 0, Duration::ZERO);
    }
}

/// Each shard's durable end when the daemon started, as `(segment, length)`, indexed by shard:
/// looked up for every frame.
struct NewFrom(Vec<Option<(u64, u64)>>);

impl NewFrom {
    fn new(start_ends: &HashMap<usize, DurableEnd>) -> NewFrom {
        let shards = start_ends.keys().max().map_or(0, |last| last + 1);
        let mut ends = vec![None; shards];
        for (shard, end) in start_ends {
            ends[*shard] = Some((end.segment, end.len));
        }
        NewFrom(ends)
    }

    /// Whether `frame` was archived by this run: at or after its shard's durable end at start.
    fn holds(&self, frame: &ArchivedFrame) -> bool {
        let p = frame.position;
        (self.0.get(frame.shard).copied().flatten()).is_none_or(|end| (p.segment, p.offset) >= end)
    }
}

/// Why a session ended.
enum SessionEnd {
    /// The archive closed (the drain) and everything it made durable is acknowledged.
    ArchiveClosed,
    /// NATS failed; the next session starts again from the cursor.
    Failed(NatsError),
    /// The archive cannot be followed any more (a segment deleted, a record damaged), or the
    /// stream is of a layout this build does not publish: publishing on would skip frames, so
    /// the sink stops and says degraded.
    Fatal(NatsError),
}

/// The publishing side: the cursor, and one session after another.
struct JetStreamWriter {
    config: NatsConfig,
    message: Naming,
    /// With `identity = "fleet"`: where other daemons published the sources of earlier frames.
    earlier: Option<EarlierFrames>,
    /// The stream, its layout and the series of its sources.
    stream: SinkStream,
    /// The stream's layout, as this run's sessions found it.
    layout: Layout,
    /// Compresses its messages' bodies where the stream's layout is `records/2`.
    packer: Packer,
    /// The connection: the server's `max_payload` bounds a `records/1` or `records/2` message.
    client: Client,
    /// [`ArchiveFiles::start_ends`], by shard.
    new_from: NewFrom,
    files: ArchiveFiles,
    /// Each shard's cursor file, and what it holds.
    cursors: SavedCursors,
    stats: Stats,
    progress: Arc<Progress>,
    /// In each shard, every frame up to this one is acknowledged; a shard without one has none
    /// acknowledged yet (it starts at the oldest).
    acked: Positions,
    /// The reading a failed session leaves to the next: its place in the archive and the frames
    /// read and not yet acknowledged, so that the next goes on where it was (a new reading from
    /// the cursor, after retention deleted past it, could not tell what was published).
    backlog: Option<Backlog>,
    /// Frames earlier runs archived that were read and not yet acknowledged; and whether every
    /// frame before [`ArchiveFiles::start_ends`] is done with (told to the gate once).
    earlier_left: u64,
    earlier_done: bool,
    /// With `ack = "replicated"`: emergencies the archive handed over from its journal, and the
    /// size of the messages from the files and their room in flight, by how soon PubAcks come.
    urgent: Urgent,
    routine_size: RoutineSize,
    /// The daemon's runtime, where the connection's task runs and PubAcks land.
    io: Option<tokio::runtime::Handle>,
}

impl JetStreamWriter {
    /// Runs sessions until the archive closes, a fatal problem (`true`), or the cut-off.
    async fn sessions(&mut self, cut_off: &CancellationToken) -> bool {
        let mut backoff = MIN_BACKOFF;
        loop {
            let before = self.acked.clone();
            let ended = tokio::select! {
                _ = cut_off.cancelled() => {
                    tracing::warn!(cursors = %self.acked, "NATS sink cut off at the drain deadline");
                    return false;
                }
                ended = self.session() => ended,
            };
            match ended {
                SessionEnd::ArchiveClosed => {
                    tracing::info!(cursors = %self.acked, "NATS sink published everything the archive stored");
                    return false;
                }
                SessionEnd::Fatal(why)
                | SessionEnd::Failed(why @ NatsError::OtherStream { .. }) => {
                    tracing::error!(
                        error = %why,
                        "the NATS sink stopped: publishing on would skip frames, mix layouts or fill another stream"
                    );
                    return true;
                }
                SessionEnd::Failed(why) => {
                    self.stats.nats_error();
                    if self.acked != before {
                        backoff = MIN_BACKOFF;
                    }
                    tracing::warn!(
                        error = why.to_string(),
                        retry_ms = backoff.as_millis() as u64,
                        "NATS sink failed; publishing again what it had not seen acknowledged"
                    );
                    self.save().await;
                    tokio::select! {
                        _ = cut_off.cancelled() => return false,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// Publishes from where the last session left off (from the cursors, the first time), a
    /// window of PubAcks in flight, until something fails or every shard's archive writer has
    /// closed and everything is acknowledged. A failed session leaves its reading to the next.
    async fn session(&mut self) -> SessionEnd {
        match self.stream.ensure().await {
            Ok(layout) => {
                self.layout = layout;
                if self.packer.compresses() != (layout == Layout::Compressed) {
                    self.packer = Packer::new(layout == Layout::Compressed, self.stats.clone());
                }
                if let Some(replication) = &self.files.replication {
                    replication.handover().set_taken(layout.batches());
                }
            }
            Err(err @ NatsError::Stream { .. }) => return SessionEnd::Failed(err),
            Err(err) => return SessionEnd::Fatal(err),
        }
        let mut backlog = match self.backlog.take() {
            Some(backlog) => backlog,
            None => match self.locate().await {
                Ok(backlog) => backlog,
                Err(err) => return SessionEnd::Fatal(err.into()),
            },
        };
        // Before JetStream answers: a reading that starts past every earlier frame has none.
        self.note_earlier(&backlog.cursors);
        let mut in_flight = Window::default();
        let ended = self.publish_from(&mut backlog, &mut in_flight).await;
        if let SessionEnd::Failed(_) = ended {
            // What was in flight is published again first, in its order.
            backlog.put_back(in_flight.into_frames());
            self.backlog = Some(backlog);
        }
        ended
    }

    /// A reading from the cursors: after each shard's acknowledged frame.
    async fn locate(&mut self) -> Result<Backlog, ReadError> {
        let start = Start::After(self.acked.clone());
        // Never stopped by a deletion: retention may delete what the sink has not published (a
        // size limit does even when the sink is protected), and it goes on at the oldest frame left.
        let (wanted, on_gap) = (Arc::new(FrameFilter::default()), OnGap::Oldest);
        let located =
            ShardCursors::locate(&self.files.dir, &self.files.durable, &start, wanted, on_gap);
        let mut cursors = located.await?.counting_damage(&self.stats);
        self.note_skipped(&mut cursors);
        Ok(Backlog::new(cursors, self.layout))
    }

    /// Whether the backlog may read more: the frames and bytes read ahead of what is published.
    fn has_room(&self, backlog: &Backlog) -> bool {
        backlog.has_room(match self.layout {
            Layout::Frame => READ_AHEAD,
            Layout::Records | Layout::Compressed => READ_AHEAD_RECORDS,
        })
    }

    /// The next message, the journal's emergencies first, through a new leader's connection once
    /// no message can overtake one in flight (in `frame/1`, once nothing is: none goes until then).
    async fn publish_any(
        &mut self,
        backlog: &mut Backlog,
        in_flight: &Window,
    ) -> Option<Result<InFlight, NatsError>> {
        if self.layout.batches() || in_flight.is_empty() {
            self.stream.take_up();
        } else if self.stream.moving() {
            return None;
        }
        match self.publish_journaled(in_flight).await {
            None => self.publish_next(backlog, in_flight).await,
            journaled => journaled,
        }
    }

    /// The next message to publish, if there is one and room for it: a frame, or a batch of a
    /// source with nothing in flight (`busy` has those), an emergency's first.
    async fn publish_next(
        &mut self,
        backlog: &mut Backlog,
        in_flight: &Window,
    ) -> Option<Result<InFlight, NatsError>> {
        if in_flight.len() >= self.config.window {
            return None;
        }
        if self.layout == Layout::Frame {
            let frame = backlog.next()?;
            let published = self.publish(&frame).await;
            if published.is_err() {
                backlog.put_back(std::iter::once(frame));
            }
            return Some(published);
        }
        let (key, urgent) = backlog.next_source(in_flight.busy())?;
        if !urgent && !self.has_window_room(in_flight) {
            return None;
        }
        Some(self.publish_batch(key, backlog, in_flight.bytes()).await)
    }

    /// The session's loop: publishes what `backlog` holds (emergencies first) and reads on, up
    /// to [`READ_AHEAD`] frames ahead, `in_flight` the window of publishes waiting for their
    /// PubAck.
    async fn publish_from(&mut self, backlog: &mut Backlog, in_flight: &mut Window) -> SessionEnd {
        // Read to every shard's durable end, and whether every shard was closed at that read.
        let (mut caught_up, mut finished) = (false, false);
        // A read that failed: what was read before it is published first, then the sink stops.
        let mut broken = None;
        let mut ticker = tokio::time::interval(SAVE_INTERVAL);
        loop {
            // PubAcks that came first: a source's next message waits for its last one's.
            while let Some((published, ack)) = in_flight.landed() {
                if let Err(why) = self.acked(&published, ack, &mut backlog.unacked).await {
                    in_flight.push_front(published);
                    return SessionEnd::Failed(why);
                }
            }
            backlog.settle(in_flight.is_empty());
            let oldest = (in_flight.oldest_received().into_iter())
                .chain(backlog.oldest_received())
                .min();
            self.progress.note_oldest(oldest, caught_up);
            self.note_earlier(&backlog.cursors);
            match self.publish_any(backlog, in_flight).await {
                Some(Ok(published)) => {
                    in_flight.push(published);
                    continue;
                }
                Some(Err(why)) => return SessionEnd::Failed(why),
                None => {}
            }
            let room = self.has_room(backlog);
            if room && !caught_up {
                // Every shard closed before the read: a read that finds nothing is the end.
                let closed = !backlog.cursors.is_open();
                let read = backlog.cursors.read().await;
                self.note_skipped(&mut backlog.cursors);
                match read {
                    Ok(Some(runs)) => {
                        let frames: Vec<ArchivedFrame> =
                            runs.into_iter().flat_map(FrameRun::into_frames).collect();
                        let earlier = frames.iter().filter(|f| !self.new_from.holds(f));
                        self.earlier_left += earlier.count() as u64;
                        backlog.add(frames);
                        continue;
                    }
                    Ok(None) => (caught_up, finished) = (true, closed),
                    Err(err) => (caught_up, finished, broken) = (true, true, Some(err)),
                }
            }
            let done = in_flight.is_empty() && backlog.read_ahead() == 0;
            if caught_up && done {
                self.progress.skipped.store(false, Relaxed);
            }
            if finished && done {
                return broken.map_or(SessionEnd::ArchiveClosed, |e| SessionEnd::Fatal(e.into()));
            }
            // Every frame durable is read, and the window has room: the sink waits for frames.
            let starved = (caught_up && self.has_window_room(in_flight)).then(Instant::now);
            let cursors = &mut backlog.cursors;
            let replication = self.files.replication.clone();
            tokio::select! {
                () = urgent::handed_over(replication.as_deref()) => {}
                Some((published, ack)) = in_flight.next_ack(), if !in_flight.is_empty() => {
                    if let Err(why) = self.acked(&published, ack, &mut backlog.unacked).await {
                        // Published again first by the next session.
                        in_flight.push_front(published);
                        return SessionEnd::Failed(why);
                    }
                }
                // Read again once a shard's durable end moved (at once when every shard closed).
                () = cursors.changed(), if room && caught_up && !finished => caught_up = false,
                _ = ticker.tick() => self.save().await,
            }
            if let (Some(since), Some(replication)) = (starved, &self.files.replication) {
                replication.starved(since.elapsed());
            }
        }
    }

    /// Whether the window has room for a routine message.
    fn has_window_room(&self, in_flight: &Window) -> bool {
        in_flight.len() < self.config.window
            && (self.layout == Layout::Frame
                || in_flight.bytes() < self.routine_size.room(Instant::now()))
    }

    /// Tells the gate, once, that every frame earlier runs archived is done with: read past in
    /// every shard, and none of those read waits for its PubAck.
    fn note_earlier(&mut self, cursors: &ShardCursors) {
        if self.earlier_done || self.earlier_left > 0 || !cursors.has_passed(&self.files.start_ends)
        {
            return;
        }
        self.earlier_done = true;
        if let Some(replication) = &self.files.replication {
            tracing::info!("the NATS sink has published what earlier runs archived");
            replication.published_earlier();
        }
    }

    /// Counts and logs the frames retention deleted before the sink published them: it is
    /// degraded until it has caught up.
    fn note_skipped(&mut self, cursors: &mut ShardCursors) {
        for skip in cursors.take_skipped() {
            self.stats.nats_skipped(skip.frames());
            if let Some(replication) = &self.files.replication {
                replication.passed(skip.frames());
            }
            self.progress.acked_new.fetch_add(skip.frames(), Relaxed);
            self.progress.skipped.store(true, Relaxed);
            skip.log("NATS sink");
            tracing::error!(
                frames = skip.frames(),
                "the NATS sink skipped frames retention deleted before it published them"
            );
        }
    }

    /// Hands one frame to the client (layout `frame/1`); its PubAck comes later. A frame an
    /// earlier run archived that another daemon has published since ([`EarlierFrames`]) is
    /// passed as held already.
    async fn publish(&mut self, followed: &ArchivedFrame) -> Result<InFlight, NatsError> {
        let frame = &followed.frame;
        let mut in_flight = InFlight::of(vec![followed.clone()]);
        if let (false, Some(earlier)) = (self.new_from.holds(followed), &mut self.earlier) {
            if earlier.held_elsewhere(&self.message, frame).await {
                (in_flight.held, in_flight.elsewhere) = (vec![true], true);
                return Ok(in_flight);
            }
        }
        let replicated_through = (self.files.replication.as_ref())
            .and_then(|r| r.acked_through((frame.kind, frame.source_id)));
        let (subject, message) = self.message.build(frame, replicated_through);
        in_flight.sent(self.stream.send(subject, message, 0).await?.0);
        Ok(in_flight)
    }

    /// Hands the client a message of the frames of source `key` read first (layout `records/1`),
    /// less those the stream holds already, behind `ahead` bytes in flight; its PubAck comes later.
    async fn publish_batch(
        &mut self,
        key: SourceKey,
        backlog: &mut Backlog,
        ahead: usize,
    ) -> Result<InFlight, NatsError> {
        let (series, elsewhere) = self.stream.series(&self.message, key).await?;
        let most = self.note_size();
        let mut in_flight = InFlight::of(backlog.take(key, most));
        in_flight.held = (in_flight.frames.iter())
            .map(|f| series.holds(&f.frame))
            .collect();
        in_flight.elsewhere = elsewhere;
        let fresh = || (in_flight.frames.iter().zip(&in_flight.held)).filter(|(_, held)| !**held);
        let through = series.with(fresh().map(|(f, _)| &f.frame));
        in_flight.series = Some((key, through.clone()));
        if fresh().next().is_none() {
            return Ok(in_flight);
        }
        let replicated_through =
            (self.files.replication.as_ref()).and_then(|r| r.acked_through(key));
        let frames = fresh().map(|(f, _)| &f.frame);
        let (subject, message) = (self.message).build_records(
            key,
            frames,
            &through,
            replicated_through,
            series.last,
            &mut self.packer,
        );
        match self.stream.send(subject, message, ahead).await {
            Ok((ack, sent)) => in_flight.sent_timed(ack, sent, self.io.as_ref()),
            Err(why) => {
                backlog.put_back(in_flight.frames.into_iter());
                return Err(why);
            }
        }
        Ok(in_flight)
    }

    /// The most bytes of records a message from the files may carry now (layout `records/1`),
    /// told to `/metrics`.
    fn note_size(&mut self) -> usize {
        let now = Instant::now();
        let most = self.routine_size.limit(self.max_batch(), now);
        if self.layout.batches() {
            self.stats.nats_message_bytes(most);
            self.stats.nats_room_bytes(self.routine_size.room(now));
        }
        most
    }

    /// The most bytes of records in a message (layout `records/1`).
    fn max_batch(&self) -> usize {
        size::most(self.client.server_info().max_payload)
    }

    /// Counts the emergencies published from the journal that are durable now, and publishes the
    /// next batch handed over that may go ([`Urgent`]), ahead of the files (layout `records/1`;
    /// in `frame/1` the files publish them).
    async fn publish_journaled(
        &mut self,
        in_flight: &Window,
    ) -> Option<Result<InFlight, NatsError>> {
        let handed = self.files.replication.as_ref()?.handover().take();
        if !self.layout.batches() {
            return None;
        }
        self.urgent.add(handed);
        let counted = (self.urgent).count_durable((self.files.replication.as_deref(), &self.stats));
        self.progress.acked_new.fetch_add(counted, Relaxed);
        if in_flight.len() >= self.config.window {
            return None;
        }
        let (replication, ahead) = (self.files.replication.as_deref()?, in_flight.bytes());
        for key in self.urgent.ready(in_flight.busy()) {
            let series = match self.stream.series(&self.message, key).await {
                Ok((series, _)) => series,
                Err(why) => return Some(Err(why)),
            };
            let (most, done) = (self.max_batch(), self.earlier_done);
            let Some(frames) = self.urgent.take(key, &series.through, done, most) else {
                continue;
            };
            let replicated_through = replication.acked_through(key);
            let (mut in_flight, subject, message) = urgent::message(
                (&self.message, &mut self.packer),
                key,
                series,
                frames,
                replicated_through,
            );
            return Some(
                self.stream
                    .send(subject, message, ahead)
                    .await
                    .map(|(ack, sent)| {
                        self.routine_size.urgent_sent(sent.at);
                        in_flight.sent_timed(ack, sent, self.io.as_ref());
                        in_flight
                    }),
            );
        }
        None
    }

    /// Takes a message's PubAck (in publishing order): each shard's cursor moves past its
    /// frames once every frame before them in the shard is acknowledged too (`unacked`).
    async fn acked(
        &mut self,
        published: &InFlight,
        ack: Result<PublishAck, PublishError>,
        unacked: &mut Unacked,
    ) -> Result<(), NatsError> {
        let now = Instant::now();
        if let (Ok(_), Some(timed)) = (&ack, published.timed(now)) {
            self.routine_size
                .acked(timed, !published.journaled.is_empty(), now);
        }
        if !published.journaled.is_empty() {
            let gate = (self.files.replication.as_deref(), &self.stats);
            let count = (self.urgent).acked_message(published, ack, &mut self.stream, gate)?;
            self.progress.acked_new.fetch_add(count, Relaxed);
            return Ok(());
        }
        let Some(position) = published.first_position() else {
            return Ok(());
        };
        let ack = ack.map_err(|source| NatsError::NoAck { position, source })?;
        // A message of frames the stream held already was not sent, and has no PubAck.
        let was_sent = !published.held.iter().all(|held| *held);
        let ack = match was_sent {
            true => self.stream.ours(ack)?,
            false => ack,
        };
        if let Some((key, through)) = published.series.clone() {
            // Unsent, its series' last is as it was.
            let last = match was_sent {
                false => self.stream.series(&self.message, key).await?.0.last,
                true => ack.sequence,
            };
            self.stream.published(key, Series { last, through });
        }
        let passed = unacked.acked(published.frames.iter().map(|f| f.shard_position()));
        passed.into_iter().for_each(|p| self.acked.set(p));
        let (new_from, urgent) = (&self.new_from, &mut self.urgent);
        let tally = published.tally(|f| new_from.holds(f), |f| urgent.published(f));
        self.earlier_left = self.earlier_left.saturating_sub(tally.earlier);
        if let (Some(replication), Some(first)) =
            (&self.files.replication, published.frames.first())
        {
            let key = (first.frame.kind, first.frame.source_id);
            let priorities = [Priority::Routine, Priority::Emergency];
            for (priority, runs) in priorities.into_iter().zip(tally.runs) {
                for ((first, last), fresh) in runs {
                    replication.replicated(key, priority, first..=last, fresh);
                }
            }
        }
        let sent = published.frames.len() as u64 - tally.held - tally.counted_before;
        match published.elsewhere {
            true => self.stats.nats_held_elsewhere(tally.held),
            false => self.stats.nats_acked(tally.held, true),
        }
        self.stats.nats_acked(sent, ack.duplicate);
        self.progress.acked_new.fetch_add(tally.new, Relaxed);
        if self.cursors.due() {
            self.save().await;
        }
        Ok(())
    }

    /// Saves each shard's cursor that moved since its last save, and tells `/metrics` the
    /// messages' size now (both every [`SAVE_INTERVAL`] while a session runs).
    async fn save(&mut self) {
        self.note_size();
        self.cursors.save(&self.acked, &self.stats).await;
    }
}
