//! Catalog updates over loopback: a publication reaches every connected source and every source
//! that connects later, a restart keeps it, a source that does not read delays no one and keeps
//! its frames flowing, a HELLO of an older version is refused, a bad CATALOG_ACK is counted and tolerated,
//! and `PUT /catalog` refuses what it must with the reason.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;

use aggregator::catalog::push::{push, MonitorAccess, PushError};
use aggregator::catalog::store::Store;
use aggregator::catalog::CatalogHandle;
use aggregator::protocol::ingest::{ClientMessage, RefuseReason, ServerMessage};
use aggregator::{Daemon, Priority, SourceKind};
use bytes::{Bytes, BytesMut};
use common::{hello_bytes, wait_until, wait_until_async, Archive, Client, TestDaemon, PATIENCE};
use tokio::net::TcpSocket;
use tokio_util::sync::CancellationToken;

/// Reads until a CATALOG, skipping ACKs and PONGs; returns its version and body.
async fn expect_catalog(client: &mut Client) -> (u64, Bytes) {
    loop {
        match client.recv_message().await {
            ServerMessage::Catalog { version, body, .. } => return (version, body),
            ServerMessage::Ack { .. } | ServerMessage::Pong(_) => {}
            other => panic!("expected CATALOG, got {other:?}"),
        }
    }
}

async fn catalog_ack(client: &mut Client, version: u64) {
    let mut out = BytesMut::new();
    ClientMessage::CatalogAck(version).encode(&mut out);
    client.send_raw(&out).await;
}

/// Versions the daemon's sources acknowledged, by id.
async fn held(daemon: &TestDaemon) -> Vec<(u32, Option<u64>)> {
    let mut held: Vec<_> = daemon
        .router
        .sources()
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.id, s.catalog_version))
        .collect();
    held.sort_unstable();
    held
}

async fn start() -> (TestDaemon, Archive, CatalogHandle) {
    let (archive, sink) = Archive::open();
    let (daemon, catalog) =
        TestDaemon::start_with(common::test_config(), sink, Daemon::catalog).await;
    (daemon, archive, catalog)
}

