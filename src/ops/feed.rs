//! `GET /feed`: the live feed, a WebSocket that carries every processed frame as one JSON object.
//!
//! It is the lossy view of the stream, for displays and alerting: a subscriber gets frames as the
//! processor handles them, filtered by source and priority, optionally sampled, and when it falls
//! behind it is told how many frames it missed (`{"gap": N}`) and carries on. It can never slow
//! the processor or the archive: each subscriber is a queue in each shard's lane of the lossy
//! fan-out ([`crate::pipeline::fan_out`]), bounded by `feed.queue_bytes` shared out among them,
//! which the processors offer batches to without waiting. The processor never waits for a subscriber, but the daemon's threads encode
//! its JSON: `feed.max_frames_per_sec` per priority bounds that work per subscriber (a wall display
//! cannot show more; frames beyond it are skipped and reported as a gap), and a subscriber over its
//! budget is woken once per [`PACE`] rather than once per batch. A
//! subscriber that stops reading altogether is disconnected after `feed.send_timeout_ms`, so a
//! dead client does not hold a slot. The lossless alternative is the
//! follow from the archive.
//!
//! The message format and the query parameters are specified in `docs/http-api.md`.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use futures_util::SinkExt;
use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::query::{self, QueryError};
use crate::catalog::CatalogHandle;
use crate::config::FeedConfig;
use crate::domain::batch::Batch;
use crate::domain::clock::ArchiveClock;
use crate::domain::display::{hex, unix_ns_to_rfc3339};
use crate::domain::filter::FrameFilter;
use crate::domain::frame::Priority;
use crate::domain::reception::Reception;
use crate::pipeline::fan_out::{Bound, Delivery, Subscribe, Subscription};
use crate::stats::Stats;

/// How long a writer whose budget ran out waits before it takes more frames.
const PACE: Duration = Duration::from_millis(10);

/// WebSocket close code 1001, "going away": the daemon has drained.
const GOING_AWAY: u16 = 1001;
/// WebSocket close code 1008, "policy violation": the client sent a message.
const POLICY: u16 = 1008;

/// What `/feed` needs from the daemon.
#[derive(Debug, Clone)]
pub(crate) struct FeedState {
    subscribe: Subscribe,
    config: FeedConfig,
    stats: Stats,
    /// Publications are announced to subscribers as `{"catalog": version}`.
    catalog: CatalogHandle,
    /// One permit per subscriber that may connect (`feed.max_subscribers`).
    slots: Arc<Semaphore>,
    /// What the archive stamps frames with: a frame's `received` here is its received time there.
    clock: ArchiveClock,
}

impl FeedState {
    pub(crate) fn new(
        subscribe: Subscribe,
        catalog: CatalogHandle,
        config: FeedConfig,
        stats: Stats,
    ) -> Self {
        FeedState {
            slots: Arc::new(Semaphore::new(config.max_subscribers)),
            subscribe,
            catalog,
            config,
            stats,
            clock: ArchiveClock::process(),
        }
    }
}

/// `instant` on `clock` in RFC 3339 with microseconds, UTC: the archive's received time of a frame
/// read at `instant`, to the microsecond.
fn micros(clock: &ArchiveClock, instant: Instant) -> String {
    let full = unix_ns_to_rfc3339(clock.at(instant));
    // `...SS.nnnnnnnnnZ`: the last three digits of nanoseconds go.
    format!("{}Z", &full[..full.len() - 4])
}

/// How payloads are written in the JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Base64,
    Hex,
}

/// A subscriber's request, from the query string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedRequest {
    filter: FrameFilter,
    /// Every `sample`-th routine frame is sent; emergencies always.
    sample: u64,
    encoding: Encoding,
}

/// The parameters `/feed` takes.
const TAKES: &[&str] = &["source", "priority", "sample", "encoding"];

/// Parses `/feed`'s query string; the error names the parameter and what was wrong with it.
pub fn parse_query(query: &str) -> Result<FeedRequest, QueryError> {
    let (mut sample, mut encoding) = (1, Encoding::Base64);
    // The feed takes no times: no parameter reads the clock.
    let filter = query::parse(query, SystemTime::UNIX_EPOCH, TAKES, |key, value| {
        match key {
            "sample" => {
                let n = value.parse().ok().filter(|n| *n >= 1);
                sample = n.ok_or_else(|| QueryError::Sample(value.to_string()))?;
            }
            "encoding" => {
                encoding = match value {
                    "base64" => Encoding::Base64,
                    "hex" => Encoding::Hex,
                    other => return Err(QueryError::Encoding(other.to_string())),
                }
            }
            other => return Err(QueryError::unknown(other, TAKES)),
        }
        Ok(())
    })?;
    Ok(FeedRequest {
        filter,
        sample,
        encoding,
    })
}

