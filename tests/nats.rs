//! The NATS sink against a real `nats-server` with JetStream (Debian's `nats-server` package;
//! `.ci/run` installs it): two `aggregator` daemons, each with its own site, archive and
//! `uplink-sim`, publish into one stream, and a consumer here finds every `(site, kind, source,
//! seq)` of both archives exactly once, also across a SIGKILL of one daemon and a stop of
//! `nats-server`, during which ingest goes on. And the sink on an archive of several shards,
//! built shard by shard (`common::ShardedArchive`): every shard published once, with a cursor
//! per shard that a restarted sink resumes from. And `ack = "replicated"`: a daemon lost with its
//! archive during a NATS outage loses nothing it acknowledged, where `ack = "local"` does.

mod common;
mod nats_stream;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use aggregator::archive::format;
use aggregator::archive::tools;
use aggregator::config::SyncMode;
use aggregator::domain::position::Position;
use aggregator::protocol::ingest::{ServerMessage, VERSION};
use aggregator::sinks::message::Layout;
use aggregator::sinks::nats::NatsSink;
use aggregator::{Priority, SourceKind, Stats};

use common::{hello_bytes, Client, NatsDaemon, NatsServer, Sim, TempDir};
use nats_stream::audit::{audit, Acknowledged, Audit};
use nats_stream::{
    create_stream_of, publish_as, stream_contents, stream_messages, Contents, STREAM,
};

/// The longest any one wait may take: generous, the machine is shared.
const PATIENCE: Duration = Duration::from_secs(60);

/// Polls `done` until it holds; fails the test with `what` after [`PATIENCE`].
fn wait_until(what: &str, done: impl FnMut() -> bool) {
    common::wait_until_blocking(what, PATIENCE, done);
}

/// Every `(kind, source, seq)` the archive at `archive` holds, checked to hold each once and no
/// gap.
fn archived(archive: &Path) -> BTreeSet<(String, u32, u64)> {
    let report = tools::verify(archive).expect("verify the archive");
    assert!(report.is_valid() && report.is_exactly_once(), "{report:?}");
    let mut frames = BTreeSet::new();
    for source in &report.sources {
        let (Some(first), Some(last)) = (source.first, source.last) else {
            continue;
        };
        let kind = match source.kind {
            SourceKind::LiveUplink => "live",
            SourceKind::ArchivedReplay => "replay",
        };
        frames.extend((first..=last).map(|seq| (kind.to_string(), source.id, seq)));
    }
    frames
}

/// Each daemon's archive is in the stream under its site, every frame once.
fn assert_exactly_once(contents: &Contents, daemons: &[(&str, &NatsDaemon)]) {
    assert_eq!(
        contents.len(),
        daemons.len(),
        "sites in the stream: {:?}",
        contents.keys()
    );
    for (site, daemon) in daemons {
        let archived = archived(&daemon.archive);
        let published = &contents[*site];
        let twice: Vec<_> = published.iter().filter(|(_, n)| **n != 1).collect();
        assert!(
            twice.is_empty(),
            "{site}: published more than once: {twice:?}"
        );
        let keys: BTreeSet<_> = published.keys().cloned().collect();
        let missing: Vec<_> = archived.difference(&keys).take(10).collect();
        let extra: Vec<_> = keys.difference(&archived).take(10).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{site}: {} archived, {} published; missing {missing:?}, not archived {extra:?}",
            archived.len(),
            keys.len()
        );
    }
}

#[test]
#[ignore = "needs nats-server (tests/nats/venv.sh, or Debian package nats-server); .ci/run runs it"]
fn two_daemons_publish_every_frame_exactly_once_into_one_stream() {
    let nats = NatsServer::start();
    let (north_dir, south_dir) = (TempDir::new("north"), TempDir::new("south"));
    let mut north = NatsDaemon::start(&north_dir.0, "north", &nats.url());
    let mut south = NatsDaemon::start(&south_dir.0, "south", &nats.url());
    let (north_sim, south_sim) = (north.sim(500, 2), south.sim(500, 2));
    let sent = north_sim.wait() + south_sim.wait();

    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let contents = runtime.block_on(stream_contents(&nats.url(), Some(sent)));
    for daemon in [&north, &south] {
        wait_until("the sink's lag to reach 0", || {
            daemon.stat("nats_lag_frames") == 0
        });
        // With `ack = "local"` no emergency sizes the messages: the most records each.
        let sink = ["nats_sink", "nats_connected", "nats_message_bytes"].map(|s| daemon.stat(s));
        assert_eq!(sink, [1, 1, 256 << 10]);
        // A lone server leads every stream it has (whether or not its stream information says
        // so), once the sink has looked since it created the stream.
        wait_until("the sink to publish through the stream's leader", || {
            daemon.stat("nats_at_leader") == 1
        });
        // Room in flight: 512 KiB for each 10 ms of the fastest PubAck lately, 1 to 8 times.
        let room = daemon.stat("nats_room_bytes");
        assert!(
            room % (512 << 10) == 0 && (1..=8).contains(&(room >> 19)),
            "{room}"
        );
        let (status, health) = daemon.get("/healthz");
        assert_eq!(
            (status, health["status"].as_str()),
            (200, Some("ready")),
            "{health}"
        );
    }
    // A PubAck lost to a timeout is counted when the frame's republish is acknowledged as a
    // duplicate; nothing is counted new twice.
    let published = north.stat("nats_published") + south.stat("nats_published");
    let republished = north.stat("nats_republished") + south.stat("nats_republished");
    assert!(
        published <= sent && published + republished >= sent,
        "{published} new and {republished} republished of {sent}"
    );
    assert!(north.terminate().success(), "{}", north.log());
    assert!(south.terminate().success(), "{}", south.log());
    assert_exactly_once(&contents, &[("north", &north), ("south", &south)]);
    let cursor =
        std::fs::read_to_string(north.archive.join("sinks/nats.cursor")).expect("a cursor");
    assert!(
        cursor
            .trim()
            .parse::<aggregator::domain::position::Position>()
            .is_ok(),
        "{cursor:?}"
    );
}

