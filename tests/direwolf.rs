//! A `kiss_payload = "ax25"` link against a real TNC: Direwolf (Debian's `direwolf` package, 1.6)
//! decodes 9600 bd audio that its `gen_packets` made of AX.25 UI frames, each holding one CCSDS
//! space packet, and serves the frames on its KISS TCP port, which the link dials.
//!
//! The audio is `common::ax25_audio`'s: each frame carries one byte after its packet (the line's
//! newline), which the link counts in `trailing_bytes`.
//!
//! Direwolf reads the audio (the WAV file whole) from its standard input.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};

use common::ax25_audio::{audio, packet, OnTheAir, FRAMES, RATE};
use common::{free_port, TempDir};

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
    let tnc = direwolf(&dir.0, port);
    let mut on_air = OnTheAir::connect(tnc, port, dir.0.join("direwolf.log"), &dir.0).await;
    on_air.play(wav, packets.len()).await;
    on_air.assert_every_packet_once(&packets);
    // direwolf gives no earth-receive time: the pass is on the daemon's received times.
    on_air.assert_one_pass(packets.len(), "received");
    assert!(on_air.daemon.shutdown().await.is_clean());
}
