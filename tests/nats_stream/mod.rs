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

use aggregator::archive::format::{decode_message_records, encode_frame_records, FrameRecord};
use aggregator::sinks::message::Layout;
use aggregator::{Priority, SourceKind};
use async_nats::jetstream;
use async_nats::ToServerAddrs;
use futures_util::StreamExt;

/// The stream the sinks publish into, in the tests' configs and the compose file's: the sink's
/// default.
pub const STREAM: &str = "TELEMETRY";

/// The longest wait for the stream to catch up.
const PATIENCE: Duration = Duration::from_secs(60);

/// The longest wait for one message before reading on with a new consumer: the ordered consumer
/// itself recreates only after two missed idle heartbeats of 15 s.
const STALL: Duration = Duration::from_secs(10);

/// A frame: `(kind, source, seq)`, `kind` as the message id spells it (`live` or `replay`).
pub type Frame = (String, u32, u64);

/// Each site's frames with how many times the stream holds each.
pub type Contents = BTreeMap<String, BTreeMap<Frame, u32>>;

/// One frame of the stream, as a check reads it: a message of layout `frame/1`, or a frame of a
/// `records/1` or `records/2` message.
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
    /// Its frame's sequence (`Aggregator-Sequence`); panics on a message without one.
    pub fn frame_sequence(&self) -> u64 {
        let sequence = self.sequence.as_deref().unwrap_or("");
        sequence.parse().expect("a sequence")
    }

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
/// storage, the sink's duplicate window and the layout the sink gives a stream it creates
/// (`records/2`), through the servers `servers`; tried again until it succeeds (a cluster that
/// just chose its leader may not place it yet). Creating it again with the same config succeeds.
pub async fn create_stream(servers: impl ToServerAddrs, replicas: usize) {
    create_stream_of(servers, replicas, Some(Layout::NEW.description())).await
}

