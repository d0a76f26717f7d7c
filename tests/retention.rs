//! Retention (`[archive.retention]`, `aggregator archive prune`): whole sealed segments go, and
//! nothing a restart or a reader relies on goes with them.

mod common;

use std::path::Path;

use aggregator::archive::tools::{self, SourceCheck, VerifyReport};
use aggregator::protocol::ccsds::PrimaryHeader;
use aggregator::protocol::ingest::VERSION;
use aggregator::SourceKind;
use common::process::Daemon;
use common::{free_port, hello_bytes, Client, TempDir};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use SourceKind::LiveUplink;

/// The quiet source whose segments retention deletes, and the busy one that fills the archive.
const QUIET: u32 = 1;
const BUSY: u32 = 2;
/// The link's APID, and the source it maps to (`apid_base = 1000`).
const APID: u16 = 5;
const LINK_SOURCE: u32 = 1005;

/// A daemon of one shard with tiny segments and an archive bounded to 64 KiB, a link of one
/// station on `link_port`.
fn config(dir: &Path, link_port: u16) -> String {
    format!(
        "[uplink]\nlisten = \"127.0.0.1:0\"\n[replay]\nlisten = \"127.0.0.1:0\"\n\
         [monitor]\nlisten = \"127.0.0.1:0\"\n[runtime]\nshards = 1\n\
         [archive]\ndir = \"{}\"\nsegment_bytes = 4096\n\
         [archive.retention]\nmax_bytes = \"64KiB\"\ncheck_interval_ms = 20\n\
         [[links]]\nname = \"gs\"\ntransport = \"tcp-listen\"\naddress = \"127.0.0.1:{link_port}\"\n\
         framing = \"ccsds\"\napid_base = 1000\n",
        dir.join("archive").display()
    )
}

/// Connects as `live:id` and returns the client with its WELCOME's `resume_after`.
async fn hello(daemon: &Daemon, id: u32) -> (Client, Option<u64>) {
    let mut client = Client::connect(daemon.uplink).await;
    client.send_raw(&hello_bytes(VERSION, LiveUplink, id)).await;
    let resume_after = client.expect_welcome().await;
    (client, resume_after)
}

/// Sends routine `sequences` as `live:id` on a connection of its own, and returns the final ACK.
async fn send(daemon: &Daemon, id: u32, sequences: impl IntoIterator<Item = u64>) -> Option<u64> {
    let (mut client, _) = hello(daemon, id).await;
    client.send_routine(sequences).await;
    client.finish_sending().await;
    client.read_to_close().await.final_ack
}

/// A station's packets of [`APID`] with `counts`, sent on a connection to the link, closed once
/// the daemon has read them (it closes nothing: the station closes after the daemon's stats say).
async fn station(port: u16, counts: impl IntoIterator<Item = u16>) -> TcpStream {
    let wire: Vec<u8> = counts
        .into_iter()
        .flat_map(|count| {
            let data = format!("count {count:05}").into_bytes();
            let mut packet = PrimaryHeader::telemetry(APID, count, data.len())
                .encode()
                .to_vec();
            packet.extend_from_slice(&data);
            packet
        })
        .collect();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    stream.write_all(&wire).await.unwrap();
    stream
}

fn source(report: &VerifyReport, id: u32) -> Option<&SourceCheck> {
    report
        .sources
        .iter()
        .find(|s| s.kind == LiveUplink && s.id == id)
}

/// Frames the archive holds of `live:id`, and those retention recorded deleted. Read while the
/// daemon runs: a segment retention deletes between the listing and its reading fails the read,
/// which is made again.
fn held_and_pruned(archive: &Path, id: u32) -> (u64, u64) {
    for _ in 0..100 {
        if let Ok(report) = tools::verify(archive) {
            return source(&report, id).map_or((0, 0), |s| (s.frames, s.pruned));
        }
    }
    panic!("verify never read {}", archive.display());
}