#[tokio::test]
async fn every_connected_source_holds_the_newest_catalog_and_later_ones_get_it_after_welcome() {
    let (daemon, _archive, catalog) = start().await;
    let mut clients = Vec::new();
    for id in 0..48 {
        clients.push(Client::source(daemon.uplink, SourceKind::LiveUplink, id).await);
    }
    assert_eq!(catalog.publish("text/plain", "v1".into()).await.unwrap(), 1);
    assert_eq!(catalog.publish("text/plain", "v2".into()).await.unwrap(), 2);
    for client in &mut clients {
        // Version 1 may have been overtaken before it was written: only the newest is owed.
        let (mut version, mut body) = expect_catalog(client).await;
        if version == 1 {
            (version, body) = expect_catalog(client).await;
        }
        assert_eq!((version, &body[..]), (2, &b"v2"[..]));
        catalog_ack(client, 2).await;
    }
    let expected: Vec<_> = (0..48).map(|id| (id, Some(2))).collect();
    wait_until_async("all 48 hold version 2", PATIENCE, || async {
        held(&daemon).await == expected
    })
    .await;

    let mut late = Client::connect(daemon.uplink).await;
    late.send_raw(&hello_bytes(2, SourceKind::LiveUplink, 99))
        .await;
    late.expect_welcome().await;
    match late.recv_message().await {
        ServerMessage::Catalog { version, .. } => assert_eq!(version, 2),
        other => panic!("expected CATALOG right after WELCOME, got {other:?}"),
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("catalog-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A daemon serving `catalog`.
async fn start_with(catalog: CatalogHandle) -> TestDaemon {
    let (_archive, sink) = Archive::open();
    let build = |config| Daemon::new(config, sink).with_catalog(catalog);
    TestDaemon::start_built(common::test_config(), build, |_| ())
        .await
        .0
}

#[tokio::test]
async fn a_restart_keeps_the_catalog_and_its_version() {
    let dir = temp_dir("restart");
    let open = || CatalogHandle::open(Store::in_dir(&dir), 1 << 20).unwrap();
    let catalog = open();
    let daemon = start_with(catalog.clone()).await;
    catalog.publish("text/plain", "first".into()).await.unwrap();
    catalog
        .publish("text/plain", "second".into())
        .await
        .unwrap();
    daemon.shutdown().await;
    drop(catalog);

    let catalog = open();
    let daemon = start_with(catalog.clone()).await;
    let mut client = Client::source(daemon.uplink, SourceKind::LiveUplink, 1).await;
    assert_eq!(
        expect_catalog(&mut client).await,
        (2, Bytes::from("second"))
    );
    assert_eq!(
        catalog.publish("text/plain", "third".into()).await.unwrap(),
        3
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_source_that_does_not_read_delays_no_one_and_its_frames_keep_flowing() {
    let (daemon, archive, catalog) = start().await;
    // A tiny receive window, never read: the megabyte catalog cannot get through to it.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(daemon.uplink).await.unwrap();
    let mut stuck = Client::from_stream(stream);
    stuck
        .send_raw(&hello_bytes(2, SourceKind::LiveUplink, 1))
        .await;
    let mut others = Vec::new();
    for id in 2..6 {
        others.push(Client::source(daemon.uplink, SourceKind::LiveUplink, id).await);
    }
    let body = Bytes::from(vec![0x5a; 1 << 20]);
    catalog
        .publish("application/octet-stream", body.clone())
        .await
        .unwrap();
    for client in &mut others {
        assert_eq!(expect_catalog(client).await, (1, body.clone()));
        catalog_ack(client, 1).await;
    }
    // The stuck source's frames are read and stored while its catalog waits.
    stuck.send_routine(0..1000).await;
    wait_until("the stuck source's frames are stored", PATIENCE, || {
        archive.sequences(SourceKind::LiveUplink, 1).len() == 1000
    })
    .await;
    let held = held(&daemon).await;
    assert_eq!(held[0], (1, None), "the stuck source holds nothing yet");
    assert!(held[1..].iter().all(|(_, v)| *v == Some(1)), "{held:?}");
}

#[tokio::test]
async fn a_version_1_hello_is_refused_and_a_bad_catalog_ack_is_counted_not_fatal() {
    let (daemon, _archive, catalog) = start().await;
    catalog.publish("text/plain", "tle".into()).await.unwrap();
    let mut old = Client::connect(daemon.uplink).await;
    old.send_raw(&hello_bytes(1, SourceKind::LiveUplink, 1))
        .await;
    match old.recv_message().await {
        ServerMessage::Refused { reason, detail } => {
            assert_eq!(reason, RefuseReason::UnsupportedVersion, "{detail}");
            assert_eq!(
                detail,
                "HELLO of protocol version 1; this daemon speaks version 2 only"
            );
        }
        other => panic!("expected REFUSED, got {other:?}"),
    }

    let mut bad = Client::source(daemon.uplink, SourceKind::LiveUplink, 2).await;
    assert_eq!(expect_catalog(&mut bad).await.0, 1);
    let errors = daemon.stats.snapshot().protocol_errors;
    catalog_ack(&mut bad, 5).await;
    bad.send_frames([(Priority::Emergency, 0)]).await;
    assert_eq!(bad.recv_message().await, ServerMessage::Ack { sequence: 0 });
    assert_eq!(daemon.stats.snapshot().protocol_errors, errors + 1);
    assert_eq!(
        held(&daemon).await,
        vec![(2, None)],
        "the refused source is not held"
    );
}

/// A daemon with its monitor, for `PUT /catalog`.
async fn start_monitored(max_bytes: usize) -> (TestDaemon, SocketAddr, CancellationToken) {
    let mut config = common::test_config();
    config.catalog.max_bytes = max_bytes;
    let (_archive, sink) = Archive::open();
    common::start_monitored(config, sink).await
}

#[tokio::test]
async fn put_catalog_publishes_and_refuses_with_the_reason() {
    let (daemon, addr, _stop) = start_monitored(1024).await;
    let replay = daemon.addr(SourceKind::ArchivedReplay);
    let mut client = Client::source(replay, SourceKind::ArchivedReplay, 3).await;
    assert_eq!(
        push(
            addr,
            "text/plain",
            b"ISS (ZARYA)",
            &MonitorAccess::default()
        )
        .await
        .unwrap(),
        1
    );
    assert_eq!(
        expect_catalog(&mut client).await,
        (1, Bytes::from("ISS (ZARYA)"))
    );

    match push(addr, "text/plain", &[0; 1025], &MonitorAccess::default()).await {
        Err(PushError::Refused {
            status: 413,
            reason,
        }) => {
            assert!(reason.contains("catalog.max_bytes (1024)"), "{reason}")
        }
        other => panic!("expected 413, got {other:?}"),
    }
    match push(addr, "text/plain", b"", &MonitorAccess::default()).await {
        Err(PushError::Refused {
            status: 400,
            reason,
        }) => {
            assert!(reason.contains("empty"), "{reason}")
        }
        other => panic!("expected 400, got {other:?}"),
    }
    catalog_ack(&mut client, 1).await;
    wait_until_async("/stats counts the holder", PATIENCE, || async {
        let stats = common::http_get_json(addr, "/stats").await;
        stats["catalog"]["version"] == 1
            && stats["catalog"]["holding_latest"] == 1
            && stats["sources"][0]["catalog_version"] == 1
    })
    .await;
}
