//! Ground-segment links (`[[links]]`): stations' CCSDS packets over TCP (back to back, after a
//! sync marker, behind a length field, inside transfer frames), UDP and KISS become frames of
//! the sources their APIDs map to; redundant stations are merged; bad input costs only its own
//! connection or packet.
//! (`tests/ground_segment.rs` checks the same against third-party clients.)

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use aggregator::domain::transfer_frame_counts::TransferFrameCounts;
use aggregator::protocol::ccsds::{self, Framing, PrimaryHeader};
use aggregator::protocol::transfer_frames::{
    TransferFrameFormat, TransferFrameKind, TransferFrameWriter,
};
use aggregator::protocol::{ax25, kiss};
use aggregator::stats::LinkState;
use aggregator::{Config, Priority, SourceKind};
use common::{test_config, wait_until, Archive, TestDaemon, PATIENCE};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream, UdpSocket};

const LIVE: SourceKind = SourceKind::LiveUplink;

/// Where a source numbered by its APID's count starts: a group reads its first packet of an APID
/// one cycle (16,384) above its count.
const UP: u64 = 16_384;

/// A `[[links]]` entry on loopback port 0, with its source and other rules in `rules` (TOML
/// lines).
fn link(name: &str, transport: &str, framing: &str, rules: &str) -> String {
    format!(
        "[[links]]\nname = \"{name}\"\ntransport = \"{transport}\"\naddress = \"127.0.0.1:0\"\n\
         framing = \"{framing}\"\n{rules}\n"
    )
}

/// The test config with the `[[links]]` of `toml`.
fn with_links(toml: &str) -> Config {
    let parsed = Config::parse(toml, Path::new("links.toml")).expect("valid [[links]]");
    let mut config = test_config();
    config.links = parsed.links;
    config
}

/// A telemetry packet of `apid` and `count` whose data says which one it is.
fn packet(apid: u16, count: u16, len: usize) -> Vec<u8> {
    let mut data = format!("apid {apid} count {count} ").into_bytes();
    data.resize(len.max(data.len()), b'.');
    let mut p = PrimaryHeader::telemetry(apid, count, data.len())
        .encode()
        .to_vec();
    p.extend_from_slice(&data);
    p
}

/// A 4-byte length of the packet in front of it, as a `length-prefix` link's rule ...
const FOUR_BYTE_LENGTH: &str = "length = { offset = 0, size = 4, adjustment = 4, strip = 4 }";

/// ... and as the station frames its packets.
fn four_byte_length() -> Framing {
    Framing::LengthPrefix(ccsds::LengthField {
        offset: 0,
        size: 4,
        adjustment: 4,
        strip: 4,
    })
}

/// `(apid, count)` of every stored packet, checked to be the packet as sent.
fn stored_packets(archive: &Archive) -> Vec<(u16, u16)> {
    archive
        .records()
        .iter()
        .map(|r| {
            let h = PrimaryHeader::parse(&r.payload).expect("a stored packet has its header");
            assert_eq!(
                r.payload,
                packet(h.apid, h.sequence_count, r.payload.len() - 6)
            );
            (h.apid, h.sequence_count)
        })
        .collect()
}

async fn wait_for_packets(archive: &Archive, n: usize) {
    wait_until(&format!("{n} packets stored"), PATIENCE, || {
        archive.len() >= n
    })
    .await;
}

/// Back-to-back packets of two APIDs become one source each, with the count as the sequence;
/// an emergency APID takes the emergency lane; the source shows its station and APID.
#[tokio::test]
async fn ccsds_packets_become_one_source_per_apid() {
    let config = with_links(&link(
        "gs-north",
        "tcp-listen",
        "ccsds",
        "apid_base = 10000\nemergency_apids = [7]",
    ));
    let (archive, sink) = Archive::open();
    let daemon = TestDaemon::start(config, sink).await;
    let mut station = TcpStream::connect(daemon.links["gs-north"]).await.unwrap();
    let mut wire = Vec::new();
    for count in 0..50u16 {
        wire.extend(packet(100, count, 20));
        wire.extend(packet(101, count, 30));
    }
    wire.extend(packet(7, 0, 10));
    // Written in uneven pieces: a packet may arrive split across reads.
    for piece in wire.chunks(37) {
        station.write_all(piece).await.unwrap();
    }
    wait_for_packets(&archive, 101).await;
    let packets = stored_packets(&archive);
    assert_eq!(packets.len(), 101);
    assert_eq!(
        archive.sequences(LIVE, 10100),
        (UP..UP + 50).collect::<Vec<_>>()
    );
    assert_eq!(
        archive.sequences(LIVE, 10101),
        (UP..UP + 50).collect::<Vec<_>>()
    );
    assert_eq!(
        archive.sequences_with(LIVE, 10007, Priority::Emergency),
        [UP]
    );
    let sources = daemon.router.sources().await.unwrap();
    let north = sources.iter().find(|s| s.id == 10100).unwrap();
    assert_eq!(north.station.as_deref(), Some("gs-north APID 100"));
    let link = &daemon.stats.links()[0];
    assert_eq!((link.packets, link.state), (101, LinkState::Connected));
    drop(station);
    let report = daemon.shutdown().await;
    assert!(report.is_clean(), "{report:?}");
}

/// The 14-bit count extends across its wrap: 20,000 packets are sequences 0 to 19,999.
#[tokio::test]
async fn the_count_extends_across_its_wrap() {
    let config = with_links(&link("gs", "tcp-listen", "ccsds", "apid_base = 0"));
    let (archive, sink) = Archive::open();
    let daemon = TestDaemon::start(config, sink).await;
    let mut station = TcpStream::connect(daemon.links["gs"]).await.unwrap();
    let mut wire = Vec::new();
    for i in 0..20_000u32 {
        wire.extend(packet(5, (i % 16_384) as u16, 8));
    }
    station.write_all(&wire).await.unwrap();
    wait_for_packets(&archive, 20_000).await;
    assert_eq!(
        archive.sequences(LIVE, 5),
        (UP..UP + 20_000).collect::<Vec<_>>()
    );
    assert_eq!(daemon.stats.links()[0].gaps, 0);
    daemon.shutdown().await;
}