/// Every segment that held a source's frames deleted by retention, then the daemon stopped
/// (`kill`: SIGKILL, else SIGTERM) and started again: the source resumes where it did, its resent
/// frames are dropped as duplicates and acknowledged, a link's extended count goes on, and nothing
/// is stored twice.
async fn resume_after_every_segment_of_a_source_is_deleted(kill: bool) {
    let dir = TempDir::new(if kill {
        "retention-kill"
    } else {
        "retention-term"
    });
    let archive = dir.0.join("archive");
    let link_port = free_port();
    let text = config(&dir.0, link_port);
    let mut daemon = Daemon::start_in(&dir.0, &text);

    assert_eq!(send(&daemon, QUIET, 0..100).await, Some(99));
    // The station's counts wrap during the first run: the link's sequence is the extended count.
    let link = station(link_port, (16_300..16_384).chain(0..100)).await;
    let mut busy = 0;
    while held_and_pruned(&archive, LINK_SOURCE).1 < 184 || held_and_pruned(&archive, QUIET).1 < 100
    {
        assert!(
            busy < 200_000,
            "retention never deleted the quiet sources' segments"
        );
        assert_eq!(
            send(&daemon, BUSY, busy..busy + 500).await,
            Some(busy + 499)
        );
        busy += 500;
    }
    drop(link);
    assert_eq!(
        held_and_pruned(&archive, QUIET),
        (0, 100),
        "every segment of it is gone"
    );
    assert_eq!(held_and_pruned(&archive, LINK_SOURCE), (0, 184));

    match kill {
        true => daemon.signal(libc::SIGKILL),
        false => daemon.signal(libc::SIGTERM),
    }
    daemon.wait_exit(common::PATIENCE);
    let daemon = Daemon::start_in(&dir.0, &text);

    let (mut quiet, resume_after) = hello(&daemon, QUIET).await;
    assert_eq!(resume_after, Some(99), "the same resume point as before");
    quiet.send_routine(90..110).await;
    quiet.finish_sending().await;
    assert_eq!(
        quiet.read_to_close().await.final_ack,
        Some(109),
        "resent frames acknowledged"
    );
    // 90..=99 again (copies), then 100..=109: the extended count goes on from 32,867 (a new
    // source's first packet is read one cycle up, at 16,384 + 16,300).
    let link = station(link_port, 90..110).await;
    common::wait_until("the station's new packets", common::PATIENCE, || {
        held_and_pruned(&archive, LINK_SOURCE).0 == 10
    })
    .await;
    drop(link);
    let mut daemon = daemon;
    daemon.signal(libc::SIGTERM);
    let (status, _) = daemon.wait_exit(common::PATIENCE);
    assert!(status.success(), "{status}");

    let report = tools::verify(&archive).unwrap();
    assert!(
        report.is_valid() && report.is_exactly_once(),
        "verify --strict fails"
    );
    let quiet = source(&report, QUIET).unwrap();
    assert_eq!(
        (quiet.frames, quiet.first, quiet.last),
        (10, Some(100), Some(109))
    );
    assert_eq!(
        (quiet.pruned, quiet.duplicate_frames),
        (100, 0),
        "nothing stored twice"
    );
    let link = source(&report, LINK_SOURCE).unwrap();
    assert_eq!(
        (link.frames, link.first, link.last),
        (10, Some(32_868), Some(32_877))
    );
    assert_eq!(link.duplicate_frames, 0);
}

#[tokio::test]
async fn resume_points_survive_retention_and_a_clean_stop() {
    resume_after_every_segment_of_a_source_is_deleted(false).await;
}

#[tokio::test]
async fn resume_points_survive_retention_and_a_sigkill() {
    resume_after_every_segment_of_a_source_is_deleted(true).await;
}

/// Runs `aggregator archive prune` with `args`; its exit status, standard output and error.
fn prune(args: &[&str]) -> (Option<i32>, String, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_aggregator"))
        .args(["archive", "prune"])
        .args(args)
        .output()
        .expect("run aggregator archive prune");
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (
        output.status.code(),
        text(&output.stdout),
        text(&output.stderr),
    )
}

