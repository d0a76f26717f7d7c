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
//! connected, and the input is held open until every packet is stored ([`OnTheAir`]).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use aggregator::protocol::ccsds::PrimaryHeader;
use aggregator::stats::LinkState;
use aggregator::{Config, SourceKind};

use super::{test_config, wait_until, Archive, TestDaemon, PATIENCE};

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
    pub archive: Archive,
    pub decoder: Child,
    /// The decoder's log, stdout and stderr.
    pub log: PathBuf,
}

impl OnTheAir {
    /// Starts the daemon with a link to the KISS server at `port` (the sender's callsign
    /// becomes source 500) and waits until it has connected: `decoder` (started with its stdin
    /// piped and its output to `log`) reads nothing before.
    pub async fn connect(decoder: Child, port: u16, log: PathBuf) -> OnTheAir {
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
        let mut config = test_config();
        config.links = Config::parse(&toml, Path::new("tnc.toml")).unwrap().links;
        let (archive, sink) = Archive::open();
        let daemon = TestDaemon::start(config, sink).await;
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
        let archive = &self.archive;
        wait_until("every packet stored", PATIENCE * 2, || {
            archive.len() >= packets
        })
        .await;
        drop(input);
        let _ = self.decoder.kill();
        let _ = self.decoder.wait();
    }

    /// Every packet is stored once, byte for byte, in order, under the sender's source; the
    /// link counted each frame's newline and no bad input, and the station's pass whole.
    pub fn assert_every_packet_once(&self, packets: &[Vec<u8>]) {
        let stored: Vec<_> = (self.archive.records().iter())
            .map(|r| r.payload.to_vec())
            .collect();
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        assert_eq!(stored, packets, "the decoder's log:\n{log}");
        let live = SourceKind::LiveUplink;
        assert_eq!(self.archive.sequences(live, 500).len(), packets.len());
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
}