/// Two stations receive the same spacecraft, each with its own losses, at once: the archive
/// holds the union, each packet once, and each link counts the copies it delivered.
#[tokio::test]
async fn redundant_stations_store_the_union_once() {
    let config = with_links(
        &[
            link(
                "north",
                "tcp-listen",
                "ccsds",
                "group = \"sat-a\"\napid_base = 10000",
            ),
            link(
                "south",
                "tcp-listen",
                "ccsds-asm",
                "group = \"sat-a\"\napid_base = 20000",
            ),
        ]
        .concat(),
    );
    let (archive, sink) = Archive::open();
    let daemon = TestDaemon::start(config, sink).await;
    let sent: Vec<(u16, u16)> = (0..3000u16).flat_map(|c| [(100, c), (101, c)]).collect();
    // North loses every 7th packet, south every 5th and a stretch of 200 (a dropout).
    let north: Vec<_> = sent
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 7 != 3)
        .map(|(_, p)| *p)
        .collect();
    let south: Vec<_> = sent
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 5 != 1 && !(2000..2200).contains(i))
        .map(|(_, p)| *p)
        .collect();
    let feed = |addr, packets: Vec<(u16, u16)>, framing: Framing| async move {
        let mut wire = Vec::new();
        for (apid, count) in packets {
            ccsds::encode(&framing, &packet(apid, count, 40), &mut wire);
        }
        let mut station = TcpStream::connect(addr).await.unwrap();
        for piece in wire.chunks(1500) {
            station.write_all(piece).await.unwrap();
        }
        station
    };
    // What either station received; what both lost is lost.
    let union: BTreeSet<_> = north.iter().chain(&south).copied().collect();
    assert!(union.len() < sent.len());
    let (a, b) = tokio::join!(
        feed(daemon.links["north"], north.clone(), Framing::Ccsds),
        feed(daemon.links["south"], south.clone(), Framing::CcsdsAsm)
    );
    wait_until("the union stored", PATIENCE, || {
        archive.len() >= union.len()
    })
    .await;
    wait_until("every copy counted", PATIENCE, || {
        daemon.stats.links().iter().map(|l| l.copies).sum::<u64>() as usize + union.len()
            == north.len() + south.len()
    })
    .await;
    let stored = stored_packets(&archive);
    let unique: BTreeSet<_> = stored.iter().copied().collect();
    assert_eq!(stored.len(), unique.len(), "a packet stored twice");
    assert_eq!(unique, union);
    drop((a, b));
    assert!(daemon.shutdown().await.is_clean());
}

/// A group's merge remembers as many counts as the most any of its links asks for: a packet the
/// first station lost, which the second delivers 5 counts behind, is stored though the first
/// link's `merge_window` is 1.
#[tokio::test]
async fn a_group_s_merge_window_is_the_largest_of_its_links() {
    let config = with_links(
        &[
            link(
                "north",
                "tcp-listen",
                "ccsds",
                "group = \"sat-a\"\napid_base = 10000\nmerge_window = 1",
            ),
            link(
                "south",
                "tcp-listen",
                "ccsds",
                "group = \"sat-a\"\napid_base = 20000\nmerge_window = 16",
            ),
        ]
        .concat(),
    );
    let (archive, sink) = Archive::open();
    let daemon = TestDaemon::start(config, sink).await;
    let send = |addr, counts: Vec<u16>| async move {
        let mut wire = Vec::new();
        for count in counts {
            ccsds::encode(&Framing::Ccsds, &packet(100, count, 40), &mut wire);
        }
        let mut station = TcpStream::connect(addr).await.unwrap();
        station.write_all(&wire).await.unwrap();
        station
    };
    let north = send(daemon.links["north"], (0..11).filter(|&c| c != 5).collect()).await;
    wait_for_packets(&archive, 10).await;
    let south = send(daemon.links["south"], vec![5]).await;
    wait_until("the late packet placed", PATIENCE, || {
        archive.len() + daemon.stats.links()[1].copies as usize == 11
    })
    .await;
    assert_eq!(archive.len(), 11, "the packet north lost is stored");
    let mut stored = stored_packets(&archive);
    stored.sort();
    assert_eq!(stored, (0..11).map(|c| (100, c)).collect::<Vec<_>>());
    drop((north, south));
    assert!(daemon.shutdown().await.is_clean());
}

