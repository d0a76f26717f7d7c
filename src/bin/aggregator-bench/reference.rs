//! The reference: the original brief's condensed reference implementation, fed by TCP.
//!
//! Kept as the brief wrote it: a router actor that spawns a forwarding task per source into a
//! channel of 512, emergency (64) and routine (256) channels drained by a biased select into the
//! processor's channel of 64, a `watch` stats update and a broadcast send per frame, and an archive
//! consumer on the broadcast. Frames carry `Vec<u8>` payloads, as in the brief. Each connection
//! task decodes its reads and sends the frames one by one into its source's feed channel (32, as in
//! the brief's `main`). Two measurement-only additions: `Frame::decoded_at`, and counters the
//! processor and archive bump so the harness can read them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aggregator::protocol::ingest::{split_complete, Bodies, ClientMessage};
use bytes::BytesMut;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::control::{Counts, MAX_FRAME_LENGTH, PROBE_SOURCE_ID, READ_BUFFER};
use crate::serving::{read_more, Running, Shared};

#[derive(Debug, Clone)]
pub enum FramePriority {
    Emergency,
    Routine,
}

#[derive(Debug, Clone)]
pub enum SourceKind {
    LiveUplink,
}

#[derive(Debug, Clone)]
pub struct Frame {
    pub source_id: u32,
    pub source_kind: SourceKind,
    pub priority: FramePriority,
    pub sequence: u64,
    pub payload: Vec<u8>,
    /// Measurement only: when the connection task decoded the frame.
    pub decoded_at: Instant,
}

#[derive(Clone, Debug, Default)]
pub struct PipelineStats {
    pub frames_processed: u64,
    pub emergency_count: u64,
}

enum RouterMsg {
    AddSource {
        source_id: u32,
        feed: mpsc::Receiver<Frame>,
    },
}

/// Counters for the harness (not part of the reference design).
#[derive(Debug, Default)]
struct Totals {
    processed: Arc<AtomicU64>,
    emergency: Arc<AtomicU64>,
    bytes: AtomicU64,
    archived: AtomicU64,
    sources: AtomicU64,
}

async fn router_actor(
    mut ctrl: mpsc::Receiver<RouterMsg>,
    emergency_tx: mpsc::Sender<Frame>,
    routine_tx: mpsc::Sender<Frame>,
) {
    let (internal_tx, mut internal_rx) = mpsc::channel::<Frame>(512);
    let mut handles: HashMap<u32, tokio::task::JoinHandle<()>> = HashMap::new();
    loop {
        tokio::select! {
            Some(msg) = ctrl.recv() => {
                match msg {
                    RouterMsg::AddSource { source_id, mut feed } => {
                        let fwd = internal_tx.clone();
                        let h = tokio::spawn(async move {
                            while let Some(frame) = feed.recv().await {
                                if fwd.send(frame).await.is_err() { break; }
                            }
                        });
                        handles.insert(source_id, h);
                    }
                }
            }
            Some(frame) = internal_rx.recv() => {
                let dest = match frame.priority {
                    FramePriority::Emergency => &emergency_tx,
                    FramePriority::Routine => &routine_tx,
                };
                if dest.send(frame).await.is_err() { break; }
            }
            else => break,
        }
    }
}

async fn priority_fan_in(
    mut emerg_rx: mpsc::Receiver<Frame>,
    mut routine_rx: mpsc::Receiver<Frame>,
    out_tx: mpsc::Sender<Frame>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            biased;
            Some(f) = emerg_rx.recv() => { if out_tx.send(f).await.is_err() { break; } }
            Some(f) = routine_rx.recv() => { if out_tx.send(f).await.is_err() { break; } }
            Ok(()) = shutdown.changed() => { if *shutdown.borrow() { break; } }
            else => break,
        }
    }
}

async fn frame_processor(
    mut rx: mpsc::Receiver<Frame>,
    bcast_tx: broadcast::Sender<Frame>,
    stats_tx: watch::Sender<PipelineStats>,
    totals: Arc<Totals>,
    shared: Arc<Shared>,
) {
    let (processed, emergency) = (&totals.processed, &totals.emergency);
    while let Some(frame) = rx.recv().await {
        let is_emerg = matches!(frame.priority, FramePriority::Emergency);
        tracing::info!(
            source = frame.source_id, kind = ?frame.source_kind, seq = frame.sequence,
            priority = if is_emerg { "EMERGENCY" } else { "routine" },
            "processed"
        );
        processed.fetch_add(1, Relaxed);
        if is_emerg {
            emergency.fetch_add(1, Relaxed);
        }
        let _ = stats_tx.send(PipelineStats {
            frames_processed: processed.load(Relaxed),
            emergency_count: emergency.load(Relaxed),
        });
        // Measurement only.
        totals.bytes.fetch_add(frame.payload.len() as u64, Relaxed);
        if frame.source_id == PROBE_SOURCE_ID {
            shared.recorder.probe(&frame.payload, Duration::ZERO);
        } else if is_emerg {
            shared
                .recorder
                .stream(frame.decoded_at.elapsed().as_nanos() as u64, 1);
        }
        let _ = bcast_tx.send(frame);
    }
}

