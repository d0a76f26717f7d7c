//! The HTTP monitoring endpoint: what an operator's dashboards, Prometheus and load balancer read.
//!
//! - `GET /`: the web dashboard ([`crate::ops::web`]), a page that reads `/stats` and the feed;
//! - `GET /stats`: the latest counters as JSON, with rates and the per-source table (its JSON is
//!   shaped in `ops/stats_body.rs`);
//! - `GET /metrics`: the same counters in the Prometheus text exposition format
//!   ([`crate::ops::metrics`]);
//! - `GET /healthz`: `ready` (200), `draining` or `degraded` (503), with `warnings` (a source
//!   listener open beyond loopback without TLS);
//! - `GET /feed`: the live feed, a WebSocket ([`crate::ops::feed`]);
//! - `PUT /catalog`: publishes a catalog to every connected source ([`crate::ops::catalog`]);
//! - `GET /archive/frames`: the frames received in a time window, streamed
//!   ([`crate::ops::archive_query`]).
//!
//! Every figure comes from atomic loads (`Stats::snapshot`, `Source::snapshot`); the per-source
//! table is a request to the router actor, which answers from those same atomics. Serving a scrape
//! therefore never takes a lock the pipeline uses. Rates are sampled once a second by a task of
//! the monitor's own and kept in atomics, so a scrape does not need to remember the previous one.
//! It runs beside the daemon, not inside its drain, so that it reports `draining` until the end.
//! With `[tls]` it serves HTTPS with the listeners' certificate (no client certificate asked);
//! with `monitor.token_file` a bearer token guards it ([`crate::ops::access`]).

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{FromRef, State};
use axum::http::{header, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::archive::query::completeness::merge_groups;
use crate::archive::read::DurableEnds;
use crate::catalog::CatalogHandle;
use crate::config::{Config, MonitorConfig};
use crate::ingest::router::RouterHandle;
use crate::ops::access::{require_token, Access};
use crate::ops::archive_query::{self, ArchiveQueries};
use crate::ops::catalog::{self, CatalogBody};
use crate::ops::feed::{self, FeedState};
use crate::ops::health::{Health, HealthProbe};
use crate::ops::http::{self, Http};
use crate::ops::metrics::render_scrape;
use crate::ops::spool::{self, Spools};
use crate::ops::stats_body::{ArchiveBody, ClockBody, RatesBody, SourceBody, StatsBody};
use crate::pipeline::fan_out::Subscribe;
use crate::stats::{processing_rates, Stats};
use crate::tls::ServerTls;

/// How often rates are sampled.
const RATE_WINDOW: Duration = Duration::from_secs(1);

/// What the endpoint reads: handles to the daemon, taken before it runs.
#[derive(Debug, Clone)]
pub struct MonitorState {
    stats: Stats,
    router: RouterHandle,
    health: HealthProbe,
    feed: FeedState,
    catalog: CatalogHandle,
    rates: Arc<Rates>,
    started: Instant,
    /// Why the daemon is exposed (`Config::exposure_warnings`), reported on `/healthz`.
    warnings: Arc<[String]>,
    /// The bearer token, with `monitor.token_file`.
    access: Option<Arc<Access>>,
    /// Served over TLS, with `[tls]`.
    tls: Option<Arc<ServerTls>>,
    /// Its connection limit and timeouts.
    settings: MonitorConfig,
    /// How long after the drain began the monitor's last connections are cut off.
    drain_deadline: Duration,
    /// What `/archive/frames` reads.
    archive: ArchiveQueries,
    /// The links' spool directories.
    spools: Spools,
}

impl FromRef<MonitorState> for ArchiveQueries {
    fn from_ref(state: &MonitorState) -> Self {
        state.archive.clone()
    }
}

impl FromRef<MonitorState> for Spools {
    fn from_ref(state: &MonitorState) -> Self {
        state.spools.clone()
    }
}

impl FromRef<MonitorState> for FeedState {
    fn from_ref(state: &MonitorState) -> Self {
        state.feed.clone()
    }
}

impl FromRef<MonitorState> for CatalogHandle {
    fn from_ref(state: &MonitorState) -> Self {
        state.catalog.clone()
    }
}

/// The latest rates, as `f64` bits in atomics.
#[derive(Debug, Default)]
struct Rates {
    frames_per_sec: AtomicU64,
    bytes_per_sec: AtomicU64,
}

impl MonitorState {
    /// The monitor of a daemon, from its handles (`Daemon::monitor_state` builds it).
    pub(crate) fn new(
        stats: Stats,
        router: RouterHandle,
        health: HealthProbe,
        frames: Subscribe,
        catalog: CatalogHandle,
        archive: Option<DurableEnds>,
        config: &Config,
    ) -> Self {
        let watched = archive.is_some();
        let archive = archive.map(|durable| (config.archive.dir.clone(), durable));
        let most = config.monitor.max_archive_queries;
        let groups = merge_groups(&config.links);
        let passes = (groups, config.archive.pass_gap);
        let queries = ArchiveQueries::new(archive, most, passes, stats.clone());
        let spools = (config.links.iter())
            .filter_map(|link| Some((link.name.clone(), link.spool_dir.clone()?)))
            .collect();
        let spools = Spools {
            dirs: Arc::new(spools),
            watched,
            stats: stats.clone(),
            retention: Arc::new(config.archive.retention.clone()),
        };
        MonitorState {
            spools,
            feed: FeedState::new(frames, catalog.clone(), config.feed.clone(), stats.clone()),
            stats,
            router,
            health,
            catalog,
            rates: Arc::default(),
            started: Instant::now(),
            warnings: config.exposure_warnings().into(),
            access: None,
            tls: None,
            settings: config.monitor.clone(),
            drain_deadline: config.shutdown.drain_deadline,
            archive: queries,
        }
    }

    /// Serves HTTPS with `tls`, reloaded through it.
    pub(crate) fn with_tls(mut self, tls: Option<Arc<ServerTls>>) -> Self {
        self.tls = tls;
        self
    }

    /// Requires `access`'s token (`monitor.token_file`).
    pub fn with_access(mut self, access: Access) -> Self {
        self.access = Some(Arc::new(access));
        self
    }
}

/// Serves the endpoint on `listener` until `stop` resolves, then closes its connections: those
/// still open at the drain's deadline (`shutdown.drain_deadline_ms` after the drain began, or
/// after `stop` without a drain) are dropped, so no client holds the exit open ([`http`]).
pub async fn serve(
    listener: TcpListener,
    state: MonitorState,
    stop: impl Future<Output = ()> + Send + 'static,
) {
    let sampling = CancellationToken::new();
    tokio::spawn(sample_rates(
        state.stats.clone(),
        Arc::clone(&state.rates),
        sampling.clone(),
    ));
    let (access, tls, settings, counters) = (
        state.access.clone(),
        state.tls.clone(),
        state.settings.clone(),
        state.stats.clone(),
    );
    let (health, deadline) = (state.health.clone(), state.drain_deadline);
    let drain_began = tokio::spawn(async move {
        health.draining().await;
        Instant::now()
    });
    let mut app = Router::new()
        .merge(crate::ops::web::routes())
        .route("/stats", get(stats))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/feed", get(feed::feed))
        .route("/catalog", put(catalog::put))
        .route("/archive/frames", get(archive_query::frames))
        .route("/archive/completeness", get(archive_query::completeness))
        .route("/archive/passes", get(archive_query::passes))
        .route("/archive/volume", get(archive_query::volume))
        .route(
            "/links/{link}/spool/{file}",
            put(spool::put).get(spool::status),
        )
        .with_state(state);
    if let Some(access) = access {
        app = app.layer(middleware::from_fn_with_state(access, require_token));
    }
    let cut_off = async move {
        let began = match drain_began.is_finished() {
            true => drain_began.await.unwrap_or_else(|_| Instant::now()),
            false => {
                drain_began.abort();
                Instant::now()
            }
        };
        tokio::time::Instant::from_std(began + deadline)
    };
    let http = Http {
        app,
        tls,
        settings,
        stats: counters,
    };
    http::serve(listener, http, stop, cut_off).await;
    sampling.cancel();
}

async fn sample_rates(stats: Stats, rates: Arc<Rates>, stop: CancellationToken) {
    // The first sample a window from now: an interval's first tick is immediate, and a rate over
    // the microseconds until it is a spike (ten frames in 2 µs are 5 million per second).
    let start = tokio::time::Instant::now() + RATE_WINDOW;
    let mut ticker = tokio::time::interval_at(start, RATE_WINDOW);
    let mut previous = (Instant::now(), stats.snapshot());
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.cancelled() => return,
        }
        let now = (Instant::now(), stats.snapshot());
        let seconds = now.0.duration_since(previous.0).as_secs_f64();
        if let Some(now_rates) = processing_rates(&previous.1, &now.1, seconds) {
            (rates.frames_per_sec).store(now_rates.frames_per_sec.to_bits(), Relaxed);
            (rates.bytes_per_sec).store(now_rates.bytes_per_sec.to_bits(), Relaxed);
        }
        previous = now;
    }
}

