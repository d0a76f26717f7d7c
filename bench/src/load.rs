//! The load client: N uplink connections writing pre-encoded DATA frames as fast as the server takes
//! them, and one probe connection sending one timestamped emergency frame per millisecond.
//!
//! The frames are encoded once, as a template of one chunk (or, with random payloads, of enough
//! chunks that a message of the NATS sink holds no payload twice); an uplink writes it a chunk at a
//! time, over and over, with only the sequence (which must increase, or the daemon drops the
//! frames as duplicates) and the priority byte (1 frame in [`EMERGENCY_EVERY`] is an emergency)
//! of each frame rewritten. It
//! stops when its stdin closes (the parent is done with it) or after `limit`. For the throttle run
//! it also reads the daemon's ACKs and answers the parent's `START` and `END` with what they
//! covered (`acks`), and runs the emergency-only sources beside the uplinks (`emergency`).

use std::cell::RefCell;
use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use aggregator::protocol::ingest::{encode_data, DATA_HEADER, LENGTH_PREFIX};
use aggregator::Priority;
use bytes::BytesMut;
use tokio::io::AsyncReadExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc::{self, UnboundedReceiver};
use tokio::sync::{watch, Semaphore};

use crate::acks::{self, Acks, Unacked};
use crate::control::{
    self, emit, ChildMsg, ClientAcks, Fill, EMERGENCY_EVERY, PROBE_PAYLOAD, PROBE_SOURCE_ID,
};
use crate::{emergency, uplink};

/// Bytes of the chunk the uplinks write, however many connections: smaller chunks (3.3 KiB at
/// 10,000 connections: 43 frames of 64 B per system call) make the client, not the server, the
/// bound at scale.
const CHUNK_BYTES: usize = 64 * 1024;
/// Bytes of frames of [`Fill::Random`] (and [`Fill::Telemetry`]) an uplink writes before it repeats them: four of the NATS
/// sink's largest messages (256 KiB of records), so that no message holds a payload twice.
const RANDOM_BYTES: usize = 1024 * 1024;
/// Kernel send-buffer memory for all uplinks together. Here the whole fleet's sockets share one
/// kernel with the server's, whose TCP memory limit (`net.ipv4.tcp_mem`, about 2.2 GiB on the
/// reference machine) 10,000 autotuned send buffers alone would nearly exhaust: the kernel then
/// drops segments and the senders stall for retransmission timeouts. In the field each satellite's
/// buffer is in its own machine. With few connections the kernel's autotuning is left alone.
const SEND_BUFFER_BUDGET: usize = 256 * 1024 * 1024;
/// The largest send buffer the kernel's autotuning gives (`net.ipv4.tcp_wmem`'s default maximum).
const AUTOTUNED_SEND_BUFFER: usize = 4 * 1024 * 1024;
/// Connections being opened at once (the listen backlog is 1024).
const CONNECTING: usize = 256;

/// The chunks of `chunk_len` bytes in the template of `fill`ed frames an uplink goes through
/// before it writes the first again.
fn template_chunks(fill: Fill, chunk_len: usize) -> usize {
    match fill {
        Fill::Constant => 1,
        Fill::Random | Fill::Telemetry => RANDOM_BYTES.div_ceil(chunk_len.max(1)),
    }
}

/// Runs a client role's `work` on a runtime of its own, until it ends, the parent closes our stdin
/// (it is done with us), or `limit` (a safety net). `work` gets the lines of stdin: the parent's
/// commands.
pub fn run<W: Future<Output = ()>>(
    limit: Duration,
    work: impl FnOnce(UnboundedReceiver<String>) -> W,
) -> ExitCode {
    control::raise_nofile_limit();
    let commands = control::stdin_lines(|| std::process::exit(0));
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        eprintln!("aggregator-bench client: time limit of {limit:?} reached; exiting");
        std::process::exit(0);
    });
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("aggregator-bench client: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(work(commands));
    ExitCode::SUCCESS
}