/// The `prune total:` line's `key=value`.
fn total(stdout: &str, key: &str) -> u64 {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("prune total:"))
        .expect("a total line");
    let value = line
        .split(' ')
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")));
    value
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {line}"))
}

/// An archive of one shard and 4 KiB segments, written by an in-process daemon: two sources'
/// frames over many segments.
async fn small_archive(dir: &Path) -> aggregator::Config {
    let mut config = common::archive_config(dir);
    config.archive.segment_bytes = 4096;
    let archive = aggregator::archive::write::open(&config.archive, 1).expect("open the archive");
    let build = |config| aggregator::Daemon::new(config, archive);
    let (daemon, ()) = common::TestDaemon::start_built(config.clone(), build, |_| ()).await;
    // A connection a round: each round's frames are a group of their own, a fraction of a
    // segment.
    for first in (0..1000).step_by(50) {
        for id in [QUIET, BUSY] {
            let mut client = Client::source(daemon.uplink, LiveUplink, id).await;
            client.send_routine(first..first + 50).await;
            client.finish_sending().await;
            assert_eq!(client.read_to_close().await.final_ack, Some(first + 49));
        }
    }
    assert!(daemon.shutdown().await.is_clean());
    config
}

/// `prune --dry-run` lists what it would delete and deletes nothing; `prune` then deletes exactly
/// that, oldest first, never the newest segment, and `verify` counts those frames deleted, not
/// missing; what each source keeps is what `verify` finds.
#[tokio::test]
async fn prune_deletes_what_its_dry_run_listed_and_verify_agrees() {
    let dir = TempDir::new("prune");
    let archive = dir.0.join("archive");
    small_archive(&archive).await;
    let segments = || aggregator::archive::format::list_segments(&archive).unwrap();
    let before = segments();
    assert!(before.len() > 4, "{} segments", before.len());
    let path = archive.to_str().unwrap();

    let (status, dry, stderr) = prune(&[path, "--keep-bytes", "20KiB", "--dry-run"]);
    assert_eq!(status, Some(0), "{stderr}");
    let listed: Vec<&str> = dry
        .lines()
        .filter(|l| l.starts_with("would delete"))
        .collect();
    assert!(!listed.is_empty(), "{dry}");
    assert_eq!(segments(), before, "a dry run deletes nothing");
    assert!(dry.contains("dry_run=true"), "{dry}");

    let (status, done, stderr) = prune(&[path, "--keep-bytes", "20KiB"]);
    assert_eq!(status, Some(0), "{stderr}");
    let deleted: Vec<String> = done
        .lines()
        .filter_map(|l| l.strip_prefix("deleted "))
        .map(str::to_owned)
        .collect();
    let would: Vec<String> = listed
        .iter()
        .map(|l| l["would delete ".len()..].to_owned())
        .collect();
    assert_eq!(deleted, would, "what the dry run listed, in its order");
    let left = segments();
    assert_eq!(left.len(), before.len() - deleted.len());
    assert_eq!(left, before[deleted.len()..], "the oldest went");
    assert!(total(&done, "bytes_after") <= 20 << 10, "{done}");

    let report = tools::verify(&archive).unwrap();
    assert!(
        report.is_valid() && report.is_exactly_once(),
        "verify --strict passes"
    );
    for id in [QUIET, BUSY] {
        let check = source(&report, id).unwrap();
        assert_eq!(check.frames + check.pruned, 1000, "{check:?}");
        assert_eq!(check.last, Some(999));
        let keeps = format!(
            "source live {id}: keeps frames={} first={}",
            check.frames,
            check.first.unwrap()
        );
        assert!(done.contains(&keeps), "{keeps:?} in {done}");
    }

    // Nothing is older than a day: --keep-age deletes nothing; --before a time to come deletes
    // every segment but the newest.
    let (_, none, _) = prune(&[path, "--keep-age", "1d"]);
    assert_eq!(total(&none, "deleted_segments"), 0, "{none}");
    let (status, none, err) = prune(&[path, "--before", "-1d"]);
    assert_eq!(status, Some(0), "a time ago, as documented: {err}");
    assert_eq!(total(&none, "deleted_segments"), 0, "{none}");
    let (_, all, _) = prune(&[path, "--before", "2100-01-01T00:00:00Z"]);
    assert_eq!(segments(), before[before.len() - 1..], "{all}");
}

