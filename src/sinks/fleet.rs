//! Where a source stands in the fleet's stream, asked by a daemon when a source registers
//! (`identity = "fleet"` with `ack = "replicated"`): the source may come from another daemon that
//! was lost, and its resume point must be what the stream holds, not what this archive does.
//!
//! Why the last message of the source's subject and one of its headers, not its sequence: a
//! frame's PubAck may come while one before it failed, and an emergency is published ahead of
//! routine frames sent before it, so the last message does not prove that everything before it
//! is in the stream. Its [`REPLICATED_THROUGH`] header does: the source's acknowledgement when it
//! was published, which only JetStream's acknowledgements move. What lies between is sent again
//! by the source and dropped by the stream's duplicate window: at most the sink's window of
//! frames, published in the moments before the loss.

use async_nats::jetstream::stream::{LastRawMessageErrorKind, Stream};
use async_nats::jetstream::{self, Context};
use async_nats::Client;
use tokio::sync::OnceCell;

use super::nats::{connect, kind_token, SubjectTemplate, REPLICATED_THROUGH};
use crate::config::NatsConfig;
use crate::domain::frame::SourceKey;
use crate::domain::replication::{FleetLookup, FleetResume};

/// The fleet's stream, asked for the last message of a source.
#[derive(Debug)]
pub struct StreamResume {
    config: NatsConfig,
    subject: SubjectTemplate,
    /// Connected at the first question, then kept: it reconnects by itself.
    client: OnceCell<Client>,
}

impl StreamResume {
    pub fn new(config: NatsConfig) -> StreamResume {
        StreamResume {
            subject: SubjectTemplate::new(&config),
            config,
            client: OnceCell::new(),
        }
    }

    async fn stream(&self) -> Result<Stream, String> {
        let client = (self.client)
            .get_or_try_init(|| connect(&self.config))
            .await
            .map_err(|err| err.to_string())?;
        let context: Context = jetstream::new(client.clone());
        (context.get_stream(&self.config.stream).await)
            .map_err(|err| format!("stream {}: {err}", self.config.stream))
    }

    /// The resume point the last message of `key` carries.
    async fn ask(&self, key: SourceKey) -> Result<Option<u64>, String> {
        let stream = self.stream().await?;
        let subject = self.subject.render(kind_token(key.0), key.1);
        let message = match stream.get_last_raw_message_by_subject(&subject).await {
            Ok(message) => message,
            Err(err) if err.kind() == LastRawMessageErrorKind::NoMessageFound => return Ok(None),
            Err(err) => return Err(format!("last message of {subject}: {err}")),
        };
        let Some(value) = message.headers.get(REPLICATED_THROUGH) else {
            return Ok(None);
        };
        let text = value.as_str();
        text.parse().map(Some).map_err(|_| {
            format!("last message of {subject}: {REPLICATED_THROUGH} {text:?} is not a sequence")
        })
    }
}

impl FleetResume for StreamResume {
    fn resume_after(&self, key: SourceKey) -> FleetLookup<'_> {
        Box::pin(self.ask(key))
    }
}
