//! The live feed, `GET /feed`, over loopback with a real WebSocket client: frames arrive filtered,
//! sampled and encoded as `docs/protocol.md` says; a subscriber that falls behind is told exactly
//! how many frames it missed while the archive still gets every frame; one that never reads is
//! disconnected; bad requests are refused with the reason; the drain closes the feed.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use aggregator::protocol::ccsds::PrimaryHeader;
use aggregator::protocol::ingest::encode_data;
use aggregator::{Config, Priority, SourceKind};
use bytes::BytesMut;
use common::{payload_for, wait_until, Archive, Client, TestDaemon, PATIENCE};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A daemon with the monitor served beside it.
async fn start(config: Config) -> (TestDaemon, Archive, SocketAddr, CancellationToken) {
    let (archive, sink) = Archive::open();
    let (daemon, addr, stop) = common::start_monitored(config, sink).await;
    (daemon, archive, addr, stop)
}

async fn subscribe(addr: SocketAddr, query: &str) -> Socket {
    let (socket, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/feed{query}"))
        .await
        .expect("the feed upgrades");
    socket
}

/// The next JSON message; panics on anything else.
async fn next_json(socket: &mut Socket) -> serde_json::Value {
    let message = tokio::time::timeout(PATIENCE, socket.next())
        .await
        .expect("a message in time")
        .expect("the feed is open")
        .expect("a good message");
    match message {
        Message::Text(text) => serde_json::from_str(&text).expect("one JSON object"),
        other => panic!("expected a text message, got {other:?}"),
    }
}

/// The close frame the daemon sends: (code, reason).
async fn expect_close(socket: &mut Socket) -> (u16, String) {
    loop {
        let message = tokio::time::timeout(PATIENCE, socket.next())
            .await
            .expect("a close frame in time")
            .expect("a close frame before the end")
            .expect("a good message");
        if let Message::Close(frame) = message {
            let frame = frame.expect("a close frame with a code and a reason");
            return (u16::from(frame.code), frame.reason.to_string());
        }
    }
}

fn seq(message: &serde_json::Value) -> u64 {
    message["seq"].as_u64().expect("a frame message")
}

fn stats(daemon: &TestDaemon) -> aggregator::PipelineStats {
    daemon.stats.snapshot()
}

#[tokio::test]
async fn frames_arrive_filtered_and_encoded_with_their_times() {
    let (daemon, _archive, addr, _stop) = start(common::test_config()).await;
    let mut feed = subscribe(addr, "?source=live:7&encoding=hex").await;
    let mut wanted = Client::source(daemon.uplink, SourceKind::LiveUplink, 7).await;
    let mut other = Client::source(daemon.uplink, SourceKind::LiveUplink, 8).await;
    other.send_routine(0..50).await;
    let frames = |n| {
        (0..n).map(|s| {
            (
                if s % 10 == 3 {
                    Priority::Emergency
                } else {
                    Priority::Routine
                },
                s,
            )
        })
    };
    wanted.send_frames(frames(100)).await;

    let mut routine = Vec::new();
    let mut emergency = Vec::new();
    for _ in 0..100 {
        let m = next_json(&mut feed).await;
        assert_eq!(m["kind"], "live");
        assert_eq!(m["source"], "live:7", "only the source asked for: {m}");
        let seq = seq(&m);
        assert_eq!(m["payload"], hex(&payload_for(seq)));
        assert_eq!(m["payload_len"], 8);
        let received = humantime::parse_rfc3339(m["received"].as_str().unwrap()).unwrap();
        let processed = humantime::parse_rfc3339(m["processed"].as_str().unwrap()).unwrap();
        assert!(processed >= received, "{m}");
        match m["priority"].as_str() {
            Some("emergency") => emergency.push(seq),
            Some("routine") => routine.push(seq),
            other => panic!("priority {other:?}"),
        }
    }
    assert_eq!(
        emergency,
        (0..100).filter(|s| s % 10 == 3).collect::<Vec<_>>()
    );
    assert_eq!(
        routine,
        (0..100).filter(|s| s % 10 != 3).collect::<Vec<_>>()
    );
    let s = stats(&daemon);
    assert_eq!(s.feed_subscribers, 1);
    assert_eq!(s.feed_frames_sent, 100, "{s:?}");
    assert_eq!(s.feed_frames_skipped, 0);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A ground-segment link's frame carries its reception: link, station and mode; nothing the
/// station did not say (docs/http-api.md).
#[tokio::test]
async fn a_links_frames_carry_their_reception() {
    let links = "[[links]]\nname = \"gs\"\ntransport = \"udp\"\naddress = \"127.0.0.1:0\"\n\
                 framing = \"ccsds\"\nsource_id = 900\nstation = \"Kiruna\"\nplayback = true\n";
    let mut config = common::test_config();
    config.links = Config::parse(links, std::path::Path::new("feed.toml"))
        .unwrap()
        .links;
    let (daemon, _archive, addr, _stop) = start(config).await;
    let mut feed = subscribe(addr, "").await;
    let mut packet = PrimaryHeader::telemetry(5, 0, 4).encode().to_vec();
    packet.extend_from_slice(b"TEMP");
    let sender = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sender.send_to(&packet, daemon.links["gs"]).await.unwrap();
    let m = next_json(&mut feed).await;
    assert_eq!(m["source"], "live:900", "{m}");
    assert_eq!(
        (&m["link"], &m["station"], &m["mode"]),
        (&"gs".into(), &"Kiruna".into(), &"playback".into())
    );
    for unknown in ["earth_received", "ax25_from", "ax25_to"] {
        assert!(m.get(unknown).is_none(), "{unknown}: {m}");
    }
}

#[tokio::test]
async fn priority_filter_and_sampling_keep_every_emergency() {
    let (daemon, _archive, addr, _stop) = start(common::test_config()).await;
    let mut emergencies = subscribe(addr, "?priority=emergency").await;
    let mut sampled = subscribe(addr, "?sample=10").await;
    let replay = daemon.addr(SourceKind::ArchivedReplay);
    let mut client = Client::source(replay, SourceKind::ArchivedReplay, 2).await;
    let is_emergency = |s: u64| s % 25 == 24;
    client
        .send_frames((0..200).map(|s| {
            let p = if is_emergency(s) {
                Priority::Emergency
            } else {
                Priority::Routine
            };
            (p, s)
        }))
        .await;

    let expected: Vec<u64> = (0..200).filter(|s| is_emergency(*s)).collect();
    let mut got = Vec::new();
    for _ in 0..expected.len() {
        let m = next_json(&mut emergencies).await;
        assert_eq!(
            (m["priority"].as_str(), m["source"].as_str()),
            (Some("emergency"), Some("replay:2"))
        );
        got.push(seq(&m));
    }
    assert_eq!(got, expected);

    // Every 10th routine frame (the 1st, 11th, ...) and every emergency.
    let routine: Vec<u64> = (0..200).filter(|s| !is_emergency(*s)).collect();
    let mut expected: Vec<u64> = routine.iter().copied().step_by(10).collect();
    expected.extend((0..200).filter(|s| is_emergency(*s)));
    expected.sort_unstable();
    let mut got = Vec::new();
    for _ in 0..expected.len() {
        got.push(seq(&next_json(&mut sampled).await));
    }
    got.sort_unstable();
    assert_eq!(got, expected);
}

/// Frames of `payload` bytes, sent as one write.
fn big_frames(sequences: std::ops::Range<u64>, payload: usize) -> BytesMut {
    let mut out = BytesMut::new();
    for s in sequences {
        encode_data(
            &mut out,
            Priority::Routine,
            s,
            &vec![(s % 251) as u8; payload],
        );
    }
    out
}

#[tokio::test]
async fn a_subscriber_that_falls_behind_is_told_how_many_frames_it_missed() {
    const FRAMES: u64 = 40_000;
    let mut config = common::test_config();
    config.connection.read_buffer = 16 << 10;
    config.feed.queue_bytes = 64 << 10;
    config.feed.max_frames_per_sec = u32::MAX;
    config.feed.send_timeout = Duration::from_secs(60);
    let (daemon, archive, addr, _stop) = start(config).await;
    let mut feed = subscribe(addr, "").await;
    let mut client = Client::source(daemon.uplink, SourceKind::LiveUplink, 1).await;
    // 40 MB of JSON: far more than the socket buffers and the subscriber's queue hold.
    client.send_raw(&big_frames(0..FRAMES, 1000)).await;
    wait_until("the archive has every frame", PATIENCE, || {
        archive.len() as u64 == FRAMES
    })
    .await;

    // Only now does the subscriber read: gaps, then the newest frames, in order.
    let (mut received, mut missed, mut last) = (0u64, 0u64, None::<u64>);
    while received + missed < FRAMES {
        let m = next_json(&mut feed).await;
        if let Some(gap) = m["gap"].as_u64() {
            assert!(gap > 0);
            missed += gap;
            continue;
        }
        let seq = seq(&m);
        assert!(
            last.is_none_or(|l| seq > l),
            "in order: {seq} after {last:?}"
        );
        assert_eq!(m["payload_len"], 1000);
        last = Some(seq);
        received += 1;
    }
    assert_eq!(last, Some(FRAMES - 1), "the newest frame arrives");
    assert!(missed > 0, "the subscriber fell behind");
    assert_eq!(
        received + missed,
        FRAMES,
        "every frame is either sent or counted in a gap"
    );
    let s = stats(&daemon);
    assert_eq!(s.feed_frames_skipped, missed, "{s:?}");
    assert_eq!(
        s.frames_archived, FRAMES,
        "the archive was not slowed into losing anything"
    );
}

#[tokio::test]
async fn the_rate_budget_skips_routine_frames_but_not_the_emergencies_own() {
    let mut config = common::test_config();
    config.feed.max_frames_per_sec = 100;
    let (daemon, archive, addr, _stop) = start(config).await;
    let mut feed = subscribe(addr, "").await;
    let mut client = Client::source(daemon.uplink, SourceKind::LiveUplink, 5).await;
    client.send_routine(0..1000).await;
    wait_until("the archive has every frame", PATIENCE, || {
        archive.len() == 1000
    })
    .await;
    // The skipped frames are reported before the next frame sent: this emergency.
    client.send_frames([(Priority::Emergency, 1000)]).await;

    let (mut routine, mut missed) = (0u64, 0u64);
    loop {
        let m = next_json(&mut feed).await;
        if let Some(gap) = m["gap"].as_u64() {
            missed += gap;
        } else if m["priority"] == "emergency" {
            assert_eq!(seq(&m), 1000);
            break;
        } else {
            routine += 1;
        }
    }
    assert_eq!(
        routine + missed,
        1000,
        "every routine frame sent or reported missed"
    );
    assert!(
        (100..1000).contains(&routine),
        "a second's budget at once, then 100 a second: {routine} sent"
    );
    assert_eq!(stats(&daemon).feed_frames_skipped, missed);
}

#[tokio::test]
async fn a_subscriber_that_never_reads_is_disconnected_and_frees_its_slot() {
    let mut config = common::test_config();
    config.connection.read_buffer = 16 << 10;
    config.feed.queue_bytes = 64 << 10;
    config.feed.max_subscribers = 1;
    config.feed.send_timeout = Duration::from_millis(200);
    let (daemon, archive, addr, _stop) = start(config).await;
    let _stuck = subscribe(addr, "").await;
    let mut client = Client::source(daemon.uplink, SourceKind::LiveUplink, 1).await;
    let mut next = 0;
    // Frames keep flowing until the stuck subscriber's socket is full and it is cut off.
    wait_until_async_sending(&daemon, &mut client, &mut next).await;
    wait_until("the archive has every frame", PATIENCE, || {
        archive.len() as u64 == next
    })
    .await;
    let mut fresh = subscribe(addr, "").await;
    client.send_raw(&big_frames(next..next + 1, 10)).await;
    assert_eq!(seq(&next_json(&mut fresh).await), next);
}

/// Sends batches of big frames until the stuck subscriber is gone.
async fn wait_until_async_sending(daemon: &TestDaemon, client: &mut Client, next: &mut u64) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while stats(daemon).feed_subscribers == 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stuck subscriber was never disconnected"
        );
        client
            .send_raw(&big_frames(*next..*next + 1000, 1000))
            .await;
        *next += 1000;
        wait_until("the archive caught up", PATIENCE, || {
            stats(daemon).frames_archived == *next
        })
        .await;
    }
}