/// `prune` takes every shard's lock: beside a running daemon it refuses (status 2), dry run or
/// not, and says why; a bad limit is refused the same way.
#[tokio::test]
async fn prune_refuses_a_running_daemons_archive_and_bad_limits() {
    let dir = TempDir::new("prune-lock");
    let archive = dir.0.join("archive");
    let config = small_archive(&archive).await;
    let opened = aggregator::archive::write::open(&config.archive, 1).expect("open the archive");
    let build = |config| aggregator::Daemon::new(config, opened);
    let (daemon, ()) = common::TestDaemon::start_built(config, build, |_| ()).await;
    let path = archive.to_str().unwrap();
    for dry in [true, false] {
        let mut args = vec![path, "--keep-bytes", "1"];
        if dry {
            args.push("--dry-run");
        }
        let (status, _, stderr) = prune(&args);
        assert_eq!(status, Some(2), "{stderr}");
        assert!(
            stderr.contains("in use by another aggregator process"),
            "{stderr}"
        );
    }
    assert!(daemon.shutdown().await.is_clean());
    for (args, needle) in [
        (
            vec![path, "--before", "yesterday"],
            "--before: \"yesterday\" is not a time",
        ),
        (vec![path, "--keep-bytes", "lots"], "is not a size"),
        (vec![path], "--before"),
        (
            vec![path, "--keep-age", "1d", "--keep-bytes", "1"],
            "cannot be used with",
        ),
    ] {
        let (status, _, stderr) = prune(&args);
        assert_eq!(status, Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{needle:?} in {stderr}");
    }
}

/// A 512 MiB tmpfs, an archive of two shards bounded to 256 MiB (and 64 MiB free), and the
/// simulator saturating it with 1 KiB frames until more than ten times the file system went
/// through: the daemon never finds its disk full, acknowledgements never stop for longer than a
/// sync interval and a deletion (and what the scheduler of a loaded machine adds), and what remains
/// is every source's frames from some point on, each once: with what retention recorded deleted,
/// exactly what the source sent.
#[tokio::test]
#[ignore = "needs root (mounts a 512 MiB tmpfs); .ci/run runs it"]
async fn a_saturated_archive_stays_within_a_small_disk_and_never_stops() {
    const DISK: u64 = 512 << 20;
    const FRAMES: u64 = 110_000;
    let disk = common::Tmpfs::mount("aggregator-retention", "512m");
    let archive = disk.dir.join("archive");
    let text = format!(
        "[uplink]\nlisten = \"127.0.0.1:0\"\n[replay]\nlisten = \"127.0.0.1:0\"\n\
         [monitor]\nlisten = \"127.0.0.1:0\"\n[runtime]\nshards = 2\n\
         [archive]\ndir = \"{}\"\nsegment_bytes = 8388608\n\
         [archive.retention]\nmax_bytes = \"256MiB\"\nmin_free_bytes = \"64MiB\"\n",
        archive.display()
    );
    let mut daemon = Daemon::start_in(&disk.dir, &text);
    let sim = std::process::Command::new(env!("CARGO_BIN_EXE_uplink-sim"))
        .args([
            "--uplink",
            &daemon.uplink.to_string(),
            "--replay",
            &daemon.replay.to_string(),
        ])
        .args([
            "--scenario",
            "saturate",
            "--payload",
            "1024",
            "--frames",
            &FRAMES.to_string(),
        ])
        .args(["--require-all-acked", "--progress", "off"])
        .env_remove("RUST_LOG")
        .output()
        .expect("run uplink-sim");
    let stdout = String::from_utf8_lossy(&sim.stdout);
    assert!(
        sim.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&sim.stderr)
    );
    let total = stdout
        .lines()
        .find(|l| l.starts_with("sim total:"))
        .expect("a total");
    let field = |key: &str| -> f64 {
        let value = total
            .split(' ')
            .find_map(|kv| kv.strip_prefix(&format!("{key}=")));
        value
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {key} in {total}"))
    };
    assert_eq!(field("acked") as u64, 50 * FRAMES, "{total}");

    let stats = common::http_get_json(daemon.monitor, "/stats").await;
    let counter = |name: &str| stats["stats"][name].as_u64().unwrap();
    assert!(counter("bytes_archived") > 10 * DISK, "{}", stats["stats"]);
    assert_eq!(counter("archive_errors"), 0, "the disk was never full");
    assert!(counter("retention_deleted_segments") > 0);
    assert_eq!(
        stats["archive"]["retention"]["short"], false,
        "{}",
        stats["archive"]
    );
    daemon.signal(libc::SIGTERM);
    let (status, _) = daemon.wait_exit(common::PATIENCE);
    assert!(status.success(), "{status}");
    assert!(
        daemon.logged(&["archive write failed"]).is_none(),
        "the daemon reported its disk full"
    );

    // The longest stop of the acknowledgements: a sync interval (20 ms), the longest deletion,
    // and a second for the scheduler of a machine whose two cores the debug builds of the
    // simulator and the daemon share (the same run without retention on a larger tmpfs stopped
    // for up to 642 ms): a full disk would stop them until space returned.
    let deletions = daemon.log.lock().unwrap().clone();
    let longest_deletion_ms = deletions
        .iter()
        .filter(|l| l.contains("deleted the oldest sealed segments"))
        .map(|l| common::process::json_u64(l, "took_us") as f64 / 1000.0)
        .fold(0.0, f64::max);
    let gap = field("ack_gap_ms_max");
    eprintln!(
        "longest stop of the acknowledgements {gap} ms, longest deletion {longest_deletion_ms} ms"
    );
    assert!(
        gap <= 20.0 + longest_deletion_ms + 1000.0,
        "{total}; longest deletion {longest_deletion_ms} ms"
    );

    let report = tools::verify(&archive).unwrap();
    assert!(
        report.is_valid() && report.is_exactly_once(),
        "verify --strict fails"
    );
    assert_eq!(report.sources.len(), 50);
    for check in &report.sources {
        // A source that finished early may have had every segment of its frames deleted.
        if check.frames > 0 {
            assert_eq!(
                check.last,
                Some(FRAMES - 1),
                "its newest frames stay: {check:?}"
            );
        }
        assert_eq!(
            check.frames + check.pruned,
            FRAMES,
            "sent: kept or deleted, once: {check:?}"
        );
        assert_eq!(check.duplicate_frames, 0, "{check:?}");
    }
}

