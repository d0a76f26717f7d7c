//! Backfill through a link's spool directory: Kiruna loses a stretch of a pass live, then
//! uploads its recording of the whole pass. Exactly the packets the archive lacked are stored,
//! the gap closes, and the same recording dropped in again stores nothing. A file still being
//! written (`.part`) is left alone; an empty one goes to `failed/` with the reason. The same
//! through `aggregator backfill`, which uploads over the monitor and says what became of each
//! file.

mod common;

use common::backfill::{
    kiruna, kiruna_backfill, kiruna_spooled, recording, spooled, upload, wait_files,
};
use common::stations::{self, framed, framed_at};
use common::{TempDir, PATIENCE};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// A group reads its first packet of an APID one cycle up.
const UP: u64 = 16_384;

#[tokio::test]
async fn a_recording_fills_what_the_pass_lacked_exactly_once() {
    let (dir, spool) = spooled("backfill");
    // What an upload a killed daemon was receiving left behind: swept at the start.
    let stale = spool.join(".upload-999-0-pass.lp");
    std::fs::write(&stale, b"half an upload").unwrap();
    let followed =
        |config: &mut aggregator::Config| *config = common::with_followers(config.clone());
    let (daemon, monitor, stop) = kiruna_spooled(&dir.0, &spool, followed).await;
    // Live, Kiruna loses 50..=79 and everything after 99.
    let mut wire = TcpStream::connect(daemon.links["Kiruna"]).await.unwrap();
    for count in (0..50).chain(80..100) {
        wire.write_all(&framed(count, u64::from(count)))
            .await
            .unwrap();
    }
    let completeness = "/archive/completeness?source=live:10007";
    let held = || async move {
        let answer = common::http_get_json(monitor, completeness).await;
        answer["sources"][0]["held"].clone()
    };
    let live = json!([[UP, UP + 49], [UP + 80, UP + 99]]);
    common::wait_until_async("the live pass stored", PATIENCE, || async {
        held().await == live
    })
    .await;
    // Still being written: left alone.
    std::fs::write(spool.join("pass.kiss.part"), b"half a file").unwrap();
    upload(&spool, "pass-1.lp", &recording(0..120));
    let backfill = wait_files(monitor, 1, 0).await;
    assert_eq!(
        [&backfill["packets"], &backfill["stored"], &backfill["held"]],
        [&json!(120), &json!(50), &json!(70)],
        "{backfill}"
    );
    assert_eq!(held().await, json!([[UP, UP + 119]]));
    assert!(spool.join("done/pass-1.lp").is_file());
    // The report docs/http-api.md shows.
    let report = common::http_get_json(monitor, "/links/Kiruna/spool/pass-1.lp").await;
    let imported = json!({"bytes": 14160, "packets": 120, "stored": 50, "held": 70,
        "unplaced": 0, "damaged_ranges": 0, "damaged_bytes": 0, "rejected": 0});
    let done =
        json!({"state": "done", "imported": imported, "reason": null, "moved_to": "pass-1.lp"});
    assert_eq!(report, done);
    each_frame_names_where_it_came_from(&daemon, monitor).await;
    assert!(!stale.exists(), "a stale upload is swept");
    assert!(
        spool.join("pass.kiss.part").is_file(),
        "a file being written is left alone"
    );
    // The same recording again, garbage, and an empty file: nothing stored twice, the garbage
    // counted as damage, the empty file refused.
    upload(&spool, "pass-2.lp", &recording(0..120));
    upload(&spool, "pass-3.lp", &[]);
    upload(
        &spool,
        "pass-4.lp",
        b"\xFF\xFF\xFF\xFF not a recording of this link",
    );
    let backfill = wait_files(monitor, 3, 1).await;
    assert_eq!(
        [
            &backfill["stored"],
            &backfill["held"],
            &backfill["damaged_ranges"]
        ],
        [&json!(50), &json!(190), &json!(1)],
        "{backfill}"
    );
    assert_eq!(held().await, json!([[UP, UP + 119]]));
    let why = std::fs::read_to_string(spool.join("failed/pass-3.lp.txt")).unwrap();
    assert!(why.contains("pass-3.lp is empty"), "{why}");
    let report = common::http_get_json(monitor, "/links/Kiruna/spool/pass-3.lp").await;
    assert_eq!(
        (&report["state"], &report["reason"]),
        (&json!("failed"), &json!(why.trim()))
    );
    assert!(spool.join("failed/pass-3.lp").is_file());
    drop(wire);
    stop.cancel();
    let report = daemon.shutdown_clean().await;
    assert_eq!(report.archived, 120, "{report:?}");
}

