//! `GET /archive/frames` on a running daemon: the frames received in a window, of two shards and
//! across segment rolls, exactly as the archive's files hold them (the same rows as
//! `aggregator archive export`), the answer ending once no more can come; bad queries get 400 with
//! the reason, one query past `monitor.max_archive_queries` gets 503, and the token guards it.

mod common;

use std::net::SocketAddr;
use std::time::SystemTime;

use aggregator::config::Config;
use aggregator::domain::display::unix_ns_to_rfc3339;
use aggregator::domain::units::unix_ns;
use aggregator::{Daemon, Priority, SourceKind};
use common::{archive_config, http_get, http_get_with, serve_monitor, Client, TempDir, PATIENCE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A daemon on `config` with its archive (of `config.runtime.shards` shards) and its monitor's
/// state, not yet served.
async fn start(config: Config) -> (common::TestDaemon, aggregator::ops::monitor::MonitorState) {
    let shards = config.runtime.shards;
    let opened =
        aggregator::archive::write::open(&config.archive, shards).expect("open the archive");
    let build = |config| Daemon::new(config, opened);
    common::TestDaemon::start_built(config, build, Daemon::monitor_state).await
}

/// Sends `frames` as `kind:id` on a connection of its own, and waits until all are acknowledged.
async fn send(addr: SocketAddr, kind: SourceKind, id: u32, sequences: std::ops::Range<u64>) {
    let mut client = Client::source(addr, kind, id).await;
    let priority = |s: u64| match s % 7 {
        0 => Priority::Emergency,
        _ => Priority::Routine,
    };
    client
        .send_frames(sequences.map(|s| (priority(s), s)))
        .await;
    client.finish_sending().await;
    client.read_to_close().await;
}

/// Every frame in the archive at `root` (shards 0 and 1): (received, its NDJSON row's source,
/// sequence and position).
fn scanned(root: &std::path::Path) -> Vec<(u64, (u64, u64, String))> {
    let mut frames = Vec::new();
    for shard in 0..2 {
        let dir = aggregator::archive::format::shard_dir(root, shard);
        for (position, f) in common::stored_frames(&dir) {
            let row = (
                u64::from(f.source_id),
                f.sequence,
                format!("{shard}/{position}"),
            );
            frames.push((f.received_unix_ns, row));
        }
    }
    frames
}

fn rows(ndjson: &str) -> Vec<(u64, u64, String)> {
    let mut rows: Vec<_> = ndjson
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let position = v["position"].as_str().unwrap().to_string();
            (
                v["source"].as_u64().unwrap(),
                v["sequence"].as_u64().unwrap(),
                position,
            )
        })
        .collect();
    rows.sort();
    rows
}

/// The nice values of this process's threads named `name` (a thread that ends meanwhile is left
/// out: other tests' daemons stop beside this one).
fn threads_named(name: &str) -> Vec<i64> {
    let tasks = std::fs::read_dir("/proc/self/task").unwrap();
    let nice = |task: std::fs::DirEntry| {
        let comm = std::fs::read_to_string(task.path().join("comm")).ok()?;
        let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
        // The fields after the command's closing parenthesis start at the third; nice is the
        // nineteenth.
        let (_, fields) = stat.rsplit_once(')')?;
        let nice = fields.split_whitespace().nth(16)?.parse().ok()?;
        (comm.trim() == name).then_some(nice)
    };
    tasks.filter_map(|task| nice(task.ok()?)).collect()
}

/// A GET whose status line and head have come (the query holds its permit from then): the status,
/// and the connection, its body next.
async fn get_head(addr: SocketAddr, path: &str) -> (u16, TcpStream) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0];
        stream.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let status = String::from_utf8(head[9..12].to_vec())
        .unwrap()
        .parse()
        .unwrap();
    (status, stream)
}

/// [`get_head`], and the rest of the answer read in the background until it ends.
async fn get_started(addr: SocketAddr, path: &str) -> (u16, tokio::task::JoinHandle<String>) {
    let (status, mut stream) = get_head(addr, path).await;
    let body = tokio::spawn(async move {
        let mut body = String::new();
        stream.read_to_string(&mut body).await.unwrap();
        body
    });
    (status, body)
}

