//! The follow listener and one task per follower: the SUBSCRIBE, its refusals, and the stream of
//! frames from the archive's files up to its durable ends, then along them as they move.
//!
//! Each follower reads the archive with the archive's own read side ([`crate::archive::read`]):
//! every shard's records up to its durable end, then along it as it moves, so history and live
//! are one loop and a follower only ever sends durable frames. A follower writes to its own socket
//! only, so TCP backpressure from a slow consumer stops that follower's task and nothing else:
//! ingest, the archive and the other followers never wait for it. What the archive cannot read
//! becomes REFUSED or END with the reason the protocol gives it.
//!
//! Followers run on a thread and runtime of their own, at a lower scheduling priority
//! (`spawn_low_priority`): when the cores are short, ingest goes first, and followers only fall
//! further behind in the files. They have tasks apart from the pipeline's (`ReaderTasks`): at a
//! drain each one sends what became durable up to the archive's close, then END, and the daemon
//! waits for them until the drain deadline and then cuts them off, so a consumer that stopped
//! reading never delays the drain or changes its report.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::codec::{FramedRead, LengthDelimitedCodec};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::protocol::MAX_SUBSCRIBE_LEN;
use super::protocol::{encode_frames, DaemonMessage, End, Refusal, Subscription};
use crate::archive::read::{spawn_low_priority, DurableEnds, ReaderTasks, ShardCursors};
use crate::archive::read::{within_archive, FrameRun};
use crate::catalog::{CatalogHandle, Published};
use crate::domain::readers::Readers;
use crate::net::{accept_until, Limits, Refused, Slots};
use crate::stats::Stats;
use crate::tls::stream::{self, Reader, Writer};
use crate::tls::ServerTls;

/// How the follow listener is set up.
#[derive(Debug, Clone)]
pub struct FollowSettings {
    /// The archive directory: shard 0's segments, and the other shards' directories.
    pub dir: PathBuf,
    /// Followers beyond these are refused with `TooManyConnections`.
    pub limits: Limits,
    /// Time a consumer has to send its SUBSCRIBE (and, with TLS, to complete its handshake).
    pub handshake_timeout: Duration,
    /// TLS, with `[tls]`: a consumer needs a client certificate of `tls.client_ca` if one is set.
    pub tls: Option<Arc<ServerTls>>,
    /// The archive's count of followers, which keeps the segments they read in the page cache.
    pub readers: Option<Arc<Readers>>,
    /// The daemon's counters (connections refused for the archive's descriptors).
    pub stats: Stats,
}

/// The running followers: their tasks, and the cut-off at the drain deadline.
pub struct Followers {
    tasks: ReaderTasks,
}

/// What every follower task shares.
struct FollowService {
    settings: FollowSettings,
    /// Every shard's durable end; empty when the archive keeps no files: every subscription is
    /// refused.
    durable: DurableEnds,
    /// Announced to followers (CATALOG notices).
    catalog: CatalogHandle,
    drain: CancellationToken,
}

/// Why a subscription ended.
enum Ending {
    /// The daemon sends END.
    End(End),
    /// As `End`, but with a FRAMES message half sent: an END after it would read as its rest,
    /// so the connection is closed without one.
    Cut(End),
    /// The consumer closed its side.
    ConsumerClosed,
    /// The socket failed (the consumer went away).
    Io(io::Error),
}

impl From<End> for Ending {
    fn from(end: End) -> Ending {
        Ending::End(end)
    }
}

impl From<io::Error> for Ending {
    fn from(err: io::Error) -> Ending {
        Ending::Io(err)
    }
}

impl Followers {
    /// Starts accepting followers on `listener` until `drain` is cancelled, on a thread of their
    /// own (below). `durable` has every shard directory of the archive in `settings.dir` with its
    /// durable end (a closed watch for a shard no writer appends to); empty when the archive keeps
    /// no files.
    pub fn start(
        listener: TcpListener,
        settings: FollowSettings,
        durable: DurableEnds,
        catalog: CatalogHandle,
        drain: CancellationToken,
    ) -> Followers {
        let followers = Followers {
            tasks: ReaderTasks::default(),
        };
        let shared = Arc::new(FollowService {
            settings,
            durable,
            catalog,
            drain,
        });
        let (tasks, stop) = (
            followers.tasks.tracker.clone(),
            followers.tasks.cut_off.clone(),
        );
        let thread = listener.into_std().and_then(|listener| {
            spawn_low_priority("followers", move || async move {
                match TcpListener::from_std(listener) {
                    Ok(listener) => accept(&listener, &shared, &tasks, &stop).await,
                    Err(err) => tracing::error!(error = %err, "cannot listen for followers"),
                }
                tasks.wait().await;
            })
        });
        if let Err(err) = thread {
            tracing::error!(error = %err, "cannot start the followers' thread; no follower is served");
        }
        followers
    }

