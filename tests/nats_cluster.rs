//! Nothing acknowledged is lost with a machine: a JetStream cluster of three `nats-server`s on
//! loopback (`common::NatsCluster`; Debian's `nats-server` package, `.ci/run` installs it), and
//! every frame a simulator was acknowledged held to be in the stream once and in order
//! (`nats_stream::audit`).
//!
//! - The audit itself, on made-up ack logs and streams.
//! - The cluster: a publisher with a window of publishes in flight, the stream's leader
//!   SIGKILLed under it and started again; every PubAcked message is in the R3 stream once.
//! - Two daemons publishing with `ack = "replicated"` and one simulator failing over between
//!   them: a daemon SIGKILLed with its archive deleted, or a NATS server SIGKILLed, loses nothing
//!   acknowledged; with `ack = "local"` the lost archive loses frames, which shows the test can
//!   fail.
//! - A daemon's sink publishes through the server that leads the stream, and follows the leader
//!   when it steps down, with every frame archived in the stream once and in order, in either
//!   layout.

mod common;
mod nats_stream;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aggregator::sinks::message::Layout;
use async_nats::jetstream;
use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;

use common::{NatsCluster, NatsDaemon, Sim, TempDir};
use nats_stream::audit::{audit, Acknowledged, Audit};
use nats_stream::{create_stream, create_stream_of, stream_leader, stream_messages, StreamMessage};

/// The longest any one wait may take: generous, the machine is shared.
const PATIENCE: Duration = Duration::from_secs(60);

/// Polls `done` until it holds; fails the test with `what` after [`PATIENCE`].
fn wait_until(what: &str, done: impl FnMut() -> bool) {
    common::wait_until_blocking(what, PATIENCE, done);
}

// The audit, on made-up input.

/// A message of the stream at `stream_sequence` with the id `id`.
fn message(stream_sequence: u64, id: &str) -> StreamMessage {
    let parts: Vec<&str> = id.split('.').collect();
    StreamMessage {
        subject: format!(
            "telemetry.{}",
            parts[parts.len() - 3..parts.len() - 1].join(".")
        ),
        id: Some(id.to_string()),
        sequence: parts.last().map(|s| s.to_string()),
        site: None,
        priority: None,
        stream_sequence,
    }
}

/// Messages at stream sequences 1, 2, .. with the ids `ids`.
fn stream_of(ids: &[&str]) -> Vec<StreamMessage> {
    let numbered = (1..).zip(ids);
    numbered.map(|(n, id)| message(n, id)).collect()
}

fn acknowledged(logs: &[&str]) -> Acknowledged {
    let mut acknowledged = Acknowledged::default();
    for log in logs {
        acknowledged.add_log(log).expect("a well-formed ack log");
    }
    acknowledged
}

#[test]
fn audit_of_every_acknowledged_frame_once_in_order_is_clean() {
    let log =
        "welcome live 3 -\nack live 3 1\nwelcome replay 1000 -\nack live 3 2\nack replay 1000 0\n";
    let stream = stream_of(&[
        "live.3.0",
        "replay.1000.0",
        "live.3.1",
        "live.3.2",
        // Sent and stored, its ACK never came: allowed.
        "live.3.3",
    ]);
    let report = audit(&acknowledged(&[log]), &stream);
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.acknowledged, 4, "{report}");
    assert_eq!(report.sources.len(), 2);
    let live = &report.sources[&("live".to_string(), 3)];
    assert_eq!((live.acknowledged, live.beyond_acks), (3, 1));
    assert!(live.in_order());
}

