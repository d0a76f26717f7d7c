//! Yamcs 5.12.8 reads the daemon (issue 51): its `TcpTmDataLink` a TM server, its
//! `UdpTmDataLink` a TM forward, configured as docs/tm-server.md says (the files are
//! tests/yamcs/etc and tests/yamcs/mdb). For each link, Yamcs counts every packet the daemon
//! stored (the link's `dataInCount`), and its archive holds each of them under the link's name,
//! byte for byte, and nothing else (its REST API, `/api/archive/aggregator/packets`).
//!
//! One link at a time, the other disabled: Yamcs keys archived packets by generation time (its
//! clock at reception, to the millisecond, with `timestampOffset: -1`) and sequence (here the
//! header's first four bytes), so the same packet from both links within a millisecond would be
//! kept once. The forward's link goes first: datagrams to a disabled link's closed port are
//! refused, and the forward's socket reports a refusal on its next send, which would drop the
//! first packet once the link listens again. Packets go in batches, each once Yamcs counted the
//! last: UDP has no flow control, and a burst overflows Yamcs' socket buffer.
//!
//! And Yamcs is the oracle for transfer frames: the same TM and AOS frames go to its
//! `UdpTmFrameLink`s and to the daemon's links of frames, and both give the same packets.
//!
//! Yamcs' jars come from PyPI's fprime-yamcs-bundle in target/yamcs-venv (tests/yamcs/venv.sh),
//! run by Java 17 (Debian's openjdk-17-jre-headless); .ci/run installs both.

mod common;

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use aggregator::protocol::ccsds::PrimaryHeader;
use aggregator::protocol::transfer_frames::{
    TransferFrameFormat, TransferFrameKind, TransferFrameWriter,
};
use aggregator::SourceKind;
use base64::Engine;
use common::process::Daemon;
use common::{free_port, http_get_json, http_request, Client, TempDir};
use serde_json::Value;
use tokio::time::Instant;

/// The Yamcs instance of tests/yamcs/etc/yamcs.aggregator.yaml.
const INSTANCE: &str = "aggregator";
/// Its links: the TM server's, the forward's.
const TCP_LINK: &str = "tm-server";
const UDP_LINK: &str = "tm-forward";
/// Packets each link reads.
const PACKETS: usize = 1000;
/// Packets stored before waiting for Yamcs to count them: well within a socket buffer.
const BATCH: usize = 100;
/// The longest wait for Yamcs: a JVM starting on a loaded 2-core machine.
const YAMCS_PATIENCE: Duration = Duration::from_secs(60);

/// Packet `i` of the test: APIDs 100 to 103 in turn, sequence count `i` (so the first four bytes,
/// Yamcs' sequence number here, differ between any two), 1 to 64 bytes of data, and every 100th
/// 4,000 bytes: longer than Yamcs' links take by default (1,500 bytes).
fn packet(i: usize) -> Vec<u8> {
    let len = if i % 100 == 99 { 4000 } else { 1 + i % 64 };
    let header = PrimaryHeader::telemetry(100 + (i % 4) as u16, i as u16, len);
    let data = (0..len).map(|j| (i ^ j) as u8);
    header.encode().into_iter().chain(data).collect()
}

