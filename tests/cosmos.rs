//! OpenC3 COSMOS 7.4.1 reads a TM server (issue 51): its `TcpipClientInterface` with the `LENGTH`
//! protocol, built from the `INTERFACE` lines of docs/tm-server.md's COSMOS section as they stand
//! (only the host and the read port replaced), reads a server configured by the section's
//! `[[tm_servers]]` table (listening on loopback port 0). Every packet stored arrives once, byte
//! for byte, in order per APID: with `framing = "ccsds"` (packets back to back), and with
//! `ccsds-asm` (each behind the sync marker 1A CF FC 1D, which the protocol finds and discards).
//! Some packets' data hold the marker, or the marker and a header, where a reader that searched
//! for it inside a packet would cut; one is the largest a packet can be (65,542 bytes).
//!
//! And COSMOS downstream of a backfill (issue 70): a pass that came in part live, its recording
//! imported through the link's spool, reaches COSMOS whole, each packet once.
//!
//! COSMOS' Python interface code runs in tests/cosmos/read_tm.py, without the rest of COSMOS,
//! from the virtual environment tests/cosmos/venv.sh makes in target/cosmos-venv (.ci/run does):
//! the tests that run it are ignored without it.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use aggregator::config::TmServerConfig;
use aggregator::protocol::ccsds::{PrimaryHeader, ASM};
use aggregator::{Config, SourceKind};
use common::backfill::{kiruna_spooled, recording, spooled, upload, wait_files};
use common::process::{Daemon, Program, DRAIN_DEADLINE};
use common::stations::{self, framed};
use common::{http_get_json, Client};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// How long read_tm.py may take: it gives up on its own after 30 s and says why.
const COSMOS_PATIENCE: Duration = Duration::from_secs(40);
/// Packets stored, and so read.
const PACKETS: usize = 300;
/// Their APIDs, in turn; 2047 is the largest.
const APIDS: [u16; 3] = [7, 300, 2047];
/// The TM server's name in the docs' table.
const SERVER: &str = "cosmos";
/// Its port in the docs' table and `INTERFACE` lines.
const DOCS_PORT: &str = "10015";

/// What docs/tm-server.md's COSMOS section configures for one framing.
struct Example {
    /// The `[[tm_servers]]` table, listening on loopback port 0.
    server: String,
    /// The `INTERFACE` line's arguments after the interface's name: the file, then the class's.
    interface: Vec<String>,
}

impl Example {
    /// The section's table and `INTERFACE` line for `ccsds`, or with `asm` for `ccsds-asm`: the
    /// table with `framing = "ccsds-asm"` added, and the line that names the sync pattern.
    fn from_docs(asm: bool) -> Example {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/tm-server.md");
        let docs = std::fs::read_to_string(&path).expect("read docs/tm-server.md");
        let start = docs.find("\n## COSMOS\n").expect("a COSMOS section") + 1;
        let section = &docs[start..];
        let section = &section[..section[1..].find("\n## ").map_or(section.len(), |e| e + 1)];

        let blocks: Vec<&str> = section.split("```toml\n").skip(1).collect();
        assert_eq!(blocks.len(), 1, "one TOML block in the COSMOS section");
        let table = &blocks[0][..blocks[0].find("```").expect("the TOML block's end")];
        let listen = format!("listen = \"0.0.0.0:{DOCS_PORT}\"");
        assert!(table.contains(&listen), "{table}");
        assert!(table.contains(&format!("name = \"{SERVER}\"")), "{table}");
        assert!(
            !table.contains("framing"),
            "the docs' table is ccsds: {table}"
        );
        let mut server = table.replace(&listen, "listen = \"127.0.0.1:0\"");
        if asm {
            server.push_str("framing = \"ccsds-asm\"\n");
        }

        let lines: Vec<&str> = section
            .lines()
            .filter(|line| line.starts_with("INTERFACE "))
            .collect();
        assert_eq!(lines.len(), 2, "two INTERFACE lines: {lines:#?}");
        let line = lines
            .iter()
            .find(|line| line.contains("0x1ACFFC1D") == asm)
            .expect("an INTERFACE line with the sync pattern and one without");
        let words: Vec<String> = line.split_whitespace().map(String::from).collect();
        // INTERFACE NAME FILENAME HOST WRITE_PORT READ_PORT ...
        assert_eq!(words[5], DOCS_PORT, "the read port is the table's: {line}");
        Example {
            server,
            interface: words[2..].to_vec(),
        }
    }

    /// The interface's arguments for the TM server on loopback `port`.
    fn interface_for(&self, port: u16) -> Vec<String> {
        let mut args = self.interface.clone();
        args[1] = "127.0.0.1".into();
        args[3] = port.to_string();
        args
    }
}