#[test]
fn audit_counts_acknowledged_frames_the_stream_lacks() {
    let log = "welcome live 1 -\nack live 1 4\nwelcome live 2 -\nack live 2 1\n";
    let stream = stream_of(&["live.1.0", "live.1.2", "live.1.4", "live.2.0"]);
    let report = audit(&acknowledged(&[log]), &stream);
    assert_eq!(
        (report.acknowledged, report.missing, report.duplicated),
        (7, 3, 0)
    );
    assert_eq!(report.sources[&("live".to_string(), 1)].missing, [1, 3]);
    assert_eq!(report.sources[&("live".to_string(), 2)].missing, [1]);
    assert!(!report.is_clean());
    let text = report.to_string();
    assert!(text.contains("3 missing"), "{text}");
    assert!(
        text.contains(r#"first missing: [("live", 1, 1), ("live", 1, 3), ("live", 2, 1)]"#),
        "{text}"
    );
}

#[test]
fn audit_counts_frames_held_twice_whichever_site_published_them() {
    let log = "welcome live 5 -\nack live 5 2\n";
    // The site's id form and the fleet's name the same frame.
    let stream = stream_of(&[
        "live.5.0",
        "a.live.5.1",
        "live.5.1",
        "live.5.2",
        "b.live.5.2",
    ]);
    let report = audit(&acknowledged(&[log]), &stream);
    assert_eq!((report.missing, report.duplicated), (0, 2), "{report}");
    assert_eq!(report.sources[&("live".to_string(), 5)].duplicated, [1, 2]);
    // A copy of the highest sequence so far is a duplicate, not a step back.
    assert_eq!(report.out_of_order, 0, "{report}");
    assert!(report
        .to_string()
        .contains("first duplicated: [(\"live\", 5, 1)"));
}

#[test]
fn audit_takes_the_stream_order_from_stream_sequences() {
    let log = "welcome live 7 -\nack live 7 3\nwelcome live 8 -\nack live 8 1\n";
    // Listed in frame order, stored with 2 after 3: and live 8 interleaved, in order.
    let mut stream = vec![
        message(1, "live.7.0"),
        message(2, "live.7.1"),
        message(5, "live.7.2"),
        message(4, "live.7.3"),
        message(3, "live.8.0"),
        message(6, "live.8.1"),
    ];
    let report = audit(&acknowledged(&[log]), &stream);
    assert_eq!((report.missing, report.out_of_order), (0, 1), "{report}");
    assert_eq!(report.sources[&("live".to_string(), 7)].out_of_order, [2]);
    assert!(report.sources[&("live".to_string(), 8)].in_order());
    stream[2].stream_sequence = 3;
    stream[4].stream_sequence = 5;
    assert!(audit(&acknowledged(&[log]), &stream).is_clean());
}

#[test]
fn audit_orders_each_priority_of_a_source_on_its_own() {
    let log = "welcome live 1 -\nack live 1 3\n";
    // 3 is Emergency, stored ahead of the Routine 1 and 2, which are stored out of order.
    let mut stream = stream_of(&["live.1.0", "live.1.3", "live.1.2", "live.1.1"]);
    for (message, priority) in stream
        .iter_mut()
        .zip(["routine", "emergency", "routine", "routine"])
    {
        message.priority = Some(priority.to_string());
    }
    let report = audit(&acknowledged(&[log]), &stream);
    assert_eq!(report.out_of_order, 1, "{report}");
    assert_eq!(report.sources[&("live".to_string(), 1)].out_of_order, [1]);
    // Without priorities, the Emergency frame went ahead of 1 and 2 as well.
    for message in &mut stream {
        message.priority = None;
    }
    let report = audit(&acknowledged(&[log]), &stream);
    assert_eq!(
        report.sources[&("live".to_string(), 1)].out_of_order,
        [2, 1]
    );
}

#[test]
fn acknowledgements_are_cumulative_from_where_a_run_numbers_its_frames() {
    // The first run acknowledged 0..=5 (a late, lower ACK changes nothing); the second, a
    // restarted source whose daemon had stored up to 5, numbered from 6 and was acknowledged
    // to 8; its later WELCOME renumbers nothing.
    let first = "welcome live 1 -\nack live 1 5\nack live 1 3\n";
    let second = "welcome live 1 5\nack live 1 8\nwelcome live 1 7\n";
    let acked = acknowledged(&[first, second]);
    assert_eq!(acked.frames(), 9);
    let all: Vec<String> = (0..=8).map(|seq| format!("live.1.{seq}")).collect();
    let ids: Vec<&str> = all.iter().map(String::as_str).collect();
    assert!(audit(&acked, &stream_of(&ids)).is_clean());
    // The second run alone promised only 6..=8.
    let report = audit(&acknowledged(&[second]), &stream_of(&ids[6..]));
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.acknowledged, 3);
    // A source welcomed and never acknowledged promised nothing.
    assert_eq!(acknowledged(&["welcome replay 1001 -\n"]).frames(), 0);
}