/// Yamcs' jars: the lib/ folder of the PyPI package in target/yamcs-venv.
fn yamcs_jars() -> PathBuf {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/yamcs-venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run tests/yamcs/venv.sh (Yamcs' jars, PyPI fprime-yamcs-bundle)",
        python.display()
    );
    let out = Command::new(&python)
        .args([
            "-c",
            "import fprime_yamcs_bundle; print(fprime_yamcs_bundle.LIB_DIR)",
        ])
        .output()
        .expect("run the venv's python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// A free UDP port on loopback, for Yamcs' `UdpTmDataLink` to bind.
fn free_udp_port() -> u16 {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind a UDP port");
    socket.local_addr().unwrap().port()
}

/// Yamcs running on tests/yamcs as its home (etc/, mdb/), its data, cache and log in the test's
/// scratch folder; its process group is killed when dropped, the test passed or not.
struct Yamcs {
    child: Child,
    http: SocketAddr,
    log: PathBuf,
    /// The UDP ports of its links of TM and of AOS transfer frames.
    tm_frames: u16,
    aos_frames: u16,
}

impl Yamcs {
    /// Starts Yamcs with its links to the TM server on `tm_port` and on `udp_port`, and its
    /// frame links on free ports.
    fn start(scratch: &Path, tm_port: u16, udp_port: u16) -> Yamcs {
        let home = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/yamcs");
        let http = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let (tm_frames, aos_frames) = (free_udp_port(), free_udp_port());
        let log = scratch.join("yamcs.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new("java")
            .arg("-Xmx512m")
            .arg("-Djava.util.logging.manager=org.yamcs.logging.YamcsLogManager")
            .arg("-cp")
            .arg(yamcs_jars().join("*"))
            .arg("org.yamcs.YamcsServer")
            .arg("--etc-dir")
            .arg(home.join("etc"))
            .arg("--data-dir")
            .arg(scratch.join("data"))
            .arg("--cache-dir")
            .arg(scratch.join("cache"))
            .arg("--no-color")
            .current_dir(&home)
            .env("YAMCS_HTTP_PORT", http.port().to_string())
            .env("AGGREGATOR_HOST", "127.0.0.1")
            .env("AGGREGATOR_TM_PORT", tm_port.to_string())
            .env("YAMCS_UDP_PORT", udp_port.to_string())
            .env("YAMCS_TM_FRAMES_PORT", tm_frames.to_string())
            .env("YAMCS_AOS_FRAMES_PORT", aos_frames.to_string())
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .process_group(0)
            .spawn()
            .expect("start java (Debian package openjdk-17-jre-headless)");
        Yamcs {
            child,
            http,
            log,
            tm_frames,
            aos_frames,
        }
    }

    /// The end of Yamcs' log, for failures.
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// `GET path` as JSON; `None` while Yamcs does not answer yet.
    async fn try_get(&self, path: &str) -> Option<Value> {
        let (status, _, body) = http_request(self.http, "GET", path, &[], None).await.ok()?;
        assert_eq!(status, 200, "GET {path}: {body}\n{}", self.log_tail());
        Some(serde_json::from_str(&body).expect("a JSON body"))
    }

    async fn get(&self, path: &str) -> Value {
        let answer = self.try_get(path).await;
        answer.unwrap_or_else(|| panic!("GET {path}: no answer\n{}", self.log_tail()))
    }

    /// `POST path` (an action without a body).
    async fn post(&self, path: &str) {
        let headers = ["Content-Length: 0"];
        let answer = http_request(self.http, "POST", path, &headers, None).await;
        let (status, _, body) = answer.expect("Yamcs answers");
        assert_eq!(status, 200, "POST {path}: {body}\n{}", self.log_tail());
    }

    /// Polls `GET path` until `done` holds for its answer; fails the test after
    /// [`YAMCS_PATIENCE`], or when Yamcs exits, with the end of its log.
    async fn wait_for(&mut self, what: &str, path: &str, done: impl Fn(&Value) -> bool) {
        let deadline = Instant::now() + YAMCS_PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("Yamcs exited {status} before {what}:\n{}", self.log_tail());
            }
            let answer = self.try_get(path).await;
            if answer.as_ref().is_some_and(&done) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no {what} after {YAMCS_PATIENCE:?}: GET {path} answered {answer:?}\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The link `name` as `/api/links` lists it.
    async fn link(&self, name: &str) -> Value {
        self.get(&format!("/api/links/{INSTANCE}/{name}")).await
    }

    async fn set_link(&self, name: &str, enabled: bool) {
        let action = if enabled { "enable" } else { "disable" };
        self.post(&format!("/api/links/{INSTANCE}/{name}:{action}"))
            .await;
    }

    /// Every packet Yamcs' archive holds from link `name` (of every link with `None`), as bytes,
    /// read a page at a time.
    async fn archived(&self, name: Option<&str>) -> Vec<Vec<u8>> {
        let mut packets = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let mut query = form_urlencoded::Serializer::new(String::new());
            if let Some(name) = name {
                query.append_pair("link", name);
            }
            query.append_pair("limit", "1000");
            if let Some(token) = &next {
                query.append_pair("next", token);
            }
            let path = format!("/api/archive/{INSTANCE}/packets?{}", query.finish());
            let page = self.get(&path).await;
            for packet in page["packets"].as_array().into_iter().flatten() {
                let base64 = packet["packet"].as_str().expect("a packet's bytes");
                let bytes = base64::engine::general_purpose::STANDARD.decode(base64);
                packets.push(bytes.expect("base64"));
            }
            match page["continuationToken"].as_str() {
                Some(token) => next = Some(token.to_owned()),
                None => return packets,
            }
        }
    }
}

impl Drop for Yamcs {
    fn drop(&mut self) {
        let group = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: signalling the process group our own child leads (`process_group(0)`).
        unsafe { libc::kill(-group, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// A counter of Yamcs' JSON: protobuf's int64 is a string there, and absent when 0.
fn count(value: &Value) -> u64 {
    match value {
        Value::Null => 0,
        Value::String(text) => text.parse().expect("a count"),
        other => other.as_u64().expect("a count"),
    }
}

/// The TM output `name`'s counters on the daemon's `/stats`.
async fn tm_stats(daemon: &Daemon, name: &str) -> Value {
    let stats = http_get_json(daemon.monitor, "/stats").await;
    let outputs = stats["tm"].as_array().expect("a tm list").iter();
    outputs
        .clone()
        .find(|output| output["name"] == name)
        .unwrap_or_else(|| panic!("no TM output {name} in {outputs:?}"))
        .clone()
}

/// Waits until the daemon's TM server `yamcs` counts `open` connections (a connection counts once
/// it found where it starts).
async fn wait_for_tm_connections(daemon: &Daemon, open: u64) {
    let what = format!("the TM server has {open} connections");
    common::wait_until_async(&what, YAMCS_PATIENCE, || async {
        count(&tm_stats(daemon, "yamcs").await["connections"]) == open
    })
    .await;
}

/// Stores `packets` (numbered from `first` as source live:1's sequences) a batch at a time, each
/// once Yamcs' link `link` counted the last; then checks that Yamcs archived exactly them from it.
async fn feed_and_check(
    daemon: &Daemon,
    yamcs: &mut Yamcs,
    link: &str,
    first: usize,
    packets: &[Vec<u8>],
) {
    let path = format!("/api/links/{INSTANCE}/{link}");
    let mut stored = 0;
    for batch in packets.chunks(BATCH) {
        let sequence = (first + stored) as u64;
        Client::store(daemon.uplink, SourceKind::LiveUplink, 1, sequence, batch).await;
        stored += batch.len();
        let what = format!("{link} counted {stored} packets");
        yamcs
            .wait_for(&what, &path, |info| {
                count(&info["dataInCount"]) >= stored as u64
            })
            .await;
    }
    assert_eq!(
        count(&yamcs.link(link).await["dataInCount"]),
        PACKETS as u64
    );

    // The link counts a packet before the archive writes it.
    let mut expected = packets.to_vec();
    expected.sort();
    let deadline = Instant::now() + YAMCS_PATIENCE;
    let mut archived = yamcs.archived(Some(link)).await;
    while archived.len() < expected.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        archived = yamcs.archived(Some(link)).await;
    }
    archived.sort();
    let missing = expected
        .iter()
        .filter(|p| archived.binary_search(p).is_err());
    let unexpected = archived
        .iter()
        .filter(|p| expected.binary_search(p).is_err());
    assert!(
        archived == expected,
        "{link}: Yamcs archived {} packets, {} of the {} sent missing, {} not sent",
        archived.len(),
        missing.count(),
        expected.len(),
        unexpected.count()
    );
}

#[tokio::test]
#[ignore = "needs Yamcs (PyPI fprime-yamcs-bundle) and Java 17, run by .ci/run"]
async fn yamcs_archives_every_packet_of_a_tm_server_and_of_a_tm_forward() {
    let scratch = TempDir::new("yamcs");
    let udp_port = free_udp_port();
    let sections = format!(
        "[[tm_servers]]\nname = \"yamcs\"\nlisten = \"127.0.0.1:0\"\nfrom = \"now\"\n\
         [[tm_forwards]]\nname = \"yamcs-udp\"\nto = \"127.0.0.1:{udp_port}\"\nfrom = \"now\"\n"
    );
    let daemon = Daemon::launch("yamcs", "json", &sections, "", None);
    let mut yamcs = Yamcs::start(&scratch.0, daemon.tm_port("yamcs"), udp_port);

    // Ready: the instance runs (its recorder subscribed to the stream), both links are up.
    let instance = format!("/api/instances/{INSTANCE}");
    yamcs
        .wait_for("the instance running", &instance, |i| {
            i["state"] == "RUNNING"
        })
        .await;
    let links = format!("/api/links/{INSTANCE}");
    yamcs
        .wait_for("every link OK", &links, |answer| {
            // The frame links list a link of each virtual channel too.
            let links = answer["links"].as_array().map_or(&[][..], Vec::as_slice);
            links.len() >= 4 && links.iter().all(|link| link["status"] == "OK")
        })
        .await;

    // The forward's link alone.
    yamcs.set_link(TCP_LINK, false).await;
    wait_for_tm_connections(&daemon, 0).await;
    let forwarded: Vec<Vec<u8>> = (0..PACKETS).map(packet).collect();
    feed_and_check(&daemon, &mut yamcs, UDP_LINK, 0, &forwarded).await;
    let forward = tm_stats(&daemon, "yamcs-udp").await;
    assert_eq!(count(&forward["packets_sent"]), PACKETS as u64, "{forward}");
    assert_eq!(count(&forward["send_errors"]), 0, "{forward}");

    // The TM server's link alone, on a new connection (`from = "now"`).
    yamcs.set_link(UDP_LINK, false).await;
    yamcs.set_link(TCP_LINK, true).await;
    wait_for_tm_connections(&daemon, 1).await;
    let served: Vec<Vec<u8>> = (PACKETS..2 * PACKETS).map(packet).collect();
    feed_and_check(&daemon, &mut yamcs, TCP_LINK, PACKETS, &served).await;
    let server = tm_stats(&daemon, "yamcs").await;
    assert_eq!(count(&server["packets_sent"]), PACKETS as u64, "{server}");

    // Each link's packets only under its own name.
    assert_eq!(yamcs.archived(Some(UDP_LINK)).await.len(), PACKETS);
    let forward_link = yamcs.link(UDP_LINK).await;
    assert_eq!(count(&forward_link["dataInCount"]), PACKETS as u64);
}

/// The TM frames of the frames test: 223 bytes with a FECF, spacecraft 42, as
/// tests/yamcs/etc/yamcs.aggregator.yaml's `tm-frames` link reads them.
const TM_FRAMES: TransferFrameFormat = TransferFrameFormat {
    kind: TransferFrameKind::Tm,
    length: 223,
    spacecraft_id: 42,
    randomized: false,
    fecf: true,
    ocf: false,
    header_error_control: false,
    insert_zone: 0,
};

/// The AOS frames: 256 bytes with a FECF, spacecraft 171, no header error control, insert zone
/// or OCF (the `aos-frames` link).
const AOS_FRAMES: TransferFrameFormat = TransferFrameFormat {
    kind: TransferFrameKind::Aos,
    length: 256,
    spacecraft_id: 171,
    ..TM_FRAMES
};

/// Frames of channels 0 and 1 as a spacecraft sends them, and the packets in them: 4 APIDs from
/// `apid`, odd ones on channel 1, each packet's count its number (so that Yamcs, which keys its
/// archive by the header's first 4 bytes and its clock's millisecond, keeps each); 1 to 300
/// bytes of data, every 10th 700 (several frames), an idle frame now and then (TM: of channel 7,
/// which carries nothing else; AOS: channel 63), and idle packets filling each channel's last
/// frame. (A TM idle frame of a channel in the middle of one of its packets, which no spacecraft
/// sends, is where the two differ: Yamcs drops that packet, the daemon keeps it.)
fn spacecraft_frames(format: TransferFrameFormat, apid: u16) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let mut channels = [0, 1].map(|vc| TransferFrameWriter::new(format, vc, 0));
    let mut idle = TransferFrameWriter::new(format, 7, 0);
    let (mut frames, mut packets) = (Vec::new(), Vec::new());
    for i in 0..240u16 {
        let len = if i % 10 == 9 {
            700
        } else {
            1 + usize::from(i * 37 % 300)
        };
        let header = PrimaryHeader::telemetry(apid + i % 4, i, len);
        let packet: Vec<u8> = (header.encode().into_iter())
            .chain((0..len).map(|j| (usize::from(i) ^ j) as u8))
            .collect();
        let channel = &mut channels[usize::from(i % 2)];
        channel.push(&packet);
        packets.push(packet);
        frames.extend(std::iter::from_fn(|| channel.next_frame()));
        if i % 17 == 0 {
            frames.push(idle.idle_frame());
        }
    }
    for channel in &mut channels {
        channel.flush();
        frames.extend(std::iter::from_fn(|| channel.next_frame()));
    }
    (frames, packets)
}

/// Yamcs as the oracle for transfer frames: the same TM frames, then the same AOS frames, each a
/// datagram, go to Yamcs' `UdpTmFrameLink`s and to the daemon's `udp` links of `tm-frames` and
/// `aos-frames` framing (`frame_marker = false`); both take the same packets out of them, each
/// once, in each APID's order, and the same as the spacecraft put in. Datagrams go in batches,
/// each once both counted the last.
#[tokio::test]
#[ignore = "needs Yamcs (PyPI fprime-yamcs-bundle) and Java 17, run by .ci/run"]
async fn yamcs_and_the_daemon_take_the_same_packets_out_of_frames() {
    let scratch = TempDir::new("yamcs-frames");
    let links = |name: &str, framing: &str, format: TransferFrameFormat, base: u32| {
        format!(
            "[[links]]\nname = \"{name}\"\ntransport = \"udp\"\naddress = \"127.0.0.1:0\"\n\
             framing = \"{framing}\"\nframe_length = {}\nspacecraft_id = {}\n\
             virtual_channels = [0, 1]\nframe_marker = false\nfecf = true\napid_base = {base}\n",
            format.length, format.spacecraft_id
        )
    };
    let toml = links("tm", "tm-frames", TM_FRAMES, 10_000)
        + &links("aos", "aos-frames", AOS_FRAMES, 20_000);
    let mut config = common::test_config();
    config.links = aggregator::Config::parse(&toml, Path::new("frames.toml"))
        .expect("valid [[links]]")
        .links;
    let (archive, sink) = common::Archive::open();
    let daemon = common::TestDaemon::start(config, sink).await;
    let mut yamcs = Yamcs::start(&scratch.0, free_port(), free_udp_port());
    let instance = format!("/api/instances/{INSTANCE}");
    yamcs
        .wait_for("the instance running", &instance, |i| {
            i["state"] == "RUNNING"
        })
        .await;
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let yamcs_at = |port| SocketAddr::from(([127, 0, 0, 1], port));
    let cases = [
        (TM_FRAMES, 200, "tm", "tm-frames", yamcs_at(yamcs.tm_frames)),
        (
            AOS_FRAMES,
            300,
            "aos",
            "aos-frames",
            yamcs_at(yamcs.aos_frames),
        ),
    ];
    for (format, apid, ours, theirs, to_yamcs) in cases {
        let link = format!("/api/links/{INSTANCE}/{theirs}");
        yamcs
            .wait_for("the frame link OK", &link, |l| l["status"] == "OK")
            .await;
        let (frames, packets) = spacecraft_frames(format, apid);
        let mut sent = 0;
        for batch in frames.chunks(20) {
            for frame in batch {
                socket.send_to(frame, to_yamcs).await.unwrap();
                socket.send_to(frame, daemon.links[ours]).await.unwrap();
            }
            sent += batch.len() as u64;
            let what = format!("{theirs} counted {sent} frames");
            yamcs
                .wait_for(&what, &link, |l| count(&l["dataInCount"]) >= sent)
                .await;
            common::wait_until(
                &format!("the daemon's {ours} link took {sent} frames"),
                YAMCS_PATIENCE,
                || {
                    let links = daemon.stats.links();
                    let link = links.iter().find(|l| l.name == ours).expect("the link");
                    link.frames.as_ref().is_some_and(|q| q.frames_good >= sent)
                },
            )
            .await;
        }
        let of_apids =
            |p: &Vec<u8>| (apid..apid + 4).contains(&PrimaryHeader::parse(p).unwrap().apid);
        let ours_stored: Vec<Vec<u8>> = (archive.records().iter())
            .map(|r| r.payload.to_vec())
            .filter(of_apids)
            .collect();
        // The link counts a packet before the archive writes it.
        let deadline = Instant::now() + YAMCS_PATIENCE;
        let mut theirs_stored = yamcs.archived(None).await;
        while theirs_stored.iter().filter(|p| of_apids(p)).count() < packets.len()
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
            theirs_stored = yamcs.archived(None).await;
        }
        theirs_stored.retain(of_apids);
        let per_apid = |packets: &[Vec<u8>]| {
            let mut by_apid: std::collections::BTreeMap<u16, Vec<Vec<u8>>> = Default::default();
            for p in packets {
                by_apid
                    .entry(PrimaryHeader::parse(p).unwrap().apid)
                    .or_default()
                    .push(p.clone());
            }
            by_apid
        };
        // Yamcs' archive lists by time: within a millisecond, in any order; sorted, the same set.
        let mut sorted = theirs_stored.clone();
        sorted.sort();
        let mut expected = packets.clone();
        expected.sort();
        assert!(
            sorted == expected,
            "{theirs}: Yamcs took {} packets of the {} sent",
            sorted.len(),
            expected.len()
        );
        assert_eq!(
            per_apid(&ours_stored),
            per_apid(&packets),
            "{ours}: the daemon's packets"
        );
        let info = yamcs.link(theirs).await;
        let quality = daemon
            .stats
            .links()
            .into_iter()
            .find(|l| l.name == ours)
            .unwrap()
            .frames
            .unwrap();
        assert_eq!(
            (
                quality.frames_bad_fecf,
                quality.vc_gaps,
                quality.packets_dropped_incomplete
            ),
            (0, 0, 0),
            "{info}"
        );
    }
    assert!(daemon.shutdown().await.is_clean());
}
