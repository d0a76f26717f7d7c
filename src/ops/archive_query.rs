//! `GET /archive/frames`: the frames received between two times, from the running daemon's
//! archive, streamed as NDJSON, CSV, raw or CCSDS bytes; and `GET /archive/completeness`: what the
//! archive holds of each source over such a window, and what it is missing; and
//! `GET /archive/passes`: the passes of stations found in such a window
//! (`crate::archive::query::passes`); and `GET /archive/volume`: the frames and bytes each
//! station delivered of each source in it (`crate::archive::query::volume`).
//!
//! Why a stream and a limit: a window may hold a day of a busy station, so the answer is read and
//! sent a chunk at a time, each as soon as it is read (the archive's read side reads at most about
//! 256 KiB of records at once, and two encoded chunks wait for the client at most), and a client
//! that reads slowly only slows its own answer. Each query reads files on a blocking pool, so at most
//! `monitor.max_archive_queries` run at once; one more is told so at once (503) rather than
//! queued behind the others. Queries read and encode on a runtime of their own at the followers'
//! lower priority (`LowPriorityRuntime`), not on the main runtime's thread: when the cores are
//! short, ingest goes first and a query only takes longer. A read error part way cannot change
//! the status any more, nor can a drain before the window's end: the answer is cut off without
//! its last chunk, so a client never takes a truncated answer for a whole one.

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::SystemTime;

use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinError;

use super::query::{self, QueryError, MAX_BUCKETS};
use super::{completeness_json, passes_json, volume_json};
use crate::archive::format::ArchiveError;
use crate::archive::query::completeness;
use crate::archive::query::export::{Format, Rows};
use crate::archive::query::passes as station_passes;
use crate::archive::query::volume as station_volume;
use crate::archive::read::{
    within_archive, DurableEnds, LowPriorityRuntime, OnGap, ShardCursors, Start,
};
use crate::domain::clock::ArchiveClock;
use crate::domain::filter::FrameFilter;
use crate::domain::units::unix_ns;
use crate::follow::client::{damaged_json, earliest_json};
use crate::stats::Stats;

/// Encoded chunks waiting for the client, at most.
const QUEUED_CHUNKS: usize = 2;

/// What `/archive/frames` reads: the archive and how many queries may read it at once.
#[derive(Debug, Clone)]
pub(crate) struct ArchiveQueries {
    /// The archive's directory and every shard's durable end; `None` with `archive.kind = "count"`.
    archive: Option<(PathBuf, DurableEnds)>,
    permits: Arc<Semaphore>,
    most: usize,
    /// The config's merge groups, for the passes of completeness answers and of stations.
    groups: Arc<completeness::MergeGroups>,
    /// `archive.pass_gap_ms`, in nanoseconds: the silence that ends a station's pass.
    pass_gap_ns: u64,
    /// Where queries read and encode; `None` without an archive, or if its thread could not
    /// start (they then run on the monitor's runtime).
    readers: Option<Arc<LowPriorityRuntime>>,
    /// The daemon's counters: the damaged records queries meet are counted there.
    stats: Stats,
}

impl ArchiveQueries {
    pub(crate) fn new(
        archive: Option<(PathBuf, DurableEnds)>,
        most: usize,
        (groups, pass_gap): (completeness::MergeGroups, std::time::Duration),
        stats: Stats,
    ) -> ArchiveQueries {
        let start = || match LowPriorityRuntime::start("archive-queries") {
            Ok(readers) => Some(readers),
            Err(err) => {
                let reason =
                    "cannot start the archive queries' thread; they run beside the monitor";
                tracing::error!(error = %err, "{reason}");
                None
            }
        };
        let readers = archive.as_ref().and_then(|_| start());
        ArchiveQueries {
            archive,
            permits: Arc::new(Semaphore::new(most)),
            most,
            groups: Arc::new(groups),
            pass_gap_ns: u64::try_from(pass_gap.as_nanos()).unwrap_or(u64::MAX),
            readers: readers.map(Arc::new),
            stats,
        }
    }

