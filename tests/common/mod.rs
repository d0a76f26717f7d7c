//! Shared test helpers: an in-process daemon on loopback port 0, an archive sink that records the
//! processing order and can be held closed, a protocol client, and event-driven waiting.
//!
//! Every integration test file includes this module and uses a different part of it.
#![allow(dead_code)]

pub mod ax25_audio;
pub mod process;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use aggregator::archive::format::{self, Entry, FrameRecord};
pub use aggregator::archive::write::Archive as Shards;
use aggregator::archive::write::{ArchiveSink, BoxFuture, SegmentSink};
use aggregator::config::SyncMode;
use aggregator::domain::position::DurableEnd;
use aggregator::domain::position::Position;
use aggregator::domain::reception::Reception;
use aggregator::ingest::router::RouterHandle;
use aggregator::links::LinkSockets;
use aggregator::ops::frame_feed::FrameFeed;
use aggregator::ops::monitor::{self, MonitorState};
use aggregator::protocol::ingest::{
    encode_data, ClientCodec, ClientMessage, CloseReason, Hello, RefuseReason, ServerMessage,
    VERSION,
};
use aggregator::tls::client::{ClientTls, TlsArgs};
use aggregator::tls::stream::{self, Reader, Writer};
use aggregator::{Batch, Config, Daemon, DrainReport, Listeners, Priority, SourceKind, Stats};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

/// How long any single wait in a test may take before the test fails. Generous: the machine is
/// shared; a healthy run never gets near it.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// The configuration most tests start from: both listeners on loopback port 0, a fast stats
/// publisher, everything else at its documented default.
pub fn test_config() -> Config {
    let mut config = Config::default();
    config.uplink.listen = "127.0.0.1:0".parse().unwrap();
    config.replay.listen = "127.0.0.1:0".parse().unwrap();
    config.dashboard.stats_interval = Duration::from_millis(10);
    // The test sinks keep nothing on disk: written is stored.
    config.archive.sync = SyncMode::Never;
    config
}

/// The test config with its archive in `dir`, synced every 20 ms as deployed, in one shard: for
/// tests that read one shard's stream back in archive order (followers, TM servers).
pub fn archive_config(dir: &Path) -> Config {
    let mut config = test_config();
    config.archive.dir = dir.to_path_buf();
    config.archive.sync = SyncMode::Interval;
    config.runtime.shards = 1;
    config
}

/// A config whose pipeline moves every frame on its own (`max_batch_frames = 1`), so that capacities
/// fill to exact, predictable frame counts.
pub fn unbatched_config(processor: usize, emergency: usize, archive: usize) -> Config {
    let mut config = test_config();
    config.pipeline.processor_capacity = processor;
    config.pipeline.emergency_capacity = emergency;
    config.pipeline.archive_capacity = archive;
    config.pipeline.max_batch_frames = 1;
    config
}

// ---------------------------------------------------------------------------------------------
// The daemon under test.
// ---------------------------------------------------------------------------------------------

/// A daemon running in-process on loopback port 0.
pub struct TestDaemon {
    pub uplink: SocketAddr,
    pub replay: SocketAddr,
    /// Each bound link's address, by name (`[[links]]`).
    pub links: std::collections::HashMap<String, SocketAddr>,
    pub config: Config,
    pub stats: Stats,
    pub router: RouterHandle,
    pub token: CancellationToken,
    handle: Option<JoinHandle<DrainReport>>,
}

impl TestDaemon {
    /// Starts a daemon storing into `sinks`: one sink, or one per shard.
    pub async fn start(config: Config, sinks: impl Into<Shards>) -> TestDaemon {
        Self::start_with(config, sinks, |_| ()).await.0
    }

    /// Starts a daemon, letting `before_run` take handles (such as a frame feed) first.
    pub async fn start_with<T>(
        config: Config,
        sinks: impl Into<Shards>,
        before_run: impl FnOnce(&Daemon) -> T,
    ) -> (TestDaemon, T) {
        let sinks = sinks.into();
        Self::start_built(config, |config| Daemon::new(config, sinks), before_run).await
    }

