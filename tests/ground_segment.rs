//! The ground segment against code no one here wrote (issue 43): packets built by PyPI's
//! `spacepackets`, sent by `tmtccmd`'s TCP space-packet client, by its UDP client, and by a KISS
//! server framing them with `kiss3`, go into the `aggregator` binary's `[[links]]`; a
//! `[[tm_servers]]` stream of the archive is read back and parsed by `spacepackets`. Every packet
//! arrives exactly once, byte for byte (SHA-256 over the whole packet), in order per APID.
//!
//! The Python side is `tests/ground/*.py`, run by the virtual environment `tests/ground/venv.sh`
//! makes in `target/ground-venv` (`.ci/run` does): the tests are ignored without it.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::process::{json_field, json_u64, Daemon, Program, DRAIN_DEADLINE};
use common::TempDir;

/// How long a Python program may take: each gives up on its own after 30 s and says why.
const PYTHON_PATIENCE: Duration = Duration::from_secs(40);

/// The virtual environment's interpreter; fails the test, saying how to make it, when missing.
fn python() -> PathBuf {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ground-venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run tests/ground/venv.sh (a Python environment with spacepackets, tmtccmd \
         and kiss3 from PyPI)",
        python.display()
    );
    python
}

/// `python tests/ground/<program> args...`.
fn program(name: &str, args: &[&str]) -> Command {
    let mut command = Command::new(python());
    command
        .arg(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/ground")
                .join(name),
        )
        .args(args)
        .stdin(Stdio::null());
    command
}

/// Runs a program to its end; fails the test with its stderr unless it exits 0.
fn run(name: &str, args: &[&str]) {
    let out = program(name, args)
        .output()
        .unwrap_or_else(|err| panic!("start {name}: {err}"));
    assert!(
        out.status.success(),
        "{name} {args:?} exited {}:\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A Python program running beside the test, its stdout read line by line; killed on drop.
fn start(name: &'static str, args: &[&str]) -> Program {
    Program::spawn(name, program(name, args), PYTHON_PATIENCE)
}

/// One packet as a manifest line gives it: `{"apid", "count", "len", "sha256"}`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    apid: u16,
    count: u16,
    len: usize,
    sha256: String,
}

impl Entry {
    fn parse(line: &str) -> Entry {
        let value: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|err| panic!("not a manifest line ({err}): {line}"));
        let number = |key: &str| {
            value[key]
                .as_u64()
                .unwrap_or_else(|| panic!("no {key:?} in {line}"))
        };
        Entry {
            apid: number("apid") as u16,
            count: number("count") as u16,
            len: number("len") as usize,
            sha256: value["sha256"].as_str().expect("sha256").to_owned(),
        }
    }
}

impl std::fmt::Display for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sha = &self.sha256[..12.min(self.sha256.len())];
        write!(
            f,
            "APID {} count {} ({} bytes, sha256 {sha}…)",
            self.apid, self.count, self.len
        )
    }
}

fn read_manifest(path: &Path) -> Vec<Entry> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|err| panic!("read {}: {err}", path.display()))
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(Entry::parse)
        .collect()
}

/// Every packet sent was read exactly once, byte for byte, and per APID in the order sent; fails
/// the test naming what differed otherwise.
fn assert_same_packets(what: &str, sent: &[Entry], read: &[Entry]) {
    if let Some(differences) = differences(sent, read) {
        panic!(
            "{what}: {} packets sent, {} read:\n  {differences}",
            sent.len(),
            read.len()
        );
    }
}

