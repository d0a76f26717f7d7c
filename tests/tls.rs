//! TLS on the source listeners: who gets past the handshake, who may speak for which source, and a
//! certificate reload while sources stream. Certificates are made at test time (rcgen) in a
//! scratch directory; no key is kept in the repository.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use aggregator::archive::read::Start;
use aggregator::config::{AuthClient, SyncMode, TlsConfig};
use aggregator::follow::client::Follower;
use aggregator::follow::protocol::Subscription;
use aggregator::ops::access::Access;
use aggregator::protocol::ingest::{RefuseReason, VERSION};
use aggregator::tls::stream;
use aggregator::tls::ServerTls;
use aggregator::{Config, Daemon, SourceKind};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use SourceKind::LiveUplink;

/// The identity `[[auth.clients]]` allows `live:0-7`.
const GROUND_STATION: &str = "gs-1.example";

/// A config with mutual TLS: the server's certificate from `ca`, clients of `ca`, and
/// [`GROUND_STATION`] allowed `live:0-7`.
fn mutual_tls_config(ca: &Ca) -> Config {
    let (cert, key) = ca.sign("server", &["localhost"], true, false);
    let mut config = test_config();
    config.tls = Some(TlsConfig {
        cert,
        key,
        client_ca: Some(ca.path("ca.pem")),
    });
    config.auth.clients = vec![AuthClient {
        identity: GROUND_STATION.into(),
        sources: vec!["live:0-7".parse().unwrap()],
    }];
    config
}

/// A daemon serving `config` over TLS; returns the TLS handle too, for reloads.
async fn start_tls(config: Config) -> (TestDaemon, Archive, Arc<ServerTls>) {
    let tls = Arc::new(
        ServerTls::load(config.tls.as_ref().unwrap()).expect("the test certificates load"),
    );
    let (archive, sink) = Archive::open();
    let serving = Arc::clone(&tls);
    let (daemon, ()) = TestDaemon::start_built(
        config,
        move |config| Daemon::new(config, sink).with_tls(serving),
        |_| (),
    )
    .await;
    (daemon, archive, tls)
}

/// Collects every log line at INFO and above (the connection spans, which name the peer, are at
/// INFO) while the guard lives: the handshakes and refusals these tests check run on the test's
/// thread (a registered connection moves on to its shard's).
fn capture_logs() -> (Arc<Mutex<Vec<u8>>>, tracing::subscriber::DefaultGuard) {
    let (log, subscriber) = log_capture(tracing::Level::INFO);
    (log, tracing::subscriber::set_default(subscriber))
}

fn logged(log: &Mutex<Vec<u8>>) -> String {
    String::from_utf8(log.lock().unwrap().clone()).unwrap()
}

/// The log lines that name `peer`.
fn lines_of(log: &Mutex<Vec<u8>>, peer: SocketAddr) -> Vec<String> {
    let peer = peer.to_string();
    logged(log)
        .lines()
        .filter(|line| line.contains(&peer))
        .map(str::to_string)
        .collect()
}

/// A plaintext client on a TLS listener never reaches a HELLO: the handshake fails on its first
/// bytes, the connection is closed, and no WELCOME (nor any protocol message) is ever sent.
#[tokio::test]
async fn a_plaintext_client_is_closed_before_the_handshake_completes() {
    let (log, _guard) = capture_logs();
    let dir = TempDir::new("tls-plaintext");
    let ca = Ca::new("main", &dir);
    let (daemon, _archive, _tls) = start_tls(mutual_tls_config(&ca)).await;

    let mut stream = TcpStream::connect(daemon.uplink).await.unwrap();
    let peer = stream.local_addr().unwrap();
    stream
        .write_all(&hello_bytes(VERSION, LiveUplink, 1))
        .await
        .unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut answer))
        .await
        .expect("the daemon closes the connection");
    // Closed (perhaps reset) after at most a TLS alert record (content type 21): never a WELCOME.
    if read.is_ok() {
        assert!(
            answer.is_empty() || answer[0] == 21,
            "the daemon answered a plaintext HELLO with {answer:?}"
        );
    }
    wait_until("the failed handshake is counted", PATIENCE, || {
        daemon.stats.snapshot().tls_handshakes_failed == 1
    })
    .await;
    let s = daemon.stats.snapshot();
    assert_eq!(s.connections_accepted, 0, "{s:?}");
    assert!(daemon.source_keys().await.is_empty());
    let lines = lines_of(&log, peer);
    assert!(
        lines.iter().any(|l| l.contains("TLS handshake failed")),
        "no log line names the peer {peer}: {}",
        logged(&log)
    );
}