    /// Runs a query's reading and encoding on the readers' runtime.
    fn spawn<F>(&self, query: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match &self.readers {
            Some(readers) => readers.handle().spawn(query),
            None => tokio::spawn(query),
        }
    }
}

/// Why a query is refused: its status and the reason, the text of the answer.
type Refused = (StatusCode, String);

impl ArchiveQueries {
    /// The query, the archive and a permit to read it; or why it is refused.
    fn admit(
        &self,
        query: Option<String>,
        path: Path,
    ) -> Result<(FramesQuery, (PathBuf, DurableEnds), OwnedSemaphorePermit), Refused> {
        let request = parse_query(query.as_deref().unwrap_or(""), archive_now(), path)
            .map_err(|reason| (StatusCode::BAD_REQUEST, reason.to_string()))?;
        let Some(archive) = self.archive.clone() else {
            let reason = "this daemon keeps no archive files (archive.kind = \"count\")";
            return Err((StatusCode::NOT_FOUND, reason.into()));
        };
        let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() else {
            let reason = format!(
                "too many archive queries at once (monitor.max_archive_queries = {})",
                self.most
            );
            return Err((StatusCode::SERVICE_UNAVAILABLE, reason));
        };
        Ok((request, archive, permit))
    }
}

/// Now on the archive clock, which stamps the frames: times ago (`-15m`) count back from it,
/// whatever step the wall clock took.
fn archive_now() -> SystemTime {
    SystemTime::UNIX_EPOCH + std::time::Duration::from_nanos(ArchiveClock::process().now())
}

/// An answer of `status` with `reason` as its text body.
fn refusal(status: StatusCode, reason: String) -> Response {
    (status, format!("{reason}\n")).into_response()
}

/// `GET /archive/completeness`: each source's sequences held over the window and the gaps
/// between them, and with `buckets` its timeline, as JSON (`crate::archive::query::completeness`).
pub(crate) async fn completeness(
    State(queries): State<ArchiveQueries>,
    RawQuery(query): RawQuery,
) -> Response {
    let (request, (root, durable), permit) = match queries.admit(query, Path::Completeness) {
        Ok(admitted) => admitted,
        Err((status, reason)) => return refusal(status, reason),
    };
    let (durable, _abandoned) = Abandoned::reading(durable);
    let filter = request.filter;
    // `from` is there with `buckets` (the query says so); without `to` the timeline ends when
    // the query came, the reading its times ago counted back from.
    let to = filter.until.unwrap_or(request.asked_at);
    let timeline = (request.buckets.zip(filter.since))
        .map(|(buckets, from)| completeness::Timeline::new(from, to, buckets));
    // The answer says where the window ended, as it always has, though without `to` it counts
    // what was stamped after.
    let answered_window = FrameFilter {
        until: Some(to),
        ..filter.clone()
    };
    let (groups, stats) = (Arc::clone(&queries.groups), queries.stats.clone());
    let dir = root.clone();
    // Called on the readers' thread, spawn_blocking starts threads of its priority.
    let answered = queries.spawn(async move {
        tokio::task::spawn_blocking(move || {
            let answer = completeness::completeness(&root, &durable, &filter, timeline.as_ref());
            drop(permit);
            if let Ok(answer) = &answer {
                stats.archive_damage_found(answer.damaged.len() as u64);
            }
            for problem in answer.iter().flat_map(completeness::Completeness::problems) {
                tracing::warn!(%problem, "archive completeness: passed over");
            }
            let answer = answer
                .map(|answer| completeness_json::answer_json(&answer, &answered_window, &groups));
            json_answer(answer, "archive completeness", &dir)
        })
        .await
    });
    joined(answered.await)
}