#[test]
#[ignore = "needs nats-server (tests/nats/venv.sh, or Debian package nats-server); .ci/run runs it"]
fn sigkill_and_a_nats_outage_still_publish_exactly_once_and_ingest_goes_on() {
    let mut nats = NatsServer::start();
    let (north_dir, south_dir) = (TempDir::new("north"), TempDir::new("south"));
    let mut north = NatsDaemon::start(&north_dir.0, "north", &nats.url());
    let mut south = NatsDaemon::start(&south_dir.0, "south", &nats.url());
    let (north_sim, south_sim) = (north.sim(300, 14), south.sim(300, 14));

    // North is killed once it has published, and started again on its archive.
    wait_until("north to publish", || north.stat("nats_published") > 1_000);
    north.kill();
    north.restart();

    // NATS stops for five seconds: both daemons go on storing (their simulators' frames are
    // acknowledged), and say degraded.
    wait_until("south to publish", || south.stat("nats_published") > 2_000);
    nats.stop();
    let stopped = Instant::now();
    let archived_at_stop = [north.stat("frames_archived"), south.stat("frames_archived")];
    wait_until("the daemons to see NATS gone", || {
        [&north, &south].iter().all(|d| d.get("/healthz").0 == 503)
    });
    let (_, health) = south.get("/healthz");
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["nats"]["connected"], false, "{health}");
    let mut samples = Vec::new();
    while stopped.elapsed() < Duration::from_secs(5) {
        samples.push([north.stat("frames_archived"), south.stat("frames_archived")]);
        thread::sleep(Duration::from_millis(500));
    }
    for (daemon, at_stop) in [0, 1].into_iter().zip(archived_at_stop) {
        let during: Vec<u64> = samples.iter().map(|s| s[daemon]).collect();
        assert!(
            during.windows(2).all(|w| w[1] > w[0]) && during.last() > Some(&at_stop),
            "daemon {daemon}: frames_archived during the outage {at_stop} then {during:?}: ingest paused"
        );
    }
    nats.restart();

    let sent = north_sim.wait() + south_sim.wait();
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let contents = runtime.block_on(stream_contents(&nats.url(), Some(sent)));
    wait_until("both daemons ready again", || {
        [&north, &south].iter().all(|d| d.get("/healthz").0 == 200)
    });
    assert!(north.terminate().success(), "{}", north.log());
    assert!(south.terminate().success(), "{}", south.log());
    assert_exactly_once(&contents, &[("north", &north), ("south", &south)]);
}

/// Sends frames `range` of shard `shard`'s two sources (live `10 * shard + 1`, replay
/// `10 * shard + 2`) and returns their `(kind, source, seq)`.
async fn send_to_shard(
    archive: &common::ShardedArchive,
    shard: usize,
    range: std::ops::Range<u64>,
) -> BTreeSet<(String, u32, u64)> {
    let id = 10 * shard as u32;
    let mut sent = BTreeSet::new();
    for (kind, token, source) in [
        (SourceKind::LiveUplink, "live", id + 1),
        (SourceKind::ArchivedReplay, "replay", id + 2),
    ] {
        let frames = range.clone().map(|seq| (Priority::Routine, seq));
        archive.send(shard, kind, source, frames).await;
        sent.extend(range.clone().map(|seq| (token.to_string(), source, seq)));
    }
    sent
}