#[test]
fn an_ack_log_line_of_another_shape_is_an_error_and_so_is_a_foreign_message() {
    let mut acked = Acknowledged::default();
    for bad in [
        "ack live 1\n",
        "ack uplink 1 2\n",
        "ack live one 2\n",
        "nack live 1 2\n",
        "welcome live 1 x\n",
    ] {
        let err = acked.add_log(bad).expect_err(bad);
        assert!(err.starts_with("line 1: "), "{err}");
    }
    let mut stream = stream_of(&["live.1.0"]);
    stream.push(StreamMessage {
        id: Some("not-a-frame".into()),
        ..message(2, "live.1.1")
    });
    let report = audit(
        &acknowledged(&["welcome live 1 -\nack live 1 0\n"]),
        &stream,
    );
    assert_eq!(report.unidentified, 1);
    assert!(!report.is_clean());
    assert!(report.to_string().contains("1 messages without a frame id"));
}

// The cluster, with a publisher of our own.

/// Sources the publisher plays, its messages going round them.
const SOURCES: u32 = 4;
/// Publishes awaiting their PubAck at once.
const WINDOW: usize = 64;

/// Each source's PubAcked sequences, and the ack log a simulator would have written of them.
struct Ledger {
    /// Per source: the sequences PubAcked above the highest one below which all are.
    acked: BTreeMap<u32, BTreeSet<u64>>,
    /// Per source: every sequence up to this one is PubAcked.
    through: BTreeMap<u32, u64>,
    log: String,
    /// PubAcks taken, shared with the test's thread.
    count: Arc<AtomicU64>,
}

impl Ledger {
    fn new(count: Arc<AtomicU64>) -> Ledger {
        let mut log = String::new();
        for source in 0..SOURCES {
            let _ = writeln!(log, "welcome live {source} -");
        }
        Ledger {
            acked: BTreeMap::new(),
            through: BTreeMap::new(),
            log,
            count,
        }
    }

    /// Records a PubAck; an `ack` line when every sequence of the source up to a higher one is.
    fn acked(&mut self, (source, seq): (u32, u64)) {
        self.count.fetch_add(1, Ordering::Relaxed);
        let pending = self.acked.entry(source).or_default();
        pending.insert(seq);
        let mut through = self.through.get(&source).map(|t| t + 1).unwrap_or(0);
        while pending.remove(&through) {
            through += 1;
        }
        if let Some(through) = through.checked_sub(1) {
            if self.through.insert(source, through) != Some(through) {
                let _ = writeln!(self.log, "ack live {source} {through}");
            }
        }
    }
}

