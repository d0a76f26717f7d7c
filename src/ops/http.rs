//! The monitor's connections, served one by one rather than through `axum::serve`, because a port
//! any client can reach must not let one stop the daemon: `axum::serve` has no connection limit, no
//! timeout on a request's head, and at shutdown waits for every connection to finish, so a client
//! that sent half a request held the exit open for as long as it liked.
//!
//! Here each connection takes one of `monitor.max_connections` slots, at most
//! `monitor.max_connections_per_address` of them from one address, and a descriptor outside the
//! archive's reserve ([`crate::net::descriptors`]). Where a limit is reached a newcomer takes the
//! place of an idle connection (waiting for a request's head): its address's own when that is at
//! its share, else one of the address holding the most ([`Slots::take_or_evict`]), so that a
//! flood of silent or slow clients cannot keep a health probe out; with none idle it is answered
//! 503 and closed. Hyper
//! closes one whose request head does not arrive within `monitor.header_read_timeout_ms`, counted
//! from the accept or the end of the previous response, so a silent connection goes too; and one
//! on which nothing moves either way for `monitor.idle_timeout_ms` is closed. When the monitor
//! stops, every connection is asked to finish its request and close; those still open at the
//! cut-off (the drain's deadline) are dropped. A WebSocket (`/feed`) leaves this accounting once
//! upgraded: it has its own send timeout, and it ends with the fan-out at the drain.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::config::MonitorConfig;
use crate::net::{accept_until, Refused, Slot, Slots};
use crate::stats::Stats;
use crate::tls::https;
use crate::tls::ServerTls;

/// What the monitor's connections are served with.
pub(crate) struct Http {
    pub app: Router,
    pub tls: Option<Arc<ServerTls>>,
    pub settings: MonitorConfig,
    pub stats: Stats,
}

/// Serves `listener` until `stop` resolves, then asks every connection to close and waits for them
/// until the instant `cut_off` resolves to, dropping those still open then.
pub(crate) async fn serve(
    listener: TcpListener,
    http: Http,
    stop: impl Future<Output = ()>,
    cut_off: impl Future<Output = Instant>,
) {
    let http = Arc::new(http);
    let (stopping, cutting) = (CancellationToken::new(), CancellationToken::new());
    let connections = TaskTracker::new();
    {
        let slots = Slots::new(http.settings.limits());
        let accepting = accept_until(
            &listener,
            &slots,
            Slots::take_or_evict,
            &stopping,
            &http.stats,
            |stream, peer, slot| {
                let slot = match slot {
                    Ok(slot) => Arc::new(slot),
                    Err(refused) => return refuse(&stream, refused),
                };
                let (http, stopping, cutting) =
                    (Arc::clone(&http), stopping.clone(), cutting.clone());
                connections.spawn(async move {
                    let evicted = slot.evicted().clone();
                    tokio::select! {
                        () = connection(stream, peer, &http, &stopping, slot) => {}
                        () = evicted.cancelled() => {
                            tracing::debug!(%peer, "idle monitor connection closed: a newcomer took its place");
                        }
                        () = cutting.cancelled() => {
                            tracing::debug!(%peer, "monitor connection cut off at the drain deadline");
                        }
                    }
                });
            },
        );
        let mut accepting = pin!(accepting);
        tokio::select! {
            () = &mut accepting => {}
            () = stop => stopping.cancel(),
        }
        accepting.await;
    }
    drop(listener);
    connections.close();
    let cut_off = cut_off.await;
    if tokio::time::timeout_at(cut_off, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            open = connections.len(),
            "monitor connections still open at the drain deadline are closed"
        );
        cutting.cancel();
        connections.wait().await;
    }
}

/// Answers a connection beyond the limits with a 503, if its socket takes it at once, and closes
/// it.
fn refuse(stream: &TcpStream, refused: Refused) {
    let body = match refused {
        Refused::Full { limit } => {
            format!("too many monitor connections, all busy (monitor.max_connections = {limit})\n")
        }
        Refused::Address { address, limit } => format!(
            "too many monitor connections from {address} \
             (monitor.max_connections_per_address = {limit})\n"
        ),
    };
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.try_write(response.as_bytes());
    tracing::debug!("monitor connection refused: {refused}");
}