/// `GET /feed`: checks the query and the subscriber limit, then upgrades.
pub(crate) async fn feed(
    State(state): State<FeedState>,
    RawQuery(query): RawQuery,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let request = match parse_query(query.as_deref().unwrap_or("")) {
        Ok(request) => request,
        Err(reason) => return (StatusCode::BAD_REQUEST, format!("{reason}\n")).into_response(),
    };
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => return rejection.into_response(),
    };
    let bound = Bound {
        batches: usize::MAX,
        bytes: state.config.queue_bytes,
    };
    let Ok(slot) = Arc::clone(&state.slots).try_acquire_owned() else {
        let reason = format!(
            "too many feed subscribers (feed.max_subscribers = {})\n",
            state.config.max_subscribers
        );
        return (StatusCode::SERVICE_UNAVAILABLE, reason).into_response();
    };
    let subscription = state.subscribe.subscribe(request.filter.clone(), bound);
    upgrade.on_upgrade(move |socket| subscriber(socket, subscription, slot, request, state))
}

/// Why a subscriber's connection ended.
#[derive(Debug)]
enum End {
    Drained,
    ClientClosed,
    ClientSent,
    Stalled,
    Failed(axum::Error),
}

async fn subscriber(
    mut socket: WebSocket,
    mut subscription: Subscription,
    slot: OwnedSemaphorePermit,
    request: FeedRequest,
    state: FeedState,
) {
    state.stats.feed_subscribed();
    let mut writer = Writer {
        routine: Budget::new(state.config.max_frames_per_sec),
        emergency: Budget::new(state.config.max_frames_per_sec),
        resume_at: None,
        request,
        state: &state,
        routine_seen: 0,
        missed: 0,
    };
    let end = writer.run(&mut socket, &mut subscription).await;
    drop((subscription, slot));
    state.stats.feed_unsubscribed();
    match end {
        End::Drained => tracing::debug!("feed subscriber closed: the daemon drained"),
        End::ClientClosed => tracing::debug!("feed subscriber left"),
        End::ClientSent => tracing::info!("feed subscriber closed: it sent a message"),
        End::Stalled => tracing::info!(
            timeout_ms = state.config.send_timeout.as_millis() as u64,
            "feed subscriber disconnected: it did not read what it was sent within feed.send_timeout_ms"
        ),
        End::Failed(err) => tracing::info!(error = %err, "feed subscriber's connection failed"),
    }
}

/// One subscriber's sending side.
struct Writer<'a> {
    request: FeedRequest,
    state: &'a FeedState,
    routine: Budget,
    emergency: Budget,
    /// Set when a budget ran out: the writer waits until then before it takes more, so that a
    /// subscriber over its budget costs a wake-up every [`PACE`], not one per batch.
    resume_at: Option<tokio::time::Instant>,
    /// Routine frames that passed the filter, for sampling.
    routine_seen: u64,
    /// Frames skipped and not yet reported in a gap message.
    missed: u64,
}

/// What one delivery becomes on the socket.
#[derive(Default)]
struct Outgoing {
    messages: Vec<String>,
    frames: u64,
}

