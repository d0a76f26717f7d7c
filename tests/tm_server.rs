//! TM servers and forwards over loopback: a client reading raw TCP gets every stored space packet
//! once, byte for byte, in archive order, and no frame that is not one; from the start it gets the
//! archive and then live packets, from now only later ones; the ASM framing; APID, source and
//! kind filters; a client that never reads holds back neither ingest nor other clients; a server
//! at its limit closes new connections; and a forward sends each packet as one datagram.

mod common;

use std::net::SocketAddr;

use aggregator::config::{TmForwardConfig, TmFraming, TmServerConfig, TmStart};
use aggregator::domain::frame::SourceKey;
use aggregator::protocol::ccsds::{PrimaryHeader, ASM};
use aggregator::stats::TmStats;
use aggregator::SourceKind;
use common::{archive_config, wait_until, Client, TempDir, TestDaemon, PATIENCE};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpSocket, TcpStream, UdpSocket};

const LIVE: SourceKind = SourceKind::LiveUplink;
const REPLAY: SourceKind = SourceKind::ArchivedReplay;

/// TM server `name`'s counters.
fn tm_stats(daemon: &TestDaemon, name: &str) -> TmStats {
    let outputs = daemon.stats.tm_snapshots();
    outputs
        .into_iter()
        .find(|t| t.name == name)
        .expect("TM counters")
}

/// Connects to TM server `name` and waits until the server has found where it starts.
async fn connect(daemon: &TestDaemon, name: &str) -> TcpStream {
    let open = tm_stats(daemon, name).connections;
    let stream = TcpStream::connect(daemon.tm_server(name)).await.unwrap();
    wait_until("the TM connection is open", PATIENCE, || {
        tm_stats(daemon, name).connections == open + 1
    })
    .await;
    stream
}

/// Sends `payloads` as source `kind:id` with sequences from `first`, and waits until the daemon
/// has stored them all (acknowledged and closed).
async fn send(daemon: &TestDaemon, kind: SourceKind, id: u32, first: u64, payloads: &[Vec<u8>]) {
    Client::store(daemon.addr(kind), kind, id, first, payloads).await;
}

fn server(name: &str, from: TmStart) -> TmServerConfig {
    TmServerConfig {
        name: name.into(),
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        framing: TmFraming::Ccsds,
        from,
        from_oldest_on_gap: false,
        apids: Vec::new(),
        sources: Vec::new(),
        kinds: vec![LIVE, REPLAY],
        max_connections: 16,
        max_connections_per_address: None,
    }
}

/// A telemetry packet of `apid` with `len` bytes of data, numbered `count`.
fn packet(apid: u16, count: u16, len: usize) -> Vec<u8> {
    let mut p = PrimaryHeader::telemetry(apid, count, len).encode().to_vec();
    p.extend((0..len).map(|i| (i as u16 ^ count) as u8));
    p
}

/// Packets of APIDs 100 and 200 in turn, `n` of them, numbered from `first`.
fn packets(first: u16, n: u16) -> Vec<Vec<u8>> {
    (first..first + n)
        .map(|i| packet(100 + 100 * (i % 2), i, 1 + usize::from(i) % 50))
        .collect()
}

/// Payloads that are not one whole space packet.
fn not_packets() -> Vec<Vec<u8>> {
    let whole = packet(5, 0, 10);
    let mut version_1 = whole.clone();
    version_1[0] |= 0x20;
    vec![
        b"not a packet".to_vec(),
        whole[..whole.len() - 1].to_vec(),
        [whole.clone(), whole.clone()].concat(),
        [whole, vec![0]].concat(),
        version_1,
        vec![0; 3],
    ]
}

/// Everything the server sends until it closes the connection (after the daemon drained).
async fn read_to_end(stream: &mut TcpStream) -> Vec<u8> {
    let mut bytes = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut bytes))
        .await
        .expect("the server closes the connection after the drain")
        .expect("read the TM connection");
    bytes
}

