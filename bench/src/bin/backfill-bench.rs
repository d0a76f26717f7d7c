//! `backfill-bench`: a station's recording backfilled through a link's spool directory
//! (`docs/ground-segment.md`, "Backfill") beside the same packets arriving live, and live packets
//! while a backfill runs beside them. Results in `docs/bench/backfill.md`.
//!
//! ```text
//! cargo build --release --bins
//! target/release/backfill-bench --runs 3 --megabytes 1024
//! ```
//!
//! Every run starts the `aggregator` binary beside this one on an archive of its own (on disk:
//! a backfill asks the archive's files what the group holds) and times three things:
//! - **live**: the packets (1 KiB, 4 APIDs interleaved) sent into a `ccsds` link, from the first
//!   byte until the link counts the last stored (`/stats`' `links[].packets`, polled every 2 ms);
//! - **backfill**: the same packets as one recording in the link's spool, from the moment the
//!   daemon starts importing it (`/stats`' `backfill.importing`) until it is done (every packet
//!   durable);
//! - **live beside**: the live packets into one link while another link backfills a recording
//!   as large, both started together: the live rate while the backfill runs.
//!
//! Beside both live measures an emergency-only source of the ingest protocol sends a 64-byte
//! emergency frame every millisecond, and each one's ACK latency (from its write to the ACK
//! covering it) is taken: its p99 with a backfill running beside it, against without.

mod daemon_child;

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aggregator::protocol::ccsds::PrimaryHeader;
use aggregator::protocol::ingest::{self, ClientMessage, Hello, ServerMessage};
use aggregator::{Priority, SourceKind};
use bytes::{Bytes, BytesMut};
use clap::Parser;
use daemon_child::{free_port, median, BenchResult, Daemon};