impl Writer<'_> {
    async fn run(&mut self, socket: &mut WebSocket, subscription: &mut Subscription) -> End {
        let mut catalog = self.state.catalog.subscribe();
        catalog.mark_changed();
        loop {
            // Kept until a delivery comes: another branch may win first, and the pause must end.
            let resume_at = self.resume_at;
            let delivery = tokio::select! {
                Ok(()) = catalog.changed() => {
                    let version = catalog.borrow_and_update().as_ref().map(|p| p.catalog.version);
                    let Some(version) = version else { continue };
                    let event = Message::text(format!("{{\"catalog\":{version}}}"));
                    match tokio::time::timeout(self.state.config.send_timeout, socket.send(event)).await {
                        Ok(Ok(())) => continue,
                        Ok(Err(err)) => return End::Failed(err),
                        Err(_) => return End::Stalled,
                    }
                }
                delivery = async {
                    if let Some(at) = resume_at {
                        tokio::time::sleep_until(at).await;
                        subscription.pause_routine(false);
                    }
                    subscription.next().await
                } => {
                    self.resume_at = None;
                    delivery
                }
                message = socket.recv() => match message {
                    None | Some(Ok(Message::Close(_))) => return End::ClientClosed,
                    Some(Err(err)) => return End::Failed(err),
                    // Answered by the WebSocket layer itself.
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(_)) => {
                        close(socket, POLICY, "the feed takes no messages from clients").await;
                        return End::ClientSent;
                    }
                },
            };
            let Some(delivery) = delivery else {
                close(socket, GOING_AWAY, "the daemon has drained and is stopping").await;
                return End::Drained;
            };
            // Everything queued goes out in one flush, behind a gap for what was passed over.
            let mut out = Outgoing::default();
            self.missed += subscription.take_skipped();
            self.take(delivery, &mut out);
            while let Ok(Some(delivery)) = subscription.try_next() {
                self.take(delivery, &mut out);
            }
            if self.routine.is_spent() || self.emergency.is_spent() {
                self.resume_at = Some(tokio::time::Instant::now() + PACE);
            }
            // Until then the processor only counts the routine frames it would have queued.
            subscription.pause_routine(self.routine.is_spent());
            if out.messages.is_empty() {
                continue;
            }
            let send = async {
                for message in out.messages {
                    socket.feed(Message::text(message)).await?;
                }
                socket.flush().await
            };
            match tokio::time::timeout(self.state.config.send_timeout, send).await {
                Ok(Ok(())) => self.state.stats.feed_sent(out.frames),
                Ok(Err(err)) => return End::Failed(err),
                Err(_) => return End::Stalled,
            }
        }
    }

    fn budget(&mut self, routine: bool) -> &mut Budget {
        match routine {
            true => &mut self.routine,
            false => &mut self.emergency,
        }
    }

    fn take(&mut self, delivery: Delivery, out: &mut Outgoing) {
        match delivery {
            Delivery::Gap(missed) => {
                self.missed += missed;
                self.report_gap(out);
            }
            Delivery::Batch(batch) => self.encode(&batch, out),
        }
    }

    /// Tells the subscriber about the frames skipped since the last frame it was sent.
    fn report_gap(&mut self, out: &mut Outgoing) {
        if self.missed > 0 {
            self.state.stats.feed_skipped(self.missed);
            out.messages.push(format!("{{\"gap\":{}}}", self.missed));
            self.missed = 0;
        }
    }

    /// The batch's frames that sampling and the rate budget let through, one JSON text each,
    /// each frame skipped for the budget reported in a gap before the next one sent.
    fn encode(&mut self, batch: &Batch, out: &mut Outgoing) {
        let routine = batch.priority == Priority::Routine;
        self.budget(routine).refill();
        let mut header = None;
        let reception = batch.reception();
        for (i, (seq, payload)) in batch.payloads().enumerate() {
            if routine {
                self.routine_seen += 1;
                if (self.routine_seen - 1) % self.request.sample != 0 {
                    continue;
                }
            }
            if !self.budget(routine).take() {
                self.missed += 1;
                continue;
            }
            self.report_gap(out);
            let header = header.get_or_insert_with(|| Header::of(batch, &self.state.clock));
            let mut message = FrameMessage {
                kind: header.kind,
                source: &header.source,
                seq,
                priority: batch.priority.as_str(),
                received: &header.received,
                processed: &header.processed,
                payload_len: payload.len(),
                payload: encode_payload(payload, self.request.encoding),
                reception: serde_json::Map::new(),
            };
            if let Some((delivery, received)) = reception {
                let reception = Reception {
                    delivery: Arc::clone(delivery),
                    received: received.get(i).copied().unwrap_or_default(),
                };
                reception.add_to(&mut message.reception);
            }
            if let Ok(text) = serde_json::to_string(&message) {
                out.messages.push(text);
                out.frames += 1;
            }
        }
    }
}

/// What every frame of a batch shares in its message, formatted once per batch.
struct Header {
    kind: &'static str,
    source: String,
    received: String,
    processed: String,
}

impl Header {
    fn of(batch: &Batch, clock: &ArchiveClock) -> Header {
        let kind = batch.source.kind.label();
        Header {
            kind,
            source: format!("{kind}:{}", batch.source.id),
            received: micros(clock, batch.decoded_at),
            processed: micros(clock, batch.processed_at.unwrap_or(batch.decoded_at)),
        }
    }
}

/// A token bucket of frames of one priority per second, holding at most one second's worth: what
/// bounds the CPU one subscriber can take from the daemon, however fast it reads.
struct Budget {
    per_sec: f64,
    tokens: f64,
    refilled: Instant,
}

