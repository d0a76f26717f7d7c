//! `uplink-sim`: the bundled client that smoke-tests a deployment and load-tests the daemon.
//!
//! It plays many sources at once, each an independent task with its own connection, source id and
//! clock, and it holds the daemon to the protocol's promise: a frame counts as delivered only when an
//! ACK (or a CLOSE's `final_ack`) covers it. Every source keeps the frames not yet covered; when the
//! connection drops or the daemon drains, it reconnects with backoff and sends them again, so a daemon
//! restart loses nothing and the summary can say exactly how many frames were sent twice.
//!
//! A source may know several daemons (`--uplink A,B`): it starts at the first, and whenever one is
//! lost to it (the connection broke or timed out, or the daemon is shutting down) its next attempt
//! goes to the next one. A WELCOME's `resume_after` is then one daemon's word about what it stores,
//! and it may be below what another daemon acknowledged: the summary counts those frames, which the
//! source no longer holds and no daemon is known to hold.
//!
//! Every byte goes through [`crate::protocol::ingest`]; the simulator has no wire format of its own.
//!
//! - [`scenario`]: the named scenarios and the per-kind profiles the command line overrides.
//! - [`source`]: one simulated source: its clock, its connections, its reconnections.
//! - [`outbox`]: the frames a source has generated and the daemon has not acknowledged yet.
//! - [`report`]: what each source ended with, and the summary printed at the end.
//! - [`progress`]: the live counters and their display while the simulation runs.
//! - [`replay`]: an archive read back as replay sources (`--replay-archive DIR`).
//! - [`ack_log`]: every WELCOME and acknowledgement written to a file (`--ack-log FILE`).
//! - [`station`]: a CCSDS ground station feeding a link (`--station ADDR`), and a reader that
//!   counts what the TM server serves (`--tm-reader ADDR`).

pub mod ack_log;
pub mod outbox;
pub mod progress;
pub mod replay;
pub mod report;
pub mod scenario;
pub mod source;
pub mod station;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

use crate::domain::frame::SourceKind;
use crate::tls::client::ClientTls;

pub use progress::{Progress, ProgressStyle};
pub use replay::Pace;
pub use replay::{LoadedArchive, Recording};
pub use report::SourceReport;
pub use report::{Outcome, SimReport};
pub use scenario::{Profile, Scenario};

/// How fast a source produces frames.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rate {
    /// Frames per second, on average (see [`SourceSpec::jitter`]).
    PerSecond(f64),
    /// As fast as the daemon accepts: limited only by TCP and [`SessionOptions::max_in_flight`].
    Max,
}

/// When a source has produced everything it will produce.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Amount {
    /// This many frames.
    Frames(u64),
    /// Frames for this long after the source starts.
    Duration(Duration),
}

/// Which frames are Emergency.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum EmergencyMix {
    /// This fraction of frames (0.0 to 1.0), drawn from the source's seeded generator.
    Share(f64),
    /// The brief's pattern: the first K frames of every batch.
    FirstOfBatch(u32),
}

/// Everything one simulated source does.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceSpec {
    pub kind: SourceKind,
    /// Unique per kind; the daemon refuses a second connection with the same kind and id.
    pub id: u32,
    pub rate: Rate,
    /// How much each batch interval varies, as a fraction of it (0.0 = a perfectly regular clock).
    pub jitter: f64,
    /// Payload bytes per frame.
    pub payload: usize,
    pub amount: Amount,
    /// Frames generated together and written together: one telemetry burst. The daemon sees them in
    /// one read, which is what makes "emergency before routine of the same batch" observable.
    pub batch: u32,
    pub emergency: EmergencyMix,
    /// Seeds the jitter and the emergency draw, so a run is reproducible.
    pub seed: u64,
    /// Frames played from an archive instead of generated: their sequences, priorities, payloads
    /// and pace come from the recording, and `rate`, `jitter`, `payload`, `emergency` and `seed`
    /// are not used (`amount` is the recording's length, `batch` the most frames written at once).
    pub recording: Option<Arc<Recording>>,
}

