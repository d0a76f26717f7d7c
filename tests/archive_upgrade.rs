//! Archives earlier builds wrote, one per format version (`tests/fixtures/archive-vN`;
//! `tests/fixtures/make-archive.sh N` rebuilds one from the last commit that wrote version N):
//! each is read as that build read it, every frame; today's daemon starts on it, resumes every
//! source where it stood, serves it to a follower, and appends in a version 6 segment of its own,
//! leaving the earlier files as they were.
//!
//! | version | written by | segments | indexes | shards |
//! |---|---|---|---|---|
//! | 1 | 03ea247 | FRAME and STORED records | none | 1 |
//! | 2 | 78c18ef | FRAMES records | none | 1 |
//! | 3 | 489c6c0 | STORED RUN records; `catalog.bin` | `TLMIDX02` (not read: built again) | 2 |
//! | 4 | b608eb4 | RECEIVED FRAMES records | `TLMIDX03` (read as it is) | 2 |
//! | 5 | 3eece79 | CLOCK records | `TLMIDX04` (read as it is) | 2 |

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use aggregator::archive::format;
use aggregator::SourceKind;
use common::process::Daemon;
use common::{Client, TempDir, PATIENCE};

/// The format versions earlier builds wrote, each with a fixture.
const VERSIONS: [u8; 5] = [1, 2, 3, 4, 5];

/// The fixture of format `version`, and what the build that wrote it listed of it.
fn fixture(version: u8) -> (PathBuf, String) {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/archive-v{version}"));
    let listed = std::fs::read_to_string(path.with_extension("inspect")).unwrap();
    (path, listed)
}

/// A copy of the fixture of format `version` in a directory of its own, removed at the end.
fn copy(name: &str, version: u8) -> TempDir {
    let dir = TempDir::new(&format!("archive-upgrade-{name}-v{version}"));
    copy_dir(&fixture(version).0, &dir.0.join("archive"));
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

/// The lines `inspect` lists of the fixture's own files (`listed`, the earlier build's listing,
/// has no others).
fn of_fixture_files<'a>(listing: &'a str, listed: &str) -> Vec<&'a str> {
    let files: Vec<String> = (listed.lines())
        .map(|line| line.split_whitespace().next().unwrap().to_owned())
        .collect();
    (listing.lines())
        .filter(|line| files.iter().any(|f| line.starts_with(&format!("{f} "))))
        .collect()
}

#[test]
fn every_earlier_archive_reads_as_it_did_every_frame() {
    for version in VERSIONS {
        let copy = copy("read", version);
        let archive = copy.0.join("archive");
        let (status, listing) = tool(&["inspect"], &archive);
        assert_eq!(status, 0, "v{version}: {listing}");
        let (_, listed) = fixture(version);
        assert!(
            listing == listed,
            "v{version}: today's build lists what the build that wrote it listed"
        );
        let (status, report) = tool(&["verify", "--strict"], &archive);
        assert_eq!(status, 0, "v{version}: {report}");
        let frames = listed.lines().filter(|l| l.contains(" frame ")).count();
        assert!(
            frames > 0 && report.contains(&format!(" frames={frames} ")),
            "{report}"
        );
        let (status, gaps) = tool(&["gaps", "--json"], &archive);
        assert_eq!(status, 0, "v{version}: {gaps}");
        let answer: serde_json::Value = serde_json::from_str(&gaps).unwrap();
        for source in answer["sources"].as_array().unwrap() {
            assert_eq!(
                source["gaps"],
                serde_json::json!([]),
                "v{version}: {answer:#}"
            );
        }
    }
}

/// The highest sequence of live uplink 0 in an `inspect` listing.
fn last_of_live_0(listed: &str) -> u64 {
    (listed.lines())
        .filter(|line| line.contains(" frame     live            0 "))
        .filter_map(|line| line.split(" seq=").nth(1)?.split(' ').next()?.parse().ok())
        .max()
        .unwrap()
}

#[tokio::test]
async fn todays_daemon_resumes_on_each_and_appends_in_a_segment_of_its_own() {
    for version in VERSIONS {
        resumes_and_appends(version).await;
    }
}