/// `GET /archive/passes`: the passes of stations over the window, as JSON
/// (`crate::archive::query::passes`), the same answer as `aggregator archive passes --json`.
pub(crate) async fn passes(
    State(queries): State<ArchiveQueries>,
    RawQuery(query): RawQuery,
) -> Response {
    let gap_ns = queries.pass_gap_ns;
    of_stations(queries, query, Path::Passes, move |asked| {
        let pass_query = station_passes::PassQuery {
            gap_ns,
            station: asked.station.clone(),
            group: asked.group.clone(),
        };
        let answer = station_passes::passes(
            &asked.root,
            &asked.durable,
            &asked.filter,
            &asked.groups,
            &pass_query,
        )?;
        let json = passes_json::answer_json(&answer, &asked.filter, gap_ns);
        Ok((json, answer.read))
    })
    .await
}

/// `GET /archive/volume`: the frames and bytes each station delivered of each source over the
/// window, summed per station and per group, as JSON (`crate::archive::query::volume`), the same
/// answer as `aggregator archive volume --json`.
pub(crate) async fn volume(
    State(queries): State<ArchiveQueries>,
    RawQuery(query): RawQuery,
) -> Response {
    of_stations(queries, query, Path::Volume, |asked| {
        let volume_query = station_volume::VolumeQuery {
            station: asked.station.clone(),
            group: asked.group.clone(),
        };
        let answer = station_volume::volume(
            &asked.root,
            &asked.durable,
            &asked.filter,
            &asked.groups,
            &volume_query,
        )?;
        let json = volume_json::answer_json(&answer, &asked.filter);
        Ok((json, answer.read))
    })
    .await
}

/// What a query of stations (passes, volume) reads: the archive up to its durable ends, the
/// window, ended when the query came without `to`, the config's merge groups, and the station
/// and group asked for.
struct StationsAsked {
    root: PathBuf,
    durable: DurableEnds,
    filter: FrameFilter,
    groups: Arc<completeness::MergeGroups>,
    station: Option<String>,
    group: Option<String>,
}

/// A query of stations on `path`: admitted, then `answer` run on the blocking pool, which gives
/// its JSON and the reading's completeness (the damage it met is counted and logged here).
async fn of_stations(
    queries: ArchiveQueries,
    query: Option<String>,
    path: Path,
    answer: impl FnOnce(
            &StationsAsked,
        ) -> Result<(serde_json::Value, completeness::Completeness), ArchiveError>
        + Send
        + 'static,
) -> Response {
    let (request, (root, durable), permit) = match queries.admit(query, path) {
        Ok(admitted) => admitted,
        Err((status, reason)) => return refusal(status, reason),
    };
    let (durable, _abandoned) = Abandoned::reading(durable);
    let what = path.what();
    let asked = StationsAsked {
        root: root.clone(),
        durable,
        // Without `to` the window ends when the query came: a pass near it may go on.
        filter: FrameFilter {
            until: Some(request.filter.until.unwrap_or(request.asked_at)),
            ..request.filter
        },
        groups: Arc::clone(&queries.groups),
        station: request.station,
        group: request.group,
    };
    let stats = queries.stats.clone();
    let dir = root.clone();
    let answered = queries.spawn(async move {
        tokio::task::spawn_blocking(move || {
            let answered = answer(&asked);
            drop(permit);
            let json = answered.map(|(json, read)| {
                stats.archive_damage_found(read.damaged.len() as u64);
                for problem in read.problems() {
                    tracing::warn!(%problem, "{what}: passed over");
                }
                json
            });
            json_answer(json, what, &dir)
        })
        .await
    });
    joined(answered.await)
}

/// The JSON answer, or a 500 saying why not: the archive unreadable (its path left out). Made on
/// the blocking pool with the answer: a large one's encoding and its freeing stay off the
/// runtime that ingest runs on. `what` names the query in the log.
fn json_answer(
    answered: Result<serde_json::Value, ArchiveError>,
    what: &str,
    dir: &std::path::Path,
) -> Response {
    match answered {
        Ok(json) => axum::Json(json).into_response(),
        Err(err) => {
            tracing::warn!(error = %err, "{what}: cannot read the archive");
            let reason = within_archive(&err.to_string(), dir);
            refusal(StatusCode::INTERNAL_SERVER_ERROR, reason)
        }
    }
}