/// A packet of a bad version closes that connection after the packets before it; garbage on
/// a marker link, and a marker followed by a header of another version, are skipped to the next
/// marker with a valid header; other links go on.
#[tokio::test]
async fn bad_input_costs_only_its_connection() {
    let config = with_links(
        &[
            link(
                "plain",
                "tcp-listen",
                "ccsds",
                "source_id = 500\nmax_packet_bytes = 1024",
            ),
            link("marked", "tcp-listen", "ccsds-asm", "source_id = 600"),
        ]
        .concat(),
    );
    let (archive, sink) = Archive::open();
    let daemon = TestDaemon::start(config, sink).await;
    let mut plain = TcpStream::connect(daemon.links["plain"]).await.unwrap();
    let mut wire = packet(1, 0, 10);
    wire.extend(packet(1, 1, 10));
    let mut bad = packet(1, 2, 10);
    bad[0] |= 0x20;
    wire.extend(bad);
    wire.extend(packet(1, 3, 10));
    plain.write_all(&wire).await.unwrap();

    let mut marked = TcpStream::connect(daemon.links["marked"]).await.unwrap();
    let mut wire = Vec::new();
    ccsds::encode(&Framing::CcsdsAsm, &packet(2, 0, 10), &mut wire);
    wire.extend_from_slice(b"line noise \x1A\xCF");
    ccsds::encode(&Framing::CcsdsAsm, &packet(2, 1, 10), &mut wire);
    let mut other_version = packet(2, 9, 10);
    other_version[0] |= 0x20;
    ccsds::encode(&Framing::CcsdsAsm, &other_version, &mut wire);
    ccsds::encode(&Framing::CcsdsAsm, &packet(2, 2, 10), &mut wire);
    marked.write_all(&wire).await.unwrap();

    wait_for_packets(&archive, 5).await;
    wait_until("the bad connection closed", PATIENCE, || {
        daemon.stats.links()[0].bad_input == 1
    })
    .await;
    let links = daemon.stats.links();
    assert!(
        links[0]
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("packet version 1"),
        "{links:?}"
    );
    let false_marker = ccsds::ASM.len() + other_version.len();
    assert_eq!(links[1].skipped_bytes as usize, 13 + false_marker);
    assert_eq!((links[1].bad_input, links[1].connections), (0, 1));
    assert_eq!(
        links[1].last_error, None,
        "the marker link's connection goes on"
    );
    assert_eq!(archive.sequences(LIVE, 500), [0, 1]);
    assert_eq!(archive.sequences(LIVE, 600), [0, 1, 2]);
    // The link takes a new connection of the station.
    let mut again = TcpStream::connect(daemon.links["plain"]).await.unwrap();
    again.write_all(&packet(1, 3, 10)).await.unwrap();
    wait_for_packets(&archive, 6).await;
    assert_eq!(archive.sequences(LIVE, 500), [0, 1, 2]);
    assert!(daemon.shutdown().await.is_clean());
}

/// A length-prefixed frame whose content is not exactly one whole packet (shorter than a header,
/// or a byte more or less than its header says) is dropped and counted as bad input, as a KISS
/// frame or a datagram is; the connection goes on.
#[tokio::test]
async fn a_length_prefixed_frame_that_is_not_one_packet_is_dropped_and_counted() {
    let config = with_links(&link(
        "framed",
        "tcp-listen",
        "length-prefix",
        &format!("source_id = 700\n{FOUR_BYTE_LENGTH}"),
    ));
    let (archive, sink) = Archive::open();
    let daemon = TestDaemon::start(config, sink).await;
    let framing = four_byte_length();
    let mut wire = Vec::new();
    ccsds::encode(&framing, &packet(1, 0, 10), &mut wire);
    // docs/ground-segment.md's example: three bytes of content.
    wire.extend_from_slice(&[0x00, 0x00, 0x00, 0x03, 0x00, 0x29, 0xC0]);
    let mut longer = packet(1, 1, 10);
    longer.push(0);
    ccsds::encode(&framing, &longer, &mut wire);
    let mut shorter = packet(1, 1, 10);
    shorter.pop();
    ccsds::encode(&framing, &shorter, &mut wire);
    ccsds::encode(&framing, &packet(1, 1, 10), &mut wire);
    let mut station = TcpStream::connect(daemon.links["framed"]).await.unwrap();
    station.write_all(&wire).await.unwrap();
    wait_for_packets(&archive, 2).await;
    let records: Vec<_> = archive
        .records()
        .iter()
        .map(|r| r.payload.to_vec())
        .collect();
    assert_eq!(records, [packet(1, 0, 10), packet(1, 1, 10)]);
    let link = &daemon.stats.links()[0];
    assert_eq!((link.bad_input, link.packets), (3, 2), "{link:?}");
    assert_eq!((link.connections, link.state), (1, LinkState::Connected));
    assert_eq!(link.last_error, None, "the connection goes on");
    drop(station);
    assert!(daemon.shutdown().await.is_clean());
}

/// A station's header holds the earth-receive time (`earth_time`): each packet is stored with
/// the time of the frame it came in, as the docs' example says.
#[tokio::test]
async fn a_length_prefixed_header_gives_the_earth_receive_time() {
    let rules = "source_id = 700\nlength = { offset = 0, size = 4, adjustment = 12, strip = 12 }\n\
                 earth_time = { offset = 4, unit = \"us\" }";
    let config = with_links(&link("framed", "tcp-listen", "length-prefix", rules));
    let (archive, sink) = Archive::open();
    let daemon = TestDaemon::start(config, sink).await;
    let mut wire = Vec::new();
    for (i, micros) in [(0u16, 1_700_000_000_000_001u64), (1, 1_700_000_000_500_000)] {
        let p = packet(1, i, 10);
        wire.extend_from_slice(&(p.len() as u32).to_be_bytes());
        wire.extend_from_slice(&micros.to_be_bytes());
        wire.extend_from_slice(&p);
    }
    let mut station = TcpStream::connect(daemon.links["framed"]).await.unwrap();
    station.write_all(&wire).await.unwrap();
    wait_for_packets(&archive, 2).await;
    let times: Vec<_> = (archive.records().iter())
        .map(|r| r.reception.as_ref().and_then(|r| r.received.earth_unix_ns))
        .collect();
    assert_eq!(
        times,
        [
            Some(1_700_000_000_000_001_000),
            Some(1_700_000_000_500_000_000)
        ]
    );
    assert_eq!(stored_packets(&archive), [(1, 0), (1, 1)]);
    drop(station);
    assert!(daemon.shutdown().await.is_clean());
}