/// One connection: its TLS handshake if any, then HTTP/1.1 until the client closes, a timeout, or
/// `stopping` (then the request under way is finished first).
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    http: &Http,
    stopping: &CancellationToken,
    slot: Arc<Slot>,
) {
    match &http.tls {
        Some(tls) => {
            if let Some(stream) = https::handshake(tls.monitor_acceptor(), stream, peer).await {
                serve_http(stream, peer, http, stopping, slot).await;
            }
        }
        None => serve_http(stream, peer, http, stopping, slot).await,
    }
}

async fn serve_http<IO>(
    io: IO,
    peer: SocketAddr,
    http: &Http,
    stopping: &CancellationToken,
    slot: Arc<Slot>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::new());
    let io = Watched {
        io,
        activity: Arc::clone(&activity),
    };
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(http.settings.header_read_timeout);
    let requests = Arc::new(Requests {
        slot,
        under_way: AtomicUsize::new(0),
    });
    let app = http.app.clone();
    let service = hyper::service::service_fn(move |request| {
        let under_way = Requests::start(&requests);
        let response = app.clone().oneshot(request);
        async move {
            let response = response.await?;
            Ok::<_, Infallible>(response.map(|body| {
                Body::new(Answering {
                    body,
                    _under_way: under_way,
                })
            }))
        }
    });
    let conn = builder
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    let mut conn = pin!(conn);
    let idle = http.settings.idle_timeout;
    let mut asked_to_close = false;
    loop {
        tokio::select! {
            served = conn.as_mut() => {
                if let Err(err) = served {
                    tracing::debug!(%peer, error = %err, "monitor connection ended");
                }
                return;
            }
            () = stopping.cancelled(), if !asked_to_close => {
                asked_to_close = true;
                conn.as_mut().graceful_shutdown();
            }
            () = activity.idle_for(idle) => {
                tracing::debug!(%peer, idle_ms = idle.as_millis() as u64, "monitor connection idle; closed");
                return;
            }
        }
    }
}

/// The requests under way on a connection: while there is one, its slot is busy and no newcomer
/// may take its place; between them (waiting for the next head) it is idle.
struct Requests {
    slot: Arc<Slot>,
    under_way: AtomicUsize,
}

impl Requests {
    /// One more request under way, until the guard (held by its response's body) is dropped.
    fn start(requests: &Arc<Requests>) -> UnderWay {
        if requests.under_way.fetch_add(1, Relaxed) == 0 {
            requests.slot.set_idle(false);
        }
        UnderWay(Arc::clone(requests))
    }
}

/// A request under way, until its response's body is sent or dropped.
struct UnderWay(Arc<Requests>);

impl Drop for UnderWay {
    fn drop(&mut self) {
        if self.0.under_way.fetch_sub(1, Relaxed) == 1 {
            self.0.slot.set_idle(true);
        }
    }
}

/// A response's body, which holds its request as under way until it is sent (or dropped).
struct Answering {
    body: Body,
    _under_way: UnderWay,
}

impl http_body::Body for Answering {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// When bytes last moved on a connection, in milliseconds since it was accepted.
#[derive(Debug)]
struct Activity {
    since: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            since: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let now = self.since.elapsed().as_millis() as u64;
        self.last_ms.store(now, Relaxed);
    }

    /// Resolves once nothing has moved for `idle`.
    async fn idle_for(&self, idle: Duration) {
        loop {
            let last = self.since + Duration::from_millis(self.last_ms.load(Relaxed));
            if last.elapsed() >= idle {
                return;
            }
            tokio::time::sleep_until(last + idle).await;
        }
    }
}

/// A connection's stream that notes when bytes move, for the idle timeout.
struct Watched<IO> {
    io: IO,
    activity: Arc<Activity>,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Watched<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Watched<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}
