//! The archive's space packets for mission control: TM servers (`[[tm_servers]]`), TCP listeners
//! whose connections read packets back to back as Yamcs' `TcpTmDataLink` and COSMOS' TCP/IP
//! client interfaces do, and TM forwards (`[[tm_forwards]]`), a datagram per packet
//! (`docs/tm-server.md`).
//!
//! Why a layer of its own beside the follow layer: mission-control systems read bare packets and
//! speak no follow protocol, so they could not read the archive without an adapter; and why it
//! reads the archive's files with the archive's read side ([`crate::archive::read`], through
//! [`packets`]), not the pipeline: a connection's history and live are one loop up to the durable
//! end, so it loses and repeats nothing, and a slow reader is only further behind in the files,
//! while ingest, the archive writer and the drain never wait for it. Like followers, the outputs
//! run on threads of their own at a lower priority, with tasks apart from the pipeline's: at a
//! drain each sends what became durable up to the archive's close, and what is still sending at
//! the drain deadline is cut off, so the drain's report never depends on them.

pub mod forward;
pub mod packets;
pub mod server;

use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::archive::read::{spawn_low_priority, DurableEnds, ReaderTasks};
use crate::config::{TmForwardConfig, TmServerConfig};
use crate::domain::readers::Readers;
use crate::stats::Stats;
use forward::TmForward;
use server::TmService;

/// What every TM output reads, and what stops it.
pub(crate) struct TmArchive {
    /// The archive directory: shard 0's segments, and the other shards' directories.
    pub dir: PathBuf,
    /// Every shard's durable end; never empty (the config needs an archive that keeps files).
    pub durable: DurableEnds,
    pub readers: Option<Arc<Readers>>,
    pub stats: Stats,
    pub drain: CancellationToken,
}

/// The running TM servers and forwards: their tasks, and the cut-off at the drain deadline.
pub(crate) struct TmOutputs {
    tasks: ReaderTasks,
}

impl TmOutputs {
    /// Serves each server on its listener until the drain, and starts each forward, every one on
    /// a thread of its own.
    pub(crate) fn start(
        servers: Vec<(TmServerConfig, TcpListener)>,
        forwards: &[TmForwardConfig],
        archive: &TmArchive,
    ) -> TmOutputs {
        let outputs = TmOutputs {
            tasks: ReaderTasks::default(),
        };
        for (config, listener) in servers {
            outputs.serve(config, listener, archive);
        }
        for config in forwards {
            outputs.forward(config, archive);
        }
        outputs
    }

    fn serve(&self, config: TmServerConfig, listener: TcpListener, archive: &TmArchive) {
        let service = Arc::new(TmService {
            selection: config.selection(),
            output: archive.stats.tm_output(&config.name),
            limits: config.limits(),
            name: config.name,
            framing: config.framing,
            archive: archive.dir.clone(),
            durable: archive.durable.clone(),
            readers: archive.readers.clone(),
            stats: archive.stats.clone(),
            drain: archive.drain.clone(),
        });
        let (tasks, cut_off) = (self.tasks.tracker.clone(), self.tasks.cut_off.clone());
        let name = service.name.clone();
        let thread = listener.into_std().and_then(|listener| {
            spawn_low_priority("tm-server", move || async move {
                match TcpListener::from_std(listener) {
                    Ok(listener) => server::accept(&listener, &service, &tasks, &cut_off).await,
                    Err(err) => {
                        tracing::error!(server = service.name, error = %err, "cannot listen for TM clients");
                    }
                }
                tasks.wait().await;
            })
        });
        if let Err(err) = thread {
            tracing::error!(server = name, error = %err, "cannot start the TM server's thread; it serves nothing");
        }
    }

    fn forward(&self, config: &TmForwardConfig, archive: &TmArchive) {
        let forward = TmForward {
            name: config.name.clone(),
            to: config.to,
            selection: config.selection(),
            archive: archive.dir.clone(),
            durable: archive.durable.clone(),
            readers: archive.readers.clone(),
            output: archive.stats.tm_output(&config.name),
            stats: archive.stats.clone(),
        };
        let (tasks, cut_off) = (self.tasks.tracker.clone(), self.tasks.cut_off.clone());
        let name = config.name.clone();
        let thread = spawn_low_priority("tm-forward", move || {
            tasks.track_future(async move {
                tokio::select! {
                    _ = cut_off.cancelled() => {
                        tracing::warn!(forward = name, "TM forward cut off at the drain deadline");
                    }
                    () = forward::run(forward) => {}
                }
            })
        });
        if let Err(err) = thread {
            tracing::error!(forward = config.name, error = %err, "cannot start the TM forward's thread; it sends nothing");
        }
    }

    /// Waits for every connection and forward to send what became durable, until `deadline`;
    /// then cuts off those still sending (a client that does not read).
    pub async fn finish(self, deadline: Instant) {
        self.tasks.finish(deadline).await;
    }
}
