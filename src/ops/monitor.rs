//! The HTTP monitoring endpoint: what an operator's dashboards, Prometheus and load balancer read.
//!
//! - `GET /`: the web dashboard ([`crate::ops::web`]), a page that reads `/stats` and the feed;
//! - `GET /stats`: the latest counters as JSON, with rates and the per-source table;
//! - `GET /metrics`: the same counters in the Prometheus text exposition format;
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

use std::fmt::Write as _;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use axum::extract::{FromRef, State};
use axum::http::{header, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::archive::query::completeness::merge_groups;
use crate::archive::read::DurableEnds;
use crate::catalog::CatalogHandle;
use crate::config::{Config, MonitorConfig};
use crate::domain::clock::{self, ArchiveClock};
use crate::domain::display::unix_ns_to_rfc3339;
use crate::domain::frame_quality::FrameQuality;
use crate::domain::source::SourceSnapshot;
use crate::ingest::router::RouterHandle;
use crate::ops::access::{require_token, Access};
use crate::ops::archive_query::{self, ArchiveQueries};
use crate::ops::catalog::{self, CatalogBody};
use crate::ops::feed::{self, FeedState};
use crate::ops::health::{Health, HealthProbe};
use crate::ops::http::{self, Http};
use crate::pipeline::fan_out::Subscribe;
use crate::stats::{
    processing_rates, ClockState, LinkSnapshot, LinkState, MetricKind, PipelineStats, ShardStats,
    Stats, TmStats,
};
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
}

impl FromRef<MonitorState> for ArchiveQueries {
    fn from_ref(state: &MonitorState) -> Self {
        state.archive.clone()
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
        (tls, archive): (Option<Arc<ServerTls>>, Option<DurableEnds>),
        config: &Config,
    ) -> Self {
        let archive = archive.map(|durable| (config.archive.dir.clone(), durable));
        let queries = config.monitor.max_archive_queries;
        MonitorState {
            feed: FeedState::new(frames, catalog.clone(), config.feed.clone(), stats.clone()),
            stats,
            router,
            health,
            catalog,
            rates: Arc::default(),
            started: Instant::now(),
            warnings: config.exposure_warnings().into(),
            access: None,
            tls,
            settings: config.monitor.clone(),
            drain_deadline: config.shutdown.drain_deadline,
            archive: ArchiveQueries::new(archive, queries, merge_groups(&config.links)),
        }
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
        if let Some((frames, bytes)) = processing_rates(&previous.1, &now.1, seconds) {
            rates.frames_per_sec.store(frames.to_bits(), Relaxed);
            rates.bytes_per_sec.store(bytes.to_bits(), Relaxed);
        }
        previous = now;
    }
}

#[derive(Serialize)]
struct StatsBody {
    health: Health,
    uptime_seconds: f64,
    stats: PipelineStats,
    frames_in_flight: u64,
    rates: RatesBody,
    catalog: CatalogBody,
    /// Each shard's own counters: an unbalanced shard shows here.
    shards: Vec<ShardStats>,
    /// Each ground-segment link (`[[links]]`): its state and counters.
    links: Vec<LinkSnapshot>,
    /// Each TM server's and forward's counters, by name.
    tm: Vec<TmStats>,
    /// The archive's files and retention.
    archive: ArchiveBody,
    /// The wall clock against the archive clock, and its last step.
    clock: ClockBody,
    sources: Vec<SourceBody>,
}

/// `/stats`' `clock`: how far the wall clock is from the archive clock that stamps frames, the
/// steps seen, the last one, and why the clock is in doubt while it is (`crate::ops::clock`).
#[derive(Serialize)]
struct ClockBody {
    /// The archive clock now, RFC 3339: every received time is on it.
    now: String,
    /// The wall clock minus the archive clock, in seconds.
    offset_seconds: f64,
    steps: u64,
    last_step: Option<StepBody>,
    in_doubt: bool,
    reason: Option<String>,
}

#[derive(Serialize)]
struct StepBody {
    /// `step` (while running), or `start` (a start with the clock behind the archive).
    event: &'static str,
    /// When, by the archive clock and by the wall clock, RFC 3339.
    at: String,
    wall: String,
    /// How far the wall clock moved (negative: back), in seconds.
    seconds: f64,
}