/// What differs between the packets sent and those read, if anything: the packets missing, those
/// read more often than sent, and per APID the first place the order differs.
fn differences(sent: &[Entry], read: &[Entry]) -> Option<String> {
    let by_apid = |entries: &[Entry]| {
        let mut map: BTreeMap<u16, Vec<Entry>> = BTreeMap::new();
        for entry in entries {
            map.entry(entry.apid).or_default().push(entry.clone());
        }
        map
    };
    let (sent_apids, read_apids) = (by_apid(sent), by_apid(read));
    if sent_apids == read_apids {
        return None;
    }
    let mut problems = Vec::new();
    let tally = |entries: &[Entry]| {
        let mut map: BTreeMap<Entry, usize> = BTreeMap::new();
        for entry in entries {
            *map.entry(entry.clone()).or_default() += 1;
        }
        map
    };
    let (sent_tally, read_tally) = (tally(sent), tally(read));
    let missing: Vec<_> = sent_tally
        .iter()
        .filter(|(e, &n)| read_tally.get(*e).copied().unwrap_or(0) < n)
        .map(|(e, _)| e)
        .collect();
    let extra: Vec<_> = read_tally
        .iter()
        .filter(|(e, &n)| sent_tally.get(*e).copied().unwrap_or(0) < n)
        .map(|(e, n)| (e, *n))
        .collect();
    if !missing.is_empty() {
        let first: Vec<_> = missing.iter().take(5).map(|e| e.to_string()).collect();
        problems.push(format!(
            "{} packets sent were never read (or changed), first {}",
            missing.len(),
            first.join("; ")
        ));
    }
    if !extra.is_empty() {
        let first: Vec<_> = extra
            .iter()
            .take(5)
            .map(|(e, n)| {
                let sent = sent_tally.get(*e).copied().unwrap_or(0);
                format!("{e} read {n}× (sent {sent}×)")
            })
            .collect();
        problems.push(format!(
            "{} packets read more often than sent, first {}",
            extra.len(),
            first.join("; ")
        ));
    }
    for (apid, sent) in &sent_apids {
        let read = read_apids.get(apid).map(Vec::as_slice).unwrap_or_default();
        if let Some(at) = sent.iter().zip(read).position(|(s, r)| s != r) {
            problems.push(format!(
                "APID {apid}: read #{at} is {}, sent #{at} was {}",
                read[at], sent[at]
            ));
        }
    }
    Some(problems.join("\n  "))
}

/// The daemon under test: its config's `[archive]` (small segments) and `sections` after it.
fn start_daemon(name: &str, sections: &str) -> Daemon {
    let extra = format!("segment_bytes = 1048576\n{sections}");
    Daemon::launch(name, "json", &extra, "", None)
}

/// The address the link `name` bound, from its "link listening" log line.
fn link_address(daemon: &Daemon, name: &str) -> String {
    let line = daemon
        .logged(&["link listening", &format!("\"link\":\"{name}\"")])
        .unwrap_or_else(|| {
            panic!(
                "no \"link listening\" line for {name}; log:\n{}",
                daemon.log.lock().unwrap().join("\n")
            )
        });
    json_field(&line, "address").to_owned()
}

fn link(name: &str, transport: &str, address: &str, framing: &str) -> String {
    format!(
        "[[links]]\nname = \"{name}\"\ntransport = \"{transport}\"\naddress = \"{address}\"\n\
         framing = \"{framing}\"\napid_base = 10000\n"
    )
}

/// A `[[tm_servers]]` entry on a free loopback port (see [`Daemon::tm_port`]).
fn tm_server(name: &str, framing: &str) -> String {
    format!(
        "[[tm_servers]]\nname = \"{name}\"\nlisten = \"127.0.0.1:0\"\nframing = \"{framing}\"\n\
         from = \"start\"\n"
    )
}