/// Publishes `live.SOURCE.SEQ` messages round the sources through `urls` as a sink does: a window
/// of publishes awaiting their PubAck, and a message whose PubAck failed published again with
/// its id until JetStream acknowledges it. Once `stop` is set, ends when every message is
/// acknowledged, with the ack log of what was.
async fn publish(urls: Vec<String>, stop: Arc<AtomicBool>, count: Arc<AtomicU64>) -> String {
    let client = async_nats::connect(urls)
        .await
        .expect("connect to the cluster");
    let mut context = jetstream::new(client);
    context.set_timeout(Duration::from_secs(2));
    let mut ledger = Ledger::new(count);
    let mut again: VecDeque<(u32, u64)> = VecDeque::new();
    let mut in_flight = FuturesUnordered::new();
    let mut next = 0u64;
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        if stopping && again.is_empty() && in_flight.is_empty() {
            return ledger.log;
        }
        while in_flight.len() < WINDOW {
            let message = match again.pop_front() {
                Some(message) => message,
                None if stopping => break,
                None => {
                    next += 1;
                    ((next - 1) as u32 % SOURCES, (next - 1) / u64::from(SOURCES))
                }
            };
            let (source, seq) = message;
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(
                async_nats::header::NATS_MESSAGE_ID,
                format!("live.{source}.{seq}").as_str(),
            );
            headers.insert("Aggregator-Sequence", seq.to_string().as_str());
            let subject = format!("telemetry.live.{source}");
            let payload = format!("frame {seq}").into();
            match context
                .publish_with_headers(subject, headers, payload)
                .await
            {
                Ok(pub_ack) => in_flight.push(async move { (message, pub_ack.await) }),
                Err(_) => {
                    again.push_front(message);
                    break;
                }
            }
        }
        match in_flight.next().await {
            Some((message, Ok(_))) => ledger.acked(message),
            Some((message, Err(_))) => again.push_back(message),
            // Nothing in flight: the publish failed; the client is reconnecting.
            None => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

#[test]
#[ignore = "needs nats-server (tests/nats/venv.sh, or Debian package nats-server); .ci/run runs it"]
fn every_pub_acked_message_outlives_a_sigkilled_stream_leader() {
    let started = Instant::now();
    let mut cluster = NatsCluster::start("pubacks");
    let formed = started.elapsed();
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(create_stream(cluster.urls(), NatsCluster::SIZE));
    let (stop, count) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
    );
    let publisher = runtime.spawn(publish(cluster.urls(), stop.clone(), count.clone()));
    let acked = || count.load(Ordering::Relaxed);
    wait_until("1,000 PubAcks", || acked() >= 1_000);

    let leader = runtime
        .block_on(stream_leader(cluster.urls()))
        .expect("the stream has a leader");
    let victim = cluster.index_of(&leader);
    cluster.kill(victim);
    let at_kill = acked();
    wait_until("1,000 more PubAcks without the leader", || {
        acked() >= at_kill + 1_000
    });
    cluster.restart(victim);
    let at_restart = acked();
    wait_until("1,000 more PubAcks with it back", || {
        acked() >= at_restart + 1_000
    });
    stop.store(true, Ordering::Relaxed);
    let log = runtime
        .block_on(async { tokio::time::timeout(PATIENCE, publisher).await })
        .expect("the publisher drains its window in time")
        .expect("the publisher");

    let survivor = (victim + 1) % NatsCluster::SIZE;
    let messages = runtime.block_on(stream_messages(cluster.url(survivor), None));
    let mut acknowledged = Acknowledged::default();
    acknowledged.add_log(&log).expect("the publisher's ack log");
    let report = audit(&acknowledged, &messages);
    println!(
        "cluster formed in {formed:?}; {} of {} killed at {at_kill} PubAcks; {report}",
        leader,
        NatsCluster::SIZE
    );
    assert!(report.acknowledged >= 3_000, "{report}");
    // A PubAck lost to the kill sends its message again, after later ones: only the order may
    // differ from the ids'.
    assert_eq!(
        (report.missing, report.duplicated, report.unidentified),
        (0, 0, 0),
        "{report}"
    );
    assert_eq!(messages.len() as u64, acked(), "one message per PubAck");
}

// Two daemons and a simulator failing over between them. Each of these waits for
// `[sinks.nats] ack`, `replicas` and `identity`, and `uplink-sim --uplink A,B`; .ci/run skips them
// until then.

/// What goes down mid-run.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// Daemon A, SIGKILLed, and its archive directory deleted: a machine lost. While two of the
    /// three NATS servers hang (SIGSTOP), so that it dies with frames it archived and JetStream
    /// does not have, whatever its sink's pace; they go on after.
    DaemonAndArchive,
    /// The NATS server leading the stream, SIGKILLed, and started again later.
    NatsServer,
}