impl ClockBody {
    fn of(stats: &Stats, s: &PipelineStats) -> ClockBody {
        let state = stats.clock();
        let step = state.last_step.map(|step| StepBody {
            event: step.kind.label(),
            at: unix_ns_to_rfc3339(step.archive_ns),
            wall: unix_ns_to_rfc3339(step.wall_ns),
            seconds: clock::seconds(step.jump_ns),
        });
        ClockBody {
            now: unix_ns_to_rfc3339(ArchiveClock::process().now()),
            offset_seconds: clock::seconds(state.offset_ns),
            steps: s.clock_steps,
            last_step: step,
            in_doubt: state.doubt.is_some(),
            reason: state.doubt,
        }
    }
}

/// `/stats`' `archive`: what the archive holds on disk, the time it spans, and what retention
/// deleted (every figure from retention's last check).
#[derive(Serialize)]
struct ArchiveBody {
    bytes: u64,
    segments: u64,
    free_bytes: u64,
    /// RFC 3339, to the second; `null` before the first frame.
    oldest_received: Option<String>,
    newest_received: Option<String>,
    retention: RetentionBody,
}

#[derive(Serialize)]
struct RetentionBody {
    deleted_segments: u64,
    deleted_bytes: u64,
    last_deletion: Option<String>,
    /// A size limit retention cannot keep (`/healthz` says `degraded`).
    short: bool,
}

impl ArchiveBody {
    fn of(s: &PipelineStats) -> ArchiveBody {
        let time =
            |seconds: u64| (seconds > 0).then(|| unix_ns_to_rfc3339(seconds * 1_000_000_000));
        ArchiveBody {
            bytes: s.archive_bytes,
            segments: s.archive_segments,
            free_bytes: s.archive_free_bytes,
            oldest_received: time(s.archive_oldest_frame_timestamp_seconds),
            newest_received: time(s.archive_newest_frame_timestamp_seconds),
            retention: RetentionBody {
                deleted_segments: s.retention_deleted_segments,
                deleted_bytes: s.retention_deleted_bytes,
                last_deletion: time(s.retention_last_deletion_timestamp_seconds),
                short: s.retention_short != 0,
            },
        }
    }
}

#[derive(Serialize)]
struct RatesBody {
    frames_per_sec: f64,
    bytes_per_sec: f64,
}

#[derive(Serialize)]
struct SourceBody {
    id: u32,
    kind: &'static str,
    peer: String,
    /// A ground-segment link's source: its link and APID.
    #[serde(skip_serializing_if = "Option::is_none")]
    station: Option<String>,
    connected_since_unix_ms: u64,
    frames: u64,
    emergency_frames: u64,
    bytes: u64,
    last_sequence: Option<u64>,
    last_acked: Option<u64>,
    lag: u64,
    /// The newest catalog version the source acknowledged holding.
    catalog_version: Option<u64>,
}

impl From<SourceSnapshot> for SourceBody {
    fn from(s: SourceSnapshot) -> Self {
        SourceBody {
            id: s.id,
            kind: s.kind.as_str(),
            peer: s.peer.to_string(),
            station: s.station.as_deref().map(str::to_owned),
            connected_since_unix_ms: s
                .connected_at
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            frames: s.frames,
            emergency_frames: s.emergency_frames,
            bytes: s.bytes,
            last_sequence: s.last_sequence,
            last_acked: s.last_acked,
            lag: s.lag,
            catalog_version: s.catalog_version,
        }
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
    }
    (status, Json(body)).into_response()
}

