//! Followers of the archive over loopback: from the start every archived frame once and in archive
//! order; from now only later frames; after a position the next frame, across a restart too; the
//! switch from history to live with sources still sending loses and repeats nothing; filters; a
//! consumer that never reads holds back neither ingest, nor other consumers, nor the drain; bad
//! subscriptions are refused with their reason; and `aggregator tail` against the binary.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, SystemTime};

use aggregator::archive::format;
use aggregator::archive::read::{ArchivedFrame, Start};
use aggregator::archive::write::CountingSink;
use aggregator::catalog::CatalogHandle;
use aggregator::config::SyncMode;
use aggregator::domain::position::{Position, Positions, ShardPosition};
use aggregator::domain::units::unix_ns;
use aggregator::follow::client::{Event, FollowError, Follower};
use aggregator::follow::protocol::{
    DaemonMessage, EndReason, RefuseReason, Subscription, MAX_DAEMON_MESSAGE_LEN, VERSION,
};
use aggregator::follow::{FollowSettings, Followers};
use aggregator::protocol::ingest::encode_data;
use aggregator::{Config, Priority, SourceKind, Stats};
use bytes::BytesMut;
use common::{
    archive_config, process, test_config, with_followers, Client, ShardedArchive, TempDir,
    TestDaemon, PATIENCE,
};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_util::codec::{FramedRead, LengthDelimitedCodec};
use tokio_util::sync::CancellationToken;

const LIVE: SourceKind = SourceKind::LiveUplink;
const REPLAY: SourceKind = SourceKind::ArchivedReplay;

/// A daemon on the segment archive of `config`, serving followers.
async fn start(config: &Config) -> TestDaemon {
    TestDaemon::open(with_followers(config.clone())).await
}

fn routine(sequences: std::ops::Range<u64>) -> Vec<(Priority, u64)> {
    sequences.map(|s| (Priority::Routine, s)).collect()
}

/// Every fifth frame an emergency.
fn mixed(sequences: std::ops::Range<u64>) -> Vec<(Priority, u64)> {
    let priority = |s: u64| match s % 5 {
        0 => Priority::Emergency,
        _ => Priority::Routine,
    };
    sequences.map(|s| (priority(s), s)).collect()
}

/// A frame as the tests compare them: where it is, whose, which, how urgent, and its payload.
type Seen = (Position, SourceKind, u32, u64, Priority, Vec<u8>);

fn seen(followed: &ArchivedFrame) -> Seen {
    let f = &followed.frame;
    let payload = f.payload.to_vec();
    (
        followed.position,
        f.kind,
        f.source_id,
        f.sequence,
        f.priority,
        payload,
    )
}

/// Every frame in the archive in `dir`, in archive order, read from the files independently of the
/// follower: its record's offset and its index in the record.
fn archived(dir: &Path) -> Vec<Seen> {
    let stored = common::stored_frames(dir).into_iter();
    stored
        .map(|(position, f)| {
            let payload = f.payload.to_vec();
            (
                position,
                f.kind,
                f.source_id,
                f.sequence,
                f.priority,
                payload,
            )
        })
        .collect()
}

fn subscription(start: Start) -> Subscription {
    Subscription::new(start, Vec::new(), None)
}

/// Right after `position` of shard 0, the only shard of these daemons' archives.
fn after_shard_0(position: Position) -> Start {
    Start::After([ShardPosition { shard: 0, position }].into_iter().collect())
}

async fn subscribe(daemon: &TestDaemon, subscription: &Subscription) -> Follower {
    tokio::time::timeout(
        PATIENCE,
        Follower::subscribe(daemon.follow(), subscription, None),
    )
    .await
    .expect("SUBSCRIBED in time")
    .expect("subscribed")
}

/// The next `count` frames.
async fn take(follower: &mut Follower, count: usize) -> Vec<ArchivedFrame> {
    let mut frames = Vec::with_capacity(count);
    while frames.len() < count {
        let next = tokio::time::timeout(PATIENCE, follower.next()).await;
        let frame = next
            .unwrap_or_else(|_| panic!("frame {} of {count} in time", frames.len()))
            .expect("the subscription goes on")
            .unwrap_or_else(|| panic!("END after {} of {count} frames", frames.len()));
        frames.push(frame);
    }
    frames
}

/// Everything up to the END that follows the drain.
async fn take_to_end(follower: &mut Follower) -> Vec<ArchivedFrame> {
    let mut frames = Vec::new();
    loop {
        let next = tokio::time::timeout(PATIENCE, follower.next()).await;
        match next.expect("END in time").expect("an END for a drain") {
            Some(frame) => frames.push(frame),
            None => return frames,
        }
    }
}

#[tokio::test]
async fn from_the_start_every_archived_frame_comes_once_in_archive_order() {
    let dir = TempDir::new("follow-start");
    let config = archive_config(&dir.0);
    let daemon = start(&config).await;
    daemon.send(LIVE, 1, mixed(0..300)).await;
    daemon.send(LIVE, 2, routine(0..200)).await;
    daemon.send(REPLAY, 3, mixed(0..100)).await;
    daemon.wait_archived(600).await;

    let mut follower = subscribe(&daemon, &subscription(Start::Oldest)).await;
    let mut frames = take(&mut follower, 600).await;
    let report = daemon.shutdown().await;
    assert!(report.is_clean(), "{report:?}");
    frames.extend(take_to_end(&mut follower).await);

    let received: Vec<Seen> = frames.iter().map(seen).collect();
    let expected = archived(&dir.0);
    assert_eq!(expected.len(), 600);
    assert_eq!(received, expected);
}