/// Reads as many packets as were `sent` from the TM server on `port` with read_tm.py, then stops
/// the daemon (SIGTERM) and checks that read_tm.py read to the end of the stream with nothing more
/// (see [`assert_same_packets`]), that the drain was clean, and that the archive holds exactly the
/// packets sent. `what` names the path in failures.
fn read_back_and_stop(daemon: &mut Daemon, what: &str, sent: &[Entry], port: u16, asm: bool) {
    let expect = sent.len();
    let port = port.to_string();
    let expected = expect.to_string();
    let mut args = vec!["127.0.0.1", &port, "--expect", &expected, "--to-eof"];
    if asm {
        args.push("--asm");
    }
    let mut reader = start("read_tm.py", &args);
    let mut read = Vec::with_capacity(sent.len());
    while read.len() < sent.len() {
        match reader.try_next_line() {
            Ok(line) => read.push(Entry::parse(&line)),
            Err(why) => panic!(
                "{what}: read_tm.py stopped at {} of {} packets (per APID, read {} of {}): {why}",
                read.len(),
                sent.len(),
                per_apid(&read),
                per_apid(sent)
            ),
        }
    }
    daemon.signal(libc::SIGTERM);
    let (status, rest, stderr) = reader.finish();
    read.extend(rest.iter().map(|line| Entry::parse(line)));
    assert!(
        status.success(),
        "read_tm.py exited {status} after the daemon's drain:\n{stderr}"
    );
    let (status, _) = daemon.wait_exit(DRAIN_DEADLINE + Duration::from_secs(2));
    assert!(status.success(), "the daemon exited {status}");
    let summary = daemon.wait_for_line("drain complete");
    assert_eq!(json_u64(&summary, "unacknowledged"), 0, "{summary}");
    assert_eq!(
        json_u64(&summary, "archived"),
        expect as u64,
        "the archive holds each packet once: {summary}"
    );
    assert_same_packets(what, sent, &read);
}

/// How many packets of each APID `entries` holds: `APID 100: 500, APID 101: 0`.
fn per_apid(entries: &[Entry]) -> String {
    let mut counts: BTreeMap<u16, usize> = BTreeMap::new();
    for entry in entries {
        *counts.entry(entry.apid).or_default() += 1;
    }
    let counts: Vec<_> = counts
        .iter()
        .map(|(a, n)| format!("APID {a}: {n}"))
        .collect();
    format!("[{}]", counts.join(", "))
}

#[test]
#[ignore = "needs target/ground-venv (tests/ground/venv.sh); .ci/run runs it"]
fn the_python_programs_agree_with_each_other() {
    run("selftest.py", &[]);
}

#[test]
#[ignore = "needs target/ground-venv (tests/ground/venv.sh); .ci/run runs it"]
fn tmtccmd_over_tcp_into_a_link_read_back_by_spacepackets() {
    let scratch = TempDir::new("ground-tcp");
    let sections = format!(
        "{}{}",
        link("gs-north", "tcp-listen", "127.0.0.1:0", "ccsds"),
        tm_server("yamcs", "ccsds")
    );
    let mut daemon = start_daemon("ground-tcp", &sections);
    let tm = daemon.tm_port("yamcs");
    let address = link_address(&daemon, "gs-north");
    let (host, port) = address.rsplit_once(':').unwrap();
    let manifest = scratch.0.join("sent.jsonl");
    let manifest_arg = manifest.to_str().unwrap();
    run(
        "send_tcp.py",
        &[
            host,
            port,
            "--apids",
            "100,101",
            "--count",
            "500",
            "--size",
            "64",
            "--seed",
            "1",
            "--manifest",
            manifest_arg,
        ],
    );
    let sent = read_manifest(&manifest);
    assert_eq!(sent.len(), 1000);
    read_back_and_stop(
        &mut daemon,
        "tmtccmd -> tcp-listen link -> TM server",
        &sent,
        tm,
        false,
    );
}