/// The load: `connections` saturating uplinks of `fill`ed frames, the probe and `emergency_only`
/// emergency-only sources, until the process is told to exit. With `ack_tally`, every uplink
/// reads its ACKs, and `START` and `END` among the `commands` are answered with what they
/// covered, and what the emergency-only sources' ACKs covered apart; otherwise what the server
/// sends the uplinks is discarded unread.
pub async fn load(
    addr: SocketAddr,
    connections: usize,
    payload: usize,
    fill: Fill,
    ack_tally: bool,
    emergency_only: usize,
    commands: UnboundedReceiver<String>,
) {
    let frame_len = LENGTH_PREFIX + DATA_HEADER + payload;
    let frames_per_chunk = (CHUNK_BYTES / frame_len).max(1) as u64;
    let chunks = template_chunks(fill, frames_per_chunk as usize * frame_len) as u64;
    let template = frames(frames_per_chunk * chunks, payload, EMERGENCY_EVERY, fill);

    let send_buffer = (connections * AUTOTUNED_SEND_BUFFER > SEND_BUFFER_BUDGET)
        .then(|| (SEND_BUFFER_BUDGET / connections.max(1)) as u32);
    let acks = Arc::new(Acks::new());
    let gate = Arc::new(Semaphore::new(CONNECTING));
    // Uplinks stream only once every connection is open: a server busy reading saturating streams
    // accepts slowly, and connections beyond its listen backlog would be lost.
    let (go_tx, go) = watch::channel(false);
    let (tx, mut rx) = mpsc::unbounded_channel::<Result<(), String>>();
    let chunk = Chunk {
        frame_len,
        frames: frames_per_chunk,
    };
    for index in 0..connections {
        let source_id = index as u32 + 1;
        let unacked = ack_tally
            .then(|| Arc::new(Unacked::new(Arc::clone(&acks), source_id, frames_per_chunk)));
        let uplink = Uplink {
            addr,
            source_id,
            send_buffer,
            chunk,
            template: Arc::clone(&template),
            unacked,
        };
        tokio::spawn(uplink.run(Arc::clone(&gate), tx.clone(), go.clone()));
    }
    let probe_tx = tx.clone();
    std::thread::spawn(move || match connect_probe(addr) {
        Ok(stream) => {
            let _ = probe_tx.send(Ok(()));
            probe(stream);
        }
        Err(err) => {
            let _ = probe_tx.send(Err(format!("probe: {err}")));
        }
    });
    let emergency_acks = Arc::new(Acks::new());
    if emergency_only > 0 {
        let acks = Arc::clone(&emergency_acks);
        emergency::spawn(addr, emergency_only, acks, tx.clone(), go.clone());
    }
    drop(tx);

    let (mut sources, mut failed, mut first_error) = (0u64, 0u64, None);
    for _ in 0..=connections + emergency_only {
        match rx.recv().await {
            Some(Ok(())) => sources += 1,
            Some(Err(err)) => {
                failed += 1;
                first_error.get_or_insert(err);
            }
            None => break,
        }
    }
    let _ = go_tx.send(true);
    emit(&ChildMsg::Connected {
        sources,
        failed,
        first_error,
    });
    // The load runs until the process is told to exit: the end of stdin, or the time limit.
    let emergency_acks = (emergency_only > 0).then_some(&emergency_acks);
    answer(commands, &acks, emergency_acks).await;
}

/// One saturating uplink of the load.
struct Uplink {
    addr: SocketAddr,
    source_id: u32,
    send_buffer: Option<u32>,
    chunk: Chunk,
    template: Arc<[u8]>,
    /// With the ACK tally: its frames sent and not yet acknowledged.
    unacked: Option<Arc<Unacked>>,
}

impl Uplink {
    /// Connects once `gate` lets it, says so on `tx`, and streams once `go` is set.
    async fn run(
        self,
        gate: Arc<Semaphore>,
        tx: mpsc::UnboundedSender<Result<(), String>>,
        mut go: watch::Receiver<bool>,
    ) {
        let Ok(permit) = gate.acquire_owned().await else {
            return;
        };
        let stream = match uplink::connect(self.addr, self.source_id, self.send_buffer).await {
            Ok(stream) => stream,
            Err(err) => {
                let _ = tx.send(Err(err));
                return;
            }
        };
        drop(permit);
        let _ = tx.send(Ok(()));
        let (reader, writer) = stream.into_split();
        match &self.unacked {
            Some(unacked) => tokio::spawn(acks::read_acks(reader, Arc::clone(unacked))),
            None => tokio::spawn(discard(reader)),
        };
        if go.wait_for(|go| *go).await.is_ok() {
            uplink(writer, &self.template, self.chunk, self.unacked.as_deref()).await;
        }
    }
}

