//! What the tests of the NATS sink share about the stream: creating it ([`create_stream`]),
//! reading back every message a sink published ([`stream_messages`]), each frame's copies by site
//! ([`stream_contents`]), and holding the stream to what the simulators were acknowledged
//! ([`audit`]).
//!
//! tests/nats.rs, tests/nats_cluster.rs and tests/containers.rs include this module and each uses
//! a part of it, so what one file leaves unused is not dead code.
#![allow(dead_code)]

pub mod audit;

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream;
use async_nats::ToServerAddrs;
use futures_util::StreamExt;

/// The stream the sinks publish into, in the tests' configs and the compose file's: the sink's
/// default.
pub const STREAM: &str = "TELEMETRY";

/// The longest wait for the stream to catch up, or for one message.
const PATIENCE: Duration = Duration::from_secs(60);

/// A frame: `(kind, source, seq)`, `kind` as the message id spells it (`live` or `replay`).
pub type Frame = (String, u32, u64);

/// Each site's frames with how many times the stream holds each.
pub type Contents = BTreeMap<String, BTreeMap<Frame, u32>>;

/// One message of the stream, as a check reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamMessage {
    pub subject: String,
    /// `Nats-Msg-Id`: `site.kind.source.seq`, or `kind.source.seq` where the sinks share one
    /// identity across sites.
    pub id: Option<String>,
    /// `Aggregator-Sequence`.
    pub sequence: Option<String>,
    /// `Aggregator-Site`: the daemon that published it, where the id does not say.
    pub site: Option<String>,
    /// `Aggregator-Priority`: `routine` or `emergency`.
    pub priority: Option<String>,
    /// Its sequence in the stream: the order the stream holds it in.
    pub stream_sequence: u64,
}

impl StreamMessage {
    /// The frame the message id names, and the site where the id has one; `None` for an id of
    /// another shape (or none).
    pub fn identity(&self) -> Option<(Option<&str>, Frame)> {
        let id = self.id.as_deref()?;
        let parts: Vec<&str> = id.split('.').collect();
        let (site, kind, source, seq) = match parts[..] {
            [site, kind, source, seq] => (Some(site), kind, source, seq),
            [kind, source, seq] => (None, kind, source, seq),
            _ => return None,
        };
        let frame = (kind.to_string(), source.parse().ok()?, seq.parse().ok()?);
        Some((site, frame))
    }
}

/// Creates the stream `TELEMETRY` of the subjects `telemetry.>` with `replicas` replicas, file
/// storage and the sink's duplicate window, through the servers `servers`; tried again until it
/// succeeds (a cluster that just chose its leader may not place it yet). Creating it again with
/// the same config succeeds.
pub async fn create_stream(servers: impl ToServerAddrs, replicas: usize) {
    let client = async_nats::connect(servers)
        .await
        .expect("connect to nats-server");
    let context = jetstream::new(client);
    let config = jetstream::stream::Config {
        name: STREAM.to_string(),
        subjects: vec!["telemetry.>".to_string()],
        num_replicas: replicas,
        duplicate_window: Duration::from_secs(600),
        storage: jetstream::stream::StorageType::File,
        ..Default::default()
    };
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match context.create_stream(config.clone()).await {
            Ok(_) => return,
            Err(err) => assert!(
                tokio::time::Instant::now() < deadline,
                "create the stream {STREAM} of {replicas} replicas: {err}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The server name of the stream `TELEMETRY`'s leader (`None` while it has none), asked through
/// `servers`.
pub async fn stream_leader(servers: impl ToServerAddrs) -> Option<String> {
    let client = async_nats::connect(servers)
        .await
        .expect("connect to nats-server");
    let mut stream = jetstream::new(client)
        .get_stream(STREAM)
        .await
        .expect("the stream exists");
    let info = stream.info().await.expect("stream info");
    info.cluster.as_ref()?.leader.clone()
}

/// Every message of the stream `TELEMETRY`, in stream order, read through `servers`. Waits until
/// the stream holds `expected` messages first (the sinks catch up); `None`: as many as it holds
/// now.
pub async fn stream_messages(
    servers: impl ToServerAddrs,
    expected: Option<u64>,
) -> Vec<StreamMessage> {
    let client = async_nats::connect(servers)
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
    let mut read = Vec::new();
    for _ in 0..expected {
        let message = tokio::time::timeout(PATIENCE, messages.next())
            .await
            .expect("the next message in time")
            .expect("a message")
            .expect("a readable message");
        let headers = message.headers.as_ref();
        // Nats-Msg-Id is read back as a standard header, which a name given as text is not.
        let id = headers.and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID));
        let header = |name: &str| Some(headers?.get(name)?.as_str().to_string());
        read.push(StreamMessage {
            subject: message.subject.to_string(),
            id: id.map(|id| id.as_str().to_string()),
            sequence: header("Aggregator-Sequence"),
            site: header("Aggregator-Site"),
            priority: header("Aggregator-Priority"),
            stream_sequence: message.info().expect("a JetStream message").stream_sequence,
        });
    }
    read
}

/// Every message of the stream `TELEMETRY` at `url`, by site: each frame with how many times it
/// is there, each message's subject (the default template's) and sequence header checked against
/// its id `site.kind.source.seq`. Waits for `expected` messages as [`stream_messages`] does.
pub async fn stream_contents(url: &str, expected: Option<u64>) -> Contents {
    let mut by_site = Contents::new();
    for message in stream_messages(url, expected).await {
        let id = message.id.as_deref().expect("a Nats-Msg-Id");
        let Some((Some(site), frame)) = message.identity() else {
            panic!("message id {id:?} is not site.kind.source.seq");
        };
        let (kind, source, seq) = &frame;
        let subject = format!("telemetry.{site}.{kind}.{source}");
        assert_eq!(message.subject, subject, "{id}");
        let sequence = message.sequence.as_deref().expect("a sequence header");
        assert_eq!(sequence, seq.to_string(), "{id}");
        *by_site
            .entry(site.to_string())
            .or_default()
            .entry(frame)
            .or_default() += 1;
    }
    by_site
}