/// Packet `i` of the test: APIDs in turn, sequence count `i`, 1 to 300 bytes of data, every 50th
/// 4,000, and packet 150 the largest (65,536). Every 4th packet's data is the marker over and over,
/// every 4th after it the marker, then a packet header of its own.
fn packet(i: usize) -> Vec<u8> {
    let len = match i {
        150 => 65_536,
        _ if i % 50 == 49 => 4_000,
        _ => 1 + (i * 37) % 300,
    };
    let header = PrimaryHeader::telemetry(APIDS[i % APIDS.len()], i as u16, len);
    let inner = PrimaryHeader::telemetry(5, 0, 3).encode();
    let data: Vec<u8> = match i % 4 {
        0 => ASM.iter().cycle().take(len).copied().collect(),
        1 => ASM
            .iter()
            .chain(&inner)
            .copied()
            .chain(std::iter::repeat(0xEE))
            .take(len)
            .collect(),
        _ => (0..len).map(|j| (i ^ j) as u8).collect(),
    };
    header.encode().into_iter().chain(data).collect()
}

/// A big-endian field of the primary header; 0 where the bytes read are too few.
fn header_field(packet: &[u8], at: usize, mask: u16) -> u16 {
    let bytes = [0, 1].map(|i| packet.get(at + i).copied().unwrap_or(0));
    u16::from_be_bytes(bytes) & mask
}

fn apid(packet: &[u8]) -> u16 {
    header_field(packet, 0, 0x7FF)
}

/// `APID a count c, N bytes` of a packet, for failures.
fn describe(packet: &[u8]) -> String {
    let count = header_field(packet, 2, 0x3FFF);
    format!(
        "APID {} count {count}, {} bytes",
        apid(packet),
        packet.len()
    )
}

/// A line of read_tm.py: a packet's bytes in hex.
fn unhex(line: &str) -> Vec<u8> {
    assert!(line.len() % 2 == 0, "an odd number of hex digits: {line}");
    (0..line.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&line[i..i + 2], 16))
        .collect::<Result<_, _>>()
        .unwrap_or_else(|_| panic!("not a packet in hex: {line:.200}"))
}

/// Packets by APID, in the order given.
fn per_apid(packets: &[Vec<u8>]) -> BTreeMap<u16, Vec<&[u8]>> {
    let mut by_apid: BTreeMap<u16, Vec<&[u8]>> = BTreeMap::new();
    for packet in packets {
        by_apid.entry(apid(packet)).or_default().push(packet);
    }
    by_apid
}

/// `None` when `read` holds each packet of `sent` once, byte for byte, and each APID's in the
/// order sent; else the first difference of each APID that differs.
fn differences(sent: &[Vec<u8>], read: &[Vec<u8>]) -> Option<String> {
    let (sent, read) = (per_apid(sent), per_apid(read));
    let mut differences = Vec::new();
    for apid in sent
        .keys()
        .chain(read.keys().filter(|a| !sent.contains_key(a)))
    {
        let want = sent.get(apid).map_or(&[][..], Vec::as_slice);
        let got = read.get(apid).map_or(&[][..], Vec::as_slice);
        if want == got {
            continue;
        }
        let at = want.iter().zip(got).position(|(w, g)| w != g);
        let at = at.unwrap_or(want.len().min(got.len()));
        let name = |p: Option<&&[u8]>| p.map_or("nothing".to_owned(), |p| describe(p));
        differences.push(format!(
            "APID {apid}: sent {}, read {}; packet {at}: sent {}, read {}",
            want.len(),
            got.len(),
            name(want.get(at)),
            name(got.get(at))
        ));
    }
    (!differences.is_empty()).then(|| differences.join("\n"))
}

/// Fails the test, naming `what` and each difference, unless `read` is `sent` ([`differences`]).
fn assert_read(sent: &[Vec<u8>], read: &[Vec<u8>], what: &str) {
    if let Some(differences) = differences(sent, read) {
        panic!("COSMOS read other packets than stored ({what}):\n{differences}");
    }
}

/// tests/cosmos/read_tm.py, reading `count` packets, then to the end of the stream, with COSMOS'
/// interface built from `interface` (the `INTERFACE` line's arguments after its name): a line of
/// hex a packet.
fn read_tm(count: usize, interface: &[String]) -> Program {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join("target/cosmos-venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run tests/cosmos/venv.sh (OpenC3 COSMOS, PyPI openc3)",
        python.display()
    );
    let mut command = Command::new(python);
    command
        .arg(root.join("tests/cosmos/read_tm.py"))
        .arg(count.to_string())
        .args(interface);
    Program::spawn("read_tm.py", command, COSMOS_PATIENCE)
}