/// As [`create_stream`], with the description `description`: none is a stream of an earlier
/// build's layout, `frame/1`.
pub async fn create_stream_of(
    servers: impl ToServerAddrs,
    replicas: usize,
    description: Option<String>,
) {
    let client = async_nats::connect(servers)
        .await
        .expect("connect to nats-server");
    let context = jetstream::new(client);
    let config = jetstream::stream::Config {
        name: STREAM.to_string(),
        description,
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

/// Every frame of the stream `TELEMETRY`, in stream order (a `records/1` or `records/2` message's in the
/// message's order), read through `servers`. Waits until the stream holds `expected` frames
/// first (the sinks catch up); `None`: as many as it holds now.
pub async fn stream_messages(
    servers: impl ToServerAddrs,
    expected: Option<u64>,
) -> Vec<StreamMessage> {
    let client = async_nats::connect(servers)
        .await
        .expect("connect to nats-server");
    let context = jetstream::new(client);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    // The sink creates the stream at its first session.
    let mut stream = loop {
        match context.get_stream(STREAM).await {
            Ok(stream) => break stream,
            Err(err) => assert!(
                tokio::time::Instant::now() < deadline,
                "the stream {STREAM}: {err}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut read = Vec::new();
    loop {
        let info = stream.info().await.expect("stream info");
        let last = info.state.last_sequence;
        let caught_up = match lagging_replicas(info) {
            Some(lagging) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "replicas {lagging:?} of the stream {STREAM} not current after {PATIENCE:?}"
                );
                false
            }
            None => match read_messages(&stream, &mut read, last).await {
                Ok(()) => true,
                Err(why) => {
                    eprintln!("reading the stream {STREAM} on with a new consumer: {why}");
                    false
                }
            },
        };
        let held = read.len() as u64;
        if let Some(expected) = expected {
            assert!(
                held <= expected,
                "the stream holds {held} frames, more than the {expected} archived"
            );
            if held == expected {
                return read;
            }
        } else if caught_up {
            return read;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stream holds {held} frames{} after {PATIENCE:?}",
            expected.map_or(String::new(), |e| format!(" of {e}"))
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The stream's replicas that are not current with its leader (which answered `info`), or `None`
/// when each is (or it has none). A consumer is placed on any replica: on one still catching up
/// after a restart it would see only what that replica holds.
fn lagging_replicas(info: &jetstream::stream::Info) -> Option<Vec<String>> {
    let replicas = &info.cluster.as_ref()?.replicas;
    let lagging: Vec<String> = replicas
        .iter()
        .filter(|r| !r.current)
        .map(|r| r.name.clone())
        .collect();
    (!lagging.is_empty()).then_some(lagging)
}

/// Reads the stream's messages after those `read` has, up to stream sequence `last`, into it;
/// `Err` with why if the consumer could not be made or a message took longer than [`STALL`]: the
/// caller reads on from there with a new consumer.
async fn read_messages(
    stream: &jetstream::stream::Stream,
    read: &mut Vec<StreamMessage>,
    last: u64,
) -> Result<(), String> {
    let after = read.last().map_or(0, |m| m.stream_sequence);
    if after >= last {
        return Ok(());
    }
    let config = jetstream::consumer::pull::OrderedConfig {
        deliver_policy: jetstream::consumer::DeliverPolicy::ByStartSequence {
            start_sequence: after + 1,
        },
        ..Default::default()
    };
    let consumer = stream.create_consumer(config).await;
    let consumer = consumer.map_err(|e| format!("an ordered consumer: {e}"))?;
    let mut messages = consumer.messages().await.map_err(|e| e.to_string())?;
    loop {
        let Ok(next) = tokio::time::timeout(STALL, messages.next()).await else {
            let at = read.last().map_or(0, |m| m.stream_sequence);
            return Err(format!(
                "no message after stream sequence {at} in {STALL:?}"
            ));
        };
        let message = next.expect("a message").expect("a readable message");
        let stream_sequence = message.info().expect("a JetStream message").stream_sequence;
        // An ordered consumer that recreates itself before its first message starts again
        // from the stream's first.
        if stream_sequence <= after {
            continue;
        }
        read.extend(frames_of(&message, stream_sequence));
        if stream_sequence >= last {
            return Ok(());
        }
    }
}

/// The frames of one message: itself (layout `frame/1`), or each of its records' frames, with
/// the id the sink gives a frame/1 message (`site.kind.source.seq` where the subject has the
/// site, else `kind.source.seq`: the subject less `telemetry.`, then the sequence).
fn frames_of(message: &async_nats::jetstream::Message, stream_sequence: u64) -> Vec<StreamMessage> {
    let headers = message.headers.as_ref();
    let header = |name: &str| Some(headers?.get(name)?.as_str().to_string());
    let subject = message.subject.to_string();
    if header("Aggregator-Layout").is_none() {
        // Nats-Msg-Id is read back as a standard header, which a name given as text is not.
        let id = headers.and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID));
        return vec![StreamMessage {
            subject,
            id: id.map(|id| id.as_str().to_string()),
            sequence: header("Aggregator-Sequence"),
            site: header("Aggregator-Site"),
            priority: header("Aggregator-Priority"),
            stream_sequence,
        }];
    }
    let layout = header("Aggregator-Layout");
    assert!(
        matches!(layout.as_deref(), Some("records/1" | "records/2")),
        "{layout:?}"
    );
    let compression = header("Aggregator-Compression");
    if compression.is_some() {
        assert_eq!(layout.as_deref(), Some("records/2"), "a compressed body");
    }
    let body = match compression.as_deref() {
        None => message.payload.clone(),
        Some("zstd") => zstd::decode_all(&message.payload[..])
            .expect("a zstd frame")
            .into(),
        Some(other) => panic!("Aggregator-Compression {other:?}"),
    };
    let frames = decode_message_records(&body).expect("a message's frame records");
    let series = subject
        .strip_prefix("telemetry.")
        .unwrap_or(&subject)
        .to_string();
    (frames.into_iter())
        .map(|frame| StreamMessage {
            subject: subject.clone(),
            id: Some(format!("{series}.{}", frame.sequence)),
            sequence: Some(frame.sequence.to_string()),
            site: header("Aggregator-Site"),
            priority: Some(match frame.priority {
                Priority::Routine => "routine".to_string(),
                Priority::Emergency => "emergency".to_string(),
            }),
            stream_sequence,
        })
        .collect()
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

/// Publishes, as another daemon `site` would, a `records/2` message of live source `source`'s
/// routine frames `sequences` (payload `site`) to `subject`, after the subject's last message,
/// with the headers `marks` (its `Aggregator-Routine-Through`, say).
pub async fn publish_as(
    url: &str,
    site: &str,
    (subject, source): (&str, u32),
    sequences: std::ops::Range<u64>,
    marks: &[(&'static str, String)],
) {
    let client = async_nats::connect(url).await.expect("connect");
    let context = jetstream::new(client);
    let stream = context.get_stream(STREAM).await.expect("the stream");
    let last = stream.get_last_raw_message_by_subject(subject).await;
    let last = last.expect("the subject's last message").sequence;
    let frames: Vec<FrameRecord> = (sequences.map(|sequence| FrameRecord {
        kind: SourceKind::LiveUplink,
        priority: Priority::Routine,
        source_id: source,
        sequence,
        received_unix_ns: 1,
        payload: bytes::Bytes::copy_from_slice(site.as_bytes()),
        reception: None,
    }))
    .collect();
    let mut body = Vec::new();
    encode_frame_records(&mut body, &frames);
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Aggregator-Layout", "records/2");
    headers.insert("Aggregator-Site", site);
    headers.insert("Aggregator-Frames", frames.len().to_string().as_str());
    for (name, value) in marks {
        headers.insert(*name, value.as_str());
    }
    let expected = last.to_string();
    headers.insert("Nats-Expected-Last-Subject-Sequence", expected.as_str());
    let ack = context.publish_with_headers(subject.to_string(), headers, body.into());
    ack.await
        .expect("publish")
        .await
        .expect("the message stored");
}