/// No client certificate, one from an unknown CA, an expired one: each handshake fails, the
/// connection is closed without a WELCOME, and the failure is logged with the peer and counted.
#[tokio::test]
async fn client_certificates_that_are_missing_unknown_or_expired_are_refused() {
    let (log, _guard) = capture_logs();
    let dir = TempDir::new("tls-bad-certs");
    let ca = Ca::new("main", &dir);
    let stranger = Ca::new("stranger", &dir);
    let (daemon, _archive, _tls) = start_tls(mutual_tls_config(&ca)).await;

    let clients = [
        ("no certificate", ca.client(None)),
        (
            "a certificate of an unknown CA",
            ca.client(Some(stranger.sign(
                "client",
                &[GROUND_STATION],
                false,
                false,
            ))),
        ),
        (
            "an expired certificate",
            ca.client(Some(ca.sign("expired", &[GROUND_STATION], false, true))),
        ),
    ];
    for (n, (what, tls)) in clients.iter().enumerate() {
        let tcp = TcpStream::connect(daemon.uplink).await.unwrap();
        let peer = tcp.local_addr().unwrap();
        // With TLS 1.3 the client's side of the handshake may complete before the daemon has
        // checked its certificate: then the HELLO's answer is the end of the connection.
        if let Ok((reader, writer)) = stream::client(tcp, Some(tls)).await {
            let mut client = Client::from_halves(reader, writer);
            let _ = client
                .writer
                .write_all(&hello_bytes(VERSION, LiveUplink, 1))
                .await;
            let _ = client.writer.flush().await;
            match client.recv().await {
                None | Some(Err(_)) => {}
                Some(Ok(message)) => panic!("{what}: the daemon answered {message:?}"),
            }
        }
        wait_until(&format!("{what}: the failure is counted"), PATIENCE, || {
            daemon.stats.snapshot().tls_handshakes_failed == n as u64 + 1
        })
        .await;
        assert!(
            lines_of(&log, peer)
                .iter()
                .any(|l| l.contains("TLS handshake failed")),
            "{what}: no log line names the peer {peer}: {}",
            logged(&log)
        );
    }
    let s = daemon.stats.snapshot();
    assert_eq!(s.connections_accepted, 0, "{s:?}");
}

/// A certificate for `live:0-7` that sends HELLO for `live:8` is refused with Unauthorized,
/// logged with the peer and the identity, and counted; a good source on the same listener, with
/// the same certificate, streams on unaffected and has every frame stored.
#[tokio::test]
async fn a_hello_outside_the_certificates_sources_is_unauthorized() {
    let (log, _guard) = capture_logs();
    let dir = TempDir::new("tls-unauthorized");
    let ca = Ca::new("main", &dir);
    let (daemon, archive, _tls) = start_tls(mutual_tls_config(&ca)).await;
    let tls = ca.client(Some(ca.sign("client", &[GROUND_STATION], false, false)));

    let mut good = Client::connect_tls(daemon.uplink, &tls).await.unwrap();
    good.send_raw(&hello_bytes(VERSION, LiveUplink, 7)).await;
    good.expect_welcome().await;
    good.send_routine(0..100).await;

    let tcp = TcpStream::connect(daemon.uplink).await.unwrap();
    let peer = tcp.local_addr().unwrap();
    let (reader, writer) = stream::client(tcp, Some(&tls)).await.unwrap();
    let mut intruder = Client::from_halves(reader, writer);
    intruder
        .send_raw(&hello_bytes(VERSION, LiveUplink, 8))
        .await;
    let (reason, detail) = intruder.expect_refused().await;
    assert_eq!(reason, RefuseReason::Unauthorized);
    assert!(
        detail.contains(GROUND_STATION) && detail.contains("live:8"),
        "{detail}"
    );
    let lines = lines_of(&log, peer);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("Unauthorized") && l.contains(GROUND_STATION)),
        "no log line names the peer {peer} and the identity: {}",
        logged(&log)
    );

    good.send_routine(100..200).await;
    good.finish_sending().await;
    let closed = good.read_to_close().await;
    assert_eq!(closed.final_ack, Some(199));
    assert_eq!(
        archive.sequences(LiveUplink, 7),
        (0..200).collect::<Vec<_>>()
    );
    let s = daemon.stats.snapshot();
    assert_eq!(s.connections_unauthorized, 1, "{s:?}");
    assert_eq!(s.connections_accepted, 1, "{s:?}");
    assert_eq!(s.tls_handshakes_failed, 0, "{s:?}");
    assert!(!daemon.source_keys().await.contains(&(LiveUplink, 8)));
}