/// The pass's packets by the recording their reception names, as a follower (`aggregator tail`)
/// and an export (`/archive/frames`) show them: the 50 the recording filled name it, the 70 the
/// link delivered live none; every one is Kiruna's.
async fn each_frame_names_where_it_came_from(
    daemon: &common::TestDaemon,
    monitor: std::net::SocketAddr,
) {
    let follow = daemon.follow().to_string();
    let args = ["tail", "--json", "--limit", "120", "--addr", &follow];
    let (status, tail, err) = aggregator(args.map(str::to_owned).to_vec()).await;
    assert_eq!(status, 0, "{err}");
    let path = "/archive/frames?format=ndjson&source=live:10007";
    let (status, _, export) = common::http_get(monitor, path).await;
    assert_eq!(status, 200, "{export}");
    let filled: Vec<u64> = (UP + 50..UP + 80).chain(UP + 100..UP + 120).collect();
    for rows in [tail, common::dechunked(&export)] {
        let mut named = std::collections::BTreeMap::<Option<String>, Vec<u64>>::new();
        for row in rows.lines() {
            let row: serde_json::Value = serde_json::from_str(row).unwrap();
            assert_eq!(row["station"], "Kiruna", "{row}");
            let sequence = row["sequence"].as_u64().unwrap();
            let recording = row["recording"].as_str().map(str::to_string);
            named.entry(recording).or_default().push(sequence);
        }
        assert_eq!(named.len(), 2, "{named:?}");
        assert_eq!(named[&Some("pass-1.lp".into())], filled);
        assert_eq!(named[&None].len(), 70);
    }
    // In CSV, the last column.
    let path = "/archive/frames?format=csv&source=live:10007";
    let (status, _, csv) = common::http_get(monitor, path).await;
    assert_eq!(status, 200, "{csv}");
    let csv = common::dechunked(&csv);
    assert!(csv.starts_with("received,") && csv.lines().next().unwrap().ends_with(",recording"));
    let recorded = csv.lines().filter(|l| l.ends_with(",pass-1.lp")).count();
    assert_eq!((recorded, csv.lines().count()), (50, 121), "{csv}");
}

/// `aggregator` with `args`, run beside the daemon: its exit status, standard output and standard
/// error.
async fn aggregator(args: Vec<String>) -> (i32, String, String) {
    let run = move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_aggregator"))
            .args(args)
            .output()
            .expect("run aggregator")
    };
    let output = tokio::task::spawn_blocking(run).await.unwrap();
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (
        output.status.code().unwrap_or(-1),
        text(&output.stdout),
        text(&output.stderr),
    )
}

