//! An archive the build before wrote (format version 4: segments `TLMSEG04`, indexes `TLMIDX03`;
//! `tests/fixtures/make-archive-v4.sh` rebuilds it from commit b608eb4) is read as that build
//! read it, every frame; today's daemon starts on it, resumes every source where it stood, and
//! appends in a version 5 segment of its own, leaving the earlier files as they were.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use aggregator::archive::format;
use aggregator::SourceKind;
use common::process::Daemon;
use common::{Client, TempDir, PATIENCE};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/archive-v4");
const LISTED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/archive-v4.inspect"
);

/// A copy of the fixture in a directory of its own, removed at the end.
fn copy(name: &str) -> TempDir {
    let dir = TempDir::new(&format!("archive-upgrade-{name}"));
    copy_dir(Path::new(FIXTURE), &dir.0.join("archive"));
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        match entry.file_type().unwrap().is_dir() {
            true => copy_dir(&entry.path(), &target),
            false => drop(std::fs::copy(entry.path(), &target).unwrap()),
        }
    }
}

/// `aggregator archive ARGS DIR`: its exit status and standard output.
fn tool(args: &[&str], dir: &Path) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_aggregator"))
        .arg("archive")
        .args(args)
        .arg(dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    (output.status.code().unwrap_or(-1), stdout)
}

/// The lines `inspect` lists of the fixture's own files (the build before's listing has no
/// others).
fn of_fixture_files(listing: &str) -> Vec<&str> {
    let listed = std::fs::read_to_string(LISTED).unwrap();
    let files: Vec<String> = (listed.lines())
        .map(|line| line.split_whitespace().next().unwrap().to_owned())
        .collect();
    (listing.lines())
        .filter(|line| files.iter().any(|f| line.starts_with(&format!("{f} "))))
        .collect()
}

#[test]
fn the_build_befores_archive_reads_as_it_did_every_frame() {
    let copy = copy("read");
    let archive = copy.0.join("archive");
    let (status, listing) = tool(&["inspect"], &archive);
    assert_eq!(status, 0, "{listing}");
    let listed = std::fs::read_to_string(LISTED).unwrap();
    assert_eq!(
        listing, listed,
        "today's build lists what the build before listed"
    );
    let (status, report) = tool(&["verify", "--strict"], &archive);
    assert_eq!(status, 0, "{report}");
    let frames = listed.lines().filter(|l| l.contains(" frame ")).count();
    assert!(report.contains(&format!(" frames={frames} ")), "{report}");
    let (status, gaps) = tool(&["gaps", "--json"], &archive);
    assert_eq!(status, 0, "{gaps}");
    let answer: serde_json::Value = serde_json::from_str(&gaps).unwrap();
    for source in answer["sources"].as_array().unwrap() {
        assert_eq!(source["gaps"], serde_json::json!([]), "{answer:#}");
    }
}

#[tokio::test]
async fn todays_daemon_resumes_on_it_and_appends_in_a_segment_of_its_own() {
    let copy = copy("append");
    let root = copy.0.join("archive");
    let config = format!(
        "[uplink]\nlisten = \"127.0.0.1:0\"\n[replay]\nlisten = \"127.0.0.1:0\"\n\
         [monitor]\nlisten = \"127.0.0.1:0\"\n[runtime]\nshards = 2\n\
         [archive]\ndir = \"{}\"\nsegment_bytes = 4096\n",
        root.display()
    );
    let mut daemon = Daemon::start_in(&copy.0, &config);
    // live:0 holds 0 to 39 (the fixture's listing): it goes on from 40.
    let payloads: Vec<Vec<u8>> = (40..60)
        .map(|seq: u64| seq.to_be_bytes().to_vec())
        .collect();
    Client::store(daemon.uplink, SourceKind::LiveUplink, 0, 40, &payloads).await;
    daemon.signal(libc::SIGTERM);
    let (status, _) = daemon.wait_exit(PATIENCE);
    assert!(status.success());

    // The earlier files are as the build before left them; a version 5 segment follows them.
    for (dir, fixture) in [(root.clone(), PathBuf::from(FIXTURE))]
        .into_iter()
        .chain([(root.join("shard-01"), Path::new(FIXTURE).join("shard-01"))])
    {
        let segments = format::list_segments(&dir).unwrap();
        let earlier = format::list_segments(&fixture).unwrap();
        for (index, path) in &earlier {
            let before = std::fs::read(path).unwrap();
            let after = std::fs::read(dir.join(format::segment_name(*index))).unwrap();
            assert!(after == before, "{} changed", path.display());
            // A `TLMIDX03` index is read as it is, not built again.
            let index_file = aggregator::archive::format::index::index_path(&fixture, *index);
            if let Ok(before) = std::fs::read(&index_file) {
                let after = std::fs::read(dir.join(index_file.file_name().unwrap())).unwrap();
                assert!(after == before, "{} changed", index_file.display());
            }
        }
        let (newest, path) = segments.last().unwrap();
        assert!(*newest > earlier.last().unwrap().0, "a segment of its own");
        assert_eq!(&std::fs::read(path).unwrap()[..8], b"TLMSEG05");
    }
    // Every frame the fixture held, and the new ones after them, once.
    let (status, listing) = tool(&["inspect"], &root);
    assert_eq!(status, 0, "{listing}");
    let listed = std::fs::read_to_string(LISTED).unwrap();
    assert_eq!(
        of_fixture_files(&listing),
        listed.lines().collect::<Vec<_>>()
    );
    let (status, report) = tool(&["verify", "--strict"], &root);
    assert_eq!(status, 0, "{report}");
    assert!(
        report.contains("source live 0: frames=60 ") && report.contains(" last=59 "),
        "{report}"
    );
}