/// A backfill's rate beside live ingest's, and live ingest beside a backfill.
#[derive(Debug, Parser)]
#[command(name = "backfill-bench")]
struct Args {
    /// Packet size in bytes, header included.
    #[arg(long, default_value_t = 1024)]
    size: usize,
    /// Megabytes of packets: the live stream, and the recording.
    #[arg(long, default_value_t = 256)]
    megabytes: usize,
    /// Runs of each measure, interleaved; the medians are printed.
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

const APIDS: u16 = 4;

fn main() -> ExitCode {
    let args = Args::parse();
    daemon_child::run("backfill-bench", |dir| bench(&args, dir))
}

fn bench(args: &Args, dir: &Path) -> BenchResult<()> {
    let wire = packets(args.size, args.megabytes);
    let n = (wire.len() / args.size) as u64;
    let (mut live, mut backfill, mut beside) = (Vec::new(), Vec::new(), Vec::new());
    let (mut alone_p99, mut beside_p99) = (Vec::new(), Vec::new());
    for run in 0..args.runs {
        let (rate, p99) = measure_live(dir, &wire, n)?;
        eprintln!("run {run}: live {rate:.0} packets/s, emergency ACK p99 {p99:.2} ms");
        live.push(rate);
        alone_p99.push(p99);
        let rate = measure_backfill(dir, &wire, n)?;
        eprintln!("run {run}: backfill {rate:.0} packets/s");
        backfill.push(rate);
        let (rate, p99) = measure_beside(dir, &wire, n)?;
        eprintln!(
            "run {run}: live beside a backfill {rate:.0} packets/s, emergency ACK p99 {p99:.2} ms"
        );
        beside.push(rate);
        beside_p99.push(p99);
    }
    let (live, backfill, beside) = (
        median(&mut live),
        median(&mut backfill),
        median(&mut beside),
    );
    let (alone_p99, beside_p99) = (median(&mut alone_p99), median(&mut beside_p99));
    let mb = |rate: f64| rate * args.size as f64 / 1e6;
    println!(
        "| measure | packets/s (median of {}) | MB/s | ratio | emergency ACK p99 |",
        args.runs
    );
    println!("|---|---|---|---|---|");
    println!(
        "| live | {live:.0} | {:.0} | 1.00 | {alone_p99:.2} ms |",
        mb(live)
    );
    println!(
        "| backfill alone | {backfill:.0} | {:.0} | {:.2} x live | |",
        mb(backfill),
        backfill / live
    );
    println!(
        "| live beside a backfill | {beside:.0} | {:.0} | {:.2} x live | {beside_p99:.2} ms ({:.2} x) |",
        mb(beside),
        beside / live,
        beside_p99 / alone_p99
    );
    Ok(())
}

/// `megabytes` of `size`-byte packets back to back, as a `ccsds` link and its recording read
/// them, 4 APIDs interleaved.
fn packets(size: usize, megabytes: usize) -> Vec<u8> {
    let count = (megabytes << 20) / size;
    let mut wire = Vec::with_capacity(count * size);
    for i in 0..count {
        let apid = (i % usize::from(APIDS)) as u16;
        let sequence = ((i / usize::from(APIDS)) % 16_384) as u16;
        let header = PrimaryHeader::telemetry(apid, sequence, size - 6).encode();
        wire.extend_from_slice(&header);
        wire.extend(std::iter::repeat_n((i % 251) as u8, size - header.len()));
    }
    wire
}

/// A `ccsds` link named `name` on `port`, its APIDs' sources from `base`, with `extra`.
fn link(name: &str, port: u16, base: u32, extra: &str) -> String {
    format!(
        "[[links]]\nname = \"{name}\"\ntransport = \"tcp-listen\"\naddress = \"127.0.0.1:{port}\"\n\
         framing = \"ccsds\"\napid_base = {base}\napids = [0, 3]\n{extra}"
    )
}

/// A daemon on an archive of its own under `dir`, with `links`; the archive's directory, to
/// remove once it stopped, and the uplink listener's port.
fn daemon(dir: &Path, links: &str) -> BenchResult<(Daemon, PathBuf, u16)> {
    let (archive, uplink) = (dir.join(format!("archive-{}", free_port()?)), free_port()?);
    let rest = format!("[archive]\ndir = \"{}\"\n{links}", archive.display());
    Ok((Daemon::start(dir, uplink, &rest)?, archive, uplink))
}

/// Stops `daemon` and removes its archive and `spool`.
fn stop(daemon: Daemon, archive: &Path, spool: Option<&Path>) -> BenchResult<()> {
    let stopped = daemon.stop();
    let _ = std::fs::remove_dir_all(archive);
    if let Some(spool) = spool {
        let _ = std::fs::remove_dir_all(spool);
    }
    stopped
}

/// The live rate, and the emergency probe's ACK p99 in ms beside it.
fn measure_live(dir: &Path, wire: &[u8], n: u64) -> BenchResult<(f64, f64)> {
    let port = free_port()?;
    let (daemon, archive, uplink) = daemon(dir, &link("live", port, 100, ""))?;
    let probe = Probe::start(uplink)?;
    let started = Instant::now();
    let sender = send(port, wire.to_vec());
    let seconds = until(&daemon, |json| link_packets(json, "live") >= n, started)?;
    let p99 = probe.p99()?;
    sender.join().map_err(|_| "the sender panicked")??;
    stop(daemon, &archive, None)?;
    Ok((n as f64 / seconds, p99))
}

fn measure_backfill(dir: &Path, wire: &[u8], n: u64) -> BenchResult<f64> {
    let spool = dir.join(format!("spool-{}", free_port()?));
    std::fs::create_dir_all(&spool).map_err(|err| err.to_string())?;
    let extra = format!("spool_dir = \"{}\"\n", spool.display());
    let (daemon, archive, _) = daemon(dir, &link("station", free_port()?, 100, &extra))?;
    upload(&spool, wire)?;
    let begun =
        |json: &serde_json::Value| backfill(json, "importing") + backfill(json, "files_done") >= 1;
    until(&daemon, begun, Instant::now())?;
    let started = Instant::now();
    if backfill(&daemon.json()?, "files_done") >= 1 {
        return Err("the backfill ended before it was seen begin: make it larger".into());
    }
    let seconds = until(&daemon, |json| backfill(json, "files_done") >= 1, started)?;
    let stored = backfill(&daemon.json()?, "stored");
    stop(daemon, &archive, Some(&spool))?;
    if stored != n {
        return Err(format!("the backfill stored {stored} of {n} packets"));
    }
    Ok(n as f64 / seconds)
}

/// The live rate beside a backfill, and the emergency probe's ACK p99 in ms.
fn measure_beside(dir: &Path, wire: &[u8], n: u64) -> BenchResult<(f64, f64)> {
    let spool = dir.join(format!("spool-{}", free_port()?));
    std::fs::create_dir_all(&spool).map_err(|err| err.to_string())?;
    let (live_port, station_port) = (free_port()?, free_port()?);
    let extra = format!("spool_dir = \"{}\"\n", spool.display());
    let links = link("live", live_port, 100, "") + &link("station", station_port, 5000, &extra);
    let (daemon, archive, uplink) = daemon(dir, &links)?;
    upload(&spool, wire)?;
    until(
        &daemon,
        |json| backfill(json, "importing") >= 1,
        Instant::now(),
    )?;
    let probe = Probe::start(uplink)?;
    let started = Instant::now();
    let sender = send(live_port, wire.to_vec());
    let live = |json: &serde_json::Value| link_packets(json, "live") >= n;
    let seconds = until(&daemon, live, started)?;
    let p99 = probe.p99()?;
    let still = backfill(&daemon.json()?, "importing") >= 1;
    sender.join().map_err(|_| "the sender panicked")??;
    stop(daemon, &archive, Some(&spool))?;
    if !still {
        return Err("the backfill ended before the live packets: make it larger".into());
    }
    Ok((n as f64 / seconds, p99))
}

/// Writes the recording into `spool` as a station's upload does: a `.part` file, renamed.
fn upload(spool: &Path, wire: &[u8]) -> BenchResult<()> {
    let part = spool.join("pass.ccsds.part");
    std::fs::write(&part, wire).map_err(|err| err.to_string())?;
    std::fs::rename(&part, spool.join("pass.ccsds")).map_err(|err| err.to_string())
}

fn send(port: u16, wire: Vec<u8>) -> std::thread::JoinHandle<BenchResult<()>> {
    std::thread::spawn(move || {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|err| err.to_string())?;
        stream.write_all(&wire).map_err(|err| err.to_string())
    })
}

