//! `links-bench`: the ground-segment links' throughput (`docs/ground-segment.md`), per link type,
//! beside the floor for the same bytes and beside the ingest protocol carrying the same packets as
//! payloads, and the cost of merging two redundant stations. Results in `BENCHMARKS.md`.
//!
//! ```text
//! cargo build --release --bins
//! target/release/links-bench --runs 3
//! ```
//!
//! Every variant sends the same packets (4 APIDs interleaved) over loopback as fast as the
//! receiver takes them, and is timed from its first byte until the daemon counts the last packet
//! archived (`/stats`, polled every 2 ms). The daemon is the `aggregator` binary beside this one
//! with `archive.kind = "count"`: what is measured is the way in, not the disk. The floor is a
//! reader in this process that discards the same byte stream. `merge` is two `ccsds` links of one
//! group each sent every packet at once: each packet is stored once, and its rate counts unique
//! packets. `udp` is a sender at full speed that does not wait for anyone: its rate counts the
//! packets kept, and the share kept is printed beside it. `tm-frames` lays the packets into
//! 1115-byte TM transfer frames (each behind the marker, with a FECF) and `kiss-ax25` wraps each
//! in an AX.25 UI frame: beside `ccsds` and `kiss`, what the frame layer and AX.25 cost.

mod daemon_child;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use aggregator::protocol::ccsds::{self, Framing, LengthField, PrimaryHeader};
use aggregator::protocol::ingest::{self, ClientMessage, Hello};
use aggregator::protocol::transfer_frames::{
    TransferFrameFormat, TransferFrameKind, TransferFrameWriter,
};
use aggregator::protocol::{ax25, kiss};
use aggregator::{Priority, SourceKind};
use bytes::BytesMut;
use clap::Parser;
use daemon_child::{free_port, median, BenchResult, Daemon};

