//! The catalog run: how long a new catalog takes to reach every connected source while the main
//! runs' uplinks saturate the daemon (issue 29).
//!
//! The daemon (with its monitor, the `watched` variant's server, watched by no one) takes the load
//! client's saturating uplinks; a child of its own (`--role catalog`) connects N more sources that
//! send nothing, then publishes a [`CATALOG_BYTES`] catalog through `PUT /catalog` and times, for
//! each source, from just before the PUT to the moment its CATALOG has been read whole; each then
//! answers CATALOG_ACK, as a source does. A source reads the message as it streams in and keeps
//! none of it, so 10,000 of them stay small.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use aggregator::catalog::push::{push, MonitorAccess};
use aggregator::protocol::ingest::ClientMessage;
use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::child::{self, ChildProc};
use crate::control::{emit, CatalogSpread, ChildMsg, LatencySummary};
use crate::results::{CatalogResult, Plan};
use crate::{churn, uplink, Variant};

/// The catalog published: 64 KiB, as in the issue.
pub const CATALOG_BYTES: usize = 64 * 1024;
/// The first id of the catalog run's sources, above the load client's.
const FIRST_ID: u32 = 1_000_000;
/// The longest the spread may take before the run fails.
const SPREAD_LIMIT: Duration = Duration::from_secs(120);
/// The type bytes of WELCOME and CATALOG (`docs/protocol.md`).
const WELCOME: u8 = 0x81;
const CATALOG: u8 = 0x86;

/// What the readers share: when the publication began, and how many were welcomed.
#[derive(Default)]
struct Shared {
    published: OnceLock<Instant>,
    welcomed: AtomicUsize,
    changed: Notify,
}

/// One spread per source count in `plan.catalog`.
pub fn run(exe: &Path, plan: &Plan) -> Result<Vec<CatalogResult>, String> {
    plan.catalog
        .iter()
        .map(|&sources| {
            eprintln!(
                "[bench] catalog: {CATALOG_BYTES} B to {sources} sources, {} uplinks saturating",
                plan.connections
            );
            spread(exe, plan, sources)
        })
        .collect()
}

fn spread(exe: &Path, plan: &Plan, sources: usize) -> Result<CatalogResult, String> {
    let limit = child::child_limit(plan) + SPREAD_LIMIT;
    let total = sources + plan.connections;
    let (mut server, listening) =
        child::start_server_listening(exe, plan, Variant::Watched, total, limit)?;
    let monitor = listening
        .monitor
        .ok_or("the catalog run's daemon serves no monitor")?;
    let mut load = child::start_client(exe, plan, listening.addr, plan.connections, 64, false, 0)?;
    child::wait_for_sources(&mut server, plan.connections + 1)?;
    std::thread::sleep(plan.warmup);
    let args = [
        "--role",
        "catalog",
        "--addr",
        &listening.addr.to_string(),
        "--monitor",
        &monitor.to_string(),
        "--connections",
        &sources.to_string(),
        "--limit-secs",
        &limit.as_secs().to_string(),
    ]
    .map(String::from);
    let mut client = ChildProc::spawn(exe, &args, "catalog client".into())?;
    let spread = match client.recv(limit)? {
        ChildMsg::CatalogSpread(spread) => spread,
        other => {
            return Err(format!(
                "catalog client: expected its spread, got {other:?}"
            ))
        }
    };
    client.wait(Duration::from_secs(30))?;
    load.close_stdin();
    load.wait(Duration::from_secs(10))?;
    server.send("STOP")?;
    server.final_report(Duration::from_secs(30))?;
    server.close_stdin();
    server.wait(Duration::from_secs(10))?;
    Ok(CatalogResult {
        sources,
        saturating: plan.connections,
        bytes: CATALOG_BYTES,
        spread,
    })
}