/// Waits until the sink counted `published` new messages (without republishing any).
async fn wait_published(stats: &Stats, published: u64) {
    common::wait_until(&format!("{published} messages published"), PATIENCE, || {
        let snapshot = stats.snapshot();
        assert_eq!(snapshot.nats_republished, 0, "a frame published twice");
        snapshot.nats_published == published
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server (tests/nats/venv.sh, or Debian package nats-server); .ci/run runs it"]
async fn every_shard_is_published_exactly_once_with_a_cursor_of_its_own() {
    let nats = NatsServer::start();
    let root = TempDir::new("sharded");
    let mut config = common::test_config();
    config.archive.dir = root.0.clone();
    config.archive.sync = SyncMode::Interval;
    let mut archive = common::ShardedArchive::start(&root.0, &[0, 2, 4], &config).await;
    let mut sent = BTreeSet::new();
    for shard in [0, 2, 4] {
        sent.extend(send_to_shard(&archive, shard, 0..300).await);
    }
    // Shard 4 retires: its files are complete, its watch closed.
    archive.stop_shard(4).await;
    let nats_config = toml::from_str::<aggregator::Config>(&format!(
        "[sinks.nats]\nurl = \"{}\"\nstream = \"{STREAM}\"\nsite = \"sharded\"\n",
        nats.url()
    ))
    .expect("a NATS sink config")
    .sinks
    .nats
    .expect("[sinks.nats]");

    // The first run publishes everything stored, then is cut off: its cursors are saved.
    let first = Stats::new();
    let sink = NatsSink::start(
        nats_config.clone(),
        root.0.clone(),
        archive.durable_ends(),
        first.clone(),
        None,
        None,
    );
    wait_published(&first, sent.len() as u64).await;
    sink.finish(tokio::time::Instant::now()).await;
    for (shard, name) in [
        (0, "nats.cursor"),
        (2, "nats-shard-02.cursor"),
        (4, "nats-shard-04.cursor"),
    ] {
        let text = std::fs::read_to_string(root.0.join("sinks").join(name))
            .unwrap_or_else(|err| panic!("shard {shard}'s cursor {name}: {err}"));
        let cursor: Position = text.trim().parse().expect("a position");
        let segments =
            aggregator::archive::format::list_segments(&format::shard_dir(&root.0, shard));
        let newest = segments
            .expect("the shard's segments")
            .last()
            .map(|(index, _)| *index);
        assert!(Some(cursor.segment) <= newest, "shard {shard}: {cursor}");
    }

    // More frames in the running shards; a second run resumes from each shard's cursor and
    // publishes only those, then ends when every shard is closed and published.
    let mut more = BTreeSet::new();
    for shard in [0, 2] {
        more.extend(send_to_shard(&archive, shard, 300..500).await);
    }
    let second = Stats::new();
    let sink = NatsSink::start(
        nats_config,
        root.0.clone(),
        archive.durable_ends(),
        second.clone(),
        None,
        None,
    );
    archive.stop().await;
    wait_published(&second, more.len() as u64).await;
    sink.finish(tokio::time::Instant::now() + PATIENCE).await;

    sent.extend(more);
    let contents = stream_contents(&nats.url(), Some(sent.len() as u64)).await;
    let published = &contents["sharded"];
    let twice: Vec<_> = published.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "published more than once: {twice:?}");
    let keys: BTreeSet<_> = published.keys().cloned().collect();
    assert_eq!(keys, sent);
}

/// A `nats-server`, and a daemon of one shard publishing into it whose segments are
/// `segment_bytes` long and whose retention protects the sink and has `limit` (a TOML key):
/// the server, the daemon's directory and the daemon.
fn bounded_under_nats(
    name: &str,
    segment_bytes: u64,
    limit: &str,
) -> (NatsServer, TempDir, NatsDaemon) {
    let nats = NatsServer::start();
    let dir = TempDir::new(name);
    let archive = format!(
        "segment_bytes = {segment_bytes}\n[archive.retention]\n{limit}\nprotect = [\"nats\"]\n\
         check_interval_ms = 50\n[runtime]\nshards = 1\n"
    );
    let daemon = NatsDaemon::start_with(&dir.0, "north", &nats.url(), &archive);
    (nats, dir, daemon)
}

/// The frames of `contents`' only site, checked to be there once each.
fn published_once(contents: &Contents) -> u64 {
    let published = contents.values().next().expect("a site in the stream");
    let twice: Vec<_> = published.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "published more than once: {twice:?}");
    published.len() as u64
}

/// NATS stopped long enough for retention to overtake the sink: `max_bytes` deletes segments the
/// sink has not published, though it is protected. Once NATS is back, the sink goes on at the
/// oldest frame left: it counts the frames it skipped, says so at error level, and is degraded
/// until it has caught up. What the stream holds and what the sink counted skipped are every
/// frame archived, once.
#[test]
#[ignore = "needs nats-server (tests/nats/venv.sh, or Debian package nats-server); .ci/run runs it"]
fn retention_overtaking_a_stopped_nats_is_counted_and_the_sink_goes_on() {
    let limit = "max_bytes = \"8MiB\"";
    let (mut nats, _dir, mut daemon) = bounded_under_nats("retention", 1 << 20, limit);
    let first = daemon.sim(200, 1).wait();
    wait_until("the sink to publish the first frames", || {
        daemon.stat("nats_published") == first
    });

    nats.stop();
    // 5 sources at 4,000 frames/s of 64 bytes for 10 s: several times the archive's bound.
    let more = daemon.sim(4000, 10).wait();
    wait_until("retention to delete unpublished segments", || {
        daemon.stat("retention_deleted_segments") > 3
    });
    assert_eq!(daemon.stat("nats_skipped_frames"), 0, "nothing read yet");

    nats.restart();
    wait_until("the sink to skip ahead", || {
        daemon.stat("nats_skipped_frames") > 0
    });
    wait_until("the sink to catch up", || {
        daemon.stat("nats_lag_seconds") == 0 && daemon.get("/healthz").0 == 200
    });
    let skipped = daemon.stat("nats_skipped_frames");
    let line = daemon.log();
    assert!(
        line.contains("ERROR") && line.contains("the NATS sink skipped frames retention deleted"),
        "{line}"
    );
    assert!(daemon.terminate().success(), "{}", daemon.log());

    let archived = first + more;
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let contents = runtime.block_on(stream_contents(&nats.url(), Some(archived - skipped)));
    assert_eq!(
        published_once(&contents) + skipped,
        archived,
        "published or skipped, once"
    );
}

/// With `protect = ["nats"]` and only `max_age`, segments NATS has not published outlive their
/// age while it is away, and once it is back every frame is published: none skipped.
#[test]
#[ignore = "needs nats-server (tests/nats/venv.sh, or Debian package nats-server); .ci/run runs it"]
fn protected_segments_outlive_max_age_until_the_sink_has_published_them() {
    let limit = "max_age = \"1s\"";
    let (mut nats, _dir, mut daemon) = bounded_under_nats("protect", 64 << 10, limit);
    let first = daemon.sim(500, 1).wait();
    wait_until("the sink to publish", || {
        daemon.stat("nats_published") == first
    });
    // Published and older than a second: deleted.
    wait_until("retention to delete what was published", || {
        daemon.stat("retention_deleted_segments") > 0
    });

    nats.stop();
    let more = daemon.sim(500, 1).wait();
    let sent_at = Instant::now();
    let deleted = daemon.stat("retention_deleted_segments");
    // Every unpublished segment is past its age, and retention has looked at it many times.
    wait_until("the unpublished frames to pass max_age", || {
        sent_at.elapsed() > Duration::from_secs(2)
    });
    assert_eq!(
        daemon.stat("retention_deleted_segments"),
        deleted,
        "protected"
    );

    nats.restart();
    wait_until("the sink to publish the rest", || {
        daemon.stat("nats_published") == first + more
    });
    assert_eq!(daemon.stat("nats_skipped_frames"), 0);
    assert!(daemon.terminate().success(), "{}", daemon.log());
}

/// What a machine lost during a NATS outage takes with it: 4 uplinks and a replay feed against a
/// daemon with `sinks.nats.ack = ack`; NATS stops, the daemon stores frames JetStream lacks (with
/// `local` 1,000 more; with `replicated` until 1,000 wait for JetStream, which its gate's least
/// room, 4 windows of 256, lets in whatever was in flight when NATS stopped), then is SIGKILLed
/// and its archive deleted; NATS comes back. The audit of the stream against what the simulator
/// saw acknowledged.
fn lost_with_the_machine(ack: &str) -> Audit {
    let mut nats = NatsServer::start();
    let dir = TempDir::new("lost");
    let sink_keys = format!("ack = \"{ack}\"\n");
    let mut daemon = NatsDaemon::start_in(&dir.0, "lost", &[nats.url()], &sink_keys, "");
    let acks = dir.0.join("acks.log");
    let acks_path = acks.to_str().expect("a UTF-8 path");
    let (uplink, replay) = (daemon.uplink_addr(), daemon.replay_addr());
    let args = ["--give-up-after", "1", "--ack-log", acks_path];
    let sim = Sim::four_and_one(&uplink, &replay, 500, 30, &args);
    // The simulator's own record of what it saw acknowledged, which the audit checks.
    wait_until("1,000 frames acknowledged", || {
        let mut acknowledged = Acknowledged::default();
        let log = std::fs::read_to_string(&acks).unwrap_or_default();
        // A line half written is read again at the next look.
        acknowledged.add_log(&log).is_ok() && acknowledged.frames() > 1_000
    });
    nats.stop();
    let archived = daemon.stat("frames_archived");
    wait_until("frames stored during the outage", || match ack {
        "replicated" => daemon.stat("nats_unreplicated_frames") >= 1_000,
        _ => daemon.stat("frames_archived") > archived + 1_000,
    });
    if ack == "replicated" {
        let (status, health) = daemon.get("/healthz");
        assert_eq!(status, 503, "{health}");
        let waiting = health["nats"]["acks_wait_for_jetstream"].as_u64();
        assert!(waiting > Some(0), "{health}");
    }
    // The machine is lost: the daemon and its disk. The simulator gives up on it.
    daemon.kill();
    std::fs::remove_dir_all(&daemon.archive).expect("delete the archive");
    sim.exit();
    nats.restart();
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let messages = runtime.block_on(stream_messages(nats.url(), None));
    let report = audit(&Acknowledged::read(&[&acks]), &messages);
    println!("ack = {ack}: {report}");
    report
}

#[test]
#[ignore = "needs nats-server (tests/nats/venv.sh, or Debian package nats-server); .ci/run runs it"]
fn a_replicated_acknowledgement_outlives_the_machine() {
    let report = lost_with_the_machine("replicated");
    assert!(report.acknowledged > 1_000, "{report}");
    assert_eq!((report.missing, report.duplicated), (0, 0), "{report}");
}

/// The control: the same loss with `ack = "local"` loses what was acknowledged during the outage.
#[test]
#[ignore = "needs nats-server (tests/nats/venv.sh, or Debian package nats-server); .ci/run runs it"]
fn a_local_acknowledgement_is_lost_with_the_machine() {
    let report = lost_with_the_machine("local");
    assert!(report.missing > 0, "{report}");
}

/// A daemon that comes back with its archive after its sources failed over publishes none of the
/// frames it held that their sources sent again through the other daemon, even past the
/// duplicate window (1 s here): two daemons with `identity = "fleet"` and `ack = "replicated"`;
/// A is SIGKILLed during a NATS outage with frames it could not publish, its sources move to B,
/// and A is started again on its archive once the duplicate window has passed.
#[test]
#[ignore = "needs nats-server (tests/nats/venv.sh, or Debian package nats-server); .ci/run runs it"]
fn a_daemon_back_after_its_sources_moved_on_publishes_nothing_twice() {
    let mut nats = NatsServer::start();
    let sink = "ack = \"replicated\"\nidentity = \"fleet\"\nduplicate_window_s = 1\n\
                subject = \"telemetry.{kind}.{source}\"\n";
    let (dir_a, dir_b) = (TempDir::new("back-a"), TempDir::new("back-b"));
    let mut a = NatsDaemon::start_in(&dir_a.0, "a", &[nats.url()], sink, "");
    let b = NatsDaemon::start_in(&dir_b.0, "b", &[nats.url()], sink, "");
    let acks = dir_a.0.join("acks.log");
    let sim = Sim::four_and_one(
        &format!("{},{}", a.uplink_addr(), b.uplink_addr()),
        &format!("{},{}", a.replay_addr(), b.replay_addr()),
        200,
        6,
        &["--ack-log", acks.to_str().expect("a UTF-8 path")],
    );
    wait_until("daemon a to publish", || a.stat("nats_published") > 500);
    nats.stop();
    let at_stop = a.stat("frames_archived");
    wait_until("daemon a to archive what it cannot publish", || {
        a.stat("frames_archived") > at_stop + 500
    });
    a.kill();
    // b's sink, given a's sources, fails for want of PubAcks and starts a session again later.
    wait_until("daemon b's sink to fail without NATS", || {
        b.log().contains("NATS sink failed")
    });
    nats.restart();
    sim.wait();
    wait_until("daemon b to publish everything", || {
        b.stat("nats_lag_frames") == 0
    });
    // Outlasts the stream's duplicate window: a copy now would be stored.
    thread::sleep(Duration::from_millis(1_500));
    a.restart();
    // The drain publishes what the archive holds before the daemon exits.
    assert!(a.terminate().success(), "{}", a.log());
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let messages = runtime.block_on(stream_messages(nats.url(), None));
    // Frames daemon a archived and b published: what a would publish a second time.
    let held_by_a = archived(&a.archive);
    let sent_again = (messages.iter())
        .filter(|m| m.site.as_deref() == Some("b"))
        .filter_map(|m| Some(m.identity()?.1))
        .filter(|frame| held_by_a.contains(frame))
        .count();
    assert!(
        sent_again > 0,
        "daemon a held nothing its sources sent again"
    );
    let report = audit(&Acknowledged::read(&[&acks]), &messages);
    println!("{sent_again} frames of a's archive published by b; {report}");
    assert!(report.acknowledged > 1_000, "{report}");
    assert_eq!((report.missing, report.duplicated), (0, 0), "{report}");
    // b's sink failed and found the stream again: its single replica is worth one warning.
    let warned = b.log().matches("fewer than 3 replicas").count();
    assert_eq!(warned, 1, "{}", b.log());
}

/// After a restart with JetStream away, a source whose frames the archive holds unpublished is
/// welcomed only once the sink has published them: WELCOME's `resume_after` covers them, so a
/// machine lost in between would lose frames the source was told are held. A daemon with `ack =
/// "replicated"` stores 100 frames of one source during a NATS outage (none acknowledged), is
/// SIGKILLed and started again on its archive; the source's HELLO gets no answer while NATS is
/// away (a source that gives up is deregistered), and once it is back, the stream holds every
/// frame up to WELCOME's `resume_after`.
#[test]
#[ignore = "needs nats-server (tests/nats/venv.sh, or Debian package nats-server); .ci/run runs it"]
fn after_a_restart_a_source_is_welcomed_only_past_what_the_stream_holds() {
    const FRAMES: u64 = 100;
    let mut nats = NatsServer::start();
    let dir = TempDir::new("welcome");
    let sink = "ack = \"replicated\"\n";
    let mut daemon = NatsDaemon::start_in(&dir.0, "welcome", &[nats.url()], sink, "");
    let addr: SocketAddr = daemon.uplink_addr().parse().expect("an address");
    nats.stop();
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let mut client = runtime.block_on(Client::source(addr, SourceKind::LiveUplink, 9));
    runtime.block_on(client.send_routine(0..FRAMES));
    wait_until("the frames stored during the outage", || {
        daemon.stat("frames_archived") >= FRAMES
    });
    daemon.kill();
    drop(client);
    daemon.restart();

    let hello = hello_bytes(VERSION, SourceKind::LiveUplink, 9);
    let mut client = runtime.block_on(async {
        let mut client = Client::connect(addr).await;
        client.send_raw(&hello).await;
        client
    });
    // A WELCOME comes at once when it does not wait; this one must wait for NATS.
    let early = runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(2), client.recv_message()).await
    });
    assert!(
        early.is_err(),
        "answered while the stream lacks the frames: {early:?}\n{}",
        daemon.log()
    );
    // A source that gives up waiting is free to come back at once.
    drop(client);
    wait_until("the source gone", || daemon.stat("active_sources") == 0);
    let mut client = runtime.block_on(async {
        let mut client = Client::connect(addr).await;
        client.send_raw(&hello).await;
        client
    });
    nats.restart();
    let welcome = async { tokio::time::timeout(PATIENCE, client.expect_welcome()).await };
    let resume_after = (runtime.block_on(welcome)).expect("WELCOME once NATS is back");
    assert_eq!(resume_after, Some(FRAMES - 1));
    let messages = runtime.block_on(stream_messages(nats.url(), None));
    let held: BTreeSet<u64> = (messages.iter())
        .filter(|m| m.subject.ends_with(".9"))
        .filter_map(|m| m.sequence.as_deref()?.parse().ok())
        .collect();
    assert_eq!(held, (0..FRAMES).collect(), "the stream at WELCOME");
    assert!(daemon.log().contains("WELCOME waits for the NATS sink"));
}

