//! A backfill into a stream of layout `records/1`: Kiruna's live pass, with a stretch lost, is
//! in the stream; its recording of the whole pass then fills the stretch (below what the stream
//! holds of the source) and adds what came after. The stream holds every packet once, the
//! subject's last message names the gaps left (none of the pass), and a sink that lost its cursor
//! reads the whole archive again, the backfilled packets too, and publishes nothing twice. In a
//! fleet, what another daemon published of the stretch is left out of the backfill's publishing.

mod common;
mod nats_stream;

use std::collections::BTreeSet;

use aggregator::archive::format::{self, FrameRecord};
use aggregator::{Config, Priority, SourceKind};
use async_nats::jetstream;
use common::backfill::{kiruna_spooled, recording, spooled, upload, wait_files};
use common::stations::framed;
use common::{NatsServer, PATIENCE};
use nats_stream::{stream_contents, stream_messages, STREAM};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// A group reads its first packet of an APID one cycle up.
const UP: u64 = 16_384;

/// Kiruna's packets' source.
const SOURCE: u32 = 10_007;

/// The sink's counter `name` on `/stats`.
async fn stat(monitor: std::net::SocketAddr, name: &str) -> Value {
    common::http_get_json(monitor, "/stats").await["stats"][name].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server (tests/nats/venv.sh, or Debian package nats-server); .ci/run runs it"]
async fn a_backfill_below_what_the_stream_holds_is_published_once() {
    let nats = NatsServer::start();
    let (dir, spool) = spooled("nats-backfill");
    let section = format!("[sinks.nats]\nurl = \"{}\"\nsite = \"north\"\n", nats.url());
    let sink = toml::from_str::<Config>(&section).unwrap().sinks.nats;
    let with_sink = |config: &mut Config| config.sinks.nats = sink.clone();
    let (daemon, monitor, stop) = kiruna_spooled(&dir.0, &spool, with_sink).await;
    // Live, Kiruna loses 50..=79 and everything after 99.
    let mut wire = TcpStream::connect(daemon.links["Kiruna"]).await.unwrap();
    for count in (0..50).chain(80..100) {
        let packet = framed(count, u64::from(count));
        wire.write_all(&packet).await.unwrap();
    }
    let live: BTreeSet<u64> = (0..50).chain(80..100).map(|c| UP + c).collect();
    assert_eq!(sequences(&nats.url(), 70).await, live);
    let gaps = last_header(&nats.url(), "Aggregator-Routine-Gaps").await;
    let lost = format!("0-{},{}-{}", UP - 1, UP + 50, UP + 79);
    assert_eq!(gaps.as_deref(), Some(lost.as_str()));

    upload(&spool, "pass.lp", &recording(0..120));
    assert_eq!(wait_files(monitor, 1, 0).await["stored"], json!(50));
    let all: BTreeSet<u64> = (0..120).map(|c| UP + c).collect();
    assert_eq!(sequences(&nats.url(), 120).await, all);
    let gaps = last_header(&nats.url(), "Aggregator-Routine-Gaps").await;
    assert_eq!(
        gaps,
        Some(format!("0-{}", UP - 1)),
        "the lost stretch filled"
    );
    let through = last_header(&nats.url(), "Aggregator-Routine-Through").await;
    assert_eq!(through, Some((UP + 119).to_string()));
    drop(wire);
    stop.cancel();
    assert!(daemon.shutdown().await.is_clean());

    // The cursor lost (a restore from an old backup): every frame is read again, none published.
    for entry in std::fs::read_dir(dir.0.join("archive/sinks")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "cursor") {
            std::fs::remove_file(&path).unwrap();
        }
    }
    let (daemon, monitor, stop) = kiruna_spooled(&dir.0, &spool, with_sink).await;
    let held = || async move { stat(monitor, "nats_republished").await == json!(120) };
    common::wait_until_async("every frame found held", PATIENCE, held).await;
    assert_eq!(stat(monitor, "nats_published").await, json!(0));
    stop.cancel();
    assert!(daemon.shutdown().await.is_clean());
    assert_eq!(sequences(&nats.url(), 120).await, all);
}