    /// Waits for every follower to send what is durable and its END, until `deadline`; then cuts
    /// off those still sending (a consumer that does not read).
    pub async fn finish(self, deadline: Instant) {
        self.tasks.finish(deadline).await;
    }
}

/// Accepts followers until the drain starts; each runs until its END, or the cut-off.
async fn accept(
    listener: &TcpListener,
    shared: &Arc<FollowService>,
    tasks: &TaskTracker,
    stop: &CancellationToken,
) {
    let slots = Slots::new(shared.settings.limits);
    accept_until(
        listener,
        &slots,
        Slots::take,
        &shared.drain,
        &shared.settings.stats,
        |stream, peer, slot| {
            let (shared, stop) = (Arc::clone(shared), stop.clone());
            tasks.spawn(async move {
                tokio::select! {
                    _ = stop.cancelled() => {
                        tracing::warn!(%peer, "follower cut off at the drain deadline");
                    }
                    _ = serve(stream, peer, slot.as_ref().err(), &shared) => {}
                }
                drop(slot);
            });
        },
    )
    .await;
}

/// One follower, from its SUBSCRIBE to its END.
#[tracing::instrument(name = "follower", skip_all, fields(%peer))]
async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    refused: Option<&Refused>,
    shared: &FollowService,
) {
    let settings = &shared.settings;
    let (read, mut write) =
        match stream::accept(stream, settings.tls.as_deref(), settings.handshake_timeout).await {
            Ok(accepted) => (accepted.reader, accepted.writer),
            Err(err) => {
                tracing::warn!(error = %err, "TLS handshake failed; connection closed");
                return;
            }
        };
    let codec = LengthDelimitedCodec::builder()
        .max_frame_length(MAX_SUBSCRIBE_LEN)
        .new_codec();
    let mut input = FramedRead::new(read, codec);
    let subscribed = match refused {
        None => subscribe(&mut input, &mut write, shared).await,
        Some(refused) => Err(Some(Refusal::TooManyConnections(*refused))),
    };
    let (subscription, cursors) = match subscribed {
        Ok(subscribed) => subscribed,
        Err(None) => return,
        Err(Some(refusal)) => {
            let (reason, detail) = (refusal.reason(), refusal.to_string());
            tracing::info!(?reason, detail, "subscription refused");
            let refused = told(DaemonMessage::from(&refusal), &settings.dir);
            return close(input, write, &refused).await;
        }
    };
    let filter = &subscription.filter;
    tracing::info!(start = %subscription.start, sources = filter.sources.len(), priority = ?filter.priority, on_gap = ?subscription.on_gap, "follower subscribed");
    let _reading = settings.readers.as_ref().map(Readers::hold);
    let mut follower =
        Subscriber::new(input, write, cursors, subscription.version, &shared.catalog);
    let ending = follower.run().await;
    follower.finish(ending, &settings.dir).await;
}

/// `message` as the follower is told it: its detail names the archive's files from the archive
/// directory, not where the server keeps it.
fn told(message: DaemonMessage, root: &Path) -> DaemonMessage {
    match message {
        DaemonMessage::Refused { reason, detail } => DaemonMessage::Refused {
            reason,
            detail: within_archive(&detail, root),
        },
        DaemonMessage::End { reason, detail } => DaemonMessage::End {
            reason,
            detail: within_archive(&detail, root),
        },
        other => other,
    }
}