/// Emergencies first: with 5,000 routine frames of one source stored during a NATS outage, then an
/// emergency of it, the sink publishes the emergency ahead of most of them once JetStream is
/// back (`docs/scale-out.md`), each priority in the files' order, every frame once.
#[test]
#[ignore = "needs nats-server (tests/nats/venv.sh, or Debian package nats-server); .ci/run runs it"]
fn an_emergency_is_published_ahead_of_routine_frames_stored_before_it() {
    const ROUTINE: u64 = 5_000;
    let mut nats = NatsServer::start();
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(nats_stream::create_stream(nats.url(), 1));
    let dir = TempDir::new("urgent");
    let mut daemon = NatsDaemon::start(&dir.0, "urgent", &nats.url());
    let addr: SocketAddr = daemon.uplink_addr().parse().expect("an address");
    nats.stop();
    let mut routine = runtime.block_on(Client::source(addr, SourceKind::LiveUplink, 9));
    runtime.block_on(routine.send_routine(0..ROUTINE));
    wait_until("the routine frames stored", || {
        daemon.stat("frames_archived") >= ROUTINE
    });
    runtime.block_on(routine.send_frames([(Priority::Emergency, ROUTINE)]));
    wait_until("the emergency stored", || {
        daemon.stat("frames_archived") > ROUTINE
    });
    nats.restart();

    let messages = runtime.block_on(stream_messages(&nats.url(), Some(ROUTINE + 1)));
    let emergency = messages
        .iter()
        .position(|m| m.priority.as_deref() == Some("emergency"));
    let emergency = emergency.expect("the emergency is in the stream");
    assert!(
        (emergency as u64) < ROUTINE / 2,
        "the emergency is message {emergency} of the stream, behind the routine frames stored before it"
    );
    let sequences: Vec<u64> = (messages.iter())
        .filter(|m| m.priority.as_deref() == Some("routine"))
        .map(|m| m.frame_sequence())
        .collect();
    assert!(
        sequences == (0..ROUTINE).collect::<Vec<_>>(),
        "routine frames in order, once"
    );
    assert!(daemon.terminate().success(), "{}", daemon.log());
}