#[test]
#[ignore = "needs target/ground-venv (tests/ground/venv.sh); .ci/run runs it"]
fn udp_datagrams_into_a_link_read_back_by_spacepackets() {
    let scratch = TempDir::new("ground-udp");
    let sections = format!(
        "{}{}",
        link("gs-udp", "udp", "127.0.0.1:0", "ccsds"),
        tm_server("yamcs", "ccsds")
    );
    let mut daemon = start_daemon("ground-udp", &sections);
    let tm = daemon.tm_port("yamcs");
    let address = link_address(&daemon, "gs-udp");
    let (host, port) = address.rsplit_once(':').unwrap();
    let manifest = scratch.0.join("sent.jsonl");
    // 400 datagrams at 2,000 a second: well within a loopback socket's buffer.
    run(
        "send_udp.py",
        &[
            host,
            port,
            "--apids",
            "100,101",
            "--count",
            "200",
            "--size",
            "200",
            "--seed",
            "2",
            "--rate",
            "2000",
            "--manifest",
            manifest.to_str().unwrap(),
        ],
    );
    let sent = read_manifest(&manifest);
    assert_eq!(sent.len(), 400);
    read_back_and_stop(
        &mut daemon,
        "tmtccmd UDP -> udp link -> TM server",
        &sent,
        tm,
        false,
    );
}

#[test]
#[ignore = "needs target/ground-venv (tests/ground/venv.sh); .ci/run runs it"]
fn a_kiss3_server_dialled_by_a_link_read_back_by_spacepackets() {
    let scratch = TempDir::new("ground-kiss");
    let manifest = scratch.0.join("sent.jsonl");
    // APIDs 0x0C0 and 0x0DB and a data length field of 0xC0 (193 bytes) put FEND and FESC in the
    // headers; every other packet's data starts with them.
    let mut kiss = start(
        "kiss_server.py",
        &[
            "0",
            "--apids",
            "192,219",
            "--count",
            "300",
            "--size",
            "193",
            "--seed",
            "3",
            "--with-command",
            "--manifest",
            manifest.to_str().unwrap(),
        ],
    );
    let kiss_port = kiss.next_line("the KISS server's port");
    kiss_port
        .parse::<u16>()
        .unwrap_or_else(|_| panic!("kiss_server.py's first line is not a port: {kiss_port}"));
    let sections = format!(
        "{}{}",
        link(
            "gs-kiss",
            "tcp-connect",
            &format!("127.0.0.1:{kiss_port}"),
            "kiss"
        ),
        tm_server("yamcs", "ccsds")
    );
    let mut daemon = start_daemon("ground-kiss", &sections);
    let tm = daemon.tm_port("yamcs");
    assert_eq!(kiss.next_line("\"connected\""), "connected");
    assert_eq!(kiss.next_line("\"sent 600\""), "sent 600");
    let sent = read_manifest(&manifest);
    assert_eq!(sent.len(), 600);
    let path = "kiss3 server -> tcp-connect kiss link -> TM server";
    read_back_and_stop(&mut daemon, path, &sent, tm, false);
    let (status, _, stderr) = kiss.finish();
    assert!(
        status.success(),
        "kiss_server.py exited {status} once the daemon closed the link:\n{stderr}"
    );
}

#[test]
#[ignore = "needs target/ground-venv (tests/ground/venv.sh); .ci/run runs it"]
fn a_tm_server_with_sync_markers_read_back_by_spacepackets() {
    let scratch = TempDir::new("ground-asm");
    let sections = format!(
        "{}{}",
        link("gs-north", "tcp-listen", "127.0.0.1:0", "ccsds"),
        tm_server("yamcs-asm", "ccsds-asm")
    );
    let mut daemon = start_daemon("ground-asm", &sections);
    let tm = daemon.tm_port("yamcs-asm");
    let address = link_address(&daemon, "gs-north");
    let (host, port) = address.rsplit_once(':').unwrap();
    let manifest = scratch.0.join("sent.jsonl");
    run(
        "send_tcp.py",
        &[
            host,
            port,
            "--apids",
            "7,300,2046",
            "--count",
            "200",
            "--size",
            "512",
            "--seed",
            "4",
            "--manifest",
            manifest.to_str().unwrap(),
        ],
    );
    let sent = read_manifest(&manifest);
    assert_eq!(sent.len(), 600);
    let path = "tmtccmd -> tcp-listen link -> TM server (ASM)";
    read_back_and_stop(&mut daemon, path, &sent, tm, true);
}