/// A daemon of one shard with 256 KiB segments and an archive bounded to 2 MiB, serving
/// followers, on an archive in `dir`.
async fn bounded_with_followers(dir: &Path) -> (common::TestDaemon, std::net::SocketAddr) {
    let mut config = common::archive_config(dir);
    config.archive.segment_bytes = 256 << 10;
    config.archive.retention.max_bytes = Some(2 << 20);
    config.archive.retention.check_interval = std::time::Duration::from_millis(20);
    let daemon = common::TestDaemon::open(common::with_followers(config)).await;
    let addr = daemon.follow();
    (daemon, addr)
}

/// Frames of 1 KiB per source, 20 MB in all: ten times the archive's bound, and more than a
/// follower's socket buffers hold.
const BULK: u64 = 10_000;

/// The source of the last frame sent, after the bulk: the newest, which retention never deletes.
const MARKER: u32 = 3;

/// Sends [`BULK`] routine frames of 1 KiB as each of [`QUIET`] and [`BUSY`], every tenth an
/// emergency, then one frame of [`MARKER`], and waits for every acknowledgement.
async fn send_bulk(daemon: &common::TestDaemon) {
    for id in [QUIET, BUSY] {
        let mut client = Client::source(daemon.uplink, LiveUplink, id).await;
        for chunk in (0..BULK).collect::<Vec<_>>().chunks(500) {
            let mut bytes = bytes::BytesMut::new();
            for &sequence in chunk {
                let priority = match sequence % 10 {
                    0 => aggregator::Priority::Emergency,
                    _ => aggregator::Priority::Routine,
                };
                let payload = [sequence as u8; 1024];
                aggregator::protocol::ingest::encode_data(&mut bytes, priority, sequence, &payload);
            }
            client.send_raw(&bytes).await;
        }
        client.finish_sending().await;
        assert_eq!(client.read_to_close().await.final_ack, Some(BULK - 1));
    }
    let mut marker = Client::source(daemon.uplink, LiveUplink, MARKER).await;
    marker.send_routine([0]).await;
    marker.finish_sending().await;
    assert_eq!(marker.read_to_close().await.final_ack, Some(0));
}

