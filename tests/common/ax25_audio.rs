//! AX.25 UI frames on the air for the tests of real TNCs and SDR decoders (tests/direwolf.rs,
//! tests/gr_satellites.rs): one CCSDS space packet a frame, made into 9600 bd audio by direwolf's
//! `gen_packets` (Debian package direwolf).
//!
//! `gen_packets` reads frames in monitor format (`N0CALL-1>CQ:info`, one a line) and takes any
//! byte of the information field written as `<0xNN>`, so the packets hold arbitrary bytes: FEND,
//! FESC, NUL and newline among them. It appends each line's newline to the information field, so
//! every frame carries one byte after its packet: a link counts it in `trailing_bytes`.
//!
//! The decoders read the audio from their standard input and exit at its end, dropping what they
//! had not yet handed to their KISS clients: the audio is written only once the link is
//! connected, and the input is held open until every packet is stored ([`OnTheAir`]). The daemon
//! stores into archive files, which `aggregator archive passes` reads as an operator would.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::SystemTime;

use aggregator::archive::format::FrameRecord;
use aggregator::domain::units::parse_time;
use aggregator::protocol::ccsds::PrimaryHeader;
use aggregator::stats::LinkState;
use aggregator::{Config, SourceKind};

use super::{archive_config, stored_frames, wait_until, TestDaemon, PATIENCE};

/// Frames in the audio.
pub const FRAMES: u16 = 5;
/// The audio's sample rate, and the decoders'.
pub const RATE: &str = "48000";
/// The sender's callsign.
pub const SENDER: &str = "N0CALL-1";

/// Packet `i`: APID 100, count `i`, data with the bytes KISS escapes and a newline.
pub fn packet(i: u16) -> Vec<u8> {
    let mut data = vec![0xC0, 0xDB, 0x00, b'\n', 0xDC, 0xDD];
    data.extend(format!("packet {i}").bytes());
    let mut p = PrimaryHeader::telemetry(100, i, data.len())
        .encode()
        .to_vec();
    p.extend_from_slice(&data);
    p
}

/// A WAV of one UI frame from [`SENDER`] to CQ per packet, made by gen_packets at 9600 bd in
/// `dir`.
pub fn audio(dir: &Path, packets: &[Vec<u8>]) -> Vec<u8> {
    let mut frames = String::new();
    for packet in packets {
        frames.push_str(&format!("{SENDER}>CQ:"));
        frames.extend(packet.iter().map(|b| format!("<0x{b:02x}>")));
        frames.push('\n');
    }
    let (text, wav) = (dir.join("frames.txt"), dir.join("frames.wav"));
    std::fs::write(&text, frames).unwrap();
    let made = Command::new("gen_packets")
        .args(["-B", "9600", "-r", RATE, "-o"])
        .args([&wav, &text])
        .stdout(Stdio::null())
        .status()
        .expect("gen_packets runs (Debian package direwolf)");
    assert!(made.success(), "gen_packets failed");
    std::fs::read(wav).unwrap()
}

/// The samples of a WAV file: the body of its `data` chunk (16-bit little-endian PCM, as
/// gen_packets writes it).
pub fn samples(wav: &[u8]) -> &[u8] {
    let mut at = 12;
    while let Some(header) = wav.get(at..at + 8) {
        let len = u32::from_le_bytes(header[4..8].try_into().unwrap()) as usize;
        let body = &wav[at + 8..(at + 8 + len).min(wav.len())];
        if &header[..4] == b"data" {
            return body;
        }
        at += 8 + len + len % 2;
    }
    panic!("no data chunk in the WAV file");
}

/// A decoder (a TNC, an SDR program) running beside the test with its audio from its standard
/// input and a KISS TCP server, and a daemon whose `kiss_payload = "ax25"` link dials that server.
pub struct OnTheAir {
    pub daemon: TestDaemon,
    /// The daemon's archive directory (one shard).
    pub archive: PathBuf,
    pub decoder: Child,
    /// The decoder's log, stdout and stderr.
    pub log: PathBuf,
}

