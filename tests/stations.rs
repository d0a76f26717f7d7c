//! Whether each station (a `[[links]]` entry) is alive, as an operator reads it on `/stats` and
//! `/metrics`: a station that sent and then went away shows `disconnected` with the time of its
//! last packet, also after the daemon's restart; a connected one that stopped sending shows
//! `quiet`.

mod common;

use std::path::Path;

use aggregator::domain::clock::ArchiveClock;
use aggregator::domain::display::unix_ns_to_rfc3339;
use aggregator::protocol::ccsds::PrimaryHeader;
use aggregator::stats::{LinkState, StationState};
use aggregator::Config;
use common::{
    archive_config, http_get, http_get_json, start_monitored, test_config, wait_until, Archive,
    TempDir, TestDaemon, PATIENCE,
};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Two tcp-listen links: "gs" with the default quiet bound, "slow" quiet after 1 ms.
fn two_stations() -> Config {
    let link = |name: &str, source: u32, extra: &str| {
        format!(
            "[[links]]\nname = \"{name}\"\ntransport = \"tcp-listen\"\naddress = \"127.0.0.1:0\"\n\
             framing = \"ccsds\"\nsource_id = {source}\n{extra}\n"
        )
    };
    let toml = [link("gs", 500, ""), link("slow", 600, "quiet_after_ms = 1")].concat();
    let parsed = Config::parse(&toml, Path::new("stations.toml")).expect("valid [[links]]");
    let mut config = test_config();
    config.links = parsed.links;
    config
}

fn packets(apid: u16, counts: std::ops::Range<u16>) -> Vec<u8> {
    let mut wire = Vec::new();
    for count in counts {
        wire.extend_from_slice(&PrimaryHeader::telemetry(apid, count, 10).encode());
        wire.extend_from_slice(b"0123456789");
    }
    wire
}

/// The value of the `/metrics` line `series` (the name with its labels).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn a_station_that_sent_and_left_shows_disconnected_with_its_last_packet() {
    let (archive, sink) = Archive::open();
    let (daemon, monitor, stop) = start_monitored(two_stations(), sink).await;
    let stats = daemon.stats.clone();
    let json = http_get_json(monitor, "/stats").await;
    assert_eq!(json["links"][0]["station_state"], "disconnected");
    assert_eq!(json["links"][0]["last_seen"], serde_json::Value::Null);

    let before = ArchiveClock::process().now();
    let mut gs = TcpStream::connect(daemon.links["gs"]).await.unwrap();
    gs.write_all(&packets(1, 0..3)).await.unwrap();
    let mut slow = TcpStream::connect(daemon.links["slow"]).await.unwrap();
    slow.write_all(&packets(2, 0..1)).await.unwrap();
    wait_until("4 packets stored", PATIENCE, || archive.len() >= 4).await;
    let after = ArchiveClock::process().now();
    assert_eq!(stats.links()[0].station_state, StationState::Receiving);
    wait_until("the slow station quiet", PATIENCE, || {
        stats.links()[1].station_state == StationState::Quiet
    })
    .await;

    drop(gs);
    wait_until("the station gone", PATIENCE, || {
        stats.links()[0].state == LinkState::Listening
    })
    .await;
    let last_seen = stats.links()[0].last_seen.expect("a packet came");
    assert!((before..=after).contains(&last_seen), "{last_seen}");
    let json = http_get_json(monitor, "/stats").await;
    let gs_json = &json["links"][0];
    assert_eq!(gs_json["station_state"], "disconnected", "{gs_json}");
    assert_eq!(gs_json["last_seen"], unix_ns_to_rfc3339(last_seen).as_str());
    let pass = serde_json::json!({
        "passes": 1, "incomplete": 0, "received": 3, "missed": 0, "ongoing": true
    });
    assert_eq!(
        gs_json["pass"], pass,
        "one pass, within archive.pass_gap_ms"
    );
    assert_eq!(json["links"][1]["station_state"], "quiet");

    let (status, _, metrics) = http_get(monitor, "/metrics").await;
    assert_eq!(status, 200);
    let seen = sample(
        &metrics,
        "aggregator_link_last_frame_timestamp_seconds{link=\"gs\"}",
    )
    .expect("the last packet's time");
    assert!((seen - last_seen as f64 / 1e9).abs() < 1e-3, "{seen}");
    let state = |link: &str, state: &str| {
        let series = format!("aggregator_link_station_state{{link=\"{link}\",state=\"{state}\"}}");
        sample(&metrics, &series)
    };
    assert_eq!(state("gs", "disconnected"), Some(1.0));
    assert_eq!(state("gs", "receiving"), Some(0.0));
    assert_eq!(state("slow", "quiet"), Some(1.0));
    let passes = sample(&metrics, "aggregator_link_passes_total{link=\"gs\"}");
    assert_eq!(passes, Some(1.0));
    stop.cancel();
    assert!(daemon.shutdown().await.is_clean());
}