/// What a follower read: each source's sequences received and the frames it was told it skipped.
#[derive(Default)]
struct Followed {
    received: std::collections::BTreeMap<u32, Vec<u64>>,
    skipped: std::collections::BTreeMap<u32, u64>,
    notices: usize,
}

impl Followed {
    /// Reads until it has seen the [`MARKER`] (or the END it is given).
    async fn read(
        follower: &mut aggregator::follow::client::Follower,
    ) -> (Followed, Option<String>) {
        use aggregator::follow::client::Event;
        let mut followed = Followed::default();
        while !followed.received.contains_key(&MARKER) {
            let event = tokio::time::timeout(common::PATIENCE, follower.next_event()).await;
            match event.expect("the follower hears in time") {
                Ok(Some(Event::Frame(frame))) => {
                    let id = frame.frame.source_id;
                    followed
                        .received
                        .entry(id)
                        .or_default()
                        .push(frame.frame.sequence);
                }
                Ok(Some(Event::Skipped(skipped))) => {
                    followed.notices += 1;
                    for ((_, id), frames) in skipped.sources {
                        *followed.skipped.entry(id).or_default() += frames;
                    }
                }
                Ok(Some(Event::Catalog(_) | Event::Earliest(_))) => {}
                Ok(None) => return (followed, Some("END(Shutdown)".into())),
                Err(err) => return (followed, Some(err.to_string())),
            }
        }
        (followed, None)
    }
}

/// A follower that asked to go on past deleted segments, and fell behind retention: it is told,
/// per source, how many frames it skipped, and goes on at the oldest frame left. What it received
/// and what it was told it skipped are every frame each source sent, once.
#[tokio::test]
async fn a_follower_that_asked_goes_on_past_deleted_segments_and_is_told_what_it_skipped() {
    use aggregator::archive::read::Start;
    use aggregator::follow::client::Follower;
    use aggregator::follow::protocol::Subscription;
    let dir = TempDir::new("retention-follower");
    let (daemon, follow) = bounded_with_followers(&dir.0).await;
    let subscription = Subscription::new(Start::Oldest, Vec::new(), None).going_on_past_gaps();
    let mut follower = Follower::subscribe(follow, &subscription, None)
        .await
        .unwrap();
    // It reads nothing while the sources send: it falls behind by all but its socket buffers.
    send_bulk(&daemon).await;
    let (followed, ended) = Followed::read(&mut follower).await;
    assert_eq!(ended, None, "it read on to each source's last frame");
    assert!(
        followed.notices > 0,
        "retention deleted what it had not read"
    );
    for id in [QUIET, BUSY] {
        let mut received = followed.received.get(&id).cloned().unwrap_or_default();
        let skipped = followed.skipped.get(&id).copied().unwrap_or(0);
        let count = received.len() as u64;
        received.sort_unstable();
        received.dedup();
        assert_eq!(received.len() as u64, count, "live:{id}: nothing twice");
        assert_eq!(
            count + skipped,
            BULK,
            "live:{id}: received {count}, told skipped {skipped}"
        );
    }
    assert!(daemon.shutdown().await.is_clean());
}