async fn archive_consumer(mut rx: broadcast::Receiver<Frame>, totals: Arc<Totals>) {
    let mut count = 0u64;
    loop {
        match rx.recv().await {
            Ok(_) => {
                count += 1;
                totals.archived.fetch_add(1, Relaxed);
            }
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(missed = n, "archive lagged");
            }
            Err(broadcast::error::RecvError::Closed) => {
                tracing::info!(total = count, "archive done");
                break;
            }
        }
    }
}

pub async fn start(shared: Arc<Shared>, stop: CancellationToken) -> std::io::Result<Running> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let totals = Arc::new(Totals::default());

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (stats_tx, mut stats_rx) = watch::channel(PipelineStats::default());
    let (bcast_tx, _) = broadcast::channel::<Frame>(128);
    let (ctrl_tx, ctrl_rx) = mpsc::channel::<RouterMsg>(8);
    let (emerg_tx, emerg_rx) = mpsc::channel::<Frame>(64);
    let (routine_tx, routine_rx) = mpsc::channel::<Frame>(256);
    let (proc_tx, proc_rx) = mpsc::channel::<Frame>(64);
    tokio::spawn(router_actor(ctrl_rx, emerg_tx, routine_tx));
    tokio::spawn(priority_fan_in(emerg_rx, routine_rx, proc_tx, shutdown_rx));
    tokio::spawn(archive_consumer(bcast_tx.subscribe(), Arc::clone(&totals)));
    tokio::spawn(frame_processor(
        proc_rx,
        bcast_tx,
        stats_tx,
        Arc::clone(&totals),
        Arc::clone(&shared),
    ));
    // The stats monitor, reading the watch every 50 ms (it only keeps a receiver alive and busy).
    let monitor_stop = stop.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = monitor_stop.cancelled() => break,
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
            if stats_rx.changed().await.is_err() {
                break;
            }
            let s = stats_rx.borrow().clone();
            std::hint::black_box((s.frames_processed, s.emergency_count));
        }
    });

    let accept_totals = Arc::clone(&totals);
    let done = tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = stop.cancelled() => break,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, _)) => {
                    let (shared, totals, ctrl) = (
                        Arc::clone(&shared),
                        Arc::clone(&accept_totals),
                        ctrl_tx.clone(),
                    );
                    tokio::spawn(async move {
                        totals.sources.fetch_add(1, Relaxed);
                        if let Err(err) = connection(stream, ctrl).await {
                            shared.connection_error(err);
                        }
                        totals.sources.fetch_sub(1, Relaxed);
                    });
                }
                Err(err) => {
                    shared.connection_error(format!("accept: {err}"));
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
        let _ = shutdown_tx.send(true);
        None
    });
    Ok(Running {
        addr,
        monitor: None,
        follow: None,
        counts: Box::new(move || Counts {
            processed: totals.processed.load(Relaxed),
            bytes: totals.bytes.load(Relaxed),
            archived: Some(totals.archived.load(Relaxed)),
            sources: totals.sources.load(Relaxed),
            ..Counts::default()
        }),
        done,
    })
}

/// Decodes a connection's reads and feeds its frames one by one into its source's channel.
async fn connection(mut stream: TcpStream, ctrl: mpsc::Sender<RouterMsg>) -> Result<(), String> {
    let mut buf = BytesMut::with_capacity(READ_BUFFER);
    let mut feed: Option<(u32, mpsc::Sender<Frame>)> = None;
    while read_more(&mut stream, &mut buf).await? {
        let split = split_complete(&mut buf, MAX_FRAME_LENGTH);
        let decoded_at = Instant::now();
        for body in Bodies::new(split.complete) {
            match ClientMessage::decode(body).map_err(|e| e.to_string())? {
                ClientMessage::Hello(hello) => {
                    if feed.is_some() {
                        return Err("a second HELLO".into());
                    }
                    let (tx, rx) = mpsc::channel::<Frame>(32);
                    let add = RouterMsg::AddSource {
                        source_id: hello.source_id,
                        feed: rx,
                    };
                    ctrl.send(add)
                        .await
                        .map_err(|_| "the router stopped".to_string())?;
                    feed = Some((hello.source_id, tx));
                }
                ClientMessage::Data(data) => {
                    let Some((source_id, tx)) = &feed else {
                        return Err("DATA before HELLO".into());
                    };
                    let frame = Frame {
                        source_id: *source_id,
                        source_kind: SourceKind::LiveUplink,
                        priority: match data.priority {
                            aggregator::Priority::Emergency => FramePriority::Emergency,
                            aggregator::Priority::Routine => FramePriority::Routine,
                        },
                        sequence: data.sequence,
                        payload: data.payload.to_vec(),
                        decoded_at,
                    };
                    if tx.send(frame).await.is_err() {
                        return Err("the pipeline stopped".into());
                    }
                }
                // The load client sends no keep-alive; the reference design has none.
                ClientMessage::Ping(_) | ClientMessage::CatalogAck(_) => {
                    return Err("a message the reference does not know".into())
                }
            }
        }
        if let Some(err) = split.oversize {
            return Err(err.to_string());
        }
    }
    Ok(())
}
