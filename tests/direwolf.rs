//! A `kiss_payload = "ax25"` link against a real TNC: Direwolf (Debian's `direwolf` package, 1.6)
//! decodes 9600 bd audio that its `gen_packets` made of AX.25 UI frames, each holding one CCSDS
//! space packet, and serves the frames on its KISS TCP port, which the link dials.
//!
//! `gen_packets` reads frames in monitor format (`N0CALL-1>CQ:info`, one a line) and takes any
//! byte of the information field written as `<0xNN>`, so the packets hold arbitrary bytes: FEND,
//! FESC, NUL and newline among them. It appends each line's newline to the information field, so
//! every frame carries one byte after its packet: the link counts it in `trailing_bytes`.
//!
//! Direwolf reads the audio from its standard input and exits at its end, dropping what it had not
//! yet handed to its KISS clients: the audio is written only once the link is connected, and the
//! input is held open until every packet is stored.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use aggregator::protocol::ccsds::PrimaryHeader;
use aggregator::stats::LinkState;
use aggregator::{Config, SourceKind};
use common::{free_port, test_config, wait_until, Archive, TempDir, TestDaemon, PATIENCE};

/// Frames in the audio.
const FRAMES: u16 = 5;
/// Direwolf's audio sample rate, and gen_packets'.
const RATE: &str = "48000";

/// Packet `i`: APID 100, count `i`, data with the bytes KISS escapes and a newline.
fn packet(i: u16) -> Vec<u8> {
    let mut data = vec![0xC0, 0xDB, 0x00, b'\n', 0xDC, 0xDD];
    data.extend(format!("packet {i}").bytes());
    let mut p = PrimaryHeader::telemetry(100, i, data.len())
        .encode()
        .to_vec();
    p.extend_from_slice(&data);
    p
}

/// A WAV of one UI frame from N0CALL-1 to CQ per packet, made by gen_packets at 9600 bd.
fn audio(dir: &Path, packets: &[Vec<u8>]) -> Vec<u8> {
    let mut frames = String::new();
    for packet in packets {
        frames.push_str("N0CALL-1>CQ:");
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

/// Direwolf with its KISS TCP server on `port` and audio from its standard input.
fn direwolf(dir: &Path, port: u16) -> Child {
    let conf = dir.join("direwolf.conf");
    let text = format!(
        "ADEVICE stdin null\nCHANNEL 0\nMODEM 9600\nMYCALL N0CALL\nKISSPORT {port}\nAGWPORT 0\n"
    );
    std::fs::write(&conf, text).unwrap();
    let log = std::fs::File::create(dir.join("direwolf.log")).unwrap();
    Command::new("direwolf")
        .arg("-c")
        .arg(&conf)
        .args(["-r", RATE, "-B", "9600", "-t", "0", "-"])
        .stdin(Stdio::piped())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("direwolf runs (Debian package direwolf)")
}

/// Every packet gen_packets put on the air and Direwolf decoded is stored once, byte for byte,
/// in order, under the source of its sender's callsign; each frame's newline is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs direwolf (Debian package), run by .ci/run"]
async fn direwolfs_kiss_frames_store_every_packet_once() {
    let dir = TempDir::new("direwolf");
    let packets: Vec<_> = (0..FRAMES).map(packet).collect();
    let wav = audio(&dir.0, &packets);
    let port = free_port();
    let mut tnc = direwolf(&dir.0, port);
    let toml = format!(
        r#"
        [[links]]
        name = "direwolf"
        transport = "tcp-connect"
        address = "127.0.0.1:{port}"
        framing = "kiss"
        kiss_payload = "ax25"
        callsign_sources = {{ "N0CALL-1" = 500 }}
        reconnect_min_ms = 50
        reconnect_max_ms = 200
        "#
    );
    let mut config = test_config();
    config.links = Config::parse(&toml, Path::new("direwolf.toml"))
        .unwrap()
        .links;
    let (archive, sink) = Archive::open();
    let daemon = TestDaemon::start(config, sink).await;
    wait_until("the link connected to direwolf", PATIENCE, || {
        let links = daemon.stats.links();
        links
            .first()
            .is_some_and(|l| l.state == LinkState::Connected)
    })
    .await;
    let mut input = tnc.stdin.take().unwrap();
    // A second of silence after the frames, so that the last one is decoded.
    let written = tokio::task::spawn_blocking(move || {
        input.write_all(&wav)?;
        input.write_all(&vec![0; 2 * 48_000])?;
        input.flush().map(|()| input)
    });
    let input = written.await.unwrap().expect("audio written to direwolf");
    wait_until("every packet stored", PATIENCE * 2, || {
        archive.len() >= packets.len()
    })
    .await;
    drop(input);
    let _ = tnc.kill();
    let _ = tnc.wait();
    let stored: Vec<_> = archive
        .records()
        .iter()
        .map(|r| r.payload.to_vec())
        .collect();
    let log = std::fs::read_to_string(dir.0.join("direwolf.log")).unwrap_or_default();
    assert_eq!(stored, packets, "direwolf's log:\n{log}");
    let live = SourceKind::LiveUplink;
    assert_eq!(archive.sequences(live, 500).len(), packets.len());
    let link = &daemon.stats.links()[0];
    assert_eq!(
        link.trailing_bytes,
        u64::from(FRAMES),
        "one newline a frame"
    );
    assert_eq!((link.ax25_frames, link.bad_input), (u64::from(FRAMES), 0));
    assert!(daemon.shutdown().await.is_clean());
}