#[tokio::test]
async fn from_start_the_stored_packets_then_live_ones_each_once_and_nothing_else() {
    let dir = TempDir::new("tm-start");
    let mut config = archive_config(&dir.0);
    config.tm_servers = vec![server("yamcs", TmStart::Start)];
    let daemon = TestDaemon::open(config).await;
    let (stored, live) = (packets(0, 40), packets(40, 30));
    // Non-packets among the packets of one source, in its sequence.
    let mut before: Vec<Vec<u8>> = stored[..20].to_vec();
    before.extend(not_packets());
    before.extend_from_slice(&stored[20..]);
    send(&daemon, LIVE, 1, 0, &before).await;

    let mut client = connect(&daemon, "yamcs").await;
    send(&daemon, LIVE, 1, 1000, &live).await;
    send(&daemon, REPLAY, 1, 0, &not_packets()).await;
    daemon.shutdown_clean().await;

    let received = read_to_end(&mut client).await;
    assert_eq!(received, [stored, live].concat().concat());
}

#[tokio::test]
async fn from_now_only_packets_stored_after_the_connection() {
    let dir = TempDir::new("tm-now");
    let mut config = archive_config(&dir.0);
    config.tm_servers = vec![server("live", TmStart::Now)];
    let daemon = TestDaemon::open(config).await;
    send(&daemon, LIVE, 1, 0, &packets(0, 25)).await;

    let mut client = connect(&daemon, "live").await;
    let later = packets(25, 25);
    send(&daemon, LIVE, 1, 100, &later).await;
    send(&daemon, LIVE, 1, 200, &not_packets()).await;
    let counted = not_packets().len() as u64;
    wait_until("the non-packets are counted", PATIENCE, || {
        tm_stats(&daemon, "live").frames_not_packets == counted
    })
    .await;
    let stats = tm_stats(&daemon, "live");
    daemon.shutdown_clean().await;

    let received = read_to_end(&mut client).await;
    assert_eq!(received, later.concat());
    assert_eq!(stats.packets_sent, later.len() as u64);
    assert_eq!(stats.bytes_sent, received.len() as u64);
}

#[tokio::test]
async fn with_ccsds_asm_each_packet_follows_the_sync_marker() {
    let dir = TempDir::new("tm-asm");
    let mut config = archive_config(&dir.0);
    config.tm_servers = vec![TmServerConfig {
        framing: TmFraming::CcsdsAsm,
        ..server("cosmos", TmStart::Start)
    }];
    let daemon = TestDaemon::open(config).await;
    let sent = packets(0, 20);
    send(&daemon, REPLAY, 3, 0, &sent).await;
    let mut client = connect(&daemon, "cosmos").await;
    daemon.shutdown_clean().await;

    let expected: Vec<u8> = sent.iter().flat_map(|p| [&ASM[..], p].concat()).collect();
    assert_eq!(read_to_end(&mut client).await, expected);
}

#[tokio::test]
async fn apid_source_and_kind_filters_choose_the_packets() {
    let dir = TempDir::new("tm-filters");
    let mut config = archive_config(&dir.0);
    let source: SourceKey = (LIVE, 10100);
    config.tm_servers = vec![
        TmServerConfig {
            apids: vec![100],
            ..server("apid", TmStart::Start)
        },
        TmServerConfig {
            sources: vec![source],
            ..server("source", TmStart::Start)
        },
        TmServerConfig {
            kinds: vec![REPLAY],
            ..server("replay", TmStart::Start)
        },
    ];
    let daemon = TestDaemon::open(config).await;
    let (a, b, c) = (packets(0, 30), packets(30, 30), packets(60, 30));
    send(&daemon, LIVE, 10100, 0, &a).await;
    send(&daemon, LIVE, 7, 0, &b).await;
    send(&daemon, REPLAY, 10100, 0, &c).await;
    let mut clients = Vec::new();
    for name in ["apid", "source", "replay"] {
        clients.push(connect(&daemon, name).await);
    }
    daemon.shutdown_clean().await;

    let of_apid_100 = |packets: &[Vec<u8>]| -> Vec<u8> {
        let apid = |p: &Vec<u8>| PrimaryHeader::parse(p).unwrap().apid;
        packets
            .iter()
            .filter(|p| apid(p) == 100)
            .flatten()
            .copied()
            .collect()
    };
    let all_100 = [of_apid_100(&a), of_apid_100(&b), of_apid_100(&c)].concat();
    assert_eq!(read_to_end(&mut clients[0]).await, all_100);
    assert_eq!(read_to_end(&mut clients[1]).await, a.concat());
    assert_eq!(read_to_end(&mut clients[2]).await, c.concat());
}