/// Polls `/stats` every 2 ms until `done` says so; the seconds since `started`.
fn until(
    daemon: &Daemon,
    done: impl Fn(&serde_json::Value) -> bool,
    started: Instant,
) -> BenchResult<f64> {
    let limit = Duration::from_secs(600);
    loop {
        let json = daemon.json()?;
        if done(&json) {
            return Ok(started.elapsed().as_secs_f64());
        }
        if started.elapsed() > limit {
            return Err("no end in 600 s".into());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The links' `backfill` counter `name`, summed (one link has a spool).
fn backfill(json: &serde_json::Value, name: &str) -> u64 {
    let links = json["links"].as_array().cloned().unwrap_or_default();
    links
        .iter()
        .filter_map(|l| l["backfill"][name].as_u64())
        .sum()
}

/// The packets link `name` stored.
fn link_packets(json: &serde_json::Value, name: &str) -> u64 {
    let links = json["links"].as_array().cloned().unwrap_or_default();
    let link = links.iter().find(|l| l["name"] == name);
    link.and_then(|l| l["packets"].as_u64()).unwrap_or(0)
}

/// An emergency-only source of the ingest protocol: a 64-byte emergency frame every millisecond,
/// each one's write time kept until the ACK that covers it.
struct Probe {
    stop: Arc<AtomicBool>,
    sender: std::thread::JoinHandle<BenchResult<()>>,
    reader: std::thread::JoinHandle<BenchResult<Vec<f64>>>,
}

/// The probe's source id, far from anything else.
const PROBE_SOURCE: u32 = 0x7E00_0001;

impl Probe {
    fn start(uplink: u16) -> BenchResult<Probe> {
        let mut stream =
            TcpStream::connect(("127.0.0.1", uplink)).map_err(|err| err.to_string())?;
        stream.set_nodelay(true).map_err(|err| err.to_string())?;
        let mut hello = BytesMut::new();
        let kind = SourceKind::LiveUplink;
        let version = ingest::VERSION;
        ClientMessage::Hello(Hello {
            version,
            kind,
            source_id: PROBE_SOURCE,
        })
        .encode(&mut hello);
        stream.write_all(&hello).map_err(|err| err.to_string())?;
        let replies = stream.try_clone().map_err(|err| err.to_string())?;
        let sent: Arc<Mutex<VecDeque<(u64, Instant)>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let sent = Arc::clone(&sent);
            std::thread::spawn(move || read_acks(replies, &sent))
        };
        let sender = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let (payload, mut frame) = ([0x5Au8; 64], BytesMut::new());
                for sequence in 0u64.. {
                    if stop.load(Relaxed) {
                        return stream
                            .shutdown(std::net::Shutdown::Write)
                            .map_err(|e| e.to_string());
                    }
                    frame.clear();
                    ingest::encode_data(&mut frame, Priority::Emergency, sequence, &payload);
                    stream.write_all(&frame).map_err(|err| err.to_string())?;
                    lock(&sent).push_back((sequence, Instant::now()));
                    std::thread::sleep(Duration::from_millis(1));
                }
                Ok(())
            })
        };
        Ok(Probe {
            stop,
            sender,
            reader,
        })
    }

    /// Stops the probe; the p99 of its ACK latencies, in ms.
    fn p99(self) -> BenchResult<f64> {
        self.stop.store(true, Relaxed);
        self.sender.join().map_err(|_| "the probe panicked")??;
        let mut latencies = self.reader.join().map_err(|_| "the probe panicked")??;
        if latencies.is_empty() {
            return Err("the probe's frames got no ACK".into());
        }
        latencies.sort_by(f64::total_cmp);
        Ok(latencies[(latencies.len() * 99 / 100).min(latencies.len() - 1)])
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Reads the daemon's messages until it closes; each frame's ACK latency in ms.
fn read_acks(
    mut replies: TcpStream,
    sent: &Mutex<VecDeque<(u64, Instant)>>,
) -> BenchResult<Vec<f64>> {
    let mut latencies = Vec::new();
    loop {
        let mut length = [0u8; 4];
        if replies.read_exact(&mut length).is_err() {
            return Ok(latencies);
        }
        let mut body = vec![0; u32::from_be_bytes(length) as usize];
        replies
            .read_exact(&mut body)
            .map_err(|err| err.to_string())?;
        let now = Instant::now();
        match ServerMessage::decode(Bytes::from(body)).map_err(|err| err.to_string())? {
            ServerMessage::Ack { sequence } => {
                let mut sent = lock(sent);
                while sent.front().is_some_and(|&(s, _)| s <= sequence) {
                    if let Some((_, at)) = sent.pop_front() {
                        latencies.push((now - at).as_secs_f64() * 1e3);
                    }
                }
            }
            ServerMessage::Close { .. } => return Ok(latencies),
            ServerMessage::Refused { detail, .. } => {
                return Err(format!("the probe was refused: {detail}"))
            }
            _ => {}
        }
    }
}