#[tokio::test]
async fn bad_requests_are_refused_with_the_reason() {
    let mut config = common::test_config();
    config.feed.max_subscribers = 1;
    let (daemon, _archive, addr, _stop) = start(config).await;
    for (query, reason) in [
        ("?sources=live:1", "unknown parameter \"sources\""),
        ("?source=live-1", "source:"),
        ("?sample=0", "sample:"),
    ] {
        let (status, body) = refused(addr, query).await;
        assert_eq!(status, 400, "{query}");
        assert!(body.contains(reason), "{query}: {body}");
    }

    let mut first = subscribe(addr, "").await;
    let (status, body) = refused(addr, "").await;
    assert_eq!(status, 503);
    assert!(body.contains("feed.max_subscribers = 1"), "{body}");

    // A client that talks is closed with the reason; the slot is then free again.
    first.send(Message::text("hello?")).await.unwrap();
    let (code, reason) = expect_close(&mut first).await;
    assert_eq!(code, 1008);
    assert!(reason.contains("no messages"), "{reason}");
    wait_until("the slot is free", PATIENCE, || {
        stats(&daemon).feed_subscribers == 0
    })
    .await;
    subscribe(addr, "").await;
}

async fn refused(addr: SocketAddr, query: &str) -> (u16, String) {
    match tokio_tungstenite::connect_async(format!("ws://{addr}/feed{query}")).await {
        Err(tungstenite::Error::Http(response)) => {
            let body = response.body().clone().unwrap_or_default();
            (
                response.status().as_u16(),
                String::from_utf8_lossy(&body).into_owned(),
            )
        }
        other => panic!("expected an HTTP refusal for {query:?}, got {other:?}"),
    }
}

