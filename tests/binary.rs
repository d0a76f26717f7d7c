//! The `aggregator` binary as a child process: it logs its listeners, takes traffic, and on SIGTERM
//! (or SIGINT) drains within the deadline, logs a clean drain summary and exits 0, after telling
//! every client exactly which of its frames it accepted.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aggregator::protocol::ingest::{CloseReason, ServerMessage};
use aggregator::{Priority, SourceKind};
use common::process::{json_u64, text_field, Daemon, DRAIN_DEADLINE};
use common::*;

#[tokio::test]
async fn sigterm_mid_stream_drains_and_exits_0() {
    let mut daemon = Daemon::start("sigterm");
    let sources = [
        (SourceKind::LiveUplink, 1),
        (SourceKind::LiveUplink, 2),
        (SourceKind::LiveUplink, 3),
        (SourceKind::ArchivedReplay, 1),
    ];

    let mut streams = Vec::new();
    for (kind, id) in sources {
        let addr = match kind {
            SourceKind::LiveUplink => daemon.uplink,
            SourceKind::ArchivedReplay => daemon.replay,
        };
        let (mut inbox, mut writer) = Client::source(addr, kind, id).await.split();
        let sent = Arc::new(AtomicU64::new(0));
        let acked = Arc::new(AtomicU64::new(0));
        // The source streams until the daemon stops taking its frames.
        let writing = tokio::spawn({
            let sent = Arc::clone(&sent);
            async move {
                for start in (0..u64::MAX).step_by(200) {
                    let frames = (start..start + 200).map(|s| {
                        let priority = if s % 10 == 9 {
                            Priority::Emergency
                        } else {
                            Priority::Routine
                        };
                        (priority, s)
                    });
                    let bytes = data_bytes(frames);
                    if tokio::io::AsyncWriteExt::write_all(&mut writer, &bytes)
                        .await
                        .is_err()
                    {
                        break;
                    }
                    sent.store(start + 200, Ordering::SeqCst);
                    tokio::task::yield_now().await;
                }
            }
        });
        let reading = tokio::spawn({
            let acked = Arc::clone(&acked);
            async move {
                inbox
                    .read_to_close_with(|_| {
                        acked.fetch_add(1, Ordering::SeqCst);
                    })
                    .await
            }
        });
        streams.push(((kind, id), sent, acked, writing, reading));
    }

    wait_until("every source has frames acknowledged", PATIENCE, || {
        streams
            .iter()
            .all(|(_, _, acked, _, _)| acked.load(Ordering::SeqCst) > 0)
    })
    .await;
    daemon.signal(libc::SIGTERM);
    let signalled = Instant::now();

    let mut closes = Vec::new();
    for (key, sent, _, writing, reading) in streams {
        let closed = tokio::time::timeout(PATIENCE, reading)
            .await
            .expect("the final acknowledgement arrives")
            .expect("reader task");
        writing.abort();
        assert_eq!(closed.reason, CloseReason::Shutdown, "{key:?}: {closed:?}");
        let final_ack = closed.final_ack.expect("frames were accepted");
        assert!(
            final_ack < sent.load(Ordering::SeqCst),
            "{key:?}: final_ack {final_ack} beyond what was sent"
        );
        closes.push((key, final_ack));
    }
    // Every task has finished; blocking this thread while the process exits is harmless.
    let (status, _) = daemon.wait_exit(DRAIN_DEADLINE + Duration::from_secs(2));
    assert!(status.success(), "exit status {status:?}");
    assert!(
        signalled.elapsed() < DRAIN_DEADLINE,
        "exited {:?} after SIGTERM, deadline {DRAIN_DEADLINE:?}",
        signalled.elapsed()
    );

    let summary = daemon.wait_for_line("drain complete");
    assert_eq!(json_u64(&summary, "unacknowledged"), 0, "{summary}");
    let accepted = json_u64(&summary, "accepted");
    assert_eq!(json_u64(&summary, "archived"), accepted, "{summary}");
    assert_eq!(json_u64(&summary, "processed"), accepted, "{summary}");
    // Each source's accepted frames are 0..=final_ack: the rest is for it to resend.
    let acknowledged: u64 = closes.iter().map(|(_, final_ack)| final_ack + 1).sum();
    assert_eq!(
        acknowledged, accepted,
        "the final acknowledgements {closes:?} account for every accepted frame: {summary}"
    );
    assert!(daemon
        .log
        .lock()
        .unwrap()
        .iter()
        .any(|line| line.contains("SIGTERM")));
}