async fn metrics(State(state): State<MonitorState>) -> Response {
    let snapshot = state.stats.snapshot();
    let sources = state.router.sources().await.unwrap_or_default();
    let mut body = render_metrics(&snapshot, state.health.health(), &sources);
    render_shard_metrics(&mut body, &state.stats.shard_snapshots());
    render_link_metrics(&mut body, &state.stats.links());
    render_tm_metrics(&mut body, &state.stats.tm_snapshots());
    render_clock_metrics(&mut body, &state.stats.clock());
    for (name, help, value) in CatalogBody::of(&state.catalog, &sources).gauges() {
        family(&mut body, name, MetricKind::Gauge, help);
        let _ = writeln!(body, "{name} {value}");
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

fn family(out: &mut String, name: &str, kind: MetricKind, help: &str) {
    let kind = match kind {
        MetricKind::Counter => "counter",
        MetricKind::Gauge => "gauge",
    };
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Appends the clock's signed figures: the wall clock's offset from the archive clock, and the
/// last step's size.
fn render_clock_metrics(out: &mut String, clock: &ClockState) {
    let gauges = [
        (
            "aggregator_clock_offset_seconds",
            "The wall clock minus the archive clock that stamps frames, in seconds.",
            clock::seconds(clock.offset_ns),
        ),
        (
            "aggregator_clock_last_step_seconds",
            "How far the wall clock moved at its last step (negative: back), in seconds; 0 before the first.",
            clock.last_step.map_or(0.0, |step| clock::seconds(step.jump_ns)),
        ),
    ];
    for (name, help, value) in gauges {
        family(out, name, MetricKind::Gauge, help);
        let _ = writeln!(out, "{name} {value}");
    }
}

/// Appends each link's counters, labelled `link="NAME"`, in the Prometheus text format.
fn render_link_metrics(out: &mut String, links: &[LinkSnapshot]) {
    let per_link: [PerItem<LinkSnapshot>; 11] = [
        (
            "aggregator_link_connected",
            MetricKind::Gauge,
            "1 while a station is connected to the link (or sends to it), else 0.",
            |l| u64::from(l.state == LinkState::Connected),
        ),
        (
            "aggregator_link_connections_total",
            MetricKind::Counter,
            "Connections the link accepted or dialled.",
            |l| l.connections,
        ),
        (
            "aggregator_link_packets_total",
            MetricKind::Counter,
            "Packets the link stored.",
            |l| l.packets,
        ),
        (
            "aggregator_link_bytes_total",
            MetricKind::Counter,
            "Bytes of the packets the link stored.",
            |l| l.bytes,
        ),
        (
            "aggregator_link_copies_total",
            MetricKind::Counter,
            "Packets dropped as copies of packets already stored (redundant stations).",
            |l| l.copies,
        ),
        (
            "aggregator_link_gaps_total",
            MetricKind::Counter,
            "Packets missing from the link's sequence counts.",
            |l| l.gaps,
        ),
        (
            "aggregator_link_unmatched_total",
            MetricKind::Counter,
            "Packets no rule maps to a source, dropped or stored as the default source, and packets whose source was taken.",
            |l| l.unmatched,
        ),
        (
            "aggregator_link_bad_input_total",
            MetricKind::Counter,
            "Packets and connections refused as malformed.",
            |l| l.bad_input,
        ),
        (
            "aggregator_link_trailing_bytes_total",
            MetricKind::Counter,
            "Bytes after the packet in a KISS data frame (a decoder's newline): not stored.",
            |l| l.trailing_bytes,
        ),
        (
            "aggregator_link_ax25_frames_total",
            MetricKind::Counter,
            "AX.25 UI frames the link read (kiss_payload = \"ax25\").",
            |l| l.ax25_frames,
        ),
        (
            "aggregator_link_other_port_frames_total",
            MetricKind::Counter,
            "KISS data frames of a port other than kiss_port: passed over.",
            |l| l.other_port_frames,
        ),
    ];
    if !links.is_empty() {
        render_per_item(out, &per_link, links, |l| format!("link=\"{}\"", l.name));
    }
    render_frame_quality_metrics(out, links);
}

/// Appends the transfer frames' quality of the links with a frame framing, labelled
/// `link="NAME"`.
fn render_frame_quality_metrics(out: &mut String, links: &[LinkSnapshot]) {
    let frame_quality: [PerItem<(&str, &FrameQuality)>; 6] = [
        (
            "aggregator_link_frames_good_total",
            MetricKind::Counter,
            "Transfer frames the link took: of a configured virtual channel, or idle frames of any.",
            |(_, f)| f.frames_good,
        ),
        (
            "aggregator_link_frames_bad_fecf_total",
            MetricKind::Counter,
            "Transfer frames dropped because their frame error control field did not match.",
            |(_, f)| f.frames_bad_fecf,
        ),
        (
            "aggregator_link_frames_dropped_total",
            MetricKind::Counter,
            "Transfer frames dropped: wrong length, version or spacecraft, virtual channel not configured, first header pointer beyond the data field.",
            |(_, f)| f.frames_dropped,
        ),
        (
            "aggregator_link_vc_gaps_total",
            MetricKind::Counter,
            "Transfer frames missing from the virtual channels' frame counts.",
            |(_, f)| f.vc_gaps,
        ),
        (
            "aggregator_link_packets_extracted_total",
            MetricKind::Counter,
            "Packets taken out of transfer frames (idle packets not counted).",
            |(_, f)| f.packets_extracted,
        ),
        (
            "aggregator_link_packets_dropped_incomplete_total",
            MetricKind::Counter,
            "Packets in reassembly dropped because a frame was lost or the first header pointer disagreed.",
            |(_, f)| f.packets_dropped_incomplete,
        ),
    ];
    let framed: Vec<_> = links
        .iter()
        .filter_map(|l| Some((l.name.as_str(), l.frames.as_ref()?)))
        .collect();
    if !framed.is_empty() {
        render_per_item(out, &frame_quality, &framed, |(name, _)| {
            format!("link=\"{name}\"")
        });
    }
}

/// A family of one value per item (a shard, a TM output): its name, kind, help, and the value.
type PerItem<T> = (&'static str, MetricKind, &'static str, fn(&T) -> u64);

/// Appends each family of `families` with a line per item of `items`, labelled by `label`.
fn render_per_item<T>(
    out: &mut String,
    families: &[PerItem<T>],
    items: &[T],
    label: impl Fn(&T) -> String,
) {
    for (name, kind, help, get) in families {
        family(out, name, *kind, help);
        for item in items {
            let _ = writeln!(out, "{name}{{{}}} {}", label(item), get(item));
        }
    }
}

/// Appends each shard's counters, labelled `shard="K"`, in the Prometheus text format.
pub(crate) fn render_shard_metrics(out: &mut String, shards: &[ShardStats]) {
    let per_shard: [PerItem<ShardStats>; 5] = [
        (
            "aggregator_shard_frames_processed_total",
            MetricKind::Counter,
            "Frames the shard's processor handled.",
            |s| s.frames_processed,
        ),
        (
            "aggregator_shard_frames_archived_total",
            MetricKind::Counter,
            "Frames the shard's archive stored.",
            |s| s.frames_archived,
        ),
        (
            "aggregator_shard_bytes_archived_total",
            MetricKind::Counter,
            "Payload bytes the shard's archive stored.",
            |s| s.bytes_archived,
        ),
        (
            "aggregator_shard_frames_in_flight",
            MetricKind::Gauge,
            "Frames admitted into the shard and not yet stored.",
            |s| s.in_flight,
        ),
        (
            "aggregator_shard_archive_failing",
            MetricKind::Gauge,
            "1 while the shard's archive is failing, else 0.",
            |s| s.archive_failing,
        ),
    ];
    render_per_item(out, &per_shard, shards, |s| {
        format!("shard=\"{}\"", s.shard)
    });
}

/// Appends each TM server's and forward's counters, labelled `name="NAME"`.
fn render_tm_metrics(out: &mut String, outputs: &[TmStats]) {
    if outputs.is_empty() {
        return;
    }
    let per_output: [PerItem<TmStats>; 7] = [
        (
            "aggregator_tm_connections",
            MetricKind::Gauge,
            "Connections to the TM server open now.",
            |t| t.connections,
        ),
        (
            "aggregator_tm_packets_sent_total",
            MetricKind::Counter,
            "Space packets the TM server or forward sent.",
            |t| t.packets_sent,
        ),
        (
            "aggregator_tm_bytes_sent_total",
            MetricKind::Counter,
            "Bytes the TM server or forward sent, the framing included.",
            |t| t.bytes_sent,
        ),
        (
            "aggregator_tm_frames_not_packets_total",
            MetricKind::Counter,
            "Selected frames skipped for not being one whole space packet.",
            |t| t.frames_not_packets,
        ),
        (
            "aggregator_tm_frames_skipped_total",
            MetricKind::Counter,
            "Frames of its sources the TM output skipped: retention deleted them before it read them.",
            |t| t.frames_skipped,
        ),
        (
            "aggregator_tm_connections_refused_total",
            MetricKind::Counter,
            "Connections the TM server closed at once, at its max_connections.",
            |t| t.connections_refused,
        ),
        (
            "aggregator_tm_send_errors_total",
            MetricKind::Counter,
            "Datagrams the TM forward could not send.",
            |t| t.send_errors,
        ),
    ];
    render_per_item(out, &per_output, outputs, |t| {
        format!("name=\"{}\"", t.name)
    });
}

/// Renders the Prometheus text exposition format (version 0.0.4).
pub fn render_metrics(stats: &PipelineStats, health: Health, sources: &[SourceSnapshot]) -> String {
    let mut out = String::with_capacity(4096);
    for field in stats.fields() {
        let name = match field.kind {
            MetricKind::Counter => format!("aggregator_{}_total", field.name),
            MetricKind::Gauge => format!("aggregator_{}", field.name),
        };
        family(&mut out, &name, field.kind, field.help);
        let _ = writeln!(out, "{name} {}", field.value);
    }
    family(
        &mut out,
        "aggregator_frames_in_flight",
        MetricKind::Gauge,
        "Frames accepted and not yet archived.",
    );
    let _ = writeln!(out, "aggregator_frames_in_flight {}", stats.in_flight());
    family(
        &mut out,
        "aggregator_health",
        MetricKind::Gauge,
        "1 for the daemon's current health state, 0 for the others.",
    );
    for state in [Health::Ready, Health::Draining, Health::Degraded] {
        let name = serde_json::to_value(state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "aggregator_health{{state=\"{name}\"}} {}",
            u8::from(state == health)
        );
    }
    type Getter = fn(&SourceSnapshot) -> u64;
    let per_source: [(&str, MetricKind, &str, Getter); 6] = [
        (
            "aggregator_source_frames_total",
            MetricKind::Counter,
            "Frames admitted from the source.",
            |s| s.frames,
        ),
        (
            "aggregator_source_emergency_frames_total",
            MetricKind::Counter,
            "Emergency frames admitted from the source.",
            |s| s.emergency_frames,
        ),
        (
            "aggregator_source_bytes_total",
            MetricKind::Counter,
            "Payload bytes admitted from the source.",
            |s| s.bytes,
        ),
        (
            "aggregator_source_lag_frames",
            MetricKind::Gauge,
            "Frames of the source admitted and not yet stored.",
            |s| s.lag,
        ),
        (
            "aggregator_source_last_acked_sequence",
            MetricKind::Gauge,
            "Highest sequence acknowledged to the source.",
            |s| s.last_acked.unwrap_or(0),
        ),
        (
            "aggregator_source_catalog_version",
            MetricKind::Gauge,
            "Newest catalog version the source acknowledged holding (0 for none).",
            |s| s.catalog_version.unwrap_or(0),
        ),
    ];
    for (name, kind, help, get) in per_source {
        family(&mut out, name, kind, help);
        for source in sources {
            let _ = writeln!(
                out,
                "{name}{{source=\"{}\",kind=\"{}\"}} {}",
                source.id,
                source.kind.as_str(),
                get(source)
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A link of transfer frames shows its frame quality, one line per family with its own
    /// counts; a link of packets shows none.
    #[test]
    fn frame_quality_is_rendered_for_links_of_frames_only() {
        let stats = Stats::new();
        stats.add_link("packets", "tcp-listen", false);
        let framed = stats.add_link("frames", "udp", true);
        framed.frames(&FrameQuality {
            frames_good: 7,
            vc_gaps: 2,
            bad_packets: 1,
            ..FrameQuality::default()
        });
        let mut text = String::new();
        render_link_metrics(&mut text, &stats.links());
        assert!(text.contains("aggregator_link_frames_good_total{link=\"frames\"} 7\n"));
        assert!(text.contains("aggregator_link_vc_gaps_total{link=\"frames\"} 2\n"));
        assert!(text.contains("aggregator_link_bad_input_total{link=\"frames\"} 1\n"));
        assert_eq!(
            text.matches("# HELP aggregator_link_frames_good_total")
                .count(),
            1
        );
        assert!(!text.contains("frames_good_total{link=\"packets\"}"));
    }
}
