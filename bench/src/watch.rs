//! The watcher of the `watched` variant: what an operator's screens cost the daemon.
//!
//! It plays, from a process of its own, a web dashboard (`/stats` polled every second, and the
//! emergencies from `/feed?priority=emergency`) and [`SUBSCRIBERS`] `/feed` subscribers that take
//! every frame and read as fast as this process can. The parent compares the daemon's throughput
//! with and without it; what the subscribers received and were told they missed comes back at
//! `END`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_tungstenite::tungstenite::Message;

use crate::control::{emit, ChildMsg, Watched};

/// `/feed` subscribers that take every frame.
pub const SUBSCRIBERS: usize = 4;

#[derive(Debug, Default)]
struct Tally {
    frames: AtomicU64,
    missed: AtomicU64,
    emergencies: AtomicU64,
    stats_polls: AtomicU64,
}

/// Opens the subscriptions, says so, and answers `END` with what they saw.
pub async fn watch(monitor: SocketAddr, mut commands: UnboundedReceiver<String>) {
    let tally = Arc::new(Tally::default());
    let mut queries = vec!["?priority=emergency"; 1];
    queries.extend(std::iter::repeat_n("", SUBSCRIBERS));
    for query in queries {
        let url = format!("ws://{monitor}/feed{query}");
        let socket = match tokio_tungstenite::connect_async(&url).await {
            Ok((socket, _)) => socket,
            Err(err) => {
                eprintln!("aggregator-bench watcher: {url}: {err}");
                std::process::exit(1);
            }
        };
        let tally = Arc::clone(&tally);
        let emergencies_only = !query.is_empty();
        tokio::spawn(async move {
            let mut socket = socket;
            while let Some(Ok(message)) = socket.next().await {
                if let Message::Text(text) = message {
                    count(&tally, &text, emergencies_only);
                }
            }
        });
    }
    tokio::spawn(poll_stats(monitor, Arc::clone(&tally)));
    emit(&ChildMsg::Watching);
    while let Some(line) = commands.recv().await {
        if line.trim() == "END" {
            emit(&ChildMsg::Watched(Watched {
                subscribers: SUBSCRIBERS as u64,
                frames: tally.frames.load(Relaxed),
                missed: tally.missed.load(Relaxed),
                emergencies: tally.emergencies.load(Relaxed),
                stats_polls: tally.stats_polls.load(Relaxed),
            }));
        }
    }
}

/// Counts one feed message: a frame, or a gap and the frames it says were missed.
fn count(tally: &Tally, text: &str, emergencies_only: bool) {
    let gap = text
        .strip_prefix("{\"gap\":")
        .and_then(|rest| rest.strip_suffix('}'))
        .and_then(|n| n.parse::<u64>().ok());
    match gap {
        Some(missed) => tally.missed.fetch_add(missed, Relaxed),
        None if emergencies_only => tally.emergencies.fetch_add(1, Relaxed),
        None => tally.frames.fetch_add(1, Relaxed),
    };
}

/// What the dashboard page does once a second: `GET /stats`, read whole.
async fn poll_stats(monitor: SocketAddr, tally: Arc<Tally>) {
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    let request = "GET /stats HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n";
    loop {
        ticker.tick().await;
        let Ok(mut stream) = TcpStream::connect(monitor).await else {
            continue;
        };
        let mut response = Vec::new();
        if stream.write_all(request.as_bytes()).await.is_ok()
            && stream.read_to_end(&mut response).await.is_ok()
        {
            tally.stats_polls.fetch_add(1, Relaxed);
        }
    }
}