#[tokio::test]
async fn aggregator_backfill_uploads_a_recording_and_reports_it_durable() {
    let (dir, spool) = spooled("backfill-cli");
    let (daemon, monitor, stop) = kiruna_spooled(&dir.0, &spool, |_| ()).await;
    let wire = kiruna_live(&daemon, monitor, 0..40).await;
    let file = dir.0.join("kiruna pass.lp");
    std::fs::write(&file, recording(0..100)).unwrap();
    let args = |link: &str| {
        let link = ["backfill", "--link", link, "--addr", &monitor.to_string()].map(str::to_owned);
        link.into_iter()
            .chain([file.display().to_string()])
            .collect::<Vec<_>>()
    };
    let (status, out, err) = aggregator(args("Kiruna")).await;
    assert_eq!(status, 0, "{out}{err}");
    let summary = "durable: packets 100, stored 60, already held 40, unplaced 0, damaged ranges 0";
    assert!(out.contains(summary), "{out}");
    assert!(spool.join("done/kiruna pass.lp").is_file());
    // Again: nothing stored, and the first upload's file kept beside it.
    let (status, out, _) = aggregator(args("Kiruna")).await;
    assert_eq!(status, 0);
    assert!(out.contains("stored 0, already held 100"), "{out}");
    assert!(spool.join("done/kiruna pass.lp.1").is_file());
    // A link without a spool: refused, with the reason.
    let (status, _, err) = aggregator(args("Svalbard")).await;
    assert_eq!(status, 2);
    assert!(
        err.contains("no link \"Svalbard\" has a spool_dir"),
        "{err}"
    );
    drop(wire);
    stop.cancel();
    let report = daemon.shutdown_clean().await;
    assert_eq!(report.archived, 100, "{report:?}");
}

/// Where the archive keeps no files, nothing could tell what it holds: the spool is not
/// watched, and an upload is refused with the reason, not taken to wait for ever.
#[tokio::test]
async fn an_upload_where_the_archive_keeps_no_files_is_refused() {
    let count = |config: &mut aggregator::Config| {
        config.archive.kind = aggregator::config::ArchiveKind::Count;
    };
    let err = refused_upload("backfill-count", count).await;
    let why = "the spool_dir of link \"Kiruna\" is not watched: the daemon keeps no archive files";
    assert!(err.contains(why), "{err}");
}

/// An upload never takes the free space the archive's retention keeps: past it, it is refused
/// (507, with the reason), and nothing is left in the spool.
#[tokio::test]
async fn an_upload_that_would_take_the_archive_s_free_space_is_refused() {
    let reserve = |config: &mut aggregator::Config| {
        config.archive.retention.min_free_bytes = Some(u64::MAX / 2);
    };
    let err = refused_upload("backfill-full", reserve).await;
    assert!(err.contains("507"), "{err}");
    let why = "bytes free (archive.retention.min_free_bytes";
    assert!(err.contains(why), "{err}");
}

/// `aggregator backfill` of a recording to Kiruna's spool, on a daemon `configured` so, which
/// must refuse it (exit status 2) and leave nothing in the spool: what it says.
async fn refused_upload(name: &str, configured: impl FnOnce(&mut aggregator::Config)) -> String {
    let (dir, spool) = spooled(name);
    let (daemon, monitor, stop) = kiruna_spooled(&dir.0, &spool, configured).await;
    let file = dir.0.join("pass.lp");
    std::fs::write(&file, recording(0..10)).unwrap();
    let args = [
        "backfill",
        "--link",
        "Kiruna",
        "--addr",
        &monitor.to_string(),
    ];
    let args = (args.into_iter().map(str::to_owned))
        .chain([file.display().to_string()])
        .collect();
    let (status, out, err) = aggregator(args).await;
    assert_eq!(status, 2, "{out}{err}");
    assert_eq!(
        std::fs::read_dir(&spool).unwrap().count(),
        0,
        "nothing left in the spool"
    );
    stop.cancel();
    daemon.shutdown_clean().await;
    err
}

/// Kiruna's connection, once the packets of `counts` it sent live are stored.
async fn kiruna_live(
    daemon: &common::TestDaemon,
    monitor: std::net::SocketAddr,
    counts: std::ops::Range<u16>,
) -> TcpStream {
    let mut wire = TcpStream::connect(daemon.links["Kiruna"]).await.unwrap();
    for count in counts.clone() {
        wire.write_all(&framed(count, u64::from(count)))
            .await
            .unwrap();
    }
    common::wait_until_async("the live pass stored", PATIENCE, || async {
        kiruna_packets(monitor).await == counts.len() as u64
    })
    .await;
    wire
}