    /// Starts the daemon `build` makes from the config (after binding its listeners), letting
    /// `before_run` take handles first.
    pub async fn start_built<T>(
        config: Config,
        build: impl FnOnce(Config) -> Daemon,
        before_run: impl FnOnce(&Daemon) -> T,
    ) -> (TestDaemon, T) {
        config.validate().expect("the test config is valid");
        let listeners = Listeners::bind(&config)
            .await
            .expect("bind loopback port 0");
        let uplink = listeners.uplink.local_addr().unwrap();
        let replay = listeners.replay.local_addr().unwrap();
        let sockets = LinkSockets::bind(&config.links)
            .await
            .expect("bind the links on loopback");
        let links = (config.links.iter())
            .filter_map(|l| Some((l.name.clone(), sockets.local_addr(&l.name)?)))
            .collect();
        let mut daemon = build(config.clone());
        daemon.serve_links(sockets);
        let taken = before_run(&daemon);
        let stats = daemon.stats();
        let router = daemon.router();
        let token = CancellationToken::new();
        let handle = tokio::spawn(daemon.run(listeners, token.clone().cancelled_owned()));
        let daemon = TestDaemon {
            uplink,
            replay,
            links,
            config,
            stats,
            router,
            token,
            handle: Some(handle),
        };
        (daemon, taken)
    }

    /// Starts a daemon and takes a lossy frame subscription named `name`, holding `capacity`
    /// batches, before it runs.
    pub async fn start_with_feed(
        config: Config,
        sink: Box<dyn ArchiveSink>,
        name: &'static str,
        capacity: usize,
    ) -> (TestDaemon, FrameFeed) {
        Self::start_with(config, sink, |daemon| {
            daemon.subscribe_frames(name, capacity)
        })
        .await
    }

    /// The listener address for sources of `kind`.
    pub fn addr(&self, kind: SourceKind) -> SocketAddr {
        match kind {
            SourceKind::LiveUplink => self.uplink,
            SourceKind::ArchivedReplay => self.replay,
        }
    }

    /// Starts the drain without waiting for it.
    pub fn begin_shutdown(&self) {
        self.token.cancel();
    }

    /// Waits for `run` to return (after [`Self::begin_shutdown`] or a call that cancels).
    pub async fn join(&mut self) -> DrainReport {
        let handle = self.handle.take().expect("joined once");
        tokio::time::timeout(PATIENCE, handle)
            .await
            .expect("the daemon finished its drain in time")
            .expect("the daemon task did not panic")
    }

    /// Cancels and waits for the drain report.
    pub async fn shutdown(mut self) -> DrainReport {
        self.begin_shutdown();
        self.join().await
    }

    /// Number of sources the router lists right now.
    pub async fn source_keys(&self) -> Vec<(SourceKind, u32)> {
        self.router
            .sources()
            .await
            .expect("router alive")
            .into_iter()
            .map(|s| (s.kind, s.id))
            .collect()
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        // A failed test must not leave the daemon serving.
        self.token.cancel();
    }
}

// ---------------------------------------------------------------------------------------------
// An archive of several shards.
// ---------------------------------------------------------------------------------------------

/// An archive of several shards as a sharded daemon lays it out: shard `k`'s frames come through
/// a daemon of its own whose segment sink writes in `format::shard_dir(root, k)`, so each shard
/// has its own segment stream and its own durable end, as each shard's writer has. The test
/// starts followers or sinks on [`Self::durable`].
pub struct ShardedArchive {
    pub root: PathBuf,
    /// The running shards' daemons.
    daemons: Vec<(usize, TestDaemon)>,
    /// Every shard's durable end, by shard; closed for a stopped (retired) shard.
    pub durable: Vec<(usize, watch::Receiver<DurableEnd>)>,
    config: Config,
}

impl ShardedArchive {
    /// Starts a daemon for each of `shards` on `root`, from `config` (its archive directory
    /// replaced by the shard's).
    pub async fn start(root: &Path, shards: &[usize], config: &Config) -> ShardedArchive {
        let mut archive = ShardedArchive {
            root: root.to_path_buf(),
            daemons: Vec::new(),
            durable: Vec::new(),
            config: config.clone(),
        };
        for &shard in shards {
            archive.start_shard(shard).await;
        }
        archive
    }

    /// Starts shard `shard`'s daemon (again) on its directory, with a new durable end.
    pub async fn start_shard(&mut self, shard: usize) {
        let mut config = self.config.clone();
        config.archive.dir = format::shard_dir(&self.root, shard);
        let (sink, resume) = SegmentSink::open(&config.archive).expect("open the shard's archive");
        let durable = sink
            .durable_end()
            .expect("a segment sink has a durable end");
        let shards = Shards {
            sinks: vec![Box::new(sink)],
            retired: Vec::new(),
            resume,
            readers: None,
            files: None,
            clock: Default::default(),
        };
        let build = |config| Daemon::new(config, shards);
        let (daemon, ()) = TestDaemon::start_built(config, build, |_| ()).await;
        self.durable.retain(|(k, _)| *k != shard);
        self.durable.push((shard, durable));
        self.durable.sort_by_key(|(k, _)| *k);
        self.daemons.push((shard, daemon));
    }