/// With `ack = "replicated"` an emergency goes to JetStream from the archive's emergency journal,
/// not from its segment, whose sync it does not wait for: with segments synced once a minute or
/// past 2 KiB of payload, each of 20 emergencies of an emergency-only source (8 bytes each) is
/// acknowledged, so in JetStream, before the next is sent. Then 1,000 routine frames make the
/// segment sync: the sink meets the emergencies again in the files and counts them once, and
/// after the drain the stream holds every frame once, each priority in order.
#[test]
#[ignore = "needs nats-server (tests/nats/venv.sh, or Debian package nats-server); .ci/run runs it"]
fn a_replicated_emergency_is_published_from_the_journal_before_its_segment_s_sync() {
    const ROUTINE: u64 = 1_000;
    const EMERGENCIES: u64 = 20;
    let nats = NatsServer::start();
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let dir = TempDir::new("journaled");
    let sink_keys = "ack = \"replicated\"\n";
    // One shard, so that the routine frames' syncs cover the emergencies.
    let archive_keys =
        "sync_interval_ms = 60000\nmax_unsynced_bytes = 4096\n[runtime]\nshards = 1\n";
    let urls = [nats.url()];
    let mut daemon = NatsDaemon::start_in(&dir.0, "journaled", &urls, sink_keys, archive_keys);
    let addr: SocketAddr = daemon.uplink_addr().parse().expect("an address");
    // The sink's session has begun (it made its stream, of layout records/2): it takes what the
    // journal hands over. Before, an emergency's segment sync starts at once.
    runtime.block_on(stream_messages(&nats.url(), None));
    let mut urgent = runtime.block_on(Client::source(addr, SourceKind::LiveUplink, 10));
    for sequence in 0..EMERGENCIES {
        runtime.block_on(async {
            urgent.send_frames([(Priority::Emergency, sequence)]).await;
            let acked = async {
                while !matches!(urgent.recv_message().await,
                    ServerMessage::Ack { sequence: s } if s >= sequence)
                {}
            };
            let waited = tokio::time::timeout(PATIENCE, acked).await;
            waited.unwrap_or_else(|_| panic!("no ACK of emergency {sequence}"));
        });
    }
    assert_eq!(daemon.stat("nats_published_from_journal"), EMERGENCIES);
    assert_eq!(
        daemon.stat("frames_archived"),
        EMERGENCIES,
        "stored by the journal"
    );

    let mut routine = runtime.block_on(Client::source(addr, SourceKind::LiveUplink, 9));
    runtime.block_on(routine.send_routine(0..ROUTINE));
    // Past 2 KiB each write starts a sync: all but the last 2 KiB (256 frames) are synced.
    wait_until("the synced routine frames published", || {
        daemon.stat("nats_published") >= EMERGENCIES + ROUTINE - 256
    });
    assert_eq!(daemon.stat("nats_published_from_journal"), EMERGENCIES);
    assert_eq!(
        daemon.stat("nats_republished"),
        0,
        "the files' copies counted again"
    );
    assert!(daemon.terminate().success(), "{}", daemon.log());

    let messages = runtime.block_on(stream_messages(&nats.url(), Some(ROUTINE + EMERGENCIES)));
    let of = |priority: &str| -> Vec<u64> {
        (messages.iter())
            .filter(|m| m.priority.as_deref() == Some(priority))
            .map(|m| m.frame_sequence())
            .collect()
    };
    assert_eq!(of("routine"), (0..ROUTINE).collect::<Vec<_>>());
    assert_eq!(of("emergency"), (0..EMERGENCIES).collect::<Vec<_>>());
    assert_eq!(messages.len() as u64, ROUTINE + EMERGENCIES);
}

/// `aggregator nats read` gives back every frame the archive holds, with its metadata: the rows of
/// `archive export --format ndjson` less `shard` and `position`, plus `site` and
/// `stream_sequence`; by source, by priority and up to `--limit`. And docs/examples/read_stream.py
/// (nats-py, `tests/nats/venv.sh`) prints the very same lines. In a stream the sink created:
/// layout `records/2`, several frames a message, compressed (the simulator's payloads repeat).
#[test]
#[ignore = "needs nats-server and nats-py (tests/nats/venv.sh); .ci/run runs it"]
fn nats_read_and_the_python_example_give_back_every_frame_with_its_metadata() {
    read_back(Layout::Compressed);
}

