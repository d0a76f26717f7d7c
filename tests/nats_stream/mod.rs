//! What tests/nats.rs and tests/containers.rs share: reading back every message a NATS sink
//! published into the stream, to count each frame's copies.

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream;
use futures_util::StreamExt;

/// The stream the sinks publish into, in the tests' configs and the compose file's.
pub const STREAM: &str = "TELEMETRY";

/// The longest wait for the stream to catch up, or for one message.
const PATIENCE: Duration = Duration::from_secs(60);

/// Each site's `(kind, source, seq)` with how many times the stream holds it.
pub type Contents = BTreeMap<String, BTreeMap<(String, u32, u64), u32>>;

/// Every message of the stream `TELEMETRY` at `url`, by site: each `(kind, source, seq)` with how
/// many times it is there, each message's subject and sequence header checked against its id.
/// Waits until the stream holds `expected` messages first (the sinks catch up); `None`: as many
/// as it holds now.
pub async fn stream_contents(url: &str, expected: Option<u64>) -> Contents {
    let client = async_nats::connect(url)
        .await
        .expect("connect to nats-server");
    let context = jetstream::new(client);
    let mut stream = context.get_stream(STREAM).await.expect("the stream exists");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let expected = match expected {
        Some(expected) => expected,
        None => stream.info().await.expect("stream info").state.messages,
    };
    loop {
        let held = stream.info().await.expect("stream info").state.messages;
        assert!(
            held <= expected,
            "the stream holds {held} messages, more than the {expected} archived"
        );
        if held == expected {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stream holds {held} of {expected} messages"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig::default())
        .await
        .expect("an ordered consumer");
    let mut messages = consumer.messages().await.expect("consume the stream");
    let mut by_site = Contents::new();
    for _ in 0..expected {
        let message = tokio::time::timeout(PATIENCE, messages.next())
            .await
            .expect("the next message in time")
            .expect("a message")
            .expect("a readable message");
        let headers = message.headers.as_ref().expect("headers");
        let id = headers
            .get(async_nats::header::NATS_MESSAGE_ID)
            .expect("a Nats-Msg-Id")
            .as_str();
        let parts: Vec<&str> = id.split('.').collect();
        let [site, kind, source, seq] = parts[..] else {
            panic!("message id {id:?} is not site.kind.source.seq");
        };
        let subject = format!("telemetry.{site}.{kind}.{source}");
        assert_eq!(message.subject.as_str(), subject, "{id}");
        let sequence = headers
            .get("Aggregator-Sequence")
            .expect("a sequence header");
        assert_eq!(sequence.as_str(), seq, "{id}");
        let key = (
            kind.to_string(),
            source.parse().expect("a source id"),
            seq.parse().expect("a seq"),
        );
        *by_site
            .entry(site.to_string())
            .or_default()
            .entry(key)
            .or_default() += 1;
    }
    by_site
}
