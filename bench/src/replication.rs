//! The replication run: what `[sinks.nats] ack = "replicated"` costs (`docs/scale-out.md`), on a
//! JetStream cluster of `nats-server` processes on loopback (`nats_cluster`: three nodes and R3
//! streams, as the scenario ships). Each round measures three windows at each payload:
//!
//! - **plain**: an async-nats publisher in this process (`publisher`) sends the scenario's
//!   messages, each the one the replicated sink would publish (its subject, id and headers, made
//!   by its own `Naming`), with its window of publishes awaiting their PubAck, into a
//!   fresh stream: what JetStream acknowledges on this machine, and how soon.
//! - **replicated**: the durable daemon with `ack = "replicated"` under the main runs' saturating
//!   uplinks and the throttle run's emergency-only sources (`emergency`); the load client counts
//!   what the ACKs cover and how long after its send each frame was covered (`acks`). A frame is
//!   acknowledged once the archive synced it, the sink read it back and published it, and its
//!   PubAck came: the acknowledged frames/s should be at least 0.8 of the plain publisher's.
//! - **local**: the same daemon with `ack = "local"`: ACKs at the archive's sync, the sink
//!   publishing behind them at its own pace.
//!
//! Once a daemon has stopped, its stream is read back (`stream_check`): with `replicated` every
//! frame the load client saw acknowledged must be there once, or the run fails; with `local`, whose
//! ACKs do not wait for JetStream, what it lacks is only reported (a control the checker must find
//! short when the sink falls behind).
//!
//! The order of the three rotates from round to round, so that the machine's drift falls on each
//! alike. Each window has a stream of its own, made before it (so that the daemon finds it with
//! its replicas, on a cluster that is ready) and deleted after it. The daemon runs as the other
//! daemon windows do (the library, or the `--daemon` binary), with a config of the
//! `--daemon-config` file's keys and the run's own `[sinks.nats]`: every node's URL, `identity =
//! "fleet"`, the streams' `replicas`, and the plain publisher's `window`.

use std::cell::RefCell;
use std::path::Path;
use std::time::{Duration, Instant};

use aggregator::archive::format::FrameRecord;
use aggregator::config::NatsConfig;
use aggregator::sinks::message::{Layout, Naming};
use aggregator::{Priority, SourceKind};
use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use tokio::runtime::Runtime;

use crate::child::{self, ChildProc};
use crate::control::{self, ClientAcks, Counts, Samples};
use crate::daemon_config::{self, ConfigFile};
use crate::nats_cluster::{self, NatsCluster};
use crate::page_cache::Ballast;
use crate::publisher::publish_windowed;
use crate::results::{
    process_cpu_ns, PlainPublisher, Plan, ReplicationPlan, ReplicationResult, ReplicationRound,
    SinkWindow,
};
use crate::{emergency, external, stream_check, throttle, Variant};

/// The duplicate window of every stream: the sink's default (`sinks.nats.duplicate_window_s`).
const DUPLICATE_WINDOW: Duration = Duration::from_secs(600);
/// How long a new stream may take to elect its leader.
const LEADER_LIMIT: Duration = Duration::from_secs(10);
/// `shutdown.drain_deadline_ms` of the daemon with `ack = "replicated"`: its drain stores the frames
/// its gate held for JetStream only as fast as its sink publishes them, and every processed frame
/// must reach the archive (a check of every run); the default 5 s is too short on a slow build.
const REPLICATED_DRAIN_DEADLINE_MS: i64 = 60_000;

/// What a window of a round measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Publisher {
    /// The plain async-nats publisher.
    Plain,
    /// The daemon with `ack = "replicated"`.
    Replicated,
    /// The daemon with `ack = "local"`.
    Local,
}

impl Publisher {
    /// The window's name; for a daemon, its `sinks.nats.ack`.
    pub fn name(self) -> &'static str {
        match self {
            Publisher::Plain => "plain",
            Publisher::Replicated => "replicated",
            Publisher::Local => "local",
        }
    }

    /// Its stream.
    fn stream(self) -> String {
        format!("BENCH_{}", self.name().to_uppercase())
    }

    /// The first token of its subjects: `bench-replicated.{kind}.{source}`.
    fn prefix(self) -> String {
        format!("bench-{}", self.name())
    }
}