/// By default a follower whose next segment was deleted is ended with SegmentDeleted, and a
/// subscription after a position retention deleted is refused with it; one that asks to go on
/// starts at the oldest frame left, told of what it skipped.
#[tokio::test]
async fn by_default_a_follower_is_ended_and_a_deleted_position_refused() {
    use aggregator::archive::read::Start;
    use aggregator::domain::position::{Position, Positions, ShardPosition};
    use aggregator::follow::client::Follower;
    use aggregator::follow::protocol::Subscription;
    let dir = TempDir::new("retention-follower-end");
    let (daemon, follow) = bounded_with_followers(&dir.0).await;
    let subscription = Subscription::new(Start::Oldest, Vec::new(), None);
    let mut follower = Follower::subscribe(follow, &subscription, None)
        .await
        .unwrap();
    send_bulk(&daemon).await;
    let (followed, ended) = Followed::read(&mut follower).await;
    let ended = ended.expect("ended before the last frames");
    assert!(
        ended.contains("SegmentDeleted") && ended.contains("no longer in the archive"),
        "{ended}"
    );
    assert_eq!(followed.notices, 0);

    // The first frame's position: segment 1 is long gone.
    let mut first = Positions::new();
    let position = Position {
        segment: 1,
        offset: 8,
        index: 0,
    };
    first.set(ShardPosition { shard: 0, position });
    let after = Subscription::new(Start::After(first.clone()), Vec::new(), None);
    let refused = Follower::subscribe(follow, &after, None)
        .await
        .err()
        .expect("refused");
    assert!(refused.to_string().contains("SegmentDeleted"), "{refused}");
    let going_on = Subscription::new(Start::After(first), Vec::new(), None).going_on_past_gaps();
    let mut follower = Follower::subscribe(follow, &going_on, None).await.unwrap();
    let (followed, ended) = Followed::read(&mut follower).await;
    assert_eq!(ended, None);
    // Told before its first frame (and again if retention, still catching up, deletes on).
    assert!(followed.notices >= 1);
    for id in [QUIET, BUSY] {
        let received = followed.received.get(&id).map_or(0, Vec::len) as u64;
        let skipped = followed.skipped.get(&id).copied().unwrap_or(0);
        // What it could not know it had: every frame retention deleted of the source.
        assert_eq!(received + skipped, BULK, "live:{id}");
    }
    assert!(daemon.shutdown().await.is_clean());
}