/// Marks a query's reading abandoned when the handler is dropped: its client went (the
/// connection closed, or `monitor.idle_timeout_ms` closed it while the answer was read), and the
/// reading, its permit held, stops rather than answer no one.
struct Abandoned(Arc<AtomicBool>);

impl Abandoned {
    /// `durable`, read until the guard is dropped.
    fn reading(durable: DurableEnds) -> (DurableEnds, Abandoned) {
        let flag = Arc::new(AtomicBool::new(false));
        (durable.until_abandoned(Arc::clone(&flag)), Abandoned(flag))
    }
}

impl Drop for Abandoned {
    fn drop(&mut self) {
        self.0.store(true, Relaxed);
    }
}

/// The answer of a task on the blocking pool, or a 500 when the task was lost.
fn joined(answered: Result<Result<Response, JoinError>, JoinError>) -> Response {
    match answered {
        Ok(Ok(response)) => response,
        Ok(Err(err)) | Err(err) => refusal(StatusCode::INTERNAL_SERVER_ERROR, err.to_string()),
    }
}

/// A query, from its query string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FramesQuery {
    filter: FrameFilter,
    format: Format,
    /// Completeness only: a timeline of this many buckets over the window.
    buckets: Option<NonZeroU32>,
    /// Passes and volume only: those of this station, of this merge group.
    station: Option<String>,
    group: Option<String>,
    /// The archive clock when the query came, which its times ago count back from, and which
    /// ends its window without `to`: one reading for both, so that the answer to `from=-7d` says
    /// a window of seven days exactly.
    asked_at: u64,
}

/// Which path a query string is for: each takes its own parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    Frames,
    Completeness,
    Passes,
    Volume,
}

impl Path {
    /// The parameters it takes.
    fn takes(self) -> &'static [&'static str] {
        match self {
            Path::Frames => &["from", "to", "source", "kind", "priority", "apid", "format"],
            Path::Completeness => &["from", "to", "source", "buckets"],
            Path::Passes | Path::Volume => &["from", "to", "source", "station", "group"],
        }
    }

    /// The query's name in the log.
    fn what(self) -> &'static str {
        match self {
            Path::Frames => "archive query",
            Path::Completeness => "archive completeness",
            Path::Passes => "archive passes",
            Path::Volume => "archive volume",
        }
    }
}

/// Parses the query string of `path`, times ago counted from `now`.
pub fn parse_query(query: &str, now: SystemTime, path: Path) -> Result<FramesQuery, QueryError> {
    let (mut format, mut buckets) = (Format::Ndjson, None);
    let (mut station, mut group) = (None, None);
    let filter = query::parse(query, now, path.takes(), |key, value| {
        match key {
            "format" => format = parse_format(value)?,
            "buckets" => buckets = Some(parse_buckets(value)?),
            "station" => station = Some(value.to_owned()),
            "group" => group = Some(value.to_owned()),
            other => return Err(QueryError::unknown(other, path.takes())),
        }
        Ok(())
    })?;
    let request = FramesQuery {
        filter,
        format,
        buckets,
        station,
        group,
        asked_at: unix_ns(now).unwrap_or(0),
    };
    request.check()?;
    Ok(request)
}

/// `format=`: any but parquet, a file.
fn parse_format(value: &str) -> Result<Format, QueryError> {
    match value.parse() {
        Ok(Format::Parquet) => Err(QueryError::Parquet),
        Ok(format) => Ok(format),
        Err(err) => Err(QueryError::Format(err.to_string())),
    }
}