/// TM server `server`'s open connections, from the `/stats` of the monitor at `monitor`.
async fn tm_connections(monitor: SocketAddr, server: &str) -> u64 {
    let stats = http_get_json(monitor, "/stats").await;
    let outputs = stats["tm"].as_array().expect("a tm list");
    let found = outputs.iter().find(|output| output["name"] == server);
    let found = found.unwrap_or_else(|| panic!("no TM server {server} in {outputs:?}"));
    found["connections"].as_u64().expect("a count")
}

/// Waits until TM server `server` counts one connection, COSMOS' (a connection counts once it
/// found where it starts); fails the test if read_tm.py exits first.
async fn wait_connected(monitor: SocketAddr, server: &str, cosmos: &mut Program) {
    let deadline = Instant::now() + COSMOS_PATIENCE;
    while tm_connections(monitor, server).await != 1 {
        if let Some(why) = cosmos.exited() {
            panic!("read_tm.py did not connect to {server}; {why}");
        }
        assert!(
            Instant::now() < deadline,
            "COSMOS did not connect to {server} in time"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The next `count` packets COSMOS reads; fails the test, naming `what`, if it stops first.
fn read_packets(cosmos: &mut Program, count: usize, what: &str) -> Vec<Vec<u8>> {
    let mut read = Vec::with_capacity(count);
    while read.len() < count {
        match cosmos.try_next_line() {
            Ok(line) => read.push(unhex(&line)),
            Err(why) => panic!(
                "COSMOS stopped at {} of {count} packets of {what}: {why}",
                read.len()
            ),
        }
    }
    read
}

/// Starts the daemon with the docs' TM server, and read_tm.py with the docs' interface; stores
/// the test's packets once COSMOS is connected (`from = "now"`); reads them all, then stops the
/// daemon, whose drain closes the connection, and checks that COSMOS read nothing more.
async fn cosmos_reads_every_packet(asm: bool) {
    let example = Example::from_docs(asm);
    // The largest packet in a DATA message exceeds the default 64 KiB frame.
    let config = format!(
        "{}[connection]\nmax_frame_length = 131072\n",
        example.server
    );
    let name = if asm { "cosmos-asm" } else { "cosmos" };
    let mut daemon = Daemon::launch(name, "json", &config, "", None);
    let interface = example.interface_for(daemon.tm_port(SERVER));
    let mut cosmos = read_tm(PACKETS, &interface);

    wait_connected(daemon.monitor, SERVER, &mut cosmos).await;

    let sent: Vec<Vec<u8>> = (0..PACKETS).map(packet).collect();
    Client::store(daemon.uplink, SourceKind::LiveUplink, 1, 0, &sent).await;
    let mut read = read_packets(&mut cosmos, PACKETS, &format!("{interface:?}"));

    daemon.signal(libc::SIGTERM);
    let (status, rest, stderr) = cosmos.finish();
    read.extend(rest.iter().map(|line| unhex(line)));
    assert!(
        status.success(),
        "read_tm.py exited {status} after the daemon's drain:\n{stderr}"
    );
    let (status, _) = daemon.wait_exit(DRAIN_DEADLINE + Duration::from_secs(2));
    assert!(status.success(), "the daemon exited {status}");
    assert_eq!(read.len(), PACKETS, "COSMOS read each packet once");
    assert_read(&sent, &read, &format!("{interface:?}"));
}

#[tokio::test]
#[ignore = "needs OpenC3 COSMOS (PyPI openc3) in target/cosmos-venv, run by .ci/run"]
async fn cosmos_reads_every_packet_of_a_tm_server() {
    cosmos_reads_every_packet(false).await;
}

#[tokio::test]
#[ignore = "needs OpenC3 COSMOS (PyPI openc3) in target/cosmos-venv, run by .ci/run"]
async fn cosmos_reads_every_packet_of_a_tm_server_with_sync_markers() {
    cosmos_reads_every_packet(true).await;
}

/// The docs' COSMOS table, and the same table as server `archive` with `from = "start"`.
fn docs_server_and_one_from_start(example: &Example) -> Vec<TmServerConfig> {
    let start = example.server.replace("from = \"now\"", "from = \"start\"");
    let start = start.replace(&format!("name = \"{SERVER}\""), "name = \"archive\"");
    assert!(start.contains("\"start\"") && start.contains("\"archive\""));
    let tables = format!("{}{start}", example.server);
    let parsed = Config::parse(&tables, Path::new("tm.toml")).expect("valid [[tm_servers]]");
    parsed.tm_servers
}

/// The pass's packets of `counts`, in that order.
fn pass(counts: &[u16]) -> Vec<Vec<u8>> {
    counts
        .iter()
        .map(|&count| stations::packet(count))
        .collect()
}

/// Kiruna delivers a pass live but for counts 50..=79 and those after 99, then uploads its
/// recording of the whole pass (0..=119) into its spool, whose import stores the 50 the archive
/// lacked. COSMOS on the docs' `from = "now"` server, connected before the pass, reads the 70
/// live packets as they come, then the 50 backfilled as the import stores them; a second COSMOS,
/// on the same table with `from = "start"`, connected after the import, reads the same 120 from
/// the archive. Both in archive order (the backfilled packets after the live ones, whatever
/// their counts), and at the drain neither has read a packet twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs OpenC3 COSMOS (PyPI openc3) in target/cosmos-venv, run by .ci/run"]
async fn cosmos_reads_a_backfilled_pass_once_beside_its_live_part() {
    let example = Example::from_docs(false);
    let servers = docs_server_and_one_from_start(&example);
    let (dir, spool) = spooled("cosmos-backfill");
    let (daemon, monitor, stop) =
        kiruna_spooled(&dir.0, &spool, |config| config.tm_servers = servers).await;
    let interface = |server: &str| example.interface_for(daemon.tm_server(server).port());
    // Reading blocks this thread; the daemon runs on the other.
    let read = |cosmos: &mut Program, count, what| {
        tokio::task::block_in_place(|| read_packets(cosmos, count, what))
    };
    let mut now = read_tm(120, &interface(SERVER));
    wait_connected(monitor, SERVER, &mut now).await;

    let (live, backfilled): (Vec<u16>, Vec<u16>) =
        (0..120).partition(|c| !(50..80).contains(c) && *c < 100);
    let mut wire = TcpStream::connect(daemon.links["Kiruna"]).await.unwrap();
    for &count in &live {
        let frame = framed(count, u64::from(count));
        wire.write_all(&frame).await.unwrap();
    }
    let (live, backfilled) = (pass(&live), pass(&backfilled));
    assert_read(&live, &read(&mut now, 70, "the live part"), "the live part");
    upload(&spool, "pass.lp", &recording(0..120));
    let imported = wait_files(monitor, 1, 0).await;
    let backfill = read(&mut now, 50, "the backfill");
    assert_read(&backfilled, &backfill, "the backfilled part");
    let counts = [&imported["packets"], &imported["stored"], &imported["held"]];
    assert_eq!(counts, [&json!(120), &json!(50), &json!(70)], "{imported}");

    let mut archive = read_tm(120, &interface("archive"));
    let whole: Vec<Vec<u8>> = live.into_iter().chain(backfilled).collect();
    assert_read(
        &whole,
        &read(&mut archive, 120, "the archive"),
        "from the start",
    );

    drop(wire);
    stop.cancel();
    assert_eq!(daemon.shutdown_clean().await.archived, 120);
    for (cosmos, server) in [(now, SERVER), (archive, "archive")] {
        // read_tm.py exits 1 at a packet beyond the 120, 0 when the drain closes the connection.
        let (status, rest, stderr) = cosmos.finish();
        let ok = status.success() && rest.is_empty();
        assert!(ok, "{server}: {status}, then {rest:?}\n{stderr}");
    }
}

/// Without COSMOS: the docs' section gives what the tests above run, one line per framing, the
/// same interface on the same server but for the protocol's arguments.
#[test]
fn the_docs_configure_cosmos_for_both_framings() {
    let (plain, asm) = (Example::from_docs(false), Example::from_docs(true));
    assert_eq!(plain.interface[..7], asm.interface[..7]);
    assert_eq!(plain.interface[6], "LENGTH");
    let with_asm = format!("{}framing = \"ccsds-asm\"\n", plain.server);
    assert_eq!(asm.server, with_asm);
}

/// The comparison itself: a lost packet, a duplicate and a swap within an APID are each named.
#[test]
fn the_comparison_names_what_differed() {
    let sent: Vec<Vec<u8>> = (0..12).map(packet).collect();
    assert_eq!(differences(&sent, &sent), None);
    let lost = differences(&sent, &sent[1..]).expect("a lost packet");
    assert!(lost.contains("APID 7: sent 4, read 3"), "{lost}");
    let mut doubled = sent.clone();
    doubled.push(sent[4].clone());
    let doubled = differences(&sent, &doubled).expect("a duplicate");
    assert!(doubled.contains("APID 300: sent 4, read 5"), "{doubled}");
    let mut swapped = sent.clone();
    swapped.swap(2, 5);
    let swapped = differences(&sent, &swapped).expect("a swap");
    assert!(
        swapped.contains("APID 2047: sent 4, read 4; packet 0"),
        "{swapped}"
    );
    assert_eq!(swapped.lines().count(), 1, "{swapped}");
}