/// What `/stats`, `/metrics` and `/healthz` say of the archive and retention: its size, segments
/// and span, what was deleted; and a `max_bytes` at its least, which the journals and index files
/// alone pass, makes `/healthz` say degraded, and why.
#[tokio::test]
async fn stats_metrics_and_health_show_the_archive_and_retention() {
    let dir = TempDir::new("retention-visible");
    // The link is not used here: port 0, so that no other process can take its port first.
    let mut daemon = Daemon::start_in(&dir.0, &config(&dir.0, 0));
    for first in (0..5000).step_by(500) {
        assert_eq!(
            send(&daemon, BUSY, first..first + 500).await,
            Some(first + 499)
        );
    }
    common::wait_until_async(
        "retention to report its deletions",
        common::PATIENCE,
        || async {
            let stats = common::http_get_json(daemon.monitor, "/stats").await;
            stats["archive"]["retention"]["deleted_segments"].as_u64() > Some(0)
                && stats["archive"]["oldest_received"].is_string()
        },
    )
    .await;
    let stats = common::http_get_json(daemon.monitor, "/stats").await;
    let archive = &stats["archive"];
    assert!(archive["bytes"].as_u64().unwrap() <= 64 << 10, "{archive}");
    assert!(archive["segments"].as_u64().unwrap() >= 2, "{archive}");
    assert!(archive["free_bytes"].as_u64().unwrap() > 0, "{archive}");
    assert!(archive["newest_received"].as_str() >= archive["oldest_received"].as_str());
    assert_eq!(archive["retention"]["short"], false);
    assert!(
        archive["retention"]["last_deletion"].is_string(),
        "{archive}"
    );
    let (status, _, metrics) = common::http_get(daemon.monitor, "/metrics").await;
    assert_eq!(status, 200);
    for family in [
        "aggregator_archive_bytes ",
        "aggregator_archive_oldest_frame_timestamp_seconds ",
        "aggregator_retention_deleted_segments_total ",
        "aggregator_retention_deleted_bytes_total ",
    ] {
        assert!(metrics.contains(family), "{family} in {metrics}");
    }
    daemon.signal(libc::SIGTERM);
    daemon.wait_exit(common::PATIENCE);

    // Two segments of a shard, the least accepted: the journals, index files and RETENTION take
    // more, and nothing left may be deleted.
    let tight = config(&dir.0, 0).replace("max_bytes = \"64KiB\"", "max_bytes = 8192");
    let daemon = Daemon::start_in(&dir.0, &tight);
    assert_eq!(send(&daemon, BUSY, 5000..5100).await, Some(5099));
    common::wait_until_async("/healthz to say degraded", common::PATIENCE, || async {
        common::http_get(daemon.monitor, "/healthz").await.0 == 503
    })
    .await;
    let (_, _, body) = common::http_get(daemon.monitor, "/healthz").await;
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["archive"]["retention_short"], true, "{health}");
    assert!(daemon
        .logged(&["archive retention cannot keep its limits"])
        .is_some());
}

/// Deletions that fail (here the state written before them cannot be: a directory holds its
/// name, as a full file system refuses it) make `/healthz` say degraded, as a limit that cannot
/// be kept does; once they can be made again, retention deletes and the daemon is healthy.
#[tokio::test]
async fn failing_deletions_say_degraded_until_they_succeed() {
    let dir = TempDir::new("retention-failing");
    let daemon = Daemon::start_in(&dir.0, &config(&dir.0, 0));
    let shard = aggregator::archive::format::shard_dir(&dir.0.join("archive"), 0);
    // After retention's start, which clears a state left half written.
    common::wait_until_async("retention to report", common::PATIENCE, || async {
        let stats = common::http_get_json(daemon.monitor, "/stats").await;
        stats["archive"]["segments"].as_u64() > Some(0)
    })
    .await;
    let blocker = shard.join("RETENTION.new");
    std::fs::create_dir(&blocker).unwrap();
    for first in (0..5000).step_by(500) {
        assert_eq!(
            send(&daemon, BUSY, first..first + 500).await,
            Some(first + 499)
        );
    }
    common::wait_until_async("/healthz to say degraded", common::PATIENCE, || async {
        common::http_get(daemon.monitor, "/healthz").await.0 == 503
    })
    .await;
    let (_, _, body) = common::http_get(daemon.monitor, "/healthz").await;
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["archive"]["retention_short"], true, "{health}");
    let cannot = ["archive retention cannot delete what its limits ask"];
    assert!(daemon.logged(&cannot).is_some());
    std::fs::remove_dir(&blocker).unwrap();
    common::wait_until_async("/healthz to say ok", common::PATIENCE, || async {
        common::http_get(daemon.monitor, "/healthz").await.0 == 200
    })
    .await;
    assert!(daemon
        .logged(&["archive retention deletes again"])
        .is_some());
}