impl OnTheAir {
    /// Starts the daemon with a link to the KISS server at `port` (the sender's callsign
    /// becomes source 500) and waits until it has connected: `decoder` (started with its stdin
    /// piped and its output to `log`) reads nothing before. The daemon's archive is in `dir`.
    pub async fn connect(decoder: Child, port: u16, log: PathBuf, dir: &Path) -> OnTheAir {
        let toml = format!(
            r#"
            [[links]]
            name = "tnc"
            transport = "tcp-connect"
            address = "127.0.0.1:{port}"
            framing = "kiss"
            kiss_payload = "ax25"
            callsign_sources = {{ "{SENDER}" = 500 }}
            reconnect_min_ms = 50
            reconnect_max_ms = 200
            "#
        );
        let archive = dir.join("archive");
        let mut config = archive_config(&archive);
        config.links = Config::parse(&toml, Path::new("tnc.toml")).unwrap().links;
        let daemon = TestDaemon::open(config).await;
        let on_air = OnTheAir {
            daemon,
            archive,
            decoder,
            log,
        };
        // A decoder that starts slowly (GNU Radio's Python) is waited for longer.
        wait_until("the link connected to the decoder", PATIENCE * 3, || {
            let links = on_air.daemon.stats.links();
            links
                .first()
                .is_some_and(|l| l.state == LinkState::Connected)
        })
        .await;
        on_air
    }

    /// Writes `samples` to the decoder, then a second of silence so that the last frame is
    /// decoded, and waits until `packets` are stored; then stops the decoder (it exits at the
    /// end of its input, dropping what it had not sent yet: the input is held open until then).
    pub async fn play(&mut self, samples: Vec<u8>, packets: usize) {
        let mut input = self
            .decoder
            .stdin
            .take()
            .expect("the decoder's stdin piped");
        let written = tokio::task::spawn_blocking(move || {
            input.write_all(&samples)?;
            input.write_all(&vec![0; 2 * 48_000])?;
            input.flush().map(|()| input)
        });
        let input = written
            .await
            .unwrap()
            .expect("audio written to the decoder");
        let stats = &self.daemon.stats;
        wait_until("every packet stored", PATIENCE * 2, || {
            stats.snapshot().frames_archived >= packets as u64
        })
        .await;
        drop(input);
        let _ = self.decoder.kill();
        let _ = self.decoder.wait();
    }

    /// Every packet is stored once, byte for byte, in order, under the sender's source; the
    /// link counted each frame's newline and no bad input, and the station's pass whole.
    pub fn assert_every_packet_once(&self, packets: &[Vec<u8>]) {
        let records = self.records();
        let stored: Vec<_> = records.iter().map(|r| r.payload.to_vec()).collect();
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        assert_eq!(stored, packets, "the decoder's log:\n{log}");
        let sender = |r: &&FrameRecord| (r.kind, r.source_id) == (SourceKind::LiveUplink, 500);
        assert_eq!(records.iter().filter(sender).count(), packets.len());
        let link = &self.daemon.stats.links()[0];
        let frames = packets.len() as u64;
        assert_eq!(link.trailing_bytes, frames, "one newline a frame");
        assert_eq!((link.ax25_frames, link.bad_input), (frames, 0));
        let pass = link.pass;
        let one = (pass.passes, pass.received, pass.missed, pass.ongoing);
        assert_eq!(
            one,
            (1, frames, 0, true),
            "the station's one pass, whole, going on"
        );
    }

    /// The frames of the archive's files, in file order.
    pub fn records(&self) -> Vec<FrameRecord> {
        let frames = stored_frames(&self.archive).into_iter();
        frames.map(|(_, frame)| frame).collect()
    }

    /// `aggregator archive passes` of the archive's files finds the station's one pass: `packets`
    /// frames, none missing, its AOS and LOS on the time `time` says (`earth_received` where the
    /// decoder gave times, else `received`) and within the frames' own.
    pub fn assert_one_pass(&self, packets: usize, time: &str) {
        let out = Command::new(env!("CARGO_BIN_EXE_aggregator"))
            .args(["archive", "passes", "--json"])
            .arg(&self.archive)
            .output()
            .expect("the aggregator binary runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let passes = answer["passes"].as_array().expect("passes");
        assert_eq!(passes.len(), 1, "{answer:#}");
        let pass = &passes[0];
        assert_eq!(
            (&pass["station"], &pass["time"]),
            (&"tnc".into(), &time.into())
        );
        assert_eq!(
            (&pass["frames"], &pass["missing"]),
            (&packets.into(), &0.into())
        );
        let times: Vec<u64> = (self.records().iter())
            .map(|r| {
                let earth = r.reception.as_ref().and_then(|r| r.received.earth_unix_ns);
                earth.unwrap_or(r.received_unix_ns)
            })
            .collect();
        let at = |field: &str| {
            let text = pass[field].as_str().expect("an RFC 3339 time");
            parse_time(text, SystemTime::now()).ok()
        };
        assert_eq!(at("aos"), times.iter().min().copied(), "{pass}");
        assert_eq!(at("los"), times.iter().max().copied(), "{pass}");
    }
}