#[tokio::test]
async fn a_catalog_publication_is_announced_on_the_feed() {
    let (_daemon, _archive, addr, _stop) = start(common::test_config()).await;
    let mut feed = subscribe(addr, "?priority=emergency").await;
    let access = aggregator::catalog::push::MonitorAccess::default();
    let version = aggregator::catalog::push::push(addr, "text/plain", b"TLE", &access)
        .await
        .unwrap();
    assert_eq!(
        next_json(&mut feed).await,
        serde_json::json!({ "catalog": version })
    );
    // A subscriber that connects later hears of the latest at once.
    let mut late = subscribe(addr, "").await;
    assert_eq!(
        next_json(&mut late).await,
        serde_json::json!({ "catalog": version })
    );
}

#[tokio::test]
async fn the_drain_sends_everything_then_closes_the_feed() {
    let (daemon, _archive, addr, _stop) = start(common::test_config()).await;
    let mut feed = subscribe(addr, "").await;
    let mut client = Client::source(daemon.uplink, SourceKind::LiveUplink, 3).await;
    client.send_routine(0..500).await;
    client.finish_sending().await;
    client.read_to_close().await;
    let report = daemon.shutdown().await;
    assert!(report.is_clean(), "{report:?}");
    for expected in 0..500 {
        assert_eq!(seq(&next_json(&mut feed).await), expected);
    }
    let (code, reason) = expect_close(&mut feed).await;
    assert_eq!(code, 1001);
    assert!(reason.contains("drained"), "{reason}");
}