/// `identity = "fleet"`: daemon south published part of the stretch Kiruna lost at north (the
/// station's link had failed over to it); north's backfill of the whole pass stores the stretch
/// in its archive, and publishes only what the stream lacks: every packet once, south's its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server (tests/nats/venv.sh, or Debian package nats-server); .ci/run runs it"]
async fn a_backfill_leaves_out_what_another_daemon_of_the_fleet_published() {
    let nats = NatsServer::start();
    let (dir, spool) = spooled("nats-backfill-fleet");
    let section = format!(
        "[sinks.nats]\nurl = \"{}\"\nsite = \"north\"\nidentity = \"fleet\"\n\
         subject = \"telemetry.{{kind}}.{{source}}\"\n",
        nats.url()
    );
    let sink = toml::from_str::<Config>(&section).unwrap().sinks.nats;
    let with_sink = |config: &mut Config| config.sinks.nats = sink.clone();
    let (daemon, monitor, stop) = kiruna_spooled(&dir.0, &spool, with_sink).await;
    let mut wire = TcpStream::connect(daemon.links["Kiruna"]).await.unwrap();
    for count in (0..50).chain(80..100) {
        let packet = framed(count, u64::from(count));
        wire.write_all(&packet).await.unwrap();
    }
    let subject = format!("telemetry.live.{SOURCE}");
    let by_site = |expected| {
        let (url, subject) = (nats.url(), subject.clone());
        async move {
            let messages = stream_messages(url, Some(expected)).await;
            let of = messages.into_iter().filter(|m| m.subject == subject);
            of.map(|m| (m.frame_sequence(), m.site.unwrap_or_default()))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(by_site(70).await.len(), 70);
    publish_as_south(&nats.url(), &subject, UP + 50..UP + 60).await;

    upload(&spool, "pass.lp", &recording(0..120));
    assert_eq!(wait_files(monitor, 1, 0).await["stored"], json!(50));
    let mut held = by_site(120).await;
    held.sort_unstable();
    let expected: Vec<(u64, String)> = (0..120)
        .map(|c| {
            (
                UP + c,
                if (50..60).contains(&c) {
                    "south"
                } else {
                    "north"
                },
            )
        })
        .map(|(sequence, site)| (sequence, site.to_string()))
        .collect();
    assert_eq!(held, expected, "every packet once");
    drop(wire);
    stop.cancel();
    assert!(daemon.shutdown().await.is_clean());
}

/// Publishes, as daemon south would, a `records/1` message of Kiruna's packets `sequences` to
/// `subject` after its last message, with the marks and gaps that leaves.
async fn publish_as_south(url: &str, subject: &str, sequences: std::ops::Range<u64>) {
    let client = async_nats::connect(url).await.unwrap();
    let context = jetstream::new(client);
    let stream = context.get_stream(STREAM).await.unwrap();
    let last = stream.get_last_raw_message_by_subject(subject).await;
    let last = last.unwrap();
    let header = |name: &str| last.headers.get(name).unwrap().as_str().to_string();
    let frames: Vec<FrameRecord> = (sequences.clone())
        .map(|sequence| FrameRecord {
            kind: SourceKind::LiveUplink,
            priority: Priority::Routine,
            source_id: SOURCE,
            sequence,
            received_unix_ns: 1,
            payload: bytes::Bytes::from_static(b"south"),
            reception: None,
        })
        .collect();
    let mut body = Vec::new();
    format::encode_frame_records(&mut body, &frames);
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Aggregator-Layout", "records/1");
    headers.insert("Aggregator-Site", "south");
    headers.insert("Aggregator-Frames", frames.len().to_string().as_str());
    let through = header("Aggregator-Routine-Through");
    headers.insert("Aggregator-Routine-Through", through.as_str());
    let gaps = format!("0-{},{}-{}", UP - 1, sequences.end, UP + 79);
    headers.insert("Aggregator-Routine-Gaps", gaps.as_str());
    let expected = last.sequence.to_string();
    headers.insert("Nats-Expected-Last-Subject-Sequence", expected.as_str());
    let ack = context.publish_with_headers(subject.to_string(), headers, body.into());
    ack.await.unwrap().await.unwrap();
}

/// The sequences of Kiruna's packets in the stream once it holds `expected` frames; each once.
async fn sequences(url: &str, expected: u64) -> BTreeSet<u64> {
    let contents = stream_contents(url, Some(expected)).await;
    let north = contents.get("north").cloned().unwrap_or_default();
    let twice: Vec<_> = north.iter().filter(|(_, copies)| **copies != 1).collect();
    assert!(twice.is_empty(), "in the stream more than once: {twice:?}");
    let kiruna = north
        .keys()
        .filter(|(kind, source, _)| kind == "live" && *source == SOURCE);
    kiruna.map(|(_, _, sequence)| *sequence).collect()
}

/// Header `name` of the last message of Kiruna's subject.
async fn last_header(url: &str, name: &str) -> Option<String> {
    let client = async_nats::connect(url).await.unwrap();
    let stream = jetstream::new(client).get_stream(STREAM).await.unwrap();
    let subject = format!("telemetry.north.live.{SOURCE}");
    let last = stream.get_last_raw_message_by_subject(&subject).await;
    let headers = last.unwrap().headers;
    headers.get(name).map(|value| value.as_str().to_string())
}