/// `uplink-sim`'s ack-log lines of ACKs so far (the file is written in blocks of its buffer).
fn ack_lines(path: &Path) -> usize {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().filter(|line| line.starts_with("ack ")).count()
}

/// Two daemons, sites `a` and `b`, publishing with `ack` into an R3 stream of a cluster, and a
/// simulator of 48 uplinks and 2 replays failing over from A to B; `fault` mid-run, once the
/// simulator has ACKs and daemon A has published. The audit of the stream against the
/// simulator's ack log, read from a server that never went down, once the daemons left have
/// published everything.
fn fleet_run(name: &str, ack: &str, fault: Fault) -> Audit {
    let mut cluster = NatsCluster::start(name);
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(create_stream(cluster.urls(), NatsCluster::SIZE));
    let sink = format!(
        "ack = \"{ack}\"\nreplicas = {}\nidentity = \"fleet\"\n\
         subject = \"telemetry.{{kind}}.{{source}}\"\n",
        NatsCluster::SIZE
    );
    let [dir_a, dir_b, sim_dir] =
        ["a", "b", "sim"].map(|dir| TempDir::new(&format!("{name}-{dir}")));
    let mut a = NatsDaemon::start_in(&dir_a.0, "a", &cluster.urls(), &sink, "");
    let b = NatsDaemon::start_in(&dir_b.0, "b", &cluster.urls(), &sink, "");
    let acks = sim_dir.0.join("acks");
    let uplinks = format!("{},{}", a.uplink_addr(), b.uplink_addr());
    let replays = format!("{},{}", a.replay_addr(), b.replay_addr());
    let sim = Sim::start(
        &uplinks,
        &replays,
        &[
            "--scenario",
            "default",
            "--uplinks",
            "48",
            "--replays",
            "2",
            "--rate",
            "50",
            "--duration",
            "10",
            "--ack-log",
            acks.to_str().expect("a UTF-8 path"),
            "--require-all-acked",
            "--progress",
            "off",
        ],
    );
    wait_until("the simulator's ack log to show ACKs", || {
        ack_lines(&acks) > 0
    });
    wait_until("daemon a to publish", || a.stat("nats_published") > 0);
    let mut survivors: Vec<&NatsDaemon> = vec![&b];
    let reader = match fault {
        Fault::DaemonAndArchive => {
            // Without a quorum nothing daemon A archives now is replicated: it dies with frames
            // it archived and JetStream does not hold, as a machine behind on its sink does.
            let (archived, acked) = (a.stat("frames_archived"), ack_lines(&acks));
            cluster.pause(1);
            cluster.pause(2);
            wait_until("daemon a to archive 500 frames without a quorum", || {
                a.stat("frames_archived") >= archived + 500
            });
            if ack == "local" {
                // The control: ACKs of frames JetStream never got reach the simulator before the
                // kill (frames stored in one sync may be counted before their ACKs go out). The
                // log is buffered (8 KiB): 600 lines more are 300 or more taken since the pause.
                wait_until(
                    "the simulator to take daemon a's ACKs without a quorum",
                    || ack_lines(&acks) >= acked + 600,
                );
            }
            a.kill();
            std::fs::remove_dir_all(&a.archive).expect("delete daemon a's archive");
            cluster.resume(1);
            cluster.resume(2);
            cluster.url(0)
        }
        Fault::NatsServer => {
            let leader = runtime
                .block_on(stream_leader(cluster.urls()))
                .expect("the stream has a leader");
            let victim = cluster.index_of(&leader);
            cluster.kill(victim);
            let at_kill = ack_lines(&acks);
            wait_until("more ACKs without the server", || {
                ack_lines(&acks) > at_kill
            });
            cluster.restart(victim);
            survivors.push(&a);
            cluster.url((victim + 1) % NatsCluster::SIZE)
        }
    };
    sim.wait();
    for daemon in &survivors {
        wait_until("the sinks to publish everything", || {
            daemon.stat("nats_lag_frames") == 0
        });
    }
    if let (Fault::DaemonAndArchive, "replicated") = (&fault, ack) {
        // B resumed the sources that A had published where the stream holds them.
        let log = b.log();
        assert!(
            log.contains("the fleet's stream holds the source further"),
            "{log}"
        );
    }
    // With every daemon alive, what they archived, each frame by one of them (no source failed
    // over): the read waits until the stream's leader holds it all (a server just restarted may
    // lead before it caught up). Not what JetStream acknowledged to them as new: a PubAck lost
    // with the killed leader makes a stored frame's republish a duplicate, not counted as new.
    let expected = match fault {
        Fault::NatsServer => Some(survivors.iter().map(|d| d.stat("frames_archived")).sum()),
        Fault::DaemonAndArchive => None,
    };
    let messages = runtime.block_on(stream_messages(reader, expected));
    messages.iter().for_each(assert_fleet_identity);
    audit(&Acknowledged::read(&[&acks]), &messages)
}