#[tokio::test]
async fn from_now_only_frames_stored_after_the_subscription_come() {
    let dir = TempDir::new("follow-now");
    let daemon = start(&archive_config(&dir.0)).await;
    daemon.send(LIVE, 1, routine(0..100)).await;
    daemon.wait_archived(100).await;

    let mut follower = subscribe(&daemon, &subscription(Start::Now)).await;
    daemon.send(LIVE, 1, routine(100..150)).await;
    daemon.wait_archived(150).await;
    let report = daemon.shutdown().await;
    assert!(report.is_clean(), "{report:?}");
    let frames = take_to_end(&mut follower).await;

    let sequences: Vec<u64> = frames.iter().map(|f| f.frame.sequence).collect();
    assert_eq!(sequences, (100..150).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_position_resumes_right_after_it_across_a_daemon_restart() {
    let dir = TempDir::new("follow-resume");
    let config = archive_config(&dir.0);
    let first = start(&config).await;
    first.send(LIVE, 7, routine(0..400)).await;
    first.wait_archived(400).await;
    let mut follower = subscribe(&first, &subscription(Start::Oldest)).await;
    let before = take(&mut follower, 150).await;
    // Mid-record on purpose: a batch of one socket read is one FRAMES record.
    let kept = before.last().unwrap().position;
    assert!(
        kept.index > 0,
        "position {kept} is not inside a FRAMES record"
    );
    drop(follower);
    assert!(first.shutdown().await.is_clean());

    let second = start(&config).await;
    let mut source = Client::source(second.uplink, LIVE, 7).await;
    source.send_routine(400..500).await;
    source.finish_sending().await;
    source.read_to_close().await;
    second.wait_archived(100).await;
    let mut resumed = subscribe(&second, &subscription(after_shard_0(kept))).await;
    let after = take(&mut resumed, 350).await;
    assert!(second.shutdown().await.is_clean());
    assert!(take_to_end(&mut resumed).await.is_empty());

    let sequences: Vec<u64> = before
        .iter()
        .chain(&after)
        .map(|f| f.frame.sequence)
        .collect();
    assert_eq!(sequences, (0..500).collect::<Vec<_>>(), "a gap or a repeat");
    let positions: Vec<Seen> = before.iter().chain(&after).map(seen).collect();
    assert_eq!(positions, archived(&dir.0));
}

#[tokio::test]
async fn history_then_live_while_sources_send_loses_and_repeats_nothing() {
    history_then_live(SyncMode::Interval).await;
}

/// Without syncs a write is durable at once, also in a segment the disk thread has not named yet.
#[tokio::test]
async fn history_then_live_without_syncs_reads_segments_not_yet_named() {
    history_then_live(SyncMode::Never).await;
}

async fn history_then_live(sync: SyncMode) {
    let dir = TempDir::new(&format!("follow-switch-{sync:?}"));
    let mut config = archive_config(&dir.0);
    config.archive.sync = sync;
    // Small segments: the follower crosses rollovers while it catches up.
    config.archive.segment_bytes = 16 * 1024;
    let daemon = start(&config).await;
    let sources = [(LIVE, 1), (LIVE, 2), (REPLAY, 3), (REPLAY, 4)];
    let per_source = 1_500u64;
    let mut clients = Vec::new();
    for (kind, id) in sources {
        let mut client = Client::source(daemon.addr(kind), kind, id).await;
        client.send_frames(mixed(0..200)).await;
        clients.push(client);
    }
    daemon.wait_archived(200 * sources.len() as u64).await;
    let mut follower = subscribe(&daemon, &subscription(Start::Oldest)).await;
    let reader = tokio::spawn(async move {
        let mut frames = Vec::new();
        while let Some(frame) = follower.next().await.expect("the subscription goes on") {
            frames.push(frame);
        }
        frames
    });
    // The sources keep sending while the follower reads history and reaches the tail.
    for from in (200..per_source).step_by(100) {
        for client in &mut clients {
            client.send_frames(mixed(from..from + 100)).await;
        }
    }
    for client in &mut clients {
        client.finish_sending().await;
        client.read_to_close().await;
    }
    let total = per_source * sources.len() as u64;
    daemon.wait_archived(total).await;
    assert!(daemon.shutdown().await.is_clean());
    let frames = tokio::time::timeout(PATIENCE, reader)
        .await
        .unwrap()
        .unwrap();

    assert_eq!(frames.len() as u64, total);
    let received: Vec<Seen> = frames.iter().map(seen).collect();
    assert_eq!(received, archived(&dir.0));
    // Crossed a rollover at least (how many depends on how fast the disk thread names segments).
    assert!(format::list_segments(&dir.0).unwrap().len() >= 2);
}

#[tokio::test]
async fn filters_pass_only_the_sources_and_the_priority_asked_for() {
    let dir = TempDir::new("follow-filter");
    let daemon = start(&archive_config(&dir.0)).await;
    daemon.send(LIVE, 1, mixed(0..100)).await;
    daemon.send(LIVE, 2, mixed(0..100)).await;
    daemon.send(REPLAY, 1, mixed(0..100)).await;
    daemon.wait_archived(300).await;
    let wanted = Subscription::new(
        Start::Oldest,
        vec![(LIVE, 1), (REPLAY, 1)],
        Some(Priority::Emergency),
    );
    let mut follower = subscribe(&daemon, &wanted).await;
    assert!(daemon.shutdown().await.is_clean());
    let frames = take_to_end(&mut follower).await;

    let received: Vec<Seen> = frames.iter().map(seen).collect();
    let expected: Vec<Seen> = archived(&dir.0)
        .into_iter()
        .filter(|(_, kind, id, _, priority, _)| {
            *priority == Priority::Emergency && wanted.filter.sources.contains(&(*kind, *id))
        })
        .collect();
    assert_eq!(expected.len(), 40);
    assert_eq!(received, expected);
}

/// `count` 1 KiB routine frames as DATA bytes.
fn kib_frames(sequences: std::ops::Range<u64>) -> BytesMut {
    let mut bytes = BytesMut::new();
    for sequence in sequences {
        encode_data(&mut bytes, Priority::Routine, sequence, &[0x5a; 1024]);
    }
    bytes
}

/// A connection that subscribes and then never reads, with a small receive buffer.
async fn stuck_consumer(addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    let mut subscribe = BytesMut::new();
    subscription(Start::Oldest).encode(&mut subscribe);
    stream.write_all(&subscribe).await.unwrap();
    stream
}

#[tokio::test]
async fn a_consumer_that_never_reads_holds_back_neither_ingest_nor_others_nor_the_drain() {
    let dir = TempDir::new("follow-stuck");
    let mut config = archive_config(&dir.0);
    config.shutdown.drain_deadline = Duration::from_secs(1);
    let daemon = start(&config).await;
    let stuck = stuck_consumer(daemon.follow()).await;
    let mut reading = subscribe(&daemon, &subscription(Start::Oldest)).await;
    // 16 MiB of frames: far more than the stuck consumer's socket buffers hold.
    let total = 16 * 1024;
    let mut source = Client::source(daemon.uplink, LIVE, 1).await;
    for from in (0..total).step_by(1024) {
        source.send_raw(&kib_frames(from..from + 1024)).await;
    }
    source.finish_sending().await;
    let closed = source.read_to_close().await;
    assert_eq!(
        closed.final_ack,
        Some(total - 1),
        "ingest stored everything"
    );
    let frames = take(&mut reading, total as usize).await;
    assert!(frames.iter().map(|f| f.frame.sequence).eq(0..total));

    let report = daemon.shutdown().await;
    assert!(
        report.is_clean(),
        "the drain does not wait for a stuck consumer: {report:?}"
    );
    assert!(take_to_end(&mut reading).await.is_empty());
    // Cut off at the deadline: what its socket held, and no END.
    let mut input = FramedRead::new(
        stuck,
        LengthDelimitedCodec::builder()
            .max_frame_length(MAX_DAEMON_MESSAGE_LEN)
            .new_codec(),
    );
    let mut received = 0;
    while let Some(Ok(body)) = input.next().await {
        match DaemonMessage::decode(body.freeze()).unwrap() {
            DaemonMessage::Frames(run) => received += run.frames.len() as u64,
            DaemonMessage::Subscribed { .. } => {}
            other => panic!("a stuck consumer got {other:?}"),
        }
    }
    assert!(
        received < total,
        "the stuck consumer got all {received} frames"
    );
}

/// Sends raw bytes and returns the daemon's refusal.
async fn refusal(addr: SocketAddr, bytes: &[u8]) -> (RefuseReason, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut input = FramedRead::new(stream, LengthDelimitedCodec::new());
    let body = tokio::time::timeout(PATIENCE, input.next())
        .await
        .expect("an answer in time")
        .expect("an answer")
        .expect("a readable answer");
    match DaemonMessage::decode(body.freeze()).unwrap() {
        DaemonMessage::Refused { reason, detail } => (reason, detail),
        other => panic!("expected REFUSED, got {other:?}"),
    }
}

async fn refused(daemon: &TestDaemon, start: Start) -> (RefuseReason, String) {
    match Follower::subscribe(daemon.follow(), &subscription(start.clone()), None).await {
        Err(FollowError::Refused { reason, detail }) => (reason, detail),
        Err(other) => panic!("expected a refusal for {start}, got {other}"),
        Ok(_) => panic!("{start} was accepted"),
    }
}

/// A daemon whose archive rolls every 4 KiB, with `frames` routine frames of live 1 stored: one
/// connection after another, one write to the archive each, so several segments.
async fn small_segments(name: &str, frames: u64) -> (TempDir, TestDaemon) {
    let dir = TempDir::new(name);
    let mut config = archive_config(&dir.0);
    config.archive.segment_bytes = 4096;
    let daemon = start(&config).await;
    for from in (0..frames).step_by(50) {
        daemon
            .send(LIVE, 1, routine(from..(from + 50).min(frames)))
            .await;
    }
    daemon.wait_archived(frames).await;
    (dir, daemon)
}

#[tokio::test]
async fn bad_subscriptions_and_positions_are_refused_with_their_reason() {
    let (dir, daemon) = small_segments("follow-refuse", 500).await;
    let frames = archived(&dir.0);
    assert!(format::list_segments(&dir.0).unwrap().len() >= 3);
    let first = frames[0].0;

    // Not a SUBSCRIBE, a newer version, an oversize length, a truncated body.
    let hello = [0, 0, 0, 7, 0x01, 1, 0, 0, 0, 0, 7];
    assert_eq!(
        refusal(daemon.follow(), &hello).await.0,
        RefuseReason::MalformedSubscribe
    );
    let mut good = BytesMut::new();
    subscription(Start::Oldest).encode(&mut good);
    let mut newer = good.to_vec();
    newer[5] = VERSION + 1;
    assert_eq!(
        refusal(daemon.follow(), &newer).await.0,
        RefuseReason::UnsupportedVersion
    );
    let (reason, detail) = refusal(daemon.follow(), &[0, 1, 0, 0]).await;
    assert_eq!(reason, RefuseReason::MalformedSubscribe, "{detail}");
    let mut short = good.to_vec();
    short[3] -= 1;
    short.pop();
    assert_eq!(
        refusal(daemon.follow(), &short).await.0,
        RefuseReason::MalformedSubscribe
    );

    let past = Position {
        segment: frames.last().unwrap().0.segment + 1,
        offset: 8,
        index: 0,
    };
    assert_eq!(
        refused(&daemon, after_shard_0(past)).await.0,
        RefuseReason::PositionPastEnd
    );
    let between = Position {
        offset: first.offset + 1,
        ..first
    };
    assert_eq!(
        refused(&daemon, after_shard_0(between)).await.0,
        RefuseReason::UnknownPosition
    );
    let too_far = Position {
        index: 10_000,
        ..first
    };
    let (reason, detail) = refused(&daemon, after_shard_0(too_far)).await;
    assert_eq!(reason, RefuseReason::UnknownPosition);
    assert!(detail.contains("no frame 10000"), "{detail}");
    // An operator deletes the oldest segment.
    std::fs::remove_file(dir.0.join(format::segment_name(first.segment))).unwrap();
    let (reason, detail) = refused(&daemon, after_shard_0(first)).await;
    assert_eq!(reason, RefuseReason::SegmentDeleted, "{detail}");

    // None of it affected the daemon: a good subscription still gets every frame kept.
    let kept = archived(&dir.0);
    let mut follower = subscribe(&daemon, &subscription(Start::Oldest)).await;
    assert!(daemon.shutdown().await.is_clean());
    let received: Vec<Seen> = take_to_end(&mut follower).await.iter().map(seen).collect();
    assert_eq!(received, kept);
}

/// A segment the daemon cannot read: the follower is told its file within the archive, not where
/// the server keeps it, and the daemon goes on.
#[tokio::test]
async fn an_unreadable_segment_is_refused_by_its_file_not_the_server_s_path() {
    let (dir, daemon) = small_segments("follow-unreadable", 200).await;
    let first = archived(&dir.0)[0].0;
    assert!(format::list_segments(&dir.0).unwrap().len() >= 2);
    // The oldest segment becomes a directory: opened, it reads nothing.
    let name = format::segment_name(first.segment);
    std::fs::remove_file(dir.0.join(&name)).unwrap();
    std::fs::create_dir(dir.0.join(&name)).unwrap();
    let (reason, detail) = refused(&daemon, after_shard_0(first)).await;
    assert_eq!(reason, RefuseReason::ArchiveUnreadable, "{detail}");
    assert!(detail.contains(&name), "{detail}");
    let server_path = dir.0.display().to_string();
    assert!(!detail.contains(&server_path), "{detail}");
    daemon.send(LIVE, 1, routine(200..210)).await;
    daemon.wait_archived(210).await;
    assert!(daemon.shutdown().await.is_clean());
}

#[tokio::test]
async fn a_daemon_without_archive_files_refuses_followers() {
    let config = with_followers(test_config());
    let running = TestDaemon::start(config, Box::new(CountingSink::default())).await;
    assert_eq!(
        refused(&running, Start::Oldest).await.0,
        RefuseReason::NoArchive
    );
    assert!(running.shutdown().await.is_clean());
}

async fn next_message(input: &mut FramedRead<TcpStream, LengthDelimitedCodec>) -> DaemonMessage {
    let body = tokio::time::timeout(PATIENCE, input.next()).await;
    let body = body
        .expect("a message in time")
        .expect("a message")
        .unwrap();
    DaemonMessage::decode(body.freeze()).unwrap()
}

/// Anything a consumer sends after its SUBSCRIBE ends the subscription with
/// END(UnexpectedMessage): a whole message, one stray byte, or a length prefix whose message never
/// comes (a partial message must not be waited for).
#[tokio::test]
async fn a_consumer_that_sends_after_subscribing_is_ended_with_the_reason() {
    let dir = TempDir::new("follow-chatty");
    let daemon = start(&archive_config(&dir.0)).await;
    for sent in [&[0, 0, 0, 1, 0x11][..], &[0x42], &[0, 0, 0, 9, 1]] {
        let mut stream = TcpStream::connect(daemon.follow()).await.unwrap();
        let mut bytes = BytesMut::new();
        subscription(Start::Now).encode(&mut bytes);
        stream.write_all(&bytes).await.unwrap();
        let mut input = FramedRead::new(stream, LengthDelimitedCodec::new());
        assert!(matches!(
            next_message(&mut input).await,
            DaemonMessage::Subscribed { .. }
        ));
        input.get_mut().write_all(sent).await.unwrap();
        match next_message(&mut input).await {
            DaemonMessage::End { reason, .. } => {
                assert_eq!(reason, EndReason::UnexpectedMessage, "after {sent:?}")
            }
            other => panic!("expected END after {sent:?}, got {other:?}"),
        }
    }
    assert!(daemon.shutdown().await.is_clean());
}

/// The `aggregator` binary on an archive in `dir`, with followers enabled.
fn start_binary(dir: &Path) -> process::Daemon {
    let text = format!(
        "[uplink]\nlisten = \"127.0.0.1:0\"\n[replay]\nlisten = \"127.0.0.1:0\"\n\
         [monitor]\nlisten = \"127.0.0.1:0\"\n\
         [consumer]\nenabled = true\nlisten = \"127.0.0.1:0\"\n\
         [runtime]\nshards = 1\n[archive]\ndir = \"{}\"\n",
        dir.join("archive").display()
    );
    process::Daemon::start_in(dir, &text)
}

/// Runs `aggregator tail ARGS` to its exit: status, standard output, standard error.
async fn tail(args: &[&str]) -> (Option<i32>, String, String) {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_aggregator"));
    command.arg("tail").args(args);
    let run = tokio::task::spawn_blocking(move || command.output());
    let out = tokio::time::timeout(PATIENCE, run)
        .await
        .expect("tail exits in time")
        .unwrap()
        .expect("run aggregator tail");
    let text = |bytes: Vec<u8>| String::from_utf8(bytes).unwrap();
    (out.status.code(), text(out.stdout), text(out.stderr))
}

#[tokio::test]
async fn aggregator_tail_prints_frames_ends_at_the_drain_and_says_why_it_fails() {
    let dir = TempDir::new("follow-tail");
    let daemon = start_binary(&dir.0);
    let mut source = Client::source(daemon.uplink, LIVE, 5).await;
    source.send_frames(mixed(0..20)).await;
    source.finish_sending().await;
    source.read_to_close().await;

    let addr = daemon.consumer.expect("the follow listener").to_string();
    let (status, out, err) = tail(&["--addr", &addr, "--limit", "5", "--json"]).await;
    assert_eq!(status, Some(0), "{err}");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5, "{out}");
    assert!(
        lines
            .iter()
            .all(|l| l["kind"] == "live" && l["source"] == 5),
        "{out}"
    );
    // Emergencies overtake: the archive's order, one FRAMES record per batch and priority.
    let archive = archived(&dir.0.join("archive"));
    for (line, stored) in lines.iter().zip(&archive) {
        assert_eq!(line["position"], format!("0/{}", stored.0));
        assert_eq!(
            line["resume"], line["position"],
            "one shard: its position is the resume"
        );
        assert_eq!(line["sequence"], stored.3);
        assert_eq!(line["payload_hex"], format!("{:016x}", stored.3));
    }

    // Resumed after the fifth, filtered to routine frames, as text.
    let after = lines[4]["position"].as_str().unwrap();
    let args = [
        "--addr",
        &addr,
        "--from",
        after,
        "--priority",
        "routine",
        "--limit",
        "3",
    ];
    let (status, out, err) = tail(&args).await;
    assert_eq!(status, Some(0), "{err}");
    let expected: Vec<String> = archive[5..]
        .iter()
        .filter(|f| f.4 == Priority::Routine)
        .take(3)
        .map(|f| {
            format!(
                "0/{} live:5 seq={} routine len=8 payload={:016x}",
                f.0, f.3, f.3
            )
        })
        .collect();
    assert_eq!(expected.len(), 3);
    assert_eq!(out.lines().collect::<Vec<_>>(), expected);

    // A window, by the received times it printed (fixed width: their text sorts as they do):
    // exactly those frames, then END(Until) and exit 0 (a window over long ago ends at once).
    let json = |out: &str| -> Vec<serde_json::Value> {
        out.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let (_, out, _) = tail(&["--addr", &addr, "--json", "--limit", "20"]).await;
    let every = json(&out);
    let received = |l: &serde_json::Value| l["received"].as_str().unwrap().to_string();
    let (since, until) = (received(&every[12]), received(&every[5]));
    let (since, until) = (since.clone().min(until.clone()), since.max(until));
    let args = [
        "--addr", &addr, "--json", "--since", &since, "--until", &until,
    ];
    let (status, out, err) = tail(&args).await;
    assert_eq!(status, Some(0), "{err}");
    let position = |l: &serde_json::Value| l["position"].as_str().unwrap().to_string();
    let wanted: Vec<String> = (every.iter())
        .filter(|l| (since.clone()..=until.clone()).contains(&received(l)))
        .map(position)
        .collect();
    assert!(wanted.len() >= 2, "{wanted:?}");
    assert_eq!(json(&out).iter().map(position).collect::<Vec<_>>(), wanted);
    let (status, out, err) = tail(&["--addr", &addr, "--until", "-1h"]).await;
    assert_eq!((status, out.as_str()), (Some(0), ""), "{err}");
    for bad in [
        &["--since", "yesterday"][..],
        &[
            "--since",
            "2026-11-24T10:00:00Z",
            "--until",
            "2026-11-24T09:00:00Z",
        ],
    ] {
        let (status, _, err) = tail(&[&["--addr", &addr][..], bad].concat()).await;
        assert_eq!(status, Some(2), "a usage error: {err}");
        assert!(
            err.contains("is not a time") || err.contains("--since is after --until"),
            "{err}"
        );
    }

    let (status, _, err) = tail(&["--addr", &addr, "--from", "99:8:0"]).await;
    assert_eq!(status, Some(1));
    assert!(err.contains("PositionPastEnd"), "{err}");
    let (status, _, err) = tail(&["--addr", &addr, "--from", "yesterday"]).await;
    assert_eq!(status, Some(2), "a usage error: {err}");

    // Without --limit it runs until the daemon drains, then exits 0 having printed every frame;
    // with a window that reaches past the drain it exits 1: more of it may come after a restart.
    let follower = tokio::task::spawn_blocking({
        let addr = addr.clone();
        move || follow_until_drained(&addr, daemon, &[&[], &["--until", "2100-01-01T00:00:00Z"]])
    });
    let tails = tokio::time::timeout(PATIENCE, follower)
        .await
        .expect("tail ends at the drain")
        .unwrap();
    assert_eq!(tails, [(20, Some(0)), (20, Some(1))]);
    let (status, _, err) = tail(&["--addr", &addr]).await;
    assert_eq!(status, Some(1));
    assert!(err.contains("cannot connect"), "{err}");
}

/// The quick start's daemon has no follow listener (`consumer.enabled` is off by default): a tail
/// to its address is refused, and says what to turn on, not only `Connection refused`.
#[tokio::test]
async fn aggregator_tail_refused_says_the_follow_listener_may_not_be_enabled() {
    let addr = format!("127.0.0.1:{}", common::free_port());
    let (status, out, err) = tail(&["--addr", &addr]).await;
    assert_eq!(status, Some(1), "{err}");
    assert_eq!(out, "");
    assert!(
        err.starts_with(&format!("aggregator tail: cannot connect to {addr}: ")),
        "{err}"
    );
    for hint in [
        "follow listener",
        "consumer.enabled = true",
        "consumer.listen",
    ] {
        assert!(err.contains(hint), "{hint:?} in {err}");
    }
}

/// Runs an `aggregator tail --addr ADDR` with each of `options` until each has printed its first
/// line (it has subscribed), then sends the daemon SIGTERM; returns how many lines each tail
/// printed and its exit status.
fn follow_until_drained(
    addr: &str,
    mut daemon: process::Daemon,
    options: &[&[&str]],
) -> Vec<(usize, Option<i32>)> {
    use std::io::BufRead;
    let mut tails: Vec<_> = (options.iter())
        .map(|options| {
            let mut tail = std::process::Command::new(env!("CARGO_BIN_EXE_aggregator"))
                .args(["tail", "--addr", addr])
                .args(*options)
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("run aggregator tail");
            let mut lines = std::io::BufReader::new(tail.stdout.take().unwrap()).lines();
            assert!(lines.next().is_some(), "a first frame");
            (tail, lines)
        })
        .collect();
    daemon.signal(libc::SIGTERM);
    let ended = (tails.iter_mut())
        .map(|(tail, lines)| (1 + lines.count(), tail.wait().unwrap().code()))
        .collect();
    let (status, _) = daemon.wait_exit(PATIENCE);
    assert!(status.success(), "a clean drain");
    ended
}

#[tokio::test]
async fn a_full_listener_and_a_silent_consumer_are_refused_with_their_reason() {
    let dir = TempDir::new("follow-limits");
    let mut config = archive_config(&dir.0);
    config.consumer.max_connections = 1;
    config.connection.handshake_timeout = Duration::from_millis(200);
    let daemon = start(&config).await;
    let first = subscribe(&daemon, &subscription(Start::Oldest)).await;
    let (reason, detail) = refused(&daemon, Start::Oldest).await;
    assert_eq!(reason, RefuseReason::TooManyConnections, "{detail}");
    drop(first);

    // The slot comes back once the first follower has gone; a consumer that then says nothing is
    // refused when the handshake time is up.
    let silent = tokio::time::timeout(PATIENCE, async {
        loop {
            let stream = TcpStream::connect(daemon.follow()).await.unwrap();
            let mut input = FramedRead::new(stream, LengthDelimitedCodec::new());
            match next_message(&mut input).await {
                DaemonMessage::Refused {
                    reason: RefuseReason::TooManyConnections,
                    ..
                } => continue,
                other => return other,
            }
        }
    });
    match silent.await.expect("a refusal in time") {
        DaemonMessage::Refused { reason, .. } => {
            assert_eq!(reason, RefuseReason::HandshakeTimeout)
        }
        other => panic!("expected REFUSED, got {other:?}"),
    }
    assert!(daemon.shutdown().await.is_clean());
}

#[tokio::test]
async fn followers_hear_of_the_latest_catalog_at_once_and_of_each_publication() {
    let dir = TempDir::new("follow-catalog");
    let daemon = start(&archive_config(&dir.0)).await;
    daemon
        .catalog
        .publish("text/plain", "v1".into())
        .await
        .unwrap();
    let mut new = subscribe(&daemon, &subscription(Start::Now)).await;
    // The latest at once, then each publication.
    assert_eq!(next(&mut new).await.unwrap(), Some(Event::Catalog(1)));
    daemon
        .catalog
        .publish("text/plain", "v2".into())
        .await
        .unwrap();
    assert_eq!(next(&mut new).await.unwrap(), Some(Event::Catalog(2)));
    daemon.send(LIVE, 1, routine(0..3)).await;
    daemon.wait_archived(3).await;
    assert!(daemon.shutdown().await.is_clean());
    let mut events = Vec::new();
    while let Some(event) = next(&mut new).await.unwrap() {
        events.push(event);
    }
    let sequences: Vec<u64> = events
        .iter()
        .map(|e| match e {
            Event::Frame(f) => f.frame.sequence,
            Event::Catalog(v) => panic!("a repeat of catalog {v}"),
            Event::Skipped(skipped) => panic!("nothing was deleted: {skipped:?}"),
            Event::Earliest(earliest) => panic!("no window: {earliest:?}"),
        })
        .collect();
    assert_eq!(sequences, vec![0, 1, 2]);
}

/// The next event, in time.
async fn next(follower: &mut Follower) -> Result<Option<Event>, FollowError> {
    tokio::time::timeout(PATIENCE, follower.next_event())
        .await
        .expect("an event in time")
}

// ---------------------------------------------------------------------------------------------
// An archive of several shards, each with its own segment stream and durable end.
// ---------------------------------------------------------------------------------------------

/// Followers served on an archive of several shards, as the daemon serves them.
struct ShardFollowers {
    addr: SocketAddr,
    drain: CancellationToken,
    followers: Followers,
}

impl ShardFollowers {
    async fn start(archive: &ShardedArchive) -> ShardFollowers {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let settings = FollowSettings {
            dir: archive.root.clone(),
            limits: aggregator::net::Limits::new(16, None),
            handshake_timeout: PATIENCE,
            tls: None,
            readers: None,
            stats: Stats::default(),
        };
        let drain = CancellationToken::new();
        let catalog = CatalogHandle::in_memory(1024);
        let followers = Followers::start(
            listener,
            settings,
            archive.durable_ends(),
            catalog,
            drain.clone(),
        );
        ShardFollowers {
            addr,
            drain,
            followers,
        }
    }

    async fn subscribe(&self, start: Start) -> Follower {
        tokio::time::timeout(
            PATIENCE,
            Follower::subscribe(self.addr, &subscription(start), None),
        )
        .await
        .expect("SUBSCRIBED in time")
        .expect("subscribed")
    }

    async fn finish(self) {
        self.drain.cancel();
        let deadline = tokio::time::Instant::now() + PATIENCE;
        self.followers.finish(deadline).await;
    }
}

/// A frame of a sharded archive as the tests compare them: its shard, then as [`Seen`].
type ShardSeen = (usize, Seen);

fn shard_seen(followed: &ArchivedFrame) -> ShardSeen {
    (followed.shard, seen(followed))
}

/// Every frame of every shard in `shards`, each shard's in its archive order.
fn archived_shards(root: &Path, shards: &[usize]) -> Vec<ShardSeen> {
    shards
        .iter()
        .flat_map(|&shard| {
            let frames = archived(&format::shard_dir(root, shard));
            frames.into_iter().map(move |frame| (shard, frame))
        })
        .collect()
}

/// The frames of each shard, in the order they came: what per-shard order is compared on.
fn by_shard(frames: &[ShardSeen]) -> BTreeMap<usize, Vec<Seen>> {
    let mut shards: BTreeMap<usize, Vec<Seen>> = BTreeMap::new();
    for (shard, frame) in frames {
        shards.entry(*shard).or_default().push(frame.clone());
    }
    shards
}

/// Shards 0, 1 and 3 running (no shard 2, as after a change of `runtime.shards`), and shard 5
/// retired: written before the followers start, its watch closed.
async fn sharded_archive(root: &Path) -> ShardedArchive {
    let mut config = archive_config(root);
    // Small segments: followers cross rollovers within each shard.
    config.archive.segment_bytes = 8 * 1024;
    let mut archive = ShardedArchive::start(root, &[0, 1, 3, 5], &config).await;
    archive.send(5, REPLAY, 50, mixed(0..120)).await;
    archive.stop_shard(5).await;
    archive
}

const SHARDS: [usize; 4] = [0, 1, 3, 5];

/// Sends frames `range` of each running shard's sources: live `10 * shard + 1` and replay
/// `10 * shard + 2` (a source belongs to one shard).
async fn send_to_running_shards(archive: &ShardedArchive, range: std::ops::Range<u64>) {
    for shard in [0, 1, 3] {
        let id = 10 * shard as u32;
        archive
            .send(shard, LIVE, id + 1, mixed(range.clone()))
            .await;
        archive
            .send(shard, REPLAY, id + 2, routine(range.clone()))
            .await;
    }
}

#[tokio::test]
async fn every_frame_of_every_shard_comes_once_in_its_shards_order() {
    let dir = TempDir::new("follow-shards");
    let mut archive = sharded_archive(&dir.0).await;
    send_to_running_shards(&archive, 0..200).await;
    let followers = ShardFollowers::start(&archive).await;
    let mut follower = followers.subscribe(Start::Oldest).await;
    let reader = tokio::spawn(async move {
        let mut frames = Vec::new();
        while let Some(frame) = follower.next().await.expect("the subscription goes on") {
            frames.push(frame);
        }
        frames
    });
    // History, then live: the shards go on storing while the follower reads.
    send_to_running_shards(&archive, 200..500).await;
    archive.stop().await;
    let frames = tokio::time::timeout(PATIENCE, reader)
        .await
        .expect("END once every shard is closed and read")
        .unwrap();
    followers.finish().await;

    let received: Vec<ShardSeen> = frames.iter().map(shard_seen).collect();
    let expected = archived_shards(&dir.0, &SHARDS);
    assert_eq!(expected.len(), 120 + 3 * 2 * 500);
    assert_eq!(received.len(), expected.len(), "a frame lost or repeated");
    assert_eq!(by_shard(&received), by_shard(&expected));
    assert!(
        format::list_segments(&format::shard_dir(&dir.0, 3))
            .unwrap()
            .len()
            >= 2,
        "shard 3 rolled over"
    );
}

/// A window that ends in the near future, on an archive with a retired shard: once its end has
/// settled the subscription gets END(Until), while the daemon runs on; the retired shard, where
/// nothing is written any more, does not hold it open.
#[tokio::test]
async fn a_window_ends_beside_a_retired_shard() {
    let dir = TempDir::new("follow-shards-window");
    let mut archive = sharded_archive(&dir.0).await;
    send_to_running_shards(&archive, 0..50).await;
    let followers = ShardFollowers::start(&archive).await;
    let until = unix_ns(SystemTime::now()).unwrap() + 100_000_000;
    let mut input = subscribe_window(followers.addr, None, until).await;
    let ended = tokio::time::timeout(PATIENCE, frames_to_end(&mut input)).await;
    let (frames, reason) = ended.expect("END once the window's end has settled");
    assert_eq!(reason, EndReason::Until);
    assert_eq!(
        frames.len(),
        120 + 3 * 2 * 50,
        "every frame received before its end"
    );
    archive.stop().await;
    followers.finish().await;
}

#[tokio::test]
async fn a_resume_from_every_shards_position_loses_and_repeats_nothing() {
    let dir = TempDir::new("follow-shards-resume");
    let mut archive = sharded_archive(&dir.0).await;
    send_to_running_shards(&archive, 0..150).await;
    let followers = ShardFollowers::start(&archive).await;
    let mut first = followers.subscribe(Start::Oldest).await;
    let before = take(&mut first, 500).await;
    let kept = first.positions().clone();
    assert_eq!(
        kept,
        before.iter().map(ArchivedFrame::shard_position).collect(),
        "the follower keeps each shard's last frame"
    );
    drop(first);

    // The text form is what a consumer stores and `tail --from` takes.
    let stored: Positions = kept.to_string().parse().unwrap();
    send_to_running_shards(&archive, 150..300).await;
    let mut resumed = followers.subscribe(Start::After(stored)).await;
    archive.stop().await;
    let after = take_to_end(&mut resumed).await;
    followers.finish().await;

    let received: Vec<ShardSeen> = before.iter().chain(&after).map(shard_seen).collect();
    let expected = archived_shards(&dir.0, &SHARDS);
    assert_eq!(received.len(), expected.len(), "a frame lost or repeated");
    assert_eq!(by_shard(&received), by_shard(&expected));
}

#[tokio::test]
async fn a_shard_without_a_position_in_the_resume_starts_at_its_oldest_frame() {
    let dir = TempDir::new("follow-shards-partial");
    let mut archive = sharded_archive(&dir.0).await;
    send_to_running_shards(&archive, 0..100).await;
    // Every shard closed before the followers start: they read what is stored, then END.
    archive.stop().await;
    let expected = archived_shards(&dir.0, &SHARDS);
    let shard_1 = &by_shard(&expected)[&1];
    let followers = ShardFollowers::start(&archive).await;
    let after = ShardPosition {
        shard: 1,
        position: shard_1[49].0,
    };
    let mut follower = followers
        .subscribe(Start::After([after].into_iter().collect()))
        .await;
    let received: Vec<ShardSeen> = take_to_end(&mut follower)
        .await
        .iter()
        .map(shard_seen)
        .collect();
    followers.finish().await;

    let mut wanted = by_shard(&expected);
    wanted.get_mut(&1).unwrap().drain(..50);
    assert_eq!(by_shard(&received), wanted);
}

/// A daemon before version 5 (1.0.0 speaks 3 and 4) refuses this client's first SUBSCRIBE; the
/// client subscribes again in version 4 and follows it.
#[tokio::test]
async fn the_client_follows_a_daemon_of_version_4_in_version_4() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let old_daemon = tokio::spawn(async move {
        let mut versions = Vec::new();
        for answer in [
            DaemonMessage::Refused {
                reason: RefuseReason::UnsupportedVersion,
                detail: "SUBSCRIBE of protocol version 5; this daemon speaks versions 3 and 4"
                    .into(),
            },
            DaemonMessage::Subscribed { version: 4 },
        ] {
            let (stream, _) = listener.accept().await.unwrap();
            let (read, mut write) = stream.into_split();
            let mut input = FramedRead::new(read, LengthDelimitedCodec::new());
            let subscribe = input.next().await.unwrap().unwrap();
            versions.push(subscribe[1]);
            let mut out = BytesMut::new();
            answer.encode(&mut out);
            let end = DaemonMessage::End {
                reason: EndReason::Shutdown,
                detail: "draining".into(),
            };
            end.encode(&mut out);
            write.write_all(&out).await.unwrap();
        }
        versions
    });
    let mut follower = Follower::subscribe(addr, &subscription(Start::Oldest), None)
        .await
        .unwrap();
    assert!(matches!(follower.next().await, Ok(None)));
    assert_eq!(old_daemon.await.unwrap(), [VERSION, 4]);
}

#[tokio::test]
async fn a_subscribe_of_version_1_or_2_is_refused_naming_both_versions() {
    let dir = TempDir::new("follow-shards-v2");
    let mut archive = sharded_archive(&dir.0).await;
    let followers = ShardFollowers::start(&archive).await;
    for version in [1, 2] {
        // A SUBSCRIBE of those versions for every frame from the oldest: 26 bytes, whose first
        // two are the type and the version, as in every version.
        let mut old = vec![0, 0, 0, 26, 0x11, version];
        old.resize(4 + 26, 0);
        let (reason, detail) = refusal(followers.addr, &old).await;
        assert_eq!(reason, RefuseReason::UnsupportedVersion, "{detail}");
        assert_eq!(
            detail,
            format!("SUBSCRIBE of protocol version {version}; this daemon speaks versions 3 to 5")
        );
    }
    // A position in a shard the archive does not have.
    let absent: Positions = "2/1:8:0".parse().unwrap();
    match Follower::subscribe(followers.addr, &subscription(Start::After(absent)), None).await {
        Err(FollowError::Refused { reason, detail }) => {
            assert_eq!(reason, RefuseReason::UnknownPosition, "{detail}");
            assert!(detail.contains("no shard 2"), "{detail}");
        }
        Err(other) => panic!("expected a refusal, got {other}"),
        Ok(_) => panic!("a position of shard 2 was accepted"),
    }
    archive.stop().await;
    followers.finish().await;
}

#[tokio::test]
async fn aggregator_tail_prints_shard_positions_and_resumes_from_them() {
    let dir = TempDir::new("follow-shards-tail");
    let mut archive = sharded_archive(&dir.0).await;
    send_to_running_shards(&archive, 0..20).await;
    let followers = ShardFollowers::start(&archive).await;
    let addr = followers.addr.to_string();
    let (status, out, err) = tail(&["--addr", &addr, "--json", "--limit", "100"]).await;
    assert_eq!(status, Some(0), "{err}");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 100);
    let mut resume = Positions::new();
    for line in &lines {
        let at: ShardPosition = line["position"].as_str().unwrap().parse().unwrap();
        resume.set(at);
        assert_eq!(line["resume"], resume.to_string(), "{line}");
    }
    let from = lines[99]["resume"].as_str().unwrap().to_string();
    archive.stop().await;
    let (status, out, err) = tail(&["--addr", &addr, "--from", &from]).await;
    assert_eq!(status, Some(0), "{err}");
    followers.finish().await;

    let expected = archived_shards(&dir.0, &SHARDS);
    let first: Vec<String> = lines
        .iter()
        .map(|l| l["position"].as_str().unwrap().to_string())
        .collect();
    let rest: Vec<String> = out
        .lines()
        .map(|l| l.split(' ').next().unwrap().to_string())
        .collect();
    let mut printed: Vec<String> = first.into_iter().chain(rest).collect();
    let mut stored: Vec<String> = expected
        .iter()
        .map(|(shard, frame)| format!("{shard}/{}", frame.0))
        .collect();
    printed.sort();
    stored.sort();
    assert_eq!(printed, stored, "every frame printed once");
}

