//! The floor: a server that only walks the length-delimited frames of each socket read (with the
//! daemon's own `walk_messages`) and discards them. One buffer cut per read and no allocation per
//! frame: the most this machine can take in over loopback with this framing, against which the
//! pipelines are measured.

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use aggregator::protocol::ingest::{walk_messages, ClientMessage, DATA_HEADER};
use bytes::{Buf, Bytes, BytesMut};
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
        pid: None,
    })
}

async fn connection(mut stream: TcpStream, shared: &Shared, totals: &Totals) -> Result<(), String> {
    let mut buf = BytesMut::with_capacity(READ_BUFFER);
    let mut probe = None;
    while read_more(&mut stream, &mut buf).await? {
        let (mut frames, mut bytes) = (0u64, 0u64);
        let mut error = None;
        // The daemon's own walk over the length prefixes: one pass, one cut of the buffer.
        let walk = walk_messages(&buf, MAX_FRAME_LENGTH, |_, body| {
            let Some(is_probe) = probe else {
                // The first message names the source: is this the probe connection?
                match ClientMessage::decode(Bytes::copy_from_slice(body)) {
                    Ok(ClientMessage::Hello(hello)) => {
                        probe = Some(hello.source_id == PROBE_SOURCE_ID)
                    }
                    Ok(_) => error = Some("a message before HELLO".to_string()),
                    Err(err) => error = Some(format!("bad first message: {err}")),
                }
                return match error {
                    Some(_) => ControlFlow::Break(()),
                    None => ControlFlow::Continue(()),
                };
            };
            if body.len() < DATA_HEADER {
                error = Some(format!(
                    "message of {} bytes is too short for DATA",
                    body.len()
                ));
                return ControlFlow::Break(());
            }
            frames += 1;
            bytes += (body.len() - DATA_HEADER) as u64;
            if is_probe {
                shared
                    .recorder
                    .probe(&body[DATA_HEADER..], std::time::Duration::ZERO);
            }
            ControlFlow::Continue(())
        });
        buf.advance(walk.end);
        totals.frames.fetch_add(frames, Relaxed);
        totals.bytes.fetch_add(bytes, Relaxed);
        if let Some(err) = error.or(walk.oversize.map(|e| e.to_string())) {
            return Err(err);
        }
        // One read per turn, so that every connection (the probe's too) is read in turn: without
        // this a task runs its whole coop budget (128 reads) before the next one gets a turn.
        tokio::task::yield_now().await;
    }
    Ok(())
}