    /// Shard `shard`'s running daemon.
    pub fn daemon(&self, shard: usize) -> &TestDaemon {
        let found = self.daemons.iter().find(|(k, _)| *k == shard);
        &found.unwrap_or_else(|| panic!("shard {shard} runs")).1
    }

    /// Sends `frames` (priority, sequence) as source `kind:id` to shard `shard`, on a connection
    /// of its own, and closes it once every frame is stored.
    pub async fn send(
        &self,
        shard: usize,
        kind: SourceKind,
        id: u32,
        frames: impl IntoIterator<Item = (Priority, u64)>,
    ) {
        let mut client = Client::source(self.daemon(shard).addr(kind), kind, id).await;
        client.send_frames(frames).await;
        client.finish_sending().await;
        client.read_to_close().await;
    }

    /// Drains shard `shard`'s daemon: its segment sink closes, and its durable end with it.
    pub async fn stop_shard(&mut self, shard: usize) {
        let at = self.daemons.iter().position(|(k, _)| *k == shard);
        let (_, daemon) = self
            .daemons
            .remove(at.unwrap_or_else(|| panic!("shard {shard} runs")));
        let report = daemon.shutdown().await;
        assert!(report.is_clean(), "shard {shard}: {report:?}");
    }

    /// Drains every shard still running.
    pub async fn stop(&mut self) {
        while let Some((shard, _)) = self.daemons.first() {
            self.stop_shard(*shard).await;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The recording, gateable archive.
// ---------------------------------------------------------------------------------------------

/// One frame as the archive received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub kind: SourceKind,
    pub source_id: u32,
    pub sequence: u64,
    pub priority: Priority,
    pub payload: Bytes,
    /// A link's frame's reception.
    pub reception: Option<Reception>,
}

#[derive(Debug, Default)]
struct ArchiveState {
    records: Mutex<Vec<Stored>>,
    /// `store` calls currently waiting at the closed gate.
    waiting: AtomicU64,
    /// Batches handed to `store` (whether or not through the gate yet).
    store_calls: AtomicU64,
    closed: AtomicBool,
    /// While set, every write fails half-way, as on a full disk, and stores nothing.
    full: AtomicBool,
    failed_writes: AtomicU64,
}

/// The test's side of a [`RecordingSink`]: read what was stored, open or close the gate.
#[derive(Debug, Clone)]
pub struct Archive {
    state: Arc<ArchiveState>,
    gate: Arc<watch::Sender<bool>>,
}

/// An [`ArchiveSink`] that appends every frame to a shared list, in the order the archive stores
/// them (which is the processing order), and waits at a gate the test controls.
pub struct RecordingSink {
    state: Arc<ArchiveState>,
    gate: watch::Receiver<bool>,
}

impl Archive {
    /// A sink whose gate is open: it stores at once.
    pub fn open() -> (Archive, Box<dyn ArchiveSink>) {
        Self::with_gate(true)
    }

    /// A sink whose gate is closed: the first batch waits in `store` until [`Archive::open_gate`],
    /// so the pipeline behind it backs up.
    pub fn gated() -> (Archive, Box<dyn ArchiveSink>) {
        Self::with_gate(false)
    }

    fn with_gate(open: bool) -> (Archive, Box<dyn ArchiveSink>) {
        let (gate, rx) = watch::channel(open);
        let state = Arc::new(ArchiveState::default());
        let sink = RecordingSink {
            state: Arc::clone(&state),
            gate: rx,
        };
        (
            Archive {
                state,
                gate: Arc::new(gate),
            },
            Box::new(sink),
        )
    }

    pub fn open_gate(&self) {
        self.gate.send_replace(true);
    }

    pub fn close_gate(&self) {
        self.gate.send_replace(false);
    }

    /// Whether a `store` call is waiting at the closed gate right now.
    pub fn is_blocked(&self) -> bool {
        self.state.waiting.load(Ordering::SeqCst) > 0
    }

    /// From now on every write fails with `ENOSPC` and stores nothing of its group (the segment
    /// archive cuts a partial write back), until [`Archive::free_disk`].
    pub fn fill_disk(&self) {
        self.state.full.store(true, Ordering::SeqCst);
    }

    pub fn free_disk(&self) {
        self.state.full.store(false, Ordering::SeqCst);
    }

    /// Writes that failed on the full disk.
    pub fn failed_writes(&self) -> u64 {
        self.state.failed_writes.load(Ordering::SeqCst)
    }

    /// Each source's sequences stored more than once.
    pub fn duplicates(&self) -> Vec<(SourceKind, u32, u64)> {
        let mut seen: Vec<_> = self
            .records()
            .iter()
            .map(|r| (r.kind.to_byte(), r.source_id, r.sequence))
            .collect();
        seen.sort_unstable();
        let mut twice: Vec<_> = seen
            .windows(2)
            .filter(|w| w[0] == w[1])
            .map(|w| w[0])
            .collect();
        twice.dedup();
        twice
            .into_iter()
            .map(|(kind, id, sequence)| (SourceKind::from_byte(kind).unwrap(), id, sequence))
            .collect()
    }

    /// Whether the daemon called `close` on the sink (after the last batch).
    pub fn is_closed(&self) -> bool {
        self.state.closed.load(Ordering::SeqCst)
    }

    pub fn records(&self) -> MutexGuard<'_, Vec<Stored>> {
        self.state.records.lock().unwrap()
    }

    pub fn len(&self) -> usize {
        self.records().len()
    }

    /// The sequences of one source, in the order they were stored.
    pub fn sequences(&self, kind: SourceKind, source_id: u32) -> Vec<u64> {
        self.records()
            .iter()
            .filter(|r| r.kind == kind && r.source_id == source_id)
            .map(|r| r.sequence)
            .collect()
    }

    /// The sequences of one source and priority, in the order they were stored.
    pub fn sequences_with(&self, kind: SourceKind, source_id: u32, priority: Priority) -> Vec<u64> {
        self.records()
            .iter()
            .filter(|r| r.kind == kind && r.source_id == source_id && r.priority == priority)
            .map(|r| r.sequence)
            .collect()
    }

    /// Whether every sequence `0..=up_to` of the source is stored.
    pub fn has_all_up_to(&self, kind: SourceKind, source_id: u32, up_to: u64) -> bool {
        let mut seen = self.sequences(kind, source_id);
        seen.sort_unstable();
        seen.dedup();
        seen.len() as u64 > up_to && seen[..=up_to as usize].iter().copied().eq(0..=up_to)
    }
}

impl ArchiveSink for RecordingSink {
    fn write<'a>(&'a mut self, batches: &'a [Arc<Batch>]) -> BoxFuture<'a, io::Result<()>> {
        Box::pin(async move {
            self.state.store_calls.fetch_add(1, Ordering::SeqCst);
            if !*self.gate.borrow() {
                self.state.waiting.fetch_add(1, Ordering::SeqCst);
                let opened = self.gate.wait_for(|open| *open).await.map(|_| ());
                self.state.waiting.fetch_sub(1, Ordering::SeqCst);
                opened.map_err(|_| io::Error::other("the test dropped the archive gate"))?;
            }
            if self.state.full.load(Ordering::SeqCst) {
                self.state.failed_writes.fetch_add(1, Ordering::SeqCst);
                return Err(io::Error::from_raw_os_error(libc::ENOSPC));
            }
            let mut records = self.state.records.lock().unwrap();
            for batch in batches.iter() {
                let reception = batch.reception();
                records.extend(batch.frames().enumerate().map(|(i, f)| Stored {
                    kind: f.source_kind,
                    source_id: f.source_id,
                    sequence: f.sequence,
                    priority: f.priority,
                    payload: f.payload,
                    reception: reception.map(|(delivery, received)| Reception {
                        delivery: Arc::clone(delivery),
                        received: received[i],
                    }),
                }));
            }
            Ok(())
        })
    }