/// A subscription from the oldest frame to the window from `since` to `until`, SUBSCRIBED, read
/// off the wire.
async fn subscribe_window(
    follow: SocketAddr,
    since: Option<u64>,
    until: u64,
) -> FramedRead<TcpStream, LengthDelimitedCodec> {
    let mut stream = TcpStream::connect(follow).await.unwrap();
    let mut bytes = BytesMut::new();
    let window = subscription(Start::Oldest).within(since, Some(until));
    window.encode(&mut bytes);
    stream.write_all(&bytes).await.unwrap();
    let mut input = FramedRead::new(stream, LengthDelimitedCodec::new());
    assert!(matches!(
        next_message(&mut input).await,
        DaemonMessage::Subscribed { .. }
    ));
    input
}

/// Every frame of the subscription up to its END, read off the wire, and the END's reason.
async fn frames_to_end(
    input: &mut FramedRead<TcpStream, LengthDelimitedCodec>,
) -> (Vec<ArchivedFrame>, EndReason) {
    let mut frames = Vec::new();
    loop {
        match next_message(input).await {
            DaemonMessage::Frames(run) => frames.extend(run.into_frames()),
            DaemonMessage::Catalog { .. } => {}
            DaemonMessage::End { reason, .. } => return (frames, reason),
            other => panic!("expected FRAMES or END, got {other:?}"),
        }
    }
}