/// Reads and checks the SUBSCRIBE, finds where it starts, and answers SUBSCRIBED. `Err(None)`:
/// the consumer left before subscribing; `Err(Some)`: the refusal to send.
async fn subscribe(
    input: &mut FramedRead<Reader, LengthDelimitedCodec>,
    write: &mut Writer,
    shared: &FollowService,
) -> Result<(Subscription, ShardCursors), Option<Refusal>> {
    let timeout = shared.settings.handshake_timeout;
    let body = match tokio::time::timeout(timeout, input.next()).await {
        Err(_) => return Err(Some(Refusal::HandshakeTimeout(timeout))),
        Ok(None) => return Err(None),
        Ok(Some(Err(err))) => return Err(Some(Refusal::Unreadable(err))),
        Ok(Some(Ok(body))) => body,
    };
    let subscription = Subscription::decode(&body).map_err(|err| Some(err.into()))?;
    if shared.drain.is_cancelled() {
        return Err(Some(Refusal::ShuttingDown));
    }
    if shared.durable.is_empty() {
        return Err(Some(Refusal::NoArchive));
    }
    let (wanted, on_gap) = (Arc::new(subscription.filter.clone()), subscription.on_gap);
    let located = ShardCursors::locate(
        &shared.settings.dir,
        &shared.durable,
        &subscription.start,
        wanted,
        on_gap,
    );
    let cursors = (located.await).map_err(|err| Some(Refusal::Archive(err)))?;
    let cursors = cursors.counting_damage(&shared.settings.stats);
    let mut buf = BytesMut::new();
    let version = subscription.version;
    DaemonMessage::Subscribed { version }.encode(&mut buf);
    write_flushed(write, &buf).await.map_err(|_| None)?;
    Ok((subscription, cursors))
}

/// A subscribed follower: what its task needs until its END, as mini-redis' `Handler` holds a
/// connection's. Each turn of its loop, and each branch of a turn, is a method.
struct Subscriber {
    input: FramedRead<Reader, LengthDelimitedCodec>,
    write: Writer,
    cursors: ShardCursors,
    /// The subscription's protocol version: from 4 on, a link's FRAMES come after a RECEPTION.
    version: u8,
    /// Followers hear of each catalog publication, and of the latest at once.
    catalog: watch::Receiver<Option<Arc<Published>>>,
    /// The messages being sent; kept from one to the next.
    buf: BytesMut,
    /// Frames sent so far.
    sent: u64,
}

impl Subscriber {
    fn new(
        input: FramedRead<Reader, LengthDelimitedCodec>,
        write: Writer,
        cursors: ShardCursors,
        version: u8,
        catalog: &CatalogHandle,
    ) -> Subscriber {
        let mut catalog = catalog.subscribe();
        catalog.mark_changed();
        Subscriber {
            input,
            write,
            cursors,
            version,
            catalog,
            buf: BytesMut::new(),
            sent: 0,
        }
    }

    /// Sends the frames from the cursors on as they become durable, until every shard's archive
    /// writer has closed (END `Shutdown` once everything durable is sent), the archive cannot be
    /// read, or the consumer goes.
    async fn run(&mut self) -> Ending {
        loop {
            if let Err(ending) = self.turn().await {
                return ending;
            }
        }
    }

    /// The notices due, one read of the archive and what it found sent; when it found nothing,
    /// a wait for more.
    async fn turn(&mut self) -> Result<(), Ending> {
        self.send_catalog().await?;
        // Whether every shard was closed before this read: then a read that finds nothing
        // means everything durable was sent.
        let closed = !self.cursors.is_open();
        self.send_earliest().await?;
        let read = self.cursors.read().await;
        self.send_skipped().await?;
        match read.map_err(End::Archive)? {
            Some(runs) if runs.is_empty() => Ok(()),
            Some(runs) => self.send_frames(&runs).await,
            None if self.cursors.is_finished() => Err(End::WindowEnded.into()),
            None if closed => Err(End::Drained.into()),
            None => self.wait().await,
        }
    }

    /// CATALOG, when a catalog was published since the last look.
    async fn send_catalog(&mut self) -> io::Result<()> {
        match newly_published(&mut self.catalog) {
            Some(version) => self.send(&DaemonMessage::Catalog { version }).await,
            None => Ok(()),
        }
    }

    /// EARLIEST for each shard that holds nothing as old as the subscription's window start.
    async fn send_earliest(&mut self) -> io::Result<()> {
        for earliest in self.cursors.take_earliest() {
            self.send(&DaemonMessage::Earliest(earliest)).await?;
        }
        Ok(())
    }

    /// Tells the consumer of each skip past deleted segments (it asked to be taken on past them).
    async fn send_skipped(&mut self) -> io::Result<()> {
        let skipped = self.cursors.take_skipped();
        if skipped.is_empty() {
            return Ok(());
        }
        self.buf.clear();
        for skip in skipped {
            skip.log("follower");
            DaemonMessage::Skipped(skip).encode(&mut self.buf);
        }
        write_flushed(&mut self.write, &self.buf).await
    }