/// As above, in a stream of layout `records/1` (an earlier build created it): the sink keeps
/// its layout, several frames a message, none compressed.
#[test]
#[ignore = "needs nats-server and nats-py (tests/nats/venv.sh); .ci/run runs it"]
fn a_records_1_stream_keeps_its_layout_and_reads_back_alike() {
    read_back(Layout::Records);
}

/// As above, in a stream an earlier build created (no layout in its description): the sink
/// keeps its layout, `frame/1`, a message per frame with its `Nats-Msg-Id`.
#[test]
#[ignore = "needs nats-server and nats-py (tests/nats/venv.sh); .ci/run runs it"]
fn a_stream_of_an_earlier_build_keeps_one_message_a_frame_and_reads_back_alike() {
    read_back(Layout::Frame);
}

/// `sinks.nats.layout = "records/1"`: the stream the sink creates is `records/1`, no body
/// compressed. A sink of the default layout (`records/2`) that finds that stream keeps it, says
/// so, and compresses nothing either.
#[test]
#[ignore = "needs nats-server (tests/nats/venv.sh, or Debian package nats-server); .ci/run runs it"]
fn sinks_nats_layout_names_the_layout_of_a_stream_the_sink_creates() {
    let nats = NatsServer::start();
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let published = |daemon: &mut NatsDaemon, sent: u64| {
        wait_until("every frame published", || {
            daemon.stat("nats_published") == sent && daemon.stat("nats_lag_frames") == 0
        });
        let records = daemon.stat("nats_record_bytes");
        assert!(records > 0 && daemon.stat("nats_body_bytes") == records);
    };
    let dir = TempDir::new("nats-layout-key");
    let keys = "layout = \"records/1\"\n";
    let mut north = NatsDaemon::start_in(&dir.0, "north", &[nats.url()], keys, "");
    let sent = north.sim(200, 1).wait();
    published(&mut north, sent);
    assert!(north.terminate().success(), "{}", north.log());
    let description = runtime.block_on(async {
        let client = async_nats::connect(nats.url()).await.expect("connect");
        let mut stream =
            (async_nats::jetstream::new(client).get_stream(STREAM).await).expect("the stream");
        stream
            .info()
            .await
            .expect("its info")
            .config
            .description
            .clone()
    });
    assert_eq!(description, Some(Layout::Records.description()));

    let other = TempDir::new("nats-layout-default");
    let mut south = NatsDaemon::start(&other.0, "south", &nats.url());
    let sent = south.sim(200, 1).wait();
    published(&mut south, sent);
    let kept = "the stream keeps its layout, not sinks.nats.layout's";
    assert!(south.log().contains(kept), "{}", south.log());
    assert!(south.terminate().success(), "{}", south.log());
}

/// A stream whose description names a layout this build does not know: the sink publishes
/// nothing into it and says why, naming the stream.
#[test]
#[ignore = "needs nats-server (tests/nats/venv.sh, or Debian package nats-server); .ci/run runs it"]
fn a_stream_of_an_unknown_layout_is_refused_by_name() {
    let nats = NatsServer::start();
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let description = "aggregator frames, layout records/9".to_string();
    runtime.block_on(create_stream_of(nats.url(), 1, Some(description)));
    let dir = TempDir::new("nats-layout");
    let mut north = NatsDaemon::start(&dir.0, "north", &nats.url());
    let sent = north.sim(50, 1).wait();
    assert!(sent > 0);
    let refusal = [
        "stream TELEMETRY has layout",
        "records/9",
        "which this build does not publish",
    ];
    wait_until("the refusal logged", || {
        let log = north.log();
        refusal.iter().all(|needle| log.contains(needle))
    });
    assert_eq!(north.stat("nats_published"), 0);
    assert_eq!(north.get("/healthz").0, 503, "{}", north.log());
    assert!(north.terminate().success(), "{}", north.log());
    let messages = runtime.block_on(stream_messages(nats.url(), None));
    assert!(messages.is_empty(), "{messages:?}");
}

/// A stream of the sink's name whose subjects do not take the sink's, beside another that does:
/// JetStream stores each message in the other, and its PubAck names that one. None counts: the
/// sink says which stream took them, and is degraded.
#[test]
#[ignore = "needs nats-server (tests/nats/venv.sh, or Debian package nats-server); .ci/run runs it"]
fn a_puback_of_another_stream_counts_for_nothing() {
    let nats = NatsServer::start();
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(async {
        let client = async_nats::connect(nats.url()).await.expect("connect");
        let context = async_nats::jetstream::new(client);
        for (name, subjects) in [("TELEMETRY", "elsewhere.>"), ("OTHER", "telemetry.>")] {
            let config = async_nats::jetstream::stream::Config {
                name: name.to_string(),
                description: Some(Layout::Records.description()),
                subjects: vec![subjects.to_string()],
                ..Default::default()
            };
            context
                .create_stream(config)
                .await
                .expect("create the stream");
        }
    });
    let dir = TempDir::new("nats-other-stream");
    let mut north = NatsDaemon::start(&dir.0, "north", &nats.url());
    assert!(north.sim(50, 1).wait() > 0);
    let refusal = "a PubAck from stream OTHER, not TELEMETRY";
    wait_until("the refusal logged", || north.log().contains(refusal));
    assert_eq!(north.stat("nats_published"), 0);
    assert_eq!(north.get("/healthz").0, 503, "{}", north.log());
    assert!(north.terminate().success(), "{}", north.log());
}

/// Layout `records/2` needs no duplicate window: a sink that lost its cursor (deleted here, as a
/// restore from an old backup would) publishes the whole archive again, and the stream still holds
/// each frame once, with the sink counting every frame as held already. Its stream's duplicate
/// window is 1 s, long past when the copies come.
#[test]
#[ignore = "needs nats-server (tests/nats/venv.sh, or Debian package nats-server); .ci/run runs it"]
fn a_sink_that_lost_its_cursor_publishes_nothing_twice() {
    let nats = NatsServer::start();
    let dir = TempDir::new("lost-cursor");
    let urls = [nats.url()];
    let mut north = NatsDaemon::start_in(&dir.0, "north", &urls, "duplicate_window_s = 1", "");
    let sent = north.sim(500, 1).wait();
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(stream_contents(&nats.url(), Some(sent)));
    assert!(north.terminate().success(), "{}", north.log());
    let sinks = north.archive.join("sinks");
    for entry in std::fs::read_dir(&sinks).expect("the sinks' directory") {
        let path = entry.expect("an entry").path();
        if path.extension().is_some_and(|e| e == "cursor") {
            std::fs::remove_file(&path).expect("delete the cursor");
        }
    }
    // Past the duplicate window: a copy with a message id would be stored again now.
    thread::sleep(Duration::from_millis(1_500));
    north.restart();
    wait_until("every frame found held already", || {
        north.stat("nats_republished") >= sent
    });
    assert_eq!(north.stat("nats_published"), 0, "{}", north.log());
    assert!(north.terminate().success(), "{}", north.log());
    let contents = runtime.block_on(stream_contents(&nats.url(), Some(sent)));
    assert_eq!(
        contents.get("north").map(|frames| frames.len() as u64),
        Some(sent)
    );
    assert!(contents["north"].values().all(|copies| *copies == 1));
}