/// A TNC the test plays, dialled by a KISS link named `tnc` with `rules`, and the daemon.
async fn kiss_tnc(rules: &str) -> (TcpListener, Archive, TestDaemon) {
    let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = server.local_addr().unwrap();
    let config = with_links(&format!(
        "[[links]]\nname = \"tnc\"\ntransport = \"tcp-connect\"\naddress = \"{address}\"\n\
         framing = \"kiss\"\n{rules}\n"
    ));
    let (archive, sink) = Archive::open();
    let daemon = TestDaemon::start(config, sink).await;
    (server, archive, daemon)
}

/// The TNC `server` takes the daemon's dial and sends `wire`; returns once the link read it all,
/// which `copies` (the link's count of copies after it) tells.
async fn tnc_sends(
    server: &TcpListener,
    daemon: &TestDaemon,
    wire: &[u8],
    copies: u64,
) -> TcpStream {
    let (mut tnc, _) = tokio::time::timeout(PATIENCE, server.accept())
        .await
        .unwrap()
        .unwrap();
    tnc.write_all(wire).await.unwrap();
    wait_until("every frame read", PATIENCE, || {
        daemon.stats.links()[0].copies == copies
    })
    .await;
    tnc
}

/// The daemon dials a KISS server, takes its data frames (escapes undone, a broken escape
/// dropped alone), and dials again when the server closes.
#[tokio::test]
async fn a_kiss_link_dials_out_and_again_after_a_loss() {
    let (server, archive, daemon) = kiss_tnc("apid_base = 0\nreconnect_min_ms = 10").await;
    // Data with FEND and FESC in it, so that escapes are exercised.
    let tricky = |count| {
        let mut p = packet(3, count, 4);
        p.extend_from_slice(&[kiss::FEND, kiss::FESC]);
        p[5] += 2;
        p
    };
    let (mut tnc, _) = tokio::time::timeout(PATIENCE, server.accept())
        .await
        .unwrap()
        .unwrap();
    let mut wire = Vec::new();
    kiss::encode(0, &tricky(0), &mut wire);
    wire.extend_from_slice(&[kiss::FEND, 0x00, 0x08, kiss::FESC, 0x42, kiss::FEND]);
    kiss::encode(0, &tricky(1), &mut wire);
    tnc.write_all(&wire).await.unwrap();
    wait_until("two packets", PATIENCE, || archive.len() == 2).await;
    drop(tnc);
    let (mut tnc, _) = tokio::time::timeout(PATIENCE, server.accept())
        .await
        .unwrap()
        .unwrap();
    let mut wire = Vec::new();
    kiss::encode(0, &tricky(2), &mut wire);
    tnc.write_all(&wire).await.unwrap();
    wait_until("the third packet", PATIENCE, || archive.len() == 3).await;
    let records = archive
        .records()
        .iter()
        .map(|r| r.payload.to_vec())
        .collect::<Vec<_>>();
    assert_eq!(records, [tricky(0), tricky(1), tricky(2)]);
    let link = &daemon.stats.links()[0];
    assert_eq!((link.bad_input, link.connections), (1, 2));
    assert!(daemon.shutdown().await.is_clean());
}

/// A TNC's KISS frames hold AX.25 UI frames: the packet behind the header is stored once, a
/// listed sender's callsign picks its source (others go by APID), a decoder's newline after the
/// packet is counted in `trailing_bytes`, another port's frames are passed over, and a frame that
/// is not a UI frame is bad input that costs only itself.
#[tokio::test]
async fn a_kiss_link_takes_packets_out_of_ax25_frames() {
    let rules = "kiss_payload = \"ax25\"\nkiss_port = 0\napid_base = 0\n\
                 callsign_sources = { \"N0CALL-1\" = 500 }";
    let (server, archive, daemon) = kiss_tnc(rules).await;
    let call = |text: &str| text.parse::<ax25::Callsign>().unwrap();
    let ui = |from: &str, via: &[&str], info: &[u8]| {
        let via: Vec<_> = via.iter().map(|v| call(v)).collect();
        let mut frame = Vec::new();
        ax25::encode(call("CQ"), call(from), &via, info, &mut frame);
        frame
    };
    let with_newline = |mut packet: Vec<u8>| {
        packet.push(b'\n');
        packet
    };
    let mut wire = Vec::new();
    let first = ui("N0CALL-1", &[], &with_newline(packet(3, 0, 8)));
    kiss::encode(0, &first, &mut wire);
    kiss::encode(
        0,
        &ui("N0CALL-2", &["WIDE1-1"], &packet(3, 1, 8)),
        &mut wire,
    );
    kiss::encode(1, &ui("N0CALL-1", &[], &packet(3, 2, 8)), &mut wire);
    let mut not_ui = ui("N0CALL-1", &[], &packet(3, 3, 8));
    not_ui[14] = 0x10;
    kiss::encode(0, &not_ui, &mut wire);
    kiss::encode(
        0,
        &ui("N0CALL-1", &[], &with_newline(packet(4, 0, 8))),
        &mut wire,
    );
    // The same frame again: a copy.
    kiss::encode(0, &first, &mut wire);
    let _tnc = tnc_sends(&server, &daemon, &wire, 1).await;
    // The copy is known at the link, before the packets ahead of it reach the archive.
    wait_for_packets(&archive, 3).await;
    let mut stored = stored_packets(&archive);
    stored.sort();
    assert_eq!(stored, [(3, 0), (3, 1), (4, 0)]);
    assert_eq!(archive.sequences(LIVE, 500).len(), 2);
    assert_eq!(archive.sequences(LIVE, 3), [UP + 1]);
    let link = &daemon.stats.links()[0];
    assert_eq!(link.trailing_bytes, 3, "the newline of three frames");
    assert_eq!((link.bad_input, link.other_port_frames), (1, 1));
    assert_eq!(
        (link.ax25_frames, link.packets),
        (4, 3),
        "UI frames, packets stored"
    );
    assert!(daemon.shutdown().await.is_clean());
}

