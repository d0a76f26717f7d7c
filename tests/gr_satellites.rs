//! A `kiss_payload = "ax25"` link against an SDR decoder: gr-satellites 4.4 (Debian's
//! `gr-satellites` package, run by GNU Radio 3.10, package `gnuradio`) demodulates the 9600 bd
//! audio of `common::ax25_audio` through a satellite definition (FSK, AX.25 with G3RUH scrambling,
//! tests/gr_satellites/satellite.yml) and serves the frames on its KISS server
//! (`--kiss_server`), which the link dials.
//!
//! gr-satellites sends before every data frame a KISS frame of command 09: 8 bytes, its clock
//! when it decoded the frame, in milliseconds since the Unix epoch. The link keeps it as each
//! packet's earth-receive time. It reads raw 16-bit samples from its standard input
//! (`--rawint16 /dev/stdin`): the WAV file's samples. A station that records the pass
//! instead writes it with `--kiss_out`, which `aggregator recording inspect` reads and a link's
//! spool directory backfills.
//!
//! Each run of gr-satellites has its test's directory as `HOME`: at its first start it makes
//! `~/.gr_satellites/` if missing, and two starting at once on a fresh machine both try to, one
//! failing with "File exists".

mod common;

use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::SystemTime;

use aggregator::domain::units::{parse_time, unix_ns};
use aggregator::links::recording::{Naming, RecordedItem, Recording};
use common::ax25_audio::{audio, packet, samples, OnTheAir, FRAMES, RATE};
use common::{free_port, TempDir, PATIENCE};

/// Every packet on the air is stored once, byte for byte, in order, under its sender's source,
/// each with gr-satellites' time as its earth-receive time: within the test's run, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs gr-satellites and GNU Radio (Debian packages gr-satellites, gnuradio), run by .ci/run"]
async fn gr_satellites_kiss_server_stores_every_packet_with_its_time() {
    let dir = TempDir::new("gr-satellites");
    let packets: Vec<_> = (0..FRAMES).map(packet).collect();
    let pcm = samples(&audio(&dir.0, &packets)).to_vec();
    let port = free_port();
    let satellite = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/gr_satellites/satellite.yml");
    let log = dir.0.join("gr_satellites.log");
    let output = std::fs::File::create(&log).unwrap();
    let decoder = Command::new("gr_satellites")
        .env("HOME", &dir.0)
        .arg(satellite)
        .args(["--rawint16", "/dev/stdin", "--samp_rate", RATE, "--hexdump"])
        .args(["--kiss_server", &port.to_string()])
        .args(["--kiss_server_address", "127.0.0.1"])
        .stdin(Stdio::piped())
        .stdout(output.try_clone().unwrap())
        .stderr(output)
        .spawn()
        .expect("gr_satellites runs (Debian package gr-satellites)");
    let mut on_air = OnTheAir::connect(decoder, port, log, &dir.0).await;
    let before = unix_ns(SystemTime::now()).unwrap();
    on_air.play(pcm, packets.len()).await;
    let after = unix_ns(SystemTime::now()).unwrap();
    on_air.assert_every_packet_once(&packets);
    on_air.assert_one_pass(packets.len(), "earth_received");
    let times: Vec<u64> = (on_air.records().iter())
        .map(|r| {
            let reception = r
                .reception
                .as_ref()
                .expect("a link's frame has its reception");
            reception
                .received
                .earth_unix_ns
                .expect("gr-satellites' time")
        })
        .collect();
    // Milliseconds: the first may be up to one below the instant the audio began.
    let window = before - before % 1_000_000..=after;
    assert!(
        times.iter().all(|t| window.contains(t)),
        "earth-receive times {times:?} outside {window:?}"
    );
    assert!(times.is_sorted(), "in the order decoded: {times:?}");
    assert!(on_air.daemon.shutdown().await.is_clean());
}

/// gr-satellites 4.4's KISS file sink asks GNU Radio for `blocks.byte_t`, which 3.10 keeps in
/// `gr.types` (Debian 12's packages fail with an AttributeError): named where it is looked for,
/// then gr_satellites runs as its own script, with the test's arguments.
const KISS_OUT_SHIM: &str = "import runpy, shutil; from gnuradio import blocks, gr; \
    blocks.byte_t = getattr(blocks, 'byte_t', gr.types.byte_t); \
    runpy.run_path(shutil.which('gr_satellites'), run_name='__main__')";

/// A station that records the pass instead (`--kiss_out`, gr-satellites' KISS file with a time
/// frame before each data frame), read through by `aggregator recording inspect`: told a KISS
/// capture by its bytes, every packet a frame, each with its earth-receive time, nothing damaged.
#[test]
#[ignore = "needs gr-satellites and GNU Radio (Debian packages gr-satellites, gnuradio), run by .ci/run"]
fn a_kiss_out_recording_is_read_through_by_recording_inspect() {
    let dir = TempDir::new("gr-satellites-kiss-out");
    let (recording, window) = kiss_out(&dir.0);
    let inspected = Command::new(env!("CARGO_BIN_EXE_aggregator"))
        .args(["recording", "inspect", "--json"])
        .arg(&recording)
        .output()
        .expect("run the aggregator binary");
    assert_eq!(inspected.status.code(), Some(0), "{inspected:?}");
    let report: serde_json::Value = serde_json::from_slice(&inspected.stdout).unwrap();
    assert_eq!(report["format"], "kiss", "{report}");
    assert_eq!(report["detected"], true, "{report}");
    assert_eq!(report["frames"], u64::from(FRAMES), "{report}");
    assert_eq!(report["damaged_ranges"], 0, "{report}");
    for end in ["first_earth_received", "last_earth_received"] {
        let text = report[end].as_str().expect("gr-satellites' time frames");
        let time = parse_time(text, SystemTime::now()).unwrap();
        assert!(window.contains(&time), "{end} {text} outside {window:?}");
    }
}