async fn resumes_and_appends(version: u8) {
    let copy = copy("append", version);
    let root = copy.0.join("archive");
    let (fixture, listed) = fixture(version);
    let shards = 1 + usize::from(fixture.join("shard-01").is_dir());
    let config = format!(
        "[uplink]\nlisten = \"127.0.0.1:0\"\n[replay]\nlisten = \"127.0.0.1:0\"\n\
         [monitor]\nlisten = \"127.0.0.1:0\"\n[runtime]\nshards = {shards}\n\
         [consumer]\nenabled = true\nlisten = \"127.0.0.1:0\"\n\
         [archive]\ndir = \"{}\"\nsegment_bytes = 4096\n",
        root.display()
    );
    // A start killed right after it began its own segment (SIGKILL, twice) leaves the earlier
    // files as they were and the next start goes on.
    for _ in 0..2 {
        let mut killed = Daemon::start_in(&copy.0, &config);
        killed.signal(libc::SIGKILL);
        killed.wait_exit(PATIENCE);
    }
    let mut daemon = Daemon::start_in(&copy.0, &config);
    // live:0 goes on after the last sequence the fixture holds of it.
    let last = last_of_live_0(&listed);
    let payloads: Vec<Vec<u8>> = (last + 1..last + 21)
        .map(|seq: u64| seq.to_be_bytes().to_vec())
        .collect();
    Client::store(
        daemon.uplink,
        SourceKind::LiveUplink,
        0,
        last + 1,
        &payloads,
    )
    .await;
    // The catalog the earlier build kept (from version 3 on: its second publication) is served.
    if fixture.join("catalog.bin").exists() {
        let (status, _, metrics) = common::http_get(daemon.monitor, "/metrics").await;
        assert_eq!(status, 200, "v{version}");
        let served = metrics.lines().any(|l| l == "aggregator_catalog_version 2");
        assert!(served, "v{version}: {metrics}");
    }
    // A follower from the oldest frame reads every earlier frame, then the new ones.
    let held = listed.lines().filter(|l| l.contains(" frame ")).count() + 20;
    let follow = daemon.consumer.expect("the follow listener").to_string();
    let limit = held.to_string();
    let tail = Command::new(env!("CARGO_BIN_EXE_aggregator"))
        .args([
            "tail", "--addr", &follow, "--from", "start", "--limit", &limit,
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&tail.stdout);
    // Frame lines, not the catalog's (`catalog version N published`).
    let followed = stdout
        .lines()
        .filter(|l| !l.starts_with("catalog "))
        .count();
    assert!(tail.status.success(), "v{version}: {tail:?}");
    assert_eq!(followed, held, "v{version}");
    daemon.signal(libc::SIGTERM);
    let (status, _) = daemon.wait_exit(PATIENCE);
    assert!(status.success(), "v{version}");

    // The earlier files are as the earlier build left them; a version 5 segment follows them.
    let dirs = [(root.clone(), fixture.clone())].into_iter();
    for (dir, fixture) in
        dirs.chain((shards > 1).then(|| (root.join("shard-01"), fixture.join("shard-01"))))
    {
        let segments = format::list_segments(&dir).unwrap();
        let earlier = format::list_segments(&fixture).unwrap();
        for (index, path) in &earlier {
            let before = std::fs::read(path).unwrap();
            let after = std::fs::read(dir.join(format::segment_name(*index))).unwrap();
            assert!(after == before, "v{version}: {} changed", path.display());
            // A `TLMIDX03` index is read as it is, not built again.
            let index_file = format::index::index_path(&fixture, *index);
            if let (4, Ok(before)) = (version, std::fs::read(&index_file)) {
                let after = std::fs::read(dir.join(index_file.file_name().unwrap())).unwrap();
                assert!(after == before, "{} changed", index_file.display());
            }
        }
        let (newest, path) = segments.last().unwrap();
        assert!(
            *newest > earlier.last().unwrap().0,
            "v{version}: a segment of its own"
        );
        assert_eq!(&std::fs::read(path).unwrap()[..8], b"TLMSEG06");
    }
    // Every frame the fixture held, and the new ones after them, once.
    let (status, listing) = tool(&["inspect"], &root);
    assert_eq!(status, 0, "v{version}: {listing}");
    assert_eq!(
        of_fixture_files(&listing, &listed),
        listed.lines().collect::<Vec<_>>(),
        "v{version}"
    );
    let (status, report) = tool(&["verify", "--strict"], &root);
    assert_eq!(status, 0, "v{version}: {report}");
    let (frames, last) = (last + 21, last + 20);
    assert!(
        report.contains(&format!("source live 0: frames={frames} "))
            && report.contains(&format!(" last={last} ")),
        "v{version}: {report}"
    );
}

/// Every file under `dir` but the locks (the tool takes them), with its bytes.
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        match (path.is_dir(), path.ends_with("LOCK")) {
            (true, _) => all.extend(files(&path)),
            (false, true) => {}
            (false, false) => all.push((path.clone(), std::fs::read(&path).unwrap())),
        }
    }
    all.sort();
    all
}

/// `archive upgrade --dry-run` changes nothing; `upgrade` leaves every segment as it was and
/// builds again, once, the indexes this build does not read (version 3's `TLMIDX02`) or that
/// were never written (before version 3, and each shard's newest segment).
#[test]
fn archive_upgrade_reads_each_through_and_makes_its_indexes_current() {
    for version in VERSIONS {
        let copy = copy("tool", version);
        let archive = copy.0.join("archive");
        let before = files(&archive);
        let frames = fixture(version)
            .1
            .lines()
            .filter(|l| l.contains(" frame "))
            .count();
        // Every segment but those with an index this build reads (`TLMIDX03` and `TLMIDX04`,
        // from version 4 on).
        let stale = (before.iter())
            .filter(|(p, _)| p.extension().is_some_and(|e| e == "seg"))
            .filter(|(p, _)| {
                let index = std::fs::read(p.with_extension("index")).unwrap_or_default();
                !(index.starts_with(b"TLMIDX03") || index.starts_with(b"TLMIDX04"))
            })
            .count();
        let (status, report) = tool(&["upgrade", "--dry-run"], &archive);
        assert_eq!(status, 0, "v{version}: {report}");
        let says = format!(" frames={frames} indexes={stale} damaged=0;");
        assert!(report.contains(&says), "v{version}: {report}");
        assert!(
            files(&archive) == before,
            "v{version}: a dry run changes nothing"
        );

        let (status, report) = tool(&["upgrade"], &archive);
        assert_eq!(status, 0, "v{version}: {report}");
        assert!(report.contains(&says), "v{version}: {report}");
        let segments = |files: Vec<(PathBuf, Vec<u8>)>| -> Vec<_> {
            let is_segment = |p: &Path| p.extension().is_some_and(|e| e == "seg");
            files.into_iter().filter(|(p, _)| is_segment(p)).collect()
        };
        assert!(segments(files(&archive)) == segments(before), "v{version}");
        let (_, again) = tool(&["upgrade"], &archive);
        assert!(
            again.contains(" indexes=0 damaged=0;"),
            "v{version}: {again}"
        );
    }
}