/// The ground-segment links' throughput beside the floor and the ingest protocol.
#[derive(Debug, Parser)]
#[command(name = "links-bench")]
struct Args {
    /// Packet sizes in bytes, header included.
    #[arg(long, value_delimiter = ',', default_value = "64,1024")]
    sizes: Vec<usize>,
    /// Megabytes of packets each run sends.
    #[arg(long, default_value_t = 64)]
    megabytes: usize,
    /// The variants to run (floor and ingest always run: the ratios need them).
    #[arg(long, value_delimiter = ',', default_values_t = VARIANTS.map(String::from))]
    variants: Vec<String>,
    /// Runs of each variant, interleaved; the medians are printed.
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

const VARIANTS: [&str; 10] = [
    "floor",
    "ingest",
    "ccsds",
    "ccsds-asm",
    "length-prefix",
    "kiss",
    "udp",
    "merge",
    "tm-frames",
    "kiss-ax25",
];

/// The transfer frames of the `tm-frames` variant: 1115 bytes, as the issue that asked for them
/// measured, with a FECF, behind the marker.
const TM_FRAMES: TransferFrameFormat = TransferFrameFormat {
    kind: TransferFrameKind::Tm,
    length: 1115,
    spacecraft_id: 42,
    randomized: false,
    fecf: true,
    ocf: false,
    header_error_control: false,
    insert_zone: 0,
};

const APIDS: u16 = 4;

fn main() -> ExitCode {
    let args = Args::parse();
    daemon_child::run("links-bench", |dir| bench(&args, dir))
}

fn bench(args: &Args, dir: &Path) -> BenchResult<()> {
    println!(
        "| size | variant | packets/s (median of {}) | / floor | / ingest | kept |",
        args.runs
    );
    println!("|---|---|---|---|---|---|");
    for &size in &args.sizes {
        let packets = packets(size, args.megabytes);
        let mut rates = vec![Vec::new(); VARIANTS.len()];
        let mut kept = vec![Vec::new(); VARIANTS.len()];
        for run in 0..args.runs {
            for (i, variant) in VARIANTS.iter().enumerate() {
                if i > 1 && !args.variants.iter().any(|v| v == variant) {
                    continue;
                }
                let (rate, share) = measure_retried(variant, &packets, dir)?;
                eprintln!("run {run}: {size} B {variant}: {rate:.0} packets/s, kept {share:.3}");
                rates[i].push(rate);
                kept[i].push(share);
            }
        }
        let medians: Vec<f64> = rates
            .iter_mut()
            .map(|r| if r.is_empty() { 0.0 } else { median(r) })
            .collect();
        for (i, variant) in VARIANTS.iter().enumerate() {
            if kept[i].is_empty() {
                continue;
            }
            println!(
                "| {size} B | {variant} | {:.0} | {:.2} | {:.2} | {:.3} |",
                medians[i],
                medians[i] / medians[0],
                medians[i] / medians[1],
                median(&mut kept[i])
            );
        }
    }
    Ok(())
}

/// Packets of `size` bytes, `megabytes` of them, APIDs interleaved.
fn packets(size: usize, megabytes: usize) -> Vec<Vec<u8>> {
    let count = (megabytes << 20) / size;
    (0..count)
        .map(|i| {
            let apid = (i % usize::from(APIDS)) as u16;
            let sequence = ((i / usize::from(APIDS)) % 16_384) as u16;
            let mut p = PrimaryHeader::telemetry(apid, sequence, size - 6)
                .encode()
                .to_vec();
            p.resize(size, (i % 251) as u8);
            p
        })
        .collect()
}

/// `measure`, tried up to three times: the ports it picks were free when picked, but another
/// socket (a connection's own port) can take one before the daemon binds it, which stops the
/// daemon at its start.
fn measure_retried(variant: &str, packets: &[Vec<u8>], dir: &Path) -> BenchResult<(f64, f64)> {
    let mut failed = 0;
    loop {
        match measure(variant, packets, dir) {
            Err(err) if failed < 2 => {
                failed += 1;
                eprintln!("{variant}: {err}; again, on other ports");
            }
            done => return done,
        }
    }
}

/// One run of `variant`: packets per second, and the share of them kept.
fn measure(variant: &str, packets: &[Vec<u8>], dir: &Path) -> BenchResult<(f64, f64)> {
    let n = packets.len() as u64;
    if variant == "floor" {
        return floor(&encode(&Framing::Ccsds, packets)).map(|secs| (n as f64 / secs, 1.0));
    }
    let (port, second) = (free_port()?, free_port()?);
    let link = |transport: &str, framing: &str, extra: &str| {
        format!(
            "[[links]]\nname = \"{framing}-{port}\"\ntransport = \"{transport}\"\n\
             address = \"127.0.0.1:{port}\"\nframing = \"{framing}\"\napid_base = 100\n{extra}"
        )
    };
    let config = match variant {
        "ingest" => String::new(),
        "ccsds" | "ccsds-asm" => link("tcp-listen", variant, ""),
        "length-prefix" => link(
            "tcp-listen",
            variant,
            "length = { offset = 0, size = 4, adjustment = 4, strip = 4 }\n",
        ),
        "kiss" => link("tcp-connect", variant, "reconnect_min_ms = 10\n"),
        "kiss-ax25" => link(
            "tcp-connect",
            "kiss",
            "kiss_payload = \"ax25\"\nreconnect_min_ms = 10\n",
        ),
        "tm-frames" => link(
            "tcp-listen",
            variant,
            "frame_length = 1115\nspacecraft_id = 42\nvirtual_channels = [0]\nfecf = true\n",
        ),
        "udp" => link("udp", "ccsds", ""),
        "merge" => format!(
            "{}[[links]]\nname = \"second\"\ntransport = \"tcp-listen\"\n\
             address = \"127.0.0.1:{second}\"\nframing = \"ccsds\"\napid_base = 10000\n\
             group = \"g\"\nmerge_window = 65536\n",
            link(
                "tcp-listen",
                "ccsds",
                "group = \"g\"\nmerge_window = 65536\n"
            )
        ),
        other => return Err(format!("no variant {other}")),
    };
    let uplink = free_port()?;
    // A KISS server is dialled: it listens before the daemon starts.
    let kiss_server = match variant {
        "kiss" | "kiss-ax25" => {
            Some(TcpListener::bind(("127.0.0.1", port)).map_err(|err| err.to_string())?)
        }
        _ => None,
    };
    let rest = format!(
        "[archive]\nkind = \"count\"\ndir = \"{}\"\n{config}",
        dir.join(format!("archive-{port}")).display()
    );
    // The bytes are made before the clock starts: what is timed is the daemon taking them.
    let wire = wire_of(variant, packets)?;
    let daemon = Daemon::start(dir, uplink, &rest)?;
    let started = Instant::now();
    let senders = match variant {
        "ingest" => vec![send_ingest(uplink, wire)?],
        "kiss" | "kiss-ax25" => {
            let server = kiss_server.ok_or("no KISS server")?;
            vec![std::thread::spawn(move || {
                let (mut stream, _) = server.accept().map_err(|err| err.to_string())?;
                stream.write_all(&wire).map_err(|err| err.to_string())
            })]
        }
        "udp" => vec![send_udp(port, packets.to_vec())],
        "merge" => {
            // Both connected before either writes: a station that starts far behind its group
            // is another case (docs/ground-segment.md, "Redundant stations").
            let (a, b) = (connect(port)?, connect(second)?);
            let start = std::sync::Arc::new(std::sync::Barrier::new(2));
            [(a, wire.clone()), (b, wire)]
                .into_iter()
                .map(|(mut stream, wire)| {
                    let start = std::sync::Arc::clone(&start);
                    std::thread::spawn(move || {
                        start.wait();
                        stream.write_all(&wire).map_err(|err| err.to_string())
                    })
                })
                .collect()
        }
        _ => vec![send_tcp(port, wire)],
    };
    let wanted_copies = if variant == "merge" { n } else { 0 };
    let (archived, elapsed) = wait_for(&daemon, n, wanted_copies, variant == "udp", started)?;
    for sender in senders {
        sender.join().map_err(|_| "a sender panicked")??;
    }
    daemon.stop()?;
    Ok((archived as f64 / elapsed, archived as f64 / n as f64))
}

/// Waits until `n` frames are archived (and `copies` copies counted), or for a lossy variant until
/// the count stops moving; the frames archived, and the seconds until the last one.
fn wait_for(
    daemon: &Daemon,
    n: u64,
    copies: u64,
    lossy: bool,
    started: Instant,
) -> BenchResult<(u64, f64)> {
    let (mut last, mut last_at) = (0, started.elapsed());
    loop {
        let json = daemon.json()?;
        let archived = json["stats"]["frames_archived"].as_u64().unwrap_or(0);
        let copied: u64 = json["links"].as_array().map_or(0, |links| {
            links.iter().filter_map(|l| l["copies"].as_u64()).sum()
        });
        if archived != last {
            (last, last_at) = (archived, started.elapsed());
        }
        if archived >= n && copied >= copies {
            return Ok((archived, last_at.as_secs_f64()));
        }
        let still = started.elapsed() - last_at;
        if (lossy && archived > 0 && still > Duration::from_millis(500))
            || still > Duration::from_secs(30)
        {
            return match lossy {
                true => Ok((archived, last_at.as_secs_f64())),
                false => Err(format!("stalled at {archived} of {n} frames archived")),
            };
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The byte stream `variant` sends (none for `udp`, whose datagrams are the packets).
fn wire_of(variant: &str, packets: &[Vec<u8>]) -> BenchResult<Vec<u8>> {
    let length_prefix = Framing::LengthPrefix(LengthField {
        offset: 0,
        size: 4,
        adjustment: 4,
        strip: 4,
    });
    Ok(match variant {
        "ingest" => ingest_wire(packets),
        "ccsds" | "merge" => encode(&Framing::Ccsds, packets),
        "ccsds-asm" => encode(&Framing::CcsdsAsm, packets),
        "length-prefix" => encode(&length_prefix, packets),
        "tm-frames" => tm_frames(packets),
        "kiss" | "kiss-ax25" => {
            let (to, from) = ("CQ".parse(), "N0CALL-1".parse());
            let (to, from) = (to.map_err(|_| "CQ")?, from.map_err(|_| "N0CALL-1")?);
            let (mut wire, mut frame) = (Vec::new(), Vec::new());
            for p in packets {
                let data = match variant {
                    "kiss" => p,
                    _ => {
                        frame.clear();
                        ax25::encode(to, from, &[], p, &mut frame);
                        &frame
                    }
                };
                kiss::encode(0, data, &mut wire);
            }
            wire
        }
        _ => Vec::new(),
    })
}

/// The packets in TM frames of virtual channel 0, each frame behind the marker.
fn tm_frames(packets: &[Vec<u8>]) -> Vec<u8> {
    let mut writer = TransferFrameWriter::new(TM_FRAMES, 0, 0);
    let mut wire = Vec::new();
    let mut take = |writer: &mut TransferFrameWriter| {
        while let Some(frame) = writer.next_frame() {
            wire.extend_from_slice(&ccsds::ASM);
            wire.extend_from_slice(&frame);
        }
    };
    for p in packets {
        writer.push(p);
        take(&mut writer);
    }
    writer.flush();
    take(&mut writer);
    wire
}

fn encode(framing: &Framing, packets: &[Vec<u8>]) -> Vec<u8> {
    let mut wire = Vec::new();
    for p in packets {
        ccsds::encode(framing, p, &mut wire);
    }
    wire
}

type Sender = std::thread::JoinHandle<BenchResult<()>>;

fn send_tcp(port: u16, wire: Vec<u8>) -> Sender {
    std::thread::spawn(move || {
        let mut stream = connect(port)?;
        stream.write_all(&wire).map_err(|err| err.to_string())
    })
}

fn connect(port: u16) -> BenchResult<TcpStream> {
    TcpStream::connect(("127.0.0.1", port)).map_err(|err| err.to_string())
}

/// Every packet as the payload of a DATA frame of live uplink 1, after its HELLO.
fn ingest_wire(packets: &[Vec<u8>]) -> Vec<u8> {
    let mut wire = BytesMut::new();
    ClientMessage::Hello(Hello {
        version: ingest::VERSION,
        kind: SourceKind::LiveUplink,
        source_id: 1,
    })
    .encode(&mut wire);
    for (sequence, p) in packets.iter().enumerate() {
        ingest::encode_data(&mut wire, Priority::Routine, sequence as u64, p);
    }
    wire.to_vec()
}

/// Sends the ingest protocol's `wire`; the replies (WELCOME, ACKs) are read and dropped.
fn send_ingest(port: u16, wire: Vec<u8>) -> BenchResult<Sender> {
    let mut stream = connect(port)?;
    let mut replies = stream.try_clone().map_err(|err| err.to_string())?;
    std::thread::spawn(move || {
        let mut sink = [0; 4096];
        while matches!(replies.read(&mut sink), Ok(n) if n > 0) {}
    });
    Ok(std::thread::spawn(move || {
        stream.write_all(&wire).map_err(|err| err.to_string())
    }))
}

fn send_udp(port: u16, packets: Vec<Vec<u8>>) -> Sender {
    std::thread::spawn(move || {
        let socket = UdpSocket::bind("127.0.0.1:0").map_err(|err| err.to_string())?;
        socket
            .connect(("127.0.0.1", port))
            .map_err(|err| err.to_string())?;
        for p in &packets {
            // A full buffer (ENOBUFS) loses the datagram, as the network would.
            let _ = socket.send(p);
        }
        Ok(())
    })
}

/// Seconds a reader in this process takes to read `wire` off loopback TCP and drop it.
fn floor(wire: &[u8]) -> BenchResult<f64> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|err| err.to_string())?;
    let port = listener.local_addr().map_err(|err| err.to_string())?.port();
    let reader = std::thread::spawn(move || -> BenchResult<()> {
        let (mut stream, _) = listener.accept().map_err(|err| err.to_string())?;
        let mut buf = vec![0; 1 << 16];
        while stream.read(&mut buf).map_err(|err| err.to_string())? > 0 {}
        Ok(())
    });
    let started = Instant::now();
    let mut stream = connect(port)?;
    stream.write_all(wire).map_err(|err| err.to_string())?;
    drop(stream);
    reader.join().map_err(|_| "the reader panicked")??;
    Ok(started.elapsed().as_secs_f64())
}
