//! A backfill into a stream of layout `records/1`: Kiruna's live pass, with a stretch lost, is
//! in the stream; its recording of the whole pass then fills the stretch (below what the stream
//! holds of the source) and adds what came after. The stream holds every packet once, the
//! subject's last message names the gaps left (none of the pass), and a sink that lost its cursor
//! reads the whole archive again, the backfilled packets too, and publishes nothing twice.

mod common;
mod nats_stream;

use std::collections::BTreeSet;

use aggregator::Config;
use async_nats::jetstream;
use common::backfill::{kiruna_spooled, recording, spooled, upload, wait_files};
use common::stations::framed;
use common::{NatsServer, PATIENCE};
use nats_stream::{stream_contents, STREAM};
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