async fn stats(State(state): State<MonitorState>) -> Json<StatsBody> {
    let snapshot = state.stats.snapshot();
    let sources = state.router.sources().await.unwrap_or_default();
    Json(StatsBody {
        health: state.health.health(),
        uptime_seconds: state.started.elapsed().as_secs_f64(),
        stats: snapshot,
        frames_in_flight: snapshot.in_flight(),
        rates: RatesBody {
            frames_per_sec: f64::from_bits(state.rates.frames_per_sec.load(Relaxed)),
            bytes_per_sec: f64::from_bits(state.rates.bytes_per_sec.load(Relaxed)),
        },
        catalog: CatalogBody::of(&state.catalog, &sources),
        shards: state.stats.shard_snapshots(),
        links: state.stats.links(),
        tm: state.stats.tm_snapshots(),
        archive: ArchiveBody::of(&snapshot),
        clock: ClockBody::of(&state.stats, &snapshot),
        sources: sources.into_iter().map(SourceBody::from).collect(),
    })
}

async fn healthz(State(state): State<MonitorState>) -> Response {
    let health = state.health.health();
    let status = match health {
        Health::Ready => StatusCode::OK,
        Health::Draining | Health::Degraded => StatusCode::SERVICE_UNAVAILABLE,
    };
    let s = state.stats.snapshot();
    let mut body = serde_json::json!({ "status": health, "warnings": &*state.warnings });
    let links = state.stats.links();
    if !links.is_empty() {
        let states = links.iter().map(
            |l| serde_json::json!({ "name": l.name, "state": l.state, "last_error": l.last_error }),
        );
        body["links"] = states.collect();
    }
    if s.retention_short != 0 {
        body["archive"] = serde_json::json!({
            "retention_short": true,
            "bytes": s.archive_bytes,
            "free_bytes": s.archive_free_bytes,
        });
    }
    if let Some(reason) = state.stats.clock().doubt {
        body["clock"] = serde_json::json!({ "in_doubt": true, "reason": reason });
    }
    if s.nats_degraded != 0 {
        body["nats"] = serde_json::json!({
            "connected": s.nats_connected != 0,
            "lag_frames": s.nats_lag_frames,
            "lag_seconds": s.nats_lag_seconds,
        });
        if s.nats_ack_replicated != 0 {
            body["nats"]["acks_wait_for_jetstream"] = s.nats_unreplicated_frames.into();
        }
    }
    (status, Json(body)).into_response()
}

async fn metrics(State(state): State<MonitorState>) -> Response {
    let snapshot = state.stats.snapshot();
    let sources = state.router.sources().await.unwrap_or_default();
    let health = state.health.health();
    let body = render_scrape(&snapshot, &state.stats, health, &sources, &state.catalog);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}