    fn close(&mut self) -> BoxFuture<'_, io::Result<()>> {
        self.state.closed.store(true, Ordering::SeqCst);
        Box::pin(async { Ok(()) })
    }
}

// ---------------------------------------------------------------------------------------------
// Waiting.
// ---------------------------------------------------------------------------------------------

/// A free loopback port, for a server that keeps its port across restarts (nats-server, a daemon
/// killed and started again).
pub fn free_port() -> u16 {
    // The kernel may hand a port it just gave out, and since freed, out again: a daemon's uplink
    // and replay listeners got the same one. A port is given out once per test process.
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let mut given = GIVEN.lock().expect("ports lock");
    loop {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
        let port = listener.local_addr().expect("local address").port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// Polls `condition` until it holds; fails the test after `timeout`, naming `what`.
pub async fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Like [`wait_until`] for a condition that must be awaited (the router's listing, say).
pub async fn wait_until_async<F, Fut>(what: &str, timeout: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if condition().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// The archive's files, read independently of the daemon.
// ---------------------------------------------------------------------------------------------

/// Every frame stored in the segments of the shard directory `dir`, in file order, each with its
/// position: its segment, its record's offset and its index in the record. A segment that a
/// running daemon's retention deletes between the listing and the reading is passed over.
pub fn stored_frames(dir: &Path) -> Vec<(Position, FrameRecord)> {
    let mut frames = Vec::new();
    for (index, path) in format::list_segments(dir).unwrap() {
        let segment = match format::read_segment(&path) {
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
            read => read.unwrap(),
        };
        let mut last = (u64::MAX, 0);
        for (offset, entry) in segment.entries {
            let Entry::Frame(frame) = entry else { continue };
            last = match last {
                (at, i) if at == offset => (at, i + 1),
                _ => (offset, 0),
            };
            let position = Position {
                segment: index,
                offset,
                index: last.1,
            };
            frames.push((position, frame));
        }
    }
    frames
}

// ---------------------------------------------------------------------------------------------
// The monitor.
// ---------------------------------------------------------------------------------------------

/// A daemon storing into `sink`, with its monitor served beside it as the binary does; cancel the
/// token to stop the monitor.
pub async fn start_monitored(
    config: Config,
    sink: Box<dyn ArchiveSink>,
) -> (TestDaemon, SocketAddr, CancellationToken) {
    let (daemon, state) = TestDaemon::start_with(config, sink, Daemon::monitor_state).await;
    let (addr, stop) = serve_monitor(state).await;
    (daemon, addr, stop)
}

/// Serves the monitor with `state` on loopback port 0, bound as the binary binds it; cancel the
/// token to stop it.
pub async fn serve_monitor(state: MonitorState) -> (SocketAddr, CancellationToken) {
    let loopback = "127.0.0.1:0".parse().unwrap();
    let listener = aggregator::net::listen(loopback, 256, None, "monitor").unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(monitor::serve(
        listener,
        state,
        stop.clone().cancelled_owned(),
    ));
    (addr, stop)
}

/// A plain HTTP/1.1 GET: (status, lowercase header lines, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, Vec<String>, String) {
    http_get_with(addr, path, &[], None).await
}

/// An HTTP/1.1 GET with extra header lines, over TLS when `tls` is given.
pub async fn http_get_with(
    addr: SocketAddr,
    path: &str,
    headers: &[&str],
    tls: Option<&ClientTls>,
) -> (u16, Vec<String>, String) {
    http_request(addr, "GET", path, headers, tls)
        .await
        .unwrap_or_else(|err| panic!("GET {path} from {addr}: {err}"))
}

/// An HTTP/1.1 request without a body (`method` GET, or POST with `Content-Length: 0` among the
/// headers), over TLS when `tls` is given: (status, lowercase header lines, body). An error when
/// no connection can be made, as to a server still starting.
pub async fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[&str],
    tls: Option<&ClientTls>,
) -> io::Result<(u16, Vec<String>, String)> {
    let tcp = TcpStream::connect(addr).await?;
    let (mut reader, mut writer) = stream::client(tcp, tls).await?;
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
    for header in headers {
        request.push_str(header);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    writer.write_all(request.as_bytes()).await?;
    writer.flush().await?;
    let mut response = String::new();
    // A TLS peer may close without close_notify once the response is complete.
    let _ = reader.read_to_string(&mut response).await;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .expect("a complete response");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers = lines.map(str::to_ascii_lowercase).collect();
    Ok((status, headers, body.to_string()))
}

/// The body of a chunked answer, decoded.
pub fn dechunked(body: &str) -> String {
    let (out, whole) = chunks_so_far(body);
    assert!(whole, "the answer has no last chunk: {out}");
    out
}

/// The data of the whole chunks of a chunked body read so far, and whether its last chunk (the
/// empty one that says the answer is whole) came.
pub fn chunks_so_far(body: &str) -> (String, bool) {
    let (mut rest, mut out) = (body, String::new());
    loop {
        let Some((size, after)) = rest.split_once("\r\n") else {
            return (out, false);
        };
        let size = usize::from_str_radix(size.trim(), 16).expect("a hex chunk size");
        if size == 0 {
            return (out, true);
        }
        if after.len() < size + 2 {
            return (out, false);
        }
        out.push_str(&after[..size]);
        rest = &after[size + 2..];
    }
}

/// `GET path` as JSON.
pub async fn http_get_json(addr: SocketAddr, path: &str) -> serde_json::Value {
    let (status, _, body) = http_get(addr, path).await;
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).expect("a JSON body")
}

// ---------------------------------------------------------------------------------------------
// Protocol clients.
// ---------------------------------------------------------------------------------------------

/// The payload every test frame carries: its own sequence, so a mangled payload shows.
pub fn payload_for(sequence: u64) -> [u8; 8] {
    sequence.to_be_bytes()
}

/// Wire bytes of DATA frames, with [`payload_for`] payloads.
pub fn data_bytes(frames: impl IntoIterator<Item = (Priority, u64)>) -> BytesMut {
    let mut out = BytesMut::new();
    for (priority, sequence) in frames {
        encode_data(&mut out, priority, sequence, &payload_for(sequence));
    }
    out
}

/// Wire bytes of a HELLO.
pub fn hello_bytes(version: u8, kind: SourceKind, source_id: u32) -> BytesMut {
    let mut out = BytesMut::new();
    ClientMessage::Hello(Hello {
        version,
        kind,
        source_id,
    })
    .encode(&mut out);
    out
}

pub fn ping_bytes(token: u64) -> BytesMut {
    let mut out = BytesMut::new();
    ClientMessage::Ping(token).encode(&mut out);
    out
}

/// How an accepted connection ended, from the client's side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closed {
    /// Every ACK received before the CLOSE, in order.
    pub acks: Vec<u64>,
    pub reason: CloseReason,
    pub final_ack: Option<u64>,
    pub detail: String,
}

/// A source connection: raw writes (so tests can also send garbage) and decoded reads.
pub struct Client {
    pub inbox: Inbox,
    pub writer: Writer,
}

/// The reading side of a [`Client`]: what the daemon says.
pub struct Inbox {
    reader: FramedRead<Reader, ClientCodec>,
}

impl Client {
    /// Connects without saying anything.
    pub async fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr)
            .await
            .expect("connect to the daemon");
        Self::from_stream(stream)
    }

    /// Connects with a small kernel send buffer, so that a daemon that stops reading blocks the
    /// client's writes soon.
    pub async fn connect_small_buffer(addr: SocketAddr, send_buffer: u32) -> Client {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_send_buffer_size(send_buffer).unwrap();
        let stream = socket.connect(addr).await.expect("connect to the daemon");
        Self::from_stream(stream)
    }

    pub fn from_stream(stream: TcpStream) -> Client {
        stream.set_nodelay(true).unwrap();
        let (read, writer) = stream.into_split();
        Self::from_halves(Reader::Plain(read), Writer::Plain(writer))
    }

    /// Connects and completes a TLS handshake (its error, if it fails).
    pub async fn connect_tls(addr: SocketAddr, tls: &ClientTls) -> io::Result<Client> {
        let stream = TcpStream::connect(addr).await?;
        let (reader, writer) = stream::client(stream, Some(tls)).await?;
        Ok(Self::from_halves(reader, writer))
    }

    /// A client on the halves of a connection already made (plain or TLS).
    pub fn from_halves(reader: Reader, writer: Writer) -> Client {
        Client {
            inbox: Inbox {
                reader: FramedRead::new(reader, ClientCodec::default()),
            },
            writer,
        }
    }

    /// Connects, says HELLO and expects WELCOME.
    pub async fn source(addr: SocketAddr, kind: SourceKind, source_id: u32) -> Client {
        let mut client = Self::connect(addr).await;
        client
            .send_raw(&hello_bytes(VERSION, kind, source_id))
            .await;
        client.expect_welcome().await;
        client
    }

    /// Sends `payloads` as source `kind:id` to the listener at `addr`, with sequences from
    /// `first` and routine priority, and waits until the daemon has stored them all (acknowledged
    /// and closed the connection).
    pub async fn store(
        addr: SocketAddr,
        kind: SourceKind,
        id: u32,
        first: u64,
        payloads: &[Vec<u8>],
    ) {
        let mut bytes = BytesMut::new();
        for (sequence, payload) in (first..).zip(payloads) {
            encode_data(&mut bytes, Priority::Routine, sequence, payload);
        }
        let mut client = Client::source(addr, kind, id).await;
        client.send_raw(&bytes).await;
        client.finish_sending().await;
        client.read_to_close().await;
    }

    /// Separates the halves, to write from one task and read from another.
    pub fn split(self) -> (Inbox, Writer) {
        (self.inbox, self.writer)
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.writer
            .write_all(bytes)
            .await
            .expect("write to the daemon");
        // A no-op on plain TCP; TLS may hold the last record until flushed.
        self.writer.flush().await.expect("write to the daemon");
    }

    /// Sends DATA frames in one write.
    pub async fn send_frames(&mut self, frames: impl IntoIterator<Item = (Priority, u64)>) {
        let bytes = data_bytes(frames);
        self.send_raw(&bytes).await;
    }

    /// Sends routine frames with the given sequences in one write.
    pub async fn send_routine(&mut self, sequences: impl IntoIterator<Item = u64>) {
        self.send_frames(sequences.into_iter().map(|s| (Priority::Routine, s)))
            .await;
    }

    /// Shuts down the sending side (the source is done).
    pub async fn finish_sending(&mut self) {
        self.writer
            .shutdown()
            .await
            .expect("shut down the sending side");
    }

    pub async fn recv(&mut self) -> Option<io::Result<ServerMessage>> {
        self.inbox.recv().await
    }

    pub async fn recv_message(&mut self) -> ServerMessage {
        self.inbox.recv_message().await
    }

    pub async fn expect_welcome(&mut self) -> Option<u64> {
        self.inbox.expect_welcome().await
    }

    pub async fn expect_refused(&mut self) -> (RefuseReason, String) {
        self.inbox.expect_refused().await
    }

    pub async fn read_to_close_with(&mut self, on_ack: impl FnMut(u64)) -> Closed {
        self.inbox.read_to_close_with(on_ack).await
    }

    pub async fn read_to_close(&mut self) -> Closed {
        self.inbox.read_to_close().await
    }

    pub async fn expect_closed(&mut self) {
        self.inbox.expect_closed().await
    }
}