/// A subscription with a time window gets exactly the frames received in it, in every shard and
/// across segment rolls (history and live alike), and END(Until) once no more can come: here
/// when the daemon stops, since its end has not settled yet. One whose window reaches past the
/// stop gets END(Shutdown) instead: frames received after a restart may still belong to it.
#[tokio::test]
async fn a_time_window_gets_exactly_the_frames_received_in_it_then_end_until() {
    let dir = TempDir::new("follow-window");
    let mut config = archive_config(&dir.0);
    config.runtime.shards = 2;
    config.archive.segment_bytes = 8 * 1024;
    let daemon = start(&config).await;
    let mut sent = 0;
    for round in 0..6u64 {
        for id in 1..=3 {
            daemon
                .send(LIVE, id, mixed(round * 40..round * 40 + 40))
                .await;
            sent += 40;
        }
    }
    daemon.wait_archived(sent).await;
    let mut all = subscribe(&daemon, &subscription(Start::Oldest)).await;
    let all = take(&mut all, sent as usize).await;
    let mut received: Vec<u64> = all.iter().map(|f| f.frame.received_unix_ns).collect();
    received.sort_unstable();
    let (since, until) = (
        received[received.len() / 4],
        received[received.len() * 3 / 4],
    );
    let wanted: Vec<ArchivedFrame> = (all.iter())
        .filter(|f| (since..=until).contains(&f.frame.received_unix_ns))
        .cloned()
        .collect();
    assert!(wanted.len() >= sent as usize / 2, "{} frames", wanted.len());

    // Subscribes to the window from `since` to `until`; its frames and END are read in the
    // background.
    let follow = daemon.follow();
    let follow_window = |until| subscribe_window(follow, Some(since), until);
    let mut input = follow_window(until).await;
    let reader = tokio::spawn(async move { frames_to_end(&mut input).await });
    // Frames received after the window are passed over while the daemon runs.
    daemon.send(LIVE, 1, routine(1_000..1_050)).await;
    daemon.wait_archived(sent + 50).await;
    let hour_ahead = unix_ns(SystemTime::now()).unwrap() + 3_600_000_000_000;
    let mut input = follow_window(hour_ahead).await;
    let ahead = tokio::spawn(async move { frames_to_end(&mut input).await });
    assert!(daemon.shutdown().await.is_clean());
    let (frames, reason) = reader.await.unwrap();
    assert_eq!(reason, EndReason::Until);
    let (from_since, reason) = ahead.await.unwrap();
    assert_eq!(reason, EndReason::Shutdown, "the window had not ended");
    assert!(from_since.len() > frames.len(), "{}", from_since.len());
    // Each shard's frames in its order (positions repeat across shards).
    let by_shard = |frames: &[ArchivedFrame]| -> BTreeMap<usize, Vec<Seen>> {
        let mut shards: BTreeMap<usize, Vec<Seen>> = BTreeMap::new();
        for f in frames {
            shards.entry(f.shard).or_default().push(seen(f));
        }
        shards
    };
    assert_eq!(by_shard(&frames), by_shard(&wanted));
    assert_eq!(
        by_shard(&wanted).len(),
        2,
        "both shards hold frames of the window"
    );
}
