//! A backfill into a stream of layout `records/2`: Kiruna's live pass, with a stretch lost, is
//! in the stream; its recording of the whole pass then fills the stretch (below what the stream
//! holds of the source) and adds what came after. The stream holds every packet once, the
//! subject's last message names the gaps left (none of the pass), and a sink that lost its cursor
//! reads the whole archive again, the backfilled packets too, and publishes nothing twice. In a
//! fleet, what another daemon published of the stretch is left out of the backfill's publishing.

mod common;
mod nats_stream;

use std::collections::BTreeSet;

use std::net::SocketAddr;

use aggregator::Config;
use async_nats::jetstream;
use common::backfill::{kiruna_spooled, recording, spooled, upload, wait_files};
use common::stations::framed;
use common::{NatsServer, TestDaemon, PATIENCE};
use nats_stream::{publish_as, stream_contents, stream_messages, STREAM};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// A group reads its first packet of an APID one cycle up.
const UP: u64 = 16_384;

/// Kiruna's packets' source.
const SOURCE: u32 = 10_007;

/// The sink's counter `name` on `/stats`.
async fn stat(monitor: SocketAddr, name: &str) -> Value {
    common::http_get_json(monitor, "/stats").await["stats"][name].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server (tests/nats/venv.sh, or Debian package nats-server); .ci/run runs it"]
async fn a_backfill_below_what_the_stream_holds_is_published_once() {
    let nats = NatsServer::start();
    let (dir, spool) = spooled("nats-backfill");
    let sink = sink(&nats, "");
    let with_sink = |config: &mut Config| config.sinks.nats = sink.clone();
    let (daemon, monitor, stop, wire) = kiruna_lost_a_stretch(&dir.0, &spool, with_sink).await;
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
    let sink = sink(&nats, FLEET);
    let with_sink = |config: &mut Config| config.sinks.nats = sink.clone();
    let (daemon, monitor, stop, wire) = kiruna_lost_a_stretch(&dir.0, &spool, with_sink).await;
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
    // South's message: the mark as north's, the gaps less what it publishes.
    let through = (UP + 99).to_string();
    let gaps = format!("0-{},{}-{}", UP - 1, UP + 60, UP + 79);
    let marks = [
        ("Aggregator-Routine-Through", through),
        ("Aggregator-Routine-Gaps", gaps),
    ];
    let south = (subject.as_str(), SOURCE);
    publish_as(&nats.url(), "south", south, UP + 50..UP + 60, &marks).await;

    upload(&spool, "pass.lp", &recording(0..120));
    assert_eq!(wait_files(monitor, 1, 0).await["stored"], json!(50));
    let mut held = by_site(120).await;
    held.sort_unstable();
    let site = |c| {
        if (50..60).contains(&c) {
            "south"
        } else {
            "north"
        }
    };
    let expected: Vec<(u64, String)> = (0..120).map(|c| (UP + c, site(c).to_string())).collect();
    assert_eq!(held, expected, "every packet once");
    drop(wire);
    stop.cancel();
    assert!(daemon.shutdown().await.is_clean());
}

/// The sink's config: site north, the default stream, `keys` added.
fn sink(nats: &NatsServer, keys: &str) -> Option<aggregator::config::NatsConfig> {
    let url = nats.url();
    let section = format!("[sinks.nats]\nurl = \"{url}\"\nsite = \"north\"\n{keys}");
    toml::from_str::<Config>(&section).unwrap().sinks.nats
}

/// The sink's keys of a fleet: one subject a source, whichever daemon publishes it.
const FLEET: &str = "identity = \"fleet\"\nsubject = \"telemetry.{kind}.{source}\"\n";

/// The daemon as [`kiruna_spooled`] starts it, and Kiruna's live pass sent to it: 50..=79 lost,
/// nothing after 99; the station's connection, open.
async fn kiruna_lost_a_stretch(
    dir: &std::path::Path,
    spool: &std::path::Path,
    tune: impl FnOnce(&mut Config),
) -> (TestDaemon, SocketAddr, CancellationToken, TcpStream) {
    let (daemon, monitor, stop) = kiruna_spooled(dir, spool, tune).await;
    let mut wire = TcpStream::connect(daemon.links["Kiruna"]).await.unwrap();
    for count in (0..50).chain(80..100) {
        let packet = framed(count, u64::from(count));
        wire.write_all(&packet).await.unwrap();
    }
    (daemon, monitor, stop, wire)
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