impl Budget {
    fn new(per_sec: u32) -> Budget {
        Budget {
            per_sec: f64::from(per_sec),
            tokens: f64::from(per_sec),
            refilled: Instant::now(),
        }
    }

    fn refill(&mut self) {
        let now = Instant::now();
        let earned = now.duration_since(self.refilled).as_secs_f64() * self.per_sec;
        self.tokens = (self.tokens + earned).min(self.per_sec);
        self.refilled = now;
    }

    fn take(&mut self) -> bool {
        let enough = self.tokens >= 1.0;
        if enough {
            self.tokens -= 1.0;
        }
        enough
    }

    fn is_spent(&self) -> bool {
        self.tokens < 1.0
    }
}

/// One frame on the feed (`docs/http-api.md`, "Live feed").
#[derive(Serialize)]
struct FrameMessage<'a> {
    kind: &'a str,
    source: &'a str,
    seq: u64,
    priority: &'a str,
    received: &'a str,
    processed: &'a str,
    payload_len: usize,
    payload: String,
    /// A link frame's reception fields that are known (`docs/ground-segment.md`).
    #[serde(flatten)]
    reception: serde_json::Map<String, serde_json::Value>,
}

fn encode_payload(payload: &[u8], encoding: Encoding) -> String {
    match encoding {
        Encoding::Base64 => base64::engine::general_purpose::STANDARD.encode(payload),
        Encoding::Hex => hex(payload),
    }
}

/// Sends a close frame with `reason`, giving up after a second: the client may not be reading.
async fn close(socket: &mut WebSocket, code: u16, reason: &str) {
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        socket.send(Message::Close(Some(frame))),
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::frame::SourceKind;

    #[test]
    fn the_query_selects_sources_priority_sampling_and_encoding() {
        let request = parse_query(
            "source=live:7&source=replay%3A2&priority=emergency&sample=10&encoding=hex",
        )
        .unwrap();
        assert_eq!(
            request.filter.sources,
            vec![(SourceKind::LiveUplink, 7), (SourceKind::ArchivedReplay, 2)]
        );
        assert_eq!(request.filter.priority, Some(Priority::Emergency));
        assert_eq!(request.sample, 10);
        assert_eq!(request.encoding, Encoding::Hex);
        let default = parse_query("").unwrap();
        assert_eq!(default.filter, FrameFilter::default());
        assert_eq!((default.sample, default.encoding), (1, Encoding::Base64));
    }

    /// A browser that cannot set a header gives the monitor's token in the query, on `/feed` as
    /// on every guarded path: it is the authentication's, not a parameter of the feed.
    #[test]
    fn the_token_in_the_query_is_no_parameter_of_the_feed() {
        let request = parse_query("token=s3cret&sample=5").unwrap();
        assert_eq!(request.sample, 5);
        assert_eq!(request.filter, FrameFilter::default());
    }

    #[test]
    fn a_bad_query_names_the_parameter() {
        for (query, expected) in [
            ("sources=live:1", "unknown parameter \"sources\""),
            ("source=live", "source:"),
            ("source=orbit:1", "source:"),
            ("priority=urgent", "priority:"),
            ("sample=0", "sample:"),
            ("encoding=utf8", "encoding:"),
            (
                "priority=routine&priority=emergency",
                "priority: given more than once",
            ),
        ] {
            let err = parse_query(query).unwrap_err().to_string();
            assert!(err.contains(expected), "{query}: {err}");
        }
        let sources = |n: u32| {
            (0..n)
                .map(|id| format!("source=live:{id}"))
                .collect::<Vec<_>>()
                .join("&")
        };
        assert!(parse_query(&sources(64)).is_ok());
        let err = parse_query(&sources(65)).unwrap_err().to_string();
        assert!(err.contains("source: more than 64"), "{err}");
    }

    #[test]
    fn payloads_are_base64_or_hex() {
        assert_eq!(encode_payload(b"SAFE", Encoding::Base64), "U0FGRQ==");
        assert_eq!(encode_payload(&[0, 0xab, 0x10], Encoding::Hex), "00ab10");
    }

    /// A frame's `received` is the archive's received time of it, to the microsecond, in RFC
    /// 3339 UTC.
    #[test]
    fn times_are_the_archive_clocks_to_the_microsecond() {
        let instant = Instant::now();
        let clock = ArchiveClock::anchored(instant, 1_700_000_000_123_456_789);
        assert_eq!(micros(&clock, instant), "2023-11-14T22:13:20.123456Z");
        let later = instant + Duration::from_micros(1);
        assert_eq!(micros(&clock, later), "2023-11-14T22:13:20.123457Z");
    }
}