/// A station that sent before the daemon stopped is not new after its restart: its `last_seen`
/// is the time of its newest packet in the archive, and it shows `disconnected`, not never seen.
/// Small segments: each station's packets are in a sealed segment of their own, found through
/// its index.
#[tokio::test]
async fn last_seen_outlives_a_restart_of_the_daemon() {
    let dir = TempDir::new("stations-restart");
    let mut config = archive_config(&dir.0);
    config.archive.segment_bytes = 4096;
    config.links = two_stations().links;

    let daemon = TestDaemon::open(config.clone()).await;
    let mut heard = Vec::new();
    for (i, link) in ["gs", "slow"].into_iter().enumerate() {
        let mut station = TcpStream::connect(daemon.links[link]).await.unwrap();
        station.write_all(&packets(1, 0..300)).await.unwrap();
        daemon.wait_archived(300 * (i as u64 + 1)).await;
        heard.push(daemon.stats.links()[i].last_seen.expect("packets came"));
    }
    assert!(daemon.shutdown().await.is_clean());
    let files = std::fs::read_dir(&dir.0).unwrap().flatten();
    let sealed = files
        .filter(|e| e.file_name().to_string_lossy().ends_with(".index"))
        .count();
    assert!(
        sealed >= 2,
        "{sealed} sealed: each station's packets in a segment of its own"
    );

    let daemon = TestDaemon::open(config).await;
    let stats = daemon.stats.clone();
    wait_until("last_seen read from the archive", PATIENCE, || {
        let links = stats.links();
        links.len() == 2 && links.iter().all(|link| link.last_seen.is_some())
    })
    .await;
    let links = stats.links();
    assert_eq!(links[0].last_seen, Some(heard[0]));
    assert_eq!(links[1].last_seen, Some(heard[1]));
    assert_eq!(links[0].station_state, StationState::Disconnected);
    // Back after the restart: the daemon's downtime is no silence of the station's.
    let mut gs = TcpStream::connect(daemon.links["gs"]).await.unwrap();
    gs.write_all(&packets(1, 300..301)).await.unwrap();
    daemon.wait_archived(1).await;
    let back = &stats.links()[0];
    assert!(back.last_seen > Some(heard[0]));
    assert_eq!(back.longest_silence_ns, 0, "one packet since the start");
    assert!(daemon.shutdown().await.is_clean());
}

/// A station that stays connected between two passes: the counts the spacecraft went on through
/// while out of view are no gap of the second pass, which is whole; a count lost within it is.
#[tokio::test]
async fn the_counts_between_two_passes_are_not_the_second_pass_s_gaps() {
    let (_archive, sink) = Archive::open();
    let mut config = two_stations();
    config.archive.pass_gap = std::time::Duration::from_secs(1);
    let daemon = TestDaemon::start(config, sink).await;
    let stats = daemon.stats.clone();
    let gs = || stats.links()[0].clone();
    let mut station = TcpStream::connect(daemon.links["gs"]).await.unwrap();
    station.write_all(&packets(1, 0..3)).await.unwrap();
    wait_until("the first pass stored", PATIENCE, || gs().packets == 3).await;
    // A reading past the gap's silence ends the pass.
    wait_until("the first pass ended", PATIENCE, || !gs().pass.ongoing).await;
    station.write_all(&packets(1, 500..503)).await.unwrap();
    wait_until("the second pass stored", PATIENCE, || gs().packets == 6).await;
    let second = gs();
    assert_eq!((second.pass.passes, second.pass.received), (2, 3));
    assert_eq!(
        (second.pass.missed, second.gaps, second.pass.incomplete),
        (0, 0, 0)
    );
    station.write_all(&packets(1, 504..506)).await.unwrap();
    wait_until("a gap within the pass counted", PATIENCE, || {
        gs().packets == 8
    })
    .await;
    assert_eq!(
        (gs().pass.missed, gs().gaps),
        (1, 1),
        "count 503 lost within the pass"
    );
    assert!(daemon.shutdown().await.is_clean());
}