/// Two spacecraft a station hears, told apart by `callsign_sources`, may use the same APID and
/// counts: each counts on its own, so neither's packets are taken for copies of the other's, even
/// byte for byte the same; a sender's own repeat is still a copy.
#[tokio::test]
async fn senders_that_share_an_apid_each_keep_their_packets() {
    let rules = "kiss_payload = \"ax25\"\n\
                 callsign_sources = { \"N0CALL-1\" = 500, \"N0CALL-2\" = 501 }";
    let (server, archive, daemon) = kiss_tnc(rules).await;
    let ui = |from: &str, count| {
        let mut frame = Vec::new();
        let (to, from) = ("CQ".parse().unwrap(), from.parse().unwrap());
        ax25::encode(to, from, &[], &packet(7, count, 8), &mut frame);
        frame
    };
    let mut wire = Vec::new();
    for (one, two) in (5000..5004).zip(4998..5002) {
        kiss::encode(0, &ui("N0CALL-1", one), &mut wire);
        kiss::encode(0, &ui("N0CALL-2", two), &mut wire);
    }
    kiss::encode(0, &ui("N0CALL-1", 5001), &mut wire);
    let _tnc = tnc_sends(&server, &daemon, &wire, 1).await;
    wait_for_packets(&archive, 8).await;
    let mut stored = stored_packets(&archive);
    stored.sort();
    let counts = [4998, 4999, 5000, 5000, 5001, 5001, 5002, 5003];
    assert_eq!(stored, counts.map(|count| (7, count)));
    assert_eq!(archive.sequences(LIVE, 500).len(), 4);
    assert_eq!(archive.sequences(LIVE, 501).len(), 4);
    let link = &daemon.stats.links()[0];
    assert_eq!((link.copies, link.gaps, link.unmatched), (1, 0, 0));
    assert!(daemon.shutdown().await.is_clean());
}

/// UDP: one packet per datagram; a datagram that is not one whole packet is dropped alone.
/// Unmatched APIDs are refused or go to the default source, as configured, and are counted.
#[tokio::test]
async fn udp_datagrams_and_unmatched_apids() {
    let config = with_links(
        &[
            link("to-lab", "udp", "ccsds", "apid_sources = { \"100\" = 700 }"),
            link(
                "to-lab-2",
                "udp",
                "ccsds",
                "apid_sources = { \"100\" = 800 }\nunmatched = \"default\"\ndefault_source = 899",
            ),
        ]
        .concat(),
    );
    let (archive, sink) = Archive::open();
    let daemon = TestDaemon::start(config, sink).await;
    let sender = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for link in ["to-lab", "to-lab-2"] {
        let to = daemon.links[link];
        sender.send_to(&packet(100, 0, 10), to).await.unwrap();
        let mut short = packet(100, 1, 10);
        short.truncate(12);
        sender.send_to(&short, to).await.unwrap();
        sender.send_to(&packet(200, 0, 10), to).await.unwrap();
        sender.send_to(&packet(100, 1, 10), to).await.unwrap();
    }
    wait_for_packets(&archive, 5).await;
    wait_until("every datagram read", PATIENCE, || {
        let l = daemon.stats.links();
        l[0].bad_input == 1 && l[0].unmatched == 1 && l[1].bad_input == 1 && l[1].packets == 3
    })
    .await;
    assert_eq!(
        daemon.stats.links()[1].unmatched,
        1,
        "a packet stored as the default source is counted too"
    );
    assert_eq!(archive.sequences(LIVE, 700), [UP, UP + 1]);
    assert_eq!(archive.sequences(LIVE, 800), [UP, UP + 1]);
    assert_eq!(
        archive.sequences(LIVE, 899),
        [0],
        "the default source counts arrivals"
    );
    assert!(daemon.shutdown().await.is_clean());
}

/// A packet stored before, sent again by a station that reconnects, is not stored twice; and
/// packets on their way when the drain starts are all stored.
#[tokio::test]
async fn a_station_that_resends_after_reconnecting_adds_nothing() {
    let config = with_links(&link("gs", "tcp-listen", "ccsds", "apid_base = 0"));
    let (archive, sink) = Archive::open();
    let daemon = TestDaemon::start(config, sink).await;
    let send = |range: std::ops::Range<u16>| {
        let addr = daemon.links["gs"];
        async move {
            let mut station = TcpStream::connect(addr).await.unwrap();
            let wire: Vec<u8> = range.flat_map(|c| packet(9, c, 16)).collect();
            station.write_all(&wire).await.unwrap();
            station
        }
    };
    let first = send(0..100).await;
    wait_for_packets(&archive, 100).await;
    drop(first);
    let second = send(50..150).await;
    wait_for_packets(&archive, 150).await;
    let by_count: BTreeMap<u64, usize> =
        archive
            .sequences(LIVE, 9)
            .into_iter()
            .fold(BTreeMap::new(), |mut m, s| {
                *m.entry(s).or_default() += 1;
                m
            });
    assert_eq!(by_count.len(), 150);
    assert!(
        by_count.values().all(|&n| n == 1),
        "stored twice: {by_count:?}"
    );
    drop(second);
    let report = daemon.shutdown().await;
    assert!(report.is_clean());
    assert_eq!(report.accepted, 150);
}