/// Kiruna's packets stored live, on `/stats`.
async fn kiruna_packets(monitor: std::net::SocketAddr) -> u64 {
    kiruna(monitor).await["packets"]
        .as_u64()
        .unwrap_or_default()
}

/// A spool that cannot be read is reported and watched until it can; a gzip recording cut short
/// stores what it held before the cut and goes to `failed/` with the reason; the spool goes on.
#[tokio::test]
async fn bad_recordings_and_a_missing_spool_cost_only_themselves() {
    use std::io::Write;
    let dir = TempDir::new("backfill-bad");
    let spool = dir.0.join("spool");
    let (daemon, monitor, stop) = kiruna_spooled(&dir.0, &spool, |_| ()).await;
    let unreadable =
        |is: bool| async move { kiruna_backfill(monitor).await["spool_unreadable"] == is };
    common::wait_until_async("the missing spool reported", PATIENCE, || unreadable(true)).await;
    std::fs::create_dir_all(&spool).unwrap();
    common::wait_until_async("the spool read again", PATIENCE, || unreadable(false)).await;
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gzip.write_all(&recording(0..60)).unwrap();
    let gzip = gzip.finish().unwrap();
    upload(&spool, "cut.lp.gz", &gzip[..gzip.len() * 2 / 3]);
    let backfill = wait_files(monitor, 0, 1).await;
    let stored = backfill["stored"].as_u64().unwrap();
    assert!((1..60).contains(&stored), "{backfill}");
    let completeness = "/archive/completeness?source=live:10007";
    let held = common::http_get_json(monitor, completeness).await;
    assert_eq!(held["sources"][0]["held"], json!([[UP, UP + stored - 1]]));
    let why = std::fs::read_to_string(spool.join("failed/cut.lp.gz.txt")).unwrap();
    assert!(
        why.contains("cannot read") && why.contains("cut.lp.gz"),
        "{why}"
    );
    // The whole pass after it, with a frame that is no packet: the rest stored, the frame
    // rejected by the link's checks and counted as the file's, not as the station's live input.
    let mut whole = recording(0..30);
    whole.extend_from_slice(&[0, 0, 0, 5]);
    whole.extend_from_slice(&[0; 8]);
    whole.extend_from_slice(b"12345");
    whole.extend_from_slice(&recording(30..60));
    upload(&spool, "whole.lp", &whole);
    let backfill = wait_files(monitor, 1, 1).await;
    assert_eq!(
        [&backfill["stored"], &backfill["rejected"]],
        [&json!(60), &json!(1)],
        "{backfill}"
    );
    assert_eq!(kiruna(monitor).await["bad_input"], json!(0));
    stop.cancel();
    assert_eq!(daemon.shutdown_clean().await.archived, 60);
}