#[tokio::test]
async fn sigint_on_an_idle_daemon_exits_0() {
    let mut daemon = Daemon::start("sigint");
    let mut client = Client::source(daemon.uplink, SourceKind::LiveUplink, 5).await;
    client.send_routine(0..10).await;
    loop {
        match client.recv_message().await {
            ServerMessage::Ack { sequence: 9 } => break,
            ServerMessage::Ack { .. } => {}
            other => panic!("expected ACKs, got {other:?}"),
        }
    }
    daemon.signal(libc::SIGINT);
    let closed = client.read_to_close().await;
    assert_eq!(closed.reason, CloseReason::Shutdown);
    assert_eq!(closed.final_ack, Some(9));
    let (status, _) = daemon.wait_exit(DRAIN_DEADLINE + Duration::from_secs(2));
    assert!(status.success(), "exit status {status:?}");
    let summary = daemon.wait_for_line("drain complete");
    assert_eq!(json_u64(&summary, "unacknowledged"), 0, "{summary}");
    assert_eq!(json_u64(&summary, "accepted"), 10, "{summary}");
}

/// A start that fails because a port is taken fails before the archive is opened: it names the
/// address, and leaves no segment behind (each of which would hold `segment_bytes` of disk
/// reserved, 128 MiB with the next one prepared, until a later start gave it back).
#[test]
fn a_port_in_use_stops_the_start_before_the_archive_is_touched() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = std::env::temp_dir().join(format!(
        "aggregator-binary-test-{}-port-in-use",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("aggregator.toml");
    let archive = dir.join("archive");
    let text = format!(
        "[uplink]\nlisten = \"127.0.0.1:{port}\"\n[replay]\nlisten = \"127.0.0.1:0\"\n\
         [monitor]\nenabled = false\n[archive]\ndir = \"{}\"\n",
        archive.display()
    );
    std::fs::write(&config, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_aggregator"))
        .arg("--config")
        .arg(&config)
        .env_remove("RUST_LOG")
        .output()
        .expect("run the aggregator binary");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");
    let left: Vec<_> = std::fs::read_dir(&archive)
        .map(|entries| entries.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(
        !left
            .iter()
            .any(|name| name.to_string_lossy().contains(".seg")),
        "segments left behind: {left:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Started outside the repository root, where the default `config/aggregator.toml` is not, the
/// daemon says how to name its config (`--config PATH`), not only that the file cannot be read,
/// and stops before anything binds (exit status 2).
#[test]
fn a_missing_config_file_names_the_config_option() {
    let dir = common::TempDir::new("binary-no-config");
    let out = Command::new(env!("CARGO_BIN_EXE_aggregator"))
        .current_dir(&dir.0)
        .env_remove("RUST_LOG")
        .output()
        .expect("run the aggregator binary");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("config/aggregator.toml"), "{stderr}");
    assert!(stderr.contains("--config PATH"), "{stderr}");
    assert!(!dir.0.join("archive").exists(), "nothing was started");
}

/// `--version` says the release, the commit it was built from (git's, in a checkout), and what it
/// reads and writes, as docs/compatibility.md lists them; `-V` the first line alone.
#[test]
fn version_names_the_release_the_commit_and_what_it_reads_and_writes() {
    let run = |flag: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_aggregator"))
            .arg(flag)
            .output()
            .expect("run the aggregator binary");
        assert!(out.status.success(), "{flag}");
        String::from_utf8(out.stdout).unwrap()
    };
    let long = run("--version");
    let lines: Vec<&str> = long.lines().collect();
    let first = format!("aggregator {} (", env!("CARGO_PKG_VERSION"));
    assert!(lines[0].starts_with(&first), "{long}");
    let commit = lines[0][first.len()..].trim_end_matches(')');
    let hex = commit.len() == 12 && commit.bytes().all(|b| b.is_ascii_hexdigit());
    assert!(hex || commit == "unknown", "{long}");
    assert_eq!(
        lines[1..],
        [
            "archive format: writes 6, reads 1 to 6",
            "ingest protocol: 2",
            "follow protocol: speaks 3 to 5"
        ],
        "{long}"
    );
    assert_eq!(run("-V"), format!("{}\n", lines[0]));
}

/// A source's frames, then its close: what an operator greps the logs for.
async fn ten_frames_and_a_close(daemon: &Daemon) {
    let mut client = Client::source(daemon.uplink, SourceKind::LiveUplink, 3).await;
    client.send_routine(0..10).await;
    client.finish_sending().await;
    assert_eq!(client.read_to_close().await.final_ack, Some(9));
}

/// Text logs into a pipe or a file carry no terminal colour codes, an acknowledgement is a number
/// (not `Some(9)`), and the stats line gives rates as well as totals.
#[tokio::test]
async fn text_logs_to_a_pipe_are_plain_and_give_numbers_and_rates() {
    let mut daemon = Daemon::start_logging("text-logs", "text");
    ten_frames_and_a_close(&daemon).await;
    let closed = daemon.wait_for_line("source closed the connection");
    assert_eq!(text_field(&closed, "acked"), "9", "{closed}");
    let stats = daemon.wait_for_line("stats: accepted=");
    text_field(&stats, "frames_per_sec").parse::<f64>().unwrap();
    daemon.signal(libc::SIGTERM);
    let (status, _) = daemon.wait_exit(DRAIN_DEADLINE * 2);
    assert!(status.success());
    let log = daemon.log.lock().unwrap().join("\n");
    assert!(!log.contains('\x1b'), "colour codes in a pipe:\n{log}");
    assert!(
        !log.contains("Some("),
        "an Option printed with Debug:\n{log}"
    );
}

/// In JSON logs an acknowledgement is a JSON number.
#[tokio::test]
async fn json_logs_give_acknowledgements_as_numbers() {
    let mut daemon = Daemon::start("json-numbers");
    ten_frames_and_a_close(&daemon).await;
    let closed = daemon.wait_for_line("source closed the connection");
    assert!(closed.contains("\"acked\":9"), "{closed}");
    daemon.signal(libc::SIGTERM);
    let (status, _) = daemon.wait_exit(DRAIN_DEADLINE * 2);
    assert!(status.success());
}

/// SIGHUP reads `[tls]`'s files again: connections opened before keep streaming, new ones get the
/// new certificate; a reload of files that do not parse is logged and keeps the ones in use.
#[tokio::test]
async fn sighup_reloads_the_tls_certificate_without_dropping_connections() {
    let pki = TempDir::new("binary-sighup");
    let (old_ca, new_ca) = (Ca::new("old", &pki), Ca::new("new", &pki));
    let (cert, key) = old_ca.sign("server", &["localhost"], true, false);
    let extra = format!(
        "[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        cert.display(),
        key.display()
    );
    let mut daemon = Daemon::start_configured("sighup", "json", &extra);
    let mut source = Client::connect_tls(daemon.uplink, &old_ca.client(None))
        .await
        .expect("the first certificate is served");
    source
        .send_raw(&hello_bytes(
            aggregator::protocol::ingest::VERSION,
            SourceKind::LiveUplink,
            1,
        ))
        .await;
    source.expect_welcome().await;
    source.send_routine(0..10).await;

    let (renewed_cert, renewed_key) = new_ca.sign("renewed", &["localhost"], true, false);
    std::fs::rename(renewed_cert, &cert).unwrap();
    std::fs::rename(renewed_key, &key).unwrap();
    daemon.signal(libc::SIGHUP);
    daemon.wait_for_line("TLS certificate, key and client CA reloaded");
    let mut fresh = Client::connect_tls(daemon.uplink, &new_ca.client(None))
        .await
        .expect("the renewed certificate is served after SIGHUP");
    fresh
        .send_raw(&hello_bytes(
            aggregator::protocol::ingest::VERSION,
            SourceKind::LiveUplink,
            2,
        ))
        .await;
    fresh.expect_welcome().await;

    std::fs::write(&cert, "not a certificate").unwrap();
    daemon.signal(libc::SIGHUP);
    daemon.wait_for_line("TLS reload failed");
    assert!(
        Client::connect_tls(daemon.uplink, &new_ca.client(None))
            .await
            .is_ok(),
        "a failed reload keeps the certificate in use"
    );

    source.send_routine(10..20).await;
    source.finish_sending().await;
    assert_eq!(source.read_to_close().await.final_ack, Some(19));
    fresh.finish_sending().await;
    fresh.read_to_close().await;
    daemon.signal(libc::SIGTERM);
    let (status, _) = daemon.wait_exit(DRAIN_DEADLINE + Duration::from_secs(2));
    assert!(status.success(), "exit status {status:?}");
}

/// Sends routine frames `sequences` and reads until the ACK of the last one.
async fn send_until_acked(client: &mut Client, sequences: std::ops::Range<u64>) {
    let last = sequences.end - 1;
    client.send_routine(sequences).await;
    loop {
        match tokio::time::timeout(PATIENCE, client.recv_message()).await {
            Ok(ServerMessage::Ack { sequence }) if sequence >= last => return,
            Ok(ServerMessage::Ack { .. } | ServerMessage::Pong { .. }) => {}
            Ok(other) => panic!("expected ACKs up to {last}, got {other:?}"),
            Err(_) => panic!("no ACK of {last} within {PATIENCE:?}: the archive stopped storing"),
        }
    }
}

/// `GET /healthz`'s status, or `None` when the monitor does not answer (refused, closed, silent).
async fn healthz(addr: SocketAddr) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        let request = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await.ok()?;
        response.split(' ').nth(1)?.parse().ok()
    };
    tokio::time::timeout(Duration::from_secs(1), attempt)
        .await
        .ok()
        .flatten()
}

/// Idle connections to the monitor cannot take the archive's file descriptors: with 256 of them
/// and more idle HTTP connections than that, the connections past the reserve are refused (and
/// counted, and logged), a source already connected keeps being acknowledged across segment
/// rotations, and once the idle ones close a new source is welcomed and the drain is clean. Before
/// the reserve, the archive's next open failed with EMFILE and nothing more was stored.
#[tokio::test]
async fn idle_monitor_connections_cannot_take_the_archives_descriptors() {
    let daemon = Daemon::launch(
        "descriptors",
        "json",
        "segment_bytes = 4096\n",
        "max_connections = 1000\nheader_read_timeout_ms = 60000\nidle_timeout_ms = 60000",
        Some(256),
    );
    let limit = daemon
        .log
        .lock()
        .unwrap()
        .iter()
        .find(|line| line.contains("open-file limit"))
        .cloned()
        .expect("the start logs the open-file limit");
    assert_eq!(json_u64(&limit, "soft"), 256, "{limit}");
    let mut first = Client::source(daemon.uplink, SourceKind::LiveUplink, 1).await;
    send_until_acked(&mut first, 0..100).await;

    let mut idle = Vec::new();
    for _ in 0..300 {
        match tokio::net::TcpStream::connect(daemon.monitor).await {
            Ok(stream) => idle.push(stream),
            Err(err) => panic!("connect to the monitor: {err}"),
        }
    }
    // Dozens of 4 KiB segments while every descriptor below the reserve is held.
    for chunk in 1..20 {
        send_until_acked(&mut first, chunk * 100..(chunk + 1) * 100).await;
    }
    daemon.wait_for_line("connections refused: the open-file limit is near");

    drop(idle);
    wait_until_async("the monitor answers ready again", PATIENCE, || async {
        healthz(daemon.monitor).await == Some(200)
    })
    .await;
    let mut second = Client::source(daemon.uplink, SourceKind::LiveUplink, 2).await;
    send_until_acked(&mut second, 0..100).await;

    let mut daemon = daemon;
    daemon.signal(libc::SIGTERM);
    let (status, _) = daemon.wait_exit(DRAIN_DEADLINE + Duration::from_secs(2));
    assert!(status.success(), "exit status {status:?}");
    let summary = daemon.wait_for_line("drain complete");
    assert_eq!(json_u64(&summary, "unacknowledged"), 0, "{summary}");
    assert_eq!(json_u64(&summary, "archived"), 2100, "{summary}");
}

/// A client that sent half an HTTP request and then nothing does not hold the exit: SIGTERM drains
/// and the process exits within the drain deadline (before, it waited for that client to go).
#[tokio::test]
async fn a_half_sent_http_request_does_not_hold_the_exit() {
    use tokio::io::AsyncWriteExt;
    let mut daemon = Daemon::launch(
        "half-sent",
        "json",
        "",
        "header_read_timeout_ms = 600000\nidle_timeout_ms = 600000",
        None,
    );
    let mut half = tokio::net::TcpStream::connect(daemon.monitor)
        .await
        .unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // A complete request on another connection: the half-sent one was accepted before it.
    assert_eq!(healthz(daemon.monitor).await, Some(200));
    daemon.signal(libc::SIGTERM);
    let (status, _) = daemon.wait_exit(DRAIN_DEADLINE + Duration::from_secs(2));
    assert!(status.success(), "exit status {status:?}");
    daemon.wait_for_line("drain complete");
    drop(half);
}