/// A message as `identity = "fleet"` publishes it: the id `kind.source.seq` without the site, the
/// subject `telemetry.{kind}.{source}`, and the site that published it in `Aggregator-Site`.
fn assert_fleet_identity(message: &StreamMessage) {
    let Some((None, (kind, source, seq))) = message.identity() else {
        panic!("not a fleet message id: {message:?}");
    };
    assert_eq!(
        message.subject,
        format!("telemetry.{kind}.{source}"),
        "{message:?}"
    );
    assert_eq!(message.sequence, Some(seq.to_string()), "{message:?}");
    let site = message.site.as_deref();
    assert!(matches!(site, Some("a" | "b")), "{message:?}");
}

#[test]
#[ignore = "needs nats-server (tests/nats/venv.sh, or Debian package nats-server); .ci/run runs it"]
fn fleet_replicated_acks_outlive_a_daemon_killed_with_its_archive() {
    let report = fleet_run("fleet-daemon", "replicated", Fault::DaemonAndArchive);
    println!("{report}");
    assert!(report.acknowledged > 0, "{report}");
    assert!(report.is_clean(), "{report}");
}

#[test]
#[ignore = "needs nats-server (tests/nats/venv.sh, or Debian package nats-server); .ci/run runs it"]
fn fleet_replicated_acks_outlive_a_killed_nats_server() {
    let report = fleet_run("fleet-nats", "replicated", Fault::NatsServer);
    println!("{report}");
    assert!(report.acknowledged > 0, "{report}");
    assert!(report.is_clean(), "{report}");
}

/// The control: acknowledged on the local archive alone, what daemon A had not yet published is
/// lost with it, and the audit says so.
#[test]
#[ignore = "needs nats-server (tests/nats/venv.sh, or Debian package nats-server); .ci/run runs it"]
fn fleet_local_acks_are_lost_with_a_killed_daemon_archive() {
    let report = fleet_run("fleet-local", "local", Fault::DaemonAndArchive);
    println!("{report}");
    assert!(report.missing > 0, "{report}");
}

/// The server that has a connection named `name` the server took messages from, if one has.
fn server_of(cluster: &NatsCluster, name: &str) -> Option<usize> {
    (0..NatsCluster::SIZE)
        .find(|&i| (cluster.connections(i).iter()).any(|(n, in_msgs)| n == name && *in_msgs > 0))
}