/// A second writer of a series (another daemon of the fleet publishing the same source, as in a
/// failover's first moments): JetStream refuses the sink's next message of the source, its
/// expected last subject sequence being stale; the sink reads the subject's last message again,
/// leaves out the frames it says the stream holds (`nats_held_elsewhere`), and publishes the rest:
/// every sequence once.
#[test]
#[ignore = "needs nats-server (tests/nats/venv.sh, or Debian package nats-server); .ci/run runs it"]
fn a_second_writer_of_a_series_is_refused_then_respected() {
    let nats = NatsServer::start();
    let dir = TempDir::new("second-writer");
    let fleet = "identity = \"fleet\"\nsubject = \"telemetry.{kind}.{source}\"";
    let mut north = NatsDaemon::start_in(&dir.0, "north", &[nats.url()], fleet, "");
    let addr: SocketAddr = north.uplink_addr().parse().expect("an address");
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let mut source = runtime.block_on(Client::source(addr, SourceKind::LiveUplink, 9));
    runtime.block_on(source.send_routine(0..100));
    runtime.block_on(stream_messages(nats.url(), Some(100)));
    runtime.block_on(publish_as_south(&nats.url(), 100..110));
    runtime.block_on(source.send_routine(100..200));

    let messages = runtime.block_on(stream_messages(nats.url(), Some(200)));
    let mut sequences: Vec<u64> = messages.iter().map(|m| m.frame_sequence()).collect();
    sequences.sort_unstable();
    assert_eq!(
        sequences,
        (0..200).collect::<Vec<_>>(),
        "every sequence once"
    );
    let south: Vec<&str> = (messages.iter())
        .filter_map(|m| m.site.as_deref())
        .filter(|site| *site == "south")
        .collect();
    assert_eq!(south.len(), 10);
    wait_until("the frames south published counted", || {
        north.stat("nats_held_elsewhere") == 10
    });
    assert!(north.stat("nats_errors") >= 1, "the refusal is counted");
    assert!(north.terminate().success(), "{}", north.log());
}

/// Publishes, as daemon `south` would, a `records/2` message of source live:9's frames
/// `sequences` after the subject's last message.
async fn publish_as_south(url: &str, sequences: std::ops::Range<u64>) {
    let through = (sequences.end - 1).to_string();
    let marks = [("Aggregator-Routine-Through", through)];
    publish_as(url, "south", ("telemetry.live.9", 9), sequences, &marks).await;
}

/// The read-back check of a stream of `layout`: created by the sink (`records/2`), or before it
/// started as an earlier build made it (`records/1`; `frame/1`, without a layout). NATS is away
/// while the simulator sends, so that the sink has a backlog to publish: several frames a
/// message in `records/1` and `records/2`.
fn read_back(layout: Layout) {
    let mut nats = NatsServer::start();
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    if layout != Layout::NEW {
        let description = (layout != Layout::Frame).then(|| layout.description());
        runtime.block_on(create_stream_of(nats.url(), 1, description));
    }
    let dir = TempDir::new("nats-read");
    let mut north = NatsDaemon::start(&dir.0, "north", &nats.url());
    wait_until("the sink connected", || north.stat("nats_connected") == 1);
    nats.stop();
    let sent = north.sim(200, 1).wait();
    nats.restart();
    let messages = runtime.block_on(stream_messages(&nats.url(), Some(sent)));
    let last = messages.last().map(|m| m.stream_sequence);
    match layout {
        Layout::Frame => assert_eq!(last, Some(sent), "a message per frame"),
        _ => assert!(last < Some(sent / 2), "{last:?} messages for {sent} frames"),
    }
    let (records, bodies) = (
        north.stat("nats_record_bytes"),
        north.stat("nats_body_bytes"),
    );
    match layout {
        Layout::Compressed => assert!(bodies * 4 < records, "{bodies} of {records} bytes"),
        Layout::Records => assert!(records > 0 && bodies == records, "{bodies} of {records}"),
        Layout::Frame => assert_eq!((bodies, records), (0, 0), "frame/1 has no records"),
    }
    assert!(north.terminate().success(), "{}", north.log());

    let path = north.archive.to_str().unwrap();
    let export = ["archive", "export", path, "--format", "ndjson", "-o", "-"];
    let (status, exported) = aggregator(&export);
    assert_eq!(status, Some(0));
    let mut archived: Vec<serde_json::Value> = exported
        .iter()
        .map(|row| {
            let mut row = row.clone();
            let object = row.as_object_mut().unwrap();
            object.remove("shard");
            object.remove("position");
            object.insert("site".into(), "north".into());
            row
        })
        .collect();
    let config = &reader_config(&dir.0, &nats.url());
    let (status, read) = aggregator(&["nats", "read", "--config", config]);
    assert_eq!(status, Some(0));
    let stream_sequences: Vec<u64> = read
        .iter()
        .map(|r| r["stream_sequence"].as_u64().unwrap())
        .collect();
    assert!(
        stream_sequences.windows(2).all(|w| w[0] <= w[1]),
        "the stream, in its order"
    );
    let mut frames: Vec<serde_json::Value> = read
        .iter()
        .map(|row| {
            let mut row = row.clone();
            row.as_object_mut().unwrap().remove("stream_sequence");
            row
        })
        .collect();
    let key = |r: &serde_json::Value| {
        (
            r["kind"].to_string(),
            r["source"].as_u64(),
            r["sequence"].as_u64(),
        )
    };
    archived.sort_by_key(key);
    frames.sort_by_key(key);
    assert_eq!(frames.len() as u64, sent);
    assert!(frames == archived, "the stream's frames are the archive's");

    let one = [
        "nats",
        "read",
        "--config",
        config,
        "--source",
        "live:3",
        "--priority",
        "routine",
    ];
    let (status, of_one) = aggregator(&one);
    assert_eq!(status, Some(0));
    let wanted: Vec<&serde_json::Value> = read
        .iter()
        .filter(|r| r["kind"] == "live" && r["source"] == 3 && r["priority"] == "routine")
        .collect();
    assert!(!wanted.is_empty());
    assert_eq!(of_one.iter().collect::<Vec<_>>(), wanted);
    let (status, limited) = aggregator(&["nats", "read", "--config", config, "--limit", "5"]);
    assert_eq!((status, &limited[..]), (Some(0), &read[..5]));

    let lines: Vec<String> = read.iter().map(|r| r.to_string()).collect();
    assert_eq!(python_reads(&nats.url()), lines);
}