/// The `--role catalog` child: connects `sources` sources, publishes, and reports the spread.
pub async fn catalog(addr: SocketAddr, monitor: SocketAddr, sources: usize) {
    let shared = Arc::new(Shared::default());
    let mut connecting = JoinSet::new();
    let mut readers = JoinSet::new();
    let mut first_error = None;
    for i in 0..sources as u32 {
        if connecting.len() >= churn::AT_ONCE {
            if let Some(done) = connecting.join_next().await {
                start_reader(done, &mut readers, &shared, &mut first_error);
            }
        }
        connecting.spawn(uplink::connect(addr, FIRST_ID + i, None));
    }
    while let Some(done) = connecting.join_next().await {
        start_reader(done, &mut readers, &shared, &mut first_error);
    }
    // Every source registered (welcomed) before the publication, so that each is sent it live.
    let everyone = readers.len();
    loop {
        let changed = shared.changed.notified();
        if shared.welcomed.load(Relaxed) >= everyone {
            break;
        }
        if tokio::time::timeout(SPREAD_LIMIT, changed).await.is_err() {
            first_error.get_or_insert("not every source was welcomed in time".into());
            break;
        }
    }
    let body = vec![0x5a; CATALOG_BYTES];
    let started = Instant::now();
    let _ = shared.published.set(started);
    let put = push(
        monitor,
        "application/octet-stream",
        &body,
        &MonitorAccess::default(),
    )
    .await;
    let put_ms = started.elapsed().as_secs_f64() * 1e3;
    if let Err(err) = put {
        first_error.get_or_insert(format!("PUT /catalog: {err}"));
    }
    let mut received = Vec::with_capacity(sources);
    while let Some(done) = readers.join_next().await {
        match done.map_err(|e| e.to_string()).and_then(|r| r) {
            Ok(elapsed) => received.push((elapsed.as_nanos() as u64, 1)),
            Err(err) => {
                first_error.get_or_insert(err);
            }
        }
    }
    emit(&ChildMsg::CatalogSpread(CatalogSpread {
        received: received.len() as u64,
        put_ms,
        latency: LatencySummary::of(received),
        first_error,
    }));
}

/// Starts reading the source a connection task gave, or notes why it could not connect.
fn start_reader(
    done: Result<Result<TcpStream, String>, tokio::task::JoinError>,
    readers: &mut JoinSet<Result<Duration, String>>,
    shared: &Arc<Shared>,
    first_error: &mut Option<String>,
) {
    match done.map_err(|e| e.to_string()).and_then(|r| r) {
        Ok(stream) => {
            let shared = Arc::clone(shared);
            readers.spawn(async move {
                tokio::time::timeout(SPREAD_LIMIT, receive(stream, &shared))
                    .await
                    .map_err(|_| "no CATALOG within the limit".to_string())?
            });
        }
        Err(err) => {
            first_error.get_or_insert(err);
        }
    }
}

/// Reads messages until a CATALOG has arrived whole (counting the WELCOME on the way), answers
/// CATALOG_ACK, and returns the time since the publication began. Bodies are skipped as they
/// stream in, never held.
async fn receive(mut stream: TcpStream, shared: &Shared) -> Result<Duration, String> {
    let fail = |what: &str, err: std::io::Error| format!("{what}: {err}");
    loop {
        let length = stream.read_u32().await.map_err(|e| fail("reading", e))? as u64;
        let kind = stream.read_u8().await.map_err(|e| fail("reading", e))?;
        if kind != CATALOG {
            skip(&mut stream, length.saturating_sub(1)).await?;
            if kind == WELCOME {
                shared.welcomed.fetch_add(1, Relaxed);
                shared.changed.notify_one();
            }
            continue;
        }
        let version = stream.read_u64().await.map_err(|e| fail("CATALOG", e))?;
        skip(&mut stream, length.saturating_sub(9)).await?;
        let elapsed = shared
            .published
            .get()
            .map_or(Duration::ZERO, Instant::elapsed);
        let mut ack = BytesMut::new();
        ClientMessage::CatalogAck(version).encode(&mut ack);
        stream
            .write_all(&ack)
            .await
            .map_err(|e| fail("CATALOG_ACK", e))?;
        return Ok(elapsed);
    }
}

async fn skip(stream: &mut (impl AsyncRead + Unpin), bytes: u64) -> Result<(), String> {
    let copied = tokio::io::copy(&mut stream.take(bytes), &mut tokio::io::sink())
        .await
        .map_err(|e| format!("reading: {e}"))?;
    match copied == bytes {
        true => Ok(()),
        false => Err("the daemon closed the connection".into()),
    }
}