/// A station that connects again while its old connection is still open replaces it: the old
/// one is closed after what it sent is stored, and the new one feeds the same sources. Packets
/// here come behind a 4-byte length (`framing = "length-prefix"`).
#[tokio::test]
async fn a_new_connection_of_the_station_replaces_the_old_one() {
    use tokio::io::AsyncReadExt;
    let config = with_links(&link(
        "gs",
        "tcp-listen",
        "length-prefix",
        &format!("{FOUR_BYTE_LENGTH}\napid_base = 0"),
    ));
    let (archive, sink) = Archive::open();
    let daemon = TestDaemon::start(config, sink).await;
    let framing = four_byte_length();
    let wire = |counts: std::ops::Range<u16>| {
        let mut wire = Vec::new();
        for count in counts {
            ccsds::encode(&framing, &packet(4, count, 12), &mut wire);
        }
        wire
    };
    let mut old = TcpStream::connect(daemon.links["gs"]).await.unwrap();
    old.write_all(&wire(0..10)).await.unwrap();
    wait_for_packets(&archive, 10).await;
    let mut new = TcpStream::connect(daemon.links["gs"]).await.unwrap();
    new.write_all(&wire(10..20)).await.unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(PATIENCE, old.read_to_end(&mut rest)).await;
    assert!(
        matches!(closed, Ok(Ok(0))),
        "the old connection is closed: {closed:?}"
    );
    wait_for_packets(&archive, 20).await;
    assert_eq!(
        archive.sequences(LIVE, 4),
        (UP..UP + 20).collect::<Vec<_>>()
    );
    assert_eq!(daemon.stats.links()[0].connections, 2);
    drop(new);
    assert!(daemon.shutdown().await.is_clean());
}

/// A flood of connections to a station port holds nothing: each replaces the one before and is
/// closed, at most a few are open at once, and the newest feeds the link.
#[tokio::test]
async fn a_flood_of_station_connections_is_closed_and_the_newest_feeds_the_link() {
    use tokio::io::AsyncReadExt;
    let config = with_links(&link("gs", "tcp-listen", "ccsds", "apid_base = 0"));
    let (archive, sink) = Archive::open();
    let daemon = TestDaemon::start(config, sink).await;
    let mut flood = Vec::new();
    for _ in 0..200 {
        flood.push(TcpStream::connect(daemon.links["gs"]).await.unwrap());
    }
    let mut newest = TcpStream::connect(daemon.links["gs"]).await.unwrap();
    for (i, stream) in flood.iter_mut().enumerate() {
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut rest)).await;
        assert!(
            matches!(closed, Ok(Ok(0))),
            "flooding connection {i} is closed: {closed:?}"
        );
    }
    let wire: Vec<u8> = (0..10).flat_map(|count| packet(4, count, 12)).collect();
    newest.write_all(&wire).await.unwrap();
    wait_for_packets(&archive, 10).await;
    assert_eq!(
        archive.sequences(LIVE, 4),
        (UP..UP + 10).collect::<Vec<_>>()
    );
    drop(newest);
    assert!(daemon.shutdown().await.is_clean());
}

/// On a segment archive: the extended count continues across a restart of the daemon (the
/// station's counts wrapped during the first run), packets the station sends again after the
/// restart are not stored twice, and a gap in the counts is counted: by the link, and by
/// `archive verify` as a count jump, not as frames the archive is missing.
#[tokio::test]
async fn counts_continue_across_a_restart_and_gaps_are_counted() {
    let dir = common::TempDir::new("links-restart");
    let mut config = common::archive_config(&dir.0);
    config.links = with_links(&link("gs", "tcp-listen", "ccsds", "apid_base = 0")).links;
    let start = |config: Config| async move {
        let archive =
            aggregator::archive::write::open(&config.archive, 1).expect("open the archive");
        let build = |config| aggregator::Daemon::new(config, archive);
        TestDaemon::start_built(config, build, |_| ()).await.0
    };
    let send = |daemon: &TestDaemon, counts: Vec<u16>| {
        let addr = daemon.links["gs"];
        async move {
            let wire: Vec<u8> = counts.into_iter().flat_map(|c| packet(5, c, 8)).collect();
            let mut station = TcpStream::connect(addr).await.unwrap();
            station.write_all(&wire).await.unwrap();
            station
        }
    };
    let stored = |daemon: &TestDaemon| daemon.stats.links()[0].packets;

    let daemon = start(config.clone()).await;
    let first: Vec<u16> = (16_300..16_384).chain(0..100).collect();
    let station = send(&daemon, first).await;
    wait_until("the first run's packets", PATIENCE, || {
        stored(&daemon) == 184
    })
    .await;
    drop(station);
    assert!(daemon.shutdown().await.is_clean());

    let daemon = start(config.clone()).await;
    let second: Vec<u16> = (90..110).chain(120..130).collect();
    let station = send(&daemon, second).await;
    wait_until("the second run's packets", PATIENCE, || {
        let link = &daemon.stats.links()[0];
        link.packets == 20 && link.copies == 10
    })
    .await;
    assert_eq!(daemon.stats.links()[0].gaps, 10);
    drop(station);
    assert!(daemon.shutdown().await.is_clean());

    let loaded = aggregator::sim::replay::load_archive(&dir.0, aggregator::sim::Pace::Max)
        .expect("read the archive");
    let (_, recording) = loaded
        .sources
        .iter()
        .find(|(id, _)| *id == 5)
        .expect("source 5");
    let sequences: Vec<u64> = recording.frames.iter().map(|f| f.sequence).collect();
    let expected: Vec<u64> = (UP + 16_300..UP + 16_494)
        .chain(UP + 16_504..UP + 16_514)
        .collect();
    assert_eq!(sequences, expected);
    let report = aggregator::archive::tools::verify(&dir.0).expect("verify the archive");
    let source = report.sources.iter().find(|s| s.id == 5).expect("source 5");
    assert_eq!((source.missing, &source.gaps), (0, &vec![]));
    assert_eq!(source.count_jumps, [(UP + 16_494, UP + 16_503)]);
}