/// `buckets=`: 1 to [`MAX_BUCKETS`].
fn parse_buckets(value: &str) -> Result<NonZeroU32, QueryError> {
    let buckets = value.parse().ok().filter(|n| *n <= MAX_BUCKETS);
    buckets
        .and_then(NonZeroU32::new)
        .ok_or_else(|| QueryError::Buckets(value.to_string()))
}

impl FramesQuery {
    /// The parameters together: `buckets` needs `from`, and `from` is not after `to`.
    fn check(&self) -> Result<(), QueryError> {
        if self.buckets.is_some() && self.filter.since.is_none() {
            return Err(QueryError::BucketsWithoutFrom);
        }
        // Without an end, the answer is every frame stored by the time of the query, whatever its
        // received time: a start still to come is after it.
        if (self.filter).is_backwards(Some(self.asked_at)) {
            return Err(QueryError::Backwards);
        }
        Ok(())
    }
}

/// `GET /archive/frames`: checks the query and the limit, then streams the answer.
pub(crate) async fn frames(
    State(queries): State<ArchiveQueries>,
    RawQuery(query): RawQuery,
) -> Response {
    let (request, (root, durable), permit) = match queries.admit(query, Path::Frames) {
        Ok(admitted) => admitted,
        Err((status, reason)) => return refusal(status, reason),
    };
    let format = request.format;
    let (located, body) = oneshot::channel();
    let durable = match request.filter.until {
        Some(_) => durable,
        None => durable.frozen(),
    };
    let stats = queries.stats.clone();
    queries.spawn(async move {
        let (wanted, on_gap) = (Arc::new(request.filter.clone()), OnGap::End);
        let cursors =
            match ShardCursors::locate(&root, &durable, &Start::Oldest, wanted, on_gap).await {
                Ok(cursors) => cursors.passing_damage().counting_damage(&stats),
                Err(err) => {
                    tracing::warn!(error = %err, "archive query: cannot read the archive");
                    return drop(located.send(Err(within_archive(&err.to_string(), &root))));
                }
            };
        let (chunks, body) = mpsc::channel(QUEUED_CHUNKS);
        if located.send(Ok(body)).is_ok() {
            answer(cursors, request, chunks, permit).await;
        }
    });
    let body = match body.await {
        Ok(Ok(body)) => body,
        Ok(Err(reason)) => return refusal(StatusCode::INTERNAL_SERVER_ERROR, reason),
        Err(_) => {
            let reason = "the archive queries' thread has stopped".to_string();
            return refusal(StatusCode::INTERNAL_SERVER_ERROR, reason);
        }
    };
    let stream = futures_util::stream::unfold(body, |mut body| async move {
        body.recv().await.map(|chunk| (chunk, body))
    });
    Response::builder()
        .header(header::CONTENT_TYPE, format.content_type())
        .body(Body::from_stream(stream))
        .unwrap_or_else(|err| refusal(StatusCode::INTERNAL_SERVER_ERROR, err.to_string()))
}

/// A chunk of the answer, or the error that cuts it off.
type Chunk = Result<Bytes, std::io::Error>;

/// Reads the window and sends its rows, a chunk as soon as it is read, until it ends, the archive
/// cannot be read or the daemon drains before the window's end (the answer is cut off: the
/// stream ends in an error, so no last chunk marks it whole), or the client goes. The permit goes
/// back before the stream ends: a client that has the whole answer may query again at once.
async fn answer(
    mut cursors: ShardCursors,
    request: FramesQuery,
    chunks: mpsc::Sender<Chunk>,
    permit: OwnedSemaphorePermit,
) {
    let end = send_rows(&mut cursors, &request, &chunks).await;
    drop(permit);
    if let Some(Err(err)) = end {
        let _ = chunks.send(Err(err)).await;
    }
}