impl Inbox {
    /// The next message from the daemon: `None` at a clean end of stream, `Some(Err)` when the
    /// connection was reset or a message did not decode. Fails the test if nothing comes in time.
    pub async fn recv(&mut self) -> Option<io::Result<ServerMessage>> {
        tokio::time::timeout(PATIENCE, self.reader.next())
            .await
            .expect("the daemon answered in time")
    }

    /// The next message, which must exist and decode.
    pub async fn recv_message(&mut self) -> ServerMessage {
        self.recv()
            .await
            .expect("a message, not the end of the stream")
            .expect("a well-formed message")
    }

    /// Expects WELCOME; returns its `resume_after`.
    pub async fn expect_welcome(&mut self) -> Option<u64> {
        match self.recv_message().await {
            ServerMessage::Welcome {
                version,
                resume_after,
            } => {
                assert_eq!(version, VERSION);
                resume_after
            }
            other => panic!("expected WELCOME, got {other:?}"),
        }
    }

    /// Expects REFUSED and then the end of the connection; returns the reason and detail.
    pub async fn expect_refused(&mut self) -> (RefuseReason, String) {
        let refused = match self.recv_message().await {
            ServerMessage::Refused { reason, detail } => (reason, detail),
            other => panic!("expected REFUSED, got {other:?}"),
        };
        self.expect_closed().await;
        refused
    }