/// gr-satellites decodes the pass's audio into a `--kiss_out` recording in `dir`; the
/// recording, and the window its earth-receive times must lie in (milliseconds: the first may be
/// up to one below the instant the decoding began).
fn kiss_out(dir: &Path) -> (PathBuf, RangeInclusive<u64>) {
    let packets: Vec<_> = (0..FRAMES).map(packet).collect();
    let raw = dir.join("pass.s16");
    // A second of silence after the audio, so that the last frame is decoded too.
    let silence = vec![0; 2 * 48_000];
    std::fs::write(&raw, [samples(&audio(dir, &packets)), &silence].concat()).unwrap();
    let (recording, log) = (dir.join("pass.kiss"), dir.join("gr_satellites.log"));
    let satellite = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/gr_satellites/satellite.yml");
    let output = std::fs::File::create(&log).unwrap();
    let before = unix_ns(SystemTime::now()).unwrap();
    let decoded = Command::new("/usr/bin/python3")
        .env("HOME", dir)
        .args(["-c", KISS_OUT_SHIM])
        .arg(satellite)
        .arg("--rawint16")
        .arg(&raw)
        .args(["--samp_rate", RATE, "--kiss_out"])
        .arg(&recording)
        .stdout(output.try_clone().unwrap())
        .stderr(output)
        .status()
        .expect("gr_satellites runs (Debian package gr-satellites)");
    let after = unix_ns(SystemTime::now()).unwrap();
    let said = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(decoded.success(), "gr_satellites failed: {said}");
    (recording, before - before % 1_000_000..=after)
}

/// The station's recording backfills its link (APID 100's source carries its count): the first
/// two packets alone first, which completeness then shows held with the rest missing, then the
/// whole file, which stores exactly the three the archive lacked and closes the pass.
#[tokio::test]
#[ignore = "needs gr-satellites and GNU Radio (Debian packages gr-satellites, gnuradio), run by .ci/run"]
async fn a_kiss_out_recording_backfills_what_the_archive_lacks() {
    let dir = TempDir::new("gr-satellites-backfill");
    let (recording, _) = tokio::task::spawn_blocking({
        let dir = dir.0.clone();
        move || kiss_out(&dir)
    })
    .await
    .unwrap();
    let bytes = std::fs::read(&recording).unwrap();
    let frames = Recording::open(&recording, &Naming::default()).unwrap();
    let offsets: Vec<u64> = (frames.map(Result::unwrap))
        .filter_map(|item| match item {
            RecordedItem::Frame(frame) => Some(frame.offset),
            RecordedItem::Damage(_) => None,
        })
        .collect();
    let half = &bytes[..offsets[2] as usize];
    let spool = dir.0.join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    let (daemon, monitor, stop) = sdr_station(&dir.0, &spool).await;
    let held = || async move {
        let answer = common::http_get_json(monitor, "/archive/completeness?source=live:100").await;
        answer["sources"][0]["held"].clone()
    };
    let done = |files: u64| async move {
        let stats = common::http_get_json(monitor, "/stats").await;
        stats["links"][0]["backfill"]["files_done"] == files
    };
    let upload = |name: &str, bytes: &[u8]| {
        let part = spool.join(format!("{name}.part"));
        std::fs::write(&part, bytes).unwrap();
        std::fs::rename(&part, spool.join(name)).unwrap();
    };
    upload("first-two.kiss", half);
    common::wait_until_async("the first two packets imported", PATIENCE, || done(1)).await;
    assert_eq!(held().await, serde_json::json!([[UP, UP + 1]]));
    upload("pass.kiss", &bytes);
    common::wait_until_async("the whole pass imported", PATIENCE, || done(2)).await;
    assert_eq!(held().await, serde_json::json!([[UP, UP + 4]]));
    let stats = common::http_get_json(monitor, "/stats").await;
    let backfill = &stats["links"][0]["backfill"];
    assert_eq!(
        (&backfill["stored"], &backfill["held"]),
        (&serde_json::json!(5), &serde_json::json!(2)),
        "{backfill}"
    );
    stop.cancel();
    assert_eq!(daemon.shutdown_clean().await.archived, 5);
}

/// A group reads its first packet of an APID one cycle up.
const UP: u64 = 16_384;

/// A daemon whose `kiss_payload = "ax25"` link (APID 100 as source 100) watches `spool`; its
/// monitor served.
async fn sdr_station(
    dir: &Path,
    spool: &Path,
) -> (
    common::TestDaemon,
    std::net::SocketAddr,
    tokio_util::sync::CancellationToken,
) {
    let links = format!(
        "[[links]]\nname = \"sdr\"\ntransport = \"tcp-listen\"\naddress = \"127.0.0.1:0\"\n\
         framing = \"kiss\"\nkiss_payload = \"ax25\"\napid_base = 0\napids = [100, 100]\n\
         spool_dir = \"{}\"\n",
        spool.display()
    );
    let mut config = common::archive_config(&dir.join("archive"));
    config.links = aggregator::Config::parse(&links, &dir.join("links.toml"))
        .unwrap()
        .links;
    let opened = aggregator::archive::write::open(&config.archive, config.runtime.shards).unwrap();
    let build = |config| aggregator::Daemon::new(config, opened);
    let (daemon, state) =
        common::TestDaemon::start_built(config, build, aggregator::Daemon::monitor_state).await;
    let (monitor, stop) = common::serve_monitor(state).await;
    (daemon, monitor, stop)
}