/// The windows of round `run` (from 1), in the order they run: rotated by one each round.
pub fn order(run: usize) -> [Publisher; 3] {
    let mut order = [Publisher::Plain, Publisher::Replicated, Publisher::Local];
    order.rotate_left(run.saturating_sub(1) % 3);
    order
}

/// Runs `plan.runs` rounds at every payload; `None` when the scenario has no replication run, and
/// a result that says why where `nats-server` is missing.
pub fn run(exe: &Path, plan: &Plan) -> Result<Option<ReplicationResult>, String> {
    let Some(settings) = plan.replication else {
        return Ok(None);
    };
    let binary = match nats_cluster::binary() {
        Ok(binary) => binary,
        Err(why) => {
            eprintln!("[bench] replication: skipped: {why}");
            let skipped = Some(why);
            let (server, rounds, ballast) = (None, Vec::new(), None);
            return Ok(Some(ReplicationResult {
                server,
                skipped,
                rounds,
                ballast,
            }));
        }
    };
    let server = nats_cluster::version(&binary);
    eprintln!("[bench] replication: {} nodes of {server}", settings.nodes);
    let far = settings.far_ms.map(Duration::from_millis);
    let cluster = NatsCluster::start(&binary, settings.nodes, far)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))?;
    let context = runtime.block_on(connect(&cluster))?;
    let bench = Bench {
        exe,
        plan,
        settings,
        configs: SinkConfigs::write(plan, settings, &cluster.urls())?,
        cluster: &cluster,
        runtime: &runtime,
        context,
        ballast: ballast(settings).map(RefCell::new),
    };
    let mut rounds = Vec::new();
    for run in 1..=plan.runs {
        for &payload in &plan.payloads {
            rounds.push(bench.round(run, payload)?);
        }
    }
    Ok(Some(ReplicationResult {
        server: Some(server),
        skipped: None,
        rounds,
        ballast: bench.ballast.map(|ballast| ballast.into_inner().written),
    }))
}

/// The ballast that fills the page cache, where the run asks for one and one can be made.
fn ballast(settings: ReplicationPlan) -> Option<Ballast> {
    if !settings.fill_page_cache {
        return None;
    }
    match Ballast::new(&std::env::temp_dir()) {
        Ok(ballast) => Some(ballast),
        Err(why) => {
            eprintln!("[bench] replication: the page cache not filled: {why}");
            None
        }
    }
}

/// A JetStream context on the cluster, once it answers JetStream requests.
async fn connect(cluster: &NatsCluster) -> Result<jetstream::Context, String> {
    let client = async_nats::connect(cluster.urls())
        .await
        .map_err(|e| format!("cannot connect to the nats-server cluster: {e}"))?;
    cluster.jetstream_ready(&client).await?;
    Ok(jetstream::new(client))
}

/// What every window of the run shares.
struct Bench<'a> {
    exe: &'a Path,
    plan: &'a Plan,
    settings: ReplicationPlan,
    configs: SinkConfigs,
    cluster: &'a NatsCluster,
    runtime: &'a Runtime,
    context: jetstream::Context,
    /// Where the page cache is filled before each window: its files.
    ballast: Option<RefCell<Ballast>>,
}

