//! The fleet's stream asked where a source stands (`identity = "fleet"`): by a daemon when a
//! source registers, since it may come from another daemon that was lost, and by the sink before
//! it publishes a frame an earlier run archived, since its source may have moved on meanwhile.
//!
//! Why the last message of the source's subject and its headers, not its sequence alone: a
//! frame's PubAck may come while one before it failed, and an emergency is published ahead of
//! routine frames sent before it, so the last message does not prove that everything before it
//! is in the stream. Its [`REPLICATED_THROUGH`](super::message::REPLICATED_THROUGH) header does: the source's acknowledgement when it
//! was published, which only JetStream's acknowledgements move. What lies between is sent again
//! by the source and dropped by the stream's duplicate window: at most the sink's window of
//! frames, published in the moments before the loss.
//!
//! A daemon that comes back with its archive after its sources failed over holds frames it had
//! not published: they were not acknowledged, so their sources sent them again through another
//! daemon, which published them. The sink skips each such frame up to the sequence of the last
//! message another daemon published of its source, whatever the duplicate window. That message
//! may be an emergency published ahead of routine frames before it: those the other daemon holds
//! and publishes itself, or, lost with it unacknowledged, their source sends again.

use std::collections::HashMap;

use async_nats::jetstream::{self, Context};
use async_nats::Client;
use tokio::sync::OnceCell;

use super::client::connect;
use super::message::Naming;
use super::series::last_message;
use crate::archive::format::FrameRecord;
use crate::config::NatsConfig;
use crate::domain::frame::SourceKey;
use crate::domain::replication::{FleetLookup, FleetResume};

/// The fleet's stream, asked for where a registering source resumes.
#[derive(Debug)]
pub(crate) struct StreamResume {
    config: NatsConfig,
    naming: Naming,
    /// Connected at the first question, then kept: it reconnects by itself.
    client: OnceCell<Client>,
}

impl StreamResume {
    pub fn new(config: NatsConfig) -> StreamResume {
        StreamResume {
            naming: Naming::new(&config),
            config,
            client: OnceCell::new(),
        }
    }

    async fn ask(&self, key: SourceKey) -> Result<Option<u64>, String> {
        let client = (self.client)
            .get_or_try_init(|| connect(&self.config))
            .await
            .map_err(|err| err.to_string())?;
        let context: Context = jetstream::new(client.clone());
        let stream = (context.get_stream(&self.config.stream).await)
            .map_err(|err| format!("stream {}: {err}", self.config.stream))?;
        let last = last_message(&stream, &self.naming, key).await?;
        Ok(last.and_then(|message| message.replicated_through))
    }
}

impl FleetResume for StreamResume {
    fn resume_after(&self, key: SourceKey) -> FleetLookup<'_> {
        Box::pin(self.ask(key))
    }
}

/// The sink's memory of where other daemons published the sources of frames an earlier run
/// archived: asked once per source per run.
pub(super) struct EarlierFrames {
    context: Context,
    stream: String,
    site: String,
    /// Per source: up to which sequence another daemon published it; `None`: publish them all.
    elsewhere: HashMap<SourceKey, Option<u64>>,
}

impl EarlierFrames {
    pub(super) fn new(context: Context, config: &NatsConfig) -> EarlierFrames {
        EarlierFrames {
            context,
            stream: config.stream.clone(),
            site: config.site.clone(),
            elsewhere: HashMap::new(),
        }
    }

    /// Whether another daemon published `frame`'s source past it since it was archived here.
    /// Without an answer, no: the frame is published, and the duplicate window drops a copy.
    pub(super) async fn held_elsewhere(&mut self, naming: &Naming, frame: &FrameRecord) -> bool {
        let key = (frame.kind, frame.source_id);
        if !self.elsewhere.contains_key(&key) {
            let through = self.ask(naming, key).await.unwrap_or_else(|error| {
                tracing::warn!(%error, source_id = key.1, "cannot ask the fleet's stream where the source stands; publishing its earlier frames");
                None
            });
            self.elsewhere.insert(key, through);
        }
        self.elsewhere
            .get(&key)
            .copied()
            .flatten()
            .is_some_and(|through| frame.sequence <= through)
    }

    async fn ask(&self, naming: &Naming, key: SourceKey) -> Result<Option<u64>, String> {
        let stream = (self.context.get_stream(&self.stream).await)
            .map_err(|err| format!("stream {}: {err}", self.stream))?;
        let last = last_message(&stream, naming, key).await?;
        let elsewhere = last.filter(|message| message.site.as_deref() != Some(self.site.as_str()));
        Ok(elsewhere.and_then(|message| message.sequence))
    }
}