/// How a source connects, waits and gives up; shared by every source of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionOptions {
    /// Time a TCP connect may take.
    pub connect_timeout: Duration,
    /// Time the daemon has to answer the HELLO.
    pub handshake_timeout: Duration,
    /// First reconnection delay; doubled after every failed attempt.
    pub backoff_initial: Duration,
    /// Longest reconnection delay.
    pub backoff_max: Duration,
    /// A source that has never connected and cannot connect for this long gives up: nothing
    /// listens at its address ([`Outcome::Unreachable`]).
    pub first_connect_within: Duration,
    /// After a first connection, a source that cannot get a WELCOME for this long gives up and
    /// reports the last error.
    pub give_up_after: Duration,
    /// After the source has sent everything and shut down its sending side, time the daemon has to
    /// acknowledge it all and CLOSE; then the source reconnects and resends.
    pub close_timeout: Duration,
    /// Frames a source may have unacknowledged at once; generation waits beyond it.
    pub max_in_flight: usize,
    /// A source that has written nothing for this long sends a PING, so that the daemon's idle
    /// timeout does not close it between frames (`docs/ingest-protocol.md`).
    pub keepalive: Duration,
    /// Where every WELCOME and acknowledgement is written (`--ack-log`); `None` for nowhere.
    pub ack_log: Option<ack_log::AckLog>,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            connect_timeout: Duration::from_secs(2),
            handshake_timeout: Duration::from_secs(5),
            backoff_initial: Duration::from_millis(20),
            backoff_max: Duration::from_secs(1),
            first_connect_within: Duration::from_secs(3),
            give_up_after: Duration::from_secs(30),
            close_timeout: Duration::from_secs(15),
            max_in_flight: 65_536,
            keepalive: Duration::from_secs(10),
            ack_log: None,
        }
    }
}

/// A whole run: where to connect and which sources to play.
#[derive(Debug, Clone)]
pub struct SimPlan {
    /// The daemons' uplink listeners (`host:port`), in the order every live source tries them.
    pub uplink: Vec<String>,
    /// The daemons' replay listeners (`host:port`), in the order every replay source tries them.
    pub replay: Vec<String>,
    pub sources: Vec<SourceSpec>,
    pub session: SessionOptions,
    /// TLS to both listeners (`--tls-ca`, and `--tls-cert`/`--tls-key` for mutual TLS).
    pub tls: Option<ClientTls>,
}

impl SimPlan {
    /// The daemons sources of `kind` know, in the order they try them.
    fn daemons(&self, kind: SourceKind) -> &[String] {
        match kind {
            SourceKind::LiveUplink => &self.uplink,
            SourceKind::ArchivedReplay => &self.replay,
        }
    }

    /// The most daemons the sources of one kind know: with more than one, the run can fail over.
    fn most_daemons(&self) -> usize {
        let kinds = self.sources.iter().map(|spec| spec.kind);
        kinds
            .map(|kind| self.daemons(kind).len())
            .max()
            .unwrap_or(1)
    }
}

/// A list of daemons as one text, as the command line takes it and as the summary names it.
pub(crate) fn list_label(daemons: &[String]) -> String {
    daemons.join(",")
}

/// Runs every source of the plan to its end and collects their reports. `progress` receives the
/// live counters; pass [`Progress::new`] with [`ProgressStyle::Off`] for none.
///
/// First it connects once to each address the sources use. Where that fails at every address of a
/// list (nothing listens, the name does not resolve), no source starts and nothing is shown: every
/// source's outcome is [`Outcome::Unreachable`] at once, rather than after each has tried for
/// [`SessionOptions::first_connect_within`]. A connection made to the first address of a list is
/// the first connection of a source of that list, so asking leaves nothing behind on the daemon;
/// one made to a later address is closed at once, before any HELLO (a daemon takes that for a
/// peer that went away). A connect that takes longer than [`SessionOptions::connect_timeout`]
/// decides nothing: the sources try on their own.
pub async fn run(plan: SimPlan, progress: Arc<Progress>) -> SimReport {
    let started = Instant::now();
    let (mut made, unreachable) = connect_each_address(&plan).await;
    if !unreachable.is_empty() {
        return unreachable_report(&plan, &unreachable, started);
    }
    let goal = progress::Goal::of(&plan.sources);
    let ticker = tokio::spawn(progress::show(Arc::clone(&progress), goal));
    let mut tasks = Vec::with_capacity(plan.sources.len());
    for spec in &plan.sources {
        let daemons = plan.daemons(spec.kind);
        let mut task = source::SimSource::new(
            spec.clone(),
            daemons.to_vec(),
            plan.tls.clone(),
            plan.session.clone(),
            Arc::clone(&progress),
        );
        if let Some(stream) = daemons.first().and_then(|first| made.remove(first)) {
            task = task.with_connection(stream);
        }
        tasks.push((spec.clone(), tokio::spawn(task.run())));
    }
    let mut sources = Vec::with_capacity(tasks.len());
    for (spec, task) in tasks {
        let report = match task.await {
            Ok(report) => report,
            // A panic in a source task is a bug in the simulator; report it as that source's failure.
            Err(err) => SourceReport::failed(&spec, format!("source task ended abnormally: {err}")),
        };
        sources.push(report);
    }
    progress.finish();
    let _ = ticker.await;
    SimReport {
        sources,
        elapsed: started.elapsed(),
        longest_ack_gap: progress.longest_ack_gap(),
        daemons: plan.most_daemons(),
    }
}