#[tokio::test]
async fn a_client_that_never_reads_holds_back_neither_ingest_nor_other_clients() {
    let dir = TempDir::new("tm-stalled");
    let mut config = archive_config(&dir.0);
    config.tm_servers = vec![server("yamcs", TmStart::Start)];
    let daemon = TestDaemon::open(config).await;
    // A small receive window, so that the server's writes to it stop for good.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stalled = socket.connect(daemon.tm_server("yamcs")).await.unwrap();
    wait_until("the stalled connection is open", PATIENCE, || {
        tm_stats(&daemon, "yamcs").connections == 1
    })
    .await;
    let mut reader = connect(&daemon, "yamcs").await;

    // 8 MiB: more than the kernel buffers of the stalled connection hold.
    let big: Vec<Vec<u8>> = (0..4096).map(|i| packet(300, i, 2048)).collect();
    let expected = big.concat();
    let len = expected.len();
    let reading = tokio::spawn(async move {
        let mut received = vec![0; len];
        let read = reader.read_exact(&mut received).await.map(|_| received);
        (reader, read)
    });
    for (round, chunk) in big.chunks(512).enumerate() {
        send(&daemon, LIVE, 1, round as u64 * 1000, chunk).await;
    }
    assert_eq!(daemon.stats.snapshot().frames_archived, big.len() as u64);
    let (mut reader, read) = tokio::time::timeout(PATIENCE, reading)
        .await
        .expect("the reader gets every packet in time")
        .unwrap();
    assert!(read.unwrap() == expected, "the reader got every packet");
    // The stalled connection really stalled: it took less than everything.
    let sent = tm_stats(&daemon, "yamcs").packets_sent;
    assert!(sent < 2 * big.len() as u64, "{sent} packets sent");

    // The stalled client leaves; the other reads nothing more to the drain.
    drop(stalled);
    daemon.shutdown_clean().await;
    assert!(read_to_end(&mut reader).await.is_empty());
}

#[tokio::test]
async fn a_server_at_its_limit_closes_new_connections() {
    let dir = TempDir::new("tm-limit");
    let mut config = archive_config(&dir.0);
    config.tm_servers = vec![TmServerConfig {
        max_connections: 1,
        ..server("one", TmStart::Now)
    }];
    let daemon = TestDaemon::open(config).await;
    let mut first = connect(&daemon, "one").await;
    let mut second = TcpStream::connect(daemon.tm_server("one")).await.unwrap();
    assert!(read_to_end(&mut second).await.is_empty());
    assert_eq!(tm_stats(&daemon, "one").connections_refused, 1);
    let sent = packets(0, 5);
    send(&daemon, LIVE, 1, 0, &sent).await;
    daemon.shutdown_clean().await;
    assert_eq!(read_to_end(&mut first).await, sent.concat());
}

#[tokio::test]
async fn a_forward_sends_each_packet_as_one_datagram() {
    let dir = TempDir::new("tm-forward");
    let tool = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut config = archive_config(&dir.0);
    config.tm_forwards = vec![TmForwardConfig {
        name: "tools".into(),
        to: tool.local_addr().unwrap(),
        from: TmStart::Start,
        from_oldest_on_gap: false,
        apids: Vec::new(),
        sources: Vec::new(),
        kinds: vec![LIVE, REPLAY],
    }];
    let daemon = TestDaemon::open(config).await;
    let mut sent = packets(0, 20);
    send(&daemon, LIVE, 1, 0, &sent).await;
    send(&daemon, LIVE, 1, 100, &not_packets()).await;
    let later = packets(20, 20);
    send(&daemon, REPLAY, 2, 0, &later).await;
    sent.extend(later);

    let mut buf = vec![0u8; 70_000];
    for (i, expected) in sent.iter().enumerate() {
        let len = tokio::time::timeout(PATIENCE, tool.recv(&mut buf))
            .await
            .expect("a datagram in time")
            .unwrap();
        assert_eq!(&buf[..len], &expected[..], "datagram {i}");
    }
    // Counted once its send returned, which may be after the datagram arrived.
    wait_until("every datagram counted", PATIENCE, || {
        tm_stats(&daemon, "tools").packets_sent == sent.len() as u64
    })
    .await;
    let stats = tm_stats(&daemon, "tools");
    assert_eq!(stats.frames_not_packets, not_packets().len() as u64);
    daemon.shutdown_clean().await;
}

