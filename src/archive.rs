//! The archive consumer: the downstream that must receive every frame.
//!
//! It owns an [`ArchiveSink`] and feeds it every processed batch in processing order. Only after
//! the sink has taken a batch are its frames counted as archived and made acknowledgeable to their
//! source, so an acknowledgement always means "stored under the sink's guarantee". The sink is a
//! trait so that the durable, segment-file archive can replace the counting one without touching
//! the pipeline, and so that tests can observe the processing order or hold the archive still.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;

use crate::frame::Batch;
use crate::queue::FrameReceiver;
use crate::stats::Stats;

/// A boxed future, the return type of [`ArchiveSink`] methods.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where archived frames go.
pub trait ArchiveSink: Send + 'static {
    /// Stores a batch. `Ok` means its frames may be acknowledged to their source.
    fn store<'a>(&'a mut self, batch: &'a Batch) -> BoxFuture<'a, io::Result<()>>;

    /// Called once after the last batch, when the pipeline has drained.
    fn close(&mut self) -> BoxFuture<'_, io::Result<()>> {
        Box::pin(async { Ok(()) })
    }
}

/// Keeps nothing but the count: the archive until durable storage lands.
#[derive(Debug, Default)]
pub struct CountingSink {
    frames: u64,
}

impl ArchiveSink for CountingSink {
    fn store<'a>(&'a mut self, batch: &'a Batch) -> BoxFuture<'a, io::Result<()>> {
        self.frames += batch.len() as u64;
        Box::pin(async { Ok(()) })
    }

    fn close(&mut self) -> BoxFuture<'_, io::Result<()>> {
        tracing::info!(frames = self.frames, "archive closed");
        Box::pin(async { Ok(()) })
    }
}

/// Stores every batch the processor hands over until the processor is gone.
pub async fn run(
    mut input: FrameReceiver<Arc<Batch>>,
    mut sink: Box<dyn ArchiveSink>,
    stats: Stats,
) {
    while let Some(admitted) = input.recv().await {
        let batch = &admitted.item;
        let frames = batch.len() as u64;
        match sink.store(batch).await {
            Ok(()) => {
                stats.archived(frames);
                stats.archive_ok();
                batch.source.stored(batch.priority, frames);
            }
            Err(err) => {
                stats.archive_error();
                tracing::error!(
                    source_id = batch.source.id,
                    frames,
                    error = %err,
                    "archive write failed; these frames will not be acknowledged"
                );
            }
        }
    }
    if let Err(err) = sink.close().await {
        stats.archive_error();
        tracing::error!(error = %err, "archive close failed");
    }
}
