//! The stream as the NATS sink finds it at each session: created when missing, its layout, and
//! what it holds of each source's series (layout `records/1`); and the sink's publishes into it.
//!
//! Why the layout is the stream's and not the configuration's: a stream keeps the layout it was
//! created with for its life (consumers read it), whatever build publishes into it later, so the
//! sink that creates a stream names the layout in its description and every sink reads it there.
//! Streams of builds before `records/1`, and streams an operator created, are `frame/1`.

use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream::context::{CreateStreamError, PublishAckFuture, PublishError};
use async_nats::jetstream::publish::PublishAck;
use async_nats::jetstream::{self, stream};
use tokio::time::Instant;

use super::client::ConnectError;
use super::leader::{Publishing, ACK_TIMEOUT};
use super::message::{Layout, Naming};
use super::series::{last_message, Series};
use super::window::Sent;
use crate::archive::read::ReadError;
use crate::config::{AckMode, NatsConfig};
use crate::domain::frame::{SourceKey, SourceKind};
use crate::domain::position::ShardPosition;

/// Why the sink cannot start, or why one of its sessions failed (and the next starts again from
/// the cursor), or why it stopped.
#[derive(Debug, thiserror::Error)]
pub(super) enum NatsError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// A saved cursor cannot be read.
    #[error(transparent)]
    Cursor(std::io::Error),
    #[error("cannot find or create stream {stream}: {source}")]
    Stream {
        stream: String,
        source: CreateStreamError,
    },
    #[error("stream {stream} has layout {layout:?}, which this build does not publish (frame/1, records/1, records/2)")]
    UnknownLayout { stream: String, layout: String },
    #[error(
        "stream {stream} changed layout from {was} to {now} while the sink ran: restart the daemon"
    )]
    LayoutChanged {
        stream: String,
        was: &'static str,
        now: &'static str,
    },
    #[error("stream {stream}: {reason}")]
    Series { stream: String, reason: String },
    #[error("publish failed: {0}")]
    Publish(PublishError),
    #[error("publish timed out: the client's queue stayed full")]
    PublishTimeout,
    #[error("a PubAck from stream {other}, not {stream}: another stream takes the sink's subjects, and nothing it stored counts")]
    OtherStream { stream: String, other: String },
    #[error("no PubAck for {position}: {source}")]
    NoAck {
        position: ShardPosition,
        source: PublishError,
    },
    #[error("no PubAck for emergencies {first}-{last} of {kind} {id} from the journal: {source}")]
    NoJournaledAck {
        kind: SourceKind,
        id: u32,
        first: u64,
        last: u64,
        source: PublishError,
    },
    /// The archive cannot be followed any more.
    #[error(transparent)]
    Read(#[from] ReadError),
}

/// The sink's stream: its layout, and each source's series this session learnt.
pub(super) struct SinkStream {
    context: jetstream::Context,
    /// What the sink publishes through: a connection to the stream's leader where it has one.
    publishing: Publishing,
    config: NatsConfig,
    /// Found at the first session, kept for the run.
    layout: Option<Layout>,
    stream: Option<stream::Stream>,
    /// Each source's series, learnt at its first batch of a session.
    series: HashMap<SourceKey, Series>,
    /// The stream's replicas and duplicate window as the last session found them: a session
    /// after a failure warns of them again only when they changed.
    seen: Option<(usize, Duration)>,
}

impl SinkStream {
    /// `ack`, if the configured stream gave it: a message another stream took (its subjects
    /// overlap ours, the configured one's do not) is not in the stream, and counts for nothing.
    pub(super) fn ours(&self, ack: PublishAck) -> Result<PublishAck, NatsError> {
        match ack.stream == self.config.stream {
            true => Ok(ack),
            false => Err(NatsError::OtherStream {
                stream: self.config.stream.clone(),
                other: ack.stream,
            }),
        }
    }

    pub(super) fn new(
        context: jetstream::Context,
        publishing: Publishing,
        config: NatsConfig,
    ) -> SinkStream {
        SinkStream {
            context,
            publishing,
            config,
            layout: None,
            stream: None,
            series: HashMap::new(),
            seen: None,
        }
    }