/// Answers `START` and `END` among `commands` with what the uplinks' ACKs (`acks`) and the
/// emergency-only sources' covered, until the commands end.
async fn answer(
    mut commands: UnboundedReceiver<String>,
    acks: &Acks,
    emergency_acks: Option<&Arc<Acks>>,
) {
    while let Some(command) = commands.recv().await {
        match command.trim() {
            "START" => emit(&ChildMsg::Acks(Box::new(ClientAcks {
                uplinks: acks.start(),
                emergency_only: emergency_acks.map(|acks| acks.start()),
                through: Vec::new(),
            }))),
            "END" => emit(&ChildMsg::Acks(Box::new(ClientAcks {
                uplinks: acks.end(),
                emergency_only: emergency_acks.map(|acks| acks.end()),
                through: (acks.through().into_iter())
                    .chain(emergency_acks.into_iter().flat_map(|acks| acks.through()))
                    .collect(),
            }))),
            other => eprintln!("aggregator-bench client: unknown command {other:?}"),
        }
    }
}

/// Reads WELCOME, ACKs and CLOSE so the server never blocks writing them.
async fn discard(mut reader: OwnedReadHalf) {
    let mut buf = vec![0u8; 4096];
    while let Ok(n) = reader.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
}

/// The frames an uplink writes at a time.
#[derive(Debug, Clone, Copy)]
struct Chunk {
    frame_len: usize,
    frames: u64,
}

impl Chunk {
    fn len(self) -> usize {
        self.frames as usize * self.frame_len
    }
}

/// Writes the template's chunks over and over, renumbering their frames each time, until the
/// server goes away; each chunk written goes into `unacked`, if given.
///
/// An uplink keeps only where it is in its stream (the first sequence of the template's lap being
/// written, and how many of its bytes are in the socket); the bytes come from [`RENUMBERED`],
/// renumbered for it a chunk at a time when the socket takes more. With a template of its own per
/// connection (625 MiB of them at 10,000 connections) every write copied bytes the cache no
/// longer held, and the client, not the server, set the pace at scale.
async fn uplink(
    writer: OwnedWriteHalf,
    template: &Arc<[u8]>,
    chunk: Chunk,
    unacked: Option<&Unacked>,
) {
    let frames = (template.len() / chunk.frame_len) as u64;
    let (mut first, mut offset) = (1u64, 0usize);
    loop {
        if writer.writable().await.is_err() {
            return;
        }
        // The end of the chunk that holds byte `offset`.
        let end = (offset / chunk.len() + 1) * chunk.len();
        let written = RENUMBERED.with_borrow_mut(|renumbered| {
            let bytes = renumbered.renumbered(template, chunk.frame_len, first, offset..end);
            writer.try_write(&bytes[offset..end])
        });
        match written {
            Ok(n) => offset += n,
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => return,
        }
        if offset == end {
            if let Some(unacked) = unacked {
                unacked.sent(first + (end / chunk.frame_len) as u64 - 1);
            }
        }
        if offset == template.len() {
            first += frames;
            offset = 0;
        }
    }
}

thread_local! {
    /// This runtime thread's copy of the template, renumbered for whichever uplink writes next.
    static RENUMBERED: RefCell<Renumbered> = const { RefCell::new(Renumbered::empty()) };
}

/// A copy of the template whose frames' sequences and priorities are rewritten for each write.
struct Renumbered {
    /// The template copied (the only one of a load client; compared by address).
    template: Option<Arc<[u8]>>,
    copy: Vec<u8>,
}

impl Renumbered {
    /// No copy yet: the first uplink to write makes it.
    const fn empty() -> Renumbered {
        Renumbered {
            template: None,
            copy: Vec::new(),
        }
    }