/// Sends every chunk of the answer; returns how it ended (`None`: the client went).
async fn send_rows(
    cursors: &mut ShardCursors,
    request: &FramesQuery,
    chunks: &mpsc::Sender<Chunk>,
) -> Option<Result<(), std::io::Error>> {
    let mut rows = Rows::new(request.format);
    let mut buf = Vec::new();
    rows.start(&mut buf);
    loop {
        let next = tokio::select! {
            next = cursors.next_runs() => next,
            () = chunks.closed() => return None,
        };
        notices(cursors, request.format, &mut buf);
        let ended = match next {
            Ok(Some(runs)) => {
                for frame in runs.into_iter().flat_map(|run| run.into_frames()) {
                    rows.write(&frame, &mut buf);
                }
                None
            }
            Ok(None) if cursors.is_cut_short() => {
                let why = "the daemon drained before the window's end; ask again once it is back";
                tracing::info!("archive query: {why}; the answer is cut off");
                Some(Err(std::io::Error::other(why)))
            }
            Ok(None) => Some(Ok(())),
            Err(err) => {
                tracing::warn!(error = %err, "archive query: cannot read on; the answer is cut off");
                Some(Err(std::io::Error::other(err.to_string())))
            }
        };
        if !buf.is_empty()
            && chunks
                .send(Ok(Bytes::from(std::mem::take(&mut buf))))
                .await
                .is_err()
        {
            return None;
        }
        if ended.is_some() {
            return ended;
        }
    }
}