/// A config in `dir` whose `[sinks.nats]` reads the stream on the server at `url`: its path.
fn reader_config(dir: &Path, url: &str) -> String {
    let config = dir.join("reader.toml");
    let toml = format!("[sinks.nats]\nurl = \"{url}\"\nsite = \"reader\"\n");
    std::fs::write(&config, toml).expect("write the reader's config");
    config.to_str().expect("a UTF-8 path").to_string()
}

/// The lines docs/examples/read_stream.py prints of the stream on the server at `url`.
fn python_reads(url: &str) -> Vec<String> {
    let python =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/nats-venv/bin/python");
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/examples/read_stream.py");
    let out = std::process::Command::new(python)
        .arg(script)
        .args([url, STREAM, "telemetry.>"])
        .output()
        .expect("run docs/examples/read_stream.py (tests/nats/venv.sh)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout.lines().map(str::to_string).collect()
}

/// A link's frames published in layout `records/2` (RECEIVED FRAMES records) read back with
/// their reception, alike by `aggregator nats read`, docs/examples/read_stream.py and the archive's
/// export: the link, station, mode, earth time, and AX.25 addresses whose callsigns hold bytes
/// shown as `\xNN` (a `-` and a space inside one).
#[test]
#[ignore = "needs nats-server and nats-py (tests/nats/venv.sh); .ci/run runs it"]
fn a_links_reception_reads_back_alike_in_every_reader() {
    let nats = NatsServer::start();
    let tnc = std::net::TcpListener::bind("127.0.0.1:0").expect("a TNC's port");
    let link = format!(
        "[[links]]\nname = \"uhf\"\nstation = \"Svalbard, SG-1\"\ntransport = \"tcp-connect\"\n\
         address = \"{}\"\nframing = \"kiss\"\nkiss_payload = \"ax25\"\nkiss_port = 0\n\
         source_id = 500\nplayback = true\n",
        tnc.local_addr().expect("its address")
    );
    let dir = TempDir::new("nats-reception");
    let mut north = NatsDaemon::start_in(&dir.0, "north", &[nats.url()], "", &link);
    let (accepted, station) = std::sync::mpsc::channel();
    thread::spawn(move || accepted.send(tnc.accept()));
    let (mut station, _) = station
        .recv_timeout(PATIENCE)
        .expect("the link connects")
        .unwrap();
    let mut wire = Vec::new();
    common::kiss_time_frame(0, &1_700_000_000_123u64.to_be_bytes(), &mut wire);
    for i in 0..3u8 {
        let call = |text: &str| text.parse().expect("a callsign");
        let mut frame = Vec::new();
        let packet = common::packet(u16::from(i));
        aggregator::protocol::ax25::encode(call("CQ"), call("ABXCYD-1"), &[], &packet, &mut frame);
        // The source's callsign "AB-C D" (each byte shifted left, as AX.25 sends it).
        (frame[9], frame[11]) = (b'-' << 1, b' ' << 1);
        aggregator::protocol::kiss::encode(0, &frame, &mut wire);
    }
    std::io::Write::write_all(&mut station, &wire).expect("the TNC's frames");
    wait_until("3 packets published", || {
        north.stat("nats_published") == 3 && north.stat("nats_lag_frames") == 0
    });
    assert!(north.terminate().success(), "{}", north.log());

    let config = reader_config(&dir.0, &nats.url());
    let (status, read) = aggregator(&["nats", "read", "--config", &config]);
    assert_eq!(status, Some(0));
    let shown: Vec<_> = read
        .iter()
        .map(|r| (&r["ax25_from"], &r["earth_received"]))
        .collect();
    let (from, earth) = (
        &"AB\\x2DC\\x20D-1".into(),
        &"2023-11-14T22:13:20.123000000Z".into(),
    );
    assert_eq!(
        shown,
        [
            (from, earth),
            (from, &serde_json::Value::Null),
            (from, &serde_json::Value::Null)
        ]
    );
    let lines: Vec<String> = read.iter().map(|r| r.to_string()).collect();
    assert_eq!(python_reads(&nats.url()), lines);
    let path = north.archive.to_str().unwrap();
    let (status, exported) =
        aggregator(&["archive", "export", path, "--format", "ndjson", "-o", "-"]);
    assert_eq!(status, Some(0));
    let keys = [
        "ax25_from",
        "ax25_to",
        "earth_received",
        "link",
        "station",
        "mode",
        "payload",
    ];
    let of = |rows: &[serde_json::Value]| -> Vec<Vec<serde_json::Value>> {
        rows.iter()
            .map(|r| keys.iter().map(|k| r[*k].clone()).collect())
            .collect()
    };
    assert_eq!(of(&read), of(&exported));
}

/// Runs `aggregator ARGS`: its exit status and its standard output's JSON lines.
fn aggregator(args: &[&str]) -> (Option<i32>, Vec<serde_json::Value>) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_aggregator"))
        .args(args)
        .output()
        .expect("run aggregator");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines = stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    eprintln!(
        "aggregator {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), lines)
}

/// docs/examples/read_stream.py takes a compressed body only as one whole zstd frame with
/// nothing after it, as `aggregator nats read` does: not an empty frame with another behind it,
/// nor a frame with bytes after it.
#[test]
#[ignore = "needs nats-py and zstandard (tests/nats/venv.sh); .ci/run runs it"]
fn the_python_example_takes_one_zstd_frame_and_nothing_after_it() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let check = r#"
import sys, types, zstandard
sys.path.insert(0, sys.argv[1])
import read_stream
frame = lambda data: zstandard.ZstdCompressor(write_content_size=True).compress(data)
def read(body):
    msg = types.SimpleNamespace(data=body, headers={
        "Aggregator-Layout": "records/2", "Aggregator-Compression": "zstd",
        "Aggregator-Frames": "0"})
    try:
        return read_stream.frames(msg)
    except ValueError as why:
        return str(why)
print(read(frame(b"")))
print(read(frame(b"") + frame(b"\x00" * 64)))
print(read(frame(b"") + b"zz"))
print(read(frame(b"")[:-1]))
"#;
    let out = std::process::Command::new(root.join("target/nats-venv/bin/python"))
        .args(["-c", check])
        .arg(root.join("docs/examples"))
        .output()
        .expect("run python (tests/nats/venv.sh)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    assert_eq!(lines[0], "[]", "{stdout}");
    for refused in &lines[1..] {
        assert!(refused.starts_with("body: "), "{stdout}");
    }
}