    /// Finds the stream, or creates it (layout `sinks.nats.layout`, the configured duplicate
    /// window and replicas); warns where it falls short of what the configuration counts on.
    /// Forgets the series: a new session learns each again.
    pub(super) async fn ensure(&mut self) -> Result<Layout, NatsError> {
        self.series.clear();
        let config = stream::Config {
            name: self.config.stream.clone(),
            description: Some(Layout::created(self.config.layout).description()),
            subjects: vec![self.config.stream_subjects()],
            duplicate_window: self.config.duplicate_window,
            num_replicas: self.config.replicas,
            storage: stream::StorageType::File,
            ..Default::default()
        };
        let found = self.context.get_or_create_stream(config).await;
        let stream = found.map_err(|source| NatsError::Stream {
            stream: self.config.stream.clone(),
            source,
        })?;
        let info = &stream.cached_info().config;
        let layout = Layout::of_stream(info.description.as_deref()).map_err(|layout| {
            NatsError::UnknownLayout {
                stream: self.config.stream.clone(),
                layout,
            }
        })?;
        match self.layout.replace(layout) {
            Some(was) if was != layout => {
                return Err(NatsError::LayoutChanged {
                    stream: self.config.stream.clone(),
                    was: was.name(),
                    now: layout.name(),
                })
            }
            Some(_) => {}
            None if layout != Layout::created(self.config.layout) => tracing::warn!(
                stream = self.config.stream,
                layout = layout.name(),
                configured = Layout::created(self.config.layout).name(),
                "the stream keeps its layout, not sinks.nats.layout's (which a stream the sink creates gets): the NATS sink publishes in the stream's"
            ),
            None => tracing::info!(
                stream = self.config.stream,
                layout = layout.name(),
                "the NATS sink publishes in the stream's layout"
            ),
        }
        self.warn(info.num_replicas, info.duplicate_window);
        self.stream = Some(stream);
        Ok(layout)
    }

    /// Warns of a stream that falls short of the configuration, once for each shape it has.
    fn warn(&mut self, replicas: usize, window: Duration) {
        if self.seen.replace((replicas, window)) == Some((replicas, window)) {
            return;
        }
        let stream = &self.config.stream;
        if self.config.ack == AckMode::Replicated && replicas < 3 {
            tracing::warn!(
                stream,
                replicas,
                "ack = \"replicated\" with a stream of fewer than 3 replicas: an acknowledged frame outlives this machine, not the loss of a NATS server"
            );
        }
        if self.layout == Some(Layout::Frame) && window < self.config.duplicate_window {
            tracing::warn!(
                stream,
                duplicate_window_s = window.as_secs(),
                configured_s = self.config.duplicate_window.as_secs(),
                "the stream's duplicate window is shorter than sinks.nats.duplicate_window_s: a restart further behind than it may publish frames twice"
            );
        }
    }

    /// The series of source `key`: as this session last published it, else as the subject's
    /// last message says; and whether another daemon published that message.
    pub(super) async fn series(
        &mut self,
        naming: &Naming,
        key: SourceKey,
    ) -> Result<(Series, bool), NatsError> {
        if let Some(series) = self.series.get(&key) {
            return Ok((series.clone(), false));
        }
        let failed = |reason: String| NatsError::Series {
            stream: self.config.stream.clone(),
            reason,
        };
        let stream = (self.stream.as_ref()).ok_or_else(|| failed("not found yet".into()))?;
        let last = last_message(stream, naming, key).await.map_err(failed)?;
        let elsewhere =
            (last.as_ref()).is_some_and(|m| m.site.as_deref() != Some(self.config.site.as_str()));
        let series = Series::of(last.as_ref());
        self.series.insert(key, series.clone());
        Ok((series, elsewhere))
    }

    /// Sends a message behind `ahead` bytes in flight through the connection to the stream's
    /// leader where there is one, waiting at most [`ACK_TIMEOUT`] for room in the client's queue.
    pub(super) async fn send(
        &self,
        subject: String,
        message: jetstream::message::PublishMessage,
        ahead: usize,
    ) -> Result<(PublishAckFuture, Sent), NatsError> {
        let asked = Instant::now();
        let context = self.publishing.context();
        let sent = tokio::time::timeout(ACK_TIMEOUT, context.send_publish(subject, message));
        match sent.await {
            Ok(Ok(ack)) => Ok((ack, Sent::since(asked, ahead))),
            Ok(Err(err)) => Err(NatsError::Publish(err)),
            Err(_) => Err(NatsError::PublishTimeout),
        }
    }

    /// Whether a connection to a new leader waits to be taken up.
    pub(super) fn moving(&self) -> bool {
        self.publishing.handed_over()
    }

    /// Publishes through the connection to the leader handed over last, from the next message
    /// on: where no message of the source of the next can be in flight.
    pub(super) fn take_up(&mut self) {
        self.publishing.take_up();
    }

    /// Source `key`'s series after a batch JetStream acknowledged.
    pub(super) fn published(&mut self, key: SourceKey, series: Series) {
        self.series.insert(key, series);
    }
}