    /// Reads ACKs until CLOSE, checking that ACKs only move forward, then expects the end of the
    /// connection. `on_ack` sees every acknowledged sequence, the CLOSE's `final_ack` too.
    /// Catalogs are passed over.
    pub async fn read_to_close_with(&mut self, mut on_ack: impl FnMut(u64)) -> Closed {
        let mut acks: Vec<u64> = Vec::new();
        loop {
            match self.recv_message().await {
                ServerMessage::Ack { sequence } => {
                    if let Some(&last) = acks.last() {
                        assert!(sequence > last, "ACK {sequence} after ACK {last}");
                    }
                    on_ack(sequence);
                    acks.push(sequence);
                }
                ServerMessage::Close {
                    reason,
                    final_ack,
                    detail,
                } => {
                    if let Some(&last) = acks.last() {
                        assert!(
                            final_ack.is_some_and(|fin| fin >= last),
                            "final_ack {final_ack:?} below the earlier ACK {last}"
                        );
                    }
                    if let Some(fin) = final_ack {
                        on_ack(fin);
                    }
                    self.expect_closed().await;
                    return Closed {
                        acks,
                        reason,
                        final_ack,
                        detail,
                    };
                }
                ServerMessage::Catalog { .. } => {}
                other => panic!("expected ACK or CLOSE, got {other:?}"),
            }
        }
    }