/// Packets laid into frames by `writer`, the last frame filled with idle data: the frames, and
/// where each packet lies in the frames' data fields (its first and last byte's offset).
fn lay_into_frames(
    writer: &mut TransferFrameWriter,
    packets: &[Vec<u8>],
) -> (Vec<Vec<u8>>, Vec<(usize, usize)>) {
    let (mut spans, mut at) = (Vec::new(), 0);
    for p in packets {
        spans.push((at, at + p.len() - 1));
        at += p.len();
        writer.push(p);
    }
    writer.flush();
    (std::iter::from_fn(|| writer.next_frame()).collect(), spans)
}

/// The TM frames of the tests' spacecraft 42: 64 bytes with FECF, randomised or not.
fn tm_format(randomized: bool) -> TransferFrameFormat {
    TransferFrameFormat {
        kind: TransferFrameKind::Tm,
        length: 64,
        spacecraft_id: 42,
        randomized,
        fecf: true,
        ocf: false,
        header_error_control: false,
        insert_zone: 0,
    }
}

/// A frame of packets of channel 2.
fn frame_of_channel_2(format: TransferFrameFormat) -> Vec<u8> {
    let mut writer = TransferFrameWriter::new(format, 2, 0);
    writer.push(&packet(100, 0, 200));
    writer
        .next_frame()
        .expect("a packet of 206 bytes fills a frame")
}

/// The frame quality of the daemon's first link, which must be a link of frames.
fn frame_quality(daemon: &TestDaemon) -> TransferFrameCounts {
    let link = daemon.stats.links().swap_remove(0);
    link.frames.expect("a link of frames shows their quality")
}

/// A station sends CADUs (marker, randomised TM frames with FECF) over TCP, packets spanning
/// frames, with noise, a frame of another spacecraft, one of another channel and one with a bad
/// FECF among them, and one frame lost: exactly the packets lying wholly in received frames are
/// stored, once, the frame counters say what happened, and another link goes on.
#[tokio::test]
async fn tm_frames_over_tcp_store_the_packets_wholly_received() {
    let rules = "apid_base = 10000\nframe_length = 64\nspacecraft_id = 42\n\
                 virtual_channels = [1]\nderandomize = true\nfecf = true";
    let other_link = link("gs", "udp", "ccsds", "source_id = 5000");
    let config = with_links(&[link("sat", "tcp-listen", "tm-frames", rules), other_link].concat());
    let (archive, sink) = Archive::open();
    let daemon = TestDaemon::start(config, sink).await;
    let format = tm_format(true);
    let capacity = format.data_capacity();
    let packets: Vec<_> = (0..30u16)
        .map(|i| packet(100, i, 24 + usize::from(i * 7 % 60)))
        .collect();
    let mut writer = TransferFrameWriter::new(format, 1, 250);
    let (frames, spans) = lay_into_frames(&mut writer, &packets);
    let lost = 3;
    let expected: Vec<u64> = spans
        .iter()
        .enumerate()
        .filter(|(_, &(a, b))| !(a / capacity..=b / capacity).contains(&lost))
        .map(|(i, _)| UP + i as u64)
        .collect();
    let cut_short = spans
        .iter()
        .any(|&(a, b)| a < lost * capacity && b >= lost * capacity);
    let mut others = [
        TransferFrameWriter::new(
            TransferFrameFormat {
                spacecraft_id: 43,
                ..format
            },
            1,
            0,
        )
        .idle_frame(),
        frame_of_channel_2(format),
        frames[0].clone(),
    ];
    // A frame of the channel with a bit flipped: its FECF does not match.
    others[2][20] ^= 0x01;
    let mut wire = vec![0x55, 0x00, 0x1A];
    for (i, frame) in frames.iter().enumerate() {
        if i == lost {
            continue;
        }
        if i == 1 {
            for other in others.iter_mut() {
                aggregator::protocol::transfer_frames::randomize(other);
                wire.extend_from_slice(&ccsds::ASM);
                wire.extend_from_slice(other);
            }
        }
        let mut cadu = frame.clone();
        aggregator::protocol::transfer_frames::randomize(&mut cadu);
        wire.extend_from_slice(&ccsds::ASM);
        wire.extend_from_slice(&cadu);
    }
    let mut station = TcpStream::connect(daemon.links["sat"]).await.unwrap();
    for piece in wire.chunks(45) {
        station.write_all(piece).await.unwrap();
    }
    let sender = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sender
        .send_to(&packet(7, 0, 10), daemon.links["gs"])
        .await
        .unwrap();
    wait_for_packets(&archive, expected.len() + 1).await;
    wait_until("every frame read", PATIENCE, || {
        frame_quality(&daemon).frames_good == frames.len() as u64 - 1
    })
    .await;
    assert_eq!(archive.sequences(LIVE, 5000), [0], "the other link goes on");
    assert!(
        expected.len() < packets.len(),
        "the lost frame cost packets"
    );
    assert_eq!(archive.sequences(LIVE, 10100), expected);
    assert_eq!(stored_packets(&archive).len(), expected.len() + 1);
    let link = &daemon.stats.links()[0];
    let f = frame_quality(&daemon);
    assert_eq!((f.frames_bad_fecf, f.frames_dropped, f.vc_gaps), (1, 2, 1));
    assert_eq!(f.packets_extracted, expected.len() as u64);
    assert_eq!(f.packets_dropped_incomplete, u64::from(cut_short));
    assert_eq!(
        (link.skipped_bytes, link.packets),
        (3, expected.len() as u64)
    );
    drop(station);
    assert!(daemon.shutdown().await.is_clean());
}

