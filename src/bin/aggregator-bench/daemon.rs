//! The daemon variant: the real `aggregator::Daemon` with its default `Config` (listeners on
//! `127.0.0.1:0`), and an archive sink that counts frames exactly like `CountingSink` and also
//! timestamps probe frames and in-stream emergency frames as they are stored.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use aggregator::archive::{ArchiveSink, BoxFuture};
use aggregator::{Batch, Config, Daemon, Listeners, Priority};
use tokio_util::sync::CancellationToken;

use crate::control::{Counts, DrainInfo, PROBE_SOURCE_ID};
use crate::server::{Running, Shared};

/// `CountingSink`'s count, readable from outside, plus the latency samples.
struct MeasuringSink {
    frames: Arc<AtomicU64>,
    shared: Arc<Shared>,
}

impl ArchiveSink for MeasuringSink {
    fn write<'a>(&'a mut self, batches: &'a [Arc<Batch>]) -> BoxFuture<'a, io::Result<()>> {
        let recorder = &self.shared.recorder;
        for batch in batches {
            self.frames.fetch_add(batch.len() as u64, Relaxed);
            if !recorder.recording() {
                continue;
            }
            if batch.source.id == PROBE_SOURCE_ID {
                for (_, payload) in batch.payloads() {
                    recorder.probe(payload);
                }
            } else if batch.priority == Priority::Emergency {
                recorder.stream(batch.decoded_at.elapsed().as_nanos() as u64, batch.len());
            }
        }
        Box::pin(async { Ok(()) })
    }
}

/// Starts the daemon. `max_connections` raises the uplink limit for the scale runs only; the
/// other runs use the default config unchanged.
pub async fn start(
    shared: Arc<Shared>,
    stop: CancellationToken,
    max_connections: Option<usize>,
) -> io::Result<Running> {
    let mut config = Config::default();
    config.uplink.listen = "127.0.0.1:0".parse().map_err(io::Error::other)?;
    config.replay.listen = "127.0.0.1:0".parse().map_err(io::Error::other)?;
    if let Some(limit) = max_connections {
        config.uplink.max_connections = limit;
    }
    let listeners = Listeners::bind(&config).await?;
    let addr = listeners.uplink.local_addr()?;
    let archived = Arc::new(AtomicU64::new(0));
    let sink = MeasuringSink {
        frames: Arc::clone(&archived),
        shared,
    };
    let daemon = Daemon::new(config, Box::new(sink));
    let stats = daemon.stats();
    let done = tokio::spawn(async move {
        let report = daemon.run(listeners, stop.cancelled_owned()).await;
        Some(DrainInfo {
            completed: report.completed,
            elapsed_ms: report.elapsed.as_secs_f64() * 1e3,
            accepted: report.accepted,
            processed: report.processed,
            archived: report.archived,
            lost: report.lost,
            duplicates: report.duplicates,
        })
    });
    Ok(Running {
        addr,
        counts: Box::new(move || {
            let s = stats.snapshot();
            Counts {
                processed: s.frames_processed,
                bytes: s.bytes_processed,
                archived: Some(archived.load(Relaxed)),
                sources: s.active_sources,
                ..Counts::default()
            }
        }),
        done,
    })
}