/// The reading's notices, as NDJSON lines where they belong in the answer: before the first rows,
/// each shard whose oldest frame left is after the window's start (`{"earliest":{...}}`, taken
/// once); where they were, the damaged records passed over (`{"damaged":{...}}`). Other formats
/// have no place for them (the daemon's log names the damage).
fn notices(cursors: &mut ShardCursors, format: Format, buf: &mut Vec<u8>) {
    let earliest = cursors
        .take_earliest()
        .into_iter()
        .map(|e| earliest_json(&e));
    let damaged = (cursors.take_damaged().into_iter())
        .map(|range| serde_json::json!({ "damaged": damaged_json(&range) }));
    for notice in earliest.chain(damaged) {
        if format == Format::Ndjson {
            buf.extend_from_slice(format!("{notice}\n").as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::frame::{Priority, SourceKind};

    const NOW: u64 = 1_800_000_000_000_000_000;

    fn parse(query: &str) -> Result<FramesQuery, QueryError> {
        let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_nanos(NOW);
        parse_query(query, now, Path::Frames)
    }

    #[test]
    fn the_query_selects_a_window_sources_kind_priority_apid_and_format() {
        let query = parse(
            "from=2027-01-15T07:00:00Z&to=-15m&source=live:7&source=replay:2&kind=live\
             &priority=emergency&apid=100&format=csv",
        )
        .unwrap();
        assert_eq!(query.filter.since, Some(NOW - 3_600_000_000_000));
        assert_eq!(query.filter.until, Some(NOW - 900_000_000_000));
        assert_eq!(
            query.filter.sources,
            [(SourceKind::LiveUplink, 7), (SourceKind::ArchivedReplay, 2)]
        );
        assert_eq!(query.filter.kind, Some(SourceKind::LiveUplink));
        assert_eq!(query.filter.priority, Some(Priority::Emergency));
        assert_eq!((query.filter.apid, query.format), (Some(100), Format::Csv));
        let every = parse("").unwrap();
        assert_eq!(
            every.filter,
            FrameFilter::default(),
            "whatever the received times"
        );
        assert_eq!(every.format, Format::Ndjson);
        assert_eq!(
            parse("from=2030-01-01T00:00:00Z"),
            Err(QueryError::Backwards),
            "without to, a start to come is after the end"
        );
        let token = parse("token=s3cret&format=csv").unwrap();
        assert_eq!(
            token.format,
            Format::Csv,
            "the token is the monitor's to take"
        );
    }

    #[test]
    fn completeness_takes_a_number_of_buckets_with_a_start() {
        let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_nanos(NOW);
        let query = parse_query("from=-1h&buckets=60", now, Path::Completeness).unwrap();
        assert_eq!(query.buckets, NonZeroU32::new(60));
        assert_eq!(
            (query.filter.since, query.filter.until),
            (Some(NOW - 3_600_000_000_000), None)
        );
        let plain = parse_query("from=-1h", now, Path::Completeness).unwrap();
        assert_eq!(plain.buckets, None, "no timeline unless asked");
        assert_eq!(plain.asked_at, NOW, "the window's end without to");
    }

    #[test]
    fn passes_take_a_station_and_a_group_and_the_window() {
        let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_nanos(NOW);
        let query = "from=-1h&station=Kiruna&group=pass&source=live:7";
        let query = parse_query(query, now, Path::Passes).unwrap();
        assert_eq!(query.station.as_deref(), Some("Kiruna"));
        assert_eq!(query.group.as_deref(), Some("pass"));
        assert_eq!(query.filter.since, Some(NOW - 3_600_000_000_000));
        assert_eq!(query.filter.sources.len(), 1);
        let err = parse_query("station=a&station=b", now, Path::Passes).unwrap_err();
        assert_eq!(err, QueryError::Repeated("station".into()));
        let err = parse_query("format=csv", now, Path::Passes).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown parameter \"format\" (expected from, to, source, station or group)"
        );
        let volume = "from=-1h&station=Svalbard&group=sat-a";
        let volume = parse_query(volume, now, Path::Volume).unwrap();
        assert_eq!(
            (volume.station.as_deref(), volume.group.as_deref()),
            (Some("Svalbard"), Some("sat-a"))
        );
        let err = parse_query("buckets=3", now, Path::Volume).unwrap_err();
        assert!(err.to_string().starts_with("unknown parameter \"buckets\""));
        let frames = parse("station=Kiruna").unwrap_err().to_string();
        assert!(
            frames.starts_with("unknown parameter \"station\""),
            "{frames}"
        );
    }

    #[test]
    fn a_bad_query_names_the_parameter() {
        for (query, reason) in [
            ("from=noon", "from: \"noon\" is not a time"),
            ("from=-1m&to=-2m", "from is after to"),
            ("source=radio:1", "source: "),
            ("kind=radio", "kind: "),
            ("priority=urgent", "priority: "),
            ("apid=2048", "apid: \"2048\" is not an APID (0 to 2047)"),
            ("format=xml", "format: unknown format \"xml\""),
            ("format=parquet", "format: parquet is a file"),
            ("limit=5", "unknown parameter \"limit\""),
            ("kind=live&kind=replay", "kind: given more than once"),
            ("format=csv&format=raw", "format: given more than once"),
        ] {
            let err = parse(query).unwrap_err().to_string();
            assert!(err.starts_with(reason), "{query}: {err}");
        }
        let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_nanos(NOW);
        let gaps = parse_query("from=-1h&source=live:3&format=csv", now, Path::Completeness);
        assert_eq!(
            gaps.unwrap_err().to_string(),
            "unknown parameter \"format\" (expected from, to, source or buckets)"
        );
        for (query, reason) in [
            (
                "from=-1h&buckets=0",
                "buckets: \"0\" is not a number of buckets (1 to 1000)",
            ),
            ("from=-1h&buckets=1001", "buckets: \"1001\" is not a number"),
            ("from=-1h&buckets=many", "buckets: \"many\" is not a number"),
            ("buckets=60", "buckets: needs from, the timeline's start"),
        ] {
            let err = parse_query(query, now, Path::Completeness).unwrap_err();
            assert!(err.to_string().starts_with(reason), "{query}: {err}");
        }
        let frames = parse("from=-1h&buckets=60").unwrap_err().to_string();
        assert!(
            frames.starts_with("unknown parameter \"buckets\""),
            "{frames}"
        );
        let many: Vec<String> = (0..65).map(|i| format!("source=live:{i}")).collect();
        assert_eq!(parse(&many.join("&")), Err(QueryError::TooManySources));
    }
}