/// A station's recording of TM frames (each behind its marker, with FECF) dropped into the link's
/// spool: the packets of its frames are stored, while a frame of another spacecraft, one of another
/// channel and one with a bad FECF are the file's `rejected`, not the link's live frame counts.
#[tokio::test]
async fn a_recording_s_frames_of_another_spacecraft_or_channel_are_its_rejected() {
    let dir = common::TempDir::new("links-backfill-frames");
    let spool = dir.0.join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    let rules = format!(
        "apid_base = 10000\nframe_length = 64\nspacecraft_id = 42\nvirtual_channels = [1]\n\
         fecf = true\nspool_dir = \"{}\"",
        spool.display()
    );
    let mut config = with_links(&link("sat", "tcp-listen", "tm-frames", &rules));
    config.archive = common::archive_config(&dir.0.join("archive")).archive;
    let daemon = TestDaemon::open(config).await;
    let format = tm_format(false);
    let packets: Vec<_> = (0..30u16)
        .map(|i| packet(100, i, 24 + usize::from(i * 7 % 60)))
        .collect();
    let (frames, _) = lay_into_frames(&mut TransferFrameWriter::new(format, 1, 250), &packets);
    let mut bad_fecf = frames[0].clone();
    bad_fecf[20] ^= 0x01;
    let other_spacecraft = TransferFrameFormat {
        spacecraft_id: 43,
        ..format
    };
    let others = [
        TransferFrameWriter::new(other_spacecraft, 1, 0).idle_frame(),
        frame_of_channel_2(format),
        bad_fecf,
    ];
    let mut file = Vec::new();
    for (i, frame) in frames.iter().enumerate() {
        let before = if i == 1 { &others[..] } else { &[] };
        for frame in before.iter().chain([frame]) {
            file.extend_from_slice(&ccsds::ASM);
            file.extend_from_slice(frame);
        }
    }
    std::fs::write(spool.join("pass.part"), &file).unwrap();
    std::fs::rename(spool.join("pass.part"), spool.join("pass.tm")).unwrap();
    let stats = daemon.stats.clone();
    wait_until("the recording imported", PATIENCE, || {
        let links = stats.links();
        links
            .first()
            .is_some_and(|link| link.backfill.files_done == 1)
    })
    .await;
    let link = &daemon.stats.links()[0];
    let imported = link.backfill.totals;
    assert_eq!(
        (imported.stored, imported.rejected),
        (30, 3),
        "{imported:?}"
    );
    assert_eq!(frame_quality(&daemon), TransferFrameCounts::default());
    assert_eq!(link.bad_input, 0);
    assert!(daemon.shutdown().await.is_clean());
}

/// AOS frames without marker or randomiser, one per datagram with RS check symbols left in:
/// packets spanning frames are stored whole; a datagram of the wrong length is dropped and
/// counted, an idle frame taken.
#[tokio::test]
async fn aos_frames_over_udp_are_read_one_per_datagram() {
    let rules = "source_id = 900\nframe_length = 48\nspacecraft_id = 85\n\
                 virtual_channels = [2, 5]\nframe_marker = false\nfecf = true\nocf = true\n\
                 rs_check_symbols_length = 32\nplayback_virtual_channels = [5]\n\
                 station = \"Kiruna\"";
    let config = with_links(&link("aos", "udp", "aos-frames", rules));
    let (archive, sink) = Archive::open();
    let daemon = TestDaemon::start(config, sink).await;
    let format = TransferFrameFormat {
        kind: TransferFrameKind::Aos,
        length: 48,
        spacecraft_id: 85,
        randomized: false,
        fecf: true,
        ocf: true,
        header_error_control: false,
        insert_zone: 0,
    };
    let packets: Vec<_> = (0..12u16)
        .map(|i| packet(300, i, 30 + usize::from(i)))
        .collect();
    let mut writer = TransferFrameWriter::new(format, 5, 0);
    let (frames, _) = lay_into_frames(&mut writer, &packets);
    let sender = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let to = daemon.links["aos"];
    sender.send_to(&frames[0][..40], to).await.unwrap();
    // Each frame is followed by the 32 check symbols the station left in.
    let with_check = |frame: &[u8]| [frame, &[0xEE; 32]].concat();
    sender
        .send_to(&with_check(&writer.idle_frame()), to)
        .await
        .unwrap();
    for frame in &frames {
        sender.send_to(&with_check(frame), to).await.unwrap();
    }
    // Then a packet of the realtime channel 2.
    let mut realtime = TransferFrameWriter::new(format, 2, 0);
    let (realtime, _) = lay_into_frames(&mut realtime, &[packet(301, 0, 20)]);
    for frame in &realtime {
        sender.send_to(&with_check(frame), to).await.unwrap();
    }
    wait_for_packets(&archive, packets.len() + 1).await;
    let read = frames.len() + realtime.len() + 1;
    wait_until("every datagram read", PATIENCE, || {
        frame_quality(&daemon).frames_good == read as u64
    })
    .await;
    assert_eq!(archive.sequences(LIVE, 900), (0..13).collect::<Vec<_>>());
    assert_eq!(stored_packets(&archive).len(), packets.len() + 1);
    // Channel 5 is playback, 2 realtime; the station named, no earth time or AX.25 known.
    let modes: Vec<_> = (archive.records().iter())
        .map(|r| {
            let reception = r
                .reception
                .as_ref()
                .expect("a link's frame has its reception");
            let delivery = &reception.delivery;
            assert_eq!((&*delivery.link, &*delivery.station), ("aos", "Kiruna"));
            let r = reception.received;
            assert_eq!((r.earth_unix_ns, r.ax25), (None, None));
            r.mode()
        })
        .collect();
    assert_eq!(modes, [["playback"; 12].as_slice(), &["realtime"]].concat());
    let f = frame_quality(&daemon);
    assert_eq!(
        (f.frames_dropped, f.vc_gaps, f.packets_extracted),
        (1, 0, 13)
    );
    assert!(daemon.shutdown().await.is_clean());
}