impl Bench<'_> {
    /// Round `run` at `payload`: each window with a fresh stream, in the round's order.
    fn round(&self, run: usize, payload: usize) -> Result<ReplicationRound, String> {
        let (mut plain, mut replicated, mut local) = (None, None, None);
        let order = order(run);
        for publisher in order {
            let runs = self.plan.runs;
            let name = publisher.name();
            eprintln!("[bench] replication: {name} {payload} B, run {run}/{runs}");
            self.fill_page_cache()?;
            let leader = self.runtime.block_on(self.create_stream(publisher))?;
            let measured = match publisher {
                Publisher::Plain => self.plain(payload, leader).map(|p| plain = Some(p)),
                Publisher::Replicated => {
                    (self.sink(payload, publisher, leader)).map(|w| replicated = Some(w))
                }
                Publisher::Local => self
                    .sink(payload, publisher, leader)
                    .map(|w| local = Some(w)),
            };
            let deleted = self.runtime.block_on(self.delete_stream(publisher));
            measured.and(deleted)?;
        }
        match (plain, replicated, local) {
            (Some(plain), Some(replicated), Some(local)) => Ok(ReplicationRound {
                payload,
                run,
                order: order.map(Publisher::name).to_vec(),
                plain,
                replicated,
                local,
            }),
            _ => Err("replication: a round missed one of its windows".into()),
        }
    }

    /// Tops the ballast up, where the run fills the page cache.
    fn fill_page_cache(&self) -> Result<(), String> {
        match &self.ballast {
            Some(ballast) => ballast.borrow_mut().top_up(),
            None => Ok(()),
        }
    }

    /// The layout of the streams the run makes, the sinks' `layout`.
    fn layout(&self) -> Layout {
        Layout::created(self.settings.layout.unwrap_or_default())
    }

    /// Makes `publisher`'s stream as the sink would make it (its subjects, file storage, the
    /// sink's duplicate window, its layout) with the run's replicas; returns the node that leads
    /// it, once one does.
    async fn create_stream(&self, publisher: Publisher) -> Result<Option<String>, String> {
        let name = publisher.stream();
        let config = stream::Config {
            name: name.clone(),
            description: Some(self.layout().description()),
            subjects: vec![format!("{}.*.*", publisher.prefix())],
            duplicate_window: DUPLICATE_WINDOW,
            num_replicas: self.settings.nodes,
            storage: stream::StorageType::File,
            ..Default::default()
        };
        let fail = |e: &dyn std::fmt::Display| format!("stream {name}: {e}");
        let mut stream = (self.context.create_stream(config).await).map_err(|e| fail(&e))?;
        let deadline = Instant::now() + LEADER_LIMIT;
        loop {
            let info = stream.info().await.map_err(|e| fail(&e))?;
            let leader = info.cluster.as_ref().and_then(|c| c.leader.clone());
            if leader.is_some() || self.settings.nodes == 1 || Instant::now() > deadline {
                return Ok(leader);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn delete_stream(&self, publisher: Publisher) -> Result<(), String> {
        let name = publisher.stream();
        match self.context.delete_stream(&name).await {
            Ok(_) => Ok(()),
            Err(err) => Err(format!("cannot delete stream {name}: {err}")),
        }
    }

    /// The plain publisher's window: the run's messages of `payload` bytes, spread over as many
    /// sources as the daemons have uplinks, into the plain stream. Each is the message the sink
    /// with `ack = "replicated"` would publish for such a frame, made by the sink's own
    /// [`Naming`]: its subject, id and headers, `Aggregator-Replicated-Through` included.
    fn plain(&self, payload: usize, leader: Option<String>) -> Result<PlainPublisher, String> {
        let (messages, window) = (self.settings.messages, self.settings.window);
        let sources = self.plan.connections.max(1) as u64;
        let naming = Naming::new(&plain_sink(self.settings)?);
        let body = Bytes::from(self.plan.fill.bytes(payload, 0));
        // A reception time of today's 19 digits, as the sink's frames carry.
        let received_unix_ns = (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH))
            .map_or(0, |since| since.as_nanos() as u64);
        let message = |seq: u64| {
            let frame = FrameRecord {
                kind: SourceKind::LiveUplink,
                priority: Priority::Routine,
                source_id: (seq % sources + 1) as u32,
                sequence: seq,
                received_unix_ns: received_unix_ns + seq,
                payload: body.clone(),
                reception: None,
            };
            naming.build(&frame, Some(seq))
        };
        let latency = Samples::default();
        let acked = |_, ack: Duration| latency.push(ack.as_nanos() as u64, 1);
        let (cpu_before, nats_before) = (control::process_cpu_ns(), self.cluster.cpu_ns());
        let started = Instant::now();
        let published = publish_windowed(&self.context, messages, window, message, acked);
        self.runtime.block_on(published)?;
        let seconds = started.elapsed().as_secs_f64();
        let cpu = control::process_cpu_ns().saturating_sub(cpu_before);
        Ok(PlainPublisher {
            messages,
            seconds,
            acked_per_s: messages as f64 / seconds,
            pub_ack_latency: latency.take(),
            publisher_cores: Some(cpu as f64 / 1e9 / seconds),
            nats_cores: cores(nats_before, self.cluster.cpu_ns(), seconds),
            leader,
        })
    }

    /// A daemon's window with `publisher`'s `[sinks.nats]`: started fresh, under the saturating
    /// uplinks of `payload` bytes and the emergency-only sources, then stopped.
    fn sink(
        &self,
        payload: usize,
        publisher: Publisher,
        leader: Option<String>,
    ) -> Result<SinkWindow, String> {
        let config = self.configs.of(publisher);
        let plan = Plan {
            daemon_config: Some(config.path().to_path_buf()),
            ..self.plan.clone()
        };
        let (exe, sources) = (self.exe, plan.connections);
        let limit = child::child_limit(&plan);
        let (mut server, addr) = child::start_server(exe, &plan, Variant::Daemon, sources, limit)?;
        let emergency_sources = emergency::SOURCES;
        let mut client =
            child::start_client(exe, &plan, addr, sources, payload, true, emergency_sources)?;
        child::wait_for_sources(&mut server, sources + 1 + emergency_sources)?;
        std::thread::sleep(plan.warmup);
        let start = Reading::take(&mut server, &mut client, self.cluster, "START")?;
        std::thread::sleep(plan.measure);
        let end = Reading::take(&mut server, &mut client, self.cluster, "END")?;
        client.close_stdin();
        client.wait(Duration::from_secs(10))?;
        server.send("STOP")?;
        let last = server.final_report(Duration::from_secs(90))?;
        server.close_stdin();
        server.wait(Duration::from_secs(10))?;
        let mut window = sink_window(publisher.name(), &start, &end, &last.counts)?;
        window.leader = leader;
        let checked = stream_check::check(self.configs.nats(publisher), &end.acks.through);
        window.stream_check = Some(self.runtime.block_on(checked)?);
        Ok(window)
    }
}

/// The daemon configs of the run, one per `sinks.nats.ack`; removed when dropped.
struct SinkConfigs {
    replicated: ConfigFile,
    local: ConfigFile,
    /// Each daemon's `[sinks.nats]`: what reads its stream back.
    replicated_nats: NatsConfig,
    local_nats: NatsConfig,
}

impl SinkConfigs {
    /// The `--daemon-config` file (or the defaults) with each window's `[sinks.nats]` on the
    /// cluster at `urls`.
    fn write(plan: &Plan, settings: ReplicationPlan, urls: &[String]) -> Result<Self, String> {
        let base = daemon_config::base(plan)?;
        let write = |publisher: Publisher| {
            let table = sink_table(&base, urls, settings, publisher);
            ConfigFile::write(&table, "replication", publisher.name()).map(|(file, _)| file)
        };
        let nats = |publisher| nats_config(sink_table(&base, urls, settings, publisher));
        Ok(SinkConfigs {
            replicated: write(Publisher::Replicated)?,
            local: write(Publisher::Local)?,
            replicated_nats: nats(Publisher::Replicated)?,
            local_nats: nats(Publisher::Local)?,
        })
    }

    fn nats(&self, publisher: Publisher) -> &NatsConfig {
        match publisher {
            Publisher::Local => &self.local_nats,
            Publisher::Plain | Publisher::Replicated => &self.replicated_nats,
        }
    }

    fn of(&self, publisher: Publisher) -> &ConfigFile {
        match publisher {
            Publisher::Local => &self.local,
            Publisher::Plain | Publisher::Replicated => &self.replicated,
        }
    }
}

/// `[sinks.nats]` as the replicated daemon's, publishing into the plain stream: what names the
/// plain publisher's messages.
fn plain_sink(settings: ReplicationPlan) -> Result<NatsConfig, String> {
    let mut table = sink_table(&toml::Table::new(), &[], settings, Publisher::Replicated);
    let nats = (table.get_mut("sinks").and_then(|s| s.get_mut("nats")))
        .and_then(toml::Value::as_table_mut);
    let (stream, subject) = (Publisher::Plain.stream(), Publisher::Plain.prefix());
    if let Some(nats) = nats {
        nats.insert("stream".into(), stream.into());
        nats.insert(
            "subject".into(),
            format!("{subject}.{{kind}}.{{source}}").into(),
        );
    }
    nats_config(table)
}

/// The `[sinks.nats]` of a daemon config `table`, as the daemon reads it.
fn nats_config(table: toml::Table) -> Result<NatsConfig, String> {
    let nats = (table.get("sinks").and_then(|s| s.get("nats")).cloned())
        .ok_or("replication: no [sinks.nats] table")?;
    nats.try_into()
        .map_err(|e| format!("replication: [sinks.nats]: {e}"))
}

/// `base` with `[sinks.nats]` (in place of any it has) publishing to `publisher`'s stream on
/// every node at `urls`, with `ack` as its name says; with `replicated`, a long drain deadline.
fn sink_table(
    base: &toml::Table,
    urls: &[String],
    settings: ReplicationPlan,
    publisher: Publisher,
) -> toml::Table {
    let text = |s: &str| toml::Value::String(s.to_string());
    let int = |n: usize| toml::Value::Integer(i64::try_from(n).unwrap_or(i64::MAX));
    let nats = toml::Table::from_iter([
        (
            "url".to_string(),
            toml::Value::Array(urls.iter().map(|u| text(u)).collect()),
        ),
        ("stream".into(), text(&publisher.stream())),
        ("site".into(), text("bench")),
        (
            "subject".into(),
            text(&format!("{}.{{kind}}.{{source}}", publisher.prefix())),
        ),
        ("identity".into(), text("fleet")),
        ("ack".into(), text(publisher.name())),
        ("replicas".into(), int(settings.nodes)),
        ("window".into(), int(settings.window)),
    ]);
    let mut nats = nats;
    if let Some(wait) = settings.emergency_wait_ms {
        let wait = i64::try_from(wait).unwrap_or(i64::MAX);
        nats.insert("emergency_wait_ms".into(), toml::Value::Integer(wait));
    }
    if let Some(layout) = settings.layout {
        nats.insert("layout".into(), text(Layout::created(layout).name()));
    }
    let mut table = base.clone();
    external::set(&mut table, "sinks", "nats", nats.into());
    if publisher == Publisher::Replicated {
        let deadline = REPLICATED_DRAIN_DEADLINE_MS.into();
        external::set(&mut table, "shutdown", "drain_deadline_ms", deadline);
    }
    table
}

/// One end of a daemon's window: the load client's acknowledgements, the daemon's counters, and
/// the CPU time of the load client and of the nats-servers.
struct Reading {
    acks: ClientAcks,
    counts: Counts,
    client_cpu_ns: Option<u64>,
    nats_cpu_ns: Option<u64>,
}

impl Reading {
    fn take(
        server: &mut ChildProc,
        client: &mut ChildProc,
        cluster: &NatsCluster,
        command: &str,
    ) -> Result<Reading, String> {
        Ok(Reading {
            client_cpu_ns: process_cpu_ns(client.pid()),
            nats_cpu_ns: cluster.cpu_ns(),
            acks: client.acks(command)?,
            counts: server.counts(command)?,
        })
    }
}

/// What a daemon's window measured between `start` and `end`; `last`: its counters once stopped.
fn sink_window(
    ack: &'static str,
    start: &Reading,
    end: &Reading,
    last: &Counts,
) -> Result<SinkWindow, String> {
    let (a, b) = (&start.acks.uplinks, &end.acks.uplinks);
    let window_s = b.at_ns.saturating_sub(a.at_ns) as f64 / 1e9;
    let frames_acked = b.frames_acked.saturating_sub(a.frames_acked);
    let emergency_only = (start.acks.emergency_only.zip(end.acks.emergency_only))
        .map(|(s, e)| throttle::emergency_only(emergency::SOURCES, &s, &e))
        .ok_or("load client: no count of the emergency-only sources' acknowledgements")?;
    let (c0, c1) = (&start.counts, &end.counts);
    let server_s = c1.at_ns.saturating_sub(c0.at_ns) as f64 / 1e9;
    let per_s = |from: u64, to: u64| to.saturating_sub(from) as f64 / server_s;
    Ok(SinkWindow {
        ack,
        window_s,
        frames_acked,
        acked_frames_per_s: frames_acked as f64 / window_s,
        ack_latency: b.latency.unwrap_or_default(),
        emergency_only,
        processed_per_s: per_s(c0.processed, c1.processed),
        published_per_s: per_s(c0.nats_published, c1.nats_published),
        unreplicated_at_end: c1.nats_unreplicated,
        room_at_end: c1.nats_room_bytes,
        at_leader_at_end: c1.nats_at_leader == 1,
        daemon_cores: per_s(c0.cpu_ns, c1.cpu_ns) / 1e9,
        sink_thread_cores: per_s(c0.sink_cpu_ns, c1.sink_cpu_ns) / 1e9,
        sink_runqueue_share: per_s(c0.sink_runqueue_ns, c1.sink_runqueue_ns) / 1e9,
        nats_cores: cores(start.nats_cpu_ns, end.nats_cpu_ns, server_s),
        client_cores: cores(start.client_cpu_ns, end.client_cpu_ns, server_s),
        processed_total: last.processed,
        archived_total: last.archived,
        leader: None,
        stream_check: None,
    })
}

/// CPU time from `before` to `after` over `seconds`, in cores.
fn cores(before: Option<u64>, after: Option<u64>, seconds: f64) -> Option<f64> {
    let (before, after) = (before?, after?);
    Some(after.saturating_sub(before) as f64 / 1e9 / seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_window_runs_once_a_round_and_each_comes_first_in_turn() {
        for run in 1..=6 {
            let mut names = order(run).map(Publisher::name);
            names.sort_unstable();
            assert_eq!(names, ["local", "plain", "replicated"], "round {run}");
        }
        let firsts: Vec<_> = (1..=4).map(|run| order(run)[0]).collect();
        use Publisher::*;
        assert_eq!(firsts, [Plain, Replicated, Local, Plain]);
    }

    #[test]
    fn the_sink_tables_publish_to_every_node_with_the_fleet_s_subjects() {
        let base: toml::Table = toml::from_str(
            "[runtime]\nshards = 1\n[sinks.nats]\nurl = \"nats://elsewhere\"\nsite = \"x\"\n",
        )
        .expect("a config parses");
        let urls = [
            "nats://127.0.0.1:1".to_string(),
            "nats://127.0.0.1:2".into(),
        ];
        let settings = ReplicationPlan {
            nodes: 3,
            messages: 1,
            window: 256,
            emergency_wait_ms: Some(10),
            layout: None,
            far_ms: None,
            fill_page_cache: false,
        };
        let table = sink_table(&base, &urls, settings, Publisher::Replicated);
        let (file, config) = ConfigFile::write(&table, "replication-test", "replicated")
            .expect("the daemon accepts it");
        let nats = config.sinks.nats.expect("[sinks.nats]");
        assert_eq!(nats.url, urls);
        assert_eq!(nats.stream, "BENCH_REPLICATED");
        assert_eq!(nats.subject, "bench-replicated.{kind}.{source}");
        let modes = format!("{:?} {:?}", nats.ack, nats.identity);
        assert_eq!(modes, "Replicated Fleet");
        assert_eq!((nats.replicas, nats.window), (3, 256));
        assert_eq!(nats.emergency_wait, Duration::from_millis(10));
        assert_eq!(config.runtime.shards, 1, "the file's other keys stay");
        assert_eq!(config.shutdown.drain_deadline, Duration::from_secs(60));
        assert!(file.path().is_file());
    }

    #[test]
    fn the_plain_publisher_sends_the_replicated_sink_s_messages_into_its_own_stream() {
        let settings = ReplicationPlan {
            nodes: 3,
            messages: 1,
            window: 256,
            emergency_wait_ms: Some(10),
            layout: None,
            far_ms: None,
            fill_page_cache: false,
        };
        let nats = plain_sink(settings).expect("a [sinks.nats] the daemon accepts");
        assert_eq!(nats.stream, "BENCH_PLAIN");
        let frame = FrameRecord {
            kind: SourceKind::LiveUplink,
            priority: Priority::Routine,
            source_id: 7,
            sequence: 42,
            received_unix_ns: 1_795_680_303_679_000_000,
            payload: Bytes::from_static(b"x"),
            reception: None,
        };
        let (subject, message) = Naming::new(&nats).build(&frame, Some(41));
        assert_eq!(subject, "bench-plain.live.7");
        // The message's fields are private to async-nats: its Debug shows the headers.
        let shown = format!("{message:?}");
        for header in [
            "live.7.42",
            "Aggregator-Replicated-Through",
            "Aggregator-Site",
            "bench",
        ] {
            assert!(shown.contains(header), "{header} in {shown}");
        }
    }
}