    /// The template whose first frame is `first`, with the frames from the one holding the
    /// range's start to the range's end (a frame boundary) numbered: those before it are in the
    /// socket already.
    fn renumbered(
        &mut self,
        template: &Arc<[u8]>,
        frame_len: usize,
        first: u64,
        bytes: std::ops::Range<usize>,
    ) -> &[u8] {
        if !self
            .template
            .as_ref()
            .is_some_and(|t| Arc::ptr_eq(t, template))
        {
            self.template = Some(Arc::clone(template));
            self.copy = template.to_vec();
        }
        let from = bytes.start / frame_len;
        let frames = self.copy[from * frame_len..bytes.end].chunks_exact_mut(frame_len);
        for (sequence, frame) in (first + from as u64..).zip(frames) {
            frame[LENGTH_PREFIX + 1] = u8::from(is_emergency(sequence, EMERGENCY_EVERY));
            frame[LENGTH_PREFIX + 2..LENGTH_PREFIX + DATA_HEADER]
                .copy_from_slice(&sequence.to_be_bytes());
        }
        &self.copy
    }
}

/// Whether frame `sequence` of a stream with 1 emergency in `every` frames is an emergency.
fn is_emergency(sequence: u64, every: u64) -> bool {
    sequence % every == every / 2
}

/// DATA frames 1..=`count` of `payload` bytes each, `fill`ed, encoded back to back, 1 in `every`
/// of them an emergency.
pub fn frames(count: u64, payload: usize, every: u64, fill: Fill) -> Arc<[u8]> {
    let mut out = BytesMut::with_capacity(count as usize * (LENGTH_PREFIX + DATA_HEADER + payload));
    for sequence in 1..=count {
        let priority = match is_emergency(sequence, every) {
            true => Priority::Emergency,
            false => Priority::Routine,
        };
        encode_data(&mut out, priority, sequence, &fill.bytes(payload, sequence));
    }
    Arc::from(&out[..])
}

/// The probe's connection: a blocking socket of its own thread, HELLO sent, and a thread that
/// discards what the server sends.
fn connect_probe(addr: SocketAddr) -> std::io::Result<std::net::TcpStream> {
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    let mut reader = stream.try_clone()?;
    std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
    stream.write_all(&uplink::hello(PROBE_SOURCE_ID))?;
    Ok(stream)
}