/// A reload with a new certificate (signed by another CA) while a source streams: new connections
/// get the new certificate (a client that trusts only the new CA fails before the reload and is
/// welcomed after it), and the streaming source loses no frame.
#[tokio::test]
async fn a_reload_serves_the_new_certificate_and_loses_no_frame() {
    let dir = TempDir::new("tls-reload");
    let ca = Ca::new("main", &dir);
    let renewed = Ca::new("renewed", &dir);
    let config = mutual_tls_config(&ca);
    let files = config.tls.clone().unwrap();
    let (daemon, archive, tls) = start_tls(config).await;
    let client_cert = ca.sign("client", &[GROUND_STATION], false, false);
    let old_trust = ca.client(Some(client_cert.clone()));
    let new_trust = renewed.client(Some(client_cert));

    let mut source = Client::connect_tls(daemon.uplink, &old_trust)
        .await
        .unwrap();
    source.send_raw(&hello_bytes(VERSION, LiveUplink, 1)).await;
    source.expect_welcome().await;
    let (mut inbox, mut writer) = source.split();
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let streaming = tokio::spawn({
        let (stop, sent) = (Arc::clone(&stop), Arc::clone(&sent));
        async move {
            let mut next = 0;
            while !stop.load(Ordering::SeqCst) {
                let batch =
                    data_bytes((next..next + 50).map(|s| (aggregator::Priority::Routine, s)));
                writer
                    .write_all(&batch)
                    .await
                    .expect("the source keeps writing");
                writer.flush().await.expect("the source keeps writing");
                next += 50;
                sent.store(next, Ordering::SeqCst);
                tokio::task::yield_now().await;
            }
            writer.shutdown().await.expect("the source finishes");
            next
        }
    });
    wait_until("frames flow before the reload", PATIENCE, || {
        daemon.stats.snapshot().frames_archived >= 500
    })
    .await;

    assert!(
        Client::connect_tls(daemon.uplink, &new_trust)
            .await
            .is_err(),
        "the new CA is not trusted before the reload"
    );
    let (cert, key) = renewed.sign("server", &["localhost"], true, false);
    std::fs::rename(cert, &files.cert).unwrap();
    std::fs::rename(key, &files.key).unwrap();
    tls.reload().expect("the new files load");
    let before = sent.load(Ordering::SeqCst);

    let mut fresh = Client::connect_tls(daemon.uplink, &new_trust)
        .await
        .expect("the renewed certificate is served after the reload");
    fresh.send_raw(&hello_bytes(VERSION, LiveUplink, 2)).await;
    fresh.expect_welcome().await;
    wait_until("the source streams on after the reload", PATIENCE, || {
        sent.load(Ordering::SeqCst) >= before + 500
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    let total = tokio::time::timeout(PATIENCE, streaming)
        .await
        .expect("the source finishes")
        .unwrap();
    let closed = inbox.read_to_close().await;
    assert_eq!(closed.final_ack, Some(total - 1));
    assert_eq!(
        archive.sequences(LiveUplink, 1),
        (0..total).collect::<Vec<_>>(),
        "every frame stored once, in order"
    );
    fresh.finish_sending().await;
    assert_eq!(fresh.read_to_close().await.final_ack, None);
}

/// `[tls]` and `[[auth.clients]]` are checked together, and the files when loaded: each error
/// names its key.
#[test]
fn tls_and_auth_settings_are_validated_with_the_key_named() {
    let path = std::path::Path::new("test.toml");
    let error = |text: &str| Config::parse(text, path).unwrap_err().to_string();
    let without_ca = "[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n\n[[auth.clients]]\nidentity = \"a\"\nsources = [\"live:0-7\"]\n";
    assert!(
        error(without_ca).contains("auth.clients: needs tls.client_ca"),
        "{}",
        error(without_ca)
    );
    let without_auth = "[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\nclient_ca = \"ca.pem\"\n";
    assert!(
        error(without_auth).contains("auth.clients"),
        "{}",
        error(without_auth)
    );
    let bad_range = "[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\nclient_ca = \"ca.pem\"\n\n[[auth.clients]]\nidentity = \"a\"\nsources = [\"live:9-3\"]\n";
    let bad = error(bad_range);
    assert!(
        bad.contains("auth.clients.sources") && bad.contains("live:9-3"),
        "{bad}"
    );
    let good = "[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\nclient_ca = \"ca.pem\"\n\n[[auth.clients]]\nidentity = \"gs-1.example\"\nsources = [\"live:0-47\", \"replay:1000\"]\n";
    let config = Config::parse(good, path).unwrap();
    assert_eq!(config.auth.clients[0].sources.len(), 2);

    let missing = ServerTls::load(config.tls.as_ref().unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        missing.starts_with("tls.cert: cannot read c.pem"),
        "{missing}"
    );
    let dir = TempDir::new("tls-config");
    let ca = Ca::new("main", &dir);
    let (cert, _) = ca.sign("server", &["localhost"], true, false);
    let (_, other_key) = ca.sign("other", &["localhost"], true, false);
    let mismatched = TlsConfig {
        cert,
        key: other_key,
        client_ca: None,
    };
    let mismatch = ServerTls::load(&mismatched).unwrap_err().to_string();
    assert!(mismatch.starts_with("tls.key: "), "{mismatch}");
}

/// A daemon over mutual TLS with its monitor beside it, guarded by `token` (and everything
/// guarded with `protect_all`); returns the monitor's address.
async fn start_guarded_monitor(
    ca: &Ca,
    dir: &TempDir,
    token: &str,
    protect_all: bool,
) -> (TestDaemon, SocketAddr, CancellationToken) {
    let token_file = dir.0.join("monitor-token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let mut config = mutual_tls_config(ca);
    config.monitor.token_file = Some(token_file.clone());
    config.monitor.protect_all = protect_all;
    let access = Access::load(&token_file, protect_all).unwrap();
    let tls = Arc::new(ServerTls::load(config.tls.as_ref().unwrap()).unwrap());
    let (_, sink) = Archive::open();
    let (daemon, state) = TestDaemon::start_built(
        config,
        move |config| Daemon::new(config, sink).with_tls(tls),
        |daemon| daemon.monitor_state().with_access(access),
    )
    .await;
    let (addr, stop) = common::serve_monitor(state).await;
    (daemon, addr, stop)
}

/// The monitor serves HTTPS with the daemon's certificate (no client certificate asked), and its
/// token guards `/stats`, `/feed` and the dashboard: 401 without it, 200 with it as a bearer
/// header, or once as `?token=` on the page, which sets the cookie the page's requests carry.
/// `/healthz` and `/metrics` stay open.
#[tokio::test]
async fn the_monitor_token_guards_stats_feed_and_the_dashboard() {
    let dir = TempDir::new("tls-monitor-token");
    let ca = Ca::new("main", &dir);
    let (_daemon, addr, _stop) = start_guarded_monitor(&ca, &dir, "s3cret-token", false).await;
    let tls = ca.client(None);
    let get = |path: &'static str, headers: &'static [&'static str]| {
        let tls = tls.clone();
        async move { http_get_with(addr, path, headers, Some(&tls)).await }
    };

    for path in ["/stats", "/", "/dashboard.js", "/feed"] {
        let (status, headers, _) = get(path, &[]).await;
        assert_eq!(status, 401, "{path} without the token");
        assert!(headers
            .iter()
            .any(|h| h.starts_with("www-authenticate: bearer")));
        let (status, _, _) = get(path, &["Authorization: Bearer wrong-token!"]).await;
        assert_eq!(status, 401, "{path} with a wrong token");
    }
    let (status, _, body) = get("/stats", &["Authorization: Bearer s3cret-token"]).await;
    assert_eq!(status, 200, "{body}");
    let (status, headers, _) = get("/?token=s3cret-token", &[]).await;
    assert_eq!(status, 200);
    let cookie = headers
        .iter()
        .find_map(|h| h.strip_prefix("set-cookie: "))
        .expect("the page sets the token's cookie");
    assert!(
        cookie.contains("httponly") && cookie.contains("samesite=strict"),
        "{cookie}"
    );
    let (status, _, _) = get("/stats", &["Cookie: aggregator_token=s3cret-token"]).await;
    assert_eq!(status, 200, "the page's own requests carry the cookie");
    // A cookie of an earlier token does not hide a valid one given another way, and the page
    // opened with the valid one sets the cookie anew.
    const STALE: &str = "Cookie: aggregator_token=rotated-away";
    let (status, headers, _) = get("/?token=s3cret-token", &[STALE]).await;
    assert_eq!(status, 200, "a stale cookie beside the query's token");
    assert!(headers.iter().any(|h| h.starts_with("set-cookie: ")));
    let (status, _, _) = get("/stats", &[STALE, "Authorization: Bearer s3cret-token"]).await;
    assert_eq!(status, 200, "a stale cookie beside the header's token");
    // The scheme's name in any case (RFC 9110), and more than one space after it.
    let (status, _, _) = get("/stats", &["Authorization: bearer   s3cret-token"]).await;
    assert_eq!(status, 200, "the scheme in lower case");
    for open in ["/healthz", "/metrics"] {
        let (status, _, _) = get(open, &[]).await;
        assert_eq!(status, 200, "{open} stays open");
    }
}

/// With `protect_all`, `/healthz` and `/metrics` want the token too.
#[tokio::test]
async fn protect_all_guards_healthz_and_metrics() {
    let dir = TempDir::new("tls-monitor-protect-all");
    let ca = Ca::new("main", &dir);
    let (_daemon, addr, _stop) = start_guarded_monitor(&ca, &dir, "tok", true).await;
    let tls = ca.client(None);
    for path in ["/healthz", "/metrics"] {
        let (status, _, _) = http_get_with(addr, path, &[], Some(&tls)).await;
        assert_eq!(status, 401, "{path}");
        let (status, _, _) =
            http_get_with(addr, path, &["Authorization: Bearer tok"], Some(&tls)).await;
        assert_eq!(status, 200, "{path}");
    }
}

/// Without `[tls]`, a source listener beyond loopback is reported on `/healthz`, which stays 200
/// while the daemon is ready; on loopback there is nothing to report.
#[tokio::test]
async fn healthz_warns_of_a_listener_beyond_loopback_without_tls() {
    let mut exposed = test_config();
    exposed.replay.listen = "0.0.0.0:0".parse().unwrap();
    let (_, sink) = Archive::open();
    let (_daemon, addr, _stop) = start_monitored(exposed, sink).await;
    let health = http_get_json(addr, "/healthz").await;
    assert_eq!(health["status"], "ready");
    let warnings = health["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{health}");
    assert!(
        warnings[0]
            .as_str()
            .unwrap()
            .contains("replay listener on 0.0.0.0:"),
        "{health}"
    );

    let (_, sink) = Archive::open();
    let (_daemon, addr, _stop) = start_monitored(test_config(), sink).await;
    let health = http_get_json(addr, "/healthz").await;
    assert_eq!(health["warnings"], serde_json::json!([]));
}

/// The follow listener takes the same TLS: a consumer with a client certificate of the CA follows
/// the archive over TLS and gets every frame; one without a certificate is turned away.
#[tokio::test]
async fn a_follower_reads_the_archive_over_mutual_tls() {
    let dir = TempDir::new("tls-follow");
    let ca = Ca::new("main", &dir);
    let mut config = with_followers(mutual_tls_config(&ca));
    config.archive.dir = dir.0.join("archive");
    config.archive.sync = SyncMode::Interval;
    let tls = Arc::new(ServerTls::load(config.tls.as_ref().unwrap()).unwrap());
    let archive = aggregator::archive::write::open(&config.archive, config.runtime.shards).unwrap();
    let build = |config| Daemon::new(config, archive).with_tls(tls);
    let (daemon, ()) = TestDaemon::start_built(config, build, |_| ()).await;
    let (uplink, follow_addr) = (daemon.uplink, daemon.follow());

    let client_tls = ca.client(Some(ca.sign("client", &[GROUND_STATION], false, false)));
    let mut source = Client::connect_tls(uplink, &client_tls).await.unwrap();
    source.send_raw(&hello_bytes(VERSION, LiveUplink, 5)).await;
    source.expect_welcome().await;
    source.send_routine(0..20).await;
    source.finish_sending().await;
    assert_eq!(source.read_to_close().await.final_ack, Some(19));

    let everything = Subscription::new(Start::Oldest, Vec::new(), None);
    let subscribe = Follower::subscribe(follow_addr, &everything, Some(&client_tls));
    let mut follower = tokio::time::timeout(PATIENCE, subscribe)
        .await
        .unwrap()
        .expect("a consumer with a certificate subscribes");
    let mut sequences = Vec::new();
    while sequences.len() < 20 {
        let frame = tokio::time::timeout(PATIENCE, follower.next())
            .await
            .unwrap()
            .unwrap()
            .expect("frames before the END");
        sequences.push(frame.frame.sequence);
    }
    assert_eq!(sequences, (0..20).collect::<Vec<_>>());

    let no_certificate = ca.client(None);
    let anonymous = Follower::subscribe(follow_addr, &everything, Some(&no_certificate));
    assert!(
        tokio::time::timeout(PATIENCE, anonymous)
            .await
            .unwrap()
            .is_err(),
        "a consumer without a certificate is turned away"
    );
    daemon.shutdown_clean().await;
}