/// A TM connection from the start that falls behind retention (it reads nothing while 20 MB go
/// into an archive bounded to 2 MiB): by default it is closed without the packets stored after
/// the deletion; with `from_oldest_on_gap` it goes on at the oldest packet left, and what it
/// received and what the server counted skipped are every packet stored.
async fn behind_retention(from_oldest_on_gap: bool) -> (Vec<u8>, TmStats) {
    let dir = TempDir::new("tm-retention");
    let mut config = archive_config(&dir.0);
    config.archive.segment_bytes = 256 << 10;
    config.archive.retention.max_bytes = Some(2 << 20);
    config.archive.retention.check_interval = std::time::Duration::from_millis(20);
    let mut yamcs = server("yamcs", TmStart::Start);
    yamcs.from_oldest_on_gap = from_oldest_on_gap;
    config.tm_servers = vec![yamcs];
    let daemon = TestDaemon::open(config).await;
    let mut client = connect(&daemon, "yamcs").await;
    let bulk: Vec<Vec<u8>> = (0..BULK).map(|i| packet(100, i, 1000)).collect();
    for (chunk, first) in bulk.chunks(1000).zip((0..).step_by(1000)) {
        send(&daemon, LIVE, 1, first, chunk).await;
    }
    // The newest packet, which retention never deletes.
    send(&daemon, LIVE, 2, 0, &[packet(300, 0, 8)]).await;
    let received = tokio::time::timeout(PATIENCE, read_to_newest(&mut client))
        .await
        .expect("the stream ends or reaches the newest packet in time");
    let stats = tm_stats(&daemon, "yamcs");
    daemon.shutdown_clean().await;
    (received, stats)
}

/// What the server sends until the newest packet (APID 300) or the end of the connection.
async fn read_to_newest(stream: &mut TcpStream) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut buf = vec![0; 1 << 16];
    while !apids(whole_packets(&bytes)).contains(&300) {
        match stream.read(&mut buf).await.expect("read the TM connection") {
            0 => break,
            n => bytes.extend_from_slice(&buf[..n]),
        }
    }
    bytes
}

/// The whole packets at the start of `stream`.
fn whole_packets(stream: &[u8]) -> &[u8] {
    let mut at = 0;
    while let Some(header) = PrimaryHeader::parse(&stream[at..]) {
        if at + header.packet_len() > stream.len() {
            break;
        }
        at += header.packet_len();
    }
    &stream[..at]
}

/// Packets of 1,000 bytes of data stored by the bulk of [`behind_retention`].
const BULK: u16 = 16_000;

/// The APIDs of a stream of back-to-back packets, in order.
fn apids(mut stream: &[u8]) -> Vec<u16> {
    let mut apids = Vec::new();
    while let Some(header) = PrimaryHeader::parse(stream) {
        apids.push(header.apid);
        stream = &stream[header.packet_len()..];
    }
    assert!(stream.is_empty(), "whole packets");
    apids
}

#[tokio::test]
async fn a_connection_behind_retention_is_closed_by_default() {
    let (received, stats) = behind_retention(false).await;
    let apids = apids(&received);
    assert!(!apids.contains(&300), "closed before the newest packet");
    assert!(apids.len() < usize::from(BULK), "{} packets", apids.len());
    assert_eq!(stats.frames_skipped, 0);
}

#[tokio::test]
async fn with_from_oldest_on_gap_a_connection_goes_on_and_counts_what_it_skipped() {
    let (received, stats) = behind_retention(true).await;
    let apids = apids(&received);
    assert_eq!(apids.last(), Some(&300), "the newest packet, at the end");
    let bulk = apids.iter().filter(|&&apid| apid == 100).count() as u64;
    assert!(stats.frames_skipped > 0);
    assert_eq!(
        bulk + stats.frames_skipped,
        u64::from(BULK),
        "received or skipped, once"
    );
}
