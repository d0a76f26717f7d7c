//! The daemon variants: the real `aggregator::Daemon` with its default `Config` (listeners on
//! `127.0.0.1:0`): `daemon` with its durable segment archive (in a temporary directory), `pipeline`
//! with `archive.kind = "count"`, `watched` as `daemon` with its monitor served on loopback. Either
//! way the sink is wrapped by one that counts what the archive receives and takes the latency
//! samples, at the instant the processor took each batch. The durable daemon also serves followers
//! of its archive on a port of its own, for the consumers run; the other runs connect none.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use aggregator::archive::format::ArchiveError;
use aggregator::archive::write::{ArchiveSink, BoxFuture, JournalAppend};
use aggregator::config::ArchiveKind;
use aggregator::domain::position::DurableEnd;
use aggregator::ops::monitor;
use aggregator::{Batch, Config, Daemon, Listeners, Priority, Stats};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::control::{self, Counts, DrainInfo, PROBE_SOURCE_ID};
use crate::serving::{Running, Shared};
use crate::Variant;

/// The real sink, wrapped: counts what the archive receives (readable from outside) and takes the
/// latency samples. Every batch passes here, so no sample is lost, and each carries the instant
/// the processor took it (`Batch::processed_at`), which is where the issue defines latency: the
/// time the archive got round to the batch does not enter the figures.
struct MeasuredSink {
    frames: Arc<AtomicU64>,
    shared: Arc<Shared>,
    inner: Box<dyn ArchiveSink>,
}

impl MeasuredSink {
    fn sample(&self, batch: &Batch) {
        let recorder = &self.shared.recorder;
        let Some(processed_at) = batch.processed_at.filter(|_| recorder.recording()) else {
            return;
        };
        if batch.source.id == PROBE_SOURCE_ID {
            for (_, payload) in batch.payloads() {
                recorder.probe(payload, processed_at.elapsed());
            }
        } else if batch.priority == Priority::Emergency {
            let latency = processed_at.duration_since(batch.decoded_at);
            recorder.stream(latency.as_nanos() as u64, batch.len());
        }
    }
}

impl ArchiveSink for MeasuredSink {
    fn write<'a>(
        &'a mut self,
        batches: &'a [Arc<Batch>],
    ) -> BoxFuture<'a, Result<(), ArchiveError>> {
        let mut frames = 0;
        for batch in batches {
            frames += batch.len();
            if batch.priority == Priority::Emergency {
                self.sample(batch);
            }
        }
        self.frames.fetch_add(frames as u64, Relaxed);
        self.inner.write(batches)
    }

    fn journal(&mut self, batches: &[Arc<Batch>]) -> Option<JournalAppend> {
        self.inner.journal(batches)
    }

    fn sync(&mut self) -> BoxFuture<'static, Result<(), ArchiveError>> {
        self.inner.sync()
    }

    fn close(&mut self) -> BoxFuture<'_, Result<(), ArchiveError>> {
        self.inner.close()
    }

    fn durable_end(&self) -> Option<tokio::sync::watch::Receiver<DurableEnd>> {
        self.inner.durable_end()
    }
}

/// The bench's changes to `config`: listeners on free ports, the archive in a fresh temporary
/// directory ([`control::archive_dir`]) or, for `pipeline`, none kept; for the scale runs the
/// uplink's limits raised to `max_connections`.
fn adapt(config: &mut Config, max_connections: Option<usize>, variant: Variant) -> io::Result<()> {
    config.uplink.listen = "127.0.0.1:0".parse().map_err(io::Error::other)?;
    config.replay.listen = "127.0.0.1:0".parse().map_err(io::Error::other)?;
    if let Some(limit) = max_connections {
        config.uplink.max_connections = limit;
        config.uplink.max_connections_per_address = Some(limit);
    }
    config.archive.dir = control::archive_dir(std::process::id());
    if variant == Variant::Pipeline {
        config.archive.kind = ArchiveKind::Count;
    }
    Ok(())
}

/// The daemon's counters now, with the frames the archive's sinks took.
fn counts(stats: &Stats, archived: &AtomicU64) -> Counts {
    let s = stats.snapshot();
    Counts {
        processed: s.frames_processed,
        bytes: s.bytes_processed,
        archived: Some(archived.load(Relaxed)),
        sources: s.active_sources,
        unsynced_bytes: s.archive_unsynced_bytes,
        in_flight: s.in_flight(),
        archive_bytes: s.archive_bytes,
        deleted_segments: s.retention_deleted_segments,
        deleted_bytes: s.retention_deleted_bytes,
        nats_published: s.nats_published,
        nats_unreplicated: s.nats_unreplicated_frames,
        nats_room_bytes: s.nats_room_bytes,
        nats_at_leader: s.nats_at_leader,
        ..Counts::default()
    }
}

/// Starts the daemon with `config` (the defaults unless `--daemon-config` gave a file).
/// `max_connections` raises the uplink limit (in all and from one address: every source connects
/// from loopback) for the scale runs only; otherwise the config is used
/// unchanged, but for the listeners, the archive's directory (a fresh temporary one,
/// [`control::archive_dir`]) or, for `pipeline`, its kind.
pub async fn start(
    shared: Arc<Shared>,
    stop: CancellationToken,
    mut config: Config,
    max_connections: Option<usize>,
    variant: Variant,
) -> io::Result<Running> {
    adapt(&mut config, max_connections, variant)?;
    let mut archive = aggregator::archive::write::open(&config.archive, config.runtime.shards)?;
    let listeners = Listeners::bind(&config).await?;
    let addr = listeners.uplink.local_addr()?;
    let follow = match variant {
        Variant::Pipeline => None,
        _ => Some(TcpListener::bind("127.0.0.1:0").await?),
    };
    let follow_addr = follow.as_ref().map(|l| l.local_addr()).transpose()?;
    let archived = Arc::new(AtomicU64::new(0));
    archive.sinks = std::mem::take(&mut archive.sinks)
        .into_iter()
        .map(|inner| {
            Box::new(MeasuredSink {
                frames: Arc::clone(&archived),
                shared: Arc::clone(&shared),
                inner,
            }) as Box<dyn ArchiveSink>
        })
        .collect();
    let mut daemon = Daemon::new(config, archive);
    if let Some(listener) = follow {
        daemon.serve_followers(listener);
    }
    let stats = daemon.stats();
    let monitor_stop = CancellationToken::new();
    let monitor = match variant {
        Variant::Watched => {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?;
            let state = daemon.monitor_state();
            tokio::spawn(monitor::serve(
                listener,
                state,
                monitor_stop.clone().cancelled_owned(),
            ));
            Some(addr)
        }
        _ => None,
    };
    let done = tokio::spawn(async move {
        // The parent removes the archive once this process has exited: removing gigabytes of
        // segments here would count in the drain run's time to exit.
        let report = daemon.run(listeners, stop.cancelled_owned()).await;
        monitor_stop.cancel();
        Some(DrainInfo {
            completed: report.completed,
            elapsed_ms: report.elapsed.as_secs_f64() * 1e3,
            accepted: report.accepted,
            processed: report.processed,
            archived: report.archived,
            lost: report.unacknowledged,
            duplicates: report.duplicates,
        })
    });
    Ok(Running {
        addr,
        monitor,
        follow: follow_addr,
        counts: Box::new(move || counts(&stats, &archived)),
        done,
        pid: None,
    })
}
