//! The stream read back (`aggregator nats read`): each message the sink published turned into its
//! frame again, with the site that published it and its place in the stream.
//!
//! Why a reader of our own: a consumer of the stream must know how the sink lays a frame out
//! (subject, headers, body: `docs/scale-out.md`) to get every frame with its metadata, and this
//! one is that layout's own inverse ([`Naming::frame`]), tested against the sink.
//!
//! How: an ordered consumer per subject read (one per source asked for, else the stream's
//! subjects), which JetStream 2.9 has (one filter subject a consumer); each is read up to the
//! stream's last message when its read starts, so a read ends while the sink goes on publishing.

use std::time::Duration;

use async_nats::jetstream::consumer::{pull, DeliverPolicy};
use async_nats::jetstream::{self, stream::Stream};
use futures_util::StreamExt;

use super::client::connect;
use super::message::{BadMessage, Naming};
use crate::archive::format::FrameRecord;
use crate::archive::query::export::frame_json;
use crate::config::NatsConfig;
use crate::domain::filter::FrameFilter;

/// The longest wait for the next message a consumer says it has: past it, the read fails (the
/// messages were deleted meanwhile, say) rather than hang.
const PATIENCE: Duration = Duration::from_secs(10);

/// A frame of the stream.
#[derive(Debug, Clone)]
pub struct StreamFrame {
    pub frame: FrameRecord,
    /// `Aggregator-Site`: the daemon that published it.
    pub site: Option<String>,
    /// Its sequence in the stream.
    pub stream_sequence: u64,
}

impl StreamFrame {
    /// Its line of `aggregator nats read`: the keys of `archive export`'s NDJSON rows that a
    /// message carries (no `shard` nor `position`: those are of one daemon's archive), then
    /// `site` and `stream_sequence`.
    pub fn json(&self) -> serde_json::Value {
        let mut row = frame_json(&self.frame);
        row.insert("site".into(), self.site.clone().into());
        row.insert("stream_sequence".into(), self.stream_sequence.into());
        serde_json::Value::Object(row)
    }
}

/// What one message of the stream gave: its frame, or why it is not one.
pub type Read = Result<StreamFrame, (u64, BadMessage)>;

/// Why the stream cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("{0}")]
    Connect(String),
    #[error("stream {stream}: {reason}")]
    Stream { stream: String, reason: String },
}

/// Reads the frames of `config`'s stream that `filter` wants (its sources, one after another, each
/// in stream order; its received times and priority), handing each to `each` until it says stop
/// (`false`). Messages that are no frame of the sink's are handed over as errors, and reading goes
/// on. Returns how many messages were read.
pub async fn read_stream(
    config: &NatsConfig,
    filter: &FrameFilter,
    mut each: impl FnMut(Read) -> bool,
) -> Result<u64, StreamError> {
    let client = connect(config)
        .await
        .map_err(|err| StreamError::Connect(err.to_string()))?;
    let failed = |reason: String| StreamError::Stream {
        stream: config.stream.clone(),
        reason,
    };
    let context = jetstream::new(client);
    let mut stream =
        (context.get_stream(&config.stream).await).map_err(|e| failed(e.to_string()))?;
    let naming = Naming::new(config);
    let mut subjects: Vec<String> = Vec::new();
    for source in &filter.sources {
        let subject = naming.source_filter(*source);
        if !subjects.contains(&subject) {
            subjects.push(subject);
        }
    }
    if subjects.is_empty() {
        subjects.push(config.stream_subjects());
    }
    let mut read = 0;
    for subject in subjects {
        let info = (stream.info().await).map_err(|e| failed(e.to_string()))?;
        let last = info.state.last_sequence;
        let (messages, going_on) = read_subject(&stream, &naming, subject, last, filter, &mut each)
            .await
            .map_err(failed)?;
        read += messages;
        if !going_on {
            break;
        }
    }
    Ok(read)
}

/// Reads the messages of `subject` up to stream sequence `last`; returns how many, and whether
/// `each` wants more.
async fn read_subject(
    stream: &Stream,
    naming: &Naming,
    subject: String,
    last: u64,
    filter: &FrameFilter,
    each: &mut impl FnMut(Read) -> bool,
) -> Result<(u64, bool), String> {
    let config = pull::OrderedConfig {
        filter_subject: subject.clone(),
        deliver_policy: DeliverPolicy::All,
        ..Default::default()
    };
    let mut consumer = (stream.create_consumer(config).await)
        .map_err(|e| format!("a consumer of {subject}: {e}"))?;
    let info = (consumer.info().await).map_err(|e| format!("a consumer of {subject}: {e}"))?;
    let mut left = info.num_pending;
    let mut messages =
        (consumer.messages().await).map_err(|e| format!("reading {subject}: {e}"))?;
    let mut read = 0;
    while left > 0 {
        let message = match tokio::time::timeout(PATIENCE, messages.next()).await {
            Ok(Some(message)) => message.map_err(|e| format!("reading {subject}: {e}"))?,
            Ok(None) => return Err(format!("reading {subject}: the consumer ended")),
            Err(_) => {
                let waited = PATIENCE.as_secs();
                return Err(format!(
                    "reading {subject}: no message for {waited} s, {left} said to be left"
                ));
            }
        };
        let info = (message.info()).map_err(|e| format!("reading {subject}: {e}"))?;
        let stream_sequence = info.stream_sequence;
        if stream_sequence > last {
            break;
        }
        left = if stream_sequence == last {
            0
        } else {
            info.pending
        };
        read += 1;
        let empty = async_nats::HeaderMap::new();
        let headers = message.headers.as_ref().unwrap_or(&empty);
        let frames = naming.frames(&message.subject, headers, message.payload.clone());
        let wanted: Vec<Read> = match frames {
            Ok((frames, site)) => (frames.into_iter())
                .filter(|frame| {
                    filter.wants(frame) && filter.received().contains(&frame.received_unix_ns)
                })
                .map(|frame| {
                    Ok(StreamFrame {
                        frame,
                        site: site.clone(),
                        stream_sequence,
                    })
                })
                .collect(),
            Err(why) => vec![Err((stream_sequence, why))],
        };
        for frame in wanted {
            if !each(frame) {
                return Ok((read, false));
            }
        }
    }
    Ok((read, true))
}