    /// The runs' FRAMES (each after its RECEPTION, to a subscription of version 4 on), unless the
    /// consumer sends something first.
    async fn send_frames(&mut self, runs: &[FrameRun]) -> Result<(), Ending> {
        self.buf.clear();
        for run in runs {
            encode_frames(run, self.version, &mut self.buf);
        }
        let written = AtomicUsize::new(0);
        tokio::select! {
            done = write_counted(&mut self.write, &self.buf, &written) => done?,
            sent = anything_sent(&mut self.input) => return Err(match (sent, written.load(Relaxed)) {
                (Ending::End(end), 1..) => Ending::Cut(end),
                (sent, _) => sent,
            }),
        }
        self.sent += runs.iter().map(|run| run.frames.len() as u64).sum::<u64>();
        Ok(())
    }

    /// Waits for a shard's durable end to move or a catalog to be published; or for the
    /// consumer, which ends the subscription.
    async fn wait(&mut self) -> Result<(), Ending> {
        tokio::select! {
            () = self.cursors.changed() => {}
            Ok(()) = self.catalog.changed() => {
                // Marked changed again for the next turn's check, which sends the notice.
                self.catalog.mark_changed();
            }
            sent = anything_sent(&mut self.input) => return Err(sent),
        }
        Ok(())
    }

    async fn send(&mut self, message: &DaemonMessage) -> io::Result<()> {
        self.buf.clear();
        message.encode(&mut self.buf);
        write_flushed(&mut self.write, &self.buf).await
    }

    /// Logs how the subscription ended, and sends its END when it has one (its files named from
    /// the archive directory `root`).
    async fn finish(mut self, ending: Ending, root: &Path) {
        let frames = self.sent;
        match ending {
            Ending::End(end) => {
                let (reason, detail) = (end.reason(), end.to_string());
                tracing::info!(?reason, detail, frames, "subscription ended");
                close(
                    self.input,
                    self.write,
                    &told(DaemonMessage::from(&end), root),
                )
                .await;
            }
            Ending::Cut(end) => {
                let (reason, detail) = (end.reason(), end.to_string());
                tracing::info!(
                    ?reason,
                    detail,
                    frames,
                    "subscription ended within a FRAMES message: closed without END"
                );
                let _ = self.write.shutdown().await;
            }
            Ending::ConsumerClosed => tracing::info!(frames, "follower closed its connection"),
            Ending::Io(err) => tracing::info!(frames, error = %err, "follower connection lost"),
        }
    }
}

/// The version of a catalog published since the last look, if any.
fn newly_published(catalog: &mut watch::Receiver<Option<Arc<Published>>>) -> Option<u64> {
    if !catalog.has_changed().unwrap_or(false) {
        return None;
    }
    let published = catalog.borrow_and_update();
    published.as_ref().map(|p| p.catalog.version)
}

/// [`write_flushed`], counting in `written` the bytes the writer took, which a caller that drops
/// it part way reads.
async fn write_counted(write: &mut Writer, buf: &[u8], written: &AtomicUsize) -> io::Result<()> {
    while let Some(rest) = buf
        .get(written.load(Relaxed)..)
        .filter(|rest| !rest.is_empty())
    {
        match write.write(rest).await? {
            0 => return Err(io::ErrorKind::WriteZero.into()),
            n => drop(written.fetch_add(n, Relaxed)),
        }
    }
    write.flush().await
}

/// Writes `buf` whole and flushes it: a no-op on plain TCP, the last record's way out with TLS.
async fn write_flushed(write: &mut Writer, buf: &[u8]) -> io::Result<()> {
    write_counted(write, buf, &AtomicUsize::new(0)).await
}

/// Waits for the consumer to send anything after its SUBSCRIBE, which ends the subscription: a
/// byte is enough, whether or not a whole message follows (a partial one must not wait for the
/// rest). Reads the socket itself, past the framing; cancel-safe.
async fn anything_sent(input: &mut FramedRead<Reader, LengthDelimitedCodec>) -> Ending {
    let buffered = input.read_buffer().len();
    if buffered > 0 {
        return End::BufferedAfterSubscribe(buffered).into();
    }
    let mut byte = [0u8; 1];
    match input.get_mut().read(&mut byte).await {
        Ok(0) => Ending::ConsumerClosed,
        Ok(_) => End::SentAfterSubscribe.into(),
        Err(err) => Ending::Io(err),
    }
}

/// Sends the last message, closes the sending side, and waits a little for the consumer to close.
async fn close(
    input: FramedRead<Reader, LengthDelimitedCodec>,
    mut write: Writer,
    last: &DaemonMessage,
) {
    let mut buf = BytesMut::new();
    last.encode(&mut buf);
    if write.write_all(&buf).await.is_err() || write.shutdown().await.is_err() {
        return;
    }
    crate::net::linger(input.into_inner()).await;
}