#[tokio::test]
async fn a_window_answers_exactly_the_frames_received_in_it() {
    let dir = TempDir::new("archive-query");
    let root = dir.0.join("archive");
    let mut config = archive_config(&root);
    config.runtime.shards = 2;
    config.archive.segment_bytes = 8 * 1024;
    config.monitor.max_archive_queries = 2;
    let (daemon, state) = start(config).await;
    let (monitor, stop) = serve_monitor(state).await;
    for id in 1..=4 {
        send(daemon.uplink, SourceKind::LiveUplink, id, 0..150).await;
    }
    let middle = unix_ns(SystemTime::now()).unwrap();
    for id in 1..=4 {
        send(daemon.uplink, SourceKind::LiveUplink, id, 150..300).await;
    }
    // Bad queries, at once.
    for (query, reason) in [
        ("from=noon", "from: \"noon\" is not a time"),
        ("format=parquet", "format: parquet is a file"),
        ("from=-1m&to=-2m", "from is after to"),
    ] {
        let (status, _, body) = http_get(monitor, &format!("/archive/frames?{query}")).await;
        assert_eq!(
            (status, body.starts_with(reason)),
            (400, true),
            "{query}: {body}"
        );
    }
    // Live 9 skips 50..=79: a gap that never arrived, in what completeness answers.
    send(daemon.uplink, SourceKind::LiveUplink, 9, 0..50).await;
    send(daemon.uplink, SourceKind::LiveUplink, 9, 80..120).await;
    let held = common::http_get_json(monitor, "/archive/completeness?source=live:9").await;
    let nine = &held["sources"][0];
    assert_eq!(
        nine["held"],
        serde_json::json!([[0, 49], [80, 119]]),
        "{held}"
    );
    assert_eq!(
        nine["gaps"],
        serde_json::json!([{"first": 50, "last": 79, "frames": 30, "cause": "not_received"}])
    );
    assert!(
        nine.get("timeline").is_none(),
        "a timeline only when asked: {nine}"
    );
    let (status, _, body) = http_get(monitor, "/archive/completeness?format=csv").await;
    assert_eq!(status, 400, "{body}");
    // Its timeline over the last hour, in ten buckets: every frame, and the gap, in the last.
    let path = "/archive/completeness?source=live:9&from=-1h&buckets=10";
    let timeline = common::http_get_json(monitor, path).await;
    let buckets = &timeline["sources"][0]["timeline"];
    let mut expected = vec![serde_json::json!([0, 0]); 9];
    expected.push(serde_json::json!([90, 30]));
    assert_eq!(*buckets, serde_json::json!(expected), "{timeline}");
    // Every source's timeline counts its frames, from the segments' indexes or read.
    let everyone = common::http_get_json(monitor, "/archive/completeness?from=-1h&buckets=7").await;
    for source in everyone["sources"].as_array().unwrap() {
        let buckets = source["timeline"].as_array().unwrap();
        let frames: u64 = buckets.iter().map(|b| b[0].as_u64().unwrap()).sum();
        assert_eq!(
            (buckets.len(), frames),
            (7, source["frames"].as_u64().unwrap())
        );
    }
    let (status, _, body) = http_get(monitor, "/archive/completeness?buckets=10").await;
    assert_eq!(
        (status, body.as_str()),
        (400, "buckets: needs from, the timeline's start\n")
    );
    // A window over an hour ago ends at once, empty.
    let (status, headers, body) = http_get(monitor, "/archive/frames?to=-1h").await;
    assert_eq!(status, 200, "{body}");
    assert!(headers.contains(&"content-type: application/x-ndjson".to_string()));
    assert_eq!(common::dechunked(&body), "");

    // From the middle on, and everything, to an hour from now: both are cut off when the daemon
    // stops (frames of their windows may come after a restart): what came is rows of the window,
    // each once (hyper drops what it had not yet written when a body ends in an error).
    let hour = unix_ns_to_rfc3339(unix_ns(SystemTime::now()).unwrap() + 3_600_000_000_000);
    let later = unix_ns_to_rfc3339(middle);
    let half_path = format!("/archive/frames?from={later}&to={hour}");
    let (status, second_half) = get_started(monitor, &half_path).await;
    assert_eq!(status, 200);
    let all_path = format!("/archive/frames?to={hour}&format=ndjson");
    let (status, everything) = get_started(monitor, &all_path).await;
    assert_eq!(status, 200);
    // Both hold their permits: a third is refused at once.
    let (status, _, body) = http_get(monitor, "/archive/frames?to=-1h").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("monitor.max_archive_queries = 2"), "{body}");
    // They read on the queries' thread, at the followers' lower priority (another test's
    // daemon's may have just started, not yet lowered).
    let queries = threads_named("archive-queries");
    assert!(queries.contains(&10), "{queries:?}");
    assert!(daemon.shutdown().await.is_clean());
    let all = tokio::time::timeout(PATIENCE, everything)
        .await
        .unwrap()
        .unwrap();
    let half = tokio::time::timeout(PATIENCE, second_half)
        .await
        .unwrap()
        .unwrap();
    stop.cancel();

    let frames = scanned(&root);
    assert_eq!(frames.len(), 4 * 300 + 90);
    let mut expected: Vec<_> = frames.iter().map(|(_, row)| row.clone()).collect();
    expected.sort();
    let cut_off = |body: &str, expected: &[(u64, u64, String)]| {
        let (rows_sent, whole) = common::chunks_so_far(body);
        assert!(
            !whole,
            "no last chunk: the daemon stopped before the window's end"
        );
        let got = rows(&rows_sent);
        assert!(got.windows(2).all(|w| w[0] < w[1]), "each row once");
        assert!(got.iter().all(|row| expected.contains(row)), "{got:?}");
    };
    cut_off(&all, &expected);
    let mut expected: Vec<_> = (frames.iter())
        .filter(|(received, _)| *received >= middle)
        .map(|(_, row)| row.clone())
        .collect();
    expected.sort();
    assert!(!expected.is_empty() && expected.len() < frames.len());
    cut_off(&half, &expected);
}