    pub async fn read_to_close(&mut self) -> Closed {
        self.read_to_close_with(|_| ()).await
    }

    /// Expects the daemon to have closed the connection: end of stream, or a reset.
    pub async fn expect_closed(&mut self) {
        match self.recv().await {
            None => {}
            Some(Err(err)) if is_disconnect(&err) => {}
            Some(other) => panic!("expected the connection to be closed, got {other:?}"),
        }
    }
}

/// Errors that mean "the peer closed the connection".
pub fn is_disconnect(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::UnexpectedEof
    )
}

/// A subscriber that writes every event at `level` and above, as text, into the returned buffer.
pub fn log_capture(
    level: tracing::Level,
) -> (Arc<Mutex<Vec<u8>>>, impl tracing::Subscriber + Send + Sync) {
    let log = Arc::new(Mutex::new(Vec::<u8>::new()));
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(level)
        .with_writer({
            let log = Arc::clone(&log);
            move || LogWriter(Arc::clone(&log))
        })
        .finish();
    (log, subscriber)
}

/// Collects log output: `tracing_subscriber::fmt().with_writer(...)` of a [`LogWriter`] per write.
pub struct LogWriter(pub Arc<Mutex<Vec<u8>>>);

impl io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Certificates, made at test time.
// ---------------------------------------------------------------------------------------------