/// The report of a run that did not start: every source is unreachable, at its own list where
/// that is one of `unreachable` (by [`list_label`]), else at the first of them.
fn unreachable_report(
    plan: &SimPlan,
    unreachable: &BTreeMap<String, String>,
    started: Instant,
) -> SimReport {
    let first = unreachable.iter().next();
    let sources = plan.sources.iter().filter_map(|spec| {
        let label = list_label(plan.daemons(spec.kind));
        let (address, error) = unreachable.get_key_value(&label).or(first)?;
        let outcome = Outcome::Unreachable {
            address: address.clone(),
            error: error.clone(),
        };
        Some(SourceReport::not_run(spec, outcome))
    });
    SimReport {
        sources: sources.collect(),
        elapsed: started.elapsed(),
        longest_ack_gap: Duration::ZERO,
        daemons: plan.most_daemons(),
    }
}

/// One TCP connection to each address the plan's sources use, made concurrently: those made to
/// the first address of a list, and the error of each list (by [`list_label`]) where the connect
/// failed at every address. An address whose connect timed out may listen: its list is not named.
async fn connect_each_address(
    plan: &SimPlan,
) -> (HashMap<String, TcpStream>, BTreeMap<String, String>) {
    let mut kinds: Vec<SourceKind> = plan.sources.iter().map(|s| s.kind).collect();
    kinds.sort_by_key(|kind| kind.to_byte());
    kinds.dedup();
    let lists: Vec<&[String]> = kinds.into_iter().map(|k| plan.daemons(k)).collect();
    let addresses: BTreeSet<&str> = lists
        .iter()
        .flat_map(|l| l.iter())
        .map(String::as_str)
        .collect();
    let patience = plan.session.connect_timeout;
    let attempts = addresses.into_iter().map(|address| async move {
        let made = tokio::time::timeout(patience, TcpStream::connect(address)).await;
        (address.to_string(), made)
    });
    let mut made = HashMap::new();
    let mut failed = HashMap::new();
    for (address, attempt) in futures_util::future::join_all(attempts).await {
        match attempt {
            Ok(Ok(stream)) => {
                made.insert(address, stream);
            }
            Ok(Err(err)) => {
                failed.insert(address, err.to_string());
            }
            Err(_) => {}
        }
    }
    made.retain(|address, _| lists.iter().any(|list| list.first() == Some(address)));
    let unreachable = lists.iter().filter_map(|list| {
        let error = nothing_listens(list, &failed)?;
        Some((list_label(list), error))
    });
    (made, unreachable.collect())
}

/// Why nothing listens at any address of `list`, from the errors of those that `failed`: the
/// error itself for one address, each address with its error for several; `None` while one of
/// them may listen.
fn nothing_listens(list: &[String], failed: &HashMap<String, String>) -> Option<String> {
    match list {
        [] => Some("no daemon address given".into()),
        [one] => failed.get(one).cloned(),
        several => {
            let each = several
                .iter()
                .map(|a| Some(format!("{a}: {}", failed.get(a)?)));
            Some(each.collect::<Option<Vec<_>>>()?.join("; "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An address where nothing listens: a port that was bound a moment ago.
    fn closed_port() -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().to_string()
    }

    fn plan(uplink: Vec<String>) -> SimPlan {
        let (uplinks, _) = Scenario::Brief.profiles();
        SimPlan {
            uplink,
            replay: Vec::new(),
            sources: uplinks.sources(SourceKind::LiveUplink, 1),
            session: SessionOptions::default(),
            tls: None,
        }
    }

    #[tokio::test]
    async fn a_list_is_unreachable_only_when_nothing_listens_at_any_of_its_addresses() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open = listener.local_addr().unwrap().to_string();
        let (closed, other) = (closed_port(), closed_port());

        let (made, unreachable) =
            connect_each_address(&plan(vec![closed.clone(), open.clone()])).await;
        assert!(unreachable.is_empty(), "{unreachable:?}");
        assert!(
            made.is_empty(),
            "only a connection to the first address is kept"
        );

        let (made, _) = connect_each_address(&plan(vec![open.clone(), closed.clone()])).await;
        assert!(made.contains_key(&open));

        let both = vec![closed.clone(), other.clone()];
        let (_, unreachable) = connect_each_address(&plan(both.clone())).await;
        let error = &unreachable[&list_label(&both)];
        assert!(
            error.starts_with(&format!("{closed}: ")) && error.contains(&format!("; {other}: ")),
            "{error}"
        );
        let (_, unreachable) = connect_each_address(&plan(vec![closed.clone()])).await;
        assert!(
            !unreachable[&closed].contains(&closed),
            "one address: its error alone"
        );
    }
}