/// `kind` and `apid` keep the frames of that kind and those that are one space packet of that
/// APID, as `aggregator archive export --apid` does: both are the archive's one frame filter.
#[tokio::test]
async fn kind_and_apid_keep_the_frames_of_a_kind_and_an_apid() {
    let dir = TempDir::new("archive-query-apid");
    let (daemon, state) = start(archive_config(&dir.0.join("archive"))).await;
    let (monitor, stop) = serve_monitor(state).await;
    // Live 1 sends space packets of APID 5 (even sequences) and 6 (odd), replay 2 plain payloads.
    let mut packets = bytes::BytesMut::new();
    for sequence in 0..10u64 {
        let packet = [
            0,
            5 + (sequence % 2) as u8,
            0xC0,
            sequence as u8,
            0,
            0,
            0xAA,
        ];
        aggregator::protocol::ingest::encode_data(
            &mut packets,
            Priority::Routine,
            sequence,
            &packet,
        );
    }
    let mut client = Client::source(daemon.uplink, SourceKind::LiveUplink, 1).await;
    client.send_raw(&packets).await;
    client.finish_sending().await;
    client.read_to_close().await;
    send(daemon.replay, SourceKind::ArchivedReplay, 2, 0..10).await;
    let sequences = |query: &str| {
        let path = format!("/archive/frames?{query}");
        async move {
            let (status, _, body) = http_get(monitor, &path).await;
            assert_eq!(status, 200, "{path}: {body}");
            let rows = rows(&common::dechunked(&body));
            rows.into_iter()
                .map(|(source, sequence, _)| (source, sequence))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(sequences("").await.len(), 20);
    let replay: Vec<_> = (0..10).map(|sequence| (2, sequence)).collect();
    assert_eq!(sequences("kind=replay").await, replay);
    let even: Vec<_> = (0..10).step_by(2).map(|sequence| (1, sequence)).collect();
    assert_eq!(sequences("apid=5").await, even);
    assert_eq!(sequences("apid=5&kind=replay").await, []);
    stop.cancel();
    assert!(daemon.shutdown().await.is_clean());
}

/// Without `to`, the answer's `to` is the reading of the archive clock that `from`'s time ago
/// counted back from: `from=-7d` answers a window of seven days exactly, in every unit and
/// decimal.
#[tokio::test]
async fn a_time_ago_and_the_answer_s_end_are_one_reading_of_the_clock() {
    let dir = TempDir::new("archive-query-one-reading");
    let (daemon, state) = start(archive_config(&dir.0.join("archive"))).await;
    let (monitor, stop) = serve_monitor(state).await;
    let time = |answer: &serde_json::Value, end: &str| {
        let text = answer[end].as_str().expect("a time");
        aggregator::domain::units::parse_time(text, SystemTime::UNIX_EPOCH).unwrap()
    };
    for (from, apart) in [
        ("-7d", 7 * 86_400_000_000_000),
        ("-1.5h", 5_400_000_000_000),
        ("-0.002h", 7_200_000_000),
    ] {
        let path = format!("/archive/completeness?from={from}");
        let answer = common::http_get_json(monitor, &path).await;
        let span = time(&answer, "to") - time(&answer, "from");
        assert_eq!(span, apart, "{path}: {answer}");
    }
    stop.cancel();
    assert!(daemon.shutdown().await.is_clean());
}

/// A window that starts before what retention (here `archive prune`) left: the NDJSON answer
/// opens with an `earliest` line for the shard, as `aggregator tail --json` prints it, and holds
/// every frame left.
#[tokio::test]
async fn a_window_before_the_oldest_frame_left_says_where_it_starts() {
    let dir = TempDir::new("archive-query-earliest");
    let root = dir.0.join("archive");
    let mut config = archive_config(&root);
    config.archive.segment_bytes = 8 * 1024;
    let (daemon, _) = start(config.clone()).await;
    send(daemon.uplink, SourceKind::LiveUplink, 1, 0..1000).await;
    let middle = unix_ns(SystemTime::now()).unwrap();
    send(daemon.uplink, SourceKind::LiveUplink, 1, 1000..2000).await;
    let to = unix_ns_to_rfc3339(unix_ns(SystemTime::now()).unwrap());
    assert!(daemon.shutdown().await.is_clean());
    // It deletes what the daemon's last run wrote: trusted, with --force.
    let pruned = std::process::Command::new(env!("CARGO_BIN_EXE_aggregator"))
        .args([
            "archive",
            "prune",
            root.to_str().unwrap(),
            "--force",
            "--before",
        ])
        .arg(unix_ns_to_rfc3339(middle))
        .output()
        .unwrap();
    assert!(pruned.status.success(), "{pruned:?}");
    let left = common::stored_frames(&root);
    // The oldest received time of the oldest segment left (a routine frame received before it
    // may lie in a later one, after emergencies overtook it).
    let first = left.iter().map(|(at, _)| at.segment).min().unwrap();
    let oldest = (left.iter().filter(|(at, _)| at.segment == first))
        .map(|(_, frame)| frame.received_unix_ns)
        .min()
        .unwrap();
    assert!(
        left.len() < 2000,
        "prune deleted a segment: {} left",
        left.len()
    );

    let (daemon, state) = start(config).await;
    let (monitor, stop) = serve_monitor(state).await;
    // A window that ended before this daemon started: whole once it drains, if not before.
    let (status, body) = get_started(monitor, &format!("/archive/frames?from=-1h&to={to}")).await;
    assert_eq!(status, 200);
    assert!(daemon.shutdown().await.is_clean());
    let body = tokio::time::timeout(PATIENCE, body).await.unwrap().unwrap();
    let body = common::dechunked(&body);
    let mut lines = body.lines();
    let earliest: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(
        earliest,
        serde_json::json!({"earliest": {"shard": 0, "oldest": unix_ns_to_rfc3339(oldest)}})
    );
    assert_eq!(lines.count(), left.len());
    stop.cancel();
}

/// Reads `stream`'s chunked answer until its rows hold `lines` lines; the body read so far.
async fn read_rows(stream: &mut TcpStream, body: &mut String, lines: usize) {
    let reading = async {
        while common::chunks_so_far(body).0.lines().count() < lines {
            let mut buf = [0; 4096];
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "the answer ended: {body}");
            body.push_str(std::str::from_utf8(&buf[..n]).unwrap());
        }
    };
    tokio::time::timeout(PATIENCE, reading)
        .await
        .unwrap_or_else(|_| panic!("{lines} rows never came: {body}"));
}

/// A window that ends an hour from now: each frame's row is sent as soon as the frame is stored,
/// not held back until more come; a drain before the window's end cuts the answer off.
#[tokio::test]
async fn rows_of_a_window_still_open_come_as_they_are_stored() {
    let dir = TempDir::new("archive-query-live");
    let root = dir.0.join("archive");
    let config = archive_config(&root);
    let (daemon, state) = start(config).await;
    let (monitor, stop) = serve_monitor(state).await;
    send(daemon.uplink, SourceKind::LiveUplink, 1, 0..100).await;
    let hour = unix_ns_to_rfc3339(unix_ns(SystemTime::now()).unwrap() + 3_600_000_000_000);
    let path = format!("/archive/frames?to={hour}&source=live:1&format=csv");
    let (status, mut stream) = get_head(monitor, &path).await;
    assert_eq!(status, 200);
    let mut body = String::new();
    read_rows(&mut stream, &mut body, 1 + 100).await;
    send(daemon.uplink, SourceKind::LiveUplink, 1, 100..150).await;
    read_rows(&mut stream, &mut body, 1 + 150).await;
    assert!(daemon.shutdown().await.is_clean());
    let rest = tokio::time::timeout(PATIENCE, stream.read_to_string(&mut body)).await;
    rest.unwrap().unwrap();
    stop.cancel();
    let (csv, whole) = common::chunks_so_far(&body);
    assert!(!whole, "cut off: the window had not ended");
    let mut sequences: Vec<u64> = (csv.lines().skip(1))
        .map(|line| line.split(',').nth(3).unwrap().parse().unwrap())
        .collect();
    // In archive order: emergency frames (every seventh) overtook routine ones.
    sequences.sort_unstable();
    assert_eq!(sequences, (0..150).collect::<Vec<_>>());
}

#[tokio::test]
async fn the_token_guards_archive_queries() {
    let dir = TempDir::new("archive-query-token");
    let root = dir.0.join("archive");
    let token = dir.0.join("token");
    std::fs::write(&token, "sesame\n").unwrap();
    let mut config = archive_config(&root);
    config.monitor.token_file = Some(token.clone());
    config.monitor.max_archive_queries = 1;
    let opened = aggregator::archive::write::open(&config.archive, 1).expect("open the archive");
    let build = |config| Daemon::new(config, opened);
    let access = aggregator::ops::access::Access::load(&token, false).unwrap();
    let (daemon, state) = common::TestDaemon::start_built(config, build, |daemon| {
        daemon.monitor_state().with_access(access)
    })
    .await;
    let (monitor, stop) = serve_monitor(state).await;
    let (status, _, _) = http_get(monitor, "/archive/frames?to=-1h").await;
    assert_eq!(status, 401);
    let bearer = ["Authorization: Bearer sesame"];
    let (status, _, body) = http_get_with(monitor, "/archive/frames?to=-1h", &bearer, None).await;
    assert_eq!((status, common::dechunked(&body).as_str()), (200, ""));
    // A client that goes away mid-answer gives its permit back.
    let mut stream = TcpStream::connect(monitor).await.unwrap();
    let hour = unix_ns_to_rfc3339(unix_ns(SystemTime::now()).unwrap() + 3_600_000_000_000);
    let request = format!(
        "GET /archive/frames?to={hour} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer sesame\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = [0; 12];
    stream.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    let (status, _, _) = http_get_with(monitor, "/archive/frames?to=-1h", &bearer, None).await;
    assert_eq!(status, 503, "the one permit is held");
    drop(stream);
    common::wait_until_async("the permit back", PATIENCE, || async {
        let (status, _, _) = http_get_with(monitor, "/archive/frames?to=-1h", &bearer, None).await;
        status == 200
    })
    .await;
    assert!(daemon.shutdown().await.is_clean());
    stop.cancel();
}

/// A pass received by two stations of one group, each link with sources of its own (Kiruna's APID
/// 7 is live:10007, Svalbard's live:20007): Kiruna lost 50..=79 of the spacecraft's counts, Svalbard
/// (later, and lagging) delivered 45..=84 but lost 60..=64; both lost 100..=109. Completeness
/// says, per source, the station and the gaps on the space link, and for the pass of APID 7
/// exactly which station delivered what and which ranges Svalbard filled for Kiruna: from the
/// running daemon (frames read from their blocks, segments answered from their indexes) and from
/// the files with the config (`aggregator archive gaps --config`).
#[tokio::test]
async fn a_merged_pass_says_which_station_delivered_each_range() {
    use aggregator::archive::query::completeness;
    use aggregator::domain::filter::FrameFilter;
    use aggregator::ops::completeness_json;
    use aggregator::protocol::ccsds::PrimaryHeader;

    let dir = TempDir::new("archive-query-pass");
    let root = dir.0.join("archive");
    let mut config = archive_config(&root);
    config.archive.segment_bytes = 8 * 1024;
    let links = [("Kiruna", 10_000), ("Svalbard", 20_000)].map(|(station, base)| {
        format!(
            "[[links]]\nname = \"{station}\"\nstation = \"{station}\"\ntransport = \"tcp-listen\"\n\
             address = \"127.0.0.1:0\"\nframing = \"ccsds\"\ngroup = \"pass\"\napid_base = {base}\n"
        )
    });
    let parsed = aggregator::Config::parse(&links.concat(), std::path::Path::new("pass.toml"));
    config.links = parsed.expect("valid [[links]]").links;
    let groups = completeness::merge_groups(&config.links);
    let (daemon, state) = start(config).await;
    let (monitor, stop) = serve_monitor(state).await;
    let packet = |count: u16| {
        let header = PrimaryHeader::telemetry(7, count, 200).encode();
        header
            .into_iter()
            .chain([count as u8; 200])
            .collect::<Vec<u8>>()
    };
    let path = "/archive/completeness?source=live:10007&source=live:20007";
    let stored = |frames: u64| async move {
        let answer = common::http_get_json(monitor, path).await;
        answer["passes"][0]["frames"] == frames
    };
    let kiruna: Vec<u16> = (0..50).chain(80..100).chain(110..120).collect();
    let svalbard: Vec<u16> = (45..60).chain(65..85).collect();
    let mut held = Vec::new();
    for (station, counts, total) in [("Kiruna", kiruna, 80), ("Svalbard", svalbard, 105)] {
        let mut wire = TcpStream::connect(daemon.links[station]).await.unwrap();
        for count in counts {
            wire.write_all(&packet(count)).await.unwrap();
        }
        common::wait_until_async("the station's packets stored", PATIENCE, || stored(total)).await;
        held.push(wire);
    }
    // A group reads its first packet of an APID one cycle up.
    let up = |a: u64, b: u64| [16_384 + a, 16_384 + b];
    let gap = |a: u64, b: u64| {
        let [first, last] = up(a, b);
        serde_json::json!({"first": first, "last": last, "frames": b - a + 1, "cause": "space_link"})
    };
    let expected = |answer: &serde_json::Value| {
        let svalbard = &answer["sources"][1];
        assert_eq!(svalbard["source"], 20007, "{answer}");
        assert_eq!(svalbard["gaps"], serde_json::json!([gap(60, 64)]));
        assert_eq!(svalbard["stations"][0]["station"], "Svalbard");
        let pass = &answer["passes"][0];
        assert_eq!((&pass["group"], &pass["apid"]), (&"pass".into(), &7.into()));
        assert_eq!(
            pass["held"],
            serde_json::json!([up(0, 59), up(65, 99), up(110, 119)])
        );
        assert_eq!(
            pass["gaps"],
            serde_json::json!([gap(60, 64), gap(100, 109)])
        );
        let stations = serde_json::json!([
            {"station": "Kiruna", "source": "live:10007", "frames": 80,
             "held": [up(0, 49), up(80, 99), up(110, 119)]},
            {"station": "Svalbard", "source": "live:20007", "frames": 25,
             "held": [up(50, 59), up(65, 79)]},
        ]);
        assert_eq!(pass["stations"], stations);
        let filled = |a: u64, b: u64| {
            let [first, last] = up(a, b);
            serde_json::json!({"station": "Svalbard", "for": "Kiruna", "first": first, "last": last})
        };
        assert_eq!(
            pass["filled"],
            serde_json::json!([filled(50, 59), filled(65, 79)])
        );
    };
    expected(&common::http_get_json(monitor, path).await);
    // Svalbard's 45..=49 and 80..=84: the last packets it sent.
    common::wait_until("Svalbard's copies counted", PATIENCE, || {
        daemon.stats.links().iter().map(|l| l.copies).sum::<u64>() == 10
    })
    .await;
    drop(held);
    stop.cancel();
    assert!(daemon.shutdown().await.is_clean());
    // The files, read again: the sealed segments from their indexes.
    let sealed = std::fs::read_dir(&root)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "index")
        })
        .count();
    assert!(sealed >= 2, "segments sealed with their indexes: {sealed}");
    let filter = FrameFilter::default();
    let answer = completeness::of_files(&root, &filter).unwrap();
    expected(&completeness_json::answer_json(&answer, &filter, &groups));
}