/// A certificate authority, and the files of what it signs, in a scratch directory.
pub struct Ca {
    name: &'static str,
    dir: PathBuf,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    pub fn new(name: &'static str, dir: &TempDir) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        let cert = params.self_signed(&key).unwrap();
        let ca = Ca {
            name,
            dir: dir.0.clone(),
            issuer: Issuer::new(params, key),
        };
        std::fs::write(ca.path("ca.pem"), cert.pem()).unwrap();
        ca
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(format!("{}-{file}", self.name))
    }

    /// Signs a certificate for `names` (DNS names, and 127.0.0.1 for a server), expired if asked;
    /// writes `FILE.pem` and `FILE.key` and returns their paths.
    pub fn sign(
        &self,
        file: &str,
        names: &[&str],
        server: bool,
        expired: bool,
    ) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        if server {
            params
                .subject_alt_names
                .push(SanType::IpAddress([127, 0, 0, 1].into()));
        }
        if expired {
            params.not_before = date_time_ymd(2020, 1, 1);
            params.not_after = date_time_ymd(2021, 1, 1);
        }
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let (cert_path, key_path) = (
            self.path(&format!("{file}.pem")),
            self.path(&format!("{file}.key")),
        );
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    }

    /// A client's TLS trusting this CA, with the certificate `client` (from [`Ca::sign`]).
    pub fn client(&self, client: Option<(PathBuf, PathBuf)>) -> ClientTls {
        let (cert, key) = client.unzip();
        TlsArgs {
            ca: Some(self.path("ca.pem")),
            cert,
            key,
            server_name: None,
        }
        .client()
        .unwrap()
        .unwrap()
    }
}

// ---------------------------------------------------------------------------------------------
// Scratch directories.
// ---------------------------------------------------------------------------------------------

/// A fresh directory under the system temp dir, unique per process and test thread, removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "aggregator-test-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Routine frame `sequence`, as `Client::send_frames` takes it.
pub fn routine_at(sequence: u64) -> (Priority, u64) {
    (Priority::Routine, sequence)
}

/// Emergency frame `sequence`, as `Client::send_frames` takes it.
pub fn emergency_at(sequence: u64) -> (Priority, u64) {
    (Priority::Emergency, sequence)
}

/// Frames of `sequences`, every `n`th an emergency.
pub fn every_nth_emergency(sequences: std::ops::Range<u64>, n: u64) -> Vec<(Priority, u64)> {
    sequences
        .map(|s| {
            if s % n == n - 1 {
                emergency_at(s)
            } else {
                routine_at(s)
            }
        })
        .collect()
}

/// A tmpfs mounted on a directory of its own, unmounted when dropped.
pub struct Tmpfs {
    pub dir: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (as `mount -o size=` takes it); fails the test where mounting is
    /// refused (not root, or no mount namespace rights).
    pub fn mount(name: &str, size: &str) -> Tmpfs {
        let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the mount point");
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .status()
            .is_ok_and(|status| status.success());
        if !mounted {
            let _ = std::fs::remove_dir(&dir);
            panic!(
                "cannot mount a tmpfs on {}: the test needs root",
                dir.display()
            );
        }
        Tmpfs { dir }
    }

    /// Grows (or shrinks) the file system: what an operator freeing space does.
    pub fn resize(&self, size: &str) {
        let status = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.dir)
            .status()
            .expect("run mount");
        assert!(status.success(), "remount {}: {status}", self.dir.display());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.dir).status();
        let _ = std::fs::remove_dir(&self.dir);
    }
}
