//! The floor: a server that only cuts the length-delimited frames out of each socket read and
//! discards them. One buffer split per read and no allocation per frame: the most this machine can
//! take in over loopback with this framing, against which the pipelines are measured.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use aggregator::protocol::ingest::{split_complete, Bodies, ClientMessage, DATA_HEADER};
use bytes::BytesMut;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::control::{Counts, MAX_FRAME_LENGTH, PROBE_SOURCE_ID, READ_BUFFER};
use crate::serving::{read_more, Running, Shared};

#[derive(Debug, Default)]
struct Totals {
    frames: AtomicU64,
    bytes: AtomicU64,
    sources: AtomicU64,
}

pub async fn start(shared: Arc<Shared>, stop: CancellationToken) -> std::io::Result<Running> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let totals = Arc::new(Totals::default());
    let accept_totals = Arc::clone(&totals);
    let done = tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = stop.cancelled() => break,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, _)) => {
                    let (shared, totals) = (Arc::clone(&shared), Arc::clone(&accept_totals));
                    tokio::spawn(async move {
                        totals.sources.fetch_add(1, Relaxed);
                        if let Err(err) = connection(stream, &shared, &totals).await {
                            shared.connection_error(err);
                        }
                        totals.sources.fetch_sub(1, Relaxed);
                    });
                }
                Err(err) => {
                    shared.connection_error(format!("accept: {err}"));
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            }
        }
        None
    });
    Ok(Running {
        addr,
        monitor: None,
        follow: None,
        counts: Box::new(move || Counts {
            processed: totals.frames.load(Relaxed),
            bytes: totals.bytes.load(Relaxed),
            archived: None,
            sources: totals.sources.load(Relaxed),
            ..Counts::default()
        }),
        done,
    })
}

async fn connection(mut stream: TcpStream, shared: &Shared, totals: &Totals) -> Result<(), String> {
    let mut buf = BytesMut::with_capacity(READ_BUFFER);
    let mut probe = None;
    while read_more(&mut stream, &mut buf).await? {
        let split = split_complete(&mut buf, MAX_FRAME_LENGTH);
        let (mut frames, mut bytes) = (0u64, 0u64);
        for body in Bodies::new(split.complete) {
            let Some(is_probe) = probe else {
                // The first message names the source: is this the probe connection?
                match ClientMessage::decode(body) {
                    Ok(ClientMessage::Hello(hello)) => {
                        probe = Some(hello.source_id == PROBE_SOURCE_ID)
                    }
                    Ok(
                        ClientMessage::Data(_)
                        | ClientMessage::Ping(_)
                        | ClientMessage::CatalogAck(_),
                    ) => return Err("a message before HELLO".into()),
                    Err(err) => return Err(format!("bad first message: {err}")),
                }
                continue;
            };
            if body.len() < DATA_HEADER {
                return Err(format!(
                    "message of {} bytes is too short for DATA",
                    body.len()
                ));
            }
            frames += 1;
            bytes += (body.len() - DATA_HEADER) as u64;
            if is_probe {
                shared
                    .recorder
                    .probe(&body[DATA_HEADER..], std::time::Duration::ZERO);
            }
        }
        totals.frames.fetch_add(frames, Relaxed);
        totals.bytes.fetch_add(bytes, Relaxed);
        if let Some(err) = split.oversize {
            return Err(err.to_string());
        }
        // One read per turn, so that every connection (the probe's too) is read in turn: without
        // this a task runs its whole coop budget (128 reads) before the next one gets a turn.
        tokio::task::yield_now().await;
    }
    Ok(())
}