/// Asks the stream's leader `leader` to step down, and waits until another server leads it.
async fn step_down(urls: Vec<String>, leader: &str) -> String {
    let client = async_nats::connect(urls.clone())
        .await
        .expect("connect to the cluster");
    let subject = "$JS.API.STREAM.LEADER.STEPDOWN.TELEMETRY";
    let answer = client.request(subject, "".into()).await.expect("stepdown");
    let deadline = Instant::now() + PATIENCE;
    loop {
        match stream_leader(urls.clone()).await {
            Some(now) if now != leader => return now,
            _ if Instant::now() > deadline => panic!("{leader} still leads: {answer:?}"),
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// The sink publishes through a connection of its own to the server that leads the stream, not
/// through whichever server its client picked, and follows the leader when it moves; the stream
/// (created with `description`: its layout) holds every frame archived once, each source's in
/// order.
fn leader_run(name: &str, description: Option<String>) {
    let cluster = NatsCluster::start(name);
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(create_stream_of(
        cluster.urls(),
        NatsCluster::SIZE,
        description,
    ));
    let sink = "ack = \"replicated\"\nreplicas = 3\nidentity = \"fleet\"\n\
                subject = \"telemetry.{kind}.{source}\"\n";
    let dir = TempDir::new(&format!("{name}-a"));
    let daemon = NatsDaemon::start_in(&dir.0, "a", &cluster.urls(), sink, "");
    let mut own = None;
    wait_until("the sink's own connection", || {
        own = server_of(&cluster, "aggregator a");
        own.is_some()
    });
    let own = own.expect("found");
    let mut leader = runtime
        .block_on(stream_leader(cluster.urls()))
        .expect("a leader");
    if cluster.index_of(&leader) == own {
        // The sink's own connection leads: the leader moves, so that the sink must follow it.
        leader = runtime.block_on(step_down(cluster.urls(), &leader));
    }
    for moved in [false, true] {
        // The sink's log lines from here on name the leader it takes (from its start at first).
        let logged = if moved {
            daemon.log().lines().count()
        } else {
            0
        };
        if moved {
            leader = runtime.block_on(step_down(cluster.urls(), &leader));
        }
        // Frames for as long as the sink may take to notice the leader, and more.
        let sim = daemon.sim(100, 10);
        let named = format!("\"leader\":\"{leader}\"");
        let names = || {
            daemon
                .log()
                .lines()
                .skip(logged)
                .any(|line| line.contains(&named))
        };
        // Longer than a server that answered late is left alone (a minute).
        let patience = PATIENCE * 2;
        common::wait_until_blocking(
            &format!("the sink to publish through {leader}"),
            patience,
            || names() && daemon.stat("nats_at_leader") == 1,
        );
        // The messages the leader's server took from the daemon (its own connection's questions
        // are a few a second): the sink's publishes.
        let at = cluster.index_of(&leader);
        let from_daemon = || -> u64 {
            let connections = cluster.connections(at);
            let daemon = connections
                .iter()
                .filter(|(name, _)| name.starts_with("aggregator a"));
            daemon.map(|(_, in_msgs)| in_msgs).sum()
        };
        let before = from_daemon();
        sim.wait();
        let published = from_daemon().saturating_sub(before);
        assert!(
            published >= 50,
            "{leader} took {published} messages from the daemon"
        );
    }
    wait_until("the sink to publish everything", || {
        daemon.stat("nats_lag_frames") == 0
    });
    let archived = daemon.stat("frames_archived");
    let messages = runtime.block_on(stream_messages(cluster.urls(), Some(archived)));
    assert_eq!(messages.len() as u64, archived);
    let mut last: BTreeMap<(&String, &Option<String>), u64> = BTreeMap::new();
    for message in &messages {
        let (series, seq) = (
            (&message.subject, &message.priority),
            message.frame_sequence(),
        );
        let before = last.insert(series, seq);
        assert!(before < Some(seq), "{series:?}: {seq} after {before:?}");
    }
}

#[test]
#[ignore = "needs nats-server (tests/nats/venv.sh, or Debian package nats-server); .ci/run runs it"]
fn the_sink_publishes_through_the_streams_leader_wherever_it_moves() {
    leader_run("leader", Some(Layout::NEW.description()));
}

/// In layout `frame/1` many frames of a source are in flight at once: none overtakes another as
/// the sink moves to the new leader's connection.
#[test]
#[ignore = "needs nats-server (tests/nats/venv.sh, or Debian package nats-server); .ci/run runs it"]
fn the_sink_follows_the_leader_in_order_in_layout_frame_1() {
    leader_run("leader-frame", None);
}