/// One emergency frame per millisecond, its payload starting with its send time. The probe has a
/// thread of its own, apart from the runtime that drives the uplinks: a thread waking from sleep
/// is scheduled at once, so the time it stamps is when the frame goes out, not when a busy
/// worker got round to it.
fn probe(mut stream: std::net::TcpStream) {
    let mut payload = [0u8; PROBE_PAYLOAD];
    let mut out = BytesMut::with_capacity(LENGTH_PREFIX + DATA_HEADER + PROBE_PAYLOAD);
    let mut next = std::time::Instant::now();
    for sequence in 1u64.. {
        next += Duration::from_millis(1);
        let now = std::time::Instant::now();
        match next.checked_duration_since(now) {
            Some(wait) => std::thread::sleep(wait),
            None => next = now,
        }
        payload[..8].copy_from_slice(&control::unix_ns().to_be_bytes());
        out.clear();
        encode_data(&mut out, Priority::Emergency, sequence, &payload);
        if stream.write_all(&out).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sequences of the frames of `chunk`.
    fn sequences(chunk: &[u8], frame_len: usize) -> Vec<u64> {
        chunk
            .chunks_exact(frame_len)
            .map(|frame| {
                let bytes = &frame[LENGTH_PREFIX + 2..LENGTH_PREFIX + DATA_HEADER];
                u64::from_be_bytes(bytes.try_into().expect("8 bytes"))
            })
            .collect()
    }

    #[test]
    fn a_chunk_taken_up_mid_frame_goes_on_as_the_whole_chunk_would() {
        let (payload, count) = (4, 10u64);
        let frame_len = LENGTH_PREFIX + DATA_HEADER + payload;
        let template = frames(count, payload, EMERGENCY_EVERY, Fill::Constant);
        let all = 0..template.len();
        let mut renumbered = Renumbered::empty();
        let first = renumbered.renumbered(&template, frame_len, 101, all.clone());
        let first = first.to_vec();
        assert_eq!(sequences(&first, frame_len), (101..111).collect::<Vec<_>>());
        let whole = Renumbered::empty()
            .renumbered(&template, frame_len, 111, all.clone())
            .to_vec();
        // The socket took 3 frames and 5 bytes of the next chunk: the rest is as the whole chunk.
        let offset = 3 * frame_len + 5;
        let rest = renumbered.renumbered(&template, frame_len, 111, offset..all.end);
        assert_eq!(rest[offset..], whole[offset..]);
        for (frame, sequence) in whole.chunks_exact(frame_len).zip(111u64..) {
            let emergency = is_emergency(sequence, EMERGENCY_EVERY);
            assert_eq!(
                frame[LENGTH_PREFIX + 1],
                u8::from(emergency),
                "frame {sequence}"
            );
        }
    }

    #[test]
    fn a_chunk_of_a_longer_template_is_numbered_alone() {
        let (payload, per_chunk) = (4, 10u64);
        let frame_len = LENGTH_PREFIX + DATA_HEADER + payload;
        let template = frames(3 * per_chunk, payload, EMERGENCY_EVERY, Fill::Random);
        let chunk = per_chunk as usize * frame_len;
        let mut renumbered = Renumbered::empty();
        let bytes = renumbered.renumbered(&template, frame_len, 101, chunk..2 * chunk);
        let numbers = sequences(bytes, frame_len);
        assert_eq!(numbers[10..20], (111..121).collect::<Vec<_>>());
        // The chunks around it keep the template's numbers, and every payload its bytes.
        assert_eq!(numbers[..10], (1..11).collect::<Vec<_>>());
        assert_eq!(numbers[20..], (21..31).collect::<Vec<_>>());
        let payloads = |chunk: &[u8]| -> Vec<Vec<u8>> {
            let frames = chunk.chunks_exact(frame_len);
            frames
                .map(|f| f[LENGTH_PREFIX + DATA_HEADER..].to_vec())
                .collect()
        };
        assert_eq!(payloads(bytes), payloads(&template));
    }

    #[test]
    fn random_payloads_are_all_unlike_and_constant_ones_alike() {
        let (payload, count) = (64, 2_000u64);
        let frame_len = LENGTH_PREFIX + DATA_HEADER + payload;
        let unlike = |fill| {
            let template = frames(count, payload, EMERGENCY_EVERY, fill);
            let frames = template.chunks_exact(frame_len);
            let payloads = frames.map(|f| f[LENGTH_PREFIX + DATA_HEADER..].to_vec());
            payloads.collect::<std::collections::HashSet<_>>().len()
        };
        assert_eq!(unlike(Fill::Random), count as usize);
        assert_eq!(unlike(Fill::Telemetry), count as usize);
        assert_eq!(unlike(Fill::Constant), 1);
        // A telemetry-like payload's first 8 bytes of every 16 are its pattern's.
        let bytes = Fill::Telemetry.bytes(64, 7);
        let fixed = (bytes.iter().enumerate()).filter(|(i, _)| i % 16 < 8);
        assert!(fixed.clone().all(|(i, b)| *b == control::pattern(i)));
        // Nor is a random payload one byte over and over.
        let bytes = Fill::Random.bytes(1024, 7);
        let distinct = bytes.iter().collect::<std::collections::HashSet<_>>().len();
        assert!(distinct > 200, "{distinct} distinct bytes in 1 KiB");
    }

    #[test]
    fn a_random_template_is_a_mebibyte_of_whole_chunks() {
        let chunk_len = 1000;
        let random = template_chunks(Fill::Random, chunk_len);
        assert!(random * chunk_len >= RANDOM_BYTES, "{random}");
        assert!((random - 1) * chunk_len < RANDOM_BYTES, "{random}");
        assert_eq!(template_chunks(Fill::Constant, chunk_len), 1);
    }
}