/// A recording of a stretch no station delivered, from an hour before the live pass (the
/// cycle before its counts): placed below the live counts by its earth times, never on the
/// counts the live station goes on with, which then all arrive and are stored.
#[tokio::test]
async fn a_stretch_older_than_the_live_pass_goes_below_its_counts() {
    let (dir, spool) = spooled("backfill-older");
    let (daemon, monitor, stop) = kiruna_spooled(&dir.0, &spool, |_| ()).await;
    let now_ms =
        aggregator::domain::units::unix_ns(std::time::SystemTime::now()).unwrap() / 1_000_000;
    let mut wire = TcpStream::connect(daemon.links["Kiruna"]).await.unwrap();
    for count in 0..100 {
        wire.write_all(&framed_at(count, now_ms)).await.unwrap();
    }
    common::wait_until_async("the live pass stored", PATIENCE, || async {
        kiruna_packets(monitor).await == 100
    })
    .await;
    let hour_ago = now_ms - 3_600_000;
    let older: Vec<u8> = (16_300..16_384)
        .flat_map(|count| framed_at(count, hour_ago))
        .collect();
    upload(&spool, "older.lp", &older);
    let backfill = wait_files(monitor, 1, 0).await;
    assert_eq!(backfill["stored"], json!(84), "{backfill}");
    for count in 100..200 {
        wire.write_all(&framed_at(count, now_ms)).await.unwrap();
    }
    let completeness = || common::http_get_json(monitor, "/archive/completeness?source=live:10007");
    common::wait_until_async("the live pass goes on", PATIENCE, || async {
        completeness().await["sources"][0]["last"] == json!(UP + 199)
    })
    .await;
    let answer = completeness().await;
    let source = &answer["sources"][0];
    assert_eq!(source["held"], json!([[16_300, UP + 199]]), "{answer}");
    assert_eq!(source["frames"], json!(284), "each count once: {answer}");
    drop(wire);
    stop.cancel();
    assert_eq!(daemon.shutdown_clean().await.archived, 284);
}

/// Both stations of the group upload their recording of one pass at once: the group imports one
/// file at a time, so the second finds the first's packets held and the pass is stored once.
#[tokio::test]
async fn two_stations_recordings_of_one_pass_store_it_once() {
    let (dir, spool) = spooled("backfill-two");
    let other = dir.0.join("spool-svalbard");
    std::fs::create_dir_all(&other).unwrap();
    let spools = |config: &mut aggregator::Config| {
        for link in &mut config.links {
            link.spool_dir = Some(match link.name.as_str() {
                "Kiruna" => spool.clone(),
                _ => other.clone(),
            });
        }
    };
    let (daemon, monitor, stop, _) = stations::start(&dir.0, spools).await;
    upload(&spool, "pass.lp", &recording(0..2000));
    upload(&other, "pass.lp", &recording(0..2000));
    let both_done = || async move {
        let stats = common::http_get_json(monitor, "/stats").await;
        let links = stats["links"].as_array().cloned().unwrap_or_default();
        let done = links
            .iter()
            .filter(|l| l["backfill"]["files_done"] == 1)
            .count();
        (done == 2).then(|| {
            links
                .iter()
                .map(|l| l["backfill"]["stored"].as_u64().unwrap())
                .sum::<u64>()
        })
    };
    common::wait_until_async("both recordings imported", PATIENCE, || async {
        both_done().await.is_some()
    })
    .await;
    let stored = both_done().await;
    assert_eq!(stored, Some(2000));
    stop.cancel();
    assert_eq!(daemon.shutdown_clean().await.archived, 2000);
}

/// A backfill's packets are the file's, not the station's: the `last_seen` a restart reads from
/// the archive is the station's last live packet, not the import's later time.
#[tokio::test]
async fn last_seen_after_a_restart_is_the_live_packets() {
    let (dir, spool) = spooled("backfill-last-seen");
    let (daemon, monitor, stop) = kiruna_spooled(&dir.0, &spool, |_| ()).await;
    let wire = kiruna_live(&daemon, monitor, 0..40).await;
    let live = kiruna(monitor).await["last_seen"].clone();
    upload(&spool, "pass.lp", &recording(0..100));
    assert_eq!(wait_files(monitor, 1, 0).await["stored"], json!(60));
    drop(wire);
    stop.cancel();
    assert_eq!(daemon.shutdown_clean().await.archived, 100);

    let (daemon, monitor, stop) = kiruna_spooled(&dir.0, &spool, |_| ()).await;
    let read = || async move { !kiruna(monitor).await["last_seen"].is_null() };
    common::wait_until_async("last_seen read from the archive", PATIENCE, read).await;
    assert_eq!(kiruna(monitor).await["last_seen"], live);
    stop.cancel();
    assert!(daemon.shutdown().await.is_clean());
}