/// The comparison itself, without Python: a lost packet, a duplicate and a swap are each named.
#[test]
fn the_comparison_names_what_differed() {
    let entry = |apid, count| Entry {
        apid,
        count,
        len: 10,
        sha256: format!("{apid:04}{count:060}"),
    };
    let sent: Vec<_> = (0..4).flat_map(|c| [entry(1, c), entry(2, c)]).collect();
    assert_eq!(differences(&sent, &sent), None);
    let message = |read: Vec<Entry>| differences(&sent, &read).expect("the difference is found");
    let lost = message(sent[1..].to_vec());
    assert!(
        lost.contains("1 packets sent were never read") && lost.contains("APID 1 count 0"),
        "{lost}"
    );
    let twice = message([sent.clone(), vec![entry(2, 3)]].concat());
    assert!(
        twice.contains("APID 2 count 3 (10 bytes, sha256 000200000000…) read 2× (sent 1×)"),
        "{twice}"
    );
    let mut swapped = sent.clone();
    swapped.swap(2, 4);
    let order = message(swapped);
    assert!(
        order.contains("APID 1: read #1 is APID 1 count 2") && !order.contains("never read"),
        "{order}"
    );
}

#[test]
#[ignore = "needs target/ground-venv (tests/ground/venv.sh); .ci/run runs it"]
fn a_tm_forward_read_back_by_spacepackets() {
    let scratch = TempDir::new("ground-forward");
    let mut reader = start(
        "read_udp.py",
        &["127.0.0.1", "0", "--expect", "600", "--until-stdin-closes"],
    );
    let port = reader.next_line("read_udp.py's port");
    port.parse::<u16>()
        .unwrap_or_else(|_| panic!("read_udp.py's first line is not a port: {port}"));
    let sections = format!(
        "{}[[tm_forwards]]\nname = \"yamcs-udp\"\nto = \"127.0.0.1:{port}\"\nfrom = \"start\"\n",
        link("gs-north", "tcp-listen", "127.0.0.1:0", "ccsds"),
    );
    let mut daemon = start_daemon("ground-forward", &sections);
    let address = link_address(&daemon, "gs-north");
    let (host, link_port) = address.rsplit_once(':').unwrap();
    let manifest = scratch.0.join("sent.jsonl");
    run(
        "send_tcp.py",
        &[
            host,
            link_port,
            "--apids",
            "100,101,102",
            "--count",
            "200",
            "--size",
            "100",
            "--seed",
            "5",
            "--manifest",
            manifest.to_str().unwrap(),
        ],
    );
    let sent = read_manifest(&manifest);
    let mut read = Vec::with_capacity(sent.len());
    while read.len() < sent.len() {
        match reader.try_next_line() {
            Ok(line) => read.push(Entry::parse(&line)),
            Err(why) => panic!(
                "read_udp.py stopped at {} of {} packets (per APID, read {} of {}): {why}",
                read.len(),
                sent.len(),
                per_apid(&read),
                per_apid(&sent)
            ),
        }
    }
    daemon.signal(libc::SIGTERM);
    let (status, _) = daemon.wait_exit(DRAIN_DEADLINE + Duration::from_secs(2));
    assert!(status.success(), "the daemon exited {status}");
    // Whatever the daemon sent is in read_udp.py's socket buffer now: it checks nothing more came.
    reader.close_stdin();
    let (status, _, stderr) = reader.finish();
    assert!(status.success(), "read_udp.py exited {status}:\n{stderr}");
    assert_same_packets(
        "tmtccmd -> tcp-listen link -> TM forward (UDP)",
        &sent,
        &read,
    );
}
