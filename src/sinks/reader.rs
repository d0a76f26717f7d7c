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
/// `each` wants more. A consumer that goes quiet for [`PATIENCE`] with messages left (its pull
/// lost with a stream leader that moved, say: async-nats's ordered consumer would notice only
/// after two missed 15 s heartbeats) is given up for a new one from the next message, up to
/// [`CONSUMERS`] in all.
async fn read_subject(
    stream: &Stream,
    naming: &Naming,
    subject: String,
    last: u64,
    filter: &FrameFilter,
    each: &mut impl FnMut(Read) -> bool,
) -> Result<(u64, bool), String> {
    let (mut read, mut from) = (0, 1);
    for consumer in 1..=CONSUMERS {
        let part = Part {
            subject: &subject,
            from,
            last,
        };
        match part.read(stream, naming, filter, each).await? {
            Ended::Done { messages, going_on } => return Ok((read + messages, going_on)),
            Ended::Quiet {
                messages,
                next,
                left,
            } => {
                (read, from) = (read + messages, next);
                let waited = PATIENCE.as_secs();
                let why = format!("no message for {waited} s, {left} said to be left");
                if consumer == CONSUMERS {
                    return Err(format!("reading {subject}: {why} ({CONSUMERS} consumers)"));
                }
                tracing::warn!(%subject, next, "{why}: reading on with a new consumer");
            }
        }
    }
    Ok((read, true))
}

/// Consumers a subject's read may take, each after the last went quiet.
const CONSUMERS: u32 = 3;

/// One consumer's part of a subject's read: from stream sequence `from` up to `last`.
struct Part<'a> {
    subject: &'a str,
    from: u64,
    last: u64,
}

/// How a [`Part`] ended: every message read (and whether `each` wants more), or quiet with
/// `left` said to be left, the next to read at `next`.
enum Ended {
    Done { messages: u64, going_on: bool },
    Quiet { messages: u64, next: u64, left: u64 },
}

impl Part<'_> {
    async fn read(
        &self,
        stream: &Stream,
        naming: &Naming,
        filter: &FrameFilter,
        each: &mut impl FnMut(Read) -> bool,
    ) -> Result<Ended, String> {
        let subject = self.subject;
        let deliver_policy = match self.from {
            0 | 1 => DeliverPolicy::All,
            start_sequence => DeliverPolicy::ByStartSequence { start_sequence },
        };
        let config = pull::OrderedConfig {
            filter_subject: subject.to_string(),
            deliver_policy,
            ..Default::default()
        };
        let mut consumer = (stream.create_consumer(config).await)
            .map_err(|e| format!("a consumer of {subject}: {e}"))?;
        let info = (consumer.info().await).map_err(|e| format!("a consumer of {subject}: {e}"))?;
        let (mut left, mut next, mut messages) = (info.num_pending, self.from, 0);
        let mut delivered =
            (consumer.messages().await).map_err(|e| format!("reading {subject}: {e}"))?;
        while left > 0 {
            let message = match tokio::time::timeout(PATIENCE, delivered.next()).await {
                Ok(Some(message)) => message.map_err(|e| format!("reading {subject}: {e}"))?,
                Ok(None) => return Err(format!("reading {subject}: the consumer ended")),
                Err(_) => {
                    return Ok(Ended::Quiet {
                        messages,
                        next,
                        left,
                    })
                }
            };
            let info = (message.info()).map_err(|e| format!("reading {subject}: {e}"))?;
            let stream_sequence = info.stream_sequence;
            if stream_sequence > self.last {
                break;
            }
            left = if stream_sequence == self.last {
                0
            } else {
                info.pending
            };
            (messages, next) = (messages + 1, stream_sequence + 1);
            if !hand_over(naming, &message, stream_sequence, filter, each) {
                return Ok(Ended::Done {
                    messages,
                    going_on: false,
                });
            }
        }
        Ok(Ended::Done {
            messages,
            going_on: true,
        })
    }
}

/// Hands `each` the frames of `message` that `filter` wants, or why it holds none; whether `each`
/// wants more.
fn hand_over(
    naming: &Naming,
    message: &jetstream::Message,
    stream_sequence: u64,
    filter: &FrameFilter,
    each: &mut impl FnMut(Read) -> bool,
) -> bool {
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
    wanted.into_iter().all(each)
}
