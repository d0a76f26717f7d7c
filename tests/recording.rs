//! `aggregator recording inspect` on recordings written here: a gzipped KISS capture with
//! gr-satellites' time frames and a damaged frame, transfer frames behind markers, and a file
//! whose format cannot be told. The binary's report and exit status, as an operator sees them.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output};

use aggregator::protocol::ccsds::{PrimaryHeader, ASM};
use aggregator::protocol::kiss;

/// A test's own directory, removed when it ends.
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Scratch {
        let name = format!("aggregator-recording-{test}-{}", std::process::id());
        let dir = std::env::temp_dir().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn inspect(args: &[&str]) -> (Output, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_aggregator"))
        .args(["recording", "inspect"])
        .args(args)
        .output()
        .expect("run the aggregator binary");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output, stdout, stderr)
}

fn packet(count: u16) -> Vec<u8> {
    let mut p = PrimaryHeader::telemetry(100, count, 12).encode().to_vec();
    p.extend_from_slice(b"temperature!");
    p
}

/// Ten data frames each after its time frame, a broken frame after the fifth, gzipped.
fn kiss_capture() -> (Vec<u8>, usize) {
    let mut wire = Vec::new();
    let mut damaged_at = 0;
    for i in 0..10u16 {
        let ms = 1_764_201_600_000 + u64::from(i) * 1000;
        kiss::encode(0, &ms.to_be_bytes(), &mut wire);
        let at = wire.len() - 10;
        wire[at] = kiss::TIME;
        kiss::encode(0, &packet(i), &mut wire);
        if i == 4 {
            damaged_at = wire.len();
            wire.extend_from_slice(&[kiss::FEND, 0x00, 7, kiss::FESC, 0x01, kiss::FEND]);
        }
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&wire).unwrap();
    (gz.finish().unwrap(), damaged_at)
}

#[test]
fn a_gzipped_kiss_capture_is_reported_with_its_times_and_damage() {
    let scratch = Scratch::new("kiss");
    let (gz, damaged_at) = kiss_capture();
    let path = scratch.file("pass.kiss.gz", &gz);
    let (output, stdout, stderr) = inspect(&[path.to_str().unwrap(), "--json"]);
    assert_eq!(output.status.code(), Some(1), "{stdout}{stderr}");
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(report["format"], "kiss");
    assert_eq!(report["detected"], true);
    assert_eq!(report["compression"], "gzip");
    assert_eq!(report["frames"], 10);
    assert_eq!(report["payload_bytes"], 10 * 18);
    assert_eq!(
        report["first_earth_received"],
        "2025-11-27T00:00:00.000000000Z"
    );
    assert_eq!(
        report["last_earth_received"],
        "2025-11-27T00:00:09.000000000Z"
    );
    assert_eq!(report["damaged_ranges"], 1);
    let damage = &report["damaged"][0];
    assert_eq!(damage["start"], damaged_at as u64);
    assert_eq!(damage["end"], damaged_at as u64 + 6);
    assert!(
        damage["reason"].as_str().unwrap().contains("broken escape"),
        "{damage}"
    );
    // The lines say the same.
    let (_, lines, _) = inspect(&[path.to_str().unwrap()]);
    assert!(lines.contains("kiss (detected), gzip"), "{lines}");
    let range = format!("damaged bytes {damaged_at}..{}", damaged_at + 6);
    assert!(lines.contains(&range), "{lines}");
    assert!(lines.contains("frames 10, payload bytes 180"), "{lines}");
}

#[test]
fn transfer_frames_behind_markers_read_clean_and_bare_ones_must_be_named() {
    let scratch = Scratch::new("frames");
    let frames: Vec<Vec<u8>> = (0..6u8)
        .map(|i| {
            let mut frame = vec![0x02, 0xA2, i, i, 0x18, 0x00];
            frame.resize(40, 0x55);
            frame
        })
        .collect();
    let marked: Vec<u8> = frames
        .iter()
        .flat_map(|f| ASM.iter().chain(f))
        .copied()
        .collect();
    let path = scratch.file("frames.bin", &marked);
    let (output, stdout, stderr) = inspect(&[path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("tm-frames (40 bytes, behind the ASM) (detected), plain"),
        "{stdout}"
    );
    assert!(
        stdout.contains("frames 6, payload bytes 240, bytes 264"),
        "{stdout}"
    );
    assert!(stdout.contains("damaged ranges 0"), "{stdout}");

    let bare = scratch.file("bare.bin", &frames.concat());
    let (output, _, stderr) = inspect(&[bare.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr.contains("cannot tell the format"), "{stderr}");
    assert!(stderr.contains("name it with --format"), "{stderr}");
    let named = [
        bare.to_str().unwrap(),
        "--format",
        "tm-frames",
        "--no-marker",
        "--frame-length",
        "40",
    ];
    let (output, stdout, stderr) = inspect(&named);
    assert_eq!(output.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("frames 6,"), "{stdout}");

    // Or named by the station's link: its framing, length and marker.
    let config = scratch.file(
        "aggregator.toml",
        b"[[links]]\nname = \"sat\"\ntransport = \"udp\"\naddress = \"127.0.0.1:0\"\n\
          framing = \"tm-frames\"\napid_base = 10000\nframe_length = 40\nframe_marker = false\n\
          spacecraft_id = 42\nvirtual_channels = [1]\n",
    );
    let by_link = [
        bare.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--link",
        "sat",
    ];
    let (output, stdout, stderr) = inspect(&by_link);
    assert_eq!(output.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("tm-frames (40 bytes, without the ASM) (named)"),
        "{stdout}"
    );
    assert!(stdout.contains("frames 6,"), "{stdout}");
    let (output, _, stderr) = inspect(&[&by_link[..3], &["--link", "other"]].concat());
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr.contains("has no link \"other\""), "{stderr}");
}

#[test]
fn an_empty_file_and_a_missing_one_are_errors() {
    let scratch = Scratch::new("empty");
    let empty = scratch.file("empty.kiss", b"");
    let (output, _, stderr) = inspect(&[empty.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr.contains("is empty"), "{stderr}");
    let (output, _, stderr) = inspect(&["/nonexistent/recording.kiss"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr.contains("cannot read"), "{stderr}");
}
